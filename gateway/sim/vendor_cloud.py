"""What the simulated vendor clouds (Easee, Zaptec) share: tokens, faults, rate limits, EV physics.

``CloudServer`` is an aiohttp app on 127.0.0.1 (port 0 by default) with a
middleware that does what a real vendor cloud does around its endpoints:
bearer tokens that expire (401), a sliding-window rate limit answered with
429 and ``Retry-After``, and on request a 429 storm or an outage (503 for
every request). It records every request (``hits``) and counts the ones a
client sent while a ``Retry-After`` it had been given was still running
(``early``): a client that honours rate limits keeps that at zero.

``SimPoint`` is one charge point's physics: an EV plugs in, is authorised,
draws ``min(limit, car max)`` and the energy registers grow with time
(``speedup`` makes an hour pass in a second). The vendor modules map it to
their own op modes and JSON.
"""

from __future__ import annotations

import asyncio
import math
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
F = TypeVar("F", bound=Callable[..., Any])
PUBLIC = "vendor_cloud_public"  # route attribute: no bearer token needed


def public(handler: F) -> F:
    """Mark a route handler as reachable without a token (login endpoints)."""
    setattr(handler, PUBLIC, True)
    return handler


@dataclass(slots=True)
class ApiHit:
    ts: float
    method: str
    path: str
    status: int = 0


@dataclass(slots=True)
class SimPoint:
    """One simulated charge point (single connector) and the EV at it."""

    id: str
    voltage: float = 230.0
    phases: int = 3
    max_current: float = 32.0  # the charger's own maximum (A)
    limit: float = 32.0  # the dynamic limit the cloud sets (A)
    online: bool = True
    enabled: bool = True
    auth_required: bool = False
    firmware: str = "1.0.0"
    latest_firmware: str = "1.0.1"
    lifetime_wh: float = 1_000_000.0
    # The EV
    car_connected: bool = False
    car_max_w: float = 11_000.0
    car_full: bool = False
    rfid: str | None = None
    # The session
    authorized: bool = False
    paused: bool = False
    session_wh: float = 0.0
    session_id: str | None = None
    session_start: float | None = None
    error: bool = False
    offline_until: float = 0.0  # rebooting
    last: float = field(default_factory=time.monotonic)
    speedup: float = 1.0

    @property
    def reachable(self) -> bool:
        return self.online and time.monotonic() >= self.offline_until

    @property
    def may_charge(self) -> bool:
        return (
            self.car_connected
            and (self.authorized or not self.auth_required)
            and not self.paused
            and self.enabled
            and not self.error
            and self.reachable
            and self.limit >= 6.0
        )

    @property
    def charging(self) -> bool:
        return self.may_charge and not self.car_full

    @property
    def power_w(self) -> float:
        if not self.charging:
            return 0.0
        return min(self.limit * self.voltage * self.phases, self.car_max_w)

    def advance(self) -> None:
        """Let the energy registers catch up with the clock."""
        now = time.monotonic()
        dt = max(0.0, now - self.last) * self.speedup
        self.last = now
        energy = self.power_w * dt / 3600.0
        self.session_wh += energy
        self.lifetime_wh += energy

    # -- what happens at the charger (test hooks)

    def plug_in(self, rfid: str | None = None) -> None:
        self.advance()
        self.car_connected = True
        self.car_full = False
        self.session_wh = 0.0
        self.session_start = time.time()
        self.rfid = rfid
        self.paused = False
        self.authorized = rfid is not None  # a card at the reader authorises at once
        self.session_id = None

    def unplug(self) -> None:
        self.advance()
        self.car_connected = False
        self.authorized = False
        self.paused = False
        self.car_full = False

    def reboot(self, seconds: float) -> None:
        self.advance()
        self.offline_until = time.monotonic() + seconds


class CloudServer:
    """A vendor cloud's HTTP side: routes come from subclasses, faults and limits from here."""

    def __init__(
        self,
        *,
        users: dict[str, str] | None = None,
        token_lifetime: float = 3600.0,
        rate_limit: tuple[int, float] | None = None,
        speedup: float = 1.0,
        reboot_seconds: float = 0.5,
    ) -> None:
        self.users = users if users is not None else {"user@example.com": "secret"}
        self.token_lifetime = token_lifetime
        self.rate_limit = rate_limit
        self.speedup = speedup
        self.reboot_seconds = reboot_seconds
        self.hits: list[ApiHit] = []
        self.outage = False
        self.early = 0  # requests that arrived while their Retry-After was still running
        self.logins = 0
        self.refreshes = 0
        self.commands: list[tuple[str, str, Any]] = []  # (charger id, command, body) the cloud carried out
        self._storm_left = 0
        self._storm_retry_after = 1.0
        self._blocked_until = 0.0
        self._blocked_since = 0.0
        self._window: list[float] = []
        self._tokens: dict[str, tuple[str, float]] = {}  # access token -> (user, monotonic expiry)
        self._refresh_tokens: dict[str, str] = {}  # refresh token -> the access token it was issued with
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    # ---------------------------------------------------------------- lifecycle

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        app = web.Application(middlewares=[self._middleware])
        self.routes(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        sockets = site._server.sockets  # type: ignore[union-attr]
        self.base_url = f"http://{host}:{sockets[0].getsockname()[1]}"
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> CloudServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ---------------------------------------------------------------- faults (test hooks)

    def storm(self, requests: int, retry_after: float = 1.0) -> None:
        """The next ``requests`` requests are answered 429 with ``Retry-After: retry_after``."""
        self._storm_left = requests
        self._storm_retry_after = retry_after

    def expire_tokens(self) -> None:
        """Every token issued so far stops working (as if their lifetime had run out)."""
        self._tokens.clear()

    def requests_to(self, path_part: str, method: str | None = None) -> list[ApiHit]:
        return [h for h in self.hits if path_part in h.path and (method is None or h.method == method)]

    # ---------------------------------------------------------------- tokens

    def issue_token(self, user: str) -> tuple[str, str]:
        access = secrets.token_urlsafe(24)
        refresh = secrets.token_urlsafe(24)
        self._tokens[access] = (user, time.monotonic() + self.token_lifetime)
        self._refresh_tokens[refresh] = access
        return access, refresh

    def token_valid(self, token: str) -> bool:
        entry = self._tokens.get(token)
        return entry is not None and time.monotonic() < entry[1]

    def redeem_refresh(self, access: str, refresh: str) -> bool:
        if self._refresh_tokens.get(refresh) != access:
            return False
        del self._refresh_tokens[refresh]
        self._tokens.pop(access, None)
        return True

    # ---------------------------------------------------------------- middleware

    def _retry_after(self, seconds: float) -> web.Response:
        now = time.monotonic()
        if now >= self._blocked_until:
            self._blocked_since = now
        self._blocked_until = max(self._blocked_until, now + seconds)
        header = str(max(1, math.ceil(seconds))) if seconds >= 1 else f"{seconds:.3f}"
        return web.json_response(
            {"title": "Too Many Requests", "status": 429}, status=429, headers={"Retry-After": header}
        )

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        hit = ApiHit(time.time(), request.method, request.path)
        self.hits.append(hit)
        now = time.monotonic()
        response: web.StreamResponse
        # In flight when the 429 went out is not hammering; arriving later, before Retry-After ran out, is.
        if now < self._blocked_until and now - self._blocked_since > 0.05:
            self.early += 1
        if self.outage:
            response = web.json_response({"title": "Service Unavailable", "status": 503}, status=503)
        elif self._storm_left > 0:
            self._storm_left -= 1
            response = self._retry_after(self._storm_retry_after)
        elif self._over_limit(now):
            oldest = self._window[0]
            response = self._retry_after(max(0.01, oldest + self.rate_limit[1] - now))  # type: ignore[index]
        elif not getattr(handler, PUBLIC, False) and not self._authorized(request):
            response = web.json_response({"title": "Unauthorized", "status": 401}, status=401)
        else:
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                hit.status = exc.status
                raise
        hit.status = response.status
        return response

    def _over_limit(self, now: float) -> bool:
        if self.rate_limit is None:
            return False
        count, per = self.rate_limit
        self._window = [t for t in self._window if now - t < per]
        if len(self._window) >= count:
            return True
        self._window.append(now)
        return False

    def _authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        return scheme.lower() == "bearer" and self.token_valid(token)

    # ---------------------------------------------------------------- helpers

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition not met within {timeout}s")
            await asyncio.sleep(0.01)
