"""scripts/hostile.py, the hostile battery of issue 11, is itself tested: a handful of its cases run
through its importable ``run_case`` (each in a forked child, as the script does), and its checks
catch what they claim to catch (a traceback, a hang, a wrong exit code, a write outside)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "hostile.py"


def _load() -> ModuleType:
    if "hostile_battery" not in sys.modules:
        spec = importlib.util.spec_from_file_location("hostile_battery", SCRIPT)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["hostile_battery"] = module
        spec.loader.exec_module(module)
        module.preload()
    return sys.modules["hostile_battery"]


def test_at_least_100_distinct_cases_over_every_command() -> None:
    h = _load()
    ids = [c.id for c in h.CASES]
    assert len(ids) == len(set(ids)) >= 100
    for word in ("flops", "train", "report", "describe", "bench-", "bench-data", "signal", "concurrent", "force",
                 "img-", "recipe-", "roadmap-", "last-pt", "result-json", "config-json", "log-csv", "out-"):
        assert any(word in i for i in ids), word


@pytest.mark.slow
@pytest.mark.parametrize("cid", ["flops-resolution-nan", "train-flag-seeds-huge", "recipe-file-deep-nesting",
                                 "report-runjson-seeds-empty", "signal-sigterm-training", "img-symlink-loop",
                                 "flops-out-readonly", "result-json-top1-infinity", "img-long-tmpdir",
                                 "stdout-closed-pipe", "stdout-dev-full", "out-not-utf8-bytes"])
def test_cases_pass(cid: str, tmp_path: Path) -> None:
    h = _load()
    out = h.run_case(next(c for c in h.CASES if c.id == cid), tmp_path)
    assert out.ok, out.line() + "\n" + "\n".join(out.log)


def _selftest(h: ModuleType, fn, tmp_path: Path):  # noqa: ANN001, ANN202
    return h.run_case(h.Case("selftest", fn), tmp_path)


@pytest.mark.slow
def test_checks_catch_what_they_claim(tmp_path: Path) -> None:
    h = _load()
    bug = _selftest(h, lambda ctx: ctx.ok(["describe", "--no-counts"], hooks=[("raise", "modernize.cli:_dispatch")]),
                    tmp_path / "a")
    assert (bug.ok, bug.kind, bug.tally.tracebacks) == (False, "traceback", 1)
    hang = _selftest(h, lambda ctx: ctx.cli(["describe", "--no-counts"], timeout=2,
                                            hooks=[("sleep", "modernize.cli:_dispatch", 30)]), tmp_path / "b")
    assert (hang.ok, hang.kind, hang.tally.hangs) == (False, "hang", 1)
    wrong_rc = _selftest(h, lambda ctx: ctx.refused(["describe", "--no-counts"], "x"), tmp_path / "c")
    assert (wrong_rc.ok, wrong_rc.kind) == (False, "fail") and "expected exit 2" in wrong_rc.reason
    outside = _selftest(h, lambda ctx: (ctx.case_dir / "sentinel.txt").write_text("touched"), tmp_path / "d")
    assert (outside.ok, outside.kind, outside.tally.outside) == (False, "outside", 1)
    writes = _selftest(h, lambda ctx: ctx.cli(["flops", str(ctx.w("mini.toml", h.MINI)), "--resolution", "32",
                                               "--out", str(ctx.root / "o")], allowed=[]), tmp_path / "e")
    assert (writes.ok, writes.kind) == (False, "outside")
