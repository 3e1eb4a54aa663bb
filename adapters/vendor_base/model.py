"""What adapters know about an account and its chargers, in vendor-neutral terms."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import mappings


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str
    password: str = field(repr=False)


@dataclass(slots=True)
class Token:
    access_token: str = field(repr=False)
    expires_at: float  # unix seconds
    refresh_token: str | None = field(default=None, repr=False)
    lifetime: float = 0.0  # seconds the token was issued for (to refresh ahead of expiry)


@dataclass(slots=True)
class ChargerInfo:
    """A charger as discovery found it: enough for a BootNotification and for every request."""

    vendor_id: str
    vendor: str  # BootNotification chargingStation.vendorName
    model: str
    serial: str
    firmware: str | None = None
    name: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # vendor-specific (installation id, phases, ...)


@dataclass(slots=True)
class CompletedSession:
    """The vendor's own record of a finished charging session, when its API publishes one."""

    session_id: str | None
    energy_wh: float | None = None
    id_token: str | None = None
    stopped_locally: bool = False  # ended with the RFID card at the charger


@dataclass(slots=True)
class Reading:
    """One poll of a charger, in vendor-neutral terms (what ``observe`` needs)."""

    reachable: bool = True  # the cloud answered
    online: bool = True  # the charger is connected to its cloud
    op_mode: Any = None  # the vendor's own operating mode (for the log and the mapping table)
    connector_status: str = "Unavailable"  # OCPP 2.0.1 ConnectorStatusEnumType
    charging_state: str = "Idle"  # OCPP 2.0.1 ChargingStateEnumType
    ev_connected: bool = False
    charging: bool = False
    fault: bool = False
    power_w: float | None = None
    register_wh: float | None = None  # the energy register (Energy.Active.Import.Register)
    session_id: str | None = None  # the vendor's session id while one is running
    session_wh: float | None = None
    id_token: str | None = None  # the RFID card the vendor saw for the running session
    firmware: str | None = None
    voltage: float | None = None
    phases: int | None = None
    current_limit_a: float | None = None
    enabled: bool | None = None  # the vendor's own enable flag, when it publishes one
    completed: CompletedSession | None = None
    vendor: dict[str, Any] = field(default_factory=dict)  # vendor-specific extras for the adapter's commands
    # The adapter's own memory across polls (stored in the charger's state as "memo"; None: keep the old one).
    memo: dict[str, Any] | None = None

    @classmethod
    def unreachable(cls) -> Reading:
        return cls(reachable=False, online=False)


@dataclass(slots=True)
class OpMode:
    """One row of a vendor's op-mode table (``mappings/<vendor>_op_mode.yaml``)."""

    name: str
    connector_status: str
    charging_state: str
    ev_connected: bool
    charging: bool
    online: bool = True
    fault: bool = False


def op_mode_table(name: str) -> dict[int, OpMode]:
    """The vendor's operating mode -> OCPP table, keyed by the vendor's numeric mode."""
    out: dict[int, OpMode] = {}
    for row in mappings.rows(name):
        out[int(row["op_mode"])] = OpMode(
            name=str(row["name"]),
            connector_status=str(row["connector_status"]),
            charging_state=str(row.get("charging_state") or "Idle"),
            ev_connected=bool(row["ev_connected"]),
            charging=bool(row.get("charging", False)),
            online=bool(row.get("online", True)),
            fault=bool(row.get("fault", False)),
        )
    return out


UNKNOWN_MODE = OpMode("Unknown", "Unavailable", "Idle", ev_connected=False, charging=False)
