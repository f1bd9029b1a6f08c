"""Which source files are the user's code: a module a roadmap imports and every local module
it imports in turn (a kind whose layers live in a helper module), but not the Python
installation's (standard library, site-packages) nor this package's. The job fingerprint
hashes these files (``modernize.kinds``), and a run folder keeps a copy of them
(``modernize.runfolder.write_sources``), so a kind edited in a helper is never reused silently."""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import sys
import sysconfig
from pathlib import Path
from types import ModuleType

_PACKAGE = Path(__file__).resolve().parent


def _installed_roots() -> tuple[Path, ...]:
    """The folders of the Python installation: standard library, site-packages, prefixes."""
    paths = {Path(p) for p in sysconfig.get_paths().values() if p}
    paths |= {Path(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)}
    paths |= {Path(p) for p in sys.path if p and ("site-packages" in p or "dist-packages" in p)}
    return tuple(sorted({p.resolve() for p in paths if p.exists()}))


def is_local(path: Path) -> bool:
    """A Python source file that is neither the installation's nor this package's."""
    path = path.resolve()
    if path.suffix != ".py" or path.is_relative_to(_PACKAGE):
        return False
    return not any(path.is_relative_to(root) for root in _installed_roots())


def _file(module: ModuleType | None) -> Path | None:
    name = getattr(module, "__file__", None)
    return Path(name).resolve() if name and is_local(Path(name)) else None


def _imported_names(path: Path, module: str, is_package: bool) -> set[str]:
    """Every module name an ``import`` / ``from ... import`` in the file names (also those inside
    functions), relative ones resolved, with the names a ``from X import name`` may mean (X.name)."""
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (OSError, SyntaxError, ValueError):
        return set()
    package = module if is_package else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            try:
                base = importlib.util.resolve_name("." * node.level + (node.module or ""), package) \
                    if node.level else node.module or ""
            except (ImportError, ValueError):
                continue
            names.add(base)
            names |= {f"{base}.{a.name}" for a in node.names if a.name != "*"}
    for name in list(names):  # a dotted import runs its parent packages' __init__ too
        parts = name.split(".")
        names |= {".".join(parts[:i]) for i in range(1, len(parts))}
    return {n for n in names if n}


def local_modules(roots: list[str]) -> dict[str, Path]:
    """``{module name: source file}`` of the modules ``roots`` (already imported) and every local
    module they import, transitively; modules not imported and not local are left out."""
    found: dict[str, Path] = {}
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in found:
            continue
        path = _file(sys.modules.get(name))
        if path is None:
            continue
        found[name] = path
        todo += sorted(_imported_names(path, name, path.name == "__init__.py"))
    return found


def file_hash(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    except OSError:
        return "unreadable"


def code_hash(module: str, own: str) -> str:
    """The hash of a module's code: ``own`` (the hash of its file as imported) when it imports no
    local module, else that with the hash of every local module it imports, transitively."""
    helpers = {n: p for n, p in local_modules([module]).items() if n != module}
    if not helpers:
        return own
    listing = "\n".join([own, *(f"{n} {file_hash(p)}" for n, p in sorted(helpers.items()))])
    return hashlib.sha256(listing.encode()).hexdigest()[:16]


__all__ = ["code_hash", "file_hash", "is_local", "local_modules"]
