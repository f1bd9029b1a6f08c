"""A throw-away single-node Slurm cluster for the tests: ``munged``, ``slurmctld`` and ``slurmd``
in the foreground as child processes, every file (config, key, sockets, state, logs) under one
folder and on free ports, so it touches nothing of the machine's own Slurm or munge set-up.
Clients find it through ``SLURM_CONF`` (set in the environment by ``start``).

    python -m tests.slurm_cluster DIR     # start one by hand; Ctrl-C stops it

Debian's ``slurm-wlm`` and ``munge`` provide the programs (``scripts/ci_services.sh``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

PROGRAMS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scancel", "srun")
PARTITION = "debug"
SBIN = ("/usr/sbin", "/usr/local/sbin", "/sbin")


def _which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path=os.pathsep.join(SBIN))


def missing_programs() -> list[str]:
    return [p for p in PROGRAMS if _which(p) is None]


def install_or_why_not() -> str | None:
    """Install the programs where they are missing and we may (root, apt-get: the CI machine);
    None when they are there, else why not (the reason a test skips). A failed install raises."""
    if not missing_programs():
        return None
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return (f"Slurm is not installed ({', '.join(missing_programs())} missing) and cannot be here "
                "(installing slurm-wlm and munge needs root and apt-get: scripts/ci_services.sh)")
    script = Path(__file__).resolve().parent.parent / "scripts" / "ci_services.sh"
    subprocess.run(["bash", str(script)], check=True, timeout=900)
    if missing_programs():
        raise RuntimeError(f"scripts/ci_services.sh ran, and {missing_programs()} are still missing")
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def slurm_conf(root: Path, *, host: str, cpus: int, ctl_port: int, node_port: int) -> str:
    """The smallest configuration that runs jobs without cgroups or accounting: process tracking
    through /proc, no task binding, one node and one partition on 127.0.0.1, no GPU gres."""
    return f"""\
ClusterName=modernize
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctl_port}
SlurmdPort={node_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={root / "munge.socket"}
CredType=cred/munge
StateSaveLocation={root / "state"}
SlurmdSpoolDir={root / "spool"}
SlurmctldPidFile={root / "slurmctld.pid"}
SlurmdPidFile={root / "slurmd.pid"}
SlurmctldLogFile={root / "slurmctld.log"}
SlurmdLogFile={root / "slurmd.log"}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
KillWait=30
MinJobAge=600
SchedulerParameters=sched_interval=1
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} State=UNKNOWN
PartitionName={PARTITION} Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


@dataclass
class Cluster:
    root: Path
    env: dict[str, str]
    procs: list[subprocess.Popen] = field(default_factory=list)

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(argv), env=self.env, capture_output=True, text=True, timeout=60, check=check)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
                         for p in sorted(self.root.glob("*.log")))

    def stop(self) -> None:
        """Cancel what is left in the queue (a job step outlives slurmd), then stop the daemons
        (slurmd first), each by its own pid; kill what does not stop."""
        if all(p.poll() is None for p in self.procs[:2]):
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                left = self.run("squeue", "-h", "-o", "%A", check=False).stdout.split()
                if left:
                    self.run("scancel", *sorted(set(left)), check=False)
                    deadline = time.monotonic() + 45  # KillWait (30 s), then SIGKILL
                    while self.run("squeue", "-h", check=False).stdout.strip() and time.monotonic() < deadline:
                        time.sleep(0.5)
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()


def start(root: Path, *, cpus: int | None = None, timeout: float = 60.0) -> Cluster:
    """Start munged, slurmctld and slurmd under ``root``; return when the node is idle."""
    root.mkdir(parents=True, exist_ok=True)
    for sub in ("state", "spool"):
        (root / sub).mkdir(exist_ok=True)
    os.chmod(root, 0o755)  # munged refuses a socket folder others can write to
    host = socket.gethostname().split(".")[0]
    conf = root / "slurm.conf"
    conf.write_text(slurm_conf(root, host=host, cpus=cpus or os.cpu_count() or 1, ctl_port=_free_port(),
                               node_port=_free_port()))
    key = root / "munge.key"
    key.write_bytes(os.urandom(1024))
    os.chmod(key, 0o600)
    env = dict(os.environ, SLURM_CONF=str(conf))
    cluster = Cluster(root, env)
    daemons = [
        [_which("munged"), "-F", "-f", f"--socket={root / 'munge.socket'}", f"--key-file={key}",
         f"--pid-file={root / 'munged.pid'}", f"--log-file={root / 'munged.log'}",
         f"--seed-file={root / 'munged.seed'}"],
        [_which("slurmctld"), "-D", "-i", "-f", str(conf)],
        [_which("slurmd"), "-D", "-N", host, "-f", str(conf)],
    ]
    try:
        for argv in daemons:
            out = (root / f"{Path(str(argv[0])).name}.out").open("w")
            cluster.procs.append(subprocess.Popen([str(a) for a in argv], env=env, stdout=out,
                                                  stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
            if argv is daemons[0]:
                _wait_for(lambda: (root / "munge.socket").exists(), timeout, "munged", cluster)
        _wait_for(lambda: cluster.run("sinfo", "-h", "-o", "%t", check=False).stdout.strip() == "idle",
                  timeout, "the node to be idle", cluster)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _wait_for(ready: object, timeout: float, what: str, cluster: Cluster) -> None:
    deadline = time.monotonic() + timeout
    while not ready():  # type: ignore[operator]
        dead = [p.args[0] for p in cluster.procs if p.poll() is not None]
        if dead or time.monotonic() > deadline:
            outs = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-2000:]}"
                             for p in sorted(cluster.root.glob("*.out")))
            raise RuntimeError(f"slurm test cluster: waiting for {what} failed (ended: {dead})\n{outs}\n"
                               f"{cluster.logs()}")
        time.sleep(0.5)


@contextlib.contextmanager
def running(root: Path, **kw: object) -> Iterator[Cluster]:
    cluster = start(root, **kw)  # type: ignore[arg-type]
    try:
        yield cluster
    finally:
        cluster.stop()


if __name__ == "__main__":
    import sys

    signal.signal(signal.SIGTERM, signal.default_int_handler)  # `timeout`, `kill`: stop the daemons too
    with running(Path(sys.argv[1]).resolve()) as c:
        print(f"export SLURM_CONF={c.env['SLURM_CONF']}   # Ctrl-C stops the cluster", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while all(p.poll() is None for p in c.procs):
                time.sleep(1)
