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

from tests.conftest import write_recipe
from tests.test_reliability import call, one_line_error, train_args

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
                "compare": ["compare", str(run), str(shutil.copytree(run, tmp_path / "run2")), "--out",
                            str(out)]}[command]
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


# --- names that become paths ---------------------------------------------------------------------

@pytest.mark.parametrize("name", ["../../x", "ABSOLUTE", "", ".hidden", "a/b", "x.."])
def test_roadmap_name_is_a_safe_folder_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str], name: str) -> None:
    """The roadmap's name becomes runs/<name> and reports/<name>: '../../x' or '/tmp/abs' wrote
    outside runs/, '' into runs/ itself. Refused at load, like a step name, writing nothing."""
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    name = str(tmp_path / "abs") if name == "ABSOLUTE" else name
    roadmap = work / "rm.toml"
    roadmap.write_text(f'name = {json.dumps(name)}\nbase = "resnet50"\n[[steps]]\nname = "resnet50"\n')
    monkeypatch.chdir(work)
    monkeypatch.setattr("modernize.paths.REPO_ROOT", work)  # runs/ under the test's folder
    rc, _, err = call(["flops", str(roadmap), "--resolution", "32"], capsys)
    assert rc == 2, err
    one_line_error(err, f"{roadmap}: name {name!r} is not a safe folder name")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "b", "rm.toml"]


# --- claims ---------------------------------------------------------------------------------------

def test_claim_timeout_shorter_than_a_safe_heartbeat_is_refused(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """A 0.1 s timeout with a heartbeat of at least 0.2 s let a second process take over a job
    whose owner was alive: refused before anything is written."""
    out = tmp_path / "run"
    rc, _, err = call(train_args(tmp_path, out, "--claim-timeout", "0.1"), capsys)
    assert rc == 2
    one_line_error(err, "--claim-timeout: at least 5 seconds")
    assert not out.exists()


# --- processes ------------------------------------------------------------------------------------

def _start(tmp: Path, out: Path, *extra: str, epochs: int = 3, steps: tuple[str, ...] = ("separate_downsampling",),
           session: bool = False) -> subprocess.Popen[str]:
    argv = train_args(tmp, out, *extra, recipe=write_recipe(tmp, epochs=epochs), steps=steps)
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, str(REPO / "run_ablation.py"), *argv], cwd=tmp, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=session)


def _wait_for(ready: object, what: str, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"waited {timeout} s for {what}"
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")  # a zombie is dead (a container's init may not reap it)


@pytest.mark.slow
def test_run_folder_moved_during_training_stops_cleanly_and_resumes_where_it_was_moved(tmp_path: Path) -> None:
    """Renamed after the first epoch's checkpoint: the trainer stops at its next write with one
    line (it re-created the old folder with a job nobody accepted), and the moved folder
    resumes from that checkpoint with the same command on its new path."""
    out, moved = tmp_path / "run", tmp_path / "moved"
    proc = _start(tmp_path, out, epochs=3)
    _wait_for(lambda: (out / "separate_downsampling" / "seed0" / "last.pt").exists() or proc.poll() is not None,
              "the first checkpoint")
    os.rename(out, moved)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2, err
    one_line_error(err, f"{out}: moved or removed")
    assert not out.exists()
    resumed = _start(tmp_path, moved, epochs=3)
    stdout, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert "resuming separate_downsampling/seed0 at epoch" in stdout
    assert json.loads((moved / "separate_downsampling" / "seed0" / "result.json").read_text())["status"] == "done"


@pytest.mark.slow
def test_local_workers_end_with_their_parent(tmp_path: Path) -> None:
    """SIGKILL to `train --workers 2`: the workers stop (a checkpoint, then exit) instead of
    training on as orphans; the jobs resume with the same command."""
    out = tmp_path / "run"
    steps = ("separate_downsampling", "gelu")
    proc = _start(tmp_path, out, "--workers", "2", epochs=50, steps=steps)
    claims = [out / s / "seed0" / "claim.json" for s in steps]
    _wait_for(lambda: all(c.exists() for c in claims) or proc.poll() is not None, "both workers' claims")
    pids = [json.loads(c.read_text())["pid"] for c in claims]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    try:
        _wait_for(lambda: not any(_alive(p) for p in pids), "the workers to end", timeout=60)
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert not any(c.exists() for c in claims)  # each worker stopped cleanly and released its job


def test_every_worker_starts_with_sigint_blocked(tmp_path: Path) -> None:
    """Each spawned worker must start with SIGINT blocked, the later ones too: the resource tracker
    that multiprocessing starts with the first worker unblocks SIGINT in the caller, and a Ctrl-C
    in a worker still inside Python's start-up prints a traceback from ``site``. Run in a fresh
    process so that no resource tracker is running yet (as in ``train --workers``)."""
    script = f"""
import multiprocessing, shutil
from modernize.train.runner import start_with_sigint_blocked
ctx = multiprocessing.get_context("spawn")
procs = [ctx.Process(target=shutil.copyfile, args=("/proc/self/status", r"{tmp_path}/w%d" % i))
         for i in range(3)]
start_with_sigint_blocked(procs)
for p in procs:
    p.join()
"""
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    for i in range(3):
        blocked = next(line.split()[1] for line in (tmp_path / f"w{i}").read_text().splitlines()
                       if line.startswith("SigBlk:"))
        assert int(blocked, 16) & (1 << (signal.SIGINT - 1)), f"worker {i} started with SIGINT unblocked"


@pytest.mark.slow
def test_ctrl_c_while_local_workers_start_is_one_line_and_exit_130(tmp_path: Path) -> None:
    """Ctrl-C (SIGINT to the terminal's process group) the moment the workers exist, while Python
    starts up in them: exit 130 and one 'interrupted' line, no KeyboardInterrupt traceback."""
    out = tmp_path / "run"
    proc = _start(tmp_path, out, "--workers", "2", epochs=1, steps=("separate_downsampling", "gelu"), session=True)
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
    _wait_for(lambda: proc.poll() is not None or len(children.read_text().split()) >= 2, "the workers")
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert err.strip().splitlines()[-1] == "interrupted", err


# --- user code ------------------------------------------------------------------------------------

KINDS = '''from torch import nn

from modernize.kinds import register_act
from modernize.transforms import register_transform


class Boom(nn.Module):
    def forward(self, x):
        return x / 0 + undefined_name


@register_act("boom", label="Boom")
def boom() -> nn.Module:
    return Boom()


@register_transform("explode", label="explode")
def explode(spec):
    raise RuntimeError("a bug in a user transform")
'''


@pytest.mark.parametrize("command", ["flops", "train", "transform"])
def test_a_user_kind_that_raises_is_one_line_naming_the_kind_file_and_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], command: str) -> None:
    """A 100-160-line traceback before; one line now, the traceback with MODERNIZE_DEBUG=1."""
    (tmp_path / "boom_kinds.py").write_text(KINDS)
    roadmap = tmp_path / "boomy.toml"
    roadmap.write_text('name = "boomy"\nbase = "resnet50"\nimports = ["boom_kinds"]\n[[steps]]\nname = "resnet50"\n'
                       '[[steps]]\nname = "boom"\napply = { transform = "act", kind = "boom" }\n')
    monkeypatch.delenv("MODERNIZE_DEBUG", raising=False)
    argv = (["flops", str(roadmap), "--resolution", "32", "--out", str(tmp_path / "f")] if command != "train"
            else ["train", str(roadmap), *train_args(tmp_path, tmp_path / "run", steps=("boom",))[1:]])
    culprit = f"act kind 'boom' ({tmp_path / 'boom_kinds.py'}:9, in forward) raised NameError"
    if command == "transform":
        roadmap.write_text(roadmap.read_text().replace('transform = "act", kind = "boom"', 'transform = "explode"'))
        culprit = (f"transform 'explode' ({tmp_path / 'boom_kinds.py'}:19, in explode) raised RuntimeError: "
                   "a bug in a user transform")
    try:
        rc, _, err = call(argv, capsys)
        assert rc == 2, err
        one_line_error(err, culprit)
        monkeypatch.setenv("MODERNIZE_DEBUG", "1")
        rc, _, err = call(argv, capsys)
        assert rc == 2 and "Traceback" in err
    finally:
        sys.modules.pop("boom_kinds", None)
        from modernize.kinds import REGISTRIES
        from modernize.transforms import TRANSFORMS

        REGISTRIES["act"].pop("boom", None)
        TRANSFORMS.pop("explode", None)
