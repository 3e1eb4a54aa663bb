"""One connected charger: its socket, its upstream links and timers, driving a ``ChargerSession``.

``ChargerConnection`` carries out the session's actions. All protocol
decisions are the session's; this module only moves frames, keeps time and
reports. What it may use of its owner comes in ``ConnectionServices``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Any

import orjson

from adapters import registry
from adapters.base import Context, Side, Translator
from gateway import ocppj
from gateway.config import Route
from gateway.connection.services import ConnectionServices, ReplayClaim
from gateway.connection.session_timers import SessionTimers
from gateway.connection.shadow import ShadowLink
from gateway.connection.upstream import UpstreamLink
from gateway.logs import get_logger
from gateway.ocppj import Version
from gateway.offline import OfflinePolicy, Queued
from gateway.records import FrameRecord
from gateway.session import (
    DURABLE,
    IDS_BLOCK,
    Action,
    CancelTimer,
    ChargerSession,
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
from gateway.transport import DirectServerConnection


class ChargerConnection:
    """One connected charger: its WebSocket, its upstream link and its session."""

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
        self.translator = translator
        self.log = get_logger(charger_id=charger_id)
        self.connected_at = time.time()
        self.last_message_at: float | None = None
        config = services.config
        endpoint = config.csms[route.primary]
        entry = config.chargers.get(charger_id)
        limits = SessionLimits(
            call_timeout=endpoint.call_timeout or config.call_timeout,
            max_frame_bytes=config.max_frame_bytes,
            background_interval=config.held_retry_interval,
            validation=(entry.validation if entry and entry.validation else config.validation),
            validation_fixed=bool(entry and entry.validation),
            model_validation=tuple(config.validation_by_model.items()),
            repair_rules=services.repair_rules,
            max_waiting_calls=config.charger_calls.max_waiting,
            close_after_refused=config.charger_calls.close_after_refused,
            offline=OfflinePolicy(config.offline.mode, config.offline.answer_after, config.offline.unknown_id_tag,
                                  config.offline.max_queue_per_charger),
        )
        self.session = ChargerSession(charger_id, translator, ctx, limits)
        self.upstream = UpstreamLink(
            services, charger_id, route.primary, endpoint,
            on_up=lambda: self.apply(self.session.link_up(Side.CSMS, time.time())),
            on_frame=self._csms_frame,
            on_down=lambda: self.apply(self.session.link_down(Side.CSMS, time.time())),
            log=self.log,
        )
        self.timers = SessionTimers(services.timers, services.metrics, self.session, self.apply)
        self._closed = False
        # Schema violations seen on this connection: (side, action, path, outcome) -> [count, last message].
        self.violations: dict[tuple[str, str, str, str], list[Any]] = {}
        self._generation = 0
        # Actions waiting for a durable commit (see ``apply``); None while nothing waits.
        self._held: list[Action] | None = None
        self._replay_claim: ReplayClaim | None = None  # a shared replay turn, waited for or held
        self._upstream_task: asyncio.Task[None] | None = None
        self.shadow: ShadowLink | None = None
        if route.shadow is not None:
            self.shadow = self._make_shadow(route.shadow, limits)

    def _make_shadow(self, name: str, limits: SessionLimits) -> ShadowLink | None:
        endpoint = self.services.config.csms[name]
        translator = registry.translator_for(self.version, endpoint.ocpp, self.session.ctx.options)
        if translator is None:
            self.log.warning("shadow_unsupported", csms=name, ocpp_version=self.version.value,
                             csms_ocpp_version=endpoint.ocpp.value)
            return None
        state = self.session.ctx.state.setdefault("shadow", {}).setdefault(name, {})
        return ShadowLink(self.services, self.charger_id, name, endpoint, translator, self.session.ctx.options,
                          state, limits, self.save_state, self.log)

    def save_state(self) -> None:
        try:
            self.services.store.save_state(self.charger_id, self.session.ctx.state)
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
        self._upstream_task = asyncio.create_task(self.upstream.run(), name=f"upstream:{self.charger_id}")
        if self.shadow is not None:
            self.shadow.start()
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

    def _charger_frame(self, text: str) -> None:
        self.last_message_at = now = time.time()
        try:
            self.apply(self.session.receive(Side.CHARGER, text, now))
            if self.shadow is not None:
                self._mirror(text, now)
        except Exception as exc:  # one bad frame must not end the charger's connection
            self.services.metrics.problem("frame_handling_error")
            self.log.error("frame_handling_error", error=repr(exc), exc_info=True)

    def _csms_frame(self, text: str) -> None:
        self.apply(self.session.receive(Side.CSMS, text, time.time()))

    def _mirror(self, text: str, now: float) -> None:
        assert self.shadow is not None
        try:
            frame = ocppj.parse(text, self.version)
        except ocppj.FrameError:
            return
        if isinstance(frame, ocppj.Call):
            self.shadow.mirror_call(frame, now)

    async def _restore_offline(self) -> None:
        """Load what this charger has queued for its CSMS (replayed before anything new) and reserve ids."""
        svc = self.services
        try:
            rows = await svc.store.offline_queue(self.charger_id)
        except StoreError as exc:
            svc.metrics.problem("offline_queue_unreadable")
            self.log.error("offline_queue_unreadable", error=str(exc))
            rows = []
        self.session.restore_queue([
            Queued(seq, ts, action, uid, orjson.loads(payload), orjson.loads(local), key)
            for seq, ts, action, uid, payload, local, key in rows
        ])
        if rows:
            self.log.info("offline_queue_restored", queued=len(rows))
        svc.metrics.offline_queues[self.charger_id] = self._offline_depth
        if self.version is Version.V16:
            self._reserve_ids(IDS_BLOCK)

    def _offline_depth(self) -> tuple[int, float | None]:
        return self.session.pending_offline, self.session.offline_oldest

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
        self.apply(self.session.close(time.time()))
        self._closed = True
        await self.upstream.close()
        if self.shadow is not None:
            await self.shadow.close()
        task = self._upstream_task
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception as exc:  # the link's own errors must not hide the charger's disconnect
                self.log.error("upstream_task_failed", error=repr(exc))
        self.timers.close()
        if self.services.metrics.offline_queues.get(self.charger_id) == self._offline_depth:
            del self.services.metrics.offline_queues[self.charger_id]
        self.log.info("charger_disconnected", code=self.ws.close_code, reason=self.ws.close_reason)

    def apply(self, actions: list[Action]) -> None:
        """Carry out what the session decided, in order.

        Durable before answered: after a ``SaveState``, ``Enqueue`` or ``Settle`` nothing is sent to either
        side until the store has committed them, together with every log record so far. Later actions (and
        later calls of ``apply``) wait in ``_held`` meanwhile, so order is kept.
        """
        if self._held is not None:
            self._held.extend(actions)
            return
        self._carry_out(actions)

    def _carry_out(self, actions: list[Action]) -> None:
        svc = self.services
        durable: list[Action] | None = None
        for i, action in enumerate(actions):
            # Most frequent first: four records and two sends per relayed CALL.
            if isinstance(action, FrameRecord):
                self._record(action)
            elif isinstance(action, Send):
                if durable is not None:
                    self._commit(durable, actions[i:])
                    return
                if action.to is Side.CHARGER:
                    # A closed socket is not an error here: serve() sees the close and cleans up.
                    self.ws.send_now(action.text)
                    if self.shadow is not None and action.text[1:2] in ("3", "4"):
                        self.shadow.primary_answered(action.text)
                else:
                    # A dropped link is not an error here: the session learns it from the link's on_down.
                    self.upstream.send(action.text)
            elif isinstance(action, StartTimer):
                self.timers.start(action.key, action.delay)
            elif isinstance(action, CancelTimer):
                self.timers.cancel(action.key)
            elif isinstance(action, SaveState) and not svc.config.offline.durable_answers:
                self.save_state()  # the benchmark's reference: state written behind the answer, as before
            elif isinstance(action, DURABLE):
                if durable is None:
                    durable = []
                durable.append(action)
            elif isinstance(action, RoundTrip):
                svc.metrics.observe_roundtrip(action.origin.value, action.action, action.seconds)
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
                self._replay_turn(action.take)
            elif isinstance(action, Disconnect) and action.side is Side.CHARGER:
                svc.background(asyncio.ensure_future(self.ws.close(code=action.code, reason=action.reason)))
        if durable is not None:
            self._commit(durable, [])

    def _replay_turn(self, take: bool) -> None:
        claim, self._replay_claim = self._replay_claim, None
        if claim is not None:
            claim.release()
        if take:
            self._replay_claim = self.services.replay_slots.claim(
                lambda: self.apply(self.session.replay_turn_granted(time.time())))

    def _record(self, action: FrameRecord) -> None:
        svc = self.services
        svc.store.record(action)
        svc.metrics.frame(action.direction, action.peer, action.message_type, action.action, self.charger_id)
        if action.error_code is not None:
            svc.metrics.callerror(action.direction, action.peer, action.error_code, self.charger_id)

    def _commit(self, durable: list[Action], rest: list[Action]) -> None:
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
        self._held = kept + held[taken:]
        state = self.session.ctx.state if any(isinstance(a, SaveState) for a in durable) else None
        enqueue = [_queue_row(a.item) for a in durable if isinstance(a, Enqueue)]
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
        self._carry_out(held)

    async def replace(self) -> None:
        """A newer connection with the same id arrived: this one steps aside at once.

        The old socket may be silently dead (NAT drop), so its close handshake
        runs in the background instead of holding up the new connection.
        """
        self.log.info("charger_replaced")
        self._closed = True
        await self.upstream.close()
        closing = asyncio.ensure_future(
            self.ws.close(code=1000, reason="replaced by a newer connection with the same charger id")
        )
        self.services.background(closing)

    async def shutdown(self) -> None:
        await self.ws.close(code=1001, reason="gateway shutting down")

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.charger_id,
            "ocpp_version": self.version.value,
            "csms_ocpp_version": self.translator.csms_version.value,
            "translator": self.translator.name,
            "connected": not self._closed,
            "connected_since": _iso(self.connected_at),
            "route": {"primary": self.route.primary, "shadow": self.route.shadow},
            "upstream": {"csms": self.upstream.name, "state": self.upstream.state, "url": self.upstream.url},
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


def _queue_row(item: Queued) -> tuple[int, float, str, str, str, str, str | None]:
    return (item.seq, item.ts, item.action, item.unique_id, orjson.dumps(item.payload).decode(),
            orjson.dumps(item.local).decode(), item.key)


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
