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
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.server import ServerConnection
from websockets.frames import CloseCode, Frame, Opcode
from websockets.protocol import OPEN

TextHandler = Callable[[str], None]

_TEXT, _BINARY, _CONT = Opcode.TEXT, Opcode.BINARY, Opcode.CONT


class _DirectDelivery:
    """The data path shared by both sides (mixed in ahead of websockets' connection class)."""

    # Provided by websockets' Connection.
    protocol: Any
    transport: Any
    logger: Any

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._handler: TextHandler | None = None
        # Messages that arrived before a handler was attached (in the handshake's last TCP segment).
        self._early: list[str] = []
        # Opcode and parts of a fragmented message being reassembled.
        self._fragments: list[bytes] = []
        self._fragmented_opcode: Opcode | None = None

    def deliver_to(self, handler: TextHandler) -> None:
        """From now on, every complete message is passed to ``handler`` as text."""
        self._handler = handler
        early, self._early = self._early, []
        for text in early:
            self._call(handler, text)

    def send_now(self, text: str) -> bool:
        """Write ``text`` as one text frame; False if the connection is no longer open."""
        protocol = self.protocol
        if protocol.state is not OPEN:
            return False
        protocol.send_text(text.encode())
        try:
            self.send_data()  # type: ignore[attr-defined]
        except Exception as exc:  # OSError from a dying socket: end the connection, as websockets would
            self.set_connection_exc(exc)  # type: ignore[attr-defined]
            self.transport.abort()
            return False
        return True

    def process_event(self, event: Any) -> None:
        if not isinstance(event, Frame):  # the handshake request or response
            super().process_event(event)  # type: ignore[misc]
            return
        opcode = event.opcode
        if opcode is _TEXT or opcode is _BINARY:
            if event.fin:
                self._message(opcode, event.data)
            else:
                self._fragmented_opcode = opcode
                self._fragments = [bytes(event.data)]
        elif opcode is _CONT:
            # The protocol has already refused continuation frames without a start and messages over max_size.
            self._fragments.append(bytes(event.data))
            if event.fin and self._fragmented_opcode is not None:
                data, self._fragments = b"".join(self._fragments), []
                opcode, self._fragmented_opcode = self._fragmented_opcode, None
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
        handler = self._handler
        if handler is None:
            self._early.append(text)
        else:
            self._call(handler, text)

    def _call(self, handler: TextHandler, text: str) -> None:
        try:
            handler(text)
        except Exception:  # the handler guards its own work; this keeps a bug from breaking the protocol
            self.logger.error("message handler failed", exc_info=True)


class DirectServerConnection(_DirectDelivery, ServerConnection):
    """A charger's connection to the gateway, delivering messages by callback."""


class DirectClientConnection(_DirectDelivery, ClientConnection):
    """The gateway's connection to a CSMS, delivering messages by callback."""


__all__ = ["DirectClientConnection", "DirectServerConnection", "TextHandler"]
