"""SQLite backend: one file in WAL mode (readers never wait for the writer), or memory for tests."""

from __future__ import annotations

import functools
import os
import sqlite3
from itertools import chain
from pathlib import Path
from typing import Any

from gateway.store.base import (
    FIRST_ALLOCATED_ID,
    MESSAGE_COLUMNS,
    PAIRED_FROM,
    PAIRS,
    QUEUE_COLUMNS,
    QUEUE_COLUMNS_ADDED,
    RELAYED,
    RELAYED_COLUMNS,
    SCHEMA_VERSION,
    UNPAIRED,
    QueueRow,
    Store,
    StoreError,
)

MEMORY = ":memory:"

# None is not one of the sqlite3 module's base types, so every NULL parameter goes through its adapter
# lookup, which fails through two attribute lookups: about 135 ns more than a string, and a log row binds
# five or six. An adapter for NoneType answers at the first lookup (about 20 ns); None still binds as NULL.
sqlite3.register_adapter(type(None), lambda _: None)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS store_meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
-- AUTOINCREMENT: ids are never reused after pruning, so a follower's after_id stays valid.
-- relayed_*: a pair in one row (Store.record): the frame also went out to relayed_to; what the sent frame
-- had differently (a translation) in the other relayed_* columns, NULL where it was the same.
CREATE TABLE IF NOT EXISTS message_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    charger_id TEXT NOT NULL,
    direction TEXT NOT NULL,
    peer TEXT NOT NULL,
    ocpp_version TEXT NOT NULL,
    message_type TEXT NOT NULL,
    action TEXT,
    unique_id TEXT,
    frame TEXT NOT NULL,
    error_code TEXT,
    note TEXT,
    relayed_to TEXT,
    relayed_version TEXT,
    relayed_action TEXT,
    relayed_unique_id TEXT,
    relayed_frame TEXT
);
CREATE INDEX IF NOT EXISTS message_log_charger_id ON message_log (charger_id, id);
CREATE INDEX IF NOT EXISTS message_log_ts ON message_log (ts);
CREATE TABLE IF NOT EXISTS charger_state (
    charger_id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    updated_at REAL NOT NULL
);
-- Messages waiting for a CSMS, replayed in seq order: kind 'charger', answered by the gateway while the
-- CSMS was away; kind 'translated', made by a translator (local_answer holds its reference).
CREATE TABLE IF NOT EXISTS offline_queue (
    charger_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    ts REAL NOT NULL,
    action TEXT NOT NULL,
    unique_id TEXT NOT NULL,
    payload TEXT NOT NULL,
    local_answer TEXT NOT NULL,
    coalesce_key TEXT,
    kind TEXT NOT NULL DEFAULT 'charger',
    csms TEXT,
    PRIMARY KEY (charger_id, seq)
);
-- Numbers the gateway hands out (transaction ids): the next free one per name, advanced in a transaction.
CREATE TABLE IF NOT EXISTS id_counter (
    name TEXT PRIMARY KEY,
    next_value INTEGER NOT NULL
);
"""

_COLUMNS = ", ".join(MESSAGE_COLUMNS)
_RELAYED = ", ".join(RELAYED_COLUMNS)
_NULLS = len(RELAYED_COLUMNS) - 1
_ROW = {UNPAIRED: f"{_COLUMNS}, NULL{', NULL' * _NULLS}", RELAYED: f"{_COLUMNS}, relayed_to{', NULL' * _NULLS}",
        PAIRS: f"{_COLUMNS}, {_RELAYED}"}  # by the columns the log has (a reader may come before the migration)
# A batch goes in as a few multi-row INSERTs, one sqlite3_step each. executemany binds and steps
# each row on its own, and the sqlite3 module drops and re-takes the GIL around every step; under
# load those hand-offs cost the event loop about a quarter of its core (docs/benchmark.md,
# section 7). Bound parameters also cost the writer less than unpacking one JSON array in SQL
# (json_each, the layout before this one): 4.3 against 6.7 µs of CPU per row (docs/benchmark.md,
# "Where the CPU ratio targets stand").
_LOGGED_COLUMNS = (*MESSAGE_COLUMNS[1:], *RELAYED_COLUMNS)  # a FrameRecord's fields, in its order
_LOGGED = ", ".join(_LOGGED_COLUMNS)
# Chunks of a power of two rows, so the sqlite3 module's statement cache holds every shape; 1,024 rows
# of 16 columns stay under SQLite's bound of 32,766 variables per statement.
_MAX_CHUNK = 1024
_VALUES_ROW = f"({', '.join('?' * len(_LOGGED_COLUMNS))})"
_UPSERT_STATE = (
    "INSERT INTO charger_state (charger_id, state, updated_at) VALUES (?, ?, ?)"
    " ON CONFLICT (charger_id) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at"
)

_QUEUE_COLUMNS = ", ".join(QUEUE_COLUMNS)
_INSERT_QUEUED = (
    f"INSERT OR REPLACE INTO offline_queue (charger_id, {_QUEUE_COLUMNS})"
    f" VALUES ({', '.join('?' * (len(QUEUE_COLUMNS) + 1))})"
)

# Rows holding a frame the charger sent or got: its own, or a pair relayed to it.
_CHARGER_SIDE = {UNPAIRED: "peer = 'charger'", RELAYED: "(peer = 'charger' OR relayed_to = 'charger')"}
_CHARGER_SIDE[PAIRS] = _CHARGER_SIDE[RELAYED]

# The newest CALL of an action from each charger (its last BootNotification, say): max(id) per charger.
_LATEST_CALLS = (
    "SELECT charger_id, frame FROM message_log WHERE id IN (SELECT max(id) FROM message_log WHERE action = ?"
    " AND peer = 'charger' AND direction = 'in' AND message_type = 'CALL' GROUP BY charger_id)"
)

def _add_columns(conn: sqlite3.Connection, table: str, wanted: dict[str, str]) -> None:
    """Add the columns (name: SQL type) a table of ours lacks."""
    present = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
    for column, definition in wanted.items():
        if column not in present:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")


def sqlite_path(url: str) -> str:
    """The file path of a ``sqlite://`` URL, SQLAlchemy style.

    ``sqlite:///rel/x.db`` is relative to the working directory,
    ``sqlite:////abs/x.db`` is absolute, ``sqlite://:memory:`` (or
    ``sqlite:///:memory:``) is an in-memory database.
    """
    if not url.startswith("sqlite://"):
        raise ValueError(f"not a sqlite URL: {url!r}")
    rest = url.removeprefix("sqlite://")
    if rest in (MEMORY, "/" + MEMORY):
        return MEMORY
    if len(rest) < 2 or not rest.startswith("/"):
        raise ValueError(f"bad sqlite URL {url!r}: use sqlite:///relative.db, sqlite:////abs.db or sqlite://:memory:")
    return os.path.expanduser(rest[1:])


class SQLiteStore(Store):
    """The default store: a local SQLite file."""

    def __init__(self, path: str, **kwargs: Any) -> None:
        self.path = path
        self.shares_connection = path == MEMORY
        super().__init__(description=f"sqlite {path}", **kwargs)
        # In memory there is only one database per connection, so reader and writer share it.
        self._memory: sqlite3.Connection | None = self._open(MEMORY) if self.shares_connection else None

    def _open(self, path: str) -> sqlite3.Connection:
        # check_same_thread=False: the reader connection is used from asyncio.to_thread's pool,
        # always under the store's read lock.
        conn = sqlite3.connect(path, timeout=5.0, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout = 5000")
        return conn

    def _connect_writer(self) -> sqlite3.Connection:
        if self._memory is not None:
            return self._memory
        parent = Path(self.path).parent
        parent.mkdir(parents=True, exist_ok=True)
        conn = self._open(self.path)
        # WAL: readers (API, CLI) never block the writer nor it them; NORMAL is durable
        # across application crashes in WAL mode and loses at most the last commits on power loss.
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        return conn

    def location_problem(self) -> str | None:
        if self.path == MEMORY:
            return None
        path = Path(self.path)
        if path.is_dir():
            return f"{path} is a directory, not a database file"
        existing = _nearest_existing(path.parent)
        if not existing.is_dir():
            return f"cannot create {path}: {existing} is a file, not a directory"
        if path.exists() and not os.access(path, os.R_OK | os.W_OK):
            return f"{path} is not readable and writable by this user"
        # WAL mode keeps -wal and -shm files next to the database: the directory must be writable too.
        if not os.access(existing, os.W_OK | os.X_OK):
            return f"directory {existing} is not writable by this user"
        return None

    def location_note(self) -> str | None:
        if self.path == MEMORY:
            return "in memory: the message log and translation state are lost at every restart"
        parent = Path(self.path).parent
        if not parent.exists():
            return f"directory {parent} does not exist yet; `run` creates it"
        return None

    def probe(self, timeout: float) -> str:
        if self.path == MEMORY:
            return "sqlite in memory"
        if not os.path.exists(self.path):
            return f"sqlite {self.path}: no database yet; `run` creates it"
        try:
            conn = sqlite3.connect(f"{Path(self.path).resolve().as_uri()}?mode=ro", uri=True, timeout=timeout)
            try:
                tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
                if "message_log" not in tables:
                    return f"sqlite {self.path}: opens; no message log yet (`run` creates it)"
                count = conn.execute("SELECT count(*) FROM message_log").fetchone()[0]
            finally:
                conn.close()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open sqlite {self.path}: {exc}") from exc
        return f"sqlite {self.path}: opens; {count} message-log records"

    def _connect_reader(self) -> sqlite3.Connection:
        if self._memory is not None:
            return self._memory
        if not os.path.exists(self.path):
            raise StoreError(f"no message log at {self.path} (has the gateway run with this store URL?)")
        return self._open(self.path)

    def _create_schema(self, conn: sqlite3.Connection) -> None:
        conn.executescript(_SCHEMA)
        _add_columns(conn, "offline_queue", QUEUE_COLUMNS_ADDED)  # a queue from before the columns
        row = conn.execute("SELECT value FROM store_meta WHERE key = 'schema_version'").fetchone()
        if row is not None and int(row[0]) > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has store schema version {row[0]}, newer than this gateway's {SCHEMA_VERSION}"
            )
        try:
            conn.execute("BEGIN IMMEDIATE")  # the column and its boundary together, or neither
            # A log from schema 1 (none of them) or 2 (relayed_to only).
            _add_columns(conn, "message_log", dict.fromkeys(RELAYED_COLUMNS, "TEXT"))
            if conn.execute("SELECT 1 FROM store_meta WHERE key = ?", (PAIRED_FROM,)).fetchone() is None:
                # Rows from before keep their ids as message ids; AUTOINCREMENT never hands out a lower id again.
                seq = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'message_log'").fetchone()
                conn.execute("INSERT INTO store_meta (key, value) VALUES (?, ?)",
                             (PAIRED_FROM, str((int(seq[0]) if seq else 0) + 1)))
            conn.execute("INSERT INTO store_meta (key, value) VALUES ('schema_version', ?) ON CONFLICT (key)"
                         " DO UPDATE SET value = excluded.value", (str(SCHEMA_VERSION),))
            conn.commit()
        except BaseException:
            conn.rollback()
            raise

    def _paired_from(self, conn: sqlite3.Connection) -> int | None:
        try:
            row = conn.execute("SELECT value FROM store_meta WHERE key = ?", (PAIRED_FROM,)).fetchone()
        except sqlite3.OperationalError:  # no store_meta: a log from before the gateway had one
            return None
        return None if row is None else int(row[0])

    def _relayed_layout(self, conn: sqlite3.Connection) -> int:
        logged = {r[1] for r in conn.execute("PRAGMA table_info(message_log)")}
        return PAIRS if "relayed_frame" in logged else RELAYED

    def _insert_messages(self, conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
        _insert_rows(conn, rows)
        conn.commit()

    def _upsert_states(self, conn: sqlite3.Connection, items: list[tuple[str, str, float]]) -> None:
        conn.executemany(_UPSERT_STATE, items)
        conn.commit()

    def _commit_all(
        self, conn: sqlite3.Connection, rows: list[tuple[Any, ...]], states: list[tuple[str, str, float]],
        enqueue: list[tuple[Any, ...]], settle: list[tuple[str, int]],
    ) -> None:
        try:
            if rows:
                _insert_rows(conn, rows)
            if states:
                conn.executemany(_UPSERT_STATE, states)
            if enqueue:
                conn.executemany(_INSERT_QUEUED, enqueue)
            if settle:
                conn.executemany("DELETE FROM offline_queue WHERE charger_id = ? AND seq = ?", settle)
            conn.commit()
        except BaseException:
            conn.rollback()
            raise

    def _select_queue(self, conn: sqlite3.Connection, charger_id: str) -> list[QueueRow]:
        return conn.execute(
            f"SELECT {_QUEUE_COLUMNS} FROM offline_queue WHERE charger_id = ? ORDER BY seq", (charger_id,),
        ).fetchall()

    def _count_queued(self, conn: sqlite3.Connection) -> list[tuple[str, int]]:
        return conn.execute("SELECT charger_id, count(*) FROM offline_queue GROUP BY charger_id").fetchall()

    def _reserve(self, conn: sqlite3.Connection, name: str, count: int) -> list[int]:
        try:
            conn.execute("INSERT INTO id_counter (name, next_value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
                         (name, FIRST_ALLOCATED_ID))
            row = conn.execute("UPDATE id_counter SET next_value = next_value + ? WHERE name = ? RETURNING next_value",
                               (count, name)).fetchone()
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        end = int(row[0])
        return list(range(end - count, end))

    def _delete_before(self, conn: sqlite3.Connection, cutoff: float, limit: int) -> int:
        cur = conn.execute(
            "DELETE FROM message_log WHERE id IN (SELECT id FROM message_log WHERE ts < ? LIMIT ?)",
            (cutoff, limit),
        )
        conn.commit()
        return cur.rowcount

    def _select_messages(
        self, conn: sqlite3.Connection, charger_id: str | None, limit: int, from_row: int | None, layout: int
    ) -> list[tuple[Any, ...]]:
        where, params = _where(charger_id, from_row)
        if from_row is None:
            sql = f"SELECT {_ROW[layout]} FROM message_log{where} ORDER BY id DESC LIMIT ?"
            return list(reversed(conn.execute(sql, (*params, limit)).fetchall()))
        sql = f"SELECT {_ROW[layout]} FROM message_log{where} ORDER BY id LIMIT ?"
        return conn.execute(sql, (*params, limit)).fetchall()

    def _select_state(self, conn: sqlite3.Connection, charger_id: str) -> str | None:
        row = conn.execute("SELECT state FROM charger_state WHERE charger_id = ?", (charger_id,)).fetchone()
        return None if row is None else str(row[0])

    def _select_states(self, conn: sqlite3.Connection, prefix: str) -> list[tuple[str, str]]:
        sql = "SELECT charger_id, state FROM charger_state WHERE substr(charger_id, 1, ?) = ?"
        return [(str(k), str(v)) for k, v in conn.execute(sql, (len(prefix), prefix)).fetchall()]

    def _select_charger_frames(
        self, conn: sqlite3.Connection, charger_id: str, since: float, until: float, from_row: int, limit: int,
        layout: int,
    ) -> list[tuple[Any, ...]]:
        sql = (f"SELECT {_ROW[layout]} FROM message_log WHERE charger_id = ? AND id >= ? AND {_CHARGER_SIDE[layout]}"
               " AND ts >= ? AND ts < ? ORDER BY id LIMIT ?")
        return conn.execute(sql, (charger_id, from_row, _bound(since), _bound(until), limit)).fetchall()

    def _select_charger_ids(self, conn: sqlite3.Connection, since: float, until: float) -> list[str]:
        sql = (f"SELECT DISTINCT charger_id FROM message_log WHERE ts >= ? AND ts < ?"
               f" AND {_CHARGER_SIDE[self._log_layout(conn)[1]]}")
        return [str(r[0]) for r in conn.execute(sql, (_bound(since), _bound(until))).fetchall()]
    def _select_latest_calls(self, conn: sqlite3.Connection, action: str) -> list[tuple[str, str]]:
        return conn.execute(_LATEST_CALLS, (action,)).fetchall()

    def _is_transient(self, exc: BaseException) -> bool:
        # "database is locked", disk I/O errors: retry; constraint or type errors: the batch is bad.
        return isinstance(exc, sqlite3.OperationalError)

    def _close_connection(self, conn: sqlite3.Connection) -> None:
        try:
            conn.close()
        except sqlite3.Error:
            pass

    def _after_close(self) -> None:
        if self._memory is not None:
            self._memory.close()
            self._memory = None


def _nearest_existing(path: Path) -> Path:
    """``path`` or its closest ancestor that exists (as a file or a directory)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _insert_rows(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    """Insert rows in order, in chunks of a power of two rows (at most ``_MAX_CHUNK``)."""
    start, total = 0, len(rows)
    while start < total:
        size = min(_MAX_CHUNK, 1 << ((total - start).bit_length() - 1))
        conn.execute(_insert_statement(size), list(chain.from_iterable(rows[start:start + size])))
        start += size


@functools.cache
def _insert_statement(rows: int) -> str:
    return f"INSERT INTO message_log ({_LOGGED}) VALUES {', '.join([_VALUES_ROW] * rows)}"


def _where(charger_id: str | None, from_row: int | None) -> tuple[str, tuple[Any, ...]]:
    clauses: list[str] = []
    params: list[Any] = []
    if charger_id is not None:
        clauses.append("charger_id = ?")
        params.append(charger_id)
    if from_row is not None:
        clauses.append("id >= ?")
        params.append(from_row)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), tuple(params)


def _bound(ts: float) -> float:
    """An open time bound as a number SQLite compares (it stores infinity as NULL)."""
    return max(min(ts, 1e18), -1e18)
