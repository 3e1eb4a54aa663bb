"""Vendor cloud adapters: the interface, the registry and the OCPP 2.0.1 side they share.

A vendor adapter brings chargers that only talk to their manufacturer's
cloud into the gateway. It is split the same way as the translators: the
adapter is *pure* (no sockets, no clocks, no sleeping) and the runner
(``gateway.vendors``) does every bit of I/O.

Talking to the vendor's API is described as data. Each adapter operation is a
*flow*: a generator that yields ``ApiRequest`` (method, path, JSON body) and
receives the ``ApiResponse`` for it, then returns its result::

    def poll(self, charger, state):
        resp = yield ApiRequest("GET", f"/api/chargers/{charger.vendor_id}/state")
        return self._reading(charger, resp.json, state)

The runner sends the request with the account's token, refreshes the token
or logs in again on 401, waits out 429s (``Retry-After``) within a
client-side request budget, writes the request and its result to the
charger's message log, and throws ``VendorUnavailable`` into the flow when
the cloud cannot be reached (outage, 5xx, timeout). A flow may catch that
to answer differently; uncaught, the runner treats the cloud as down.

The OCPP side is common to every vendor and lives in this module as plain
functions: ``boot_notification`` (from the discovered charger),
``observe`` (a poll's ``Reading`` + the charger's previous state -> the
OCPP 2.0.1 CALLs a real charger would send: StatusNotification from the
op-mode table, TransactionEvent Started/Updated/Ended with the energy
register and power, seqNo, stoppedReason and idToken, Unavailable when the
charger or the cloud is unreachable) and ``handle_csms_call`` (a CSMS
command -> a flow of vendor requests -> the OCPP answer). An adapter only
says how its vendor does each thing: ``login``, ``discover``, ``poll`` and
the command primitives ``start``, ``stop``, ``set_current``, ``reboot``,
``set_available`` and ``update_firmware``; a primitive the vendor does not
have raises ``Unsupported`` and the CSMS gets the right OCPP rejection.

The gateway emits one canonical OCPP version, 2.0.1; its translators carry
it to a CSMS that speaks 1.6J or 2.1.

Adapters register by name (``register``) and third-party ones through the
Python entry-point group ``ocpp_gateway.vendor_adapters`` (name -> adapter
class); ``adapter_for(name, options)`` finds either.
"""

from __future__ import annotations

import abc
import copy
import importlib
import math
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib.metadata import entry_points
from typing import Any, ClassVar, TypeVar

import mappings
from gateway.ocppj import ErrorKind

ENTRY_POINT_GROUP = "ocpp_gateway.vendor_adapters"

# Body fields that are never written to a log, whatever the request.
SECRET_FIELDS = frozenset(
    {"password", "userName", "username", "accessToken", "refreshToken", "access_token", "refresh_token",
     "basicAuthPassword", "client_secret"}
)

T = TypeVar("T")

# ---------------------------------------------------------------- API requests as data


@dataclass(frozen=True, slots=True)
class ApiRequest:
    """One HTTP request to the vendor's API, relative to the account's ``base_url``."""

    method: str
    path: str
    json: Any = None
    form: dict[str, str] | None = None  # application/x-www-form-urlencoded (OAuth token endpoints)
    params: dict[str, str] | None = None
    auth: bool = True  # send the account's bearer token
    purpose: str = ""  # why (shown in the log): "poll", "RequestStartTransaction", ...

    @property
    def label(self) -> str:
        return f"{self.method} {self.path}"

    def summary(self) -> dict[str, Any]:
        """What the message log shows: the request with every secret masked."""
        out: dict[str, Any] = {"method": self.method, "path": self.path}
        if self.params:
            out["params"] = self.params
        if self.json is not None:
            out["json"] = redact(self.json)
        if self.form is not None:
            out["form"] = redact(self.form)
        if self.purpose:
            out["purpose"] = self.purpose
        return out


@dataclass(frozen=True, slots=True)
class ApiResponse:
    status: int
    json: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def redact(value: Any) -> Any:
    """A copy of a JSON value with secret fields replaced by "***"."""
    if isinstance(value, dict):
        return {k: ("***" if k in SECRET_FIELDS else redact(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


Flow = Generator[ApiRequest, ApiResponse, T]


class VendorUnavailable(Exception):
    """The vendor cloud cannot be reached or keeps failing (outage, 5xx, timeout, budget exhausted)."""


class VendorAuthError(Exception):
    """The vendor refused the account's credentials."""


class VendorApiError(Exception):
    """The vendor answered a request with an error the adapter did not expect."""

    def __init__(self, request: ApiRequest, response: ApiResponse) -> None:
        super().__init__(f"{request.label}: HTTP {response.status}")
        self.request = request
        self.response = response


class Unsupported(Exception):
    """Raised by a command primitive: this vendor cannot do that."""


def send(request: ApiRequest) -> Flow[ApiResponse]:
    """A flow of one request: ``resp = yield from send(req)``."""
    response = yield request
    return response


def expect_ok(request: ApiRequest) -> Flow[Any]:
    """Send ``request``; return its JSON body, or raise ``VendorApiError`` on a non-2xx answer."""
    response = yield request
    if not response.ok:
        raise VendorApiError(request, response)
    return response.json


def drive(flow: Flow[T], respond: Callable[[ApiRequest], ApiResponse]) -> T:
    """Run a flow synchronously, answering each request with ``respond`` (tests, tools)."""
    try:
        request = next(flow)
        while True:
            try:
                response = respond(request)
            except VendorUnavailable as exc:  # as the runner does when the cloud is down
                request = flow.throw(exc)
            else:
                request = flow.send(response)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


# ---------------------------------------------------------------- what adapters know


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str
    password: str = field(repr=False)


@dataclass(slots=True)
class Token:
    access_token: str = field(repr=False)
    expires_at: float  # unix seconds
    refresh_token: str | None = field(default=None, repr=False)
    lifetime: float = 0.0  # seconds the token was issued for (to refresh ahead of expiry)


@dataclass(slots=True)
class ChargerInfo:
    """A charger as discovery found it: enough for a BootNotification and for every request."""

    vendor_id: str
    vendor: str  # BootNotification chargingStation.vendorName
    model: str
    serial: str
    firmware: str | None = None
    name: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # vendor-specific (installation id, phases, ...)


@dataclass(slots=True)
class CompletedSession:
    """The vendor's own record of a finished charging session, when its API publishes one."""

    session_id: str | None
    energy_wh: float | None = None
    id_token: str | None = None
    stopped_locally: bool = False  # ended with the RFID card at the charger


@dataclass(slots=True)
class Reading:
    """One poll of a charger, in vendor-neutral terms (what ``observe`` needs)."""

    reachable: bool = True  # the cloud answered
    online: bool = True  # the charger is connected to its cloud
    op_mode: Any = None  # the vendor's own operating mode (for the log and the mapping table)
    connector_status: str = "Unavailable"  # OCPP 2.0.1 ConnectorStatusEnumType
    charging_state: str = "Idle"  # OCPP 2.0.1 ChargingStateEnumType
    ev_connected: bool = False
    charging: bool = False
    fault: bool = False
    power_w: float | None = None
    register_wh: float | None = None  # the energy register (Energy.Active.Import.Register)
    session_id: str | None = None  # the vendor's session id while one is running
    session_wh: float | None = None
    id_token: str | None = None  # the RFID card the vendor saw for the running session
    firmware: str | None = None
    voltage: float | None = None
    phases: int | None = None
    current_limit_a: float | None = None
    enabled: bool | None = None  # the vendor's own enable flag, when it publishes one
    completed: CompletedSession | None = None
    vendor: dict[str, Any] = field(default_factory=dict)  # vendor-specific extras for the adapter's commands
    # The adapter's own memory across polls (stored in the charger's state as "memo"; None: keep the old one).
    memo: dict[str, Any] | None = None

    @classmethod
    def unreachable(cls) -> Reading:
        return cls(reachable=False, online=False)


@dataclass(slots=True)
class OpMode:
    """One row of a vendor's op-mode table (``mappings/<vendor>_op_mode.yaml``)."""

    name: str
    connector_status: str
    charging_state: str
    ev_connected: bool
    charging: bool
    online: bool = True
    fault: bool = False


def op_mode_table(name: str) -> dict[int, OpMode]:
    """The vendor's operating mode -> OCPP table, keyed by the vendor's numeric mode."""
    out: dict[int, OpMode] = {}
    for row in mappings.rows(name):
        out[int(row["op_mode"])] = OpMode(
            name=str(row["name"]),
            connector_status=str(row["connector_status"]),
            charging_state=str(row.get("charging_state") or "Idle"),
            ev_connected=bool(row["ev_connected"]),
            charging=bool(row.get("charging", False)),
            online=bool(row.get("online", True)),
            fault=bool(row.get("fault", False)),
        )
    return out


UNKNOWN_MODE = OpMode("Unknown", "Unavailable", "Idle", ev_connected=False, charging=False)


# ---------------------------------------------------------------- the adapter interface


class VendorAdapter(abc.ABC):
    """One vendor's cloud API. Subclasses describe requests; they never perform them."""

    name: ClassVar[str]  # registry name, used in config (`adapter: easee`) and in the log peer
    vendor_name: ClassVar[str]  # BootNotification vendorName
    default_base_url: ClassVar[str]
    # The client-side request budget the runner keeps for one account: (requests, per seconds).
    request_budget: ClassVar[tuple[int, float]] = (60, 60.0)
    supports_native_ocpp: ClassVar[bool] = False

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        self.options: dict[str, Any] = dict(options or {})

    # ---- account

    @abc.abstractmethod
    def login(self, credentials: Credentials, now: float) -> Flow[Token]:
        """Log in; raise ``VendorAuthError`` when the credentials are refused."""

    def refresh(self, token: Token, now: float) -> Flow[Token] | None:
        """Refresh ``token``, or None when the vendor has no refresh (the runner logs in again)."""
        return None

    @abc.abstractmethod
    def discover(self) -> Flow[list[ChargerInfo]]:
        """Every charger the account can see."""

    # ---- per charger

    @abc.abstractmethod
    def poll(self, charger: ChargerInfo, state: dict[str, Any]) -> Flow[Reading]:
        """The charger's current state. ``state`` is read-only here (the previous poll's view)."""

    # ---- command primitives: a flow that returns when the vendor accepted, raises otherwise

    def start(self, charger: ChargerInfo, reading: Reading, state: dict[str, Any]) -> Flow[None]:
        raise Unsupported("start charging")

    def stop(self, charger: ChargerInfo, reading: Reading, state: dict[str, Any]) -> Flow[None]:
        raise Unsupported("stop charging")

    def set_current(self, charger: ChargerInfo, amps: float | None, reading: Reading) -> Flow[None]:
        """Limit the charger to ``amps`` per phase; None lifts the limit."""
        raise Unsupported("dynamic current limit")

    def reboot(self, charger: ChargerInfo) -> Flow[None]:
        raise Unsupported("reboot")

    def set_available(self, charger: ChargerInfo, available: bool) -> Flow[None]:
        raise Unsupported("enable/disable")

    def update_firmware(self, charger: ChargerInfo) -> Flow[None]:
        raise Unsupported("firmware update")

    # ---- migration to native OCPP

    def native_ocpp(self, charger: ChargerInfo, ocpp_url: str) -> Flow[dict[str, Any]]:
        """Point the charger at ``ocpp_url`` over its own OCPP (where the vendor can)."""
        raise Unsupported("switching to native OCPP")

    # ---- helpers for subclasses

    def option(self, key: str, default: T) -> T:
        value = self.options.get(key, default)
        return value  # type: ignore[no-any-return]


# ---------------------------------------------------------------- registry

AdapterFactory = Callable[[dict[str, Any]], VendorAdapter]

_BUILTIN: dict[str, str] = {"easee": "adapters.easee:EaseeAdapter", "zaptec": "adapters.zaptec:ZaptecAdapter"}
_REGISTERED: dict[str, AdapterFactory] = {}


def register(name: str, factory: AdapterFactory) -> None:
    """Make ``factory`` (usually a ``VendorAdapter`` subclass) the adapter named ``name``."""
    _REGISTERED[name] = factory


def _load(ref: str) -> AdapterFactory:
    module, _, attr = ref.partition(":")
    obj = getattr(importlib.import_module(module), attr)
    return obj  # type: ignore[no-any-return]


def _entry_points() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available() -> list[str]:
    """Every adapter name: registered, built-in and installed through the entry-point group."""
    return sorted(set(_REGISTERED) | set(_BUILTIN) | set(_entry_points()))


def adapter_for(name: str, options: dict[str, Any] | None = None) -> VendorAdapter:
    """A new adapter instance; ``KeyError`` (naming the known ones) for an unknown name."""
    factory = _REGISTERED.get(name)
    if factory is None and name in _BUILTIN:
        factory = _REGISTERED[name] = _load(_BUILTIN[name])
    if factory is None:
        ep = _entry_points().get(name)
        if ep is not None:
            factory = _REGISTERED[name] = ep.load()
    if factory is None:
        raise KeyError(f"no vendor adapter named {name!r} (known: {', '.join(available())})")
    adapter = factory(dict(options or {}))
    if not isinstance(adapter, VendorAdapter):
        raise TypeError(f"vendor adapter {name!r} is not a VendorAdapter: {adapter!r}")
    return adapter


# ---------------------------------------------------------------- OCPP 2.0.1: messages a charger sends

EVSE = {"id": 1, "connectorId": 1}
ENERGY = "Energy.Active.Import.Register"
POWER = "Power.Active.Import"

Message = tuple[str, dict[str, Any]]  # (action, payload) of a CALL the charger sends
Followup = tuple[str, dict[str, Any]]  # (command, payload) the runner runs through handle_csms_call


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def boot_notification(charger: ChargerInfo, reason: str = "PowerUp") -> dict[str, Any]:
    """BootNotificationRequest from what discovery found (fields cut to the schema's lengths)."""
    station: dict[str, Any] = {"model": charger.model[:20], "vendorName": charger.vendor[:50]}
    if charger.serial:
        station["serialNumber"] = charger.serial[:25]
    if charger.firmware:
        station["firmwareVersion"] = str(charger.firmware)[:50]
    return {"reason": reason, "chargingStation": station}


def new_state() -> dict[str, Any]:
    """A charger's vendor state before its first poll."""
    return {
        "status": None,  # last connectorStatus reported
        "tx": None,  # the open transaction, if any
        "available": True,  # what ChangeAvailability asked for
        "remote_start": None,
        "stop_requested": None,
        "pending_reset": False,
        "pending_availability": None,
        "profile": None,
        "applied_limit": None,
        "firmware": None,
        "firmware_request": None,
        "tx_count": 0,
    }


@dataclass(slots=True)
class Observation:
    messages: list[Message]
    state: dict[str, Any]
    followups: list[Followup] = field(default_factory=list)


def _sampled(value: float, measurand: str, unit: str, context: str) -> dict[str, Any]:
    return {"value": round(float(value), 3), "measurand": measurand, "context": context,
            "unitOfMeasure": {"unit": unit}}


def meter_value(reading: Reading, now: float, context: str, register_wh: float | None = None) -> list[dict[str, Any]]:
    """A TransactionEvent/MeterValues meterValue list: energy register (Wh) and power (W), if known."""
    register = register_wh if register_wh is not None else reading.register_wh
    samples = []
    if register is not None:
        samples.append(_sampled(register, ENERGY, "Wh", context))
    if reading.power_w is not None and context != "Transaction.End":
        samples.append(_sampled(reading.power_w, POWER, "W", context))
    if not samples:
        return []
    return [{"timestamp": iso(now), "sampledValue": samples}]


def _status(status: str, now: float) -> Message:
    return "StatusNotification", {"timestamp": iso(now), "connectorStatus": status, "evseId": 1, "connectorId": 1}


def _id_token(token: str | dict[str, Any] | None) -> dict[str, Any] | None:
    if token is None:
        return None
    if isinstance(token, dict):
        return token
    return {"idToken": token[:36], "type": "ISO14443"}


def _tx_event(
    event: str, tx: dict[str, Any], trigger: str, now: float, info: dict[str, Any],
    meter: list[dict[str, Any]], id_token: dict[str, Any] | None = None, offline: bool = False,
) -> Message:
    payload: dict[str, Any] = {
        "eventType": event,
        "timestamp": iso(now),
        "triggerReason": trigger,
        "seqNo": tx["seq"],
        "transactionInfo": {"transactionId": tx["id"], **info},
        "evse": dict(EVSE),
    }
    tx["seq"] += 1
    if offline:
        payload["offline"] = True
    if meter:
        payload["meterValue"] = meter
    if id_token is not None:
        payload["idToken"] = id_token
    return "TransactionEvent", payload


def _connector_status(reading: Reading, state: dict[str, Any]) -> str:
    if not reading.reachable or not reading.online:
        return "Unavailable"
    if not state.get("available", True) or reading.enabled is False:
        return "Unavailable" if reading.connector_status != "Faulted" else "Faulted"
    return reading.connector_status


def _end_reason(reading: Reading, tx: dict[str, Any], state: dict[str, Any]) -> tuple[str, str] | None:
    """(stoppedReason, triggerReason) when this reading ends the open transaction, else None."""
    if not reading.ev_connected:
        return "EVDisconnected", "EVDeparted"
    requested = state.get("stop_requested")
    if requested and not reading.charging:
        return str(requested["reason"]), str(requested["trigger"])
    vendor_session = tx.get("vendor_session")
    if vendor_session is not None and reading.session_id != vendor_session:
        # The vendor closed its session while the EV stayed plugged in (deauthorised at the charger or in its app).
        done = reading.completed
        if done is not None and done.session_id == vendor_session and done.stopped_locally:
            return "Local", "StopAuthorized"
        if reading.session_id is None:
            return "DeAuthorized", "Deauthorized"
        return "Other", "ChargingStateChanged"
    return None


def end_transaction(
    state: dict[str, Any], reading: Reading, now: float, stopped: str, trigger: str, offline: bool = False
) -> Message:
    """The Ended event of the open transaction (and forget it)."""
    tx = state["tx"]
    register = reading.register_wh if reading.reachable and reading.online else None
    done = reading.completed
    if register is None:
        register = tx.get("last_register")
    if register is not None and tx.get("last_register") is not None:
        register = max(register, tx["last_register"])  # a register never runs backwards
    id_token = None
    if not tx.get("id_token_sent"):
        id_token = _id_token(tx.get("id_token") or (done.id_token if done and done.session_id == tx.get(
            "vendor_session") else None) or reading.id_token)
    info = {"stoppedReason": stopped, "chargingState": reading.charging_state if reading.ev_connected else "Idle"}
    if not reading.reachable or not reading.online:
        info["chargingState"] = tx.get("charging_state", "Idle")
    meter = meter_value(reading, now, "Transaction.End", register) if register is not None else []
    msg = _tx_event("Ended", tx, trigger, now, info, meter, id_token, offline)
    state["tx"] = None
    state["stop_requested"] = None
    return msg


def observe(
    charger: ChargerInfo, reading: Reading, prev: dict[str, Any], now: float,
    new_id: Callable[[], str], meter_interval: float = 0.0,
) -> Observation:
    """The OCPP 2.0.1 CALLs this poll calls for, the charger's new state, and follow-up commands.

    Pure: ``prev`` is not modified. While the cloud or the charger is
    unreachable the connector is Unavailable and an open transaction stays
    open; when the charger comes back the transaction is continued or ended
    from what the vendor reports, so nothing is lost or started twice.
    """
    st = copy.deepcopy(prev) if prev else new_state()
    for key, value in new_state().items():
        st.setdefault(key, value)
    out: list[Message] = []
    followups: list[Followup] = []
    if reading.memo is not None:
        st["memo"] = reading.memo
    status = _connector_status(reading, st)
    live = reading.reachable and reading.online
    tx = st["tx"]

    if live and tx is not None:
        reason = _end_reason(reading, tx, st)
        if reason is not None:
            out.append(end_transaction(st, reading, now, *reason))
            tx = None

    if status != st["status"]:
        out.append(_status(status, now))
        st["status"] = status

    quiet = now < float(st.get("quiet_until") or 0)  # a rebooting charger may still look busy for a while
    if live and tx is None and reading.charging and not quiet:
        tx = _start_transaction(st, reading, now, new_id, out)
    elif live and tx is not None:
        _update_transaction(st, tx, reading, now, meter_interval, out)

    # Things that were waiting for this moment.
    remote = st.get("remote_start")
    if remote is not None:
        if now > remote.get("expires", now):
            st["remote_start"] = None
        elif live and reading.ev_connected and tx is None and not remote.get("dispatched"):
            remote["dispatched"] = True
            followups.append(("RequestStartTransaction", {**remote["request"], "_replay": True}))
    if live and st["tx"] is None:
        if st.get("pending_reset"):
            st["pending_reset"] = False
            followups.append(("Reset", {"type": "Immediate"}))
        if st.get("pending_availability"):
            followups.append(("ChangeAvailability", {"operationalStatus": st["pending_availability"]}))
            st["pending_availability"] = None
    if live and st.get("profile") is not None:
        limit = profile_limit_a(st["profile"], now, reading, charger)
        if limit != st.get("applied_limit"):
            followups.append(("_apply_limit", {}))
    if live and reading.firmware:
        request = st.get("firmware_request")
        if request is not None and st.get("firmware") and reading.firmware != st["firmware"]:
            out.append(("FirmwareStatusNotification", {"status": "Installed", "requestId": request}))
            st["firmware_request"] = None
        st["firmware"] = reading.firmware
    return Observation(out, st, followups)


def _start_transaction(
    st: dict[str, Any], reading: Reading, now: float, new_id: Callable[[], str], out: list[Message]
) -> dict[str, Any]:
    remote = st.get("remote_start")
    st["tx_count"] = int(st.get("tx_count", 0)) + 1
    tx: dict[str, Any] = {
        "id": new_id()[:36],
        "seq": 0,
        "vendor_session": reading.session_id,
        "start_register": reading.register_wh,
        "last_register": reading.register_wh,
        "last_power": reading.power_w,
        "last_update": now,
        "charging_state": reading.charging_state,
        "id_token": None,
        "id_token_sent": False,
    }
    info: dict[str, Any] = {"chargingState": reading.charging_state}
    id_token: dict[str, Any] | None = None
    trigger = "ChargingStateChanged"
    if remote is not None:
        info["remoteStartId"] = remote["request"]["remoteStartId"]
        id_token = remote["request"]["idToken"]
        trigger = "RemoteStart"
        st["remote_start"] = None
    elif reading.id_token:
        id_token = _id_token(reading.id_token)
        trigger = "Authorized"
    if id_token is not None:
        tx["id_token"] = id_token
        tx["id_token_sent"] = True
    st["tx"] = tx
    out.append(_tx_event("Started", tx, trigger, now, info, meter_value(reading, now, "Transaction.Begin"), id_token))
    return tx


def _update_transaction(
    st: dict[str, Any], tx: dict[str, Any], reading: Reading, now: float, meter_interval: float,
    out: list[Message],
) -> None:
    register = reading.register_wh
    if register is not None and tx.get("last_register") is not None:
        register = max(register, tx["last_register"])
    changed_state = reading.charging_state != tx.get("charging_state")
    id_token = None
    if not tx.get("id_token_sent") and reading.id_token:
        id_token = _id_token(reading.id_token)
    due = now - float(tx.get("last_update", 0)) >= meter_interval
    moved = register != tx.get("last_register") or reading.power_w != tx.get("last_power")
    if not (changed_state or id_token is not None or (due and moved)):
        return
    if changed_state:
        trigger = "ChargingStateChanged"
    elif id_token is not None:
        trigger = "Authorized"
    else:
        trigger = "MeterValuePeriodic"
    info = {"chargingState": reading.charging_state} if changed_state else {}
    meter = meter_value(reading, now, "Sample.Periodic", register)
    out.append(_tx_event("Updated", tx, trigger, now, info, meter, id_token))
    if id_token is not None:
        tx["id_token"] = id_token
        tx["id_token_sent"] = True
    tx["charging_state"] = reading.charging_state
    tx["last_register"] = register
    tx["last_power"] = reading.power_w
    tx["last_update"] = now
    st["tx"] = tx


def triggered_messages(requested: str, reading: Reading, state: dict[str, Any], now: float) -> list[Message]:
    """The CALLs a TriggerMessage asks for, from a fresh poll (``state`` is updated in place)."""
    if requested == "StatusNotification":
        status = _connector_status(reading, state)
        state["status"] = status
        return [_status(status, now)]
    if requested == "Heartbeat":
        return [("Heartbeat", {})]
    if requested == "MeterValues":
        meter = meter_value(reading, now, "Trigger")
        return [("MeterValues", {"evseId": 1, "meterValue": meter})] if meter else []
    if requested == "TransactionEvent" and state.get("tx") is not None:
        tx = state["tx"]
        return [_tx_event("Updated", tx, "Trigger", now, {"chargingState": reading.charging_state},
                          meter_value(reading, now, "Trigger"))]
    if requested == "FirmwareStatusNotification":
        request = state.get("firmware_request")
        if request is not None:
            return [("FirmwareStatusNotification", {"status": "Installing", "requestId": request})]
        return [("FirmwareStatusNotification", {"status": "Idle"})]
    return []


# ---------------------------------------------------------------- charging profiles -> amps


def _amps(limit: float, unit: str, phases: int | None, reading: Reading, charger: ChargerInfo) -> float:
    if unit == "A":
        return float(limit)
    voltage = reading.voltage or float(charger.extra.get("voltage") or 230.0)
    n = phases or reading.phases or int(charger.extra.get("phases") or 3)
    return float(limit) / (voltage * max(n, 1))


def profile_limit_a(profile: dict[str, Any], now: float, reading: Reading, charger: ChargerInfo) -> float | None:
    """The per-phase current limit a stored charging profile asks for at ``now`` (None: no limit now)."""
    valid_from = profile.get("validFrom")
    valid_to = profile.get("validTo")
    if valid_from and _parse_ts(valid_from) > now:
        return None
    if valid_to and _parse_ts(valid_to) <= now:
        return None
    limits = []
    for schedule in profile.get("chargingSchedule", []):
        start = schedule.get("startSchedule")
        if profile.get("chargingProfileKind") == "Relative" or not start:
            origin = float(profile.get("_received", now))
        else:
            origin = _parse_ts(start)
        elapsed = now - origin
        duration = schedule.get("duration")
        if profile.get("chargingProfileKind") == "Recurring" and origin <= now:
            period = 86400.0 if profile.get("recurrencyKind", "Daily") == "Daily" else 7 * 86400.0
            elapsed = math.fmod(elapsed, period)
        if elapsed < 0 or (duration is not None and elapsed >= duration):
            continue
        active = None
        for p in sorted(schedule.get("chargingSchedulePeriod", []), key=lambda p: p["startPeriod"]):
            if p["startPeriod"] <= elapsed:
                active = p
        if active is not None:
            limits.append(_amps(active["limit"], schedule.get("chargingRateUnit", "A"), active.get("numberPhases"),
                                reading, charger))
    if not limits:
        return None
    return float(math.floor(min(limits) * 10) / 10)


def _parse_ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


# ---------------------------------------------------------------- CSMS commands


@dataclass(slots=True)
class CommandOutcome:
    """How a CSMS command ends: the CALLRESULT (or a CALLERROR) and what the charger does next."""

    response: dict[str, Any] | None = None
    error: tuple[ErrorKind, str] | None = None
    messages: list[Message] = field(default_factory=list)  # CALLs to send after the answer
    followups: list[Followup] = field(default_factory=list)  # more commands for the runner ("_poll", ...)
    note: str | None = None  # why (for the log)


def rejected(reason: str, info: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {"status": "Rejected", "statusInfo": {"reasonCode": reason[:20]}}
    if info:
        out["statusInfo"]["additionalInfo"] = info[:512]
    return out


def _not_supported(action: str, why: str) -> CommandOutcome:
    return CommandOutcome(error=(ErrorKind.NOT_SUPPORTED, f"{action}: {why}"), note=why)


TRIGGERABLE = ("StatusNotification", "Heartbeat", "MeterValues", "TransactionEvent", "FirmwareStatusNotification",
               "BootNotification")


def handle_csms_call(
    adapter: VendorAdapter, charger: ChargerInfo, action: str, payload: dict[str, Any],
    reading: Reading | None, state: dict[str, Any], now: float,
) -> Flow[CommandOutcome]:
    """A CSMS command (or a follow-up) -> vendor requests -> the OCPP answer. Updates ``state`` in place."""
    for key, value in new_state().items():
        state.setdefault(key, value)
    reading = reading or Reading.unreachable()
    handler = _HANDLERS.get(action)
    if handler is None:
        return _not_supported(action, f"{adapter.vendor_name} chargers cannot do {action} through the cloud API")
    try:
        outcome: CommandOutcome = yield from handler(adapter, charger, payload, reading, state, now)
    except Unsupported as exc:
        outcome = _unsupported_answer(action, f"{adapter.vendor_name} cloud API has no {exc}")
    except VendorUnavailable as exc:
        outcome = CommandOutcome(response=rejected("CloudUnavailable", str(exc)), note=f"cloud unavailable: {exc}")
    except VendorApiError as exc:
        outcome = CommandOutcome(response=rejected("VendorRejected", str(exc)), note=f"vendor refused: {exc}")
    return outcome


def _unsupported_answer(action: str, why: str) -> CommandOutcome:
    # Actions whose answer has a Rejected status get it; the rest a CALLERROR NotSupported.
    if action in ("RequestStartTransaction", "RequestStopTransaction", "SetChargingProfile", "Reset",
                  "ChangeAvailability", "UpdateFirmware", "ClearChargingProfile"):
        if action == "ClearChargingProfile":
            return CommandOutcome(response={"status": "Unknown", "statusInfo": {"reasonCode": "UnsupportedByVendor",
                                                                                "additionalInfo": why[:512]}},
                                  note=why)
        return CommandOutcome(response=rejected("UnsupportedByVendor", why), note=why)
    return _not_supported(action, why)


HandlerFn = Callable[
    [VendorAdapter, ChargerInfo, dict[str, Any], Reading, dict[str, Any], float], Flow[CommandOutcome]
]


def _offline(reading: Reading) -> CommandOutcome | None:
    if not reading.reachable:
        return CommandOutcome(response=rejected("CloudUnavailable"), note="the vendor cloud is unreachable")
    if not reading.online:
        return CommandOutcome(response=rejected("ChargerOffline"), note="the charger is offline in its cloud")
    return None


def _request_start(
    adapter: VendorAdapter, charger: ChargerInfo, p: dict[str, Any], reading: Reading, st: dict[str, Any], now: float
) -> Flow[CommandOutcome]:
    replay = bool(p.get("_replay"))
    request = {k: v for k, v in p.items() if not k.startswith("_")}
    if request.get("evseId") not in (None, 1):
        return CommandOutcome(response=rejected("UnknownEvse"), note=f"evse {request.get('evseId')} does not exist")
    if (off := _offline(reading)) is not None:
        return off
    if st.get("tx") is not None:
        return CommandOutcome(response=rejected("TxInProgress"), note="a transaction is already running")
    if not st.get("available", True):
        return CommandOutcome(response=rejected("Unavailable"), note="the charger is set Inoperative")
    timeout = float(adapter.option("ev_connect_timeout", 120.0))
    if not reading.ev_connected:
        # A real charger accepts and waits for the EV; so does this one, until ev_connect_timeout.
        st["remote_start"] = {"request": request, "expires": now + timeout, "dispatched": False}
        return CommandOutcome(response={"status": "Accepted"}, note="waiting for the EV to be plugged in")
    yield from adapter.start(charger, reading, st)
    if not replay or st.get("remote_start") is None:
        st["remote_start"] = {"request": request, "expires": now + timeout, "dispatched": True}
    followups: list[Followup] = [("_poll", {})]
    if request.get("chargingProfile"):
        followups.insert(0, ("SetChargingProfile", {"evseId": 1, "chargingProfile": request["chargingProfile"]}))
    return CommandOutcome(response={"status": "Accepted"}, followups=followups)


def _request_stop(
    adapter: VendorAdapter, charger: ChargerInfo, p: dict[str, Any], reading: Reading, st: dict[str, Any], now: float
) -> Flow[CommandOutcome]:
    tx = st.get("tx")
    if tx is None or tx["id"] != p.get("transactionId"):
        return CommandOutcome(response=rejected("UnknownTransaction"), note="no such transaction running")
    if (off := _offline(reading)) is not None:
        return off
    yield from adapter.stop(charger, reading, st)
    st["stop_requested"] = {"reason": "Remote", "trigger": "RemoteStop"}
    return CommandOutcome(response={"status": "Accepted"}, followups=[("_poll", {})])


def _set_profile(
    adapter: VendorAdapter, charger: ChargerInfo, p: dict[str, Any], reading: Reading, st: dict[str, Any], now: float
) -> Flow[CommandOutcome]:
    profile = dict(p["chargingProfile"])
    if p.get("evseId") not in (0, 1):
        return CommandOutcome(response=rejected("UnknownEvse"), note=f"evse {p.get('evseId')} does not exist")
    purpose = profile.get("chargingProfilePurpose")
    if purpose == "TxProfile":
        tx = st.get("tx")
        wanted = profile.get("transactionId")
        if tx is None or (wanted is not None and wanted != tx["id"]):
            return CommandOutcome(response=rejected("TxNotFound"), note="TxProfile without a matching transaction")
    if purpose == "ChargingStationExternalConstraints":
        return CommandOutcome(response=rejected("InvalidProfile"), note="external constraints are not set by a CSMS")
    if (off := _offline(reading)) is not None:
        return off
    profile["_received"] = now
    previous = st.get("profile")
    st["profile"] = profile
    try:
        yield from _apply_limit(adapter, charger, {}, reading, st, now)
    except BaseException:
        st["profile"] = previous
        raise
    return CommandOutcome(response={"status": "Accepted"}, followups=[("_poll", {})])


def _clear_profile(
    adapter: VendorAdapter, charger: ChargerInfo, p: dict[str, Any], reading: Reading, st: dict[str, Any], now: float
) -> Flow[CommandOutcome]:
    profile = st.get("profile")
    wanted_id = p.get("chargingProfileId")
    criteria = p.get("chargingProfileCriteria") or {}
    matches = profile is not None and (wanted_id is None or wanted_id == profile.get("id")) and all(
        profile.get(k) == v for k, v in criteria.items() if k in ("chargingProfilePurpose", "stackLevel"))
    if not matches:
        return CommandOutcome(response={"status": "Unknown"})
    if (off := _offline(reading)) is not None:
        return off
    st["profile"] = None
    yield from _apply_limit(adapter, charger, {}, reading, st, now)
    return CommandOutcome(response={"status": "Accepted"})


def _apply_limit(
    adapter: VendorAdapter, charger: ChargerInfo, p: dict[str, Any], reading: Reading, st: dict[str, Any], now: float
) -> Flow[CommandOutcome]:
    profile = st.get("profile")
    amps = profile_limit_a(profile, now, reading, charger) if profile is not None else None
    yield from adapter.set_current(charger, amps, reading)
    st["applied_limit"] = amps
    return CommandOutcome(response={}, note=f"current limit {amps if amps is not None else 'lifted'}")


def _reset(
    adapter: VendorAdapter, charger: ChargerInfo, p: dict[str, Any], reading: Reading, st: dict[str, Any], now: float
) -> Flow[CommandOutcome]:
    if p.get("evseId") not in (None, 1):
        return CommandOutcome(response=rejected("UnknownEvse"))
    if (off := _offline(reading)) is not None:
        return off
    if p.get("type") == "OnIdle" and st.get("tx") is not None:
        st["pending_reset"] = True
        return CommandOutcome(response={"status": "Scheduled"}, note="reboot after the transaction")
    yield from adapter.reboot(charger)
    messages: list[Message] = []
    if st.get("tx") is not None:
        messages.append(end_transaction(st, reading, now, "ImmediateReset", "ResetCommand"))
    st["quiet_until"] = now + float(adapter.option("reboot_grace", 60.0))
    return CommandOutcome(response={"status": "Accepted"}, messages=messages)


def _change_availability(
    adapter: VendorAdapter, charger: ChargerInfo, p: dict[str, Any], reading: Reading, st: dict[str, Any], now: float
) -> Flow[CommandOutcome]:
    evse = p.get("evse") or {}
    if evse.get("id") not in (None, 0, 1) or evse.get("connectorId") not in (None, 1):
        return CommandOutcome(response=rejected("UnknownEvse"))
    want = p["operationalStatus"] == "Operative"
    if (off := _offline(reading)) is not None:
        return off
    if not want and st.get("tx") is not None:
        st["pending_availability"] = "Inoperative"
        return CommandOutcome(response={"status": "Scheduled"}, note="disable after the transaction")
    yield from adapter.set_available(charger, want)
    st["available"] = want
    return CommandOutcome(response={"status": "Accepted"}, followups=[("_poll", {})])


def _update_firmware(
    adapter: VendorAdapter, charger: ChargerInfo, p: dict[str, Any], reading: Reading, st: dict[str, Any], now: float
) -> Flow[CommandOutcome]:
    if (off := _offline(reading)) is not None:
        return off
    yield from adapter.update_firmware(charger)
    st["firmware_request"] = p["requestId"]
    st["firmware"] = reading.firmware
    status = {"status": "Installing", "requestId": p["requestId"]}
    return CommandOutcome(
        response={"status": "Accepted", "statusInfo": {
            "reasonCode": "VendorFirmware",
            "additionalInfo": "the vendor cloud installs its own latest firmware; the location is not used"}},
        messages=[("FirmwareStatusNotification", status)],
        note="vendor firmware update requested",
    )


def _trigger(
    adapter: VendorAdapter, charger: ChargerInfo, p: dict[str, Any], reading: Reading, st: dict[str, Any], now: float
) -> Flow[CommandOutcome]:
    requested = p["requestedMessage"]
    evse = p.get("evse") or {}
    if evse.get("id") not in (None, 1):
        return CommandOutcome(response=rejected("UnknownEvse"))
    if requested not in TRIGGERABLE:
        return CommandOutcome(response={"status": "NotImplemented"})
    if requested == "BootNotification":
        # F06.FR.17: a charger whose boot was accepted rejects a triggered BootNotification.
        return CommandOutcome(response=rejected("AlreadyAccepted"))
    if requested == "TransactionEvent" and st.get("tx") is None:
        return CommandOutcome(response=rejected("NoTransaction"))
    return CommandOutcome(response={"status": "Accepted"}, followups=[("_poll", {"then": requested})])
    yield  # a flow, even when it needs no request


def _get_variables(
    adapter: VendorAdapter, charger: ChargerInfo, p: dict[str, Any], reading: Reading, st: dict[str, Any], now: float
) -> Flow[CommandOutcome]:
    results = [{"attributeStatus": "UnknownComponent", "component": d["component"], "variable": d["variable"],
                **({"attributeType": d["attributeType"]} if "attributeType" in d else {})}
               for d in p["getVariableData"]]
    return CommandOutcome(response={"getVariableResult": results}, note="no device model behind a vendor cloud")
    yield


def _set_variables(
    adapter: VendorAdapter, charger: ChargerInfo, p: dict[str, Any], reading: Reading, st: dict[str, Any], now: float
) -> Flow[CommandOutcome]:
    results = [{"attributeStatus": "UnknownComponent", "component": d["component"], "variable": d["variable"],
                **({"attributeType": d["attributeType"]} if "attributeType" in d else {})}
               for d in p["setVariableData"]]
    return CommandOutcome(response={"setVariableResult": results}, note="no device model behind a vendor cloud")
    yield


def _base_report(
    adapter: VendorAdapter, charger: ChargerInfo, p: dict[str, Any], reading: Reading, st: dict[str, Any], now: float
) -> Flow[CommandOutcome]:
    return CommandOutcome(response={"status": "NotSupported"}, note="no device model behind a vendor cloud")
    yield


_HANDLERS: dict[str, HandlerFn] = {
    "RequestStartTransaction": _request_start,
    "RequestStopTransaction": _request_stop,
    "SetChargingProfile": _set_profile,
    "ClearChargingProfile": _clear_profile,
    "Reset": _reset,
    "ChangeAvailability": _change_availability,
    "UpdateFirmware": _update_firmware,
    "TriggerMessage": _trigger,
    "GetVariables": _get_variables,
    "SetVariables": _set_variables,
    "GetBaseReport": _base_report,
    "_apply_limit": _apply_limit,
}

# The CSMS commands the vendor side handles, for the documentation and the conformance list.
COMMANDS = tuple(a for a in _HANDLERS if not a.startswith("_"))
