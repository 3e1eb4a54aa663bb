"""Replay before shadowing: recorded charger CALLs go to a candidate CSMS, its answers are compared with the log's."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from gateway.ocppj import Version
from gateway.records import FrameRecord
from gateway.sim.csms import DemoCsms
from gateway.sim.peer import OcppCallError
from gateway.store import iso_utc, open_store
from tests.conftest import GatewayFactory, cli
from tests.integration.test_store import pg_url  # noqa: F401  (a fixture: a PostgreSQL schema of the test's own)
from tests.rawpeers import RawCharger

BOOT = {"chargePointVendor": "ACME", "chargePointModel": "One"}


def write_config(tmp_path: Path, csms: dict[str, Any], **extra: Any) -> str:
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump({"store": f"sqlite:///{tmp_path}/gateway.db", "csms": csms,
                                    "default_route": {"primary": next(iter(csms))},
                                    "allow_unknown_chargers": True, **extra}))
    return str(path)


async def record_a_transaction(start_gateway: GatewayFactory, legacy: DemoCsms) -> None:
    """A 1.6 charger charges once through the gateway to its 1.6 CSMS; BADTAG is accepted there."""
    gw = await start_gateway({"legacy": {"url": legacy.url, "ocpp": "1.6"}})
    charger = await RawCharger.connect(f"ws://127.0.0.1:{gw.listen_port}/ocpp/CP1", ["ocpp1.6"])
    await charger.call("b1", "BootNotification", BOOT)
    await charger.call("a1", "Authorize", {"idTag": "BADTAG"})
    start = await charger.call("s1", "StartTransaction", {"connectorId": 1, "idTag": "GOODTAG", "meterStart": 100,
                                                          "timestamp": "2026-01-01T10:00:00Z"})
    tx = start[2]["transactionId"]
    assert tx == 41
    sample = {"value": "600", "measurand": "Energy.Active.Import.Register"}
    await charger.call("m1", "MeterValues", {"connectorId": 1, "transactionId": tx, "meterValue": [
        {"timestamp": "2026-01-01T10:30:00Z", "sampledValue": [sample]}]})
    await charger.call("t1", "StopTransaction", {"transactionId": tx, "meterStop": 900, "idTag": "GOODTAG",
                                                 "timestamp": "2026-01-01T11:00:00Z"})
    await charger.close()
    await gw.stop()


async def test_replay_of_a_recorded_transaction_against_a_201_csms(start_gateway: GatewayFactory,
                                                                   tmp_path: Path) -> None:
    """A 1.6 transaction from the log replays to a 2.0.1 candidate under a test id; only BADTAG differs."""
    legacy = await DemoCsms(versions=(Version.V16,), first_transaction_id=41).start()
    await record_a_transaction(start_gateway, legacy)
    await legacy.stop()  # the real CSMS is gone: the replay needs only the log

    candidate = await DemoCsms(versions=(Version.V201,), auth={"BADTAG": "Invalid"}).start()
    commands: list[str] = []

    async def command_the_charger() -> None:
        try:
            await candidate.call("replay-CP1", "Reset", {"type": "Immediate"}, timeout=5)
        except OcppCallError as exc:
            commands.append(exc.code)

    def on_boot(cid: str, version: Version, payload: dict[str, Any]) -> dict[str, Any]:
        asyncio.get_running_loop().create_task(command_the_charger())
        return {"currentTime": iso_utc(time.time()), "interval": 300, "status": "Accepted"}

    candidate.handlers["BootNotification"] = on_boot
    try:
        config = write_config(tmp_path, {"legacy": {"url": "ws://127.0.0.1:9/ocpp", "ocpp": "1.6"},
                                         "new": {"url": candidate.url, "ocpp": "2.0.1"}})
        code, out, err = await cli("replay", "--config", config, "--charger", "CP1", "--csms", "new",
                                   "--format", "json")
        assert code == 0, err
        report = json.loads(out)

        assert list(candidate.chargers) == ["replay-CP1"]  # never the real id
        tx = candidate.transactions("replay-CP1")
        assert len(tx) == 1 and tx[0].events == ["Started", "Updated", "Ended"]
        assert tx[0].meter_start == 100 and tx[0].meter_stop == 900 and tx[0].energy_wh == 800
        assert not candidate.violations, candidate.violations
        assert commands == ["SecurityError"]  # the candidate's command never reached a charger

        (row,) = report["chargers"]
        assert (row["id"], row["phase"], row["csms"]) == ("CP1", "replay", "new")
        assert (row["compared"], row["agreed"], row["differed"]) == (5, 4, 1)
        assert [(d["action"], d["unique_id"], d["differences"]) for d in report["differences"]] == [
            ("Authorize", "a1",
             [{"path": "idTagInfo.status", "primary": "Accepted", "shadow": "Invalid", "kind": "status"}])]
        assert report["actions"]["StartTransaction"] == {"compared": 1, "agreed": 1, "differed": 0,
                                                         "kinds": dict.fromkeys(
                                                             ("status", "value", "missing", "extra", "error",
                                                              "timeout"), 0)}
        assert "replay [" in err and "1/1 chargers" in err
    finally:
        await candidate.stop()


async def test_replay_refuses_an_unknown_candidate_and_an_empty_prefix(tmp_path: Path) -> None:
    """A CSMS name that is not configured, or a prefix that would use real ids, stops the replay before it starts."""
    config = write_config(tmp_path, {"legacy": {"url": "ws://127.0.0.1:9/ocpp", "ocpp": "1.6"}})
    code, _, err = await cli("replay", "--config", config, "--all", "--csms", "nope")
    assert code == 1 and "no csms named 'nope'" in err
    code, _, err = await cli("replay", "--config", config, "--all", "--csms", "legacy", "--prefix", "")
    assert code == 1 and "--as-real-id" in err


@pytest.fixture(params=["sqlite", "postgresql"])
def engine_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/gateway.db"
    return str(request.getfixturevalue("pg_url"))


async def test_the_store_reads_a_chargers_frames_by_time_on_either_engine(engine_url: str) -> None:
    """charger_frames, logged_chargers and load_states(prefix) select what replay and report need."""
    store = open_store(engine_url, retention_days=None)  # the records are from 1970
    await store.start()
    try:
        for i, (cid, peer) in enumerate([("CPA", "charger"), ("CPA", "csms"), ("CPB", "charger"), ("CPA", "charger")]):
            store.record(FrameRecord(1000.0 + i, cid, "in", peer, "1.6", "CALL", "Heartbeat", f"u{i}",
                                     f'[2,"u{i}","Heartbeat",{{}}]'))
        store.save_state("__compare__/CPA", {"format": 1})
        store.save_state("CPA", {"v16_v201": {}})
        await store.flush()
        assert [r["unique_id"] for r in await store.charger_frames("CPA")] == ["u0", "u3"]
        assert [r["ts"] for r in await store.charger_frames("CPA", since=1001, until=1004)] == [1003.0]
        first = await store.charger_frames("CPA", limit=1)
        assert [r["unique_id"] for r in await store.charger_frames("CPA", after_id=first[0]["id"])] == ["u3"]
        assert await store.logged_chargers() == ["CPA", "CPB"]
        assert await store.logged_chargers(since=1002, until=1003) == ["CPB"]
        assert await store.load_states("__compare__/") == {"__compare__/CPA": {"format": 1}}
        assert set(await store.load_states()) == {"__compare__/CPA", "CPA"}
    finally:
        await store.close()


# ---------------------------------------------------------------------------------------------- scale

DAY = 86_400.0


def _records(cid: str, n: int, t0: float) -> list[FrameRecord]:
    """One charger's day as a 1.6 legacy CSMS answered it: boot, a transaction, heartbeats."""
    t = t0 + (n % 600) * 60.0
    tx = 1000 + n
    exchanges: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
        ("BootNotification", BOOT, {"status": "Accepted", "interval": 300}),
        ("Authorize", {"idTag": "GOODTAG"}, {"idTagInfo": {"status": "Accepted"}}),
        ("StartTransaction", {"connectorId": 1, "idTag": "GOODTAG", "meterStart": 0, "timestamp": iso_utc(t)},
         {"transactionId": tx, "idTagInfo": {"status": "Accepted"}}),
        ("MeterValues", {"connectorId": 1, "transactionId": tx,
                         "meterValue": [{"timestamp": iso_utc(t + 60), "sampledValue": [{"value": "500"}]}]}, {}),
        ("StopTransaction", {"transactionId": tx, "meterStop": 900, "idTag": "GOODTAG", "timestamp": iso_utc(t + 120)},
         {}),  # the legacy CSMS leaves the optional idTagInfo out
        ("Heartbeat", {}, {}),
    ]
    out = []
    for i, (action, payload, answer) in enumerate(exchanges):
        ts = t + i * 3600.0 * 3
        if action in ("BootNotification", "Heartbeat"):
            answer = {**answer, "currentTime": iso_utc(ts)}
        uid = f"{cid}-{i}"
        out.append(FrameRecord(ts, cid, "in", "charger", "1.6", "CALL", action, uid,
                               orjson.dumps([2, uid, action, payload]).decode()))
        out.append(FrameRecord(ts + 0.05, cid, "out", "charger", "1.6", "CALLRESULT", action, uid,
                               orjson.dumps([3, uid, answer]).decode()))
    return out


@pytest.mark.slow
async def test_a_thousand_chargers_day_replays_with_bounded_concurrency(tmp_path: Path) -> None:
    """1,000 chargers' recorded day replays to a candidate at most --concurrency at a time, with no false alarm."""
    store = open_store(f"sqlite:///{tmp_path}/gateway.db")
    await store.start()
    t0 = time.time() - DAY
    for n in range(1000):
        for rec in _records(f"CP{n:04d}", n, t0):
            store.record(rec)
    await store.close()
    candidate = await DemoCsms(versions=(Version.V16,), keep_frames=0).start()
    peak = 0

    async def watch() -> None:
        nonlocal peak
        while True:
            peak = max(peak, len(candidate.connected))
            await asyncio.sleep(0.005)

    watcher = asyncio.create_task(watch())
    try:
        config = write_config(tmp_path, {"new": {"url": candidate.url, "ocpp": "1.6"}}, migration={"ready_after": 6})
        started = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway.cli", "replay", "--config", config, "--all", "--csms", "new",
            "--concurrency", "20", "--since", iso_utc(t0 - 60), "--format", "csv",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        raw_out, raw_err = await asyncio.wait_for(proc.communicate(), 300)
        code, out, err = proc.returncode, raw_out.decode(), raw_err.decode()
        elapsed = time.monotonic() - started
        assert code == 0, err
        lines = out.splitlines()
        assert len(lines) == 1001
        assert all(line.split(",")[5:9] == ["6", "6", "0", "yes"] for line in lines[1:]), lines[:3]
        assert 0 < peak <= 20
        assert len(candidate.chargers) == 1000
        assert "1000/1000 chargers" in err
        print(f"replayed 6000 calls of 1000 chargers in {elapsed:.1f} s, peak {peak} connections")
    finally:
        watcher.cancel()
        await candidate.stop()
