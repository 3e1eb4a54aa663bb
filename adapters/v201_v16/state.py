"""The translator's persisted per-station state: a typed view over ``ctx.namespace("v201_v16")``.

Plain JSON only, so the runtime can store it. Layout::

    tx:          {"<station transactionId>": {connector, int, started, begin_wh, last_wh, seqs, id_tag,
                                              token_type, opened, waiting, refusals, auth, charging_state,
                                              ended, ...}}
                 opened: its StartTransaction was deferred; waiting: 1.6 messages kept until it is authorized;
                 (start, queue: held messages of a gateway from before the one queue, see ``adopt_held``)
    ended:       the last 20 ended station transactionIds (a repeated Ended is answered, not resent)
    connectors:  {"<connectorId>": {status201, sent16, finishing, last_wh}}
    next_id:     the next remoteStartId / requestId the gateway hands out
    requests:    {"<requestId>": "<1.6 action that asked>"}   for status notifications echoing it
    tokens:      {"<idTag>": {idToken, type}}                   idTokens the station showed, by 1.6 idTag
    remote_starts: {"<remoteStartId>": {id_tag, type}}          RemoteStartTransactions not yet started
    readonly:    {"<1.6 key>": bool}                            mutability from the station's NotifyReport
"""

from __future__ import annotations

from typing import Any

from adapters.base import Context

NAME = "v201_v16"
# Remembered tokens (type, full id behind a 20-character 1.6 idTag) per station.
TOKEN_MEMORY = 500
# RemoteStartTransactions remembered per station until a transaction names their remoteStartId
# (a rejected or unanswered one is pushed out by later ones).
REMOTE_START_MEMORY = 16


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

    def remember_remote_start(self, remote_start_id: int, id_tag: str, token_type: str) -> None:
        """The 1.6 idTag the gateway sent a RequestStartTransaction for, by the remoteStartId it chose."""
        starts: dict[str, dict[str, str]] = self.ns.setdefault("remote_starts", {})
        starts[str(remote_start_id)] = {"id_tag": id_tag, "type": token_type}
        while len(starts) > REMOTE_START_MEMORY:
            starts.pop(next(iter(starts)))
        self.save()

    def take_remote_start(self, remote_start_id: int | None) -> dict[str, str] | None:
        """The remembered remote start of ``remote_start_id`` (forgotten once taken); None if the gateway never
        issued it."""
        if remote_start_id is None:
            return None
        found: dict[str, str] | None = self.ns.get("remote_starts", {}).pop(str(remote_start_id), None)
        if found is not None:
            self.save()
        return found
