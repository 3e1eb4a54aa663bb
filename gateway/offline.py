"""Store-and-forward while the CSMS is away: local answers, the durable queue, replay bookkeeping.

Sans-I/O like the session that uses it: nothing here touches a socket, a
clock or the store. The session asks ``local_answer`` for the answer a
charger gets when its CSMS cannot give one, keeps the queued CALLs as
``Queued`` items, and persists them through actions the runner commits
before the answer goes out (``gateway.session.Enqueue`` / ``Settle``).

What lives in the charger's persisted state (``ctx.state["offline"]``)::

    auth:      {"<idTag or idToken>": {"status": ...}}  the CSMS's last verdict per token (charger's version)
    boot:      {"interval": n}                  the charger was Accepted by the CSMS before, with this interval
    alias:     {"<gateway txId>": <CSMS txId>}  a 1.6 charger's offline transactionId -> the one the CSMS knows
    seq:       the next queue sequence number, from before the number was shared by the charger's CSMS legs
               (a floor for the shared one)
    differs:   how many replayed messages the CSMS judged differently from the local answer
    verdicts:  the last few of those, for the admin API
    dropped:   non-transaction messages dropped because the queue was full
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from adapters.base import Context
from gateway.ocppj import Version

NAMESPACE = "offline"
MAX_AUTH = 1024  # cached verdicts per charger (oldest forgotten first)
MAX_ALIASES = 64
MAX_VERDICTS = 20

# Messages whose every instance the CSMS must see, in order: never coalesced, never dropped silently.
TRANSACTION_ACTIONS = frozenset({"StartTransaction", "StopTransaction", "MeterValues", "TransactionEvent"})
# Messages kept for the CSMS, latest only, by the key ``coalesce_key`` gives.
COALESCED_ACTIONS = frozenset({"StatusNotification", "BootNotification"})
# Notifications queued like any other message (kept in order, dropped first when the queue is full).
NOTIFICATIONS = frozenset({
    "SecurityEventNotification", "FirmwareStatusNotification", "DiagnosticsStatusNotification",
    "LogStatusNotification", "SignedFirmwareStatusNotification", "NotifyEvent",
})
QUEUED_ACTIONS = TRANSACTION_ACTIONS | COALESCED_ACTIONS | NOTIFICATIONS
# Answered locally, never queued: the CSMS has nothing to learn from them later.
LOCAL_ONLY_ACTIONS = frozenset({"Heartbeat", "Authorize"})
ANSWERED_ACTIONS = QUEUED_ACTIONS | LOCAL_ONLY_ACTIONS
# Waited for only answer_after seconds even while the link is up: a CSMS that hangs must not hold a charging session.
TIMED_ACTIONS = TRANSACTION_ACTIONS | {"Authorize"}

# What a queued item is: a charger CALL the gateway answered (replayed through the translator), or a message
# a translator made for the CSMS (``adapters.base.Defer``: sent as it is, resolved by the translator first).
CHARGER_KIND = "charger"
TRANSLATED_KIND = "translated"

DEFAULT_BOOT_INTERVAL = 300  # seconds; a charger never accepted before is told Pending with this retry interval


@dataclass(frozen=True, slots=True)
class OfflinePolicy:
    """What the gateway does for a charger whose CSMS cannot answer (``offline:`` in the config)."""

    mode: Literal["answer", "reject"] = "answer"
    answer_after: float = 5.0
    unknown_id_tag: Literal["accept", "reject"] = "accept"
    max_queue: int = 10_000

    @property
    def answers(self) -> bool:
        return self.mode == "answer"


@dataclass(slots=True)
class Queued:
    """A message kept for the CSMS, replayed in ``seq`` order: a charger CALL answered locally (kind "charger",
    in the charger's version) or a translator's message (kind "translated", in the CSMS's version)."""

    seq: int
    ts: float
    action: str
    unique_id: str
    payload: dict[str, Any]
    # kind charger: the answer the charger got, to compare with the CSMS's verdict;
    # kind translated: the translator's reference (``Defer.ref``), for its ``resolve`` and ``settled``.
    local: dict[str, Any]
    key: str | None = None  # coalescing key (latest per key kept); None: every instance kept
    dead: bool = False  # superseded, dropped or answered: skipped by the replay, already settled
    kind: str = CHARGER_KIND

    @property
    def transaction(self) -> bool:
        return self.action in TRANSACTION_ACTIONS


def coalesce_key(action: str, payload: dict[str, Any]) -> str | None:
    """Which earlier queued message this one supersedes (same key), or None when each one counts."""
    if action == "StatusNotification":
        if "evseId" in payload:
            return f"status:{payload['evseId']}:{payload.get('connectorId')}"
        return f"status:{payload.get('connectorId')}"
    if action == "BootNotification":
        return "boot"
    return None


class OfflineBook:
    """The persisted part of a charger's offline bookkeeping: a typed view over ``ctx.state["offline"]``."""

    def __init__(self, ctx: Context, numbers: dict[str, Any] | None = None) -> None:
        self.ctx = ctx
        # The charger's queue numbering ({"seq": next}), shared by the sessions of all its CSMS legs: the rows
        # of an old primary that drains its transactions and those of the current one share the table's key.
        self._numbers = numbers

    @property
    def d(self) -> dict[str, Any]:
        return self.ctx.namespace(NAMESPACE)

    def next_seq(self, floor: int) -> int:
        """A queue sequence number above every one used for this charger (``floor``: the highest stored + 1)."""
        d = self.d
        numbers = d if self._numbers is None else self._numbers
        n = max(int(numbers.get("seq", 1)), int(d.get("seq", 1)), floor)
        numbers["seq"] = n + 1
        self.ctx.save()
        return n

    def raise_floor(self, floor: int) -> None:
        """Rows up to ``floor`` - 1 are in the store: no leg numbers a new one below it."""
        numbers = self.d if self._numbers is None else self._numbers
        if int(numbers.get("seq", 1)) < floor:
            numbers["seq"] = floor

    # -- the CSMS's verdicts, for local answers ------------------------------------------------

    def verdict(self, token: str) -> dict[str, Any] | None:
        auth: dict[str, dict[str, Any]] = self.d.get("auth", {})
        return auth.get(token)

    def learn_verdict(self, token: str, info: dict[str, Any]) -> None:
        auth: dict[str, dict[str, Any]] = self.d.setdefault("auth", {})
        entry = {"status": info["status"]}
        if auth.get(token) == entry:
            return
        auth.pop(token, None)
        auth[token] = entry
        for old in list(auth)[:-MAX_AUTH]:
            del auth[old]
        self.ctx.save()

    def boot_interval(self) -> int | None:
        boot: dict[str, Any] | None = self.d.get("boot")
        return None if boot is None else int(boot["interval"])

    def learn_boot(self, interval: int) -> None:
        if self.d.get("boot") != {"interval": interval}:
            self.d["boot"] = {"interval": interval}
            self.ctx.save()

    # -- transaction ids the charger got offline -----------------------------------------------

    @property
    def aliases(self) -> dict[str, int]:
        return self.d.get("alias", {})  # type: ignore[no-any-return]

    def add_alias(self, local_id: int, csms_id: int) -> None:
        alias: dict[str, int] = self.d.setdefault("alias", {})
        alias[str(local_id)] = csms_id
        for old in list(alias)[:-MAX_ALIASES]:
            del alias[old]
        self.ctx.save()

    def local_id_of(self, csms_id: int) -> int | None:
        for local, csms in self.aliases.items():
            if csms == csms_id:
                return int(local)
        return None

    # -- reports ------------------------------------------------------------------------------

    def note_differs(self, record: dict[str, Any]) -> None:
        d = self.d
        d["differs"] = int(d.get("differs", 0)) + 1
        verdicts: list[dict[str, Any]] = d.setdefault("verdicts", [])
        verdicts.append(record)
        del verdicts[:-MAX_VERDICTS]
        self.ctx.save()

    def note_dropped(self) -> None:
        self.d["dropped"] = int(self.d.get("dropped", 0)) + 1
        self.ctx.save()

    def summary(self) -> dict[str, Any]:
        d = self.ctx.state.get(NAMESPACE, {})
        return {"verdict_differs": int(d.get("differs", 0)), "dropped": int(d.get("dropped", 0)),
                "recent_differences": list(d.get("verdicts", []))}


# ---------------------------------------------------------------- local answers


def token_of(version: Version, action: str, payload: dict[str, Any]) -> str | None:
    """The idTag (1.6) or idToken value (2.0.1/2.1) a request carries, if any."""
    if version is Version.V16:
        tag = payload.get("idTag")
        return tag if isinstance(tag, str) else None
    token = payload.get("idToken")
    if isinstance(token, dict) and isinstance(token.get("idToken"), str):
        return f"{token.get('type', '')}:{token['idToken']}"
    return None


def status_of(version: Version, answer: dict[str, Any] | None) -> str | None:
    """The authorization status in an answer (idTagInfo / idTokenInfo), if it has one."""
    if not answer:
        return None
    info = answer.get("idTagInfo" if version is Version.V16 else "idTokenInfo")
    return info.get("status") if isinstance(info, dict) else None


class NoLocalAnswer(Exception):
    """The gateway cannot answer this CALL itself (e.g. no transaction id reserved): the charger gets a CALLERROR."""


def local_answer(
    version: Version, action: str, payload: dict[str, Any], book: OfflineBook, policy: OfflinePolicy,
    now_iso: str, new_transaction_id: int | None,
) -> dict[str, Any]:
    """The answer the gateway gives a charger in its own version when the CSMS cannot (schema-valid, minimal)."""
    if action == "Heartbeat":
        return {"currentTime": now_iso}
    if action == "BootNotification":
        interval = book.boot_interval()
        status = "Accepted" if interval is not None else "Pending"
        return {"currentTime": now_iso, "interval": interval if interval is not None else DEFAULT_BOOT_INTERVAL,
                "status": status}
    token = token_of(version, action, payload)
    info: dict[str, Any] | None = None
    if token is not None:
        info = _auth_info(book, policy, token)
    if action == "StartTransaction":
        if new_transaction_id is None:
            raise NoLocalAnswer("no gateway transaction id is reserved (the store could not be reached)")
        return {"transactionId": new_transaction_id, "idTagInfo": info or {"status": "Accepted"}}
    if info is None:
        return {}
    key = "idTagInfo" if version is Version.V16 else "idTokenInfo"
    return {key: info}


def _auth_info(book: OfflineBook, policy: OfflinePolicy, token: str) -> dict[str, Any]:
    cached = book.verdict(token)
    if cached is not None:
        return {"status": cached["status"]}
    return {"status": "Accepted" if policy.unknown_id_tag == "accept" else "Invalid"}
