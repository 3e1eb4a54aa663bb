"""Raw WebSocket peers for frame-exact gateway tests: send this text, expect that text."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import Server, ServerConnection, serve

from gateway.ocppj import SUBPROTOCOLS


def dumps(*parts: Any) -> str:
    return orjson.dumps(list(parts)).decode()


class RawCsms:
    """A CSMS that records each charger connection and lets the test speak for it, frame by frame."""

    def __init__(self, subprotocols: tuple[str, ...] = SUBPROTOCOLS) -> None:
        self.subprotocols = subprotocols
        self.connections: dict[str, ServerConnection] = {}
        self.inbox: dict[str, asyncio.Queue[str]] = {}
        self.paths: list[str] = []
        self.headers: dict[str, dict[str, str]] = {}
        self.connected = asyncio.Condition()
        self.server: Server | None = None
        self.auto: dict[str, Any] = {}  # action -> payload: answer these CALLs by itself
        self.refuse_status: int | None = None

    async def start(self, port: int = 0) -> RawCsms:
        self.server = await serve(self._handler, "127.0.0.1", port, subprotocols=list(self.subprotocols),  # type: ignore[arg-type]
                                  process_request=self._process, compression=None)
        return self

    def _process(self, connection: ServerConnection, request: Any) -> Any:
        if self.refuse_status is not None:
            return connection.respond(self.refuse_status, "refused by test\n")
        return None

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(next(iter(self.server.sockets)).getsockname()[1])

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ocpp"

    async def _handler(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        cid = ws.request.path.rstrip("/").rsplit("/", 1)[-1]
        self.paths.append(ws.request.path)
        self.headers[cid] = dict(ws.request.headers.raw_items())
        queue = self.inbox.setdefault(cid, asyncio.Queue())
        async with self.connected:
            self.connections[cid] = ws
            self.connected.notify_all()
        try:
            async for msg in ws:
                text = msg if isinstance(msg, str) else msg.decode()
                frame = orjson.loads(text)
                if frame[0] == 2 and frame[2] in self.auto:
                    await ws.send(dumps(3, frame[1], self.auto[frame[2]]))
                    continue
                queue.put_nowait(text)
        except Exception:
            pass
        finally:
            if self.connections.get(cid) is ws:
                del self.connections[cid]

    async def wait_connected(self, cid: str, timeout: float = 5.0) -> ServerConnection:
        async with self.connected:
            await asyncio.wait_for(self.connected.wait_for(lambda: cid in self.connections), timeout)
        return self.connections[cid]

    async def recv(self, cid: str, timeout: float = 5.0) -> list[Any]:
        queue = self.inbox.setdefault(cid, asyncio.Queue())
        return orjson.loads(await asyncio.wait_for(queue.get(), timeout))  # type: ignore[no-any-return]

    async def send(self, cid: str, text: str) -> None:
        ws = await self.wait_connected(cid)
        await ws.send(text)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


class RawCharger:
    """A charger the test speaks for: raw text out, parsed frames in."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    @classmethod
    async def connect(cls, url: str, subprotocols: list[str] | None, **kw: Any) -> RawCharger:
        ws = await connect(url, subprotocols=subprotocols, compression=None, proxy=None, open_timeout=5, **kw)  # type: ignore[arg-type]
        return cls(ws)

    async def send(self, text: str) -> None:
        await self.ws.send(text)

    async def recv(self, timeout: float = 5.0) -> list[Any]:
        msg = await asyncio.wait_for(self.ws.recv(), timeout)
        return orjson.loads(msg)  # type: ignore[no-any-return]

    async def call(self, uid: str, action: str, payload: dict[str, Any], timeout: float = 5.0) -> list[Any]:
        await self.send(dumps(2, uid, action, payload))
        return await self.recv(timeout)

    async def close(self) -> None:
        await self.ws.close()
