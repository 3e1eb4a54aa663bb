"""The import graph keeps its direction: estate -> connection -> session core, and no circle anywhere.

Every import counts, also those inside functions and under TYPE_CHECKING: a
lazy import is still a dependency. docs/architecture.md explains the layers.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("gateway", "adapters", "mappings")

# Modules that make up the estate: they own connections and may import anything below them.
ESTATE = ("gateway.app", "gateway.cli", "gateway.demo", "gateway.bench", "gateway.cluster", "gateway.workers")
# Beside the estate, seeing it only through gateway.estate's Protocols.
BESIDE_ESTATE = ("gateway.admin", "gateway.vendors", "gateway.migration")
CONNECTION = ("gateway.connection",)
# The sans-I/O core: frames in, actions out; it knows no socket, connection or estate.
CORE = ("gateway.session", "gateway.offline", "gateway.ocppj", "gateway.schemas", "gateway.repair",
        "gateway.records", "gateway.compare", "gateway.charger_ids", "gateway.charger_records", "adapters",
        "mappings")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules ``name`` imports anywhere in its file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from gateway import ocppj` imports the module gateway.ocppj; `from x import name` imports x.
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


GRAPH = {name: _imports(name, path, set(_modules())) for name, path in _modules().items()}


def _in(module: str, layer: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in layer)


def _violations(source: tuple[str, ...], forbidden: tuple[str, ...]) -> list[str]:
    return sorted(f"{m} -> {t}" for m, targets in GRAPH.items() if _in(m, source)
                  for t in targets if _in(t, forbidden))


@pytest.mark.parametrize(("layer", "must_not_import"), [
    (CORE, CONNECTION + ESTATE + BESIDE_ESTATE + ("gateway.estate", "gateway.transport")),
    (CONNECTION, ESTATE + BESIDE_ESTATE + ("gateway.estate",)),
    (BESIDE_ESTATE, ESTATE + CONNECTION),
    (("gateway.estate",), ESTATE + CONNECTION + BESIDE_ESTATE),
], ids=["core", "connection", "admin-and-vendors", "estate-interfaces"])
def test_a_layer_imports_only_downwards(layer: tuple[str, ...], must_not_import: tuple[str, ...]) -> None:
    """A layer never imports a layer above it (the lists name the offending imports)."""
    assert _violations(layer, must_not_import) == []


def test_the_layers_name_real_modules() -> None:
    """Every layer prefix names a module that exists, so a rename cannot silently empty a rule."""
    for prefix in CORE + CONNECTION + ESTATE + BESIDE_ESTATE + ("gateway.estate",):
        assert any(_in(m, (prefix,)) for m in GRAPH), prefix


def _cycles() -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    return found


def test_no_module_imports_itself_in_a_circle() -> None:
    """No set of modules imports each other in a circle, lazily or under TYPE_CHECKING included."""
    assert _cycles() == []


def test_the_graph_sees_known_edges() -> None:
    """The parser finds the imports it must (a broken parser would pass every rule above)."""
    assert "gateway.connection.charger" in GRAPH["gateway.app"] or "gateway.connection" in GRAPH["gateway.app"]
    assert "gateway.session" in GRAPH["gateway.connection.charger"]
    assert "gateway.estate" in GRAPH["gateway.admin"]
    assert "gateway.ocppj" in GRAPH["gateway.session"]
