"""Where features meet: data kind x execution x event, each cell one ``train`` process (or
process tree) on a tiny job with per-image augmentation, compared with its execution's clean run.

- data kinds (``DATA``): the in-memory Fashion-MNIST subset, an image folder of the same images
  (``tests/folder_fixture.py``), synthetic tensors;
- executions (``EXECUTIONS``): one process, ``--workers 2`` (spawned local workers sharing two
  jobs through their claims), ``torchrun`` with 2 gloo processes (DDP, half the batch each);
- events (``EVENTS``): a clean run; SIGKILL at an optimizer step, then the same command again;
  Ctrl-C (SIGINT to the whole process group, as a terminal sends it) at a step, then again.

Every cell ends with the clean run's scores, log and weights, bit for bit: serial and
``--workers`` equal each other (the same jobs at the same batch), torchrun equals its own clean
run (a global batch of 2 x 8 sums its gradients in another order). The clean runs are the
baselines, computed once per session (shared by the pytest-xdist workers through a file lock).

To add a row: a data kind is one entry of ``DATA`` (data string, recipe extras), an execution one
of ``EXECUTIONS`` (the argv prefix that launches the script, its recipe changes, its seeds and its
baseline group). Every combination is a cell; ``SKIP`` leaves combinations out with a reason.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
from filelock import FileLock

from modernize.data import FASHION_MNIST_DIR
from tests.conftest import write_recipe
from tests.test_train import REPO

STEP = "separate_downsampling"
TRIGGER_AT = 9
"""The optimizer step (per process) at which an event fires: in epoch 2 of a job (6 iterations
an epoch), after the mid-epoch checkpoint of step 8 (``--ckpt-every 2``)."""

SCRIPT = textwrap.dedent("""
    import os, signal, sys, torch
    sys.path.insert(0, {repo!r})
    from pathlib import Path
    out, data, recipe, seeds, workers, event, marker = sys.argv[1:8]
    if event != "clean":  # the event fires once, in the first process to reach the step
        real, calls = torch.optim.AdamW.step, [0]
        def step(self, *a, **k):
            calls[0] += 1
            if calls[0] == {trigger} and not os.path.exists(marker):
                try:
                    os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                except FileExistsError:
                    return real(self, *a, **k)
                if event == "sigkill":
                    os.kill(os.getpid(), signal.SIGKILL)
                os.killpg(os.getpgid(0), signal.SIGINT)  # Ctrl-C: the terminal signals the whole group
            return real(self, *a, **k)
        torch.optim.AdamW.step = step
    if __name__ == "__main__":  # spawned workers re-import this file
        from modernize.proxy import ProxyScale
        from modernize.train import train_roadmap
        torch.set_num_threads(1)
        try:
            train_roadmap(None, data=data, recipe=recipe, seeds=[int(s) for s in seeds.split(",")], out=Path(out),
                          steps=[{step!r}], device="cpu", ckpt_every=2, progress=False,
                          proxy=ProxyScale(width=0.125, depth=0.34, stem_stride=2), workers=int(workers), threads=1)
        except KeyboardInterrupt:
            sys.exit(130)
""")
"""One training process: argv = RUN_DIR DATA RECIPE SEEDS WORKERS EVENT MARKER."""

AUG = dict(epochs=2, hflip=True, mixup=0.8, cutmix=1.0, drop_path=0.1, random_erasing=0.25, label_smoothing=0.1,
           warmup_epochs=0.5, crop="pad")


def _folder(root: Path) -> tuple[str, dict[str, Any]]:
    from tests.folder_fixture import export_fashion

    folder = root / "folder"
    with FileLock(str(root / "folder.lock")):
        if not (folder / "done").exists():
            export_fashion(folder, train=96, val=40)
            (folder / "done").touch()
    return f"imagefolder:{folder}", dict(crop="rrc", randaugment_ops=2)


DATA: dict[str, Callable[[Path], tuple[str, dict[str, Any]]]] = {
    "memory": lambda root: ("fashion-mnist", dict(train_images=96, val_images=40)),
    "folder": _folder,
    "synthetic": lambda root: ("synthetic:96", {}),
}
"""Data kind -> (shared folder -> data string, recipe extras)."""


@dataclass(frozen=True)
class Execution:
    launch: Callable[[], list[str]]
    """The argv before the script (the Python interpreter, or torchrun)."""
    workers: int = 1
    seeds: str = "0,1"
    recipe: dict[str, Any] = field(default_factory=dict)
    baseline: str = "serial"
    """The execution whose clean run this one must equal."""


def _torchrun() -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]


EXECUTIONS: dict[str, Execution] = {
    "serial": Execution(lambda: [sys.executable]),
    "workers2": Execution(lambda: [sys.executable], workers=2),
    "torchrun2": Execution(_torchrun, seeds="0", recipe=dict(batch_size=8, lr_batch=16), baseline="torchrun2"),
}
EVENTS = ["clean", "sigkill", "sigint"]
_ONE_EVENT = {"memory": ["sigint", "sigkill", "sigint"], "synthetic": ["sigkill", "sigint", "sigkill"]}
"""In-memory and synthetic data run each execution clean and under one event (per execution, in
``EXECUTIONS`` order), alternating, so every pair of (data, execution, event) values still meets
in a cell and the matrix fits CI's budget on 2 cores; the image folder (the ImageNet path, whose
loader workers meet local workers and torchrun) and any data kind added later run every cell."""
SKIP: dict[tuple[str, str, str], str] = {
    (data, execution, event): "pairwise cover: this data kind meets this event under another execution"
    for data, kept in _ONE_EVENT.items() for execution, keep in zip(EXECUTIONS, kept)
    for event in EVENTS[1:] if event != keep
}
"""(data, execution, event) -> why that cell is left out (not collected); a new data kind runs every cell."""


def _cells() -> list[Any]:
    cells = []
    for data, execution, event in itertools.product(DATA, EXECUTIONS, EVENTS):
        if (data, execution, event) not in SKIP:
            cells.append(pytest.param(data, execution, event, marks=pytest.mark.slow, id=f"{data}-{execution}-{event}"))
    return cells


def _run(root: Path, out: Path, data: str, execution: str, event: str) -> subprocess.CompletedProcess[str]:
    """One command of a cell, in its own session (the Ctrl-C reaches only its process group)."""
    ex = EXECUTIONS[execution]
    data_arg, extras = DATA[data](root)
    recipe = write_recipe(out.parent, f"{out.name}_recipe", **(AUG | extras | ex.recipe))
    script = root / "matrix_job.py"
    if not script.exists():
        text = SCRIPT.format(repo=str(REPO), trigger=TRIGGER_AT, step=STEP)
        tmp = script.with_suffix(f".{os.getpid()}")
        tmp.write_text(text)
        tmp.replace(script)
    argv = [*ex.launch(), str(script), str(out), data_arg, str(recipe), ex.seeds, str(ex.workers), event,
            str(out.parent / f"{out.name}.fired")]
    proc = subprocess.Popen(argv, env=dict(os.environ, OMP_NUM_THREADS="1"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=400)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(f"{out.name}: hung\n{stderr[-3000:]}")
    return subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr)


def _final(run: Path, seeds: str) -> dict[str, Any]:
    """What must be equal: each job's scores, its log without timings, a digest of its weights."""
    final = {}
    for seed in seeds.split(","):
        job = run / STEP / f"seed{seed}"
        res = json.loads((job / "result.json").read_text())
        log = [row.split(",")[:6] for row in (job / "log.csv").read_text().splitlines()]
        weights = torch.load(job / "last.pt", weights_only=False)["model"]
        digest = {k: hashlib.sha256(v.cpu().contiguous().numpy().tobytes()).hexdigest() for k, v in weights.items()}
        final[seed] = dict(status=res["status"], top1=res["top1"], top5=res["top5"], best=res["best_top1"],
                           log=log, weights=digest)
    return final


def _baseline(root: Path, data: str, execution: str) -> dict[str, Any]:
    """The clean run of ``execution`` on ``data``, once per session for every test process."""
    path = root / f"baseline-{data}-{execution}.json"
    with FileLock(str(path) + ".lock"):
        if not path.exists():
            out = root / "baselines" / f"{data}-{execution}"
            out.parent.mkdir(exist_ok=True)
            proc = _run(root, out, data, execution, "clean")
            assert proc.returncode == 0, proc.stderr[-3000:]
            path.write_text(json.dumps(_final(out, EXECUTIONS[execution].seeds)))
    return json.loads(path.read_text())


@pytest.fixture(scope="session")
def matrix_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder every pytest-xdist worker of this session shares (baselines, the image folder)."""
    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "matrix"
    root.mkdir(exist_ok=True)
    return root


@pytest.mark.parametrize("data, execution, event", _cells())
def test_cell_equals_its_clean_run(matrix_root: Path, tmp_path: Path, data: str, execution: str, event: str) -> None:
    if data == "memory" and not (FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"needs Fashion-MNIST in {FASHION_MNIST_DIR} (scripts/setup.sh installs it)")
    ex = EXECUTIONS[execution]
    want = _baseline(matrix_root, data, ex.baseline)
    if event == "clean":
        got = _baseline(matrix_root, data, execution)
        assert got == want, f"{execution} differs from the clean {ex.baseline} run"
        return
    out = tmp_path / "run"
    first = _run(matrix_root, out, data, execution, event)
    assert (tmp_path / "run.fired").exists(), f"the {event} never fired\n{first.stderr[-3000:]}"
    if execution != "workers2":  # there the other worker may take the job over and finish the run
        assert first.returncode != 0, first.stdout[-2000:]
    if event == "sigint" and execution != "torchrun2":  # stopped at an iteration, its checkpoint saved
        assert first.returncode == 130 and "interrupted" in first.stderr, first.stderr[-3000:]
    again = _run(matrix_root, out, data, execution, "clean")
    assert again.returncode == 0, again.stderr[-3000:]
    said = first.stdout + first.stderr + again.stdout + again.stderr
    assert "resuming" in said, said[-3000:]  # from the checkpoint, not from scratch
    got = _final(out, ex.seeds)
    assert got == want, {s: {k: (got[s][k], want[s][k]) for k in got[s] if got[s][k] != want[s][k] and k != "weights"}
                         for s in got}
