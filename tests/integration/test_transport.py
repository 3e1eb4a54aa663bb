"""The direct-delivery WebSocket connections: every message reaches the handler whole, once, in order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from gateway.transport import DirectClientConnection, DirectServerConnection


class Echo:
    """A server that records what it is handed and answers each message with ``got:<message>``."""

    def __init__(self, attach_after: float = 0.0, fail_on: str | None = None) -> None:
        self.received: list[str] = []
        self.attach_after = attach_after
        self.fail_on = fail_on
        self.closed = asyncio.Event()
        self.sent_after_close: bool | None = None

    async def handler(self, ws: ServerConnection) -> None:
        assert isinstance(ws, DirectServerConnection)
        if self.attach_after:
            await asyncio.sleep(self.attach_after)

        def on_text(text: str) -> None:
            self.received.append(text)
            if text == self.fail_on:
                raise RuntimeError("handler bug")
            ws.send_now(f"got:{text}")

        ws.deliver_to(on_text)
        await ws.wait_closed()
        self.sent_after_close = ws.send_now("too late")
        self.closed.set()


@pytest.fixture
async def echo_server(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Echo, str]]:
    echo = Echo(**getattr(request, "param", {}))
    async with serve(echo.handler, "127.0.0.1", 0, create_connection=DirectServerConnection) as server:
        port = server.sockets[0].getsockname()[1]
        yield echo, f"ws://127.0.0.1:{port}"


async def test_messages_reach_the_handler_in_order_and_answers_go_back(echo_server: tuple[Echo, str]) -> None:
    """Each text message is handed over once, in order, and send_now answers on the same socket."""
    echo, url = echo_server
    async with connect(url) as ws:
        for i in range(50):
            await ws.send(f"m{i}")
        answers = [await ws.recv() for _ in range(50)]
    assert echo.received == [f"m{i}" for i in range(50)]
    assert answers == [f"got:m{i}" for i in range(50)]


async def test_a_fragmented_message_is_delivered_whole(echo_server: tuple[Echo, str]) -> None:
    """A message split over continuation frames arrives as one text."""
    echo, url = echo_server
    async with connect(url) as ws:
        await ws.send(iter(["[2,", '"1",', '"Heartbeat",{}]']))
        assert await ws.recv() == 'got:[2,"1","Heartbeat",{}]'
    assert echo.received == ['[2,"1","Heartbeat",{}]']


async def test_a_binary_message_is_read_as_utf8_text(echo_server: tuple[Echo, str]) -> None:
    """OCPP-J is text; a charger that sends binary frames still gets heard."""
    echo, url = echo_server
    async with connect(url) as ws:
        await ws.send(b'[2,"1","Heartbeat",{}]')
        assert await ws.recv() == 'got:[2,"1","Heartbeat",{}]'
    assert echo.received == ['[2,"1","Heartbeat",{}]']


async def test_invalid_utf8_in_a_text_frame_closes_with_1007(echo_server: tuple[Echo, str]) -> None:
    """RFC 6455: a text message that is not UTF-8 fails the connection with code 1007."""
    echo, url = echo_server
    async with connect(url) as ws:
        await ws.send(iter([b"\xff\xfe"]), text=True)
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1007
    assert echo.received == []


@pytest.mark.parametrize("echo_server", [{"attach_after": 0.2}], indirect=True)
async def test_messages_before_the_handler_attaches_are_kept(echo_server: tuple[Echo, str]) -> None:
    """Frames that arrive before deliver_to are handed over, in order, when it is called."""
    echo, url = echo_server
    async with connect(url) as ws:
        await ws.send("early-1")
        await ws.send("early-2")
        assert [await ws.recv(), await ws.recv()] == ["got:early-1", "got:early-2"]
    assert echo.received == ["early-1", "early-2"]


@pytest.mark.parametrize("echo_server", [{"fail_on": "boom"}], indirect=True)
async def test_a_failing_handler_does_not_break_the_connection(echo_server: tuple[Echo, str]) -> None:
    """An exception in the handler is logged; the next message is still delivered."""
    echo, url = echo_server
    async with connect(url) as ws:
        await ws.send("boom")
        await ws.send("after")
        assert await ws.recv() == "got:after"
    assert echo.received == ["boom", "after"]


async def test_send_now_after_close_returns_false(echo_server: tuple[Echo, str]) -> None:
    """Writing to a closed connection is refused quietly, not raised."""
    echo, url = echo_server
    async with connect(url) as ws:
        await ws.send("x")
        await ws.recv()
    await asyncio.wait_for(echo.closed.wait(), 5)
    assert echo.sent_after_close is False


async def test_the_client_side_delivers_directly_too() -> None:
    """DirectClientConnection hands a server's messages to its handler and answers with send_now."""
    got: list[str] = []

    async def server_handler(ws: ServerConnection) -> None:
        await ws.send("hello")
        got.append(str(await ws.recv()))

    async with serve(server_handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        client: Any = await connect(f"ws://127.0.0.1:{port}", create_connection=DirectClientConnection)
        assert isinstance(client, DirectClientConnection)

        def answer(text: str) -> None:
            client.send_now(f"re:{text}")

        client.deliver_to(answer)
        await asyncio.wait_for(client.wait_closed(), 5)
    assert got == ["re:hello"]
