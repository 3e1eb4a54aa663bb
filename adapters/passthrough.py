"""Same version on both sides: every frame goes through untouched."""

from __future__ import annotations

from adapters import directions
from adapters.base import Context, CoverageRow, Handler, OutCall, Side, Support
from gateway.ocppj import Call, MessageType, Version


class PassThrough:
    """Forwards each CALL byte for byte (same unique id) and returns the answer as it came."""

    name = "passthrough"

    def __init__(self, version: Version) -> None:
        self.charger_version = version
        self.csms_version = version

    def handle_call(self, origin: Side, call: Call, ctx: Context) -> Handler:
        result = yield OutCall(
            origin.other,
            call.action,
            call.payload,
            unique_id=call.unique_id,
            send=call.message_type is MessageType.SEND,
        )
        return result

    def coverage(self) -> list[CoverageRow]:
        """One row per action, under the side that sends it (DataTransfer, which both send, twice)."""
        return [
            CoverageRow(side, action, Support.SUPPORTED, action, "pass-through")
            for side in (Side.CHARGER, Side.CSMS)
            for action in directions.sent_by(self.charger_version, side)
        ]
