"""The load generator: many simulated 1.6J chargers in one asyncio process, driven over stdin/stdout.

    python -m gateway.benchkit.loadgen

Reads one JSON command per line on stdin and answers each with one JSON line
on stdout (``{"ok": true, ...}`` or ``{"ok": false, "error": ...}``):

- ``saturate``: ``conns`` chargers each send their next CALL as soon as the
  previous one is answered; count answers over ``window`` seconds after
  ``warmup``.
- ``paced``: open loop, ``conns`` chargers send ``rate`` CALLs/s between them (the saturation mix) on a
  fixed schedule; count answers and time round trips (from when each CALL fell due) over ``window`` seconds.
- ``realistic``: ``n`` chargers each send Heartbeat + MeterValues every
  ``period`` seconds plus a transaction mix (Authorize, StartTransaction,
  StatusNotification, MeterValues with the transaction id, StopTransaction);
  CALL round-trip latency over ``window`` seconds after a ramp of one period.
- ``hold``: open and boot chargers until ``n`` are held; ``release``: close them.
- ``arm``: from now on a held charger that loses its connection reconnects
  (backoff 0.1 s .. 0.5 s) and sends BootNotification again;
  ``storm_wait``: wait until ``n`` of them have rebooted.
- ``quit``.

Every command that measures reads the CPU seconds of the processes in
``pids`` (plus its own) at the start and end of its window.
"""

from __future__ import annotations

import asyncio
import base64
import os
import random
import sys
import time
from array import array
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import orjson

from gateway.benchkit import ws
from gateway.benchkit.frames import CallTemplate, charger_templates_v16, split_call
from gateway.benchkit.procs import cpu_seconds, raise_nofile

SATURATION_MIX = ("heartbeat", "meter", "available")
CONNECT_CONCURRENCY = 256
RECONNECT_MAX_DELAY = 0.5  # a charger's retry interval after a lost connection: 0.1 s growing to this, +-30 %
_MAX_HEAD = 16384


def percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


class Charger(asyncio.Protocol):
    """One simulated charger's connection: handshake, one outstanding CALL, a queue of the next ones."""

    __slots__ = (
        "busy", "cid", "gen", "head", "idx", "in_tx", "lost", "mask", "opened", "pending_kind", "pending_uid",
        "queue", "reader", "retry_after", "sat_next", "sent_at", "seq", "transport", "tx", "tx_ticks", "waiter",
    )

    def __init__(self, gen: LoadGen, idx: int) -> None:
        self.gen = gen
        self.idx = idx
        self.cid = f"{gen.prefix}{idx:06d}"
        self.transport: asyncio.Transport | None = None
        self.head: bytearray | None = bytearray()
        self.reader = ws.FrameReader()
        self.mask = os.urandom(4)
        self.seq = 0
        self.pending_uid = b""
        self.pending_kind = ""
        self.sent_at = 0.0
        self.queue: deque[tuple[str, float]] = deque()  # (kind, when it was due; 0.0: when it is sent)
        self.busy = False
        self.tx = b""
        self.in_tx = False
        self.tx_ticks = 0
        self.sat_next = idx % len(SATURATION_MIX)
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[bool] = loop.create_future()
        self.lost: asyncio.Future[None] = loop.create_future()
        self.waiter: asyncio.Future[bool] | None = None
        self.retry_after: float | None = None  # set when the server answered 503 (busy)

    # ------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        g = self.gen
        key = base64.b64encode(os.urandom(16))
        transport.write(
            b"GET " + g.path + self.cid.encode() + b" HTTP/1.1\r\nHost: " + g.hostport + b"\r\n"
            b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key + b"\r\n"
            b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ocpp1.6\r\n\r\n"
        )

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_result(False)
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(False)
        if not self.lost.done():
            self.lost.set_result(None)
        self.gen.on_lost(self)

    def data_received(self, data: bytes) -> None:
        if self.head is not None:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                if len(self.head) > _MAX_HEAD:
                    self.abort()
                return
            status, headers = ws.parse_headers(bytes(self.head[:end]))
            rest = bytes(self.head[end + 4 :])
            self.head = None
            ok = b" 101 " in status
            if not ok:
                if b" 503 " in status:
                    try:
                        self.retry_after = float(headers.get(b"retry-after", b"1"))
                    except ValueError:
                        self.retry_after = 1.0
                else:
                    self.gen._failed("refused: " + status.decode("latin-1")[:60])
                self.abort()
            if not self.opened.done():
                self.opened.set_result(ok)
            if not ok:
                return
            if not rest:
                return
            data = rest
        try:
            messages = self.reader.feed(data)
        except ws.ProtocolError:
            self.abort()
            return
        for opcode, payload in messages:
            if opcode == ws.OP_TEXT:
                self._on_text(payload)
            elif opcode == ws.OP_PING:
                self._write(payload, ws.OP_PONG)
            elif opcode == ws.OP_CLOSE:
                self._write(payload[:2], ws.OP_CLOSE)
                if self.transport is not None:
                    self.transport.close()
                return

    # ------------------------------------------------------------ OCPP

    def _write(self, payload: bytes, opcode: int = ws.OP_TEXT) -> None:
        t = self.transport
        if t is not None and not t.is_closing():
            t.write(ws.client_frame(payload, self.mask, opcode))

    def submit(self, kind: str, due: float = 0.0) -> None:
        """Send ``kind`` now, or after the CALLs already queued (one outstanding CALL at a time).

        ``due``: the time (perf_counter) its round trip counts from, so that an open-loop CALL that waits behind an
        unanswered one is not timed as if it had been sent late on purpose; 0.0 counts from when it is sent.
        """
        if self.busy:
            self.queue.append((kind, due))
        else:
            self._send(kind, due)

    def _send(self, kind: str, due: float = 0.0) -> None:
        template: CallTemplate = self.gen.templates[kind]
        if template.needs_tx and not self.tx:  # the transaction never started: nothing to refer to
            self._next()
            return
        self.seq += 1
        uid = b"%x" % self.seq
        self.pending_uid = uid
        self.pending_kind = kind
        self.busy = True
        self.sent_at = due or time.perf_counter()
        self._write(template.build(uid, self.tx))

    def _next(self) -> None:
        if self.queue:
            self._send(*self.queue.popleft())
            return
        self.busy = False
        g = self.gen
        if g.saturating:
            kind = SATURATION_MIX[self.sat_next]
            self.sat_next = (self.sat_next + 1) % len(SATURATION_MIX)
            self._send(kind)
        elif self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(True)

    def _on_text(self, frame: bytes) -> None:
        kind = frame[1:2]
        if kind == b"2":  # the gateway/CSMS asks something: this charger supports nothing
            parts = split_call(frame)
            if parts is not None:
                self._write(b'[4,"' + parts[0] + b'","NotSupported","benchmark charger",{}]')
            return
        uid = self.pending_uid
        n = len(uid)
        if not self.busy or frame[4 : 4 + n] != uid or frame[4 + n : 5 + n] != b'"':
            self.gen.unmatched += 1
            return
        now = time.perf_counter()
        g = self.gen
        g.answered += 1
        if kind == b"4":
            g.errors += 1
            if len(g.error_samples) < 5:
                g.error_samples.append(frame[:300].decode("utf-8", "replace"))
        elif self.pending_kind == "start":
            try:
                self.tx = str(orjson.loads(frame)[2]["transactionId"]).encode()
            except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
                g.errors += 1
        if g.recording:
            g.latencies.append(now - self.sent_at)
            g.recorded += 1
        self._next()

    def tick(self) -> None:
        """One period of the realistic load: Heartbeat + MeterValues, maybe starting or ending a transaction."""
        g = self.gen
        if self.busy:
            g.overruns += 1
        if self.in_tx:
            self.tx_ticks += 1
            for kind in ("heartbeat", "meter_tx"):
                self.submit(kind)
            if self.tx_ticks >= g.tx_ticks:
                self.in_tx = False
                for kind in ("stop", "available"):
                    self.submit(kind)
        else:
            for kind in ("heartbeat", "meter"):
                self.submit(kind)
            if g.rng.random() < g.tx_prob:
                self.in_tx = True
                self.tx_ticks = 0
                self.tx = b""
                for kind in ("authorize", "start", "charging"):
                    self.submit(kind)

    def paced_tick(self) -> None:
        """One CALL of the fixed-rate load, due now whether or not the previous one was answered."""
        kind = SATURATION_MIX[self.sat_next]
        self.sat_next = (self.sat_next + 1) % len(SATURATION_MIX)
        self.submit(kind, time.perf_counter())

    # ------------------------------------------------------------ lifecycle

    async def run_calls(self, kinds: tuple[str, ...], timeout: float) -> bool:
        """Send ``kinds`` in order and wait until all are answered."""
        self.waiter = asyncio.get_running_loop().create_future()
        for kind in kinds:
            self.submit(kind)
        try:
            return await asyncio.wait_for(self.waiter, timeout)
        except TimeoutError:
            return False
        finally:
            self.waiter = None

    def close(self) -> None:
        t = self.transport
        if t is not None and not t.is_closing():
            self._write(b"\x03\xe8", ws.OP_CLOSE)
            asyncio.get_running_loop().call_later(5.0, self.abort)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class LoadGen:
    def __init__(self) -> None:
        self.templates = charger_templates_v16()
        self.prefix = f"BENCH{os.getpid() % 100000:05d}-"
        self.path = b"/ocpp/"
        self.hostport = b"127.0.0.1"
        self.host = "127.0.0.1"
        self.port = 0
        self.next_idx = 0
        self.rng = random.Random(12345)
        self.saturating = False
        self.recording = False
        self.latencies: array[float] = array("d")
        self.recorded = 0
        self.answered = 0
        self.errors = 0
        self.error_samples: list[str] = []
        self.unmatched = 0
        self.overruns = 0
        self.tx_prob = 0.1
        self.tx_ticks = 3
        self.held: dict[int, Charger] = {}
        self.failures: dict[str, int] = {}
        self.busy_refusals = 0
        self.reconnect = False
        self.reconnect_deadline = 0.0
        self.storm: dict[str, Any] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    def target(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.hostname not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError(f"the benchmark only talks to loopback addresses, not {parts.hostname!r}")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.hostport = f"{self.host}:{self.port}".encode()
        self.path = (parts.path.rstrip("/") + "/").encode()

    def reset_counters(self) -> None:
        self.latencies = array("d")
        self.recorded = self.answered = self.errors = self.unmatched = self.overruns = 0
        self.error_samples = []
        self.failures = {}
        self.busy_refusals = 0

    # ------------------------------------------------------------ connections

    async def open_one(self, idx: int | None, kinds: tuple[str, ...], timeout: float) -> Charger | None:
        """Connect, handshake and run ``kinds``, coming back after a 503 (busy) as its Retry-After asks.

        None (and the connection closed) if any other step fails or ``timeout`` runs out.
        """
        if idx is None:
            idx = self.next_idx
            self.next_idx += 1
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self._failed("busy (503) until the deadline")
                return None
            result = await self._attempt(idx, kinds, left)
            if not isinstance(result, float):
                return result
            self.busy_refusals += 1
            await asyncio.sleep(min(result * random.uniform(0.8, 1.2), max(0.0, deadline - time.monotonic())))

    async def _attempt(self, idx: int, kinds: tuple[str, ...], timeout: float) -> Charger | float | None:
        """One connection attempt: the booted charger, the Retry-After of a 503, or None."""
        loop = asyncio.get_running_loop()
        try:
            _, charger = await asyncio.wait_for(
                loop.create_connection(lambda: Charger(self, idx), self.host, self.port), timeout)
        except (OSError, TimeoutError) as exc:
            self._failed(f"connect: {type(exc).__name__} {getattr(exc, 'errno', '') or ''}".strip())
            return None
        try:
            opened = await asyncio.wait_for(charger.opened, timeout)
        except TimeoutError:
            opened = False
        if not opened:
            if charger.retry_after is not None:
                return charger.retry_after
            if charger.head is not None:
                self._failed("closed during handshake" if charger.lost.done() else "handshake timeout")
            charger.abort()
            return None
        if await charger.run_calls(kinds, timeout):
            return charger
        self._failed("boot timeout" if not charger.lost.done() else "closed during boot")
        charger.abort()
        return None

    def _failed(self, reason: str) -> None:
        self.failures[reason] = self.failures.get(reason, 0) + 1

    async def open_many(self, n: int, kinds: tuple[str, ...], timeout: float) -> tuple[list[Charger], int]:
        slots = asyncio.Semaphore(CONNECT_CONCURRENCY)

        async def one() -> Charger | None:
            async with slots:
                return await self.open_one(None, kinds, timeout)

        results = await asyncio.gather(*(one() for _ in range(n)))
        ok = [c for c in results if c is not None]
        return ok, n - len(ok)

    async def close_all(self, chargers: list[Charger], timeout: float = 10.0) -> None:
        for c in chargers:
            c.close()
        pending = [c.lost for c in chargers if not c.lost.done()]
        if pending:
            await asyncio.wait(pending, timeout=timeout)
        for c in chargers:
            if not c.lost.done():
                c.abort()

    def on_lost(self, charger: Charger) -> None:
        if self.held.get(charger.idx) is charger and self.reconnect:
            st = self.storm
            st.setdefault("t_first_lost", time.monotonic())
            st["lost"] = st.get("lost", 0) + 1
            task = asyncio.ensure_future(self._reconnect(charger.idx))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _reconnect(self, idx: int) -> None:
        st = self.storm
        delay = 0.1
        while self.reconnect and time.monotonic() < self.reconnect_deadline:
            await asyncio.sleep(delay * random.uniform(0.7, 1.3))
            st["attempts"] = st.get("attempts", 0) + 1
            charger = await self.open_one(idx, ("boot",), max(0.1, self.reconnect_deadline - time.monotonic()))
            if charger is not None:
                self.held[idx] = charger
                st["rebooted"] = st.get("rebooted", 0) + 1
                st["t_last_boot"] = time.monotonic()
                st.setdefault("boots", []).append(st["t_last_boot"])
                event = st.get("event")
                if event is not None and st["rebooted"] >= st.get("expect", 1 << 30):
                    event.set()
                return
            delay = min(delay * 1.5, RECONNECT_MAX_DELAY)
        st["gave_up"] = st.get("gave_up", 0) + 1

    # ------------------------------------------------------------ commands

    def cpu(self, pids: dict[str, int]) -> dict[str, float]:
        out = {"loadgen": cpu_seconds(os.getpid())}
        for name, pid in pids.items():
            try:
                out[name] = cpu_seconds(pid)
            except (OSError, ValueError):
                pass
        return out

    async def cmd_saturate(self, url: str, conns: int, warmup: float, window: float,
                           pids: dict[str, int] | None = None) -> dict[str, Any]:
        chargers, failed = await self._open_for_load(url, conns)
        self.saturating = True
        for c in chargers:
            c._next()
        await asyncio.sleep(warmup)
        measured = await self._window(window, pids)
        self.saturating = False
        await asyncio.sleep(0.2)
        await self.close_all(chargers)
        return self._load_result(chargers, failed, measured)

    async def cmd_paced(self, url: str, conns: int, rate: float, warmup: float, window: float,
                        pids: dict[str, int] | None = None) -> dict[str, Any]:
        """Open loop: ``conns`` chargers send ``rate`` CALLs/s between them, on a schedule the answers do not move.

        A CALL that falls due while its charger's previous one is unanswered waits behind it (one outstanding CALL
        per charger) and its round trip counts from when it fell due.
        """
        chargers, failed = await self._open_for_load(url, conns)
        period = len(chargers) / rate
        # Phases spread evenly: a steady rate rather than random bursts, so CPU per CALL is read at the same load.
        stop = self._every(chargers, period, [period * i / len(chargers) for i in range(len(chargers))],
                           Charger.paced_tick)
        await asyncio.sleep(warmup)
        measured = await self._window(window, pids)
        stop()
        behind = sum(len(c.queue) + c.busy for c in chargers)
        await self._drain(chargers)
        await self.close_all(chargers)
        return {"offered_per_s": rate, "behind_at_end": behind, **self._load_result(chargers, failed, measured)}

    async def _open_for_load(self, url: str, conns: int) -> tuple[list[Charger], int]:
        self.target(url)
        self.reset_counters()
        chargers, failed = await self.open_many(conns, ("boot",), 30.0)
        if not chargers:
            raise RuntimeError(f"no charger could connect to {url}")
        return chargers, failed

    async def _drain(self, chargers: list[Charger]) -> None:
        """Wait (10 s at most) until the CALLs already sent or queued are answered."""
        drained = [c.run_calls((), 10.0) for c in chargers if c.busy]
        if drained:
            await asyncio.gather(*drained)

    async def _window(self, window: float, pids: dict[str, int] | None) -> dict[str, Any]:
        """Count answers, record round trips and read the CPU seconds of ``pids`` over ``window`` seconds."""
        pids = pids or {}
        cpu0, a0, t0 = self.cpu(pids), self.answered, time.perf_counter()
        self.recording = True
        await asyncio.sleep(window)
        self.recording = False
        cpu1, a1, t1 = self.cpu(pids), self.answered, time.perf_counter()
        calls = a1 - a0
        return {"calls": calls, "seconds": t1 - t0, "calls_per_s": calls / (t1 - t0),
                "cpu_seconds": {k: cpu1[k] - cpu0[k] for k in cpu1 if k in cpu0}}

    def _load_result(self, chargers: list[Charger], failed: int, measured: dict[str, Any]) -> dict[str, Any]:
        lat = sorted(self.latencies)
        return {"connections": len(chargers), "failed_connections": failed, "failures": self.failures, **measured,
                "errors": self.errors, "error_samples": self.error_samples, "unmatched": self.unmatched,
                "p50_ms": _ms(percentile(lat, 0.5)), "p99_ms": _ms(percentile(lat, 0.99))}

    def _every(self, chargers: list[Charger], period: float, phases: list[float],
               action: Callable[[Charger], None]) -> Callable[[], None]:
        """Call ``action(charger)`` every ``period`` s from its phase on, until the returned function is called."""
        loop = asyncio.get_running_loop()
        running = True

        def tick(c: Charger, at: float) -> None:
            if running and not c.lost.done():
                action(c)
                loop.call_at(at + period, tick, c, at + period)

        start = loop.time()
        for c, phase in zip(chargers, phases, strict=True):
            loop.call_at(start + phase, tick, c, start + phase)

        def stop() -> None:
            nonlocal running
            running = False

        return stop

    async def cmd_realistic(self, url: str, n: int, period: float, window: float, ramp: float | None = None,
                            tx_prob: float = 0.1, tx_ticks: int = 3,
                            pids: dict[str, int] | None = None) -> dict[str, Any]:
        self.target(url)
        self.reset_counters()
        self.tx_prob, self.tx_ticks = tx_prob, tx_ticks
        t_connect = time.perf_counter()
        chargers, failed = await self.open_many(n, ("boot", "available"), 60.0)
        connect_s = time.perf_counter() - t_connect
        if not chargers:
            raise RuntimeError(f"no charger could connect to {url}")
        stop = self._every(chargers, period, [self.rng.uniform(0, period) for _ in chargers], Charger.tick)
        await asyncio.sleep(period if ramp is None else ramp)
        self.overruns = 0
        e0 = self.errors
        measured = await self._window(window, pids)
        stop()
        await self._drain(chargers)
        dropped = sum(1 for c in chargers if c.lost.done())
        await self.close_all(chargers)
        lat = sorted(self.latencies)
        return {"chargers": len(chargers), "failed_connections": failed, "failures": self.failures,
                "busy_refusals": self.busy_refusals, "connect_seconds": connect_s,
                "dropped": dropped, **measured, "samples": len(lat),
                "p50_ms": _ms(percentile(lat, 0.5)), "p90_ms": _ms(percentile(lat, 0.9)),
                "p99_ms": _ms(percentile(lat, 0.99)), "p999_ms": _ms(percentile(lat, 0.999)),
                "max_ms": _ms(lat[-1] if lat else None), "mean_ms": _ms(sum(lat) / len(lat) if lat else None),
                "errors": self.errors - e0, "error_samples": self.error_samples, "unmatched": self.unmatched,
                "overruns": self.overruns}

    async def cmd_hold(self, url: str, n: int, timeout: float = 120.0) -> dict[str, Any]:
        self.target(url)
        t0 = time.perf_counter()
        want = n - len(self.held)
        failed = 0
        self.failures = {}
        self.busy_refusals = 0
        if want > 0:
            chargers, failed = await self.open_many(want, ("boot",), timeout)
            for c in chargers:
                self.held[c.idx] = c
        return {"held": len(self.held), "failed": failed, "failures": self.failures,
                "busy_refusals": self.busy_refusals,
                "seconds": time.perf_counter() - t0}

    async def cmd_release(self) -> dict[str, Any]:
        self.reconnect = False
        held = list(self.held.values())
        self.held.clear()
        await self.close_all(held)
        return {"released": len(held)}

    async def cmd_arm(self, timeout: float = 120.0) -> dict[str, Any]:
        self.storm = {"event": asyncio.Event(), "armed_at": time.monotonic()}
        self.busy_refusals = 0
        self.failures = {}
        self.reconnect = True
        self.reconnect_deadline = time.monotonic() + timeout
        return {"armed": len(self.held)}

    async def cmd_storm_wait(self, n: int, timeout: float = 120.0) -> dict[str, Any]:
        st = self.storm
        st["expect"] = n
        event: asyncio.Event = st["event"]
        if st.get("rebooted", 0) >= n:
            event.set()
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            pass
        self.reconnect = False
        boots = st.get("boots", [])
        # When the first 10 %, half and 90 % were back: the shape of the storm, not only its end.
        st["t_boots_at"] = {f"{q:.0%}": boots[int(q * (len(boots) - 1))] for q in (0.1, 0.5, 0.9)} if boots else {}
        return {**{k: v for k, v in st.items() if k not in ("event", "expect", "boots")},
                "busy_refusals": self.busy_refusals, "failures": self.failures}

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=1 << 20)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        commands: dict[str, Callable[..., Awaitable[dict[str, Any]]]] = {
            "saturate": self.cmd_saturate, "paced": self.cmd_paced, "realistic": self.cmd_realistic,
            "hold": self.cmd_hold, "release": self.cmd_release, "arm": self.cmd_arm, "storm_wait": self.cmd_storm_wait,
        }
        while True:
            line = await reader.readline()
            if not line:
                break
            try:
                msg = orjson.loads(line)
                op = msg.pop("op")
                if op == "quit":
                    _reply({"ok": True})
                    break
                result = await commands[op](**msg)
                _reply({"ok": True, **result})
            except Exception as exc:  # one bad command must not kill the connections held for the next one
                _reply({"ok": False, "error": f"{type(exc).__name__}: {exc}"})
        self.reconnect = False
        await self.close_all(list(self.held.values()), timeout=5.0)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000.0


def _reply(obj: dict[str, Any]) -> None:
    sys.stdout.write(orjson.dumps(obj).decode() + "\n")
    sys.stdout.flush()


def main() -> int:
    raise_nofile()
    asyncio.run(LoadGen().serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
