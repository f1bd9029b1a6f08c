"""Job claims and local workers: several processes on one run folder train each job once,
take over a dead owner's job, and end with the same results as one serial process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from modernize.claims import CLAIM_FILE, Claim, ClaimInfo, read_claim, try_claim
from modernize.train import train_roadmap
from tests.conftest import TINY_PROXY, write_recipe
from tests.test_train import KILL_SCRIPT, REPO, result

STEPS = ["fewer_norms", "separate_downsampling"]


def _fake_claim(job: Path, *, host: str, pid: int, age_s: float) -> None:
    job.mkdir(parents=True, exist_ok=True)
    path = job / CLAIM_FILE
    path.write_text(json.dumps({"host": host, "pid": pid, "started": time.time() - age_s, "token": "x"}))
    os.utime(path, (time.time() - age_s, time.time() - age_s))


def test_a_live_claim_is_respected_and_released(tmp_path: Path) -> None:
    first = try_claim(tmp_path / "job")
    assert isinstance(first, Claim)
    second = try_claim(tmp_path / "job")
    assert isinstance(second, ClaimInfo) and second.pid == os.getpid() and second.host == socket.gethostname()
    first.release()
    assert not (tmp_path / "job" / CLAIM_FILE).exists()
    third = try_claim(tmp_path / "job")
    assert isinstance(third, Claim)
    third.release()


def test_heartbeat_refreshes_the_claim(tmp_path: Path) -> None:
    claim = try_claim(tmp_path / "job", timeout=1.0)
    assert isinstance(claim, Claim)
    path = tmp_path / "job" / CLAIM_FILE
    os.utime(path, (time.time() - 100, time.time() - 100))
    time.sleep(0.6)  # heartbeat every timeout / 5 = 0.2 s
    info = read_claim(tmp_path / "job")
    assert info is not None and info.age_s < 1.0
    claim.release()


def test_other_host_claim_taken_over_only_after_the_timeout(tmp_path: Path) -> None:
    _fake_claim(tmp_path / "job", host="elsewhere.example", pid=os.getpid(), age_s=100)
    kept = try_claim(tmp_path / "job", timeout=300)
    assert isinstance(kept, ClaimInfo) and kept.host == "elsewhere.example"
    taken = try_claim(tmp_path / "job", timeout=60)
    assert isinstance(taken, Claim)
    assert read_claim(tmp_path / "job").host == socket.gethostname()  # type: ignore[union-attr]
    assert [p.name for p in (tmp_path / "job").iterdir()] == [CLAIM_FILE]  # the stale claim is gone
    taken.release()


def test_dead_pid_on_this_host_is_taken_over_at_once(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(proc.stdout)
    _fake_claim(tmp_path / "job", host=socket.gethostname(), pid=dead, age_s=0)
    taken = try_claim(tmp_path / "job", timeout=3600)
    assert isinstance(taken, Claim)
    taken.release()


def test_a_zombie_owner_on_this_host_is_taken_over_at_once(tmp_path: Path) -> None:
    """A SIGKILLed worker is a zombie until its parent reaps it (the parent may be joining
    another worker): its claim is no one's, not a live one for the whole timeout."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.monotonic() + 60
        while Path(f"/proc/{child.pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z":
            assert time.monotonic() < deadline, "the child did not exit"
            time.sleep(0.05)
        _fake_claim(tmp_path / "job", host=socket.gethostname(), pid=child.pid, age_s=0)
        taken = try_claim(tmp_path / "job", timeout=3600)
        assert isinstance(taken, Claim)
        taken.release()
    finally:
        child.wait()


def _script(tmp: Path) -> Path:
    script = tmp / "job.py"
    script.write_text(KILL_SCRIPT.format(repo=str(REPO), seeds=[0, 1], steps=STEPS, data="synthetic:96"))
    return script


def _final(run: Path) -> dict[str, tuple]:
    out = {}
    for step in STEPS:
        for seed in (0, 1):
            r = result(run, step, seed)
            log = (run / step / f"seed{seed}" / "log.csv").read_text().splitlines()
            out[f"{step}/{seed}"] = (r["status"], r["top1"], r["top5"], r["best_top1"],
                                     [row.split(",")[:6] for row in log])
    return out


@pytest.mark.slow
def test_three_processes_on_one_run_dir_train_each_job_once(tmp_path: Path) -> None:
    script, recipe = _script(tmp_path), write_recipe(tmp_path, epochs=2)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    serial = subprocess.run([sys.executable, str(script), str(tmp_path / "serial"), "0", str(recipe), "1"],
                            env=env, capture_output=True, text=True, timeout=300)
    assert serial.returncode == 0, serial.stderr
    procs = [subprocess.Popen([sys.executable, str(script), str(tmp_path / "shared"), "0", str(recipe), "1"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(3)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [e for _, e in outs]
    text = "".join(o for o, _ in outs)
    for step in STEPS:
        for seed in (0, 1):  # each job's "done" line printed by exactly one process; nobody resumed it
            assert sum(f"{step:>24} seed {seed}: done, top1" in o for o, _ in outs) == 1, text
    assert "resuming" not in text
    assert _final(tmp_path / "shared") == _final(tmp_path / "serial")
    assert not list((tmp_path / "shared").rglob(CLAIM_FILE))


@pytest.mark.slow
def test_sigkilled_owner_is_taken_over_and_results_equal_uninterrupted(tmp_path: Path) -> None:
    script, recipe = _script(tmp_path), write_recipe(tmp_path, epochs=2, crop="pad", hflip=True)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    straight = subprocess.run([sys.executable, str(script), str(tmp_path / "straight"), "0", str(recipe), "1"],
                              env=env, capture_output=True, text=True, timeout=300)
    assert straight.returncode == 0, straight.stderr
    # Two processes share the run; the first is SIGKILLed at its 9th optimizer step (epoch 2 of its
    # first job, after the mid-epoch checkpoint of iteration 8); the second takes that job over.
    victim = subprocess.Popen([sys.executable, str(script), str(tmp_path / "shared"), "9", str(recipe), "1"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)
    other = subprocess.Popen([sys.executable, str(script), str(tmp_path / "shared"), "0", str(recipe), "1"], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert victim.wait(timeout=300) == -9
    out, err = other.communicate(timeout=300)
    assert other.returncode == 0, err
    assert "resuming" in out  # the orphaned job resumed from its checkpoint, not from scratch
    assert _final(tmp_path / "shared") == _final(tmp_path / "straight")


@pytest.mark.slow
def test_local_workers_equal_a_serial_run(tmp_path: Path) -> None:
    script, recipe = _script(tmp_path), write_recipe(tmp_path, epochs=1)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for out, workers in (("serial", "1"), ("workers", "2")):
        proc = subprocess.run([sys.executable, str(script), str(tmp_path / out), "0", str(recipe), workers],
                              env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
    assert _final(tmp_path / "workers") == _final(tmp_path / "serial")
    assert "[w0]" in proc.stdout and "[w1]" in proc.stdout


def test_workers_refuse_more_gpus_than_visible(tmp_path: Path) -> None:
    from modernize.errors import ConfigError

    with pytest.raises(ConfigError, match="cuda"):
        train_roadmap(None, data="synthetic:64", recipe=write_recipe(tmp_path), seeds=[0], out=tmp_path / "r",
                      steps=["gelu"], device="cuda", proxy=TINY_PROXY, workers=2, progress=False)


@pytest.mark.slow
def test_submitit_local_executor_runs_two_jobs(tmp_path: Path) -> None:
    pytest.importorskip("submitit")
    from modernize.launch import SlurmOptions, submit_roadmap

    opts = SlurmOptions(cluster="local", gpus_per_job=0, time_min=10)
    kw = dict(data="synthetic:64", recipe=write_recipe(tmp_path), seeds=[0, 1], out=tmp_path / "run",
              steps=["gelu"], device="cpu", proxy=TINY_PROXY, slurm=opts)
    jobs = submit_roadmap(None, **kw)  # type: ignore[arg-type]
    assert len(jobs) == 2
    results = [j.result() for j in jobs]  # waits; raises with the task's traceback if one failed
    assert [(r["step"], r["seed"], r["status"]) for r in results] == [("gelu", 0, "done"), ("gelu", 1, "done")]
    assert result(tmp_path / "run", "gelu", 1)["top1"] == results[1]["top1"]
    assert submit_roadmap(None, **kw) == []  # nothing pending: nothing submitted  # type: ignore[arg-type]


def test_tensorboard_scalars_beside_the_log(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = train_roadmap(None, data="synthetic:64", recipe=write_recipe(tmp_path, epochs=2), seeds=[0],
                        out=tmp_path / "run", steps=["gelu"], device="cpu", proxy=TINY_PROXY, progress=False,
                        tensorboard=True)
    acc = EventAccumulator(str(run / "gelu" / "seed0" / "tb"))
    acc.Reload()
    top1 = [e.value for e in acc.Scalars("val/top1")]
    log = (run / "gelu" / "seed0" / "log.csv").read_text().splitlines()[1:]
    assert top1 == pytest.approx([float(r.split(",")[3]) for r in log], abs=1e-4) and len(top1) == 2
    assert {"train/train_loss", "train/lr", "train/img_per_s", "val/val_loss", "val/top5"} <= set(acc.Tags()["scalars"])
