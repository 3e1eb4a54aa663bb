"""The operator's outage drill (tools/outage-drill.sh, docs/outage-drill.md) passes as written.

Real processes throughout: two simulated CSMSs, the gateway (SIGKILLed mid-way), four simulated chargers.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from tests.integration.test_cli import free_port

SCRIPT = Path(__file__).resolve().parents[2] / "tools" / "outage-drill.sh"


async def test_the_outage_drill_delivers_every_transaction_once_after_a_sigkill(tmp_path: Path) -> None:
    """CSMSs down, 8 charging sessions on 4 version pairs, kill -9, restart: each CSMS reports 4 finished
    transactions and no violation, and the queue is empty."""
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "OCPP_GATEWAY": str(bin_dir / "ocpp-gateway"), "PYTHON": sys.executable,
           "DRILL_PORT": str(free_port()), "DRILL_ADMIN": str(free_port()),
           "DRILL_CSMS201": str(free_port()), "DRILL_CSMS16": str(free_port())}
    proc = await asyncio.create_subprocess_exec("bash", str(SCRIPT), str(tmp_path / "drill"), env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    text = out.decode()
    assert proc.returncode == 0, text
    assert "PASS" in text and "left: 0" in text
    assert text.count("2 chargers, 4 transactions (4 finished), 0 violations") == 2, text
