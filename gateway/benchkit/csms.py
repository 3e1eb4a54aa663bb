"""A fast simulated CSMS: a raw asyncio WebSocket server answering every CALL with pre-serialised bytes.

    python -m gateway.benchkit.csms [--host 127.0.0.1] [--port 0]

Prints one JSON line ``{"port": N}`` once listening, runs until SIGTERM/SIGINT
or until its stdin closes, then prints ``{"calls": N, "connections": N}``.
Speaks ocpp1.6, ocpp2.0.1 and ocpp2.1 (chosen from the client's offer).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import stat
import sys
from typing import Any

import orjson

from gateway.benchkit import ws
from gateway.benchkit.frames import CsmsAnswers, split_call
from gateway.benchkit.procs import raise_nofile
from gateway.ocppj import Version

_PREFERENCE = (b"ocpp2.0.1", b"ocpp1.6", b"ocpp2.1")
_VERSIONS = {b"ocpp1.6": Version.V16, b"ocpp2.0.1": Version.V201, b"ocpp2.1": Version.V21}
_MAX_HEAD = 16384


class CsmsServer:
    """Shared state of all connections: answer tables per version and counters."""

    def __init__(self) -> None:
        self.answers = {v: CsmsAnswers(v) for v in _VERSIONS.values()}
        self.calls = 0
        self.connections = 0
        self.open: set[CsmsConnection] = set()

    def protocol(self) -> CsmsConnection:
        return CsmsConnection(self)

    def close_all(self) -> None:
        for conn in list(self.open):
            conn.close(1001)


class CsmsConnection(asyncio.Protocol):
    __slots__ = ("answers", "head", "reader", "server", "transport")

    def __init__(self, server: CsmsServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.head: bytearray | None = bytearray()
        self.reader = ws.FrameReader()
        self.answers: CsmsAnswers | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.server.open.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.open.discard(self)

    def data_received(self, data: bytes) -> None:
        if self.head is not None:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                if len(self.head) > _MAX_HEAD:
                    self._abort()
                return
            rest = bytes(self.head[end + 4 :])
            if not self._handshake(bytes(self.head[:end])):
                return
            self.head = None
            if not rest:
                return
            data = rest
        try:
            messages = self.reader.feed(data)
        except ws.ProtocolError:
            self._abort()
            return
        transport = self.transport
        assert transport is not None
        for opcode, payload in messages:
            if opcode == ws.OP_TEXT or opcode == ws.OP_BINARY:
                self._on_message(payload)
            elif opcode == ws.OP_PING:
                transport.write(ws.server_frame(payload, ws.OP_PONG))
            elif opcode == ws.OP_CLOSE:
                transport.write(ws.server_frame(payload[:2], ws.OP_CLOSE))
                transport.close()
                return

    def _handshake(self, head: bytes) -> bool:
        transport = self.transport
        assert transport is not None
        line, headers = ws.parse_headers(head)
        key = headers.get(b"sec-websocket-key")
        if not line.startswith(b"GET ") or key is None:
            transport.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            transport.close()
            return False
        offered = [p.strip() for p in headers.get(b"sec-websocket-protocol", b"").split(b",")]
        chosen = next((p for p in _PREFERENCE if p in offered), None)
        if chosen is None:
            transport.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            transport.close()
            return False
        self.answers = self.server.answers[_VERSIONS[chosen]]
        transport.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + ws.accept_key(key) + b"\r\nSec-WebSocket-Protocol: " + chosen + b"\r\n\r\n"
        )
        self.server.connections += 1
        return True

    def _on_message(self, frame: bytes) -> None:
        if frame[1:2] != b"2":  # [3,...] / [4,...]: answers to CALLs this CSMS never sends
            return
        parts = split_call(frame)
        if parts is None:
            return
        assert self.answers is not None and self.transport is not None
        self.server.calls += 1
        self.transport.write(ws.server_frame(self.answers.answer(parts[0], parts[1], frame)))

    def close(self, code: int) -> None:
        if self.transport is not None and not self.transport.is_closing():
            if self.head is None:
                self.transport.write(ws.server_frame(code.to_bytes(2, "big"), ws.OP_CLOSE))
            self.transport.close()

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


async def serve(host: str, port: int, watch_stdin: bool) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    server = CsmsServer()
    listener = await loop.create_server(server.protocol, host, port, backlog=4096, reuse_address=True)
    bound = listener.sockets[0].getsockname()[1]
    sys.stdout.write(orjson.dumps({"port": bound}).decode() + "\n")
    sys.stdout.flush()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    watch_stdin = watch_stdin and _is_pipe(sys.stdin.fileno())
    if watch_stdin:
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

        async def watch() -> None:
            while await reader.read(4096):
                pass
            stop.set()

        watcher = asyncio.create_task(watch())
    await stop.wait()
    listener.close()
    server.close_all()
    await asyncio.sleep(0.05)  # let the close frames leave
    if watch_stdin:
        watcher.cancel()
    return {"calls": server.calls, "connections": server.connections}


def _is_pipe(fd: int) -> bool:
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gateway.benchkit.csms", description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--no-stdin", action="store_true", help="do not stop when stdin closes")
    args = p.parse_args(argv)
    raise_nofile()
    stats = asyncio.run(serve(args.host, args.port, not args.no_stdin))
    sys.stdout.write(orjson.dumps(stats).decode() + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
