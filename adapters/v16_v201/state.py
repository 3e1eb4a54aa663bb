"""The translator's persisted per-charger state: a typed view over ``ctx.namespace("v16_v201")``.

Everything here is plain JSON (str/int/bool/list/dict, string keys) so the
runtime can store it; every mutator calls ``ctx.save()``. Layout::

    next_tx:        the next 1.6 integer transactionId (never reused)
    tx:             {"<int>": {id, int, seq, connector, evse, evse_connector, id_token, key,
                               charging_state, remote_start_id}}   running transactions
    ended:          the last few ended transactions (same shape plus stop_event, the Ended sent, and
                    stop_reply, the charger's answer once the CSMS confirmed it), for a repeated StopTransaction
    unmatched_stops: the last few StopTransactions for an id the gateway never saw start, answered locally
    unmatched_stops_total: how many of those there were in all
    connectors:     {"<connectorId>": {status, charging_state, problem}}
    remote_starts:  [{remote_start_id, id_tag, type, evse}]          RequestStartTransaction not yet started
    token_types:    {"<idTag>": "<IdTokenEnumType>"}                 types learnt from the CSMS
    reservations:   {"<reservationId>": {connector, expiry}}         accepted ReserveNow not yet used or ended
    profiles:       {"<chargingProfileId>": {evse, profile}}         charging profiles the charger accepted
    triggers:       {"<connectorId>": {message, until}}  a TriggerMessage the charger will answer with
                    MeterValues: the 2.0.1 message the CSMS asked for, until when (epoch seconds)
    log_request_id / firmware_request_id: requestId of the GetLog / UpdateFirmware in progress
    pending_reset:  true while a Reset(OnIdle) waits for the last transaction to end
    boot_reason:    the BootNotification reason the gateway expects next (RemoteReset, Triggered, ...)
    next_event_id:  NotifyEvent eventId counter
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from adapters.base import Context

NAMESPACE = "v16_v201"
MAX_REMOTE_STARTS = 16
MAX_TOKEN_TYPES = 256
MAX_ENDED = 8
MAX_UNMATCHED_STOPS = 16
MAX_PROFILES = 64


class State:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        fresh = NAMESPACE not in ctx.state
        self.d = ctx.namespace(NAMESPACE)
        if fresh:
            ctx.save()

    def save(self) -> None:
        self.ctx.save()

    # -- transactions -------------------------------------------------------------------------

    @property
    def transactions(self) -> dict[str, dict[str, Any]]:
        return self.d.setdefault("tx", {})  # type: ignore[no-any-return]

    def start_transaction(self, **fields: Any) -> dict[str, Any]:
        """A new running transaction with a fresh UUID and a never-reused integer id; seqNo starts at 0.

        The integer comes from the ids the store reserved (unique across restarts and gateway instances);
        without any (no store reachable, unit tests) from this charger's own counter.
        """
        n = self._reserved_id()
        if n is None:
            n = int(self.d.get("next_tx", 1))
            self.d["next_tx"] = n + 1
        tx = {"id": self.ctx.new_uuid(), "int": n, "seq": 0, **fields}
        self.transactions[str(n)] = tx
        self.save()
        return tx

    def _reserved_id(self) -> int | None:
        while (n := self.ctx.ids.take()) is not None:
            if str(n) not in self.transactions:  # the charger's own counter may have reached it long ago
                return n
        return None

    def tx_by_int(self, n: int) -> dict[str, Any] | None:
        return self.transactions.get(str(n))

    def tx_by_id(self, transaction_id: str) -> dict[str, Any] | None:
        return next((tx for tx in self.transactions.values() if tx["id"] == transaction_id), None)

    def tx_on_connector(self, connector: int) -> dict[str, Any] | None:
        return next((tx for tx in self.transactions.values() if tx["connector"] == connector), None)

    def tx_by_key(self, key: str) -> dict[str, Any] | None:
        return next((tx for tx in self.transactions.values() if tx.get("key") == key), None)

    def next_seq(self, tx: dict[str, Any]) -> int:
        """The seqNo for the transaction's next event (0, 1, 2, ... per transaction)."""
        seq = int(tx["seq"])
        tx["seq"] = seq + 1
        self.save()
        return seq

    def end_transaction(self, tx: dict[str, Any], stop_event: dict[str, Any]) -> None:
        """Move a running transaction to the few ended ones, with the Ended event that closes it.

        A transaction ends once: a repeated StopTransaction finds it here and gets the first one's answer.
        """
        self.transactions.pop(str(tx["int"]), None)
        tx["stop_event"] = stop_event
        ended: list[dict[str, Any]] = self.d.setdefault("ended", [])
        ended[:] = [e for e in ended if e["int"] != tx["int"]]
        ended.append(tx)
        del ended[:-MAX_ENDED]
        self.save()

    def ended_tx(self, n: int) -> dict[str, Any] | None:
        return next((tx for tx in self.d.get("ended", []) if tx["int"] == n), None)

    def confirm_stop(self, tx: dict[str, Any], reply: dict[str, Any]) -> None:
        """The CSMS took the Ended event: ``reply`` is what every StopTransaction for it is answered."""
        tx["stop_reply"] = reply
        self.save()

    def add_unmatched_stop(self, record: dict[str, Any]) -> None:
        """Keep a StopTransaction for a transaction the gateway never saw start (the last few, and a count)."""
        unmatched: list[dict[str, Any]] = self.d.setdefault("unmatched_stops", [])
        unmatched.append(record)
        del unmatched[:-MAX_UNMATCHED_STOPS]
        self.d["unmatched_stops_total"] = int(self.d.get("unmatched_stops_total", 0)) + 1
        self.save()

    # -- connectors ---------------------------------------------------------------------------

    def connector(self, connector: int) -> dict[str, Any]:
        conns: dict[str, dict[str, Any]] = self.d.setdefault("connectors", {})
        return conns.setdefault(str(connector), {})

    def connectors(self) -> dict[int, dict[str, Any]]:
        return {int(k): v for k, v in self.d.get("connectors", {}).items()}

    # -- remote starts and tokens -------------------------------------------------------------

    def add_remote_start(self, remote_start_id: int, id_tag: str, token_type: str, evse: int | None) -> None:
        pending: list[dict[str, Any]] = self.d.setdefault("remote_starts", [])
        pending.append({"remote_start_id": remote_start_id, "id_tag": id_tag, "type": token_type, "evse": evse})
        del pending[:-MAX_REMOTE_STARTS]
        self.save()

    def drop_remote_start(self, remote_start_id: int) -> None:
        pending: list[dict[str, Any]] = self.d.get("remote_starts", [])
        pending[:] = [p for p in pending if p["remote_start_id"] != remote_start_id]
        self.save()

    def take_remote_start(self, id_tag: str, evse: int) -> dict[str, Any] | None:
        """The oldest pending remote start for this token on this EVSE (or on any EVSE), removed."""
        pending: list[dict[str, Any]] = self.d.get("remote_starts", [])
        for p in pending:
            if p["id_tag"] == id_tag and p["evse"] in (None, evse):
                pending.remove(p)
                self.save()
                return p
        return None

    def remember_token_type(self, id_tag: str, token_type: str) -> None:
        types: dict[str, str] = self.d.setdefault("token_types", {})
        if types.get(id_tag) == token_type:
            return
        types.pop(id_tag, None)
        types[id_tag] = token_type
        for old in list(types)[:-MAX_TOKEN_TYPES]:
            del types[old]
        self.save()

    def token_type(self, id_tag: str) -> str | None:
        types: dict[str, str] = self.d.get("token_types", {})
        return types.get(id_tag)

    # -- triggered messages ------------------------------------------------------------------

    def expect_trigger(self, connectors: list[int], message: str, until: float) -> None:
        """The charger was asked for MeterValues on these connectors, standing in for 2.0.1 ``message``."""
        if not connectors:
            return
        triggers: dict[str, dict[str, Any]] = self.d.setdefault("triggers", {})
        for c in connectors:
            triggers[str(c)] = {"message": message, "until": until}
        self.save()

    def take_trigger(self, connector: int, now: float) -> str | None:
        """The 2.0.1 message a MeterValues from ``connector`` answers (None: not triggered), forgotten now."""
        triggers: dict[str, dict[str, Any]] = self.d.get("triggers", {})
        if not triggers:
            return None
        hit = triggers.pop(str(connector), None)
        for key in [k for k, v in triggers.items() if v["until"] < now]:
            del triggers[key]
        self.save()
        return str(hit["message"]) if hit and hit["until"] >= now else None

    def drop_triggers(self, connectors: list[int]) -> None:
        triggers: dict[str, dict[str, Any]] = self.d.get("triggers", {})
        if any(triggers.pop(str(c), None) for c in connectors):
            self.save()

    # -- reservations -------------------------------------------------------------------------

    def add_reservation(self, reservation_id: int, connector: int, expiry: str) -> None:
        reservations: dict[str, dict[str, Any]] = self.d.setdefault("reservations", {})
        reservations[str(reservation_id)] = {"connector": connector, "expiry": expiry}
        self.save()

    def drop_reservation(self, reservation_id: int) -> None:
        if self.d.get("reservations", {}).pop(str(reservation_id), None) is not None:
            self.save()

    def reservations_on(self, connector: int) -> list[tuple[int, str]]:
        """(reservationId, expiry) of the reservations held on a connector."""
        return [
            (int(k), str(v["expiry"])) for k, v in self.d.get("reservations", {}).items() if v["connector"] == connector
        ]

    # -- charging profiles --------------------------------------------------------------------

    @property
    def profiles(self) -> dict[str, dict[str, Any]]:
        return self.d.setdefault("profiles", {})  # type: ignore[no-any-return]

    def store_profile(self, evse: int, profile: dict[str, Any]) -> None:
        """Remember an installed profile; like the charger, drop any it replaces (same id, or same slot)."""
        slot = (evse, profile["stackLevel"], profile["chargingProfilePurpose"])
        for key, entry in list(self.profiles.items()):
            old = entry["profile"]
            if old["id"] == profile["id"] or (entry["evse"], old["stackLevel"], old["chargingProfilePurpose"]) == slot:
                del self.profiles[key]
        self.profiles[str(profile["id"])] = {"evse": evse, "profile": profile}
        for key in list(self.profiles)[:-MAX_PROFILES]:
            del self.profiles[key]
        self.save()

    def clear_profiles(self, keep: Callable[[int, dict[str, Any]], bool]) -> None:
        """Forget the profiles for which ``keep(evse, profile)`` is false."""
        for key, entry in list(self.profiles.items()):
            if not keep(entry["evse"], entry["profile"]):
                del self.profiles[key]
                self.save()

    # -- scalars ------------------------------------------------------------------------------

    def get(self, key: str, default: Any = None) -> Any:
        return self.d.get(key, default)

    def set(self, key: str, value: Any) -> None:
        if value is None:
            if key in self.d:
                del self.d[key]
                self.save()
            return
        if self.d.get(key) != value:
            self.d[key] = value
            self.save()

    def next_event_id(self) -> int:
        n = int(self.d.get("next_event_id", 1))
        self.d["next_event_id"] = n + 1
        self.save()
        return n
