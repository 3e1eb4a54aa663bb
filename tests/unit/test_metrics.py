"""The hot-path metrics expose exactly what prometheus_client's own Counter and Histogram would."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from gateway.metrics import LATENCY_BUCKETS, GatewayMetrics


def samples(registry: CollectorRegistry, prefix: str) -> list[str]:
    """Sample lines of one metric, without prometheus_client's _created series."""
    return [line for line in generate_latest(registry).decode().splitlines()
            if line.startswith(prefix) and "_created" not in line]


@pytest.mark.parametrize(
    "values",
    [
        [0.0001],
        [0.0005, 0.001, 30.0],  # on a bound: le is inclusive
        [0.0002, 0.003, 0.2, 0.2, 7.5, 40.0],  # above the last bound: only +Inf
    ],
)
def test_roundtrip_histogram_matches_prometheus_client(values: list[float]) -> None:
    """Buckets, count and sum are the same as a prometheus_client Histogram fed the same values."""
    ours = GatewayMetrics()
    reference = CollectorRegistry()
    histogram = Histogram("ocpp_gateway_call_roundtrip_seconds", "x", ["origin", "action"],
                          buckets=LATENCY_BUCKETS, registry=reference)
    for value in values:
        ours.observe_roundtrip("charger", "Heartbeat", value)
        histogram.labels("charger", "Heartbeat").observe(value)
    assert samples(ours.registry, "ocpp_gateway_call_roundtrip_seconds") == \
        samples(reference, "ocpp_gateway_call_roundtrip_seconds")


@pytest.mark.parametrize("per_charger", [False, True])
def test_frame_counts_match_prometheus_client(per_charger: bool) -> None:
    """Frame, CALLERROR and validation counts read as prometheus_client Counters with the same labels."""
    ours = GatewayMetrics(per_charger=per_charger)
    reference = CollectorRegistry()
    extra = ["charger_id"] if per_charger else []
    frames = Counter("ocpp_gateway_frames", "x", ["direction", "peer", "message_type", "action", *extra],
                     registry=reference)
    errors = Counter("ocpp_gateway_callerrors", "x", ["direction", "peer", "error_code", *extra], registry=reference)
    for cid, action in [("CP1", "Heartbeat"), ("CP2", "Heartbeat"), ("CP1", None)]:
        ours.frame("in", "charger", "CALL", action, cid)
        frames.labels("in", "charger", "CALL", action or "", *([cid] if per_charger else [])).inc()
        ours.callerror("out", "charger", "FormationViolation", cid)
        errors.labels("out", "charger", "FormationViolation", *([cid] if per_charger else [])).inc()
    for name in ("ocpp_gateway_frames_total", "ocpp_gateway_callerrors_total"):
        assert samples(ours.registry, name) == samples(reference, name)
        assert samples(ours.registry, name)
