"""The asyncio runner: sockets, timers and the store around each ``ChargerSession``.

``ChargerConnection`` owns one charger's WebSocket, its ``UpstreamLink`` to the
routed CSMS and its session, and carries out the session's actions. All
protocol decisions are the session's; this module only moves bytes, keeps
time and reports.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import os
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import websockets
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidHandshake, InvalidStatus

from adapters import registry
from adapters.base import Context, Side, Translator
from gateway import charger_ids, ocppj
from gateway.config import CsmsEndpoint, Route
from gateway.logs import get_logger
from gateway.ocppj import Version
from gateway.records import FrameRecord
from gateway.session import (
    Action,
    CancelTimer,
    ChargerSession,
    Disconnect,
    Problem,
    RoundTrip,
    SaveState,
    Send,
    SessionLimits,
    StartTimer,
    ValidationFailed,
)
from gateway.transport import DirectClientConnection, DirectServerConnection

if TYPE_CHECKING:
    from gateway.app import Gateway
    from gateway.shadow import ShadowLink


LinkCallback = Callable[[], None]


class SessionTimers:
    """Carries out a session's StartTimer / CancelTimer actions on the gateway's timer wheel.

    When a timer fires, the session's ``timer_fired`` actions are applied at once.
    """

    def __init__(self, gateway: Gateway, session: ChargerSession, apply: Callable[[list[Action]], None]):
        self.gateway = gateway
        self.session = session
        self.apply = apply
        self.keys: set[str] = set()
        self.closed = False

    def start(self, key: str, delay: float) -> None:
        if not self.closed:
            self.keys.add(key)
            self.gateway.timers.start((self, key), delay, functools.partial(self._fired, key))

    def cancel(self, key: str) -> None:
        if key in self.keys:
            self.keys.discard(key)
            self.gateway.timers.cancel((self, key))

    def close(self) -> None:
        self.closed = True
        for key in self.keys:
            self.gateway.timers.cancel((self, key))
        self.keys.clear()

    def _fired(self, key: str) -> None:
        self.keys.discard(key)
        if self.closed:
            return
        try:
            self.apply(self.session.timer_fired(key, time.time()))
        except Exception as exc:  # a timer must not take the event loop's callback down with it
            self.gateway.metrics.problem("timer_handling_error")
            get_logger(charger_id=self.session.charger_id).error("timer_handling_error", key=key, error=repr(exc),
                                                                exc_info=True)


class UpstreamLink:
    """The gateway's own WebSocket to a charger's CSMS, reconnecting with backoff while the charger stays.

    It knows nothing of OCPP: it hands every frame to ``on_frame`` as it
    arrives and says when the link comes up or goes down.
    """

    def __init__(
        self,
        gateway: Gateway,
        charger_id: str,
        name: str,
        endpoint: CsmsEndpoint,
        on_up: LinkCallback,
        on_frame: Callable[[str], None],
        on_down: LinkCallback,
        log: Any = None,
    ) -> None:
        self.gateway = gateway
        self.charger_id = charger_id
        self.name = name
        self.endpoint = endpoint
        self.url = charger_ids.upstream_url(endpoint.url, charger_id)
        self.log = log or get_logger(charger_id=charger_id)
        self._on_up = on_up
        self._on_frame = on_frame
        self._on_down = on_down
        self.ws: DirectClientConnection | None = None
        self.state = "down"
        self._ssl = gateway.client_ssl(name)
        self._counted = False
        self._stopping = False

    def _headers(self) -> dict[str, str]:
        headers = dict(self.endpoint.headers)
        env = self.endpoint.basic_auth_password_env
        if env:
            secret = os.environ.get(env, "")
            token = base64.b64encode(f"{self.charger_id}:{secret}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        return headers

    async def run(self) -> None:
        gw = self.gateway
        cfg = gw.config.upstream
        delay = cfg.reconnect_initial
        self._set_state("down")
        while not self._stopping:
            try:
                async with gw.connect_slots:
                    ws = await connect(
                        self.url,
                        subprotocols=[self.endpoint.ocpp.subprotocol],  # type: ignore[list-item]
                        additional_headers=self._headers(),
                        open_timeout=self.endpoint.connect_timeout,
                        ping_interval=gw.config.csms_keepalive.ping_interval,
                        ping_timeout=gw.config.csms_keepalive.ping_timeout,
                        close_timeout=gw.config.csms_keepalive.close_timeout,
                        compression=None,
                        max_size=gw.ws_max_size,
                        proxy=None,
                        user_agent_header="ocpp-migration-gateway",
                        ssl=self._ssl,
                        create_connection=DirectClientConnection,
                    )
            except (OSError, TimeoutError, InvalidHandshake) as exc:
                gw.metrics.upstream_connects.labels(self.name, "failed").inc()
                reason = f"HTTP {exc.response.status_code}" if isinstance(exc, InvalidStatus) else repr(exc)
                jitter = 1 + random.uniform(-cfg.reconnect_jitter, cfg.reconnect_jitter)
                wait = min(delay, cfg.reconnect_max) * jitter
                self.log.warning("upstream_connect_failed", csms=self.name, url=self.url, error=reason,
                                 retry_in=round(wait, 2))
                await asyncio.sleep(wait)
                delay = min(delay * 2, cfg.reconnect_max)
                continue
            if self._stopping:
                await ws.close()
                break
            if ws.subprotocol != self.endpoint.ocpp.subprotocol:
                self.log.warning("upstream_subprotocol_mismatch", csms=self.name,
                                 offered=self.endpoint.ocpp.subprotocol, selected=ws.subprotocol)
            gw.metrics.upstream_connects.labels(self.name, "ok").inc()
            delay = cfg.reconnect_initial
            assert isinstance(ws, DirectClientConnection)
            self.ws = ws
            self._set_state("up")
            self.log.info("upstream_connected", csms=self.name, url=self.url)
            self._guarded(self._on_up)
            ws.forget_handshake()
            try:
                ws.deliver_to(self._frame)
                await ws.closed()
            finally:
                self.ws = None
                self._set_state("down")
                self._guarded(self._on_down)
            if not self._stopping:
                self.log.warning("upstream_disconnected", csms=self.name, code=ws.close_code, reason=ws.close_reason)
                jitter = 1 + random.uniform(-cfg.reconnect_jitter, cfg.reconnect_jitter)
                await asyncio.sleep(cfg.reconnect_initial * jitter)

    def _frame(self, text: str) -> None:
        try:
            self._on_frame(text)
        except Exception as exc:  # one bad frame must not end the link
            self._callback_failed(exc)

    def _guarded(self, callback: LinkCallback) -> None:
        try:
            callback()
        except Exception as exc:  # nor a failing up/down callback
            self._callback_failed(exc)

    def _callback_failed(self, exc: Exception) -> None:
        self.gateway.metrics.problem("frame_handling_error")
        self.log.error("frame_handling_error", csms=self.name, error=repr(exc), exc_info=True)

    def _set_state(self, state: str) -> None:
        gauge = self.gateway.metrics.upstream_links
        if self._counted and self.state == state:
            return
        if self._counted:
            gauge.labels(self.name, self.state).dec()
        gauge.labels(self.name, state).inc()
        self._counted = True
        self.state = state

    def send(self, text: str) -> bool:
        ws = self.ws
        return ws is not None and ws.send_now(text)

    async def close(self) -> None:
        self._stopping = True
        ws = self.ws
        if ws is not None:
            await ws.close()
        if self._counted:
            self.gateway.metrics.upstream_links.labels(self.name, self.state).dec()
            self._counted = False


class ChargerConnection:
    """One connected charger: its WebSocket, its upstream link and its session."""

    def __init__(
        self,
        gateway: Gateway,
        charger_id: str,
        ws: DirectServerConnection,
        version: Version,
        route: Route,
        translator: Translator,
        ctx: Context,
    ) -> None:
        self.gateway = gateway
        self.charger_id = charger_id
        self.ws = ws
        self.version = version
        self.route = route
        self.translator = translator
        self.log = get_logger(charger_id=charger_id)
        self.connected_at = time.time()
        self.last_message_at: float | None = None
        endpoint = gateway.config.csms[route.primary]
        config = gateway.config
        entry = config.chargers.get(charger_id)
        limits = SessionLimits(
            call_timeout=endpoint.call_timeout or config.call_timeout,
            max_frame_bytes=config.max_frame_bytes,
            background_interval=config.held_retry_interval,
            validation=(entry.validation if entry and entry.validation else config.validation),
            validation_fixed=bool(entry and entry.validation),
            model_validation=tuple(config.validation_by_model.items()),
            repair_rules=gateway.repair_rules,
            max_waiting_calls=config.charger_calls.max_waiting,
            close_after_refused=config.charger_calls.close_after_refused,
        )
        self.session = ChargerSession(charger_id, translator, ctx, limits)
        self.upstream = UpstreamLink(
            gateway, charger_id, route.primary, endpoint,
            on_up=lambda: self.apply(self.session.link_up(Side.CSMS, time.time())),
            on_frame=self._csms_frame,
            on_down=lambda: self.apply(self.session.link_down(Side.CSMS, time.time())),
            log=self.log,
        )
        self.timers = SessionTimers(gateway, self.session, self.apply)
        self._closed = False
        # Schema violations seen on this connection: (side, action, path, outcome) -> [count, last message].
        self.violations: dict[tuple[str, str, str, str], list[Any]] = {}
        self._generation = 0
        self._upstream_task: asyncio.Task[None] | None = None
        self.shadow: ShadowLink | None = None
        if route.shadow is not None:
            self.shadow = self._make_shadow(route.shadow, limits)

    def _make_shadow(self, name: str, limits: SessionLimits) -> ShadowLink | None:
        from gateway.shadow import ShadowLink

        endpoint = self.gateway.config.csms[name]
        translator = registry.translator_for(self.version, endpoint.ocpp, self.session.ctx.options)
        if translator is None:
            self.log.warning("shadow_unsupported", csms=name, ocpp_version=self.version.value,
                             csms_ocpp_version=endpoint.ocpp.value)
            return None
        state = self.session.ctx.state.setdefault("shadow", {}).setdefault(name, {})
        return ShadowLink(self, name, endpoint, translator, state, limits)

    def save_state(self) -> None:
        try:
            self.gateway.store.save_state(self.charger_id, self.session.ctx.state)
        except (TypeError, ValueError) as exc:  # a translator put something that is not JSON into its state
            self.gateway.metrics.problem("state_not_saved")
            self.log.error("state_not_saved", error=repr(exc))

    def can_take_over(self, version: Version, route: Route) -> bool:
        """Whether a reconnect with this version and route can continue this session."""
        return not self._closed and version is self.version and route == self.route

    @property
    def upstream_state(self) -> str:
        return self.upstream.state

    async def run(self) -> None:
        """Relay until the charger goes away, then clean up."""
        self._upstream_task = asyncio.create_task(self.upstream.run(), name=f"upstream:{self.charger_id}")
        if self.shadow is not None:
            self.shadow.start()
        await self.serve(self.ws)

    async def serve(self, ws: DirectServerConnection) -> None:
        """Read from ``ws`` until it closes; a later ``serve`` (a reconnect) takes over the session.

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
            self.gateway.background(closing)
        ws.forget_handshake()
        if self.gateway.reading_paused:
            self.pause_reading(True)
        try:
            ws.deliver_to(self._charger_frame)
            await ws.closed()
        finally:
            if generation == self._generation:
                await self._teardown()

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
            self.gateway.metrics.problem("frame_handling_error")
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
        self.gateway.connection_closed(self)
        self.log.info("charger_disconnected", code=self.ws.close_code, reason=self.ws.close_reason)

    def apply(self, actions: list[Action]) -> None:
        """Carry out what the session decided, in order."""
        gw = self.gateway
        for action in actions:
            # Most frequent first: four records and two sends per relayed CALL.
            if isinstance(action, FrameRecord):
                gw.store.record(action)
                gw.metrics.frame(action.direction, action.peer, action.message_type, action.action, self.charger_id)
                if action.error_code is not None:
                    gw.metrics.callerror(action.direction, action.peer, action.error_code, self.charger_id)
            elif isinstance(action, Send):
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
            elif isinstance(action, SaveState):
                self.save_state()
            elif isinstance(action, RoundTrip):
                gw.metrics.observe_roundtrip(action.origin.value, action.action, action.seconds)
            elif isinstance(action, ValidationFailed):
                gw.metrics.validation_failure(action.side.value, action.version.value, action.action, self.charger_id)
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
                gw.metrics.problem(action.event)
                self.log.warning(action.event, **action.detail)
            elif isinstance(action, Disconnect) and action.side is Side.CHARGER:
                gw.background(asyncio.ensure_future(self.ws.close(code=action.code, reason=action.reason)))

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
        self.gateway.background(closing)

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
            "violations": [
                {"side": k[0], "action": k[1], "path": k[2], "outcome": k[3], "count": v[0], "last_error": v[1]}
                for k, v in self.violations.items()
            ],
        }


def _iso(ts: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


__all__ = ["ChargerConnection", "UpstreamLink", "websockets"]
