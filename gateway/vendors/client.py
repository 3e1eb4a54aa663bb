"""One vendor account's HTTP side: token, request budget, 429s, outages, the message log.

``VendorClient.run(flow, log_as)`` drives an adapter flow: every
``ApiRequest`` it yields is sent here and its ``ApiResponse`` fed back.
Around each request:

- the account's token is obtained, refreshed ahead of expiry, and on a 401
  refreshed (or the account logged in again) once before the request is
  retried; credentials come from the environment or a credentials file and
  never reach a log line or the message log;
- a client-side budget (token bucket, the adapter's documented limit unless
  ``options.request_budget: [requests, seconds]``) spaces requests;
- a 429 blocks *every* request of the account until its ``Retry-After`` (or
  an exponential backoff when there is none) has passed, then the request is
  retried: the account never hammers a rate-limited cloud;
- no answer, a timeout or a 5xx raises ``VendorUnavailable`` (the cloud is
  down; the caller decides what that means);
- the request (secrets masked) and its result go into the charger's message
  log as peer ``vendor:<adapter>`` (message type VENDOR_API), and the vendor
  metrics count calls, errors and rate-limit waits.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import time
import uuid
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import yaml

from adapters.vendor_base import (
    ApiRequest,
    ApiResponse,
    Credentials,
    Flow,
    Token,
    VendorAdapter,
    VendorAuthError,
    VendorUnavailable,
    redact,
)
from gateway.config import VendorAccount
from gateway.logs import get_logger
from gateway.records import FrameRecord
from gateway.vendors.metrics import VendorMetrics

T = TypeVar("T")
MAX_LOGGED_BODY = 4000  # characters of a response body kept in the message log


class CredentialsError(Exception):
    """The account's credentials are not configured (the message says where they were looked for)."""


def load_credentials(name: str, account: VendorAccount, environ: dict[str, str] | None = None) -> Credentials:
    """Username and password from the environment variables named in the config, or the credentials file.

    The file is YAML or JSON with ``username`` and ``password`` (optionally
    under a key named after the account).
    """
    env = os.environ if environ is None else environ
    username = env.get(account.username_env) if account.username_env else None
    password = env.get(account.password_env) if account.password_env else None
    if account.credentials_file and (username is None or password is None):
        path = Path(account.credentials_file).expanduser()
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise CredentialsError(f"vendors.{name}: cannot read credentials_file {path}: "
                                   f"{type(exc).__name__}") from None
        if isinstance(data, dict) and isinstance(data.get(name), dict):
            data = data[name]
        if not isinstance(data, dict):
            raise CredentialsError(f"vendors.{name}: credentials_file {path} must hold username and password")
        username = username if username is not None else data.get("username")
        password = password if password is not None else data.get("password")
    if not username or not password:
        where = [f"${v}" for v in (account.username_env, account.password_env) if v]
        if account.credentials_file:
            where.append(account.credentials_file)
        raise CredentialsError(f"vendors.{name}: no username/password (looked in {', '.join(where) or 'nothing'})")
    return Credentials(str(username), str(password))


class RequestBudget:
    """At most ``requests`` in any ``seconds`` window (a sliding log, as vendor clouds count)."""

    def __init__(self, requests: int, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.requests = max(1, int(requests))
        self.seconds = float(seconds)
        self.clock = clock
        self.sent: deque[float] = deque()

    def delay(self) -> float:
        """Reserve the next request's slot; return how long the caller must wait before sending it."""
        now = self.clock()
        while self.sent and now - self.sent[0] >= self.seconds:
            self.sent.popleft()
        wait = 0.0
        if len(self.sent) >= self.requests:
            wait = self.sent[-self.requests] + self.seconds - now
        self.sent.append(now + max(wait, 0.0))
        return max(wait, 0.0)


def retry_after(headers: Any, now: float | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), or None."""
    value = headers.get("Retry-After") if headers else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class VendorClient:
    def __init__(
        self,
        adapter: VendorAdapter,
        account_name: str,
        account: VendorAccount,
        credentials: Credentials,
        *,
        store: Any = None,
        metrics: VendorMetrics | None = None,
        account_log_id: str | None = None,
    ) -> None:
        self.adapter = adapter
        self.account_name = account_name
        self.account = account
        self.credentials = credentials
        self.store = store
        self.metrics = metrics
        self.base_url = (account.base_url or adapter.default_base_url).rstrip("/")
        self.log = get_logger(vendor_account=account_name, adapter=adapter.name)
        self.peer = f"vendor:{adapter.name}"
        self.account_log_id = account_log_id or f"vendor:{account_name}"
        options = account.options
        budget = options.get("request_budget") or adapter.request_budget
        self.budget = RequestBudget(int(budget[0]), float(budget[1]))
        self.timeout = float(options.get("http_timeout", 20.0))
        self.patience = float(options.get("rate_limit_patience", 600.0))  # longest a request waits out 429s
        self.max_backoff = float(options.get("rate_limit_max_backoff", 300.0))
        self.token: Token | None = None
        self.up: bool | None = None
        self._not_before = 0.0  # monotonic: no request of this account before (a 429's Retry-After)
        self._backoff = 1.0
        self._auth_lock = asyncio.Lock()
        self._pace_lock = asyncio.Lock()
        self._session: aiohttp.ClientSession | None = None
        self.calls = 0

    # ---------------------------------------------------------------- lifecycle

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        return self._session

    def _labels(self) -> tuple[str, str]:
        return self.adapter.name, self.account_name

    def _set_up(self, up: bool) -> None:
        if self.up is not up:
            if self.up is not None:
                self.log.warning("vendor_cloud_up" if up else "vendor_cloud_down", base_url=self.base_url)
            self.up = up
        if self.metrics is not None:
            self.metrics.cloud_up.labels(*self._labels()).set(1 if up else 0)

    # ---------------------------------------------------------------- flows

    async def run(self, flow: Flow[T], log_as: str | None = None) -> T:
        """Drive an adapter flow to its end (VendorUnavailable is thrown into it when the cloud fails)."""
        try:
            request = next(flow)
            while True:
                try:
                    response = await self.request(request, log_as)
                except VendorUnavailable as exc:
                    request = flow.throw(exc)
                else:
                    request = flow.send(response)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    async def request(self, req: ApiRequest, log_as: str | None = None) -> ApiResponse:
        """Send one request with auth, budget and rate-limit handling (see the module docstring)."""
        log_id = log_as or self.account_log_id
        started = time.monotonic()
        reauthed = False
        while True:
            await self._pace()
            token = await self.ensure_token() if req.auth else None
            resp = await self._send(req, log_id, token)
            if resp.status == 401 and req.auth and not reauthed:
                reauthed = True
                await self._reauthenticate(token)
                continue
            if resp.status == 401 and req.auth:
                self._error("auth")
                raise VendorAuthError(f"{req.label}: HTTP 401 after logging in again")
            if resp.status == 429:
                wait = retry_after(resp.headers)
                if wait is None:
                    wait = self._backoff
                    self._backoff = min(self._backoff * 2, self.max_backoff)
                if time.monotonic() + wait - started > self.patience:
                    self._error("http_4xx")
                    raise VendorUnavailable(f"{req.label}: still rate limited after {self.patience:.0f}s")
                self._block(wait, "retry_after")
                continue
            self._backoff = 1.0
            if resp.status >= 500:
                self._error("http_5xx")
                self._set_up(False)
                raise VendorUnavailable(f"{req.label}: HTTP {resp.status}")
            if resp.status >= 400:
                self._error("http_4xx")
            self._set_up(True)
            return resp

    # ---------------------------------------------------------------- auth

    async def ensure_token(self) -> Token:
        """A valid token: the current one, refreshed ahead of expiry, or a new login."""
        token = self.token
        if token is not None and not self._expiring(token):
            return token
        async with self._auth_lock:
            token = self.token
            if token is not None and not self._expiring(token):
                return token
            if token is not None:
                refreshed = await self._try_refresh(token)
                if refreshed is not None:
                    return refreshed
            return await self.login()

    def _expiring(self, token: Token) -> bool:
        margin = min(60.0, 0.1 * token.lifetime) if token.lifetime else 60.0
        return time.time() >= token.expires_at - margin

    async def login(self) -> Token:
        try:
            token = await self.run(self.adapter.login(self.credentials, time.time()), self.account_log_id)
        except VendorAuthError:
            self._error("auth")
            raise
        self.token = token
        self.log.info("vendor_login", expires_in=round(token.expires_at - time.time()))
        return token

    async def _try_refresh(self, token: Token) -> Token | None:
        flow = self.adapter.refresh(token, time.time())
        if flow is None:
            return None
        try:
            fresh = await self.run(flow, self.account_log_id)
        except VendorAuthError:
            self.log.info("vendor_token_refresh_refused")
            return None
        self.token = fresh
        return fresh

    async def _reauthenticate(self, stale: Token | None) -> None:
        async with self._auth_lock:
            if self.token is not stale and self.token is not None:
                return  # another request already did it
            if stale is not None:
                refreshed = await self._try_refresh(stale)
                if refreshed is not None:
                    return
            await self.login()

    # ---------------------------------------------------------------- pacing

    async def _pace(self) -> None:
        async with self._pace_lock:
            while True:
                wait = self._not_before - time.monotonic()
                if wait <= 0:
                    break
                await asyncio.sleep(wait)
            delay = self.budget.delay()
            if delay > 0:
                self._count_wait("budget", delay)
                await asyncio.sleep(delay)

    def _block(self, seconds: float, reason: str) -> None:
        self._not_before = max(self._not_before, time.monotonic() + seconds)
        self._count_wait(reason, seconds)
        self.log.info("vendor_rate_limited", wait=round(seconds, 3), reason=reason)

    def _count_wait(self, reason: str, seconds: float) -> None:
        if self.metrics is not None:
            self.metrics.rate_limit_waits.labels(*self._labels(), reason).inc()
            self.metrics.rate_limit_wait_seconds.labels(*self._labels()).inc(seconds)

    def _error(self, kind: str) -> None:
        if self.metrics is not None:
            self.metrics.api_errors.labels(*self._labels(), kind).inc()

    # ---------------------------------------------------------------- the wire

    async def _send(self, req: ApiRequest, log_id: str, token: Token | None) -> ApiResponse:
        uid = str(uuid.uuid4())
        self._record(log_id, "out", req.label, uid, req.summary())
        headers = {"Accept": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token.access_token}"
        kwargs: dict[str, Any] = {"headers": headers}
        if req.json is not None:
            kwargs["json"] = req.json
        if req.form is not None:
            kwargs["data"] = req.form
        if req.params:
            kwargs["params"] = req.params
        started = time.monotonic()
        self.calls += 1
        try:
            async with self._http().request(req.method, self.base_url + req.path, **kwargs) as r:
                raw = await r.read()
                status = r.status
                headers_in = {k: v for k, v in r.headers.items()}
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            kind = "timeout" if isinstance(exc, TimeoutError) else "connection"
            self._error(kind)
            self._count_call("error")
            self._set_up(False)
            self._record(log_id, "in", req.label, uid, {"error": type(exc).__name__, "detail": str(exc)[:200]},
                         error=kind)
            raise VendorUnavailable(f"{req.label}: {type(exc).__name__}") from None
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", "replace")
        self._count_call(str(status))
        elapsed = round((time.monotonic() - started) * 1000, 1)
        summary: dict[str, Any] = {"status": status, "elapsed_ms": elapsed}
        if body is not None:
            summary["json"] = _truncate(redact(body))
        if status == 429:
            summary["retry_after"] = headers_in.get("Retry-After")
        self._record(log_id, "in", req.label, uid, summary, error=None if status < 400 else f"HTTP {status}")
        return ApiResponse(status, body, headers_in)

    def _count_call(self, status: str) -> None:
        if self.metrics is not None:
            self.metrics.api_calls.labels(*self._labels(), status).inc()

    def _record(self, log_id: str, direction: str, action: str, uid: str, data: dict[str, Any],
                error: str | None = None) -> None:
        if self.store is None:
            return
        text = json.dumps(data, separators=(",", ":"), default=str)
        self.store.record(FrameRecord(time.time(), log_id, direction, self.peer, "", "VENDOR_API", action, uid, text,
                                      error_code=error))


def _truncate(body: Any) -> Any:
    text = json.dumps(body, default=str)
    if len(text) <= MAX_LOGGED_BODY:
        return body
    return {"truncated": True, "chars": len(text), "head": text[:MAX_LOGGED_BODY]}
