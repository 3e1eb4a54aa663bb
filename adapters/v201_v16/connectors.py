"""The connector status state machine: 2.0.1's Occupied made precise for a 1.6 CSMS."""

from __future__ import annotations

from collections.abc import Generator

import mappings
from adapters.base import Notify, Side, Step
from adapters.v16_v201 import tables
from adapters.v201_v16.env import Payload
from adapters.v201_v16.state import State

OCCUPIED = "Occupied"


def _charging_state_to_v16() -> dict[str, str]:
    """chargingState -> 1.6 status, from the connector_status table's charging_state column."""
    return {
        str(r["charging_state"]): str(r["v16"]) for r in mappings.rows("connector_status") if r.get("charging_state")
    }


def refine(st: State, connector: int) -> str | None:
    """The 1.6 status of a connector: 2.0.1's status with Occupied made precise by transaction state."""
    c = st.connector(connector)
    status = c.get("status201")
    if status is None:
        return None
    if status != OCCUPIED:
        return tables.to_v16("connector_status", status)
    found = st.tx_on(connector)
    if found is None:
        return "Finishing" if c.get("finishing") else "Preparing"
    tx = found[1]
    if tx.get("int") is None:
        return "Preparing"  # no 1.6 transaction yet
    mapped = _charging_state_to_v16().get(str(tx.get("charging_state")))
    if mapped in ("Charging", "SuspendedEV", "SuspendedEVSE"):
        return mapped
    # EVConnected / Idle while the 1.6 transaction runs: energy is not flowing and the EV did not say why.
    return "SuspendedEVSE"


def status_update(st: State, connector: int, timestamp: str) -> Generator[Step, Payload | None, None]:
    """Tell the CSMS the connector's refined status if it changed since the last one sent."""
    status = refine(st, connector)
    c = st.connector(connector)
    if status is None or status == c.get("sent16"):
        return
    c["sent16"] = status
    st.save()
    yield Notify(Side.CSMS, "StatusNotification", status_payload(connector, status, timestamp))


def status_payload(connector: int, status: str, timestamp: str) -> Payload:
    # 2.0.1 reports fault details in NotifyEvent; the 1.6 status carries only that there is one.
    error = "OtherError" if status == "Faulted" else "NoError"
    return {"connectorId": connector, "errorCode": error, "status": status, "timestamp": timestamp}
