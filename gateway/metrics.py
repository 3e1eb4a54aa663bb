"""Prometheus metrics, all named ``ocpp_gateway_*``.

Each gateway owns its own ``CollectorRegistry`` (tests run several in one
process). The per-frame metrics are ``Tally`` and ``TallyHistogram``: plain
dict counts on the event loop, turned into Prometheus samples only when
scraped, so a frame costs a dict update rather than a label lookup, a lock
and a value object. Other label children are cached for the same reason.
"""

from __future__ import annotations

import math
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

# Label values the gateway knows before anything happens. Their series are exported as 0 from the first
# scrape, so a dashboard shows "0 refused" rather than "No data" (and rate() has a starting point).
# tests/unit/test_metrics_labels.py checks these lists against the code that counts them.
PROBLEM_EVENTS = (
    "oversized_frame", "call_timeout", "call_queue_full", "charger_flood_closed", "translator_error",
    "notify_invalid", "send_dropped", "unmatched_answer", "callresulterror_received", "peer_error_after_reply",
    "refused_after_reply", "frame_handling_error", "timer_handling_error", "state_not_saved", "shadow_backlog",
    "duplicate_stop_transaction", "unmatched_stop_transaction", "durable_commit_failed", "ids_not_reserved",
    "offline_message_dropped", "offline_not_answered", "offline_queue_full", "offline_queue_unreadable",
    "offline_queue_unroutable", "offline_verdict_differs", "drain_impossible", "introduction_refused",
)
REFUSAL_REASONS = (
    "no_charger_id", "invalid_charger_id", "busy", "unknown_charger", "no_subprotocol", "unsupported_version",
    "certificate_mismatch", "bad_credentials",
)
# Charger CALLs the gateway answers itself while the CSMS is away (gateway.offline.ANSWERED_ACTIONS).
OFFLINE_ANSWERED_ACTIONS = (
    "BootNotification", "Heartbeat", "StatusNotification", "Authorize", "StartTransaction", "MeterValues",
    "StopTransaction", "TransactionEvent", "SecurityEventNotification", "FirmwareStatusNotification",
    "DiagnosticsStatusNotification", "LogStatusNotification", "SignedFirmwareStatusNotification", "NotifyEvent",
)
OCPP_VERSIONS = ("1.6", "2.0.1", "2.1")
UPSTREAM_STATES = ("up", "down")
UPSTREAM_OUTCOMES = ("ok", "failed")
SHADOW_OUTCOMES = ("match", "differ", "shadow_error", "primary_error")
READINESS = ("ready", "not_ready")
MIGRATION_PHASES = ("legacy-only", "shadowing", "cut-over", "unrouted")  # gateway.report.phase
# Counting phases walks the whole estate's migration view (~175 ms at 10,000 chargers), so a scrape
# recounts at most this often; phases change by cut-over, minutes apart.
PHASES_EVERY = 30.0
# Every shadowed session starts with this CALL, so it is the comparison series a shadow route is sure to have.
FIRST_COMPARED_ACTION = "BootNotification"


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
        self.known: set[tuple[str, ...]] = set()  # label sets exported as 0 when the source has no value for them
        registry.register(self)

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for labels, value in {**dict.fromkeys(self.known, 0.0), **self.source()}.items():
            family.add_metric(list(labels), value)
        yield family

    def describe(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(self.name, self.documentation, labels=self.labelnames)


class StoreLogCounters:
    """The message log's records written and dropped, as counters from the store's own running totals.

    Exported as ``ocpp_gateway_store_records_written_total`` and ``..._dropped_total`` (read them with
    ``rate()``/``increase()``). The same totals also keep their old gauge names without ``_total``, which
    docs/benchmark.md and ``ocpp-gateway bench`` read; new queries should use the counters.
    """

    WRITTEN = ("ocpp_gateway_store_records_written", "Message-log records written to the store")
    ROWS = ("ocpp_gateway_store_rows_written",
            "Message-log rows written: a frame relayed unchanged is one row for its two records")
    DROPPED = ("ocpp_gateway_store_records_dropped",
               "Message-log records dropped because the store was failing or its queue was full")

    def __init__(self, registry: CollectorRegistry) -> None:
        self.written = 0
        self.dropped = 0
        self.rows = 0
        registry.register(self)

    def update(self, stats: Mapping[str, int]) -> None:
        """Take the store's totals (its ``stats``); they only grow while the store is open."""
        self.written = stats.get("written", 0)
        self.dropped = stats.get("dropped", 0)
        self.rows = stats.get("rows_written", 0)

    def _families(self, written: float, dropped: float, rows: float) -> Iterator[Metric]:
        for (name, doc), value in ((self.WRITTEN, written), (self.DROPPED, dropped)):
            yield CounterMetricFamily(name, doc, value=value)
            yield GaugeMetricFamily(name, f"{doc} (deprecated gauge: use {name}_total)", value=value)
        yield CounterMetricFamily(*self.ROWS, value=rows)

    def collect(self) -> Iterator[Metric]:
        yield from self._families(self.written, self.dropped, self.rows)

    def describe(self) -> Iterator[Metric]:
        yield from self._families(0, 0, 0)


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
        self.store_log = StoreLogCounters(r)
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
        self.store_queue = Gauge(
            "ocpp_gateway_store_queue_depth", "Message-log records waiting to be written", registry=r,
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
        self.migration_phases = Gauge(
            "ocpp_gateway_migration_phase_chargers",
            "Known chargers by migration phase (legacy-only, shadowing, cut-over, unrouted); a cut-over moves one "
            "from shadowing or legacy-only to cut-over", ["phase"], registry=r,
        )
        self.offline_answers = Tally(
            "ocpp_gateway_offline_answers", "Charger CALLs the gateway answered itself while the CSMS was away",
            ["action"], registry=r,
        )
        self.offline_replayed = Counter(
            "ocpp_gateway_offline_replayed", "Queued messages the CSMS answered after a replay", registry=r,
        )
        self.offline_verdict_differs = Counter(
            "ocpp_gateway_offline_verdict_differs",
            "Replayed messages the CSMS judged otherwise than the gateway's local answer", registry=r,
        )
        self.offline_dropped = Counter(
            "ocpp_gateway_offline_dropped", "Queued non-transaction messages dropped because the queue was full",
            registry=r,
        )
        # charger id -> () -> (queued records, arrival time of the oldest or None); read on scrape
        self.offline_queues: dict[str, Callable[[], tuple[int, float | None]]] = {}
        self.offline_queue_records = Gauge(
            "ocpp_gateway_offline_queue_records", "Messages queued for a CSMS that could not take them (connected "
            "chargers)", registry=r,
        )
        self.offline_queue_records.set_function(lambda: float(sum(q()[0] for q in list(self.offline_queues.values()))))
        self.offline_oldest = Gauge(
            "ocpp_gateway_offline_oldest_seconds", "Age of the oldest message queued for a CSMS", registry=r,
        )
        self.offline_oldest.set_function(self._offline_oldest_age)
        self.migration_plan_chargers = Gauge(
            "ocpp_gateway_migration_plan_chargers",
            "Chargers of each migration plan by move state (waiting, pending, moved, rolled_back, failed)",
            ["plan", "state"], registry=r,
        )
        self.migration_plan_waves = Gauge(
            "ocpp_gateway_migration_plan_waves",
            "Waves of each migration plan by state (waiting, gating, moving, observing, done, rolled_back, failed)",
            ["plan", "state"], registry=r,
        )
        self.migration_plan_status = Gauge(
            "ocpp_gateway_migration_plan_status",
            "1 for each migration plan's current status (running, paused, completed, stopped, aborted)",
            ["plan", "status"], registry=r,
        )
        self._children: dict[tuple[Any, ...], Any] = {}
        self._known_estate: tuple[frozenset[str], frozenset[str]] | None = None
        for version in OCPP_VERSIONS:
            self.chargers_connected.labels(version)
        for event in PROBLEM_EVENTS:
            self._child(self.problems, (event,))
        for reason in REFUSAL_REASONS:
            self.connections_refused.labels(reason)
        for action in OFFLINE_ANSWERED_ACTIONS:
            self.offline_answers.counts[(action,)] = 0
        self.set_phases({}, now=-math.inf)

    def phases_due(self, now: float) -> bool:
        """Whether the phase counts are older than ``PHASES_EVERY`` seconds (monotonic ``now``)."""
        return now - self._phases_at >= PHASES_EVERY

    def set_phases(self, counts: Mapping[str, int], now: float) -> None:
        """The estate's chargers per migration phase as of ``now`` (phases not in ``counts`` have none)."""
        self._phases_at = now
        for phase in {*MIGRATION_PHASES, *counts}:
            self._child(self.migration_phases, (phase,)).set(counts.get(phase, 0))

    def know_estate(self, csms: Iterable[str], shadows: Iterable[str]) -> None:
        """Start at 0 the series of the configured CSMSs: links, connect attempts, shadow comparisons.

        Cheap to call on every scrape: it does nothing while the names stay the same.
        """
        known = (frozenset(csms), frozenset(shadows))
        if known == self._known_estate:
            return
        self._known_estate = known
        for name in known[0]:
            for state in UPSTREAM_STATES:
                self.upstream_links.labels(name, state)
            for outcome in UPSTREAM_OUTCOMES:
                self.upstream_connects.labels(name, outcome)
        self.migration_chargers.known = {(name, readiness) for name in known[1] for readiness in READINESS}
        if not self.per_charger:  # per charger, the charger ids are not known in advance
            for name in known[1]:
                for outcome in SHADOW_OUTCOMES:
                    self._child(self.shadow_comparisons, (name, FIRST_COMPARED_ACTION, outcome))

    def _offline_oldest_age(self) -> float:
        oldest = [t for q in list(self.offline_queues.values()) if (t := q()[1]) is not None]
        return time.time() - min(oldest) if oldest else 0.0

    def offline_event(self, kind: str, action: str) -> None:
        if kind == "answered":
            self.offline_answers.inc((action,))
        elif kind == "replayed":
            self.offline_replayed.inc()
        elif kind == "differs":
            self.offline_verdict_differs.inc()
        elif kind == "dropped":
            self.offline_dropped.inc()

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

    def migration_plan(self, plan: str, status: str, chargers: dict[str, int], waves: dict[str, int]) -> None:
        """A migration plan's progress, as its gauges show it (every state present, zeros included)."""
        for state, count in chargers.items():
            self.migration_plan_chargers.labels(plan, state).set(count)
        for state, count in waves.items():
            self.migration_plan_waves.labels(plan, state).set(count)
        for name in ("running", "paused", "completed", "stopped", "aborted"):
            self.migration_plan_status.labels(plan, name).set(1 if name == status else 0)

    def problem(self, event: str) -> None:
        self._child(self.problems, (event,)).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
