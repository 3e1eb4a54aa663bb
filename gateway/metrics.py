"""Prometheus metrics, all named ``ocpp_gateway_*``.

Each gateway owns its own ``CollectorRegistry`` (tests run several in one
process). Label children are cached so the hot path does one dict lookup per
frame instead of prometheus_client's label validation.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class GatewayMetrics:
    def __init__(self, per_charger: bool = False) -> None:
        self.per_charger = per_charger
        self.registry = r = CollectorRegistry(auto_describe=True)
        extra = ["charger_id"] if per_charger else []
        self.chargers_connected = Gauge(
            "ocpp_gateway_chargers_connected", "Chargers connected to the gateway, by OCPP version",
            ["ocpp_version"], registry=r,
        )
        self.upstream_links = Gauge(
            "ocpp_gateway_upstream_links", "Upstream CSMS links by CSMS and state (up/down)",
            ["csms", "state"], registry=r,
        )
        self.upstream_connects = Counter(
            "ocpp_gateway_upstream_connect_attempts", "Upstream connection attempts by CSMS and outcome",
            ["csms", "outcome"], registry=r,
        )
        self.frames = Counter(
            "ocpp_gateway_frames", "Frames crossing the gateway by direction (in/out), peer, message type and action",
            ["direction", "peer", "message_type", "action", *extra], registry=r,
        )
        self.callerrors = Counter(
            "ocpp_gateway_callerrors", "CALLERRORs by direction, peer and error code",
            ["direction", "peer", "error_code", *extra], registry=r,
        )
        self.validation_failures = Counter(
            "ocpp_gateway_validation_failures", "Frames that broke their OCPP schema or framing, by side and action",
            ["side", "ocpp_version", "action", *extra], registry=r,
        )
        self.roundtrip = Histogram(
            "ocpp_gateway_call_roundtrip_seconds",
            "From a CALL's arrival at the gateway to its answer leaving it, by originator and action",
            ["origin", "action"], buckets=LATENCY_BUCKETS, registry=r,
        )
        self.problems = Counter(
            "ocpp_gateway_problems", "Refused, dropped, timed out or unmatched messages, by event",
            ["event"], registry=r,
        )
        self.connections_refused = Counter(
            "ocpp_gateway_connections_refused", "Charger connections refused at the handshake, by reason",
            ["reason"], registry=r,
        )
        self.sessions_replaced = Counter(
            "ocpp_gateway_sessions_replaced", "Charger connections replaced by a newer one with the same id",
            registry=r,
        )
        self.store_records = Gauge(
            "ocpp_gateway_store_records_written", "Message-log records written to the store", registry=r,
        )
        self.store_queue = Gauge(
            "ocpp_gateway_store_queue_depth", "Message-log records waiting to be written", registry=r,
        )
        self.store_dropped = Gauge(
            "ocpp_gateway_store_records_dropped", "Message-log records dropped under back-pressure", registry=r,
        )
        self.shadow_comparisons = Counter(
            "ocpp_gateway_shadow_comparisons", "Shadow CSMS answers compared with the primary's, by outcome",
            ["csms", "action", "outcome"], registry=r,
        )
        self._children: dict[tuple[Any, ...], Any] = {}

    def _child(self, metric: Any, labels: tuple[str, ...]) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def frame(self, direction: str, peer: str, message_type: str, action: str | None, charger_id: str) -> None:
        labels: tuple[str, ...] = (direction, peer, message_type, action or "")
        if self.per_charger:
            labels = (*labels, charger_id)
        self._child(self.frames, labels).inc()

    def callerror(self, direction: str, peer: str, code: str, charger_id: str) -> None:
        labels: tuple[str, ...] = (direction, peer, code)
        if self.per_charger:
            labels = (*labels, charger_id)
        self._child(self.callerrors, labels).inc()

    def validation_failure(self, side: str, version: str, action: str | None, charger_id: str) -> None:
        labels: tuple[str, ...] = (side, version, action or "")
        if self.per_charger:
            labels = (*labels, charger_id)
        self._child(self.validation_failures, labels).inc()

    def observe_roundtrip(self, origin: str, action: str, seconds: float) -> None:
        self._child(self.roundtrip, (origin, action)).observe(seconds)

    def shadow_comparison(self, csms: str, action: str, outcome: str) -> None:
        self._child(self.shadow_comparisons, (csms, action, outcome)).inc()

    def problem(self, event: str) -> None:
        self._child(self.problems, (event,)).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
