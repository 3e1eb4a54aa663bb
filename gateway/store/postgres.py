"""PostgreSQL backend (psycopg 3), for fleets and for gateway instances that share state.

``postgresql://user:pass@host:port/db`` with any libpq parameter in the query
string, plus ``?schema=NAME`` (ours, not libpq's): put the tables in that
schema, created if missing. The writer uses one connection in transactions;
reads use another in autocommit so they never leave a transaction open.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from gateway.store.base import FIRST_ALLOCATED_ID, MESSAGE_COLUMNS, SCHEMA_VERSION, QueueRow, Store, StoreError

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_SCHEMA_LOCK = 0x0C99_6A7E  # advisory lock key: two instances starting together create tables once


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
        queue, ids = table("offline_queue"), table("transaction_id_seq")
        cols = sql.SQL(", ").join(sql.Identifier(c) for c in MESSAGE_COLUMNS)
        self._ddl: list[sql.Composed] = [
            sql.SQL("CREATE TABLE IF NOT EXISTS {} (key TEXT PRIMARY KEY, value TEXT NOT NULL)").format(meta),
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} ("
                " id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
                " ts DOUBLE PRECISION NOT NULL, charger_id TEXT NOT NULL, direction TEXT NOT NULL,"
                " peer TEXT NOT NULL, ocpp_version TEXT NOT NULL, message_type TEXT NOT NULL,"
                " action TEXT, unique_id TEXT, frame TEXT NOT NULL, error_code TEXT, note TEXT)"
            ).format(log),
            sql.SQL("CREATE INDEX IF NOT EXISTS message_log_charger_id ON {} (charger_id, id)").format(log),
            sql.SQL("CREATE INDEX IF NOT EXISTS message_log_ts ON {} (ts)").format(log),
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (charger_id TEXT PRIMARY KEY, state TEXT NOT NULL,"
                " updated_at DOUBLE PRECISION NOT NULL)"
            ).format(state),
        ]
        self._ddl += [
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (charger_id TEXT NOT NULL, seq BIGINT NOT NULL,"
                " ts DOUBLE PRECISION NOT NULL, action TEXT NOT NULL, unique_id TEXT NOT NULL, payload TEXT NOT NULL,"
                " local_answer TEXT NOT NULL, coalesce_key TEXT, PRIMARY KEY (charger_id, seq))"
            ).format(queue),
            # Gateway-assigned transaction ids: a sequence is shared safely by every instance on this database.
            sql.SQL("CREATE SEQUENCE IF NOT EXISTS {} START WITH {}").format(ids, sql.Literal(FIRST_ALLOCATED_ID)),
        ]
        self._queue_insert = sql.SQL(
            "INSERT INTO {} (charger_id, seq, ts, action, unique_id, payload, local_answer, coalesce_key)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (charger_id, seq) DO UPDATE SET"
            " ts = EXCLUDED.ts, action = EXCLUDED.action, unique_id = EXCLUDED.unique_id,"
            " payload = EXCLUDED.payload, local_answer = EXCLUDED.local_answer, coalesce_key = EXCLUDED.coalesce_key"
        ).format(queue)
        self._queue_delete = sql.SQL("DELETE FROM {} WHERE charger_id = %s AND seq = %s").format(queue)
        self._queue_select = sql.SQL(
            "SELECT seq, ts, action, unique_id, payload, local_answer, coalesce_key FROM {}"
            " WHERE charger_id = %s ORDER BY seq"
        ).format(queue)
        self._reserve_ids = sql.SQL("SELECT nextval(%s) FROM generate_series(1, %s)")
        self._sequence_name = f"{self.schema}.transaction_id_seq" if self.schema else "transaction_id_seq"
        if self.schema:
            self._ddl.insert(0, sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema)))
        self._meta_get = sql.SQL("SELECT value FROM {} WHERE key = 'schema_version'").format(meta)
        self._meta_set = sql.SQL("INSERT INTO {} (key, value) VALUES ('schema_version', %s)").format(meta)
        self._insert = sql.SQL(
            "INSERT INTO {} (ts, charger_id, direction, peer, ocpp_version, message_type, action, unique_id,"
            " frame, error_code, note) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        ).format(log)
        self._upsert = sql.SQL(
            "INSERT INTO {} (charger_id, state, updated_at) VALUES (%s, %s, %s)"
            " ON CONFLICT (charger_id) DO UPDATE SET state = EXCLUDED.state, updated_at = EXCLUDED.updated_at"
        ).format(state)
        self._delete = sql.SQL("DELETE FROM {0} WHERE id IN (SELECT id FROM {0} WHERE ts < %s LIMIT %s)").format(log)
        self._newest = sql.SQL("SELECT {} FROM {} WHERE charger_id = %s ORDER BY id DESC LIMIT %s").format(cols, log)
        self._newest_all = sql.SQL("SELECT {} FROM {} ORDER BY id DESC LIMIT %s").format(cols, log)
        self._after = sql.SQL("SELECT {} FROM {} WHERE charger_id = %s AND id > %s ORDER BY id LIMIT %s").format(
            cols, log
        )
        self._after_all = sql.SQL("SELECT {} FROM {} WHERE id > %s ORDER BY id LIMIT %s").format(cols, log)
        self._get_state = sql.SQL("SELECT state FROM {} WHERE charger_id = %s").format(state)
        self._states_prefixed = sql.SQL("SELECT charger_id, state FROM {} WHERE left(charger_id, %s) = %s").format(
            state)
        self._charger_frames = sql.SQL(
            "SELECT {} FROM {} WHERE charger_id = %s AND id > %s AND peer = 'charger' AND ts >= %s AND ts < %s"
            " ORDER BY id LIMIT %s").format(cols, log)
        self._charger_ids = sql.SQL(
            "SELECT DISTINCT charger_id FROM {} WHERE ts >= %s AND ts < %s AND peer = 'charger'").format(log)
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
            row = conn.execute(self._meta_get).fetchone()
            if row is None:
                conn.execute(self._meta_set, (str(SCHEMA_VERSION),))
            elif int(row[0]) > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.description} has store schema version {row[0]}, newer than this gateway's {SCHEMA_VERSION}"
                )

    def _insert_messages(self, conn: psycopg.Connection[Any], rows: list[tuple[Any, ...]]) -> None:
        with conn.cursor() as cur:
            cur.executemany(self._insert, [_no_nul(r) for r in rows])
        conn.commit()

    def _upsert_states(self, conn: psycopg.Connection[Any], items: list[tuple[str, str, float]]) -> None:
        with conn.cursor() as cur:
            cur.executemany(self._upsert, [_no_nul(i) for i in items])
        conn.commit()

    def _commit_all(
        self, conn: psycopg.Connection[Any], rows: list[tuple[Any, ...]], states: list[tuple[str, str, float]],
        enqueue: list[tuple[Any, ...]], settle: list[tuple[str, int]],
    ) -> None:
        try:
            with conn.cursor() as cur:
                if rows:
                    cur.executemany(self._insert, [_no_nul(r) for r in rows])
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

    def _reserve(self, conn: psycopg.Connection[Any], name: str, count: int) -> list[int]:
        # One sequence (transaction ids) is all there is today; ``name`` keeps the interface open.
        rows = conn.execute(self._reserve_ids, (self._sequence_name, count)).fetchall()
        conn.commit()
        return [int(r[0]) for r in rows]

    def _delete_before(self, conn: psycopg.Connection[Any], cutoff: float, limit: int) -> int:
        cur = conn.execute(self._delete, (cutoff, limit))
        conn.commit()
        return cur.rowcount

    def _select_messages(
        self, conn: psycopg.Connection[Any], charger_id: str | None, limit: int, after_id: int | None
    ) -> list[tuple[Any, ...]]:
        try:
            return self._select_messages_from(conn, charger_id, limit, after_id)
        except psycopg.errors.UndefinedTable:
            raise StoreError(
                f"no message log in {self.description} (has the gateway run with this store URL?)"
            ) from None

    def _select_messages_from(
        self, conn: psycopg.Connection[Any], charger_id: str | None, limit: int, after_id: int | None
    ) -> list[tuple[Any, ...]]:
        if after_id is None:
            if charger_id is None:
                rows = conn.execute(self._newest_all, (limit,)).fetchall()
            else:
                rows = conn.execute(self._newest, (charger_id, limit)).fetchall()
            return list(reversed(rows))
        if charger_id is None:
            return conn.execute(self._after_all, (after_id, limit)).fetchall()
        return conn.execute(self._after, (charger_id, after_id, limit)).fetchall()

    def _select_state(self, conn: psycopg.Connection[Any], charger_id: str) -> str | None:
        row = conn.execute(self._get_state, (charger_id,)).fetchone()
        return None if row is None else str(row[0])

    def _select_states(self, conn: psycopg.Connection[Any], prefix: str) -> list[tuple[str, str]]:
        return [(str(k), str(v)) for k, v in conn.execute(self._states_prefixed, (len(prefix), prefix)).fetchall()]

    def _select_charger_frames(
        self, conn: psycopg.Connection[Any], charger_id: str, since: float, until: float, after_id: int, limit: int
    ) -> list[tuple[Any, ...]]:
        return conn.execute(self._charger_frames, (charger_id, after_id, since, until, limit)).fetchall()

    def _select_charger_ids(self, conn: psycopg.Connection[Any], since: float, until: float) -> list[str]:
        return [str(r[0]) for r in conn.execute(self._charger_ids, (since, until)).fetchall()]
    def _select_latest_calls(self, conn: psycopg.Connection[Any], action: str) -> list[tuple[str, str]]:
        return [(str(cid), str(frame)) for cid, frame in conn.execute(self._latest_calls, (action,)).fetchall()]

    def _is_transient(self, exc: BaseException) -> bool:
        return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError | StoreError)

    def _close_connection(self, conn: psycopg.Connection[Any]) -> None:
        try:
            conn.close()
        except psycopg.Error:
            pass


def one_line(exc: BaseException) -> str:
    """libpq's messages run over several lines (a hint on the next one): one line for logs and the CLI."""
    return " ".join(str(exc).split())


def _no_nul(row: tuple[Any, ...]) -> tuple[Any, ...]:
    # PostgreSQL text cannot hold NUL, which a WebSocket text frame can; one bad
    # frame must not make its whole batch fail.
    if any(isinstance(v, str) and "\x00" in v for v in row):
        return tuple(v.replace("\x00", "\ufffd") if isinstance(v, str) else v for v in row)
    return row
