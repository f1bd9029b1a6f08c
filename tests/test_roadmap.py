"""Roadmap files: the built-ins load, and every kind of bad file gets one clear line, exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from modernize import ConfigError, load_roadmap

from .conftest import ROADMAPS, ROOT, load, paper_rows

GOOD = """
name = "mini"
base = "resnet50"
[[steps]]
name = "resnet50"
[[steps]]
name = "stage_ratio"
apply = { transform = "stage_ratio", depths = [3, 3, 9, 3] }
"""


@pytest.mark.parametrize("name", ROADMAPS)
def test_builtin_roadmaps_name_every_paper_row_once(name: str) -> None:
    roadmap = load(name)
    rows = [s.paper_row for s in roadmap]
    assert rows == list(paper_rows(name))  # every CSV row, in the paper's order
    assert all(s.paper for s in roadmap)
    assert roadmap.recipe == "paper"
    assert roadmap[0].recipe == "resnet_original"
    assert roadmap["recipe"].spec == roadmap[0].spec


def test_user_file_reorder_drop_add(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(GOOD + '[[steps]]\nname = "k5"\napply = [{ transform = "kernel_size", kernel_size = 5 }, "gelu"]\n')
    roadmap = load_roadmap(path)
    assert roadmap.names == ["resnet50", "stage_ratio", "k5"]
    assert roadmap["k5"].spec.kernel_size == 5 and roadmap["k5"].spec.act == "gelu"
    assert roadmap["k5"].spec.depths == (3, 3, 9, 3)
    assert roadmap["k5"].change == "kernel size (kernel_size=5) + ReLU -> GELU"


BAD = [
    ("syntax", "name = \n", "TOML syntax error"),
    ("unknown_transform", GOOD + '[[steps]]\nname = "x"\napply = "nope"\n',
     "step 'x': apply: unknown transform 'nope'"),
    ("unknown_param", GOOD + '[[steps]]\nname = "x"\napply = { transform = "kernel_size", size = 5 }\n',
     "step 'x': transform 'kernel_size' has no parameter 'size' \\(valid: kernel_size\\)"),
    ("ill_typed", GOOD + '[[steps]]\nname = "x"\napply = { transform = "kernel_size", kernel_size = "5" }\n',
     "step 'x': transform 'kernel_size' parameter 'kernel_size': expected int"),
    ("even_kernel", GOOD + '[[steps]]\nname = "x"\napply = { transform = "kernel_size", kernel_size = 4 }\n',
     "step 'x'.*positive odd"),
    ("zero_kernel", GOOD + '[[steps]]\nname = "x"\napply = { transform = "kernel_size", kernel_size = 0 }\n',
     "step 'x'.*positive odd"),
    ("negative_kernel", GOOD + '[[steps]]\nname = "x"\napply = { transform = "kernel_size", kernel_size = -7 }\n',
     "step 'x'.*positive odd"),
    ("precondition", GOOD + '[[steps]]\nname = "x"\napply = "move_up_dwconv"\n',
     "step 'x': 'move_up_dwconv' needs 'depthwise' first"),
    ("duplicate", GOOD + '[[steps]]\nname = "stage_ratio"\n', "step 'stage_ratio': appears twice"),
    ("bad_from", GOOD + '[[steps]]\nname = "x"\nfrom = "later"\n', "step 'x': 'from' names 'later'"),
    ("unknown_key", GOOD + '[[steps]]\nname = "x"\ntransform = "gelu"\n', "step 'x': unknown key"),
    ("no_steps", 'name = "x"\n', "needs at least one"),
    ("bad_base", 'base = "resnet9"\n[[steps]]\nname = "a"\n', "base: unknown base spec 'resnet9'"),
]


@pytest.mark.parametrize("case, text, message", BAD, ids=[b[0] for b in BAD])
def test_bad_roadmaps_raise_one_line(tmp_path: Path, case: str, text: str, message: str) -> None:
    path = tmp_path / f"{case}.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        load_roadmap(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="no such file.*resnet50_to_convnext_t"):
        load_roadmap("does/not/exist.toml")


@pytest.mark.parametrize("case, text, message", [BAD[0], BAD[3], BAD[7], BAD[8]], ids=["syntax", "param", "pre", "dup"])
def test_cli_bad_roadmap_exit_2_no_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch, case: str, text: str,
                                             message: str) -> None:
    """The first case through the real script in a fresh interpreter; the others in this process
    (the same entry point, without a torch import of about 5 s each)."""
    from modernize.cli import main

    path = tmp_path / f"{case}.toml"
    path.write_text(text)
    out_dir = tmp_path / "out"
    argv = ["flops", str(path), "--out", str(out_dir)]
    if case == "syntax":
        proc = subprocess.run([sys.executable, str(ROOT / "run_ablation.py"), *argv], capture_output=True, text=True,
                              cwd=tmp_path)
        rc, err = proc.returncode, proc.stderr
    else:
        monkeypatch.chdir(tmp_path)
        rc, err = main(argv), capsys.readouterr().err
    assert rc == 2
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(path) in lines[0]
    assert not out_dir.exists()
