"""The Grafana dashboard only queries metrics the gateway really exposes."""

from __future__ import annotations

import json
import re
from pathlib import Path

from gateway.metrics import GatewayMetrics

DASHBOARD = Path(__file__).parents[2] / "dashboards" / "ocpp-gateway.json"


def test_every_dashboard_query_names_an_exposed_metric() -> None:
    """Each ocpp_gateway_* name in the dashboard appears in the gateway's /metrics exposition."""
    exposed = GatewayMetrics(per_charger=True).exposition().decode()
    names = {line.split()[2] for line in exposed.splitlines() if line.startswith("# TYPE")}
    families = {n for name in names for n in (name, f"{name}_total", f"{name}_bucket")}
    dashboard = json.loads(DASHBOARD.read_text())
    queried = {m for p in dashboard["panels"] for t in p["targets"] for m in re.findall(r"ocpp_gateway_\w+", t["expr"])}
    assert queried, "the dashboard has no queries"
    assert queried <= families, sorted(queried - families)
