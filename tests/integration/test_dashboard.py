"""The Grafana dashboards only query metrics the gateway really exposes."""

from __future__ import annotations

import json
import re
from pathlib import Path

from gateway.metrics import GatewayMetrics
from gateway.vendors.metrics import vendor_metrics

DASHBOARDS = sorted((Path(__file__).parents[2] / "dashboards").glob("*.json"))


def test_every_dashboard_query_names_an_exposed_metric() -> None:
    """Each ocpp_gateway_* name in each dashboard appears in the gateway's /metrics exposition (vendor ones too)."""
    metrics = GatewayMetrics(per_charger=True)
    vendor_metrics(metrics)
    exposed = metrics.exposition().decode()
    names = {line.split()[2] for line in exposed.splitlines() if line.startswith("# TYPE")}
    families = {n for name in names for n in (name, f"{name}_total", f"{name}_bucket")}
    panels = [p for path in DASHBOARDS for p in json.loads(path.read_text())["panels"]]
    queried = {m for p in panels for t in p.get("targets", []) for m in re.findall(r"ocpp_gateway_\w+", t["expr"])}
    assert queried, "the dashboard has no queries"
    assert queried <= families, sorted(queried - families)
