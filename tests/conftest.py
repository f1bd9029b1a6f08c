from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch

import modernize
from modernize.files import atomic_write_text
from modernize.proxy import ProxyScale

ROOT = Path(__file__).resolve().parent.parent
ROADMAPS = ["resnet50_to_convnext_t", "resnet200_to_convnext_b"]
PAPER_CSV = {"resnet50_to_convnext_t": "paper_roadmap_r50.csv", "resnet200_to_convnext_b": "paper_roadmap_r200.csv"}
SHARED_REFERENCE = ROOT.parent / "shared" / "reference"
GOLDEN_PATH = ROOT / "tests" / "golden" / "complexity_224.json"
ACCEPT = os.environ.get("MODERNIZE_ACCEPT") == "1"
"""``MODERNIZE_ACCEPT=1 python -m pytest tests/test_steps.py tests/test_flops_cli.py`` rewrites the
golden file from the current code first (like torchvision's ``EXPECTTEST_ACCEPT=1``); review the diff."""

TINY = dict(epochs=1, batch_size=16, lr=2e-3, lr_batch=16, warmup_epochs=0, resolution=16, crop="none",
            hflip=False, drop_path=0.0, label_smoothing=0.0, precision="fp32", channels_last=False)
"""The tiny recipe the training tests share: one epoch of 16-px images in fp32, seconds on a CPU."""
TINY_SUBSTITUTE = "\n[substitute.resnet_original]\nepochs = 1\nbatch_size = 16\ndecay_epochs = [0.5]\nresolution = 16\n"
"""Step 0's ``resnet_original`` override at the tiny scale: SGD + step decay, 1 epoch, 16 px."""
TINY_PROXY = ProxyScale(width=0.125, depth=0.34, stem_stride=2)
"""The proxy of the tiny runs (``--width 0.125 --depth 0.34 --low-res 2``)."""


def recipe_text(values: dict[str, Any]) -> str:
    """A recipe file's text: one ``key = value`` line per item (TOML values written as JSON)."""
    return "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items())


def write_recipe(tmp: Path, name: str = "tiny", extra: str = "", **kw: Any) -> Path:
    """``tmp/<name>.toml``: :data:`TINY` with ``kw`` on top, then ``extra`` (raw TOML) and the
    tiny ``[substitute.resnet_original]`` table."""
    path = tmp / f"{name}.toml"
    path.write_text(recipe_text(TINY | kw) + extra + TINY_SUBSTITUTE)
    return path


try:  # Hypothesis (tests/test_types.py): the same examples on every run unless a developer asks for others
    from hypothesis import HealthCheck, settings

    settings.register_profile("ci", derandomize=True, deadline=None, database=None, print_blob=True,
                              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    settings.register_profile("explore", parent=settings.get_profile("ci"), derandomize=False, max_examples=200)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
except ImportError:  # the test extra is not installed: only tests/test_types.py needs it
    pass

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Test processes run side by side (pyproject's `-n auto`): one torch thread each, and for the
    # commands they start, so that two workers do not oversubscribe the cores with OpenMP threads.
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"


@pytest.fixture(autouse=True)
def _deterministic() -> None:
    torch.manual_seed(0)


def load_script(name: str) -> Any:
    """scripts/<name>.py as a module (scripts/ is not a package), loaded once per process."""
    import importlib.util
    import sys

    key = f"modernize_script_{name}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, ROOT / "scripts" / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
    return sys.modules[key]


def load(name: str) -> modernize.Roadmap:
    return _cache.setdefault(name, modernize.load_roadmap(name))


_cache: dict[str, modernize.Roadmap] = {}


def paper_rows(name: str) -> dict[str, dict[str, str]]:
    with (ROOT / "ablations" / "paper" / PAPER_CSV[name]).open(newline="") as fh:
        return {r["row"]: r for r in csv.DictReader(fh)}


def all_steps() -> list[tuple[str, str]]:
    return [(rm, s.name) for rm in ROADMAPS for s in load(rm)]


def write_golden() -> None:
    """Count every step of every built-in roadmap at 224 px and rewrite the golden file."""
    golden = {name: {s.name: {"macs": c.macs, "flops_fvcore": c.flops_fvcore, "params": c.params}
                     for s in load(name) for c in [modernize.count(s.spec, 224)]}
              for name in ROADMAPS}
    atomic_write_text(GOLDEN_PATH, json.dumps(golden, indent=1))  # test workers may write it side by side


if ACCEPT:
    write_golden()
GOLDEN: dict[str, dict[str, dict[str, int]]] = json.loads(GOLDEN_PATH.read_text())


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A real single-node Slurm cluster (``tests/slurm_cluster.py``) for the session: installed
    where missing and possible (root, apt-get), else the test skips saying why; stopped at the
    end of the session even when its tests fail."""
    from tests import slurm_cluster as sc

    why = sc.install_or_why_not()
    if why:
        pytest.skip(why)
    with sc.running(tmp_path_factory.mktemp("slurm")) as cluster:
        yield cluster
