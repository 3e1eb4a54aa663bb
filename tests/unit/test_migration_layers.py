"""Migration plans sit in the estate layer but see the gateway only through gateway.estate's Protocols."""

from __future__ import annotations

from tests.unit.test_architecture import ESTATE, GRAPH, _violations


def test_migration_never_imports_the_gateway_itself() -> None:
    """gateway.migration imports no estate module (gateway.app, cli, demo, bench); the admin API no plan code."""
    assert any(m.startswith("gateway.migration.") for m in GRAPH)
    assert "gateway.estate" in GRAPH["gateway.migration.target"]
    assert _violations(("gateway.migration",), ESTATE) == []
    assert _violations(("gateway.admin",), ("gateway.migration",)) == []
