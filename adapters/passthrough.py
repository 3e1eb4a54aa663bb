"""Same version on both sides: every frame goes through untouched."""

from __future__ import annotations

from adapters.base import Context, CoverageRow, Handler, OutCall, Side, Support
from gateway import schemas
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
        return [
            CoverageRow(side, action, Support.SUPPORTED, action, "pass-through")
            for action in sorted(schemas.actions(self.charger_version))
            for side in (Side.CHARGER, Side.CSMS)
        ]
