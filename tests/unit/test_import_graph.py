"""The architecture, as the import graph shows it: layers import the contracts, never each
other, and no module imports itself back through others (an import moved into a function to
dodge a cycle counts: the cycle is still there, only later).

Read from the source with ``ast``, so imports in functions and ``TYPE_CHECKING`` blocks are
seen without running anything; those under ``TYPE_CHECKING`` are left out (annotations only).
"""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("lambda_contracts", "speed_layer", "batch_layer", "serving", "dags", "infra")
LAYERS = ("speed_layer", "batch_layer", "serving")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, modules: set[str]) -> set[str]:
    """The project modules a module imports at run time (anywhere in it)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return {m for m in found if m in modules}


def _graph() -> dict[str, set[str]]:
    """{module: the project modules it imports}."""
    files = {
        _module_name(p): p
        for package in PACKAGES
        for p in (ROOT / package).rglob("*.py")
        if "__pycache__" not in p.parts
    }
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        targets = _imports(ast.parse(path.read_text()), set(files))
        # A module's own package (its __init__) is not an edge back to it.
        graph[name] = {t for t in targets if t != name and not name.startswith(t + ".")}
    return graph


def test_the_import_graph_has_no_cycle() -> None:
    try:
        TopologicalSorter(_graph()).prepare()
    except CycleError as found:
        pytest.fail("import cycle: " + " -> ".join(found.args[1]))


@pytest.mark.parametrize("layer", LAYERS)
def test_a_layer_imports_the_contracts_never_another_layer(layer: str) -> None:
    others = [other for other in LAYERS if other != layer]
    crossing = [
        (source, target)
        for source, targets in _graph().items()
        for target in targets
        if source.split(".")[0] == layer and target.split(".")[0] in others
    ]
    assert not crossing, crossing
