"""Real chargers are not schema-perfect: validation policies, quirk repair and the field's connection habits."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import aiohttp
import pytest
from websockets.exceptions import InvalidStatus

from tests.conftest import GatewayFactory
from tests.rawpeers import RawCharger, RawCsms, dumps

METER_REQUEST_ENERGY = {
    "connectorId": 1,
    "meterValue": [{"timestamp": "2026-01-01T00:00:00Z", "sampledValue": [
        {"value": "1200", "measurand": "Energy.Active.Import.Register", "unit": "Wh"},
        {"value": "30000", "measurand": "Request.Energy", "unit": "Wh"},
    ]}],
}
LONG_SERIAL_BOOT = {"chargePointVendor": "United Chargers", "chargePointModel": "Grizzl-E",
                    "chargePointSerialNumber": "GRZ-2024-0000000000000000000042"}
ERROR_STATUS = {"connectorId": 1, "errorCode": "Error", "status": "Faulted"}

# (quirky action, payload, what the CSMS receives under `repair`)
QUIRKS: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("MeterValues", METER_REQUEST_ENERGY, {
        "connectorId": 1,
        "meterValue": [{"timestamp": "2026-01-01T00:00:00Z", "sampledValue": [
            {"value": "1200", "measurand": "Energy.Active.Import.Register", "unit": "Wh"}]}],
    }),
    ("BootNotification", LONG_SERIAL_BOOT,
     {**LONG_SERIAL_BOOT, "chargePointSerialNumber": "GRZ-2024-0000000000000000"}),
    ("StatusNotification", ERROR_STATUS, {**ERROR_STATUS, "errorCode": "OtherError"}),
]


async def messages(gw: Any, cid: str) -> list[dict[str, Any]]:
    await gw.store.flush()
    return await gw.store.messages(cid, limit=100)  # type: ignore[no-any-return]


@pytest.mark.parametrize(("action", "payload", "repaired"), QUIRKS)
async def test_strict_policy_refuses_the_quirk(
    start_gateway: GatewayFactory, raw_csms: RawCsms, action: str, payload: dict[str, Any], repaired: Any
) -> None:
    """Under `strict` a quirky CALL is answered with a CALLERROR and never reaches the CSMS."""
    gw = await start_gateway({"main": {"url": raw_csms.url, "ocpp": "1.6"}}, validation="strict")
    charger = await RawCharger.connect(f"ws://127.0.0.1:{gw.listen_port}/ocpp/Q1", ["ocpp1.6"])
    answer = await charger.call("q1", action, payload)
    assert answer[0] == 4 and answer[2] == "PropertyConstraintViolation"
    with pytest.raises(asyncio.TimeoutError):
        await raw_csms.recv("Q1", timeout=0.3)
    await charger.close()


@pytest.mark.parametrize(("action", "payload", "repaired"), QUIRKS)
async def test_repair_policy_fixes_the_quirk_and_keeps_both_frames(
    start_gateway: GatewayFactory, raw_csms: RawCsms, action: str, payload: dict[str, Any], repaired: Any
) -> None:
    """Under `repair` the CSMS receives the repaired frame; the log keeps the raw frame and the repaired one."""
    gw = await start_gateway({"main": {"url": raw_csms.url, "ocpp": "1.6"}}, validation="repair")
    charger = await RawCharger.connect(f"ws://127.0.0.1:{gw.listen_port}/ocpp/Q1", ["ocpp1.6"])
    await charger.send(dumps(2, "q1", action, payload))
    assert await raw_csms.recv("Q1") == [2, "q1", action, repaired]
    records = await messages(gw, "Q1")
    inbound = [r for r in records if r["direction"] == "in" and r["peer"] == "charger"]
    assert inbound[0]["payload"] == payload
    assert inbound[1]["payload"] == repaired and inbound[1]["note"].startswith("repaired: ")
    await charger.close()


@pytest.mark.parametrize(("action", "payload", "repaired"), QUIRKS)
async def test_observe_policy_forwards_as_is_and_counts_the_violation(
    start_gateway: GatewayFactory, raw_csms: RawCsms, action: str, payload: dict[str, Any], repaired: Any
) -> None:
    """Under `observe` the CSMS receives the frame unchanged and the violation is counted per charger and action."""
    gw = await start_gateway({"main": {"url": raw_csms.url, "ocpp": "1.6"}}, validation="observe",
                             metrics={"per_charger": True})
    charger = await RawCharger.connect(f"ws://127.0.0.1:{gw.listen_port}/ocpp/Q1", ["ocpp1.6"])
    await charger.send(dumps(2, "q1", action, payload))
    assert await raw_csms.recv("Q1") == [2, "q1", action, payload]
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{gw.admin_port}/metrics") as resp:
            text = await resp.text()
        async with http.get(f"http://127.0.0.1:{gw.admin_port}/api/chargers/Q1") as resp:
            info = await resp.json()
    assert (f'ocpp_gateway_validation_failures_total{{action="{action}",charger_id="Q1",ocpp_version="1.6",'
            f'side="charger"}} 1.0') in text
    [violation] = info["violations"]
    assert violation["action"] == action and violation["outcome"] == "forwarded" and violation["path"].startswith("$")
    await charger.close()


async def test_policy_follows_the_model_reported_at_boot(start_gateway: GatewayFactory, raw_csms: RawCsms) -> None:
    """`validation_by_model` switches a charger to its model's policy once it has booted."""
    raw_csms.auto["BootNotification"] = {"status": "Accepted", "currentTime": "2026-01-01T00:00:00Z", "interval": 60}
    gw = await start_gateway({"main": {"url": raw_csms.url, "ocpp": "1.6"}},
                             validation_by_model={"Grizzl-E": "repair"})
    charger = await RawCharger.connect(f"ws://127.0.0.1:{gw.listen_port}/ocpp/Q1", ["ocpp1.6"])
    assert (await charger.call("s0", "StatusNotification", ERROR_STATUS))[0] == 4  # strict before boot
    boot = await charger.call("b1", "BootNotification", {"chargePointVendor": "UC", "chargePointModel": "Grizzl-E"})
    assert boot[0] == 3
    await charger.send(dumps(2, "s1", "StatusNotification", ERROR_STATUS))
    assert (await raw_csms.recv("Q1"))[3]["errorCode"] == "OtherError"
    await charger.close()


async def test_declared_version_admits_a_charger_without_subprotocol(
    start_gateway: GatewayFactory, raw_csms: RawCsms
) -> None:
    """A charger configured with `ocpp: 1.6` may offer no subprotocol; the CSMS still gets ocpp1.6."""
    gw = await start_gateway({"main": {"url": raw_csms.url, "ocpp": "1.6"}},
                             chargers={"GRIZZL": {"ocpp": "1.6"}}, allow_unknown_chargers=False)
    charger = await RawCharger.connect(f"ws://127.0.0.1:{gw.listen_port}/GRIZZL", None)
    assert charger.ws.subprotocol is None
    await charger.send(dumps(2, "h", "Heartbeat", {}))
    assert await raw_csms.recv("GRIZZL") == [2, "h", "Heartbeat", {}]
    assert raw_csms.connections["GRIZZL"].subprotocol == "ocpp1.6"
    assert raw_csms.headers["GRIZZL"]["Sec-WebSocket-Protocol"] == "ocpp1.6"
    await charger.close()
    with pytest.raises(InvalidStatus):
        await RawCharger.connect(f"ws://127.0.0.1:{gw.listen_port}/OTHER", None)


async def test_dead_charger_is_detected_and_its_pending_csms_call_answered(
    start_gateway: GatewayFactory, raw_csms: RawCsms
) -> None:
    """A charger that stops answering pings is dropped: the CSMS gets a CALLERROR and the upstream closes."""
    gw = await start_gateway({"main": {"url": raw_csms.url, "ocpp": "2.0.1"}},
                             charger_keepalive={"ping_interval": 0.2, "ping_timeout": 0.3, "close_timeout": 0.3})
    charger = await RawCharger.connect(f"ws://127.0.0.1:{gw.listen_port}/ocpp/DEAD", ["ocpp2.0.1"],
                                       ping_interval=None)
    csms_side = await raw_csms.wait_connected("DEAD")
    await raw_csms.send("DEAD", dumps(2, "r1", "Reset", {"type": "Immediate"}))
    assert (await charger.recv())[2] == "Reset"
    charger.ws.transport.pause_reading()  # silent network loss: no pong, no close
    err = await raw_csms.recv("DEAD", timeout=5)
    assert err[:3] == [4, "r1", "InternalError"]
    await asyncio.wait_for(csms_side.wait_closed(), 5)
    assert "DEAD" not in gw.connections
    charger.ws.transport.abort()


async def test_live_peers_answer_the_keepalive_pings_and_stay_connected(
    start_gateway: GatewayFactory, raw_csms: RawCsms
) -> None:
    """Pings go out on both sides round after round; peers that answer them are kept, with their latency measured."""
    gw = await start_gateway({"main": {"url": raw_csms.url, "ocpp": "1.6"}},
                             charger_keepalive={"ping_interval": 0.1, "ping_timeout": 0.3, "close_timeout": 0.3},
                             csms_keepalive={"ping_interval": 0.2, "ping_timeout": 0.1, "close_timeout": 0.3})
    charger = await RawCharger.connect(f"ws://127.0.0.1:{gw.listen_port}/ocpp/LIVE", ["ocpp1.6"],
                                       ping_interval=None)
    csms_side = await raw_csms.wait_connected("LIVE")
    conn = gw.connections["LIVE"]
    for _ in range(100):
        if conn.upstream.ws is not None:
            break
        await asyncio.sleep(0.01)
    upstream = conn.upstream.ws
    assert upstream is not None
    for ws in (conn.ws, upstream):
        ws.latency = 0.0  # websockets sets it from each acknowledged pong
    await asyncio.sleep(1.5)  # rounds of both intervals and timeouts
    assert conn.ws.latency > 0 and upstream.latency > 0
    assert gw.connections.get("LIVE") is conn and conn.upstream.ws is upstream
    raw_csms.auto["Heartbeat"] = {"currentTime": "2026-01-01T00:00:00Z"}
    assert (await charger.call("h1", "Heartbeat", {}))[0] == 3
    assert raw_csms.connections["LIVE"] is csms_side
    await charger.close()


async def test_dead_csms_is_detected_and_the_link_reconnects(start_gateway: GatewayFactory, raw_csms: RawCsms) -> None:
    """A CSMS that stops answering pings is dropped; the charger's Heartbeat in flight is answered by the gateway
    (store-and-forward) and the link comes back."""
    gw = await start_gateway({"main": {"url": raw_csms.url, "ocpp": "1.6"}},
                             csms_keepalive={"ping_interval": 0.2, "ping_timeout": 0.3, "close_timeout": 0.3})
    charger = await RawCharger.connect(f"ws://127.0.0.1:{gw.listen_port}/ocpp/C1", ["ocpp1.6"])
    first = await raw_csms.wait_connected("C1")
    await charger.send(dumps(2, "h1", "Heartbeat", {}))
    await raw_csms.recv("C1")
    first.transport.pause_reading()
    local = await charger.recv(timeout=5)
    assert local[:2] == [3, "h1"] and "currentTime" in local[2]
    for _ in range(100):
        if raw_csms.connections.get("C1") not in (None, first):
            break
        await asyncio.sleep(0.05)
    assert raw_csms.connections["C1"] is not first
    first.transport.abort()
    raw_csms.auto["Heartbeat"] = {"currentTime": "2026-01-01T00:00:00Z"}
    assert (await charger.call("h2", "Heartbeat", {}))[0] == 3
    await charger.close()


async def test_silent_drop_reconnect_takes_over_without_losing_the_answer_in_flight(
    start_gateway: GatewayFactory, raw_csms: RawCsms
) -> None:
    """A reconnect under an id still believed connected continues the session: same upstream, answer delivered."""
    gw = await start_gateway({"main": {"url": raw_csms.url, "ocpp": "1.6"}})
    url = f"ws://127.0.0.1:{gw.listen_port}/ocpp/S1"
    old = await RawCharger.connect(url, ["ocpp1.6"], ping_interval=None)
    upstream = await raw_csms.wait_connected("S1")
    await old.send(dumps(2, "m1", "Heartbeat", {}))
    assert (await raw_csms.recv("S1"))[1] == "m1"
    old.ws.transport.pause_reading()  # the old socket is dead but nobody said so
    new = await RawCharger.connect(url, ["ocpp1.6"])
    await raw_csms.send("S1", dumps(3, "m1", {"currentTime": "2026-01-01T00:00:00Z"}))
    assert await new.recv() == [3, "m1", {"currentTime": "2026-01-01T00:00:00Z"}]
    assert raw_csms.connections["S1"] is upstream and raw_csms.paths.count("/ocpp/S1") == 1
    await new.send(dumps(2, "m2", "Heartbeat", {}))
    assert (await raw_csms.recv("S1"))[1] == "m2"
    assert len(gw.connections) == 1
    old.ws.transport.abort()
    await new.close()


async def _boot_with_retry(url: str, cid: str, deadline: float) -> float:
    """Connect (retrying 503s with jitter, as chargers do) and boot; returns when it finished."""
    delay = 0.05
    while True:
        try:
            charger = await RawCharger.connect(f"{url}/{cid}", ["ocpp1.6"], ping_interval=None)
            break
        except InvalidStatus as exc:
            assert exc.response.status_code == 503
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, 1.0)
    answer = await charger.call("b", "BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"},
                                timeout=60)
    assert answer[0] == 3 and answer[2]["status"] == "Accepted"
    done = time.monotonic()
    await charger.ws.close()
    return done


@pytest.mark.slow
async def test_thousand_simultaneous_reconnects_all_come_back_booted(
    start_gateway: GatewayFactory, raw_csms: RawCsms, capsys: pytest.CaptureFixture[str]
) -> None:
    """1,000 chargers reconnecting at once are admitted at a bounded rate and every one finishes BootNotification."""
    raw_csms.auto["BootNotification"] = {"status": "Accepted", "currentTime": "2026-01-01T00:00:00Z", "interval": 60}
    gw = await start_gateway({"main": {"url": raw_csms.url, "ocpp": "1.6"}},
                             admission={"rate": 400, "burst": 200, "max_pending": 200},
                             upstream={"max_concurrent_connects": 50, "reconnect_initial": 0.05})
    url = f"ws://127.0.0.1:{gw.listen_port}/ocpp"
    start = time.monotonic()
    finished = await asyncio.gather(*(_boot_with_retry(url, f"F{i:04d}", start + 90) for i in range(1000)))
    elapsed = max(finished) - start
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{gw.admin_port}/metrics") as resp:
            text = await resp.text()
    busy = [line for line in text.splitlines()
            if line.startswith('ocpp_gateway_connections_refused_total{reason="busy"}')]
    with capsys.disabled():
        print(f"\n1000 simultaneous reconnects: all booted in {elapsed:.2f} s; "
              f"{busy[0].split()[-1] if busy else 0} handshakes told to retry (503)")
    assert len(finished) == 1000


async def test_chargers_connected_at_once_do_not_ping_in_lockstep(
    start_gateway: GatewayFactory, raw_csms: RawCsms
) -> None:
    """The first keepalive ping falls at a random point of the second half of the interval, so a burst of
    connections (a reconnect storm) spreads its pings instead of sending them all in the same instant."""
    gw = await start_gateway({"main": {"url": raw_csms.url, "ocpp": "1.6"}},
                             charger_keepalive={"ping_interval": 10.0, "ping_timeout": 5.0, "close_timeout": 1.0})
    loop = asyncio.get_running_loop()
    opened = loop.time()
    chargers = await asyncio.gather(*(
        RawCharger.connect(f"ws://127.0.0.1:{gw.listen_port}/ocpp/BURST{i}", ["ocpp1.6"], ping_interval=None)
        for i in range(12)))
    for _ in range(200):
        if all(f"BURST{i}" in gw.connections for i in range(12)):
            break
        await asyncio.sleep(0.01)
    due = [gw.connections[f"BURST{i}"].ws._path.keepalive.when() - opened for i in range(12)]
    assert all(4.9 <= d <= 10.5 for d in due), due
    assert max(due) - min(due) > 1.0, due
    for charger in chargers:
        await charger.close()
