"""The image-folder path on real images: evaluation preprocessing that follows the training
crop (in memory and streamed alike), precise BN for streamed data, batched RandAugment, bad
folders, and an end-to-end comparison with the in-memory Fashion-MNIST path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image
from torch import nn
from torchvision.transforms import v2

from modernize.cli import main as cli_main
from modernize.data import (
    BatchAugment,
    BatchRandAugment,
    Data,
    DataSpec,
    base_transforms,
    data_key,
    eval_transforms,
    load_data,
)
from modernize.errors import ConfigError
from modernize.proxy import CPU_PROXY
from modernize.recipe import Augmentation, DataPart, Recipe, load_recipe
from modernize.train import Dist
from modernize.train.loop import precise_bn
from tests.conftest import recipe_text
from tests.folder_fixture import export_fashion

QUICK = load_recipe("quick")


def _load(text: str, recipe: Recipe, **kw: Any) -> Data:
    spec = DataSpec.parse(text)
    return load_data(spec, data_key(spec, recipe), **kw)


def _tf(tfs: list) -> v2.Compose:
    return v2.Compose(tfs)


@pytest.fixture(scope="module")
def fashion_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_fashion(tmp_path_factory.mktemp("fm") / "folder", train=400, val=200)


# --- evaluation preprocessing ------------------------------------------------------------------

def test_pad_recipe_evaluates_without_rescaling() -> None:
    small = torch.randint(1, 256, (1, 28, 28), dtype=torch.uint8)
    out = _tf(eval_transforms(QUICK, resolution=32))(small)
    assert out.shape == (1, 32, 32)
    assert torch.equal(out[:, 2:30, 2:30], small)  # the pixels, unscaled, centred
    assert out[:, :2].sum() == 0 and out[:, :, 30:].sum() == 0  # zero padding
    big = torch.randint(0, 256, (1, 40, 50), dtype=torch.uint8)
    assert torch.equal(_tf(eval_transforms(QUICK, resolution=32))(big), big[:, 4:36, 9:41])
    # training uses the same sizing before its random pad-crop
    assert torch.equal(_tf(base_transforms(QUICK, resolution=32))(small), out)


def test_rrc_recipe_evaluates_at_its_crop_pct_and_none_resizes() -> None:
    img = torch.randint(0, 256, (3, 300, 400), dtype=torch.uint8)
    rrc = Recipe(crop="rrc", resolution=224)
    ref = v2.functional.center_crop(v2.functional.resize(img, 256, antialias=True), [224, 224])
    assert torch.equal(_tf(eval_transforms(rrc, resolution=224))(img), ref)
    pct = rrc.replace(eval_crop_pct=1.0)
    assert torch.equal(_tf(eval_transforms(pct, resolution=224))(img),
                       v2.functional.center_crop(v2.functional.resize(img, 224, antialias=True), [224, 224]))
    none = Recipe(crop="none", resolution=64)
    assert _tf(eval_transforms(none, resolution=64))(img).shape == (3, 64, 64)
    with pytest.raises(ConfigError, match="eval_crop_pct"):
        Recipe(eval_crop_pct=1.5)


@pytest.mark.parametrize("crop", ["pad", "rrc", "none"])
def test_in_memory_and_streamed_val_images_are_identical(fashion_folder: Path, crop: str) -> None:
    recipe = QUICK.replace(crop=crop, train_images=400, val_images=200, resolution=40)
    mem = _load("fashion-mnist", recipe)
    folder = _load(f"imagefolder:{fashion_folder}", recipe)
    assert folder.in_chans == mem.in_chans == 1  # grey PNGs load as 1-channel images
    streamed = sorted(folder.val[i][0].flatten().tolist() for i in range(len(folder.val)))
    held = sorted(img.flatten().tolist() for img in mem.val.images)
    assert streamed == held  # the same 200 images, preprocessed identically
    # precise BN's training view of a streamed set is the evaluation preprocessing
    assert torch.equal(folder.train_eval[0][0], _tf(eval_transforms(recipe, resolution=40))(
        v2.functional.pil_to_tensor(Image.open(folder.train.samples[0][0]))))


def test_sixteen_bit_grey_images_keep_their_levels(tmp_path: Path) -> None:
    """16-bit grey PNGs (PIL mode I;16) and 32-bit integer TIFFs are scaled x 255/65535, not
    clipped at 255 (which made two classes at 1,000 and 3,000 both pure white, and the run learn
    nothing); float TIFFs (mode F) have no fixed range and are refused naming the file."""
    import numpy as np

    for split in ("train", "val"):
        for cls, level in (("a", 1000), ("b", 3000)):
            (tmp_path / "d" / split / cls).mkdir(parents=True)
            for i in range(4):
                Image.fromarray(np.full((8, 8), level + i, np.uint16)).save(tmp_path / "d" / split / cls / f"{i}.png")
    # a big-endian 16-bit TIFF (PIL mode I;16B) is grey too, and scaled alike
    Image.fromarray(np.full((8, 8), 3000, ">u2")).save(tmp_path / "d" / "train" / "b" / "be.tif")
    Image.fromarray(np.full((8, 8), 65535, np.int32)).save(tmp_path / "d" / "val" / "b" / "wide.tif")
    recipe = QUICK.replace(crop="none", resolution=8, train_images=0, val_images=0)
    data = _load(f"imagefolder:{tmp_path / 'd'}", recipe)
    assert data.in_chans == 1
    levels = {}
    for i, (path, cls) in enumerate(data.val.samples):
        img, _ = data.val._decode(i)
        levels[Path(path).name if path.endswith(".tif") else (cls, Path(path).name)] = np.asarray(img).max()
    assert levels[(0, "0.png")] == round(1000 / 257) and levels[(1, "0.png")] == round(3000 / 257)
    assert levels["wide.tif"] == 255
    be = next(i for i, (p, _) in enumerate(data.train.samples) if p.endswith("be.tif"))
    assert np.asarray(data.train._decode(be)[0]).max() == round(3000 / 257)
    Image.fromarray(np.full((8, 8), 0.5, np.float32)).save(tmp_path / "d" / "val" / "b" / "float.tif")
    data = _load(f"imagefolder:{tmp_path / 'd'}", recipe)
    i = next(k for k, (p, _) in enumerate(data.val.samples) if p.endswith("float.tif"))
    with pytest.raises(ConfigError, match=r"float.tif: cannot decode image .*mode F"):
        data.val._decode(i)


# --- precise BN on streamed data ----------------------------------------------------------------

def test_precise_bn_runs_for_streamed_data_on_a_fixed_unaugmented_subset(fashion_folder: Path) -> None:
    recipe = QUICK.replace(train_images=400, val_images=200)
    data = _load(f"imagefolder:{fashion_folder}", recipe)
    aug = BatchAugment(recipe.part(DataPart), recipe.part(Augmentation), num_classes=10, mean=data.mean,
                       std=data.std, per_sample=False)
    model = nn.Sequential(nn.BatchNorm2d(1, momentum=0.5))
    precise_bn(model, data, aug, n=3, batch=16, d=Dist(), device="cpu", channels_last=False)
    first = model[0].running_mean.clone()
    assert first.abs().sum() > 0 and model[0].num_batches_tracked == 3
    model[0].reset_running_stats()
    precise_bn(model, data, aug, n=3, batch=16, d=Dist(), device="cpu", channels_last=False)
    assert torch.equal(model[0].running_mean, first)  # the same images, not augmented
    # ... namely the mean over 48 un-augmented training images, normalised
    imgs = torch.stack([data.train_eval[i][0] for i in range(len(data.train_eval))]).float() / 255
    full_mean = ((imgs - data.mean[0]) / data.std[0]).mean()
    assert abs(first.item() - full_mean.item()) < 0.1


# --- batched RandAugment -----------------------------------------------------------------------

def test_batched_randaugment_equals_torchvision_per_image() -> None:
    torch.manual_seed(1)
    x = torch.randint(0, 256, (64, 3, 24, 24), dtype=torch.uint8)
    ra = BatchRandAugment(num_ops=2, magnitude=9)
    ops, negate = ra.draw(len(x))
    out = ra.apply(x, ops, negate)
    assert len(ops[0].unique()) > 5  # images draw their own ops
    for i in range(len(x)):  # each image: torchvision's own op code with that image's draws
        ref = x[i]
        for r in range(2):
            name, (mags_fn, signed) = ra.ops[ops[r, i]]
            mags = mags_fn(31, 24, 24)
            mag = 0.0 if mags is None else float(mags[9]) * (-1 if signed and negate[r, i] else 1)
            ref = ra.ra._apply_image_or_video_transform(ref, name, mag, interpolation=ra.ra.interpolation,
                                                        fill=ra.ra._fill)
        assert torch.equal(out[i], ref), i


def test_batch_augment_no_longer_loops_over_images_for_randaugment(monkeypatch: pytest.MonkeyPatch) -> None:
    recipe = load_recipe("cifar100_gpu")
    aug = BatchAugment(recipe.part(DataPart), recipe.part(Augmentation), num_classes=100, mean=(0.5,) * 3,
                       std=(0.25,) * 3)
    assert aug.batched and aug.per_image is None and aug.randaug is not None
    calls = []
    monkeypatch.setattr(v2.RandAugment, "forward", lambda *a: calls.append(1))
    x, y = aug(torch.randint(0, 256, (32, 3, 32, 32), dtype=torch.uint8), torch.randint(0, 100, (32,)))
    assert x.shape == (32, 3, 32, 32) and y.shape == (32, 100) and not calls


# --- bad folders ---------------------------------------------------------------------------------

def _folder(root: Path, *, classes: tuple[str, ...] = ("a", "b"), n: int = 20, size: int = 20) -> Path:
    g = torch.Generator().manual_seed(0)
    for split in ("train", "val"):
        for c in classes:
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                px = torch.randint(0, 256, (size, size, 3), generator=g, dtype=torch.uint8).numpy()
                Image.fromarray(px).save(root / split / c / f"{i}.png")
    return root


def _train(root: Path, tmp: Path, capsys: pytest.CaptureFixture[str], **kw: object) -> tuple[int, str]:
    values = dict(epochs=1, batch_size=8, resolution=32, lr=4e-3, lr_batch=4096, crop="pad", precision="fp32",
                  channels_last=False, warmup_epochs=0, precise_bn_batches=2) | kw
    tmp.mkdir(parents=True, exist_ok=True)
    recipe = tmp / "r.toml"
    recipe.write_text(recipe_text(values))
    rc = cli_main(["train", "--data", f"imagefolder:{root}", "--recipe", str(recipe), "--out", str(tmp / "run"),
                   "--steps", "recipe", "--width", "0.125", "--depth", "0.34", "--low-res", "2", "--device", "cpu"])
    return rc, capsys.readouterr().err.strip()


@pytest.mark.parametrize("damage, needle", [
    (lambda r: __import__("shutil").rmtree(r / "val"), "val is not a folder"),
    (lambda r: __import__("shutil").rmtree(r / "train"), "train is not a folder"),
    (lambda r: [p.unlink() for p in (r / "train" / "b").iterdir()], "class folder"),
    (lambda r: (r / "val" / "c").mkdir(), "other class folders than train/"),
])
def test_bad_folders_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], damage, needle: str) -> None:
    root = _folder(tmp_path / "d", n=2)
    damage(root)
    rc, err = _train(root, tmp_path, capsys)
    assert rc == 2 and err.count("\n") == 0 and needle in err, err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("damage", ["garbage", "link_to_itself"])
def test_corrupt_image_fails_naming_it_or_is_skipped(tmp_path: Path, capfd: pytest.CaptureFixture[str],
                                                     damage: str) -> None:
    root = _folder(tmp_path / "d", size=20)  # 20 px images, 32 px crop: padded, not an error
    bad = root / "train" / "a" / "7.png"
    if damage == "garbage":
        bad.write_bytes(b"not a png at all")
    else:  # listing the folder asks whether it is a folder: ELOOP
        bad.unlink()
        bad.symlink_to(bad.name)
    rc, err = _train(root, tmp_path, capfd)
    assert rc == 2 and err.count("\n") == 0 and str(bad) in err and 'bad_images = "skip"' in err, err
    rc, err = _train(root, tmp_path / "skip", capfd, bad_images="skip")
    assert rc == 0 and f"{bad}: " in err and "skipped" in err, err
    assert json.loads((tmp_path / "skip" / "run" / "recipe" / "seed0" / "result.json").read_text())["status"] == "done"


def test_a_run_stops_its_loader_workers_before_it_returns(tmp_path: Path) -> None:
    """The image loader's worker processes end with the run, not whenever the garbage collector
    gets to the data set (which cost about 30 s at the end of every image-folder run: each
    worker waited out a 5-s join timeout). The collector is off here, so only an explicit stop
    can pass; skipped only where the loader gets no worker processes at all."""
    import gc
    import multiprocessing

    from modernize.data.loaders import socket_problem
    from modernize.train import train_roadmap

    root = _folder(tmp_path / "d", size=20)
    recipe = tmp_path / "r.toml"
    recipe.write_text("epochs = 1\nbatch_size = 8\nresolution = 32\nlr = 4e-3\nlr_batch = 4096\ncrop = \"pad\"\n"
                      "warmup_epochs = 0\n"
                      "precise_bn_batches = 2\nchannels_last = false\n")
    problem = socket_problem()  # the one case where a run's loader gets no worker (loader_workers() is >= 1)
    if problem is not None:
        pytest.skip(f"the image loader gets no worker processes here: {problem}")
    gc.collect()
    before = set(multiprocessing.active_children())
    gc.disable()
    try:
        train_roadmap(None, data=f"imagefolder:{root}", recipe=recipe, seeds=[0], out=tmp_path / "run",
                      steps=["recipe"], device="cpu", proxy=CPU_PROXY, progress=False)
        left = set(multiprocessing.active_children()) - before
    finally:
        gc.enable()
    assert not left, f"loader workers still alive after the run returned: {left}"


def test_a_streamed_split_reaches_loader_workers_as_files_and_transforms_only(tmp_path: Path) -> None:
    """A local ``--workers`` process is spawned, so its loader workers are spawned too and get the
    data set pickled: a data set that carried its loaders (with their generator tensor) handed
    shared-memory tensors to every worker, which died in ``rebuild_storage_fd``. After a loader
    has run, the split pickles without tensors or loaders, and the batches do not depend on
    whether a worker or the main process decoded them."""
    import io
    import pickle

    from modernize.data import Loaders

    root = _folder(tmp_path / "d", n=6, size=20)
    recipe = QUICK.replace(randaugment_ops=2)
    data = _load(f"imagefolder:{root}", recipe, loader_workers=1)
    order = [5, 0, 11, 3, 7, 2, 9, 1]
    try:
        streamed = list(data.loaders.stream(data.train, order, batch=4, device="cpu", order_seed=3, drop_last=True))
        found: list[str] = []

        class Spy(pickle.Pickler):
            def persistent_id(self, obj: object) -> None:
                if isinstance(obj, (torch.Tensor, torch.UntypedStorage, torch.Generator, torch.utils.data.DataLoader)):
                    found.append(type(obj).__name__)

        for ds in (data.train, data.val, data.train_eval):
            Spy(io.BytesIO()).dump(ds)
        assert not found, f"pickled with the data set: {found}"
    finally:
        data.loaders.close()
    main = Loaders(workers=0)
    inline = list(main.stream(data.train, order, batch=4, device="cpu", order_seed=3, drop_last=True))
    assert len(streamed) == len(inline) == 2
    assert all(torch.equal(a, b) for (x, y), (u, v) in zip(streamed, inline) for a, b in ((x, u), (y, v)))


def test_loader_workers_share_the_cores_among_the_processes_of_a_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each process keeps its own persistent loader workers: local ``--workers`` processes and
    torchrun's processes on one machine divide the cores instead of each taking all of them."""
    import os

    from modernize.data import loader_workers

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert (loader_workers(), loader_workers(processes=2), loader_workers(processes=16)) == (8, 4, 1)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert (loader_workers(), loader_workers(processes=2)) == (4, 2)


@pytest.mark.slow
def test_local_workers_train_an_image_folder_like_a_serial_run(tmp_path: Path) -> None:
    """``--workers 2`` over an image folder (issue: every loader worker died unpickling, and
    each local worker started loader workers on every core): every job finishes, with the
    serial run's log and scores."""
    root = _folder(tmp_path / "d", n=8, size=20)
    recipe = tmp_path / "r.toml"
    recipe.write_text("base = \"paper\"\nepochs = 1\nbatch_size = 8\nresolution = 32\ncrop = \"pad\"\n"
                      "warmup_epochs = 0\n"
                      "precise_bn_batches = 1\nchannels_last = false\nrandaugment_ops = 1\n")
    runs = {}
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        assert cli_main(["train", "--data", f"imagefolder:{root}", "--recipe", str(recipe), "--out", str(out),
                         "--steps", "recipe", "kernel_7", "--width", "0.125", "--depth", "0.34", "--low-res", "2",
                         "--device", "cpu", "--workers", str(workers), "--threads", "1"]) == 0
        runs[workers] = {step: ((out / step / "seed0" / "log.csv").read_text().splitlines(),
                                {k: v for k, v in json.loads((out / step / "seed0" / "result.json").read_text()).items()
                                 if k in ("status", "top1", "top5", "best_top1")})
                         for step in ("recipe", "kernel_7")}
    for step in ("recipe", "kernel_7"):
        (log1, res1), (log2, res2) = runs[1][step], runs[2][step]
        assert res1["status"] == res2["status"] == "done"
        assert res1 == res2
        header = log1[0].split(",")
        keep = [i for i, c in enumerate(header) if c not in ("img_per_s", "seconds")]  # timings differ
        assert [[r.split(",")[i] for i in keep] for r in log1] == [[r.split(",")[i] for i in keep] for r in log2]


# --- end to end on real images --------------------------------------------------------------------

@pytest.mark.slow
def test_imagefolder_trains_like_the_in_memory_path(tmp_path: Path) -> None:
    """Fashion-MNIST exported as PNGs trains through imagefolder: to within 2 points of the
    in-memory path: same recipe, subset, seed and steps (the data order differs: a folder is
    sorted by class)."""
    from modernize.train import train_roadmap

    n_train, n_val = 3000, 1000
    folder = export_fashion(tmp_path / "folder", train=n_train, val=n_val)
    values = QUICK.to_dict() | dict(train_images=n_train, val_images=n_val, epochs=3)
    values.pop("substitute")
    recipe = tmp_path / "r.toml"
    recipe.write_text(recipe_text({k: v for k, v in values.items() if k != "name"}))
    top1 = {}
    for data in ("fashion-mnist", f"imagefolder:{folder}"):
        out = train_roadmap(None, data=data, recipe=recipe, seeds=[0], out=tmp_path / data[:5], steps=["recipe"],
                            device="cpu", proxy=CPU_PROXY, progress=False)
        top1[data[:5]] = json.loads((out / "recipe" / "seed0" / "result.json").read_text())["top1"]
    assert top1["fashi"] > 70, top1
    assert abs(top1["fashi"] - top1["image"]) <= 2.0, top1


def test_bench_data_reports_workers_and_batched_speedup(capsys: pytest.CaptureFixture[str]) -> None:
    rc = cli_main(["bench-data", "--images", "12", "--measure", "4", "--repeats", "1", "--resolution", "64",
                   "--train-img-s", "500", "--batch", "16", "--threads", "1"])
    out = capsys.readouterr().out
    assert rc == 0 and "one worker" in out and "needs" in out and "ratio" in out, out
    assert cli_main(["bench-data", "--data", "synthetic"]) == 2
    assert "imagefolder:PATH" in capsys.readouterr().err
