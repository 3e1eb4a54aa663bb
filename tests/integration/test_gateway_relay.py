"""The gateway relays OCPP-J frames between a charger and its CSMS over real sockets."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from websockets.exceptions import InvalidStatus

from tests.conftest import GatewayFactory
from tests.rawpeers import RawCharger, RawCsms, dumps

BOOT16 = {"chargePointVendor": "ACME", "chargePointModel": "One"}
BOOT16_CONF = {"status": "Accepted", "currentTime": "2026-01-01T00:00:00.000Z", "interval": 300}
BOOT2 = {"reason": "PowerUp", "chargingStation": {"model": "One", "vendorName": "ACME"}}
VERSIONS = [("1.6", "ocpp1.6"), ("2.0.1", "ocpp2.0.1"), ("2.1", "ocpp2.1")]


def ws_url(gw: Any, cid: str) -> str:
    return f"ws://127.0.0.1:{gw.listen_port}/ocpp/{cid}"


@pytest.mark.parametrize(("version", "subprotocol"), VERSIONS)
async def test_pass_through_relays_both_directions(
    start_gateway: GatewayFactory, raw_csms: RawCsms, version: str, subprotocol: str
) -> None:
    """Charger- and CSMS-initiated calls, results and errors cross the gateway unchanged in every version."""
    gw = await start_gateway({"main": {"url": raw_csms.url, "ocpp": version}})
    charger = await RawCharger.connect(ws_url(gw, "CP1"), [subprotocol])
    assert charger.ws.subprotocol == subprotocol
    boot = BOOT16 if version == "1.6" else BOOT2
    await charger.send(dumps(2, "b1", "BootNotification", boot))
    assert await raw_csms.recv("CP1") == [2, "b1", "BootNotification", boot]
    assert raw_csms.connections["CP1"].subprotocol == subprotocol
    await raw_csms.send("CP1", dumps(3, "b1", BOOT16_CONF))
    assert await charger.recv() == [3, "b1", BOOT16_CONF]

    reset = {"type": "Soft"} if version == "1.6" else {"type": "OnIdle"}
    await raw_csms.send("CP1", dumps(2, "r1", "Reset", reset))
    assert await charger.recv() == [2, "r1", "Reset", reset]
    await charger.send(dumps(3, "r1", {"status": "Accepted"}))
    assert await raw_csms.recv("CP1") == [3, "r1", {"status": "Accepted"}]

    await raw_csms.send("CP1", dumps(2, "r2", "Reset", reset))
    assert (await charger.recv())[1] == "r2"
    await charger.send(dumps(4, "r2", "NotSupported", "no reset today", {}))
    assert await raw_csms.recv("CP1") == [4, "r2", "NotSupported", "no reset today", {}]
    await charger.close()


async def test_unknown_charger_is_refused_at_the_handshake(start_gateway: GatewayFactory, raw_csms: RawCsms) -> None:
    """With allow_unknown_chargers false, an id not in the config gets HTTP 404 and no upstream connection."""
    gw = await start_gateway({"main": {"url": raw_csms.url, "ocpp": "1.6"}}, allow_unknown_chargers=False,
                             chargers={"KNOWN": {}})
    with pytest.raises(InvalidStatus) as exc:
        await RawCharger.connect(ws_url(gw, "STRANGER"), ["ocpp1.6"])
    assert exc.value.response.status_code == 404
    assert b"unknown charger" in exc.value.response.body
    known = await RawCharger.connect(ws_url(gw, "KNOWN"), ["ocpp1.6"])
    await raw_csms.wait_connected("KNOWN")
    assert "STRANGER" not in raw_csms.paths
    await known.close()


@pytest.mark.parametrize(
    ("offered", "status", "text"),
    [
        (None, 400, b"no OCPP subprotocol offered"),
        (["mqtt", "chat"], 400, b"none of the offered subprotocols"),
    ],
)
async def test_connection_without_an_ocpp_subprotocol_is_refused(
    start_gateway: GatewayFactory, raw_csms: RawCsms, offered: list[str] | None, status: int, text: bytes
) -> None:
    """A charger that offers no OCPP version is refused with a reason it can log."""
    gw = await start_gateway({"main": {"url": raw_csms.url, "ocpp": "1.6"}})
    with pytest.raises(InvalidStatus) as exc:
        await RawCharger.connect(ws_url(gw, "CP1"), offered)
    assert exc.value.response.status_code == status
    assert text in exc.value.response.body


async def test_version_the_csms_speaks_wins_when_several_are_offered(
    start_gateway: GatewayFactory, raw_csms: RawCsms
) -> None:
    """A charger offering 1.6 and 2.0.1 to a 2.0.1 CSMS is given 2.0.1, a pass-through."""
    gw = await start_gateway({"main": {"url": raw_csms.url, "ocpp": "2.0.1"}})
    charger = await RawCharger.connect(ws_url(gw, "CP1"), ["ocpp1.6", "ocpp2.0.1"])
    assert charger.ws.subprotocol == "ocpp2.0.1"
    await charger.close()


@pytest.mark.parametrize(
    ("subprotocol", "text", "uid", "code"),
    [
        ("ocpp1.6", '[2, "m1", "BootNotification", {"chargePointVendor": "ACME"}]', "m1",
         "OccurenceConstraintViolation"),
        ("ocpp2.0.1", '[2, "m2", "BootNotification", {"reason": "PowerUp"}]', "m2", "OccurrenceConstraintViolation"),
        ("ocpp1.6", '[2, "m3", "Heartbeat", {', "-1", "FormationViolation"),
        ("ocpp2.0.1", "[2, 17]", "-1", "RpcFrameworkError"),
        ("ocpp2.0.1", '[9, "m5", "Heartbeat", {}]', "m5", "MessageTypeNotSupported"),
        ("ocpp1.6", '[2, "m6", "Teleport", {}]', "m6", "NotImplemented"),
        ("ocpp2.1", '[2, "m7", "Heartbeat", {"extra": true}]', "m7", "FormatViolation"),
    ],
)
async def test_bad_input_gets_a_callerror_in_the_senders_version(
    start_gateway: GatewayFactory, raw_csms: RawCsms, subprotocol: str, text: str, uid: str, code: str
) -> None:
    """Invalid frames are answered with the right CALLERROR, not forwarded, and the connection keeps working."""
    version = subprotocol.removeprefix("ocpp")
    gw = await start_gateway({"main": {"url": raw_csms.url, "ocpp": version}})
    charger = await RawCharger.connect(ws_url(gw, "CP1"), [subprotocol])
    await charger.send(text)
    err = await charger.recv()
    assert err[0] == 4 and err[1] == uid and err[2] == code
    await charger.send(dumps(2, "ok1", "Heartbeat", {}))
    assert await raw_csms.recv("CP1") == [2, "ok1", "Heartbeat", {}]
    assert raw_csms.inbox["CP1"].empty()
    await charger.close()


async def test_oversized_frame_is_refused_and_the_connection_survives(
    start_gateway: GatewayFactory, raw_csms: RawCsms
) -> None:
    """A frame above max_frame_bytes gets a CALLERROR; the next frame is relayed normally."""
    gw = await start_gateway({"main": {"url": raw_csms.url, "ocpp": "1.6"}}, max_frame_bytes=4096)
    charger = await RawCharger.connect(ws_url(gw, "CP1"), ["ocpp1.6"])
    err = await charger.call("big", "DataTransfer", {"vendorId": "x", "data": "y" * 10_000})
    assert err[:3] == [4, "big", "FormationViolation"]
    await charger.send(dumps(2, "ok", "Heartbeat", {}))
    assert await raw_csms.recv("CP1") == [2, "ok", "Heartbeat", {}]
    await charger.close()


async def test_duplicate_unique_id_is_refused(start_gateway: GatewayFactory, raw_csms: RawCsms) -> None:
    """A second CALL reusing the id of an unanswered one is refused; the first is still answered."""
    gw = await start_gateway({"main": {"url": raw_csms.url, "ocpp": "2.0.1"}})
    charger = await RawCharger.connect(ws_url(gw, "CP1"), ["ocpp2.0.1"])
    await charger.send(dumps(2, "same", "Heartbeat", {}))
    assert (await raw_csms.recv("CP1"))[1] == "same"
    await charger.send(dumps(2, "same", "Heartbeat", {}))
    assert (await charger.recv())[:3] == [4, "same", "RpcFrameworkError"]
    await raw_csms.send("CP1", dumps(3, "same", {"currentTime": "2026-01-01T00:00:00Z"}))
    assert await charger.recv() == [3, "same", {"currentTime": "2026-01-01T00:00:00Z"}]
    await charger.close()


async def test_second_call_is_queued_not_interleaved(start_gateway: GatewayFactory, raw_csms: RawCsms) -> None:
    """Two CALLs sent back to back reach the CSMS one at a time."""
    gw = await start_gateway({"main": {"url": raw_csms.url, "ocpp": "1.6"}})
    charger = await RawCharger.connect(ws_url(gw, "CP1"), ["ocpp1.6"])
    await charger.send(dumps(2, "a", "Heartbeat", {}))
    await charger.send(dumps(2, "b", "Heartbeat", {}))
    assert (await raw_csms.recv("CP1"))[1] == "a"
    with pytest.raises(asyncio.TimeoutError):
        await raw_csms.recv("CP1", timeout=0.3)
    await raw_csms.send("CP1", dumps(3, "a", {"currentTime": "2026-01-01T00:00:00Z"}))
    assert (await raw_csms.recv("CP1"))[1] == "b"
    assert (await charger.recv())[1] == "a"
    await charger.close()


async def test_csms_that_never_answers_gives_the_charger_a_callerror(
    start_gateway: GatewayFactory, raw_csms: RawCsms
) -> None:
    """With offline.mode reject, after call_timeout the charger gets InternalError in its version, and later
    calls still work."""
    gw = await start_gateway({"main": {"url": raw_csms.url, "ocpp": "1.6"}}, call_timeout=0.5,
                             offline={"mode": "reject"})
    charger = await RawCharger.connect(ws_url(gw, "CP1"), ["ocpp1.6"])
    await charger.send(dumps(2, "h1", "Heartbeat", {}))
    await raw_csms.recv("CP1")
    err = await charger.recv(timeout=3)
    assert err[:3] == [4, "h1", "InternalError"]
    raw_csms.auto["Heartbeat"] = {"currentTime": "2026-01-01T00:00:00Z"}
    assert await charger.call("h2", "Heartbeat", {}) == [3, "h2", {"currentTime": "2026-01-01T00:00:00Z"}]
    await charger.close()


async def test_csms_down_at_connect_time_and_coming_back(start_gateway: GatewayFactory) -> None:
    """A CALL made while the CSMS is down goes out once it comes back (within the call timeout)."""
    csms = RawCsms()
    probe = await RawCsms().start()
    port = probe.port
    await probe.stop()
    gw = await start_gateway({"main": {"url": f"ws://127.0.0.1:{port}/ocpp", "ocpp": "1.6"}}, call_timeout=10)
    charger = await RawCharger.connect(ws_url(gw, "CP1"), ["ocpp1.6"])
    await charger.send(dumps(2, "b1", "BootNotification", BOOT16))
    await asyncio.sleep(0.3)
    await csms.start(port)
    try:
        assert await csms.recv("CP1", timeout=5) == [2, "b1", "BootNotification", BOOT16]
        await csms.send("CP1", dumps(3, "b1", BOOT16_CONF))
        assert await charger.recv() == [3, "b1", BOOT16_CONF]
        # The CSMS drops the link; the gateway reconnects while the charger stays.
        await csms.connections["CP1"].close()
        await asyncio.sleep(0.05)
        await csms.wait_connected("CP1", timeout=5)
        csms.auto["Heartbeat"] = {"currentTime": "2026-01-01T00:00:00Z"}
        assert (await charger.call("h1", "Heartbeat", {}))[0] == 3
    finally:
        await charger.close()
        await csms.stop()


async def test_calls_fail_cleanly_while_the_csms_stays_down(start_gateway: GatewayFactory) -> None:
    """With no CSMS at all and offline.mode reject, the charger's CALL is answered with InternalError after the
    call timeout."""
    probe = await RawCsms().start()
    port = probe.port
    await probe.stop()
    gw = await start_gateway({"main": {"url": f"ws://127.0.0.1:{port}/ocpp", "ocpp": "2.0.1"}}, call_timeout=0.5,
                             offline={"mode": "reject"})
    charger = await RawCharger.connect(ws_url(gw, "CP1"), ["ocpp2.0.1"])
    err = await charger.call("b1", "BootNotification", BOOT2, timeout=3)
    assert err[:3] == [4, "b1", "InternalError"]
    await charger.close()


async def test_second_connection_with_the_same_id_replaces_the_first(
    start_gateway: GatewayFactory, raw_csms: RawCsms
) -> None:
    """The newest connection for a charger id wins; the old one is closed."""
    gw = await start_gateway({"main": {"url": raw_csms.url, "ocpp": "1.6"}})
    first = await RawCharger.connect(ws_url(gw, "CP1"), ["ocpp1.6"])
    await raw_csms.wait_connected("CP1")
    second = await RawCharger.connect(ws_url(gw, "CP1"), ["ocpp1.6"])
    await asyncio.wait_for(first.ws.wait_closed(), 5)
    assert first.ws.close_code == 1000
    raw_csms.auto["Heartbeat"] = {"currentTime": "2026-01-01T00:00:00Z"}
    assert (await second.call("h", "Heartbeat", {}))[0] == 3
    assert len(gw.connections) == 1
    await second.close()


async def test_mixed_versions_without_a_translator_are_refused(
    start_gateway: GatewayFactory, raw_csms: RawCsms, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When no translator bridges the charger's version to the CSMS's, the handshake says so."""
    from adapters import registry

    monkeypatch.setattr(registry, "_BY_PAIR", {})
    monkeypatch.setattr(registry, "_loaded", True)
    gw = await start_gateway({"main": {"url": raw_csms.url, "ocpp": "2.0.1"}})
    with pytest.raises(InvalidStatus) as exc:
        await RawCharger.connect(ws_url(gw, "CP1"), ["ocpp1.6"])
    assert exc.value.response.status_code == 400
    assert b"cannot translate ocpp1.6" in exc.value.response.body


async def test_a_relayed_frame_goes_on_as_sent_and_the_api_shows_its_in_and_out_records(
    start_gateway: GatewayFactory, raw_csms: RawCsms
) -> None:
    """Pass-through keeps the sender's exact text; the log stores each frame once and the API shows it twice."""
    gw = await start_gateway({"main": {"url": raw_csms.url, "ocpp": "1.6"}})
    charger = await RawCharger.connect(ws_url(gw, "CP1"), ["ocpp1.6"])
    call = '[2, "h1", "Heartbeat", { }]'  # spacing no serialiser would produce
    answer = '[3,"h1",  {"currentTime": "2026-01-01T00:00:00Z"}]'
    await raw_csms.wait_connected("CP1")
    while gw.connections["CP1"].upstream_state != "up":  # a CALL that waits for the link: two rows
        await asyncio.sleep(0.01)
    await charger.send(call)
    assert await asyncio.wait_for(raw_csms.inbox.setdefault("CP1", asyncio.Queue()).get(), 5) == call
    await raw_csms.send("CP1", answer)
    assert await asyncio.wait_for(charger.ws.recv(), 5) == answer
    await gw.store.flush()
    admin = f"http://127.0.0.1:{gw.admin_port}/api/chargers/CP1/messages"
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{admin}?limit=50") as resp:
            records = await resp.json()
        async with http.get(f"{admin}?limit=1&after_id={records[0]['id']}") as resp:
            second = await resp.json()
        async with http.get(f"{admin}?limit=1") as resp:
            newest = await resp.json()

    assert [(r["direction"], r["peer"], r["message_type"], r["frame"]) for r in records] == [
        ("in", "charger", "CALL", call), ("out", "csms", "CALL", call),
        ("in", "csms", "CALLRESULT", answer), ("out", "charger", "CALLRESULT", answer),
    ]
    assert all(set(r) == {"id", "ts", "charger_id", "direction", "peer", "ocpp_version", "message_type", "action",
                          "unique_id", "payload", "frame", "error_code", "note"} for r in records)
    assert [(r["action"], r["unique_id"], r["ocpp_version"]) for r in records] == [("Heartbeat", "h1", "1.6")] * 4
    assert records[1]["payload"] == {} and records[3]["payload"] == {"currentTime": "2026-01-01T00:00:00Z"}
    ids = [r["id"] for r in records]
    assert ids[1] == ids[0] + 1 and ids[2] > ids[1] and ids[3] == ids[2] + 1
    assert second == records[1:2] and newest == records[3:]
    assert (gw.store.stats["written"], gw.store.stats["rows_written"]) == (4, 2)
    await charger.close()


async def test_message_log_api_and_metrics(start_gateway: GatewayFactory, raw_csms: RawCsms) -> None:
    """Every frame lands in the log with its fields, and /metrics counts frames, errors and connections."""
    gw = await start_gateway({"main": {"url": raw_csms.url, "ocpp": "1.6"}})
    charger = await RawCharger.connect(ws_url(gw, "CP1"), ["ocpp1.6"])
    await charger.send(dumps(2, "b1", "BootNotification", BOOT16))
    await raw_csms.recv("CP1")
    await raw_csms.send("CP1", dumps(3, "b1", BOOT16_CONF))
    await charger.recv()
    await charger.call("bad", "BootNotification", {"chargePointVendor": "ACME"})
    await gw.store.flush()
    admin = f"http://127.0.0.1:{gw.admin_port}"
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{admin}/api/chargers/CP1/messages?limit=50") as resp:
            assert resp.status == 200
            records = await resp.json()
        async with http.get(f"{admin}/api/chargers/CP1/messages?limit=x") as resp:
            assert resp.status == 400
        async with http.get(f"{admin}/api/chargers") as resp:
            chargers = await resp.json()
        async with http.get(f"{admin}/metrics") as resp:
            metrics = await resp.text()
        async with http.get(f"{admin}/healthz") as resp:
            assert (await resp.json())["status"] == "ok"
    seen = [(r["direction"], r["peer"], r["message_type"], r["action"], r["unique_id"]) for r in records]
    assert seen[:4] == [
        ("in", "charger", "CALL", "BootNotification", "b1"),
        ("out", "csms", "CALL", "BootNotification", "b1"),
        ("in", "csms", "CALLRESULT", "BootNotification", "b1"),
        ("out", "charger", "CALLRESULT", "BootNotification", "b1"),
    ]
    assert records[0]["payload"] == BOOT16 and records[0]["ocpp_version"] == "1.6"
    assert records[0]["charger_id"] == "CP1" and records[0]["ts"]
    err = [r for r in records if r["message_type"] == "CALLERROR"]
    assert err and err[-1]["error_code"] == "OccurenceConstraintViolation"
    [cp1] = [c for c in chargers if c["id"] == "CP1"]
    assert cp1["connected"] and cp1["ocpp_version"] == "1.6" and cp1["upstream"]["state"] == "up"
    assert cp1["route"]["primary"] == "main" and cp1["last_message_at"]
    assert 'ocpp_gateway_chargers_connected{ocpp_version="1.6"} 1.0' in metrics
    assert 'ocpp_gateway_frames_total{action="BootNotification",direction="in",message_type="CALL",peer="charger"}' \
        in metrics
    assert 'ocpp_gateway_callerrors_total{direction="out",error_code="OccurenceConstraintViolation"' in metrics
    assert "ocpp_gateway_validation_failures_total{" in metrics
    assert 'ocpp_gateway_upstream_links{csms="main",state="up"} 1.0' in metrics
    assert "ocpp_gateway_call_roundtrip_seconds_bucket{" in metrics
    await charger.close()
