"""``bench``: the per-step table's schema at tiny size, the parity table's schema, CLI errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import torch

from modernize import base_spec, load_roadmap
from modernize.bench import BENCH_COLUMNS, PARITY_COLUMNS, bench_roadmap, parity
from modernize.cli import main
from modernize.errors import ConfigError

# Two small steps (1+1 blocks, narrow) so that a timed training step takes milliseconds.
TINY_ROADMAP = """
name = "tiny"
base = { from = "resnet50", depths = [1, 1], dims = [32, 64], stem_width = 16, num_classes = 10 }

[[steps]]
name = "tiny_resnet"

[[steps]]
name = "tiny_gelu"
apply = "gelu"

[[steps]]
name = "tiny_gelu_again"
change = "same architecture: measured once"
"""


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """One torch thread: on a shared, oversubscribed CPU every parallel op of a tiny model
    otherwise waits for a descheduled OpenMP thread (10x slower, seconds per test)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture()
def tiny_roadmap(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_ROADMAP)
    return path


def test_bench_roadmap_schema_two_steps(tiny_roadmap: Path) -> None:
    table = bench_roadmap(load_roadmap(tiny_roadmap), device="cpu", batch=2, resolution=32, repeats=2,
                          warmup=1, steps=["tiny_resnet", "tiny_gelu"])
    assert list(table.columns) == BENCH_COLUMNS
    assert list(table.step) == ["tiny_resnet", "tiny_gelu"]
    assert (table.infer_img_s > 0).all() and (table.train_img_s > 0).all()
    assert (table.gmacs > 0).all() and (table.params_m > 0).all()
    assert (table.repeats == 2).all() and (table.batch == 2).all() and (table.resolution == 32).all()
    assert set(table.device) == {"cpu"} and set(table.dtype) == {"fp32"}
    assert (table.peak_mem_mb.notna()).all() and set(table.mem_method) == {"rss_peak_delta"}


def test_same_architecture_measured_once(tiny_roadmap: Path) -> None:
    table = bench_roadmap(load_roadmap(tiny_roadmap), batch=2, resolution=32, repeats=1, warmup=1,
                          steps=["tiny_gelu", "tiny_gelu_again"])
    first, second = table.drop(columns="step").to_dict("records")
    assert first == second


def test_parity_schema_tiny() -> None:
    table = parity([base_spec("convnext_tiny")], batch=2, resolution=32, repeats=2, warmup=1)
    assert list(table.columns) == PARITY_COLUMNS
    assert list(zip(table["model"], table["mode"])) == [("convnext_tiny", "infer"), ("convnext_tiny", "train")]
    assert (table.ratio > 0).all()
    assert (table.ratio_min <= table.ratio_max).all()
    assert (table.repeats == 2).all() and (table.threads == 1).all()


def test_parity_refuses_a_spec_without_torchvision_twin() -> None:
    with pytest.raises(ConfigError, match="torchvision twin"):
        parity([base_spec("resnet200")], batch=2, resolution=32, repeats=1, warmup=1)


def test_cli_writes_bench_csv(tiny_roadmap: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    rc = main(["bench", str(tiny_roadmap), "--batch", "2", "--resolution", "32", "--repeats", "1",
               "--steps", "tiny_resnet", "--out", str(out)])
    assert rc == 0
    table = pd.read_csv(out / "bench.csv")
    assert list(table.columns) == BENCH_COLUMNS and list(table.step) == ["tiny_resnet"]


@pytest.mark.parametrize("argv, message", [
    (["bench", "--device", "tpu"], "invalid choice"),
    (["bench", "--batch", "0"], "positive integer"),
    (["bench", "--resolution", "8"], ">= 32"),
    (["bench", "--repeats", "x"], "positive integer"),
    (["bench", "--steps", "nope"], "unknown step(s) nope"),
    (["bench", "--steps", ","], "--steps"),
    (["bench", "no_such_roadmap"], "no such file"),
    (["bench", "resnet200_to_convnext_b", "--parity", "--steps", "resnet200"], "no torchvision twin"),
])
def test_cli_bad_input_exits_2_with_one_line(argv: list[str], message: str, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    with_out = argv + ["--out", str(tmp_path / "never")]
    try:
        rc = main(with_out)
    except SystemExit as exc:  # argparse errors exit from inside parse_args
        rc = exc.code
    err = capsys.readouterr().err
    assert rc == 2
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "never").exists()


def test_cli_cuda_without_cuda_is_one_line_error(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["bench", "--device", "cuda", "--out", str(tmp_path / "never")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --device cuda: CUDA is not available") and len(err.splitlines()) == 1
    assert not (tmp_path / "never").exists()
