"""Nothing a charger reports is lost: a real gateway process, a real SQLite store, a CSMS that goes away, kill -9.

Each test stops the CSMS, runs a whole transaction on a raw charger (answered by the gateway), SIGKILLs the
gateway at a named moment, restarts it and the CSMS, lets the charger reconnect, and then reads what the CSMS
received: every transaction message exactly once, in order, with one consistent transaction id and the energy.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from websockets.asyncio.server import Server, ServerConnection, serve

from tests.integration.test_cli import free_port
from tests.integration.test_store import pg_url  # noqa: F401  (fixture, used through request.getfixturevalue)
from tests.rawpeers import RawCharger, dumps

CLI = [sys.executable, "-m", "gateway.cli"]
T0 = "2026-03-01T10:00:00.000Z"


@dataclass
class RecordingCsms:
    """A CSMS on a fixed port that answers every CALL like a strict back office and records what it got."""

    port: int
    version: str  # "1.6" or "2.0.1"
    calls: list[list[Any]] = field(default_factory=list)  # [uid, action, payload] in arrival order
    answered: list[str] = field(default_factory=list)  # uids answered
    stall_after: int | None = None  # answer only this many CALLs, then fall silent
    next_tx: int = 7001
    server: Server | None = None

    async def start(self) -> None:
        sub = "ocpp1.6" if self.version == "1.6" else "ocpp2.0.1"
        self.server = await serve(self._handler, "127.0.0.1", self.port, subprotocols=[sub],  # type: ignore[list-item]
                                  compression=None)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None

    async def _handler(self, ws: ServerConnection) -> None:
        try:
            async for msg in ws:
                frame = orjson.loads(msg)
                if frame[0] != 2:
                    continue
                self.calls.append(frame[1:])
                if self.stall_after is not None and len(self.answered) >= self.stall_after:
                    continue
                await ws.send(dumps(3, frame[1], self._answer(frame[2], frame[3])))
                self.answered.append(frame[1])
        except Exception:
            pass

    def _answer(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        if action == "BootNotification":
            return {"status": "Accepted", "currentTime": T0, "interval": 300}
        if action == "Heartbeat":
            return {"currentTime": T0}
        if self.version == "1.6":
            if action == "Authorize":
                return {"idTagInfo": {"status": "Accepted"}}
            if action == "StartTransaction":
                self.next_tx += 1
                return {"transactionId": self.next_tx, "idTagInfo": {"status": "Accepted"}}
            return {}
        if action == "Authorize":
            return {"idTokenInfo": {"status": "Accepted"}}
        if action == "TransactionEvent" and "idToken" in payload:
            return {"idTokenInfo": {"status": "Accepted"}}
        return {}

    def of(self, *actions: str) -> list[list[Any]]:
        return [c for c in self.calls if c[1] in actions]

    async def wait_for(self, check: Any, timeout: float = 20.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not check():
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out; the CSMS got {[c[1] for c in self.calls]}")
            await asyncio.sleep(0.05)


@dataclass
class GatewayProcess:
    config: Path
    port: int
    proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(*CLI, "run", "--config", str(self.config),
                                                         stdout=asyncio.subprocess.DEVNULL,
                                                         stderr=asyncio.subprocess.DEVNULL)

    async def charger(self, cid: str, version: str) -> RawCharger:
        for _ in range(200):
            try:
                return await RawCharger.connect(f"ws://127.0.0.1:{self.port}/ocpp/{cid}", [f"ocpp{version}"])
            except OSError:
                await asyncio.sleep(0.05)
        raise AssertionError("gateway did not start listening")

    async def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Any]:
    made: list[tuple[GatewayProcess, RecordingCsms]] = []

    async def make(csms_version: str, store: str | None = None) -> tuple[GatewayProcess, RecordingCsms]:
        csms = RecordingCsms(free_port(), csms_version)
        port = free_port()
        config = {
            "listen": {"host": "127.0.0.1", "port": port},
            "admin": {"host": "127.0.0.1", "port": free_port()},
            "store": store or f"sqlite:///{tmp_path}/gw.db",
            "csms": {"main": {"url": f"ws://127.0.0.1:{csms.port}/ocpp", "ocpp": csms_version}},
            "default_route": {"primary": "main"},
            "allow_unknown_chargers": True,
            "upstream": {"reconnect_initial": 0.05, "reconnect_max": 0.3},
            "offline": {"answer_after": 1.0},
            "logging": {"level": "warning"},
            "workers": 1,  # SIGKILL of the one gateway process (with PostgreSQL, auto would run a worker per core)
        }
        path = tmp_path / "gateway.yaml"
        path.write_text(yaml.safe_dump(config))
        gw = GatewayProcess(path, port)
        made.append((gw, csms))
        return gw, csms

    yield make
    for gw, csms in made:
        await gw.stop()
        await csms.stop()


BOOT16 = {"chargePointVendor": "Acme", "chargePointModel": "Volt"}
BOOT201 = {"chargingStation": {"vendorName": "Acme", "model": "Volt"}, "reason": "PowerUp"}


def _mv16(tx: int, wh: int) -> dict[str, Any]:
    return {"connectorId": 1, "transactionId": tx, "meterValue": [
        {"timestamp": T0, "sampledValue": [{"value": str(wh), "measurand": "Energy.Active.Import.Register",
                                            "unit": "Wh"}]}]}


async def _offline_transaction_16(charger: RawCharger) -> int:
    """Start, three meter readings and a stop on a 1.6 charger, each answered (by the gateway); the tx id."""
    start = await charger.call("s1", "StartTransaction", {"connectorId": 1, "idTag": "TAG1", "meterStart": 1000,
                                                         "timestamp": T0}, timeout=10)
    assert start[0] == 3, start
    tx = start[2]["transactionId"]
    assert start[2]["idTagInfo"]["status"] == "Accepted"
    for i, wh in enumerate((2000, 3000, 4000)):
        assert (await charger.call(f"m{i}", "MeterValues", _mv16(tx, wh), timeout=10))[0] == 3
    stop = await charger.call("e1", "StopTransaction", {"transactionId": tx, "meterStop": 5000, "timestamp": T0,
                                                        "idTag": "TAG1"}, timeout=10)
    assert stop[0] == 3, stop
    return int(tx)


TOKEN201 = {"idToken": "TAG2", "type": "ISO14443"}


def _event201(kind: str, seq: int, wh: int, **extra: Any) -> dict[str, Any]:
    context = "Transaction.Begin" if kind == "Started" else "Transaction.End" if kind == "Ended" else None
    sample: dict[str, Any] = {"value": wh, "measurand": "Energy.Active.Import.Register"}
    if context:
        sample["context"] = context
    return {"eventType": kind, "timestamp": T0, "triggerReason": "Authorized" if kind == "Started" else
            "MeterValuePeriodic", "seqNo": seq, "transactionInfo": {"transactionId": "tx-a", **extra},
            "evse": {"id": 1, "connectorId": 1}, "meterValue": [{"timestamp": T0, "sampledValue": [sample]}]}


async def _offline_transaction_201(charger: RawCharger) -> None:
    """Started, Updated and Ended on a 2.0.1 station, each answered at once (by the gateway)."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    started = await charger.call("t0", "TransactionEvent", {**_event201("Started", 0, 1000), "idToken": TOKEN201})
    assert started[0] == 3 and started[2]["idTokenInfo"]["status"] == "Accepted"
    assert loop.time() - began < 2.0  # not after a 30 s call timeout
    assert (await charger.call("t1", "TransactionEvent", _event201("Updated", 1, 3000)))[2] == {}
    ended = await charger.call("t2", "TransactionEvent", {**_event201("Ended", 2, 5000, stoppedReason="Local")})
    assert ended[0] == 3


async def _boot_then_csms_down(gw: GatewayProcess, csms: RecordingCsms, cid: str, version: str) -> RawCharger:
    await csms.start()
    await gw.start()
    charger = await gw.charger(cid, version)
    boot = BOOT16 if version == "1.6" else BOOT201
    assert (await charger.call("b1", "BootNotification", boot, timeout=10))[2]["status"] == "Accepted"
    await csms.stop()
    return charger


def _ended(csms: RecordingCsms) -> bool:
    return any(c[2]["eventType"] == "Ended" for c in csms.of("TransactionEvent"))


async def _kill_and_restart(gw: GatewayProcess, csms: RecordingCsms, cid: str, version: str,
                            delivered: Any) -> RawCharger:
    """SIGKILL the gateway, start the CSMS and the gateway again, reconnect the charger, and wait until
    ``delivered()`` (then a little longer: nothing more may come)."""
    await gw.kill9()
    return await _restart(gw, csms, cid, version, delivered)


async def _kill_mid_replay(gw: GatewayProcess, csms: RecordingCsms, cid: str, version: str, answered: int,
                           sent: Any) -> None:
    """The charger reconnects after the outage and its queue is replayed to a CSMS that answers ``answered``
    CALLs (the boot included) and then falls silent; once ``sent()``, SIGKILL. The CSMS stops and will answer all."""
    csms.stall_after = answered
    await csms.start()
    await gw.charger(cid, version)
    await csms.wait_for(sent)
    await gw.kill9()
    await csms.stop()
    csms.stall_after = None


async def _restart(gw: GatewayProcess, csms: RecordingCsms, cid: str, version: str, delivered: Any) -> RawCharger:
    """After a SIGKILL: start the CSMS and the gateway, reconnect the charger, wait until ``delivered()``."""
    await csms.start()
    await gw.start()
    charger = await gw.charger(cid, version)
    await csms.wait_for(delivered)
    await asyncio.sleep(0.5)
    return charger


async def test_16_to_16_transaction_during_outage_survives_sigkill(rig: Any) -> None:
    """1.6 -> 1.6: a whole transaction while the CSMS is down, SIGKILL right after the stop is answered;
    after restarts the CSMS gets Start, 3 MeterValues and Stop once each, in order, all under its own id."""
    gw, csms = await rig("1.6")
    charger = await _boot_then_csms_down(gw, csms, "CP16", "1.6")
    local_tx = await _offline_transaction_16(charger)
    assert local_tx >= 1_000_000_000  # gateway-assigned, from the store's counter
    charger = await _kill_and_restart(gw, csms, "CP16", "1.6", lambda: csms.of("StopTransaction"))
    tx_calls = csms.of("StartTransaction", "MeterValues", "StopTransaction")
    assert [c[1] for c in tx_calls] == ["StartTransaction", "MeterValues", "MeterValues", "MeterValues",
                                        "StopTransaction"]
    assert [c[0] for c in tx_calls] == ["s1", "m0", "m1", "m2", "e1"]  # the charger's own message ids
    csms_tx = 7002
    assert all(c[2]["transactionId"] == csms_tx for c in tx_calls[1:])
    assert tx_calls[0][2]["meterStart"] == 1000 and tx_calls[-1][2]["meterStop"] == 5000
    # A later live message of the same transaction id is rewritten too (the map is persisted).
    assert (await charger.call("m9", "MeterValues", _mv16(local_tx, 5000), timeout=10))[0] == 3
    assert csms.of("MeterValues")[-1][2]["transactionId"] == csms_tx
    await charger.close()


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
async def test_16_to_201_transaction_during_outage_survives_sigkill(
    rig: Any, store: str, request: pytest.FixtureRequest,
) -> None:
    """1.6 -> 2.0.1 (SQLite and PostgreSQL stores): after SIGKILL and restarts the CSMS gets Started, 3 Updated
    and Ended once each, one transactionId, seqNo 0..4, offline true, and the energy of the stop."""
    url = request.getfixturevalue("pg_url") if store == "postgresql" else None
    gw, csms = await rig("2.0.1", url)
    charger = await _boot_then_csms_down(gw, csms, "CP1620", "1.6")
    await _offline_transaction_16(charger)
    await _kill_and_restart(gw, csms, "CP1620", "1.6", lambda: _ended(csms))
    events = [c[2] for c in csms.of("TransactionEvent")]
    assert [e["eventType"] for e in events] == ["Started", "Updated", "Updated", "Updated", "Ended"]
    assert len({e["transactionInfo"]["transactionId"] for e in events}) == 1
    assert [e["seqNo"] for e in events] == [0, 1, 2, 3, 4]
    assert all(e.get("offline") is True for e in events)
    energy = [sv["value"] for e in events for mv in e.get("meterValue", []) for sv in mv["sampledValue"]]
    assert energy[0] == 1000 and energy[-1] == 5000


async def test_sigkill_during_replay_never_resends_an_answered_message(rig: Any) -> None:
    """The CSMS answers two replayed messages, then falls silent; SIGKILL; after restart the answered ones are
    not sent again, the unanswered one is re-sent with its message id, and everything arrives."""
    gw, csms = await rig("1.6")
    charger = await _boot_then_csms_down(gw, csms, "CPR", "1.6")
    await _offline_transaction_16(charger)
    await charger.close()
    await _kill_mid_replay(gw, csms, "CPR", "1.6", 1 + 2, lambda: len(csms.calls) >= 4)  # boot, 2 replayed
    await _restart(gw, csms, "CPR", "1.6", lambda: csms.of("StopTransaction"))
    uids = [c[0] for c in csms.of("StartTransaction", "MeterValues", "StopTransaction")]
    # s1 and m0 were answered before the kill: once each. m1 was sent but never answered: sent again.
    assert uids == ["s1", "m0", "m1", "m1", "m2", "e1"]
    assert all(c[2]["transactionId"] == 7002 for c in csms.of("MeterValues", "StopTransaction"))


async def test_201_to_16_station_transaction_during_outage_survives_sigkill(rig: Any) -> None:
    """2.0.1 -> 1.6: TransactionEvents during the outage are answered at once with idTokenInfo; after SIGKILL
    and restarts the 1.6 CSMS gets StartTransaction, MeterValues and StopTransaction once, under its id."""
    gw, csms = await rig("1.6")
    charger = await _boot_then_csms_down(gw, csms, "CP2016", "2.0.1")
    await _offline_transaction_201(charger)
    await _kill_and_restart(gw, csms, "CP2016", "2.0.1", lambda: csms.of("StopTransaction"))
    tx_calls = csms.of("StartTransaction", "MeterValues", "StopTransaction")
    assert [c[1] for c in tx_calls] == ["StartTransaction", "MeterValues", "StopTransaction"]
    assert tx_calls[0][2]["idTag"] == "TAG2" and tx_calls[0][2]["meterStart"] == 1000
    assert tx_calls[1][2]["transactionId"] == tx_calls[2][2]["transactionId"] == 7002
    assert tx_calls[2][2]["meterStop"] == 5000


async def test_201_to_201_station_transaction_during_outage_survives_sigkill(rig: Any) -> None:
    """2.0.1 -> 2.0.1 (pass-through): the station's TransactionEvents during the outage are answered at once;
    after SIGKILL and restarts the CSMS gets them once each, in order, unchanged but marked offline."""
    gw, csms = await rig("2.0.1")
    charger = await _boot_then_csms_down(gw, csms, "CP2020", "2.0.1")
    await _offline_transaction_201(charger)
    await _kill_and_restart(gw, csms, "CP2020", "2.0.1", lambda: _ended(csms))
    events = csms.of("TransactionEvent")
    assert [c[0] for c in events] == ["t0", "t1", "t2"]
    assert [c[2]["seqNo"] for c in events] == [0, 1, 2]
    assert {c[2]["transactionInfo"]["transactionId"] for c in events} == {"tx-a"}
    assert all(c[2]["offline"] is True for c in events)
    assert events[0][2]["idToken"] == TOKEN201
    assert events[-1][2]["meterValue"][0]["sampledValue"][0]["value"] == 5000


async def test_201_to_16_sigkill_during_replay_never_resends_an_answered_message(rig: Any) -> None:
    """2.0.1 -> 1.6: the CSMS answers the replayed StartTransaction, then leaves the MeterValues unanswered;
    SIGKILL; after restart the start is not sent again, the MeterValues is re-sent with its message id, and the
    stop follows, all under the CSMS's id."""
    gw, csms = await rig("1.6")
    charger = await _boot_then_csms_down(gw, csms, "CPR2016", "2.0.1")
    await _offline_transaction_201(charger)
    await charger.close()
    await _kill_mid_replay(gw, csms, "CPR2016", "2.0.1", 1 + 1, lambda: csms.of("MeterValues"))  # boot, start
    await _restart(gw, csms, "CPR2016", "2.0.1", lambda: csms.of("StopTransaction"))
    tx_calls = csms.of("StartTransaction", "MeterValues", "StopTransaction")
    assert [c[1] for c in tx_calls] == ["StartTransaction", "MeterValues", "MeterValues", "StopTransaction"]
    assert tx_calls[1][0] == tx_calls[2][0]  # sent, never answered: sent again, as the same message
    assert all(c[2]["transactionId"] == 7002 for c in tx_calls[1:])
    assert tx_calls[-1][2]["meterStop"] == 5000

