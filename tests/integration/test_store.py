"""The persistent store on real SQLite files and a real PostgreSQL: message log, state, retention, logs CLI."""

from __future__ import annotations

import asyncio
import io
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.ocppj import Call, CallError, CallResult, MessageType, Version, serialize
from gateway.records import FrameRecord
from gateway.schemas import validate
from gateway.store import Store, StoreError, frame_payload, iso_utc, open_store
from gateway.store import sqlite as sqlite_store
from gateway.store.base import RELAYED_COLUMNS
from gateway.store.cli import logs_command
from gateway.store.sqlite import MEMORY, sqlite_path

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
DAY = 86400.0

BOOT16 = {"chargePointVendor": "ACME", "chargePointModel": "One"}
BOOT16_CONF = {"status": "Accepted", "currentTime": "2026-01-01T00:00:00Z", "interval": 300}
BOOT201 = {"reason": "PowerUp", "chargingStation": {"model": "One", "vendorName": "ACME"}}
STATUS16 = {"connectorId": 1, "errorCode": "NoError", "status": "Available"}


def checked(version: Version, action: str, payload: dict[str, Any], response: bool = False) -> dict[str, Any]:
    """The payload, after making sure it is exactly what the version's schema allows."""
    assert validate(version, action, payload, response=response) is None
    return payload


def rec(
    frame: str,
    *,
    charger_id: str = "CP1",
    ts: float | None = None,
    direction: str = "in",
    peer: str = "charger",
    version: Version = Version.V16,
    message_type: str = "CALL",
    action: str | None = "Heartbeat",
    unique_id: str | None = "1",
    error_code: str | None = None,
    note: str | None = None,
) -> FrameRecord:
    return FrameRecord(
        ts=time.time() if ts is None else ts,
        charger_id=charger_id,
        direction=direction,
        peer=peer,
        ocpp_version=version.value,
        message_type=message_type,
        action=action,
        unique_id=unique_id,
        frame=frame,
        error_code=error_code,
        note=note,
    )


def heartbeat(i: int, **kw: Any) -> FrameRecord:
    """A 1.6 Heartbeat CALL whose unique id is ``i``."""
    payload = checked(Version.V16, "Heartbeat", {})
    return rec(serialize(Call(str(i), "Heartbeat", payload)), unique_id=str(i), **kw)


# ------------------------------------------------------------------ fixtures


_pg_error: str | None = None
_pg_checked = False


def _postgres_unreachable() -> str | None:
    global _pg_checked, _pg_error
    if not _pg_checked:
        _pg_checked = True
        try:
            import psycopg

            psycopg.connect(PG_URL, connect_timeout=3).close()
        except Exception as exc:  # any reason at all: the test cannot run here
            _pg_error = f"PostgreSQL not reachable at {PG_URL}: {exc}"
    return _pg_error


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A PostgreSQL store URL whose tables live in a schema of this test alone (dropped afterwards)."""
    reason = _postgres_unreachable()
    if reason:
        pytest.skip(reason)
    import psycopg

    schema = f"test_store_{uuid.uuid4().hex[:12]}"
    yield f"{PG_URL}?schema={schema}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store URL: a SQLite file in tmp_path, or a PostgreSQL schema of this test alone."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/store/gateway.db"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/gateway.db"


@pytest.fixture
async def stores() -> AsyncIterator[Callable[..., Store]]:
    """Open stores (not started); every one is closed at the end of the test."""
    opened: list[Store] = []

    def make(url: str, **kw: Any) -> Store:
        store = open_store(url, **kw)
        opened.append(store)
        return store

    yield make
    for store in opened:
        await store.close()


async def started(make: Callable[..., Store], url: str, **kw: Any) -> Store:
    store = make(url, **kw)
    await store.start()
    return store


# ------------------------------------------------------------ message log


async def test_records_come_back_in_order_with_their_payloads_parsed(
    stores: Callable[..., Store], store_url: str
) -> None:
    """Records written over several batches read back oldest first, each with its frame's payload and an ISO ts."""
    store = await started(stores, store_url, batch_max=2, retention_days=None)  # the ts below is a fixed date
    boot = checked(Version.V16, "BootNotification", BOOT16)
    conf = checked(Version.V16, "BootNotification", BOOT16_CONF, response=True)
    boot201 = checked(Version.V201, "BootNotification", BOOT201)
    ts = 1_767_225_600.25  # 2026-01-01T00:00:00.250Z
    written = [
        rec(serialize(Call("b1", "BootNotification", boot)), ts=ts, action="BootNotification", unique_id="b1"),
        rec(
            serialize(Call("b1", "BootNotification", boot201)),
            ts=ts + 0.001,
            direction="out",
            peer="csms",
            version=Version.V201,
            action="BootNotification",
            unique_id="b1",
        ),
        rec(
            serialize(CallError("b1", "FormatViolation", "bad", {"field": "reason"})),
            ts=ts + 0.002,
            peer="csms",
            version=Version.V201,
            message_type="CALLERROR",
            action=None,
            unique_id="b1",
            error_code="FormatViolation",
            note="refused upstream",
        ),
        rec(
            serialize(CallResult("b1", conf)),
            ts=ts + 0.003,
            direction="out",
            message_type="CALLRESULT",
            action="BootNotification",
            unique_id="b1",
        ),
        rec("[2, not json", ts=ts + 0.004, message_type="INVALID", action=None, unique_id=None, note="bad JSON"),
    ]
    for r in written:
        store.record(r)
    await store.flush()

    got = await store.messages("CP1")

    assert [m["payload"] for m in got] == [boot, boot201, {"field": "reason"}, conf, None]
    assert [m["frame"] for m in got] == [r.frame for r in written]
    assert got[0]["ts"] == "2026-01-01T00:00:00.250Z"
    assert [m["id"] for m in got] == sorted(m["id"] for m in got)
    first = got[2]
    assert {k: first[k] for k in first if k not in ("id", "ts", "payload", "frame")} == {
        "charger_id": "CP1",
        "direction": "in",
        "peer": "csms",
        "ocpp_version": "2.0.1",
        "message_type": "CALLERROR",
        "action": None,
        "unique_id": "b1",
        "error_code": "FormatViolation",
        "note": "refused upstream",
    }
    assert store.stats["written"] == 5
    assert store.stats["batches"] >= 3


async def test_messages_are_per_charger(stores: Callable[..., Store], store_url: str) -> None:
    """A charger's log holds only its own frames; None reads every charger's."""
    store = await started(stores, store_url)
    for i in range(6):
        store.record(heartbeat(i, charger_id=f"CP{i % 2}"))
    await store.flush()

    assert [m["unique_id"] for m in await store.messages("CP0")] == ["0", "2", "4"]
    assert [m["unique_id"] for m in await store.messages("CP1")] == ["1", "3", "5"]
    assert [m["unique_id"] for m in await store.messages(None)] == [str(i) for i in range(6)]
    assert await store.messages("CP9") == []


async def test_limit_gives_the_newest_records_newest_last(stores: Callable[..., Store], store_url: str) -> None:
    """Without after_id, limit picks the newest records and returns them in log order."""
    store = await started(stores, store_url)
    for i in range(10):
        store.record(heartbeat(i))
    await store.flush()

    assert [m["unique_id"] for m in await store.messages("CP1", limit=3)] == ["7", "8", "9"]
    assert [m["unique_id"] for m in await store.messages(None, limit=2)] == ["8", "9"]
    assert await store.messages("CP1", limit=0) == []


async def test_after_id_pages_forward_from_the_last_seen_record(stores: Callable[..., Store], store_url: str) -> None:
    """With after_id, the oldest `limit` newer records come back, so a follower never skips one."""
    store = await started(stores, store_url)
    for i in range(10):
        store.record(heartbeat(i))
        store.record(heartbeat(100 + i, charger_id="OTHER"))
    await store.flush()
    everything = await store.messages("CP1", limit=100)

    page1 = await store.messages("CP1", limit=4, after_id=everything[2]["id"])
    page2 = await store.messages("CP1", limit=4, after_id=page1[-1]["id"])
    rest = await store.messages("CP1", limit=4, after_id=page2[-1]["id"])

    assert [m["unique_id"] for m in page1] == ["3", "4", "5", "6"]
    assert [m["unique_id"] for m in page2] == ["7", "8", "9"]
    assert rest == []


async def test_unwritten_records_are_not_visible_until_flushed(stores: Callable[..., Store], sqlite_url: str) -> None:
    """Reads show what is written; flush() makes everything queued so far visible."""
    store = await started(stores, sqlite_url, flush_interval=30.0)
    store.record(heartbeat(1))
    assert await store.messages("CP1") == []
    await store.flush()
    assert len(await store.messages("CP1")) == 1


@pytest.mark.parametrize(
    ("frame", "payload"),
    [
        ('[2,"1","Heartbeat",{}]', {}),
        ('[6,"1","NotifyPeriodicEventStream",{"id":1}]', {"id": 1}),
        ('[3,"1",{"currentTime":"2026-01-01T00:00:00Z"}]', {"currentTime": "2026-01-01T00:00:00Z"}),
        ('[4,"1","NotImplemented","",{"a":1}]', {"a": 1}),
        ('[5,"1","InternalError","",{"b":2}]', {"b": 2}),
        ('[4,"1","NotImplemented",""]', None),  # no details at all
        ('[9,"1",{}]', None),  # not a message type
        ('{"not": "a frame"}', None),
        ("[]", None),
        ("definitely not JSON", None),
    ],
)
def test_frame_payload_is_the_payload_element_of_each_message_type(frame: str, payload: Any) -> None:
    """The payload is element 3 of a CALL/SEND, 2 of a CALLRESULT, the details of an error, else None."""
    assert frame_payload(frame) == payload


def test_timestamps_are_iso_8601_utc_with_milliseconds() -> None:
    """Unix seconds read back as OCPP-style UTC times."""
    assert iso_utc(0.0) == "1970-01-01T00:00:00.000Z"
    assert iso_utc(1_767_225_600.1234) == "2026-01-01T00:00:00.123Z"


async def test_nul_characters_do_not_lose_the_batch(stores: Callable[..., Store], store_url: str) -> None:
    """A frame with a NUL character (PostgreSQL text cannot hold one) is kept along with its batch."""
    store = await started(stores, store_url)
    store.record(heartbeat(1))
    store.record(rec('[2,"2","DataTransfer",{"vendorId":"x\x00y"}]', unique_id="2", action="DataTransfer"))
    store.record(heartbeat(3))
    await store.flush()

    got = await store.messages("CP1")
    assert [m["unique_id"] for m in got] == ["1", "2", "3"]
    assert got[1]["frame"].startswith('[2,"2","DataTransfer",{"vendorId":"x')
    assert store.stats["dropped"] == 0


@pytest.mark.parametrize(
    "frame",
    [
        "x\x00y",  # a raw NUL, which SQLite's JSON functions would cut short
        '[2,"1","DataTransfer",{"data":"x\\u0000y"}]',  # an escaped NUL, as text
        "é€😀\u2028",
        '"\\\n\t',
        "",
        "[2, not json",
    ],
)
async def test_sqlite_keeps_every_frame_exactly_as_received(
    stores: Callable[..., Store], sqlite_url: str, frame: str
) -> None:
    """The SQLite log reads back any frame text character for character, among ordinary records of its batch."""
    store = await started(stores, sqlite_url)
    store.record(heartbeat(1))
    store.record(rec(frame, unique_id="2", action=None, note="odd"))
    store.record(heartbeat(3))
    await store.flush()

    got = await store.messages("CP1")
    assert [m["frame"] for m in got] == [heartbeat(1).frame, frame, heartbeat(3).frame]
    assert [m["unique_id"] for m in got] == ["1", "2", "3"]
    assert (got[1]["action"], got[1]["note"], got[1]["error_code"]) == (None, "odd", None)


async def test_sqlite_writes_a_batch_in_chunks_every_record_in_order(
    stores: Callable[..., Store], sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch longer than one statement's chunk, with a frame near SQLite's value limit, is written in order."""
    connect = sqlite_store.SQLiteStore._connect_writer

    def small_values(self: sqlite_store.SQLiteStore) -> sqlite3.Connection:
        conn = connect(self)
        conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 20_000)  # SQLite refuses any longer value
        return conn

    monkeypatch.setattr(sqlite_store.SQLiteStore, "_connect_writer", small_values)
    monkeypatch.setattr(sqlite_store, "_MAX_CHUNK", 64)
    store = await started(stores, sqlite_url, batch_max=200)
    written = [heartbeat(i) for i in range(1, 151)] + [rec("x" * 15_000, unique_id="151", action=None)]
    for r in written:
        store.record(r)
    await store.flush()

    got = await store.messages("CP1", limit=200)
    assert [m["frame"] for m in got] == [r.frame for r in written]
    assert (store.stats["batches"], store.stats["dropped"]) == (1, 0)


# ------------------------------------------------------------------- state


async def test_state_round_trips_and_the_latest_save_wins(stores: Callable[..., Store], store_url: str) -> None:
    """The last state saved for a charger is what loads, before and after it is written, and after a restart."""
    store = await started(stores, store_url, flush_interval=30.0)
    store.save_state("CP1", {"tx": {"1": 100}, "seq": 1})
    store.save_state("CP2", {"seq": 7})
    store.save_state("CP1", {"tx": {"1": 100, "2": 200}, "seq": 2})

    assert await store.load_state("CP1") == {"tx": {"1": 100, "2": 200}, "seq": 2}  # not written yet
    await store.flush()
    assert await store.load_state("CP1") == {"tx": {"1": 100, "2": 200}, "seq": 2}
    store.save_state("CP1", {"seq": 3})
    await store.close()

    again = await started(stores, store_url)
    assert await again.load_state("CP1") == {"seq": 3}
    assert await again.load_state("CP2") == {"seq": 7}
    assert await again.load_state("never-seen") is None
    assert again.stats["states_pending"] == 0


async def test_saved_state_is_a_snapshot(stores: Callable[..., Store], sqlite_url: str) -> None:
    """Changing the dict after save_state does not change what was saved."""
    store = await started(stores, sqlite_url)
    state: dict[str, Any] = {"seq": 1}
    store.save_state("CP1", state)
    state["seq"] = 99
    assert await store.load_state("CP1") == {"seq": 1}
    await store.flush()
    assert await store.load_state("CP1") == {"seq": 1}


async def test_state_that_is_not_json_is_refused_at_the_caller(stores: Callable[..., Store], sqlite_url: str) -> None:
    """A state JSON cannot hold raises TypeError in save_state, not later in the writer."""
    store = await started(stores, sqlite_url)
    with pytest.raises(TypeError):
        store.save_state("CP1", {"when": object()})
    with pytest.raises(TypeError):
        store.save_state("CP1", {1: "int keys would come back as strings"})  # type: ignore[dict-item]


# ------------------------------------------------------------ close, errors


async def test_close_writes_everything_still_queued(stores: Callable[..., Store], store_url: str) -> None:
    """close() flushes queued records and states, so a clean shutdown loses nothing."""
    store = await started(stores, store_url, flush_interval=30.0, batch_max=10_000)
    for i in range(1234):
        store.record(heartbeat(i))
    store.save_state("CP1", {"seq": 42})
    await store.close()
    await store.close()  # idempotent

    again = await started(stores, store_url)
    got = await again.messages("CP1", limit=10_000)
    assert [m["unique_id"] for m in got] == [str(i) for i in range(1234)]
    assert await again.load_state("CP1") == {"seq": 42}
    assert store.stats["written"] == 1234


async def test_records_after_close_are_counted_as_dropped(stores: Callable[..., Store], sqlite_url: str) -> None:
    """A frame logged after close() is not silently lost: it is counted."""
    store = await started(stores, sqlite_url)
    await store.close()
    store.record(heartbeat(1))
    store.save_state("CP1", {"seq": 1})
    assert store.stats["dropped"] == 1
    assert store.stats["states_lost"] == 1


async def test_closing_a_store_that_never_started_counts_what_it_held(
    stores: Callable[..., Store], sqlite_url: str
) -> None:
    """Records and states queued on a store that was never started are reported lost, not silently gone."""
    store = stores(sqlite_url)
    store.record(heartbeat(1))
    store.save_state("CP1", {"seq": 1})
    await store.close()
    assert (store.stats["dropped"], store.stats["states_lost"]) == (1, 1)


async def test_a_failed_write_is_retried(
    stores: Callable[..., Store], sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A transient database error fails that flush and the batch is written on the next attempt."""
    store = await started(stores, sqlite_url, flush_interval=30.0)
    insert = store._insert_messages
    failures = [sqlite3.OperationalError("database is locked")]

    def flaky(conn: Any, rows: list[Any]) -> None:
        if failures:
            raise failures.pop()
        insert(conn, rows)

    monkeypatch.setattr(store, "_insert_messages", flaky)
    store.record(heartbeat(1))
    with pytest.raises(StoreError):
        await store.flush()
    await store.flush()

    assert [m["unique_id"] for m in await store.messages("CP1")] == ["1"]
    assert store.stats["write_errors"] == 1
    assert store.stats["dropped"] == 0


async def test_a_batch_the_database_keeps_rejecting_is_dropped_and_counted(
    stores: Callable[..., Store], sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A non-transient error does not block the log forever: after a few attempts that batch is dropped."""
    store = await started(stores, sqlite_url, flush_interval=30.0)
    insert = store._insert_messages

    def picky(conn: Any, rows: list[Any]) -> None:
        if any(r[7] == "poison" for r in rows):
            raise sqlite3.IntegrityError("constraint failed")
        insert(conn, rows)

    monkeypatch.setattr(store, "_insert_messages", picky)
    store.record(heartbeat(1))
    store.record(rec('[2,"p","Heartbeat",{}]', unique_id="poison"))
    for _ in range(3):
        with pytest.raises(StoreError):
            await store.flush()
    store.record(heartbeat(2))
    await store.flush()

    assert [m["unique_id"] for m in await store.messages("CP1")] == ["2"]
    assert store.stats["dropped"] == 2


async def test_close_gives_up_on_a_dead_database_and_counts_the_loss(
    stores: Callable[..., Store], sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """close() does not hang when the database stays down; what it could not write is counted."""
    store = await started(stores, sqlite_url, flush_interval=30.0)

    def down(conn: Any, rows: list[Any]) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(store, "_insert_messages", down)
    monkeypatch.setattr(store, "_upsert_states", down)
    for i in range(5):
        store.record(heartbeat(i))
    store.save_state("CP1", {"seq": 1})

    await asyncio.wait_for(store.close(), timeout=10)

    assert store.stats["dropped"] == 5
    assert store.stats["states_lost"] == 1


async def test_start_fails_clearly_when_the_store_cannot_be_opened(
    stores: Callable[..., Store], tmp_path: Path
) -> None:
    """An unusable store URL makes start() raise StoreError naming the store."""
    (tmp_path / "a-file").write_text("not a directory")
    with pytest.raises(StoreError, match="a-file"):
        await stores(f"sqlite:///{tmp_path}/a-file/gateway.db").start()
    with pytest.raises(StoreError, match=re.escape("127.0.0.1:1")):
        await stores("postgresql://postgres@127.0.0.1:1/test?connect_timeout=2").start()


async def test_the_log_cli_reports_a_missing_database(tmp_path: Path) -> None:
    """Reading a SQLite store that does not exist says so (and creates nothing)."""
    out, err = io.StringIO(), io.StringIO()
    code = await logs_command(f"sqlite:///{tmp_path}/nothing.db", "CP1", 10, False, False, out, err=err)
    assert code == 1
    assert "no message log at" in err.getvalue()
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ retention


async def test_retention_prunes_old_records_and_keeps_new_ones(stores: Callable[..., Store], store_url: str) -> None:
    """prune(now) deletes records older than retention_days and nothing newer."""
    store = await started(stores, store_url, retention_days=30.0)
    await store.flush()  # let the writer's own prune at start go by, so this test's prune() is the one that counts
    now = time.time()
    for i, age_days in enumerate([45, 31, 29, 1, 0]):
        store.record(heartbeat(i, ts=now - age_days * DAY))
    await store.flush()

    assert await store.prune(now) == 2
    assert [m["unique_id"] for m in await store.messages("CP1")] == ["2", "3", "4"]
    assert store.stats["pruned"] == 2


async def test_the_writer_prunes_on_its_own(stores: Callable[..., Store], sqlite_url: str) -> None:
    """Old records kept by one run are pruned by the writer of the next run that has a retention."""
    now = time.time()
    keep_all = await started(stores, sqlite_url, retention_days=None)
    store_old, store_new = heartbeat(1, ts=now - 10 * DAY), heartbeat(2, ts=now)
    keep_all.record(store_old)
    keep_all.record(store_new)
    await keep_all.flush()
    assert await keep_all.prune(now) == 0  # None: keep forever
    await keep_all.close()

    pruning = await started(stores, sqlite_url, retention_days=7.0, prune_interval=0.05)
    await pruning.flush()
    assert [m["unique_id"] for m in await pruning.messages("CP1")] == ["2"]
    pruning.record(heartbeat(3, ts=time.time() - 8 * DAY))
    await pruning.flush()
    await asyncio.sleep(0.3)  # a few prune intervals
    await pruning.flush()
    assert [m["unique_id"] for m in await pruning.messages("CP1")] == ["2"]


# ------------------------------------------------------------- never block


async def test_record_never_blocks_the_loop_even_with_a_slow_writer(
    stores: Callable[..., Store], sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """50k record() calls return at once and the loop keeps ticking while a slow database catches up."""
    store = await started(stores, sqlite_url, batch_max=500)
    insert = store._insert_messages

    def slow(conn: Any, rows: list[Any]) -> None:
        time.sleep(0.01)  # a database taking 10 ms per batch: 100 batches take >= 1 s
        insert(conn, rows)

    monkeypatch.setattr(store, "_insert_messages", slow)
    frames = [heartbeat(i) for i in range(50_000)]

    started_at = time.perf_counter()
    for f in frames:
        store.record(f)
    record_time = time.perf_counter() - started_at

    gaps: list[float] = []

    async def ticker() -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    tick = asyncio.create_task(ticker())
    flush_started = time.perf_counter()
    await store.flush()
    flush_time = time.perf_counter() - flush_started
    tick.cancel()

    assert record_time < 0.5, f"record() took {record_time:.3f}s for 50k frames"
    assert flush_time >= 0.5  # the writer really was slow while the loop ticked
    # A loop that waited for the writer would stall for the whole flush (>= 1 s); scheduling on a busy box, ~0.1 s.
    assert max(gaps) < 0.3, f"the loop stalled for {max(gaps):.3f}s"
    assert store.stats["written"] == 50_000


async def test_a_full_queue_drops_the_oldest_records_but_never_a_state(
    stores: Callable[..., Store], sqlite_url: str
) -> None:
    """Past max_queue the oldest unwritten records go (counted); every state save survives."""
    store = stores(sqlite_url, batch_max=100, max_queue=1000)  # not started: nothing drains the queue
    for i in range(1500):
        store.record(heartbeat(i))
        store.save_state(f"CP{i}", {"seq": i})
    assert store.stats["dropped"] == 500
    assert store.stats["queue_depth"] == 1000

    await store.start()
    await store.flush()

    got = await store.messages("CP1", limit=5000)
    assert [m["unique_id"] for m in got] == [str(i) for i in range(500, 1500)]
    assert [await store.load_state(f"CP{i}") for i in (0, 777, 1499)] == [{"seq": 0}, {"seq": 777}, {"seq": 1499}]
    assert store.stats["states_written"] == 1500


# ------------------------------------------------------------------- URLs


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///gateway.db", "gateway.db"),
        ("sqlite:///var/lib/gw/gateway.db", "var/lib/gw/gateway.db"),
        ("sqlite:////var/lib/gw/gateway.db", "/var/lib/gw/gateway.db"),
        ("sqlite://:memory:", MEMORY),
        ("sqlite:///:memory:", MEMORY),
    ],
)
def test_sqlite_urls_name_paths_the_sqlalchemy_way(url: str, path: str) -> None:
    """Three slashes then a relative path, four for an absolute one."""
    assert sqlite_path(url) == path


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///", "sqlite://gateway.db", "mysql://x/y", "gateway.db"])
def test_unusable_store_urls_are_refused(url: str) -> None:
    """A URL the store cannot use is a ValueError that shows the accepted forms."""
    with pytest.raises(ValueError, match="sqlite:///"):
        open_store(url)


async def test_a_relative_sqlite_path_is_created_under_the_working_directory(
    stores: Callable[..., Store], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Missing parent directories are created; the database is in WAL mode."""
    monkeypatch.chdir(tmp_path)
    store = await started(stores, "sqlite:///logs/deep/gateway.db")
    store.record(heartbeat(1))
    await store.flush()

    db = tmp_path / "logs" / "deep" / "gateway.db"
    assert db.exists()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


async def test_an_in_memory_store_works_with_the_writer_thread(stores: Callable[..., Store]) -> None:
    """sqlite://:memory: serves writes and reads through one shared connection."""
    store = await started(stores, "sqlite://:memory:", batch_max=3)
    for i in range(10):
        store.record(heartbeat(i))
    store.save_state("CP1", {"seq": 1})
    await store.flush()
    assert [m["unique_id"] for m in await store.messages("CP1", limit=2)] == ["8", "9"]
    assert await store.load_state("CP1") == {"seq": 1}


async def test_postgres_tables_live_in_the_schema_named_in_the_url(stores: Callable[..., Store], pg_url: str) -> None:
    """?schema=NAME keeps the store's tables out of the database's public schema."""
    import psycopg

    await started(stores, pg_url)
    schema = pg_url.rsplit("schema=", 1)[1]
    with psycopg.connect(PG_URL) as conn:
        tables = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s"
            " AND table_name NOT IN (SELECT relname FROM pg_class WHERE relispartition) ORDER BY 1",
            (schema,),
        ).fetchall()
    assert [t[0] for t in tables] == ["charger_state", "message_log", "offline_queue", "store_meta"]


# ----------------------------------------------------------------- logs CLI


async def _logged(stores: Callable[..., Store], url: str) -> list[dict[str, Any]]:
    store = await started(stores, url)
    boot = checked(Version.V16, "BootNotification", BOOT16)
    status = checked(Version.V16, "StatusNotification", STATUS16)
    store.record(rec(serialize(Call("42", "BootNotification", boot)), action="BootNotification", unique_id="42"))
    store.record(
        rec(
            serialize(CallError("43", "NotImplemented", "unknown action", {})),
            direction="out",
            message_type=MessageType.CALLERROR.name,
            action=None,
            unique_id="43",
            error_code="NotImplemented",
            note="no translation",
        )
    )
    store.record(rec(serialize(Call("44", "StatusNotification", status)), action="StatusNotification", unique_id="44"))
    store.record(heartbeat(45, charger_id="CP2"))
    await store.close()
    reader = stores(url)
    return await reader.messages("CP1")


async def test_logs_prints_a_readable_table(stores: Callable[..., Store], store_url: str) -> None:
    """The table shows time, flow arrow and peer, version, type, action, unique id, error code and payload."""
    await _logged(stores, store_url)
    out = io.StringIO()

    assert await logs_command(store_url, "CP1", 2, False, False, out) == 0

    header, *lines = out.getvalue().splitlines()
    assert header.split() == ["TS", "FLOW", "VER", "TYPE", "ACTION", "UNIQUE", "ID", "ERROR", "PAYLOAD"]
    assert len(lines) == 2
    error, status = lines
    assert error.split()[1:8] == ["gw", "->", "charger", "1.6", "CALLERROR", "43", "NotImplemented"]
    assert error.endswith('"unknown action" {}  # no translation')
    assert status.split()[1:8] == ["charger", "->", "gw", "1.6", "CALL", "StatusNotification", "44"]
    assert status.endswith(orjson.dumps(STATUS16).decode())
    assert lines[0].index("CALLERROR") == header.index("TYPE")  # columns line up under their headings


async def test_logs_without_a_charger_shows_every_charger(stores: Callable[..., Store], sqlite_url: str) -> None:
    """No charger id: all chargers' records, with a charger column."""
    await _logged(stores, sqlite_url)
    out = io.StringIO()
    assert await logs_command(sqlite_url, None, 10, False, False, out) == 0
    header, *lines = out.getvalue().splitlines()
    assert header.split()[:2] == ["TS", "CHARGER"]
    assert [line.split()[1] for line in lines] == ["CP1", "CP1", "CP1", "CP2"]


async def test_logs_jsonl_prints_one_record_per_line(stores: Callable[..., Store], store_url: str) -> None:
    """--jsonl prints exactly the records the API returns, one JSON object per line."""
    expected = await _logged(stores, store_url)
    out = io.StringIO()

    assert await logs_command(store_url, "CP1", 100, True, False, out) == 0

    assert [orjson.loads(line) for line in out.getvalue().splitlines()] == expected


async def test_logs_says_when_a_charger_has_no_messages(stores: Callable[..., Store], sqlite_url: str) -> None:
    """An empty log exits 1 with the reason on stderr, in table and JSON lines mode alike (stdout stays empty)."""
    await _logged(stores, sqlite_url)
    for jsonl in (False, True):
        out, err = io.StringIO(), io.StringIO()
        assert await logs_command(sqlite_url, "NOPE", 10, jsonl, False, out, err=err) == 1
        assert out.getvalue() == ""
        assert "no messages for NOPE" in err.getvalue()


async def test_logs_follow_prints_records_written_later(stores: Callable[..., Store], store_url: str) -> None:
    """--follow prints the newest records, then each record as it is written, until cancelled."""
    await _logged(stores, store_url)
    out = io.StringIO()
    follow = asyncio.create_task(logs_command(store_url, "CP1", 1, True, True, out, poll_interval=0.05))
    await _until(lambda: len(out.getvalue().splitlines()) == 1)

    writer = await started(stores, store_url, flush_interval=0.01)
    writer.record(heartbeat(46, charger_id="CP2"))  # someone else's: not followed
    writer.record(heartbeat(47))
    await writer.flush()
    await _until(lambda: len(out.getvalue().splitlines()) == 2)
    follow.cancel()
    with pytest.raises(asyncio.CancelledError):
        await follow

    lines = [orjson.loads(line) for line in out.getvalue().splitlines()]
    assert [m["unique_id"] for m in lines] == ["44", "47"]


async def test_logs_follow_ends_cleanly_on_keyboard_interrupt(
    stores: Callable[..., Store], sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C while following is a normal end: exit code 0."""
    await _logged(stores, sqlite_url)
    calls = 0
    real_sleep = asyncio.sleep

    async def interrupted_sleep(delay: float) -> None:
        nonlocal calls
        calls += 1
        if calls > 2:
            raise KeyboardInterrupt
        await real_sleep(0)

    monkeypatch.setattr("gateway.store.cli.asyncio.sleep", interrupted_sleep)
    out = io.StringIO()
    assert await logs_command(sqlite_url, "CP1", 1, False, True, out) == 0
    assert "StatusNotification" in out.getvalue()


async def _until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_the_writer_is_a_daemon_thread_named_for_the_store(stores: Callable[..., Store]) -> None:
    """A forgotten close() cannot keep the process alive; the thread is recognisable in dumps."""
    await started(stores, "sqlite://:memory:")
    assert "gateway-store-writer" in [t.name for t in threading.enumerate() if t.daemon]


# ------------------------------------------------------------ relayed pairs: one row, two messages


def relayed(i: int, *, charger_id: str = "CP1", ts: float = 1_767_225_600.0, to: str = "csms",
            **kw: Any) -> tuple[FrameRecord, FrameRecord]:
    """A Heartbeat received from the charger and sent on unchanged: the "in" and "out" records of one frame."""
    frame = serialize(Call(str(i), "Heartbeat", {}))
    source = "charger" if to == "csms" else "csms"
    return (rec(frame, charger_id=charger_id, ts=ts, peer=source, unique_id=str(i), **kw),
            rec(frame, charger_id=charger_id, ts=ts, direction="out", peer=to, unique_id=str(i), **kw))


def flows(messages: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [(m["unique_id"], m["direction"], m["peer"]) for m in messages]


def sql_rows(url: str, *statements: str) -> list[tuple[Any, ...]]:
    """Run statements on the store's own tables (a PostgreSQL URL's schema on the search path): the last's rows."""
    if url.startswith("sqlite:"):
        with sqlite3.connect(sqlite_path(url)) as db:
            return [db.execute(s) for s in statements][-1].fetchall()
    import psycopg

    schema = url.rsplit("schema=", 1)[1]
    with psycopg.connect(PG_URL, autocommit=True, options=f"-c search_path={schema}") as conn:
        cur = [conn.execute(s) for s in statements][-1]  # type: ignore[call-overload]
        return cur.fetchall() if cur.description else []


async def test_a_relayed_frame_is_one_row_read_back_as_both_messages(
    stores: Callable[..., Store], store_url: str
) -> None:
    """A frame sent on exactly as received is stored once and read as its "in" and "out" message, ids in a row."""
    store = await started(stores, store_url, retention_days=None)
    for r in (*relayed(1), heartbeat(2, ts=1_767_225_601.0), *relayed(3, to="charger")):
        store.record(r)
    await store.flush()

    got = await store.messages("CP1")

    assert flows(got) == [("1", "in", "charger"), ("1", "out", "csms"), ("2", "in", "charger"),
                          ("3", "in", "csms"), ("3", "out", "charger")]
    assert got[1]["id"] == got[0]["id"] + 1 and got[4]["id"] == got[3]["id"] + 1
    assert [m["id"] for m in got] == sorted({m["id"] for m in got})
    keep = ("ts", "charger_id", "ocpp_version", "message_type", "action", "unique_id", "payload", "frame",
            "error_code", "note")
    assert {k: got[0][k] for k in keep} == {k: got[1][k] for k in keep}
    assert got[1]["payload"] == {} and got[1]["ts"] == "2026-01-01T00:00:00.000Z"
    assert (store.stats["written"], store.stats["rows_written"]) == (5, 3)
    assert sql_rows(store_url, "SELECT count(*), count(relayed_to) FROM message_log") == [(3, 2)]


async def test_a_translated_frame_is_one_row_with_its_source_read_back_exactly(
    stores: Callable[..., Store], store_url: str
) -> None:
    """A frame sent right after the one it translates shares its row; both read back field for field."""
    store = await started(stores, store_url, retention_days=None)
    ts = 1_767_225_600.0
    start = serialize(Call("7", "StartTransaction", {"connectorId": 1, "idTag": "T", "meterStart": 0,
                                                      "timestamp": "2026-01-01T00:00:00Z"}))
    event = serialize(Call("gw-1", "TransactionEvent", {"eventType": "Started"}))
    same_text = serialize(Call("8", "Heartbeat", {}))
    written = [
        rec(start, ts=ts, action="StartTransaction", unique_id="7"),  # the charger's 1.6 CALL ...
        rec(event, ts=ts, direction="out", peer="csms", version=Version.V201, action="TransactionEvent",
            unique_id="gw-1"),  # ... as the 2.0.1 CSMS got it: new action, id, version and text
        rec(serialize(CallResult("gw-1", {})), ts=ts, peer="csms", version=Version.V201, message_type="CALLRESULT",
            action="TransactionEvent", unique_id="gw-1"),
        rec(serialize(CallResult("7", {"transactionId": 1, "idTagInfo": {"status": "Accepted"}})), ts=ts,
            direction="out", message_type="CALLRESULT", action="StartTransaction", unique_id="7"),
        rec(same_text, ts=ts, peer="charger", unique_id="8"),
        rec(same_text, ts=ts, direction="out", peer="csms", version=Version.V201, unique_id="8"),  # version only
    ]
    for r in written:
        store.record(r)
    await store.flush()

    got = await store.messages("CP1")

    assert [(m["direction"], m["peer"], m["ocpp_version"], m["message_type"], m["action"], m["unique_id"], m["frame"])
            for m in got] == [(r.direction, r.peer, r.ocpp_version, r.message_type, r.action, r.unique_id, r.frame)
                              for r in written]
    assert [m["id"] for m in got] == list(range(got[0]["id"], got[0]["id"] + 6))
    assert sql_rows(store_url, "SELECT count(*), count(relayed_frame), count(relayed_version) FROM message_log") \
        == [(3, 2, 3)]
    assert (store.stats["written"], store.stats["rows_written"]) == (6, 3)
    assert flows(await store.charger_frames("CP1")) == [("7", "in", "charger"), ("7", "out", "charger"),
                                                        ("8", "in", "charger")]


async def test_only_a_frame_sent_right_after_its_in_record_is_paired(
    stores: Callable[..., Store], store_url: str
) -> None:
    """Another time, charger, message type, error code or note, an "out" after an "out", or no action or id
    where the "in" record has one: separate rows, and every record reads back as it was."""
    store = await started(stores, store_url, retention_days=None)
    first, out = relayed(1)
    written = [
        first, out._replace(ts=out.ts + 0.001),
        first, out._replace(charger_id="CP2"),
        first, out._replace(message_type="SEND"),
        first, out._replace(error_code="GenericError"),
        first, out._replace(note="why"),
        first, out._replace(action=None),
        first, out._replace(unique_id=None),
        first, out._replace(frame=out.frame.replace("[", "[ ", 1), ocpp_version="2.0.1"),  # paired (translated)
        out,  # the "in" record already stands for one "out"
        first, out,  # paired (relayed)
    ]
    for r in written:
        store.record(r)
    await store.flush()

    assert sql_rows(store_url, "SELECT count(*), count(relayed_to) FROM message_log") == [(17, 2)]
    got = await store.messages(None, limit=100)
    assert [(m["ts"], m["charger_id"], m["direction"], m["peer"], m["ocpp_version"], m["message_type"], m["action"],
             m["unique_id"], m["frame"], m["error_code"], m["note"]) for m in got] == [
        (iso_utc(r.ts), *r[1:11]) for r in written]
    assert [m["id"] for m in got] == sorted({m["id"] for m in got})


async def test_after_id_and_limit_page_through_pairs_one_message_at_a_time(
    stores: Callable[..., Store], store_url: str
) -> None:
    """A page may end between a pair's halves; the next page starts with the other half, nothing twice."""
    store = await started(stores, store_url, retention_days=None)
    for i in range(5):
        for r in relayed(i):
            store.record(r)
        store.record(heartbeat(100 + i, charger_id="OTHER"))
    await store.flush()
    everything = await store.messages("CP1", limit=100)
    assert len(everything) == 10

    for size in (1, 2, 3, 4):
        pages: list[dict[str, Any]] = []
        after = 0
        while page := await store.messages("CP1", limit=size, after_id=after):
            assert len(page) <= size
            pages += page
            after = page[-1]["id"]
        assert pages == everything, size
    newest = await store.messages("CP1", limit=3)
    assert flows(newest) == [("3", "out", "csms"), ("4", "in", "charger"), ("4", "out", "csms")]
    assert flows(await store.messages("CP1", limit=1)) == [("4", "out", "csms")]
    whole = await store.messages(None, limit=100)
    assert [m["unique_id"] for m in whole] == [u for i in range(5) for u in (str(i), str(i), str(100 + i))]
    assert await store.messages(None, limit=100, after_id=whole[-1]["id"]) == []


async def test_a_pair_queued_at_close_is_written_as_both_frames(stores: Callable[..., Store], store_url: str) -> None:
    """close() writes queued pairs like any record, and a full queue counts a dropped pair as two frames."""
    store = await started(stores, store_url, flush_interval=30.0, batch_max=10_000, retention_days=None)
    for i in range(300):
        for r in relayed(i):
            store.record(r)
    await store.close()
    again = await started(stores, store_url)
    assert len(await again.messages("CP1", limit=10_000)) == 600
    assert (store.stats["written"], store.stats["rows_written"], store.stats["dropped"]) == (600, 300, 0)

    full = stores(store_url, batch_max=2, max_queue=2)  # not started: nothing drains it
    for i in range(3):
        for r in relayed(i):
            full.record(r)
    assert (full.stats["queue_depth"], full.stats["dropped"]) == (2, 2)


async def test_charger_frames_and_logged_chargers_see_the_charger_half_of_a_pair(
    stores: Callable[..., Store], store_url: str
) -> None:
    """Replay reads the charger's side of each pair: its CALL as received, the answer as relayed to it."""
    store = await started(stores, store_url, retention_days=None)
    for i in range(4):
        for r in relayed(i, ts=1000.0 + i):
            store.record(r)
        for r in relayed(i, ts=1000.0 + i, to="charger"):
            store.record(r._replace(message_type="CALLRESULT", frame=serialize(CallResult(str(i), {}))))
    for r in relayed(9, charger_id="ONLY-RELAYED-TO", ts=1000.0, to="charger"):
        store.record(r)
    await store.flush()

    frames = await store.charger_frames("CP1")
    assert [(f["unique_id"], f["direction"], f["peer"], f["message_type"]) for f in frames] == [
        (str(i), d, "charger", t) for i in range(4) for d, t in (("in", "CALL"), ("out", "CALLRESULT"))]
    paged: list[dict[str, Any]] = []
    after = 0
    while page := await store.charger_frames("CP1", after_id=after, limit=3):
        paged += page
        after = page[-1]["id"]
    assert paged == frames
    assert [f["ts"] for f in await store.charger_frames("CP1", since=1001, until=1002)] == [1001.0, 1001.0]
    assert await store.logged_chargers() == ["CP1", "ONLY-RELAYED-TO"]
    assert list(await store.latest_calls("Heartbeat")) == ["CP1"]  # a CALL relayed to a charger is not its own


async def test_a_log_from_schema_1_keeps_its_ids_and_pairs_from_then_on(
    stores: Callable[..., Store], store_url: str
) -> None:
    """Upgrading an old log adds the column; old rows keep their ids and new ones page on after them."""
    old = await started(stores, store_url, retention_days=None)
    for i in range(3):
        old.record(heartbeat(i))
    await old.close()
    # Put the store back the way a gateway of schema 1 left it: no relayed columns, no boundary, version 1.
    sql_rows(store_url, *(f"ALTER TABLE message_log DROP COLUMN {c}" for c in RELAYED_COLUMNS),
             "DELETE FROM store_meta WHERE key = 'message_log_paired_from'",
             "UPDATE store_meta SET value = '1' WHERE key = 'schema_version'")
    before = await stores(store_url).messages("CP1")  # a reader (`ocpp-gateway logs`) before the upgrade
    assert [(m["unique_id"], m["id"]) for m in before] == [("0", 1), ("1", 2), ("2", 3)]

    upgraded = await started(stores, store_url, retention_days=None)
    for r in relayed(3):
        upgraded.record(r)
    upgraded.record(heartbeat(4))
    await upgraded.flush()

    got = await upgraded.messages("CP1")
    assert flows(got) == [("0", "in", "charger"), ("1", "in", "charger"), ("2", "in", "charger"),
                          ("3", "in", "charger"), ("3", "out", "csms"), ("4", "in", "charger")]
    assert [m["id"] for m in got][:4] == [1, 2, 3, 4] and got[4]["id"] == 5 and got[5]["id"] > 5
    assert await upgraded.messages("CP1", after_id=before[-1]["id"]) == got[3:]
    assert await upgraded.messages("CP1", after_id=2, limit=2) == got[2:4]
    assert sql_rows(store_url, "SELECT value FROM store_meta WHERE key = 'schema_version'") == [("3",)]
    assert await stores(store_url).messages("CP1") == got  # a new reader agrees


async def test_a_log_from_schema_2_reads_its_pairs_before_and_after_the_upgrade(
    stores: Callable[..., Store], store_url: str
) -> None:
    """A reader of a schema-2 log sees its relayed pairs; upgraded, old pairs read the same and translations pair."""
    old = await started(stores, store_url, retention_days=None)
    for r in relayed(1):
        old.record(r)
    await old.close()
    # The way a gateway of schema 2 left it: relayed_to and the boundary, not the other relayed columns.
    sql_rows(store_url, *(f"ALTER TABLE message_log DROP COLUMN {c}" for c in RELAYED_COLUMNS[1:]),
             "UPDATE store_meta SET value = '2' WHERE key = 'schema_version'")
    before = await stores(store_url).messages("CP1")  # a reader before the upgrade
    assert flows(before) == [("1", "in", "charger"), ("1", "out", "csms")]

    upgraded = await started(stores, store_url, retention_days=None)
    first, out = relayed(2)
    upgraded.record(first)
    upgraded.record(out._replace(ocpp_version="2.0.1", unique_id="gw-2"))
    await upgraded.flush()

    got = await upgraded.messages("CP1")
    assert got[:2] == before
    assert [(m["unique_id"], m["ocpp_version"]) for m in got[2:]] == [("2", "1.6"), ("gw-2", "2.0.1")]
    assert sql_rows(store_url, "SELECT count(*), count(relayed_unique_id) FROM message_log") == [(2, 1)]


async def test_pairing_while_the_writer_drains_the_queue_loses_and_repeats_nothing(
    stores: Callable[..., Store], sqlite_url: str
) -> None:
    """The writer taking the "in" record just before its "out" arrives leaves two rows, never a lost frame."""
    store = await started(stores, sqlite_url, batch_max=1, flush_interval=0.0005, retention_days=None)
    expected = []
    for i in range(3000):
        pair = relayed(i, ts=1000.0 + i)
        expected += [(str(i), "in", "charger"), (str(i), "out", "csms")]
        store.record(pair[0])
        if i % 7 == 0:
            time.sleep(0.002)  # the writer (awake every 0.5 ms) takes the "in" record meanwhile
        elif i % 7 == 1:
            await store.flush()  # certainly written before its "out" comes
        store.record(pair[1])
    await store.flush()

    got = await store.messages("CP1", limit=10_000)
    assert flows(got) == expected
    assert [m["id"] for m in got] == sorted({m["id"] for m in got})
    stats = store.stats
    assert stats["written"] == 6000 and 3000 + 3000 // 7 < stats["rows_written"] < 6000
