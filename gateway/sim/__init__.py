"""Simulated OCPP peers for the demo and the tests: a strict recording CSMS,
scriptable chargers for 1.6J / 2.0.1 / 2.1, and a fleet runner.

They speak raw OCPP-J over ``websockets`` (not the ``ocpp`` package's
ChargePoint) so tests control every byte, and they validate every frame they
receive against the schemas, recording what the other side got wrong.
"""

from gateway.sim.charger import SessionSummary, SimCharger
from gateway.sim.csms import CsmsCharger, CsmsTransaction, DemoCsms
from gateway.sim.fleet import Fleet, FleetStats
from gateway.sim.peer import (
    Answer,
    Counters,
    InvalidResponse,
    MalformedAnswer,
    Misbehaviour,
    OcppCallError,
    Reject,
    SimFrame,
    Violation,
)

__all__ = [
    "Answer",
    "Counters",
    "CsmsCharger",
    "CsmsTransaction",
    "DemoCsms",
    "Fleet",
    "FleetStats",
    "InvalidResponse",
    "MalformedAnswer",
    "Misbehaviour",
    "OcppCallError",
    "Reject",
    "SessionSummary",
    "SimCharger",
    "SimFrame",
    "Violation",
]
