"""Issue 19 end to end: a 1.6 charger the test speaks for, frame by frame, <-> the gateway <-> a strict 2.x CSMS.

The charger side checks every frame it receives against the OCPP 1.6 schemas; the CSMS (``DemoCsms``) checks
everything against its version's schemas, records transaction-order violations (an Ended for a transaction it
never saw start, an event after Ended) and, here, also checks token formats as CitrineOS does.
"""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway import schemas
from gateway.app import Gateway
from gateway.config import parse_config
from gateway.ocppj import ErrorKind, Version
from gateway.sim.csms import CsmsSession, DemoCsms
from gateway.sim.peer import HandlerResult, Reject
from tests.conftest import gateway_config
from tests.rawpeers import RawCharger, dumps

CID = "FAULTS1"
NOW = "2025-03-01T12:00:00.000Z"
CSMS_VERSIONS = [Version.V201, Version.V21]
IDS = ["1.6->2.0.1", "1.6->2.1"]
ISO14443 = re.compile(r"[0-9A-Fa-f]{8}|[0-9A-Fa-f]{14}")


class TokenCheckingCsms(DemoCsms):
    """The demo CSMS, refusing idTokens whose format contradicts their type as CitrineOS does."""

    async def _handle(self, s: CsmsSession, action: str, payload: dict[str, Any]) -> HandlerResult:
        token = payload.get("idToken")
        if token and token["type"] == "ISO14443" and not ISO14443.fullmatch(token["idToken"]):
            raise Reject(ErrorKind.PROPERTY, "ISO14443 tokens must be either 8 or 14 hexadecimal characters")
        return await super()._handle(s, action, payload)


class Charger16:
    """A 1.6 charger speaking raw frames; what the gateway sends it must be valid OCPP 1.6."""

    def __init__(self, raw: RawCharger) -> None:
        self.raw = raw
        self.ids = itertools.count(1)

    async def call(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Send a CALL; return the CALLRESULT payload after checking it against the 1.6 response schema."""
        uid = f"c{next(self.ids)}"
        frame = await self.raw.call(uid, action, payload, timeout=10)
        assert frame[:2] == [3, uid], f"{action} answered with {frame}"
        violation = schemas.validate(Version.V16, action, frame[2], response=True)
        assert violation is None, violation.describe()
        return frame[2]  # type: ignore[no-any-return]

    async def expect(self, action: str) -> tuple[str, dict[str, Any]]:
        """The next frame is a valid 1.6 CALL of ``action``: its id and payload."""
        frame = await self.raw.recv(timeout=10)
        assert frame[0] == 2 and frame[2] == action, f"expected a {action} CALL, got {frame}"
        assert schemas.validate(Version.V16, action, frame[3]) is None
        return frame[1], frame[3]

    async def answer(self, uid: str, payload: dict[str, Any]) -> None:
        await self.raw.send(dumps(3, uid, payload))


class Rig:
    def __init__(self, csms: DemoCsms, gw: Gateway, charger: Charger16) -> None:
        self.csms, self.gw, self.charger = csms, gw, charger

    def csms_calls(self, action: str) -> list[dict[str, Any]]:
        return self.csms.charger(CID).calls_in(action)

    async def csms_asks(self, action: str, payload: dict[str, Any]) -> asyncio.Task[dict[str, Any]]:
        """The CSMS calls the charger (through the gateway) in the background; await the task for its answer."""
        return asyncio.create_task(self.csms.call(CID, action, payload))

    async def start(self, connector: int = 1, tag: str = "04A1B2C3") -> int:
        started = await self.charger.call(
            "StartTransaction", {"connectorId": connector, "idTag": tag, "meterStart": 0, "timestamp": NOW}
        )
        return int(started["transactionId"])

    async def problems(self, event: str) -> float:
        """The gateway's problems_total counter for ``event``, read from its /metrics endpoint."""
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{self.gw.admin_port}/metrics") as resp:
                text = await resp.text()
        m = re.search(rf'^ocpp_gateway_problems_total\{{event="{event}"\}} (\S+)$', text, re.M)
        return float(m.group(1)) if m else 0.0

    def assert_clean(self) -> None:
        assert self.csms.violations == []


@pytest.fixture
async def rig(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Rig]:
    version: Version = request.param
    csms = TokenCheckingCsms(versions=(version,))
    await csms.start()
    gw = Gateway(parse_config(gateway_config(tmp_path, {"csms": {"url": csms.url, "ocpp": version.value}},
                                             call_timeout=10)))  # fmt: skip
    await gw.start()
    raw = await RawCharger.connect(f"ws://127.0.0.1:{gw.listen_port}/ocpp/{CID}", ["ocpp1.6"])
    charger = Charger16(raw)
    boot = await charger.call("BootNotification", {"chargePointVendor": "ACME", "chargePointModel": "One"})
    assert boot["status"] == "Accepted"
    yield Rig(csms, gw, charger)
    await raw.close()
    await gw.stop()
    await csms.stop()


@pytest.mark.parametrize("rig", CSMS_VERSIONS, ids=IDS, indirect=True)
async def test_triggered_transaction_event_arrives_as_a_transaction_event(rig: Rig) -> None:
    """Item 1: TriggerMessage TransactionEvent -> 1.6 MeterValues without transactionId -> TransactionEvent Trigger."""
    await rig.start()
    [started] = rig.csms_calls("TransactionEvent")
    tx_id = started["transactionInfo"]["transactionId"]
    status = await rig.csms.call(CID, "GetTransactionStatus", {"transactionId": tx_id})
    assert status["ongoingIndicator"] is True
    asked = await rig.csms_asks("TriggerMessage", {"requestedMessage": "TransactionEvent", "evse": {"id": 1}})
    uid, trigger = await rig.charger.expect("TriggerMessage")
    assert trigger == {"requestedMessage": "MeterValues", "connectorId": 1}
    await rig.charger.answer(uid, {"status": "Accepted"})
    assert (await asked) == {"status": "Accepted"}
    sample = {"timestamp": NOW, "sampledValue": [{"value": "1500", "measurand": "Energy.Active.Import.Register"}]}
    assert await rig.charger.call("MeterValues", {"connectorId": 1, "meterValue": [sample]}) == {}
    await rig.csms.wait_for(lambda: len(rig.csms_calls("TransactionEvent")) == 2)
    updated = rig.csms_calls("TransactionEvent")[-1]
    assert (updated["eventType"], updated["triggerReason"], updated["transactionInfo"]["transactionId"]) == (
        "Updated", "Trigger", tx_id,
    )  # fmt: skip
    assert rig.csms_calls("MeterValues") == []
    idle = await rig.csms.call(CID, "TriggerMessage", {"requestedMessage": "TransactionEvent", "evse": {"id": 2}})
    assert idle["status"] == "Rejected"
    rig.assert_clean()


@pytest.mark.parametrize("rig", CSMS_VERSIONS, ids=IDS, indirect=True)
async def test_device_model_states_maximums_and_hides_the_password(rig: Rig) -> None:
    """Items 2, 3: Entries carry the 1.6 maximum as maxLimit; BasicAuthPassword is WriteOnly and never read."""
    asked = await rig.csms_asks("GetBaseReport", {"requestId": 5, "reportBase": "ConfigurationInventory"})
    uid, _ = await rig.charger.expect("GetConfiguration")
    await rig.charger.answer(uid, {"configurationKey": [
        {"key": "LocalAuthListMaxLength", "readonly": True, "value": "5000"},
        {"key": "AuthorizationKey", "readonly": False},
        {"key": "HeartbeatInterval", "readonly": False, "value": "300"},
    ]})  # fmt: skip
    assert (await asked)["status"] == "Accepted"
    state = rig.csms.charger(CID)
    await rig.csms.wait_for(lambda: state.reports)
    entries = {e["variable"]["name"]: e for e in state.reports[0]["reportData"]}
    assert entries["Entries"]["variableAttribute"] == [{"type": "Actual", "mutability": "ReadOnly"}]
    assert entries["Entries"]["variableCharacteristics"]["maxLimit"] == 5000
    assert entries["BasicAuthPassword"]["variableAttribute"] == [{"type": "Actual", "mutability": "WriteOnly"}]

    items = [
        {"component": {"name": "LocalAuthListCtrlr"}, "variable": {"name": "Entries"}},
        {"component": {"name": "SecurityCtrlr"}, "variable": {"name": "BasicAuthPassword"}},
        {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}},
    ]
    asked = await rig.csms_asks("GetVariables", {"getVariableData": items})
    uid, request = await rig.charger.expect("GetConfiguration")
    assert request == {"key": ["HeartbeatInterval"]}  # neither the count nor the password is asked for
    await rig.charger.answer(uid, {"configurationKey": [{"key": "HeartbeatInterval", "readonly": False,
                                                         "value": "300"}]})  # fmt: skip
    results = (await asked)["getVariableResult"]
    assert [r["attributeStatus"] for r in results] == ["Rejected", "Rejected", "Accepted"]
    assert "attributeValue" not in results[0] and "attributeValue" not in results[1]
    rig.assert_clean()


@pytest.mark.parametrize("rig", CSMS_VERSIONS, ids=IDS, indirect=True)
async def test_a_repeated_stop_ends_the_transaction_once(rig: Rig) -> None:
    """Item 4: the simulator's repeated StopTransaction is answered like the first and reaches the CSMS once."""
    tx = await rig.start()
    first = await rig.charger.call("StopTransaction", {"transactionId": tx, "meterStop": 12, "timestamp": NOW})
    again = await rig.charger.call(
        "StopTransaction", {"transactionId": tx, "meterStop": 17, "timestamp": NOW, "reason": "Local"}
    )
    assert again == first
    await rig.csms.wait_for(lambda: rig.csms.charger(CID).finished_transactions)
    ended = [e for e in rig.csms_calls("TransactionEvent") if e["eventType"] == "Ended"]
    assert len(ended) == 1 and ended[0]["seqNo"] == 1
    assert await rig.problems("duplicate_stop_transaction") == 1
    rig.assert_clean()


@pytest.mark.parametrize("rig", CSMS_VERSIONS, ids=IDS, indirect=True)
async def test_a_stop_for_a_transaction_from_before_the_gateway_never_reaches_the_csms(rig: Rig) -> None:
    """Item 5: answered to the charger, no Ended upstream, counted in /metrics and kept in the charger's state."""
    reply = await rig.charger.call(
        "StopTransaction", {"transactionId": 4711, "meterStop": 12, "timestamp": NOW, "idTag": "TAG1"}
    )
    assert reply == {"idTagInfo": {"status": "Accepted"}}
    assert rig.csms_calls("TransactionEvent") == []
    assert [a["idToken"] for a in rig.csms_calls("Authorize")] == [{"idToken": "TAG1", "type": "Local"}]
    assert await rig.problems("unmatched_stop_transaction") == 1

    async def kept() -> list[dict[str, Any]]:
        state = await rig.gw.store.load_state(CID) or {}
        return _find(state, "unmatched_stops") or []

    for _ in range(50):  # the state is persisted after the exchange, not before the answer
        if await kept():
            break
        await asyncio.sleep(0.1)
    assert [(s["transactionId"], s["meterStop"]) for s in await kept()] == [(4711, 12)]
    rig.assert_clean()


def _find(tree: Any, key: str) -> Any:
    """The value of ``key`` anywhere in a nested state (the 2.1 composition nests the 1.6 -> 2.0.1 state)."""
    if isinstance(tree, dict):
        if key in tree:
            return tree[key]
        for value in tree.values():
            found = _find(value, key)
            if found is not None:
                return found
    return None


@pytest.mark.parametrize("rig", CSMS_VERSIONS, ids=IDS, indirect=True)
async def test_free_form_tags_pass_a_token_format_checking_csms(rig: Rig) -> None:
    """Item 8: TAG1 is typed Local, a card UID ISO14443; both pass and the charger sees its own strings back."""
    for tag, token_type in (("TAG1", "Local"), ("04A1B2C3D4E5F6", "ISO14443")):
        assert await rig.charger.call("Authorize", {"idTag": tag}) == {"idTagInfo": {"status": "Accepted"}}
        assert rig.csms_calls("Authorize")[-1]["idToken"] == {"idToken": tag, "type": token_type}
    tx = await rig.start(tag="TAG1")
    [started] = rig.csms_calls("TransactionEvent")
    assert started["idToken"] == {"idToken": "TAG1", "type": "Local"}
    stopped = await rig.charger.call(
        "StopTransaction", {"transactionId": tx, "meterStop": 10, "timestamp": NOW, "idTag": "TAG1"}
    )
    assert stopped == {"idTagInfo": {"status": "Accepted"}}
    remote = await rig.csms_asks("RequestStartTransaction", {
        "idToken": {"idToken": "app-User-1", "type": "Central"}, "remoteStartId": 9, "evseId": 1})  # fmt: skip
    uid, request = await rig.charger.expect("RemoteStartTransaction")
    assert request["idTag"] == "app-User-1"
    await rig.charger.answer(uid, {"status": "Accepted"})
    assert (await remote)["status"] == "Accepted"
    await rig.start(tag="app-User-1")
    assert rig.csms_calls("TransactionEvent")[-1]["idToken"] == {"idToken": "app-User-1", "type": "Central"}
    rig.assert_clean()
