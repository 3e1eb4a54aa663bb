"""The OCPP 2.0.1 station -> OCPP 1.6J CSMS translator: dispatch to the registered handlers."""

from __future__ import annotations

from typing import Any

from adapters import directions
from adapters.base import Context, CoverageRow, Defer, Handler, PeerError, Refuse, Settlement, Side, Support
from adapters.v201_v16 import charger, csms, transactions  # noqa: F401  (importing registers the handlers)
from adapters.v201_v16.env import HANDLERS, Env, Spec
from adapters.v201_v16.state import NAME, State
from gateway.ocppj import Call, ErrorKind, Version


class V201V16:
    """A 2.0.1 charging station behind the gateway, a 1.6J central system upstream."""

    name = NAME
    charger_version = Version.V201
    csms_version = Version.V16

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        self.opts = Env.parse(options or {})

    def handle_call(self, origin: Side, call: Call, ctx: Context) -> Handler:
        spec = HANDLERS.get((origin, call.action))
        if spec is None:
            version = self.charger_version if origin is Side.CHARGER else self.csms_version
            raise Refuse(
                ErrorKind.NOT_SUPPORTED,
                f"{call.action} from an OCPP {version.value} {origin.value} has no OCPP "
                f"{(self.csms_version if origin is Side.CHARGER else self.charger_version).value} counterpart",
            )
        return self._run(spec, origin, call, ctx)

    # The offline queue's side (``adapters.base.Deferring``): transaction messages wait there for the CSMS.

    def resolve(self, ref: dict[str, Any], action: str, payload: dict[str, Any], ctx: Context) -> dict[str, Any] | None:
        return transactions.resolve(ref, action, payload, ctx)

    def settled(self, ref: dict[str, Any], action: str, result: dict[str, Any] | None, error: PeerError | None,
                ctx: Context) -> Settlement:
        return transactions.settled(ref, action, result, error, ctx)

    def adopt_held(self, ctx: Context) -> list[Defer]:
        return transactions.adopt_held(ctx)

    def _run(self, spec: Spec, origin: Side, call: Call, ctx: Context) -> Handler:
        return (yield from spec.fn(self.opts, State(ctx), call.payload))

    def coverage(self) -> list[CoverageRow]:
        rows = []
        for side, version in ((Side.CHARGER, self.charger_version), (Side.CSMS, self.csms_version)):
            for action in directions.sent_by(version, side):
                spec = HANDLERS.get((side, action))
                if spec is None:
                    rows.append(CoverageRow(side, action, Support.NOT_SUPPORTED, "", "refused (NotSupported)"))
                else:
                    rows.append(CoverageRow(side, action, spec.support, spec.target, spec.notes))
        return rows


def factory(options: dict[str, Any]) -> V201V16:
    return V201V16(options)
