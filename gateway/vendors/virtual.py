"""A virtual charger: a vendor charger speaking OCPP 2.0.1 to the gateway's own charger port.

It connects like any real charger (``ws://127.0.0.1:<port>/vendor/<id>``,
subprotocol ``ocpp2.0.1``) so routing, translation, the message log and
the metrics treat a vendor charger like every other one. It keeps the
OCPP-J rules a real charger keeps: BootNotification first (and again
after a Pending/Rejected interval), one outstanding CALL at a time,
Heartbeat at the interval the CSMS gave, every CSMS CALL answered.

Outgoing CALLs come from the charger runner (``send``); transaction events
are kept until the CSMS acknowledged them (``outbox``), retried on a
CALLERROR or a timeout, and re-sent with ``offline: true`` after a
reconnect, so a dropped connection loses no transaction event.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from gateway import ocppj, schemas
from gateway.logs import get_logger
from gateway.ocppj import Call, CallError, CallResult, ErrorKind, FrameError, Version

VERSION = Version.V201


@dataclass(slots=True)
class Answer:
    """What the charger answers a CSMS CALL with, and what it does once the answer is out."""

    payload: dict[str, Any] | None = None
    error: tuple[ErrorKind, str] | None = None
    after: Callable[[], Awaitable[None]] | None = None


CallHandler = Callable[[str, dict[str, Any]], Awaitable[Answer]]


@dataclass(slots=True)
class Outgoing:
    action: str
    payload: dict[str, Any]
    attempts: int = 0
    permanent_failure: bool = False

    @property
    def durable(self) -> bool:
        return self.action == "TransactionEvent"


class CallFailed(Exception):
    """A CALL got no CALLRESULT. ``permanent``: the CSMS refused it for what it is; retrying will not help."""

    def __init__(self, message: str, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


# CALLERRORs that say "not now" (the gateway answers these when the CSMS is down or slow) rather than "never".
_TRANSIENT_CODES = {"InternalError", "GenericError"}


class VirtualCharger:
    def __init__(
        self,
        charger_id: str,
        url: str,
        boot: Callable[[], dict[str, Any]],
        on_call: CallHandler,
        *,
        on_booted: Callable[[], Awaitable[None]] | None = None,
        on_outbox: Callable[[list[dict[str, Any]]], None] | None = None,
        call_timeout: float = 30.0,
        tx_attempts: int = 5,
        tx_attempts_transient: int = 200,
        reconnect_max: float = 30.0,
    ) -> None:
        self.charger_id = charger_id
        self.url = url
        self.boot = boot
        self.on_call = on_call
        self.on_booted = on_booted
        self.on_outbox = on_outbox
        self.call_timeout = call_timeout
        # A transaction event is retried (with backoff up to 30 s) this often before it is given up: few times
        # when the CSMS refuses it as such, many while the CSMS is merely unreachable (about 1.5 h).
        self.tx_attempts = tx_attempts
        self.tx_attempts_transient = tx_attempts_transient
        self.reconnect_max = reconnect_max
        self.log = get_logger(charger_id=charger_id, component="virtual_charger")
        self.queue: deque[Outgoing] = deque()
        self.heartbeat_interval = 300.0
        self.booted = asyncio.Event()
        self.connected = asyncio.Event()
        self.ws: ClientConnection | None = None
        self.close_reason: str | None = None
        self.replaced = False  # the gateway replaced this connection with a newer one (a native charger?)
        self.stopping = False
        self._wake = asyncio.Event()
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._call_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._main: asyncio.Task[None] | None = None
        self.connects = 0

    @staticmethod
    def gateway_url(port: int, charger_id: str) -> str:
        return f"ws://127.0.0.1:{port}/vendor/{quote(charger_id, safe='')}"

    # ---------------------------------------------------------------- public

    def start(self) -> None:
        self._main = asyncio.get_running_loop().create_task(self._run(), name=f"virtual:{self.charger_id}")

    async def stop(self, code: int = 1001, reason: str = "vendor adapter stopping", grace: float = 2.0) -> None:
        self.stopping = True
        self._wake.set()
        # A CALL already on the wire gets its answer before the socket closes (no new one starts): otherwise
        # the CSMS has the event but the outbox keeps it, and the restart sends it a second time.
        in_flight = [fut for fut in self._pending.values() if not fut.done()]
        if in_flight and self.ws is not None:
            await asyncio.wait(in_flight, timeout=grace)
        ws = self.ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close(code, reason)
        if self._main is not None:
            self._main.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._main
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def send(self, action: str, payload: dict[str, Any]) -> None:
        """Queue a CALL to the CSMS (sent in order, one at a time, once booted)."""
        self.queue.append(Outgoing(action, payload))
        self._outbox_changed()
        self._wake.set()

    def restore(self, outbox: list[dict[str, Any]]) -> None:
        """Re-queue transaction events that were not acknowledged before a restart."""
        for item in outbox:
            payload = dict(item["payload"])
            payload["offline"] = True
            self.queue.append(Outgoing(item["action"], payload))
        self._wake.set()

    def outbox(self) -> list[dict[str, Any]]:
        """The unacknowledged transaction events (persisted with the charger's state)."""
        return [{"action": o.action, "payload": o.payload} for o in self.queue if o.durable]

    async def drained(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.queue and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    # ---------------------------------------------------------------- connection

    async def _run(self) -> None:
        delay = 0.5
        while not self.stopping:
            try:
                ws = await connect(self.url, subprotocols=[VERSION.subprotocol],  # type: ignore[list-item]
                                   compression=None, open_timeout=10, ping_interval=None, proxy=None,
                                   user_agent_header="ocpp-gateway-vendor-adapter")
            except (OSError, TimeoutError, InvalidHandshake) as exc:
                self.log.warning("virtual_charger_connect_failed", error=repr(exc), retry_in=round(delay, 2))
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, self.reconnect_max)
                continue
            delay = 0.5
            self.ws = ws
            self.connects += 1
            self.connected.set()
            self.close_reason = None
            reader = asyncio.create_task(self._read(ws), name=f"virtual-read:{self.charger_id}")
            session = asyncio.create_task(self._session(), name=f"virtual-session:{self.charger_id}")
            try:
                await reader
            finally:
                session.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await session
                self.connected.clear()
                self.booted.clear()
                self.ws = None
                for fut in self._pending.values():
                    if not fut.done():
                        fut.set_exception(CallFailed("connection closed"))
                self._pending.clear()
            self.close_reason = ws.close_reason
            if "replaced" in (ws.close_reason or ""):
                self.replaced = True
                self.log.info("virtual_charger_replaced", reason=ws.close_reason)
                return
            if not self.stopping:
                self.log.warning("virtual_charger_disconnected", code=ws.close_code, reason=ws.close_reason)
                await asyncio.sleep(0.2)

    async def _session(self) -> None:
        """Boot, then send the queue and heartbeats while connected."""
        while True:
            try:
                answer = await self.call("BootNotification", self.boot())
            except CallFailed as exc:
                self.log.warning("boot_failed", error=str(exc))
                await asyncio.sleep(min(self.heartbeat_interval, 5.0))
                continue
            interval = float(answer.get("interval") or 0)
            if answer.get("status") == "Accepted":
                if interval > 0:
                    self.heartbeat_interval = interval
                break
            await asyncio.sleep(interval if interval > 0 else 10.0)
        self.booted.set()
        # Queued StatusNotifications are stale after a reconnect: the runner sends a fresh one.
        self.queue = deque(o for o in self.queue if o.durable)
        if self.connects > 1:  # these happened while the charger was away from its CSMS
            for o in self.queue:
                o.payload["offline"] = True
        if self.on_booted is not None:
            await self.on_booted()
        last_sent = time.monotonic()
        while True:
            self._wake.clear()
            if self.queue:
                item = self.queue[0]
                ok = await self._deliver(item)
                last_sent = time.monotonic()
                limit = self.tx_attempts if item.permanent_failure else self.tx_attempts_transient
                if ok or not item.durable or item.attempts >= limit:
                    if not ok:
                        self.log.error("transaction_event_dropped", attempts=item.attempts,
                                       seq_no=item.payload.get("seqNo"), event=item.payload.get("eventType"))
                    if self.queue and self.queue[0] is item:
                        self.queue.popleft()
                    self._outbox_changed()
                else:
                    await asyncio.sleep(min(2.0 ** item.attempts * 0.25, 30.0))
                continue
            idle = self.heartbeat_interval - (time.monotonic() - last_sent)
            if idle <= 0:
                with contextlib.suppress(CallFailed):
                    await self.call("Heartbeat", {})
                last_sent = time.monotonic()
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), idle)

    async def _deliver(self, item: Outgoing) -> bool:
        item.attempts += 1
        try:
            await self.call(item.action, item.payload)
        except CallFailed as exc:
            item.permanent_failure = exc.permanent
            self.log.warning("call_failed", action=item.action, attempt=item.attempts, error=str(exc))
            return False
        return True

    def _outbox_changed(self) -> None:
        if self.on_outbox is not None:
            self.on_outbox(self.outbox())

    # ---------------------------------------------------------------- CALLs to the CSMS

    async def call(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        bad = schemas.validate(VERSION, action, payload)
        if bad is not None:  # our own bug: never put an invalid frame on the wire
            raise CallFailed(f"{action} payload invalid: {bad.describe()}")
        async with self._call_lock:
            ws = self.ws
            if ws is None:
                raise CallFailed("not connected")
            if self.stopping:
                raise CallFailed("stopping")
            uid = str(uuid.uuid4())
            fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
            self._pending[uid] = fut
            try:
                await ws.send(ocppj.serialize(Call(uid, action, payload)))
                return await asyncio.wait_for(fut, self.call_timeout)
            except TimeoutError:
                raise CallFailed(f"no answer to {action} within {self.call_timeout}s") from None
            except ConnectionClosed:
                raise CallFailed("connection closed") from None
            finally:
                self._pending.pop(uid, None)

    # ---------------------------------------------------------------- frames from the CSMS

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for message in ws:
                text = message if isinstance(message, str) else message.decode("utf-8", "replace")
                await self._on_frame(ws, text)
        except ConnectionClosed:
            pass

    async def _on_frame(self, ws: ClientConnection, text: str) -> None:
        try:
            frame = ocppj.parse(text, VERSION)
        except FrameError as exc:
            if exc.unique_id != "-1":
                await self._send_error(ws, exc.unique_id, exc.kind, exc.description)
            return
        if isinstance(frame, CallResult):
            fut = self._pending.get(frame.unique_id)
            if fut is not None and not fut.done():
                fut.set_result(frame.payload)
        elif isinstance(frame, CallError):
            fut = self._pending.get(frame.unique_id)
            if fut is not None and not fut.done():
                fut.set_exception(CallFailed(f"CALLERROR {frame.code}: {frame.description}",
                                             permanent=frame.code not in _TRANSIENT_CODES))
        else:
            task = asyncio.create_task(self._answer(ws, frame), name=f"virtual-answer:{frame.action}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _answer(self, ws: ClientConnection, call: Call) -> None:
        if call.action not in schemas.actions(VERSION):
            await self._send_error(ws, call.unique_id, ErrorKind.NOT_IMPLEMENTED, f"unknown action {call.action}")
            return
        bad = schemas.validate(VERSION, call.action, call.payload)
        if bad is not None:
            await self._send_error(ws, call.unique_id, bad.kind, bad.describe())
            return
        try:
            answer = await self.on_call(call.action, call.payload)
        except Exception as exc:
            self.log.error("csms_call_failed", action=call.action, error=repr(exc))
            await self._send_error(ws, call.unique_id, ErrorKind.INTERNAL, f"{type(exc).__name__}: {exc}")
            return
        if answer.error is not None:
            await self._send_error(ws, call.unique_id, *answer.error)
        else:
            payload = answer.payload or {}
            bad = schemas.validate(VERSION, call.action, payload, response=True)
            if bad is not None:
                self.log.error("invalid_answer", action=call.action, error=bad.describe())
                await self._send_error(ws, call.unique_id, ErrorKind.INTERNAL, "the adapter produced an invalid answer")
                return
            with contextlib.suppress(ConnectionClosed):
                await ws.send(ocppj.serialize(CallResult(call.unique_id, payload)))
        if answer.after is not None:
            await answer.after()

    async def _send_error(self, ws: ClientConnection, uid: str, kind: ErrorKind, description: str) -> None:
        frame = CallError(uid, ocppj.error_code(VERSION, kind), description[:255])
        with contextlib.suppress(ConnectionClosed):
            await ws.send(ocppj.serialize(frame))
