"""Station-initiated TransactionEvents: StartTransaction, MeterValues and StopTransaction, deferred in order.

Every 1.6 message a transaction makes goes to the CSMS as a ``Defer``: stored in the charger's offline queue
with the translator state that made it, sent when nothing queued is ahead of it, and sent again after a
restart or an outage until the CSMS has answered it. ``resolve`` gives a message the CSMS's integer
transaction id just before it goes; ``settled`` learns that id from the StartTransaction's answer.
"""

from __future__ import annotations

from typing import Any

from adapters.base import DROP, Context, Defer, Notify, OutCall, PeerError, Settlement, Side, Support
from adapters.v16_v201 import tables
from adapters.v201_v16.connectors import status_update
from adapters.v201_v16.convert import id_token_info, last_energy, meter_values_to_v16
from adapters.v201_v16.env import Env, Payload, Result, connector_of, handles
from adapters.v201_v16.state import State

# CALLERRORs for one StartTransaction after which the transaction and what it still has queued are given up.
START_ATTEMPTS = 3
# Messages kept per transaction while it waits for the event that authorizes it (the oldest go first).
MAX_WAITING = 200


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
        "seqs": [],
    }


def _opened(tx: dict[str, Any]) -> bool:
    """Whether the transaction's StartTransaction was handed to the queue (or the CSMS knows it already)."""
    return bool(tx.get("opened")) or tx.get("int") is not None


def _unauthorized(tx: dict[str, Any]) -> bool:
    """Whether the transaction still has no idTag for its StartTransaction."""
    return tx.get("id_tag") is None and not _opened(tx)


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


def _start_payload(env: Env, tx: dict[str, Any]) -> Payload | None:
    """The StartTransaction for this transaction, once it has an idTag (or the anonymous one); None before
    that, and once it was made."""
    if _opened(tx):
        return None
    id_tag = tx.get("id_tag") or env.anonymous_id_tag
    if id_tag is None:
        return None
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
    tx["opened"] = True
    return start


def _close(st: State, tx_id: str) -> None:
    """Forget an ended transaction, keeping its id a while to recognise a repeated Ended."""
    st.txs.pop(tx_id, None)
    ended: list[str] = st.ns.setdefault("ended", [])
    ended.append(tx_id)
    del ended[:-20]


def _defer(tx_id: str, action: str, payload: Payload) -> Defer:
    return Defer(OutCall(Side.CSMS, action, payload), {"tx": tx_id})


# ---------------------------------------------------------------- the queue's side (``Deferring``)


def resolve(ref: dict[str, Any], action: str, payload: Payload, ctx: Context) -> Payload | None:
    """A queued transaction message as it goes now: with the CSMS's transaction id, not yet, or never."""
    tx = State(ctx).txs.get(str(ref.get("tx")))
    if tx is None:
        return DROP  # given up (a start refused START_ATTEMPTS times), or ended already
    if action == "StartTransaction":
        return payload if tx.get("int") is None else DROP
    if tx.get("int") is None:
        return None  # its StartTransaction has not been answered yet
    return {**payload, "transactionId": tx["int"]}


def settled(ref: dict[str, Any], action: str, result: Payload | None, error: PeerError | None,
            ctx: Context) -> Settlement:
    """What the CSMS's answer to a queued transaction message teaches the translator."""
    st = State(ctx)
    tx_id = str(ref.get("tx"))
    tx = st.txs.get(tx_id)
    if tx is None:
        return Settlement()
    if action == "StartTransaction":
        if result is None:
            # A CALLERROR: 1.6 chargers retry transaction messages, so the start is kept, but after
            # START_ATTEMPTS refusals it is given up, so one message the CSMS will never take cannot hold
            # the station's later messages back for good.
            tx["refusals"] = tx.get("refusals", 0) + 1
            if tx["refusals"] < START_ATTEMPTS:
                st.save()
                return Settlement(keep=True)
            _close(st, tx_id)
            st.save()
            return Settlement()
        tx["int"] = result["transactionId"]
        tx["auth"] = id_token_info(result.get("idTagInfo"), tx.get("token_type", "Local"))
        tx.pop("refusals", None)
        st.save()
        notify = [step for step in status_update(st, tx["connector"], tx["started"]) if isinstance(step, Notify)]
        return Settlement(notify=notify)
    if action == "StopTransaction":
        _close(st, tx_id)
        st.save()
    return Settlement()  # a refused MeterValues is logged by the runtime; the rest still goes


def adopt_held(ctx: Context) -> list[Defer]:
    """What a gateway before the shared queue held in the state (``start``, ``queue``), as deferred messages.

    A transaction still waiting for its authorization keeps its messages (as ``waiting``): that wait is a
    translation rule, not a CSMS that is away.
    """
    st = State(ctx)
    found: list[Defer] = []
    for tx_id, tx in st.txs.items():
        if "start" not in tx and "queue" not in tx:
            continue  # already of this gateway
        start = tx.pop("start", None)
        queue: list[dict[str, Any]] = tx.pop("queue", None) or []
        ctx.save()
        if start is None and tx.get("int") is None:
            if queue:
                tx.setdefault("waiting", []).extend(queue)
            continue
        if start is not None:
            tx["opened"] = True
            found.append(_defer(tx_id, "StartTransaction", start))
        found += [_defer(tx_id, item["action"], item["payload"]) for item in queue]
    return found


@handles(
    Side.CHARGER,
    "TransactionEvent",
    "StartTransaction, MeterValues, StopTransaction, StatusNotification",
    Support.PARTIAL,
    "Started -> StartTransaction (the CSMS's integer id mapped to the station's string id; a Started without "
    "idToken takes the idTag of the RemoteStartTransaction whose remoteStartId it names, else waits for the "
    "authorizing Updated, or uses option anonymous_id_tag); Updated -> MeterValues with "
    "transactionId (+ StatusNotification when chargingState changes); Ended -> StopTransaction (meterStop from "
    "the Transaction.End energy register, else the last energy seen; reason mapped; transactionData). Every "
    "1.6 message goes through the charger's offline queue, in order, and waits there while the CSMS does not "
    "answer (the integer id filled in when it is known; a start the CSMS refuses 3 times is dropped with what "
    "follows it); a repeated seqNo is answered without a second message. Lost: seqNo, triggerReason, offline "
    "flag, numberOfPhasesUsed, cableMaxCurrent, remoteStartId; a transaction that never had an idToken (nor a "
    "remote start) is not reported; an idToken longer than 20 characters is truncated.",
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

    messages: list[tuple[str, Payload]] = []
    start = _start_payload(env, tx)
    if start is not None:
        messages.append(("StartTransaction", start))
        messages += [(m["action"], m["payload"]) for m in tx.pop("waiting", [])]
    if event == "Updated" and meter:
        converted = meter_values_to_v16(meter)
        if converted:
            messages.append(("MeterValues", {"connectorId": connector, "meterValue": converted}))
    if event == "Ended":
        tx["ended"] = True
        st.connector(connector)["finishing"] = True
        if not _opened(tx):
            _close(st, tx_id)  # never authorized: 1.6 has no transaction to end
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
        messages.append(("StopTransaction", stop))
    if not _opened(tx):
        # Not authorized yet: what it says waits for the event that authorizes it.
        waiting: list[dict[str, Any]] = tx.setdefault("waiting", [])
        waiting += [{"action": a, "payload": m} for a, m in messages]
        del waiting[:-MAX_WAITING]
        messages = []
    st.save()

    answers: dict[str, Payload | None] = {}
    for action, payload in messages:
        answers[action] = yield _defer(tx_id, action, payload)
    auth = tx.get("auth")  # learnt from the StartTransaction's answer, now or earlier
    yield from status_update(st, connector, p["timestamp"])

    answer: Payload = {}
    if not token or any(a is None for a in answers.values()):
        return answer  # something waits in the queue: the gateway has no verdict of the CSMS to pass on
    stop_answer = answers.get("StopTransaction")
    if stop_answer is not None and stop_answer.get("idTagInfo") is not None:
        answer["idTokenInfo"] = id_token_info(stop_answer["idTagInfo"], token["type"])
    elif auth is not None and start_tag == tx.get("id_tag"):
        answer["idTokenInfo"] = auth
    elif start_tag is not None:
        try:
            verdict = yield OutCall(Side.CSMS, "Authorize", {"idTag": start_tag})
        except PeerError:
            verdict = None  # the event itself went through: answer without a verdict on the token
        if verdict is not None:
            answer["idTokenInfo"] = id_token_info(verdict["idTagInfo"], token["type"])
    return answer
