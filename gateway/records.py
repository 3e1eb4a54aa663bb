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

    The ``relayed_*`` fields are set by the store alone: when the gateway
    sends a frame on right after it received one (the same charger, time,
    message type, error code and note: a relayed or a translated frame),
    the "in" record stands for the "out" one too, so the pair is one row
    (see ``Store.record``). ``relayed_to`` names the peer the frame went
    to; the other four hold what the "out" record had differently (None:
    the same as the "in" record's). Readers expand it into both messages.
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
    relayed_to: str | None = None  # peer the frame was sent on to (a pair in one row), set by the store
    relayed_version: str | None = None  # the sent frame's ocpp_version, when it differs
    relayed_action: str | None = None  # its action, when it differs
    relayed_unique_id: str | None = None  # its unique id, when it differs
    relayed_frame: str | None = None  # its text, when it differs (a translation)
