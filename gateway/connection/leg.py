"""One CSMS a charger is (or was, or is about to be) routed to: a session, an upstream link and timers.

A connected charger has one *active* leg, whose CSMS answers the charger.
During a hot route change it also has an *introducing* leg (the new
primary, being told about the charger by a BootNotification and status
notifications the gateway builds; its answers are consumed, never sent to
the charger), and after a forced change a *draining* leg per old primary
that still owns open transactions.

Exchanges the gateway starts itself (the introduction, a repeated boot
while the CSMS says Pending, the heartbeat interval it asked for) are run
through the leg's session like any other, under a unique id the leg keeps
in ``own``: their answers go to the waiting future instead of a peer.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import orjson

from adapters.base import Context, Side, Translator
from gateway import ocppj
from gateway.config import CsmsEndpoint
from gateway.connection.ledger import TransactionLedger
from gateway.connection.services import ConnectionServices, ReplayClaim
from gateway.connection.session_timers import SessionTimers
from gateway.connection.upstream import UpstreamLink
from gateway.records import FrameRecord
from gateway.session import Action, ChargerSession, Send, SessionLimits

Sink = Callable[[list[Action]], None]
_RECENT_CALLS = 16
_V = TypeVar("_V")


class CsmsLeg:
    """A CSMS's session, link and timers for one charger, whatever its role in a route change."""

    def __init__(self, services: ConnectionServices, charger_id: str, name: str, endpoint: CsmsEndpoint,
                 translator: Translator, ctx: Context, limits: SessionLimits, ledger: TransactionLedger,
                 log: Any, queue_numbers: dict[str, Any] | None = None) -> None:
        self.name = name
        self.services = services
        self.ledger = ledger
        self.log = log
        self.session = ChargerSession(charger_id, translator, ctx, limits, queue_numbers=queue_numbers)
        self.link = UpstreamLink(
            services, charger_id, name, endpoint,
            on_up=self._link_up, on_frame=self._csms_frame, on_down=self._link_down, log=log,
        )
        self.timers = SessionTimers(services.timers, services.metrics, self.session, self.apply)
        # The connection's apply, bound to this leg: whatever the leg's role, its actions pass the connection's
        # durable barrier in order and are carried out on this leg's link and timers.
        self.sink: Sink = lambda actions: None
        self.own: dict[str, asyncio.Future[list[Any]]] = {}
        self.session.gateway_calls = self.own  # what the gateway asks as the charger waits for the CSMS's answer
        # Made on first use (most chargers never need them): the last few exchanges the gateway made up, why,
        # and which peer the gateway played (for the message log); the last few CALLs this leg's CSMS sent the
        # charger.
        self.made: dict[str, tuple[str, str]] | None = None
        self.calls_to_charger: dict[str, None] | None = None
        self.task: asyncio.Task[None] | None = None
        self.replay_claim: ReplayClaim | None = None  # a shared replay turn, waited for or held
        self.closed = False

    # The link's callbacks as methods: bound on use, where three closures stayed with every idle charger.
    def _link_up(self) -> None:
        self.apply(self.session.link_up(Side.CSMS, time.time()))

    def _csms_frame(self, text: str) -> None:
        self.apply(self.session.receive(Side.CSMS, text, time.time()))

    def _link_down(self) -> None:
        self.apply(self.session.link_down(Side.CSMS, time.time()))

    @property
    def translator(self) -> Translator:
        return self.session.translator

    def start(self) -> None:
        self.task = asyncio.create_task(self.link.run(), name=f"upstream:{self.name}:{self.session.charger_id}")

    async def close(self) -> None:
        self.closed = True
        self.apply(self.session.close(time.time()))
        for fut in self.own.values():
            fut.cancel()
        self.own.clear()
        self.timers.close()
        await self.link.close()
        task = self.task
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception as exc:  # the link's own errors must not hide why it was closed
                self.log.error("upstream_task_failed", csms=self.name, error=repr(exc))

    # ------------------------------------------------------------ the gateway's own exchanges

    def exchange(self, origin: Side, action: str, payload: dict[str, Any], why: str) -> asyncio.Future[list[Any]]:
        """Run a CALL the gateway makes up as if ``origin`` sent it; the future gets the answer frame."""
        unique_id = str(uuid.uuid4())
        fut: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self.own[unique_id] = fut
        self.made = _remember(self.made, unique_id, (why, "charger" if origin is Side.CHARGER else "csms"))
        text = ocppj.serialize(ocppj.Call(unique_id, action, payload))
        self.apply(self.session.receive(origin, text, time.time()))
        return fut

    # ------------------------------------------------------------ actions

    def apply(self, actions: list[Action]) -> None:
        """Take out what belongs to the gateway's own exchanges and the ledger; the sink gets the rest."""
        ledger_waits = bool(self.ledger.starts)
        # A CALL to the CSMS needs a look only when it may be one the gateway made (``made``): the usual relayed
        # CALL then goes to the sink as it is, without rebuilding the list.
        if self.own or ledger_waits or any(isinstance(a, Send) and a.text[1:2] == "2"
                                           and (a.to is Side.CHARGER or self.made) for a in actions):
            actions = [self._own_record(a) if isinstance(a, FrameRecord) else a for a in actions
                       if not (isinstance(a, Send) and self._took(a, ledger_waits))]
        if actions:
            self.sink(actions)

    def _own_record(self, record: FrameRecord) -> FrameRecord:
        """The message log says which frames the gateway made up (it never shows the peer saying them).

        Only the side the gateway played: the other peer's frames of the exchange (a charger answering the
        gateway's SetVariables under the same id) are real, and are logged and counted as that peer's.
        """
        made = self.made.get(record.unique_id or "") if self.made else None
        if made is not None and record.peer == made[1]:
            return record._replace(peer="gateway", note=f"made by the gateway for {self.name}: {made[0]}")
        return record

    def _took(self, send: Send, ledger_waits: bool) -> bool:
        kind = send.text[1:2]
        if kind == "2":
            if send.to is Side.CHARGER:
                uid = orjson.loads(send.text)[1]
                self.calls_to_charger = _remember(self.calls_to_charger, uid, None)
            return False
        if kind not in ("3", "4") or not (self.own or (ledger_waits and send.to is Side.CHARGER)):
            return False
        frame = orjson.loads(send.text)
        fut = self.own.pop(frame[1], None)
        if fut is not None:
            if not fut.done():
                fut.set_result(frame)
            return True
        if send.to is Side.CHARGER:
            self.ledger.answered(frame[1], frame)
        return False


def _remember(recent: dict[str, _V] | None, key: str, value: _V) -> dict[str, _V]:
    """Add to a small most-recent-first memory, made on first use; the oldest entries fall out."""
    if recent is None:
        recent = {}
    recent[key] = value
    while len(recent) > _RECENT_CALLS:
        recent.pop(next(iter(recent)))
    return recent
