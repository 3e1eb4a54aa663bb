"""Shadow routing: mirror a charger's traffic to a second CSMS and compare its answers.

An operator who is about to move a charger to a new CSMS first routes it
``{primary: legacy, shadow: new}``. Every CALL the charger sends goes, as
usual, to the primary (whose answers the charger gets) and, translated for
the shadow's version by a session of its own, to the shadow CSMS. The
shadow's answers never reach the charger: they are logged (peer
``shadow:<name>``) and compared with the primary's, and the comparison is
counted (``ocpp_gateway_shadow_comparisons_total``). A shadow CSMS cannot
command the charger: its CALLs are answered with a CALLERROR at once.

The comparison is ``gateway.compare``'s, field by field, on both answers as
the charger would receive them (each translated into the charger's version
by its own session). Each compared exchange is tallied per charger and
action, the differing ones are kept in a bounded ring, and both are saved
in the store (state key ``__compare__/<charger id>``, at most every
``_SAVE_DELAY`` seconds) for the admin API and ``ocpp-gateway report``.
Every shadow frame in the message log names the charger CALL it mirrors
in its note (``mirrors <unique id>``): the shadow's CALLs may carry ids of
their own when its session translates.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from adapters.base import Context, Side, Translator
from gateway import ocppj
from gateway.compare import STATE_PREFIX, Answer, ChargerComparisons, compare_answers, outcome
from gateway.config import CsmsEndpoint
from gateway.connection.services import ConnectionServices
from gateway.connection.session_timers import SessionTimers
from gateway.connection.upstream import UpstreamLink
from gateway.ocppj import CallError, ErrorKind, Version
from gateway.records import FrameRecord
from gateway.session import (
    Action,
    CancelTimer,
    ChargerSession,
    OfflineEvent,
    Problem,
    ReplayTurn,
    SaveState,
    Send,
    SessionLimits,
    StartTimer,
    ValidationFailed,
)

# 1.6 messages whose transactionId the charger got from the primary and the shadow must see as its own.
_TX_ACTIONS = ("MeterValues", "StopTransaction")
_MAX_PENDING = 200


_SAVE_DELAY = 2.0  # seconds: a charger's comparisons are saved at most this often
_MAX_PAIRS = 1000
MIRRORS = "mirrors "  # the note on a shadow frame, before the unique id of the charger CALL it mirrors


@dataclass(slots=True)
class _Mirrored:
    """A charger CALL mirrored to the shadow, until both answers are known."""

    action: str
    request: dict[str, Any]
    primary: Answer = None
    shadow: Answer = None
    primary_at: float | None = None
    shadow_at: float | None = None
    timed_out: bool = False  # the shadow's session gave up waiting: its CALLERROR stands for no answer


class ShadowLink:
    """The shadow CSMS of one connected charger: its own session, translator and upstream link."""

    def __init__(self, services: ConnectionServices, charger_id: str, name: str, endpoint: CsmsEndpoint,
                 translator: Translator, options: dict[str, Any], state: dict[str, Any], limits: SessionLimits,
                 save_state: Callable[[], None], log: Any) -> None:
        self.services = services
        self.charger_id = charger_id
        self.name = name
        self.peer = f"shadow:{name}"
        self.log = log
        self._save_state = save_state  # the shadow's state lives inside the charger's, saved as one
        ctx = Context(charger_id, translator.charger_version, translator.csms_version, options=options, state=state)
        self.session = ChargerSession(charger_id, translator, ctx, limits, csms_peer=self.peer)
        self.link = UpstreamLink(
            services, charger_id, name, endpoint,
            on_up=lambda: self.apply(self.session.link_up(Side.CSMS, time.time())),
            on_frame=lambda text: self.apply(self.session.receive(Side.CSMS, text, time.time())),
            on_down=lambda: self.apply(self.session.link_down(Side.CSMS, time.time())),
        )
        self.timers = SessionTimers(services.timers, services.metrics, self.session, self.apply)
        # charger CALL unique id -> what is known of its two answers (insertion order: oldest first)
        self._pending: dict[str, _Mirrored] = {}
        # unique id of a CALL the shadow got -> the charger CALL it mirrors
        self._pairs: dict[str, str] = {}
        comparisons = services.comparisons.get(charger_id)
        if comparisons is None:
            kept = services.config.migration.differences_kept
            comparisons = services.comparisons[charger_id] = ChargerComparisons(charger_id, kept)
        self.comparisons = comparisons
        self._save_handle: asyncio.TimerHandle | None = None
        # 1.6 chargers: transactionId from the primary -> the one the shadow's side assigned
        self._tx_ids: dict[int, int] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self.link.run(), name=f"shadow:{self.charger_id}")

    async def close(self) -> None:
        self.timers.close()
        if self._save_handle is not None:
            self._save_handle.cancel()
            self._save_comparisons()
        await self.link.close()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass

    # ------------------------------------------------------------ mirroring

    def mirror_call(self, call: ocppj.Call, now: float) -> None:
        """A CALL the charger sent (and the primary got): the shadow gets it too."""
        if len(self._pending) >= _MAX_PENDING:
            self.services.metrics.problem("shadow_backlog")
            return
        payload = call.payload
        if self.session.translator.charger_version is Version.V16 and call.action in _TX_ACTIONS:
            tx = payload.get("transactionId")
            if isinstance(tx, int) and tx in self._tx_ids:
                payload = {**payload, "transactionId": self._tx_ids[tx]}
        self._pending[call.unique_id] = _Mirrored(call.action, call.payload)
        text = ocppj.serialize(ocppj.Call(call.unique_id, call.action, payload, call.message_type))
        self.apply(self.session.receive(Side.CHARGER, text, now))

    def primary_answered(self, text: str) -> None:
        """The primary's answer to a charger CALL, as sent to the charger."""
        frame = orjson.loads(text)
        entry = self._pending.get(frame[1])
        if entry is not None:
            entry.primary, entry.primary_at = frame, time.time()
            self._settle(frame[1], entry)

    def _shadow_answered(self, frame: list[Any], local: bool = False) -> None:
        """The shadow session's answer to a mirrored CALL; ``local``: the gateway's store-and-forward answer while
        the shadow CSMS was away, which stands for no answer (it must not count as the shadow agreeing)."""
        entry = self._pending.get(frame[1])
        if entry is not None:
            entry.shadow, entry.shadow_at = (None if entry.timed_out or local else frame), time.time()
            self._settle(frame[1], entry)

    def _settle(self, uid: str, entry: _Mirrored) -> None:
        if entry.primary_at is None or entry.shadow_at is None:
            return
        del self._pending[uid]
        action, primary, shadow = entry.action, entry.primary, entry.shadow
        differences = compare_answers(action, primary, shadow, primary_at=entry.primary_at,
                                      shadow_at=entry.shadow_at)
        result = outcome(primary, shadow, differences)
        self.services.metrics.shadow_comparison(self.name, action, result, self.charger_id,
                                                [d.kind for d in differences])
        self.comparisons.record(entry.shadow_at, self.name, action, uid, entry.request, primary, shadow, differences)
        if self._save_handle is None:
            self._save_handle = asyncio.get_running_loop().call_later(_SAVE_DELAY, self._save_comparisons)
        if action == "StartTransaction" and primary is not None and shadow is not None \
                and primary[0] == 3 and shadow[0] == 3:
            p, s = primary[2].get("transactionId"), shadow[2].get("transactionId")
            if isinstance(p, int) and isinstance(s, int):
                self._tx_ids[p] = s
                if len(self._tx_ids) > 1000:
                    self._tx_ids.pop(next(iter(self._tx_ids)))
        if differences:
            self.log.info("shadow_differs", csms=self.name, action=action, unique_id=uid, outcome=result,
                          differences=[d.as_dict() for d in differences[:5]])

    def _save_comparisons(self) -> None:
        self._save_handle = None
        self.services.store.save_state(STATE_PREFIX + self.charger_id, self.comparisons.snapshot())

    def _mirrored_by(self, record: FrameRecord) -> str | None:
        """The charger CALL a shadow frame belongs to (None for the shadow's own CALLs and their answers)."""
        uid = record.unique_id
        if uid is None:
            return None
        if record.direction == "out" and record.message_type in ("CALL", "SEND"):
            # The shadow's session works the charger's CALLs in order, one at a time: what it sends now
            # serves the oldest one not yet answered.
            oldest = next((k for k, e in self._pending.items() if e.shadow_at is None), None)
            if oldest is None:
                return None
            self._pairs[uid] = oldest
            if len(self._pairs) > _MAX_PAIRS:
                self._pairs.pop(next(iter(self._pairs)))
            return oldest
        if record.direction == "in" and record.message_type != "CALL":
            return self._pairs.pop(uid, None)
        return None

    # ------------------------------------------------------------ actions

    def apply(self, actions: list[Action]) -> None:
        svc = self.services
        for action in actions:
            if isinstance(action, Send):
                if action.to is Side.CSMS:
                    self.link.send(action.text)
                    continue
                frame = orjson.loads(action.text)
                if frame[0] == 2:
                    # The shadow CSMS tried to command the charger: refuse at once, in its version.
                    code = ocppj.error_code(self.session.translator.charger_version, ErrorKind.SECURITY)
                    refusal = ocppj.serialize(CallError(frame[1], code, "a shadow CSMS cannot command the charger"))
                    self.apply(self.session.receive(Side.CHARGER, refusal, time.time()))
                else:
                    self._shadow_answered(frame, _answered_locally(actions, frame[1]))
            elif isinstance(action, FrameRecord):
                if action.peer == self.peer:
                    mirrored = self._mirrored_by(action)
                    if mirrored is not None:
                        note = MIRRORS + mirrored
                        action = action._replace(note=f"{note}; {action.note}" if action.note else note)
                    svc.store.record(action)
                    svc.metrics.frame(action.direction, action.peer, action.message_type, action.action,
                                     action.charger_id)
            elif isinstance(action, StartTimer):
                self.timers.start(action.key, action.delay)
            elif isinstance(action, CancelTimer):
                self.timers.cancel(action.key)
            elif isinstance(action, SaveState):
                self._save_state()
            elif isinstance(action, ValidationFailed | Problem):
                if isinstance(action, Problem) and action.event == "call_timeout" \
                        and action.detail.get("to") == Side.CSMS.value:
                    entry = self._pending.get(self._pairs.get(str(action.detail.get("unique_id")), ""))
                    if entry is not None:
                        entry.timed_out = True
                svc.metrics.problem(f"shadow_{action.event}" if isinstance(action, Problem) else "shadow_invalid")
            elif isinstance(action, ReplayTurn) and action.take:
                # A shadow's queue (what its translator deferred, what it answered while the shadow was away)
                # takes no share of the estate's replay turns: granted at once, after this batch.
                asyncio.get_running_loop().call_soon(
                    lambda: self.apply(self.session.replay_turn_granted(time.time())))


def _answered_locally(actions: list[Action], unique_id: str) -> bool:
    return any(isinstance(a, OfflineEvent) and a.kind == "answered" and a.unique_id == unique_id for a in actions)
