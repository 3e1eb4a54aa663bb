"""Who may send each OCPP action: the charger, the CSMS or both.

The schemas do not say; the specifications do. Conformance lists use this so
that a translator documents only the messages each side can actually send.
"""

from __future__ import annotations

from adapters.base import Side
from gateway import schemas
from gateway.ocppj import Version

_BOTH = frozenset({"DataTransfer"})

_CHARGER_16 = frozenset(
    {
        "Authorize",
        "BootNotification",
        "DiagnosticsStatusNotification",
        "FirmwareStatusNotification",
        "Heartbeat",
        "MeterValues",
        "StartTransaction",
        "StatusNotification",
        "StopTransaction",
        # Security extension (OCPP 1.6 security whitepaper)
        "LogStatusNotification",
        "SecurityEventNotification",
        "SignCertificate",
        "SignedFirmwareStatusNotification",
    }
)

_CHARGER_201 = frozenset(
    {
        "Authorize",
        "BootNotification",
        "ClearedChargingLimit",
        "FirmwareStatusNotification",
        "Get15118EVCertificate",
        "GetCertificateStatus",
        "Heartbeat",
        "LogStatusNotification",
        "MeterValues",
        "NotifyChargingLimit",
        "NotifyCustomerInformation",
        "NotifyDisplayMessages",
        "NotifyEVChargingNeeds",
        "NotifyEVChargingSchedule",
        "NotifyEvent",
        "NotifyMonitoringReport",
        "NotifyReport",
        "PublishFirmwareStatusNotification",
        "ReportChargingProfiles",
        "ReservationStatusUpdate",
        "SecurityEventNotification",
        "SignCertificate",
        "StatusNotification",
        "TransactionEvent",
    }
)

_CHARGER_21 = _CHARGER_201 | {
    "BatterySwap",
    "ClosePeriodicEventStream",
    "GetCertificateChainStatus",
    "NotifyDERAlarm",
    "NotifyDERStartStop",
    "NotifyPeriodicEventStream",
    "NotifyPriorityCharging",
    "NotifySettlement",
    "OpenPeriodicEventStream",
    "PullDynamicScheduleUpdate",
    "ReportDERControl",
    "VatNumberValidation",
}

_CHARGER = {Version.V16: _CHARGER_16, Version.V201: _CHARGER_201, Version.V21: frozenset(_CHARGER_21)}


def senders(version: Version, action: str) -> tuple[Side, ...]:
    """The sides that may send ``action`` in ``version`` (DataTransfer: both)."""
    if action in _BOTH:
        return (Side.CHARGER, Side.CSMS)
    return (Side.CHARGER,) if action in _CHARGER[version] else (Side.CSMS,)


def sent_by(version: Version, side: Side) -> list[str]:
    """Every action of ``version`` that ``side`` may send, sorted."""
    return sorted(a for a in schemas.actions(version) if side in senders(version, a))
