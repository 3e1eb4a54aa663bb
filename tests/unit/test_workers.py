"""`workers:`: how many processes a configuration runs, and the supervisor's merged /metrics."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.benchkit.workers import charger_capacity, locks_needed, workers_needed
from gateway.config import validate, worker_count
from gateway.metrics import GatewayMetrics
from gateway.workers import ESTATE_WIDE, WorkerSlot, label_value, merge_expositions, with_label, worker_config

PG = "postgresql://postgres@db:5432/gateway"
SQLITE = "sqlite:///gw.db"


def config(**extra: Any) -> dict[str, Any]:
    return {"csms": {"a": {"url": "ws://csms/ocpp", "ocpp": "1.6"}}, "default_route": {"primary": "a"}, **extra}


@pytest.mark.parametrize(("workers", "store", "problem"), [
    (2, SQLITE, "workers: 2 processes need a PostgreSQL store; a SQLite store is one process's (use workers: 1, "
                "or postgresql://... - docs/cluster.md)"),
    (0, PG, "workers: must be a number of processes (1 or more) or auto"),
    ("many", PG, "workers: must be a number of processes (1 or more) or auto"),
    (True, PG, "workers: must be a number of processes (1 or more) or auto"),
])
def test_a_worker_count_that_cannot_work_is_a_problem_naming_the_key(workers: Any, store: str, problem: str) -> None:
    """Zero, words, booleans, and more than one process on a SQLite file are refused, one line each."""
    _, problems = validate(config(workers=workers, store=store), "gw.yaml")
    assert problems == [f"gw.yaml: {problem}"]


def test_the_sqlite_rule_is_reported_beside_other_problems() -> None:
    """A file with another mistake still gets its workers problem in the same run."""
    _, problems = validate(config(workers=3, store=SQLITE, call_timeout=-1), "gw.yaml")
    assert "gw.yaml: workers: 3 processes need a PostgreSQL store; a SQLite store is one process's (use " \
           "workers: 1, or postgresql://... - docs/cluster.md)" in problems


@pytest.mark.parametrize(("workers", "store", "expected"), [
    ("auto", SQLITE, 1), ("auto", PG, len(os.sched_getaffinity(0))), (3, PG, 3), (1, SQLITE, 1),
])
def test_auto_is_one_per_core_on_postgresql_and_one_on_sqlite(workers: Any, store: str, expected: int) -> None:
    """The default runs a process per usable core only when the store can be shared."""
    parsed, problems = validate(config(store=store, workers=workers))
    assert parsed is not None and problems == []
    assert worker_count(parsed.workers, parsed.store) == expected


def test_a_worker_gets_the_hosts_port_a_private_admin_port_and_its_own_name() -> None:
    """Worker 1 of instance gw1: the resolved charger port, 127.0.0.1:0 for admin, instance gw1-w1."""
    parsed, _ = validate(config(store=PG, instance_id="gw1", admin={"host": "0.0.0.0", "port": 9100}))
    assert parsed is not None
    slot = WorkerSlot.parse(str(WorkerSlot(1, 7, 9000)))
    mine = worker_config(parsed, slot)
    assert (mine.listen.port, mine.admin.host, mine.admin.port, mine.instance_id, mine.workers) == \
        (9000, "127.0.0.1", 0, "gw1-w1", 1)
    unnamed, _ = validate(config(store=PG))
    assert unnamed is not None and worker_config(unnamed, slot).instance_id is None  # hostname:pid, as alone


def test_a_label_goes_first_whether_or_not_the_sample_has_labels() -> None:
    """Label values may hold braces and spaces; the new label never lands inside one."""
    assert with_label('x_total{a="{ b}"} 3.0', "worker", "1") == 'x_total{worker="1",a="{ b}"} 3.0'
    assert with_label("x 1.0", "worker", "0") == 'x{worker="0"} 1.0'
    assert with_label("x{} 1.0", "worker", "0") == 'x{worker="0"} 1.0'


def exposition(connected: int) -> str:
    metrics = GatewayMetrics()
    metrics.chargers_connected.labels("1.6").inc(connected)
    metrics.frame("in", "charger", "CALL", "Heartbeat", "CP1")
    metrics.observe_roundtrip("charger", "Heartbeat", 0.002)
    return metrics.exposition().decode()


def test_merged_metrics_parse_with_one_header_per_family_and_a_worker_label() -> None:
    """Two workers' expositions: Prometheus' own parser reads the merge; every sample names its worker."""
    merged = merge_expositions([("0", exposition(3)), ("1", exposition(5))])
    families = {f.name: f for f in text_string_to_metric_families(merged)}
    connected = {s.labels["worker"]: s.value for s in families["ocpp_gateway_chargers_connected"].samples
                 if s.labels["ocpp_version"] == "1.6"}
    assert connected == {"0": 3.0, "1": 5.0}
    buckets = [s for s in families["ocpp_gateway_call_roundtrip_seconds"].samples if s.name.endswith("_bucket")]
    assert {s.labels["worker"] for s in buckets} == {"0", "1"}
    assert merged.count("# TYPE ocpp_gateway_chargers_connected gauge") == 1
    per_worker = [line for line in merged.splitlines()
                  if line and not line.startswith("#") and line.split("{")[0] not in ESTATE_WIDE]
    assert per_worker and all("worker=" in line for line in per_worker)


def test_estate_wide_gauges_come_from_one_worker() -> None:
    """A gauge every worker computes over the whole estate is exported once, without a worker label."""
    text = ("# HELP ocpp_gateway_migration_phase_chargers Chargers per phase\n"
            "# TYPE ocpp_gateway_migration_phase_chargers gauge\n"
            'ocpp_gateway_migration_phase_chargers{phase="cut-over"} 7.0\n')
    merged = merge_expositions([("0", text), ("1", text)])
    assert [line for line in merged.splitlines() if not line.startswith("#")] == [
        'ocpp_gateway_migration_phase_chargers{phase="cut-over"} 7.0']


def plan_gauges(moved: int, status: str) -> str:
    metrics = GatewayMetrics()
    metrics.migration_plan('west "A"', status, {"pending": 10 - moved, "moved": moved}, {"done": moved // 5})
    return metrics.exposition().decode()


def test_a_plans_gauges_come_from_the_worker_with_its_newest_copy() -> None:
    """Worker 1 runs the plan (newest copy), worker 0 stands by with an older one: only worker 1's series."""
    merged = merge_expositions([("0", plan_gauges(2, "running")), ("1", plan_gauges(8, "completed"))],
                               {label_value('west "A"'): "1"})
    families = {f.name: f for f in text_string_to_metric_families(merged)}
    chargers = {s.labels["state"]: s.value for s in families["ocpp_gateway_migration_plan_chargers"].samples}
    assert chargers == {"pending": 2.0, "moved": 8.0}
    status = {s.labels["status"] for s in families["ocpp_gateway_migration_plan_status"].samples if s.value == 1}
    assert status == {"completed"}
    assert all(s.labels["plan"] == 'west "A"' for s in families["ocpp_gateway_migration_plan_waves"].samples)


STOP_WITH_A_FULL_SELF_PIPE = """
import asyncio, os, signal
from gateway.workers import on_stop_signal

async def main() -> None:
    stopped = asyncio.Event()
    on_stop_signal(stopped.set)
    loop = asyncio.get_running_loop()
    for _ in range(300_000):  # each writes a byte to the loop's self-pipe, as a store thread's answers do
        loop.call_soon_threadsafe(lambda: None)
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.wait_for(stopped.wait(), 10)
    print("stopped")

asyncio.run(main())
"""


def test_a_sigterm_is_not_lost_when_the_loops_self_pipe_is_full() -> None:
    """SIGTERM while the event loop's self-pipe is full still stops the gateway (asyncio's own signal
    handling loses it then: its byte cannot be written)."""
    done = subprocess.run([sys.executable, "-c", STOP_WITH_A_FULL_SELF_PIPE], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "stopped"


def test_the_open_files_budget_decides_how_many_workers_hold_an_estate() -> None:
    """Two fds per charger plus a reserve: one process under 20,000 files holds 9,968; 20,000 chargers need
    3 workers (2 would need 10,000 each, over the limit once the spread is uneven)."""
    assert charger_capacity(1, 20_000) == 9_968
    assert workers_needed(20_000, 20_000) == 3
    assert workers_needed(9_000, 20_000) == 2  # 9,968 at most, minus the 10 % margin
    assert workers_needed(100, 20_000) == 1


def test_the_benchmarks_lock_table_fits_one_advisory_lock_per_charger() -> None:
    """max_locks_per_transaction x 100 connections holds the chargers with a quarter to spare."""
    for chargers in (1_000, 6_000, 20_000, 100_000):
        assert locks_needed(chargers) * 100 >= chargers * 1.25
    assert locks_needed(1_000) == 64  # PostgreSQL's default is enough for a small estate
