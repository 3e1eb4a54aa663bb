"""The charger session: sans-I/O protocol logic between one charger and its CSMS.

``ChargerSession`` takes events (a frame received from a side, a link going up
or down, a timer firing) and returns actions (send this text to that side,
log this frame, start or cancel a timer, persist the translation state, count
this). A thin asyncio runner (``gateway.connection``) carries the actions out.
Nothing here touches a socket, a clock (time comes in with each event) or the
store, so every rule below is testable frame-in, frames-out.

Rules kept here:
- every received frame is validated against its version's schema; an invalid
  CALL is answered with a CALLERROR in the sender's version and not forwarded;
- at most one outstanding CALL per direction: calls to a side wait in that
  side's queue until the previous one is answered (or times out);
- a CALL that the other side does not answer within ``call_timeout`` (counted
  from when it was queued, so a CSMS that is down counts too) is answered with
  a CALLERROR in the originator's version;
- a CALLRESULT carries no action: the pending request per side is kept as
  explicit state and matched by unique id;
- store-and-forward (``limits.offline``, see ``gateway.offline``): while the
  CSMS link is down, or a transaction CALL has waited ``answer_after``
  seconds, the gateway answers the charger itself and queues the CALL
  (``Enqueue``); when the link returns the queue is replayed in order through
  the translator, before newer charger traffic, and each replayed CALL the
  CSMS answered is ``Settle``d;
- one queue: a translator's own messages that must reach the CSMS exactly
  once (``Defer``: a 2.0.1 station's 1.6 StartTransaction, MeterValues,
  StopTransaction) are items of the same queue, of kind "translated", sent
  at once when nothing is queued ahead of them, replayed otherwise; the
  replay asks the translator to ``resolve`` each before it goes and tells it
  how it was ``settled``; the replay is retried every ``retry_interval``
  while the CSMS does not answer and the charger is quiet;
- durable before answered: ``SaveState``, ``Enqueue`` and ``Settle`` are
  committed by the runner before any action after them is carried out, so no
  answer that depends on state reaches a peer before that state is stored.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import re
from collections import deque
from collections.abc import Container, Generator
from dataclasses import dataclass, field
from typing import Any

from adapters.base import (
    DROP,
    SIDE_NAMES,
    Context,
    Defer,
    Handler,
    Notify,
    OutCall,
    PeerError,
    PeerTimeout,
    Refuse,
    Reply,
    Report,
    Settlement,
    Side,
    Step,
    Translator,
)
from gateway import ocppj, schemas
from gateway.ocppj import Call, CallError, CallResult, ErrorKind, FrameError, MessageType, Version
from gateway.offline import (
    ANSWERED_ACTIONS,
    CHARGER_KIND,
    QUEUED_ACTIONS,
    TIMED_ACTIONS,
    TRANSACTION_ACTIONS,
    TRANSLATED_KIND,
    NoLocalAnswer,
    OfflineBook,
    OfflinePolicy,
    Queued,
    coalesce_key,
    local_answer,
    status_of,
    token_of,
)
from gateway.records import FrameRecord
from gateway.repair import TRANSLATION_FIXES, RepairRule, repair

# ---------------------------------------------------------------- actions


@dataclass(slots=True)
class Send:
    """Send ``text`` to ``to``."""

    to: Side
    text: str


@dataclass(slots=True)
class StartTimer:
    """Call ``ChargerSession.timer_fired(key, now)`` after ``delay`` seconds."""

    key: str
    delay: float


@dataclass(slots=True)
class CancelTimer:
    key: str


@dataclass(slots=True)
class SaveState:
    """Persist the translation state (a JSON-serialisable dict).

    Durable: the runner commits it, with the log records before it, before carrying out any later action.
    """

    state: dict[str, Any]


@dataclass(slots=True)
class Enqueue:
    """Keep ``item`` for the CSMS (store-and-forward). Durable like ``SaveState``."""

    item: Queued


@dataclass(slots=True)
class Settle:
    """Queued message ``seq`` is done: answered by the CSMS, superseded or dropped. Durable like ``SaveState``."""

    seq: int
    reason: str


@dataclass(slots=True)
class OfflineEvent:
    """For the metrics: the gateway ``answered`` a charger itself, ``replayed`` a queued message, the CSMS's
    verdict ``differs`` from the local one, or a queued message was ``dropped`` (queue full)."""

    kind: str
    action: str
    unique_id: str = ""  # the charger CALL answered (kind ``answered``)


@dataclass(slots=True)
class ReplayTurn:
    """Replaying the offline queue needs one of the estate's shared replay slots (``take``), or gives it back.

    After ``take`` the session waits for ``replay_turn_granted``; it gives the turn back when its replay stops
    (queue empty, link lost, CSMS silent) or the charger goes, so a returning CSMS sees at most
    ``offline.replay_concurrency`` chargers replaying at once.
    """

    take: bool


@dataclass(slots=True)
class NeedIds:
    """Reserved transaction ids run low: reserve ``count`` more from the store and ``add_ids`` them."""

    count: int


@dataclass(slots=True)
class ValidationFailed:
    """A frame broke its schema (or the OCPP-J framing): log and count it."""

    side: Side
    version: Version
    action: str | None
    path: str
    message: str
    outcome: str = "refused"  # refused, repaired, forwarded (observe), or the translation's own fault


@dataclass(slots=True)
class RoundTrip:
    """An originator's CALL was answered: ``seconds`` from its arrival to its answer."""

    origin: Side
    action: str
    seconds: float
    outcome: str  # "result" or "error"


@dataclass(slots=True)
class Disconnect:
    """Close the connection to ``side`` with WebSocket close ``code`` and ``reason``: it will not behave."""

    side: Side
    code: int
    reason: str


@dataclass(slots=True)
class Problem:
    """Something an operator should see in the service log (a refused or dropped message, a bug)."""

    event: str
    detail: dict[str, Any]


Action = (Send | FrameRecord | StartTimer | CancelTimer | SaveState | ValidationFailed | RoundTrip | Problem
          | Disconnect | Enqueue | Settle | OfflineEvent | NeedIds | ReplayTurn)
# The actions the runner must commit before it carries out anything after them.
DURABLE = (SaveState, Enqueue, Settle)


# ---------------------------------------------------------------- internal state


@dataclass(slots=True)
class _Exchange:
    """One originator CALL being handled: its handler and where it stands."""

    origin: Side
    call: Call
    started: float
    handler: Any  # the translator's generator
    replied: bool = False
    lenient: bool = False  # observe policy: what it produces is forwarded even if invalid
    waiting_on: _Outgoing | None = None
    offline_item: Queued | None = None  # answered locally while it runs: settled if the CSMS answers it
    offline_timer: str = ""  # the answer_after timer
    deferred: Queued | None = None  # the translated item whose answer the handler waits for
    translated: list[Queued] | None = None  # what a charger CALL's translation deferred (see ``_pass_verdict``)


@dataclass(slots=True)
class _Outgoing:
    """A CALL the gateway sends to a side, queued or in flight."""

    to: Side
    unique_id: str
    action: str
    text: str
    exchange: _Exchange | None  # None for Notify (answer only logged)
    no_answer: bool = False  # a 2.1 SEND
    in_flight: bool = False
    timer_key: str = ""


class _Waiting:
    """CALLs a side sent while one of its own is still being handled, oldest first.

    Every step is O(1), whatever a careless charger piles up: a deque for the
    order, and a count per messageId for the duplicate check (a 2.1 SEND may
    reuse an id, so it is a count, not a set).
    """

    __slots__ = ("calls", "ids")

    def __init__(self) -> None:
        self.calls: deque[tuple[Call, bool]] = deque()
        self.ids: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.calls)

    def push(self, call: Call, lenient: bool) -> None:
        self.calls.append((call, lenient))
        self.ids[call.unique_id] = self.ids.get(call.unique_id, 0) + 1

    def pop(self) -> tuple[Call, bool]:
        call, lenient = self.calls.popleft()
        left = self.ids[call.unique_id] - 1
        if left:
            self.ids[call.unique_id] = left
        else:
            del self.ids[call.unique_id]
        return call, lenient


@dataclass(slots=True)
class _SideState:
    version: Version
    up: bool = False
    # Lists, not deques: they hold one or two items, and an empty deque costs ~600 bytes per idle charger.
    queue: list[_Outgoing] = field(default_factory=list)
    in_flight: _Outgoing | None = None
    # Calls this side sent us, waiting for the one before them to be answered (None while there are none).
    incoming: _Waiting | None = None
    # CALLs refused in a row because ``incoming`` was full; reset when one is accepted again.
    overflowed: int = 0
    current: _Exchange | None = None
    draining: bool = False
    version_name: str = field(init=False, default="")  # version.value, read for every logged frame

    def __post_init__(self) -> None:
        self.version_name = self.version.value  # an enum's .value is a descriptor call each time


# The timer that tries the replay again; CALL timers are "<side>:<id>:<seq>", so never this.
RETRY_TIMER = "replay"
# The replay of the offline queue: a charger-side exchange that answers nobody.
_REPLAY_CALL = Call("", "(replay)", {})
# An enum's .name is a descriptor call; this is read for every frame.
_TYPE_NAMES = {m: m.name for m in MessageType}
OFFLINE_TIMER_PREFIX = "offline:"
# Where a translated item keeps the local verdict the charger got, for the replay to compare (``_pass_verdict``).
VERDICT_KEY = "local_verdict"
# Transaction ids reserved from the store: ask for a block of IDS_BLOCK when fewer than IDS_LOW are left.
IDS_BLOCK = 50
IDS_LOW = 10
# Where a session stands with the estate's replay slots (see ``ReplayTurn``).
_NO_TURN, _TURN_WANTED, _TURN_HELD = 0, 1, 2


@functools.cache
def _peer_names(csms_peer: str) -> dict[Side, str]:
    """How frames and errors name each side: one read-only table per CSMS name, shared by its sessions."""
    return {Side.CHARGER: "charger", Side.CSMS: csms_peer}


# Every session's queue until it queues something: an empty deque is 624 bytes, and most chargers never queue.
_NOTHING_QUEUED: deque[Any] = deque(maxlen=0)


@dataclass(slots=True)
class _Settled:
    """A step of the replay handler: ``item`` is done, with the translated answer or the error it met."""

    item: Queued
    result: dict[str, Any] | None
    error: BaseException | None


@dataclass(slots=True)
class _SendQueued:
    """A step of the replay handler: send translated ``item`` now, as its translator resolves it."""

    item: Queued

# Characters of a refused oversized frame kept in the message log (enough to see what it was).
OVERSIZED_HEAD_CHARS = 4096

_UID_RE = re.compile(r'^\s*\[\s*\d+\s*,\s*"([^"]{1,36})"')


STRICT, REPAIR, OBSERVE = "strict", "repair", "observe"


@dataclass(frozen=True, slots=True)
class SessionLimits:
    call_timeout: float = 30.0
    max_frame_bytes: int = 65536
    # How often the replay of the offline queue is tried again while the CSMS does not answer and the
    # charger sends nothing (config ``held_retry_interval``).
    retry_interval: float = 30.0
    # Validation policy for what the charger sends: strict (refuse), repair (fix known quirks, then
    # strict), observe (forward as is). ``model_validation`` picks one by the model the charger
    # reports at boot, unless ``validation_fixed`` (set per charger in the config).
    validation: str = STRICT
    validation_fixed: bool = False
    model_validation: tuple[tuple[str, str], ...] = ()
    repair_rules: tuple[RepairRule, ...] = ()
    # A side that sends CALLs without waiting for answers: this many wait behind the one in progress,
    # further ones are refused with a CALLERROR, and after ``close_after_refused`` refusals in a row
    # the charger's connection is closed (a CSMS only gets the CALLERRORs).
    max_waiting_calls: int = 100
    close_after_refused: int = 1000
    # Store-and-forward while the CSMS is away (None: CALLERRORs as before, ``offline.mode: reject``).
    offline: OfflinePolicy | None = None


class ChargerSession:
    """The protocol state of one charger and its upstream CSMS link."""

    # One per idle charger and leg: slots keep it to its fields, where an attribute set outside __init__ once
    # turned its attributes into a 1.6 KiB dict.
    __slots__ = ("_by_key", "_closed", "_csms_lost", "_disconnecting", "_ids_wanted", "_last_result",
                 "_offline_timers", "_peer_names", "_queue", "_queue_live", "_received", "_replay_turn", "_replaying",
                 "_retry_armed", "_sending", "_seq", "_seq_floor", "_sides", "_stalled", "_timer_owner",
                 "_translated_live", "book", "charger_id", "ctx", "gateway_calls", "limits", "offline", "policy",
                 "translator")

    def __init__(
        self,
        charger_id: str,
        translator: Translator,
        ctx: Context,
        limits: SessionLimits = SessionLimits(),
        csms_peer: str = "csms",
        queue_numbers: dict[str, Any] | None = None,  # shared with the charger's other legs (``OfflineBook``)
    ) -> None:
        self.charger_id = charger_id
        self.translator = translator
        self.ctx = ctx
        self.limits = limits
        self._sides = {
            Side.CHARGER: _SideState(translator.charger_version, up=True),
            Side.CSMS: _SideState(translator.csms_version),
        }
        self._peer_names = _peer_names(csms_peer)
        self._seq = 0
        self._closed = False
        self._disconnecting = False  # the charger is being closed for flooding: its frames are ignored
        self._timer_owner: dict[str, _Outgoing] = {}
        self._retry_armed = False
        self.policy = limits.validation
        self.offline = limits.offline if limits.offline is not None and limits.offline.answers else None
        self.book = OfflineBook(ctx, queue_numbers)
        # Store-and-forward's queue: the shared empty one until something is queued (see ``_queued``).
        self._queue: deque[Queued] = _NOTHING_QUEUED
        self._queue_live = 0  # queued items not yet settled
        self._translated_live = 0  # of which of kind "translated" (``Defer``)
        # The translated item a live exchange is sending this moment: a message on its way, not a backlog.
        self._sending: Queued | None = None
        self._stalled = False  # a queued message went unanswered: the replay waits for its timer or the link
        self._replaying: Queued | None = None  # the charger item the replay has handed to the translator
        self._by_key: dict[str, Queued] = {}
        self._seq_floor = 1
        self._csms_lost = False  # the CSMS link went down (or never came up in answer_after): answer at once
        # Ids of the CALLs the gateway makes up as the charger (an introduction's boot and statuses): the CSMS's
        # own answer is what they are for, so they are never answered locally (the runner's leg fills it).
        self.gateway_calls: Container[str] = ()
        self._offline_timers: dict[str, _Exchange] = {}
        self._ids_wanted = False
        self._replay_turn = _NO_TURN  # whether this session waits for, or holds, a shared replay slot
        self._last_result: tuple[dict[str, Any], str] | None = None  # the CALLRESULT being handled: payload, text
        self._received: tuple[dict[str, Any], str] | None = None  # the CALL being received: its payload and text
        model = ctx.state.get("charger", {}).get("model")
        if model:
            self._apply_model_policy(model)

    # ------------------------------------------------------------ events

    def receive(self, side: Side, text: str, now: float, parsed: ocppj.Frame | None = None) -> list[Action]:
        """A frame arrived from ``side`` (``parsed``: ``text`` already parsed by the caller in ``side``'s version)."""
        out: list[Action] = []
        if self._disconnecting and side is Side.CHARGER:
            return out
        st = self._sides[side]
        if len(text) > self.limits.max_frame_bytes:
            self._refuse_oversized(out, side, text, now)
            return out
        try:
            frame = ocppj.parse(text, st.version) if parsed is None else parsed
        except FrameError as exc:
            out.append(self._record(side, "in", now, text, "INVALID", None, exc.unique_id, note=exc.description))
            out.append(ValidationFailed(side, st.version, None, "$", exc.description))
            if not (st.version is Version.V21 and _looks_like_send(text)):  # a SEND is never answered
                self._send_error(out, side, exc.unique_id, exc.kind, exc.description, now)
            return out
        action: str | None
        if isinstance(frame, Call):
            action = frame.action
            out.append(self._record(side, "in", now, text, _TYPE_NAMES[frame.message_type], action, frame.unique_id))
            self._received = (frame.payload, text)
            try:
                self._on_call(out, side, frame, text, now)
            finally:
                self._received = None
        elif isinstance(frame, CallResult):
            pending = st.in_flight
            action = pending.action if pending and pending.unique_id == frame.unique_id else None
            out.append(self._record(side, "in", now, text, "CALLRESULT", action, frame.unique_id))
            self._on_result(out, side, frame, text, now)
        else:
            pending = st.in_flight
            action = pending.action if pending and pending.unique_id == frame.unique_id else None
            mtype = _TYPE_NAMES[frame.message_type]
            out.append(self._record(side, "in", now, text, mtype, action, frame.unique_id, frame.code))
            self._on_error(out, side, frame, now)
        return out

    def _refuse_oversized(self, out: list[Action], side: Side, text: str, now: float) -> None:
        """Answer a frame over ``max_frame_bytes`` and log only its size, digest and head.

        Nothing returned refers to ``text``: a charger sending megabytes that
        are refused anyway must not fill the message log or keep memory.
        """
        st = self._sides[side]
        m = _UID_RE.match(text[:80])
        uid = m.group(1) if m else "-1"
        data = text.encode("utf-8", "surrogatepass")
        size = len(data)
        digest = hashlib.sha256(data).hexdigest()
        del data
        head = text[:OVERSIZED_HEAD_CHARS]  # a copy: the frame's own text is not kept
        kept = (f"{head} ...[truncated by the gateway: {size} bytes in all, sha256 {digest}]")
        desc = f"frame of {size} bytes exceeds the gateway's limit of {self.limits.max_frame_bytes}"
        out.append(self._record(side, "in", now, kept, "INVALID", None, uid,
                                note=f"oversized frame refused: {size} bytes, sha256 {digest}, "
                                     f"only the first {len(head)} characters are logged"))
        out.append(ValidationFailed(side, st.version, None, "$", desc))
        out.append(Problem("oversized_frame", {"from": side.value, "bytes": size, "sha256": digest,
                                               "unique_id": uid}))
        if text.lstrip()[:3].replace(" ", "").startswith("[2"):
            self._send_error(out, side, uid, ErrorKind.FORMAT, desc, now)

    def link_up(self, side: Side, now: float) -> list[Action]:
        """The connection to ``side`` is (again) open: send what waited for it."""
        out: list[Action] = []
        self._sides[side].up = True
        self._pump(out, side, now)
        if side is Side.CSMS:
            self._csms_lost = False
            self._stalled = False
            self._run_replay(out, now)
        return out

    def link_down(self, side: Side, now: float) -> list[Action]:
        """The connection to ``side`` is lost: the CALL in flight there will not be answered."""
        out: list[Action] = []
        st = self._sides[side]
        st.up = False
        if side is Side.CSMS:
            self._csms_lost = True
        pending = st.in_flight
        if pending is not None:
            st.in_flight = None
            out.append(CancelTimer(pending.timer_key))
            self._timer_owner.pop(pending.timer_key, None)
            if pending.exchange is not None:
                # No answer will come: to the translator that is a timeout (keep and retry), not a refusal.
                err = PeerTimeout(
                    ocppj.error_code(st.version, ErrorKind.INTERNAL),
                    f"connection to the {self._peer_names[side]} was lost before it answered {pending.action}",
                )
                self._advance(out, pending.exchange, now, throw=err)
        if side is Side.CSMS:
            self._answer_stranded(out, now)
        return out

    def _answer_stranded(self, out: list[Action], now: float) -> None:
        """The CSMS link is down (or could not be opened): a charger CALL whose request waits for it is answered
        locally now, not after ``call_timeout`` (a charger booting while its CSMS is away).

        A BootNotification the CSMS never accepted before would be told Pending, which idles the charger for a
        whole retry interval: it waits ``answer_after`` instead, in case the CSMS is back by then.
        """
        offline = self.offline
        if offline is None:
            return
        charger = self._sides[Side.CHARGER].current
        for pending in self._sides[Side.CSMS].queue:
            ex = pending.exchange
            if ex is charger and ex is not None and not ex.replied and self._answerable(ex.call):
                if ex.call.action == "BootNotification" and self.book.boot_interval() is None:
                    if not ex.offline_timer:
                        self._arm_answer_after(out, ex, offline)
                else:
                    self._answer_offline(out, ex.call, now, ex)
                return

    def timer_fired(self, key: str, now: float) -> list[Action]:
        """A CALL's deadline passed (or the replay's retry timer fired)."""
        out: list[Action] = []
        if key == RETRY_TIMER:
            self._retry_armed = False
            self._stalled = False
            self._run_replay(out, now)
            return out
        if key.startswith(OFFLINE_TIMER_PREFIX):
            ex = self._offline_timers.pop(key, None)
            if ex is not None:
                self._offline_timeout(out, ex, now)
            return out
        pending = self._timer_owner.pop(key, None)
        if pending is None:
            return out
        st = self._sides[pending.to]
        if st.in_flight is pending:
            st.in_flight = None
        else:
            try:
                st.queue.remove(pending)
            except ValueError:
                pass
        out.append(
            Problem(
                "call_timeout",
                {"to": pending.to.value, "action": pending.action, "unique_id": pending.unique_id,
                 "sent": pending.in_flight, "timeout": self.limits.call_timeout},
            )
        )
        if pending.exchange is not None:
            peer, limit = self._peer_names[pending.to], f"{self.limits.call_timeout:g} s"
            err = PeerTimeout(
                ocppj.error_code(st.version, ErrorKind.INTERNAL),
                f"the {peer} did not answer {pending.action} within {limit}" if pending.in_flight else
                f"the {peer} could not be reached within {limit} to send it {pending.action}",
            )
            self._advance(out, pending.exchange, now, throw=err)
        self._pump(out, pending.to, now)
        return out

    def close(self, now: float) -> list[Action]:
        """The charger is gone: CALLs waiting on it are answered with a CALLERROR, every timer is cancelled."""
        out: list[Action] = []
        self._closed = True
        st = self._sides[Side.CHARGER]
        st.up = False
        for _ in range(1000):  # failing one exchange may start a queued one that also needs the charger
            items = ([st.in_flight] if st.in_flight is not None else []) + list(st.queue)
            if not items:
                break
            st.in_flight = None
            st.queue.clear()
            for item in items:
                self._timer_owner.pop(item.timer_key, None)
                out.append(CancelTimer(item.timer_key))
                if item.exchange is not None:
                    err = PeerError(
                        ocppj.error_code(st.version, ErrorKind.INTERNAL),
                        f"the charger disconnected before it answered {item.action}",
                    )
                    self._advance(out, item.exchange, now, throw=err)
        out.extend(CancelTimer(k) for k in self._timer_owner)
        self._timer_owner.clear()
        if self._retry_armed:
            self._retry_armed = False
            out.append(CancelTimer(RETRY_TIMER))
        self._give_back_turn(out)
        return out

    # ------------------------------------------------------------ calls

    def _on_call(self, out: list[Action], side: Side, call: Call, text: str, now: float) -> None:
        st = self._sides[side]
        version = st.version
        if call.action not in schemas.actions(version):
            if call.message_type is MessageType.CALL:
                self._send_error(
                    out, side, call.unique_id, ErrorKind.NOT_IMPLEMENTED,
                    f"{call.action} is not an OCPP {version.value} action", now,
                )
            out.append(ValidationFailed(side, version, call.action, "$", "unknown action"))
            return
        lenient = False
        violation = schemas.validate(version, call.action, call.payload)
        if violation is not None:
            fixed = self._apply_policy(out, side, version, call.action, call.payload, violation, call.unique_id,
                                       "CALL", now)
            if fixed is None:
                if call.message_type is MessageType.CALL:
                    self._send_error(out, side, call.unique_id, violation.kind, violation.describe(), now,
                                     details={"path": violation.path, "rule": violation.rule})
                return
            lenient = fixed is call.payload
            call = Call(call.unique_id, call.action, fixed, call.message_type)
        if side is Side.CHARGER:
            if call.action == "BootNotification":
                self._note_model(out, call.payload)
            if self._answers_now(call):
                self._answer_offline(out, call, now, None)
                return
        waiting = st.incoming
        if st.current is None and not waiting:  # the usual case: nothing in progress from this side
            st.overflowed = 0
            self._start_exchange(out, side, call, now, lenient)
            return
        current = st.current
        uid = call.unique_id
        busy = (waiting is not None and uid in waiting.ids) or (
            current is not None and current.call is not _REPLAY_CALL and current.call.unique_id == uid)
        if busy and call.message_type is MessageType.CALL:
            self._send_error(
                out, side, uid, ErrorKind.RPC_FRAMEWORK,
                f"messageId {uid} is already in use by a CALL that is not answered yet", now,
            )
            return
        if current is not None:
            # The sender broke the one-outstanding-CALL rule, or the replay has the turn: queue, don't interleave.
            if waiting is None:
                waiting = st.incoming = _Waiting()
            elif len(waiting) >= self.limits.max_waiting_calls:
                self._overflow(out, side, call, now)
                return
            st.overflowed = 0
            waiting.push(call, lenient)
            return
        st.overflowed = 0
        self._start_exchange(out, side, call, now, lenient)

    def _overflow(self, out: list[Action], side: Side, call: Call, now: float) -> None:
        """A CALL arrived while ``max_waiting_calls`` already wait: refuse it, and end a flood from the charger."""
        st = self._sides[side]
        st.overflowed += 1
        limits = self.limits
        if st.overflowed == 1:  # once per flood, not per frame
            out.append(Problem("call_queue_full", {"from": side.value, "waiting": limits.max_waiting_calls,
                                                   "action": call.action, "unique_id": call.unique_id}))
        if side is Side.CHARGER and st.overflowed >= limits.close_after_refused:
            self._disconnecting = True
            reason = (f"{st.overflowed} CALLs refused in a row: more than {limits.max_waiting_calls} "
                      "sent without waiting for answers")
            out.append(Problem("charger_flood_closed", {"refused": st.overflowed,
                                                        "waiting": limits.max_waiting_calls}))
            out.append(Disconnect(Side.CHARGER, 1008, reason))
            return
        if call.message_type is MessageType.CALL:
            self._send_error(
                out, side, call.unique_id, ErrorKind.RPC_FRAMEWORK,
                f"{limits.max_waiting_calls} CALLs already wait behind the one in progress; OCPP-J allows one "
                "outstanding CALL: wait for each answer before sending the next", now, action=call.action,
            )

    def _start_exchange(self, out: list[Action], side: Side, call: Call, now: float, lenient: bool = False) -> None:
        timed = False
        if side is Side.CHARGER:
            if self._answers_now(call):
                self._answer_offline(out, call, now, None)
                return
            call = self._alias_in(call)
            # Only transaction CALLs stop waiting early: a link still connecting (bounded connect slots in a
            # reconnect storm) is not a CSMS that is down, and a BootNotification should reach it.
            timed = (self.offline is not None and call.message_type is MessageType.CALL
                     and call.action in TIMED_ACTIONS)
        try:
            handler = self.translator.handle_call(side, call, self.ctx)
        except Refuse as exc:
            self._send_error(out, side, call.unique_id, exc.kind, exc.description, now, exc.details)
            return
        except Exception as exc:  # a translator bug must not take the connection down
            out.append(Problem("translator_error", {"action": call.action, "error": repr(exc)}))
            self._send_error(out, side, call.unique_id, ErrorKind.INTERNAL,
                             f"the gateway failed to translate {call.action}", now)
            return
        ex = _Exchange(side, call, now, handler, lenient=lenient)
        self._sides[side].current = ex
        if timed:
            assert self.offline is not None
            self._arm_answer_after(out, ex, self.offline)
        self._advance(out, ex, now)

    def _arm_answer_after(self, out: list[Action], ex: _Exchange, offline: OfflinePolicy) -> None:
        """The charger gets a local answer if the CSMS has not given one within ``answer_after``."""
        ex.offline_timer = f"{OFFLINE_TIMER_PREFIX}{self._new_seq()}"
        self._offline_timers[ex.offline_timer] = ex
        out.append(StartTimer(ex.offline_timer, offline.answer_after))

    def _advance(
        self, out: list[Action], ex: _Exchange, now: float,
        value: dict[str, Any] | None = None, throw: BaseException | None = None,
    ) -> None:
        """Run the exchange's handler until it waits for an answer or finishes."""
        ex.waiting_on = None
        if ex.deferred is not None:
            value, throw = self._deferred_answered(out, ex, value, throw, now)
        while True:
            try:
                step = ex.handler.throw(throw) if throw is not None else ex.handler.send(value)
            except StopIteration as stop:
                if self.offline is not None and ex.offline_item is None and ex.origin is Side.CHARGER:
                    self._learn(ex.call, stop.value)
                self._save_if_dirty(out)
                if not ex.replied and ex.call.message_type is MessageType.CALL:
                    if stop.value is None:
                        self._fail(out, ex, ErrorKind.INTERNAL, f"no answer was produced for {ex.call.action}", now)
                    else:
                        self._reply(out, ex, stop.value, now)
                self._finish(out, ex, now, stop.value)
                return
            except Refuse as exc:
                self._save_if_dirty(out)
                self._fail(out, ex, exc.kind, exc.description, now, exc.details)
                self._finish(out, ex, now, None, exc)
                return
            except PeerError as exc:
                self._save_if_dirty(out)
                self._forward_peer_error(out, ex, exc, now)
                self._finish(out, ex, now, None, exc)
                return
            except Exception as exc:  # a translator bug must not take the connection down
                self._save_if_dirty(out)
                out.append(Problem("translator_error", {"action": ex.call.action, "error": repr(exc)}))
                self._fail(out, ex, ErrorKind.INTERNAL, f"the gateway failed to translate {ex.call.action}", now)
                self._finish(out, ex, now, None, exc)
                return
            throw = None
            value = None
            self._save_if_dirty(out)
            if isinstance(step, OutCall):
                problem = self._enqueue(out, step.to, step.action, step.payload, ex, now, step.unique_id,
                                        no_answer=step.send, origin_call=ex.call)
                if problem is not None:
                    throw = problem
                    continue
                if step.send:
                    continue  # a SEND is not answered: carry on at once
                return  # wait for the answer
            if isinstance(step, Defer):
                if self._defer(out, ex, step, now):
                    return  # sent at once: wait for the answer
                continue  # it waits in the queue: the handler carries on without an answer
            if isinstance(step, Notify):
                self._notify(out, step, now)
                continue
            if isinstance(step, Reply):
                if not ex.replied:
                    self._reply(out, ex, step.payload, now)
                continue
            if isinstance(step, Report):
                out.append(Problem(step.event, step.detail))
                continue
            if isinstance(step, _Settled):
                self._settle(out, step.item, step.result, step.error, now)
                continue
            if isinstance(step, _SendQueued):
                if self._send_queued(out, ex, step.item, now):
                    return  # wait for the answer
                continue
            out.append(Problem("translator_error", {"action": ex.call.action, "error": f"bad step {step!r}"}))
            throw = RuntimeError("unknown step")

    def _finish(
        self, out: list[Action], ex: _Exchange, now: float,
        result: dict[str, Any] | None = None, error: BaseException | None = None,
    ) -> None:
        if ex.offline_timer:
            self._offline_timers.pop(ex.offline_timer, None)
            out.append(CancelTimer(ex.offline_timer))
            ex.offline_timer = ""
        item = ex.offline_item
        if item is not None and (isinstance(error, RelayedError) or not isinstance(error, PeerError)):
            # The CSMS answered the CALL the gateway had already answered: nothing is left to replay.
            self._settle(out, item, result, error, now)
            if ex.translated:
                self._pass_verdict(out, ex, item)
        if ex.call.action == "StartTransaction":
            self._want_ids(out)
        st = self._sides[ex.origin]
        if st.current is ex:
            st.current = None
            self._drain_incoming(out, ex.origin, now)
        if ex.call is _REPLAY_CALL:
            self._give_back_turn(out)  # stopped or done: another charger may replay meanwhile
            self._arm_retry(out)  # whatever is still queued gets another try later
        elif ex.origin is Side.CHARGER and self._queue_live:
            if self._stalled:
                self._arm_retry(out)  # the CSMS just left a queued message unanswered: not again at once
            else:
                self._run_replay(out, now)

    def _arm_retry(self, out: list[Action]) -> None:
        if self._queue_live and not self._retry_armed and not self._closed:
            self._retry_armed = True
            out.append(StartTimer(RETRY_TIMER, self.limits.retry_interval))

    def _notify(self, out: list[Action], step: Notify, now: float) -> None:
        problem = self._enqueue(out, step.to, step.action, step.payload, None, now, None)
        if problem is not None:
            out.append(Problem("notify_invalid", {"action": step.action, "error": str(problem)}))

    def _drain_incoming(self, out: list[Action], side: Side, now: float) -> None:
        """Start the CALLs that waited behind the one just finished, one at a time.

        A loop, not recursion: an exchange that finishes at once (answered
        locally, refused) would otherwise nest one stack frame per queued CALL.
        """
        st = self._sides[side]
        if st.draining:
            return
        st.draining = True
        try:
            while st.current is None and (waiting := st.incoming) is not None:
                call, lenient = waiting.pop()
                if not waiting:
                    st.incoming = None
                self._start_exchange(out, side, call, now, lenient)
        finally:
            st.draining = False

    def _enqueue(
        self, out: list[Action], to: Side, action: str, payload: dict[str, Any], ex: _Exchange | None,
        now: float, unique_id: str | None, no_answer: bool = False, origin_call: Call | None = None,
    ) -> PeerError | None:
        """Queue a CALL to ``to``; a payload that breaks the target's schema is refused here."""
        st = self._sides[to]
        if to is Side.CHARGER:
            if self._closed:
                return PeerError(ocppj.error_code(st.version, ErrorKind.INTERNAL), "the charger is not connected")
            if st.version is Version.V16:
                payload = self._alias_out(action, payload)
        if action not in schemas.actions(st.version):
            out.append(Problem("translator_error", {"action": action, "error": f"no such {st.version.value} action"}))
            return PeerError(ocppj.error_code(st.version, ErrorKind.INTERNAL),
                             f"the gateway produced {action}, which OCPP {st.version.value} does not have")
        passthrough = (
            origin_call is not None and payload is origin_call.payload and action == origin_call.action
            and self._sides[to.other].version is st.version
        )
        if not passthrough:
            violation = schemas.validate(st.version, action, payload)
            if violation is not None and violation.rule == "type":
                fixed = repair(st.version, action, payload, TRANSLATION_FIXES)
                if fixed.violation is None:
                    payload, violation = fixed.payload, None
            if violation is not None and ex is not None and ex.lenient:
                out.append(ValidationFailed(to, st.version, action, violation.path,
                                            "forwarded under the observe policy: " + violation.message, "forwarded"))
            elif violation is not None:
                out.append(ValidationFailed(to, st.version, action, violation.path,
                                            "translation produced an invalid frame: " + violation.message,
                                            "translation"))
                return PeerError(
                    ocppj.error_code(st.version, ErrorKind.INTERNAL),
                    f"the gateway could not build a valid {action} for OCPP {st.version.value}: {violation.describe()}",
                )
        if unique_id is None:
            unique_id = self._new_id()
        mtype = MessageType.SEND if no_answer and st.version is Version.V21 else MessageType.CALL
        received = self._received
        try:
            if (passthrough and received is not None and received[0] is payload and origin_call is not None
                    and unique_id == origin_call.unique_id and mtype is origin_call.message_type):
                text = received[1]  # pass-through: the CALL goes on byte for byte (and is logged as one pair)
            else:
                text = ocppj.serialize(Call(unique_id, action, payload, mtype))
        except ocppj.SerializeError as exc:
            out.append(Problem("translator_error", {"action": action, "error": str(exc)}))
            return PeerError(ocppj.error_code(st.version, ErrorKind.INTERNAL),
                             f"the gateway could not encode {action}: {exc}")
        if no_answer and mtype is MessageType.SEND:
            # Not a CALL: no slot in the queue, no answer to wait for.
            if st.up:
                out.append(Send(to, text))
                out.append(self._record(to, "out", now, text, "SEND", action, unique_id))
            else:
                out.append(Problem("send_dropped", {"action": action, "reason": f"{to.value} link down"}))
            return None
        item = _Outgoing(to, unique_id, action, text, ex, timer_key=f"{SIDE_NAMES[to]}:{unique_id}:{self._new_seq()}")
        st.queue.append(item)
        self._timer_owner[item.timer_key] = item
        out.append(StartTimer(item.timer_key, self.limits.call_timeout))
        if ex is not None:
            ex.waiting_on = item
        self._pump(out, to, now)
        return None

    def _pump(self, out: list[Action], to: Side, now: float) -> None:
        """Send the next queued CALL to ``to`` if nothing is in flight there."""
        st = self._sides[to]
        if st.in_flight is not None or not st.up or not st.queue:
            return
        item = st.queue.pop(0)
        item.in_flight = True
        st.in_flight = item
        out.append(Send(to, item.text))
        out.append(self._record(to, "out", now, item.text, "CALL", item.action, item.unique_id))

    # ------------------------------------------------------------ answers

    def _take_in_flight(self, out: list[Action], side: Side, unique_id: str, what: str) -> _Outgoing | None:
        st = self._sides[side]
        pending = st.in_flight
        if pending is None or pending.unique_id != unique_id:
            out.append(Problem("unmatched_answer", {"from": side.value, "unique_id": unique_id, "type": what,
                                                    "note": "no CALL with this id is waiting (late or unknown)"}))
            return None
        st.in_flight = None
        out.append(CancelTimer(pending.timer_key))
        self._timer_owner.pop(pending.timer_key, None)
        return pending

    def _on_result(self, out: list[Action], side: Side, frame: CallResult, text: str, now: float) -> None:
        pending = self._take_in_flight(out, side, frame.unique_id, "CALLRESULT")
        if pending is None:
            return
        version = self._sides[side].version
        violation = schemas.validate(version, pending.action, frame.payload, response=True)
        if violation is not None:
            fixed = self._apply_policy(out, side, version, pending.action, frame.payload, violation,
                                       frame.unique_id, "CALLRESULT", now, response=True)
            if fixed is not None:
                violation = None
                if fixed is not frame.payload:
                    frame = CallResult(frame.unique_id, fixed)
                    text = ocppj.serialize(frame)
                elif pending.exchange is not None:
                    pending.exchange.lenient = True
        if violation is not None:
            if pending.exchange is not None:
                err = PeerError(
                    ocppj.error_code(version, violation.kind),
                    f"the {self._peer_names[side]}'s {pending.action} response is invalid: {violation.describe()}",
                )
                self._advance(out, pending.exchange, now, throw=err)
        elif pending.exchange is not None:
            self._last_result = (frame.payload, text)
            self._advance(out, pending.exchange, now, value=frame.payload)
            self._last_result = None
        self._pump(out, side, now)

    def _on_error(self, out: list[Action], side: Side, frame: CallError, now: float) -> None:
        if frame.message_type is MessageType.CALLRESULTERROR:
            # The peer rejects a CALLRESULT we sent; there is nothing left to answer.
            out.append(Problem("callresulterror_received", {"from": side.value, "unique_id": frame.unique_id,
                                                            "code": frame.code, "description": frame.description}))
            return
        pending = self._take_in_flight(out, side, frame.unique_id, "CALLERROR")
        if pending is None:
            return
        if pending.exchange is not None:
            self._advance(out, pending.exchange, now, throw=RelayedError(frame, side, self._sides[side].version))
        self._pump(out, side, now)

    # ------------------------------------------------------------ replies to the originator

    def _reply(self, out: list[Action], ex: _Exchange, payload: dict[str, Any], now: float) -> None:
        version = self._sides[ex.origin].version
        last = self._last_result
        if last is not None and last[0] is payload and self._sides[ex.origin.other].version is version:
            # Pass-through: the other side's answer goes back byte for byte when the ids agree.
            text = last[1] if _uid_of_result(last[1]) == ex.call.unique_id else None
            if text is None:
                text = ocppj.serialize(CallResult(ex.call.unique_id, payload))
        else:
            violation = schemas.validate(version, ex.call.action, payload, response=True)
            if violation is not None:
                out.append(ValidationFailed(ex.origin, version, ex.call.action, violation.path,
                                            "translation produced an invalid response: " + violation.message))
                self._fail(out, ex, ErrorKind.INTERNAL,
                           f"the gateway could not build a valid {ex.call.action} response: {violation.describe()}",
                           now)
                return
            try:
                text = ocppj.serialize(CallResult(ex.call.unique_id, payload))
            except ocppj.SerializeError as exc:
                out.append(Problem("translator_error", {"action": ex.call.action, "error": str(exc)}))
                self._fail(out, ex, ErrorKind.INTERNAL, f"the gateway could not encode the {ex.call.action} response",
                           now)
                return
        ex.replied = True
        out.append(Send(ex.origin, text))
        out.append(self._record(ex.origin, "out", now, text, "CALLRESULT", ex.call.action, ex.call.unique_id))
        out.append(RoundTrip(ex.origin, ex.call.action, now - ex.started, "result"))

    def _forward_peer_error(self, out: list[Action], ex: _Exchange, err: PeerError, now: float) -> None:
        if (self.offline is not None and not ex.replied and ex.origin is Side.CHARGER
                and not isinstance(err, RelayedError) and self._answerable(ex.call)
                and self._answer_offline(out, ex.call, now, ex)):
            return  # the CSMS could not be reached: answered locally, queued for the replay
        if ex.replied or ex.call.message_type is not MessageType.CALL:
            out.append(Problem("peer_error_after_reply", {"action": ex.call.action, "code": err.code}))
            return
        version = self._sides[ex.origin].version
        code = ocppj.translate_error_code(err.code, version)
        self._send_error(out, ex.origin, ex.call.unique_id, None, err.description, now, relayed_details(err, version),
                         code=code, action=ex.call.action)
        ex.replied = True
        out.append(RoundTrip(ex.origin, ex.call.action, now - ex.started, "error"))

    def _fail(
        self, out: list[Action], ex: _Exchange, kind: ErrorKind, description: str, now: float,
        details: dict[str, Any] | None = None,
    ) -> None:
        if ex.replied or ex.call.message_type is not MessageType.CALL:
            out.append(Problem("refused_after_reply", {"action": ex.call.action, "description": description}))
            return
        self._send_error(out, ex.origin, ex.call.unique_id, kind, description, now, details, action=ex.call.action)
        ex.replied = True
        out.append(RoundTrip(ex.origin, ex.call.action, now - ex.started, "error"))

    def _send_error(
        self, out: list[Action], to: Side, unique_id: str, kind: ErrorKind | None, description: str, now: float,
        details: dict[str, Any] | None = None, code: str | None = None, action: str | None = None,
    ) -> None:
        version = self._sides[to].version
        if code is None:
            assert kind is not None
            code = ocppj.error_code(version, kind)
        text = ocppj.serialize(CallError(unique_id, code, description[:255], details or {}))
        out.append(Send(to, text))
        out.append(self._record(to, "out", now, text, "CALLERROR", action, unique_id, code))

    # ------------------------------------------------------------ validation policy

    def _apply_policy(
        self, out: list[Action], side: Side, version: Version, action: str, payload: dict[str, Any],
        violation: schemas.Violation, unique_id: str, mtype: str, now: float, response: bool = False,
    ) -> dict[str, Any] | None:
        """What to carry on with after a violation: a repaired payload, the payload as is, or None (refuse)."""
        policy = self.policy if side is Side.CHARGER else STRICT
        if policy == REPAIR:
            result = repair(version, action, payload, self.limits.repair_rules, response)
            if result.violation is None:
                out.append(ValidationFailed(side, version, action, violation.path, violation.message, "repaired"))
                text = ocppj.serialize(
                    CallResult(unique_id, result.payload) if response else Call(unique_id, action, result.payload)
                )
                out.append(self._record(side, "in", now, text, mtype, action, unique_id,
                                        note="repaired: " + "; ".join(result.applied)))
                return result.payload
            violation = result.violation
        elif policy == OBSERVE:
            out.append(ValidationFailed(side, version, action, violation.path, violation.message, "forwarded"))
            return payload
        out.append(ValidationFailed(side, version, action, violation.path, violation.message, "refused"))
        return None

    def _note_model(self, out: list[Action], payload: dict[str, Any]) -> None:
        """Remember the model a charger boots as: it may select the validation policy."""
        station = payload.get("chargingStation")
        model = station.get("model") if isinstance(station, dict) else payload.get("chargePointModel")
        if not isinstance(model, str):
            return
        info = self.ctx.state.setdefault("charger", {})
        if info.get("model") != model:
            info["model"] = model
            self.ctx.save()
            self._save_if_dirty(out)
        self._apply_model_policy(model)

    def _apply_model_policy(self, model: str) -> None:
        if self.limits.validation_fixed:
            return
        for name, policy in self.limits.model_validation:
            if name == model:
                self.policy = policy
                return


    # ------------------------------------------------------------ store-and-forward

    def restore_queue(self, items: list[Queued]) -> None:
        """The charger's offline queue as the store kept it (a restart, a new connection): replayed first."""
        for item in sorted(items, key=lambda i: i.seq):
            self._queued().append(item)
            self._queue_live += 1
            self._translated_live += item.kind == TRANSLATED_KIND
            if item.key is not None:
                self._by_key[item.key] = item
            self._seq_floor = max(self._seq_floor, item.seq + 1)
        self.book.raise_floor(self._seq_floor)

    def adopt_held(self, now: float) -> list[Action]:
        """Messages an older gateway's translator held in its state become queue items, after those restored.

        Once: the translator takes them out of its state, which is saved with the new items.
        """
        out: list[Action] = []
        adopt = getattr(self.translator, "adopt_held", None)
        if adopt is None:
            return out
        for step in adopt(self.ctx):
            self._push(out, self._translated_item(step, now))
        self._save_if_dirty(out)
        return out

    def add_ids(self, ids: list[int]) -> None:
        """Transaction ids the store reserved for this session (see ``NeedIds``)."""
        self.ctx.ids.add(ids)
        self._ids_wanted = False

    def offline_status(self, now: float) -> dict[str, Any]:
        """Queue depth and age, and how the CSMS's verdicts compared, for the admin API."""
        oldest = self.offline_oldest
        queued = self.pending_offline
        translated = self._translated_live - (self._sending is not None)
        return {"queued": queued, "held_by_translator": translated,
                "by_kind": {CHARGER_KIND: queued - translated, TRANSLATED_KIND: translated},
                "oldest_age_s": None if oldest is None else round(now - oldest, 3),
                "csms_reachable": not self._csms_lost, **self.book.summary()}

    @property
    def pending_offline(self) -> int:
        """Messages waiting for the CSMS: the charger's, answered by the gateway, and those a translator made
        (but the one on its way as a live exchange's CALL)."""
        return self._queue_live - (self._sending is not None)

    @property
    def queued_total(self) -> int:
        """Messages not yet delivered to the CSMS and settled, the one on its way included."""
        return self._queue_live

    @property
    def offline_oldest(self) -> float | None:
        """When the oldest message still queued arrived (None: nothing queued)."""
        return next((i.ts for i in self._queue if not i.dead and i is not self._sending), None)

    def _answers_now(self, call: Call) -> bool:
        """Whether the gateway answers this charger CALL itself at once: the CSMS is away or a backlog waits."""
        return (self.offline is not None and (self._csms_lost or self.pending_offline > 0)
                and self._answerable(call))

    def _answerable(self, call: Call) -> bool:
        """Whether a charger CALL may get a local answer (store-and-forward) when its CSMS cannot give one."""
        return (call.action in ANSWERED_ACTIONS and call.message_type is MessageType.CALL
                and call.unique_id not in self.gateway_calls)

    def _answer_offline(self, out: list[Action], call: Call, now: float, ex: _Exchange | None) -> bool:
        """Answer ``call`` in the charger's version and queue it for the CSMS; False when it cannot be.

        With ``ex`` (an exchange still waiting for the CSMS) a refusal leaves the exchange to finish as it
        will; without, the charger gets a CALLERROR (it keeps the message and retries, as without a gateway).
        """
        policy = self.offline
        assert policy is not None
        version = self._sides[Side.CHARGER].version
        action = call.action
        keep = action in QUEUED_ACTIONS
        if keep and not self._make_room(out):
            if action in TRANSACTION_ACTIONS:
                out.append(Problem("offline_queue_full", {"action": action, "unique_id": call.unique_id,
                                                          "queued": self._queue_live}))
                if ex is None:
                    self._send_error(out, Side.CHARGER, call.unique_id, ErrorKind.INTERNAL,
                                     f"the CSMS cannot be reached and {self._queue_live} messages already wait "
                                     "for it", now, action=action)
                return False
            keep = False
            self.book.note_dropped()
            out.append(OfflineEvent("dropped", action))
        tx_id = self.ctx.ids.take() if action == "StartTransaction" else None
        try:
            payload = local_answer(version, action, call.payload, self.book, policy, self.ctx.now_iso(), tx_id)
        except NoLocalAnswer as exc:
            out.append(Problem("offline_not_answered", {"action": action, "reason": str(exc)}))
            if ex is None:
                self._send_error(out, Side.CHARGER, call.unique_id, ErrorKind.INTERNAL,
                                 f"the CSMS cannot be reached and {exc}", now, action=action)
            return False
        finally:
            if action == "StartTransaction":
                self._want_ids(out)
        if keep:
            item = Queued(self.book.next_seq(self._seq_floor), now, action, call.unique_id, call.payload, payload,
                          coalesce_key(action, call.payload))
            self._push(out, item)
            if ex is not None:
                ex.offline_item = item
        self._save_if_dirty(out)
        self._reply(out, ex or _Exchange(Side.CHARGER, call, now, None), payload, now)
        out.append(OfflineEvent("answered", action, call.unique_id))
        return True

    def _make_room(self, out: list[Action]) -> bool:
        """Room for one more queued message, by dropping the oldest non-transaction one if need be."""
        assert self.offline is not None
        if self._queue_live < self.offline.max_queue:
            return True
        for item in self._queue:
            if not item.dead and not item.transaction:
                self._kill(out, item, "dropped")
                self.book.note_dropped()
                out.append(OfflineEvent("dropped", item.action))
                out.append(Problem("offline_message_dropped", {"action": item.action, "seq": item.seq,
                                                                "reason": "queue full"}))
                return True
        return False

    def _queued(self) -> deque[Queued]:
        """The queue to add to: this session's own, made on first use."""
        if self._queue is _NOTHING_QUEUED:
            self._queue = deque()
        return self._queue

    def _push(self, out: list[Action], item: Queued) -> None:
        if item.key is not None:
            old = self._by_key.get(item.key)
            if old is not None and not old.dead:
                self._kill(out, old, "superseded")
            self._by_key[item.key] = item
        self._queued().append(item)
        self._queue_live += 1
        self._translated_live += item.kind == TRANSLATED_KIND
        out.append(Enqueue(item))

    def _kill(self, out: list[Action], item: Queued, reason: str) -> None:
        if item.dead:
            return
        item.dead = True
        self._queue_live -= 1
        self._translated_live -= item.kind == TRANSLATED_KIND
        if item.key is not None and self._by_key.get(item.key) is item:
            del self._by_key[item.key]
        out.append(Settle(item.seq, reason))
        queue = self._queue
        while queue and queue[0].dead:  # translated items settle as they go: don't let them pile up
            queue.popleft()

    # -- a translator's deferred messages (``Defer``, kind "translated")

    def _translated_item(self, step: Defer, now: float) -> Queued:
        call = step.call
        return Queued(self.book.next_seq(self._seq_floor), now, call.action, call.unique_id or self._new_id(),
                      call.payload, step.ref, kind=TRANSLATED_KIND)

    def _defer(self, out: list[Action], ex: _Exchange, step: Defer, now: float) -> bool:
        """Queue a translator's message durably; send it now if nothing queued is ahead of it (True: sent)."""
        if self.offline is not None and not self._make_room(out):
            # The charger message it translates was accepted already: it is kept over the bound, and the
            # charger's next transaction message is refused instead.
            out.append(Problem("offline_queue_full", {"action": step.call.action, "queued": self._queue_live,
                                                      "note": "kept: translated from an accepted message"}))
        item = self._translated_item(step, now)
        self._push(out, item)
        if ex.origin is Side.CHARGER and ex.call is not _REPLAY_CALL:
            if ex.translated is None:
                ex.translated = []
            ex.translated.append(item)
        self._save_if_dirty(out)
        if not (self._next_in_order(item, ex) and self._send_queued(out, ex, item, now)):
            return False
        if ex.call is not _REPLAY_CALL:
            self._sending = item
        return True

    def _next_in_order(self, item: Queued, ex: _Exchange) -> bool:
        """Whether nothing queued is ahead of ``item`` but what ``ex`` itself stands for."""
        for queued in self._queue:
            if queued is item:
                return True
            if not queued.dead and queued is not ex.offline_item and not (
                    ex.call is _REPLAY_CALL and queued is self._replaying):
                return False
        return True

    def _send_queued(self, out: list[Action], ex: _Exchange, item: Queued, now: float) -> bool:
        """Send a translated item as ``ex``'s CALL, as its translator resolves it now (True: sent)."""
        resolve = getattr(self.translator, "resolve", None)
        try:
            payload = item.payload if resolve is None else resolve(item.local, item.action, item.payload, self.ctx)
        except Exception as exc:  # a translator bug must not stop the queue for good
            out.append(Problem("translator_error", {"action": item.action, "error": repr(exc)}))
            payload = DROP
        self._save_if_dirty(out)
        if payload is None:
            return False  # not yet: it waits at its place
        problem = None if payload is DROP else self._enqueue(out, Side.CSMS, item.action, payload, ex, now,
                                                             item.unique_id)
        if payload is DROP or problem is not None:
            self._kill(out, item, "dropped")
            reason = "the translator gave its transaction up" if problem is None else str(problem)
            out.append(Problem("offline_message_dropped", {"action": item.action, "seq": item.seq,
                                                            "reason": reason}))
            return False
        ex.deferred = item
        return True

    def _deferred_answered(
        self, out: list[Action], ex: _Exchange, value: dict[str, Any] | None, throw: BaseException | None,
        now: float,
    ) -> tuple[dict[str, Any] | None, None]:
        """The CSMS answered (or not) a translated item ``ex`` sent: settle it or keep it; what the handler gets."""
        item = ex.deferred
        assert item is not None
        ex.deferred = None
        if self._sending is item:
            self._sending = None
        if isinstance(throw, PeerTimeout):
            self._stalled = True  # no answer in time, or the link lost: it stays queued, tried again later
            if (self.offline is not None and not ex.replied and ex.origin is Side.CHARGER
                    and ex.call.action in ANSWERED_ACTIONS and ex.call.message_type is MessageType.CALL):
                # The charger's answer would have depended on it: the gateway answers it now, as at answer_after.
                self._answer_offline(out, ex.call, now, ex)
            return None, None
        error = throw if isinstance(throw, PeerError) else None
        settled = getattr(self.translator, "settled", None)
        try:
            settlement = (Settlement() if settled is None else
                          settled(item.local, item.action, None if error else value, error, self.ctx))
        except Exception as exc:  # a translator bug must not stop the queue for good
            out.append(Problem("translator_error", {"action": item.action, "error": repr(exc)}))
            settlement = Settlement()
        if settlement.keep:
            self._stalled = True  # a refusal the translator wants tried again: on the retry timer
        else:
            self._kill(out, item, "answered")
            if ex.call is _REPLAY_CALL:
                out.append(OfflineEvent("replayed", item.action))
            verdict = item.local.get(VERDICT_KEY)
            if isinstance(verdict, dict):
                csms = None if error is not None else status_of(self._sides[Side.CSMS].version, value)
                self._judge(out, item, verdict.get("local"), csms, error, verdict.get("token"))
        self._save_if_dirty(out)
        for step in settlement.notify:
            self._notify(out, step, now)
        return (None if error is not None or settlement.keep else value), None

    def _offline_timeout(self, out: list[Action], ex: _Exchange, now: float) -> None:
        """A charger CALL waited ``answer_after`` for the CSMS: answer it locally; the exchange goes on."""
        ex.offline_timer = ""
        if ex.replied or self._sides[Side.CHARGER].current is not ex:
            return
        if not self._sides[Side.CSMS].up:
            self._csms_lost = True  # it never came up: later CALLs need not wait answer_after too
        self._answer_offline(out, ex.call, now, ex)

    def _settle(self, out: list[Action], item: Queued, result: dict[str, Any] | None,
                error: BaseException | None, now: float) -> None:
        """The CSMS answered a queued message (or it cannot be delivered): forget it, compare, learn."""
        self._kill(out, item, "answered")
        out.append(OfflineEvent("replayed", item.action))
        version = self._sides[Side.CHARGER].version
        csms = None if error is not None else status_of(version, result)
        self._judge(out, item, status_of(version, item.local), csms, error, token_of(version, item.action,
                                                                                        item.payload))
        if (version is Version.V16 and item.action == "StartTransaction" and result is not None
                and isinstance(result.get("transactionId"), int)):
            local_id = item.local.get("transactionId")
            if isinstance(local_id, int) and local_id != result["transactionId"]:
                self.book.add_alias(local_id, result["transactionId"])
        self._save_if_dirty(out)

    def _judge(self, out: list[Action], item: Queued, local: str | None, csms: str | None,
               error: BaseException | None, token: str | None) -> None:
        """Learn the CSMS's verdict on ``token`` and report it when it differs from the ``local`` one."""
        if token is not None and csms is not None:
            self.book.learn_verdict(token, {"status": csms})
        if error is not None or (local is not None and csms is not None and local != csms):
            verdict = csms if error is None else f"refused: {getattr(error, 'code', type(error).__name__)}"
            record = {"seq": item.seq, "action": item.action, "unique_id": item.unique_id,
                      "local": local or "answered", "csms": verdict, "token": token}
            self.book.note_differs(record)
            out.append(OfflineEvent("differs", item.action))
            out.append(Problem("offline_verdict_differs", record))

    def _pass_verdict(self, out: list[Action], ex: _Exchange, answered: Queued) -> None:
        """The charger got a local verdict on its token, and the CSMS has yet to judge what its CALL became (a
        deferred StartTransaction): that item carries the local verdict, for the replay to compare."""
        version = self._sides[Side.CHARGER].version
        local = status_of(version, answered.local)
        token = token_of(version, ex.call.action, ex.call.payload)
        if local is None or token is None:
            return
        csms_version = self._sides[Side.CSMS].version
        for item in ex.translated or ():
            if not item.dead and token_of(csms_version, item.action, item.payload) is not None:
                # Beside the translator's reference, in the same stored JSON: the translator ignores it.
                item.local = {**item.local, VERDICT_KEY: {"local": local, "token": token}}
                out.append(Enqueue(item))  # stored again, with it

    def _learn(self, call: Call, result: dict[str, Any] | None) -> None:
        """Remember what the CSMS said that the gateway may need to answer for it later."""
        if not result:
            return
        action = call.action
        if action == "BootNotification":
            if result.get("status") == "Accepted" and isinstance(result.get("interval"), int):
                self.book.learn_boot(result["interval"])
            return
        if action not in ("Authorize", "StartTransaction", "TransactionEvent"):
            return
        version = self._sides[Side.CHARGER].version
        token = token_of(version, action, call.payload)
        status = status_of(version, result)
        if token is not None and status is not None:
            self.book.learn_verdict(token, {"status": status})

    def _alias_in(self, call: Call) -> Call:
        """A 1.6 charger's CALL with the transactionId it got offline replaced by the CSMS's."""
        if call.action not in ("StopTransaction", "MeterValues"):
            return call
        aliases = self.ctx.state.get("offline", {}).get("alias")
        if not aliases or self._sides[Side.CHARGER].version is not Version.V16:
            return call
        csms_id = aliases.get(str(call.payload.get("transactionId")))
        if csms_id is None:
            return call
        return Call(call.unique_id, call.action, {**call.payload, "transactionId": csms_id}, call.message_type)

    def _alias_out(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        """A CALL to a 1.6 charger naming the CSMS's transactionId: the charger knows it by the gateway's."""
        if action != "RemoteStopTransaction" or not self.ctx.state.get("offline", {}).get("alias"):
            return payload
        local_id = self.book.local_id_of(payload.get("transactionId", -1))
        return payload if local_id is None else {**payload, "transactionId": local_id}

    def _want_ids(self, out: list[Action]) -> None:
        if (self._sides[Side.CHARGER].version is Version.V16 and not self._ids_wanted
                and len(self.ctx.ids) < IDS_LOW):
            self._ids_wanted = True
            out.append(NeedIds(IDS_BLOCK))

    def _run_replay(self, out: list[Action], now: float) -> bool:
        """Replay the queue, in order, as the charger side's exchange; False when there is nothing queued."""
        if not self._queue_live:
            return False
        charger = self._sides[Side.CHARGER]
        if self._closed or not self._sides[Side.CSMS].up:
            if not _works_for_the_csms(charger.current):
                self._give_back_turn(out)  # a held turn must not wait for a CSMS that is away
            return True  # the CSMS coming up runs it
        if charger.current is not None or charger.incoming:
            self._arm_retry(out)
            return True
        # Replays share the estate's turns only under offline.mode answer (reject mode: as before the turns).
        if self.offline is not None and self._wait_for_turn(out):
            return True  # replay_turn_granted runs it
        ex = _Exchange(Side.CHARGER, _REPLAY_CALL, now, self._replay(), replied=True)
        charger.current = ex
        self._advance(out, ex, now)
        return True

    def replay_turn_granted(self, now: float) -> list[Action]:
        """One of the shared replay slots is this session's (see ``ReplayTurn``): replay now if still needed."""
        out: list[Action] = []
        if self._replay_turn != _TURN_WANTED:
            out.append(ReplayTurn(take=False))  # given up meanwhile (the charger went)
            return out
        self._replay_turn = _TURN_HELD
        self._run_replay(out, now)
        charger = self._sides[Side.CHARGER]
        replaying = _works_for_the_csms(charger.current)
        # A busy charger keeps the turn: its exchange's end starts the replay. Anything else gives it back.
        busy = charger.current is not None or bool(charger.incoming)
        if not replaying and not (busy and self._queue_live and self._sides[Side.CSMS].up and not self._closed):
            self._give_back_turn(out)
        return out

    def _wait_for_turn(self, out: list[Action]) -> bool:
        """Whether the replay must wait for a shared turn (asked for once); False when the turn is held."""
        if self._replay_turn == _TURN_HELD:
            return False
        if self._replay_turn == _NO_TURN:
            self._replay_turn = _TURN_WANTED
            out.append(ReplayTurn(take=True))
        return True

    def _give_back_turn(self, out: list[Action]) -> None:
        if self._replay_turn != _NO_TURN:
            self._replay_turn = _NO_TURN
            out.append(ReplayTurn(take=False))

    def _replay(self) -> Generator[Step | _Settled | _SendQueued, dict[str, Any] | None, None]:
        """Each queued item in order: a charger CALL through the translator, as if the charger sent it now (the
        answers go nowhere), a translated one as its translator resolves it; stops where one must wait."""
        mark_offline = self._sides[Side.CSMS].version is not Version.V16
        queue = self._queue
        while queue:
            item = queue[0]
            if item.dead:
                queue.popleft()
                continue
            if not self._sides[Side.CSMS].up or self._stalled:
                return None
            if item.kind == TRANSLATED_KIND:
                yield _SendQueued(item)
                if not item.dead:
                    return None  # not yet, no answer, or a refusal to try again later
                continue
            call = self._alias_in(Call(item.unique_id, item.action, item.payload))
            result: dict[str, Any] | None = None
            error: BaseException | None = None
            self._replaying = item
            try:
                inner = self.translator.handle_call(Side.CHARGER, call, self.ctx)
                result = yield from _replayed(inner, mark_offline)
            except RelayedError as exc:
                error = exc  # the CSMS answered, with a CALLERROR: reported, not sent again
            except PeerError:
                self._stalled = True
                return None  # no answer (timeout, link lost): kept, tried again later
            except Exception as exc:  # untranslatable (Refuse) or a translator bug: it would fail every time
                error = exc
            finally:
                self._replaying = None
            yield _Settled(item, result, error)
        return None

    # ------------------------------------------------------------ helpers

    def _record(
        self, side: Side, direction: str, now: float, text: str, mtype: str, action: str | None,
        unique_id: str | None, error_code: str | None = None, note: str | None = None,
    ) -> FrameRecord:
        return FrameRecord(now, self.charger_id, direction, self._peer_names[side], self._sides[side].version_name,
                           mtype, action, unique_id, text, error_code, note)

    def _save_if_dirty(self, out: list[Action]) -> None:
        if self.ctx.dirty:
            self.ctx.dirty = False
            out.append(SaveState(self.ctx.state))

    def _new_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _new_id(self) -> str:
        return self.ctx.new_uuid()

    # ------------------------------------------------------------ introspection

    def pending(self, side: Side) -> int:
        """CALLs queued or in flight towards ``side``."""
        st = self._sides[side]
        return len(st.queue) + (st.in_flight is not None)


def _replayed(inner: Handler, mark_offline: bool) -> Generator[Step, dict[str, Any] | None, dict[str, Any] | None]:
    """A translator's handler run for a replayed CALL: its early ``Reply`` is kept as the answer, not sent,
    and a TransactionEvent to a 2.0.1/2.1 CSMS says ``offline: true`` (the gateway answered it meanwhile)."""
    early: dict[str, Any] | None = None
    value: dict[str, Any] | None = None
    throw: BaseException | None = None
    while True:
        try:
            step = inner.throw(throw) if throw is not None else inner.send(value)
        except StopIteration as stop:
            return stop.value if stop.value is not None else early
        value, throw = None, None
        if isinstance(step, Reply):
            early = step.payload
            continue
        if mark_offline and isinstance(step, OutCall | Notify) and step.action == "TransactionEvent":
            step = dataclasses.replace(step, payload={**step.payload, "offline": True})
        try:
            value = yield step
        except GeneratorExit:
            inner.close()
            raise
        except BaseException as exc:  # PeerError and the like: the translator decides what they mean
            throw = exc


def _works_for_the_csms(ex: _Exchange | None) -> bool:
    """Whether the charger side's exchange is the replay (under a replay turn)."""
    return ex is not None and ex.call is _REPLAY_CALL


def _looks_like_send(text: str) -> bool:
    return text.lstrip()[:3].replace(" ", "").startswith("[6")


def _uid_of_result(text: str) -> str | None:
    m = _UID_RE.match(text[:80])
    return m.group(1) if m else None


class RelayedError(PeerError):
    """A CALLERROR a peer sent, thrown into the handler: it remembers the side and OCPP version it came from."""

    def __init__(self, frame: CallError, side: Side, version: Version) -> None:
        super().__init__(frame.code, frame.description, frame.details)
        self.side = side
        self.version = version


def relayed_details(err: PeerError, to: Version) -> dict[str, Any] | None:
    """The errorDetails of ``err`` relayed to an OCPP ``to`` peer.

    A peer's own errorDetails are written in its version's terms (some stations put the whole request payload
    there); to a peer of another version they mean nothing, so it gets where the error came from and its
    original code instead. Same version (pass-through): the details go as they came.
    """
    if not isinstance(err, RelayedError) or err.version is to:
        return err.details or None
    return {"relayedFrom": f"OCPP {err.version.value} {err.side.value}", "errorCode": err.code}
