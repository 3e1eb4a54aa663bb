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
from dataclasses import dataclass, replace
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response
from websockets.protocol import State

import mappings
from adapters import registry
from adapters.base import Context
from gateway import charger_ids, charger_records, report, schemas, security
from gateway.cluster import Cluster, open_cluster
from gateway.compare import STATE_PREFIX, ChargerComparisons, readiness
from gateway.config import ConfigError, GatewayConfig, Route
from gateway.connection import ChargerConnection, ConnectionServices
from gateway.connection.ledger import open_transactions
from gateway.connection.services import ReplaySlots
from gateway.logs import get_logger
from gateway.metrics import GatewayMetrics
from gateway.ocppj import SUBPROTOCOLS, Version
from gateway.repair import RepairRule, load_rules
from gateway.routing import WHEN_VALUES, RouteChange, RouteChangeState, RouteError, When, check_route
from gateway.store import StoreError, iso_utc
from gateway.timers import TimerWheel
from gateway.transport import DirectServerConnection

if TYPE_CHECKING:
    from gateway.migration import PlanProgress, PlanRunner
    from gateway.vendors import VendorManager

_GATEWAY_STATE = report.GATEWAY_STATE  # gateway-wide state slot (route overrides until 0.x)
_ROUTE_KEY = report.ROUTE_KEY
_ROUTE_HISTORY = 5
_RECORD_SWEEP = 30.0  # seconds between checks of connected chargers' records (gateway.charger_records)
# Preference when a charger offers several versions and none equals its CSMS's.
_PREFERENCE = (Version.V21, Version.V201, Version.V16)
_STORE_RETRY_MAX = 5.0  # seconds between attempts to reach the store for a waiting charger


@dataclass(slots=True)
class _Admission:
    """What the handshake decided for a charger, handed from process_request to the handler."""

    charger_id: str
    version: Version
    route: Route


class Gateway:
    def __init__(self, config: GatewayConfig, store: Any = None, *, reuse_port: bool = False,
                 run_vendors: bool = True) -> None:
        """``reuse_port``: share the charger port with the other workers of this host (gateway.workers);
        ``run_vendors``: poll the vendor clouds here (one worker does it for the host)."""
        from gateway.store import open_store

        self.config = config
        self.reuse_port = reuse_port
        self.run_vendors = run_vendors
        self.metrics = GatewayMetrics(per_charger=config.metrics.per_charger)
        self.store = store or open_store(config.store, retention_days=config.retention_days)
        self.log = get_logger()
        self.connections: dict[str, ChargerConnection] = {}
        # Who holds which charger among the instances sharing the store; state is read from the store when a
        # session starts (no per-process copy: another instance may have served the charger since).
        self.cluster: Cluster = open_cluster(config.store, config.instance_id)
        self._claiming: dict[str, set[ServerConnection]] = {}  # sockets waiting for ownership or the store
        self._store_waiting = 0  # of them, how many wait because the store is unreachable
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
        self.route_changes: dict[str, RouteChange] = {}  # the latest change per charger, pending or settled
        self._route_records: dict[str, dict[str, Any]] = {}
        self._route_tasks: dict[str, asyncio.Future[None]] = {}
        self._route_locks: dict[str, asyncio.Lock] = {}
        adm = config.admission
        self._bucket = TokenBucket(adm.rate, adm.burst)
        self._services: ConnectionServices | None = None
        self.plans: PlanRunner | None = None  # migration plans (gateway.migration), from start() on
        # Every charger ever seen: identity, last-seen, last session's violations (gateway.charger_records).
        self.charger_records: dict[str, dict[str, Any]] = {}

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
        self.cluster.on_release = self._release_requested
        self.cluster.on_route_changed = self._route_changed_elsewhere
        await self.cluster.start()
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
        await self._load_routes()
        self.charger_records = {key.removeprefix(charger_records.RECORD_PREFIX): record for key, record in
                                (await self.store.load_states(charger_records.RECORD_PREFIX)).items()}
        self.background(asyncio.ensure_future(self._sweep_charger_records()))
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
            reuse_port=self.reuse_port,  # the kernel spreads new chargers over the workers listening here
        )
        if self.config.vendors and self.run_vendors:
            from gateway.vendors import VendorManager

            self.vendors = VendorManager(self)
            await self.vendors.start()
        from gateway.admin import make_admin_app

        self._admin_runner = web.AppRunner(make_admin_app(self, self.admin_token), access_log=None)
        await self._admin_runner.setup()
        self._admin_site = web.TCPSite(self._admin_runner, self.config.admin.host, self.config.admin.port)
        await self._admin_site.start()
        await self._start_plans()
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
        if self.plans is not None:  # first: a plan must not judge its wave by chargers the gateway is closing
            await self.plans.stop()
        if self.vendors is not None:
            await self.vendors.stop()
        if self._server is not None:
            self._server.close(close_connections=False)
        self.cluster.leaving()
        conns = list(self.connections.values())
        await asyncio.gather(*(c.shutdown() for c in conns), return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        if self._admin_runner is not None:
            await self._admin_runner.cleanup()
        for fut in list(self._background):
            fut.cancel()
        self.timers.close()
        await self.cluster.stop()
        await self.store.close()
        self.log.info("gateway_stopped", chargers=len(conns))

    async def _start_plans(self) -> None:
        """Load migration plans from the store and resume the running ones."""
        from gateway.migration import PlanBook, PlanRunner
        from gateway.migration.target import GatewayTarget

        self.plans = PlanRunner(GatewayTarget(self), PlanBook(self.store), publish=self._publish_plan,
                                lease=self.cluster)
        self.cluster.on_plan_changed = self.plans.changed_elsewhere
        await self.plans.start()

    def _publish_plan(self, progress: PlanProgress) -> None:
        self.metrics.migration_plan(progress.name, progress.status, progress.counts(), progress.wave_counts())

    @property
    def migration_plans(self) -> PlanRunner:
        assert self.plans is not None, "the gateway has not started"
        return self.plans

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
        csms_version = self.config.csms[admission.route.primary].ocpp
        translator = registry.translator_for(admission.version, csms_version, self.charger_options(cid))
        if translator is None:
            await ws.close(code=1008, reason="no translator for this version pair")
            return
        state = await self._claim(cid, ws)
        if state is None:  # the charger left while it waited
            return
        try:
            await self._serve_claimed(ws, admission, translator, state)
        finally:
            await self.cluster.release(cid, self.store.flush)

    async def _claim(self, cid: str, ws: ServerConnection) -> dict[str, Any] | None:
        """Hold the charger in the cluster and load its state from the store; None when it left meanwhile.

        The charger is never refused for the store: while the store (or the
        cluster's database) is unreachable its socket stays open, its CALLs wait
        unread in the connection, and this retries with backoff.
        """
        live = self.connections.get(cid)
        if live is not None and self.cluster.holds(cid):
            # A reconnect to the instance that holds the charger continues at once (no await before the
            # takeover: an answer in flight must find the new socket), from the live session's state.
            await self.cluster.acquire(cid, lambda: False)  # held here: counts the claim, never waits
            return live.session.ctx.state
        waiting = self._claiming.setdefault(cid, set())
        waiting.add(ws)
        claimed = False
        delay = 0.1
        waited_since: float | None = None
        self._setting_up += 1
        try:
            while ws.state is State.OPEN:
                try:
                    if not claimed:
                        claimed = await self.cluster.acquire(cid, lambda: ws.state is not State.OPEN)
                        if not claimed:
                            break
                    return await self.store.load_state(cid) or {}
                except StoreError as exc:  # ClusterError included
                    if waited_since is None:
                        waited_since = time.monotonic()
                        self._setting_up -= 1  # a charger waiting for the store is not a pending handshake
                        self.metrics.store_waits.inc()
                        self._store_waiting += 1
                        self.metrics.sessions_waiting_for_store.set(self._store_waiting)
                        self.log.warning("session_waiting_for_store", charger_id=cid, error=str(exc))
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, _STORE_RETRY_MAX)
            if claimed:
                await self.cluster.release(cid)
            return None
        finally:
            if waited_since is None:
                self._setting_up -= 1
            else:
                self._store_waiting -= 1
                self.metrics.sessions_waiting_for_store.set(self._store_waiting)
                self.log.info("session_store_wait_over", charger_id=cid,
                              waited=round(time.monotonic() - waited_since, 3))
            waiting.discard(ws)
            if not waiting:
                self._claiming.pop(cid, None)

    async def _serve_claimed(self, ws: DirectServerConnection, admission: _Admission, translator: Any,
                             state: dict[str, Any]) -> None:
        cid = admission.charger_id
        log = get_logger(charger_id=cid)
        csms_version = self.config.csms[admission.route.primary].ocpp
        options = self.charger_options(cid)
        while (old := self.connections.get(cid)) is not None:
            # OCPP: the newest connection for an id wins.
            self.metrics.sessions_replaced.inc()
            if old.can_take_over(admission.version, admission.route):
                if await old.serve(ws):
                    self._forget(old)
                return
            del self.connections[cid]
            await old.replace()
            state = old.session.ctx.state  # the live state, newer than the store's copy
        assert self._services is not None  # set in start(), before the server listens
        ctx = Context(cid, admission.version, csms_version, options=options, state=state)
        conn = ChargerConnection(self._services, cid, ws, admission.version, admission.route, translator, ctx)
        self.connections[cid] = conn
        self.metrics.chargers_connected.labels(admission.version.value).inc()
        self._keep_charger_record(conn)
        log.info("charger_connected", ocpp_version=admission.version.value, csms=admission.route.primary,
                 csms_ocpp_version=csms_version.value, translator=translator.name, remote=_remote(ws))
        if await conn.run():
            self._forget(conn)

    async def _release_requested(self, charger_id: str) -> None:
        """The charger connected to another instance: close this side; its state is written on the way out."""
        conn = self.connections.get(charger_id)
        sockets = {*self._claiming.get(charger_id, ()), *([conn.ws] if conn is not None else [])}
        if sockets:
            self.metrics.sessions_taken_over.inc()
            self.log.info("charger_taken_over", charger_id=charger_id, note="connected to another gateway instance")
        for ws in sockets:
            self.background(asyncio.ensure_future(ws.close(code=1000, reason="taken over by another gateway instance")))

    async def _route_changed_elsewhere(self, charger_id: str) -> None:
        """Another instance changed this charger's route: re-read its record and, holding the charger, switch hot.

        The instance that made the change waited for the transactions it could
        see in the store; a transaction that started since stays with the CSMS
        that started it (the connection drains it), as after a forced change.
        Nothing is stored or announced again, so the instances do not echo.
        """
        record = await self.store.load_state(_ROUTE_KEY + charger_id) or {}
        self._route_records[charger_id] = record
        route = record.get("override")
        if route is None:
            self.route_overrides.pop(charger_id, None)
        elif route.get("primary") in self.config.csms and route.get("shadow") in (None, *self.config.csms):
            self.route_overrides[charger_id] = Route(**route)
        change = record.get("change")
        if isinstance(change, dict):
            try:
                self.route_changes[charger_id] = RouteChange.from_dict(change)
            except (KeyError, ValueError, TypeError) as exc:
                self.log.warning("route_change_unreadable", charger_id=charger_id, error=repr(exc))
        conn = self.connections.get(charger_id)
        effective = self.route_for(charger_id)
        if conn is None or effective is None or conn.route == effective:
            return
        applied, why = await conn.change_route(effective)
        self.log.info("route_changed", charger_id=charger_id, route=effective.model_dump(), by="another instance",
                      applied=applied, reason=why)

    def _share_route(self, charger_id: str) -> None:
        """Announce a stored route record: the instance holding the charger applies it within a second."""
        if not self.cluster.shared:
            return

        async def share() -> None:
            try:
                await self.store.flush()  # the record is in the store before anyone reads it
                await self.cluster.notify_route(charger_id)
            except StoreError as exc:
                self.log.warning("route_not_shared", charger_id=charger_id, error=str(exc))

        self.background(asyncio.ensure_future(share()))

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

    async def set_route(
        self, charger_id: str, route: Route | None, *, when: When = "idle", deadline: float | None = None,
        force: bool = False, actor: str = "api",
    ) -> RouteChange:
        """Move a charger to ``route`` (None: back to the config file's route) without closing its socket.

        ``when="idle"``: the change waits while the current primary has open
        transactions and applies the moment the last one ends; at
        ``deadline`` (epoch seconds) ``force`` applies it anyway (the open
        transactions stay with their CSMS until they end), otherwise the
        change is cancelled. ``force`` without a deadline, or ``when="now"``,
        applies at once. Raises ``RouteError`` for a route that cannot be.
        docs/cutover.md tells the story.
        """
        if when not in WHEN_VALUES:
            raise RouteError(f"when must be one of {', '.join(WHEN_VALUES)}, not {when!r}")
        if self.cluster.shared and not self.cluster.reachable:  # the API answers 503
            raise StoreError("the cluster's database is unreachable: a route change could not reach the other "
                             "instances")
        if route is not None:
            check_route(route, self.config.csms)
        target = route or self.config.route_for(charger_id)
        if target is None:
            raise RouteError(f"{charger_id} has no route in the config file to go back to")
        check_route(target, self.config.csms)
        record = self._route_records.setdefault(charger_id, {"history": [], "version": 0})
        earlier = self.route_changes.get(charger_id)
        if earlier is not None and not earlier.settled:
            self._settle(earlier.settle(RouteChangeState.CANCELLED, "replaced by a newer route change"))
        record["version"] += 1
        change = RouteChange(charger_id, route, target, self.route_for(charger_id), RouteChangeState.PENDING,
                             when=when, deadline=deadline, force=force, actor=actor, version=record["version"])
        self.route_changes[charger_id] = change
        self.log.info("route_change_requested", charger_id=charger_id, route=target.model_dump(), when=when,
                      deadline=deadline, force=force, actor=actor)
        done = asyncio.get_running_loop().create_future()
        task = asyncio.ensure_future(self._carry_out(change, done))
        self._route_tasks[charger_id] = task
        self.background(task)
        return await asyncio.shield(done)

    def route_change(self, charger_id: str) -> RouteChange | None:
        """The charger's latest route change (pending, or how it ended), if any."""
        return self.route_changes.get(charger_id)

    def route_overridden(self, charger_id: str) -> bool:
        return charger_id in self.route_overrides

    def shadow_tally(self, charger_id: str, shadow: str) -> tuple[int, int]:
        kept = self.comparisons.get(charger_id)
        target = kept.targets.get(shadow) if kept is not None else None
        if target is None:
            return 0, 0
        total = target.total()
        return total.compared, total.differed

    def route_history(self, charger_id: str) -> list[dict[str, Any]]:
        """The charger's last few settled route changes, oldest first."""
        return list(self._route_records.get(charger_id, {}).get("history", []))

    async def _carry_out(self, change: RouteChange, first_answer: asyncio.Future[RouteChange]) -> None:
        """Drive one route change until it is applied, rejected or cancelled; the first state answers the caller."""
        cid = change.charger_id
        announced = False
        try:
            while not self._superseded(change):
                conn = self.connections.get(cid)
                previous = self.route_for(cid)
                assert change.target is not None
                owner = previous.primary if previous else change.target.primary
                open_now = conn.open_transactions(owner) if conn else await self._stored_open_transactions(cid, owner)
                past_deadline = change.deadline is not None and time.time() >= change.deadline
                at_once = change.when == "now" or (change.force and (change.deadline is None or past_deadline))
                # A shadow that goes away (or becomes the primary) must first see the end of every copy it got.
                copies = conn.shadow_copies() if conn and change.target and conn.route.shadow not in (
                    None, change.target.shadow) else []
                if not copies and (not open_now or at_once or owner == change.target.primary):
                    async with self._route_locks.setdefault(cid, asyncio.Lock()):  # one switch at a time
                        if not self._superseded(change):
                            change = await self._apply_change(self.connections.get(cid), change, open_now)
                    break
                if copies:
                    open_now = copies
                    shadow = conn.route.shadow if conn else "?"
                    owner = f"{shadow} (as shadow; force cannot hand a shadow's copies over)"
                if past_deadline:
                    change = change.settle(RouteChangeState.CANCELLED,
                                           f"deadline passed with transactions {', '.join(open_now)} open on "
                                           f"{owner} (force was not set)", open_transactions=tuple(open_now))
                    break
                if tuple(open_now) != change.open_transactions or not announced:
                    change = replace(change, open_transactions=tuple(open_now),
                                     reason=f"waiting for transactions {', '.join(open_now)} on {owner} to end")
                    self._store_route_record(cid, change)
                    self.route_changes[cid] = change
                    announced = True
                    if not first_answer.done():
                        first_answer.set_result(change)
                await self._transactions_may_have_changed(conn, change.deadline)
        except asyncio.CancelledError:
            if not first_answer.done():
                first_answer.set_result(self.route_changes.get(cid, change))
            raise
        except Exception as exc:  # a failed change must be reported, never crash the estate
            self.log.error("route_change_failed", charger_id=cid, error=repr(exc), exc_info=True)
            change = change.settle(RouteChangeState.REJECTED, f"internal error: {exc!r}")
        if self._superseded(change):
            if not change.settled:
                change = change.settle(RouteChangeState.CANCELLED, "replaced by a newer route change")
        else:
            self._settle(change)
        if not first_answer.done():
            first_answer.set_result(change)

    def _superseded(self, change: RouteChange) -> bool:
        """Whether a newer change for the same charger replaced this one (which then does nothing more)."""
        latest = self.route_changes.get(change.charger_id)
        return latest is not None and latest.version != change.version

    async def _transactions_may_have_changed(self, conn: ChargerConnection | None, deadline: float | None) -> None:
        """Until a transaction of the charger starts or ends, it (re)connects, or the deadline comes."""
        wait = 1.0 if deadline is None else max(0.0, min(1.0, deadline - time.time()))
        if conn is None:
            await asyncio.sleep(wait)
            return
        try:
            await asyncio.wait_for(conn.transactions_changed(), wait)
        except TimeoutError:
            pass

    async def _stored_open_transactions(self, cid: str, owner: str) -> list[str]:
        return open_transactions(await self.store.load_state(cid), owner)

    async def _apply_change(
        self, conn: ChargerConnection | None, change: RouteChange, open_now: list[str]
    ) -> RouteChange:
        """Switch the charger's traffic hot (or, if it is away, its route for when it comes back)."""
        cid = change.charger_id
        assert change.target is not None
        if conn is not None and conn.route != change.target:
            applied, why = await conn.change_route(change.target)
            if not applied:
                self.log.warning("route_change_rejected", charger_id=cid, reason=why)
                return change.settle(RouteChangeState.REJECTED, f"{why}; the charger stays on "
                                     f"{conn.route.primary}", open_transactions=tuple(open_now))
        if change.route is None:
            self.route_overrides.pop(cid, None)
        else:
            self.route_overrides[cid] = change.route
        if open_now and change.target.primary != (change.previous.primary if change.previous else None):
            reason = (f"applied; transactions {', '.join(open_now)} stay with "
                      f"{change.previous.primary if change.previous else '?'} until they end")
        elif conn is None and self.cluster.shared:
            holder = self.cluster.holders().get(cid)
            who = f"{holder.instance}, the gateway instance holding the charger," if holder is not None else \
                "the gateway instance holding the charger (if it is connected)"
            reason = f"applied; {who} switches it within a second"
        elif conn is None:
            reason = "applied; the charger is not connected and gets the new route when it connects"
        else:
            reason = None
        self.log.info("route_changed", charger_id=cid, route=change.target.model_dump(),
                      override=change.route is not None, draining=open_now or None)
        return change.settle(RouteChangeState.APPLIED, reason, open_transactions=tuple(open_now))

    def _settle(self, change: RouteChange) -> None:
        """Record how a change ended: the charger's route record (with a short history) is saved on its own."""
        cid = change.charger_id
        self.route_changes[cid] = change
        history: list[dict[str, Any]] = self._route_records.setdefault(cid, {"history": [], "version": 0})["history"]
        history.append(change.as_dict())
        del history[:-_ROUTE_HISTORY]
        self._store_route_record(cid, change)
        self._route_tasks.pop(cid, None)

    def _store_route_record(self, cid: str, change: RouteChange) -> None:
        record = self._route_records.setdefault(cid, {"history": [], "version": 0})
        override = self.route_overrides.get(cid)
        record.update(override=override.model_dump() if override else None, change=change.as_dict(),
                      version=max(int(record.get("version", 0)), change.version), updated_at=time.time())
        self.store.save_state(_ROUTE_KEY + cid, record)
        self._share_route(cid)

    async def _load_routes(self) -> None:
        """Route records, one per charger; the single blob of earlier versions is split into them once."""
        blob = await self.store.load_state(_GATEWAY_STATE) or {}
        records = {key[len(_ROUTE_KEY):]: rec for key, rec in (await self.store.load_states(_ROUTE_KEY)).items()}
        for cid, route in (blob.get("routes") or {}).items():
            if cid not in records:
                records[cid] = {"override": route, "history": [], "version": 1, "updated_at": time.time()}
                self.store.save_state(_ROUTE_KEY + cid, records[cid])
        if "routes" in blob:
            self.store.save_state(_GATEWAY_STATE, {k: v for k, v in blob.items() if k != "routes"})
        for cid, record in records.items():
            self._route_records[cid] = record
            route = record.get("override")
            if route is not None:
                if route.get("primary") in self.config.csms and route.get("shadow") in (None, *self.config.csms):
                    self.route_overrides[cid] = Route(**route)
                else:
                    self.log.warning("route_override_ignored", charger_id=cid, route=route,
                                     reason="names a CSMS that is no longer configured")
            change = record.get("change")
            if isinstance(change, dict):
                try:
                    loaded = RouteChange.from_dict(change)
                except (KeyError, ValueError, TypeError) as exc:
                    self.log.warning("route_change_unreadable", charger_id=cid, error=repr(exc))
                    continue
                self.route_changes[cid] = loaded
                if not loaded.settled:  # a change that was waiting when the gateway stopped waits again
                    done: asyncio.Future[RouteChange] = asyncio.get_running_loop().create_future()
                    task = asyncio.ensure_future(self._carry_out(loaded, done))
                    self._route_tasks[cid] = task
                    self.background(task)

    def _forget(self, conn: ChargerConnection) -> None:
        """A connection ended: it no longer counts, and its id is free (unless a newer one holds it)."""
        self.metrics.chargers_connected.labels(conn.version.value).dec()
        conn.save_state()  # the next session (here or on another instance) starts from the store's copy
        if self.connections.get(conn.charger_id) in (conn, None):  # not when a newer connection took over
            record = self._record_of(conn)
            self._save_charger_record(conn.charger_id, charger_records.at_disconnect(record, conn.describe(),
                                                                                      time.time()))
        if self.connections.get(conn.charger_id) is conn:
            del self.connections[conn.charger_id]

    def connected_count(self) -> int:
        return len(self.connections)

    def store_status(self) -> dict[str, Any]:
        """This instance's name and whether the store (and the cluster's database) answers."""
        reachable = self.cluster.reachable and not self.store.failing
        return {"instance": self.cluster.instance_id, "store": "ok" if reachable else "unreachable",
                "sessions_waiting_for_store": self._store_waiting}

    def is_connected(self, charger_id: str) -> bool:
        return charger_id in self.connections

    # ------------------------------------------------------------ charger records

    def _record_of(self, conn: ChargerConnection) -> dict[str, Any]:
        return charger_records.from_connection(
            self.charger_records.get(conn.charger_id), conn.describe(), conn.state.get("boot"),
            conn.last_message_at, conn.connected_at, self.cluster.instance_id)

    def _save_charger_record(self, cid: str, record: dict[str, Any]) -> None:
        self.charger_records[cid] = record
        self.store.save_state(charger_records.RECORD_PREFIX + cid, record)

    def _keep_charger_record(self, conn: ChargerConnection) -> None:
        """At connect: the charger is known from now on, with the identity of its last boot."""
        record = self._record_of(conn)
        record["disconnected_at"] = None
        self._save_charger_record(conn.charger_id, record)

    async def _sweep_charger_records(self) -> None:
        """While connected: a new boot's identity is written within a sweep, last-seen every few minutes."""
        while not self._stopping:
            await asyncio.sleep(_RECORD_SWEEP)
            for cid, conn in list(self.connections.items()):
                record = self._record_of(conn)
                if charger_records.sweep_due(self.charger_records.get(cid), record):
                    self._save_charger_record(cid, record)

    def _effective_policy(self, cid: str, model: str | None) -> str:
        """The validation policy a charger gets: its own setting, else by the model it reported, else the default."""
        entry = self.config.chargers.get(cid)
        if entry is not None and entry.validation:
            return entry.validation
        if model is not None and model in self.config.validation_by_model:
            return self.config.validation_by_model[model]
        return self.config.validation

    def describe_chargers(self) -> list[dict[str, Any]]:
        """Every known charger: connected (here or elsewhere), configured, or seen before (from its record)."""
        out = [c.describe() for c in self.connections.values()]
        for item in out:
            item["instance"] = self.cluster.instance_id
        elsewhere = {cid: h for cid, h in self.cluster.holders().items()
                     if h.instance != self.cluster.instance_id and cid not in self.connections}
        for cid, holder in elsewhere.items():
            out.append({**self._offline_view(cid), "connected": True, "instance": holder.instance,
                        "connected_since": iso_utc(holder.since)})
        for cid in sorted({*self.config.chargers, *self.charger_records, *self.route_overrides}):
            if cid not in self.connections and cid not in elsewhere:
                out.append(self._offline_view(cid))
        for item in out:
            route = self.route_for(item["id"])
            item["route"] = {"primary": route.primary, "shadow": route.shadow} if route else None
            item["route_source"] = "admin" if item["id"] in self.route_overrides else "config"
        return sorted(out, key=lambda d: d["id"])

    async def refresh_record(self, charger_id: str) -> None:
        """The record as the instance holding the charger (or that last held it) wrote it: this instance read
        the records at start only, and a charger that connected elsewhere since is unknown to it otherwise."""
        if charger_id in self.connections:
            return
        try:
            record = await self.store.load_state(charger_records.RECORD_PREFIX + charger_id)
        except StoreError:
            return  # the view from memory is the best there is while the store is away
        if record:
            self.charger_records[charger_id] = record

    def _offline_view(self, cid: str) -> dict[str, Any]:
        """A charger not connected here, as its record (and the config) remembers it."""
        record = self.charger_records.get(cid, {})
        entry = self.config.chargers.get(cid)
        version = record.get("ocpp_version") or (entry.ocpp.value if entry is not None and entry.ocpp else None)
        seen = record.get("last_seen")
        return {
            "id": cid, "ocpp_version": version, "vendor": record.get("vendor"), "model": record.get("model"),
            "firmware": record.get("firmware"), "connected": False,
            "connected_since": iso_utc(record["connected_since"]) if record.get("connected_since") else None,
            "disconnected_at": iso_utc(record["disconnected_at"]) if record.get("disconnected_at") else None,
            "last_message_at": iso_utc(seen) if seen else None, "instance": record.get("instance"),
            "upstream": {"state": "down"}, "validation_policy": self._effective_policy(cid, record.get("model")),
            "violations": list(record.get("violations") or []), "offline": record.get("offline"),
        }


    # ------------------------------------------------------------ migration

    def _migration_row(self, charger_id: str) -> dict[str, Any]:
        conn = self.connections.get(charger_id)
        if conn is not None:
            queued: int | None = conn.offline_depth()[0]
        else:  # as its last session left it (the store keeps the rows until it is back)
            queued = ((self.charger_records.get(charger_id) or {}).get("offline") or {}).get("queued")
        return report.charger_row(
            charger_id, self.route_for(charger_id), self.config.route_for(charger_id),
            self.comparisons.get(charger_id), conn.state if conn is not None else None,
            self.config.migration.ready_after,
            connected=conn is not None, offline_queue=queued,
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
