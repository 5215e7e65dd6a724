"""The cluster package's modules import one another in one direction only: every internal
import at module top (none hidden in a function), and no cycle among them."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import resnetctl.cluster

PACKAGE = "resnetctl.cluster"
SOURCE = Path(resnetctl.cluster.__file__).parent


def internal_imports(root: Path) -> list[tuple[str, str, bool]]:
    """(importer, imported, at module top) for every import of a `resnetctl.cluster` module
    in the modules under `root`; imports under `if TYPE_CHECKING:` never run and are left out."""
    found = []
    for file in sorted(root.glob("*.py")):
        module = PACKAGE if file.stem == "__init__" else f"{PACKAGE}.{file.stem}"
        tree = ast.parse(file.read_text(encoding="utf-8"))
        top = {id(node) for node in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                node.body = []
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
                # `from resnetctl.cluster import launcher` imports the submodule too.
                if node.module == PACKAGE:
                    names += [f"{PACKAGE}.{a.name}" for a in node.names if _is_module(root, a)]
            for name in names:
                if name == PACKAGE or name.startswith(PACKAGE + "."):
                    found.append((module, name, id(node) in top))
    return found


def _is_module(root: Path, alias: ast.alias) -> bool:
    return (root / f"{alias.name}.py").exists()


def cycle(edges: list[tuple[str, str, bool]]) -> list[str] | None:
    """One import cycle among `edges` (as the modules along it), or None."""
    graph: dict[str, set[str]] = {}
    for importer, imported, _ in edges:
        if importer != imported:
            graph.setdefault(importer, set()).add(imported)
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt] if nxt in path else [node, nxt]
            if nxt not in state:
                found = visit(nxt, [*path, nxt])
                if found:
                    return found
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start, [start])
            if found:
                return found
    return None


def test_the_cluster_modules_import_each_other_without_a_cycle() -> None:
    edges = internal_imports(SOURCE)
    assert edges, "the walk found no internal import at all"
    assert cycle(edges) is None, f"import cycle: {' -> '.join(cycle(edges) or [])}"


def test_no_cluster_module_hides_an_internal_import_in_a_function() -> None:
    hidden = [(a, b) for a, b, top in internal_imports(SOURCE) if not top]
    assert hidden == []


def test_the_cycle_finder_finds_a_masked_cycle() -> None:
    # The shape the package had: config imported capacity inside a function, and capacity
    # imported config at its top.
    edges = [
        (f"{PACKAGE}.config", f"{PACKAGE}.capacity", False),
        (f"{PACKAGE}.capacity", f"{PACKAGE}.config", True),
    ]
    assert cycle(edges) is not None
    assert cycle(edges[1:]) is None


def test_each_cluster_module_imports_on_its_own_in_a_fresh_interpreter() -> None:
    modules = sorted(
        PACKAGE if f.stem == "__init__" else f"{PACKAGE}.{f.stem}" for f in SOURCE.glob("*.py")
    )
    # One interpreter, and resnetctl forgotten before each import: each module comes first.
    script = (
        "import importlib, sys\n"
        "for name in sys.argv[1:]:\n"
        "    for loaded in [m for m in sys.modules if m.split('.')[0] == 'resnetctl']:\n"
        "        del sys.modules[loaded]\n"
        "    importlib.import_module(name)\n"
        "    print('ok', name)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, *modules],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [word for m in modules for word in ("ok", m)]
