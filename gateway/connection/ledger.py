"""Which CSMS owns each of a charger's open transactions: the rule that makes route changes billing-safe.

A transaction belongs to the CSMS that started it. While a route change is
waiting, or after a forced one, the charger's transaction messages are sent
by this ledger's answer: the owner gets every update and the end of its own
transactions, under the ids it knows; the new primary gets everything else.
A shadow gets its copy of a transaction only when it saw the start, as
that shadow.

Sans-I/O: the ledger reads parsed frames (in the charger's version) and
keeps its book in the charger's persisted state under ``transactions``::

    {"<charger's transaction id>": {"owner": csms, "shadow": csms | None}}

1.6 ids are the integers the charger got in StartTransaction's answer (from
a 1.6 CSMS, or made by the gateway's 1.6->2.x translator); 2.x ids are the
charger's own transactionId strings.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from gateway.ocppj import Call, Version

_KEY = "transactions"
_MAX_STARTS = 16  # 1.6 StartTransactions waiting for their answer


class Routing(NamedTuple):
    """Where one charger CALL goes: its owner's session, and whether the shadow may have a copy."""

    owner: str
    mirror: bool


class TransactionLedger:
    """The owners of one charger's open transactions, as the charger names them."""

    def __init__(self, state: dict[str, Any], version: Version) -> None:
        book = state.get(_KEY)
        if not isinstance(book, dict):
            book = state[_KEY] = {}
        self.book: dict[str, dict[str, Any]] = book
        self.v16 = version is Version.V16
        # 1.6 StartTransaction unique id -> (owner, shadow), until the answer names the transactionId
        self.starts: dict[str, tuple[str, str | None]] = {}
        self.changed = False

    # ------------------------------------------------------------ reading

    def open_for(self, owner: str) -> list[str]:
        """The open transactions ``owner`` started, oldest first."""
        return [tx for tx, entry in self.book.items() if entry.get("owner") == owner]

    def owners(self) -> set[str]:
        return {str(entry.get("owner")) for entry in self.book.values()}

    def shadow_copies(self, shadow: str) -> list[str]:
        """Open transactions whose start ``shadow`` received as a shadow copy."""
        return [tx for tx, entry in self.book.items() if entry.get("shadow") == shadow]

    def transaction_of(self, call: Call) -> str | None:
        """The transaction a charger CALL is about, as the charger names it (None: none)."""
        payload = call.payload
        if self.v16:
            if call.action in ("MeterValues", "StopTransaction"):
                tx = payload.get("transactionId")
                return str(tx) if isinstance(tx, int) and not isinstance(tx, bool) else None
            return None
        if call.action == "TransactionEvent":
            info = payload.get("transactionInfo")
            tx = info.get("transactionId") if isinstance(info, dict) else None
            return tx if isinstance(tx, str) else None
        return None

    # ------------------------------------------------------------ the charger speaks

    def route(self, call: Call, primary: str, shadow: str | None) -> Routing:
        """Where a charger CALL goes, noting starts and ends; ``primary`` gets whatever nobody owns."""
        tx = self.transaction_of(call)
        if tx is None:
            if self.v16 and call.action == "StartTransaction":
                self.starts[call.unique_id] = (primary, shadow)
                while len(self.starts) > _MAX_STARTS:
                    self.starts.pop(next(iter(self.starts)))
            return Routing(primary, True)
        entry = self.book.get(tx)
        ends = call.action == "StopTransaction" or (
            call.action == "TransactionEvent" and call.payload.get("eventType") == "Ended")
        if entry is None:
            if not ends and not self.v16:  # a 2.x transaction starts with its first event, Started or not
                self.book[tx] = {"owner": primary, "shadow": shadow}
                self.changed = True
            return Routing(primary, shadow is not None and not self.v16)
        if ends:
            del self.book[tx]
            self.changed = True
        return Routing(str(entry["owner"]), shadow is not None and entry.get("shadow") == shadow)

    def answered(self, unique_id: str, frame: list[Any]) -> None:
        """The answer a charger got to one of its CALLs: a 1.6 StartTransaction's names its transaction."""
        start = self.starts.pop(unique_id, None)
        if start is None or frame[0] != 3 or not isinstance(frame[2], dict):
            return
        tx = frame[2].get("transactionId")
        if isinstance(tx, int) and not isinstance(tx, bool):
            owner, shadow = start
            self.book[str(tx)] = {"owner": owner, "shadow": shadow}
            self.changed = True

    def forget_owner(self, owner: str) -> list[str]:
        """Drop the transactions of a CSMS that is no longer configured; returns their ids."""
        gone = self.open_for(owner)
        for tx in gone:
            del self.book[tx]
        self.changed = self.changed or bool(gone)
        return gone

    def take_changed(self) -> bool:
        changed, self.changed = self.changed, False
        return changed


def open_transactions(state: dict[str, Any] | None, owner: str) -> list[str]:
    """The open transactions ``owner`` started, from a charger's persisted state (for chargers not connected)."""
    book = (state or {}).get(_KEY)
    if not isinstance(book, dict):
        return []
    return [tx for tx, entry in book.items() if isinstance(entry, dict) and entry.get("owner") == owner]
