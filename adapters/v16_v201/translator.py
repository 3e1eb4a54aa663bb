"""The OCPP 1.6J charger -> OCPP 2.0.1 CSMS translator: dispatch to the registered handlers."""

from __future__ import annotations

from typing import Any

from adapters import directions
from adapters.base import Context, CoverageRow, Handler, Refuse, Side, Support
from adapters.v16_v201 import charger, csms  # noqa: F401  (importing registers the handlers)
from adapters.v16_v201.env import HANDLERS, Env
from gateway.ocppj import Call, ErrorKind, Version


class V16ToV201:
    """Translates a 1.6J charger for a 2.0.1 CSMS; every fact comes from ``mappings/*.yaml``."""

    name = "v16_v201"
    charger_version = Version.V16
    csms_version = Version.V201

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        self.env = Env.from_options(options or {})

    def _version(self, side: Side) -> Version:
        return self.charger_version if side is Side.CHARGER else self.csms_version

    def handle_call(self, origin: Side, call: Call, ctx: Context) -> Handler:
        spec = HANDLERS.get((origin, call.action))
        if spec is None:
            raise Refuse(
                ErrorKind.NOT_SUPPORTED,
                f"{call.action} from the {origin.value} has no OCPP {self._version(origin.other).value} "
                f"equivalent for this charger",
            )
        return spec.fn(self.env, call.payload, ctx)

    def coverage(self) -> list[CoverageRow]:
        """One row per message each side can send, from the same registry ``handle_call`` dispatches on."""
        rows = []
        for side in (Side.CHARGER, Side.CSMS):
            for action in directions.sent_by(self._version(side), side):
                spec = HANDLERS.get((side, action))
                if spec is None:
                    rows.append(
                        CoverageRow(side, action, Support.NOT_SUPPORTED, "", "answered with CALLERROR NotSupported")
                    )
                else:
                    rows.append(CoverageRow(side, action, spec.support, spec.target, spec.notes))
        return rows


def factory(options: dict[str, Any]) -> V16ToV201:
    return V16ToV201(options)
