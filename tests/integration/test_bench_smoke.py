"""`ocpp-gateway bench` end to end in a tiny configuration: every figure is produced (no timing assertions)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

TINY = ["--chargers", "20", "--period", "1", "--window", "2", "--ramp", "0.5", "--sat-conns", "5",
        "--sat-warmup", "0.5", "--sat-window", "2", "--rate-conns", "5", "--rate", "50", "--rate-warmup", "0.5",
        "--rate-window", "2", "--idle", "10,20", "--storm", "20", "--settle", "0.2", "--timeout", "60", "--quiet",
        # The 1-vs-2-workers stages hold thousands of chargers on PostgreSQL: tests/integration/test_workers_bench.py
        # runs them in their quick form; here they would only run into --timeout (4 minutes of nothing).
        "--workers", "none"]


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_tiny_benchmark_produces_every_figure(tmp_path: Path) -> None:
    """Direct, the bare relay and the gateway yield throughput, CPU per CALL (closed loop and fixed rate), latency,
    memory and reconnect figures, with the ratios gateway / bare relay; the table shows them."""
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "gateway.cli", "bench", *TINY, "--json", str(out)],
                          capture_output=True, text=True, timeout=400, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads(out.read_text())
    summary = results["summary"]

    direct = summary["direct"]
    for key in ("throughput_calls_per_s", "latency_p50_ms", "latency_p99_ms", "reconnect_seconds",
                "fixed_rate_calls_per_s", "fixed_rate_p99_ms"):
        assert direct[key] is not None and direct[key] > 0, key

    relay = summary["relay"]
    for key in ("throughput_calls_per_s", "proxy_cpu_us_per_call", "proxy_cpu_us_per_call_fixed_rate",
                "fixed_rate_p50_ms", "rss_per_idle_charger_kib@20"):
        assert relay.get(key) is not None and relay[key] > 0, f"relay: {key}"
    assert results["scenarios"]["relay"]["saturation"]["errors"] == 0

    gateway_scenarios = ["passthrough"]
    translate = summary["translate"]
    if translate["status"] == "ok":
        gateway_scenarios.append("translate")
    else:
        assert translate["status"] == "not yet" or translate["status"].startswith("not available")
    for name in gateway_scenarios:
        row = summary[name]
        for key in ("throughput_calls_per_s", "throughput_ratio", "latency_p50_ms", "latency_p99_ms",
                    "added_p99_ms", "gateway_cpu_s_per_1000", "rss_per_idle_charger_kib@10",
                    "rss_per_idle_charger_kib@20", "reconnect_seconds", "reconnect_ratio", "proxy_cpu_us_per_call",
                    "proxy_cpu_us_per_call_fixed_rate", "cpu_vs_relay", "cpu_vs_relay_fixed_rate"):
            assert row.get(key) is not None, f"{name}: {key}"
        assert summary["cpu_vs_relay"][name]["closed_loop"] == pytest.approx(row["cpu_vs_relay"])
        assert row["idle_chargers_held@20"] == 20
        scenario = results["scenarios"][name]
        assert scenario["storm"]["complete"]
        assert scenario["storm"]["cpu_seconds"]["gateway"] > 0
        assert scenario["fixed_rate"]["calls"] > 0 and scenario["fixed_rate"]["errors"] == 0
        assert scenario["realistic"]["errors"] == 0, scenario["realistic"]["error_samples"]
        # The message log stayed on during the measurement and kept up: no record dropped.
        metrics = scenario["metrics_after_load"]
        assert metrics["ocpp_gateway_store_records_dropped"] == 0
        assert metrics["ocpp_gateway_frames_total"] > 0

    assert {t["target"] for t in summary["targets"]} >= {"pass-through throughput >= 50% of direct"}
    translate21 = summary["translate21"]
    if translate21["status"] == "ok":
        assert translate21["proxy_cpu_us_per_call"] > 0 and translate21["cpu_vs_relay_fixed_rate"] > 0
    assert "Saturation (CALLs/s)" in proc.stdout and "Targets:" in proc.stdout
    assert "CPU per CALL, gateway / bare relay" in proc.stdout and "bare relay (closed loop, 5 chargers)" in proc.stdout
    assert "workers" not in results  # skipped on request (--workers none)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_tiny_durability_benchmark_produces_every_figure(tmp_path: Path) -> None:
    """--durability measures transactions with and without the barrier for both CSMS versions, and replays the
    whole backlog it queued (the gateway's replayed counter reaches it)."""
    out = tmp_path / "durability.json"
    proc = subprocess.run([sys.executable, "-m", "gateway.cli", "bench", "--durability", "--tx-chargers", "3",
                           "--tx-seconds", "1", "--backlog", "200", "--backlog-chargers", "2", "--timeout", "60",
                           "--quiet", "--json", str(out)],
                          capture_output=True, text=True, timeout=280, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads(out.read_text())
    rows = {(r["csms"], r["durable"]): r for r in results["transactions"]}
    assert set(rows) == {(c, d) for c in ("1.6 (pass-through)", "2.0.1 (translation)") for d in (True, False)}
    for row in rows.values():
        assert row["calls"] > 0 and row["p99_ms"] >= row["p50_ms"] > 0
    for replay in results["replay"]:
        assert replay["fill"]["queued"] == 200
        assert replay["replay"]["replayed"] >= 200 and replay["replay"]["messages_per_second"] > 0
    assert "durable-before-answer" in proc.stdout and "replay of a 200-message backlog" in proc.stdout
