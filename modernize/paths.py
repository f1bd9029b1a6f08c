"""Where things are: the repository root (computed once, here), the default output folders,
and the one resolver for "a built-in name or a path" used by roadmaps and recipes.

Built-in roadmaps and recipes live in the top-level ``ablations/`` folder of the checkout.
A wheel ships that folder as package data, ``modernize/ablations/`` (pyproject maps
``modernize.ablations`` to ``ablations``), and it is found through ``importlib.resources``;
a source checkout (plain or editable install) reads the folder itself.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

from .errors import ConfigError

PACKAGE_DIR = Path(__file__).resolve().parent


def _checkout_root() -> Path | None:
    """The repository root when the package is imported from a source checkout, else None."""
    root = PACKAGE_DIR.parent
    return root if (root / "pyproject.toml").is_file() and (root / "ablations").is_dir() else None


REPO_ROOT: Path | None = _checkout_root()
"""The checkout this package runs from; None for an installed wheel."""


def work_root() -> Path:
    """The folder default outputs go under: the checkout, or the current folder when installed."""
    return REPO_ROOT if REPO_ROOT is not None else Path.cwd()


def reports_dir() -> Path:
    """``reports/``: the committed reference tables and figures. Commands write there only when
    told to (``--out reports/...``), so a default run leaves a checkout's ``git status`` clean."""
    return work_root() / "reports"


def runs_dir() -> Path:
    """``runs/``: every default output (ignored by git): runs, reports, FLOP tables, timings."""
    return work_root() / "runs"


def default_out(roadmap_name: str) -> Path:
    """Where a roadmap's generated tables go by default: ``runs/<roadmap>/``."""
    return runs_dir() / roadmap_name


def reference_dir(roadmap_name: str) -> Path:
    """The committed reference report of a roadmap: ``reports/<roadmap>/``."""
    return reports_dir() / roadmap_name


def ablations_dir() -> Path:
    """The built-in roadmaps (``*.toml``), recipes (``recipes/*.toml``) and paper tables (``paper/*.csv``)."""
    packaged = Path(str(importlib.resources.files("modernize"))) / "ablations"  # a wheel's package data
    if packaged.is_dir():
        return packaged
    return PACKAGE_DIR.parent / "ablations"  # a source checkout (also an editable install)


def builtin_names(folder: str = "") -> list[str]:
    """The names (file stems) of the built-in ``*.toml`` files in ``ablations/<folder>``."""
    return sorted(p.stem for p in (ablations_dir() / folder).glob("*.toml"))


def resolve_builtin(name_or_path: str | Path, *, what: str, folder: str = "") -> Path:
    """A built-in name (``quick``, ``resnet50_to_convnext_t``) or a path to a TOML file.

    A bare name (no folder part, no suffix) is a built-in when ``ablations/<folder>/<name>.toml``
    exists; anything else is a path that must be a file. Errors list the built-ins."""
    path = Path(name_or_path)
    names = builtin_names(folder)
    listing = f"built-in {what}s: {', '.join(names)}; or give a path to a .toml file"
    if path.suffix == "" and path.parent == Path("."):
        builtin = ablations_dir() / folder / f"{path.name}.toml"
        if builtin.is_file():
            return builtin
        if path.is_file():
            return path
        raise ConfigError(f"unknown {what} '{name_or_path}': no such file and no built-in {what} of that name "
                          f"({listing})")
    if not path.is_file():
        raise ConfigError(f"{what} file '{name_or_path}': no such file ({listing})")
    return path


OUTPUT_MARKERS: dict[str, tuple[str, ...]] = {
    "run folder": ("run.json",), "report folder": ("report.json", "table.md"),
    "comparison": ("compare.json", "compare.csv"), "explore output": ("explore.csv",)}
"""The file that says which command wrote a folder (and, for a report, its pre-record form)."""


def check_output_kind(folder: Path, kind: str, flag: str = "--out") -> None:
    """Refuse to write a ``kind`` (a key of :data:`OUTPUT_MARKERS`) into a folder that holds
    another command's output: both write ``index.html`` (or the run's own files), so one would
    silently replace part of the other."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    for other, markers in OUTPUT_MARKERS.items():
        found = next((m for m in markers if (folder / m).exists()), None) if other != kind else None
        if found:
            article = "an" if other[0] in "aeiou" else "a"
            raise ConfigError(f"{flag} {folder}: holds another command's output ({article} {other}: {found}); writing "
                              f"the {kind} there would mix the two and replace the files they share: give "
                              "another folder")


__all__ = ["OUTPUT_MARKERS", "PACKAGE_DIR", "REPO_ROOT", "ablations_dir", "builtin_names", "check_output_kind",
           "default_out", "reference_dir", "reports_dir", "resolve_builtin", "runs_dir", "work_root"]
