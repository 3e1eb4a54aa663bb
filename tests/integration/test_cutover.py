"""Cut a charger over to a new CSMS and roll it back, hot: the charger's socket is never closed.

Real sockets throughout: a raw charger the test speaks for, the gateway on
port 0, and strict demo CSMSs that record a violation for every transaction
message naming an id they never saw start.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import aiohttp
import pytest

from gateway.app import Gateway
from gateway.ocppj import Version
from gateway.sim.csms import DemoCsms
from gateway.sim.payloads import minimal_payload, now_iso
from tests.conftest import GatewayFactory, cli
from tests.rawpeers import RawCharger, dumps

V16, V201, V21 = Version.V16, Version.V201, Version.V21
BOOT = {
    V16: {"chargePointVendor": "ACME", "chargePointModel": "One", "chargePointSerialNumber": "SN-7",
          "firmwareVersion": "1.2.3"},
    V201: {"reason": "PowerUp", "chargingStation": {"model": "One", "vendorName": "ACME", "serialNumber": "SN-7",
                                                     "firmwareVersion": "1.2.3"}},
}
BOOT[V21] = BOOT[V201]


class Charger:
    """A raw charger of one version: it calls, answers whatever the gateway asks, and keeps its transactions."""

    def __init__(self, raw: RawCharger, version: Version) -> None:
        self.raw = raw
        self.version = version
        self.ids = itertools.count(1)
        self.asked: list[str] = []  # actions the gateway sent the charger
        self.seq: dict[str, int] = {}

    @classmethod
    async def connect(cls, url: str, version: Version) -> Charger:
        return cls(await RawCharger.connect(url, [version.subprotocol]), version)

    async def call(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        uid = f"c{next(self.ids)}"
        await self.raw.send(dumps(2, uid, action, payload))
        while True:
            frame = await self.raw.recv(10)
            if frame[0] == 2:  # the gateway asks something meanwhile (a heartbeat interval, ...): answer it
                self.asked.append(frame[2])
                answer = minimal_payload(self.version, frame[2], response=True) or {}
                if frame[2] == "SetVariables":
                    answer = {"setVariableResult": [{"attributeStatus": "Accepted", **{
                        k: v for k, v in frame[3]["setVariableData"][0].items() if k in ("component", "variable")}}]}
                elif "status" in answer:
                    answer["status"] = "Accepted"
                await self.raw.send(dumps(3, frame[1], answer))
                continue
            assert frame[1] == uid, frame
            assert frame[0] == 3, frame
            return frame[2]  # type: ignore[no-any-return]

    async def boot(self) -> None:
        assert (await self.call("BootNotification", BOOT[self.version]))["status"] == "Accepted"

    async def status(self, connector: int, status: str) -> None:
        if self.version is V16:
            await self.call("StatusNotification", {"connectorId": connector, "errorCode": "NoError", "status": status})
        else:
            await self.call("StatusNotification", {"timestamp": now_iso(), "connectorStatus": status,
                                                   "evseId": connector, "connectorId": 1})

    async def start(self, connector: int, name: str) -> str:
        """Start a transaction on ``connector``; its id as the charger knows it."""
        if self.version is V16:
            answer = await self.call("StartTransaction", {"connectorId": connector, "idTag": "TAG1",
                                                          "meterStart": 1000, "timestamp": now_iso()})
            return str(answer["transactionId"])
        await self._event(name, "Started", "Authorized", connector, 1000, idToken={"idToken": "TAG1",
                                                                                  "type": "ISO14443"})
        return name

    async def meter(self, tx: str, connector: int, wh: int) -> None:
        if self.version is V16:
            await self.call("MeterValues", {"connectorId": connector, "transactionId": int(tx), "meterValue": [
                {"timestamp": now_iso(), "sampledValue": [
                    {"value": str(wh), "measurand": "Energy.Active.Import.Register", "unit": "Wh"}]}]})
        else:
            await self._event(tx, "Updated", "MeterValuePeriodic", connector, wh)

    async def stop(self, tx: str, connector: int) -> None:
        if self.version is V16:
            await self.call("StopTransaction", {"transactionId": int(tx), "meterStop": 2000,
                                                "timestamp": now_iso(), "reason": "Local"})
        else:
            await self._event(tx, "Ended", "StopAuthorized", connector, 2000, stoppedReason="Local")

    async def _event(self, tx: str, event: str, trigger: str, connector: int, wh: int, idToken: Any = None,
                     stoppedReason: str | None = None) -> None:
        seq = self.seq.get(tx, -1) + 1
        self.seq[tx] = seq
        info: dict[str, Any] = {"transactionId": tx}
        if stoppedReason:
            info["stoppedReason"] = stoppedReason
        payload: dict[str, Any] = {
            "eventType": event, "timestamp": now_iso(), "triggerReason": trigger, "seqNo": seq,
            "transactionInfo": info, "evse": {"id": connector, "connectorId": 1},
            "meterValue": [{"timestamp": now_iso(), "sampledValue": [
                {"value": wh, "measurand": "Energy.Active.Import.Register"}]}]}
        if idToken:
            payload["idToken"] = idToken
        await self.call("TransactionEvent", payload)

    def still_connected(self) -> bool:
        return self.raw.ws.close_code is None


async def put_route(gw: Gateway, cid: str, body: dict[str, Any], method: str = "PUT") -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http:
        async with http.request(method, f"http://127.0.0.1:{gw.admin_port}/api/chargers/{cid}/route",
                                json=body) as resp:
            return resp.status, await resp.json()


async def charger_info(gw: Gateway, cid: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{gw.admin_port}/api/chargers/{cid}") as resp:
            return await resp.json()  # type: ignore[no-any-return]


async def until(predicate: Any, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "condition not met in time"
        await asyncio.sleep(0.02)


def first_calls(csms: DemoCsms, cid: str, n: int) -> list[str]:
    """The first ``n`` CALLs a CSMS received for a charger, by action."""
    return [f.action or "" for f in csms.charger(cid).frames if f.direction == "in" and f.message_type == "CALL"][:n]


def csms_pair(old: DemoCsms, old_version: Version, new: DemoCsms, new_version: Version) -> dict[str, Any]:
    return {"old": {"url": old.url, "ocpp": old_version.value}, "new": {"url": new.url, "ocpp": new_version.value}}


def assert_clean(*systems: DemoCsms) -> None:
    """No CSMS saw a transaction message for an id it never saw start, and every transaction it saw ended."""
    for csms in systems:
        assert csms.violations == []
        assert [t.transaction_id for t in csms.transactions() if t.active] == []


# Every charger version against every old and new CSMS version (a CSMS moved to itself is no change).
PAIRS = [(c, a, b) for c in (V16, V201, V21) for a in (V16, V201, V21) for b in (V16, V201, V21)]


@pytest.fixture
async def two_csms() -> Any:
    old = await DemoCsms(versions=(V16, V201, V21), first_transaction_id=100).start()
    new = await DemoCsms(versions=(V16, V201, V21), first_transaction_id=500).start()
    yield old, new
    await old.stop()
    await new.stop()


async def connected(gw: Gateway, version: Version, old: DemoCsms) -> Charger:
    cp = await Charger.connect(f"ws://127.0.0.1:{gw.listen_port}/ocpp/CP1", version)
    await cp.boot()
    await cp.status(1, "Available")
    await cp.status(2, "Available")
    await old.wait_for(lambda: "CP1" in old.chargers and len(old.charger("CP1").statuses) == 2)
    return cp


async def test_idle_cutover_keeps_the_socket_and_introduces_the_charger_first(
        start_gateway: GatewayFactory, two_csms: tuple[DemoCsms, DemoCsms]) -> None:
    """An idle charger is switched at once: same socket, and the new CSMS hears its boot and statuses first."""
    old, new = two_csms
    gw = await start_gateway(csms_pair(old, V16, new, V201), chargers={"CP1": {}}, allow_unknown_chargers=False)
    cp = await connected(gw, V16, old)
    conn, local = gw.connections["CP1"], cp.raw.ws.local_address

    status, body = await put_route(gw, "CP1", {"primary": "new"})
    assert (status, body["state"], body["route"]["primary"], body["route_source"]) == (200, "applied", "new", "admin")
    await cp.call("Heartbeat", {})

    assert first_calls(new, "CP1", 4) == ["BootNotification", "StatusNotification", "StatusNotification", "Heartbeat"]
    station = new.charger("CP1").boot
    assert station is not None and station["chargingStation"] == {
        "model": "One", "vendorName": "ACME", "serialNumber": "SN-7", "firmwareVersion": "1.2.3"}
    assert new.charger("CP1").statuses == {(1, 1): "Available", (2, 1): "Available"}
    assert "ChangeConfiguration" in cp.asked  # the new CSMS's heartbeat interval reached the charger
    assert cp.still_connected() and gw.connections["CP1"] is conn and cp.raw.ws.local_address == local
    heartbeats_at_old = old.charger("CP1").heartbeats
    await cp.call("Heartbeat", {})
    assert old.charger("CP1").heartbeats == heartbeats_at_old  # the old CSMS's link is gone
    await until(lambda: not old.charger("CP1").connected)
    info = await charger_info(gw, "CP1")
    assert info["route_change"]["state"] == "applied" and info["route_history"][-1]["route"]["primary"] == "new"
    await gw.store.flush()
    made = [(m["action"], m["note"]) for m in await gw.store.messages("CP1", 200) if m["peer"] == "gateway"]
    assert ("BootNotification", "made by the gateway for new: introduction") in made  # the log never says the
    assert ("StatusNotification", "made by the gateway for new: introduction") in made  # charger sent these
    assert_clean(old, new)


every_version_pair = pytest.mark.parametrize(
    ("charger", "old_version", "new_version"), PAIRS, ids=[f"{c.value}-{a.value}-to-{b.value}" for c, a, b in PAIRS])


async def charging(start_gateway: GatewayFactory, old: DemoCsms, old_version: Version, new: DemoCsms,
                   new_version: Version, charger: Version) -> tuple[Gateway, Charger, str]:
    """A gateway routing CP1 to ``old``, and CP1 connected with a transaction open there."""
    gw = await start_gateway(csms_pair(old, old_version, new, new_version), chargers={"CP1": {}},
                             allow_unknown_chargers=False)
    cp = await connected(gw, charger, old)
    return gw, cp, await cp.start(1, "TX-A")


def applied(gw: Gateway, cid: str) -> bool:
    change = gw.route_change(cid)
    return change is not None and change.state.value == "applied"


@every_version_pair
async def test_cutover_waits_for_the_open_transaction(
        start_gateway: GatewayFactory, two_csms: tuple[DemoCsms, DemoCsms],
        charger: Version, old_version: Version, new_version: Version) -> None:
    """when idle: the change waits while a transaction is open, the transaction ends at its owner, then it switches."""
    old, new = two_csms
    gw, cp, tx = await charging(start_gateway, old, old_version, new, new_version, charger)

    status, body = await put_route(gw, "CP1", {"primary": "new", "deadline": time.time() + 60})
    assert (status, body["state"], body["open_transactions"]) == (202, "pending", [tx])
    assert tx in body["reason"] and body["deadline"] is not None
    assert (await charger_info(gw, "CP1"))["route_change"]["state"] == "pending"
    await cp.meter(tx, 1, 1500)
    await cp.stop(tx, 1)
    await until(lambda: applied(gw, "CP1"))

    second = await cp.start(2, "TX-B")
    await cp.meter(second, 2, 1500)
    await cp.stop(second, 2)
    assert first_calls(new, "CP1", 1) == ["BootNotification"]
    assert len(old.transactions("CP1")) == 1 and len(new.transactions("CP1")) == 1
    assert cp.still_connected()
    assert_clean(old, new)


@every_version_pair
async def test_forced_cutover_leaves_the_open_transaction_with_its_owner(
        start_gateway: GatewayFactory, two_csms: tuple[DemoCsms, DemoCsms],
        charger: Version, old_version: Version, new_version: Version) -> None:
    """force: the switch is at once; the open transaction's updates and end still go to the CSMS that started it."""
    old, new = two_csms
    gw, cp, tx = await charging(start_gateway, old, old_version, new, new_version, charger)

    status, body = await put_route(gw, "CP1", {"primary": "new", "force": True})
    assert (status, body["state"], body["open_transactions"]) == (200, "applied", [tx])
    assert "stay with old" in body["reason"]
    second = await cp.start(2, "TX-B")  # a new transaction belongs to the new primary
    await cp.meter(tx, 1, 1500)
    await cp.meter(second, 2, 1500)
    await cp.stop(tx, 1)
    await cp.stop(second, 2)

    assert [t.events[-1] for t in old.transactions("CP1")] == ["Stop" if old_version is V16 else "Ended"]
    assert [t.events[-1] for t in new.transactions("CP1")] == ["Stop" if new_version is V16 else "Ended"]
    await until(lambda: gw.connections["CP1"].drains == {})  # the old link closes after its last transaction
    await until(lambda: not old.charger("CP1").connected)
    assert cp.still_connected()
    assert_clean(old, new)


@pytest.mark.parametrize("charger", [V16, V201])
async def test_roll_back_mid_transaction_leaves_it_with_the_new_csms(
        start_gateway: GatewayFactory, two_csms: tuple[DemoCsms, DemoCsms], charger: Version) -> None:
    """Rolling back while a transaction runs on the new CSMS: legacy never sees that transaction's id."""
    old, new = two_csms
    gw = await start_gateway(csms_pair(old, V16, new, V201), chargers={"CP1": {}}, allow_unknown_chargers=False)
    cp = await connected(gw, charger, old)
    assert (await put_route(gw, "CP1", {"primary": "new"}))[1]["state"] == "applied"
    tx = await cp.start(1, "TX-N")

    status, body = await put_route(gw, "CP1", {"when": "now"}, method="DELETE")
    assert (status, body["state"], body["route"]["primary"], body["route_source"]) == (200, "applied", "old", "config")
    await cp.meter(tx, 1, 1500)
    await cp.stop(tx, 1)
    await cp.call("Heartbeat", {})

    assert old.charger("CP1").calls_in("StopTransaction") == [] and old.transactions("CP1") == []
    assert [t.events[-1] for t in new.transactions("CP1")] == ["Ended"]
    assert old.charger("CP1").heartbeats >= 1 and cp.still_connected()
    assert_clean(old, new)


async def test_shadow_promoted_mid_transaction_sees_its_copy_end(
        start_gateway: GatewayFactory, two_csms: tuple[DemoCsms, DemoCsms]) -> None:
    """The issue's case: a 1.6 charger shadowed to a 2.0.1 CSMS; the shadow's copy ends before it becomes primary."""
    old, new = two_csms
    gw = await start_gateway(csms_pair(old, V16, new, V201),
                             chargers={"CP1": {"route": {"primary": "old", "shadow": "new"}}},
                             allow_unknown_chargers=False)
    cp = await connected(gw, V16, old)
    tx = await cp.start(1, "")
    await new.wait_for(lambda: len(new.transactions("CP1")) == 1)

    status, body = await put_route(gw, "CP1", {"primary": "new", "force": True})
    assert (status, body["state"]) == (202, "pending")  # force cannot hand over the shadow's copy
    await cp.meter(tx, 1, 1500)
    await cp.stop(tx, 1)
    await until(lambda: applied(gw, "CP1"))
    await new.wait_for(lambda: len(new.charger("CP1").calls_in("BootNotification")) == 2)
    second = await cp.start(1, "")
    await cp.stop(second, 1)

    assert [t.events[0] + "/" + t.events[-1] for t in new.transactions("CP1")] == ["Started/Ended"] * 2
    assert cp.still_connected()
    assert_clean(old, new)


async def test_rejected_boot_keeps_the_charger_where_it_was(
        start_gateway: GatewayFactory, two_csms: tuple[DemoCsms, DemoCsms]) -> None:
    """A new CSMS that rejects the introduction leaves the charger on its old route, and the API says why."""
    old, new = two_csms
    new.boot_status = "Rejected"
    gw = await start_gateway(csms_pair(old, V16, new, V16), chargers={"CP1": {}}, allow_unknown_chargers=False)
    cp = await connected(gw, V16, old)

    status, body = await put_route(gw, "CP1", {"primary": "new"})
    assert (status, body["state"], body["route"]["primary"]) == (409, "rejected", "new")
    assert "rejected the charger's BootNotification" in body["reason"] and "stays on old" in body["reason"]
    before = old.charger("CP1").heartbeats
    await cp.call("Heartbeat", {})
    assert old.charger("CP1").heartbeats == before + 1
    info = await charger_info(gw, "CP1")
    assert info["route"]["primary"] == "old" and info["route_source"] == "config"
    assert info["route_change"]["state"] == "rejected"
    assert cp.still_connected()


async def test_pending_boot_switches_and_repeats_the_boot_until_accepted(
        start_gateway: GatewayFactory, two_csms: tuple[DemoCsms, DemoCsms]) -> None:
    """A Pending boot answer switches the traffic; the gateway boots again at the CSMS's interval until Accepted."""
    old, new = two_csms
    new.boot_status, new.heartbeat_interval = "Pending", 1
    gw = await start_gateway(csms_pair(old, V16, new, V16), chargers={"CP1": {}}, allow_unknown_chargers=False)
    cp = await connected(gw, V16, old)

    assert (await put_route(gw, "CP1", {"primary": "new"}))[1]["state"] == "applied"
    await new.wait_for(lambda: len(new.charger("CP1").calls_in("BootNotification")) == 2, timeout=5)
    new.boot_status = "Accepted"
    await new.wait_for(lambda: len(new.charger("CP1").calls_in("BootNotification")) == 3, timeout=5)
    await asyncio.sleep(1.5)
    assert len(new.charger("CP1").calls_in("BootNotification")) == 3  # accepted: no more boots
    assert cp.still_connected()


async def test_primary_and_shadow_must_differ(
        start_gateway: GatewayFactory, two_csms: tuple[DemoCsms, DemoCsms]) -> None:
    """The API refuses a route whose shadow is its primary, and says why."""
    old, new = two_csms
    gw = await start_gateway(csms_pair(old, V16, new, V16), chargers={"CP1": {}})
    status, body = await put_route(gw, "CP1", {"primary": "old", "shadow": "old"})
    assert status == 400 and "every CALL twice" in body["error"]
    status, body = await put_route(gw, "CP1", {"primary": "old", "when": "later"})
    assert status == 400 and "when must be" in body["error"]


async def test_cut_over_and_roll_back_through_the_cli(
        start_gateway: GatewayFactory, two_csms: tuple[DemoCsms, DemoCsms]) -> None:
    """`ocpp-gateway route` reports a waiting change, --reset rolls back; the charger is never reconnected."""
    old, new = two_csms
    gw = await start_gateway(csms_pair(old, V16, new, V16), chargers={"CP1": {}, "CP2": {}},
                             allow_unknown_chargers=False)
    admin = f"http://127.0.0.1:{gw.admin_port}"
    cp = await connected(gw, V16, old)
    tx = await cp.start(1, "")

    code, out, err = await cli("route", "CP1", "--primary", "new", "--deadline", "+60", "--admin", admin)
    assert code == 0, err
    assert f"CP1: pending primary new: waiting for transactions {tx} on old to end until " in out
    await cp.stop(tx, 1)
    await until(lambda: applied(gw, "CP1"))

    code, out, err = await cli("route", "CP1", "--primary", "nowhere", "--admin", admin)
    assert code == 1 and "no csms named 'nowhere'" in err
    code, out, _ = await cli("route", "CP1", "--reset", "--admin", admin)
    assert code == 0 and "CP1: primary old (from config)" in out
    await cp.call("Heartbeat", {})
    assert old.charger("CP1").heartbeats == 1 and cp.still_connected()
    assert_clean(old, new)


async def test_route_records_are_per_charger_and_survive_a_restart(
        start_gateway: GatewayFactory, two_csms: tuple[DemoCsms, DemoCsms]) -> None:
    """Each charger's route change is its own stored record; a restarted gateway keeps it (and reads the old blob)."""
    old, new = two_csms
    csms = csms_pair(old, V16, new, V16)
    gw = await start_gateway(csms, chargers={"CP1": {}, "CP2": {}})
    gw.store.save_state("__gateway__", {"routes": {"CP2": {"primary": "new", "shadow": None}}})
    assert (await put_route(gw, "CP1", {"primary": "new"}))[0] == 200
    assert (await put_route(gw, "CP1", {"primary": "new", "bogus": 1}))[0] == 400
    record = await gw.store.load_state("__route__:CP1")
    assert record is not None and record["override"]["primary"] == "new" and record["version"] == 1
    await gw.stop()

    gw2 = await start_gateway(csms, chargers={"CP1": {}, "CP2": {}})
    assert gw2.route_for("CP1") is not None and gw2.route_for("CP1").primary == "new"  # type: ignore[union-attr]
    assert gw2.route_for("CP2") is not None and gw2.route_for("CP2").primary == "new"  # type: ignore[union-attr]
    assert (await gw2.store.load_state("__route__:CP2") or {}).get("override", {}).get("primary") == "new"
    assert "routes" not in (await gw2.store.load_state("__gateway__") or {})
    cp = await Charger.connect(f"ws://127.0.0.1:{gw2.listen_port}/ocpp/CP1", V16)
    await cp.boot()
    await new.wait_for(lambda: new.charger("CP1").boot is not None)


async def test_charger_away_is_introduced_when_it_comes_back(
        start_gateway: GatewayFactory, two_csms: tuple[DemoCsms, DemoCsms]) -> None:
    """Moved while away: when it reconnects (without booting), the new CSMS hears its boot and statuses first."""
    old, new = two_csms
    gw = await start_gateway(csms_pair(old, V16, new, V201), chargers={"CP1": {}}, allow_unknown_chargers=False)
    cp = await connected(gw, V16, old)
    await cp.raw.close()
    await until(lambda: not gw.is_connected("CP1"))

    status, body = await put_route(gw, "CP1", {"primary": "new"})
    assert (status, body["state"]) == (200, "applied") and "not connected" in body["reason"]
    cp = await Charger.connect(f"ws://127.0.0.1:{gw.listen_port}/ocpp/CP1", V16)
    await new.wait_for(lambda: "CP1" in new.chargers and len(new.charger("CP1").statuses) == 2)
    await cp.call("Heartbeat", {})
    assert first_calls(new, "CP1", 4) == ["BootNotification", "StatusNotification", "StatusNotification", "Heartbeat"]
    assert_clean(old, new)


@pytest.mark.parametrize(("force", "outcome", "primary"), [(False, "cancelled", "old"), (True, "applied", "new")])
async def test_at_the_deadline_force_decides(
        start_gateway: GatewayFactory, two_csms: tuple[DemoCsms, DemoCsms], force: bool, outcome: str,
        primary: str) -> None:
    """A transaction still open at the deadline: without force the change is cancelled, with force it applies."""
    old, new = two_csms
    gw, cp, tx = await charging(start_gateway, old, V16, new, V201, V16)
    status, body = await put_route(gw, "CP1", {"primary": "new", "deadline": time.time() + 0.5, "force": force})
    assert (status, body["state"]) == (202, "pending")
    await until(lambda: gw.route_change("CP1") is not None and gw.route_change("CP1").settled)  # type: ignore[union-attr]
    info = await charger_info(gw, "CP1")
    assert (info["route_change"]["state"], info["route"]["primary"]) == (outcome, primary)
    if not force:
        assert "deadline passed with transactions" in info["route_change"]["reason"]
    await cp.stop(tx, 1)
    assert [t.events[-1] for t in old.transactions("CP1")] == ["Stop"]
    assert cp.still_connected()
    assert_clean(old, new)


async def test_a_newer_change_replaces_a_pending_one(
        start_gateway: GatewayFactory, two_csms: tuple[DemoCsms, DemoCsms]) -> None:
    """A pending cut-over withdrawn by a roll-back never applies, even when its transaction ends later."""
    old, new = two_csms
    gw, cp, tx = await charging(start_gateway, old, V16, new, V16, V16)
    assert (await put_route(gw, "CP1", {"primary": "new"}))[1]["state"] == "pending"
    status, body = await put_route(gw, "CP1", {}, method="DELETE")
    assert (status, body["state"], body["route"]["primary"]) == (200, "applied", "old")
    await cp.stop(tx, 1)
    await asyncio.sleep(1.2)  # longer than the withdrawn change's wait between checks
    await cp.call("Heartbeat", {})
    info = await charger_info(gw, "CP1")
    assert info["route"]["primary"] == "old" and "CP1" not in new.chargers
    assert [h["state"] for h in info["route_history"]] == ["cancelled", "applied"]
    assert info["route_history"][0]["reason"] == "replaced by a newer route change"


async def test_roll_back_to_a_draining_csms_reuses_its_link(
        start_gateway: GatewayFactory, two_csms: tuple[DemoCsms, DemoCsms]) -> None:
    """Forced over, then back while legacy still drains: legacy's link carries on, it hears the statuses again."""
    old, new = two_csms
    gw, cp, tx = await charging(start_gateway, old, V16, new, V201, V16)
    assert (await put_route(gw, "CP1", {"primary": "new", "when": "now"}))[1]["state"] == "applied"
    await cp.status(2, "Unavailable")
    statuses_at_old = len(old.charger("CP1").calls_in("StatusNotification"))

    status, body = await put_route(gw, "CP1", {"when": "now"}, method="DELETE")
    assert (status, body["state"], body["route"]["primary"]) == (200, "applied", "old")
    await old.wait_for(lambda: old.charger("CP1").status(2) == "Unavailable")
    assert len(old.charger("CP1").calls_in("StatusNotification")) == statuses_at_old + 2
    assert len(old.charger("CP1").calls_in("BootNotification")) == 1 and old.charger("CP1").connections == 1
    await cp.stop(tx, 1)
    await until(lambda: not new.charger("CP1").connected)
    assert cp.still_connected()
    assert_clean(old, new)
