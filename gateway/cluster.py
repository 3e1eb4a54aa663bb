"""Several gateway instances on one PostgreSQL act as one gateway: one owner per charger, changes reach it.

The estate asks its ``Cluster`` for a charger before it starts the charger's
session and gives it back when the session has ended and its state is
written. Everything here uses PostgreSQL's own tools, no cluster protocol of
our own (docs/cluster.md):

- **Ownership** is a session-level advisory lock per charger, taken on one
  dedicated connection per instance. A SIGKILLed instance's locks vanish with
  its connection, so a survivor can take its chargers at once.
- **Takeover**: an instance that gets a charger another instance holds
  NOTIFYs ``release <charger>``; the holder closes its side (1000, "taken over
  by another gateway instance"), writes the session's state and unlocks; the
  newcomer, polling the lock meanwhile, then loads the state from the store.
- **Visibility**: the ``charger_owner`` table says which instance holds each
  charger (with ``since`` and a ``version`` bumped on every change of hands);
  rows whose lock is no longer held (a dead instance) are not shown.
- **Changes**: ``route <charger>`` and ``plan <name>`` notifications tell the
  instance that holds a charger to re-read what another instance stored.
- **Plans**: one instance runs a migration plan, the holder of its lease (a
  ``plan_lease`` row with an expiry the runner renews); another instance
  takes the plan over when the lease runs out.

A single instance on SQLite (or any store when the cluster is off) uses
``LocalCluster``: the same interface over an in-memory table, plus a file
lock that refuses a second gateway process on the same SQLite file.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from gateway.logs import get_logger
from gateway.store import StoreError

Callback = Callable[[str], Awaitable[None]]
_POLL = 0.05  # seconds between tries of a lock another instance is giving up
_ASK_AGAIN = 2.0  # a holder that has not let go after this long is asked again (a lost notification)
_REFRESH = 1.0  # seconds between refreshes of the estate-wide owner table (and the connection check)
_MAX_BACKOFF = 5.0
_DDL_LOCK = 0x0C99_C105  # advisory lock key for creating the owner table


class ClusterError(StoreError):
    """The cluster's side of the store cannot do what was asked (unreachable, another process on the file ...)."""


def default_instance_id() -> str:
    """``hostname:pid``: unique on a machine, and says where to look."""
    return f"{socket.gethostname()}:{os.getpid()}"


def lock_key(namespace: str, charger_id: str) -> int:
    """A non-negative 63-bit advisory lock key for a charger (namespaced by the store's schema)."""
    digest = hashlib.blake2b(f"{namespace}\x00{charger_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") & 0x7FFF_FFFF_FFFF_FFFF


@dataclass(frozen=True, slots=True)
class Holder:
    """Which instance holds a charger, since when (Unix seconds)."""

    instance: str
    since: float


class Cluster:
    """One instance's view of charger ownership; the base class is a single instance (``LocalCluster``)."""

    #: True when other processes share the store: the last state must be written before a charger is let go.
    shared = False

    def __init__(self, instance_id: str) -> None:
        self.instance_id = instance_id
        self.log = get_logger()
        # Local claims per charger: a reconnect on this instance claims again before the old socket lets go.
        self._claims: dict[str, int] = {}
        self._since: dict[str, float] = {}
        # Called (on the loop) when another instance wants a charger this one holds.
        self.on_release: Callback | None = None
        # Called when another instance changed a charger's route or a migration plan.
        self.on_route_changed: Callback | None = None
        self.on_plan_changed: Callback | None = None

    async def start(self) -> None:
        """Join the cluster (ClusterError when that is impossible)."""

    async def stop(self) -> None:
        """Leave: every lock this instance holds is given up."""
        self._claims.clear()
        self._since.clear()

    @property
    def reachable(self) -> bool:
        """Whether the shared store answers (always for a single instance)."""
        return True

    def holds(self, charger_id: str) -> bool:
        return charger_id in self._claims

    async def acquire(self, charger_id: str, gone: Callable[[], bool]) -> bool:
        """Hold the charger (waiting for another instance to let go); False when ``gone()`` turned true first.

        Raises ClusterError while the store is unreachable; the caller retries.
        """
        if charger_id in self._claims:
            self._claims[charger_id] += 1
            return True
        if not await self._take(charger_id, gone):
            return False
        self._claims[charger_id] = self._claims.get(charger_id, 0) + 1
        self._since.setdefault(charger_id, time.time())
        return True

    async def release(self, charger_id: str, settle: Callable[[], Awaitable[None]] | None = None) -> None:
        """Give one claim back; the last one runs ``settle`` (write the state) and then lets the charger go."""
        count = self._claims.get(charger_id, 0) - 1
        if count > 0:
            self._claims[charger_id] = count
            return
        if settle is not None and self.shared:
            try:
                await settle()
            except Exception as exc:  # the lock goes anyway: a charger must be able to go elsewhere
                self.log.error("cluster_state_not_settled", charger_id=charger_id, error=repr(exc))
        if self._claims.get(charger_id, 0) > 1:  # claimed again while settling: keep it
            self._claims[charger_id] -= 1
            return
        self._claims.pop(charger_id, None)
        self._since.pop(charger_id, None)
        await self._give_back(charger_id)

    def holders(self) -> dict[str, Holder]:
        """Every charger held anywhere in the estate and by which instance (this one's included)."""
        return {cid: Holder(self.instance_id, self._since.get(cid, 0.0)) for cid in self._claims}

    async def notify_route(self, charger_id: str) -> None:
        """Tell the instance that holds ``charger_id`` that its stored route changed (no-op alone)."""

    async def notify_plan(self, name: str) -> None:
        """Tell every instance that migration plan ``name`` changed (no-op alone)."""

    async def lease_plan(self, name: str, ttl: float) -> bool:
        """Take or renew migration plan ``name``'s lease for ``ttl`` seconds; False while another instance has it."""
        return True

    async def release_plan(self, name: str) -> None:
        """Give up the plan's lease, so another instance may run it at once."""

    def leaving(self) -> None:
        """The instance is stopping (PostgreSQL: locks go all at once when it has stopped)."""

    # ------------------------------------------------------------ engine hooks

    async def _take(self, charger_id: str, gone: Callable[[], bool]) -> bool:
        return True

    async def _give_back(self, charger_id: str) -> None:
        return None


class LocalCluster(Cluster):
    """A single instance: ownership is this process's; a SQLite file is guarded against a second process."""

    def __init__(self, instance_id: str, sqlite_file: str | None = None) -> None:
        super().__init__(instance_id)
        self.sqlite_file = sqlite_file
        self._lock_file: IO[bytes] | None = None

    async def start(self) -> None:
        if self.sqlite_file is None:
            return
        import fcntl

        path = Path(self.sqlite_file + ".instance-lock")
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = path.open("a+b")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            other = handle.read().decode(errors="replace").strip() or "another process"
            handle.close()
            raise ClusterError(
                f"another gateway process ({other}) already uses the SQLite store {self.sqlite_file}; "
                "several gateway instances need a PostgreSQL store (docs/cluster.md)") from None
        handle.seek(0)
        handle.truncate()
        handle.write(self.instance_id.encode())
        handle.flush()
        self._lock_file = handle

    async def stop(self) -> None:
        await super().stop()
        if self._lock_file is not None:
            self._lock_file.close()  # closing the file lets go of the lock
            self._lock_file = None


class PostgresCluster(Cluster):
    """Instances sharing a PostgreSQL store: advisory locks, LISTEN/NOTIFY and the ``charger_owner`` table."""

    shared = True

    def __init__(self, instance_id: str, params: dict[str, Any], schema: str | None) -> None:
        super().__init__(instance_id)
        from psycopg import sql

        self._params = {**params, "application_name": f"ocpp-gateway cluster {instance_id}"[:63]}
        self._params.setdefault("connect_timeout", 5)
        self.schema = schema
        self.channel = f"ocpp_gateway:{schema or 'public'}"
        owner = sql.Identifier(schema, "charger_owner") if schema else sql.Identifier("charger_owner")
        self._ddl = sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} (charger_id TEXT PRIMARY KEY, instance TEXT NOT NULL,"
            " since DOUBLE PRECISION NOT NULL, version BIGINT NOT NULL DEFAULT 1, lock_key BIGINT NOT NULL)"
        ).format(owner)
        self._claim_row = sql.SQL(
            "INSERT INTO {0} (charger_id, instance, since, lock_key) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (charger_id) DO UPDATE SET instance = EXCLUDED.instance, since = EXCLUDED.since,"
            " version = {0}.version + 1, lock_key = EXCLUDED.lock_key").format(owner)
        # One round trip on the shared lock connection to let a charger go: the row, then (reading the
        # DELETE's output forces the order) the lock.
        self._let_go = sql.SQL(
            "WITH gone AS (DELETE FROM {} WHERE charger_id = %s AND instance = %s RETURNING 1)"
            " SELECT pg_advisory_unlock(%s) FROM (SELECT count(*) FROM gone) AS done").format(owner)
        # Plan leases: the database's clock decides expiry, so the instances' clocks need not agree.
        lease = sql.Identifier(schema, "plan_lease") if schema else sql.Identifier("plan_lease")
        self._lease_ddl = sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} (name TEXT PRIMARY KEY, instance TEXT NOT NULL,"
            " until TIMESTAMPTZ NOT NULL)").format(lease)
        self._take_lease = sql.SQL(
            "INSERT INTO {0} (name, instance, until) VALUES (%s, %s, now() + make_interval(secs => %s))"
            " ON CONFLICT (name) DO UPDATE SET instance = EXCLUDED.instance, until = EXCLUDED.until"
            " WHERE {0}.instance = EXCLUDED.instance OR {0}.until < now() RETURNING instance").format(lease)
        self._drop_lease = sql.SQL("DELETE FROM {} WHERE name = %s AND instance = %s").format(lease)
        # Rows whose advisory lock is still granted: a SIGKILLed instance's rows drop out with its connection.
        self._live_rows = sql.SQL(
            "SELECT o.charger_id, o.instance, o.since FROM {} o JOIN pg_locks l ON l.locktype = 'advisory'"
            " AND l.granted AND l.objsubid = 1 AND l.database = (SELECT oid FROM pg_database"
            " WHERE datname = current_database())"
            " AND (l.classid::bigint << 32) | l.objid::bigint = o.lock_key").format(owner)
        self._listen = sql.SQL("LISTEN {}").format(sql.Identifier(self.channel))
        self._conn: Any = None  # psycopg.AsyncConnection holding the advisory locks
        self._listener: Any = None
        self._keys: dict[str, int] = {}  # charger id -> lock key, for chargers this instance holds
        self._estate: dict[str, Holder] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._op = asyncio.Lock()  # one statement at a time on the lock connection
        self._reachable = False
        self._waiting: dict[str, asyncio.Event] = {}  # chargers this instance waits for another to let go
        self._leaving = False

    @property
    def reachable(self) -> bool:
        return self._reachable

    async def start(self) -> None:
        try:
            await self._connect()
        except Exception as exc:
            raise ClusterError(f"cannot join the cluster: {exc}") from exc
        await self._say_lock_capacity()
        self._tasks = [asyncio.create_task(self._listen_loop(), name="cluster-listen"),
                       asyncio.create_task(self._refresh_loop(), name="cluster-refresh")]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        await super().stop()
        self._keys.clear()
        for conn in (self._conn, self._listener):
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.close()  # closing the session releases its advisory locks
        self._conn = self._listener = None
        self._reachable = False

    async def _say_lock_capacity(self) -> None:
        """Log how many chargers the server's lock table can hold: one advisory lock per charger held, in a
        table of max_locks_per_transaction x (max_connections + max_prepared_transactions) slots for every lock
        of the server (6,400 by default). When it is full, PostgreSQL answers "out of shared memory"."""
        with contextlib.suppress(Exception):
            rows = await self._execute(
                "SELECT current_setting('max_locks_per_transaction')::int * (current_setting('max_connections')"
                "::int + current_setting('max_prepared_transactions')::int)")
            self.log.info("cluster_lock_capacity", lock_slots=int(rows[0][0]),
                          hint="each connected charger holds one; raise max_locks_per_transaction for more "
                          "chargers than that across all instances (docs/cluster.md)")

    async def _connect(self) -> None:
        import psycopg

        conn = await psycopg.AsyncConnection.connect(autocommit=True, **self._params)
        async with conn.transaction():  # instances starting together: CREATE ... IF NOT EXISTS races otherwise
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_DDL_LOCK,))
            await conn.execute(self._ddl)
            await conn.execute(self._lease_ddl)
        # A lost connection took its locks with it: take back what this instance still serves.
        lost = []
        for cid, key in list(self._keys.items()):
            row = await (await conn.execute("SELECT pg_try_advisory_lock(%s)", (key,))).fetchone()
            if row and row[0]:
                await conn.execute(self._claim_row, (cid, self.instance_id, self._since.get(cid, time.time()), key))
            else:
                lost.append(cid)
        old, self._conn = self._conn, conn
        if old is not None:
            with contextlib.suppress(Exception):
                await old.close()
        self._reachable = True
        for cid in lost:  # another instance took it while the connection was down: it is theirs now
            self.log.warning("cluster_charger_lost", charger_id=cid, reason="lock taken while the store was away")
            self._keys.pop(cid, None)
            if self.on_release is not None:
                await self.on_release(cid)

    async def _execute(self, query: Any, params: tuple[Any, ...] = (),
                       unless: Callable[[], bool] | None = None) -> list[tuple[Any, ...]]:
        """Run one statement on the lock connection; ClusterError (and a reconnect later) when it fails.
        ``unless``: checked once it is this statement's turn; true skips it."""
        import psycopg

        async with self._op:
            if unless is not None and unless():
                return []
            if self._conn is None or self._conn.closed:
                try:
                    await self._connect()
                except Exception as exc:
                    self._reachable = False
                    raise ClusterError(f"store unreachable: {exc}") from exc
            try:
                cur = await self._conn.execute(query, params)
                return list(await cur.fetchall()) if cur.description else []
            except psycopg.Error as exc:
                if self._conn.closed or isinstance(exc, psycopg.OperationalError):
                    self._reachable = False
                    with contextlib.suppress(Exception):
                        await self._conn.close()
                raise ClusterError(f"store unreachable: {exc}") from exc

    async def _take(self, charger_id: str, gone: Callable[[], bool]) -> bool:
        key = lock_key(self.channel, charger_id)
        asked_at: float | None = None
        started = time.monotonic()
        while True:
            rows = await self._execute("SELECT pg_try_advisory_lock(%s)", (key,))
            if rows and rows[0][0]:
                self._keys[charger_id] = key
                now = time.time()
                self._since[charger_id] = now
                await self._execute(self._claim_row, (charger_id, self.instance_id, now, key))
                self._estate[charger_id] = Holder(self.instance_id, now)
                if asked_at is not None:
                    self.log.info("cluster_takeover", charger_id=charger_id,
                                  waited=round(time.monotonic() - started, 3))
                return True
            if gone():
                return False
            now_m = time.monotonic()
            if asked_at is None or now_m - asked_at >= _ASK_AGAIN:
                if asked_at is not None:
                    self.log.warning("cluster_holder_slow", charger_id=charger_id,
                                     waited=round(now_m - started, 1))
                asked_at = now_m
                await self._notify(f"release {charger_id} {self.instance_id}")
            await asyncio.sleep(_POLL)

    def leaving(self) -> None:
        """The instance is stopping: chargers it lets go from now on keep their locks until ``stop`` closes
        the lock connection, which releases them all at once. Unlocking one by one costs two statements per
        charger on the one lock connection (measured: 16 of 18.5 s to stop with 8,000 chargers); the rows left
        behind are ignored once their lock is gone and overwritten by the next holder."""
        self._leaving = True

    async def _give_back(self, charger_id: str) -> None:
        key = self._keys.pop(charger_id, None)
        self._estate.pop(charger_id, None)
        if key is None or self._leaving:
            return
        try:
            # After a mass disconnect hundreds may queue here; once the instance is leaving they need not run.
            await self._execute(self._let_go, (charger_id, self.instance_id, key), unless=lambda: self._leaving)
        except ClusterError as exc:  # the connection is gone, and with it the lock
            self.log.warning("cluster_release_failed", charger_id=charger_id, error=str(exc))

    async def _notify(self, payload: str) -> None:
        await self._execute("SELECT pg_notify(%s, %s)", (self.channel, payload))

    async def notify_route(self, charger_id: str) -> None:
        await self._notify(f"route {charger_id} {self.instance_id}")

    async def notify_plan(self, name: str) -> None:
        await self._notify(f"plan {name} {self.instance_id}")

    async def lease_plan(self, name: str, ttl: float) -> bool:
        return bool(await self._execute(self._take_lease, (name, self.instance_id, ttl)))

    async def release_plan(self, name: str) -> None:
        await self._execute(self._drop_lease, (name, self.instance_id))

    def holders(self) -> dict[str, Holder]:
        mine = super().holders()
        return {**{k: v for k, v in self._estate.items() if v.instance != self.instance_id}, **mine}

    async def _listen_loop(self) -> None:
        import psycopg

        backoff = 0.1
        while True:
            try:
                self._listener = await psycopg.AsyncConnection.connect(autocommit=True, **self._params)
                await self._listener.execute(self._listen)
                backoff = 0.1
                async for note in self._listener.notifies():
                    await self._dispatch(note.payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._reachable = False
                self.log.warning("cluster_listen_lost", error=" ".join(str(exc).split()), retry_in=backoff)
            finally:
                if self._listener is not None:
                    with contextlib.suppress(Exception):
                        await self._listener.close()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _MAX_BACKOFF)

    async def _dispatch(self, payload: str) -> None:
        kind, _, rest = payload.partition(" ")
        subject, _, sender = rest.rpartition(" ")
        if sender == self.instance_id or not subject:
            return
        callback = {"release": self.on_release, "route": self.on_route_changed, "plan": self.on_plan_changed}.get(kind)
        if kind == "release" and subject not in self._keys:
            return
        if callback is not None:
            try:
                await callback(subject)
            except Exception as exc:  # one bad callback must not stop the listener
                self.log.error("cluster_callback_failed", kind=kind, subject=subject, error=repr(exc))

    async def _refresh_loop(self) -> None:
        """Every second: the estate's owner table (which also proves the lock connection is alive)."""
        backoff = _REFRESH
        while True:
            await asyncio.sleep(backoff)
            try:
                rows = await self._execute(self._live_rows)
            except ClusterError as exc:
                self.log.warning("cluster_store_unreachable", error=str(exc), retry_in=backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF)
                continue
            backoff = _REFRESH
            self._reachable = True
            self._estate = {str(cid): Holder(str(inst), float(since)) for cid, inst, since in rows}


def open_cluster(store_url: str, instance_id: str | None) -> Cluster:
    """The cluster for a store: PostgreSQL shares chargers between instances; SQLite allows one process."""
    instance = instance_id or default_instance_id()
    scheme = store_url.split(":", 1)[0].split("+", 1)[0].lower()
    if scheme in ("postgresql", "postgres"):
        from psycopg.conninfo import conninfo_to_dict

        from gateway.store.postgres import split_url

        try:
            conninfo, schema = split_url(store_url)
        except ValueError:
            return LocalCluster(instance)
        return PostgresCluster(instance, conninfo_to_dict(conninfo), schema)
    if scheme == "sqlite":
        from gateway.store.sqlite import MEMORY, sqlite_path

        try:
            path = sqlite_path(store_url)
        except ValueError:  # the store itself says what is wrong with its URL
            return LocalCluster(instance)
        return LocalCluster(instance, None if path == MEMORY else os.path.abspath(path))
    return LocalCluster(instance)
