"""Vendor cloud adapters: the interface, the registry and the OCPP 2.0.1 side they share.

A vendor adapter brings chargers that only talk to their manufacturer's
cloud into the gateway. It is split the same way as the translators: the
adapter is *pure* (no sockets, no clocks, no sleeping) and the runner
(``gateway.vendors``) does every bit of I/O.

Talking to the vendor's API is described as data. Each adapter operation is a
*flow*: a generator that yields ``ApiRequest`` (method, path, JSON body) and
receives the ``ApiResponse`` for it, then returns its result::

    def poll(self, charger, state):
        resp = yield ApiRequest("GET", f"/api/chargers/{charger.vendor_id}/state")
        return self._reading(charger, resp.json, state)

The runner sends the request with the account's token, refreshes the token
or logs in again on 401, waits out 429s (``Retry-After``) within a
client-side request budget, writes the request and its result to the
charger's message log, and throws ``VendorUnavailable`` into the flow when
the cloud cannot be reached (outage, 5xx, timeout). A flow may catch that
to answer differently; uncaught, the runner treats the cloud as down.

The OCPP side is common to every vendor and lives in this package as plain
functions: ``boot_notification`` (from the discovered charger),
``observe`` (a poll's ``Reading`` + the charger's previous state -> the
OCPP 2.0.1 CALLs a real charger would send: StatusNotification from the
op-mode table, TransactionEvent Started/Updated/Ended with the energy
register and power, seqNo, stoppedReason and idToken, Unavailable when the
charger or the cloud is unreachable) and ``handle_csms_call`` (a CSMS
command -> a flow of vendor requests -> the OCPP answer). An adapter only
says how its vendor does each thing: ``login``, ``discover``, ``poll`` and
the command primitives ``start``, ``stop``, ``set_current``, ``reboot``,
``set_available`` and ``update_firmware``; a primitive the vendor does not
have raises ``Unsupported`` and the CSMS gets the right OCPP rejection.

The gateway emits one canonical OCPP version, 2.0.1; its translators carry
it to a CSMS that speaks 1.6J or 2.1.

Modules: ``api`` (requests as data, flows, errors), ``model`` (accounts,
chargers, readings, op-mode tables), ``adapter`` (the ``VendorAdapter``
interface), ``registry`` (adapters by name), ``messages`` (the OCPP 2.0.1
CALLs a polled charger sends), ``profiles`` (charging profiles -> amps) and
``commands`` (CSMS commands -> vendor flows). Everything is re-exported
here, so ``from adapters.vendor_base import ...`` names any of it.

Adapters register by name (``register``) and third-party ones through the
Python entry-point group ``ocpp_gateway.vendor_adapters`` (name -> adapter
class); ``adapter_for(name, options)`` finds either.
"""

from __future__ import annotations

from adapters.vendor_base.adapter import VendorAdapter
from adapters.vendor_base.api import (
    SECRET_FIELDS,
    ApiRequest,
    ApiResponse,
    Flow,
    Unsupported,
    VendorApiError,
    VendorAuthError,
    VendorUnavailable,
    drive,
    expect_ok,
    redact,
    send,
)
from adapters.vendor_base.commands import COMMANDS, TRIGGERABLE, CommandOutcome, handle_csms_call, rejected
from adapters.vendor_base.messages import (
    ENERGY,
    EVSE,
    POWER,
    Followup,
    Message,
    Observation,
    boot_notification,
    end_transaction,
    iso,
    meter_value,
    new_state,
    observe,
    triggered_messages,
)
from adapters.vendor_base.model import (
    UNKNOWN_MODE,
    ChargerInfo,
    CompletedSession,
    Credentials,
    OpMode,
    Reading,
    Token,
    op_mode_table,
)
from adapters.vendor_base.profiles import parse_ts, profile_limit_a
from adapters.vendor_base.registry import ENTRY_POINT_GROUP, AdapterFactory, adapter_for, available, register

__all__ = [
    "COMMANDS",
    "ENERGY",
    "ENTRY_POINT_GROUP",
    "EVSE",
    "POWER",
    "SECRET_FIELDS",
    "TRIGGERABLE",
    "UNKNOWN_MODE",
    "AdapterFactory",
    "ApiRequest",
    "ApiResponse",
    "ChargerInfo",
    "CommandOutcome",
    "CompletedSession",
    "Credentials",
    "Flow",
    "Followup",
    "Message",
    "Observation",
    "OpMode",
    "Reading",
    "Token",
    "Unsupported",
    "VendorAdapter",
    "VendorApiError",
    "VendorAuthError",
    "VendorUnavailable",
    "adapter_for",
    "available",
    "boot_notification",
    "drive",
    "end_transaction",
    "expect_ok",
    "handle_csms_call",
    "iso",
    "meter_value",
    "new_state",
    "observe",
    "op_mode_table",
    "parse_ts",
    "profile_limit_a",
    "redact",
    "register",
    "rejected",
    "send",
    "triggered_messages",
]
