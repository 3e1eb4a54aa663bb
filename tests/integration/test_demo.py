"""`ocpp-gateway demo` as a newcomer runs it: a real subprocess with simulated chargers."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import orjson

from gateway.store import open_store

CLI = [sys.executable, "-m", "gateway.cli"]


async def test_demo_runs_chargers_of_every_version_and_exits_cleanly(tmp_path: Path) -> None:
    """The demo boots 1.6J, 2.0.1 and 2.1 chargers through the gateway, prints a live summary and flushes the log."""
    store = f"sqlite:///{tmp_path}/demo.db"
    proc = await asyncio.create_subprocess_exec(
        *CLI, "demo", "--chargers", "9", "--duration", "6", "--port", "0", "--admin-port", "0", "--store", store,
        "--no-vendors",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    text = out.decode()
    assert proc.returncode == 0, err.decode()[-2000:]
    assert "/metrics" in text and "ocpp-gateway logs DEMO0001" in text
    summary = [line for line in text.splitlines() if line.startswith("[")]
    assert summary and "chargers 9 (1.6:3 2.0.1:3 2.1:3)" in summary[-1]
    assert "Done: 9 boots" in text
    s = open_store(store)
    await s.start()
    try:
        records = await s.messages("DEMO0001", limit=500)
    finally:
        await s.close()
    assert any(r["action"] == "BootNotification" and r["peer"] == "csms" for r in records)
    assert all(orjson.dumps(r["payload"]) for r in records)


async def test_demo_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    """SIGTERM during the demo closes connections, flushes the log and exits 0."""
    proc = await asyncio.create_subprocess_exec(
        *CLI, "demo", "--chargers", "3", "--duration", "0", "--port", "0", "--admin-port", "0",
        "--store", f"sqlite:///{tmp_path}/demo.db",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    while True:
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert line, "demo exited early"
        if line.startswith(b"["):
            break
    proc.send_signal(signal.SIGTERM)
    rest, _err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0
    assert b"Done:" in rest and b"Cloud-locked chargers" in rest
