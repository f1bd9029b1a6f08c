"""Issue 11: a run folder never lies, never escapes, never locks the user out; every fault is
one clean line.

First the defects one by one (each failed before the fix), then a parametrized battery of bad
inputs and faults across flops, train, report, describe and bench: each case asserts the exit
code, a one-line message naming the culprit, no traceback, and that the corrected command then
works on the same output folder."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from modernize.cli import main as cli_main
from modernize.errors import ConfigError
from modernize.recipe import load_recipe
from modernize.roadmap import ABLATIONS_DIR, load_roadmap
from modernize.train import override_notes, prepare_run, train_roadmap
from tests.conftest import TINY, recipe_text, write_recipe

REPO = Path(__file__).resolve().parent.parent
STEP = "separate_downsampling"
PROXY_ARGS = ["--width", "0.125", "--depth", "0.34", "--low-res", "2", "--device", "cpu", "--threads", "1"]


def roadmap_copy(tmp: Path, edit: Callable[[str], str] = lambda t: t, name: str = "rm.toml") -> Path:
    """The default roadmap, edited, as a file of its own (``paper`` resolved to the built-in CSV)."""
    text = (ABLATIONS_DIR / "resnet50_to_convnext_t.toml").read_text()
    text = text.replace('paper = "paper/', f'paper = "{ABLATIONS_DIR}/paper/')
    path = tmp / name
    path.write_text(edit(text))
    return path


def train_args(tmp: Path, out: Path, *extra: str, data: str = "synthetic:32", recipe: Path | None = None,
               steps: tuple[str, ...] = (STEP,)) -> list[str]:
    return ["train", "--data", data, "--recipe", str(recipe or write_recipe(tmp)), "--out", str(out),
            "--steps", *steps, *PROXY_ARGS, *extra]


def call(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        rc = cli_main(argv)
    except SystemExit as exc:  # argparse errors
        rc = int(exc.code or 0)
    out, err = capsys.readouterr()
    return rc, out, err


def one_line_error(err: str, culprit: str) -> None:
    """Exactly one error line, the last one (progress lines may precede it), naming the culprit."""
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    errors = [ln for ln in lines if re.match(r"(\S+( \S+)?: )?error: ", ln)]  # ours, or argparse's
    assert "Traceback" not in err, err
    assert len(errors) == 1 and lines[-1] == errors[0], err
    assert culprit.lower() in errors[0].lower(), (culprit, errors[0])


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")} if root.exists() else set()


# --- 1. fingerprints ---------------------------------------------------------------------------

def tiny(tmp: Path, out: Path, roadmap: Path | str | None = None, *, data: str = "synthetic:32",
         force: bool = False, **kw: object) -> Path:
    from modernize.proxy import ProxyScale

    return train_roadmap(roadmap, data=data, recipe=write_recipe(tmp, **kw), seeds=[0], out=out, steps=[STEP],
                         device="cpu", progress=False, proxy=ProxyScale(width=0.125, depth=0.34, stem_stride=2),
                         force=force)


def test_edited_roadmap_with_the_same_name_is_not_the_same_run(tmp_path: Path) -> None:
    out = tmp_path / "run"
    tiny(tmp_path, out, roadmap_copy(tmp_path))
    cfg = json.loads((out / STEP / "seed0" / "config.json").read_text())
    assert cfg["fingerprint"] and cfg["fingerprint_parts"]["seed"] == 0
    assert json.loads((out / STEP / "seed0" / "result.json").read_text())["fingerprint"] == cfg["fingerprint"]
    # a real edit: an earlier step's stage depths change in the copy (same roadmap name)
    edited = roadmap_copy(tmp_path, lambda t: t.replace("depths = [3, 3, 9, 3]", "depths = [2, 2, 6, 2]"), "rm2.toml")
    assert load_roadmap(edited)[STEP].spec != load_roadmap(roadmap_copy(tmp_path))[STEP].spec
    with pytest.raises(ConfigError, match=rf"{STEP}/seed0: trained with a different configuration.*step_spec"):
        tiny(tmp_path, out, edited)
    tiny(tmp_path, out, edited, force=True)  # --force: retrained, the old job kept under .replaced/
    moved = list((out / ".replaced").glob(f"*/{STEP}/seed0/result.json"))
    assert len(moved) == 1
    new = json.loads((out / STEP / "seed0" / "config.json").read_text())
    assert new["fingerprint"] != cfg["fingerprint"]


def test_force_on_some_steps_moves_the_other_differing_jobs_aside(tmp_path: Path) -> None:
    """--force with a new recipe on one step: the other step's job, trained with the old recipe,
    is moved aside too (kept under .replaced/, not retrained), so run.json, which now records the
    new recipe, never sits beside a job of the old one."""
    from modernize.proxy import ProxyScale
    from modernize.report import load_run

    out, other = tmp_path / "run", "bn_to_ln"
    kw: dict = dict(data="synthetic:32", seeds=[0], out=out, device="cpu", progress=False,
                    proxy=ProxyScale(width=0.125, depth=0.34, stem_stride=2))
    train_roadmap(None, recipe=write_recipe(tmp_path), steps=[other, STEP], **kw)
    train_roadmap(None, recipe=write_recipe(tmp_path, "tiny2", lr=1e-3), steps=[STEP], force=True, **kw)
    assert len(list((out / ".replaced").glob(f"*/{other}/seed0/result.json"))) == 1
    assert len(list((out / ".replaced").glob(f"*/{STEP}/seed0/result.json"))) == 1
    assert not (out / other / "seed0").exists()
    run = load_run(out)
    assert run.results[other] == {} and run.results[STEP][0]["status"] == "done"


def test_report_refuses_jobs_that_its_roadmap_or_run_json_no_longer_describe(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The run folder's copy of its roadmap edited after training (or a job of another recipe
    copied in) would put old results under new labels: the report names the job and what
    differs, exit 2; undone, the same command works. The user's roadmap file edited after
    training does not change the report: it reads the copy the run folder keeps."""
    rm = roadmap_copy(tmp_path)
    out = tmp_path / "run"
    tiny(tmp_path, out, rm)
    original = rm.read_text()
    rm.write_text(original.replace("depths = [3, 3, 9, 3]", "depths = [2, 2, 6, 2]"))
    kept = out / ".source" / rm.name
    kept.write_text(rm.read_text())
    rc, _, err = call(["report", str(out), "--out", str(tmp_path / "rep")], capsys)
    assert rc == 2 and not (tmp_path / "rep").exists()
    one_line_error(err, f"{STEP}/seed0")
    assert "step_spec.depths" in err and "roadmap file" in err
    kept.write_text(original)
    meta = json.loads((out / "run.json").read_text())
    meta["recipe"]["values"]["lr"] = 0.5  # run.json says another lr than the job was trained with
    (out / "run.json").write_text(json.dumps(meta))
    rc, _, err = call(["report", str(out), "--out", str(tmp_path / "rep")], capsys)
    assert rc == 2 and "recipe.lr" in err and "run.json" in err
    meta["recipe"]["values"]["lr"] = TINY["lr"]
    (out / "run.json").write_text(json.dumps(meta))
    _blank_figures(monkeypatch)
    assert call(["report", str(out), "--out", str(tmp_path / "rep")], capsys)[0] == 0


def test_deleting_run_json_does_not_change_what_is_reused(tmp_path: Path) -> None:
    out = tmp_path / "run"
    tiny(tmp_path, out)
    (out / "run.json").unlink()
    with pytest.raises(ConfigError, match=r"differs in: .*(data|recipe)"):
        tiny(tmp_path, out, data="synthetic:48", lr=1e-3)
    assert not (out / "run.json").exists()  # refused before writing
    tiny(tmp_path, out)  # the same config as the job's: skipped, run.json written again
    assert json.loads((out / "run.json").read_text())["data"] == "synthetic:32"


def test_legacy_job_without_fingerprint_is_reused_when_its_config_matches(tmp_path: Path) -> None:
    out = tmp_path / "run"
    tiny(tmp_path, out)
    path = out / STEP / "seed0" / "config.json"
    cfg = json.loads(path.read_text())
    for k in ("fingerprint", "fingerprint_parts", "torch"):
        cfg.pop(k)
    path.write_text(json.dumps(cfg))
    before = (out / STEP / "seed0" / "result.json").stat().st_mtime_ns
    tiny(tmp_path, out)
    assert (out / STEP / "seed0" / "result.json").stat().st_mtime_ns == before
    with pytest.raises(ConfigError, match=r"recipe\.lr"):
        tiny(tmp_path, out, lr=1e-3)


# --- 2. step names, paths under RUN_DIR -----------------------------------------------------------

@pytest.mark.parametrize("name", ["../../escape", "a/b", ".hidden", "run.json", "report", "x..y", "-dash",
                                  "bad name", "claim.json", "x" * 101])
def test_unsafe_step_names_refused_at_load(tmp_path: Path, name: str) -> None:
    path = roadmap_copy(tmp_path, lambda t: t.replace('name = "stage_ratio"', f'name = {json.dumps(name)}'))
    with pytest.raises(ConfigError, match=r"rm\.toml: step .*(safe folder name|reserved)"):
        load_roadmap(path)


def test_escaping_step_writes_nothing_outside(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    rm = roadmap_copy(tmp_path, lambda t: t.replace('name = "stage_ratio"', 'name = "../../escape"'))
    before = files_under(tmp_path)
    rc, _, err = call(["train", str(rm), *train_args(tmp_path, tmp_path / "a" / "b" / "out")[1:]], capsys)
    assert rc == 2
    one_line_error(err, "../../escape")
    assert files_under(tmp_path) - before == {tmp_path / "tiny.toml"}


# --- 3. a rejected config does not lock the folder ----------------------------------------------------

def test_batch_larger_than_data_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    rc, _, err = call(train_args(tmp_path, out, recipe=write_recipe(tmp_path, "big", batch_size=64)), capsys)
    assert rc == 2
    one_line_error(err, "global batch of 64")
    assert not out.exists()
    rc, _, err = call(train_args(tmp_path, out), capsys)
    assert rc == 0, err


def test_a_renamed_recipe_with_the_same_values_is_the_same_run(tmp_path: Path) -> None:
    """The run's identity is its content, in run.json as in the job fingerprints: a recipe file
    renamed (or re-described) with the same values reuses the run; one changed value does not."""
    out = tmp_path / "run"
    tiny(tmp_path, out)
    done = (out / STEP / "seed0" / "result.json").read_text()
    from modernize.proxy import ProxyScale

    renamed = write_recipe(tmp_path, "renamed", extra='description = "another name, the same values"\n')
    train_roadmap(None, data="synthetic:32", recipe=renamed, seeds=[0], out=out, steps=[STEP], device="cpu",
                  progress=False, proxy=ProxyScale(width=0.125, depth=0.34, stem_stride=2))
    assert (out / STEP / "seed0" / "result.json").read_text() == done  # skipped, not retrained
    assert json.loads((out / "run.json").read_text())["recipe"]["name"] == "renamed"
    with pytest.raises(ConfigError, match=r"different configuration.*differs in: recipe.lr"):
        tiny(tmp_path, out, lr=1e-3)


def test_force_does_not_move_a_job_being_trained(tmp_path: Path) -> None:
    """--force moves the jobs trained differently aside, but never one another process is
    training now (its claim is live): that process would go on writing into a moved folder."""
    from modernize.claims import ClaimInfo, try_claim

    out = tmp_path / "run"
    tiny(tmp_path, out)
    job = out / STEP / "seed0"
    before = sorted(p.name for p in job.iterdir())
    claim = try_claim(job)
    assert not isinstance(claim, ClaimInfo)
    with claim:  # held by a live process (this one)
        with pytest.raises(ConfigError, match="being trained now"):
            tiny(tmp_path, out, force=True, lr=1e-3)
    assert sorted(p.name for p in job.iterdir() if p.name != "claim.json") == before
    assert not (out / ".replaced").exists()
    tiny(tmp_path, out, force=True, lr=1e-3)  # the claim released: --force works
    assert (out / ".replaced").is_dir()
    assert json.loads((job / "config.json").read_text())["recipe"]["lr"] == 1e-3


# --- 5. corrupt checkpoints ----------------------------------------------------------------------------

@pytest.mark.parametrize("content", [b"", b"\x93NUMPY random bytes \x00\xff" * 20, "truncate"])
def test_corrupt_checkpoint_is_moved_aside(tmp_path: Path, content: bytes | str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    tiny(tmp_path, out)
    job = out / STEP / "seed0"
    ck = job / "last.pt"
    ck.write_bytes(ck.read_bytes()[: ck.stat().st_size // 2] if content == "truncate" else content)  # type: ignore[index]
    (job / "result.json").write_text(json.dumps({"status": "running"}))
    capsys.readouterr()
    tiny(tmp_path, out)
    err = capsys.readouterr().err
    assert err.count("warning:") == 1 and "last.pt" in err and "corrupt-" in err, err
    assert list(job.glob("last.pt.corrupt-*"))
    assert json.loads((job / "result.json").read_text())["status"] == "done"


def test_previous_checkpoint_is_kept_until_the_new_one_is_written(tmp_path: Path) -> None:
    from modernize.files import atomic_torch_save

    a, b = tmp_path / "last.pt", tmp_path / "prev.pt"
    atomic_torch_save(a, {"v": 1}, keep_previous=b)
    atomic_torch_save(a, {"v": 2}, keep_previous=b)
    import torch

    assert torch.load(a)["v"] == 2 and torch.load(b)["v"] == 1


def test_corrupt_last_resumes_from_prev(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    tiny(tmp_path, out)
    job = out / STEP / "seed0"
    shutil.copy(job / "last.pt", job / "prev.pt")
    (job / "last.pt").write_bytes(b"garbage")
    (job / "result.json").write_text(json.dumps({"status": "running"}))
    capsys.readouterr()
    tiny(tmp_path, out)
    err = capsys.readouterr().err
    assert "trying prev.pt" in err
    assert not (job / "prev.pt").exists()  # a finished job keeps only last.pt


@pytest.mark.parametrize("fits", ["other_step", "garbage_rng", "infinite_epoch", "log_not_a_list"])
def test_checkpoint_that_does_not_fit_is_moved_aside_and_the_job_restarts(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], fits: str) -> None:
    """A readable checkpoint that does not fit the step (another step's, or an edited one): the
    fingerprint matches, so --force would not help; it is moved aside like an unreadable one and
    the job restarts to exactly the numbers of an uninterrupted run (nothing half-loaded)."""
    import torch

    out = tmp_path / "run"
    tiny(tmp_path, out)
    job = out / STEP / "seed0"
    want = json.loads((job / "result.json").read_text())["top1"]
    if fits == "other_step":
        from modernize.proxy import ProxyScale

        other = train_roadmap(None, data="synthetic:32", recipe=write_recipe(tmp_path), seeds=[0], out=tmp_path / "o",
                              steps=["resnet50"], device="cpu", progress=False,
                              proxy=ProxyScale(width=0.125, depth=0.34, stem_stride=2))
        shutil.copy(other / "resnet50" / "seed0" / "last.pt", job / "last.pt")
    else:
        edit = {"garbage_rng": {"rng": ["not a generator state"]}, "infinite_epoch": {"epoch": float("inf")},
                "log_not_a_list": {"log": "abc"}}[fits]
        ck = torch.load(job / "last.pt", weights_only=False)
        torch.save(ck | {"epoch": 0, "iter": 1} | edit, job / "last.pt")
    (job / "result.json").write_text(json.dumps({"status": "running"}))
    capsys.readouterr()
    tiny(tmp_path, out)
    err = capsys.readouterr().err
    assert err.count("warning:") == 1 and "does not fit" in err and "restarting the job" in err, err
    assert list(job.glob("last.pt.corrupt-*"))
    got = json.loads((job / "result.json").read_text())
    assert got["status"] == "done" and got["top1"] == want


# --- 4. stop requests in evaluation ----------------------------------------------------------------

def _tiny_two(tmp: Path, out: Path) -> Path:
    from modernize.proxy import ProxyScale

    return train_roadmap(None, data="synthetic:32", recipe=write_recipe(tmp, precise_bn_batches=1), seeds=[0], out=out,
                         steps=[STEP, "kernel_7"], device="cpu", progress=False,
                         proxy=ProxyScale(width=0.125, depth=0.34, stem_stride=2))


@pytest.mark.parametrize("where", ["evaluate", "precise_bn"])
def test_sigterm_during_evaluation_stops_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 where: str) -> None:
    """SIGTERM arrives as the evaluation (or precise BN) starts: the run stops (KeyboardInterrupt,
    exit 130 at the CLI), the next step does not start, the checkpoint is at the end of the
    epoch's training, and the same command then finishes the run."""
    import torch

    import modernize.train.loop as T

    real = getattr(T, where)
    sent: list[int] = []

    def signalled(*a: object, **kw: object) -> object:
        if not sent:
            sent.append(1)
            os.kill(os.getpid(), signal.SIGTERM)
        return real(*a, **kw)

    monkeypatch.setattr(T, where, signalled)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        _tiny_two(tmp_path, out)
    job = out / "kernel_7" / "seed0"  # kernel_7 comes first in the roadmap
    assert json.loads((job / "result.json").read_text())["status"] == "running"
    ck = torch.load(job / "last.pt", weights_only=False)
    assert (ck["epoch"], ck["iter"]) == (0, 2) and ck["log"] == []
    assert not (out / STEP).exists()
    monkeypatch.setattr(T, where, real)
    _tiny_two(tmp_path, out)
    assert json.loads((job / "result.json").read_text())["status"] == "done"
    assert json.loads((out / STEP / "seed0" / "result.json").read_text())["status"] == "done"


def test_stop_between_jobs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import modernize.train.runner as T

    real = T.run_job

    def then_signal(*a: object, **kw: object) -> object:
        rec = real(*a, **kw)
        os.kill(os.getpid(), signal.SIGTERM)
        return rec

    monkeypatch.setattr(T, "run_job", then_signal)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        _tiny_two(tmp_path, out)
    assert json.loads((out / "kernel_7" / "seed0" / "result.json").read_text())["status"] == "done"
    assert not (out / STEP).exists()


# --- 6. a step override without a substitute table -------------------------------------------------

def test_override_without_substitute_is_announced(tmp_path: Path) -> None:
    path = tmp_path / "bare.toml"
    path.write_text(recipe_text(TINY))
    notes = override_notes(load_recipe(path), load_roadmap(None).steps)
    assert notes == ["note: step resnet50 trains with recipe 'resnet_original' as written (90 epochs, 224 px, "
                     "batch 32): the run's recipe 'bare' has no [substitute.resnet_original] table"]
    assert override_notes(load_recipe(write_recipe(tmp_path)), load_roadmap(None).steps) == []
    cfg = prepare_run(None, data="synthetic:32", recipe=path, seeds=[0], out=tmp_path / "r", device="cpu")
    assert cfg.notes[0].startswith("budget: recipe 'bare': 1 epoch(s) over all training images, 16 px")
    assert cfg.notes[1:] == notes


# --- 7. the error boundary ---------------------------------------------------------------------------

def test_debug_shows_the_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("x")
    rc, _, err = call([*_flops_fix(tmp_path)[:-1], str(tmp_path / "file" / "sub"), "--debug"], capsys)
    assert rc == 2 and "Traceback" in err and err.strip().splitlines()[-1].startswith("error:")


# --- 8. the battery ----------------------------------------------------------------------------------

@dataclass
class Case:
    id: str
    argv: Callable[[Path], list[str]]
    culprit: str
    fix: Callable[[Path], list[str]] | None = None
    """The corrected command (default: none needed beyond ``setup``'s undo)."""
    setup: Callable[[Path], None] = lambda t: None
    undo: Callable[[Path], None] = lambda t: None
    rc: int = 2
    marks: tuple = field(default_factory=tuple)


def _w(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def _deep(key: str | None = None) -> str:
    """Nesting too deep for a recursive parser: TOML ``key = [[[...]]]``, or a JSON array."""
    return f"{key} = " + "[" * 3000 + "]" * 3000 + "\n" if key else "[" * 100_000 + "]" * 100_000


def _loop(path: Path) -> Path:
    """A symlink to itself."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(path.name, path)
    return path


def _fifo(path: Path) -> Path:
    """A named pipe where a file should be (reading it blocks until someone writes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    return path


SMALL = 'name = "small"\nbase = { from = "resnet50", depths = [1, 1, 1, 1], dims = [16, 32, 64, 128] }\n[[steps]]\nname = "r50"\n'
"""A one-step roadmap of a small ResNet (BatchNorm)."""


def _rm(t: Path, edit: Callable[[str], str]) -> str:
    return str(roadmap_copy(t, edit, "bad.toml"))


def _first_step(t: Path, name: str) -> str:
    return _rm(t, lambda s: s.replace('name = "stage_ratio"', f'name = {json.dumps(name)}'))


def _top(t: Path, line: str) -> str:
    """The roadmap with its first top-level ``KEY = ...`` line replaced by ``line``."""
    def edit(s: str) -> str:
        lines, key = s.splitlines(), line.split(" =")[0] + " ="
        i = next((i for i, ln in enumerate(lines) if ln.startswith(key)), None)
        return "\n".join([line] + lines[:i] + lines[i + 1:] if i is not None else [line] + lines) + "\n"
    return _rm(t, edit)


def _imports(t: Path, body: str, module: str = "usermod") -> str:
    _w(t / f"{module}.py", body)
    return _rm(t, lambda s: f'imports = ["{module}"]\n' + s)


def _image_folder(t: Path, *, empty_class: bool = False, mismatch: bool = False, corrupt: bool = False,
                  loop: bool = False, fifo: bool = False) -> str:
    from PIL import Image

    root = t / "imgs"
    for split, n in (("train", 24), ("val", 8)):
        for c in ("a", "b"):
            d = root / split / ("c" if mismatch and split == "val" and c == "b" else c)
            d.mkdir(parents=True, exist_ok=True)
            if empty_class and split == "train" and c == "b":
                continue
            for i in range(n // 2):
                Image.new("L", (16, 16), color=(i * 9) % 255).save(d / f"{i}.png")
    if corrupt:
        _w(root / "train" / "a" / "0.png", b"not a png")
    if loop:  # every image of class a would be listed ~40 times, and two loops never end
        os.symlink(".", root / "train" / "a" / "loop")
    if fifo:  # opening it would block the loader forever
        (root / "train" / "a" / "0.png").unlink()
        os.mkfifo(root / "train" / "a" / "0.png")
    return f"imagefolder:{root}"


def _report_run(t: Path) -> Path:
    """A trained tiny run folder (copied from one trained once per session)."""
    src = _trained_run()
    dst = t / "rep"
    if not dst.exists():
        shutil.copytree(src, dst)
    return dst


_TRAINED: list[Path] = []


def _trained_run() -> Path:
    if not _TRAINED:
        import tempfile

        base = Path(tempfile.mkdtemp(prefix="reliability-"))
        tiny(base, base / "run")
        _TRAINED.append(base / "run")
    return _TRAINED[0]


def _train_fix(t: Path) -> list[str]:
    return train_args(t, t / "out")


MINI = 'name = "mini"\nbase = "resnet50"\n[[steps]]\nname = "r50"\n'


def _flops_fix(t: Path) -> list[str]:  # one step at 32 px: the whole default table takes a minute here
    return ["flops", str(_w(t / "mini.toml", MINI)), "--resolution", "32", "--out", str(t / "flops_out")]


def _bench(t: Path, *extra: str) -> list[str]:
    return ["bench", "--steps", STEP, "--resolution", "32", "--batch", "1", "--repeats", "1", "--out",
            str(t / "bench_out"), *extra]


def _report_fix(t: Path) -> list[str]:
    return ["report", str(_report_run(t)), "--out", str(t / "report_out")]


def _bad_run_file(rel: str, content: bytes | str) -> Callable[[Path], None]:
    def setup(t: Path) -> None:
        run = _report_run(t)
        shutil.copy(run / rel, t / "saved")
        if content == "fifo":
            (run / rel).unlink()
            _fifo(run / rel)
        else:
            _w(run / rel, content)
    return setup


def _restore(rel: str) -> Callable[[Path], None]:
    def undo(t: Path) -> None:
        (_report_run(t) / rel).unlink()  # a FIFO would block the copy
        shutil.copy(t / "saved", _report_run(t) / rel)
    return undo


def _rj(t: Path) -> str:
    return str(_report_run(t))


ROADMAP_FAULTS = [  # (id, roadmap factory, culprit)
    ("step-escape", lambda t: _first_step(t, "../../escape"), "../../escape"),
    ("step-slash", lambda t: _first_step(t, "a/b"), "a/b"),
    ("step-dot", lambda t: _first_step(t, ".hidden"), ".hidden"),
    ("step-run.json", lambda t: _first_step(t, "run.json"), "run.json"),
    ("step-report", lambda t: _first_step(t, "report"), "report"),
    ("top-name-int", lambda t: _top(t, "name = 5"), "'name'"),
    ("top-description-list", lambda t: _top(t, "description = [1]"), "'description'"),
    ("top-recipe-int", lambda t: _top(t, "recipe = 3"), "'recipe'"),
    ("top-base-int", lambda t: _top(t, "base = 3"), "'base'"),
    ("top-paper-bool", lambda t: _top(t, "paper = true"), "'paper'"),
    ("imports-str", lambda t: _rm(t, lambda s: 'imports = "usermod"\n' + s), "'imports'"),
    ("imports-raises-runtime", lambda t: _imports(t, "raise RuntimeError('boom in user code')\n"), "usermod"),
    ("imports-raises-zero", lambda t: _imports(t, "1 / 0\n", "divmod_"), "divmod_"),
    ("imports-syntax", lambda t: _imports(t, "def (:\n", "synmod"), "synmod"),
    ("imports-missing", lambda t: _rm(t, lambda s: 'imports = ["no_such_mod_xyz"]\n' + s), "no_such_mod_xyz"),
    ("toml-syntax", lambda t: str(_w(t / "bad.toml", "name = [\n")), "bad.toml"),
    ("toml-not-utf8", lambda t: str(_w(t / "bad.toml", b"name = \"\xff\xfe\"\n")), "bad.toml"),
    ("unknown-transform", lambda t: _rm(t, lambda s: s.replace('transform = "stage_ratio"', 'transform = "nope"')),
     "nope"),
    ("toml-deep", lambda t: str(_w(t / "bad.toml", _deep("name"))), "bad.toml"),
    ("depths-huge", lambda t: _rm(t, lambda s: s.replace("depths = [3, 3, 9, 3]", "depths = [3, 3, 1000000000, 3]")),
     "depths"),
    ("width-huge", lambda t: _rm(t, lambda s: s.replace("width = 96", "width = 1000000000")), "dims"),
    ("paper-not-utf8", lambda t: (_w(t / "p.csv", b"row,x\nresnet50,\xff\n"), _rm(t, lambda s: s.replace(
        f'paper = "{ABLATIONS_DIR}/paper/paper_roadmap_r50.csv"', 'paper = "p.csv"')))[1], "p.csv"),
]

CASES: list[Case] = []
for cid, make, culprit in ROADMAP_FAULTS:
    CASES.append(Case(f"flops-{cid}", (lambda m: lambda t: ["flops", m(t), "--out", str(t / "flops_out")])(make),
                      culprit, fix=_flops_fix))
for cid, make, culprit in ROADMAP_FAULTS[:8] + ROADMAP_FAULTS[11:13]:
    CASES.append(Case(f"describe-{cid}", (lambda m: lambda t: ["describe", m(t), "--no-counts"])(make), culprit,
                      fix=lambda t: ["describe", "--no-counts", "--step", STEP]))
for cid, make, culprit in ROADMAP_FAULTS[:4] + ROADMAP_FAULTS[11:12]:
    CASES.append(Case(f"bench-{cid}", (lambda m: lambda t: ["bench", m(t), *_bench(t)[1:]])(make), culprit,
                      fix=lambda t: _bench(t)))
for cid, make, culprit in ROADMAP_FAULTS[:3] + ROADMAP_FAULTS[5:6] + ROADMAP_FAULTS[11:12]:
    CASES.append(Case(f"train-{cid}", (lambda m: lambda t: ["train", m(t), *train_args(t, t / "out")[1:]])(make),
                      culprit, fix=_train_fix))

CASES += [
    # output paths
    Case("flops-out-is-file", lambda t: _flops_fix(t)[:-1] + [str(_w(t / "f", "x"))], "/f",
         fix=_flops_fix),
    Case("flops-out-under-file", lambda t: _flops_fix(t)[:-1] + [str(_w(t / "f", "x") / "sub")], "/f",
         fix=_flops_fix),
    Case("flops-out-proc", lambda t: _flops_fix(t)[:-1] + ["/proc/modernize-out"], "/proc/modernize-out",
         fix=_flops_fix),
    Case("bench-out-is-file", lambda t: _bench(t)[:-1] + [str(_w(t / "f", "x"))], "/f", fix=_bench),
    Case("bench-unknown-step", lambda t: ["bench", "--steps", "nope", "--out", str(t / "b")], "nope", fix=_bench),
    Case("bench-batch-0", lambda t: _bench(t, "--batch", "0"), "--batch", fix=_bench),
    Case("bench-device-tpu", lambda t: _bench(t, "--device", "tpu"), "tpu", fix=_bench),
    Case("describe-unknown-step", lambda t: ["describe", "--step", "nope", "--no-counts"], "nope",
         fix=lambda t: ["describe", "--no-counts", "--step", STEP]),
    Case("describe-resolution-abc", lambda t: ["describe", "--resolution", "abc"], "abc",
         fix=lambda t: ["describe", "--no-counts", "--step", STEP]),
    Case("flops-resolution-8", lambda t: _flops_fix(t) + ["--resolution", "8"], "32", fix=_flops_fix),
    Case("train-out-is-file", lambda t: train_args(t, _w(t / "out", "x")), "/out", fix=_train_fix,
         undo=lambda t: (t / "out").unlink()),
    Case("train-out-under-file", lambda t: train_args(t, _w(t / "f", "x") / "out"), "/f",
         fix=lambda t: train_args(t, t / "out")),
    Case("train-out-proc", lambda t: train_args(t, Path("/proc/modernize-out")), "/proc/modernize-out",
         fix=_train_fix),
    # recipes
    Case("train-recipe-nan-lr", lambda t: train_args(t, t / "out", recipe=_w(t / "r.toml", "lr = nan\n")), "'lr'",
         fix=_train_fix),
    Case("train-recipe-inf-wd", lambda t: train_args(t, t / "out", recipe=_w(t / "r.toml", "weight_decay = inf\n")),
         "weight_decay", fix=_train_fix),
    Case("train-recipe-nan-decay", lambda t: train_args(
        t, t / "out", recipe=_w(t / "r.toml", "schedule = \"step\"\ndecay_epochs = [nan]\n")), "decay_epochs",
        fix=_train_fix),
    Case("train-recipe-nan-substitute", lambda t: train_args(
        t, t / "out", steps=("resnet50",),
        recipe=_w(t / "r.toml", 'base = "quick"\nepochs = 1\nwarmup_epochs = 0\n[substitute.resnet_original]\nlr = -inf\n')),
        "'lr'", fix=_train_fix),
    Case("train-recipe-decay-inside-warmup", lambda t: train_args(  # the decay never applied, without a word
        t, t / "out", recipe=_w(t / "r.toml", 'epochs = 4\nschedule = "step"\nwarmup_epochs = 2\ndecay_epochs = [1, 3]\n')),
        "decay_epochs", fix=_train_fix),
    Case("train-recipe-substitute-typo", lambda t: train_args(  # else resnet50 would train 90 epochs at 224 px
        t, t / "out", steps=("resnet50",), recipe=_w(t / "r.toml", 'base = "quick"\n[substitute.resnet_orginal]\nepochs = 1\n')),
        "substitute.resnet_orginal", fix=_train_fix),
    Case("train-recipe-eval-crop-tiny", lambda t: train_args(  # evaluation would resize to 32,000 px
        t, t / "out", recipe=_w(t / "r.toml", 'crop = "rrc"\nresolution = 16\neval_crop_pct = 0.0005\n')),
        "eval_crop_pct", fix=_train_fix),
    Case("train-recipe-lr-string", lambda t: train_args(t, t / "out", recipe=_w(t / "r.toml", 'lr = "fast"\n')),
         "'lr'", fix=_train_fix),
    Case("train-recipe-unknown-key", lambda t: train_args(t, t / "out", recipe=_w(t / "r.toml", "lrr = 1\n")),
         "lrr", fix=_train_fix),
    Case("train-recipe-missing", lambda t: train_args(t, t / "out", recipe=t / "none.toml"), "none.toml",
         fix=_train_fix),
    Case("train-recipe-not-utf8", lambda t: train_args(t, t / "out", recipe=_w(t / "r.toml", b"lr = \xff\n")),
         "r.toml", fix=_train_fix),
    # data and batch checks (nothing written, the folder is not locked)
    Case("train-batch-larger-than-data", lambda t: train_args(t, t / "out", recipe=write_recipe(t, "big", batch_size=64)),
         "global batch of 64",
         fix=_train_fix),
    Case("train-data-unknown", lambda t: train_args(t, t / "out", data="mnist"), "mnist", fix=_train_fix),
    Case("train-imagefolder-missing", lambda t: train_args(t, t / "out", data="imagefolder:/no/such"), "/no/such",
         fix=_train_fix),
    Case("train-imagefolder-empty-class", lambda t: train_args(t, t / "out", data=_image_folder(t, empty_class=True)),
         "/b", fix=_train_fix),
    Case("train-imagefolder-class-mismatch", lambda t: train_args(t, t / "out", data=_image_folder(t, mismatch=True)),
         "val", fix=_train_fix),
    # flags
    Case("train-steps-unknown", lambda t: train_args(t, t / "out", steps=("nope",)), "nope", fix=_train_fix),
    Case("train-seeds-negative", lambda t: train_args(t, t / "out", "--seeds", "-1"), "-1", fix=_train_fix),
    Case("train-claim-timeout-0", lambda t: train_args(t, t / "out", "--claim-timeout", "0"), "--claim-timeout",
         fix=_train_fix),
    Case("train-workers-0", lambda t: train_args(t, t / "out", "--workers", "0"), "--workers", fix=_train_fix),
    Case("train-device-tpu", lambda t: train_args(t, t / "out", "--device", "tpu"), "tpu", fix=_train_fix),
    Case("train-proxy-unknown", lambda t: ["train", "--proxy", "huge", *train_args(t, t / "out")[1:]], "huge",
         fix=_train_fix),
    Case("train-proxy-and-width", lambda t: ["train", "--proxy", *train_args(t, t / "out")[1:]], "--proxy",
         fix=_train_fix),
    # run folders that are not ours / not readable
    Case("train-run-json-not-utf8", lambda t: train_args(t, _w(t / "out" / "run.json", b"\xff\xfe").parent),
         "run.json", fix=_train_fix, undo=lambda t: (t / "out" / "run.json").unlink()),
    Case("train-run-json-list", lambda t: train_args(t, _w(t / "out" / "run.json", "[1, 2]").parent), "run.json",
         fix=_train_fix, undo=lambda t: (t / "out" / "run.json").unlink()),
    Case("train-job-config-not-utf8", lambda t: train_args(
        t, _w(t / "out" / STEP / "seed0" / "config.json", b"\xff").parent.parent.parent), "config.json",
        fix=lambda t: _train_fix(t) + ["--force"]),
    Case("train-job-config-list", lambda t: train_args(
        t, _w(t / "out" / STEP / "seed0" / "config.json", "[]").parent.parent.parent), "config.json",
        fix=lambda t: _train_fix(t) + ["--force"]),
    Case("train-fingerprint-differs", lambda t: (tiny(t, t / "out"), train_args(
        t, t / "out", recipe=write_recipe(t, "other", lr=1e-3)))[1], "recipe.lr",
        fix=lambda t: train_args(t, t / "out", "--force", recipe=t / "other.toml")),
    Case("train-fingerprint-after-run-json-deleted", lambda t: (tiny(t, t / "out"), (t / "out" / "run.json").unlink(),
                                                                 train_args(t, t / "out", data="synthetic:48"))[2],
         "synthetic", fix=lambda t: train_args(t, t / "out", "--force", data="synthetic:48")),
    # report
    Case("report-missing-dir", lambda t: ["report", str(t / "nope")], "nope", fix=_report_fix),
    Case("report-run-json-not-utf8", lambda t: ["report", _rj(t)], "run.json",
         setup=_bad_run_file("run.json", b"\xff\xfe"), undo=_restore("run.json"), fix=_report_fix),
    Case("report-run-json-list", lambda t: ["report", _rj(t)], "run.json", setup=_bad_run_file("run.json", "[]"),
         undo=_restore("run.json"), fix=_report_fix),
    Case("report-run-json-torn", lambda t: ["report", _rj(t)], "run.json", setup=_bad_run_file("run.json", '{"a'),
         undo=_restore("run.json"), fix=_report_fix),
    Case("report-result-not-utf8", lambda t: ["report", _rj(t)], "result.json",
         setup=_bad_run_file(f"{STEP}/seed0/result.json", b"\xff"), undo=_restore(f"{STEP}/seed0/result.json"),
         fix=_report_fix),
    Case("report-result-list", lambda t: ["report", _rj(t)], "result.json",
         setup=_bad_run_file(f"{STEP}/seed0/result.json", "[1]"), undo=_restore(f"{STEP}/seed0/result.json"),
         fix=_report_fix),
    Case("report-out-is-file", lambda t: ["report", _rj(t), "--out", str(_w(t / "f", "x"))], "/f", fix=_report_fix),
    # issue 11, found by the hostile battery (tests/battery/): sizes past any real run, deep nesting, FIFOs, loops
    Case("flops-resolution-huge", lambda t: _flops_fix(t) + ["--resolution", "100000000"], "resolution", fix=_flops_fix),
    Case("describe-resolution-huge", lambda t: ["describe", "--step", STEP, "--resolution", "100000000"], "resolution"),
    Case("bench-batch-huge", lambda t: _bench(t, "--batch", str(10 ** 12)), "batch", fix=_bench),
    Case("bench-batch-one-batchnorm", lambda t: ["bench", str(_w(t / "small.toml", SMALL)), "--batch", "1",
                                                 "--resolution", "32", "--repeats", "1", "--out", str(t / "b")],
         "--batch", fix=_bench),
    Case("bench-threads-huge", lambda t: _bench(t, "--threads", "100000"), "--threads", fix=_bench),
    Case("bench-data-images-huge", lambda t: ["bench-data", "--images", str(10 ** 10)], "--images"),
    Case("train-seeds-huge", lambda t: train_args(t, t / "out", "--seeds", str(10 ** 30)), "seed", fix=_train_fix),
    Case("train-steps-empty", lambda t: [a if a != STEP else "" for a in train_args(t, t / "out")], "--steps",
         fix=_train_fix),
    Case("train-workers-huge", lambda t: train_args(t, t / "out", "--workers", "100000"), "--workers", fix=_train_fix),
    Case("train-data-synthetic-huge", lambda t: train_args(t, t / "out", data=f"synthetic:{10 ** 12}"), "synthetic",
         fix=_train_fix),
    Case("train-out-symlink-loop", lambda t: train_args(t, _loop(t / "loop")), "loop", fix=_train_fix),
    Case("report-out-symlink-loop", lambda t: ["report", _rj(t), "--out", str(_loop(t / "loop"))], "loop",
         fix=_report_fix),
    Case("train-recipe-deep", lambda t: train_args(t, t / "out", recipe=_w(t / "r.toml", _deep("lr"))), "r.toml",
         fix=_train_fix),
    Case("train-recipe-resolution-huge", lambda t: train_args(t, t / "out", recipe=_w(t / "r.toml", "resolution = 100000000\n")),
         "resolution", fix=_train_fix),
    Case("train-job-config-deep", lambda t: train_args(
        t, _w(t / "out" / STEP / "seed0" / "config.json", _deep()).parent.parent.parent), "config.json",
        fix=lambda t: _train_fix(t) + ["--force"]),
    Case("train-job-config-fifo", lambda t: train_args(t, _fifo(t / "out" / STEP / "seed0" / "config.json").parent.parent.parent),
         "config.json", fix=lambda t: _train_fix(t) + ["--force"]),
    Case("train-imagefolder-symlink-loop", lambda t: train_args(t, t / "out", data=_image_folder(t, loop=True)), "loop",
         fix=_train_fix),
    Case("train-imagefolder-fifo", lambda t: train_args(t, t / "out", data=_image_folder(t, fifo=True)), "0.png",
         fix=_train_fix),
    Case("report-result-deep", lambda t: ["report", _rj(t)], "result.json",
         setup=_bad_run_file(f"{STEP}/seed0/result.json", _deep()), undo=_restore(f"{STEP}/seed0/result.json"),
         fix=_report_fix),
    Case("report-run-json-deep", lambda t: ["report", _rj(t)], "run.json", setup=_bad_run_file("run.json", _deep()),
         undo=_restore("run.json"), fix=_report_fix),
    Case("report-run-json-fifo", lambda t: ["report", _rj(t)], "run.json", setup=_bad_run_file("run.json", "fifo"),
         undo=_restore("run.json"), fix=_report_fix),
    Case("report-bench-csv-not-utf8", lambda t: ["report", _rj(t)], "bench.csv",
         setup=lambda t: _w(_report_run(t) / "bench.csv", b"step,x\n\xff\xfe\n"),
         undo=lambda t: (_report_run(t) / "bench.csv").unlink(), fix=_report_fix),
]


def _blank_figures(monkeypatch: pytest.MonkeyPatch) -> None:
    """The corrected command draws blank figures: it only has to run through. Drawing the four
    real ones was most of a tiny `train`'s time (cProfile of one fix, machine under load: 8.2 of 11.7 s in
    matplotlib's savefig); tests/test_report.py checks the figures themselves."""
    from modernize.report import figures

    def blank(*args: object) -> object:
        return figures.pyplot().figure(figsize=(1, 1))

    for name in ("roadmap_figure", "acc_vs_gmacs_figure", "curves_figure"):
        monkeypatch.setattr(figures, name, blank)


def _battery(case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
             fix: bool) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    case.setup(tmp_path)
    capsys.readouterr()
    def outside() -> set[Path]:
        # two levels up also holds the other test workers' folders (pytest-xdist): they come and go
        above = {p for p in tmp_path.parent.parent.iterdir() if not p.name.startswith("popen-gw")}
        return set(tmp_path.parent.iterdir()) | above

    before = outside()
    rc, _, err = call(case.argv(tmp_path), capsys)
    assert rc == case.rc, err
    one_line_error(err, case.culprit)
    assert outside() == before  # nothing written beside the case's folder
    case.undo(tmp_path)
    if fix and case.fix is not None:
        _blank_figures(monkeypatch)
        rc, _, err = call(case.fix(tmp_path), capsys)
        assert rc == 0, err
        assert "Traceback" not in err


_FAST = [c for c in CASES if not c.id.startswith(("train-fingerprint", "report-"))]
"""Cases whose fault itself needs no trained run folder."""


@pytest.mark.parametrize("case", _FAST, ids=[c.id for c in _FAST])
def test_battery(case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The fault: exit code, one line naming the culprit, no traceback, nothing outside."""
    _battery(case, tmp_path, capsys, monkeypatch, fix=False)


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_battery_then_fixed(case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The fault, then the corrected command on the same folder (trains, counts, reports: slow here)."""
    _battery(case, tmp_path, capsys, monkeypatch, fix=True)


def test_battery_has_at_least_60_cases() -> None:
    assert len(CASES) >= 60


# --- 9. found by the hostile battery (tests/battery/) -----------------------------------------------

@pytest.mark.parametrize("cmd, work", [("flops", "modernize.views.flops_table.flops_table"),
                                       ("bench", "modernize.bench.bench_roadmap"),
                                       ("report", "modernize.report.figures.roadmap_figure")])
def test_out_is_checked_before_the_work(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch, cmd: str, work: str) -> None:
    """A bad --out fails in a second, before the counting, timing or figures it would have lost."""
    module, name = work.rsplit(".", 1)

    def forbidden(*a: object, **kw: object) -> None:
        raise AssertionError(f"{name} ran before --out was checked")

    monkeypatch.setattr(module + "." + name, forbidden)
    bad = str(_w(tmp_path / "f", "x"))
    argv = {"flops": _flops_fix(tmp_path)[:-1] + [bad], "bench": _bench(tmp_path)[:-1] + [bad],
            "report": ["report", _rj(tmp_path), "--out", bad]}[cmd]
    rc, _, err = call(argv, capsys)
    assert rc == 2
    one_line_error(err, "/f")
    ro = tmp_path / "ro" / "sub"  # a folder that cannot be created: nothing is left behind by the check
    rc, _, err = call(argv[:-1] + [str(_w(tmp_path / "ro", "x") / "sub")], capsys)
    assert rc == 2 and not ro.exists()


def test_out_check_creates_nothing(tmp_path: Path) -> None:
    """The --out check makes no folder: two `train` runs finishing together both write RUN_DIR/report
    (one used to fail with 'File exists' when the check created and removed the folder)."""
    from modernize.files import check_writable_dir

    check_writable_dir(tmp_path / "a" / "b" / "c")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "a").mkdir()
    check_writable_dir(tmp_path / "a")  # exists already: fine
    assert [p.name for p in tmp_path.rglob("*")] == ["a"]


def test_sigterm_outside_training_stops_with_130(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGTERM during flops (or report, bench, describe) is a stop like Ctrl-C: exit 130, one line,
    no half-written table; the handler is restored afterwards."""
    import modernize.views.flops_table as F

    real = F.count

    def signalled(*a: object, **kw: object) -> object:
        os.kill(os.getpid(), signal.SIGTERM)
        return real(*a, **kw)

    monkeypatch.setattr(F, "count", signalled)
    rc, _, err = call(_flops_fix(tmp_path), capsys)
    assert rc == 130 and err.strip().splitlines()[-1] == "interrupted", err
    assert not (tmp_path / "flops_out").exists()
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def _edited_result(run: Path, **values: object) -> None:
    path = run / STEP / "seed0" / "result.json"
    path.write_text(json.dumps(json.loads(path.read_text()) | values).replace('"__inf__"', "Infinity"))


@pytest.mark.parametrize("edit", ["top1-inf", "top1-nan", "params-inf", "one-step"])
def test_report_never_prints_a_non_finite_number(tmp_path: Path, capsys: pytest.CaptureFixture[str], edit: str) -> None:
    """NaN/Infinity edited into result.json (bench.csv: refused, test_reproduction.py), or a figure that needs two seeds: the
    report shows an empty cell or n/a (the job as not done), never 'nan'/'inf', and draws its figures."""
    run = _report_run(tmp_path)
    if edit == "top1-inf":
        _edited_result(run, top1="__inf__")
    elif edit == "top1-nan":
        _edited_result(run, top1=float("nan"))
    elif edit == "params-inf":
        _edited_result(run, params_m="__inf__")
    rc, out, err = call(["report", str(run), "--out", str(tmp_path / "out")], capsys)
    assert rc == 0, err
    shown = out + (tmp_path / "out" / "table.md").read_text()
    assert not re.search(r"(?<![A-Za-z_])[+-]?(nan|inf)(?![A-Za-z_])", shown, re.IGNORECASE), shown
    if edit.startswith("top1"):
        assert "done without top1" in shown
    if edit == "one-step":
        assert "separate_downsampling - " in out and "= n/a" in out


def test_report_in_a_deleted_working_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = _report_run(tmp_path)
    gone = tmp_path / "gone"
    gone.mkdir()
    here = os.getcwd()
    os.chdir(gone)
    try:
        gone.rmdir()
        rc, _, err = call(["report", str(run), "--out", str(tmp_path / "out")], capsys)
    finally:
        os.chdir(here)
    assert rc == 0, err


def test_image_folder_listing_is_torchvision_order_without_loops(tmp_path: Path) -> None:
    """The folder walk that refuses symlink loops lists the same samples, in the same order, as
    torchvision's make_dataset (so runs keep their data order)."""
    from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

    from modernize.data import DataSpec, folder_split

    root = tmp_path / "d" / "train"
    for rel in ("b/2.png", "b/10.png", "a/z/1.PNG", "a/0.jpg", "a/y/q/3.png", "a/notes.txt", "c/x.webp"):
        _w(root / rel, b"x")
    _w(tmp_path / "elsewhere" / "4.png", b"x")
    (root / "c" / "link").symlink_to(tmp_path / "elsewhere", target_is_directory=True)  # read once: followed
    spec = DataSpec("imagefolder", str(tmp_path / "d"))
    classes, samples = folder_split(spec, root, None)
    assert (classes, samples) == (find_classes(str(root))[0], make_dataset(str(root), find_classes(str(root))[1],
                                                                           extensions=IMG_EXTENSIONS))
    (root / "a" / "y" / "up").symlink_to(root / "a", target_is_directory=True)
    with pytest.raises(ConfigError, match=r"a/y/up leads to a folder already read"):
        folder_split(spec, root, None)


@pytest.mark.parametrize("link, first", [
    ("train/c", "train/a"),          # a class folder linked to another class: every image under two labels
    ("train/c/sub", "train/a"),      # the same, one level down
    ("val/a", "train/a"),            # val/ linked to train/: the test set trained on
    ("train/c/0.png", "train/a/0.png"),  # one image linked into a second class
])
def test_a_folder_or_image_reached_twice_across_classes_or_splits_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], link: str, first: str) -> None:
    """One ``seen`` for the whole image folder: a folder or linked image read under two labels,
    or under train/ and val/, is refused before training (and in the loader) naming the link."""
    from modernize.data import DataSpec, folder_split

    root = tmp_path / "d"
    for split in ("train", "val"):
        for cls in ("a", "b", "c"):
            _w(root / split / cls / "0.png", b"x")
    target = root / first
    dest = root / link
    if dest.exists():
        shutil.rmtree(dest) if dest.is_dir() else dest.unlink()
    dest.symlink_to(target, target_is_directory=target.is_dir())
    spec = DataSpec("imagefolder", str(root))
    pattern = rf"{re.escape(link)} (leads to a folder|links to an image) already read \(.*{re.escape(first)}"
    with pytest.raises(ConfigError, match=pattern):
        seen: dict[tuple[int, int], str] = {}
        classes, _ = folder_split(spec, root / "train", None, seen=seen)
        folder_split(spec, root / "val", classes, seen=seen)
    if target.is_dir():  # the preflight check (before anything is written) sees the folder links too
        rc, _, err = call(train_args(tmp_path, tmp_path / "out", data=f"imagefolder:{root}"), capsys)
        assert rc == 2 and not (tmp_path / "out").exists()
        one_line_error(err, link)


def test_long_tmpdir_turns_loader_workers_off(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Workers send batches through AF_UNIX sockets under $TMPDIR; a path past 107 bytes made the
    loader wait forever. Now: one warning, then loading in the main process."""
    import multiprocessing.util

    from modernize.data import Loaders

    assert Loaders(1).workers == 1
    monkeypatch.setattr(multiprocessing.util, "get_temp_dir", lambda: "/tmp/" + "t" * 100)
    loaders = Loaders(1)
    assert loaders.workers == 0 and loaders.workers == 0
    assert capsys.readouterr().err.count("warning: data loader workers off") == 1


def test_rename_errors_name_both_paths() -> None:
    from modernize.boundary import expected_message

    exc = IsADirectoryError(21, "Is a directory", "/r/.last.pt.x.tmp", None, "/r/last.pt")
    assert expected_message(exc) == "error: /r/.last.pt.x.tmp -> /r/last.pt: Is a directory"


def test_bench_data_jpegs_with_fewer_images_than_classes(tmp_path: Path) -> None:
    from modernize.bench_data import make_jpegs

    root = make_jpegs(tmp_path, 3)
    assert sorted(p.name for p in (root / "train").iterdir()) == sorted(p.name for p in (root / "val").iterdir())


def test_python_m_modernize_is_the_command_line() -> None:
    import importlib.util

    spec = importlib.util.find_spec("modernize.__main__")
    assert spec is not None and "from .cli import main" in Path(spec.origin or "").read_text()
