"""The direct-delivery WebSocket connections: every message reaches the handler whole, once, in order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from gateway.transport import DirectClientConnection, DirectServerConnection, _FastFrames


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


@pytest.mark.parametrize(("compression", "framed_here"), [(None, True), ("deflate", False)])
async def test_the_client_side_delivers_directly_too(compression: Any, framed_here: bool) -> None:
    """DirectClientConnection hands a server's messages over and its masked answers are accepted.

    With permessage-deflate negotiated, websockets does all the framing.
    """
    got: list[str] = []

    async def server_handler(ws: ServerConnection) -> None:
        for i in range(5):
            await ws.send(f"hello {i}" * (i * 30 + 1))  # up to 1,230 bytes: 7- and 16-bit lengths
            got.append(str(await ws.recv()))

    async with serve(server_handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        client: Any = await connect(f"ws://127.0.0.1:{port}", create_connection=DirectClientConnection,
                                  compression=compression)
        assert isinstance(client, DirectClientConnection)

        fast: list[bool] = []

        def answer(text: str) -> None:
            fast.append(client.fast_framing)
            client.send_now(f"re:{text}")

        client.deliver_to(answer)
        await asyncio.wait_for(client.wait_closed(), 5)
    assert got == [f"re:{f'hello {i}' * (i * 30 + 1)}" for i in range(5)]
    assert fast[-1] is framed_here, fast  # without compression: framed here once past the handshake's segment


def test_client_frames_get_a_fresh_mask_each_also_past_one_batch_of_entropy() -> None:
    """Masks keep coming (beyond the 1,024 one read from the OS gives), 4 bytes each, none reused, payload intact."""
    links = [_FastFrames(masked_in=False, max_size=None) for _ in range(3)]
    masks = []
    for i in range(2100):
        frame = links[i % 3].frame(b"hi")
        assert frame[:2] == b"\x81\x82"
        mask = frame[2:6]
        assert bytes(b ^ mask[j % 4] for j, b in enumerate(frame[6:])) == b"hi"
        masks.append(mask)
    assert len(set(masks)) >= len(masks) - 2  # 32 random bits each: a repeat or two by chance at most


# ----------------------------------------------------------------- fast framing, byte by byte


class RawClient:
    """A hand-framed WebSocket client: exact bytes on the wire, split wherever a test wants."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, url: str) -> RawClient:
        host, port = url.removeprefix("ws://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101")
        return cls(reader, writer)

    @staticmethod
    def frame(payload: bytes, opcode: int = 1, fin: bool = True, rsv: int = 0) -> bytes:
        mask = b"\x01\x02\x03\x04"
        n = len(payload)
        length = bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + n.to_bytes(2, "big")
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        return bytes([(0x80 if fin else 0) | rsv | opcode]) + length + mask + masked

    async def send(self, *chunks: bytes) -> None:
        for chunk in chunks:
            self.writer.write(chunk)
            await self.writer.drain()
            await asyncio.sleep(0.02)  # separate TCP segments

    async def recv(self) -> tuple[int, bytes]:
        """The next frame from the server: (opcode, payload)."""
        head = await self.reader.readexactly(2)
        n = head[1] & 0x7F
        if n == 126:
            n = int.from_bytes(await self.reader.readexactly(2), "big")
        return head[0] & 0x0F, await self.reader.readexactly(n)

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


@pytest.fixture
async def fast_server() -> AsyncIterator[tuple[Echo, list[DirectServerConnection], str]]:
    echo = Echo()
    conns: list[DirectServerConnection] = []

    async def handler(ws: ServerConnection) -> None:
        assert isinstance(ws, DirectServerConnection)
        conns.append(ws)
        await echo.handler(ws)

    async with serve(handler, "127.0.0.1", 0, create_connection=DirectServerConnection, max_size=1000) as server:
        port = server.sockets[0].getsockname()[1]
        yield echo, conns, f"ws://127.0.0.1:{port}"


async def test_frames_split_across_segments_and_packed_together_are_framed_here(
    fast_server: tuple[Echo, list[DirectServerConnection], str],
) -> None:
    """Half a frame waits for the rest; two frames in one segment are two messages; the fast path stays on."""
    echo, conns, url = fast_server
    client = await RawClient.open(url)
    one, two, three = (RawClient.frame(f"message {i}".encode() * 20) for i in (1, 2, 3))
    await client.send(one[:1], one[1:3], one[3:9], one[9:] + two + three[:5], three[5:])
    for i in (1, 2, 3):
        assert await client.recv() == (1, f"got:{f'message {i}' * 20}".encode())
    assert conns[0].fast_framing
    await client.close()
    assert echo.received == [f"message {i}" * 20 for i in (1, 2, 3)]


async def test_a_ping_between_messages_is_answered_and_the_fast_path_stays_on(
    fast_server: tuple[Echo, list[DirectServerConnection], str],
) -> None:
    """Control frames go to websockets, which answers a ping with a pong, in stream order."""
    echo, conns, url = fast_server
    client = await RawClient.open(url)
    await client.send(RawClient.frame(b"a") + RawClient.frame(b"hi", opcode=9) + RawClient.frame(b"b"))
    assert [await client.recv() for _ in range(3)] == [(1, b"got:a"), (10, b"hi"), (1, b"got:b")]
    assert conns[0].fast_framing
    await client.close()
    assert echo.received == ["a", "b"]


async def test_a_fragmented_message_hands_the_stream_to_websockets(
    fast_server: tuple[Echo, list[DirectServerConnection], str],
) -> None:
    """A first fragment switches fast framing off; the message and those after it still arrive whole."""
    echo, conns, url = fast_server
    client = await RawClient.open(url)
    await client.send(RawClient.frame(b"x"))
    assert await client.recv() == (1, b"got:x")
    assert conns[0].fast_framing
    await client.send(RawClient.frame(b"[2,", fin=False) + RawClient.frame(b'"1"]', opcode=0) + RawClient.frame(b"y"))
    assert [await client.recv() for _ in range(2)] == [(1, b'got:[2,"1"]'), (1, b"got:y")]
    assert not conns[0].fast_framing
    await client.close()
    assert echo.received == ["x", '[2,"1"]', "y"]


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (RawClient.frame(b"x" * 1001), 1009),  # over max_size
        (RawClient.frame(b"x", rsv=0x40), 1002),  # reserved bit without an extension
        (RawClient.frame(b"x", opcode=3), 1002),  # reserved opcode
        (RawClient.frame(b"x", opcode=0), 1002),  # continuation without a start
        (b"\x81\x01x", 1002),  # unmasked frame from a client
    ],
)
async def test_a_bad_frame_is_judged_by_websockets(
    fast_server: tuple[Echo, list[DirectServerConnection], str], frame: bytes, code: int,
) -> None:
    """After a good message, a malformed or oversized frame closes the connection with websockets' code."""
    echo, conns, url = fast_server
    client = await RawClient.open(url)
    await client.send(RawClient.frame(b"ok"))
    assert await client.recv() == (1, b"got:ok")
    assert conns[0].fast_framing
    await client.send(frame)
    opcode, payload = await client.recv()
    assert opcode == 8 and int.from_bytes(payload[:2], "big") == code
    await client.close()
    assert echo.received == ["ok"]


async def test_closed_returns_when_the_peer_goes_and_the_handshake_headers_can_be_dropped() -> None:
    """closed() waits for the close; forget_handshake() empties the header lists and the link keeps working."""
    seen: dict[str, Any] = {}

    async def handler(ws: ServerConnection) -> None:
        assert isinstance(ws, DirectServerConnection) and ws.request is not None
        seen["before"] = len(ws.request.headers)
        ws.forget_handshake()
        seen["after"] = len(ws.request.headers)
        ws.deliver_to(lambda text: seen.setdefault("texts", []).append(text))
        ws.send_now("ready")
        await asyncio.wait_for(ws.closed(), 5)
        seen["closed"] = True
        await ws.closed()  # already closed: returns at once

    async with serve(handler, "127.0.0.1", 0, create_connection=DirectServerConnection) as server:
        port = server.sockets[0].getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}") as ws:
            assert await ws.recv() == "ready"
            await ws.send("after forgetting")
        await asyncio.sleep(0.2)
    assert seen["before"] > 0 and seen["after"] == 0
    assert seen["texts"] == ["after forgetting"] and seen["closed"]


async def test_recv_on_a_direct_connection_says_why_it_cannot_work(echo_server: tuple[Echo, str]) -> None:
    """Messages go to the handler, so recv() fails loudly instead of waiting forever."""
    _echo, url = echo_server
    client: Any = await connect(url, create_connection=DirectClientConnection)
    with pytest.raises(RuntimeError, match="delivers messages to its handler"):
        await client.recv()
    await client.close()
