"""The OCPP-J endpoint both simulators are built on.

It owns one WebSocket connection and is strict on purpose: every received
frame is parsed with ``gateway.ocppj`` and validated against the version's
schemas; whatever is wrong (bad JSON, unknown action, invalid payload, an
error code spelled for another version, a second CALL while one is open) is
answered as OCPP prescribes where an answer is due and *recorded* as a
violation, so a test can assert that the gateway in front of it behaved.

It also misbehaves on request (``Misbehaviour``), and can put any bytes on
the wire (``send_raw``, ``send_call``) for the gateway's bad-input tests.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import orjson
from websockets.asyncio.connection import Connection
from websockets.exceptions import ConnectionClosed

from gateway import ocppj, schemas
from gateway.ocppj import Call, CallError, CallResult, ErrorKind, MessageType, Version

log = logging.getLogger(__name__)

T = TypeVar("T")


class OcppCallError(Exception):
    """The peer answered our CALL with a CALLERROR (or 2.1 CALLRESULTERROR)."""

    def __init__(self, action: str, code: str, description: str, details: dict[str, Any] | None) -> None:
        super().__init__(f"{action}: {code}: {description}")
        self.action = action
        self.code = code
        self.description = description
        self.details = details or {}


class InvalidResponse(Exception):
    """The peer's CALLRESULT does not match the response schema of the action."""

    def __init__(self, action: str, violation: schemas.Violation, payload: dict[str, Any]) -> None:
        super().__init__(f"{action} response invalid: {violation.describe()}")
        self.action = action
        self.violation = violation
        self.payload = payload


class MalformedAnswer(Exception):
    """The peer answered our CALL with a frame that is not valid OCPP-J."""


class Reject(Exception):
    """Raised by a call handler: answer with a CALLERROR of this kind (spelled for the version)."""

    def __init__(self, kind: ErrorKind, description: str = "") -> None:
        super().__init__(description)
        self.kind = kind
        self.description = description


@dataclass(slots=True)
class Answer:
    """A handler's CALLRESULT payload, and what to do once it is on the wire."""

    payload: dict[str, Any]
    then: Callable[[], Awaitable[None]] | None = None


HandlerResult = Answer | dict[str, Any]


@dataclass(slots=True)
class SimFrame:
    """One frame as it crossed this peer's socket, parsed where possible."""

    ts: float
    direction: Literal["in", "out"]
    text: str
    message_type: str  # CALL, CALLRESULT, CALLERROR, CALLRESULTERROR, SEND or INVALID
    unique_id: str | None = None
    action: str | None = None  # for results and errors: the action of the CALL they answer
    payload: dict[str, Any] | None = None  # CALL / CALLRESULT payload; errorDetails for errors
    error_code: str | None = None
    violation: str | None = None  # why this frame broke the rules, if it did


@dataclass(slots=True)
class Violation:
    """A rule the other side broke, as seen by this peer."""

    ts: float
    charger_id: str
    version: Version
    description: str
    frame: str | None = None


MisbehaviourMode = Literal["hang", "delay", "invalid", "close", "error"]


@dataclass(slots=True)
class Misbehaviour:
    """How to (mis)answer matching incoming CALLs.

    hang: never answer; delay: answer after ``delay`` seconds; invalid: answer
    ``payload`` (default: a payload that breaks the schema); close: close the
    WebSocket (``close_code``) instead of answering; error: answer a CALLERROR
    ``error_code`` (default: the version's InternalError). ``times`` limits
    how often the rule fires (None: forever).
    """

    mode: MisbehaviourMode
    action: str | None = None  # None: any action
    delay: float = 0.0
    payload: dict[str, Any] | None = None
    error_code: str | None = None
    close_code: int = 1000
    times: int | None = None
    charger_id: str | None = None  # CSMS side: only this charger (None: all)

    def matches(self, action: str, charger_id: str) -> bool:
        if self.times is not None and self.times <= 0:
            return False
        if self.action is not None and self.action != action:
            return False
        return self.charger_id is None or self.charger_id == charger_id


@dataclass(slots=True)
class Counters:
    """Live counters a summary printer can read (shared by many peers in a fleet)."""

    frames_sent: int = 0
    frames_received: int = 0
    calls_sent: int = 0
    calls_answered: int = 0
    call_errors: int = 0  # CALLERRORs received in answer to our CALLs
    timeouts: int = 0
    violations: int = 0


class Changes:
    """Wake waiters whenever something is recorded, so tests wait on conditions, not sleeps."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait_for(self, predicate: Callable[[], T], timeout: float = 10.0) -> T:
        """Return the predicate's first truthy value; TimeoutError if none within ``timeout``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            event = self._event
            value = predicate()
            if value:
                return value
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"condition not met within {timeout}s: {predicate!r}")
            try:
                # Also re-check now and then: predicates may read state that changes without a frame.
                await asyncio.wait_for(event.wait(), min(remaining, 0.05))
            except TimeoutError:
                pass


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()  # nobody may await a raw CALL's answer: don't warn about it


def _looks_like_answer(text: str) -> bool:
    try:
        msg = orjson.loads(text)
    except orjson.JSONDecodeError:
        return False
    return isinstance(msg, list) and bool(msg) and msg[0] in (3, 4, 5)


_BAD_PAYLOAD: dict[str, Any] = {"thisFieldIsNotInAnySchema": True}
_ERROR_CODES_ALL = {code for codes in ocppj.ERROR_CODES.values() for code in codes.values()}


class Endpoint:
    """One OCPP-J connection: reads frames, answers CALLs via ``handle_call``, makes CALLs.

    Subclasses implement ``handle_call(action, payload)``; it returns the
    CALLRESULT payload (or an ``Answer``) or raises ``Reject``.
    """

    def __init__(
        self,
        charger_id: str,
        version: Version,
        *,
        frames: deque[SimFrame] | None = None,
        violations: list[Violation] | None = None,
        changes: Changes | None = None,
        counters: Counters | None = None,
        misbehaviour: list[Misbehaviour] | None = None,
        keep_frames: int | None = None,
    ) -> None:
        self.charger_id = charger_id
        self.version = version
        self.frames: deque[SimFrame] = frames if frames is not None else deque(maxlen=keep_frames)
        self.violations: list[Violation] = violations if violations is not None else []
        self.errors: list[str] = []  # our own failures (a bug in the simulator, not the peer)
        self.changes = changes or Changes()
        self.counters = counters or Counters()
        self.misbehaviour: list[Misbehaviour] = misbehaviour if misbehaviour is not None else []
        self.ws: Connection | None = None
        self._pending: dict[str, deque[tuple[str, asyncio.Future[dict[str, Any]]]]] = {}
        self._call_lock = asyncio.Lock()
        self._open_incoming: set[str] = set()
        self._abandoned: dict[str, None] = {}  # unique ids of CALLs we stopped waiting for
        self._tasks: set[asyncio.Task[Any]] = set()
        self._reader: asyncio.Task[None] | None = None
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.closed = asyncio.Event()  # set when the current connection is gone
        # Called with every frame as it is recorded (the `ocpp-gateway sim` commands print them).
        self.on_frame: Callable[[Endpoint, SimFrame], None] | None = None

    # ----------------------------------------------------------------- lifecycle

    @property
    def connected(self) -> bool:
        return self.ws is not None and self._reader is not None and not self._reader.done()

    def _attach(self, ws: Connection) -> None:
        self.ws = ws
        self.close_code = None
        self.close_reason = None
        self.closed = asyncio.Event()
        self._reader = asyncio.get_running_loop().create_task(self._read_loop(ws), name=f"ocpp-read-{self.charger_id}")

    async def wait_closed(self, timeout: float | None = None) -> None:
        """Wait until the connection's reader has stopped (the socket is closed)."""
        if self._reader is not None:
            await asyncio.wait_for(asyncio.shield(self._reader), timeout)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the WebSocket (if open) and stop background work."""
        ws = self.ws
        if ws is not None:
            await ws.close(code, reason)
        if self._reader is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._reader), 5)
            except TimeoutError:
                self._reader.cancel()
        await self._cancel_tasks()

    async def settle(self, timeout: float = 10.0) -> None:
        """Wait until background work (answers, follow-up messages) is done, e.g. before asserting."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            tasks = [t for t in self._tasks if t is not asyncio.current_task()]
            if not tasks:
                return
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"{self.charger_id}: {len(tasks)} background tasks still running")
            await asyncio.wait(tasks, timeout=remaining)

    async def _cancel_tasks(self) -> None:
        tasks = [t for t in self._tasks if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def spawn(self, coro: Awaitable[T], name: str = "") -> asyncio.Task[T]:
        """Run ``coro`` in the background, tied to this endpoint (cancelled on close, failures recorded)."""

        async def guarded() -> T:
            try:
                return await coro
            except (ConnectionClosed, ConnectionError, asyncio.CancelledError):
                raise
            except Exception as exc:
                self.errors.append(f"{name or 'task'}: {type(exc).__name__}: {exc}")
                self.changes.notify()
                raise

        task = asyncio.get_running_loop().create_task(guarded(), name=name or None)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: failures are already in self.errors

    # ----------------------------------------------------------------- recording

    def _record(self, frame: SimFrame) -> None:
        self.frames.append(frame)
        if self.on_frame is not None:
            self.on_frame(self, frame)
        if frame.direction == "out":
            self.counters.frames_sent += 1
        else:
            self.counters.frames_received += 1
        self.changes.notify()

    def _violation(self, description: str, frame: SimFrame | None = None) -> None:
        if frame is not None:
            frame.violation = description
        self.violations.append(
            Violation(time.time(), self.charger_id, self.version, description, frame.text if frame else None)
        )
        self.counters.violations += 1
        log.info("%s: violation: %s", self.charger_id, description)
        self.changes.notify()

    # ----------------------------------------------------------------- sending

    def new_unique_id(self) -> str:
        return str(uuid.uuid4())

    async def _send_frame(self, frame: ocppj.Frame, action: str | None) -> None:
        text = ocppj.serialize(frame)
        rec = SimFrame(time.time(), "out", text, ocppj.message_type_name(frame), frame.unique_id, action)
        if isinstance(frame, Call | CallResult):
            rec.payload = frame.payload
        else:
            rec.error_code = frame.code
            rec.payload = frame.details
        await self._send_text(text, rec)

    async def _send_text(self, text: str | bytes, rec: SimFrame) -> None:
        if self.ws is None:
            raise ConnectionError(f"{self.charger_id}: not connected")
        await self.ws.send(text)
        self._record(rec)

    async def send_raw(self, text: str | bytes) -> asyncio.Future[dict[str, Any]] | None:
        """Put exactly ``text`` on the wire (a bytes value goes as a binary frame).

        If the text is not an answer and has a readable unique id, an answer is expected:
        the returned future resolves with it (or fails with ``OcppCallError``).
        """
        shown = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
        rec = SimFrame(time.time(), "out", shown, "RAW")
        future: asyncio.Future[dict[str, Any]] | None = None
        try:
            msg = orjson.loads(text) if isinstance(text, str) else None
        except orjson.JSONDecodeError:
            msg = None
        if isinstance(msg, list) and len(msg) >= 2 and msg[0] not in (3, 4, 5) and isinstance(msg[1], str):
            # Anything but an answer, with a readable id, gets answered (even if only with a CALLERROR).
            rec.unique_id, rec.action = msg[1], str(msg[2]) if len(msg) > 2 else "?"
            future = asyncio.get_running_loop().create_future()
            future.add_done_callback(_retrieve)
            self._pending.setdefault(msg[1], deque()).append((rec.action, future))
        try:
            await self._send_text(text, rec)
        except BaseException:
            if future is not None and rec.unique_id is not None:
                self._forget(rec.unique_id, future)
            raise
        return future

    def send_call(
        self,
        action: str,
        payload: dict[str, Any],
        unique_id: str | None = None,
        message_type: MessageType = MessageType.CALL,
    ) -> asyncio.Task[dict[str, Any]]:
        """Send a CALL now, bypassing validation and the one-outstanding-CALL rule.

        For misbehaviour tests (invalid payloads, overlapping CALLs, duplicate
        unique ids). Frames go out in the order of the calls. Returns a task
        with the answer; for a 2.1 SEND it resolves to {} once sent.
        """
        uid = unique_id or self.new_unique_id()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[dict[str, Any]] = loop.create_future()
        future.add_done_callback(_retrieve)
        if message_type is not MessageType.SEND:
            self._pending.setdefault(uid, deque()).append((action, future))

        async def go() -> dict[str, Any]:
            try:
                await self._send_frame(Call(uid, action, payload, message_type), action)
                self.counters.calls_sent += 1
                if message_type is MessageType.SEND:
                    return {}
                return await future
            finally:
                if not future.done():
                    self._abandon(uid, future)

        task = loop.create_task(go(), name=f"call-{action}")
        task.add_done_callback(_retrieve)
        return task

    def _abandon(self, uid: str, future: asyncio.Future[dict[str, Any]]) -> None:
        # We gave up waiting (timeout, cancellation): a late answer is no protocol violation.
        self._forget(uid, future)
        future.cancel()
        self._abandoned[uid] = None
        if len(self._abandoned) > 1000:
            del self._abandoned[next(iter(self._abandoned))]

    def _forget(self, uid: str, future: asyncio.Future[dict[str, Any]]) -> None:
        queue = self._pending.get(uid)
        if queue is None:
            return
        for item in list(queue):
            if item[1] is future:
                queue.remove(item)
        if not queue:
            del self._pending[uid]

    async def call(
        self,
        action: str,
        payload: dict[str, Any],
        timeout: float | None = 30.0,
        validate: bool = True,
    ) -> dict[str, Any]:
        """Make a CALL and return the CALLRESULT payload.

        One outstanding CALL at a time (later calls queue). Raises
        ``OcppCallError`` on a CALLERROR, ``InvalidResponse`` when the answer
        breaks the schema, ``TimeoutError`` when there is no answer in time,
        ``ValueError`` when our own payload is invalid (``validate=False`` to
        send it anyway), ``ConnectionError`` / ``ConnectionClosed`` when the
        link is gone.
        """
        if validate:
            if action not in schemas.actions(self.version):
                raise ValueError(f"{action} is not an OCPP {self.version.value} action")
            bad = schemas.validate(self.version, action, payload)
            if bad is not None:
                raise ValueError(f"{action} payload invalid for OCPP {self.version.value}: {bad.describe()}")
        async with self._call_lock:
            uid = self.new_unique_id()
            answer = self.send_call(action, payload, uid)
            try:
                return await asyncio.wait_for(answer, timeout)
            except TimeoutError:
                self.counters.timeouts += 1
                raise TimeoutError(f"{self.charger_id}: no answer to {action} within {timeout}s") from None

    # ----------------------------------------------------------------- receiving

    async def _read_loop(self, ws: Connection) -> None:
        try:
            async for message in ws:
                await self._on_message(message)
        except ConnectionClosed:
            pass
        finally:
            self.close_code = ws.close_code
            self.close_reason = ws.close_reason
            for queue in self._pending.values():
                for action, future in queue:
                    if not future.done():
                        future.set_exception(ConnectionError(f"{self.charger_id}: connection closed before {action}"))
            self._pending.clear()
            self._open_incoming.clear()
            self.closed.set()
            self.on_closed()
            self.changes.notify()

    def on_closed(self) -> None:
        """Hook for subclasses: the connection is gone."""

    async def _on_message(self, message: str | bytes) -> None:
        text = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
        rec = SimFrame(time.time(), "in", text, "INVALID")
        if isinstance(message, bytes):
            self._record(rec)
            self._violation("binary frame (OCPP-J uses text frames)", rec)
            return
        try:
            frame = ocppj.parse(text, self.version)
        except ocppj.FrameError as exc:
            rec.unique_id = None if exc.unique_id == "-1" else exc.unique_id
            pending = self._take_pending(exc.unique_id) if _looks_like_answer(text) else None
            if pending is not None:
                rec.action = pending[0]
                if not pending[1].done():
                    pending[1].set_exception(MalformedAnswer(f"{pending[0]}: {exc.description}"))
            self._record(rec)
            self._violation(f"malformed frame: {exc.description}", rec)
            if not _looks_like_answer(text):
                # Answers are never answered; anything else gets the version's CALLERROR.
                await self._send_error(exc.unique_id, exc.kind, exc.description, None)
            return
        rec.message_type = ocppj.message_type_name(frame)
        rec.unique_id = frame.unique_id
        if isinstance(frame, Call):
            rec.action = frame.action
            rec.payload = frame.payload
            self._record(rec)
            self._on_call(frame, rec)
        elif isinstance(frame, CallResult):
            rec.payload = frame.payload
            self._on_result(frame, rec)
        else:
            rec.payload = frame.details
            rec.error_code = frame.code
            self._on_error(frame, rec)

    def _take_pending(self, uid: str) -> tuple[str, asyncio.Future[dict[str, Any]]] | None:
        queue = self._pending.get(uid)
        if not queue:
            return None
        item = queue.popleft()
        if not queue:
            del self._pending[uid]
        return item

    def _on_result(self, frame: CallResult, rec: SimFrame) -> None:
        pending = self._take_pending(frame.unique_id)
        if pending is None:
            self._record(rec)
            if self._abandoned.pop(frame.unique_id, 0) is not None:
                self._violation(f"CALLRESULT {frame.unique_id} answers no outstanding CALL", rec)
            return
        action, future = pending
        rec.action = action
        self._record(rec)
        self.counters.calls_answered += 1
        known = action in schemas.actions(self.version)
        bad = schemas.validate(self.version, action, frame.payload, response=True) if known else None
        if bad is not None:
            self._violation(f"{action} response invalid: {bad.describe()}", rec)
            if not future.done():
                future.set_exception(InvalidResponse(action, bad, frame.payload))
            return
        if not future.done():
            future.set_result(frame.payload)

    def _on_error(self, frame: CallError, rec: SimFrame) -> None:
        if frame.message_type is MessageType.CALLRESULTERROR:
            # 2.1: the peer found one of our CALLRESULTs unacceptable.
            self._record(rec)
            self._violation(f"peer rejected our CALLRESULT {frame.unique_id}: {frame.code} {frame.description}", rec)
            return
        pending = self._take_pending(frame.unique_id)
        rec.action = pending[0] if pending else None
        self._record(rec)
        if frame.code not in ocppj.ERROR_CODES[self.version].values():
            spelled = "another version's" if frame.code in _ERROR_CODES_ALL else "an unknown"
            self._violation(f"CALLERROR code {frame.code!r} is {spelled} code, not OCPP {self.version.value}", rec)
        if pending is None:
            if frame.unique_id != "-1" and self._abandoned.pop(frame.unique_id, 0) is not None:
                self._violation(f"CALLERROR {frame.unique_id} answers no outstanding CALL", rec)
            return
        self.counters.calls_answered += 1
        self.counters.call_errors += 1
        action, future = pending
        if not future.done():
            future.set_exception(OcppCallError(action, frame.code, frame.description, frame.details))

    def _on_call(self, frame: Call, rec: SimFrame) -> None:
        is_send = frame.message_type is MessageType.SEND
        if frame.action not in schemas.actions(self.version):
            self._violation(f"unknown action {frame.action!r} in OCPP {self.version.value}", rec)
            if not is_send:
                self.spawn(
                    self._send_error(frame.unique_id, ErrorKind.NOT_IMPLEMENTED, f"unknown action {frame.action}")
                )
            return
        bad = schemas.validate(self.version, frame.action, frame.payload)
        if bad is not None:
            self._violation(f"{frame.action} request invalid: {bad.describe()}", rec)
            if not is_send:
                self.spawn(self._send_error(frame.unique_id, bad.kind, bad.describe(), frame.action))
            return
        if is_send:
            self.spawn(self._handle_send(frame), name=f"send-{frame.action}")
            return
        if frame.unique_id in self._open_incoming:
            self._violation(f"duplicate unique id {frame.unique_id} of a CALL still being answered", rec)
        elif self._open_incoming:
            self._violation(f"{frame.action} CALL sent while another CALL is still unanswered", rec)
        self._open_incoming.add(frame.unique_id)
        self.spawn(self._answer(frame), name=f"answer-{frame.action}")

    async def _handle_send(self, frame: Call) -> None:
        await self.dispatch(frame.action, frame.payload)

    async def dispatch(self, action: str, payload: dict[str, Any]) -> HandlerResult:
        return await self.handle_call(action, payload)

    async def handle_call(self, action: str, payload: dict[str, Any]) -> HandlerResult:
        raise Reject(ErrorKind.NOT_SUPPORTED, f"{action} is not supported")

    def _rule_for(self, action: str) -> Misbehaviour | None:
        for rule in self.misbehaviour:
            if rule.matches(action, self.charger_id):
                if rule.times is not None:
                    rule.times -= 1
                return rule
        return None

    async def _answer(self, call: Call) -> None:
        uid = call.unique_id
        try:
            rule = self._rule_for(call.action)
            if rule is not None:
                if rule.mode == "hang":
                    # The caller will time out and move on: its next CALL is no overlap.
                    self._open_incoming.discard(uid)
                    return
                if rule.mode == "close":
                    if self.ws is not None:
                        await self.ws.close(rule.close_code, f"misbehaving on {call.action}")
                    return
                if rule.mode == "delay":
                    await asyncio.sleep(rule.delay)
                elif rule.mode == "error":
                    code = rule.error_code or ocppj.error_code(self.version, ErrorKind.INTERNAL)
                    self._open_incoming.discard(uid)
                    await self._send_frame(CallError(uid, code, "misbehaving on purpose"), call.action)
                    return
                elif rule.mode == "invalid":
                    self._open_incoming.discard(uid)
                    payload = rule.payload if rule.payload is not None else _BAD_PAYLOAD
                    await self._send_frame(CallResult(uid, payload), call.action)
                    return
            try:
                result = await self.dispatch(call.action, call.payload)
            except Reject as exc:
                self._open_incoming.discard(uid)
                await self._send_error(uid, exc.kind, exc.description, call.action)
                return
            except (ConnectionClosed, ConnectionError, asyncio.CancelledError):
                raise
            except Exception as exc:
                log.exception("%s: handler for %s failed", self.charger_id, call.action)
                self.errors.append(f"handler {call.action}: {type(exc).__name__}: {exc}")
                self._open_incoming.discard(uid)
                await self._send_error(uid, ErrorKind.INTERNAL, f"{type(exc).__name__}: {exc}", call.action)
                return
            answer = result if isinstance(result, Answer) else Answer(result)
            bad = schemas.validate(self.version, call.action, answer.payload, response=True)
            if bad is not None:
                # Our own bug: never put an invalid answer on the wire by accident.
                self.errors.append(f"our {call.action} answer is invalid: {bad.describe()}")
                self._open_incoming.discard(uid)
                await self._send_error(uid, ErrorKind.INTERNAL, "simulator produced an invalid answer", call.action)
                return
            self._open_incoming.discard(uid)
            await self._send_frame(CallResult(uid, answer.payload), call.action)
            if answer.then is not None:
                self.spawn(answer.then(), name=f"after-{call.action}")
        except (ConnectionClosed, ConnectionError):
            pass
        finally:
            self._open_incoming.discard(uid)

    async def _send_error(self, uid: str, kind: ErrorKind, description: str, action: str | None = None) -> None:
        frame = CallError(uid, ocppj.error_code(self.version, kind), description[:255])
        try:
            await self._send_frame(frame, action)
        except (ConnectionClosed, ConnectionError):
            pass

    # ----------------------------------------------------------------- queries

    def frames_of(self, action: str, message_type: str | None = None, direction: str | None = None) -> list[SimFrame]:
        """Recorded frames of one action, optionally only one message type / direction."""
        return [
            f
            for f in list(self.frames)
            if f.action == action
            and (message_type is None or f.message_type == message_type)
            and (direction is None or f.direction == direction)
        ]

    def misbehave(self, mode: MisbehaviourMode, action: str | None = None, **options: Any) -> Misbehaviour:
        """Add a misbehaviour rule for incoming CALLs (see ``Misbehaviour``); returns it."""
        rule = Misbehaviour(mode, action, **options)
        self.misbehaviour.append(rule)
        return rule
