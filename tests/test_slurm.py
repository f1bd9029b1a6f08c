"""The Slurm launcher (``modernize/launch.py``): its defaults and refusals without a cluster, then
end to end on a real single-node Slurm (``slurm_cluster``, tests/conftest.py): submit, tasks
train, a task cancelled with ``scancel`` mid-job resumes from its checkpoint when the command is
run again, ``report`` after."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from modernize.errors import ConfigError
from modernize.launch import SlurmOptions, _refusal, resolve_options
from tests.conftest import write_recipe
from tests.test_train import REPO, result

submitit = pytest.importorskip("submitit")


@pytest.mark.parametrize("gpus, device, want", [
    (False, "auto", (0, "cpu")), (True, "auto", (1, "cuda")), (None, "auto", (1, "cuda")),
    (False, "cpu", (0, "cpu")), (True, "cpu", (1, "cpu")),
])
def test_defaults_follow_the_gres_of_the_partition(monkeypatch: pytest.MonkeyPatch, gpus: bool | None, device: str,
                                                   want: tuple[int, str]) -> None:
    """No GPU gres: CPU tasks with --device cpu (not --device auto failing in every task's log);
    Slurm not reachable (None): the GPU defaults, as before."""
    monkeypatch.setattr("modernize.launch.cluster_has_gpus", lambda partition, cluster=None: gpus)
    monkeypatch.setattr("modernize.launch.check_slurm", lambda opts: None)  # tested below
    opts, dev = resolve_options(SlurmOptions(partition="debug"), device)
    assert (opts.gpus_per_job, dev) == want
    assert resolve_options(opts, dev) == (opts, dev)  # resolved once: the same again


def test_a_cuda_device_without_gpus_is_refused_before_sbatch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("modernize.launch.cluster_has_gpus", lambda partition, cluster=None: False)
    monkeypatch.setattr("modernize.launch.check_slurm", lambda opts: None)
    with pytest.raises(ConfigError, match="--device cuda with --gpus-per-job 0"):
        resolve_options(SlurmOptions(), "cuda")
    with pytest.raises(ConfigError, match="--device cuda:1 with --gpus-per-job 0"):
        resolve_options(SlurmOptions(gpus_per_job=0), "cuda:1")


def _slurm_bin(tmp: Path, *, sbatch: bool) -> str:
    """A PATH with the machine's programs but no Slurm ones, plus (with ``sbatch``) a Slurm
    client whose controller knows the partitions debug (default) and gpu."""
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    if sbatch:
        (bin_dir / "sbatch").write_text("#!/bin/sh\necho 'sbatch: error: not expected to be called' >&2\nexit 1\n")
        (bin_dir / "sinfo").write_text("#!/bin/sh\nprintf 'debug*\\ngpu\\ndebug*\\n'\n")
        for f in bin_dir.iterdir():
            f.chmod(0o755)
    keep = [d for d in os.environ["PATH"].split(os.pathsep) if d and not (Path(d) / "sbatch").exists()]
    return os.pathsep.join([str(bin_dir), *keep])


@pytest.mark.parametrize("case", ["no_sbatch", "no_partition"])
def test_slurm_missing_or_partition_unknown_is_refused_and_nothing_runs_here(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], case: str) -> None:
    """Where there is no sbatch, or the partition does not exist, --launcher slurm refuses in one
    line before writing anything: it never prints "submitted ... to Slurm" and never trains here
    (submitit's auto executor fell back to running the tasks locally)."""
    from tests.test_reliability import call, one_line_error, train_args

    monkeypatch.delenv("MODERNIZE_SUBMITIT_LOCAL", raising=False)
    monkeypatch.setenv("PATH", _slurm_bin(tmp_path, sbatch=case != "no_sbatch"))
    out = tmp_path / "run"
    argv = train_args(tmp_path, out, "--launcher", "slurm")
    if case == "no_partition":
        argv += ["--partition", "nosuch"]
    rc, stdout, err = call(argv, capsys)
    assert rc == 2, (stdout, err)
    one_line_error(err, "sbatch" if case == "no_sbatch" else "--partition nosuch")
    if case == "no_partition":
        assert "partitions: debug, gpu" in err
    assert "submitted" not in stdout and not out.exists()


def test_sbatch_refusal_is_one_line_with_a_hint() -> None:
    exc = submitit.core.utils.FailedJobError("sbatch: error: Invalid generic resource (gres) specification\n")
    msg = str(_refusal(exc, SlurmOptions(partition="debug", gpus_per_job=1)))
    assert "\n" not in msg and "sbatch: error" not in msg
    assert msg.startswith("sbatch refused the jobs: Invalid generic resource") and "--gpus-per-job 0" in msg


def test_without_slurm_and_without_root_the_cluster_tests_skip_saying_why(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests import slurm_cluster as sc

    monkeypatch.setattr(sc, "_which", lambda name: None)
    monkeypatch.setattr(sc.os, "geteuid", lambda: 1000)
    why = sc.install_or_why_not()
    assert why is not None and "munged" in why and "needs root and apt-get" in why


# --- a real cluster ----------------------------------------------------------------------------------

def _cli(cluster: object, *argv: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = dict(cluster.env, OMP_NUM_THREADS="1")  # type: ignore[attr-defined]
    return subprocess.run([sys.executable, str(REPO / "run_ablation.py"), *argv], env=env, capture_output=True,
                          text=True, timeout=timeout, cwd=REPO)


def _until(ready: object, timeout: float, what: str, cluster: object) -> None:
    deadline = time.monotonic() + timeout
    while not ready():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail(f"waited {timeout} s for {what}\n{cluster.logs()}")  # type: ignore[attr-defined]
        time.sleep(0.2)


@pytest.mark.slow
def test_refusals_on_a_real_cluster_are_one_line(slurm_cluster: object, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from modernize.cli import main

    monkeypatch.setenv("SLURM_CONF", slurm_cluster.env["SLURM_CONF"])  # type: ignore[attr-defined]
    base = ["train", "--data", "synthetic:64", "--recipe", str(write_recipe(tmp_path)), "--steps", "gelu",
            "--launcher", "slurm", "--out", str(tmp_path / "run")]
    for extra, culprit in ((["--gpus-per-job", "1"], "Invalid generic resource (gres)"),
                           (["--partition", "nope"], "--partition nope: no such Slurm partition (partitions: debug)"),
                           (["--device", "cuda"], "--gpus-per-job 0")):
        assert main([*base, *extra]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: ") and culprit in err, err
    assert not list((tmp_path / "run").glob("slurm/*/*_submitted.pkl"))  # nothing was queued


@pytest.mark.slow
def test_slurm_end_to_end_scancel_then_resume_equals_a_straight_run(slurm_cluster: object, tmp_path: Path) -> None:
    """Two runs of one job, side by side on the cluster's CPUs: one straight (an array of two
    tasks), one cancelled with scancel as soon as its first checkpoint exists. The cancelled task
    saves its checkpoint and stops; the same command again (--wait) resumes it and ends with the
    straight run's weights and scores; report reads both."""
    recipe = write_recipe(tmp_path, epochs=4)
    base = ["train", "--data", "synthetic:1024", "--recipe", str(recipe), "--width", "0.125", "--depth", "0.34",
            "--low-res", "2", "--ckpt-every", "4", "--launcher", "slurm", "--partition", "debug", "--time", "30"]
    straight = _cli(slurm_cluster, *base, "--steps", "gelu", "kernel_7", "--out", str(tmp_path / "straight"))
    assert straight.returncode == 0, straight.stderr
    assert "(0 GPU(s) per job, --device cpu)" in straight.stdout and "squeue -j" in straight.stdout, straight.stdout
    cancelled = [*base, "--steps", "gelu", "--out", str(tmp_path / "cancelled")]
    first = _cli(slurm_cluster, *cancelled)
    assert first.returncode == 0, first.stderr
    job_id = next(ln for ln in first.stdout.splitlines() if ln.startswith("submitted ")).rsplit(" ", 1)[1]
    job = tmp_path / "cancelled" / "gelu" / "seed0"
    _until(lambda: (job / "last.pt").is_file(), 240, "the first checkpoint", slurm_cluster)
    slurm_cluster.run("scancel", job_id)  # type: ignore[attr-defined]

    def gone() -> bool:
        return job_id not in slurm_cluster.run("squeue", "-h", "-o", "%i", check=False).stdout.split()  # type: ignore[attr-defined]

    def straight_done() -> bool:
        return all((tmp_path / "straight" / s / "seed0" / "result.json").is_file()
                   and result(tmp_path / "straight", s)["status"] == "done" for s in ("gelu", "kernel_7"))

    # squeue drops a cancelled job at once; its process still saves its checkpoint and lets go of the claim
    _until(lambda: gone() and not (job / "claim.json").exists(), 120, f"job {job_id} to end after scancel",
           slurm_cluster)
    mid = result(tmp_path / "cancelled", "gelu")
    assert mid["status"] == "running" and mid["epochs_done"] < 4, mid  # stopped mid-job
    assert (job / "last.pt").is_file()
    log = next((tmp_path / "cancelled" / "slurm").glob(f"{job_id}/*_log.err")).read_text()
    assert "interrupted" in log, log[-2000:]

    again = _cli(slurm_cluster, *cancelled, "--wait")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "1 of 1 job(s) done" in again.stdout
    task_logs = "".join(p.read_text() for p in (tmp_path / "cancelled" / "slurm").glob("*/*_log.out"))
    assert "resuming gelu/seed0" in task_logs, task_logs[-2000:]
    _until(straight_done, 300, "the straight run", slurm_cluster)
    a, b = result(tmp_path / "straight", "gelu"), result(tmp_path / "cancelled", "gelu")
    assert b["status"] == "done" and (a["top1"], a["top5"], a["best_top1"]) == (b["top1"], b["top5"], b["best_top1"])
    wa, wb = (torch.load(tmp_path / r / "gelu" / "seed0" / "last.pt", weights_only=False)["model"]
              for r in ("straight", "cancelled"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    for run in ("straight", "cancelled"):
        rep = _cli(slurm_cluster, "report", str(tmp_path / run))
        assert rep.returncode == 0 and "gelu" in rep.stdout, rep.stderr
    # Nothing left to do: the command submits nothing and says so.
    done = _cli(slurm_cluster, *cancelled)
    assert done.returncode == 0 and "submitted nothing" in done.stdout, done.stdout


@pytest.mark.slow
def test_wait_names_a_failed_task_and_its_log(slurm_cluster: object, tmp_path: Path) -> None:
    """A task that fails in the cluster (its data folder vanished after submission): --wait
    names the task, its error and its log, and exits 1."""
    data = tmp_path / "folder"
    from tests.folder_fixture import export_fashion

    if not Path("/usr/share/datasets/fashion-mnist").is_dir():
        pytest.skip("needs Fashion-MNIST (Debian's dataset-fashion-mnist) for the image folder")
    export_fashion(data, train=96, val=40)  # every class in both splits
    cmd = ["train", "--data", f"imagefolder:{data}", "--recipe", str(write_recipe(tmp_path)), "--steps", "gelu",
           "--width", "0.125", "--depth", "0.34", "--low-res", "2", "--launcher", "slurm", "--out",
           str(tmp_path / "run"), "--wait"]
    # Hold the node, so the task cannot start before the folder is gone.
    hold = slurm_cluster.run("sbatch", "--parsable", "-c", str(os.cpu_count() or 1), "-D", str(tmp_path),  # type: ignore[attr-defined]
                             "-o", "/dev/null", "--wrap", "sleep 600").stdout.strip()
    try:
        proc = subprocess.Popen([sys.executable, str(REPO / "run_ablation.py"), *cmd], cwd=REPO,
                                env=dict(slurm_cluster.env, OMP_NUM_THREADS="1"),  # type: ignore[attr-defined]
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _until(lambda: proc.poll() is not None or list((tmp_path / "run" / "slurm").glob("*/*_submitted.pkl")),
               120, "the submission", slurm_cluster)
        assert proc.poll() is None, proc.communicate()
        import shutil

        shutil.rmtree(data)
    finally:
        slurm_cluster.run("scancel", hold)  # type: ignore[attr-defined]
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, out + err
    line = next(ln for ln in err.splitlines() if ln.startswith("task "))
    assert "(gelu seed 0) error: modernize.errors.ConfigError: " in line and str(data) in line, err
    assert line.endswith("_log.err") and "Traceback" not in err, err
    assert "0 of 1 job(s) done" in out


@pytest.mark.slow
def test_wait_notes_a_task_that_cannot_start_and_its_cancellation(slurm_cluster: object, tmp_path: Path) -> None:
    """Two nodes per job on a one-node cluster: sbatch accepts it and the task would pend
    forever. --wait says so once; once it is cancelled, the task is named as ended without a
    result, and the command exits 1."""
    cmd = ["train", "--data", "synthetic:64", "--recipe", str(write_recipe(tmp_path)), "--steps", "gelu",
           "--launcher", "slurm", "--nodes-per-job", "2", "--out", str(tmp_path / "run"), "--wait"]
    proc = subprocess.Popen([sys.executable, str(REPO / "run_ablation.py"), *cmd], cwd=REPO,
                            env=dict(slurm_cluster.env, OMP_NUM_THREADS="1"),  # type: ignore[attr-defined]
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None and proc.stdout is not None
    try:
        warning = proc.stderr.readline()  # blocks until the note (or the end)
        assert warning.startswith("warning: task ") and "cannot start as submitted" in warning, warning
        job_id = warning.split()[2]
        slurm_cluster.run("scancel", job_id)  # type: ignore[attr-defined]
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1, out + err
    assert f"task {job_id} (gelu seed 0) ended: no result: cancelled" in err and "0 of 1 job(s) done" in out, err
