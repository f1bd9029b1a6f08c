"""A regular (non-editable) install works outside the checkout: the wheel carries the
built-in roadmaps, recipes and paper tables (``ablations/`` as ``modernize/ablations``)."""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: int = 600) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, (f"{' '.join(map(str, cmd))} -> {proc.returncode}\n"
                                  f"{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return proc.stdout


@pytest.mark.slow
def test_wheel_installs_and_runs_outside_the_checkout(tmp_path: Path) -> None:
    # Build from a copy of the sources, so the checkout gets no build/ or egg-info folders.
    src = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("modernize", "ablations"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(dist), "."], src)
    wheel = next(dist.glob("modernize-*.whl"))

    # A fresh venv that sees the packages of the interpreter running the tests (torch & co. of the
    # project's .venv), with the wheel installed into it. `--system-site-packages` would show the
    # *base* interpreter's packages instead, which on a fresh machine have no torch. A .pth file adds
    # the directories without running their own .pth files, so the editable install stays invisible.
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], tmp_path)
    py, exe = venv / "bin" / "python", venv / "bin" / "modernize"
    venv_site = Path(_run([str(py), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], tmp_path).strip())
    (venv_site / "_outer_packages.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    _run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], tmp_path, env)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = _run([str(py), "-c", "import modernize; print(modernize.__file__)"], elsewhere, env).strip()
    assert Path(where).is_relative_to(venv), where  # the wheel, not the checkout or an editable install

    # Every module of the package imports from the wheel (a subpackage missing from it fails here).
    code = ("import importlib, pkgutil, modernize\n"
            "for m in pkgutil.walk_packages(modernize.__path__, 'modernize.'):\n"
            "    if not m.name.endswith('__main__'):\n"
            "        importlib.import_module(m.name)\n")
    _run([str(py), "-c", code], elsewhere, env)
    out = _run([str(exe), "describe", "--no-counts", "--step", "patchify_stem"], elsewhere, env)
    assert "patchify_stem" in out and "Stage 2, first block" in out
    out = _run([str(exe), "flops"], elsewhere, env)
    assert "resnet50" in out and "bn_to_ln" in out
    table = elsewhere / "runs" / "resnet50_to_convnext_t" / "flops.csv"  # default outputs: runs/ of the current folder
    assert table.is_file() and table.read_text().splitlines()[0].startswith("step,paper_row")
