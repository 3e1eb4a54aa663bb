"""PostgreSQL backend (psycopg 3), for fleets and for gateway instances that share state.

``postgresql://user:pass@host:port/db`` with any libpq parameter in the query
string, plus ``?schema=NAME`` (ours, not libpq's): put the tables in that
schema, created if missing. The writer uses one connection in transactions;
reads use another in autocommit so they never leave a transaction open.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
import structlog
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

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

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_SCHEMA_LOCK = 0x0C99_6A7E  # advisory lock key: two instances starting together create tables once
DAY = 86400.0
DAYS_AHEAD = 2  # today's partition and the next two exist before a row needs them
_CHECK_AHEAD_EVERY = 600.0  # seconds between the writer's checks that the days ahead exist
_LEGACY_UNTIL = "message_log_legacy_until"  # store_meta key: end of the range the migrated table covers

log = structlog.get_logger("gateway.store")


def split_url(url: str) -> tuple[str, str | None]:
    """(libpq URL, schema) from a store URL; accepts postgres:// and postgresql+psycopg:// too."""
    parts = urlsplit(url)
    scheme = parts.scheme.split("+", 1)[0]
    if scheme not in ("postgresql", "postgres"):
        raise ValueError(f"not a postgresql URL: {url!r}")
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = None
    rest = []
    for key, value in query:
        if key == "schema":
            schema = value
        else:
            rest.append((key, value))
    if schema is not None and not _IDENT.match(schema):
        raise ValueError(f"bad schema name {schema!r} in store URL (letters, digits and _ only)")
    return urlunsplit(("postgresql", parts.netloc, parts.path, urlencode(rest), parts.fragment)), schema


def _columns(conn: psycopg.Connection[Any], table: sql.Identifier) -> set[str]:
    """The names of a table's columns (none when it does not exist)."""
    rows = conn.execute("SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attnum > 0"
                        " AND NOT attisdropped", (table.as_string(conn),)).fetchall()
    return {str(r[0]) for r in rows}


_RELAYED_TYPES = dict.fromkeys(RELAYED_COLUMNS, "TEXT")


def _add_columns(conn: psycopg.Connection[Any], table: sql.Identifier, wanted: dict[str, str]) -> None:
    """Add the columns (name: SQL type) a table lacks. Only those: ALTER TABLE locks the table (a log: every
    partition) against the other instances' writers even when there is nothing to add."""
    present = _columns(conn, table)
    for column, definition in wanted.items():
        if column not in present:
            conn.execute(sql.SQL("ALTER TABLE {} ADD COLUMN {} {}").format(
                table, sql.Identifier(column), sql.SQL(definition)))


def redact(url: str) -> str:
    """The URL without its password, for logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(":" + parts.password + "@", ":***@", 1)
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class PostgresStore(Store):
    """The store in a PostgreSQL database."""

    def __init__(self, url: str, **kwargs: Any) -> None:
        conninfo, self.schema = split_url(url)
        where = f"postgresql {redact(conninfo)}" + (f" schema {self.schema}" if self.schema else "")
        super().__init__(description=where, **kwargs)
        self._params: dict[str, Any] = conninfo_to_dict(conninfo)
        self._params.setdefault("connect_timeout", 10)
        self._params.setdefault("application_name", "ocpp-gateway")

        def table(name: str) -> sql.Identifier:
            return sql.Identifier(self.schema, name) if self.schema else sql.Identifier(name)

        log, state, meta = table("message_log"), table("charger_state"), table("store_meta")
        self._log_table = log
        queue, ids = table("offline_queue"), table("transaction_id_seq")
        # By the columns the log has (a reader may come before the migration): UNPAIRED, RELAYED, PAIRS.
        present = {UNPAIRED: 0, RELAYED: 1, PAIRS: len(RELAYED_COLUMNS)}
        row = {layout: sql.SQL(", ").join([*(sql.Identifier(c) for c in MESSAGE_COLUMNS),
                                            *(sql.Identifier(c) if i < n else sql.NULL
                                              for i, c in enumerate(RELAYED_COLUMNS))])
               for layout, n in present.items()}
        self._ddl: list[sql.Composed] = [
            sql.SQL("CREATE TABLE IF NOT EXISTS {} (key TEXT PRIMARY KEY, value TEXT NOT NULL)").format(meta),
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (charger_id TEXT PRIMARY KEY, state TEXT NOT NULL,"
                " updated_at DOUBLE PRECISION NOT NULL)"
            ).format(state),
        ]
        self._ddl += [
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (charger_id TEXT NOT NULL, seq BIGINT NOT NULL,"
                " ts DOUBLE PRECISION NOT NULL, action TEXT NOT NULL, unique_id TEXT NOT NULL, payload TEXT NOT NULL,"
                " local_answer TEXT NOT NULL, coalesce_key TEXT, kind TEXT NOT NULL DEFAULT 'charger', csms TEXT,"
                " PRIMARY KEY (charger_id, seq))"
            ).format(queue),
            # Gateway-assigned transaction ids: a sequence is shared safely by every instance on this database.
            sql.SQL("CREATE SEQUENCE IF NOT EXISTS {} START WITH {}").format(ids, sql.Literal(FIRST_ALLOCATED_ID)),
        ]
        self._queue_table = queue
        queued = sql.SQL(", ").join(sql.Identifier(c) for c in QUEUE_COLUMNS)
        self._queue_insert = sql.SQL(
            "INSERT INTO {} (charger_id, {}) VALUES ({}) ON CONFLICT (charger_id, seq) DO UPDATE SET {}"
        ).format(queue, queued, sql.SQL(", ").join([sql.Placeholder()] * (len(QUEUE_COLUMNS) + 1)),
                 sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c))
                                    for c in QUEUE_COLUMNS[1:]))
        self._queue_delete = sql.SQL("DELETE FROM {} WHERE charger_id = %s AND seq = %s").format(queue)
        self._queue_select = sql.SQL("SELECT {} FROM {} WHERE charger_id = %s ORDER BY seq").format(queued, queue)
        self._queue_depths = sql.SQL("SELECT charger_id, count(*) FROM {} GROUP BY charger_id").format(queue)
        self._reserve_ids = sql.SQL("SELECT nextval(%s) FROM generate_series(1, %s)")
        self._sequence_name = f"{self.schema}.transaction_id_seq" if self.schema else "transaction_id_seq"
        if self.schema:
            self._ddl.insert(0, sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema)))
        self._meta_get = sql.SQL("SELECT value FROM {} WHERE key = 'schema_version'").format(meta)
        self._meta_set = sql.SQL("INSERT INTO {} (key, value) VALUES ('schema_version', %s)"
                                 " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value").format(meta)
        # The log is written with COPY; the INSERT is what it replaced (log_writers --per-call compares them).
        logged = sql.SQL(", ").join(sql.Identifier(c) for c in (*MESSAGE_COLUMNS[1:], *RELAYED_COLUMNS))
        self._insert = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
            log, logged, sql.SQL(", ").join([sql.Placeholder()] * (len(MESSAGE_COLUMNS) - 1 + len(RELAYED_COLUMNS))))
        self._copy = sql.SQL("COPY {} ({}) FROM STDIN").format(log, logged)
        self._paired_from_get = sql.SQL("SELECT value FROM {} WHERE key = %s").format(meta)
        self._upsert = sql.SQL(
            "INSERT INTO {} (charger_id, state, updated_at) VALUES (%s, %s, %s)"
            " ON CONFLICT (charger_id) DO UPDATE SET state = EXCLUDED.state, updated_at = EXCLUDED.updated_at"
        ).format(state)
        self.message_log = DailyMessageLog(self.schema, meta)
        self._newest = {p: sql.SQL("SELECT {} FROM {} WHERE charger_id = %s ORDER BY id DESC LIMIT %s").format(
            row[p], log) for p in row}
        self._newest_all = {p: sql.SQL("SELECT {} FROM {} ORDER BY id DESC LIMIT %s").format(row[p], log) for p in row}
        self._after = {p: sql.SQL("SELECT {} FROM {} WHERE charger_id = %s AND id >= %s ORDER BY id LIMIT %s").format(
            row[p], log) for p in row}
        self._after_all = {p: sql.SQL("SELECT {} FROM {} WHERE id >= %s ORDER BY id LIMIT %s").format(row[p], log)
                           for p in row}
        self._get_state = sql.SQL("SELECT state FROM {} WHERE charger_id = %s").format(state)
        self._states_prefixed = sql.SQL("SELECT charger_id, state FROM {} WHERE left(charger_id, %s) = %s").format(
            state)
        relayed_side = sql.SQL("(peer = 'charger' OR relayed_to = 'charger')")
        side = {UNPAIRED: sql.SQL("peer = 'charger'"), RELAYED: relayed_side, PAIRS: relayed_side}
        self._charger_frames = {p: sql.SQL(
            "SELECT {} FROM {} WHERE charger_id = %s AND id >= %s AND {} AND ts >= %s AND ts < %s"
            " ORDER BY id LIMIT %s").format(row[p], log, side[p]) for p in row}
        self._charger_ids = {p: sql.SQL(
            "SELECT DISTINCT charger_id FROM {} WHERE ts >= %s AND ts < %s AND {}").format(log, side[p]) for p in row}
        self._latest_calls = sql.SQL(
            "SELECT charger_id, frame FROM {0} WHERE id IN (SELECT max(id) FROM {0} WHERE action = %s"
            " AND peer = 'charger' AND direction = 'in' AND message_type = 'CALL' GROUP BY charger_id)"
        ).format(log)

    def _connect(self, autocommit: bool, **overrides: Any) -> psycopg.Connection[Any]:
        try:
            return psycopg.connect(autocommit=autocommit, **{**self._params, **overrides})
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to {self.description}: {one_line(exc)}") from exc

    def probe(self, timeout: float) -> str:
        conn = self._connect(autocommit=True, connect_timeout=max(1, round(timeout)))
        try:
            version = conn.execute("SHOW server_version").fetchone()
            table = f"{self.schema}.message_log" if self.schema else "message_log"
            found = conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()
        except psycopg.Error as exc:
            raise StoreError(f"{self.description}: {one_line(exc)}") from exc
        finally:
            conn.close()
        log = "message log present" if found and found[0] else "no message log yet (`run` creates it)"
        return f"{self.description}: answers (PostgreSQL {version[0] if version else '?'}); {log}"

    def _connect_writer(self) -> psycopg.Connection[Any]:
        return self._connect(autocommit=False)

    def _connect_reader(self) -> psycopg.Connection[Any]:
        return self._connect(autocommit=True)

    def _create_schema(self, conn: psycopg.Connection[Any]) -> None:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            for stmt in self._ddl:
                conn.execute(stmt)
            _add_columns(conn, self._queue_table, QUEUE_COLUMNS_ADDED)  # a queue from before the columns
            row = conn.execute(self._meta_get).fetchone()
            if row is not None and int(row[0]) > SCHEMA_VERSION:  # raising rolls back what came before
                raise StoreError(
                    f"{self.description} has store schema version {row[0]}, newer than this gateway's {SCHEMA_VERSION}"
                )
            self.message_log.create(conn)
            conn.execute(self._meta_set, (str(SCHEMA_VERSION),))

    def _insert_messages(self, conn: psycopg.Connection[Any], rows: list[tuple[Any, ...]]) -> None:
        self.message_log.keep_ahead(conn)
        with conn.cursor() as cur:
            self._copy_rows(cur, rows)
        conn.commit()

    def _copy_rows(self, cur: psycopg.Cursor[Any], rows: list[tuple[Any, ...]]) -> None:
        # COPY, not INSERT: one statement streams the batch; the server parses no SQL per row.
        with cur.copy(self._copy) as copy:
            write = copy.write_row
            for r in rows:
                write(_no_nul(r))

    def _upsert_states(self, conn: psycopg.Connection[Any], items: list[tuple[str, str, float]]) -> None:
        with conn.cursor() as cur:
            cur.executemany(self._upsert, [_no_nul(i) for i in items])
        conn.commit()

    def _commit_all(
        self, conn: psycopg.Connection[Any], rows: list[tuple[Any, ...]], states: list[tuple[str, str, float]],
        enqueue: list[tuple[Any, ...]], settle: list[tuple[str, int]],
    ) -> None:
        if rows:
            self.message_log.keep_ahead(conn)
        try:
            with conn.cursor() as cur:
                if rows:
                    self._copy_rows(cur, rows)
                if states:
                    cur.executemany(self._upsert, [_no_nul(i) for i in states])
                if enqueue:
                    cur.executemany(self._queue_insert, [_no_nul(i) for i in enqueue])
                if settle:
                    cur.executemany(self._queue_delete, settle)
            conn.commit()
        except BaseException:
            conn.rollback()
            raise

    def _select_queue(self, conn: psycopg.Connection[Any], charger_id: str) -> list[QueueRow]:
        rows = conn.execute(self._queue_select, (charger_id,)).fetchall()
        conn.commit()
        return rows

    def _count_queued(self, conn: psycopg.Connection[Any]) -> list[tuple[str, int]]:
        return conn.execute(self._queue_depths).fetchall()

    def _reserve(self, conn: psycopg.Connection[Any], name: str, count: int) -> list[int]:
        # One sequence (transaction ids) is all there is today; ``name`` keeps the interface open.
        rows = conn.execute(self._reserve_ids, (self._sequence_name, count)).fetchall()
        conn.commit()
        return [int(r[0]) for r in rows]

    def _delete_before(self, conn: psycopg.Connection[Any], cutoff: float, limit: int) -> int:
        try:
            return self.message_log.delete_before(conn, cutoff, limit)
        except BaseException:
            conn.rollback()
            raise

    def _paired_from(self, conn: psycopg.Connection[Any]) -> int | None:
        try:
            row = conn.execute(self._paired_from_get, (PAIRED_FROM,)).fetchone()
        except psycopg.errors.UndefinedTable:
            return None  # no store_meta: nothing has been written here, or by a gateway from before it
        return None if row is None else int(row[0])

    def _relayed_layout(self, conn: psycopg.Connection[Any]) -> int:
        return PAIRS if "relayed_frame" in _columns(conn, self._log_table) else RELAYED

    def _select_messages(
        self, conn: psycopg.Connection[Any], charger_id: str | None, limit: int, from_row: int | None, layout: int
    ) -> list[tuple[Any, ...]]:
        try:
            return self._select_messages_from(conn, charger_id, limit, from_row, layout)
        except psycopg.errors.UndefinedTable:
            raise StoreError(
                f"no message log in {self.description} (has the gateway run with this store URL?)"
            ) from None

    def _select_messages_from(
        self, conn: psycopg.Connection[Any], charger_id: str | None, limit: int, from_row: int | None, layout: int
    ) -> list[tuple[Any, ...]]:
        if from_row is None:
            if charger_id is None:
                rows = conn.execute(self._newest_all[layout], (limit,)).fetchall()
            else:
                rows = conn.execute(self._newest[layout], (charger_id, limit)).fetchall()
            return list(reversed(rows))
        if charger_id is None:
            return conn.execute(self._after_all[layout], (from_row, limit)).fetchall()
        return conn.execute(self._after[layout], (charger_id, from_row, limit)).fetchall()

    def _select_state(self, conn: psycopg.Connection[Any], charger_id: str) -> str | None:
        row = conn.execute(self._get_state, (charger_id,)).fetchone()
        return None if row is None else str(row[0])

    def _select_states(self, conn: psycopg.Connection[Any], prefix: str) -> list[tuple[str, str]]:
        return [(str(k), str(v)) for k, v in conn.execute(self._states_prefixed, (len(prefix), prefix)).fetchall()]

    def _select_charger_frames(
        self, conn: psycopg.Connection[Any], charger_id: str, since: float, until: float, from_row: int, limit: int,
        layout: int,
    ) -> list[tuple[Any, ...]]:
        return conn.execute(self._charger_frames[layout], (charger_id, from_row, since, until, limit)).fetchall()

    def _select_charger_ids(self, conn: psycopg.Connection[Any], since: float, until: float) -> list[str]:
        query = self._charger_ids[self._log_layout(conn)[1]]
        return [str(r[0]) for r in conn.execute(query, (since, until)).fetchall()]
    def _select_latest_calls(self, conn: psycopg.Connection[Any], action: str) -> list[tuple[str, str]]:
        return [(str(cid), str(frame)) for cid, frame in conn.execute(self._latest_calls, (action,)).fetchall()]

    def _is_transient(self, exc: BaseException) -> bool:
        return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError | StoreError)

    def _close_connection(self, conn: psycopg.Connection[Any]) -> None:
        try:
            conn.close()
        except psycopg.Error:
            pass


class DailyMessageLog:
    """The message log, partitioned by UTC day on ``ts``, so retention drops whole days.

    ``message_log`` is the partitioned parent; ``message_log_pYYYYMMDD`` holds
    one UTC day; ``message_log_default`` catches a row no day holds (a clock
    far off), so no row is ever refused. The writer creates today's partition
    and the next ``DAYS_AHEAD`` ones. Retention drops a day once all of it is
    older than the cutoff (a row lives up to a day past the retention) and
    deletes old rows from the default partition in chunks.

    A store made before partitioning has a plain ``message_log``: it is
    renamed ``message_log_legacy`` and attached as the partition for
    everything before the end of its last day, so its rows stay readable with
    their ids, nothing is copied, and retention drops it when that day is past.
    """

    def __init__(self, schema: str | None, meta: sql.Identifier) -> None:
        self.schema = schema
        self.clock: Callable[[], float] = time.time  # tests move it
        self._meta = meta
        self._next_check = 0.0
        self._legacy_until: float | None = None

    def _ident(self, name: str) -> sql.Identifier:
        return sql.Identifier(self.schema, name) if self.schema else sql.Identifier(name)

    def _exists(self, conn: psycopg.Connection[Any], name: str) -> str | None:
        """The relkind of table ``name`` ('r' plain, 'p' partitioned), or None."""
        row = conn.execute(
            "SELECT relkind FROM pg_class WHERE oid = to_regclass(%s)",
            (f"{self.schema}.{name}" if self.schema else name,),
        ).fetchone()
        return None if row is None else str(row[0])

    def create(self, conn: psycopg.Connection[Any]) -> None:
        """Create (or migrate to) the partitioned log; run inside the schema lock's transaction."""
        parent = self._ident("message_log")
        if self._exists(conn, "message_log") == "r":
            self._adopt_plain_table(conn)
        if self._exists(conn, "message_log") is None:
            self._create_parent(conn)
        # A log from schema 1 or 2: the columns reach every partition; existing rows read as unpaired (NULL)
        # or as pass-through pairs (relayed_to only).
        _add_columns(conn, parent, _RELAYED_TYPES)
        conn.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} PARTITION OF {} DEFAULT").format(
            self._ident("message_log_default"), parent))
        self._mark_paired_from(conn)
        meta_get = sql.SQL("SELECT value FROM {} WHERE key = %s").format(self._meta)
        row = conn.execute(meta_get, (_LEGACY_UNTIL,)).fetchone()
        self._legacy_until = float(row[0]) if row and self._exists(conn, "message_log_legacy") else None
        self._create_days(conn)

    def _mark_paired_from(self, conn: psycopg.Connection[Any]) -> None:
        """Note the first id rows may be pairs from: ids already handed out keep meaning one message each."""
        found = conn.execute(sql.SQL("SELECT 1 FROM {} WHERE key = %s").format(self._meta), (PAIRED_FROM,)).fetchone()
        if found is not None:
            return
        seq = conn.execute("SELECT pg_get_serial_sequence(%s, 'id')", (self._qualified("message_log"),)).fetchone()
        assert seq is not None and seq[0] is not None
        # Not nextval: reading the sequence takes no number. Once called, every id up to last_value is taken.
        last = conn.execute(sql.SQL("SELECT last_value, is_called FROM {}").format(sql.SQL(seq[0]))).fetchone()
        assert last is not None
        first = int(last[0]) + 1 if last[1] else int(last[0])
        conn.execute(sql.SQL("INSERT INTO {} (key, value) VALUES (%s, %s)").format(self._meta),
                     (PAIRED_FROM, str(first)))

    def _qualified(self, name: str) -> str:
        return f"{self.schema}.{name}" if self.schema else name

    def _create_parent(self, conn: psycopg.Connection[Any]) -> None:
        parent = self._ident("message_log")
        conn.execute(sql.SQL(
            "CREATE TABLE {} ("
            " id BIGINT GENERATED ALWAYS AS IDENTITY,"
            " ts DOUBLE PRECISION NOT NULL, charger_id TEXT NOT NULL, direction TEXT NOT NULL,"
            " peer TEXT NOT NULL, ocpp_version TEXT NOT NULL, message_type TEXT NOT NULL,"
            " action TEXT, unique_id TEXT, frame TEXT NOT NULL, error_code TEXT, note TEXT, relayed_to TEXT,"
            " relayed_version TEXT, relayed_action TEXT, relayed_unique_id TEXT, relayed_frame TEXT)"
            " PARTITION BY RANGE (ts)").format(parent))
        # Matching indexes before any partition is attached: attaching adopts a table's own equal indexes.
        conn.execute(sql.SQL("CREATE INDEX message_log_charger_id ON {} (charger_id, id)").format(parent))
        conn.execute(sql.SQL("CREATE INDEX message_log_ts ON {} (ts)").format(parent))

    def _adopt_plain_table(self, conn: psycopg.Connection[Any]) -> None:
        legacy = self._ident("message_log_legacy")
        span = conn.execute(sql.SQL("SELECT max(ts), max(id) FROM {}").format(self._ident("message_log"))).fetchone()
        conn.execute(sql.SQL("ALTER TABLE {} RENAME TO message_log_legacy").format(self._ident("message_log")))
        for index in ("message_log_charger_id", "message_log_ts", "message_log_pkey"):
            conn.execute(sql.SQL("ALTER INDEX IF EXISTS {} RENAME TO {}").format(
                self._ident(index), sql.Identifier(index.replace("message_log", "message_log_legacy", 1))))
        if span is None or span[0] is None:
            conn.execute(sql.SQL("DROP TABLE {}").format(legacy))  # nothing to keep
            return
        last_ts, last_id = float(span[0]), int(span[1])
        until = (last_ts // DAY + 1) * DAY
        # A partition has its parent's columns: the legacy rows are unpaired (relayed_to NULL).
        _add_columns(conn, legacy, _RELAYED_TYPES)
        self._create_parent(conn)
        parent = self._ident("message_log")
        conn.execute(sql.SQL("ALTER TABLE {} ATTACH PARTITION {} FOR VALUES FROM (MINVALUE) TO ({})").format(
            parent, legacy, sql.Literal(until)))
        conn.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN id RESTART WITH {}").format(parent, sql.Literal(last_id + 1)))
        conn.execute(sql.SQL("INSERT INTO {} (key, value) VALUES (%s, %s) ON CONFLICT (key) DO UPDATE"
                             " SET value = EXCLUDED.value").format(self._meta), (_LEGACY_UNTIL, repr(until)))
        log.info("store.message_log_partitioned", legacy_until=until, legacy_last_id=last_id)

    def keep_ahead(self, conn: psycopg.Connection[Any]) -> None:
        """Now and then, from the writer: make sure today's and the next days' partitions exist."""
        now = self.clock()
        if now < self._next_check:
            return
        self._next_check = now + _CHECK_AHEAD_EVERY
        try:
            with conn.transaction():
                self._create_days(conn)
        except psycopg.Error as exc:
            # Rows still land in the default partition meanwhile: nothing is lost, try again in a minute.
            self._next_check = now + 60.0
            log.warning("store.partition_create_failed", error=one_line(exc))

    def _create_days(self, conn: psycopg.Connection[Any]) -> None:
        first = self.clock() // DAY * DAY
        days = [first + k * DAY for k in range(DAYS_AHEAD + 1)]
        days = [d for d in days if self._legacy_until is None or d >= self._legacy_until]
        if all(self._exists(conn, _day_name(d)) for d in days):
            return
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))  # two writers create a day once
        default = self._ident("message_log_default")
        for lo in days:
            if self._exists(conn, _day_name(lo)):
                continue
            hi = lo + DAY
            # A row of this day that came before its partition (a clock running ahead) sits in the default
            # partition, which would refuse the new one: move it across in the same transaction.
            skewed = conn.execute(sql.SQL("SELECT EXISTS (SELECT 1 FROM {} WHERE ts >= %s AND ts < %s)").format(
                default), (lo, hi)).fetchone()
            if skewed and skewed[0]:
                conn.execute(sql.SQL("CREATE TEMP TABLE message_log_moving AS SELECT * FROM {}"
                                     " WHERE ts >= %s AND ts < %s").format(default), (lo, hi))
                conn.execute(sql.SQL("DELETE FROM {} WHERE ts >= %s AND ts < %s").format(default), (lo, hi))
            conn.execute(sql.SQL("CREATE TABLE {} PARTITION OF {} FOR VALUES FROM ({}) TO ({})").format(
                self._ident(_day_name(lo)), self._ident("message_log"), sql.Literal(lo), sql.Literal(hi)))
            if skewed and skewed[0]:
                conn.execute(sql.SQL("INSERT INTO {} OVERRIDING SYSTEM VALUE SELECT * FROM message_log_moving").format(
                    self._ident("message_log")))
                conn.execute("DROP TABLE message_log_moving")

    def delete_before(self, conn: psycopg.Connection[Any], cutoff: float, limit: int) -> int:
        """Drop the days wholly before ``cutoff``, then delete up to ``limit`` old rows outside the days."""
        dropped = 0
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            if self._legacy_until is not None and self._exists(conn, "message_log_legacy") is None:
                self._legacy_until = None  # another instance's retention dropped it
            old = [name for name, lo in self._days(conn) if lo + DAY <= cutoff]
            if self._legacy_until is not None and self._legacy_until <= cutoff:
                old.append("message_log_legacy")
            for name in old:
                count = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(self._ident(name))).fetchone()
                conn.execute(sql.SQL("DROP TABLE {}").format(self._ident(name)))
                dropped += int(count[0]) if count else 0
                log.info("store.partition_dropped", partition=name, records=int(count[0]) if count else 0)
            if "message_log_legacy" in old:
                self._legacy_until = None
                conn.execute(sql.SQL("DELETE FROM {} WHERE key = %s").format(self._meta), (_LEGACY_UNTIL,))
            deleted = 0
            for name in ("message_log_default", "message_log_legacy"):
                if deleted >= limit or (name == "message_log_legacy" and self._legacy_until is None):
                    continue
                table = self._ident(name)
                cur = conn.execute(sql.SQL(
                    "DELETE FROM {0} WHERE ctid = ANY (ARRAY (SELECT ctid FROM {0} WHERE ts < %s LIMIT %s))"
                ).format(table), (cutoff, limit - deleted))
                deleted += cur.rowcount
        # The caller calls again while a call returns ``limit`` or more; after a drop that costs one empty call.
        return dropped + deleted

    def _days(self, conn: psycopg.Connection[Any]) -> list[tuple[str, float]]:
        """(name, start) of every day partition."""
        rows = conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = to_regclass(%s)",
            (f"{self.schema}.message_log" if self.schema else "message_log",),
        ).fetchall()
        days = []
        for (name,) in rows:
            if _DAY_NAME.match(str(name)):
                start = datetime.strptime(str(name)[-8:], "%Y%m%d").replace(tzinfo=UTC).timestamp()
                days.append((str(name), start))
        return days


_DAY_NAME = re.compile(r"^message_log_p\d{8}$")


def _day_name(start: float) -> str:
    return "message_log_p" + datetime.fromtimestamp(start, UTC).strftime("%Y%m%d")


def one_line(exc: BaseException) -> str:
    """libpq's messages run over several lines (a hint on the next one): one line for logs and the CLI."""
    return " ".join(str(exc).split())


def _no_nul(row: tuple[Any, ...]) -> tuple[Any, ...]:
    # PostgreSQL text cannot hold NUL, which a WebSocket text frame can; one bad
    # frame must not make its whole batch fail.
    if any(isinstance(v, str) and "\x00" in v for v in row):
        return tuple(v.replace("\x00", "\ufffd") if isinstance(v, str) else v for v in row)
    return row
