"""`run_ablation.py flops` for both roadmaps: every row against the paper and the golden data."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from .conftest import GOLDEN, ROADMAPS, ROOT, paper_rows

pytestmark = pytest.mark.slow  # counts every step of both roadmaps with fvcore, in a subprocess

COLUMNS = ["step", "paper_row", "change", "gmacs", "gflops_fvcore", "params_m", "paper_gflops", "delta_gmacs"]


@pytest.mark.parametrize("roadmap", ROADMAPS)
def test_flops_table_reproduces_the_paper(tmp_path: Path, roadmap: str) -> None:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, str(ROOT / "run_ablation.py"), "flops", roadmap, "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    elapsed = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr
    table = pd.read_csv(tmp_path / "flops.csv")
    assert set(COLUMNS) <= set(table.columns)
    paper = paper_rows(roadmap)
    assert list(table["paper_row"]) == list(paper)
    inconsistent = []
    for r in table.itertuples():
        ref = paper[r.paper_row]
        golden = GOLDEN[roadmap][r.step]
        assert abs(r.gmacs - float(ref["analytic_gmacs"])) <= 0.0005, r.step
        assert abs(r.params_m - float(ref["analytic_params_m"])) <= 0.01, r.step
        assert r.gflops_fvcore == round(golden["flops_fvcore"] / 1e9, 4), r.step
        assert r.gmacs == round(golden["macs"] / 1e9, 4), r.step
        assert r.paper_gflops == float(ref["paper_gflops"])
        assert r.delta_gmacs == pytest.approx(r.gmacs - r.paper_gflops, abs=1e-4)
        if "inconsisten" in ref["note"]:
            inconsistent.append(r.step)
            assert r.step in proc.stdout and "inconsisten" in str(r.note)
        else:
            assert f"{r.gmacs:.2f}" == f"{r.paper_gflops:.2f}", r.step
    assert inconsistent == (["bn_to_ln", "separate_downsampling"] if roadmap.startswith("resnet50") else [])
    md = (tmp_path / "flops.md").read_text()
    assert "inconsistently" in md or not inconsistent
    print(f"{roadmap}: flops command took {elapsed:.1f} s")
