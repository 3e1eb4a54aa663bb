"""The store's engine: an in-memory queue on the hot path, one writer thread, reads off the loop.

``record()`` runs on the event loop for every frame, so it only appends to a
deque (atomic under the GIL, no lock). One writer thread per store owns the
write connection: it wakes every ``flush_interval`` or as soon as
``batch_max`` records are queued, and inserts each batch in one commit (the
backend decides how: multi-row INSERTs on SQLite, COPY on PostgreSQL).
Translation state goes through the same writer (the latest save per charger
wins) so a state save is never behind a log record that
describes the frame that caused it by more than one cycle.

Backends (SQLite, PostgreSQL) supply the SQL; everything about queues,
batching, retries, back-pressure and retention lives here.
"""

from __future__ import annotations

import abc
import asyncio
import concurrent.futures
import contextlib
import functools
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

import orjson
import structlog

from gateway.records import FrameRecord

log = structlog.get_logger("gateway.store")

# 2: message_log.relayed_to (a pass-through pair in one row) and the id boundary of paired rows.
# 3: relayed_version, relayed_action, relayed_unique_id, relayed_frame (a translated pair in one row).
SCHEMA_VERSION = 3
# The columns of a row's second ("out") half: relayed_to, then what differs from the first half (RELAYED_COLUMNS).
RELAYED_COLUMNS = ("relayed_to", "relayed_version", "relayed_action", "relayed_unique_id", "relayed_frame")
# How far a log's rows go, by the schema that last migrated it: nothing paired (1), pass-through pairs in
# relayed_to (2), every RELAYED_COLUMN (3). Readers select what is there: a reader may come before any writer.
UNPAIRED, RELAYED, PAIRS = 0, 1, 2
DEFAULT_MAX_QUEUE = 200_000
# Back-pressure: above HIGH queued records a healthy but busy writer asks the gateway to stop reading
# from chargers; below LOW it may read again. Well under max_queue, so a busy writer never drops.
DEFAULT_HIGH_WATER = 40_000
DEFAULT_LOW_WATER = 10_000
# Longest a charger goes unread for the store: past it, keepalive pongs would go unread and chargers drop.
DEFAULT_MAX_PAUSE = 5.0
DEFAULT_PRUNE_INTERVAL = 3600.0  # retention is in days; hourly is plenty
PRUNE_CHUNK = 10_000  # rows per DELETE, so pruning never holds the write lock for long
_GIVE_UP_AFTER = 3  # failed attempts of a non-transient error (or any error while closing)
_MAX_BACKOFF = 5.0
_LOG_EVERY = 10.0  # seconds between repeated drop/failure log lines

# Column order of a message row as the backends select it.
MESSAGE_COLUMNS = (
    "id",
    "ts",
    "charger_id",
    "direction",
    "peer",
    "ocpp_version",
    "message_type",
    "action",
    "unique_id",
    "frame",
    "error_code",
    "note",
)

# The log row as the backends select it: MESSAGE_COLUMNS, then RELAYED_COLUMNS (None on unpaired rows).
_RELAYED_TO = len(MESSAGE_COLUMNS)
# store_meta key: the first row id written with pairs. Rows below it keep their ids as message ids; a row
# ``r`` from it on stands for message ids 2r - B ("in") and 2r - B + 1 (its relayed "out" half), so ids stay
# unique and increasing across the change and a follower's ``after_id`` keeps working.
PAIRED_FROM = "message_log_paired_from"

# Index of the payload in an OCPP-J array, by message type id: CALL and SEND
# carry it after the action, CALLRESULT after the id, errors carry details last.
_PAYLOAD_INDEX = {2: 3, 6: 3, 3: 2, 4: 4, 5: 4}

_T = TypeVar("_T")
Connection = Any  # sqlite3.Connection or psycopg.Connection; backends know which


class StoreError(Exception):
    """The store cannot do what was asked (unreachable, unreadable, closed, ...)."""


def frame_payload(frame: str) -> Any:
    """The payload of an OCPP-J frame's text, or None when it is not a readable frame."""
    try:
        msg = orjson.loads(frame)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(msg, list) or not msg or type(msg[0]) is not int:
        return None
    idx = _PAYLOAD_INDEX.get(msg[0])
    if idx is None or len(msg) <= idx:
        return None
    return msg[idx]


def iso_utc(ts: float) -> str:
    """Unix seconds as ISO 8601 UTC with milliseconds and a Z, the way OCPP writes times."""
    return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def message_dict(row: tuple[Any, ...]) -> dict[str, Any]:
    """A selected message row as the API returns it: ISO timestamp, payload parsed from the frame."""
    (id_, ts, charger_id, direction, peer, version, mtype, action, unique_id, frame, code, note) = row
    return {
        "id": id_,
        "ts": iso_utc(ts),
        "charger_id": charger_id,
        "direction": direction,
        "peer": peer,
        "ocpp_version": version,
        "message_type": mtype,
        "action": action,
        "unique_id": unique_id,
        "payload": frame_payload(frame),
        "frame": frame,
        "error_code": code,
        "note": note,
    }


def message_id(row_id: int, paired_from: int | None) -> int:
    """The message id of a row's first (or only) message."""
    return row_id if paired_from is None or row_id < paired_from else 2 * row_id - paired_from


def first_row(after_id: int, paired_from: int | None) -> int:
    """The lowest row id that may hold a message with an id greater than ``after_id``."""
    if paired_from is None or after_id < paired_from:
        return after_id + 1
    return (after_id + paired_from) // 2


def expand_rows(rows: list[tuple[Any, ...]], paired_from: int | None) -> list[tuple[Any, ...]]:
    """Log rows (MESSAGE_COLUMNS + RELAYED_COLUMNS) as messages in MESSAGE_COLUMNS order, each pair as two."""
    out: list[tuple[Any, ...]] = []
    append = out.append
    for row in rows:
        mid = message_id(row[0], paired_from)
        append(row[:_RELAYED_TO] if mid == row[0] else (mid, *row[1:_RELAYED_TO]))
        relayed = row[_RELAYED_TO]
        if relayed is not None:
            version, action, unique_id, frame = row[_RELAYED_TO + 1:_RELAYED_TO + 5]
            append((mid + 1, row[1], row[2], "out", relayed, row[5] if version is None else version, row[6],
                    row[7] if action is None else action, row[8] if unique_id is None else unique_id,
                    row[9] if frame is None else frame, row[10], row[11]))
    return out


_REC_RELAYED_TO = FrameRecord._fields.index("relayed_to")
_new_tuple = tuple.__new__


def _pair(first: FrameRecord, second: FrameRecord) -> FrameRecord | None:
    """``first`` ("in") standing for ``second`` ("out") too, or None when one row cannot say both exactly."""
    frame, version, action, unique_id = second[8], second[4], second[6], second[7]
    if frame == first[8] and version == first[4] and action == first[6] and unique_id == first[7]:
        return _new_tuple(FrameRecord, (*first[:_REC_RELAYED_TO], second[3], None, None, None, None))  # relayed
    # A relayed column's None reads as "the same as the first half": a second half without an action or an
    # id where the first has one keeps its own row.
    if (action is None and first[6] is not None) or (unique_id is None and first[7] is not None):
        return None
    return _new_tuple(FrameRecord, (
        *first[:_REC_RELAYED_TO], second[3], None if version == first[4] else version,
        None if action == first[6] else action, None if unique_id == first[7] else unique_id,
        None if frame == first[8] else frame,
    ))


def frame_count(batch: list[FrameRecord]) -> int:
    """How many frames a batch of queued records stands for (a relayed pair is two)."""
    return len(batch) + sum(1 for r in batch if r[_REC_RELAYED_TO] is not None)


# A queued offline message as stored (``gateway.offline.Queued``): seq, ts, action, unique_id, payload JSON,
# local answer JSON, coalescing key, kind, and the CSMS it waits for (None: whichever is the charger's
# primary, as rows from before the column were).
QueueRow = tuple[int, float, str, str, str, str, "str | None", str, "str | None"]
QUEUE_COLUMNS = ("seq", "ts", "action", "unique_id", "payload", "local_answer", "coalesce_key", "kind", "csms")
# Columns the offline_queue table gained after its first release, with their SQL type: added on start.
QUEUE_COLUMNS_ADDED = {"kind": "TEXT NOT NULL DEFAULT 'charger'", "csms": "TEXT"}
# The first number handed out for gateway-assigned transaction ids: far above the small ids CSMSs count
# from, so an id the gateway gave a charger offline is not also one its CSMS gives it (1.6 ids are int32).
FIRST_ALLOCATED_ID = 1_000_000_000
ALLOCATED_ID = "transaction_id"


@dataclass(slots=True)
class _Commit:
    """A durable write the loop waits for: state and queue changes, committed with every queued record."""

    charger_id: str
    state: bytes | None
    enqueue: list[QueueRow]
    settle: list[int]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[None]


@dataclass(slots=True)
class _Job:
    """A read or small write that must run after everything committed before it (on the writer thread)."""

    op: Callable[[Connection], Any]
    future: concurrent.futures.Future[Any] = field(default_factory=concurrent.futures.Future)


@dataclass(slots=True)
class _Control:
    """A request from the loop that the writer answers after its next cycle."""

    kind: Literal["flush", "prune"]
    future: concurrent.futures.Future[int] = field(default_factory=concurrent.futures.Future)
    now: float | None = None


class Store(abc.ABC):
    """The gateway's persistent store: message log and per-charger translation state.

    Use ``open_store(url)``; see the package docstring for the contract.
    """

    #: True when reader and writer must share one connection (SQLite in memory).
    shares_connection = False

    def __init__(
        self,
        *,
        description: str,
        retention_days: float | None = 30.0,
        batch_max: int = 2000,
        flush_interval: float = 0.2,
        max_queue: int = DEFAULT_MAX_QUEUE,
        prune_interval: float = DEFAULT_PRUNE_INTERVAL,
    ) -> None:
        if batch_max < 1:
            raise ValueError("batch_max must be at least 1")
        if flush_interval <= 0:
            raise ValueError("flush_interval must be positive")
        if retention_days is not None and retention_days <= 0:
            raise ValueError("retention_days must be positive (or None to keep records forever)")
        if max_queue < batch_max:
            raise ValueError("max_queue must be at least batch_max")
        self.description = description
        self.retention_days = retention_days
        self.batch_max = batch_max
        self.flush_interval = flush_interval
        self.max_queue = max_queue
        self.prune_interval = prune_interval

        self.high_water = min(DEFAULT_HIGH_WATER, max_queue // 2)
        self.low_water = self.high_water // 4
        # Called on the event loop with True when the writer falls behind, False when it has caught up.
        self._on_pressure: Callable[[bool], None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.max_pause = DEFAULT_MAX_PAUSE
        self._pressed = False
        self._held_off = False  # pressed for max_pause already: no more until the queue has drained
        self._pause_timer: asyncio.TimerHandle | None = None
        self._failing = False  # the last write attempt failed
        self._records: deque[FrameRecord] = deque()
        self._retry_batch: list[FrameRecord] = []
        self._retry_attempts = 0
        # charger id -> state serialised at save time (a snapshot: the caller keeps mutating its dict)
        self._states: dict[str, bytes] = {}
        self._inflight_states: dict[str, bytes] = {}
        self._state_lock = threading.Lock()
        self._controls: deque[_Control] = deque()
        self._commits: deque[_Commit] = deque()
        self._retry_commits: list[_Commit] = []
        self._jobs: deque[_Job] = deque()
        self._durable_writes = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: Connection | None = None
        self._closed = False

        self._read_lock = threading.Lock()
        self._reader: Connection | None = None
        self._layout_known: tuple[int | None, int] | None = None

        self._written = 0  # frames
        self._rows_written = 0  # log rows: a relayed pair is one row for two frames
        self._batches = 0
        self._dropped = 0
        self._states_written = 0
        self._states_lost = 0
        self._write_errors = 0
        self._pruned = 0
        self._last_drop_log = 0.0
        self._last_error_log = 0.0
        self._last_error = ""
        self._is_transient_last = False

    # ----------------------------------------------------------------- backend

    def location_problem(self) -> str | None:
        """Why the store could not be opened where it is configured, found without opening or creating
        anything (None: nothing known against it). Used by ``check-config`` and before ``run`` starts."""
        return None

    def location_note(self) -> str | None:
        """Something the operator should know about where the store lives that is not a problem."""
        return None

    @abc.abstractmethod
    def probe(self, timeout: float) -> str:
        """Connect once, read only, and say what answered; StoreError (one line) when nothing usable did."""

    @abc.abstractmethod
    def _connect_writer(self) -> Connection:
        """A new connection for the writer thread."""

    @abc.abstractmethod
    def _connect_reader(self) -> Connection:
        """A new connection for reads (raise StoreError when there is nothing to read)."""

    @abc.abstractmethod
    def _create_schema(self, conn: Connection) -> None:
        """Create tables and indexes if missing; refuse a schema newer than SCHEMA_VERSION."""

    @abc.abstractmethod
    def _insert_messages(self, conn: Connection, rows: list[tuple[Any, ...]]) -> None:
        """Insert rows (``FrameRecord`` order, the table's column order) and commit."""

    @abc.abstractmethod
    def _upsert_states(self, conn: Connection, items: list[tuple[str, str, float]]) -> None:
        """Insert or replace (charger_id, state JSON, updated_at) and commit."""

    @abc.abstractmethod
    def _commit_all(
        self, conn: Connection, rows: list[tuple[Any, ...]], states: list[tuple[str, str, float]],
        enqueue: list[tuple[Any, ...]], settle: list[tuple[str, int]],
    ) -> None:
        """In one transaction: insert log rows, upsert states, insert offline-queue rows
        ``(charger_id, *QueueRow)``, delete queue rows ``(charger_id, seq)``; then commit."""

    @abc.abstractmethod
    def _select_queue(self, conn: Connection, charger_id: str) -> list[QueueRow]:
        """A charger's offline-queue rows, oldest (lowest seq) first."""

    @abc.abstractmethod
    def _count_queued(self, conn: Connection) -> list[tuple[str, int]]:
        """(charger_id, offline-queue rows) of every charger that has any."""

    @abc.abstractmethod
    def _reserve(self, conn: Connection, name: str, count: int) -> list[int]:
        """``count`` numbers of the counter ``name`` that no caller has had or will get again; committed."""

    @abc.abstractmethod
    def _delete_before(self, conn: Connection, cutoff: float, limit: int) -> int:
        """Delete up to ``limit`` message rows with ts < cutoff, commit, return how many."""

    @abc.abstractmethod
    def _paired_from(self, conn: Connection) -> int | None:
        """The log's PAIRED_FROM row id, or None while the log has no relayed_to column (not migrated yet)."""

    @abc.abstractmethod
    def _relayed_layout(self, conn: Connection) -> int:
        """RELAYED when the log has relayed_to but not the other RELAYED_COLUMNS yet, else PAIRS."""

    @abc.abstractmethod
    def _select_messages(
        self, conn: Connection, charger_id: str | None, limit: int, from_row: int | None, layout: int
    ) -> list[tuple[Any, ...]]:
        """Log rows (MESSAGE_COLUMNS, then RELAYED_COLUMNS: NULL where ``layout`` has none), oldest first: the
        first ``limit`` rows with id >= ``from_row``, or the newest ``limit`` when it is None."""

    @abc.abstractmethod
    def _select_state(self, conn: Connection, charger_id: str) -> str | None:
        """The stored state JSON of a charger."""

    @abc.abstractmethod
    def _is_transient(self, exc: BaseException) -> bool:
        """Whether an error is worth retrying forever (lost connection, locked database)."""

    @abc.abstractmethod
    def _close_connection(self, conn: Connection) -> None:
        """Close a connection, ignoring errors."""

    # ---------------------------------------------------------------- hot path

    def record(self, rec: FrameRecord) -> None:
        """Queue a frame for the log; never blocks, never raises on a full queue.

        A frame sent right after one was received (same charger, time, message type, error code and note:
        the frame relayed as it was, or its translation) joins the queued "in" record: one row for the pair.
        """
        q = self._records
        if self._closed:
            self._note_drop(1, "store closed")
            return
        if rec[2] == "out" and q:
            try:
                prev = q[-1]
            except IndexError:  # the writer took everything meanwhile
                prev = None
            # Fields one by one, not slices: this runs on the event loop for every frame sent.
            if prev is not None and prev[2] == "in" and prev[11] is None and prev[0] == rec[0] \
                    and prev[1] == rec[1] and prev[5] == rec[5] and prev[9] == rec[9] and prev[10] == rec[10]:
                pair = _pair(prev, rec)
                if pair is not None:
                    try:
                        # Only this thread appends, so a record the writer took meanwhile empties the queue.
                        q[-1] = pair
                        return
                    except IndexError:
                        pass
        if len(q) >= self.max_queue:
            # Keep the newest: when the store cannot keep up, the frames of the
            # live fault are the ones an operator will look for.
            try:
                lost = q.popleft()
            except IndexError:
                pass
            else:
                self._note_drop(1 if lost[_REC_RELAYED_TO] is None else 2, "queue full")
        q.append(rec)
        if len(q) >= self.batch_max and not self._wake.is_set():
            self._wake.set()
        if len(q) >= self.high_water and not self._pressed and self._on_pressure is not None \
                and not self._failing and not self._held_off:
            # Healthy but behind: slow the chargers down rather than drop their frames. (A failing store
            # does not press: it would hold every charger hostage to the database.)
            self._pressed = True
            assert self._loop is not None
            self._pause_timer = self._loop.call_later(self.max_pause, self._paused_too_long)
            self._on_pressure(True)

    def on_pressure(self, callback: Callable[[bool], None]) -> None:
        """Ask to be told (on this event loop) when the writer falls behind and when it has caught up."""
        self._on_pressure = callback
        self._loop = asyncio.get_running_loop()

    @property
    def pressed(self) -> bool:
        return self._pressed

    @property
    def failing(self) -> bool:
        """Whether the writer's last attempt failed (the store is unreachable or refusing writes)."""
        return self._failing

    def _maybe_release(self) -> None:
        """On the loop: let chargers be read again once the queue is short (or the store is failing)."""
        drained = len(self._records) <= self.low_water
        if drained:
            self._held_off = False
        if self._pressed and (drained or self._failing or self._closed):
            self._release()

    def _paused_too_long(self) -> None:
        """On the loop: a writer this slow for this long is not catching up; stop holding chargers."""
        if self._pressed:
            self._held_off = True
            log.warning("store.backpressure_lifted", seconds=self.max_pause, queued=len(self._records),
                        store=self.description, note="chargers are read again; records beyond max_queue are dropped")
            self._release()

    def _release(self) -> None:
        self._pressed = False
        if self._pause_timer is not None:
            self._pause_timer.cancel()
            self._pause_timer = None
        if self._on_pressure is not None:
            self._on_pressure(False)

    def save_state(self, charger_id: str, state: dict[str, Any]) -> None:
        """Queue a charger's translation state; the latest save per charger wins, saves are never dropped.

        The dict is serialised now (a snapshot), so a non-JSON value raises TypeError here,
        at the caller, rather than in the writer.
        """
        data = orjson.dumps(state)
        if self._closed:
            self._states_lost += 1
            log.error("store.state_lost", charger_id=charger_id, reason="store closed", store=self.description)
            return
        with self._state_lock:
            self._states[charger_id] = data

    def commit(
        self, charger_id: str, state: dict[str, Any] | None, enqueue: list[QueueRow], settle: list[int],
    ) -> asyncio.Future[None]:
        """Durably write a charger's state and offline-queue changes, with every log record queued so far.

        The returned future resolves once all of it is committed in one transaction; a charger's answer
        that depends on this state waits for it. Commits queued together share a transaction (group commit).
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        if self._closed or self._thread is None:
            future.set_exception(StoreError("store is not running"))
            return future
        data = None if state is None else orjson.dumps(state)
        self._commits.append(_Commit(charger_id, data, enqueue, settle, loop, future))
        self._wake.set()
        return future

    async def offline_queue(self, charger_id: str) -> list[QueueRow]:
        """A charger's queued offline messages, after every commit queued before this call."""
        return await self._job(lambda conn: self._select_queue(conn, charger_id))  # type: ignore[no-any-return]

    async def offline_queue_depths(self) -> dict[str, int]:
        """How many messages each charger has queued for a CSMS, as written (chargers with none are absent)."""
        return dict(await self._read(self._count_queued))

    async def reserve_ids(self, count: int, name: str = ALLOCATED_ID) -> list[int]:
        """``count`` gateway-assigned numbers, reserved durably: never handed out again, across restarts and
        by any other gateway instance sharing this store."""
        return await self._job(lambda conn: self._reserve(conn, name, count))  # type: ignore[no-any-return]

    async def _job(self, op: Callable[[Connection], Any]) -> Any:
        if self._thread is None or not self._thread.is_alive() or self._closed:
            raise StoreError("store is not running (start() it first)")
        job = _Job(op)
        self._jobs.append(job)
        self._wake.set()
        return await asyncio.wrap_future(job.future)

    # ------------------------------------------------------------------- reads

    async def load_state(self, charger_id: str) -> dict[str, Any] | None:
        """The latest saved state of a charger (including saves not yet written), or None."""
        with self._state_lock:
            data = self._states.get(charger_id) or self._inflight_states.get(charger_id)
        if data is not None:
            return _as_state(orjson.loads(data))
        text = await self._read(lambda conn: self._select_state(conn, charger_id))
        return None if text is None else _as_state(orjson.loads(text))

    async def messages(
        self, charger_id: str | None, limit: int = 100, after_id: int | None = None
    ) -> list[dict[str, Any]]:
        """A charger's log records (all chargers' when ``charger_id`` is None), newest last.

        Without ``after_id``: the newest ``limit`` records. With it: the oldest
        ``limit`` records whose id is greater, so a follower pages forward with
        the last id it saw. Only written records are visible (``flush()`` first
        to see everything queued).
        """
        if limit < 1:
            return []
        return [message_dict(r) for r in await self._read(lambda conn: self._messages(conn, charger_id, limit,
                                                                                      after_id))]

    def _messages(
        self, conn: Connection, charger_id: str | None, limit: int, after_id: int | None
    ) -> list[tuple[Any, ...]]:
        paired_from, layout = self._log_layout(conn)
        if after_id is None:
            # A row holds one or two messages: the newest ``limit`` rows hold the newest ``limit`` messages.
            return expand_rows(self._select_messages(conn, charger_id, limit, None, layout), paired_from)[-limit:]
        # The first row may hold only messages up to ``after_id``: one row more fills the page.
        rows = self._select_messages(conn, charger_id, limit + 1, first_row(after_id, paired_from), layout)
        return [m for m in expand_rows(rows, paired_from) if m[0] > after_id][:limit]

    def _log_layout(self, conn: Connection) -> tuple[int | None, int]:
        """PAIRED_FROM and the layout (UNPAIRED, RELAYED, PAIRS); kept once it is PAIRS (nothing changes after)."""
        if self._layout_known is not None:
            return self._layout_known
        paired_from = self._paired_from(conn)
        layout = UNPAIRED if paired_from is None else self._relayed_layout(conn)
        if layout == PAIRS:
            self._layout_known = (paired_from, layout)
        return paired_from, layout

    async def load_states(self, prefix: str = "") -> dict[str, dict[str, Any]]:
        """Every saved state whose key starts with ``prefix`` (including saves not yet written), by key."""
        rows = await self._read(lambda conn: self._select_states(conn, prefix))
        found = {key: _as_state(orjson.loads(text)) for key, text in rows}
        with self._state_lock:
            pending = {**self._inflight_states, **self._states}
        found.update({k: _as_state(orjson.loads(v)) for k, v in pending.items() if k.startswith(prefix)})
        return found

    async def charger_frames(
        self, charger_id: str, since: float | None = None, until: float | None = None,
        after_id: int | None = None, limit: int = 10_000,
    ) -> list[dict[str, Any]]:
        """A charger's own frames (peer "charger"), oldest first, with ``since <= ts < until``, ids > ``after_id``.

        Rows as dicts of the log's columns, unconverted: ``ts`` in unix seconds, ``frame`` as text.
        """
        if limit < 1:
            return []
        lo, hi, after = -math.inf if since is None else since, math.inf if until is None else until, after_id or 0

        def select(conn: Connection) -> list[tuple[Any, ...]]:
            paired_from, layout = self._log_layout(conn)
            rows = self._select_charger_frames(conn, charger_id, lo, hi, first_row(after, paired_from), limit + 1,
                                               layout)
            # A pair's charger side is its "in" half when the charger sent it, else the half relayed to it.
            return [m for m in expand_rows(rows, paired_from) if m[4] == "charger" and m[0] > after][:limit]

        return [dict(zip(MESSAGE_COLUMNS, r, strict=True)) for r in await self._read(select)]

    async def logged_chargers(self, since: float | None = None, until: float | None = None) -> list[str]:
        """The ids of chargers with frames in the log between ``since`` and ``until``, sorted."""
        ids = await self._read(lambda conn: self._select_charger_ids(
            conn, -math.inf if since is None else since, math.inf if until is None else until))
        return sorted(ids)

    # Reads for comparison reports and replay (docs/shadow-and-compare.md); a backend without them says so.

    def _select_states(self, conn: Connection, prefix: str) -> list[tuple[str, str]]:
        raise StoreError(f"{self.description} cannot list saved states")

    def _select_charger_frames(
        self, conn: Connection, charger_id: str, since: float, until: float, from_row: int, limit: int,
        layout: int,
    ) -> list[tuple[Any, ...]]:
        """Rows as ``_select_messages`` selects them, oldest first, with the charger on either side."""
        raise StoreError(f"{self.description} cannot select a charger's frames by time")

    def _select_charger_ids(self, conn: Connection, since: float, until: float) -> list[str]:
        raise StoreError(f"{self.description} cannot list the chargers in its log")

    async def latest_calls(self, action: str) -> dict[str, Any]:
        """The payload of the newest ``action`` CALL each charger sent (as logged), by charger id.

        Migration plans select chargers by what their last BootNotification said. Only written
        records count, and only those the retention has kept.
        """
        rows = await self._read(lambda conn: self._select_latest_calls(conn, action))
        return {str(cid): frame_payload(frame) for cid, frame in rows}

    def _select_latest_calls(self, conn: Connection, action: str) -> list[tuple[str, str]]:
        """(charger_id, frame) of the newest CALL ``action`` received from each charger."""
        raise StoreError(f"{self.description} cannot look up chargers' latest {action}")

    async def _read(self, op: Callable[[Connection], Any]) -> Any:
        return await asyncio.to_thread(self._read_sync, op)

    def _read_sync(self, op: Callable[[Connection], Any]) -> Any:
        with self._read_lock:
            if self._reader is None:
                self._reader = self._connect_reader()
            try:
                return op(self._reader)
            except StoreError:
                raise
            except Exception as exc:
                if self._is_transient(exc) and not self.shares_connection:
                    # A lost connection is reopened on the next read rather than retried here.
                    self._close_connection(self._reader)
                    self._reader = None
                raise StoreError(f"cannot read {self.description}: {exc}") from exc

    # --------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Open the store, create the schema and start the writer thread; raises StoreError if it cannot."""
        if self._thread is not None:
            raise StoreError("store already started")
        if self._closed:
            raise StoreError("store is closed")
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="gateway-store-writer", daemon=True)
        self._thread.start()
        try:
            await asyncio.wrap_future(ready)
        except BaseException:
            await asyncio.to_thread(self._thread.join)
            self._thread = None
            raise

    async def flush(self) -> None:
        """Wait until everything queued before this call is written (StoreError if a write failed)."""
        await self._control(_Control("flush"))

    async def prune(self, now: float | None = None) -> int:
        """Delete message records older than the retention now (the writer also does it periodically).

        Returns the number of records deleted; 0 when retention is None.
        """
        return await self._control(_Control("prune", now=now))

    async def _control(self, ctl: _Control) -> int:
        if self._thread is None or not self._thread.is_alive():
            if ctl.kind == "flush" and self._thread is None and not self._records and not self._states:
                return 0
            raise StoreError("store is not running (start() it first)")
        self._controls.append(ctl)
        self._wake.set()
        return await asyncio.wrap_future(ctl.future)

    async def close(self) -> None:
        """Write everything still queued, stop the writer and close connections. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            self._stop.set()
            self._wake.set()
            await asyncio.to_thread(self._thread.join)
        elif not self._idle():
            self._abandon()  # never started: nothing could write what was queued
        await asyncio.to_thread(self._close_reader)

    def _close_reader(self) -> None:
        with self._read_lock:
            if self._reader is not None and not self.shares_connection:
                self._close_connection(self._reader)
            self._reader = None
        self._after_close()

    def _after_close(self) -> None:  # noqa: B027 - an optional hook, not an abstract method
        """Release what the backend holds beyond its connections (hook)."""

    @property
    def stats(self) -> dict[str, int]:
        """Counters for metrics: records (frames) and rows written, batches, queue depth, dropped, state saves,
        errors, pruned."""
        with self._state_lock:
            pending_states = len(self._states) + len(self._inflight_states)
        return {
            "written": self._written,
            "rows_written": self._rows_written,
            "batches": self._batches,
            "queue_depth": len(self._records) + len(self._retry_batch),
            "dropped": self._dropped,
            "states_written": self._states_written,
            "states_pending": pending_states,
            "states_lost": self._states_lost,
            "write_errors": self._write_errors,
            "pruned": self._pruned,
            "durable_writes": self._durable_writes,
            "commits_pending": len(self._commits) + len(self._retry_commits),
        }

    # ------------------------------------------------------------------ writer

    @contextlib.contextmanager
    def _writing(self) -> Iterator[Connection]:
        """The write connection, opened on demand, guarded when readers share it."""
        lock = self._read_lock if self.shares_connection else contextlib.nullcontext()
        with lock:
            if self._conn is None:
                self._conn = self._connect_writer()
            yield self._conn

    def _run(self, ready: concurrent.futures.Future[None]) -> None:
        try:
            with self._writing() as conn:
                self._create_schema(conn)
        except BaseException as exc:
            self._drop_connection()
            err = exc if isinstance(exc, StoreError) else StoreError(f"cannot open {self.description}: {exc}")
            ready.set_exception(err)
            return
        ready.set_result(None)
        next_prune = time.monotonic()  # prune once at start: the gateway may have been down for days
        backoff = 0.0
        failed_cycles = 0
        while True:
            if not backoff:
                self._wake.wait(self.flush_interval)
            elif self._stop.is_set():
                time.sleep(min(backoff, 0.5))  # closing: a few quick attempts, then give up
            else:
                self._stop.wait(backoff)  # not _wake: record() keeps setting it while we back off
            self._wake.clear()
            stopping = self._stop.is_set()
            controls = _take(self._controls, len(self._controls))
            ok = self._write_pending()
            if self.retention_days is not None and time.monotonic() >= next_prune:
                next_prune = time.monotonic() + self.prune_interval
                with contextlib.suppress(Exception):  # logged in _prune
                    self._prune(None)
            self._answer(controls, ok)
            if ok:
                backoff = 0.0
                failed_cycles = 0
            else:
                backoff = min(max(backoff * 2, 0.1), _MAX_BACKOFF)
                failed_cycles += 1
            if stopping and ((ok and self._idle()) or failed_cycles >= _GIVE_UP_AFTER):
                break
        if not self._idle():
            self._abandon()
        self._answer(_take(self._controls, len(self._controls)), False)
        self._drop_connection()

    def _idle(self) -> bool:
        with self._state_lock:
            states = bool(self._states or self._inflight_states)
        return not (states or self._records or self._retry_batch or self._commits or self._retry_commits
                    or self._jobs)

    def _answer(self, controls: list[_Control], ok: bool) -> None:
        for ctl in controls:
            if ctl.kind == "prune":
                if ctl.future.set_running_or_notify_cancel():
                    try:
                        ctl.future.set_result(self._prune(ctl.now))
                    except Exception as exc:
                        ctl.future.set_exception(StoreError(f"prune failed: {exc}"))
            elif ctl.future.set_running_or_notify_cancel():
                if ok:
                    ctl.future.set_result(0)
                else:
                    ctl.future.set_exception(StoreError(f"write to {self.description} failed; will retry"))

    def _write_pending(self) -> bool:
        """Write durable commits, run jobs, then all queued states and records in batches. False if a write failed."""
        if (self._commits or self._retry_commits) and not self._write_commits():
            return False
        if self._jobs:
            self._run_jobs()
        with self._state_lock:
            if self._states:
                # Newer saves replace in-flight ones that failed to write.
                self._inflight_states.update(self._states)
                self._states = {}
            items = list(self._inflight_states.items())
        if items:
            now = time.time()
            srows = [(cid, data.decode(), now) for cid, data in items]
            if not self._attempt(functools.partial(self._upsert_states, items=srows), may_give_up=False):
                return False
            with self._state_lock:
                for cid, data in items:
                    if self._inflight_states.get(cid) is data:
                        del self._inflight_states[cid]
            self._states_written += len(items)
        while True:
            batch = self._retry_batch or _take(self._records, self.batch_max)
            if not batch:
                return True
            self._retry_batch = batch
            rows: list[tuple[Any, ...]] = list(batch)
            if not self._attempt(functools.partial(self._insert_messages, rows=rows)):
                if self._retry_attempts >= _GIVE_UP_AFTER and not self._is_transient_last:
                    log.error(
                        "store.batch_dropped",
                        records=len(batch),
                        error=self._last_error,
                        store=self.description,
                    )
                    self._dropped += frame_count(batch)
                    self._retry_batch = []
                    self._retry_attempts = 0
                return False
            self._retry_batch = []
            self._retry_attempts = 0
            self._written += frame_count(batch)
            self._rows_written += len(batch)
            self._batches += 1
            self._check_release()

    def _write_commits(self) -> bool:
        """One transaction: every queued record and state, and the commits' state and queue changes."""
        commits = self._retry_commits + _take(self._commits, len(self._commits))
        self._retry_commits = commits
        with self._state_lock:
            if self._states:
                self._inflight_states.update(self._states)
                self._states = {}
            batched = dict(self._inflight_states)
        latest = dict(batched)
        for c in commits:
            if c.state is not None:
                latest[c.charger_id] = c.state
        now = time.time()
        states = [(cid, data.decode(), now) for cid, data in latest.items()]
        enqueue = [(c.charger_id, *row) for c in commits for row in c.enqueue]
        settle = [(c.charger_id, seq) for c in commits for seq in c.settle]
        batch = self._retry_batch + _take(self._records, len(self._records))
        self._retry_batch = batch
        rows: list[tuple[Any, ...]] = list(batch)
        op = functools.partial(self._commit_all, rows=rows, states=states, enqueue=enqueue, settle=settle)
        if not self._attempt(op, may_give_up=False):
            return False
        self._retry_batch = []
        self._retry_attempts = 0
        self._retry_commits = []
        self._written += frame_count(batch)
        self._rows_written += len(batch)
        self._batches += 1
        self._durable_writes += 1
        self._states_written += len(states)
        with self._state_lock:
            for cid, data in batched.items():
                if self._inflight_states.get(cid) is data:
                    del self._inflight_states[cid]
        for c in commits:
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits any more
                c.loop.call_soon_threadsafe(_resolve, c.future, None)
        self._check_release()
        return True

    def _run_jobs(self) -> None:
        for job in _take(self._jobs, len(self._jobs)):
            if not job.future.set_running_or_notify_cancel():
                continue
            try:
                with self._writing() as conn:
                    job.future.set_result(job.op(conn))
            except Exception as exc:
                self._rollback()
                job.future.set_exception(exc if isinstance(exc, StoreError)
                                         else StoreError(f"{self.description}: {exc}"))

    def _check_release(self, failing: bool = False) -> None:
        """Writer thread: hand the release decision to the loop, which owns the pressure state."""
        loop = self._loop
        if (self._pressed or self._held_off) and loop is not None \
                and (failing or len(self._records) <= self.low_water):
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is paused any more
                loop.call_soon_threadsafe(self._maybe_release)

    def _attempt(self, op: Callable[[Connection], None], may_give_up: bool = True) -> bool:
        try:
            with self._writing() as conn:
                op(conn)
            self._failing = False
            return True
        except Exception as exc:
            self._failing = True
            self._check_release(failing=True)
            transient = self._is_transient(exc)
            self._write_errors += 1
            if may_give_up:
                self._retry_attempts += 1
            self._last_error = f"{type(exc).__name__}: {exc}"
            self._is_transient_last = transient
            now = time.monotonic()
            if now - self._last_error_log >= _LOG_EVERY:
                self._last_error_log = now
                log.error(
                    "store.write_failed",
                    error=self._last_error,
                    transient=transient,
                    queued=len(self._records),
                    store=self.description,
                )
            if transient:
                self._drop_connection()
            else:
                self._rollback()
            return False

    def _rollback(self) -> None:
        if self._conn is not None:
            try:
                self._conn.rollback()
            except Exception:
                self._drop_connection()

    def _drop_connection(self) -> None:
        if self._conn is not None and not self.shares_connection:
            self._close_connection(self._conn)
            self._conn = None

    def _prune(self, now: float | None) -> int:
        if self.retention_days is None:
            return 0
        cutoff = (time.time() if now is None else now) - self.retention_days * 86400.0
        total = 0
        try:
            while True:
                with self._writing() as conn:
                    n = self._delete_before(conn, cutoff, PRUNE_CHUNK)
                total += n
                if n < PRUNE_CHUNK:
                    break
        except Exception as exc:
            log.error("store.prune_failed", error=str(exc), store=self.description)
            self._rollback()
            raise
        finally:
            self._pruned += total
        if total:
            log.info("store.pruned", records=total, retention_days=self.retention_days, store=self.description)
        return total

    def _abandon(self) -> None:
        """Closing with a store that keeps failing: count what is lost, loudly."""
        lost = frame_count(_take(self._records, len(self._records))) + frame_count(self._retry_batch)
        self._records.clear()
        self._retry_batch = []
        self._dropped += lost
        with self._state_lock:
            states = len(self._states) + len(self._inflight_states)
            self._states.clear()
            self._inflight_states.clear()
        self._states_lost += states
        for c in self._retry_commits + _take(self._commits, len(self._commits)):
            with contextlib.suppress(RuntimeError):
                c.loop.call_soon_threadsafe(_resolve, c.future, StoreError("store closed before the commit"))
        self._retry_commits = []
        for job in _take(self._jobs, len(self._jobs)):
            if job.future.set_running_or_notify_cancel():
                job.future.set_exception(StoreError("store closed"))
        log.error(
            "store.closed_with_unwritten_data",
            records=lost,
            states=states,
            error=self._last_error,
            store=self.description,
        )

    def _note_drop(self, n: int, reason: str) -> None:
        self._dropped += n
        now = time.monotonic()
        if now - self._last_drop_log >= _LOG_EVERY:
            self._last_drop_log = now
            log.warning(
                "store.records_dropped",
                reason=reason,
                dropped_total=self._dropped,
                max_queue=self.max_queue,
                store=self.description,
            )


def _take(q: deque[_T], n: int) -> list[_T]:
    """Pop up to n items from the left; safe while other threads append."""
    out: list[_T] = []
    pop = q.popleft
    try:
        for _ in range(n):
            out.append(pop())
    except IndexError:
        pass
    return out


def _resolve(future: asyncio.Future[None], error: BaseException | None) -> None:
    """On the loop: settle a commit's future (unless its waiter gave up)."""
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


def _as_state(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise StoreError(f"stored state is not a JSON object: {type(value).__name__}")
    return value
