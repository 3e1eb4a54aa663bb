"""Counters the gateway knows the labels of start at 0, and the known label lists match the code that counts."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway.metrics import (
    OFFLINE_ANSWERED_ACTIONS,
    PROBLEM_EVENTS,
    REFUSAL_REASONS,
    SHADOW_OUTCOMES,
    GatewayMetrics,
)
from gateway.offline import ANSWERED_ACTIONS

ROOT = Path(__file__).resolve().parents[2]


def _source_strings(pattern: str, *globs: str) -> set[str]:
    """Every first string argument matched by ``pattern`` in the project files under ``globs``."""
    found: set[str] = set()
    for glob in globs:
        for path in ROOT.glob(glob):
            found.update(re.findall(pattern, path.read_text()))
    return found


def test_every_problem_event_the_code_counts_is_initialised() -> None:
    """Each literal event passed to Problem(), Report() or metrics.problem() is in PROBLEM_EVENTS."""
    events = _source_strings(r'(?:\bProblem|\bReport|\.problem)\(\s*"([a-z_]+)"', "gateway/**/*.py", "adapters/**/*.py")
    events.discard("event_name")  # the example in adapters/base.py's docstring
    assert events, "found no problem events: has the code changed its spelling?"
    assert events <= set(PROBLEM_EVENTS), sorted(events - set(PROBLEM_EVENTS))


def test_every_refusal_reason_the_code_counts_is_initialised() -> None:
    """Each reason the estate refuses a handshake with is in REFUSAL_REASONS."""
    reasons = _source_strings(r'_refuse\(\s*connection,\s*HTTPStatus\.\w+,\s*"([a-z_]+)"', "gateway/app.py")
    reasons |= _source_strings(r'connections_refused\.labels\("([a-z_]+)"\)', "gateway/app.py")
    assert reasons, "found no refusal reasons: has the code changed its spelling?"
    assert reasons <= set(REFUSAL_REASONS), sorted(reasons - set(REFUSAL_REASONS))


def test_every_action_the_gateway_answers_offline_starts_at_zero() -> None:
    """The offline answers series exist at 0 for each action the gateway may answer itself, and no other."""
    assert set(OFFLINE_ANSWERED_ACTIONS) == ANSWERED_ACTIONS
    samples = _samples(GatewayMetrics())
    for action in ANSWERED_ACTIONS:
        assert samples[f'ocpp_gateway_offline_answers_total{{action="{action}"}}'] == 0


def _samples(metrics: GatewayMetrics) -> dict[str, float]:
    lines = metrics.exposition().decode().splitlines()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in lines
            if line and not line.startswith("#") and "_created" not in line}


@pytest.mark.parametrize(("series", "value"), [
    ('ocpp_gateway_problems_total{event="call_timeout"}', 0.0),
    ('ocpp_gateway_connections_refused_total{reason="bad_credentials"}', 0.0),
    ('ocpp_gateway_chargers_connected{ocpp_version="2.0.1"}', 0.0),
    ('ocpp_gateway_upstream_connect_attempts_total{csms="new",outcome="failed"}', 0.0),
    ('ocpp_gateway_upstream_links{csms="legacy",state="up"}', 0.0),
    *((f'ocpp_gateway_shadow_comparisons_total{{action="BootNotification",csms="new",outcome="{o}"}}', 0.0)
      for o in SHADOW_OUTCOMES),
    ("ocpp_gateway_store_backpressure_episodes_total", 0.0),
    ('ocpp_gateway_migration_chargers{csms="new",readiness="not_ready"}', 0.0),
    ('ocpp_gateway_migration_phase_chargers{phase="cut-over"}', 0.0),
    ("ocpp_gateway_store_records_written_total", 0.0),
])
def test_known_series_are_exported_as_zero_before_anything_happens(series: str, value: float) -> None:
    """A fresh gateway that knows its CSMSs exports these series at 0 rather than leaving them out."""
    metrics = GatewayMetrics()
    metrics.know_estate(["legacy", "new"], ["new"])
    assert _samples(metrics).get(series) == value, series


def test_shadow_comparisons_are_not_initialised_per_charger() -> None:
    """With per-charger labels the charger ids are unknown in advance, so no comparison series is made up."""
    metrics = GatewayMetrics(per_charger=True)
    metrics.know_estate(["legacy", "new"], ["new"])
    assert not [s for s in _samples(metrics) if s.startswith("ocpp_gateway_shadow_comparisons_total")]


def test_store_totals_are_counters_and_keep_their_old_gauge_names() -> None:
    """Written and dropped records are ``_total`` counters; the gauge names bench and docs read still work."""
    metrics = GatewayMetrics()
    metrics.store_log.update({"written": 41, "rows_written": 30, "dropped": 2, "queue_depth": 7})
    text = metrics.exposition().decode()
    assert "# TYPE ocpp_gateway_store_records_written_total counter" in text
    assert "# TYPE ocpp_gateway_store_records_dropped_total counter" in text
    samples = _samples(metrics)
    assert samples["ocpp_gateway_store_records_written_total"] == 41
    assert samples["ocpp_gateway_store_records_dropped_total"] == 2
    assert samples["ocpp_gateway_store_records_written"] == 41
    assert samples["ocpp_gateway_store_records_dropped"] == 2
    assert samples["ocpp_gateway_store_rows_written_total"] == 30  # 11 relayed frames stored as pairs
