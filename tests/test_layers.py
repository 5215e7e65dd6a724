"""Imports between the packages of resnetctl point one way.

The import graph is read from the source with `ast`, nothing is imported. An import counts
wherever it is written: at the top of a module or inside a function, `import a.b` or
`from a import b`, absolute or relative. Imports under `if TYPE_CHECKING:` are left out: they
never run, they only name types for the checker. `from a import b` points at module `a.b` when
there is one, else at `a` (its `__init__`); the `__init__` of the packages a module's import
runs on the way is not counted, or every package that re-exports its modules would be a circle.

A package is the first level under resnetctl (`train`, `storage`, ...); a module at the top
(`units.py`) is a package of its own. Two rules:

- no circle spans two packages: the first run of a package's modules must not need itself
  back through another package;
- a circle between modules of one package is declared where it is made: a comment
  `# import-circle: <why>` on one of the import statements closing it, or on a comment line
  right above that statement (also read on the continuation lines of a parenthesised import).
  A declaration that closes no circle fails too, so that it does not outlive the reason.

`python tests/test_layers.py` prints every circle, the declared ones with their reasons.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict, deque
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "platform" / "resnetctl"
TOP = "resnetctl"
DECLARED = re.compile(r"#\s*import-circle:(.*)$")


@dataclass(frozen=True)
class Import:
    """One import statement of `source` that reaches module `target`."""

    source: str
    target: str
    file: str  # relative to the folder holding resnetctl
    line: int
    reason: str | None  # the `# import-circle:` text, "" when the comment gives none

    def site(self) -> str:
        return f"{self.file}:{self.line}"


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def import_nodes(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement in `tree`, at any depth, except those under `if TYPE_CHECKING:`."""
    found: list[ast.Import | ast.ImportFrom] = []
    pending: list[ast.AST] = [tree]
    while pending:
        node = pending.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif isinstance(node, ast.If) and is_type_checking(node.test):
            pending.extend(node.orelse)
        else:
            pending.extend(ast.iter_child_nodes(node))
    return found


def targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool, modules: set[str]):
    """The resnetctl modules one import statement runs (the longest known prefix of each)."""

    def known(name: str) -> str | None:
        parts = name.split(".")
        while parts:
            if ".".join(parts) in modules:
                return ".".join(parts)
            parts.pop()
        return None

    if isinstance(node, ast.Import):
        return {hit for alias in node.names if (hit := known(alias.name))}
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        origin = ".".join(base + ([node.module] if node.module else []))
    else:
        origin = node.module or ""
    if origin != TOP and not origin.startswith(TOP + "."):
        return set()
    found = set()
    for alias in node.names:
        sub = f"{origin}.{alias.name}"
        hit = sub if sub in modules else known(origin)
        if hit:
            found.add(hit)
    return found


def read_imports(root: Path = ROOT) -> tuple[set[str], list[Import]]:
    """The modules under `root` and every import between them."""
    paths = {module_name(path, root): path for path in sorted(root.rglob("*.py"))}
    modules = set(paths)
    imports = []
    for module, path in paths.items():
        text = path.read_text()
        lines = text.splitlines()
        for node in import_nodes(ast.parse(text, filename=str(path))):
            reason = None
            above = None  # a comment line right above the statement
            if node.lineno > 1 and lines[node.lineno - 2].lstrip().startswith("#"):
                above = node.lineno - 1
            for number in (above, *range(node.lineno, (node.end_lineno or node.lineno) + 1)):
                if number and (match := DECLARED.search(lines[number - 1])):
                    reason = match.group(1).strip()
            for target in targets(node, module, path.name == "__init__.py", modules):
                if target != module:
                    file = path.relative_to(root.parent).as_posix()
                    imports.append(Import(module, target, file, node.lineno, reason))
    return modules, imports


def components(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected parts of `graph` that hold more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            part = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                part.append(member)
                if member == node:
                    break
            if len(part) > 1:
                found.append(sorted(part))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def shortest_circle(graph: dict[str, set[str]], start: str, members: set[str]) -> list[str]:
    """A shortest path from `start` back to itself through `members`."""
    came_from: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for nxt in sorted(graph.get(node, ())):
            if nxt not in members:
                continue
            if nxt == start:
                path = [node]
                while path[-1] != start:
                    path.append(came_from[path[-1]])
                return [*reversed(path), start]
            if nxt not in came_from:
                came_from[nxt] = node
                queue.append(nxt)
    raise AssertionError(f"{start} is on no circle")


def describe(part: list[str], graph, sites: dict[tuple[str, str], list[Import]]) -> str:
    """One circle per line: its members, then each import between them with where it is."""
    members = set(part)
    circle = shortest_circle(graph, part[0], members)
    knot = f"  (knot of {len(part)}: {', '.join(part)})" if len(part) > len(circle) - 1 else ""
    lines = [" -> ".join(circle) + knot]
    for (source, target), found in sorted(sites.items()):
        if source in members and target in members:
            for item in found:
                lines.append(f"    {source} -> {target}: {item.site()} imports {item.target}")
    return "\n".join(lines)


def package_circles(imports: list[Import]) -> list[str]:
    graph: dict[str, set[str]] = defaultdict(set)
    sites: dict[tuple[str, str], list[Import]] = defaultdict(list)
    for item in imports:
        source, target = package_of(item.source), package_of(item.target)
        if source != target:
            graph[source].add(target)
            sites[source, target].append(item)
    return [describe(part, graph, sites) for part in components(graph)]


def inner_graph(imports: list[Import], *, with_declared: bool):
    graph: dict[str, set[str]] = defaultdict(set)
    sites: dict[tuple[str, str], list[Import]] = defaultdict(list)
    for item in imports:
        if package_of(item.source) != package_of(item.target):
            continue
        if item.reason is not None and not with_declared:
            continue
        graph[item.source].add(item.target)
        sites[item.source, item.target].append(item)
    return graph, sites


def undeclared_inner_circles(imports: list[Import]) -> list[str]:
    graph, sites = inner_graph(imports, with_declared=False)
    return [describe(part, graph, sites) for part in components(graph)]


def declared_imports(imports: list[Import]) -> list[Import]:
    return [item for item in imports if item.reason is not None]


def test_no_import_circle_spans_two_packages():
    _, imports = read_imports()
    circles = package_circles(imports)
    assert not circles, "imports between packages of resnetctl that close a circle:\n" + "\n".join(
        circles
    )


def test_every_circle_inside_a_package_is_declared_with_a_reason():
    _, imports = read_imports()
    circles = undeclared_inner_circles(imports)
    assert not circles, (
        "circles between modules of one package; remove them, or put "
        "`# import-circle: <why>` on one of their imports:\n" + "\n".join(circles)
    )
    blank = [item.site() for item in declared_imports(imports) if not item.reason]
    assert not blank, f"`# import-circle:` without a reason at {', '.join(blank)}"


def test_every_declared_circle_is_still_a_circle():
    _, imports = read_imports()
    graph, _ = inner_graph(imports, with_declared=True)
    on_circle = {node for part in components(graph) for node in part}
    stale = [
        item.site()
        for item in declared_imports(imports)
        if package_of(item.source) != package_of(item.target)
        or not (item.source in on_circle and item.target in on_circle)
        or item.source not in _reachable(graph, item.target)
    ]
    assert not stale, f"`# import-circle:` on imports that close no circle: {', '.join(stale)}"


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, queue = {start}, deque([start])
    while queue:
        for nxt in graph.get(queue.popleft(), ()):
            if nxt not in seen:
                seen.add(nxt)
                queue.append(nxt)
    return seen


def test_the_reader_counts_imports_in_functions_relative_ones_and_skips_type_checking(tmp_path):
    package = tmp_path / TOP
    for name in ("low", "high", "other"):
        (package / name).mkdir(parents=True)
        (package / name / "__init__.py").write_text("")
    (package / "low" / "base.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from resnetctl.other import thing\n"
        "def late():\n"
        "    import resnetctl.high.top  # import-circle: read, not judged here\n"
    )
    (package / "high" / "top.py").write_text("from ..low import base\nfrom . import side\n")
    (package / "high" / "side.py").write_text("def f():\n    from .top import x\n")
    (package / "other" / "a.py").write_text("# import-circle: said above\nfrom . import b\n")
    (package / "other" / "b.py").write_text("from .a import c\n")
    _, imports = read_imports(package)
    edges = {(item.source, item.target, item.reason) for item in imports}
    assert edges == {
        ("resnetctl.low.base", "resnetctl.high.top", "read, not judged here"),
        ("resnetctl.high.top", "resnetctl.low.base", None),
        ("resnetctl.high.top", "resnetctl.high.side", None),
        ("resnetctl.high.side", "resnetctl.high.top", None),
        ("resnetctl.other.a", "resnetctl.other.b", "said above"),
        ("resnetctl.other.b", "resnetctl.other.a", None),
    }
    [circle] = package_circles(imports)
    assert circle.splitlines()[0] == "high -> low -> high"
    [inner] = undeclared_inner_circles(imports)
    side, top = "resnetctl.high.side", "resnetctl.high.top"
    assert inner.splitlines()[0] == f"{side} -> {top} -> {side}"


if __name__ == "__main__":
    _, found = read_imports()
    print("circles across packages:")
    print("\n".join(package_circles(found)) or "    none")
    print("circles inside a package, not declared:")
    print("\n".join(undeclared_inner_circles(found)) or "    none")
    print("declared circles:")
    for item in declared_imports(found):
        print(f"    {item.source} -> {item.target}: {item.site()}: {item.reason}")
