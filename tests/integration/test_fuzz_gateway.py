"""A real gateway keeps serving while a charger throws hundreds of broken frames at it.

Frames come from the session fuzzer's generators (valid, mutated and junk
frames) plus what only a socket can carry: binary frames, invalid UTF-8,
frames over the size limits. Afterwards the same connection and a new one
still boot, /healthz answers, every CALL got exactly one answer, and the
service log holds no traceback.
"""

from __future__ import annotations

import asyncio
import io
import logging
import random
from collections import Counter
from collections.abc import Iterator
from typing import Any

import aiohttp
import orjson
import pytest
import structlog
from websockets.exceptions import ConnectionClosed

from gateway import logs, schemas
from gateway.app import Gateway
from gateway.ocppj import Version
from gateway.sim.csms import DemoCsms
from tests.conftest import GatewayFactory
from tests.rawpeers import RawCharger
from tests.unit.test_session_fuzz import deep, frame, junk_frame, mutate, random_payload

STORM = 300
CSMS_VERSION = Version.V201
BOOT = {
    Version.V16: {"chargePointVendor": "ACME", "chargePointModel": "Fuzz"},
    Version.V201: {"reason": "PowerUp", "chargingStation": {"model": "Fuzz", "vendorName": "ACME"}},
    Version.V21: {"reason": "PowerUp", "chargingStation": {"model": "Fuzz", "vendorName": "ACME"}},
}


@pytest.fixture
def service_log(caplog: pytest.LogCaptureFixture) -> Iterator[io.StringIO]:
    """The gateway's structlog output (JSON lines, as in production), captured for the test and restored after."""
    saved = structlog.get_config()
    ws_level = logging.getLogger("websockets").level
    buffer = io.StringIO()
    logs.configure(fmt="json", level="info", stream=buffer)
    yield buffer
    structlog.configure(**saved)
    logging.getLogger("websockets").setLevel(ws_level)


def tracebacks(service_log: io.StringIO, caplog: pytest.LogCaptureFixture) -> list[str]:
    """Tracebacks the gateway logged (the demo CSMS's own, if any, are not the gateway's)."""
    found = [line for line in service_log.getvalue().splitlines() if "Traceback" in line]
    for record in caplog.records:
        text = caplog.handler.format(record)
        if "Traceback" in text and "gateway/sim/" not in text:
            found.append(text)
    return found


def is_call(text: str) -> str | None:
    """The messageId of a frame that the gateway must answer (a CALL with a readable id), else None."""
    try:
        msg = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    if (
        isinstance(msg, list)
        and len(msg) > 1
        and type(msg[0]) is int
        and msg[0] == 2
        and isinstance(msg[1], str)
        and 0 < len(msg[1]) <= 36
    ):
        return msg[1]
    return None


def storm(version: Version, rng: random.Random) -> list[str | bytes]:
    """Hundreds of frames a broken or hostile charger might send, every one with its own id."""
    actions = sorted(schemas.actions(version))
    frames: list[str | bytes] = []
    for i in range(STORM):
        uid = f"f{i}"
        action = rng.choice(actions)
        payload = random_payload(version, action, False, rng) or {}
        kind = rng.choices(
            ["valid", "mutated", "junk", "binary", "bad-utf8-binary", "numbers", "nested", "wide", "oversized",
             "stray"],
            [20, 25, 25, 6, 4, 6, 5, 3, 2, 4],
        )[0]
        if kind == "valid":
            frames.append(frame(2, uid, action, payload))
        elif kind == "mutated":
            frames.append(frame(2, uid, action, mutate(payload, rng)))
        elif kind == "junk":
            frames.append(junk_frame(version, uid, rng))
        elif kind == "binary":
            frames.append(frame(2, uid, action, rng.choice([payload, mutate(payload, rng)])).encode())
        elif kind == "bad-utf8-binary":
            frames.append(rng.choice([b'[2, "' + uid.encode() + b'", "Heartbeat", {"x": "\xff\xfe"}]',
                                      bytes(rng.randrange(256) for _ in range(64))]))
        elif kind == "numbers":
            number = rng.choice(["9" * 5000, "1e400", "-1e400", "1e-400", "18446744073709551616", "-0", "1.0e+2"])
            frames.append(f'[2, "{uid}", "Heartbeat", {{"n": {number}}}]')
            frames.append(f'[2, "{uid}x", "DataTransfer", {{"vendorId": "v", "messageId": {number}}}]')
        elif kind == "nested":
            levels = rng.choice([50, 300, 1000, 5000])
            frames.append(f'[2, "{uid}", "Heartbeat", {{"x": {"[" * levels}{"]" * levels}}}]')
            frames.append(frame(2, f"{uid}y", "DataTransfer", {"vendorId": "v", "data": deep(min(levels, 1000))}))
        elif kind == "wide":
            frames.append(frame(2, uid, "DataTransfer", {"vendorId": "v", "data": list(range(10_000))}))
            frames.append(f'[2, "{uid}z", "Heartbeat", {{"{"k" * 10}": [' + ",".join(["{}"] * 10_000) + "]}]")
        elif kind == "oversized":
            frames.append(frame(2, uid, "DataTransfer", {"vendorId": "v", "data": "x" * 100_000}))
        else:
            frames.append(rng.choice([frame(3, uid, {}), frame(4, uid, "GenericError", "", {}),
                                      frame(3, "gw-never", {"status": "Accepted"})]))
    return frames


class Inbox:
    """Everything the gateway sends a charger, collected in the background."""

    def __init__(self, charger: RawCharger) -> None:
        self.charger = charger
        self.frames: list[list[Any]] = []
        self.closed: BaseException | None = None
        self.changed = asyncio.Event()
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        try:
            async for message in self.charger.ws:
                self.frames.append(orjson.loads(message))
                self.changed.set()
        except ConnectionClosed as exc:
            self.closed = exc
        self.changed.set()

    async def answer(self, uid: str, timeout: float = 15.0) -> list[Any]:
        async def wait() -> list[Any]:
            while True:
                for msg in self.frames:
                    if msg[0] in (3, 4) and msg[1] == uid:
                        return msg
                if self.closed is not None or self.charger.ws.close_code is not None:
                    raise AssertionError(f"the gateway closed the connection before answering {uid}: {self.closed}")
                self.changed.clear()
                await self.changed.wait()

        return await asyncio.wait_for(wait(), timeout)

    def answers(self) -> Counter[str]:
        return Counter(m[1] for m in self.frames if m[0] in (3, 4))


async def boot_and_heartbeat(inbox: Inbox, version: Version, tag: str) -> None:
    """A normal BootNotification and Heartbeat, answered validly by the demo CSMS through the gateway."""
    await inbox.charger.send(frame(2, f"boot-{tag}", "BootNotification", BOOT[version]))
    boot = await inbox.answer(f"boot-{tag}")
    assert boot[0] == 3 and schemas.validate(version, "BootNotification", boot[2], response=True) is None, boot
    await inbox.charger.send(frame(2, f"hb-{tag}", "Heartbeat", {}))
    beat = await inbox.answer(f"hb-{tag}")
    assert beat[0] == 3 and schemas.validate(version, "Heartbeat", beat[2], response=True) is None, beat


def url(gw: Gateway, cid: str) -> str:
    return f"ws://127.0.0.1:{gw.listen_port}/ocpp/{cid}"


@pytest.mark.parametrize("version", [Version.V16, Version.V201, Version.V21], ids=lambda v: v.value)
async def test_gateway_keeps_serving_through_a_storm_of_bad_frames(
    start_gateway: GatewayFactory, service_log: io.StringIO, caplog: pytest.LogCaptureFixture, version: Version
) -> None:
    """After hundreds of broken frames every CALL has exactly one answer, boots still work on the same and on a new
    connection, /healthz answers and the log holds no traceback."""
    csms = await DemoCsms().start()
    try:
        # The storm is sent without waiting for answers: room for all of it, so each frame is judged on its own
        # (the bound on waiting CALLs is tested in test_hostile.py).
        gw = await start_gateway({"demo": {"url": csms.url, "ocpp": CSMS_VERSION.value}},
                                 charger_calls={"max_waiting": 1000})
        charger = await RawCharger.connect(url(gw, "FUZZ-1"), [version.subprotocol], max_size=None)
        inbox = Inbox(charger)
        frames = storm(version, random.Random(f"storm/{version.value}"))
        for item in frames:
            await charger.ws.send(item)
        await boot_and_heartbeat(inbox, version, "same")

        expected = Counter(uid for item in frames
                           if (uid := is_call(item if isinstance(item, str) else item.decode("utf-8", "replace"))))
        got = inbox.answers()
        wrong = {uid: got[uid] for uid in expected if got[uid] != expected[uid]}
        assert not wrong, f"CALLs without exactly one answer (id: answers): {wrong}"
        assert len(expected) > STORM // 2

        # Frames the socket layer itself refuses: each costs only its own connection.
        bad_text = await RawCharger.connect(url(gw, "FUZZ-UTF8"), [version.subprotocol])
        await bad_text.ws.send(b'[2, "u", "Heartbeat", {"x": "\xff"}]', text=True)
        await asyncio.wait_for(bad_text.ws.wait_closed(), 5)
        assert bad_text.ws.close_code == 1007
        too_big = await RawCharger.connect(url(gw, "FUZZ-BIG"), [version.subprotocol], max_size=None)
        await too_big.ws.send(frame(2, "big", "DataTransfer", {"vendorId": "v", "data": "x" * (gw.ws_max_size + 1)}))
        await asyncio.wait_for(too_big.ws.wait_closed(), 5)
        assert too_big.ws.close_code == 1009

        fresh = Inbox(await RawCharger.connect(url(gw, "FUZZ-2"), [version.subprotocol]))
        await boot_and_heartbeat(fresh, version, "new")
        await boot_and_heartbeat(inbox, version, "again")
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{gw.admin_port}/healthz") as resp:
                assert resp.status == 200
                assert (await resp.json())["status"] == "ok"
        await charger.close()
        await fresh.charger.close()
        await asyncio.gather(inbox.task, fresh.task)
    finally:
        await csms.stop()
    assert not tracebacks(service_log, caplog)


@pytest.mark.parametrize(
    ("version", "text"),
    [
        # translated (2.1 -> 2.0.1): pass-through would relay the text as it came, without re-encoding it
        (Version.V21, '[2, "d1", "DataTransfer", {"vendorId": "v", "data": ' + "[" * 300 + "]" * 300 + "}]"),
        (Version.V21, '[2, "d1", "NotifyCustomerInformation", {"data": "d", "seqNo": 1e30, "generatedAt": '
                      '"2026-01-01T00:00:00Z", "requestId": 1}]'),
    ],
    ids=["nested-300-levels", "integral-1e30"],
)
async def test_a_frame_the_gateway_cannot_reencode_does_not_drop_the_charger(
    start_gateway: GatewayFactory, service_log: io.StringIO, caplog: pytest.LogCaptureFixture, version: Version,
    text: str,
) -> None:
    """Schema-valid frames the gateway cannot re-encode (found by the fuzzer; they once cost the connection and a
    traceback) are answered, and the connection and the log stay clean."""
    csms = await DemoCsms().start()
    try:
        gw = await start_gateway({"demo": {"url": csms.url, "ocpp": CSMS_VERSION.value}})
        inbox = Inbox(await RawCharger.connect(url(gw, "FUZZ-3"), [version.subprotocol]))
        await inbox.charger.send(text)
        await inbox.answer("d1", timeout=5)
        await boot_and_heartbeat(inbox, version, "after")
        await inbox.charger.close()
        await inbox.task
    finally:
        await csms.stop()
    assert not tracebacks(service_log, caplog)
