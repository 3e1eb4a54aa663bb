"""`ocpp-gateway demo` as a newcomer runs it: a real subprocess with simulated chargers."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from pathlib import Path

import orjson

from gateway.store import open_store

CLI = [sys.executable, "-m", "gateway.cli"]


async def test_demo_tells_the_migration_and_its_counters_agree(tmp_path: Path) -> None:
    """Shadowing, a live cut-over, totals: frames, sessions and energy agree, nothing is lost, no reconnects."""
    store = f"sqlite:///{tmp_path}/demo.db"
    proc = await asyncio.create_subprocess_exec(
        *CLI, "demo", "--chargers", "8", "--duration", "25", "--port", "0", "--admin-port", "0", "--store", store,
        "--no-vendors",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 90)
    text = out.decode()
    assert proc.returncode == 0, text[-3000:] + err.decode()[-2000:]
    assert "ocpp-gateway logs DEMO0001" in text
    for heading in ("== 1. Shadowing", "== 2. Cut-over, live", "== 3. Totals"):
        assert heading in text
    assert "Authorize idTagInfo.status: legacy-csms 'Accepted', new-csms 'Blocked'" in text
    live = [line for line in text.splitlines() if line.startswith("[")]
    last = live[-1]
    assert "chargers connected 8/8, booted 8, reconnects 0" in last
    sent = int(re.search(r"frames from chargers (\d+), received (\d+)", last).group(1))  # type: ignore[union-attr]
    assert f"frames from chargers {sent}, received {sent}" in last
    metered = re.search(r"chargers metered (\d+) sessions, (\d+) Wh; the CSMSs recorded (\d+) sessions, (\d+) Wh",
                        text)
    assert metered is not None and int(metered.group(1)) > 0
    assert (metered.group(1), metered.group(2)) == (metered.group(3), metered.group(4))
    assert "messages lost: 0" in text and "Done: every counter agrees" in text
    new_row = re.search(r"new-csms\s+(\d+)\s+(\d+)", text)
    assert new_row is not None and int(new_row.group(1)) > 0, "the cut-over wave ran transactions on the new CSMS"
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
    assert b"Done:" in rest and b"cloud-locked chargers" in rest
