"""End to end, issue 19 items 6, 7 and 9: the frames of the report through a real gateway between strict peers."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway import schemas
from gateway.app import Gateway
from gateway.config import parse_config
from gateway.ocppj import Version
from gateway.sim.csms import DemoCsms
from gateway.sim.peer import OcppCallError
from tests.conftest import gateway_config
from tests.rawpeers import RawCharger, RawCsms, dumps

V16, V201, V21 = Version.V16, Version.V201, Version.V21
CID = "FAULT1"
T = "2024-05-01T10:{:02d}:00.000Z"


class Station:
    """A 2.x station the test speaks for, frame by frame; every frame it sends is checked against its schema."""

    def __init__(self, raw: RawCharger, version: Version) -> None:
        self.raw = raw
        self.version = version
        self.ids = iter(range(1, 1000))

    async def call(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        assert schemas.validate(self.version, action, payload) is None
        uid = f"st-{next(self.ids)}"
        await self.raw.send(dumps(2, uid, action, payload))
        answer = await self.raw.recv(timeout=10)
        assert answer[:2] == [3, uid], answer
        assert schemas.validate(self.version, action, answer[2], response=True) is None
        return answer[2]  # type: ignore[no-any-return]

    async def expect_call(self, action: str) -> list[Any]:
        frame = await self.raw.recv(timeout=10)
        assert frame[0] == 2 and frame[2] == action, frame
        assert schemas.validate(self.version, action, frame[3]) is None
        return frame


async def start_gateway(tmp_path: Path, url: str, csms_version: Version) -> Gateway:
    gw = Gateway(parse_config(gateway_config(tmp_path, {"csms": {"url": url, "ocpp": csms_version.value}})))
    await gw.start()
    return gw


@pytest.fixture
async def csms16() -> AsyncIterator[DemoCsms]:
    csms = DemoCsms(versions=(V16,))
    await csms.start()
    yield csms
    await csms.stop()


async def connect_station(gw: Gateway, version: Version) -> Station:
    url = f"ws://127.0.0.1:{gw.listen_port}/ocpp/{CID}"
    raw = await RawCharger.connect(url, [version.subprotocol])
    assert raw.ws.subprotocol == version.subprotocol
    station = Station(raw, version)
    boot = {"reason": "PowerUp", "chargingStation": {"vendorName": "ACME", "model": "Wallbox"}}
    assert (await station.call("BootNotification", boot))["status"] == "Accepted"
    return station


def status(minute: int, connector_status: str) -> dict[str, Any]:
    return {"timestamp": T.format(minute), "connectorStatus": connector_status, "evseId": 1, "connectorId": 1}


def event(kind: str, seq: int, minute: int, trigger: str, info: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "eventType": kind,
        "timestamp": T.format(minute),
        "triggerReason": trigger,
        "seqNo": seq,
        "transactionInfo": {"transactionId": "TX-REMOTE", **info},
        **extra,
    }


def energy(wh: float, context: str, minute: int) -> list[dict[str, Any]]:
    sample = {"value": wh, "context": context, "measurand": "Energy.Active.Import.Register"}
    return [{"timestamp": T.format(minute), "sampledValue": [sample]}]


@pytest.mark.parametrize("version", [V201, V21], ids=["2.0.1 station", "2.1 station"])
async def test_remote_started_session_without_id_token_reaches_the_16_csms(
    tmp_path: Path, csms16: DemoCsms, version: Version
) -> None:
    """RemoteStart REMOTE1, then Started/Updated/Ended naming only the remoteStartId: the CSMS sees the session."""
    gw = await start_gateway(tmp_path, csms16.url, V16)
    try:
        station = await connect_station(gw, version)
        remote = asyncio.create_task(csms16.call(CID, "RemoteStartTransaction", {"connectorId": 1, "idTag": "REMOTE1"}))
        request = await station.expect_call("RequestStartTransaction")
        assert request[3]["idToken"]["idToken"] == "REMOTE1"
        await station.raw.send(dumps(3, request[1], {"status": "Accepted"}))
        assert await remote == {"status": "Accepted"}
        rsid = request[3]["remoteStartId"]

        await station.call("StatusNotification", status(1, "Occupied"))
        info = {"remoteStartId": rsid, "chargingState": "Charging"}
        started = event("Started", 0, 1, "RemoteStart", info, evse={"id": 1, "connectorId": 1},
                        meterValue=energy(1000, "Transaction.Begin", 1))
        await station.call("TransactionEvent", started)
        await station.call("TransactionEvent", event("Updated", 1, 5, "MeterValuePeriodic", {},
                                                     meterValue=energy(2500, "Sample.Periodic", 5)))
        await station.call("TransactionEvent", event("Ended", 2, 9, "StopAuthorized", {"stoppedReason": "Local"},
                                                     meterValue=energy(4000, "Transaction.End", 9)))
        await station.call("StatusNotification", status(10, "Available"))

        await csms16.wait_for(lambda: csms16.charger(CID).finished_transactions)
        state = csms16.charger(CID)
        [tx] = state.finished_transactions
        assert (tx.id_token, tx.meter_start, tx.meter_stop) == ("REMOTE1", 1000, 4000)
        # The Updated's MeterValues, then the Ended's transactionData.
        assert [s.energy_wh for s in tx.samples if s.energy_wh is not None] == [2500, 4000]
        await csms16.wait_for(lambda: state.status(1) == "Available")
        assert csms16.violations == []
        await station.raw.close()
    finally:
        await gw.stop()


async def test_station_callerror_reaches_the_16_csms_without_the_201_payload(tmp_path: Path, csms16: DemoCsms) -> None:
    """A 2.0.1 station's NotImplemented carrying its request as details reaches the 1.6 CSMS with provenance only."""
    gw = await start_gateway(tmp_path, csms16.url, V16)
    try:
        station = await connect_station(gw, V201)
        change = asyncio.create_task(csms16.call(CID, "ChangeAvailability", {"connectorId": 1, "type": "Inoperative"}))
        request = await station.expect_call("ChangeAvailability")
        await station.raw.send(dumps(4, request[1], "NotImplemented", "not implemented", request[3]))
        with pytest.raises(OcppCallError) as raised:
            await change
        assert (raised.value.code, raised.value.description) == ("NotImplemented", "not implemented")
        assert raised.value.details == {"relayedFrom": "OCPP 2.0.1 charger", "errorCode": "NotImplemented"}
        assert csms16.violations == []
        await station.raw.close()
    finally:
        await gw.stop()


async def test_csms_callerror_reaches_a_16_charger_in_16_terms(tmp_path: Path) -> None:
    """A 2.0.1 CSMS's FormatViolation with a 2.0.1 payload as details reaches the 1.6 charger as FormationViolation."""
    csms = await RawCsms(subprotocols=(V201.subprotocol,)).start()
    gw = await start_gateway(tmp_path, csms.url, V201)
    try:
        charger = await RawCharger.connect(f"ws://127.0.0.1:{gw.listen_port}/ocpp/{CID}", [V16.subprotocol])
        await charger.send(dumps(2, "hb-1", "Heartbeat", {}))
        upstream = await csms.recv(CID)
        assert upstream[2] == "Heartbeat"
        await csms.send(CID, dumps(4, upstream[1], "FormatViolation", "bad frame", {"payload": upstream[3]}))
        answer = await charger.recv(timeout=10)
        assert answer == [4, "hb-1", "FormationViolation", "bad frame",
                          {"relayedFrom": "OCPP 2.0.1 csms", "errorCode": "FormatViolation"}]
        await charger.close()
    finally:
        await gw.stop()
        await csms.stop()


@pytest.mark.parametrize("version", [V16, V201, V21])
async def test_conformance_command_lists_same_version_actions_once(version: Version) -> None:
    """``ocpp-gateway conformance`` for a same-version pair shows RemoteStart-like calls only under the CSMS."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "conformance", "--charger", version.value, "--csms", version.value,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    lines = out.decode().splitlines()
    charger_at = lines.index("  initiated by the charger:")
    csms_at = lines.index("  initiated by the csms:")
    by_charger = {line.split()[0] for line in lines[charger_at + 1 : csms_at]}
    by_csms = {line.split()[0] for line in lines[csms_at + 1 :] if line.startswith("    ")}
    start = "RemoteStartTransaction" if version is V16 else "RequestStartTransaction"
    assert start in by_csms and start not in by_charger
    assert "BootNotification" in by_charger and "BootNotification" not in by_csms
    assert by_charger & by_csms == {"DataTransfer"}
