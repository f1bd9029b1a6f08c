"""The user modules a roadmap names in ``imports``: loaded from files beside the roadmap file (or at
a path relative to it), never from wherever ``sys.path`` happens to find a module of that name.

An entry is either a module name (``my_kinds``, ``lab.kinds``: ``my_kinds.py`` or the package
``my_kinds/`` in the roadmap's folder) or a path relative to the roadmap file (``../lab/kinds``,
``../lab/kinds.py``, ``shared/kinds/``: a ``.py`` file or a package folder, imported under its own
name with its folder first on ``sys.path``). A name that is also a module of the standard library,
a built-in or an installed module (a ``json.py`` beside the roadmap) is refused: Python would
import the other one wherever the name is imported again, so the user's file would run only
sometimes. A module's errors, ``sys.exit`` included, are one line naming it.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import sys
import traceback
from pathlib import Path

from .errors import ConfigError
from .paths import PACKAGE_DIR

_LOADED: dict[str, str] = {}
"""Top-level name -> the folder this process imported it from (through ``load``)."""


def resolve(entry: str, roadmap_dir: Path) -> tuple[str, str]:
    """An ``imports`` entry -> ``(module name, folder)``; the file must exist there."""
    if not isinstance(entry, str) or not entry.strip():
        raise ConfigError(f"imports: an entry must be a module name or a path to a .py file, got {entry!r}")
    if "/" in entry or "\\" in entry or entry.endswith(".py"):
        return _resolve_path(entry, roadmap_dir)
    if not all(part.isidentifier() for part in entry.split(".")):
        raise ConfigError(f"imports: '{entry}' is neither a module name (letters, digits, '_', dots) "
                          "nor a path to a .py file")
    folder = roadmap_dir.resolve()
    top = entry.split(".")[0]
    if not ((folder / f"{top}.py").is_file() or (folder / top).is_dir()):
        raise ConfigError(f"imports: no module '{entry}' in the roadmap's folder {folder} (looked for {top}.py "
                          f"and {top}/); give a module beside the roadmap or a path relative to it "
                          "(imports = [\"../lab/kinds.py\"])")
    return entry, str(folder)


def _resolve_path(entry: str, roadmap_dir: Path) -> tuple[str, str]:
    target = (roadmap_dir / entry.rstrip("/\\")).resolve()
    if target.suffix != ".py" and target.with_name(target.name + ".py").is_file():
        target = target.with_name(target.name + ".py")
    if target.suffix == ".py" and target.is_file():
        name = target.stem
    elif target.is_dir() and (target / "__init__.py").is_file():
        name = target.name
    else:
        raise ConfigError(f"imports: '{entry}' (from the roadmap's folder: {target}) is neither a .py file nor a "
                          "package folder with an __init__.py")
    if not name.isidentifier():
        raise ConfigError(f"imports: '{entry}': {name!r} cannot be a Python module name (letters, digits, '_')")
    return name, str(target.parent)


def _shadowed(top: str, folder: str) -> str | None:
    """What else Python finds under the name ``top`` (outside ``folder``), or None."""
    if top in sys.builtin_module_names:
        return "a module built into Python"
    loaded = sys.modules.get(top)
    origin: str | None = None
    if loaded is not None and top not in _LOADED:
        origin = getattr(loaded, "__file__", None) or "Python itself"
    else:
        others = [p for p in sys.path if Path(p or ".").resolve() != Path(folder)]
        try:
            spec = importlib.machinery.PathFinder.find_spec(top, others)
        except (ImportError, ValueError, OSError):
            spec = None
        origin = spec and (spec.origin or next(iter(spec.submodule_search_locations or []), None))
    if origin and origin != "Python itself" and Path(origin).resolve().is_relative_to(folder):
        return None
    if top in sys.stdlib_module_names:
        return "a module of the standard library" + (f" ({origin})" if origin else "")
    return f"the installed module {origin}" if origin else None


def load(name: str, folder: str) -> None:
    """Import ``name`` from ``folder`` (its kinds and transforms register on import); a user
    module's own failure is a ``ConfigError`` naming it, its file and line."""
    top = name.split(".")[0]
    other = _shadowed(top, folder)
    if other:
        raise ConfigError(f"imports: '{name}' in {folder} has the name of {other}; Python would import that one "
                          f"instead of yours wherever '{top}' is imported: rename your module (e.g. my_{top})")
    if _LOADED.get(top, folder) != folder:  # the same name from another roadmap's folder: import it afresh
        for key in [k for k in sys.modules if k == top or k.startswith(top + ".")]:
            del sys.modules[key]
    sys.path.insert(0, folder)
    try:
        module = importlib.import_module(name)
    except ImportError as exc:
        raise ConfigError(f"imports: cannot import '{name}' from {folder}: {exc}") from None
    except (Exception, SystemExit) as exc:  # the user module's own bug or exit: one line, not a traceback
        raise ConfigError(f"imports: {failure(exc, f'module {name!r}')}") from exc
    finally:
        sys.path.remove(folder)
    _LOADED[top] = folder
    file = getattr(module, "__file__", None)
    if not file or not Path(file).resolve().is_relative_to(folder):
        raise ConfigError(f"imports: '{name}' was imported from {file or 'no file'}, not from {folder}")


def failure(exc: BaseException, who: str) -> str:
    """``WHO (file:line, in func) raised ValueError: ...`` / ``... called sys.exit(0)``: one line
    for an exception that user code raised, at the innermost frame of the user's code (the
    command line's error boundary words a user kind's error the same way)."""
    frames = traceback.extract_tb(exc.__traceback__)
    mine = [f for f in frames if "importlib" not in f.filename and not Path(f.filename).is_relative_to(PACKAGE_DIR)]
    at = f" ({mine[-1].filename}:{mine[-1].lineno}, in {mine[-1].name})" if mine else ""
    if isinstance(exc, SystemExit):
        return (f"{who}{at} called sys.exit({exc.code!r}); a user module registers kinds and transforms, "
                "it does not exit")
    text = " ".join(str(exc).split())[:300]
    return f"{who}{at} raised {type(exc).__name__}{': ' + text if text else ''}"
