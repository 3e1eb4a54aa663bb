"""The benchmark's bare relay (``python -m gateway.benchkit.relay``) is a faithful, minimal WebSocket relay."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.typing import Subprotocol

from gateway.benchkit.procs import child_setup


@pytest.fixture
async def csms() -> AsyncIterator[tuple[int, list[tuple[str, str | None]], list[str]]]:
    """A CSMS that greets each connection with a CALL, then echoes every message with a prefix."""
    seen: list[tuple[str, str | None]] = []
    received: list[str] = []

    async def handler(conn: ServerConnection) -> None:
        assert conn.request is not None
        seen.append((conn.request.path, conn.subprotocol))
        await conn.send('[2,"c1","Reset",{"type":"Soft"}]')
        async for message in conn:
            assert isinstance(message, str)
            received.append(message)
            await conn.send("echo " + message)

    async with serve(handler, "127.0.0.1", 0,
                     subprotocols=[Subprotocol(p) for p in ("ocpp1.6", "ocpp2.0.1")]) as server:
        yield next(iter(server.sockets)).getsockname()[1], seen, received


@pytest.fixture
async def relay_port(csms: tuple[int, list[tuple[str, str | None]], list[str]]) -> AsyncIterator[int]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.benchkit.relay", "--csms", f"ws://127.0.0.1:{csms[0]}/ocpp",
        stdout=asyncio.subprocess.PIPE, preexec_fn=child_setup)
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        yield int(json.loads(line)["port"])
    finally:
        proc.terminate()
        await proc.wait()


async def test_relay_copies_frames_both_ways_with_the_chargers_path_and_subprotocol(
        csms: tuple[int, list[tuple[str, str | None]], list[str]], relay_port: int) -> None:
    """Each charger gets its own upstream on the CSMS URL + its id, with the subprotocol it was given; frames from
    either side arrive unchanged, in order."""
    _, seen, received = csms
    async with connect(f"ws://127.0.0.1:{relay_port}/ocpp/CP-1", subprotocols=[Subprotocol("ocpp2.0.1")]) as cp1, \
            connect(f"ws://127.0.0.1:{relay_port}/x/CP-2", subprotocols=[Subprotocol("ocpp1.6")]) as cp2:
        assert cp1.subprotocol == "ocpp2.0.1" and cp2.subprotocol == "ocpp1.6"
        for charger in (cp1, cp2):
            assert await asyncio.wait_for(charger.recv(), 10) == '[2,"c1","Reset",{"type":"Soft"}]'
        frames = [f'[2,"{i}","Heartbeat",{{}}]' for i in range(3)] + ['{"é": "\\u0000 ✓"}']
        for frame in frames:
            await cp1.send(frame)
        assert [await asyncio.wait_for(cp1.recv(), 10) for _ in frames] == ["echo " + f for f in frames]
        await cp2.send("from two")
        assert await asyncio.wait_for(cp2.recv(), 10) == "echo from two"
    assert sorted(seen) == [("/ocpp/CP-1", "ocpp2.0.1"), ("/ocpp/CP-2", "ocpp1.6")]
    assert received == [*frames, "from two"]
