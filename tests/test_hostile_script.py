"""scripts/hostile.py, the hostile battery of issue 11, holds the cases; tests/test_battery.py runs
them (one pytest test per case). Here: the cases stay many, distinct and over every command, and
every case is a slow-marked test, and those that train are marked so."""

from __future__ import annotations

from .conftest import load_script
from .test_battery import CASES, TRAINING_IN_CI


def test_at_least_300_distinct_cases_over_every_command() -> None:
    h = load_script("hostile")
    ids = [c.id for c in h.CASES]
    assert len(ids) == len(set(ids)) >= 300
    for word in ("flops", "train", "report", "describe", "bench-", "bench-data", "signal", "concurrent", "force",
                 "img-", "recipe-", "roadmap-", "last-pt", "result-json", "config-json", "log-csv", "out-"):
        assert any(word in i for i in ids), word


def test_every_case_is_a_test_and_training_cases_are_slow() -> None:
    h = load_script("hostile")
    assert [p.values[0] for p in CASES] == [c.id for c in h.CASES]
    marks = {p.values[0]: {m.name for m in p.marks} for p in CASES}
    assert all("slow" in m for m in marks.values())
    trains = {i for i, m in marks.items() if "trains" in m}
    assert {"signal-sigterm-training", "recipe-epochs-1", "result-json-top1-abc", "config-json-deleted"} <= trains
    assert not ({"flops-resolution-nan", "roadmap-from-list", "roadmap-paper-row-table", "describe-roadmap-missing"}
               & trains)
    assert set(TRAINING_IN_CI) <= trains
