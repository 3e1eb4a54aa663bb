"""The translator interface: pure functions from a message and state to messages.

A translator turns one CALL from one side (charger or CSMS) into a *handler*:
a generator that yields what the gateway must do and receives the answers.

    def handle_call(self, origin, call, ctx):
        result = yield OutCall(Side.CSMS, "Heartbeat", {})   # ask the other side, get its CALLRESULT payload
        yield Notify(Side.CSMS, "NotifyEvent", {...})        # fire and forget (queued, answer only logged)
        yield Reply({...})                                   # answer the originator now and carry on (optional)
        yield Report("event_name", {...})                   # tell the operator (logged and counted, sent nowhere)
        answer = yield Defer(OutCall(Side.CSMS, ...), ref)   # durably queued for the CSMS; its answer, or None
        return {...}                                         # the originator's CALLRESULT payload

Raising ``Refuse`` answers the originator with a CALLERROR in its own
version. When the other side answers an ``OutCall`` with a CALLERROR, or does
not answer in time, ``PeerError`` is thrown into the generator at the
``yield``; uncaught, the originator gets that error respelled for its version.

Handlers do no I/O: the runtime (``gateway.session``) owns sockets, queues,
timeouts, validation and persistence. Translation state that must survive a
restart lives in ``ctx.state`` (a JSON-serialisable dict persisted in the
store); call ``ctx.save()`` after changing it.
"""

from __future__ import annotations

import enum
import itertools
import os
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol

from gateway.ocppj import Call, ErrorKind, Version


class Side(str, enum.Enum):
    CHARGER = "charger"
    CSMS = "csms"

    @property
    def other(self) -> Side:
        return Side.CSMS if self is Side.CHARGER else Side.CHARGER


# ``side.value`` without the enum descriptor call, for code that runs for every frame.
SIDE_NAMES: dict[Side, str] = {s: s.value for s in Side}


@dataclass(slots=True)
class OutCall:
    """A CALL the gateway makes to ``to``; the handler receives the CALLRESULT payload."""

    to: Side
    action: str
    payload: dict[str, Any]
    # Reuse this unique id (pass-through keeps the originator's, so its frame can go out byte for byte).
    unique_id: str | None = None
    send: bool = False  # OCPP 2.1 SEND (message type 6): no answer is expected


@dataclass(slots=True)
class Notify:
    """A CALL to ``to`` whose answer the handler does not wait for (it is logged and counted)."""

    to: Side
    action: str
    payload: dict[str, Any]


@dataclass(slots=True)
class Reply:
    """Answer the originator now with this CALLRESULT payload; the handler carries on."""

    payload: dict[str, Any]


@dataclass(slots=True)
class Report:
    """For the operator, sent to no peer: the session logs it as a warning and counts it in problems_total.

    For what a handler decided without telling either side, e.g. a message answered locally instead of
    forwarded.
    """

    event: str
    detail: dict[str, Any]


@dataclass(slots=True)
class Defer:
    """A CALL for the CSMS that must reach it exactly once and in order, whenever it can take it.

    The session stores it in the charger's offline queue (kind "translated", with ``ref``) before anything
    else happens, then sends it at once if nothing queued is ahead of it. The handler receives the CSMS's
    answer, or None when the message stays queued (something is ahead, no answer in time, a refusal to be
    retried). Before each send the session asks the translator to ``resolve`` the message and hands it the
    outcome in ``settled`` (see ``Deferring``); the handler itself learns nothing more about it.
    """

    call: OutCall
    ref: dict[str, Any]  # the translator's own reference (JSON), e.g. which transaction the message belongs to

    @property
    def to(self) -> Side:
        return self.call.to


Step = OutCall | Notify | Reply | Report | Defer
Handler = Generator[Step, dict[str, Any] | None, dict[str, Any] | None]


class Refuse(Exception):
    """Raised by a handler: answer the originator with a CALLERROR of this kind."""

    def __init__(self, kind: ErrorKind, description: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(description)
        self.kind = kind
        self.description = description
        self.details = details


class PeerError(Exception):
    """Thrown into a handler: the other side answered with a CALLERROR (or not at all)."""

    def __init__(self, code: str, description: str = "", details: dict[str, Any] | None = None) -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description
        self.details = details or {}


class PeerTimeout(PeerError):
    """Thrown into a handler: the other side did not answer within the CALL timeout."""


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


_counter = itertools.count(1)
_entropy = b""


def random_uuid() -> str:
    """A random (version 4) UUID string, as ``str(uuid.uuid4())``, from OS entropy drawn 256 ids at a time.

    Translated CALLs each need a fresh message id; ``uuid.uuid4()`` makes a
    system call and a UUID object for every one of them.
    """
    global _entropy
    if not _entropy:
        _entropy = os.urandom(4096)
    raw, _entropy = bytearray(_entropy[:16]), _entropy[16:]
    raw[6] = raw[6] & 0x0F | 0x40  # version 4
    raw[8] = raw[8] & 0x3F | 0x80  # RFC 4122 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class IdPool:
    """Numbers the store reserved ahead of need (the core cannot wait for the store to hand one out).

    Every number was committed as taken before it arrived here, so one the
    pool hands out is never handed out again, also after a restart or by
    another gateway instance; numbers left unused when a connection ends are
    simply skipped. Empty when the store could not be asked.
    """

    __slots__ = ("_runs",)

    def __init__(self, numbers: Sequence[int] = ()) -> None:
        # Runs of consecutive numbers, first handed out first: a block the store reserves is one run, so an idle
        # charger holds a ``range`` (48 bytes) where a list of its 50 numbers took about 2 KiB.
        self._runs: list[range] = []
        self.add(numbers)

    def __len__(self) -> int:
        return sum(len(run) for run in self._runs)

    def add(self, numbers: Sequence[int]) -> None:
        runs = self._runs
        for n in numbers:
            last = runs[-1] if runs else None
            if last is not None and last.stop == n:
                runs[-1] = range(last.start, n + 1)
            else:
                runs.append(range(n, n + 1))

    def take(self) -> int | None:
        runs = self._runs
        if not runs:
            return None
        run = runs[0]
        if len(run) == 1:
            del runs[0]
        else:
            runs[0] = run[1:]
        return run[0]


@dataclass
class Context:
    """What a handler may know about its charger: id, options, persisted state, clock, id source."""

    charger_id: str
    charger_version: Version
    csms_version: Version
    options: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)
    clock: Callable[[], datetime] = _utcnow
    new_uuid: Callable[[], str] = random_uuid
    dirty: bool = False
    # Gateway-assigned transaction ids (1.6 integers), reserved from the store: see ``IdPool``.
    ids: IdPool = field(default_factory=IdPool)

    def save(self) -> None:
        """Mark ``state`` changed so the runtime persists it after this step."""
        self.dirty = True

    def now_iso(self) -> str:
        """The current time as an OCPP dateTime (UTC, millisecond precision, Z)."""
        return self.clock().astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def namespace(self, name: str) -> dict[str, Any]:
        """The adapter's own corner of ``state`` (created on first use)."""
        ns: dict[str, Any] | None = self.state.get(name)
        if ns is None:
            ns = self.state[name] = {}
        return ns


class Translator(Protocol):
    """A charger-version to CSMS-version translator. Pure: no I/O, no clocks but ``ctx``'s.

    A translator whose handlers yield ``Defer`` also implements ``Deferring``.
    """

    name: str
    charger_version: Version
    csms_version: Version

    def handle_call(self, origin: Side, call: Call, ctx: Context) -> Handler:
        """The handler for a CALL (or 2.1 SEND) that ``origin`` sent to the gateway."""
        ...

    def coverage(self) -> list[CoverageRow]:
        """What this translator does with each message: the source of the conformance list."""
        ...


# ``Deferring.resolve``: the message no longer means anything to the CSMS (its transaction was given up).
DROP: dict[str, Any] = {"__drop__": True}


@dataclass(slots=True)
class Settlement:
    """What a translator makes of the CSMS's answer to a deferred message (``Deferring.settled``)."""

    keep: bool = False  # not done: keep it at the head of the queue and try again later (a refusal to retry)
    notify: list[Notify] = field(default_factory=list)  # to send after it, e.g. a status the CSMS can now place


class Deferring(Protocol):
    """The side of a translator that the offline queue's replay talks to about the messages it deferred.

    Each call gets the ``ref``, action and payload the handler gave ``Defer`` and the translator's context;
    they change ``ctx.state`` (and ``ctx.save()``) like handlers do.
    """

    def resolve(self, ref: dict[str, Any], action: str, payload: dict[str, Any], ctx: Context) -> dict[str, Any] | None:
        """The payload to send now (e.g. with the CSMS's transaction id filled in), None when it cannot go
        yet (the queue waits), or ``DROP`` when it must not go at all."""
        ...

    def settled(self, ref: dict[str, Any], action: str, result: dict[str, Any] | None, error: PeerError | None,
                ctx: Context) -> Settlement:
        """The CSMS answered the message with ``result``, or refused it with ``error``."""
        ...

    def adopt_held(self, ctx: Context) -> list[Defer]:
        """Messages an older gateway kept in ``ctx.state`` instead of deferring them, taken out of it (once)."""
        ...


class Support(str, enum.Enum):
    SUPPORTED = "supported"
    PARTIAL = "partial"
    LOCAL = "answered locally"
    NOT_SUPPORTED = "not supported"


@dataclass(frozen=True, slots=True)
class CoverageRow:
    """One conformance-list row: a message from one side and what becomes of it."""

    origin: Side
    action: str
    support: Support
    target: str = ""  # the action(s) it becomes on the other side
    notes: str = ""  # what is lost or synthesised
