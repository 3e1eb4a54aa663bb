"""Shadow routing: mirror a charger's traffic to a second CSMS and compare its answers.

An operator who is about to move a charger to a new CSMS first routes it
``{primary: legacy, shadow: new}``. Every CALL the charger sends goes, as
usual, to the primary (whose answers the charger gets) and, translated for
the shadow's version by a session of its own, to the shadow CSMS. The
shadow's answers never reach the charger: they are logged (peer
``shadow:<name>``) and compared with the primary's, and the comparison is
counted (``ocpp_gateway_shadow_comparisons_total``). A shadow CSMS cannot
command the charger: its CALLs are answered with a CALLERROR at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import orjson

from adapters.base import Context, Side, Translator
from gateway import ocppj
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
    Problem,
    SaveState,
    Send,
    SessionLimits,
    StartTimer,
    ValidationFailed,
)

# 1.6 messages whose transactionId the charger got from the primary and the shadow must see as its own.
_TX_ACTIONS = ("MeterValues", "StopTransaction")
_MAX_PENDING = 200


def statuses(payload: Any) -> list[str]:
    """Every ``status`` value in a payload, depth first: what decides whether two CSMSs agree."""
    found: list[str] = []
    if isinstance(payload, dict):
        for key, value in payload.items():
            if key == "status" and isinstance(value, str):
                found.append(value)
            else:
                found.extend(statuses(value))
    elif isinstance(payload, list):
        for item in payload:
            found.extend(statuses(item))
    return found


def compare(primary: list[Any], shadow: list[Any]) -> str:
    """match, differ, shadow_error or primary_error for the two answers to one charger CALL."""
    if primary[0] != 3:
        return "primary_error" if shadow[0] == 3 else "match"
    if shadow[0] != 3:
        return "shadow_error"
    return "match" if statuses(primary[2]) == statuses(shadow[2]) else "differ"


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
        # unique id -> (action, primary answer, shadow answer), until both are known
        self._pending: dict[str, list[Any]] = {}
        # 1.6 chargers: transactionId from the primary -> the one the shadow's side assigned
        self._tx_ids: dict[int, int] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self.link.run(), name=f"shadow:{self.charger_id}")

    async def close(self) -> None:
        self.timers.close()
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
        self._pending[call.unique_id] = [call.action, None, None]
        text = ocppj.serialize(ocppj.Call(call.unique_id, call.action, payload, call.message_type))
        self.apply(self.session.receive(Side.CHARGER, text, now))

    def primary_answered(self, text: str) -> None:
        """The primary's answer to a charger CALL, as sent to the charger."""
        frame = orjson.loads(text)
        entry = self._pending.get(frame[1])
        if entry is not None:
            entry[1] = frame
            self._settle(frame[1])

    def _shadow_answered(self, frame: list[Any]) -> None:
        entry = self._pending.get(frame[1])
        if entry is not None:
            entry[2] = frame
            self._settle(frame[1])

    def _settle(self, uid: str) -> None:
        action, primary, shadow = self._pending[uid]
        if primary is None or shadow is None:
            return
        del self._pending[uid]
        outcome = compare(primary, shadow)
        self.services.metrics.shadow_comparison(self.name, action, outcome)
        if action == "StartTransaction" and primary[0] == 3 and shadow[0] == 3:
            p, s = primary[2].get("transactionId"), shadow[2].get("transactionId")
            if isinstance(p, int) and isinstance(s, int):
                self._tx_ids[p] = s
                if len(self._tx_ids) > 1000:
                    self._tx_ids.pop(next(iter(self._tx_ids)))
        if outcome != "match":
            self.log.info("shadow_differs", csms=self.name, action=action, unique_id=uid, outcome=outcome,
                                primary=statuses(primary[2]) if primary[0] == 3 else primary[2],
                                shadow=statuses(shadow[2]) if shadow[0] == 3 else shadow[2])

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
                    self._shadow_answered(frame)
            elif isinstance(action, FrameRecord):
                if action.peer == self.peer:
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
                svc.metrics.problem(f"shadow_{action.event}" if isinstance(action, Problem) else "shadow_invalid")
