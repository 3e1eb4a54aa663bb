"""OCPP 2.0.1 charging station -> OCPP 1.6J central system.

Every message a 2.0.1 station sends, and every call a 1.6 CSMS makes, has a
handler below; ``@_on`` registers it with its conformance-list entry. Facts
shared with the 1.6 -> 2.0.1 translator (statuses, stop reasons, units,
measurands, configuration keys, ...) come from the tables in ``mappings/``
through ``adapters.v16_v201.tables``; only behaviour lives here.

Transactions. A 2.0.1 transaction is a stream of TransactionEvents under a
string id; 1.6 knows StartTransaction (the CSMS assigns an integer id),
MeterValues with that id, and StopTransaction. Started becomes
StartTransaction as soon as the transaction has an idToken (a Started
without one, e.g. TxStartPoint EVConnected, waits for the Updated that
authorizes it). Until the integer id is known, Updated and Ended are held in
``ctx.state`` in order and sent once it is; when the CSMS does not answer
StartTransaction in time, the station is answered locally and the held
start is retried before the next message the station sends, when the CSMS
link comes back, and every ``held_retry_interval`` (config) while the
station is quiet (``V201V16.background``). Duplicates
(a station retrying an event whose answer it missed) are recognised by
seqNo and answered without a second 1.6 message.

Connector status. 2.0.1 says only Occupied; a per-connector state machine
turns it into Preparing (no 1.6 transaction yet), Charging / SuspendedEV /
SuspendedEVSE (from the transaction's chargingState) or Finishing (after
the transaction ended), and reports changes of chargingState as 1.6
StatusNotifications.

Plug & Charge messages travel as DataTransfer with vendorId
org.openchargealliance.iso15118pnc, as in the OCA 1.6 Plug & Charge
whitepaper.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Generator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import mappings
from adapters import directions
from adapters.base import (
    Context,
    CoverageRow,
    Handler,
    Notify,
    OutCall,
    PeerError,
    PeerTimeout,
    Refuse,
    Side,
    Step,
    Support,
)
from adapters.registry import register
from adapters.v16_v201 import tables
from adapters.v16_v201.convert import tenth, text
from adapters.v16_v201.env import ConnectorMap
from gateway import schemas
from gateway.ocppj import Call, ErrorKind, Version

NAME = "v201_v16"
ENERGY = "Energy.Active.Import.Register"
PNC_VENDOR = "org.openchargealliance.iso15118pnc"
OCCUPIED = "Occupied"
# How many held transaction messages one incoming station message may push to the CSMS before its own.
FLUSH_BUDGET = 5
# CALLERRORs for one StartTransaction after which the held transaction is given up.
START_ATTEMPTS = 3
# Remembered tokens (type, full id behind a 20-character 1.6 idTag) per station.
TOKEN_MEMORY = 500

Payload = dict[str, Any]
Result = Generator[Step, Payload | None, Payload | None]


# --- options and persisted state --------------------------------------------------------------------------


def connector_of(connectors: ConnectorMap, evse: int, connector: int | None = None) -> int:
    """The 1.6 connectorId of a 2.0.1 EVSE/connector (an EVSE the map does not know: its own number)."""
    found = connectors.to_connector(evse, connector)
    return evse if found is None else found


@dataclass
class Options:
    connectors: ConnectorMap
    remote_token_type: str  # idToken type for a 1.6 idTag the station never showed (RemoteStart, lists)
    anonymous_id_tag: str | None  # idTag for transactions the station starts without a token (None: wait)
    get_variables_chunk: int  # variables per GetVariables when GetConfiguration asks for all keys
    config: tables.ConfigKeys

    @classmethod
    def parse(cls, options: dict[str, Any]) -> Options:
        anonymous = options.get("anonymous_id_tag")
        return cls(
            connectors=ConnectorMap(int(options.get("connectors_per_evse", 1)), options.get("connector_map")),
            remote_token_type=str(options.get("remote_token_type", "Central")),
            anonymous_id_tag=str(anonymous)[:20] if anonymous else None,
            get_variables_chunk=max(1, int(options.get("get_variables_chunk", 20))),
            config=tables.ConfigKeys.load(options.get("config_key_files") or ()),
        )


class State:
    """This translator's corner of the persisted charger state."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.ns = ctx.namespace(NAME)

    def save(self) -> None:
        self.ctx.save()

    @property
    def txs(self) -> dict[str, dict[str, Any]]:
        """Open transactions by the station's transactionId."""
        return self.ns.setdefault("tx", {})  # type: ignore[no-any-return]

    def tx_by_int(self, n: int) -> tuple[str, dict[str, Any]] | None:
        for tx_id, tx in self.txs.items():
            if tx.get("int") == n:
                return tx_id, tx
        return None

    def tx_on(self, connector: int) -> tuple[str, dict[str, Any]] | None:
        for tx_id, tx in self.txs.items():
            if tx["connector"] == connector and not tx.get("ended"):
                return tx_id, tx
        return None

    def connector(self, n: int) -> dict[str, Any]:
        conns: dict[str, dict[str, Any]] = self.ns.setdefault("connectors", {})
        return conns.setdefault(str(n), {})

    def next_id(self) -> int:
        """A fresh integer for remoteStartId / requestId (unique per station, persisted)."""
        n = int(self.ns.get("next_id", 1))
        self.ns["next_id"] = n + 1
        self.save()
        return n

    def remember_request(self, request_id: int, origin: str) -> None:
        """Which 1.6 call a requestId belongs to (for the status notifications that echo it)."""
        reqs: dict[str, str] = self.ns.setdefault("requests", {})
        reqs[str(request_id)] = origin
        while len(reqs) > 50:
            reqs.pop(next(iter(reqs)))
        self.save()

    def request_origin(self, request_id: int | None) -> str | None:
        if request_id is None:
            return None
        return self.ns.get("requests", {}).get(str(request_id))  # type: ignore[no-any-return]

    def remember_token(self, token: dict[str, Any]) -> str:
        """The 1.6 idTag for a 2.0.1 idToken; remembers its type and full value for the way back."""
        id_tag = str(token["idToken"])[:20]
        known: dict[str, dict[str, str]] = self.ns.setdefault("tokens", {})
        entry = {"idToken": str(token["idToken"]), "type": str(token["type"])}
        if known.get(id_tag) != entry:
            known.pop(id_tag, None)
            known[id_tag] = entry
            while len(known) > TOKEN_MEMORY:
                known.pop(next(iter(known)))
            self.save()
        return id_tag

    def token(self, id_tag: str, default_type: str) -> dict[str, Any]:
        """The 2.0.1 idToken for a 1.6 idTag: the one the station showed, else the tag with ``default_type``."""
        hit = self.ns.get("tokens", {}).get(id_tag)
        if hit:
            return dict(hit)
        return {"idToken": id_tag, "type": default_type}


# --- value conversions (2.0.1 -> 1.6 and the 1.6 answers back) --------------------------------------------


def num_text(value: Decimal | float | int) -> str:
    """A JSON number as a 1.6 value string, without exponent or trailing zeros."""
    digits = format(Decimal(str(value)), "f")
    return digits.rstrip("0").rstrip(".") if "." in digits else digits


def energy_wh(sv: dict[str, Any]) -> float | None:
    """The active import energy register of a 2.0.1 sampled value in Wh, or None if it is something else."""
    if sv.get("measurand", ENERGY) != ENERGY or sv.get("phase"):
        return None
    unit = sv.get("unitOfMeasure", {})
    scale = {"Wh": 1, "kWh": 1000}.get(unit.get("unit", "Wh"))
    if scale is None:
        return None
    return float(Decimal(str(sv["value"])) * scale * (Decimal(10) ** int(unit.get("multiplier", 0))))


def last_energy(meter_values: list[dict[str, Any]], context: str | None = None) -> float | None:
    """The last energy register reading, preferring samples of ``context``."""
    found: float | None = None
    preferred: float | None = None
    for mv in meter_values:
        for sv in mv["sampledValue"]:
            wh = energy_wh(sv)
            if wh is None:
                continue
            found = wh
            if context is not None and sv.get("context") == context:
                preferred = wh
    return preferred if preferred is not None else found


def sampled_value_to_v16(sv: dict[str, Any], hertz: bool = True) -> list[dict[str, Any]]:
    """One 2.0.1 sampled value as 1.6 ones: the reading, plus a SignedData twin when it was signed.

    Nothing when 1.6 cannot name the measurand or unit. ``hertz`` is False for
    StopTransaction, whose 1.6 schema lacks that unit (the unit is then omitted).
    """
    out: dict[str, Any] = {}
    value = Decimal(str(sv["value"]))
    for key in ("context", "phase", "location"):
        if key in sv:
            out[key] = sv[key]
    if "measurand" in sv:
        measurand = tables.to_v16("measurands", sv["measurand"])
        if measurand is None:
            return []
        out["measurand"] = measurand
    if "unitOfMeasure" in sv:
        unit = str(sv["unitOfMeasure"].get("unit", "Wh"))
        multiplier = int(sv["unitOfMeasure"].get("multiplier", 0))
        unit16 = tables.unit_to_v16(unit, multiplier)
        if unit16 is None:
            unit16 = tables.unit_to_v16(unit, 0)
            if unit16 is None:
                return []
            value = value * (Decimal(10) ** multiplier)
        if unit16 != "Hertz" or hertz:
            out["unit"] = unit16
    reading = {"value": num_text(value), **out}
    signed = sv.get("signedMeterValue")
    if not signed:
        return [reading]
    return [reading, {**reading, "value": signed["signedMeterData"], "format": "SignedData"}]


def meter_values_to_v16(meter_values: list[dict[str, Any]], hertz: bool = True) -> list[dict[str, Any]]:
    out = []
    for mv in meter_values:
        sampled = [s for sv in mv["sampledValue"] for s in sampled_value_to_v16(sv, hertz)]
        if sampled:
            out.append({"timestamp": mv["timestamp"], "sampledValue": sampled})
    return out


def id_token_info(info: dict[str, Any] | None, token_type: str) -> dict[str, Any]:
    """1.6 idTagInfo -> 2.0.1 idTokenInfo (a parent id tag becomes a group token of the same type)."""
    if not info:
        return {"status": "Accepted"}
    out: dict[str, Any] = {"status": tables.to_v201("authorization_status", info["status"]) or "Invalid"}
    if "expiryDate" in info:
        out["cacheExpiryDateTime"] = info["expiryDate"]
    if info.get("parentIdTag"):
        out["groupIdToken"] = {"idToken": info["parentIdTag"], "type": token_type}
    return out


def id_tag_info_to_token_info(info: dict[str, Any], st: State, default_type: str) -> dict[str, Any]:
    """1.6 idTagInfo of a local list entry -> 2.0.1 idTokenInfo."""
    parent = info.get("parentIdTag")
    return id_token_info(info, st.token(parent, default_type)["type"] if parent else default_type)


def profile_to_v201(profile: dict[str, Any], transaction_id: str | None = None) -> dict[str, Any]:
    """1.6 csChargingProfiles -> 2.0.1 ChargingProfileType (one schedule, its id the profile's)."""
    purpose = tables.to_v201("charging_profile_purpose", profile["chargingProfilePurpose"])
    if purpose is None:
        raise Refuse(ErrorKind.PROPERTY, f"no 2.0.1 purpose for {profile['chargingProfilePurpose']}")
    sched = profile["chargingSchedule"]
    if not sched["chargingSchedulePeriod"]:
        raise Refuse(ErrorKind.OCCURRENCE, "a charging schedule without periods has no 2.0.1 form (minItems 1)")
    schedule: dict[str, Any] = {"id": profile["chargingProfileId"], "chargingRateUnit": sched["chargingRateUnit"]}
    for key in ("startSchedule", "duration", "minChargingRate"):
        if key in sched:
            schedule[key] = sched[key]
    schedule["chargingSchedulePeriod"] = [
        {k: p[k] for k in ("startPeriod", "limit", "numberPhases") if k in p} for p in sched["chargingSchedulePeriod"]
    ]
    out: dict[str, Any] = {
        "id": profile["chargingProfileId"],
        "stackLevel": profile["stackLevel"],
        "chargingProfilePurpose": purpose,
        "chargingProfileKind": profile["chargingProfileKind"],
    }
    for key in ("recurrencyKind", "validFrom", "validTo"):
        if key in profile:
            out[key] = profile[key]
    if transaction_id is not None:
        out["transactionId"] = transaction_id
    out["chargingSchedule"] = [schedule]
    return out


def status16(message: str, status: str, default: str = "Rejected") -> str:
    """A 2.0.1 response status as the 1.6 one for ``message`` (the 1.6 action), per response_status."""
    return tables.status_to_v16(message, status) or default


def status201(message: str, status: str, default: str = "Rejected") -> str:
    return tables.status_to_v201(message, status) or default


# --- connector status state machine ------------------------------------------------------------------------


def _charging_state_to_v16() -> dict[str, str]:
    """chargingState -> 1.6 status, from the connector_status table's charging_state column."""
    return {
        str(r["charging_state"]): str(r["v16"]) for r in mappings.rows("connector_status") if r.get("charging_state")
    }


def refine(st: State, connector: int) -> str | None:
    """The 1.6 status of a connector: 2.0.1's status with Occupied made precise by transaction state."""
    c = st.connector(connector)
    status = c.get("status201")
    if status is None:
        return None
    if status != OCCUPIED:
        return tables.to_v16("connector_status", status)
    found = st.tx_on(connector)
    if found is None:
        return "Finishing" if c.get("finishing") else "Preparing"
    tx = found[1]
    if tx.get("int") is None:
        return "Preparing"  # no 1.6 transaction yet
    mapped = _charging_state_to_v16().get(str(tx.get("charging_state")))
    if mapped in ("Charging", "SuspendedEV", "SuspendedEVSE"):
        return mapped
    # EVConnected / Idle while the 1.6 transaction runs: energy is not flowing and the EV did not say why.
    return "SuspendedEVSE"


def status_update(st: State, connector: int, timestamp: str) -> Generator[Step, Payload | None, None]:
    """Tell the CSMS the connector's refined status if it changed since the last one sent."""
    status = refine(st, connector)
    c = st.connector(connector)
    if status is None or status == c.get("sent16"):
        return
    c["sent16"] = status
    st.save()
    yield Notify(Side.CSMS, "StatusNotification", _status_payload(connector, status, timestamp))


def _status_payload(connector: int, status: str, timestamp: str) -> Payload:
    # 2.0.1 reports fault details in NotifyEvent; the 1.6 status carries only that there is one.
    error = "OtherError" if status == "Faulted" else "NoError"
    return {"connectorId": connector, "errorCode": error, "status": status, "timestamp": timestamp}


# --- handler registry --------------------------------------------------------------------------------------

HandlerFn = Callable[["V201V16", State, Payload], Result]


@dataclass(frozen=True)
class Spec:
    fn: HandlerFn
    support: Support
    target: str
    notes: str


_HANDLERS: dict[tuple[Side, str], Spec] = {}


def _on(
    origin: Side, action: str, target: str, support: Support = Support.SUPPORTED, notes: str = ""
) -> Callable[[HandlerFn], HandlerFn]:
    """Register the handler of ``action`` sent by ``origin``; the arguments are its conformance row."""

    def deco(fn: HandlerFn) -> HandlerFn:
        _HANDLERS[(origin, action)] = Spec(fn, support, target, notes)
        return fn

    return deco


def _local(action: str, answer: Payload, notes: str) -> None:
    """A station message with no 1.6 counterpart, answered by the gateway itself."""

    def fn(tr: V201V16, st: State, p: Payload) -> Result:
        return dict(answer)
        yield  # pragma: no cover - a generator like every handler

    _on(Side.CHARGER, action, "", Support.LOCAL, notes)(fn)


# --- station -> CSMS: transactions ------------------------------------------------------------------------


def _new_tx(tr: V201V16, st: State, p: Payload) -> dict[str, Any]:
    evse = p.get("evse", {})
    connector = connector_of(tr.opts.connectors, int(evse.get("id", 1)), evse.get("connectorId"))
    begin = last_energy(p.get("meterValue", []), "Transaction.Begin")
    if begin is None:
        begin = st.connector(connector).get("last_wh")
    st.connector(connector).pop("finishing", None)
    return {
        "connector": connector,
        "int": None,
        "started": p["timestamp"],
        "begin_wh": begin,
        "queue": [],
        "seqs": [],
    }


def _build_start(tr: V201V16, tx: dict[str, Any], p: Payload) -> None:
    """The StartTransaction for this transaction, once it has an idTag (or the anonymous one)."""
    if tx.get("start") is not None or tx.get("int") is not None:
        return
    id_tag = tx.get("id_tag") or tr.opts.anonymous_id_tag
    if id_tag is None:
        return
    wh = tx.get("begin_wh")
    if wh is None:
        wh = tx.get("last_wh", 0.0)
    start: Payload = {
        "connectorId": tx["connector"],
        "idTag": id_tag,
        "meterStart": round(wh),
        "timestamp": tx["started"],
    }
    if "reservationId" in tx:
        start["reservationId"] = tx["reservationId"]
    tx["start"] = start


def _send_start(st: State, tx_id: str, tx: dict[str, Any]) -> Result:
    """StartTransaction for a held start; None when it did not go through (kept, or dropped after refusals).

    No answer in time: kept for later. A CALLERROR: kept too (1.6 chargers retry transaction messages),
    but after ``START_ATTEMPTS`` refusals the transaction and what it holds are dropped, so one message
    the CSMS will never take cannot hold the station's later transactions back for good.
    """
    try:
        conf = yield OutCall(Side.CSMS, "StartTransaction", tx["start"])
    except PeerTimeout:
        return None
    except PeerError:
        tx["refusals"] = tx.get("refusals", 0) + 1
        if tx["refusals"] >= START_ATTEMPTS:
            _close(st, tx_id, tx)
        st.save()
        return None
    assert conf is not None
    tx["int"] = conf["transactionId"]
    tx["auth"] = id_token_info(conf.get("idTagInfo"), tx.get("token_type", "Local"))
    tx.pop("start", None)
    st.save()
    return conf


def _send_held(st: State, tx_id: str, tx: dict[str, Any], budget: list[int]) -> Generator[Step, Payload | None, bool]:
    """Send what this transaction holds, in order; False when the CSMS is not answering (rest kept)."""
    if tx.get("int") is None:
        if tx.get("start") is None or budget[0] <= 0:
            return False
        budget[0] -= 1
        if (yield from _send_start(st, tx_id, tx)) is None:
            return False
        yield from status_update(st, tx["connector"], tx["started"])
    while tx["queue"]:
        if budget[0] <= 0:
            return False
        budget[0] -= 1
        item = tx["queue"][0]
        payload = {**item["payload"], "transactionId": tx["int"]}
        try:
            result = yield OutCall(Side.CSMS, item["action"], payload)
        except PeerTimeout:
            return False
        except PeerError:
            result = None  # the CSMS refused this one (logged by the runtime); the rest still goes
        tx["queue"].pop(0)
        if item["action"] == "StopTransaction":
            tx["stop_info"] = (result or {}).get("idTagInfo")
            _close(st, tx_id, tx)
        st.save()
    return True


def _close(st: State, tx_id: str, tx: dict[str, Any]) -> None:
    """Forget an ended transaction, keeping its id a while to recognise a repeated Ended."""
    st.txs.pop(tx_id, None)
    ended: list[str] = st.ns.setdefault("ended", [])
    ended.append(tx_id)
    del ended[:-20]


def _held(tx: dict[str, Any]) -> int:
    """How many messages this transaction holds for the CSMS (a pending StartTransaction counts as one)."""
    if tx.get("int") is None:
        return 0 if tx.get("start") is None else 1 + len(tx["queue"])
    return len(tx["queue"])


def flush(st: State, budget: int = FLUSH_BUDGET) -> Generator[Step, Payload | None, bool]:
    """Push held transaction messages to the CSMS (at most ``budget`` calls); True when nothing is left."""
    left = [budget]
    for tx_id, tx in list(st.txs.items()):
        if _held(tx) and not (yield from _send_held(st, tx_id, tx, left)):
            return False
    return True


def push_held(st: State) -> Handler:
    """Flush, a budget at a time, while the CSMS takes messages; stop when all is sent or nothing moves."""
    while True:
        before = sum(_held(tx) for tx in st.txs.values())
        if (yield from flush(st)) or sum(_held(tx) for tx in st.txs.values()) >= before:
            return None


@_on(
    Side.CHARGER,
    "TransactionEvent",
    "StartTransaction, MeterValues, StopTransaction, StatusNotification",
    Support.PARTIAL,
    "Started -> StartTransaction (the CSMS's integer id mapped to the station's string id; a Started without "
    "idToken waits for the authorizing Updated, or uses option anonymous_id_tag); Updated -> MeterValues with "
    "transactionId (+ StatusNotification when chargingState changes); Ended -> StopTransaction (meterStop from "
    "the Transaction.End energy register, else the last energy seen; reason mapped; transactionData). Held in "
    "order until the integer id is known, and retried when the CSMS link comes back and every "
    "held_retry_interval while the station is quiet (a start the CSMS refuses 3 times is dropped); a repeated seqNo is "
    "answered without a second message. Lost: seqNo, triggerReason, offline flag, numberOfPhasesUsed, "
    "cableMaxCurrent, remoteStartId; a transaction that never had an idToken is not reported; an idToken "
    "longer than 20 characters is truncated.",
)
def transaction_event(tr: V201V16, st: State, p: Payload) -> Result:
    info = p["transactionInfo"]
    tx_id = str(info["transactionId"])
    event = p["eventType"]
    tx = st.txs.get(tx_id)
    if tx is None:
        if event != "Started" and tx_id in st.ns.get("ended", []):
            return {}  # a repeat of an event already delivered
        tx = st.txs[tx_id] = _new_tx(tr, st, p)
    token = p.get("idToken")
    if p["seqNo"] in tx["seqs"]:
        return {"idTokenInfo": tx["auth"]} if token and tx.get("auth") else {}
    tx["seqs"] = [*tx["seqs"][-49:], p["seqNo"]]
    connector = tx["connector"]
    meter = p.get("meterValue", [])
    wh = last_energy(meter)
    if wh is not None:
        tx["last_wh"] = st.connector(connector)["last_wh"] = wh
    if "chargingState" in info:
        tx["charging_state"] = info["chargingState"]
    if "reservationId" in p:
        tx["reservationId"] = p["reservationId"]
    start_tag: str | None = None
    if token and token.get("idToken") is not None:
        tag = st.remember_token(token)
        if tx.get("id_tag") is None and tx.get("int") is None and tx.get("start") is None:
            tx["id_tag"], tx["token_type"] = tag, token["type"]
        start_tag = tag
    _build_start(tr, tx, p)

    if event == "Updated" and meter:
        converted = meter_values_to_v16(meter)
        if converted:
            tx["queue"].append(
                {"action": "MeterValues", "payload": {"connectorId": connector, "meterValue": converted}}
            )
    if event == "Ended":
        tx["ended"] = True
        st.connector(connector)["finishing"] = True
        if tx.get("int") is None and tx.get("start") is None:
            _close(st, tx_id, tx)  # never authorized: 1.6 has no transaction to end
            st.save()
            yield from status_update(st, connector, p["timestamp"])
            return {}
        stop_wh = last_energy(meter, "Transaction.End")
        if stop_wh is None:
            stop_wh = tx.get("last_wh", tx.get("begin_wh") or 0.0)
        stop: Payload = {
            "meterStop": round(stop_wh),
            "timestamp": p["timestamp"],
            "reason": tables.to_v16("stop_reasons", info.get("stoppedReason", "Local")) or "Other",
        }
        if start_tag is not None:
            stop["idTag"] = start_tag
        data = meter_values_to_v16(meter, hertz=False)
        if data:
            stop["transactionData"] = data
        tx["queue"].append({"action": "StopTransaction", "payload": stop})
    st.save()

    # Earlier transactions first, so the CSMS sees everything in the order the station sent it.
    for other_id, other in list(st.txs.items()):
        if other is not tx and not (yield from _send_held(st, other_id, other, [FLUSH_BUDGET])):
            break
    delivered = yield from _send_held(st, tx_id, tx, [len(tx["queue"]) + 1])
    yield from status_update(st, connector, p["timestamp"])

    answer: Payload = {}
    if token and delivered:
        if event == "Ended" and "stop_info" in tx and tx["stop_info"] is not None:
            answer["idTokenInfo"] = id_token_info(tx["stop_info"], token["type"])
        elif tx.get("auth") is not None and start_tag == tx.get("id_tag"):
            answer["idTokenInfo"] = tx["auth"]
        elif start_tag is not None:
            try:
                auth = yield OutCall(Side.CSMS, "Authorize", {"idTag": start_tag})
            except PeerError:
                auth = None  # the event itself went through: answer without a verdict on the token
            if auth is not None:
                answer["idTokenInfo"] = id_token_info(auth["idTagInfo"], token["type"])
    return answer


# --- station -> CSMS: everything else ---------------------------------------------------------------------


@_on(
    Side.CHARGER,
    "BootNotification",
    "BootNotification",
    Support.PARTIAL,
    "vendorName cut to 20 characters (1.6 chargePointVendor); reason is lost",
)
def boot_notification(tr: V201V16, st: State, p: Payload) -> Result:
    cs = p["chargingStation"]
    boot: Payload = {"chargePointVendor": cs["vendorName"][:20], "chargePointModel": cs["model"]}
    if "serialNumber" in cs:
        boot["chargePointSerialNumber"] = cs["serialNumber"]
    if "firmwareVersion" in cs:
        boot["firmwareVersion"] = cs["firmwareVersion"]
    boot.update({key: value for key, value in cs.get("modem", {}).items() if key in ("iccid", "imsi")})
    r = yield OutCall(Side.CSMS, "BootNotification", boot)
    assert r is not None
    return {
        "currentTime": r["currentTime"],
        "interval": r["interval"],
        "status": status201("BootNotification", r["status"]),
    }


@_on(Side.CHARGER, "Heartbeat", "Heartbeat")
def heartbeat(tr: V201V16, st: State, p: Payload) -> Result:
    r = yield OutCall(Side.CSMS, "Heartbeat", {})
    return r


@_on(
    Side.CHARGER,
    "StatusNotification",
    "StatusNotification",
    Support.PARTIAL,
    "evseId/connectorId -> connectorId; Occupied refined to Preparing, Charging, SuspendedEV, SuspendedEVSE or "
    "Finishing from the transaction; errorCode NoError (OtherError when Faulted: 2.0.1 reports details in NotifyEvent)",
)
def status_notification(tr: V201V16, st: State, p: Payload) -> Result:
    connector = connector_of(tr.opts.connectors, p["evseId"], p["connectorId"])
    c = st.connector(connector)
    c["status201"] = p["connectorStatus"]
    if p["connectorStatus"] != OCCUPIED:
        c.pop("finishing", None)
    status = refine(st, connector) or "Available"
    c["sent16"] = status
    st.save()
    yield OutCall(Side.CSMS, "StatusNotification", _status_payload(connector, status, p["timestamp"]))
    return {}


@_on(
    Side.CHARGER,
    "MeterValues",
    "MeterValues",
    Support.PARTIAL,
    "evseId -> connectorId; unitOfMeasure -> 1.6 unit (rescaled when 1.6 has no such prefix); a signed value "
    "adds a SignedData twin; samples whose measurand or unit 1.6 cannot name are dropped",
)
def meter_values(tr: V201V16, st: State, p: Payload) -> Result:
    connector = connector_of(tr.opts.connectors, p["evseId"])
    wh = last_energy(p["meterValue"])
    if wh is not None:
        st.connector(connector)["last_wh"] = wh
        st.save()
    converted = meter_values_to_v16(p["meterValue"])
    if converted:
        yield OutCall(Side.CSMS, "MeterValues", {"connectorId": connector, "meterValue": converted})
    return {}


@_on(
    Side.CHARGER,
    "Authorize",
    "Authorize",
    Support.PARTIAL,
    "idToken -> idTag (cut to 20 characters); certificate and ISO 15118 hash data are not sent; "
    "idTagInfo -> idTokenInfo (parentIdTag -> groupIdToken)",
)
def authorize(tr: V201V16, st: State, p: Payload) -> Result:
    tag = st.remember_token(p["idToken"])
    r = yield OutCall(Side.CSMS, "Authorize", {"idTag": tag})
    assert r is not None
    return {"idTokenInfo": id_token_info(r["idTagInfo"], p["idToken"]["type"])}


def _data_transfer(to: Side, p: Payload) -> Result:
    req: Payload = {"vendorId": p["vendorId"]}
    if "messageId" in p:
        req["messageId"] = p["messageId"]
    if "data" in p:
        req["data"] = text(p["data"])
    r = yield OutCall(to, "DataTransfer", req)
    assert r is not None
    # 1.6 data is a string; 2.0.1 data any JSON: strings pass as they are, anything else is JSON-encoded.
    return {"status": r["status"], **({"data": text(r["data"])} if "data" in r else {})}


@_on(Side.CHARGER, "DataTransfer", "DataTransfer", Support.PARTIAL, "non-string data is sent JSON-encoded")
def data_transfer_up(tr: V201V16, st: State, p: Payload) -> Result:
    return (yield from _data_transfer(Side.CSMS, p))


@_on(
    Side.CHARGER,
    "FirmwareStatusNotification",
    "FirmwareStatusNotification, SignedFirmwareStatusNotification",
    Support.PARTIAL,
    "SignedFirmwareStatusNotification when the update came as SignedUpdateFirmware; otherwise the 2.0.1-only "
    "statuses fold into the 1.6 phase (firmware_status table) and requestId is lost",
)
def firmware_status(tr: V201V16, st: State, p: Payload) -> Result:
    if st.request_origin(p.get("requestId")) == "SignedUpdateFirmware":
        yield OutCall(
            Side.CSMS, "SignedFirmwareStatusNotification", {"status": p["status"], "requestId": p["requestId"]}
        )
        return {}
    status = tables.to_v16("firmware_status", p["status"])
    if status is not None:
        yield OutCall(Side.CSMS, "FirmwareStatusNotification", {"status": status})
    return {}


@_on(
    Side.CHARGER,
    "LogStatusNotification",
    "DiagnosticsStatusNotification, LogStatusNotification",
    Support.PARTIAL,
    "DiagnosticsStatusNotification (log_status table) unless the upload came from a 1.6 security GetLog, "
    "which gets LogStatusNotification with its requestId (AcceptedCanceled -> Idle)",
)
def log_status(tr: V201V16, st: State, p: Payload) -> Result:
    if st.request_origin(p.get("requestId")) == "GetLog":
        status = "Idle" if p["status"] == "AcceptedCanceled" else p["status"]
        yield OutCall(Side.CSMS, "LogStatusNotification", {"status": status, "requestId": p["requestId"]})
        return {}
    status = tables.to_v16("log_status", p["status"])
    if status is not None:
        yield OutCall(Side.CSMS, "DiagnosticsStatusNotification", {"status": status})
    return {}


@_on(Side.CHARGER, "SecurityEventNotification", "SecurityEventNotification (1.6 security extension)")
def security_event(tr: V201V16, st: State, p: Payload) -> Result:
    event: Payload = {k: p[k] for k in ("type", "timestamp", "techInfo") if k in p}
    yield OutCall(Side.CSMS, "SecurityEventNotification", event)
    return {}


def _pnc(action: str, p: Payload, fallback: Payload) -> Result:
    """A Plug & Charge message through 1.6 DataTransfer; ``fallback`` when the CSMS does not handle it."""
    r = yield OutCall(Side.CSMS, "DataTransfer", {"vendorId": PNC_VENDOR, "messageId": action, "data": json.dumps(p)})
    assert r is not None
    if r["status"] == "Accepted" and isinstance(r.get("data"), str):
        try:
            answer = json.loads(r["data"])
        except ValueError:
            answer = None
        if isinstance(answer, dict) and schemas.validate(Version.V201, action, answer, response=True) is None:
            return answer
    return dict(fallback)


@_on(
    Side.CHARGER,
    "SignCertificate",
    "SignCertificate (1.6 security) / DataTransfer",
    Support.PARTIAL,
    "ChargingStationCertificate -> 1.6 security SignCertificate (certificateType dropped); V2GCertificate -> "
    f"DataTransfer {PNC_VENDOR}",
)
def sign_certificate(tr: V201V16, st: State, p: Payload) -> Result:
    if p.get("certificateType") == "V2GCertificate":
        return (yield from _pnc("SignCertificate", p, {"status": "Rejected"}))
    r = yield OutCall(Side.CSMS, "SignCertificate", {"csr": p["csr"]})
    assert r is not None
    return {"status": r["status"]}


@_on(
    Side.CHARGER,
    "Get15118EVCertificate",
    "DataTransfer",
    Support.PARTIAL,
    f"DataTransfer {PNC_VENDOR}; Failed when the CSMS does not answer it",
)
def get_15118_ev_certificate(tr: V201V16, st: State, p: Payload) -> Result:
    return (yield from _pnc("Get15118EVCertificate", p, {"status": "Failed", "exiResponse": ""}))


@_on(
    Side.CHARGER,
    "GetCertificateStatus",
    "DataTransfer",
    Support.PARTIAL,
    f"DataTransfer {PNC_VENDOR}; Failed when the CSMS does not answer it",
)
def get_certificate_status(tr: V201V16, st: State, p: Payload) -> Result:
    return (yield from _pnc("GetCertificateStatus", p, {"status": "Failed"}))


@_on(
    Side.CHARGER,
    "NotifyReport",
    "",
    Support.LOCAL,
    "answered locally; the mutability of variables that are 1.6 keys is kept for GetConfiguration's readonly",
)
def notify_report(tr: V201V16, st: State, p: Payload) -> Result:
    readonly: dict[str, bool] = st.ns.setdefault("readonly", {})
    for item in p.get("reportData", []):
        var = tr.opts.config.for_variable(
            item["component"]["name"], item["variable"]["name"], item["variable"].get("instance")
        )
        if var is None:
            continue
        for attr in item["variableAttribute"]:
            if attr.get("type", "Actual") == "Actual":
                readonly[var.key] = attr.get("mutability", "ReadWrite") == "ReadOnly"
    st.save()
    return {}
    yield  # pragma: no cover


_local("NotifyEvent", {}, "no 1.6 counterpart; connector faults also arrive as StatusNotification Faulted")
_local("NotifyMonitoringReport", {}, "no 1.6 counterpart")
_local("NotifyCustomerInformation", {}, "no 1.6 counterpart (1.6 CSMS never asks)")
_local("NotifyDisplayMessages", {}, "no 1.6 counterpart (1.6 CSMS never asks)")
_local("NotifyChargingLimit", {}, "no 1.6 counterpart: external limits are not reported")
_local("ClearedChargingLimit", {}, "no 1.6 counterpart")
_local("NotifyEVChargingNeeds", {"status": "Rejected"}, "no 1.6 counterpart: Rejected (no schedule will follow)")
_local("NotifyEVChargingSchedule", {"status": "Accepted"}, "no 1.6 counterpart: the EV's schedule is accepted")
_local("ReportChargingProfiles", {}, "no 1.6 counterpart (1.6 CSMS never asks)")
_local("ReservationStatusUpdate", {}, "no 1.6 counterpart; the connector's StatusNotification tells the CSMS")
_local("PublishFirmwareStatusNotification", {}, "no 1.6 counterpart (1.6 CSMS never publishes firmware)")


# --- CSMS -> station ---------------------------------------------------------------------------------------


def _evse(tr: V201V16, connector: int) -> dict[str, Any] | None:
    """2.0.1 EVSEType for a 1.6 connector (None for connector 0, the whole station)."""
    if connector <= 0:
        return None
    evse, conn = tr.opts.connectors.to_evse(connector)
    return {"id": evse, "connectorId": conn} if len(tr.opts.connectors.connectors_of(evse)) > 1 else {"id": evse}


@_on(
    Side.CSMS,
    "RemoteStartTransaction",
    "RequestStartTransaction",
    Support.PARTIAL,
    "remoteStartId generated; idTag -> idToken (the type the station showed for it, else option "
    "remote_token_type, default Central); connectorId -> evseId; chargingProfile converted",
)
def remote_start(tr: V201V16, st: State, p: Payload) -> Result:
    req: Payload = {"remoteStartId": st.next_id(), "idToken": st.token(p["idTag"], tr.opts.remote_token_type)}
    if p.get("connectorId"):
        req["evseId"] = tr.opts.connectors.to_evse(p["connectorId"])[0]
    if "chargingProfile" in p:
        profile = {k: v for k, v in p["chargingProfile"].items() if k != "transactionId"}
        req["chargingProfile"] = profile_to_v201(profile)
    r = yield OutCall(Side.CHARGER, "RequestStartTransaction", req)
    assert r is not None
    return {"status": status16("RemoteStartTransaction", r["status"])}


@_on(
    Side.CSMS,
    "RemoteStopTransaction",
    "RequestStopTransaction",
    Support.SUPPORTED,
    "integer id -> the station's string id; an unknown id is Rejected by the gateway",
)
def remote_stop(tr: V201V16, st: State, p: Payload) -> Result:
    found = st.tx_by_int(p["transactionId"])
    if found is None:
        return {"status": "Rejected"}
    r = yield OutCall(Side.CHARGER, "RequestStopTransaction", {"transactionId": found[0]})
    assert r is not None
    return {"status": status16("RemoteStopTransaction", r["status"])}


def _get_variables(tr: V201V16, keys: list[str]) -> Generator[Step, Payload | None, dict[str, Payload]]:
    """GetVariables for 1.6 keys, in chunks; the Accepted results by key."""
    found: dict[str, Payload] = {}
    variables = [tr.opts.config.for_key(k) for k in keys]
    size = tr.opts.get_variables_chunk
    for i in range(0, len(variables), size):
        chunk = variables[i : i + size]
        data = [{"component": v.component_json(), "variable": v.variable_json()} for v in chunk]
        r = yield OutCall(Side.CHARGER, "GetVariables", {"getVariableData": data})
        assert r is not None
        by_var = {(v.component, v.variable, v.instance): v.key for v in chunk}
        for result in r["getVariableResult"]:
            key = by_var.get(
                (result["component"]["name"], result["variable"]["name"], result["variable"].get("instance"))
            )
            if key is not None and result["attributeStatus"] == "Accepted":
                found[key] = result
    return found


@_on(
    Side.CSMS,
    "GetConfiguration",
    "GetVariables",
    Support.PARTIAL,
    "keys -> component.variable (config_keys table), in chunks of option get_variables_chunk; no keys means "
    "every key of the table with a standard variable; readonly from the station's NotifyReport when seen, "
    "else false; values cut to 500 characters",
)
def get_configuration(tr: V201V16, st: State, p: Payload) -> Result:
    keys = list(dict.fromkeys(p.get("key") or []))
    if not keys:
        keys = [v.key for v in tr.opts.config.rows() if v.component != tables.LEGACY_COMPONENT]
    results = yield from _get_variables(tr, keys)
    readonly: dict[str, bool] = st.ns.get("readonly", {})
    configuration = []
    for key in keys:
        if key in results:
            entry: Payload = {"key": key[:50], "readonly": readonly.get(key, False)}
            if "attributeValue" in results[key]:
                entry["value"] = results[key]["attributeValue"][:500]
            configuration.append(entry)
    out: Payload = {}
    if configuration:
        out["configurationKey"] = configuration
    unknown = [k[:50] for k in keys if k not in results and p.get("key")]
    if unknown:
        out["unknownKey"] = unknown
    return out


@_on(
    Side.CSMS,
    "ChangeConfiguration",
    "SetVariables",
    Support.SUPPORTED,
    "key -> component.variable (config_keys table); attributeStatus -> status (response_status table)",
)
def change_configuration(tr: V201V16, st: State, p: Payload) -> Result:
    var = tr.opts.config.for_key(p["key"])
    data = {"attributeValue": p["value"], "component": var.component_json(), "variable": var.variable_json()}
    r = yield OutCall(Side.CHARGER, "SetVariables", {"setVariableData": [data]})
    assert r is not None
    return {"status": status16("ChangeConfiguration", r["setVariableResult"][0]["attributeStatus"])}


@_on(
    Side.CSMS, "Reset", "Reset", Support.PARTIAL, "Hard and Soft -> Immediate (reset_type table); Scheduled -> Accepted"
)
def reset(tr: V201V16, st: State, p: Payload) -> Result:
    r = yield OutCall(Side.CHARGER, "Reset", {"type": tables.to_v201("reset_type", p["type"]) or "Immediate"})
    assert r is not None
    return {"status": status16("Reset", r["status"])}


@_on(Side.CSMS, "ChangeAvailability", "ChangeAvailability", Support.SUPPORTED, "connectorId 0 -> no evse")
def change_availability(tr: V201V16, st: State, p: Payload) -> Result:
    req: Payload = {"operationalStatus": tables.to_v201("availability_type", p["type"]) or p["type"]}
    evse = _evse(tr, p["connectorId"])
    if evse is not None:
        req["evse"] = evse
    r = yield OutCall(Side.CHARGER, "ChangeAvailability", req)
    assert r is not None
    return {"status": status16("ChangeAvailability", r["status"])}


@_on(
    Side.CSMS,
    "UnlockConnector",
    "UnlockConnector",
    Support.PARTIAL,
    "a 2.0.1 station refuses during a transaction (OngoingAuthorizedTransaction -> UnlockFailed) where a 1.6 "
    "charger would stop it first",
)
def unlock_connector(tr: V201V16, st: State, p: Payload) -> Result:
    evse, conn = tr.opts.connectors.to_evse(p["connectorId"])
    if evse == 0:
        return {"status": "NotSupported"}
    r = yield OutCall(Side.CHARGER, "UnlockConnector", {"evseId": evse, "connectorId": conn})
    assert r is not None
    return {"status": status16("UnlockConnector", r["status"], "UnlockFailed")}


def _trigger(tr: V201V16, st: State, requested: str | None, connector: int | None, action16: str) -> Result:
    if requested is None:
        return {"status": "NotImplemented"}
    if requested == "MeterValues" and connector and st.tx_on(connector):
        requested = "TransactionEvent"  # arrives as TransactionEvent Updated -> MeterValues with transactionId
    req: Payload = {"requestedMessage": requested}
    evse = _evse(tr, connector or 0)
    if evse is not None:
        if requested == "StatusNotification":
            # 2.0.1 reports status per connector: a trigger for it must name the connector.
            evse["connectorId"] = tr.opts.connectors.to_evse(connector or 0)[1]
        req["evse"] = evse
    r = yield OutCall(Side.CHARGER, "TriggerMessage", req)
    assert r is not None
    return {"status": status16(action16, r["status"])}


@_on(
    Side.CSMS,
    "TriggerMessage",
    "TriggerMessage",
    Support.SUPPORTED,
    "DiagnosticsStatusNotification -> LogStatusNotification (trigger_message table); MeterValues on a "
    "connector with a transaction -> TransactionEvent",
)
def trigger_message(tr: V201V16, st: State, p: Payload) -> Result:
    requested = tables.to_v201("trigger_message", p["requestedMessage"])
    return (yield from _trigger(tr, st, requested, p.get("connectorId"), "TriggerMessage"))


@_on(
    Side.CSMS,
    "ExtendedTriggerMessage",
    "TriggerMessage",
    Support.SUPPORTED,
    "SignChargePointCertificate -> SignChargingStationCertificate",
)
def extended_trigger_message(tr: V201V16, st: State, p: Payload) -> Result:
    name = p["requestedMessage"]
    requested = "LogStatusNotification" if name == "LogStatusNotification" else tables.to_v201("trigger_message", name)
    return (yield from _trigger(tr, st, requested, p.get("connectorId"), "ExtendedTriggerMessage"))


@_on(Side.CSMS, "ClearCache", "ClearCache")
def clear_cache(tr: V201V16, st: State, p: Payload) -> Result:
    r = yield OutCall(Side.CHARGER, "ClearCache", {})
    assert r is not None
    return {"status": status16("ClearCache", r["status"])}


@_on(
    Side.CSMS,
    "SetChargingProfile",
    "SetChargingProfile",
    Support.PARTIAL,
    "ChargePointMaxProfile -> ChargingStationMaxProfile; the schedule gets the profile's id; a TxProfile needs "
    "a transaction (its integer id mapped, else the connector's running one), otherwise Rejected by the gateway",
)
def set_charging_profile(tr: V201V16, st: State, p: Payload) -> Result:
    profile = p["csChargingProfiles"]
    evse = tr.opts.connectors.to_evse(p["connectorId"])[0]
    tx_id: str | None = None
    if profile["chargingProfilePurpose"] == "TxProfile":
        found = st.tx_by_int(profile["transactionId"]) if "transactionId" in profile else st.tx_on(p["connectorId"])
        if found is None or evse == 0:
            return {"status": "Rejected"}
        tx_id = found[0]
    req = {"evseId": evse, "chargingProfile": profile_to_v201(profile, tx_id)}
    r = yield OutCall(Side.CHARGER, "SetChargingProfile", req)
    assert r is not None
    return {"status": status16("SetChargingProfile", r["status"])}


@_on(
    Side.CSMS, "ClearChargingProfile", "ClearChargingProfile", Support.SUPPORTED, "criteria -> chargingProfileCriteria"
)
def clear_charging_profile(tr: V201V16, st: State, p: Payload) -> Result:
    req: Payload = {}
    if "id" in p:
        req["chargingProfileId"] = p["id"]
    criteria: Payload = {}
    if "connectorId" in p:
        criteria["evseId"] = tr.opts.connectors.to_evse(p["connectorId"])[0]
    if "chargingProfilePurpose" in p:
        criteria["chargingProfilePurpose"] = tables.to_v201("charging_profile_purpose", p["chargingProfilePurpose"])
    if "stackLevel" in p:
        criteria["stackLevel"] = p["stackLevel"]
    if criteria:
        req["chargingProfileCriteria"] = criteria
    r = yield OutCall(Side.CHARGER, "ClearChargingProfile", req)
    assert r is not None
    return {"status": status16("ClearChargingProfile", r["status"], "Unknown")}


@_on(
    Side.CSMS,
    "GetCompositeSchedule",
    "GetCompositeSchedule",
    Support.PARTIAL,
    "limits rounded to 0.1; 2.0.1 schedule fields without a 1.6 place are dropped",
)
def get_composite_schedule(tr: V201V16, st: State, p: Payload) -> Result:
    req: Payload = {"duration": p["duration"], "evseId": tr.opts.connectors.to_evse(p["connectorId"])[0]}
    if "chargingRateUnit" in p:
        req["chargingRateUnit"] = p["chargingRateUnit"]
    r = yield OutCall(Side.CHARGER, "GetCompositeSchedule", req)
    assert r is not None
    out: Payload = {"status": status16("GetCompositeSchedule", r["status"])}
    sched = r.get("schedule")
    if out["status"] == "Accepted" and sched:
        out["connectorId"] = p["connectorId"]
        out["scheduleStart"] = sched["scheduleStart"]
        out["chargingSchedule"] = {
            "duration": sched["duration"],
            "startSchedule": sched["scheduleStart"],
            "chargingRateUnit": sched["chargingRateUnit"],
            "chargingSchedulePeriod": [
                {
                    "startPeriod": period["startPeriod"],
                    "limit": tenth(period["limit"]),
                    **({"numberPhases": period["numberPhases"]} if "numberPhases" in period else {}),
                }
                for period in sched["chargingSchedulePeriod"]
            ],
        }
    return out


@_on(
    Side.CSMS,
    "GetDiagnostics",
    "GetLog",
    Support.SUPPORTED,
    "GetLog DiagnosticsLog with a generated requestId; startTime/stopTime -> oldest/latestTimestamp",
)
def get_diagnostics(tr: V201V16, st: State, p: Payload) -> Result:
    request_id = st.next_id()
    st.remember_request(request_id, "GetDiagnostics")
    log: Payload = {"remoteLocation": p["location"]}
    if "startTime" in p:
        log["oldestTimestamp"] = p["startTime"]
    if "stopTime" in p:
        log["latestTimestamp"] = p["stopTime"]
    req: Payload = {"logType": "DiagnosticsLog", "requestId": request_id, "log": log}
    for key in ("retries", "retryInterval"):
        if key in p:
            req[key] = p[key]
    r = yield OutCall(Side.CHARGER, "GetLog", req)
    assert r is not None
    return {"fileName": r["filename"]} if r["status"] != "Rejected" and "filename" in r else {}


@_on(Side.CSMS, "GetLog", "GetLog", Support.SUPPORTED, "1.6 security extension: same structure")
def get_log(tr: V201V16, st: State, p: Payload) -> Result:
    st.remember_request(p["requestId"], "GetLog")
    r = yield OutCall(Side.CHARGER, "GetLog", dict(p))
    assert r is not None
    return {"status": status16("GetLog", r["status"]), **({"filename": r["filename"]} if "filename" in r else {})}


@_on(
    Side.CSMS,
    "UpdateFirmware",
    "UpdateFirmware",
    Support.PARTIAL,
    "requestId generated; unsigned firmware (a 2.0.1 station may refuse it: prefer SignedUpdateFirmware)",
)
def update_firmware(tr: V201V16, st: State, p: Payload) -> Result:
    request_id = st.next_id()
    st.remember_request(request_id, "UpdateFirmware")
    req: Payload = {
        "requestId": request_id,
        "firmware": {"location": p["location"], "retrieveDateTime": p["retrieveDate"]},
    }
    for key in ("retries", "retryInterval"):
        if key in p:
            req[key] = p[key]
    yield OutCall(Side.CHARGER, "UpdateFirmware", req)
    return {}


@_on(Side.CSMS, "SignedUpdateFirmware", "UpdateFirmware", Support.SUPPORTED, "1.6 security extension: same firmware")
def signed_update_firmware(tr: V201V16, st: State, p: Payload) -> Result:
    st.remember_request(p["requestId"], "SignedUpdateFirmware")
    r = yield OutCall(Side.CHARGER, "UpdateFirmware", dict(p))
    assert r is not None
    return {"status": status16("SignedUpdateFirmware", r["status"])}


@_on(
    Side.CSMS,
    "SendLocalList",
    "SendLocalList",
    Support.SUPPORTED,
    "idTag -> idToken (type the station showed, else remote_token_type); parentIdTag -> groupIdToken",
)
def send_local_list(tr: V201V16, st: State, p: Payload) -> Result:
    req: Payload = {"versionNumber": p["listVersion"], "updateType": p["updateType"]}
    entries = []
    for item in p.get("localAuthorizationList", []):
        token = st.token(item["idTag"], tr.opts.remote_token_type)
        entry: Payload = {"idToken": token}
        if "idTagInfo" in item:
            entry["idTokenInfo"] = id_tag_info_to_token_info(item["idTagInfo"], st, tr.opts.remote_token_type)
        entries.append(entry)
    if entries:
        req["localAuthorizationList"] = entries
    r = yield OutCall(Side.CHARGER, "SendLocalList", req)
    assert r is not None
    return {"status": status16("SendLocalList", r["status"], "Failed")}


@_on(Side.CSMS, "GetLocalListVersion", "GetLocalListVersion")
def get_local_list_version(tr: V201V16, st: State, p: Payload) -> Result:
    r = yield OutCall(Side.CHARGER, "GetLocalListVersion", {})
    assert r is not None
    return {"listVersion": r["versionNumber"]}


@_on(
    Side.CSMS, "ReserveNow", "ReserveNow", Support.SUPPORTED, "connectorId 0 -> no evseId; parentIdTag -> groupIdToken"
)
def reserve_now(tr: V201V16, st: State, p: Payload) -> Result:
    req: Payload = {
        "id": p["reservationId"],
        "expiryDateTime": p["expiryDate"],
        "idToken": st.token(p["idTag"], tr.opts.remote_token_type),
    }
    if p["connectorId"] > 0:
        req["evseId"] = tr.opts.connectors.to_evse(p["connectorId"])[0]
    if p.get("parentIdTag"):
        req["groupIdToken"] = st.token(p["parentIdTag"], tr.opts.remote_token_type)
    r = yield OutCall(Side.CHARGER, "ReserveNow", req)
    assert r is not None
    return {"status": status16("ReserveNow", r["status"])}


@_on(Side.CSMS, "CancelReservation", "CancelReservation")
def cancel_reservation(tr: V201V16, st: State, p: Payload) -> Result:
    r = yield OutCall(Side.CHARGER, "CancelReservation", {"reservationId": p["reservationId"]})
    assert r is not None
    return {"status": status16("CancelReservation", r["status"])}


_PNC_DOWN = frozenset(
    {"CertificateSigned", "InstallCertificate", "DeleteCertificate", "GetInstalledCertificateIds", "TriggerMessage"}
)


@_on(
    Side.CSMS,
    "DataTransfer",
    "DataTransfer / Plug & Charge messages",
    Support.SUPPORTED,
    f"vendorId {PNC_VENDOR} with messageId CertificateSigned, InstallCertificate, DeleteCertificate, "
    "GetInstalledCertificateIds or TriggerMessage becomes that 2.0.1 message (the answer JSON in data)",
)
def data_transfer_down(tr: V201V16, st: State, p: Payload) -> Result:
    if p["vendorId"] == PNC_VENDOR and p.get("messageId") in _PNC_DOWN:
        action = str(p["messageId"])
        try:
            inner = json.loads(p.get("data", ""))
        except ValueError:
            inner = None
        if not isinstance(inner, dict) or schemas.validate(Version.V201, action, inner) is not None:
            return {"status": "Rejected", "data": f"not a valid 2.0.1 {action}"}
        r = yield OutCall(Side.CHARGER, action, inner)
        return {"status": "Accepted", "data": json.dumps(r)}
    return (yield from _data_transfer(Side.CHARGER, p))


@_on(
    Side.CSMS, "CertificateSigned", "CertificateSigned", Support.SUPPORTED, "certificateType ChargingStationCertificate"
)
def certificate_signed(tr: V201V16, st: State, p: Payload) -> Result:
    req = {"certificateChain": p["certificateChain"], "certificateType": "ChargingStationCertificate"}
    r = yield OutCall(Side.CHARGER, "CertificateSigned", req)
    assert r is not None
    return {"status": status16("CertificateSigned", r["status"])}


@_on(Side.CSMS, "InstallCertificate", "InstallCertificate", Support.SUPPORTED, "certificate_type table")
def install_certificate(tr: V201V16, st: State, p: Payload) -> Result:
    kind = tables.to_v201("certificate_type", p["certificateType"])
    if kind is None:
        return {"status": "Rejected"}
    r = yield OutCall(Side.CHARGER, "InstallCertificate", {"certificateType": kind, "certificate": p["certificate"]})
    assert r is not None
    return {"status": status16("InstallCertificate", r["status"])}


@_on(Side.CSMS, "GetInstalledCertificateIds", "GetInstalledCertificateIds", Support.SUPPORTED, "certificate_type table")
def get_installed_certificate_ids(tr: V201V16, st: State, p: Payload) -> Result:
    kind = tables.to_v201("certificate_type", p["certificateType"])
    if kind is None:
        return {"status": "NotFound"}
    r = yield OutCall(Side.CHARGER, "GetInstalledCertificateIds", {"certificateType": [kind]})
    assert r is not None
    out: Payload = {"status": status16("GetInstalledCertificateIds", r["status"], "NotFound")}
    hashes = [c["certificateHashData"] for c in r.get("certificateHashDataChain", [])]
    if hashes:
        out["certificateHashData"] = hashes
    return out


@_on(Side.CSMS, "DeleteCertificate", "DeleteCertificate")
def delete_certificate(tr: V201V16, st: State, p: Payload) -> Result:
    r = yield OutCall(Side.CHARGER, "DeleteCertificate", {"certificateHashData": p["certificateHashData"]})
    assert r is not None
    return {"status": status16("DeleteCertificate", r["status"], "Failed")}


# --- the translator ----------------------------------------------------------------------------------------


class V201V16:
    """A 2.0.1 charging station behind the gateway, a 1.6J central system upstream."""

    name = NAME
    charger_version = Version.V201
    csms_version = Version.V16

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        self.opts = Options.parse(options or {})

    def handle_call(self, origin: Side, call: Call, ctx: Context) -> Handler:
        spec = _HANDLERS.get((origin, call.action))
        if spec is None:
            version = self.charger_version if origin is Side.CHARGER else self.csms_version
            raise Refuse(
                ErrorKind.NOT_SUPPORTED,
                f"{call.action} from an OCPP {version.value} {origin.value} has no OCPP "
                f"{(self.csms_version if origin is Side.CHARGER else self.charger_version).value} counterpart",
            )
        return self._run(spec, origin, call, ctx)

    def background(self, ctx: Context) -> Handler | None:
        """Held transaction messages to push while the station is quiet; None when nothing is held."""
        st = State(ctx)
        if not any(_held(tx) for tx in st.txs.values()):
            return None
        return push_held(st)

    def _run(self, spec: Spec, origin: Side, call: Call, ctx: Context) -> Handler:
        st = State(ctx)
        if origin is Side.CHARGER and call.action != "TransactionEvent" and st.txs:
            yield from flush(st)
        return (yield from spec.fn(self, st, call.payload))

    def coverage(self) -> list[CoverageRow]:
        rows = []
        for side, version in ((Side.CHARGER, self.charger_version), (Side.CSMS, self.csms_version)):
            for action in directions.sent_by(version, side):
                spec = _HANDLERS.get((side, action))
                if spec is None:
                    rows.append(CoverageRow(side, action, Support.NOT_SUPPORTED, "", "refused (NotSupported)"))
                else:
                    rows.append(CoverageRow(side, action, spec.support, spec.target, spec.notes))
        return rows


register(Version.V201, Version.V16, lambda options: V201V16(options))
