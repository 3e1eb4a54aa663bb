"""WebSocket connections that hand every message to a callback the moment it arrives.

websockets' asyncio connections queue each incoming message for a reader task
(``async for message in ws``) and wrap each send in an async context manager
that waits for the socket to drain. For a relay that is most of the cost of a
frame: two task wake-ups, a future and a context manager per message on each
side. A gateway frame needs none of it. OCPP allows one CALL in flight per
side, so what one charger can have queued is bounded by the session, not by
socket back-pressure.

``DirectServerConnection`` and ``DirectClientConnection`` keep everything
websockets does for the handshake, keepalive pings, the close handshake,
size limits and protocol errors, and change only the data path: a complete
message goes straight from ``data_received`` to the handler given to
``deliver_to``, and ``send_now`` writes a text frame without awaiting.

The common frame, a complete unfragmented text or binary message within
the size limit, is also framed and unframed here (``_FastFrames``) rather
than by websockets' generator-based parser, which costs more than the rest
of a relayed frame. Every other frame (ping, pong, close, a fragment,
anything malformed) is handed, as exact bytes, to websockets' own parser,
which is always left at a frame boundary. A fragmented message is left to
websockets until its parser is between frames again; a malformed frame is
judged and answered by websockets, which fails the connection.

Fairness: one read from a socket can hold thousands of small frames, and
handling them all in one go would hold the event loop (every other charger,
the admin API) for as long as that takes. A connection hands at most
``MESSAGES_PER_TURN`` messages to its handler per read; the rest wait in a
backlog that is handed over the same number per loop turn, and the socket is
not read meanwhile, so the backlog is bounded by one read and the sender's
surplus waits in TCP buffers.
"""

from __future__ import annotations

import asyncio
import os
import random
import struct
from collections import deque
from collections.abc import Callable
from typing import Any, cast

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.frames import CloseCode, Frame, Opcode
from websockets.protocol import CLOSED, OPEN
from websockets.streams import StreamReader

try:
    from websockets.speedups import apply_mask
except ImportError:  # websockets built without its C extension
    from websockets.utils import apply_mask

TextHandler = Callable[[str], None]

# Messages one connection hands to its handler per read or loop turn before it lets others run.
MESSAGES_PER_TURN = 32

_TEXT, _BINARY, _CONT = Opcode.TEXT, Opcode.BINARY, Opcode.CONT
# The code websockets' parser waits in between frames: the only place the fast path may take over from it.
_BETWEEN_FRAMES = StreamReader.at_eof.__code__
_U16 = struct.Struct("!H")
_TICK_SLACK = 0.005
_U64 = struct.Struct("!Q")


class _DirectDelivery:
    """The data path shared by both sides (mixed in ahead of websockets' connection class)."""

    # Provided by websockets' Connection.
    protocol: Any
    transport: Any
    logger: Any
    recv_messages: Any

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # websockets only appends to, removes from and walks its drain waiters: a list does that in 56 bytes where
        # its empty deque holds 760 (two per charger).
        cast(Any, self).drain_waiters = []
        # One slotted attribute: each attribute more on websockets' connection object costs a bigger __dict__.
        self._path = _DataPath(_FastFrames(masked_in=self.protocol.side.name == "SERVER",
                                           max_size=self.protocol.max_message_size))

    def deliver_to(self, handler: TextHandler) -> None:
        """From now on, every complete message is passed to ``handler`` as text."""
        path = self._path
        path.handler = handler
        early, path.early = path.early, None
        for text in early or ():
            self._call(handler, text)

    async def closed(self) -> None:
        """Wait until the connection is closed.

        Like ``wait_closed`` but without ``asyncio.shield``'s extra future and
        callbacks, which a gateway holding thousands of idle chargers pays for
        on every one of them.
        """
        path = self._path
        if self.protocol.state is CLOSED:
            return
        if path.closed is None or path.closed.done():  # done: an earlier waiter was cancelled
            path.closed = asyncio.get_running_loop().create_future()
        await path.closed

    def hold_reading(self, held: bool) -> None:
        """Stop (or resume) reading the socket for the owner (the store's back-pressure).

        The owner's hold and the fairness pause are kept apart: reading resumes only when neither wants it paused.
        """
        path = self._path
        path.owner_held = held
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if held:
            transport.pause_reading()
        elif path.backlog is None:
            transport.resume_reading()

    def forget_handshake(self) -> None:
        """Drop the handshake's header lists (a few KiB per connection); the request and response stay."""
        for message in (getattr(self, "request", None), getattr(self, "response", None)):
            if message is not None:
                message.headers = Headers()

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        # Messages never queue for recv(): the Assembler and its buffers would only take up room.
        self.recv_messages = _NoQueue()

    # Keepalive: websockets runs a task per connection that sleeps, pings and waits for the pong (a task, two
    # coroutines, a future and a timer handle: about 1.2 KiB per connection, 2.4 KiB per idle charger). The same
    # pings and the same verdict come from one timer handle per connection: each tick either pings, or checks
    # that the last ping was answered in ``ping_timeout``.

    def start_keepalive(self) -> None:
        interval: float | None = cast(Any, self).ping_interval
        if interval is not None:
            # The first ping at a random point of the second half of the interval: connections made in one burst
            # (a reconnect storm, a restart) would otherwise ping in lockstep, every interval, all at once.
            first = interval * (0.5 + random.random() / 2)
            self._path.keepalive = asyncio.get_running_loop().call_later(first, self._keepalive_tick)

    def _keepalive_tick(self) -> None:
        conn = cast(Any, self)
        path = self._path
        path.keepalive = None
        if self.protocol.state is not OPEN:
            return
        loop = conn.loop
        now = loop.time() + _TICK_SLACK  # the loop may run a timer up to its clock resolution early
        interval: float = conn.ping_interval
        timeout: float | None = conn.ping_timeout
        waiter, sent = path.ping_waiter, path.ping_sent
        unanswered = waiter is not None and not waiter.done()
        if unanswered and timeout is not None:
            if now - sent < timeout:
                path.keepalive = loop.call_at(sent + timeout, self._keepalive_tick)
                return
            # As websockets' keepalive does: fail the connection, and cut it if the close handshake takes too long.
            self.protocol.fail(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")
            conn.send_data()
            loop.call_later(conn.close_timeout or 0.0, self.transport.abort)
            return
        if waiter is None or now - sent >= interval:
            data = os.urandom(4)
            while data in conn.pending_pings:
                data = os.urandom(4)
            path.ping_waiter = loop.create_future()
            path.ping_sent = sent = loop.time()
            conn.pending_pings[data] = (path.ping_waiter, sent)  # websockets resolves it when the pong comes
            self.protocol.send_ping(data)
            conn.send_data()
            unanswered = True
        # The pong is looked for ``timeout`` after the ping; the next ping goes ``interval`` after the last one.
        due = sent + interval if not unanswered or timeout is None else sent + min(interval, timeout)
        path.keepalive = loop.call_at(due, self._keepalive_tick)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)  # type: ignore[misc]
        if self._path.keepalive is not None:
            self._path.keepalive.cancel()
            self._path.keepalive = None
        self._path.ping_waiter = None
        # Messages already read are handled before the owner learns of the close, as they would have been at once.
        backlog, self._path.backlog = self._path.backlog, None
        handler = self._path.handler
        while backlog and handler is not None:
            self._call(handler, backlog.popleft())
        closed = self._path.closed
        if closed is not None and not closed.done():
            closed.set_result(None)

    def send_now(self, text: str) -> bool:
        """Write ``text`` as one text frame; False if the connection is no longer open."""
        protocol = self.protocol
        if protocol.state is not OPEN:
            return False
        frames = self._path.frames
        try:
            if frames.on:
                self.transport.write(frames.frame(text.encode()))
            else:
                protocol.send_text(text.encode())
                self.send_data()  # type: ignore[attr-defined]
        except Exception as exc:  # OSError from a dying socket: end the connection, as websockets would
            self.set_connection_exc(exc)  # type: ignore[attr-defined]
            self.transport.abort()
            return False
        return True

    def data_received(self, data: bytes) -> None:
        path = self._path
        path.budget = MESSAGES_PER_TURN
        frames = path.frames
        protocol = self.protocol
        if protocol.state is not OPEN or not (frames.on or frames.engage(protocol)):
            super().data_received(data)  # type: ignore[misc]
            return
        for kind, chunk in frames.split(data):
            if kind is None:  # a control frame or a fragment: websockets' parser takes it
                super().data_received(chunk)  # type: ignore[misc]
                # A fragmented message is reassembled by websockets, and a closing stream is all its own.
                if protocol.current_size is not None:
                    frames.on = False
            else:
                self._message(kind, chunk)
            if protocol.state is not OPEN:
                frames.on = False
        if not frames.on:
            rest = frames.take_rest()
            if rest:
                super().data_received(rest)  # type: ignore[misc]

    def eof_received(self) -> None:
        frames = self._path.frames
        rest = frames.take_rest()
        frames.on = False
        if rest:  # a partial frame: websockets' parser reports the stream ending inside it
            super().data_received(rest)  # type: ignore[misc]
        super().eof_received()  # type: ignore[misc]

    @property
    def fast_framing(self) -> bool:
        """Whether frames are currently framed here rather than by websockets' parser."""
        return self._path.frames.on

    def process_event(self, event: Any) -> None:
        if not isinstance(event, Frame):  # the handshake request or response
            super().process_event(event)  # type: ignore[misc]
            return
        opcode = event.opcode
        path = self._path
        if opcode is _TEXT or opcode is _BINARY:
            if event.fin:
                self._message(opcode, event.data)
            else:
                path.fragmented_opcode = opcode
                path.fragments = [bytes(event.data)]
        elif opcode is _CONT:
            # The protocol has already refused continuation frames without a start and messages over max_size.
            fragments = path.fragments
            if fragments is not None:
                fragments.append(bytes(event.data))
                if event.fin and path.fragmented_opcode is not None:
                    data, path.fragments = b"".join(fragments), None
                    opcode, path.fragmented_opcode = path.fragmented_opcode, None
                    self._message(opcode, data)
        else:  # ping, pong, close: websockets' own bookkeeping
            super().process_event(event)  # type: ignore[misc]

    def _message(self, opcode: Opcode, data: bytes | bytearray | memoryview) -> None:
        if opcode is _TEXT:
            try:
                text = bytes(data).decode()
            except UnicodeDecodeError:
                # RFC 6455 section 8.1: invalid UTF-8 in a text message fails the connection with 1007.
                self.protocol.fail(CloseCode.INVALID_DATA, "invalid UTF-8 in a text message")
                self.send_data()  # type: ignore[attr-defined]
                return
        else:  # OCPP-J is text; a binary message is read as best-effort UTF-8 and judged by the session
            text = bytes(data).decode("utf-8", "replace")
        path = self._path
        handler = path.handler
        if handler is None:
            if path.early is None:
                path.early = []
            path.early.append(text)
        elif path.budget > 0 and path.backlog is None:
            path.budget -= 1
            self._call(handler, text)
        else:
            self._defer(text)

    def _defer(self, text: str) -> None:
        """This read's share is used up: keep ``text`` for a later loop turn and stop reading until then."""
        path = self._path
        if path.backlog is None:
            path.backlog = deque()
            transport = self.transport
            if transport is not None and not transport.is_closing():
                transport.pause_reading()
            asyncio.get_running_loop().call_soon(self._drain_backlog)
        path.backlog.append(text)

    def _drain_backlog(self) -> None:
        path = self._path
        backlog = path.backlog
        if backlog is None:  # the connection was lost and its backlog handled meanwhile
            return
        handler = path.handler
        assert handler is not None  # nothing is deferred before a handler is attached
        for _ in range(MESSAGES_PER_TURN):
            if not backlog:
                break
            self._call(handler, backlog.popleft())
        if backlog:
            asyncio.get_running_loop().call_soon(self._drain_backlog)
            return
        path.backlog = None
        transport = self.transport
        if not path.owner_held and transport is not None and not transport.is_closing():
            transport.resume_reading()

    def _call(self, handler: TextHandler, text: str) -> None:
        try:
            handler(text)
        except Exception:  # the handler guards its own work; this keeps a bug from breaking the protocol
            self.logger.error("message handler failed", exc_info=True)


class _DataPath:
    """What a direct connection adds to websockets' own state."""

    __slots__ = ("backlog", "budget", "closed", "early", "fragmented_opcode", "fragments", "frames", "handler",
                 "keepalive", "owner_held", "ping_sent", "ping_waiter")

    def __init__(self, frames: _FastFrames) -> None:
        self.frames = frames
        self.handler: TextHandler | None = None
        # Messages that arrived before a handler was attached (in the handshake's last TCP segment). Like
        # ``fragments``, None while there are none: empty lists would be four per idle charger.
        self.early: list[str] | None = None
        # Opcode and parts of a fragmented message being reassembled.
        self.fragments: list[bytes] | None = None
        self.fragmented_opcode: Opcode | None = None
        self.closed: asyncio.Future[None] | None = None
        # Fairness: messages this read may still hand over, those held for later turns, and the owner's pause.
        self.budget = MESSAGES_PER_TURN
        self.backlog: deque[str] | None = None
        self.owner_held = False
        # Keepalive (see ``_DirectDelivery.start_keepalive``): the next tick, and the last ping and when it went.
        self.keepalive: asyncio.TimerHandle | None = None
        self.ping_waiter: asyncio.Future[float] | None = None
        self.ping_sent = 0.0


class _NoQueue:
    """Stands in for websockets' Assembler: a direct connection delivers by callback, never through recv()."""

    __slots__ = ()

    def put(self, frame: Frame) -> None:
        raise RuntimeError("a direct connection delivers messages to its handler; recv() is not available")

    get = get_iter = put

    def close(self) -> None:
        pass


class _FastFrames:
    """Framing of the common case: whole, unfragmented data frames within the size limit.

    ``split`` yields ``(opcode, payload)`` for each such frame and
    ``(None, raw bytes)`` for any other complete frame, which the caller
    passes to websockets. A frame it cannot judge switches it off, yielding
    the rest of the stream raw. A partial frame waits for the next chunk.
    """

    __slots__ = ("_buffer", "masked_in", "max_size", "on")

    def __init__(self, masked_in: bool, max_size: int | None) -> None:
        self.on = False
        self.masked_in = masked_in  # frames from a client are masked; a client masks what it sends
        self.max_size = max_size
        self._buffer = b""

    def engage(self, protocol: Any) -> bool:
        """Take over from websockets' parser if it waits between frames with nothing buffered."""
        waiting = getattr(protocol, "parser", None)
        while getattr(waiting, "gi_yieldfrom", None) is not None:
            waiting = waiting.gi_yieldfrom  # type: ignore[union-attr]
        self.on = (getattr(waiting, "gi_code", None) is _BETWEEN_FRAMES and not protocol.reader.buffer
                   and protocol.current_size is None and not protocol.extensions)
        return self.on

    def take_rest(self) -> bytes:
        rest, self._buffer = self._buffer, b""
        return rest

    def split(self, data: bytes) -> Any:
        buf = self._buffer + data if self._buffer else data
        self._buffer = b""
        end = len(buf)
        pos = 0
        masked_in = self.masked_in
        max_size = self.max_size
        while end - pos >= 2:
            head1 = buf[pos]
            head2 = buf[pos + 1]
            length = head2 & 0x7F
            offset = pos + 2
            if length == 126:
                if end - offset < 2:
                    break
                length = _U16.unpack_from(buf, offset)[0]
                offset += 2
            elif length == 127:
                if end - offset < 8:
                    break
                length = _U64.unpack_from(buf, offset)[0]
                offset += 8
            opcode = head1 & 0x0F
            if (bool(head2 & 0x80) is not masked_in or head1 & 0x70 or opcode not in (1, 2, 8, 9, 10)
                    or (max_size is not None and length > max_size) or (opcode >= 8 and length > 125)):
                # Malformed or too big, or a fragment or continuation frame: websockets takes the stream over.
                self.on = False
                self._buffer = buf[pos:]
                return
            frame_end = offset + (4 if masked_in else 0) + length
            if frame_end > end:
                break
            if opcode >= 8 or not head1 & 0x80:
                yield None, buf[pos:frame_end]
            elif masked_in:
                yield (_TEXT if opcode == 1 else _BINARY), apply_mask(buf[offset + 4:frame_end], buf[offset:offset + 4])
            else:
                yield (_TEXT if opcode == 1 else _BINARY), buf[offset:frame_end]
            pos = frame_end
            if not self.on:  # the caller handed the stream over: the rest is websockets'
                break
        if pos < end:
            self._buffer = buf[pos:]

    def frame(self, payload: bytes) -> bytes:
        """One FIN text frame carrying ``payload``, masked if this is the client side."""
        length = len(payload)
        mask_bit = 0 if self.masked_in else 0x80
        if length < 126:
            head = bytes((0x81, mask_bit | length))
        elif length < 65536:
            head = bytes((0x81, mask_bit | 126)) + _U16.pack(length)
        else:
            head = bytes((0x81, mask_bit | 127)) + _U64.pack(length)
        if self.masked_in:
            return head + payload
        mask = _MASKS.next()
        return head + mask + apply_mask(payload, mask)


class _MaskPool:
    """RFC 6455 5.3: a fresh, unpredictable mask per frame, drawn from the OS 1,024 masks at a time.

    One pool for the process: a pool per connection kept up to 4 KiB with every idle CSMS link, and copied
    what was left of it on every frame.
    """

    __slots__ = ("_entropy", "_pos")

    def __init__(self) -> None:
        self._entropy = b""
        self._pos = 0

    def next(self) -> bytes:
        pos = self._pos
        if pos >= len(self._entropy):
            self._entropy, pos = os.urandom(4096), 0
        self._pos = pos + 4
        return self._entropy[pos:pos + 4]


_MASKS = _MaskPool()


class DirectServerConnection(_DirectDelivery, ServerConnection):
    """A charger's connection to the gateway, delivering messages by callback."""


class DirectClientConnection(_DirectDelivery, ClientConnection):
    """The gateway's connection to a CSMS, delivering messages by callback."""


__all__ = ["DirectClientConnection", "DirectServerConnection", "TextHandler"]
