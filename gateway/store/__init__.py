"""The gateway's persistent store: the per-charger message log and translation state.

    store = open_store("sqlite:///gateway.db")
    await store.start()                  # schema + writer thread; StoreError if the store cannot be opened
    store.record(frame_record)           # hot path: appends to a queue, never blocks
    store.save_state(charger_id, state)  # latest per charger wins; never dropped
    await store.load_state(charger_id)
    await store.messages(charger_id, limit=100, after_id=None)
    await store.flush(); await store.close()

Writes happen on one writer thread per store, in batches (multi-row INSERTs
on SQLite, ``COPY`` on PostgreSQL; every ``flush_interval`` seconds or
``batch_max`` records); a frame and the one sent on for it, relayed or
translated, are one row for their "in" and "out" records (the ``relayed_*``
columns), expanded again by every read; reads run in
``asyncio.to_thread`` on their own connection, so neither stalls the relay.
When the store falls behind by ``max_queue`` records the oldest unwritten
records are dropped (``stats["dropped"]``, a log line); state saves are
never dropped. The writer deletes records older than ``retention_days``
at start and every ``prune_interval`` seconds (None keeps them forever).

URLs: ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db``,
``sqlite://:memory:``, ``postgresql://user:password@host:port/db[?schema=name]``.
"""

from __future__ import annotations

from gateway.store.base import (
    DEFAULT_MAX_QUEUE,
    DEFAULT_PRUNE_INTERVAL,
    Store,
    StoreError,
    frame_payload,
    iso_utc,
)


def open_store(
    url: str,
    retention_days: float | None = 30.0,
    batch_max: int = 2000,
    flush_interval: float = 0.2,
    *,
    max_queue: int = DEFAULT_MAX_QUEUE,
    prune_interval: float = DEFAULT_PRUNE_INTERVAL,
) -> Store:
    """A store for ``url`` (not started: call ``await store.start()``); ValueError for a bad URL."""
    kwargs = {
        "retention_days": retention_days,
        "batch_max": batch_max,
        "flush_interval": flush_interval,
        "max_queue": max_queue,
        "prune_interval": prune_interval,
    }
    scheme = url.split(":", 1)[0].split("+", 1)[0].lower()
    if scheme == "sqlite":
        from gateway.store.sqlite import SQLiteStore, sqlite_path

        return SQLiteStore(sqlite_path(url), **kwargs)
    if scheme in ("postgresql", "postgres"):
        try:
            from gateway.store.postgres import PostgresStore
        except ImportError as exc:  # psycopg is an optional dependency
            raise ValueError(
                f"store URL {url.split('@')[-1]!r} needs psycopg: pip install 'ocpp-migration-gateway[postgres]'"
            ) from exc
        return PostgresStore(url, **kwargs)
    raise ValueError(
        f"unsupported store URL {url!r}: use sqlite:///path.db, sqlite:////abs/path.db, sqlite://:memory:"
        " or postgresql://user@host:port/db"
    )


__all__ = ["Store", "StoreError", "frame_payload", "iso_utc", "open_store"]
