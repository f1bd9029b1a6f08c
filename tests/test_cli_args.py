"""Flag combinations that make no sense stop with one line and exit 2, before any work."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from modernize.cli import main

from .conftest import load_script


@pytest.mark.parametrize("extra", [["--width", "0.5"], ["--depth", "0.5"], ["--low-res", "1"]])
def test_proxy_excludes_manual_scale(tmp_path: Path, extra: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(["train", "--proxy", *extra, "--data", "synthetic:8", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--proxy" in err[0]
    assert not out.exists()


@pytest.mark.parametrize("argv", [["train", "--seeds", "-1"], ["bench", "--batch", "0"],
                                  ["flops", "--resolution", "16"]])
def test_bad_numbers(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_step_lists_take_spaces_or_commas() -> None:
    from modernize.cli.argtypes import step_names

    assert step_names(["a", "b,c", " d "]) == ["a", "b", "c", "d"]
    assert step_names(None) is None


def test_gpu_check_script_answers_like_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """scripts/gpu_train_check.py runs behind the command line's error boundary (as does
    scripts/proxy_study.py, tests/test_fidelity.py): a device the library refuses is one line
    and exit 2, never a traceback."""
    gpu_check = load_script("gpu_train_check")
    rc = gpu_check.cli(["--device", "tpu", "--no-parity", "--images", "64", "--out", str(tmp_path / "gpu")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: ") and "--device" in lines[0], lines


@pytest.mark.parametrize("argv, dest, want", [
    (["train", "--seeds", "0", "1", "--seeds", "2"], "seeds", [0, 1, 2]),
    (["train", "--seeds", "3"], "seeds", [3]),  # the default [0] is replaced, not extended
    (["train"], "seeds", [0]),
    (["train", "--steps", "a", "--steps", "b,c"], "steps", ["a", "b,c"]),
    (["bench", "--steps", "a", "--steps", "b"], "steps", ["a", "b"]),
    (["bench-data", "--train-img-s", "5", "--train-img-s", "7"], "train_img_s", [5.0, 7.0]),
])
def test_a_list_flag_given_twice_keeps_every_value(argv: list[str], dest: str, want: list) -> None:
    """argparse's default kept only the last group (``--seeds 0 1 --seeds 2`` trained seed 2 alone)."""
    from modernize.cli import build_parser

    assert getattr(build_parser().parse_args(argv), dest) == want


def test_proxy_study_list_flags_keep_every_value(monkeypatch: pytest.MonkeyPatch) -> None:
    study = load_script("proxy_study")
    seen: list = []
    monkeypatch.setattr(study, "run_config",
                        lambda cfg, seeds, workers: seen.append((cfg.name, seeds)) or {"wall_s_this_invocation": 0})
    assert study.main(["--only", "A", "--only", "B", "--seeds", "0", "--seeds", "1"]) == 0
    assert seen == [("A", [0, 1]), ("B", [0, 1])]


HEAVY = ("torch", "torchvision", "fvcore", "pandas", "matplotlib", "scipy")


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["train", "--seeds", "x"], ["report", "--help"],
                                  ["bench", "--help"], ["describe", "--help"], ["flops", "--help"],
                                  ["compare", "--help"]])
def test_help_and_argument_errors_import_nothing_heavy(argv: list[str]) -> None:
    """--help and argument errors are instant: building the parser imports none of the heavy packages."""
    code = ("import sys\nfrom modernize.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            f"heavy = sorted(m for m in {HEAVY!r} if m in sys.modules)\nprint('HEAVY', heavy)\n")
    proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=60)
    assert "HEAVY []" in proc.stdout, proc.stdout + proc.stderr


def test_lazy_package_exports_resolve() -> None:
    import modernize

    assert set(modernize.__all__) <= set(dir(modernize))
    for name in modernize.__all__:
        assert getattr(modernize, name) is not None
    with pytest.raises(AttributeError):
        modernize.no_such_name  # noqa: B018
