"""Per-charger options of the 1.6 -> 2.0.1 translator and the registry of its message handlers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from adapters.base import Context, Handler, Side, Support
from adapters.v16_v201.tables import ConfigKeys

ID_TOKEN_TYPES = frozenset(
    {"Central", "eMAID", "ISO14443", "ISO15693", "KeyCode", "Local", "MacAddress", "NoAuthorization"}
)


class ConnectorMap:
    """1.6 connectorId <-> 2.0.1 (evseId, connectorId).

    Default: connector N is EVSE ((N-1) // k + 1), connector ((N-1) % k + 1) with k =
    ``connectors_per_evse`` (1: connector N -> EVSE N, connector 1). An explicit
    ``connector_map`` ({1: [1, 1], 2: [1, 2]}) replaces that rule; a connector it does
    not list is EVSE N, connector 1. Connector 0 is the station (EVSE 0).
    """

    def __init__(self, connectors_per_evse: int = 1, explicit: dict[Any, Any] | None = None) -> None:
        if connectors_per_evse < 1:
            raise ValueError("connectors_per_evse must be at least 1")
        self.per_evse = connectors_per_evse
        self.explicit: dict[int, tuple[int, int]] = {}
        for k, v in (explicit or {}).items():
            evse, conn = (int(x) for x in v)
            if int(k) < 1 or evse < 1 or conn < 1:
                raise ValueError(f"connector_map entry {k}: {v} must map a connector > 0 to an EVSE and connector > 0")
            self.explicit[int(k)] = (evse, conn)
        self._reverse = {v: k for k, v in self.explicit.items()}

    def to_evse(self, connector: int) -> tuple[int, int]:
        """(evseId, connectorId) of a 1.6 connector; (0, 0) is the station itself."""
        if connector <= 0:
            return (0, 0)
        if self.explicit:
            # A connector the operator did not list keeps the default: EVSE N, connector 1.
            return self.explicit.get(connector, (connector, 1))
        return ((connector - 1) // self.per_evse + 1, (connector - 1) % self.per_evse + 1)

    def to_connector(self, evse: int, connector: int | None = None) -> int | None:
        """The 1.6 connector of an EVSE (first connector when ``connector`` is None); None if impossible."""
        if evse <= 0:
            return 0
        c = connector or 1
        if self.explicit:
            hit = self._reverse.get((evse, c))
            if hit is not None:
                return hit
            unlisted = c == 1 and evse not in self.explicit and all(e != evse for e, _ in self.explicit.values())
            return evse if unlisted else None
        if c > self.per_evse:
            return None
        return (evse - 1) * self.per_evse + c

    def connectors_of(self, evse: int) -> list[int]:
        """Every 1.6 connector of an EVSE (as far as the map knows)."""
        if self.explicit:
            listed = sorted(k for k, (e, _) in self.explicit.items() if e == evse)
            if listed:
                return listed
        first = self.to_connector(evse, 1)
        if first is None:
            return []
        return [first] if self.explicit else [first + i for i in range(self.per_evse)]


@dataclass
class Env:
    """What every handler knows about its charger besides the persisted state."""

    connectors: ConnectorMap = field(default_factory=ConnectorMap)
    id_token_type: str | None = None  # the operator's override; None: inferred from each tag's shape
    config: ConfigKeys = field(default_factory=ConfigKeys.load)
    report_chunk: int = 50  # reportData entries per NotifyReport part

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> Env:
        raw = options.get("id_token_type")
        token_type = None if raw is None else str(raw)
        if token_type is not None and token_type not in ID_TOKEN_TYPES:
            raise ValueError(f"id_token_type {token_type!r} is not a 2.0.1 IdTokenEnumType")
        return cls(
            connectors=ConnectorMap(int(options.get("connectors_per_evse", 1)), options.get("connector_map")),
            id_token_type=token_type,
            config=ConfigKeys.load(options.get("config_key_files") or ()),
            report_chunk=max(1, int(options.get("report_chunk", 50))),
        )


HandlerFn = Callable[[Env, dict[str, Any], Context], Handler]


@dataclass(frozen=True)
class Spec:
    """One message this translator handles: the handler and its conformance-list entry."""

    origin: Side
    action: str
    fn: HandlerFn
    support: Support
    target: str
    notes: str


HANDLERS: dict[tuple[Side, str], Spec] = {}


def handles(
    origin: Side, action: str, target: str, support: Support = Support.SUPPORTED, notes: str = ""
) -> Callable[[HandlerFn], HandlerFn]:
    """Register a handler for ``action`` sent by ``origin``; its arguments are also its conformance row."""

    def register(fn: HandlerFn) -> HandlerFn:
        HANDLERS[(origin, action)] = Spec(origin, action, fn, support, target, notes)
        return fn

    return register
