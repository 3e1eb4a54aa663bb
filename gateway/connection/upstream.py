"""The gateway's own WebSocket to a charger's CSMS (primary or shadow)."""

from __future__ import annotations

import asyncio
import base64
import os
import random
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import connect
from websockets.exceptions import InvalidHandshake, InvalidStatus

from gateway import charger_ids
from gateway.config import CsmsEndpoint
from gateway.connection.services import ConnectionServices
from gateway.logs import get_logger
from gateway.transport import DirectClientConnection

LinkCallback = Callable[[], None]


class UpstreamLink:
    """The gateway's own WebSocket to a charger's CSMS, reconnecting with backoff while the charger stays.

    It knows nothing of OCPP: it hands every frame to ``on_frame`` as it
    arrives and says when the link comes up or goes down.
    """

    def __init__(
        self,
        services: ConnectionServices,
        charger_id: str,
        name: str,
        endpoint: CsmsEndpoint,
        on_up: LinkCallback,
        on_frame: Callable[[str], None],
        on_down: LinkCallback,
        log: Any = None,
    ) -> None:
        self.services = services
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
        self._ssl = services.client_ssl(name)
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
        svc = self.services
        cfg = svc.config.upstream
        delay = cfg.reconnect_initial
        self._set_state("down")
        told_down = False  # the session knows the CSMS cannot be reached (it answers the charger itself meanwhile)
        while not self._stopping:
            try:
                async with svc.connect_slots:
                    ws = await connect(
                        self.url,
                        subprotocols=[self.endpoint.ocpp.subprotocol],  # type: ignore[list-item]
                        additional_headers=self._headers(),
                        open_timeout=self.endpoint.connect_timeout,
                        ping_interval=svc.config.csms_keepalive.ping_interval,
                        ping_timeout=svc.config.csms_keepalive.ping_timeout,
                        close_timeout=svc.config.csms_keepalive.close_timeout,
                        compression=None,
                        max_size=svc.ws_max_size,
                        proxy=None,
                        user_agent_header="ocpp-migration-gateway",
                        ssl=self._ssl,
                        create_connection=DirectClientConnection,
                    )
            except (OSError, TimeoutError, InvalidHandshake) as exc:
                svc.metrics.upstream_connects.labels(self.name, "failed").inc()
                reason = f"HTTP {exc.response.status_code}" if isinstance(exc, InvalidStatus) else repr(exc)
                jitter = 1 + random.uniform(-cfg.reconnect_jitter, cfg.reconnect_jitter)
                wait = min(delay, cfg.reconnect_max) * jitter
                self.log.warning("upstream_connect_failed", csms=self.name, url=self.url, error=reason,
                                 retry_in=round(wait, 2))
                if not told_down:  # it never came up (or not again): once, not on every retry
                    told_down = True
                    self._guarded(self._on_down)
                await asyncio.sleep(wait)
                delay = min(delay * 2, cfg.reconnect_max)
                continue
            if self._stopping:
                await ws.close()
                break
            if ws.subprotocol != self.endpoint.ocpp.subprotocol:
                self.log.warning("upstream_subprotocol_mismatch", csms=self.name,
                                 offered=self.endpoint.ocpp.subprotocol, selected=ws.subprotocol)
            svc.metrics.upstream_connects.labels(self.name, "ok").inc()
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
                told_down = True
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
        self.services.metrics.problem("frame_handling_error")
        self.log.error("frame_handling_error", csms=self.name, error=repr(exc), exc_info=True)

    def _set_state(self, state: str) -> None:
        gauge = self.services.metrics.upstream_links
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
            self.services.metrics.upstream_links.labels(self.name, self.state).dec()
            self._counted = False
