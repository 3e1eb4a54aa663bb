"""Hostile and careless chargers against a real gateway: no impersonation, no starvation, bounded storage.

One gateway (real sockets on port 0, real SQLite store) serves the whole
module. A bystander charger sends a Heartbeat every 50 ms throughout; every
attack runs inside ``arena.attack()``, which afterwards asserts that the
bystander's heartbeats stayed under 1 s, that /healthz answers, and that the
recording CSMS received nothing invalid. Figures (RSS, latency) are printed:
run with ``-s`` to see them.
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import pytest_asyncio
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.frames import Frame, Opcode

from gateway import ocppj, schemas
from gateway.app import Gateway
from gateway.config import parse_config
from gateway.ocppj import Version
from tests.conftest import gateway_config
from tests.rawpeers import dumps

pytestmark = pytest.mark.asyncio(loop_scope="module")

V16, V201 = Version.V16, Version.V201
NOW = "2026-01-01T00:00:00Z"
PASSWORD = "s3cret-AuthorizationKey"
ADMIN_TOKEN = "admin-T0ken"
MAX_BYSTANDER_LATENCY = 1.0
# What the recording CSMS answers by itself; everything else (DataTransfer) it leaves unanswered.
AUTO_ANSWERS: dict[str, dict[str, Any]] = {
    "Heartbeat": {"currentTime": NOW},
    "BootNotification": {"status": "Accepted", "currentTime": NOW, "interval": 300},
    "StatusNotification": {},
    "Authorize": {"idTagInfo": {"status": "Accepted"}},
}


def rss_mib() -> float:
    """This process's resident set (the gateway runs in it), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


# ---------------------------------------------------------------- peers


class RecordingCsms:
    """A 1.6 CSMS that records every connection path and frame, and judges each frame against its schema."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.frames: dict[str, list[list[Any]]] = {}
        self.invalid: list[str] = []
        self.server: Server | None = None
        self.open: set[ServerConnection] = set()

    async def start(self) -> RecordingCsms:
        self.server = await serve(self._handle, "127.0.0.1", 0, subprotocols=["ocpp1.6"],  # type: ignore[list-item]
                                  compression=None, max_size=None)
        return self

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"ws://127.0.0.1:{next(iter(self.server.sockets)).getsockname()[1]}/ocpp"

    def received(self, cid: str) -> list[list[Any]]:
        return self.frames.get(cid, [])

    async def _handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        path = ws.request.path
        self.paths.append(path)
        cid = path.rsplit("/", 1)[-1]
        self.open.add(ws)
        try:
            async for message in ws:
                text = message if isinstance(message, str) else message.decode()
                frame = self._judge(text)
                if frame is None:
                    continue
                self.frames.setdefault(cid, []).append(orjson.loads(text))
                if isinstance(frame, ocppj.Call) and frame.action in AUTO_ANSWERS:
                    await ws.send(dumps(3, frame.unique_id, AUTO_ANSWERS[frame.action]))
        except ConnectionClosed:
            pass
        finally:
            self.open.discard(ws)

    def _judge(self, text: str) -> ocppj.Frame | None:
        try:
            frame = ocppj.parse(text, V16)
        except ocppj.FrameError as exc:
            self.invalid.append(f"{exc.description}: {text[:200]}")
            return None
        if isinstance(frame, ocppj.Call):
            violation = schemas.validate(V16, frame.action, frame.payload)
            if violation is not None:
                self.invalid.append(f"{violation.describe()}: {text[:200]}")
        return frame

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


class Charger:
    """A charger the test speaks for; every frame the gateway sends it is collected in the background."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.inbox: list[list[Any]] = []
        self.changed = asyncio.Event()
        self.reader = asyncio.create_task(self._read())

    @classmethod
    async def connect(cls, url: str, version: Version = V16, **kw: Any) -> Charger:
        ws = await connect(url, subprotocols=[version.subprotocol], compression=None, proxy=None,  # type: ignore[list-item]
                           open_timeout=5, **kw)
        return cls(ws)

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                self.inbox.append(orjson.loads(message))
                self.changed.set()
        except ConnectionClosed:
            pass
        self.changed.set()

    async def until(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        async def wait() -> None:
            while not predicate():
                if self.reader.done():
                    raise AssertionError(f"closed ({self.ws.close_code} {self.ws.close_reason}); got {self.inbox}")
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(wait(), timeout)

    def answer(self, uid: str) -> list[Any] | None:
        return next((m for m in self.inbox if m[0] in (3, 4) and m[1] == uid), None)

    async def call(self, uid: str, action: str, payload: dict[str, Any], timeout: float = 10.0) -> list[Any]:
        await self.ws.send(dumps(2, uid, action, payload))
        await self.until(lambda: self.answer(uid) is not None, timeout)
        answer = self.answer(uid)
        assert answer is not None
        return answer

    async def blast(self, texts: list[str]) -> int:
        """Write ``texts`` as fast as the socket takes them, never waiting for an answer; how many were written."""
        transport = self.ws.transport
        frames = [Frame(Opcode.TEXT, t.encode()).serialize(mask=True, extensions=[]) for t in texts]
        written = 0
        for start in range(0, len(frames), 1000):
            if transport.is_closing():
                break
            transport.write(b"".join(frames[start:start + 1000]))
            written += len(frames[start:start + 1000])
            await asyncio.sleep(0)
        return written

    async def closed(self, timeout: float = 10.0) -> tuple[int | None, str | None]:
        await asyncio.wait_for(self.ws.wait_closed(), timeout)
        await self.reader
        return self.ws.close_code, self.ws.close_reason

    async def close(self) -> None:
        await self.ws.close()
        await self.reader


@dataclass
class Bystander:
    """A well-behaved charger beating every 50 ms; its latencies are the gateway's fairness."""

    charger: Charger
    latencies: list[float] = field(default_factory=list)
    started_at: float | None = None  # the beat in flight, if any
    task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._beat())

    async def _beat(self) -> None:
        n = 0
        while True:
            n += 1
            self.started_at = time.monotonic()
            await self.charger.call(f"beat-{n}", "Heartbeat", {}, timeout=30)
            self.latencies.append(time.monotonic() - self.started_at)
            self.started_at = None
            await asyncio.sleep(0.05)

    def worst(self) -> float:
        pending = time.monotonic() - self.started_at if self.started_at is not None else 0.0
        return max([pending, *self.latencies])


@dataclass
class Arena:
    gw: Gateway
    csms: RecordingCsms
    bystander: Bystander
    http: aiohttp.ClientSession

    def url(self, cid: str) -> str:
        return f"ws://127.0.0.1:{self.gw.listen_port}/ocpp/{cid}"

    def admin(self, path: str) -> str:
        return f"http://127.0.0.1:{self.gw.admin_port}{path}"

    async def healthz(self) -> None:
        timeout = aiohttp.ClientTimeout(total=MAX_BYSTANDER_LATENCY)
        async with self.http.get(self.admin("/healthz"), timeout=timeout) as r:
            assert r.status == 200 and (await r.json())["status"] == "ok"

    async def metric(self, name: str, **labels: str) -> float:
        async with self.http.get(self.admin("/metrics")) as r:
            text = await r.text()
        want = ",".join(f'{k}="{v}"' for k, v in labels.items())
        for line in text.splitlines():
            if line.startswith(f"{name}{{{want}}} ") or (not labels and line.startswith(f"{name} ")):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    @asynccontextmanager
    async def attack(self, label: str) -> AsyncIterator[None]:
        """Run an attack; afterwards the bystander was never slow, the gateway is up, the CSMS saw nothing invalid."""
        by = self.bystander
        by.latencies.clear()
        yield
        beats = len(by.latencies)
        await asyncio.sleep(0.2)  # a beat or more after the attack
        await self.healthz()
        worst = by.worst()
        print(f"\n[{label}] bystander: {len(by.latencies)} heartbeats, worst {worst * 1000:.0f} ms")
        assert worst < MAX_BYSTANDER_LATENCY, f"{label}: a bystander heartbeat took {worst:.2f} s"
        assert len(by.latencies) > beats, f"{label}: the bystander stopped getting answers"
        assert by.task is not None and not by.task.done()
        assert not self.csms.invalid, f"{label}: the CSMS received invalid frames: {self.csms.invalid[:5]}"


async def start_gateway(tmp: Path, csms: RecordingCsms, **overrides: Any) -> Gateway:
    cfg = gateway_config(tmp, {"main": {"url": csms.url, "ocpp": "1.6"}}, **overrides)
    gw = Gateway(parse_config(cfg))
    await gw.start()
    return gw


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def arena(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Arena]:
    saved = {k: os.environ.get(k) for k in ("CPPW_PASSWORD", "HOSTILE_ADMIN_TOKEN")}
    os.environ["CPPW_PASSWORD"] = PASSWORD
    os.environ["HOSTILE_ADMIN_TOKEN"] = ADMIN_TOKEN
    csms = await RecordingCsms().start()
    gw = await start_gateway(
        tmp_path_factory.mktemp("hostile"), csms,
        chargers={"CPPW": {"password_env": "CPPW_PASSWORD"}},
        admin={"host": "127.0.0.1", "port": 0, "token_env": "HOSTILE_ADMIN_TOKEN"},
        admission={"rate": 10_000, "burst": 10_000, "max_pending": 2_000},
        call_timeout=5,
    )
    bystander = Bystander(await Charger.connect(f"ws://127.0.0.1:{gw.listen_port}/ocpp/BYSTANDER"))
    bystander.start()
    while not bystander.latencies:  # its upstream link is up and answering
        await asyncio.sleep(0.02)
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as http:
        yield Arena(gw, csms, bystander, http)
    assert bystander.task is not None
    bystander.task.cancel()
    await bystander.charger.close()
    await gw.stop()
    await csms.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


# ---------------------------------------------------------------- 1. impersonation through the upstream URL

IMPERSONATIONS = [
    # (what the charger puts after /ocpp/, HTTP status, words of the reason)
    ("CPPW%23", 400, "'#'"),
    ("CPPW%3Fx=1", 400, "'?'"),
    ("EVIL%2FCPPW", 400, "'/'"),
    ("..%2F..%2Fadmin", 400, "'/'"),
    ("..", 400, "relative path segment"),
    ("CPPW%0D%0AX-Injected:%201", 400, "'\\n', '\\r'"),
    ("CPPW%00", 400, "'\\x00'"),
    ("CP%20PW", 400, "' '"),
    ("CPPW%C2%A0", 400, "'\\xa0'"),
    ("CPPW%FF", 400, "not percent-encoded UTF-8"),
    ("CPPW%", 400, "'%'"),
    ("C" * 49, 400, "at most 48"),
    ("", 404, "must end with the charger id"),
    ("CPPW/", 404, "must end with the charger id"),
]


@pytest.mark.parametrize(("tail", "status", "reason"), IMPERSONATIONS, ids=[t[0] or "(empty)" for t in IMPERSONATIONS])
async def test_ids_that_could_mean_another_path_upstream_are_refused(arena: Arena, tail: str, status: int,
                                                                     reason: str) -> None:
    """An id outside the identifierString alphabet gets a clear HTTP error and never reaches the CSMS."""
    async with arena.attack(f"id {tail!r}"):
        paths = len(arena.csms.paths)
        with pytest.raises(InvalidStatus) as exc:
            await Charger.connect(arena.url(tail))
        response = exc.value.response
        assert response.status_code == status
        assert reason in response.body.decode(), response.body
        await asyncio.sleep(0.05)
        assert arena.csms.paths[paths:] == []


async def test_a_protected_charger_is_reached_only_with_its_credentials(arena: Arena) -> None:
    """CPPW without a password gets 401; with it (any case of 'Basic') the CSMS sees exactly /ocpp/CPPW."""
    async with arena.attack("protected charger"):
        with pytest.raises(InvalidStatus) as exc:
            await Charger.connect(arena.url("CPPW"))
        assert exc.value.response.status_code == 401
        for scheme in ("Basic", "basic", "BASIC"):
            header = basic("CPPW", PASSWORD)["Authorization"].replace("Basic", scheme, 1)
            charger = await Charger.connect(arena.url("CPPW"), additional_headers={"Authorization": header})
            assert (await charger.call(f"h-{scheme}", "Heartbeat", {}))[0] == 3
            await charger.close()
        assert set(arena.csms.paths) - {"/ocpp/BYSTANDER"} <= {"/ocpp/CPPW"}


async def test_a_widened_alphabet_keeps_the_id_one_encoded_segment(tmp_path: Path) -> None:
    """With '#' admitted, CPPW%23 is charger 'CPPW#' everywhere and reaches the CSMS as /ocpp/CPPW%23 (not CPPW)."""
    csms = await RecordingCsms().start()
    gw = await start_gateway(tmp_path, csms, charger_ids={"extra_characters": "#"})
    try:
        charger = await Charger.connect(f"ws://127.0.0.1:{gw.listen_port}/ocpp/CPPW%23")
        assert (await charger.call("h1", "Heartbeat", {}))[0] == 3
        assert csms.paths == ["/ocpp/CPPW%23"]
        assert list(gw.connections) == ["CPPW#"]
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{gw.admin_port}/api/chargers/CPPW%23") as r:
                described = await r.json()
            assert described["id"] == "CPPW#" and described["upstream"]["url"].endswith("/ocpp/CPPW%23")
            await gw.store.flush()
            async with http.get(f"http://127.0.0.1:{gw.admin_port}/api/chargers/CPPW%23/messages") as r:
                assert {m["charger_id"] for m in await r.json()} == {"CPPW#"}
        with pytest.raises(InvalidStatus) as exc:  # widening never admits control characters
            await Charger.connect(f"ws://127.0.0.1:{gw.listen_port}/ocpp/CPPW%0A")
        assert exc.value.response.status_code == 400
        await charger.close()
    finally:
        await gw.stop()
        await csms.stop()


# ---------------------------------------------------------------- 2. one charger must not freeze the gateway


@pytest.mark.parametrize("count", [20_000, pytest.param(100_000, marks=pytest.mark.slow)])
async def test_a_flood_of_unawaited_calls_is_refused_then_closed(arena: Arena, count: int) -> None:
    """CALLs beyond 100 waiting get ProtocolError; after 1000 such refusals the charger is closed with 1008."""
    async with arena.attack(f"flood of {count}"):
        flooder = await Charger.connect(arena.url(f"FLOOD{count}"))
        texts = [dumps(2, f"f{i}", "DataTransfer", {"vendorId": "flood"}) for i in range(count)]
        started = time.monotonic()
        sent = await flooder.blast(texts)
        code, reason = await flooder.closed()
        print(f"\n[flood of {count}] sent {sent} before the close, {time.monotonic() - started:.2f} s; "
              f"{len(flooder.inbox)} answers; close {code} {reason!r}")
        assert code == 1008 and reason is not None and "1000 CALLs refused in a row" in reason
        refusals = [m for m in flooder.inbox if m[0] == 4]
        assert len(refusals) == 999 and {m[2] for m in refusals} == {"ProtocolError"}
        assert [m[1] for m in refusals] == [f"f{i}" for i in range(101, 1100)]  # f0 in flight, f1-f100 wait
        await asyncio.sleep(0.1)
        assert [m[1] for m in arena.csms.received(f"FLOOD{count}")] == ["f0"]  # one at a time, nothing more
    again = await Charger.connect(arena.url(f"FLOOD{count}"))
    assert (await again.call("after", "Heartbeat", {}))[0] == 3
    await again.close()


async def test_a_pipelining_charger_under_the_limit_gets_every_answer_in_order(arena: Arena) -> None:
    """100 CALLs sent without waiting are all relayed one at a time and answered in order."""
    async with arena.attack("pipelining 100"):
        charger = await Charger.connect(arena.url("PIPELINE"))
        for i in range(100):
            await charger.ws.send(dumps(2, f"p{i}", "Heartbeat", {}))
        await charger.until(lambda: len(charger.inbox) >= 100)
        assert [(m[0], m[1]) for m in charger.inbox] == [(3, f"p{i}") for i in range(100)]
        assert [m[1] for m in arena.csms.received("PIPELINE")] == [f"p{i}" for i in range(100)]
        await charger.close()


# ---------------------------------------------------------------- 3. oversized frames


async def test_refused_oversized_frames_cost_neither_disk_nor_memory(arena: Arena) -> None:
    """100 refused 1 MB frames are answered, logged as size, digest and head, counted, and their memory freed."""
    gw = arena.gw
    db = Path(gw.config.store.removeprefix("sqlite:///"))
    async with arena.attack("100 oversized frames"):
        charger = await Charger.connect(arena.url("BIGMOUTH"), max_size=None)
        await gw.store.flush()
        disk_before = sum(p.stat().st_size for p in db.parent.glob(db.name + "*"))
        counted_before = await arena.metric("ocpp_gateway_problems_total", event="oversized_frame")
        rss_before = rss_mib()
        for i in range(100):
            big = dumps(2, f"big{i}", "DataTransfer", {"vendorId": "v", "data": f"{i:03d}" + "x" * 1_000_000})
            assert 1_000_000 < len(big) < gw.ws_max_size
            await charger.ws.send(big)
            del big
            await charger.until(lambda i=i: charger.answer(f"big{i}") is not None)  # type: ignore[misc]
        await gw.store.flush()
        rss_after = rss_mib()
        disk_after = sum(p.stat().st_size for p in db.parent.glob(db.name + "*"))
        print(f"\n[oversized] RSS {rss_before:.1f} -> {rss_after:.1f} MiB; "
              f"log +{(disk_after - disk_before) / 1e6:.2f} MB for 100 refused 1 MB frames")
        assert {tuple(m[:3]) for m in charger.inbox} == {(4, f"big{i}", "FormationViolation") for i in range(100)}
        assert await arena.metric("ocpp_gateway_problems_total", event="oversized_frame") == counted_before + 100
        assert disk_after - disk_before < 5_000_000
        assert rss_after - rss_before < 30
        async with arena.http.get(arena.admin("/api/chargers/BIGMOUTH/messages?limit=1000")) as r:
            records = [m for m in await r.json() if m["message_type"] == "INVALID"]
        assert len(records) == 100
        assert all(len(m["frame"]) < 4500 and "[truncated by the gateway: " in m["frame"] for m in records)
        assert all("sha256" in m["note"] for m in records)
        assert arena.csms.received("BIGMOUTH") == []
        await charger.close()


# ---------------------------------------------------------------- 5. auth details


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
async def test_the_admin_token_is_accepted_in_any_case_of_bearer(arena: Arena, scheme: str) -> None:
    """/api/* accepts the token after any spelling of the scheme, and only the exact token."""
    async with arena.attack(f"admin {scheme}"), aiohttp.ClientSession() as http:
        url = arena.admin("/api/chargers")
        async with http.get(url, headers={"Authorization": f"{scheme} {ADMIN_TOKEN}"}) as r:
            assert r.status == 200
        async with http.get(url, headers={"Authorization": f"{scheme} {ADMIN_TOKEN.upper()}"}) as r:
            assert r.status == 401


# ---------------------------------------------------------------- malformed input that is handled well today


@dataclass(frozen=True)
class Bad:
    """A frame a broken charger sends, and what it must get: a CALLERROR (code, id), silence, or a close code."""

    name: str
    frame: str | bytes
    code: str | None = None  # the CALLERROR's code; None: no answer at all
    uid: str = "-1"
    version: Version = V16
    close: int | None = None
    forwarded: bool = False  # the CSMS receives it (valid after all)
    binary: bool = False


def call(uid: str, action: str, payload: Any) -> str:
    return dumps(2, uid, action, payload)


STATUS_OK = {"connectorId": 1, "errorCode": "NoError", "status": "Available"}
BOOT201 = {"reason": "PowerUp", "chargingStation": {"model": "M", "vendorName": "V"}}
MALFORMED = [
    # malformed JSON and framing
    Bad("not JSON", '[2, "a", "Heartbeat", {]', "FormationViolation"),
    Bad("empty text", "", "FormationViolation"),
    Bad("NaN literal", '[2, "a", "Heartbeat", {"n": NaN}]', "FormationViolation"),
    Bad("byte-order mark", '\ufeff[2, "a", "Heartbeat", {}]', "FormationViolation"),
    Bad("trailing garbage", '[2, "a", "Heartbeat", {}] x', "FormationViolation"),
    Bad("JSON object", '{"a": 1}', "ProtocolError"),
    Bad("empty array", "[]", "ProtocolError"),
    Bad("JSON string", '"Heartbeat"', "ProtocolError"),
    Bad("JSON null", "null", "ProtocolError"),
    Bad("type only", "[2]", "ProtocolError"),
    Bad("numeric messageId", '[2, 5, "Heartbeat", {}]', "ProtocolError"),
    Bad("empty messageId", '[2, "", "Heartbeat", {}]', "ProtocolError"),
    Bad("37-character messageId", call("x" * 37, "Heartbeat", {}), "ProtocolError"),
    # wrong types in the frame
    Bad("string type id", '["2", "a", "Heartbeat", {}]', "ProtocolError", "a"),
    Bad("float type id", '[2.0, "a", "Heartbeat", {}]', "ProtocolError", "a"),
    Bad("boolean type id", '[true, "a", "Heartbeat", {}]', "ProtocolError", "a"),
    Bad("unknown type id 9", '[9, "a", "Heartbeat", {}]', "ProtocolError", "a"),
    Bad("2.1 SEND in 1.6", '[6, "a", "Heartbeat", {}]', "ProtocolError", "a"),
    Bad("CALL too short", '[2, "a", "Heartbeat"]', "FormationViolation", "a"),
    Bad("CALL too long", '[2, "a", "Heartbeat", {}, {}]', "FormationViolation", "a"),
    Bad("numeric action", '[2, "a", 7, {}]', "FormationViolation", "a"),
    Bad("array payload", '[2, "a", "Heartbeat", []]', "FormationViolation", "a"),
    Bad("null payload", '[2, "a", "Heartbeat", null]', "FormationViolation", "a"),
    Bad("CALLRESULT too short", '[3, "a"]', "FormationViolation", "a"),
    Bad("CALLERROR without strings", '[4, "a", 5, 6]', "FormationViolation", "a"),
    # unknown actions
    Bad("unknown action", call("a", "FlyToTheMoon", {}), "NotImplemented", "a"),
    Bad("2.0.1 action on 1.6", call("a", "TransactionEvent", {}), "NotImplemented", "a"),
    Bad("action in lower case", call("a", "heartbeat", {}), "NotImplemented", "a"),
    # payloads that break the schema
    Bad("wrong field type", call("a", "StatusNotification", {**STATUS_OK, "connectorId": "one"}),
        "TypeConstraintViolation", "a"),
    Bad("missing required field", call("a", "StatusNotification", {"connectorId": 1}),
        "OccurenceConstraintViolation", "a"),
    Bad("value outside the enum", call("a", "StatusNotification", {**STATUS_OK, "status": "Flying"}),
        "PropertyConstraintViolation", "a"),
    Bad("string over maxLength", call("a", "Authorize", {"idTag": "x" * 21}), "PropertyConstraintViolation", "a"),
    Bad("unknown property", call("a", "Authorize", {"idTag": "T1", "admin": True}), "FormationViolation", "a"),
    Bad("integer beyond 64 bits", '[2, "a", "StatusNotification", {"connectorId": 18446744073709551616, '
        '"errorCode": "NoError", "status": "Available"}]', "TypeConstraintViolation", "a"),
    Bad("number beyond double", '[2, "a", "DataTransfer", {"vendorId": "v", "data": 1e400}]', "FormationViolation"),
    Bad("lone surrogate", '[2, "a", "Authorize", {"idTag": "\\ud800"}]', "FormationViolation"),
    # deep nesting
    Bad("300 levels deep", '[2, "a", "DataTransfer", {"vendorId": "v", "data": ' + "[" * 300 + "]" * 300 + "}]",
        "TypeConstraintViolation", "a"),
    Bad("5000 levels deep", '[2, "a", "DataTransfer", {"vendorId": "v", "data": ' + "[" * 5000 + "]" * 5000 + "}]",
        "FormationViolation"),
    # answers nobody asked for
    Bad("stray CALLRESULT", dumps(3, "never-asked", {})),
    Bad("stray CALLERROR", dumps(4, "never-asked", "GenericError", "", {})),
    # bytes on the socket
    Bad("invalid UTF-8 in a text frame", b'[2, "a", "Heartbeat", {"x": "\xff"}]', close=1007),
    Bad("binary frame with a valid CALL", call("a", "Authorize", {"idTag": "T1"}).encode(), "", "a", forwarded=True,
        binary=True),
    Bad("binary garbage", bytes(range(256)), "FormationViolation", binary=True),
    Bad("frame over max_frame_bytes", call("a", "DataTransfer", {"vendorId": "v", "data": "x" * 70_000}),
        "FormationViolation", "a"),
    Bad("frame over the WebSocket limit", call("a", "DataTransfer", {"vendorId": "v", "data": "x" * 1_100_000}),
        close=1009),
    Bad("padded with whitespace", "  \n" + call("a", "Authorize", {"idTag": "T1"}) + " \t", "", "a", forwarded=True),
    # the 2.0.1 spellings of the same answers
    Bad("2.0.1 not JSON", "[2, ", "FormatViolation", version=V201),
    Bad("2.0.1 numeric messageId", '[2, 5, "Heartbeat", {}]', "RpcFrameworkError", version=V201),
    Bad("2.0.1 unknown type id", '[7, "a", "Heartbeat", {}]', "MessageTypeNotSupported", "a", version=V201),
    Bad("2.0.1 unknown action", call("a", "FlyToTheMoon", {}), "NotImplemented", "a", version=V201),
    Bad("2.0.1 missing field", call("a", "BootNotification", {"reason": "PowerUp"}),
        "OccurrenceConstraintViolation", "a", version=V201),
    Bad("2.0.1 wrong type", call("a", "BootNotification", {**BOOT201, "reason": 5}), "TypeConstraintViolation", "a",
        version=V201),
]


@pytest.mark.parametrize("bad", MALFORMED, ids=[b.name for b in MALFORMED])
async def test_malformed_input_gets_its_answer_and_costs_nobody_else(arena: Arena, bad: Bad) -> None:
    """Each broken frame gets the sender's own answer (or a close), the connection carries on, the CSMS sees nothing."""
    cid = "BAD-" + "".join(ch if ch.isalnum() else "-" for ch in bad.name)[:40]
    async with arena.attack(bad.name):
        charger = await Charger.connect(arena.url(cid), bad.version, max_size=None)
        await charger.ws.send(bad.frame, text=not bad.binary)
        if bad.close is not None:
            code, _ = await charger.closed()
            assert code == bad.close
            assert arena.csms.received(cid) == []
            return
        after = await charger.call("after", "Heartbeat", {})
        assert after[0] == 3, after
        before_after = charger.inbox[: charger.inbox.index(after)]
        if bad.code is None:
            assert before_after == []
        elif bad.forwarded:
            assert [m[:2] for m in before_after] == [[3, bad.uid]]
        else:
            assert [m[:3] for m in before_after] == [[4, bad.uid, bad.code]], before_after
        # Heartbeats are the charger's "after" and, for a 2.0.1 charger, the translator's own.
        forwarded = [m for m in arena.csms.received(cid) if m[:1] != [2] or m[2] != "Heartbeat"]
        assert len(forwarded) == (1 if bad.forwarded else 0), forwarded
        await charger.close()


async def test_a_duplicate_id_of_a_waiting_call_is_refused(arena: Arena) -> None:
    """Reusing the messageId of an unanswered CALL gets ProtocolError; the CSMS sees the id once."""
    async with arena.attack("duplicate id"):
        charger = await Charger.connect(arena.url("DUPLICATE"))
        await charger.ws.send(call("same", "DataTransfer", {"vendorId": "v"}))  # the CSMS leaves it unanswered
        await charger.ws.send(call("same", "DataTransfer", {"vendorId": "v"}))
        await charger.until(lambda: charger.answer("same") is not None)
        assert charger.inbox[0][:3] == [4, "same", "ProtocolError"]
        await asyncio.sleep(0.1)
        assert [m[1] for m in arena.csms.received("DUPLICATE")] == ["same"]
        await charger.close()


async def test_a_fragmented_message_is_reassembled(arena: Arena) -> None:
    """A CALL split into WebSocket fragments is relayed like any other."""
    async with arena.attack("fragments"):
        charger = await Charger.connect(arena.url("FRAGMENTS"))
        text = call("frag", "Authorize", {"idTag": "T1"})
        await charger.ws.send([text[:5], text[5:20], text[20:]])
        await charger.until(lambda: charger.answer("frag") is not None)
        assert charger.answer("frag") == [3, "frag", AUTO_ANSWERS["Authorize"]]
        await charger.close()


HANDSHAKES = [
    # (request bytes, expected status; None: closed without an HTTP answer)
    (b"GET /ocpp/HS1 HTTP/1.1\r\nHost: x\r\n\r\n", 400),  # no Upgrade (and no subprotocol)
    (b"POST /ocpp/HS1 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 400),
    (b"GET /ocpp/HS1 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
     b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", 400),  # no subprotocol
    (b"GET /ocpp/HS1 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
     b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
     b"Sec-WebSocket-Protocol: ocpp9.9\r\n\r\n", 400),
    (b"GET /ocpp/HS1 HTTP/1.1\r\n" + b"X-Long: " + b"a" * 10_000 + b"\r\n\r\n", 431),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(32) + b"\r\n\r\n", None),  # TLS to a plain port
]


@pytest.mark.parametrize(("request_bytes", "status"), HANDSHAKES,
                         ids=["no-upgrade", "post", "no-subprotocol", "unknown-subprotocol", "huge-header", "tls"])
async def test_broken_handshakes_get_an_http_error(arena: Arena, request_bytes: bytes, status: int | None) -> None:
    """A handshake that is not an OCPP WebSocket upgrade is answered with an HTTP error (or not at all) and closed."""
    async with arena.attack(f"handshake {status}"):
        reader, writer = await asyncio.open_connection("127.0.0.1", arena.gw.listen_port)
        writer.write(request_bytes)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        if status is None:
            assert answer == b""
            return
        assert answer.startswith(b"HTTP/1.1 "), answer[:100]
        assert int(answer[9:12]) == status, answer[:200]


# ---------------------------------------------------------------- slow handshakes and churn


@pytest.mark.slow
async def test_slow_handshakes_are_cut_and_leave_nothing_behind(arena: Arena) -> None:
    """300 connections trickling their handshake are cut by the handshake timeout; new chargers get in meanwhile."""
    fds_before, rss_before = open_fds(), rss_mib()
    async with arena.attack("slowloris"):
        slow = [await asyncio.open_connection("127.0.0.1", arena.gw.listen_port) for _ in range(300)]
        for _, writer in slow:
            writer.write(b"GET /ocpp/SLOW HTTP/1.1\r\n")
        rss_during = rss_mib()
        newcomer = await Charger.connect(arena.url("NEWCOMER"))
        assert (await newcomer.call("n", "Heartbeat", {}))[0] == 3
        await newcomer.close()

        async def trickle_until_cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> float:
            started = time.monotonic()
            while not reader.at_eof():
                try:
                    writer.write(b"X")
                    await asyncio.wait_for(reader.read(1024), 1.0)
                except TimeoutError:
                    continue
                except OSError:
                    break
            writer.close()
            return time.monotonic() - started

        cut_after = await asyncio.wait_for(asyncio.gather(*(trickle_until_cut(r, w) for r, w in slow)), 20)
    await asyncio.sleep(0.2)
    fds_after, rss_after = open_fds(), rss_mib()
    print(f"\n[slowloris] 300 slow handshakes: RSS {rss_before:.1f} -> {rss_during:.1f} (held) -> {rss_after:.1f} MiB "
          f"(cut); fds {fds_before} -> {fds_after}; cut after {max(cut_after):.1f} s at most")
    assert max(cut_after) < 15
    assert fds_after <= fds_before + 5
    assert rss_after - rss_before < 30


async def test_connect_disconnect_churn_leaves_nothing_behind(arena: Arena) -> None:
    """1000 connects and disconnects (clean, abrupt, mid-CALL) end with no leftover connection, fd or memory."""
    gw = arena.gw
    fds_before, rss_before = open_fds(), rss_mib()
    connected_before = set(gw.connections)

    async def churn(i: int) -> None:
        charger = await Charger.connect(arena.url(f"CHURN-{i % 40}"))
        if i % 3 == 0:
            await charger.call(f"c{i}", "Heartbeat", {})
        if i % 3 == 1:
            await charger.ws.send(call(f"c{i}", "DataTransfer", {"vendorId": "v"}))  # left waiting upstream
        if i % 5 == 0:
            charger.ws.transport.abort()  # no close handshake
            charger.reader.cancel()
        else:
            await charger.close()

    async with arena.attack("churn"):
        for batch in range(0, 1000, 25):
            await asyncio.gather(*(churn(i) for i in range(batch, batch + 25)), return_exceptions=False)
        deadline = time.monotonic() + 10
        while set(gw.connections) != connected_before and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)
    fds_after, rss_after = open_fds(), rss_mib()
    print(f"\n[churn] 1000 connects: RSS {rss_before:.1f} -> {rss_after:.1f} MiB; fds {fds_before} -> {fds_after}; "
          f"upstream sockets open at the CSMS: {len(arena.csms.open)}")
    assert set(gw.connections) == connected_before
    assert await arena.metric("ocpp_gateway_chargers_connected", ocpp_version="1.6") == len(connected_before)
    assert fds_after <= fds_before + 5
    assert rss_after - rss_before < 40

