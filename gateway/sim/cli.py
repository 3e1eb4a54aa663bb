"""``ocpp-gateway sim charger`` and ``ocpp-gateway sim csms``: the tests' strict recording peers, by hand.

Both print every frame they send and receive (one line each, payload
shortened) and, at the end, what the other side got wrong. The exit status
is 0 when the other side broke no rule and every step succeeded, 1
otherwise, so they also serve as smoke tests in scripts.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from typing import TextIO

from websockets.exceptions import InvalidHandshake, InvalidStatus

from gateway.ocppj import Version
from gateway.sim.charger import SimCharger
from gateway.sim.csms import DemoCsms
from gateway.sim.peer import Endpoint, InvalidResponse, OcppCallError, SimFrame, Violation

PAYLOAD_WIDTH = 160  # characters of a frame shown per line


class FramePrinter:
    """One line per frame: time, charger, direction as seen from ``me``, message type, action, frame text."""

    def __init__(self, me: str, out: TextIO, quiet: bool = False) -> None:
        self.me = me
        self.out = out
        self.quiet = quiet

    def __call__(self, peer: Endpoint, frame: SimFrame) -> None:
        if self.quiet:
            return
        arrow = "<-" if frame.direction == "in" else "->"
        stamp = time.strftime("%H:%M:%S", time.localtime(frame.ts)) + f".{int(frame.ts * 1000) % 1000:03d}"
        text = frame.text if len(frame.text) <= PAYLOAD_WIDTH else frame.text[: PAYLOAD_WIDTH - 1] + "…"
        action = frame.action or ""
        self.out.write(f"{stamp} {peer.charger_id} {self.me} {arrow} {frame.message_type:<10} {action:<26} {text}\n")
        self.out.flush()


def _stop_event(duration: float | None) -> asyncio.Event:
    """Set on SIGINT/SIGTERM, or after ``duration`` seconds."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if duration:
        loop.call_later(duration, stop.set)
    return stop


def _report_violations(violations: list[Violation], out: TextIO) -> None:
    for v in violations:
        out.write(f"VIOLATION {v.charger_id} (OCPP {v.version.value}): {v.description}\n")


async def run_csms(
    version: Version, host: str, port: int, duration: float | None, quiet: bool, out: TextIO = sys.stdout
) -> int:
    """Serve as a strict CSMS until SIGINT/SIGTERM (or ``duration``); 1 if any charger broke a rule."""
    csms = DemoCsms([version], host=host, port=port, keep_frames=1000)
    csms.on_frame = FramePrinter("CSMS", out, quiet)
    stop = _stop_event(duration)
    try:
        await csms.start()
    except OSError as exc:
        print(f"ocpp-gateway sim csms: cannot listen on {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    out.write(f"sim csms: OCPP {version.value} listening on {csms.url}/<charger_id>\n")
    out.flush()
    await stop.wait()
    await csms.stop()
    transactions = csms.transactions()
    out.write(f"sim csms: {len(csms.chargers)} chargers, {len(transactions)} transactions "
              f"({sum(1 for t in transactions if not t.active)} finished), {len(csms.violations)} violations\n")
    _report_violations(csms.violations, out)
    return 1 if csms.violations or csms.errors else 0


async def run_charger(
    version: Version,
    url: str,
    charger_id: str,
    transactions: int,
    *,
    password: str | None = None,
    id_tag: str = "SIMTAG0001",
    energy_wh: int = 5000,
    meter_interval: float = 1.0,
    stay: bool = False,
    quiet: bool = False,
    out: TextIO = sys.stdout,
) -> int:
    """Connect, boot, run ``transactions`` charging sessions, optionally stay; 1 on any failure or violation."""
    charger = SimCharger(charger_id, version, url, password=password, id_tag=id_tag, keep_frames=1000)
    charger.on_frame = FramePrinter("charger", out, quiet)
    stop = _stop_event(None)
    failure: str | None = None
    try:
        subprotocol = await charger.connect()
        out.write(f"sim charger: {charger_id} connected to {charger.full_url} ({subprotocol or 'no subprotocol'})\n")
        boot = await charger.boot()
        if not charger.booted:
            failure = f"BootNotification answered {boot.get('status')}"
        for i in range(transactions if failure is None else 0):
            summary = await charger.run_session(energy_wh=energy_wh, meter_interval=meter_interval)
            out.write(f"sim charger: transaction {i + 1}/{transactions}: id {summary.transaction_id}, "
                      f"authorization {summary.auth_status}, {summary.energy_wh} Wh, {summary.samples} meter values\n")
            if not summary.authorized:
                failure = f"transaction {i + 1}: authorization {summary.auth_status}"
                break
        if stay and failure is None:
            out.write("sim charger: staying connected, answering the CSMS (Ctrl-C ends)\n")
            out.flush()
            closed = asyncio.ensure_future(charger.closed.wait())
            stopped = asyncio.ensure_future(stop.wait())
            await asyncio.wait({closed, stopped}, return_when=asyncio.FIRST_COMPLETED)
            for task in (closed, stopped):
                task.cancel()
            if not stop.is_set():
                failure = f"the server closed the connection ({charger.close_code})"
    except InvalidStatus as exc:
        body = exc.response.body.decode(errors="replace").strip()
        failure = f"handshake refused: HTTP {exc.response.status_code} {body}"
    except (InvalidHandshake, OSError) as exc:
        failure = f"cannot connect to {charger.full_url}: {exc}"
    except TimeoutError:
        failure = "timed out waiting for the server"
    except OcppCallError as exc:
        failure = f"{exc.action} answered CALLERROR {exc.code}: {exc.description}"
    except InvalidResponse as exc:
        failure = f"invalid answer: {exc}"
    finally:
        await charger.close()
    _report_violations(charger.violations, out)
    if failure is not None:
        out.write(f"sim charger: FAILED: {failure}\n")
    else:
        out.write(f"sim charger: done, {len(charger.violations)} violations\n")
    out.flush()
    return 1 if failure is not None or charger.violations or charger.errors else 0
