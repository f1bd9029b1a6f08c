"""The lesson notebooks (docs/notebooks/): each runs top to bottom at the tests' budget, so they
cannot drift from the code, and each is committed with the outputs of a normal run."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "docs" / "notebooks").glob("*.ipynb"))
MACHINE_PATH = re.compile(r"(?<![\w.~+/-])/(?:work|root|home|tmp)/")
"""An absolute path of the machine that ran a notebook (a committed output must not name one)."""


def test_the_lesson_notebooks_exist() -> None:
    names = {p.stem for p in NOTEBOOKS}
    assert {"01_roadmap_in_an_hour", "02_your_own_step", "03_exercises", "03_exercises_solutions"} <= names


def _texts(cell: dict) -> list[str]:
    """Every text a code cell's outputs show (stream text, text/plain, text/html, errors)."""
    out = []
    for o in cell.get("outputs", []):
        if o["output_type"] == "stream":
            out.append(o["text"])
        elif o["output_type"] == "error":
            out.append("\n".join(o["traceback"]))
        else:
            out += [v for k, v in o.get("data", {}).items() if k.startswith("text/") and isinstance(v, str)]
    return out


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_outputs_exist_without_errors_or_machine_paths(path: Path) -> None:
    book = nbformat.read(path, as_version=4)
    code = [c for c in book.cells if c.cell_type == "code"]
    assert code and all(c.get("execution_count") for c in code), f"{path.name}: a code cell was never run"
    assert any(c.get("outputs") for c in code), f"{path.name}: committed without outputs"
    for i, cell in enumerate(code):
        assert not [o for o in cell.outputs if o["output_type"] == "error"], f"{path.name}: cell {i} has an error"
        for text in _texts(cell):
            hit = MACHINE_PATH.search(text)
            assert hit is None, f"{path.name}: code cell {i} output names a machine path: {text[hit.start():][:80]!r}"
        assert "QUICK (tests)" not in "".join(_texts(cell)), f"{path.name}: committed with the tests' budget"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom_at_the_quick_budget(path: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Executed in a kernel of this interpreter; any cell's error fails the test (CellExecutionError)."""
    monkeypatch.setenv("MODERNIZE_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("MODERNIZE_NOTEBOOK_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    book = nbformat.read(path, as_version=4)
    # kernel "python3": jupyter_client starts it with this test's interpreter (sys.executable)
    client = nbclient.NotebookClient(book, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    code = [c for c in book.cells if c.cell_type == "code"]
    assert all(c.get("execution_count") for c in code)
    assert "QUICK (tests)" in "".join(_texts(code[0]))
