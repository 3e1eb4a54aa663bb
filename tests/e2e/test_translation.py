"""End to end: a strict simulated charger <-> the gateway <-> a strict simulated CSMS of another OCPP version."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.app import Gateway
from gateway.config import parse_config
from gateway.ocppj import Version
from gateway.sim.charger import SimCharger
from gateway.sim.csms import DemoCsms
from gateway.sim.peer import OcppCallError
from tests.conftest import gateway_config

V16, V201, V21 = Version.V16, Version.V201, Version.V21
MIXED_PAIRS = [(V16, V201), (V16, V21), (V201, V16), (V21, V16), (V201, V21), (V21, V201)]
IDS = [f"{a.value}->{b.value}" for a, b in MIXED_PAIRS]


class Rig:
    """One charger, the gateway and one CSMS, all real sockets on loopback."""

    def __init__(self, tmp_path: Path, charger_version: Version, csms_version: Version) -> None:
        self.tmp_path = tmp_path
        self.cv = charger_version
        self.sv = csms_version
        self.csms = DemoCsms(versions=(csms_version,))
        self.gw: Gateway | None = None
        self.charger: SimCharger | None = None

    async def start_gateway(self, **overrides: Any) -> Gateway:
        cfg = gateway_config(self.tmp_path, {"csms": {"url": self.csms.url, "ocpp": self.sv.value}},
                             **{"call_timeout": 10, **overrides})
        self.gw = Gateway(parse_config(cfg))
        await self.gw.start()
        return self.gw

    async def connect(self, cid: str = "E2E1") -> SimCharger:
        assert self.gw is not None
        self.charger = SimCharger(cid, self.cv, f"ws://127.0.0.1:{self.gw.listen_port}/ocpp")
        assert await self.charger.connect() == self.cv.subprotocol
        return self.charger

    async def stop_gateway(self) -> None:
        if self.charger is not None:
            await self.charger.close()
            self.charger = None
        if self.gw is not None:
            await self.gw.stop()
            self.gw = None

    def assert_clean(self) -> None:
        """Neither strict peer saw a single schema or protocol violation."""
        assert self.csms.violations == []
        if self.charger is not None:
            assert self.charger.violations == []


@pytest.fixture
async def rig(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Rig]:
    cv, sv = request.param
    r = Rig(tmp_path, cv, sv)
    await r.csms.start()
    await r.start_gateway()
    yield r
    await r.stop_gateway()
    await r.csms.stop()


def csms_tx_id(csms: DemoCsms, cid: str) -> str:
    [tx] = csms.charger(cid).active_transactions
    return tx.transaction_id


@pytest.mark.parametrize("rig", MIXED_PAIRS, ids=IDS, indirect=True)
async def test_full_charging_session_arrives_with_the_right_energy(rig: Rig) -> None:
    """Boot, authorize, start, meter values, status changes and stop reach the CSMS translated, energy intact."""
    charger = await rig.connect()
    summary = await charger.run_session(energy_wh=7300, samples=4)
    assert summary.authorized and summary.energy_wh == 7300
    csms = rig.csms
    await csms.wait_for(lambda: csms.charger("E2E1").finished_transactions)
    state = csms.charger("E2E1")
    assert state.boot is not None
    [tx] = state.finished_transactions
    assert tx.energy_wh == pytest.approx(7300)
    assert tx.meter_start == pytest.approx(summary.meter_start)
    assert tx.meter_stop == pytest.approx(summary.meter_stop)
    assert summary.meter_start is not None
    assert [s.energy_wh for s in tx.samples if s.energy_wh is not None][-1] >= summary.meter_start
    if rig.sv is not V16:
        assert tx.seq_nos == sorted(tx.seq_nos) and tx.seq_nos[0] == 0
        assert tx.stop_reason == "Local"
    else:
        assert tx.stop_reason in (None, "Local")
    assert state.status(1) == "Available"
    rig.assert_clean()


REMOTE_START = {
    V16: ("RemoteStartTransaction", {"connectorId": 1, "idTag": "REMOTE01"}),
    V201: ("RequestStartTransaction", {"evseId": 1, "remoteStartId": 77,
                                       "idToken": {"idToken": "REMOTE01", "type": "Central"}}),
}
REMOTE_START[V21] = REMOTE_START[V201]


def remote_stop(version: Version, tx_id: str) -> tuple[str, dict[str, Any]]:
    if version is V16:
        return "RemoteStopTransaction", {"transactionId": int(tx_id)}
    return "RequestStopTransaction", {"transactionId": tx_id}


@pytest.mark.parametrize("rig", MIXED_PAIRS, ids=IDS, indirect=True)
async def test_remote_start_and_stop_from_the_csms(rig: Rig) -> None:
    """A CSMS-initiated start and stop in its own version make the charger start and stop a transaction."""
    charger = await rig.connect()
    await charger.boot()
    csms = rig.csms
    action, payload = REMOTE_START[rig.sv]
    answer = await csms.call("E2E1", action, payload)
    assert answer["status"] == "Accepted"
    await csms.wait_for(lambda: csms.charger("E2E1").active_transactions)
    # The CSMS may learn of the transaction before the charger has read its StartTransaction answer (the
    # answer waits for the gateway's durable commit); a stop sent in that instant is rightly Rejected.
    await csms.wait_for(lambda: charger.transactions)
    tx_id = csms_tx_id(csms, "E2E1")
    if rig.sv is not V16:
        [tx] = csms.charger("E2E1").active_transactions
        assert tx.remote_start_id == 77
    action, payload = remote_stop(rig.sv, tx_id)
    answer = await csms.call("E2E1", action, payload)
    assert answer["status"] == "Accepted"
    await csms.wait_for(lambda: csms.charger("E2E1").finished_transactions)
    [done] = csms.charger("E2E1").finished_transactions
    assert done.transaction_id == tx_id
    if rig.sv is not V16:
        assert done.stop_reason == "Remote"
    rig.assert_clean()


@pytest.mark.parametrize("rig", MIXED_PAIRS, ids=IDS, indirect=True)
async def test_configuration_get_and_set_in_the_csms_vocabulary(rig: Rig) -> None:
    """HeartbeatInterval is read and written through the configuration key <-> device model table."""
    charger = await rig.connect()
    await charger.boot()
    csms = rig.csms
    if rig.sv is V16:
        got = await csms.call("E2E1", "GetConfiguration", {"key": ["HeartbeatInterval", "NoSuchKey"]})
        assert [k["key"] for k in got["configurationKey"]] == ["HeartbeatInterval"]
        assert got["unknownKey"] == ["NoSuchKey"]
        changed = await csms.call("E2E1", "ChangeConfiguration", {"key": "HeartbeatInterval", "value": "123"})
        assert changed["status"] == "Accepted"
        again = await csms.call("E2E1", "GetConfiguration", {"key": ["HeartbeatInterval"]})
        assert again["configurationKey"][0]["value"] == "123"
    else:
        hb = {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}
        got = await csms.call("E2E1", "GetVariables", {"getVariableData": [
            hb, {"component": {"name": "NoSuchCtrlr"}, "variable": {"name": "Nothing"}}]})
        results = got["getVariableResult"]
        assert results[0]["attributeStatus"] == "Accepted" and results[0]["attributeValue"].isdigit()
        assert results[1]["attributeStatus"] in ("UnknownComponent", "UnknownVariable")
        changed = await csms.call("E2E1", "SetVariables", {"setVariableData": [{**hb, "attributeValue": "123"}]})
        assert changed["setVariableResult"][0]["attributeStatus"] == "Accepted"
        again = await csms.call("E2E1", "GetVariables", {"getVariableData": [hb]})
        assert again["getVariableResult"][0]["attributeValue"] == "123"
    rig.assert_clean()


@pytest.mark.parametrize("rig", [(V21, V201), (V21, V16)], ids=["2.1->2.0.1", "2.1->1.6"], indirect=True)
async def test_a_2_1_only_charger_message_is_refused_in_2_1(rig: Rig) -> None:
    """A 2.1-only message from the charger gets NotSupported in 2.1 and never reaches the older CSMS."""
    charger = await rig.connect()
    await charger.boot()
    with pytest.raises(OcppCallError) as exc:
        await charger.call("NotifyPriorityCharging", {"transactionId": "tx-1", "activated": True})
    assert exc.value.code == "NotSupported"
    assert rig.csms.charger("E2E1").calls_in("NotifyPriorityCharging") == []
    rig.assert_clean()


@pytest.mark.parametrize("rig", [(V201, V21), (V16, V21)], ids=["2.0.1->2.1", "1.6->2.1"], indirect=True)
async def test_a_2_1_only_csms_call_is_refused_in_2_1(rig: Rig) -> None:
    """A 2.1 CSMS's 2.1-only command to an older charger gets NotSupported in 2.1, not a hang."""
    charger = await rig.connect()
    await charger.boot()
    with pytest.raises(OcppCallError) as exc:
        await rig.csms.call("E2E1", "GetTariffs", {"evseId": 1})
    assert exc.value.code == "NotSupported"
    rig.assert_clean()


@pytest.mark.parametrize("rig", [(V16, V201), (V16, V21), (V201, V16)], ids=["1.6->2.0.1", "1.6->2.1", "2.0.1->1.6"],
                         indirect=True)
async def test_gateway_restart_mid_transaction_keeps_the_transaction_id(rig: Rig) -> None:
    """Stopping and restarting the gateway during a transaction still ends it under its original id."""
    charger = await rig.connect()
    await charger.boot()
    await charger.authorize()
    await charger.start_transaction(1)
    await charger.send_meter_values(1, 1500, 7400.0)
    csms = rig.csms
    await csms.wait_for(lambda: csms.charger("E2E1").active_transactions)
    original = csms_tx_id(csms, "E2E1")
    running = charger.transactions[1]

    # The gateway goes away and comes back; the charger reconnects and carries on.
    await rig.gw.stop()  # type: ignore[union-attr]
    await charger.wait_closed(timeout=10)
    await rig.start_gateway()
    charger = await rig.connect()
    charger.transactions[1] = running
    charger.register_wh[1] = running.meter_start + 1500
    await charger.send_meter_values(1, 2500, 7400.0)
    await charger.stop_transaction(1, "Local")
    await csms.wait_for(lambda: csms.charger("E2E1").finished_transactions)
    [done] = csms.charger("E2E1").finished_transactions
    assert done.transaction_id == original
    assert done.energy_wh == pytest.approx(4000)
    assert csms.charger("E2E1").active_transactions == []
    rig.assert_clean()


@pytest.mark.parametrize("rig", [(V201, V16), (V21, V16)], ids=["2.0.1->1.6", "2.1->1.6"], indirect=True)
async def test_a_held_transaction_reaches_the_csms_while_the_charger_is_silent(rig: Rig) -> None:
    """A StartTransaction the CSMS did not answer is retried on the gateway's timer, and the stop follows it."""
    await rig.stop_gateway()
    await rig.start_gateway(call_timeout=1, held_retry_interval=0.5)
    csms = rig.csms
    hang = csms.misbehave("hang", "StartTransaction")
    charger = await rig.connect()
    await charger.boot()
    await charger.start_transaction(1)
    await charger.send_meter_values(1, 900, 7400.0)
    await charger.stop_transaction(1, "Local")
    state = csms.charger("E2E1")
    assert state.finished_transactions == [] and state.active_transactions == []  # held: no 1.6 id yet
    tries = len(state.calls_in("StartTransaction"))

    # The CSMS recovers; the charger says nothing more. The gateway's own retry gets the transaction through.
    csms.misbehaviour.remove(hang)
    await csms.wait_for(lambda: state.finished_transactions, timeout=10)
    [done] = state.finished_transactions
    assert done.energy_wh == pytest.approx(900)
    assert len(state.calls_in("StartTransaction")) > tries
    rig.assert_clean()
