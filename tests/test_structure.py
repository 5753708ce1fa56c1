"""The package's shape: no import cycle between its modules (counting imports made only for
type checking or inside functions: a cycle is a cycle in the design either way), and no
module over 400 lines. Read from the source with ``ast``; nothing is imported."""

from __future__ import annotations

import ast
from pathlib import Path

import snowplow_threaded

PACKAGE = Path(snowplow_threaded.__file__).parent
MAX_LINES = 400
#: Known exceptions, in the collector (not the engine): each is asserted to still be there,
#: so that whoever fixes one must delete it here, and nothing new can join them.
KNOWN_CYCLES: list[list[str]] = []
KNOWN_LONG: set[str] = set()


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the modules of the package it imports (``from . import x`` counts as
    importing ``x`` when ``x`` is a module, else its package)."""
    files = {module_name(path, root): path for path in root.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[:len(anchor) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in files
                           else base for alias in node.names]
            else:
                continue
            edges.update(t for t in targets if t in files and t != name)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each strongly connected group of modules (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle() -> None:
    graph = import_graph(PACKAGE)
    assert "snowplow_threaded.dispatcher" in graph  # the walk found the package
    assert cycles(graph) == KNOWN_CYCLES


def test_the_cycle_check_finds_a_cycle(tmp_path: Path) -> None:
    """Two modules importing each other, one of them only for type checking."""
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from .b import run\n")
    (package / "b.py").write_text("from typing import TYPE_CHECKING\n"
                                  "if TYPE_CHECKING:\n    from .a import run\n")
    (package / "c.py").write_text("from . import a\n")
    assert cycles(import_graph(package)) == [["pkg.a", "pkg.b"]]


def test_no_module_over_400_lines() -> None:
    sizes = {module_name(path, PACKAGE): len(path.read_text().splitlines())
             for path in PACKAGE.rglob("*.py")}
    assert {name for name, lines in sizes.items() if lines > MAX_LINES} == KNOWN_LONG
