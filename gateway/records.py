"""The message-log record: one frame on one side of the gateway."""

from __future__ import annotations

from typing import NamedTuple


class FrameRecord(NamedTuple):
    """A frame as it crossed the gateway's edge.

    ``direction`` is "in" (received by the gateway) or "out" (sent by it);
    ``peer`` is who was on the other end: "charger", "csms", or a vendor
    cloud ("vendor:<adapter>"). ``frame`` is the full OCPP-J text exactly as
    it was on the wire, so nothing is re-serialised on the hot path.

    A tuple in the message log's column order: the store inserts records
    as they are, with no per-row conversion on the writer thread.

    ``relayed_to`` is set by the store alone: when the gateway sends on
    exactly the text it received (pass-through), the "in" record stands for
    the "out" one too and names the peer it went to, so the pair is one row
    (see ``Store.record``). Readers expand it into both messages.
    """

    ts: float  # unix seconds
    charger_id: str
    direction: str
    peer: str
    ocpp_version: str
    message_type: str  # CALL, CALLRESULT, CALLERROR, CALLRESULTERROR, SEND, or INVALID
    action: str | None
    unique_id: str | None
    frame: str
    error_code: str | None = None
    note: str | None = None  # why the gateway did what it did (validation failure, drop, ...)
    relayed_to: str | None = None  # peer the same text was sent on to (a pass-through pair), set by the store
