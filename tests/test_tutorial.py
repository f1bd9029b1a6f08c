"""docs/your-own-ablation.md runs as written: its files are written from the page's code blocks
(each starts with a ``# my_ablation/NAME`` line) and its ``bash`` block's commands run one by one,
so the page cannot drift from the code."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "your-own-ablation.md"
BLOCK = re.compile(r"```(\w+)\n(.*?)```", re.S)


def page_parts() -> tuple[dict[str, str], list[list[str]]]:
    files: dict[str, str] = {}
    commands: list[list[str]] = []
    for lang, body in BLOCK.findall(PAGE.read_text()):
        first = body.splitlines()[0]
        if lang == "bash":
            commands += [shlex.split(line) for line in body.splitlines() if line.strip()]
        elif first.startswith("# my_ablation/"):
            files[first[2:].strip()] = body
    return files, commands


def test_the_page_has_its_parts() -> None:
    files, commands = page_parts()
    assert set(files) == {"my_ablation/my_kinds.py", "my_ablation/my_roadmap.toml", "my_ablation/tiny.toml",
                          "my_ablation/tiny_lr.toml"}
    assert [c[2] for c in commands] == ["flops", "flops", "describe", "describe", "train", "train", "report",
                                        "compare"]
    assert all(c[:2] == ["python", "run_ablation.py"] for c in commands)


@pytest.mark.slow
def test_the_tutorial_runs_as_written(tmp_path: Path) -> None:
    files, commands = page_parts()
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    outputs = []
    for cmd in commands:
        proc = subprocess.run([sys.executable, str(ROOT / "run_ablation.py"), *cmd[2:]], cwd=tmp_path,
                              capture_output=True, text=True, timeout=1200)
        assert proc.returncode == 0, (f"{shlex.join(cmd)} -> {proc.returncode}\n{proc.stdout[-3000:]}\n"
                                      f"{proc.stderr[-3000:]}")
        outputs.append(proc.stdout)
    flops, _, words, *_ = outputs
    assert "mine" in flops
    assert "Swish-beta" in words and "RMSNorm" in words and "channel gate" in words
    assert (tmp_path / "runs/my_ablation/mine.svg").read_text().lstrip().startswith(("<?xml", "<svg"))
    table = pd.read_csv(tmp_path / "runs/my_ablation/tiny/report/table.csv").set_index("step")
    assert list(table.index) == ["resnet50", "patchify_stem", "mine"] and (table["n"] == 2).all()
    assert table.loc["patchify_stem", "paper_check"] == "n/a (order differs from the paper)"
    assert (tmp_path / "runs/my_ablation/tiny/report/index.html").is_file()
    compare = pd.read_csv(tmp_path / "runs/my_ablation/compare/compare.csv")
    assert compare.columns[0] == "step" and list(compare["step"]) == ["resnet50", "patchify_stem", "mine"]
    assert (tmp_path / "runs/my_ablation/compare/compare.png").is_file()
    kinds = (tmp_path / "runs/my_ablation/tiny/mine").rglob("config.json")
    assert any("my_kinds" in p.read_text() or "swish_beta" in p.read_text() for p in kinds)
