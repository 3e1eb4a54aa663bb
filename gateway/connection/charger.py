"""One connected charger: its socket, its upstream links and timers, driving a ``ChargerSession``.

``ChargerConnection`` carries out the session's actions. All protocol
decisions are the session's; this module only moves frames, keeps time and
reports. What it may use of its owner comes in ``ConnectionServices``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import re
import time
from typing import Any

import orjson

from adapters import registry
from adapters.base import SIDE_NAMES, Context, Side, Translator
from gateway import ocppj
from gateway.charger_records import boot_identity
from gateway.config import Route
from gateway.connection.ledger import TransactionLedger
from gateway.connection.leg import CsmsLeg
from gateway.connection.services import ConnectionServices
from gateway.connection.shadow import ShadowLink
from gateway.logs import get_logger
from gateway.ocppj import Version
from gateway.offline import OfflinePolicy, Queued
from gateway.records import FrameRecord
from gateway.session import (
    DURABLE,
    IDS_BLOCK,
    Action,
    CancelTimer,
    Disconnect,
    Enqueue,
    NeedIds,
    OfflineEvent,
    Problem,
    ReplayTurn,
    RoundTrip,
    SaveState,
    Send,
    SessionLimits,
    Settle,
    StartTimer,
    ValidationFailed,
)
from gateway.store import StoreError
from gateway.store.base import QueueRow
from gateway.transport import DirectServerConnection

# Charger CALLs the connection reads besides relaying them: what a route change needs to know.
_WATCHED = re.compile(r'"(BootNotification|StatusNotification|StartTransaction|StopTransaction|TransactionEvent)"')
# What a CSMS that only drains its open transactions may still ask of the charger.
_DRAIN_COMMANDS = frozenset({"RemoteStopTransaction", "RequestStopTransaction", "GetTransactionStatus"})
# Keys of the charger's persisted state that belong to the charger, not to one CSMS's translator.
_CHARGER_KEYS = frozenset({"primary", "shadow", "boot", "status", "transactions", "introduced", "queue"})


class ChargerConnection:
    """One connected charger: its WebSocket, the CSMS legs it is routed to, and its shadow."""

    def __init__(
        self,
        services: ConnectionServices,
        charger_id: str,
        ws: DirectServerConnection,
        version: Version,
        route: Route,
        translator: Translator,
        ctx: Context,
    ) -> None:
        self.services = services
        self.charger_id = charger_id
        self.ws = ws
        self.version = version
        self.route = route
        self.options = ctx.options
        self.log = get_logger(charger_id=charger_id)
        self.connected_at = time.time()
        self.last_message_at: float | None = None
        config = services.config
        entry = config.chargers.get(charger_id)
        # ctx.state is the charger's whole persisted state; each CSMS leg gets its own corner of it.
        self.state = ctx.state
        migrate_state(self.state, route.primary)
        self.limits = _shared_limits(SessionLimits(
            call_timeout=config.csms[route.primary].call_timeout or config.call_timeout,
            max_frame_bytes=config.max_frame_bytes,
            retry_interval=config.held_retry_interval,
            validation=(entry.validation if entry and entry.validation else config.validation),
            validation_fixed=bool(entry and entry.validation),
            model_validation=tuple(config.validation_by_model.items()),
            repair_rules=services.repair_rules,
            max_waiting_calls=config.charger_calls.max_waiting,
            close_after_refused=config.charger_calls.close_after_refused,
            offline=OfflinePolicy(config.offline.mode, config.offline.answer_after, config.offline.unknown_id_tag,
                                  config.offline.max_queue_per_charger),
        ))
        self.ledger = TransactionLedger(self.state, version)
        self.active = self._make_leg(route.primary, translator)
        # The active leg's parts under the names the relay has always used.
        self.session = self.active.session
        self.upstream = self.active.link
        self.timers = self.active.timers
        self.translator = translator
        self.drains: dict[str, CsmsLeg] = {}
        self.introducing: CsmsLeg | None = None
        self._held_for_charger: list[str] = []  # CALLs the new primary sent while it was being introduced
        self._transactions_changed: asyncio.Event | None = None  # made when someone waits
        self._closed = False
        # Schema violations seen on this connection: (side, action, path, outcome) -> [count, last message].
        self.violations: dict[tuple[str, str, str, str], list[Any]] = {}
        self._generation = 0
        # Actions waiting for a durable commit (see ``apply``), with the leg whose session decided them; None while
        # nothing waits.
        self._held: list[tuple[CsmsLeg, Action]] | None = None
        self._tasks: set[asyncio.Task[Any]] | None = None  # the gateway's own exchanges and drains, if any
        self.shadow: ShadowLink | None = None
        for owner in self.ledger.owners() - {route.primary}:
            self._resume_drain(owner)
        if route.shadow is not None and route.shadow not in self.drains:
            self.shadow = self._make_shadow(route.shadow, self.limits)

    def _make_leg(self, name: str, translator: Translator) -> CsmsLeg:
        endpoint = self.services.config.csms[name]
        state = primary_state(self.state, name)
        ctx = Context(self.charger_id, self.version, endpoint.ocpp, options=self.options, state=state)
        # One numbering for the charger's offline queue, whichever leg queues: the rows share the table's key.
        leg = CsmsLeg(self.services, self.charger_id, name, endpoint, translator, ctx, self.limits, self.ledger,
                      self.log, self.state.setdefault("queue", {}))
        leg.sink = lambda actions: self.apply(actions, leg)
        return leg

    def _resume_drain(self, owner: str) -> None:
        """After a reconnect or restart: an old primary that still owns open transactions drains them."""
        endpoint = self.services.config.csms.get(owner)
        translator = None if endpoint is None else registry.translator_for(self.version, endpoint.ocpp, self.options)
        if translator is None:
            gone = self.ledger.forget_owner(owner)
            self.services.metrics.problem("drain_impossible")
            self.log.warning("transactions_abandoned", csms=owner, transactions=gone,
                             reason="the CSMS that started them is no longer configured (or cannot be translated to)")
            return
        self.drains[owner] = self._make_leg(owner, translator)

    def _make_shadow(self, name: str, limits: SessionLimits) -> ShadowLink | None:
        endpoint = self.services.config.csms[name]
        translator = registry.translator_for(self.version, endpoint.ocpp, self.options)
        if translator is None:
            self.log.warning("shadow_unsupported", csms=name, ocpp_version=self.version.value,
                             csms_ocpp_version=endpoint.ocpp.value)
            return None
        state = self.state.setdefault("shadow", {}).setdefault(name, {})
        return ShadowLink(self.services, self.charger_id, name, endpoint, translator, self.options,
                          state, limits, self.save_state, self.log)

    def save_state(self) -> None:
        try:
            self.services.store.save_state(self.charger_id, self.state)
        except (TypeError, ValueError) as exc:  # a translator put something that is not JSON into its state
            self.services.metrics.problem("state_not_saved")
            self.log.error("state_not_saved", error=repr(exc))

    def can_take_over(self, version: Version, route: Route) -> bool:
        """Whether a reconnect with this version and route can continue this session."""
        return not self._closed and version is self.version and route == self.route

    @property
    def upstream_state(self) -> str:
        return self.upstream.state

    async def run(self) -> bool:
        """Relay until the charger goes away, then clean up; see ``serve`` for what the result means."""
        await self._restore_offline()
        self.active.start()
        for leg in self.drains.values():
            leg.start()
        if self.shadow is not None:
            self.shadow.start()
        introduced = self.state.setdefault("introduced", [])
        if self.route.primary not in introduced and isinstance(self.state.get("boot"), dict):
            # Routed here while it was away (or the gateway restarted mid-change): introduce it as it arrives.
            self._spawn(self._introduce_on_connect())
        return await self.serve(self.ws)

    async def serve(self, ws: DirectServerConnection) -> bool:
        """Read from ``ws`` until it closes; a later ``serve`` (a reconnect) takes over the session.

        True when this call ended the connection (its owner forgets it then),
        False when a newer socket took the session over and serves it on.

        A charger whose network dropped silently reconnects while the old
        socket still looks open. The new socket takes over this connection's
        session and upstream link, so the CSMS sees no disconnect and answers
        in flight reach the charger on its new socket.
        """
        old = self.ws
        self.ws = ws
        self._generation += 1
        generation = self._generation
        if old is not ws:
            self.log.info("charger_reconnected", note="new socket takes over the session and upstream link")
            closing = asyncio.ensure_future(
                old.close(code=1000, reason="replaced by a newer connection with the same charger id")
            )
            self.services.background(closing)
        ws.forget_handshake()
        if self.services.reading_paused():
            self.pause_reading(True)
        try:
            ws.deliver_to(self._charger_frame)
            await ws.closed()
        finally:
            ended = generation == self._generation
            if ended:
                await self._teardown()
        return ended

    def pause_reading(self, paused: bool) -> None:
        """Stop (or resume) reading the charger's socket: the store's back-pressure."""
        self.ws.hold_reading(paused)

    # ------------------------------------------------------------ the charger speaks

    def _charger_frame(self, text: str) -> None:
        self.last_message_at = now = time.time()
        try:
            leg = self.active
            mirror: ocppj.Call | None = None
            frame: ocppj.Frame | None = None
            if self.drains or self.shadow is not None or _WATCHED.search(text) is not None:
                leg, mirror, frame = self._route_charger_frame(text)
            leg.apply(leg.session.receive(Side.CHARGER, text, now, frame))  # parsed once, not twice
            if mirror is not None and self.shadow is not None:
                self.shadow.mirror_call(mirror, now)
            if self.ledger.take_changed():
                self._ledger_changed()
        except Exception as exc:  # one bad frame must not end the charger's connection
            self.services.metrics.problem("frame_handling_error")
            self.log.error("frame_handling_error", error=repr(exc), exc_info=True)

    def _route_charger_frame(self, text: str) -> tuple[CsmsLeg, ocppj.Call | None, ocppj.Frame | None]:
        """Which leg gets a charger frame, the copy the shadow may have and the frame parsed; notes boots,
        statuses, transactions."""
        try:
            frame = ocppj.parse(text, self.version)
        except ocppj.FrameError:
            return self.active, None, None  # the active session answers it in the charger's version
        if not isinstance(frame, ocppj.Call):
            for leg in self.drains.values():  # the answer to a CALL a draining CSMS sent
                if leg.calls_to_charger and frame.unique_id in leg.calls_to_charger:
                    del leg.calls_to_charger[frame.unique_id]
                    return leg, None, frame
            return self.active, None, frame
        if frame.action == "BootNotification":
            self.state["boot"] = frame.payload
            self.state["introduced"] = [self.route.primary]
            self.save_state()
        elif frame.action == "StatusNotification":
            self._note_status(frame.payload)
        shadow = self.shadow.name if self.shadow is not None else None
        owner, mirror = self.ledger.route(frame, self.route.primary, shadow)
        leg = self.drains.get(owner, self.active)
        return leg, frame if mirror else None, frame

    def _note_status(self, payload: dict[str, Any]) -> None:
        if self.version is Version.V16:
            key = str(payload.get("connectorId"))
        else:
            key = f"{payload.get('evseId')}/{payload.get('connectorId')}"
        statuses = self.state.setdefault("status", {})
        if statuses.get(key) != payload:
            statuses[key] = payload
            self.save_state()

    def _leg_to_charger(self, leg: CsmsLeg, text: str) -> None:
        """A frame for the charger from a leg that is not the active one."""
        if text[1:2] != "2":
            self.ws.send_now(text)  # a draining CSMS's answer to the charger's transaction message
            return
        if leg is self.introducing:
            self._held_for_charger.append(text)  # sent once the charger's traffic is switched to this CSMS
            return
        frame = orjson.loads(text)
        if frame[2] in _DRAIN_COMMANDS:
            self.ws.send_now(text)  # the owner of a transaction may still stop it or ask about it
            return
        code = ocppj.error_code(self.version, ocppj.ErrorKind.SECURITY)
        refusal = ocppj.serialize(ocppj.CallError(
            frame[1], code, f"{leg.name} only drains its open transactions; {self.route.primary} routes this charger"))
        if leg.calls_to_charger:
            leg.calls_to_charger.pop(frame[1], None)
        leg.apply(leg.session.receive(Side.CHARGER, refusal, time.time()))

    # ------------------------------------------------------------ transactions and route changes

    def open_transactions(self, owner: str | None = None) -> list[str]:
        """The open transactions of ``owner`` (default: the current primary), as the charger names them."""
        return self.ledger.open_for(owner or self.route.primary)

    def shadow_copies(self) -> list[str]:
        """Open transactions whose start the current shadow received as a copy (it must see their end)."""
        return self.ledger.shadow_copies(self.shadow.name) if self.shadow is not None else []

    async def transactions_changed(self) -> None:
        """Wait until a transaction starts or ends (or the charger goes away)."""
        if self._closed:
            return
        if self._transactions_changed is None:
            self._transactions_changed = asyncio.Event()
        await self._transactions_changed.wait()

    def _ledger_changed(self) -> None:
        self.save_state()
        event, self._transactions_changed = self._transactions_changed, None
        if event is not None:
            event.set()
        for name, leg in list(self.drains.items()):
            if self._drained(name, leg):
                self._spawn(self._end_drain(name, leg))

    def _drained(self, name: str, leg: CsmsLeg) -> bool:
        """Whether an old primary has nothing left here: no open transaction, nothing queued for it (the end of
        a transaction the charger reported while that CSMS was away waits in its queue)."""
        return not self.ledger.open_for(name) and not leg.session.queued_total

    async def _end_drain(self, name: str, leg: CsmsLeg) -> None:
        """The old primary's last transaction ended: close its link once its answer reached the charger."""
        deadline = time.monotonic() + self.limits.call_timeout
        while (leg.session.pending(Side.CSMS) or leg.session.pending(Side.CHARGER)) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if self.drains.get(name) is not leg or not self._drained(name, leg):
            return  # a later settle or ledger change looks again
        del self.drains[name]
        await leg.close()
        self.log.info("drain_closed", csms=name, note="its last transaction ended")
        shadow = self.route.shadow
        if shadow == name and self.shadow is None and not self._closed:
            self.shadow = self._make_shadow(shadow, self.limits)  # deferred: one socket per CSMS and charger
            if self.shadow is not None:
                self.shadow.start()

    async def change_route(self, route: Route) -> tuple[bool, str | None]:
        """Move the charger's traffic to ``route`` without touching its socket: (applied, why not).

        A new primary is introduced first (the charger's last BootNotification,
        then every connector's status); its boot answer decides: Accepted or
        Pending switch the traffic, Rejected or no answer leave the route as
        it was. The old primary's open transactions stay with it (a drain)
        until they end.
        """
        if self._closed:
            return False, "the charger disconnected"
        if route.primary == self.route.primary:
            await self._change_shadow(route)
            self.route = route
            return True, None
        name = route.primary
        leg = self.drains.pop(name, None)
        translator: Translator | None = None
        if leg is None:
            endpoint = self.services.config.csms[name]
            translator = registry.translator_for(self.version, endpoint.ocpp, self.options)
            if translator is None:
                return False, f"no translator from OCPP {self.version.value} to {name}'s {endpoint.ocpp.value}"
            if not isinstance(self.state.get("boot"), dict):
                return False, ("the gateway has not seen this charger's BootNotification, so it cannot introduce "
                               f"it to {name}: trigger a BootNotification (or reconnect the charger) and retry")
        if self.shadow is not None and self.shadow.name == name:
            await self.shadow.close()  # the CSMS gets one socket per charger: the shadow's goes first
            self.shadow = None
        if leg is None:
            assert translator is not None  # checked above, before the shadow was closed
            leg = self._make_leg(name, translator)
            _seed_transaction_ids(leg, self.ledger)
            self.introducing = leg
            leg.start()
            try:
                accepted, reason = await self._introduce(leg)
            finally:
                self.introducing = None
            if not accepted or self._closed:
                await leg.close()
                self._held_for_charger.clear()
                await self._change_shadow(self.route)
                return False, reason or "the charger disconnected during the introduction"
        else:
            self._send_statuses(leg)  # back to a CSMS that only drained: it missed the status changes since
        self._switch(leg, route)
        await self._change_shadow(route)
        return True, None

    def _switch(self, leg: CsmsLeg, route: Route) -> None:
        """From now on the charger's traffic goes to ``leg``; the old primary keeps only its own transactions."""
        old = self.active
        self.active, self.session, self.upstream, self.timers = leg, leg.session, leg.link, leg.timers
        self.translator = leg.translator
        self.route = route
        held, self._held_for_charger = self._held_for_charger, []
        for text in held:
            self.ws.send_now(text)
        # The old primary drains: its open transactions, and answers still on their way (a StopTransaction's).
        self.drains[old.name] = old
        self.log.info("route_switched", csms=leg.name, previous=old.name,
                      open_transactions=self.ledger.open_for(old.name))
        if self._drained(old.name, old):
            self._spawn(self._end_drain(old.name, old))
        introduced = self.state.setdefault("introduced", [])
        if leg.name not in introduced:
            introduced.append(leg.name)
        self.save_state()

    async def _change_shadow(self, route: Route) -> None:
        current = self.shadow.name if self.shadow is not None else None
        if current == route.shadow:
            return
        if self.shadow is not None:
            await self.shadow.close()
            self.shadow = None
        if route.shadow is not None and route.shadow not in self.drains and route.shadow != self.active.name:
            self.shadow = self._make_shadow(route.shadow, self.limits)
            if self.shadow is not None:
                self.shadow.start()

    async def _introduce_on_connect(self) -> None:
        """A charger that connects on a route it was moved to while away is introduced while its traffic flows."""
        leg = self.active
        accepted, reason = await self._introduce(leg)
        if accepted:
            self.state.setdefault("introduced", []).append(leg.name)
            self.save_state()
        else:
            self.services.metrics.problem("introduction_refused")
            self.log.warning("introduction_refused", csms=leg.name, reason=reason)

    async def _introduce(self, leg: CsmsLeg) -> tuple[bool, str | None]:
        """Tell a CSMS about this charger as if it had just booted: its last boot, then each connector's status."""
        boot = self.state.get("boot")
        if not isinstance(boot, dict):
            return False, "no BootNotification known"
        answer = await self._own_exchange(leg, Side.CHARGER, "BootNotification", boot)
        if answer[0] != 3:
            return False, f"{leg.name} answered the BootNotification with {answer[2]}: {answer[3]}"
        status, interval = answer[2].get("status"), answer[2].get("interval")
        self.log.info("charger_introduced", csms=leg.name, boot_status=status, interval=interval)
        if status == "Rejected":
            return False, f"{leg.name} rejected the charger's BootNotification (status Rejected)"
        self._send_statuses(leg)
        if isinstance(interval, int) and interval > 0:
            self._spawn(self._set_heartbeat(leg, interval))
        if status == "Pending":
            self._spawn(self._boot_until_accepted(leg, interval if isinstance(interval, int) else 0))
        return True, None

    def _send_statuses(self, leg: CsmsLeg) -> None:
        """Every connector's last known status, as the charger reported it (with a fresh timestamp in 2.x)."""
        for payload in list(self.state.get("status", {}).values()):
            fresh = {**payload, "timestamp": _now_iso()} if "timestamp" in payload else payload
            self._spawn(self._own_exchange(leg, Side.CHARGER, "StatusNotification", fresh))

    async def _own_exchange(
        self, leg: CsmsLeg, origin: Side, action: str, payload: dict[str, Any], why: str = "introduction",
    ) -> list[Any]:
        fut = leg.exchange(origin, action, payload, why)
        try:
            return await asyncio.wait_for(fut, self.limits.call_timeout * 2 + 5)
        except TimeoutError:
            return [4, "", "Timeout", f"no answer to {action}"]

    async def _set_heartbeat(self, leg: CsmsLeg, interval: int) -> None:
        """A boot answer's interval reaches the charger as a real boot's would: as its heartbeat interval."""
        csms_version = leg.translator.csms_version
        payload: dict[str, Any]
        if csms_version is Version.V16:
            action, payload = "ChangeConfiguration", {"key": "HeartbeatInterval", "value": str(interval)}
        else:
            action, payload = "SetVariables", {"setVariableData": [{
                "attributeValue": str(interval), "component": {"name": "OCPPCommCtrlr"},
                "variable": {"name": "HeartbeatInterval"}}]}
        answer = await self._own_exchange(leg, Side.CSMS, action, payload, "the boot answer's heartbeat interval")
        self.log.info("heartbeat_interval_set", csms=leg.name, interval=interval, answer=answer[2])

    async def _boot_until_accepted(self, leg: CsmsLeg, interval: int) -> None:
        """A CSMS that answered Pending hears the boot again at its interval until it accepts."""
        while not leg.closed and not self._closed:
            await asyncio.sleep(max(interval, 1))
            if leg.closed or self._closed:
                return
            answer = await self._own_exchange(leg, Side.CHARGER, "BootNotification", self.state.get("boot") or {},
                                              "boot again until the CSMS accepts")
            if answer[0] == 3 and answer[2].get("status") == "Accepted":
                self.log.info("charger_accepted", csms=leg.name)
                return
            if answer[0] == 3 and isinstance(answer[2].get("interval"), int):
                interval = answer[2]["interval"]

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        if self._tasks is None:
            self._tasks = set()
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _restore_offline(self) -> None:
        """Load what this charger has queued for its CSMS (replayed before anything new) and reserve ids."""
        svc = self.services
        try:
            rows = await svc.store.offline_queue(self.charger_id)
        except StoreError as exc:
            svc.metrics.problem("offline_queue_unreadable")
            self.log.error("offline_queue_unreadable", error=str(exc))
            rows = []
        # Each row waits for the CSMS that queued it: an old primary's (the end of a transaction it owns, reported
        # while it was away) is replayed to it, not to the current primary. Rows from before the column: primary.
        by_csms: dict[str, list[Queued]] = {}
        for seq, ts, action, uid, payload, local, key, kind, csms in rows:
            by_csms.setdefault(csms or self.route.primary, []).append(
                Queued(seq, ts, action, uid, orjson.loads(payload), orjson.loads(local), key, kind=kind))
        for name, items in by_csms.items():
            leg = self._leg_named(name)
            if leg is None:
                svc.metrics.problem("offline_queue_unroutable")
                self.log.error("offline_queue_unroutable", csms=name, queued=len(items),
                               reason="the CSMS these messages wait for is no longer configured (or cannot be "
                                      "translated to); they stay in the store until it is configured again")
                continue
            leg.session.restore_queue(items)
            self.log.info("offline_queue_restored", csms=name, queued=len(items))
        now = time.time()
        for leg in [self.active, *self.drains.values()]:  # an old primary's transactions may hold some too
            adopted = leg.session.adopt_held(now)
            if adopted:
                self.log.info("held_messages_queued", csms=leg.name,
                              queued=sum(isinstance(a, Enqueue) for a in adopted))
                self.apply(adopted, leg)
        svc.metrics.offline_queues[self.charger_id] = self.offline_depth
        if self.version is Version.V16:
            self._reserve_ids(IDS_BLOCK)

    def _leg_named(self, name: str) -> CsmsLeg | None:
        """The leg of CSMS ``name``: the active one, a drain, or a drain resumed for what waits for it."""
        if name == self.active.name:
            return self.active
        if name not in self.drains and name in self.services.config.csms:
            self._resume_drain(name)
            if name in self.drains and self.shadow is not None and self.shadow.name == name:
                self.shadow = None  # not started yet; one socket per CSMS: made again when the drain ends
        return self.drains.get(name)

    def offline_depth(self) -> tuple[int, float | None]:
        """Queue depth and oldest arrival across the charger's CSMS legs (an old primary's queue counts too)."""
        if not self.drains:
            return self.session.pending_offline, self.session.offline_oldest
        sessions = [self.session, *(leg.session for leg in self.drains.values())]
        oldest = [t for t in (s.offline_oldest for s in sessions) if t is not None]
        return sum(s.pending_offline for s in sessions), min(oldest, default=None)

    def _reserve_ids(self, count: int) -> None:
        async def reserve() -> None:
            try:
                ids = await self.services.store.reserve_ids(count)
            except StoreError as exc:
                self.services.metrics.problem("ids_not_reserved")
                self.log.error("ids_not_reserved", error=str(exc))
                ids = []
            self.session.add_ids(ids)

        self.services.background(asyncio.ensure_future(reserve()))

    async def _teardown(self) -> None:
        # CALLs the CSMS is still waiting on get their CALLERROR before the link closes.
        self._closed = True
        if self._transactions_changed is not None:
            self._transactions_changed.set()
        for task in list(self._tasks or ()):
            task.cancel()
        legs = [self.active, *self.drains.values()]
        if self.introducing is not None:
            legs.append(self.introducing)
        for leg in legs:
            await leg.close()
        if self.shadow is not None:
            await self.shadow.close()
        if self.services.metrics.offline_queues.get(self.charger_id) == self.offline_depth:
            del self.services.metrics.offline_queues[self.charger_id]
        self.log.info("charger_disconnected", code=self.ws.close_code, reason=self.ws.close_reason)

    def apply(self, actions: list[Action], leg: CsmsLeg | None = None) -> None:
        """Carry out what the session of ``leg`` (default: the active one) decided, in order.

        Durable before answered: after a ``SaveState``, ``Enqueue`` or ``Settle`` nothing is sent to either
        side until the store has committed them, together with every log record so far. Later actions (and
        later calls of ``apply``, from any leg) wait in ``_held`` meanwhile, so order is kept. Each held action
        keeps its leg: a route switch while they wait must not send the old primary's frames to the new one.
        """
        if leg is None:
            leg = self.active
        elif leg is not self.active and self.drains.get(leg.name) is leg and self._drained(leg.name, leg) and any(
                isinstance(a, Settle) for a in actions):
            self._spawn(self._end_drain(leg.name, leg))  # an old primary's last queued message is delivered
        if self._held is not None:
            self._held.extend((leg, action) for action in actions)
            return
        self._carry_out(actions, leg)

    def _carry_out(self, actions: list[Action], leg: CsmsLeg) -> None:
        svc = self.services
        durable: list[Action] | None = None
        for i, action in enumerate(actions):
            # Most frequent first: four records and two sends per relayed CALL.
            if isinstance(action, FrameRecord):
                self._record(action)
            elif isinstance(action, Send):
                if durable is not None:
                    self._commit(durable, actions[i:], leg)
                    return
                if action.to is Side.CSMS:
                    # A dropped link is not an error here: the session learns it from the link's on_down.
                    leg.link.send(action.text)
                elif leg is not self.active:
                    self._leg_to_charger(leg, action.text)  # its role (drain, introduction) decides
                else:
                    # A closed socket is not an error here: serve() sees the close and cleans up.
                    self.ws.send_now(action.text)
                    if self.shadow is not None and action.text[1:2] in ("3", "4"):
                        self.shadow.primary_answered(action.text)
            elif isinstance(action, StartTimer):
                leg.timers.start(action.key, action.delay)
            elif isinstance(action, CancelTimer):
                leg.timers.cancel(action.key)
            elif isinstance(action, SaveState) and not svc.config.offline.durable_answers:
                self.save_state()  # the benchmark's reference: state written behind the answer, as before
            elif isinstance(action, DURABLE):
                if durable is None:
                    durable = []
                durable.append(action)
            elif isinstance(action, RoundTrip):
                svc.metrics.observe_roundtrip(SIDE_NAMES[action.origin], action.action, action.seconds)
            elif isinstance(action, ValidationFailed):
                svc.metrics.validation_failure(action.side.value, action.version.value, action.action, self.charger_id)
                key = (action.side.value, action.action or "", action.path, action.outcome)
                seen = self.violations.get(key)
                if seen is None and len(self.violations) < 200:
                    self.violations[key] = [1, action.message]
                elif seen is not None:
                    seen[0] += 1
                    seen[1] = action.message
                self.log.warning("validation_failed", side=action.side.value, ocpp_version=action.version.value,
                                 action=action.action, path=action.path, error=action.message,
                                 outcome=action.outcome)
            elif isinstance(action, Problem):
                svc.metrics.problem(action.event)
                self.log.warning(action.event, **action.detail)
            elif isinstance(action, OfflineEvent):
                svc.metrics.offline_event(action.kind, action.action)
            elif isinstance(action, NeedIds):
                self._reserve_ids(action.count)
            elif isinstance(action, ReplayTurn):
                self._replay_turn(action.take, leg)
            elif isinstance(action, Disconnect) and action.side is Side.CHARGER:
                svc.background(asyncio.ensure_future(self.ws.close(code=action.code, reason=action.reason)))
        if durable is not None:
            self._commit(durable, [], leg)

    def _replay_turn(self, take: bool, leg: CsmsLeg) -> None:
        """Wait for (or give back) a shared replay turn for ``leg``: an old primary replays its own queue."""
        claim, leg.replay_claim = leg.replay_claim, None
        if claim is not None:
            claim.release()
        if take:
            leg.replay_claim = self.services.replay_slots.claim(
                lambda: leg.apply(leg.session.replay_turn_granted(time.time())))

    def _record(self, action: FrameRecord) -> None:
        svc = self.services
        svc.store.record(action)
        svc.metrics.frame(action.direction, action.peer, action.message_type, action.action, self.charger_id)
        if action.error_code is not None:
            svc.metrics.callerror(action.direction, action.peer, action.error_code, self.charger_id)

    def _commit(self, durable: list[Action], rest: list[Action], leg: CsmsLeg) -> None:
        """Commit state and queue changes with the log so far; carry out ``rest`` once they are stored."""
        held = list(rest)
        # The records of the frames this commit answers for go in the same transaction.
        taken = 0
        for action in held:
            if isinstance(action, DURABLE):
                break
            if isinstance(action, FrameRecord):
                self._record(action)
            taken += 1
        kept: list[Action] = [a for a in held[:taken] if not isinstance(a, FrameRecord)]
        self._held = [(leg, action) for action in kept + held[taken:]]
        # The charger's whole state: every CSMS leg's corner, the ledger, the last boot (not the active leg's alone).
        state = self.state if any(isinstance(a, SaveState) for a in durable) else None
        enqueue = [_queue_row(a.item, leg.name) for a in durable if isinstance(a, Enqueue)]
        settle = [a.seq for a in durable if isinstance(a, Settle)]
        try:
            future = self.services.store.commit(self.charger_id, state, enqueue, settle)
        except (TypeError, ValueError) as exc:  # a translator put something that is not JSON into its state
            self.services.metrics.problem("state_not_saved")
            self.log.error("state_not_saved", error=repr(exc))
            future = asyncio.get_running_loop().create_future()
            future.set_result(None)
        future.add_done_callback(self._committed)

    def _committed(self, future: asyncio.Future[None]) -> None:
        if not future.cancelled() and (exc := future.exception()) is not None:
            # Carry on regardless: holding the charger for ever would not make the state any more durable.
            self.services.metrics.problem("durable_commit_failed")
            self.log.error("durable_commit_failed", error=str(exc))
        held, self._held = self._held or [], None
        start = 0
        while start < len(held):
            if self._held is not None:  # a later durable action started the next commit: the rest waits for it
                self._held.extend(held[start:])
                return
            leg = held[start][0]
            end = start + 1
            while end < len(held) and held[end][0] is leg:
                end += 1
            self._carry_out([action for _, action in held[start:end]], leg)
            start = end

    async def replace(self) -> None:
        """A newer connection with the same id arrived: this one steps aside at once.

        The old socket may be silently dead (NAT drop), so its close handshake
        runs in the background instead of holding up the new connection.
        """
        self.log.info("charger_replaced")
        self._closed = True
        for leg in [self.active, *self.drains.values()]:
            await leg.link.close()
        closing = asyncio.ensure_future(
            self.ws.close(code=1000, reason="replaced by a newer connection with the same charger id")
        )
        self.services.background(closing)

    async def shutdown(self) -> None:
        await self.ws.close(code=1001, reason="gateway shutting down")

    def describe(self) -> dict[str, Any]:
        """The live view of this charger for the admin API (the estate adds route source and records)."""
        return {
            "id": self.charger_id,
            "ocpp_version": self.version.value,
            **boot_identity(self.state.get("boot")),
            "csms_ocpp_version": self.translator.csms_version.value,
            "translator": self.translator.name,
            "connected": not self._closed,
            "connected_since": _iso(self.connected_at),
            "route": {"primary": self.route.primary, "shadow": self.route.shadow},
            "upstream": {"csms": self.upstream.name, "state": self.upstream.state, "url": self.upstream.url},
            "draining": {name: {"state": leg.link.state, "open_transactions": self.ledger.open_for(name),
                                "queued": leg.session.pending_offline}
                         for name, leg in self.drains.items()},
            "open_transactions": self.ledger.open_for(self.route.primary),
            "last_message_at": _iso(self.last_message_at) if self.last_message_at else None,
            "pending_calls": {"to_charger": self.session.pending(Side.CHARGER),
                              "to_csms": self.session.pending(Side.CSMS)},
            "validation_policy": self.session.policy,
            "offline": self.session.offline_status(time.time()),
            "violations": [
                {"side": k[0], "action": k[1], "path": k[2], "outcome": k[3], "count": v[0], "last_error": v[1]}
                for k, v in self.violations.items()
            ],
        }


def _queue_row(item: Queued, csms: str) -> QueueRow:
    return (item.seq, item.ts, item.action, item.unique_id, orjson.dumps(item.payload).decode(),
            orjson.dumps(item.local).decode(), item.key, item.kind, csms)


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _now_iso() -> str:
    return _iso(time.time())


def migrate_state(state: dict[str, Any], primary: str) -> None:
    """State saved before translator state was kept per CSMS belongs to the primary it was saved under."""
    if "primary" in state:
        return
    moved = {k: state.pop(k) for k in [k for k in state if k not in _CHARGER_KEYS]}
    state["primary"] = {primary: moved}


def primary_state(state: dict[str, Any], name: str) -> dict[str, Any]:
    """The translator state of ``name`` as this charger's primary: kept apart per CSMS, so switching back
    finds its own transaction map."""
    per_csms: dict[str, dict[str, Any]] = state.setdefault("primary", {})
    return per_csms.setdefault(name, {})


def _shared_limits(limits: SessionLimits) -> SessionLimits:
    """One instance of each distinct (frozen) set of limits: chargers configured alike share it."""
    try:
        return _interned_limits(limits)
    except TypeError:  # an operator's repair rule maps to a list or a map: not hashable, so not shared
        return limits


@functools.lru_cache(maxsize=64)
def _interned_limits(limits: SessionLimits) -> SessionLimits:
    return limits


def _seed_transaction_ids(leg: CsmsLeg, ledger: TransactionLedger) -> None:
    """A 1.6 charger's integer transaction ids made by the gateway's 1.6->2.x translator must not repeat one
    another CSMS still owns: the new primary's counter starts above every id the charger holds open."""
    held = [int(tx) for tx in ledger.book if tx.isdigit()]
    if not ledger.v16 or not held:
        return
    # The counter lives in the 1.6->2.0.1 translator's namespace, nested one level in a composed translator.
    state = leg.session.ctx.state
    name = leg.translator.name
    if name.startswith("v16_v201+"):
        state = state.setdefault("outer:v16_v201", {})
    elif name != "v16_v201":
        return  # a 1.6 CSMS assigns the ids itself
    ns = state.setdefault("v16_v201", {})
    ns["next_tx"] = max(int(ns.get("next_tx", 1)), max(held) + 1)
