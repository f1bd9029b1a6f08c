"""Package structure: every module imports on its own, the import graph has no cycle, and
only ``modernize/cli`` imports the command-line layer."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "modernize"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(importer: str, node: ast.ImportFrom | ast.Import) -> set[str]:
    """The package modules an import statement names (``from . import bench`` names
    ``modernize.bench``; ``from .files import read_toml`` names ``modernize.files``)."""
    if isinstance(node, ast.Import):
        return {a.name for a in node.names if a.name in MODULES}
    base = node.module or ""
    if node.level:
        anchor = importer.split(".")
        if MODULES[importer].name != "__init__.py":
            anchor = anchor[:-1]  # a module's level-1 anchor is its package
        anchor = anchor[:len(anchor) - (node.level - 1)]
        base = ".".join(anchor + ([node.module] if node.module else []))
    found = set()
    for alias in node.names:
        sub = f"{base}.{alias.name}"
        found.add(sub if sub in MODULES else base)
    return {m for m in found if m in MODULES}


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(), str(path))
        deps = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                deps.update(_resolve(name, node))
        graph[name] = deps - {name, "modernize"}  # every import runs the root package first, by design
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_graph_helpers_see_relative_imports_and_cycles() -> None:
    graph = import_graph()
    assert "modernize.files" in graph["modernize.roadmap"]  # `from .files import read_toml`
    assert "modernize.bench" in graph["modernize.cli.bench"]  # `from .. import bench`, in a function
    assert "modernize.report" in graph["modernize.cli.report"]  # `from ..report import ...`
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_import_graph_has_no_cycle() -> None:
    """Function-level imports count: a cycle hidden inside a function is still a cycle."""
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_only_the_cli_imports_the_cli() -> None:
    offenders = {m: sorted(d for d in deps if d == "modernize.cli" or d.startswith("modernize.cli."))
                 for m, deps in import_graph().items()
                 if not (m in ("modernize.cli", "modernize.__main__") or m.startswith("modernize.cli."))}
    assert not {m: d for m, d in offenders.items() if d}


def test_every_module_imports_in_a_fresh_interpreter() -> None:
    names = sorted(m for m in MODULES if not m.endswith("__main__"))
    code = ("import importlib, sys\n"
            f"for name in {names!r}:\n"
            "    importlib.import_module(name)\n"
            "print(len([m for m in sys.modules if m.startswith('modernize')]))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert int(proc.stdout.split()[-1]) >= len(names)


def test_every_subpackage_ships_in_the_wheel() -> None:
    """pyproject.toml lists packages by hand (ablations/ is mapped into the package); a new
    subpackage left out of that list is missing from the wheel and breaks `pip install .`."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    package = ROOT / "modernize"
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in package.rglob("__init__.py")}
    assert on_disk - listed == set(), f"add to [tool.setuptools] packages: {sorted(on_disk - listed)}"


PRESENTATION = ("modernize.views", "modernize.checks", "modernize.report")


def is_core(module: str) -> bool:
    """The package's top-level modules, the engine (train/) and the data layer (data/)."""
    if module.startswith(PRESENTATION) or module.startswith("modernize.cli"):
        return False
    return module.count(".") == 1 or module.startswith(("modernize.train", "modernize.data"))


def test_the_core_never_imports_presentation() -> None:
    """Layers point one way: describe, diagrams, reports and checks read the core (spec, model,
    run folders); a core module importing them would drag matplotlib and pandas into training."""
    assert is_core("modernize.spec") and is_core("modernize.train.loop") and not is_core("modernize.views.diagram")
    offenders = {m: sorted(d for d in deps if d.startswith(PRESENTATION))
                 for m, deps in import_graph().items() if is_core(m)}
    assert not {m: d for m, d in offenders.items() if d}
