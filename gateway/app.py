"""The estate: the charger-facing WebSocket server, admission, routing, the admin HTTP server, the store.

``Gateway(config)`` is what ``ocpp-gateway run`` and ``ocpp-gateway demo``
start, and what the integration tests start on port 0. It owns every
``ChargerConnection`` and hands each one ``ConnectionServices``, never
itself; the admin API and the vendor runner see it through the Protocols in
``gateway.estate``. docs/architecture.md draws the layers.
"""

from __future__ import annotations

import asyncio
import ssl
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

import mappings
from adapters import registry
from adapters.base import Context
from gateway import charger_ids, report, schemas, security
from gateway.compare import STATE_PREFIX, ChargerComparisons, readiness
from gateway.config import ConfigError, GatewayConfig, Route
from gateway.connection import ChargerConnection, ConnectionServices
from gateway.connection.services import ReplaySlots
from gateway.logs import get_logger
from gateway.metrics import GatewayMetrics
from gateway.ocppj import SUBPROTOCOLS, Version
from gateway.repair import RepairRule, load_rules
from gateway.timers import TimerWheel
from gateway.transport import DirectServerConnection

if TYPE_CHECKING:
    from gateway.vendors import VendorManager

_GATEWAY_STATE = report.GATEWAY_STATE  # the store's state slot for gateway-wide state (route overrides)
# Preference when a charger offers several versions and none equals its CSMS's.
_PREFERENCE = (Version.V21, Version.V201, Version.V16)


@dataclass(slots=True)
class _Admission:
    """What the handshake decided for a charger, handed from process_request to the handler."""

    charger_id: str
    version: Version
    route: Route


class Gateway:
    def __init__(self, config: GatewayConfig, store: Any = None) -> None:
        from gateway.store import open_store

        self.config = config
        self.metrics = GatewayMetrics(per_charger=config.metrics.per_charger)
        self.store = store or open_store(config.store, retention_days=config.retention_days)
        self.log = get_logger()
        self.connections: dict[str, ChargerConnection] = {}
        self.states: dict[str, dict[str, Any]] = {}  # translation state per charger, survives reconnects
        self.comparisons: dict[str, ChargerComparisons] = {}  # shadow comparisons per charger (gateway.compare)
        self.connect_slots = asyncio.Semaphore(config.upstream.max_concurrent_connects)
        self.timers = TimerWheel()  # every session's CALL timeouts
        self.ws_max_size = max(config.max_frame_bytes * 4, 1 << 20)
        self.started_at = time.time()
        # Handshake decisions by connection; weak so a handshake that fails later leaves nothing behind.
        self.vendors: VendorManager | None = None
        self._secrets: dict[str, bytes] = {}
        self.admin_token: bytes | None = None  # SHA-256 of the admin API's bearer token, if one is required
        self._client_ssl: dict[str, ssl.SSLContext] = {}
        self._admissions: weakref.WeakKeyDictionary[ServerConnection, _Admission] = weakref.WeakKeyDictionary()
        self._setting_up = 0
        self._server: Server | None = None
        self._admin_runner: web.AppRunner | None = None
        self._admin_site: web.TCPSite | None = None
        self._background: set[asyncio.Future[Any]] = set()
        self._stopping = False
        self.repair_rules: tuple[RepairRule, ...] = ()
        # Routes set through the admin API (cut-over, roll-back); they win over the config file.
        self.route_overrides: dict[str, Route] = {}
        adm = config.admission
        self._bucket = TokenBucket(adm.rate, adm.burst)
        self._services: ConnectionServices | None = None

    # ------------------------------------------------------------ lifecycle

    def check(self) -> int:
        """Load every mapping table, translator and per-charger option; raise on the first problem.

        Returns the number of mapping rows. ``start`` runs this first, and
        ``ocpp-gateway check-config`` runs only this.
        """
        mappings.set_extra_dirs([Path(d) for d in self.config.mapping_dirs])
        rows = mappings.check_all()
        self.repair_rules = load_rules()
        registry.supported_pairs()  # import the translators now: a broken table stops start-up, not a charger
        self._check_charger_options()
        return rows

    async def start(self) -> None:
        self.check()
        self._secrets = security.charger_secrets(self.config)
        self.admin_token = security.admin_token_digest(self.config)
        listen_tls = self.config.listen.tls
        ssl_context = security.server_context(listen_tls) if listen_tls else None
        await self.store.start()
        self.store.on_pressure(self._store_pressure)
        self._services = ConnectionServices(
            config=self.config, store=self.store, metrics=self.metrics, timers=self.timers,
            connect_slots=self.connect_slots, client_ssl=self.client_ssl, background=self.background,
            reading_paused=lambda: bool(self.store.pressed), repair_rules=self.repair_rules,
            ws_max_size=self.ws_max_size, comparisons=self.comparisons,
            replay_slots=ReplaySlots(self.config.offline.replay_concurrency),
        )
        kept = self.config.migration.differences_kept
        for key, snapshot in (await self.store.load_states(STATE_PREFIX)).items():
            cid = key.removeprefix(STATE_PREFIX)
            self.comparisons[cid] = ChargerComparisons.restore(snapshot, kept)
        self.metrics.migration_chargers.source = self._readiness_counts
        saved = await self.store.load_state(_GATEWAY_STATE) or {}
        for cid, route in saved.get("routes", {}).items():
            if route.get("primary") in self.config.csms and route.get("shadow") in (None, *self.config.csms):
                self.route_overrides[cid] = Route(**route)
            else:
                self.log.warning("route_override_ignored", charger_id=cid, route=route,
                                 reason="names a CSMS that is no longer configured")
        # The messages every charger sends at once after a restart are compiled before listening; the rest on
        # first use (compiling all ~390 validators holds the GIL for seconds, right when a reconnect storm lands).
        schemas.warm_up(list(Version), schemas.HOT_ACTIONS)
        keep = self.config.charger_keepalive
        self._server = await serve(
            self._handle,
            self.config.listen.host,
            self.config.listen.port,
            process_request=self._process_request,
            select_subprotocol=self._select_subprotocol,  # type: ignore[arg-type]
            compression=None,  # per-connection deflate state costs ~300 KiB per charger
            max_size=self.ws_max_size,
            ping_interval=keep.ping_interval,
            ping_timeout=keep.ping_timeout,
            close_timeout=keep.close_timeout,
            server_header="ocpp-migration-gateway",
            ssl=ssl_context,
            # A reconnect storm of thousands: a short accept queue drops SYNs into TCP's 1-3-7-15 s retransmits.
            backlog=4096,
            create_connection=DirectServerConnection,
        )
        if self.config.vendors:
            from gateway.vendors import VendorManager

            self.vendors = VendorManager(self)
            await self.vendors.start()
        from gateway.admin import make_admin_app

        self._admin_runner = web.AppRunner(make_admin_app(self, self.admin_token), access_log=None)
        await self._admin_runner.setup()
        self._admin_site = web.TCPSite(self._admin_runner, self.config.admin.host, self.config.admin.port)
        await self._admin_site.start()
        self.log.info("gateway_started", listen=f"{self.config.listen.host}:{self.listen_port}",
                      admin=f"{self.config.admin.host}:{self.admin_port}", store=_redact(self.config.store),
                      csms={k: {"url": v.url, "ocpp": v.ocpp.value} for k, v in self.config.csms.items()})

    def client_ssl(self, csms: str) -> ssl.SSLContext | None:
        """The TLS context for a wss:// CSMS, built once per endpoint (a context per charger costs memory)."""
        endpoint = self.config.csms[csms]
        if not endpoint.url.startswith("wss://"):
            return None
        ctx = self._client_ssl.get(csms)
        if ctx is None:
            ctx = self._client_ssl[csms] = security.client_context(endpoint.tls)
        return ctx

    def charger_options(self, charger_id: str) -> dict[str, Any]:
        """The translator options of a configured charger (empty for unknown ones)."""
        entry = self.config.chargers.get(charger_id)
        if entry is None:
            return {}
        return {"id_token_type": entry.id_token_type, "connectors_per_evse": entry.connectors_per_evse,
                **entry.options}

    def _check_charger_options(self) -> None:
        """Build each configured charger's translators once, so a bad option stops start-up, not a charger."""
        for cid, entry in self.config.chargers.items():
            route = self.route_for(cid)
            if route is None:
                continue
            versions = [entry.ocpp] if entry.ocpp else list(Version)
            for name in (route.primary, route.shadow):
                if name is None:
                    continue
                for version in versions:
                    try:
                        registry.translator_for(version, self.config.csms[name].ocpp, self.charger_options(cid))
                    except Exception as exc:
                        raise ConfigError(f"chargers.{cid}.options: {exc}") from exc

    async def stop(self) -> None:
        """Close every charger (1001 going away) and upstream link, stop the servers, flush the store."""
        if self._stopping:
            return
        self._stopping = True
        if self.vendors is not None:
            await self.vendors.stop()
        if self._server is not None:
            self._server.close(close_connections=False)
        conns = list(self.connections.values())
        await asyncio.gather(*(c.shutdown() for c in conns), return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        if self._admin_runner is not None:
            await self._admin_runner.cleanup()
        for fut in list(self._background):
            fut.cancel()
        self.timers.close()
        await self.store.close()
        self.log.info("gateway_stopped", chargers=len(conns))

    @property
    def listen_port(self) -> int:
        assert self._server is not None
        return int(next(iter(self._server.sockets)).getsockname()[1])

    @property
    def admin_port(self) -> int:
        assert self._admin_site is not None and self._admin_site._server is not None
        sockets = self._admin_site._server.sockets  # type: ignore[attr-defined]
        return int(sockets[0].getsockname()[1])

    def background(self, fut: asyncio.Future[Any]) -> None:
        """Keep a reference to a fire-and-forget task so it isn't garbage-collected mid-flight."""
        self._background.add(fut)
        fut.add_done_callback(self._background.discard)

    # ------------------------------------------------------------ handshake

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Admit or refuse a charger at the HTTP handshake: id, route and version are decided here."""
        charger_id, id_problem = charger_ids.from_path(request.path, self.config.charger_ids.rules)
        if id_problem is not None:  # an id that could mean something else upstream is never admitted
            if not charger_id:
                return self._refuse(connection, HTTPStatus.NOT_FOUND, "no_charger_id", id_problem + "\n")
            return self._refuse(connection, HTTPStatus.BAD_REQUEST, "invalid_charger_id", id_problem + "\n")
        busy = len(self._admissions) + self._setting_up >= self.config.admission.max_pending
        if busy or not self._bucket.take(time.monotonic()):
            # A reconnect flood: ask the charger to come back shortly rather than queue without bound.
            self.metrics.connections_refused.labels("busy").inc()
            response = connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "gateway busy, retry shortly\n")
            response.headers["Retry-After"] = "1"
            return response
        route = self.route_for(charger_id)
        if route is None:
            return self._refuse(connection, HTTPStatus.NOT_FOUND, "unknown_charger",
                                f"unknown charger {charger_id!r}\n", charger_id)
        refusal = self._authenticate(connection, request, charger_id)
        if refusal is not None:
            return refusal
        csms_version = self.config.csms[route.primary].ocpp
        offered = _offered(request.headers)
        version = self._negotiate(offered, csms_version)
        if version is None:
            entry = self.config.chargers.get(charger_id)
            if not offered and entry is not None and entry.ocpp is not None:
                version = entry.ocpp  # a charger that offers no subprotocol but whose version is configured
            elif not offered:
                return self._refuse(
                    connection, HTTPStatus.BAD_REQUEST, "no_subprotocol",
                    "no OCPP subprotocol offered: send Sec-WebSocket-Protocol ocpp1.6, ocpp2.0.1 or ocpp2.1 "
                    "(or declare the charger's version with `ocpp:` in the gateway config)\n", charger_id)
            else:
                known = [p for p in offered if p in SUBPROTOCOLS]
                reason = ("none of the offered subprotocols is an OCPP version the gateway speaks"
                          if not known else
                          f"the gateway cannot translate {', '.join(known)} to the routed CSMS's "
                          f"ocpp{csms_version.value}")
                return self._refuse(connection, HTTPStatus.BAD_REQUEST, "unsupported_version",
                                    f"{reason} (offered: {', '.join(offered)})\n", charger_id)
        self._admissions[connection] = _Admission(charger_id, version, route)
        return None

    def _authenticate(self, connection: ServerConnection, request: Request, charger_id: str) -> Response | None:
        """Basic auth (profiles 1-2) and, with mutual TLS, the certificate CN (profile 3)."""
        tls = self.config.listen.tls
        if tls is not None and tls.require_client_cert:
            ssl_object = connection.transport.get_extra_info("ssl_object")
            cn = security.peer_common_name(ssl_object.getpeercert() if ssl_object else None)
            if cn != charger_id:
                return self._refuse(connection, HTTPStatus.FORBIDDEN, "certificate_mismatch",
                                    "the client certificate does not belong to this charger id\n", charger_id)
        digest = self._secrets.get(charger_id)
        if digest is None and not self.config.require_charger_auth:
            return None
        if digest is None or not security.basic_auth_ok(request.headers.get("Authorization"), charger_id, digest):
            response = self._refuse(connection, HTTPStatus.UNAUTHORIZED, "bad_credentials",
                                    "HTTP Basic credentials (user = charger id) are missing or wrong\n", charger_id)
            response.headers["WWW-Authenticate"] = 'Basic realm="ocpp", charset="UTF-8"'
            return response
        return None

    def _negotiate(self, offered: list[str], csms_version: Version) -> Version | None:
        versions = [v for v in (Version.from_subprotocol(p) for p in offered) if v is not None]
        if csms_version in versions:
            return csms_version
        for v in _PREFERENCE:
            if v in versions and registry.translator_for(v, csms_version) is not None:
                return v
        return None

    def _select_subprotocol(self, connection: ServerConnection, subprotocols: Sequence[str]) -> str | None:
        admission = self._admissions.get(connection)
        if admission is None:
            return None
        chosen = admission.version.subprotocol
        return chosen if chosen in subprotocols else None

    def _refuse(
        self, connection: ServerConnection, status: HTTPStatus, reason: str, text: str, charger_id: str | None = None
    ) -> Response:
        self.metrics.connections_refused.labels(reason).inc()
        self.log.warning("charger_refused", charger_id=charger_id, reason=reason, detail=text.strip(),
                         remote=_remote(connection))
        return connection.respond(status, text)

    # ------------------------------------------------------------ connections

    async def _handle(self, ws: ServerConnection) -> None:
        assert isinstance(ws, DirectServerConnection)
        admission = self._admissions.pop(ws, None)
        if admission is None:  # cannot happen: process_request admits every connection that gets here
            await ws.close(code=1011, reason="not admitted")
            return
        cid = admission.charger_id
        log = get_logger(charger_id=cid)
        csms_version = self.config.csms[admission.route.primary].ocpp
        options = self.charger_options(cid)
        translator = registry.translator_for(admission.version, csms_version, options)
        if translator is None:
            await ws.close(code=1008, reason="no translator for this version pair")
            return
        self._setting_up += 1
        try:
            state = self.states.get(cid)
            if state is None:
                state = await self.store.load_state(cid) or {}
                self.states[cid] = state
        finally:
            self._setting_up -= 1
        while (old := self.connections.get(cid)) is not None:
            # OCPP: the newest connection for an id wins.
            self.metrics.sessions_replaced.inc()
            if old.can_take_over(admission.version, admission.route):
                if await old.serve(ws):
                    self._forget(old)
                return
            del self.connections[cid]
            await old.replace()
        assert self._services is not None  # set in start(), before the server listens
        ctx = Context(cid, admission.version, csms_version, options=options, state=state)
        conn = ChargerConnection(self._services, cid, ws, admission.version, admission.route, translator, ctx)
        self.connections[cid] = conn
        self.metrics.chargers_connected.labels(admission.version.value).inc()
        log.info("charger_connected", ocpp_version=admission.version.value, csms=admission.route.primary,
                 csms_ocpp_version=csms_version.value, translator=translator.name, remote=_remote(ws))
        if await conn.run():
            self._forget(conn)

    def _store_pressure(self, pressed: bool) -> None:
        """The message-log writer fell behind (or caught up): stop (or resume) reading from chargers.

        Chargers' frames wait in their TCP buffers instead of being dropped from
        the log; what is already read is relayed and logged as usual.
        """
        self.metrics.store_backpressure.set(1 if pressed else 0)
        if pressed:
            self.metrics.store_backpressure_episodes.inc()
        self.log.warning("store_backpressure", paused_reading=pressed, chargers=len(self.connections),
                         queued=self.store.stats.get("queue_depth"))
        for conn in self.connections.values():
            conn.pause_reading(pressed)

    def route_for(self, charger_id: str) -> Route | None:
        """The charger's route: an admin override, else the config's (None: unknown and refused)."""
        return self.route_overrides.get(charger_id) or self.config.route_for(charger_id)

    async def set_route(self, charger_id: str, route: Route | None) -> Route | None:
        """Cut a charger over (or back): persist the override and reconnect the charger onto it.

        ``None`` removes the override, so the config file's route applies again.
        The charger is closed with 1012 (service restart); chargers reconnect
        on their own and land on the new route.
        """
        if route is None:
            self.route_overrides.pop(charger_id, None)
        else:
            for name in (route.primary, route.shadow):
                if name is not None and name not in self.config.csms:
                    raise KeyError(name)
            self.route_overrides[charger_id] = route
        self.store.save_state(_GATEWAY_STATE, {"routes": {k: v.model_dump() for k, v in self.route_overrides.items()}})
        effective = self.route_for(charger_id)
        self.log.info("route_changed", charger_id=charger_id,
                      route=effective.model_dump() if effective else None, override=route is not None)
        conn = self.connections.get(charger_id)
        if conn is not None and effective != conn.route:
            await conn.ws.close(code=1012, reason="route changed: reconnect")
        return effective

    def _forget(self, conn: ChargerConnection) -> None:
        """A connection ended: it no longer counts, and its id is free (unless a newer one holds it)."""
        self.metrics.chargers_connected.labels(conn.version.value).dec()
        if self.connections.get(conn.charger_id) is conn:
            del self.connections[conn.charger_id]

    def connected_count(self) -> int:
        return len(self.connections)

    def is_connected(self, charger_id: str) -> bool:
        return charger_id in self.connections

    def describe_chargers(self) -> list[dict[str, Any]]:
        """Connected chargers plus configured ones that are not connected."""
        out = [c.describe() for c in self.connections.values()]
        for item in out:
            item["route_source"] = "admin" if item["id"] in self.route_overrides else "config"
        for cid, entry in self.config.chargers.items():
            if cid not in self.connections:
                route = self.route_for(cid)
                out.append({"id": cid, "ocpp_version": entry.ocpp.value if entry.ocpp else None, "connected": False,
                            "route": {"primary": route.primary, "shadow": route.shadow} if route else None,
                            "upstream": {"state": "down"}, "last_message_at": None})
        return sorted(out, key=lambda d: d["id"])


    # ------------------------------------------------------------ migration

    def _migration_row(self, charger_id: str) -> dict[str, Any]:
        conn = self.connections.get(charger_id)
        return report.charger_row(
            charger_id, self.route_for(charger_id), self.config.route_for(charger_id),
            self.comparisons.get(charger_id), self.states.get(charger_id), self.config.migration.ready_after,
            connected=conn is not None,
        )

    def migration(self) -> dict[str, Any]:
        """Per charger: route, phase, comparisons, open transactions, readiness; with the estate's summary."""
        ids = sorted({*self.config.chargers, *self.connections, *self.comparisons, *self.route_overrides})
        return report.migration_view([self._migration_row(cid) for cid in ids], self.config.migration.ready_after)

    async def differences(self, charger_id: str, limit: int | None, action: str | None) -> list[dict[str, Any]] | None:
        """A charger's kept differing exchanges, newest last; None for a charger the gateway does not know."""
        book = self.comparisons.get(charger_id)
        if book is None:
            if self.route_for(charger_id) is None and charger_id not in self.connections:
                return None
            return []
        return [report.difference_view(charger_id, d) for d in book.latest(limit, action)]

    def _readiness_counts(self) -> dict[tuple[str, ...], float]:
        """Chargers compared against each CSMS, ready or not: the migration gauge, computed when scraped."""
        counts: dict[tuple[str, ...], float] = {}
        for cid, book in self.comparisons.items():
            route = self.route_for(cid)
            target = book.main_target((route.shadow, route.primary) if route else ())
            if target is None:
                continue
            ready = readiness(book, target, self.config.migration.ready_after)["ready"]
            key = (target, "ready" if ready else "not_ready")
            counts[key] = counts.get(key, 0) + 1
        return counts



class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.updated = time.monotonic()

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


def _offered(headers: Headers) -> list[str]:
    out: list[str] = []
    for value in headers.get_all("Sec-WebSocket-Protocol"):
        out.extend(p.strip() for p in value.split(",") if p.strip())
    return out


def _remote(ws: ServerConnection) -> str | None:
    try:
        addr = ws.remote_address
        return f"{addr[0]}:{addr[1]}" if addr else None
    except Exception:
        return None


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}"
    return url
