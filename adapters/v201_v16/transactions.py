"""Station-initiated TransactionEvents: StartTransaction, MeterValues and StopTransaction, held in order."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from adapters.base import Handler, OutCall, PeerError, PeerTimeout, Side, Step, Support
from adapters.v16_v201 import tables
from adapters.v201_v16.connectors import status_update
from adapters.v201_v16.convert import id_token_info, last_energy, meter_values_to_v16
from adapters.v201_v16.env import Env, Payload, Result, connector_of, handles
from adapters.v201_v16.state import State

# How many held transaction messages one incoming station message may push to the CSMS before its own.
FLUSH_BUDGET = 5
# CALLERRORs for one StartTransaction after which the held transaction is given up.
START_ATTEMPTS = 3


def _new_tx(env: Env, st: State, p: Payload) -> dict[str, Any]:
    evse = p.get("evse", {})
    connector = connector_of(env.connectors, int(evse.get("id", 1)), evse.get("connectorId"))
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


def _unauthorized(tx: dict[str, Any]) -> bool:
    """Whether the transaction still has no idTag for its StartTransaction."""
    return tx.get("id_tag") is None and tx.get("int") is None and tx.get("start") is None


def _take_remote_start(st: State, tx: dict[str, Any], remote_start_id: int | None) -> None:
    """Give the transaction the idTag of the RemoteStartTransaction the gateway issued ``remote_start_id`` for."""
    remote = st.take_remote_start(remote_start_id)
    if remote is not None:
        tx["id_tag"], tx["token_type"] = remote["id_tag"], remote["type"]


def authorize_waiting(st: State, tx_id: str, remote_start_id: int) -> None:
    """A RequestStartTransaction the station answered with a running transaction: that one is the remote start's."""
    tx = st.txs.get(tx_id)
    if tx is not None and _unauthorized(tx):
        _take_remote_start(st, tx, remote_start_id)
        st.save()


def _build_start(env: Env, tx: dict[str, Any], p: Payload) -> None:
    """The StartTransaction for this transaction, once it has an idTag (or the anonymous one)."""
    if tx.get("start") is not None or tx.get("int") is not None:
        return
    id_tag = tx.get("id_tag") or env.anonymous_id_tag
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


def held(tx: dict[str, Any]) -> int:
    """How many messages this transaction holds for the CSMS (a pending StartTransaction counts as one)."""
    if tx.get("int") is None:
        return 0 if tx.get("start") is None else 1 + len(tx["queue"])
    return len(tx["queue"])


def flush(st: State, budget: int = FLUSH_BUDGET) -> Generator[Step, Payload | None, bool]:
    """Push held transaction messages to the CSMS (at most ``budget`` calls); True when nothing is left."""
    left = [budget]
    for tx_id, tx in list(st.txs.items()):
        if held(tx) and not (yield from _send_held(st, tx_id, tx, left)):
            return False
    return True


def push_held(st: State) -> Handler:
    """Flush, a budget at a time, while the CSMS takes messages; stop when all is sent or nothing moves."""
    while True:
        before = sum(held(tx) for tx in st.txs.values())
        if (yield from flush(st)) or sum(held(tx) for tx in st.txs.values()) >= before:
            return None


@handles(
    Side.CHARGER,
    "TransactionEvent",
    "StartTransaction, MeterValues, StopTransaction, StatusNotification",
    Support.PARTIAL,
    "Started -> StartTransaction (the CSMS's integer id mapped to the station's string id; a Started without "
    "idToken takes the idTag of the RemoteStartTransaction whose remoteStartId it names, else waits for the "
    "authorizing Updated, or uses option anonymous_id_tag); Updated -> MeterValues with "
    "transactionId (+ StatusNotification when chargingState changes); Ended -> StopTransaction (meterStop from "
    "the Transaction.End energy register, else the last energy seen; reason mapped; transactionData). Held in "
    "order until the integer id is known, and retried when the CSMS link comes back and every "
    "held_retry_interval while the station is quiet (a start the CSMS refuses 3 times is dropped); a repeated seqNo is "
    "answered without a second message. Lost: seqNo, triggerReason, offline flag, numberOfPhasesUsed, "
    "cableMaxCurrent, remoteStartId; a transaction that never had an idToken (nor a remote start) is not "
    "reported; an idToken "
    "longer than 20 characters is truncated.",
)
def transaction_event(env: Env, st: State, p: Payload) -> Result:
    info = p["transactionInfo"]
    tx_id = str(info["transactionId"])
    event = p["eventType"]
    tx = st.txs.get(tx_id)
    if tx is None:
        if event != "Started" and tx_id in st.ns.get("ended", []):
            return {}  # a repeat of an event already delivered
        tx = st.txs[tx_id] = _new_tx(env, st, p)
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
        if _unauthorized(tx):
            tx["id_tag"], tx["token_type"] = tag, token["type"]
        start_tag = tag
    elif _unauthorized(tx):
        _take_remote_start(st, tx, info.get("remoteStartId"))
    _build_start(env, tx, p)

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
