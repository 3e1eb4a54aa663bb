"""A message-log writer that falls behind slows the chargers down; it never costs a logged frame."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

from gateway.app import Gateway
from gateway.config import parse_config
from gateway.records import FrameRecord
from gateway.sim import DemoCsms
from gateway.store.sqlite import SQLiteStore
from tests.conftest import gateway_config
from tests.rawpeers import RawCharger

CHARGERS = 5
HEARTBEATS = 30
BOOT16 = {"chargePointVendor": "ACME", "chargePointModel": "One"}


class SlowStore(SQLiteStore):
    """A real SQLite store whose writer takes 50 ms per batch of 20: far slower than the traffic."""

    def __init__(self, path: str) -> None:
        super().__init__(path, batch_max=20, flush_interval=0.05, retention_days=None)
        self.high_water, self.low_water = 40, 10
        self.deepest = 0

    def record(self, rec: FrameRecord) -> None:
        super().record(rec)
        self.deepest = max(self.deepest, len(self._records))

    def _insert_messages(self, conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
        time.sleep(0.05)
        super()._insert_messages(conn, rows)


async def run_charger(url: str, cid: str) -> int:
    charger = await RawCharger.connect(f"{url}/{cid}", ["ocpp1.6"])
    answered = 0
    try:
        assert (await charger.call("b", "BootNotification", BOOT16, timeout=30))[0] == 3
        for i in range(HEARTBEATS):
            answer = await charger.call(f"h{i}", "Heartbeat", {}, timeout=30)
            answered += answer[0] == 3 and answer[1] == f"h{i}"
    finally:
        await charger.close()
    return answered


async def test_a_slow_message_log_pauses_charger_reads_and_loses_nothing(tmp_path: Path) -> None:
    """The store's queue stays near its high-water mark, every CALL is answered and every frame is written."""
    csms = await DemoCsms().start()
    store = SlowStore(str(tmp_path / "gateway.db"))
    gw = Gateway(parse_config(gateway_config(tmp_path, {"demo": {"url": csms.url, "ocpp": "1.6"}})), store=store)
    try:
        await gw.start()
        url = f"ws://127.0.0.1:{gw.listen_port}/ocpp"
        answered = await asyncio.gather(*(run_charger(url, f"BP-{i}") for i in range(CHARGERS)))
        assert answered == [HEARTBEATS] * CHARGERS
        await store.flush()
        stats = store.stats
        exposition = gw.metrics.exposition().decode()
    finally:
        await gw.stop()
        await csms.stop()

    assert stats["dropped"] == 0
    calls = CHARGERS * (HEARTBEATS + 1)
    with sqlite3.connect(tmp_path / "gateway.db") as db:
        # a row with relayed_to is a pass-through pair: the frame as received and as sent on
        logged = db.execute("SELECT count(*) + count(relayed_to) FROM message_log"
                            " WHERE message_type IN ('CALL', 'CALLRESULT')").fetchone()
    assert logged[0] == 4 * calls  # charger in, CSMS out, CSMS in, charger out
    # Without back-pressure the queue would hold most of the ~600 frames; with it, the high-water mark
    # plus what was already read or in flight when reading stopped.
    assert store.deepest <= store.high_water + 4 * CHARGERS
    assert "ocpp_gateway_store_backpressure_episodes_total" in exposition
    episodes = [line for line in exposition.splitlines()
                if line.startswith("ocpp_gateway_store_backpressure_episodes_total ")]
    assert float(episodes[0].split()[1]) >= 1
    assert "ocpp_gateway_store_backpressure 0.0" in exposition


class FailingStore(SQLiteStore):
    """A real SQLite store whose every insert fails, as when the disk is full."""

    def _insert_messages(self, conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
        raise sqlite3.OperationalError("database or disk is full")


async def test_a_failing_store_never_holds_chargers_back(tmp_path: Path) -> None:
    """Back-pressure is for a busy writer only: once writes fail, reading resumes and stays on."""
    store = FailingStore(str(tmp_path / "gateway.db"), batch_max=10, flush_interval=0.05, retention_days=None)
    store.high_water, store.low_water = 20, 5
    events: list[bool] = []
    await store.start()
    try:
        store.on_pressure(events.append)
        for i in range(25):
            store.record(FrameRecord(time.time(), "CP", "in", "charger", "1.6", "CALL", "Heartbeat", str(i), "[]"))
        assert events == [True]
        for _ in range(100):
            await asyncio.sleep(0.02)
            if events[-1] is False:
                break
        assert events == [True, False] and not store.pressed
        for i in range(50):  # the queue grows past the mark again, but the store is failing
            store.record(FrameRecord(time.time(), "CP", "in", "charger", "1.6", "CALL", "Heartbeat", f"x{i}", "[]"))
        assert events == [True, False]
    finally:
        await store.close()


class CrawlingStore(SQLiteStore):
    """A real SQLite store whose writer needs 200 ms per batch: slow for longer than chargers may wait."""

    def _insert_messages(self, conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
        time.sleep(0.2)
        super()._insert_messages(conn, rows)


async def test_reading_resumes_after_max_pause_even_if_the_writer_is_still_behind(tmp_path: Path) -> None:
    """Chargers are never left unread longer than max_pause (their keepalive would fail); no new pause
    starts until the queue has drained."""
    store = CrawlingStore(str(tmp_path / "gateway.db"), batch_max=10, flush_interval=0.05, retention_days=None)
    store.high_water, store.low_water, store.max_pause = 20, 5, 0.3
    events: list[tuple[bool, float]] = []
    await store.start()
    try:
        start = time.monotonic()
        store.on_pressure(lambda pressed: events.append((pressed, time.monotonic() - start)))
        for i in range(30):
            store.record(FrameRecord(time.time(), "CP", "in", "charger", "1.6", "CALL", "Heartbeat", str(i), "[]"))
        await asyncio.sleep(0.5)
        assert [pressed for pressed, _ in events] == [True, False]
        assert 0.25 <= events[1][1] < 0.5  # lifted by the timer, not by a drained queue
        assert store.stats["queue_depth"] > store.low_water
        for i in range(30):
            store.record(FrameRecord(time.time(), "CP", "in", "charger", "1.6", "CALL", "Heartbeat", f"x{i}", "[]"))
        assert [pressed for pressed, _ in events] == [True, False]
    finally:
        await store.close()
    assert store.stats["dropped"] == 0 and store.stats["written"] == 60
