"""``DemoCsms``: a strict, recording CSMS for the demo and the end-to-end tests.

A real WebSocket server (``websockets`` asyncio) speaking OCPP 1.6J, 2.0.1
and 2.1 on ``ws://127.0.0.1:PORT/<anything>/<charger_id>``. It answers every
charger-initiated CALL validly, records every frame, connection, transaction
and meter reading per charger, checks everything it receives against the
schemas (violations are answered with the version's CALLERROR and recorded),
and can call a connected charger itself. Tests make it misbehave with
``misbehave`` (hang, delay, invalid answers, close, CALLERROR).

    async with DemoCsms() as csms:
        charger = SimCharger("CP1", Version.V16, csms.url)
        ...
        await csms.wait_for(lambda: csms.charger("CP1").transactions)
        assert not csms.violations
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from ssl import SSLContext
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import unquote

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from gateway.ocppj import ErrorKind, Version
from gateway.sim.payloads import ENERGY, POWER, minimal_payload, now_iso, reading
from gateway.sim.peer import (
    Changes,
    Counters,
    Endpoint,
    HandlerResult,
    Misbehaviour,
    MisbehaviourMode,
    Reject,
    SimFrame,
    Violation,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

CustomHandler = Callable[[str, Version, dict[str, Any]], "dict[str, Any] | Awaitable[dict[str, Any]]"]

_AUTH_16 = {"Accepted", "Blocked", "Expired", "Invalid", "ConcurrentTx"}


@dataclass(slots=True)
class MeterSample:
    """One meter reading the CSMS received (energy register in Wh, power in W)."""

    timestamp: str
    energy_wh: float | None
    power_w: float | None
    context: str | None


@dataclass(slots=True)
class CsmsTransaction:
    """A transaction as the CSMS saw it (1.6 Start/Stop/MeterValues or 2.x TransactionEvents)."""

    transaction_id: str
    charger_id: str
    version: Version
    connector_id: int | None = None
    evse_id: int | None = None
    id_token: str | None = None
    started_at: str | None = None
    stopped_at: str | None = None
    meter_start: float | None = None  # Wh
    meter_stop: float | None = None  # Wh
    stop_reason: str | None = None
    remote_start_id: int | None = None
    charging_state: str | None = None
    samples: list[MeterSample] = field(default_factory=list)
    seq_nos: list[int] = field(default_factory=list)
    events: list[str] = field(default_factory=list)  # 2.x eventType / 1.6 Start, Stop

    @property
    def active(self) -> bool:
        return self.stopped_at is None

    def _energies(self) -> list[float]:
        return [s.energy_wh for s in self.samples if s.energy_wh is not None]

    @property
    def energy_wh(self) -> float | None:
        """Energy delivered: stop (or latest) register minus start register."""
        energies = self._energies()
        start = self.meter_start if self.meter_start is not None else (energies[0] if energies else None)
        end = self.meter_stop if self.meter_stop is not None else (energies[-1] if energies else None)
        if start is None or end is None:
            return None
        return end - start

    @property
    def last_power_w(self) -> float | None:
        powers = [s.power_w for s in self.samples if s.power_w is not None]
        return powers[-1] if powers else None


@dataclass(slots=True)
class CsmsCharger:
    """Everything the CSMS knows about one charger id, kept across reconnects."""

    charger_id: str
    version: Version | None = None
    subprotocol: str | None = None
    path: str | None = None
    headers: Headers | None = None
    connected: bool = False
    connections: int = 0
    replaced: int = 0  # connections closed because the same id connected again
    boot: dict[str, Any] | None = None
    heartbeats: int = 0
    statuses: dict[tuple[int, int], str] = field(default_factory=dict)  # (evse or 0, connector) -> status
    transactions: dict[str, CsmsTransaction] = field(default_factory=dict)
    meter_samples: list[MeterSample] = field(default_factory=list)  # outside transactions
    reports: list[dict[str, Any]] = field(default_factory=list)  # NotifyReport payloads
    notifications: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # other CALLs, in order
    frames: deque[SimFrame] = field(default_factory=deque)
    violations: list[Violation] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    close_codes: list[int | None] = field(default_factory=list)
    session: CsmsSession | None = None

    def calls_in(self, action: str) -> list[dict[str, Any]]:
        """Payloads of the CALLs of ``action`` this charger sent, oldest first."""
        return [
            f.payload or {}
            for f in list(self.frames)
            if f.direction == "in" and f.message_type == "CALL" and f.action == action
        ]

    def status(self, connector: int = 1, evse_id: int | None = None) -> str | None:
        """Last reported status: 1.6 of connector ``connector``; 2.x of EVSE ``connector``
        connector 1, or of EVSE ``evse_id`` connector ``connector`` when ``evse_id`` is given."""
        if self.version is Version.V16:
            return self.statuses.get((0, connector))
        if evse_id is None:
            return self.statuses.get((connector, 1))
        return self.statuses.get((evse_id, connector))

    @property
    def active_transactions(self) -> list[CsmsTransaction]:
        return [t for t in self.transactions.values() if t.active]

    @property
    def finished_transactions(self) -> list[CsmsTransaction]:
        return [t for t in self.transactions.values() if not t.active]


class CsmsSession(Endpoint):
    """The CSMS end of one charger connection."""

    def __init__(self, csms: DemoCsms, state: CsmsCharger, version: Version) -> None:
        super().__init__(
            state.charger_id,
            version,
            frames=state.frames,
            violations=state.violations,
            changes=csms.changes,
            counters=csms.counters,
            misbehaviour=csms.misbehaviour,
        )
        self.errors = state.errors
        self.csms = csms
        self.state = state

    async def handle_call(self, action: str, payload: dict[str, Any]) -> HandlerResult:
        return await self.csms._handle(self, action, payload)

    def violation(self, description: str) -> None:
        self._violation(description)


class DemoCsms:
    """A CSMS for tests and the demo. See the module docstring."""

    def __init__(
        self,
        versions: Sequence[Version] = (Version.V21, Version.V201, Version.V16),
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        heartbeat_interval: int = 300,
        boot_status: str = "Accepted",
        auth: dict[str, str] | None = None,
        first_transaction_id: int = 1,
        keep_frames: int | None = None,
        max_size: int | None = 2**20,
        path_prefix: str = "/ocpp",
        ssl: SSLContext | None = None,
    ) -> None:
        self.versions = tuple(versions)
        self.ssl = ssl
        self.host = host
        self.port = port
        self.heartbeat_interval = heartbeat_interval
        self.boot_status = boot_status
        self.auth: dict[str, str] = dict(auth or {})  # id token -> status; absent: Accepted
        self.keep_frames = keep_frames
        self.max_size = max_size
        self.path_prefix = path_prefix
        self.chargers: dict[str, CsmsCharger] = {}
        self.misbehaviour: list[Misbehaviour] = []
        self.handlers: dict[str, CustomHandler] = {}  # action -> custom answer (wins over built-ins)
        self.changes = Changes()
        self.counters = Counters()
        self.refuse_status: int | None = None  # set: refuse every handshake with this HTTP status
        self.handshakes: list[tuple[str, list[str]]] = []  # (path, offered subprotocols)
        self.on_frame: Callable[[Endpoint, SimFrame], None] | None = None  # every session's frames
        self._tx_ids = itertools.count(first_transaction_id)
        self._server: Server | None = None
        self._handlers_running: set[asyncio.Task[Any]] = set()

    # ----------------------------------------------------------------- lifecycle

    @property
    def url(self) -> str:
        """The endpoint chargers (or the gateway) connect to; append ``/<charger_id>``."""
        scheme = "wss" if self.ssl is not None else "ws"
        return f"{scheme}://{self.host}:{self.port}{self.path_prefix}"

    async def start(self) -> DemoCsms:
        """Listen (on the same port as before when restarted, so 'CSMS comes back' works)."""
        self._server = await serve(
            self._connection,
            self.host,
            self.port,
            subprotocols=[v.subprotocol for v in self.versions],  # type: ignore[misc]
            compression=None,
            max_size=self.max_size,
            process_request=self._process_request,
            ssl=self.ssl,
        )
        if self.port == 0:
            self.port = self._server.sockets[0].getsockname()[1]
        log.info("demo CSMS listening on %s (%s)", self.url, ", ".join(v.value for v in self.versions))
        return self

    async def stop(self) -> None:
        """Close every connection (1001) and stop listening."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> DemoCsms:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        offered = [p.strip() for h in request.headers.get_all("Sec-WebSocket-Protocol") for p in h.split(",")]
        self.handshakes.append((request.path, offered))
        if self.refuse_status is not None:
            return connection.respond(self.refuse_status, "demo CSMS refuses connections\n")
        return None

    async def _connection(self, ws: ServerConnection) -> None:
        path = ws.request.path if ws.request else "/"
        charger_id = unquote(path.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1])
        version = Version.from_subprotocol(ws.subprotocol or "")
        if version is None or not charger_id:
            await ws.close(1002, "no OCPP subprotocol or charger id")
            return
        state = self.chargers.get(charger_id)
        if state is None:
            state = CsmsCharger(charger_id, frames=deque(maxlen=self.keep_frames))
            self.chargers[charger_id] = state
        old = state.session
        session = CsmsSession(self, state, version)
        session.on_frame = self.on_frame
        state.session = session
        state.version = version
        state.subprotocol = ws.subprotocol
        state.path = path
        state.headers = ws.request.headers if ws.request else None
        state.connected = True
        state.connections += 1
        if old is not None:
            state.replaced += 1
            await old.close(1000, "replaced by a new connection")
        log.info("demo CSMS: %s connected (OCPP %s)", charger_id, version.value)
        session._attach(ws)
        self.changes.notify()
        try:
            await session.wait_closed()
        finally:
            state.close_codes.append(ws.close_code)
            await session._cancel_tasks()
            if state.session is session:
                state.session = None
                state.connected = False
            self.changes.notify()

    # ----------------------------------------------------------------- test API

    def charger(self, charger_id: str) -> CsmsCharger:
        """The record of one charger id (KeyError if it never connected)."""
        return self.chargers[charger_id]

    @property
    def connected(self) -> list[str]:
        return [c.charger_id for c in self.chargers.values() if c.connected]

    @property
    def violations(self) -> list[Violation]:
        """Every rule any charger broke, oldest first."""
        return sorted((v for c in self.chargers.values() for v in c.violations), key=lambda v: v.ts)

    @property
    def errors(self) -> list[str]:
        """The CSMS's own failures (simulator bugs), per charger."""
        return [f"{c.charger_id}: {e}" for c in self.chargers.values() for e in c.errors]

    def transactions(self, charger_id: str | None = None) -> list[CsmsTransaction]:
        chargers: Iterable[CsmsCharger] = self.chargers.values() if charger_id is None else [self.chargers[charger_id]]
        return [t for c in chargers for t in c.transactions.values()]

    async def wait_for(self, predicate: Callable[[], T], timeout: float = 10.0) -> T:
        """Wait until ``predicate()`` is truthy (re-checked whenever a frame or connection changes)."""
        return await self.changes.wait_for(predicate, timeout)

    async def wait_connected(self, charger_id: str, timeout: float = 10.0) -> CsmsCharger:
        await self.wait_for(lambda: charger_id in self.chargers and self.chargers[charger_id].connected, timeout)
        return self.chargers[charger_id]

    def _session(self, charger_id: str) -> CsmsSession:
        state = self.chargers.get(charger_id)
        if state is None or state.session is None:
            raise ConnectionError(f"charger {charger_id} is not connected to the demo CSMS")
        return state.session

    async def call(
        self, charger_id: str, action: str, payload: dict[str, Any], timeout: float = 10.0, validate: bool = True
    ) -> dict[str, Any]:
        """Call a connected charger and return its CALLRESULT payload (see ``Endpoint.call`` for errors)."""
        return await self._session(charger_id).call(action, payload, timeout, validate)

    def send_call(
        self, charger_id: str, action: str, payload: dict[str, Any], unique_id: str | None = None
    ) -> Awaitable[dict[str, Any]]:
        """Send a CALL without validation or queueing (misbehaviour tests)."""
        return self._session(charger_id).send_call(action, payload, unique_id)

    async def send_raw(self, charger_id: str, text: str | bytes) -> None:
        await self._session(charger_id).send_raw(text)

    async def disconnect(self, charger_id: str, code: int = 1000, reason: str = "") -> None:
        await self._session(charger_id).close(code, reason)

    def misbehave(
        self, mode: MisbehaviourMode, action: str | None = None, charger_id: str | None = None, **options: Any
    ) -> Misbehaviour:
        """Misanswer matching charger CALLs (see ``Misbehaviour``); returns the rule (remove it to stop)."""
        rule = Misbehaviour(mode, action, charger_id=charger_id, **options)
        self.misbehaviour.append(rule)
        return rule

    def behave(self) -> None:
        """Drop every misbehaviour rule."""
        self.misbehaviour.clear()

    # ----------------------------------------------------------------- answers

    async def _handle(self, s: CsmsSession, action: str, payload: dict[str, Any]) -> HandlerResult:
        custom = self.handlers.get(action)
        if custom is not None:
            result = custom(s.charger_id, s.version, payload)
            if inspect.isawaitable(result):
                result = await result
            return result
        builtin = _BUILTINS.get(action)
        if builtin is not None:
            return builtin(self, s, payload)
        generic = minimal_payload(s.version, action, response=True)
        if generic is None:
            raise Reject(ErrorKind.NOT_SUPPORTED, f"the demo CSMS does not support {action}")
        s.state.notifications.append((action, payload))
        return generic

    def _auth(self, version: Version, token: str | None) -> str:
        status = self.auth.get(token or "", "Accepted")
        if version is Version.V16 and status not in _AUTH_16:
            return "Invalid"
        return status

    def _id_info(self, version: Version, token: str | None) -> dict[str, Any]:
        return {"status": self._auth(version, token)}

    def _boot(self, s: CsmsSession, p: dict[str, Any]) -> HandlerResult:
        s.state.boot = p
        return {"currentTime": now_iso(), "interval": self.heartbeat_interval, "status": self.boot_status}

    def _heartbeat(self, s: CsmsSession, p: dict[str, Any]) -> HandlerResult:
        s.state.heartbeats += 1
        return {"currentTime": now_iso()}

    def _authorize(self, s: CsmsSession, p: dict[str, Any]) -> HandlerResult:
        if s.version is Version.V16:
            return {"idTagInfo": self._id_info(s.version, p["idTag"])}
        return {"idTokenInfo": self._id_info(s.version, p["idToken"]["idToken"])}

    def _status(self, s: CsmsSession, p: dict[str, Any]) -> HandlerResult:
        if s.version is Version.V16:
            s.state.statuses[(0, p["connectorId"])] = p["status"]
        else:
            s.state.statuses[(p["evseId"], p["connectorId"])] = p["connectorStatus"]
        return {}

    @staticmethod
    def _samples(version: Version, meter_values: list[dict[str, Any]]) -> list[MeterSample]:
        out = []
        for mv in meter_values:
            energy = power = None
            context = None
            for sv in mv.get("sampledValue", []):
                e = reading(sv, version, ENERGY)
                w = reading(sv, version, POWER)
                energy = e if e is not None else energy
                power = w if w is not None else power
                context = sv.get("context", context)
            out.append(MeterSample(mv.get("timestamp", ""), energy, power, context))
        return out

    def _meter_values(self, s: CsmsSession, p: dict[str, Any]) -> HandlerResult:
        samples = self._samples(s.version, p["meterValue"])
        tx_id = p.get("transactionId")
        if tx_id is None:
            s.state.meter_samples.extend(samples)
        else:
            tx = s.state.transactions.get(str(tx_id))
            if tx is None:
                s.violation(f"MeterValues for unknown transaction {tx_id}")
                s.state.meter_samples.extend(samples)
            else:
                tx.samples.extend(samples)
        return {}

    def _start_transaction(self, s: CsmsSession, p: dict[str, Any]) -> HandlerResult:
        tx_id = next(self._tx_ids)
        tx = CsmsTransaction(
            str(tx_id),
            s.charger_id,
            s.version,
            connector_id=p["connectorId"],
            id_token=p["idTag"],
            started_at=p["timestamp"],
            meter_start=float(p["meterStart"]),
            events=["Start"],
        )
        s.state.transactions[tx.transaction_id] = tx
        return {"transactionId": tx_id, "idTagInfo": self._id_info(s.version, p["idTag"])}

    def _stop_transaction(self, s: CsmsSession, p: dict[str, Any]) -> HandlerResult:
        tx_id = str(p["transactionId"])
        tx = s.state.transactions.get(tx_id)
        if tx is None:
            s.violation(f"StopTransaction for unknown transaction {tx_id}")
            tx = CsmsTransaction(tx_id, s.charger_id, s.version)
            s.state.transactions[tx_id] = tx
        elif not tx.active:
            s.violation(f"StopTransaction for transaction {tx_id} that already stopped")
        tx.events.append("Stop")
        tx.stopped_at = p["timestamp"]
        tx.meter_stop = float(p["meterStop"])
        tx.stop_reason = p.get("reason", "Local")
        tx.samples.extend(self._samples(s.version, p.get("transactionData", [])))
        if "idTag" in p:
            return {"idTagInfo": self._id_info(s.version, p["idTag"])}
        return {}

    def _transaction_event(self, s: CsmsSession, p: dict[str, Any]) -> HandlerResult:
        info = p["transactionInfo"]
        tx_id = info["transactionId"]
        event = p["eventType"]
        tx = s.state.transactions.get(tx_id)
        if tx is None:
            if event != "Started":
                s.violation(f"TransactionEvent {event} for unknown transaction {tx_id}")
            tx = CsmsTransaction(tx_id, s.charger_id, s.version, started_at=p["timestamp"])
            s.state.transactions[tx_id] = tx
        elif event == "Started":
            s.violation(f"second TransactionEvent Started for transaction {tx_id}")
        elif not tx.active:
            s.violation(f"TransactionEvent {event} after Ended for transaction {tx_id}")
        if tx.seq_nos and p["seqNo"] <= tx.seq_nos[-1]:
            s.violation(f"TransactionEvent seqNo {p['seqNo']} after {tx.seq_nos[-1]} in transaction {tx_id}")
        tx.seq_nos.append(p["seqNo"])
        tx.events.append(event)
        if "evse" in p:
            tx.evse_id = p["evse"]["id"]
            tx.connector_id = p["evse"].get("connectorId", tx.connector_id)
        if "idToken" in p:
            tx.id_token = p["idToken"]["idToken"]
        tx.remote_start_id = info.get("remoteStartId", tx.remote_start_id)
        tx.charging_state = info.get("chargingState", tx.charging_state)
        samples = self._samples(s.version, p.get("meterValue", []))
        tx.samples.extend(samples)
        energies = [m.energy_wh for m in samples if m.energy_wh is not None]
        if tx.meter_start is None and energies:
            tx.meter_start = energies[0]
        if event == "Ended":
            tx.stopped_at = p["timestamp"]
            tx.stop_reason = info.get("stoppedReason", "Local")
            if energies:
                tx.meter_stop = energies[-1]
        if "idToken" in p:
            return {"idTokenInfo": self._id_info(s.version, p["idToken"]["idToken"])}
        return {}

    def _data_transfer(self, s: CsmsSession, p: dict[str, Any]) -> HandlerResult:
        s.state.notifications.append(("DataTransfer", p))
        answer: dict[str, Any] = {"status": "Accepted"}
        if "data" in p:
            answer["data"] = p["data"]  # echoed, so tests can check what arrived
        return answer

    def _notify_report(self, s: CsmsSession, p: dict[str, Any]) -> HandlerResult:
        s.state.reports.append(p)
        return {}

    def _sign_certificate(self, s: CsmsSession, p: dict[str, Any]) -> HandlerResult:
        s.state.notifications.append(("SignCertificate", p))
        return {"status": "Accepted"}


_BUILTINS: dict[str, Callable[[DemoCsms, CsmsSession, dict[str, Any]], HandlerResult]] = {
    "BootNotification": DemoCsms._boot,
    "Heartbeat": DemoCsms._heartbeat,
    "Authorize": DemoCsms._authorize,
    "StatusNotification": DemoCsms._status,
    "MeterValues": DemoCsms._meter_values,
    "StartTransaction": DemoCsms._start_transaction,
    "StopTransaction": DemoCsms._stop_transaction,
    "TransactionEvent": DemoCsms._transaction_event,
    "DataTransfer": DemoCsms._data_transfer,
    "NotifyReport": DemoCsms._notify_report,
    "SignCertificate": DemoCsms._sign_certificate,
}

__all__ = ["CsmsCharger", "CsmsSession", "CsmsTransaction", "DemoCsms", "MeterSample"]
