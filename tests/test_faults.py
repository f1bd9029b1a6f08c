"""Faults and processes (issue 28, item 5): a full disk, a run folder moved during training, the
parent of local workers killed, Ctrl-C while they start, a missing Slurm, a user kind that raises,
the umask, the roadmap name, a claim timeout shorter than the heartbeat. Each class is tested
where it happens for real: a full disk is a small tmpfs (root only; skipped otherwise)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_reliability import call, one_line_error, recipe_file, roadmap_copy, train_args

REPO = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def small_disk(where: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``where``: a file system that really fills up."""
    where.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("a full disk is a small tmpfs: mounting one needs root")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def resize(where: Path, size: str) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(where)], check=True)


def fill(where: Path, leave: int) -> None:
    """Leave about ``leave`` bytes free on the file system of ``where``."""
    st = os.statvfs(where)
    free = st.f_bavail * st.f_frsize
    (where / "filler").write_bytes(b"\0" * max(0, free - leave))


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def run_fixture(tmp: Path) -> Path:
    sys.path.insert(0, str(REPO / "tests"))
    from report_fixture import make_run, small_roadmap

    run = tmp / "run"
    make_run(run, roadmap=str(small_roadmap(tmp)), seeds=(0,), epochs=2)
    return run


# --- a full disk ---------------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["report", "flops", "compare"])
def test_full_disk_leaves_the_output_folder_as_it_was(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      command: str) -> None:
    """The second write of a report, FLOP table or comparison meets a full disk part way: one
    line naming a path in the folder, exit 2, and the folder holds the first write's files, every
    byte (not the new text files beside the old figures)."""
    run = run_fixture(tmp_path)
    with small_disk(tmp_path / "disk", "4m") as disk:
        out = disk / "out"
        argv = {"report": ["report", str(run), "--out", str(out)],
                "flops": ["flops", str(tmp_path / "small.toml"), "--out", str(out), "--resolution", "32"],
                "compare": ["compare", str(run), str(run), "--out", str(out)]}[command]
        rc, _, err = call(argv, capsys)
        assert rc == 0, err
        before = snapshot(out)
        if command == "flops":  # the roadmap's table changes, so every file would change
            argv[-1] = "48"
        fill(disk, leave=(len(before["flops.csv"]) + 100) if command == "flops" else 12_000)
        rc, _, err = call(argv, capsys)
        assert rc == 2, err
        one_line_error(err, str(out))
        assert "No space left" in err
        assert snapshot(out) == before
        assert sorted(p.name for p in disk.iterdir()) == ["filler", "out"]  # no staging folder left


def test_full_disk_at_a_checkpoint_leaves_the_job_resumable(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """torch.save on a full disk: one line naming last.pt, exit 2 (not torch's RuntimeError
    traceback), no temp file, no claim left; with room again the same command finishes the job."""
    with small_disk(tmp_path / "disk", "1m") as disk:
        out = disk / "run"
        argv = train_args(tmp_path, out)
        rc, _, err = call(argv, capsys)
        assert rc == 2, err
        one_line_error(err, str(out / "separate_downsampling" / "seed0" / "last.pt"))
        job = out / "separate_downsampling" / "seed0"
        assert sorted(p.name for p in job.iterdir()) == ["config.json", "result.json"]
        resize(disk, "16m")
        rc, _, err = call(argv, capsys)
        assert rc == 0, err
        assert json.loads((job / "result.json").read_text())["status"] == "done"


def test_files_honour_the_umask(tmp_path: Path) -> None:
    from modernize.files import atomic_torch_save, atomic_write_text

    old = os.umask(0o002)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        atomic_torch_save(tmp_path / "a.pt", {"x": 1})
    finally:
        os.umask(old)
    assert {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()} == {"a.txt": 0o664, "a.pt": 0o664}
