from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

import modernize

ROOT = Path(__file__).resolve().parent.parent
ROADMAPS = ["resnet50_to_convnext_t", "resnet200_to_convnext_b"]
PAPER_CSV = {"resnet50_to_convnext_t": "paper_roadmap_r50.csv", "resnet200_to_convnext_b": "paper_roadmap_r200.csv"}
SHARED_REFERENCE = ROOT.parent / "shared" / "reference"


@pytest.fixture(autouse=True)
def _deterministic() -> None:
    torch.manual_seed(0)


def load(name: str) -> modernize.Roadmap:
    return _cache.setdefault(name, modernize.load_roadmap(name))


_cache: dict[str, modernize.Roadmap] = {}


def paper_rows(name: str) -> dict[str, dict[str, str]]:
    with (ROOT / "ablations" / "paper" / PAPER_CSV[name]).open(newline="") as fh:
        return {r["row"]: r for r in csv.DictReader(fh)}


def all_steps() -> list[tuple[str, str]]:
    return [(rm, s.name) for rm in ROADMAPS for s in load(rm)]
