"""The Migration dashboard only queries metrics the gateway really exposes, and shows every plan gauge."""

from __future__ import annotations

import json
import re
from pathlib import Path

from gateway.metrics import GatewayMetrics

DASHBOARD = Path(__file__).parents[2] / "dashboards" / "migration.json"


def test_every_query_names_an_exposed_metric_and_every_plan_gauge_is_shown() -> None:
    """Each ocpp_gateway_* name queried is exposed; the plan status, charger and wave gauges all have panels."""
    metrics = GatewayMetrics()
    metrics.migration_plan("p", "running", {"moved": 1}, {"done": 1})
    exposed = metrics.exposition().decode()
    names = {line.split()[2] for line in exposed.splitlines() if line.startswith("# TYPE")}
    families = {n for name in names for n in (name, f"{name}_total", f"{name}_bucket")}
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["title"] == "Migration"
    queried = {m for p in dashboard["panels"] for t in p.get("targets", [])  # rows have no targets
               for m in re.findall(r"ocpp_gateway_\w+", t["expr"])}
    assert queried <= families, sorted(queried - families)
    assert {"ocpp_gateway_migration_plan_status", "ocpp_gateway_migration_plan_chargers",
            "ocpp_gateway_migration_plan_waves"} <= queried
    assert 'ocpp_gateway_migration_plan_chargers{plan="p",state="moved"} 1.0' in exposed
    assert 'ocpp_gateway_migration_plan_status{plan="p",status="running"} 1.0' in exposed
