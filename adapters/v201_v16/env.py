"""Per-station options of the 2.0.1 -> 1.6 translator and the registry of its message handlers."""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

from adapters.base import Side, Step, Support
from adapters.v16_v201 import tables
from adapters.v16_v201.env import ConnectorMap
from adapters.v201_v16.state import State

PNC_VENDOR = "org.openchargealliance.iso15118pnc"

Payload = dict[str, Any]
Result = Generator[Step, Payload | None, Payload | None]


def connector_of(connectors: ConnectorMap, evse: int, connector: int | None = None) -> int:
    """The 1.6 connectorId of a 2.0.1 EVSE/connector (an EVSE the map does not know: its own number)."""
    found = connectors.to_connector(evse, connector)
    return evse if found is None else found


@dataclass
class Env:
    """What every handler knows about its station besides the persisted state (from the charger's options)."""

    connectors: ConnectorMap
    remote_token_type: str  # idToken type for a 1.6 idTag the station never showed (RemoteStart, lists)
    anonymous_id_tag: str | None  # idTag for transactions the station starts without a token (None: wait)
    get_variables_chunk: int  # variables per GetVariables when GetConfiguration asks for all keys
    config: tables.ConfigKeys

    @classmethod
    def parse(cls, options: dict[str, Any]) -> Env:
        anonymous = options.get("anonymous_id_tag")
        return cls(
            connectors=ConnectorMap(int(options.get("connectors_per_evse", 1)), options.get("connector_map")),
            remote_token_type=str(options.get("remote_token_type", "Central")),
            anonymous_id_tag=str(anonymous)[:20] if anonymous else None,
            get_variables_chunk=max(1, int(options.get("get_variables_chunk", 20))),
            config=tables.ConfigKeys.load(options.get("config_key_files") or ()),
        )


HandlerFn = Callable[[Env, State, Payload], Result]


@dataclass(frozen=True)
class Spec:
    """One message this translator handles: the handler and its conformance-list entry."""

    fn: HandlerFn
    support: Support
    target: str
    notes: str


HANDLERS: dict[tuple[Side, str], Spec] = {}


def handles(
    origin: Side, action: str, target: str, support: Support = Support.SUPPORTED, notes: str = ""
) -> Callable[[HandlerFn], HandlerFn]:
    """Register the handler of ``action`` sent by ``origin``; the arguments are its conformance row."""

    def deco(fn: HandlerFn) -> HandlerFn:
        HANDLERS[(origin, action)] = Spec(fn, support, target, notes)
        return fn

    return deco


def local(action: str, answer: Payload, notes: str) -> None:
    """A station message with no 1.6 counterpart, answered by the gateway itself."""

    def fn(env: Env, st: State, p: Payload) -> Result:
        return dict(answer)
        yield  # pragma: no cover - a generator like every handler

    handles(Side.CHARGER, action, "", Support.LOCAL, notes)(fn)
