"""Prometheus metrics, all named ``ocpp_gateway_*``.

Each gateway owns its own ``CollectorRegistry`` (tests run several in one
process). The per-frame metrics are ``Tally`` and ``TallyHistogram``: plain
dict counts on the event loop, turned into Prometheus samples only when
scraped, so a frame costs a dict update rather than a label lookup, a lock
and a value object. Other label children are cached for the same reason.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Tally:
    """A labelled counter for the hot path: counts in a dict, exported as ``<name>_total`` on scrape.

    Only the event loop's thread counts; a scrape (on the same loop) reads a copy.
    """

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str], registry: CollectorRegistry) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = list(labelnames)
        self.counts: dict[tuple[str, ...], int] = {}
        registry.register(self)

    def inc(self, labels: tuple[str, ...]) -> None:
        counts = self.counts
        counts[labels] = counts.get(labels, 0) + 1

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for labels, value in list(self.counts.items()):
            family.add_metric(labels, value)
        yield family

    def describe(self) -> Iterator[Metric]:
        yield CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)


class TallyHistogram:
    """A labelled histogram for the hot path: per-bucket counts and a sum in a dict, exported on scrape."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str], buckets: Sequence[float],
                 registry: CollectorRegistry) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = list(labelnames)
        self.bounds = [float(b) for b in buckets]
        self.series: dict[tuple[str, ...], list[float]] = {}  # labels -> [count per bucket..., +Inf count, sum]
        registry.register(self)

    def observe(self, labels: tuple[str, ...], value: float) -> None:
        series = self.series.get(labels)
        if series is None:
            series = self.series[labels] = [0.0] * (len(self.bounds) + 2)
        series[bisect_left(self.bounds, value)] += 1  # le is inclusive: a value equal to a bound is in it
        series[-1] += value

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for labels, series in list(self.series.items()):
            cumulative, running = [], 0.0
            for bound, count in zip([*self.bounds, math.inf], series[:-1], strict=True):
                running += count
                cumulative.append((floatToGoString(bound), running))  # type: ignore[no-untyped-call]
            family.add_metric(list(labels), cumulative, series[-1])
        yield family

    def describe(self) -> Iterator[Metric]:
        yield HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)


class ComputedGauge:
    """A labelled gauge whose values a function computes when scraped (counts over the estate's state)."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str], registry: CollectorRegistry) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = list(labelnames)
        self.source: Callable[[], dict[tuple[str, ...], float]] = dict
        registry.register(self)

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for labels, value in self.source().items():
            family.add_metric(list(labels), value)
        yield family

    def describe(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(self.name, self.documentation, labels=self.labelnames)


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
        self.frames = Tally(
            "ocpp_gateway_frames", "Frames crossing the gateway by direction (in/out), peer, message type and action",
            ["direction", "peer", "message_type", "action", *extra], registry=r,
        )
        self.callerrors = Tally(
            "ocpp_gateway_callerrors", "CALLERRORs by direction, peer and error code",
            ["direction", "peer", "error_code", *extra], registry=r,
        )
        self.validation_failures = Tally(
            "ocpp_gateway_validation_failures", "Frames that broke their OCPP schema or framing, by side and action",
            ["side", "ocpp_version", "action", *extra], registry=r,
        )
        self.roundtrip = TallyHistogram(
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
        self.sessions_taken_over = Counter(
            "ocpp_gateway_sessions_taken_over",
            "Charger sessions this instance closed because the charger connected to another gateway instance",
            registry=r,
        )
        self.sessions_waiting_for_store = Gauge(
            "ocpp_gateway_sessions_waiting_for_store",
            "Connected chargers whose session waits for the store (unreachable) before it starts", registry=r,
        )
        self.store_waits = Counter(
            "ocpp_gateway_store_waits", "Charger sessions that had to wait for an unreachable store to start",
            registry=r,
        )
        self.store_records = Gauge(
            "ocpp_gateway_store_records_written", "Message-log records written to the store", registry=r,
        )
        self.store_queue = Gauge(
            "ocpp_gateway_store_queue_depth", "Message-log records waiting to be written", registry=r,
        )
        self.store_dropped = Gauge(
            "ocpp_gateway_store_records_dropped",
            "Message-log records dropped because the store was failing or its queue was full", registry=r,
        )
        self.store_backpressure = Gauge(
            "ocpp_gateway_store_backpressure",
            "1 while the message-log writer is behind and the gateway has stopped reading from chargers", registry=r,
        )
        self.store_backpressure_episodes = Counter(
            "ocpp_gateway_store_backpressure_episodes", "Times the gateway stopped reading from chargers for the store",
            registry=r,
        )
        self.shadow_comparisons = Counter(
            "ocpp_gateway_shadow_comparisons", "Shadow CSMS answers compared with the primary's, by outcome",
            ["csms", "action", "outcome", *extra], registry=r,
        )
        self.shadow_differences = Tally(
            "ocpp_gateway_shadow_differences",
            "Differences between a shadow CSMS's answers and the primary's, by action and kind "
            "(status, value, missing, extra, error, timeout)",
            ["csms", "action", "kind", *extra], registry=r,
        )
        self.migration_chargers = ComputedGauge(
            "ocpp_gateway_migration_chargers",
            "Chargers compared against a CSMS, by whether they are ready to move to it (ready, not_ready)",
            ["csms", "readiness"], registry=r,
        )
        self._children: dict[tuple[Any, ...], Any] = {}

    def _child(self, metric: Any, labels: tuple[str, ...]) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def frame(self, direction: str, peer: str, message_type: str, action: str | None, charger_id: str) -> None:
        if self.per_charger:
            self.frames.inc((direction, peer, message_type, action or "", charger_id))
        else:
            self.frames.inc((direction, peer, message_type, action or ""))

    def callerror(self, direction: str, peer: str, code: str, charger_id: str) -> None:
        labels: tuple[str, ...] = (direction, peer, code)
        if self.per_charger:
            labels = (*labels, charger_id)
        self.callerrors.inc(labels)

    def validation_failure(self, side: str, version: str, action: str | None, charger_id: str) -> None:
        labels: tuple[str, ...] = (side, version, action or "")
        if self.per_charger:
            labels = (*labels, charger_id)
        self.validation_failures.inc(labels)

    def observe_roundtrip(self, origin: str, action: str, seconds: float) -> None:
        self.roundtrip.observe((origin, action), seconds)

    def shadow_comparison(self, csms: str, action: str, outcome: str, charger_id: str,
                          difference_kinds: Sequence[str] = ()) -> None:
        labels: tuple[str, ...] = (csms, action, outcome, charger_id) if self.per_charger else (csms, action, outcome)
        self._child(self.shadow_comparisons, labels).inc()
        for kind in difference_kinds:
            self.shadow_differences.inc((csms, action, kind, charger_id) if self.per_charger else (csms, action, kind))

    def problem(self, event: str) -> None:
        self._child(self.problems, (event,)).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
