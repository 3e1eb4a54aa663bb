"""Just enough RFC 6455 for the benchmark peers: handshake lines, frame encoding, an incremental parser."""

from __future__ import annotations

import base64
import hashlib
import struct

from websockets.speedups import apply_mask

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

MAX_MESSAGE = 1 << 20  # a peer sending more than this is broken, not benchmarked


class ProtocolError(Exception):
    """The peer broke the WebSocket framing; the connection is dropped."""


def accept_key(key: bytes) -> bytes:
    """Sec-WebSocket-Accept for a Sec-WebSocket-Key."""
    return base64.b64encode(hashlib.sha1(key.strip() + GUID).digest())


def _header(opcode: int, n: int, masked: bool) -> bytes:
    first = 0x80 | opcode
    bit = 0x80 if masked else 0
    if n < 126:
        return bytes((first, bit | n))
    if n < 65536:
        return struct.pack("!BBH", first, bit | 126, n)
    return struct.pack("!BBQ", first, bit | 127, n)


def server_frame(payload: bytes, opcode: int = OP_TEXT) -> bytes:
    """An unmasked frame, as a server sends it."""
    return _header(opcode, len(payload), False) + payload


def client_frame(payload: bytes, mask: bytes, opcode: int = OP_TEXT) -> bytes:
    """A masked frame, as a client must send it (``mask``: 4 bytes)."""
    return _header(opcode, len(payload), True) + mask + apply_mask(payload, mask)


def parse_headers(block: bytes) -> tuple[bytes, dict[bytes, bytes]]:
    """The first line and the lower-cased header fields of an HTTP head (without the blank line)."""
    lines = block.split(b"\r\n")
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if sep:
            key = name.strip().lower()
            headers[key] = headers[key] + b"," + value.strip() if key in headers else value.strip()
    return lines[0], headers


class FrameReader:
    """Incremental frame parser: ``feed`` bytes, get complete (opcode, payload) messages back.

    Fragmented data messages are reassembled; control frames are returned as
    they arrive, even between fragments.
    """

    __slots__ = ("_buf", "_frag", "_frag_op")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._frag: bytearray | None = None
        self._frag_op = 0

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        buf = self._buf
        buf += data
        out: list[tuple[int, bytes]] = []
        pos = 0
        end = len(buf)
        while end - pos >= 2:
            b0 = buf[pos]
            b1 = buf[pos + 1]
            n = b1 & 0x7F
            head = 2
            if n == 126:
                if end - pos < 4:
                    break
                n = (buf[pos + 2] << 8) | buf[pos + 3]
                head = 4
            elif n == 127:
                if end - pos < 10:
                    break
                n = struct.unpack_from("!Q", buf, pos + 2)[0]
                head = 10
            if n > MAX_MESSAGE:
                raise ProtocolError(f"frame of {n} bytes")
            masked = b1 & 0x80
            if masked:
                head += 4
            if end - pos < head + n:
                break
            payload = bytes(buf[pos + head : pos + head + n])
            if masked:
                payload = apply_mask(payload, bytes(buf[pos + head - 4 : pos + head]))
            pos += head + n
            opcode = b0 & 0x0F
            fin = b0 & 0x80
            if opcode >= OP_CLOSE:
                out.append((opcode, payload))
            elif opcode == OP_CONT:
                if self._frag is None:
                    raise ProtocolError("continuation without a first fragment")
                self._frag += payload
                if len(self._frag) > MAX_MESSAGE:
                    raise ProtocolError("fragmented message too large")
                if fin:
                    out.append((self._frag_op, bytes(self._frag)))
                    self._frag = None
            elif fin:
                out.append((opcode, payload))
            else:
                self._frag = bytearray(payload)
                self._frag_op = opcode
        if pos:
            del buf[:pos]
        return out
