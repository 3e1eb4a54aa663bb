"""``SimCharger``: a strict, scriptable charger simulator for OCPP 1.6J, 2.0.1 and 2.1.

A real WebSocket client. It boots, reports status, authorizes, runs
transactions with increasing energy readings, and answers the CSMS's calls
validly for its version (remote start/stop, configuration / device model,
reports, resets, availability, triggers, ...). Like ``DemoCsms`` it
validates every frame it receives and records what it saw, and it has the
knobs the gateway's bad-input tests need (``send_raw``, ``send_call``,
``misbehave``).

    charger = SimCharger("CP1", Version.V201, csms.url)
    await charger.connect()
    summary = await charger.run_session(energy_wh=5000)
    await charger.close()

State changes use the 1.6 connector status vocabulary on every version
(Available, Preparing, Charging, SuspendedEV, SuspendedEVSE, Finishing,
Reserved, Unavailable, Faulted); for 2.x it becomes a connectorStatus
StatusNotification and/or a TransactionEvent with the chargingState.
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

from websockets.asyncio.client import connect as ws_connect

from gateway.ocppj import ErrorKind, Version
from gateway.sim.payloads import meter_value, minimal_payload, now_iso
from gateway.sim.peer import Answer, Counters, Endpoint, HandlerResult, Reject

T = TypeVar("T")

OFFER_OWN_VERSION: Sequence[str] = ("<own version>",)  # sentinel: offer exactly the charger's subprotocol

# 1.6 connector status -> 2.x connectorStatus, and the chargingState it implies during a transaction.
_CONNECTOR_STATUS_2X = {
    "Available": "Available",
    "Preparing": "Occupied",
    "Charging": "Occupied",
    "SuspendedEV": "Occupied",
    "SuspendedEVSE": "Occupied",
    "Finishing": "Occupied",
    "Reserved": "Reserved",
    "Unavailable": "Unavailable",
    "Faulted": "Faulted",
}
_CHARGING_STATE = {"Charging": "Charging", "SuspendedEV": "SuspendedEV", "SuspendedEVSE": "SuspendedEVSE"}
# 1.6 stop reason -> (2.x stoppedReason, triggerReason).
_STOP_2X = {
    "Local": ("Local", "StopAuthorized"),
    "Remote": ("Remote", "RemoteStop"),
    "DeAuthorized": ("DeAuthorized", "Deauthorized"),
    "EVDisconnected": ("EVDisconnected", "EVCommunicationLost"),
    "EmergencyStop": ("EmergencyStop", "AbnormalCondition"),
    "PowerLoss": ("PowerLoss", "AbnormalCondition"),
    "Reboot": ("Reboot", "AbnormalCondition"),
    "HardReset": ("ImmediateReset", "ResetCommand"),
    "SoftReset": ("ImmediateReset", "ResetCommand"),
    "UnlockCommand": ("Other", "UnlockCommand"),
    "Other": ("Other", "AbnormalCondition"),
}


@dataclass(slots=True)
class ActiveTransaction:
    """A transaction the charger is running."""

    transaction_id: str  # 1.6: the CSMS's integer, as text
    connector_id: int
    id_tag: str
    meter_start: int  # Wh
    auth_status: str = "Accepted"
    remote_start_id: int | None = None
    charging_state: str = "Charging"
    next_seq_no: int = 0  # 2.x
    meter_stop: int | None = None
    stop_reason: str | None = None


@dataclass(slots=True)
class SessionSummary:
    """What ``run_session`` did."""

    charger_id: str
    version: Version
    connector_id: int
    id_tag: str
    auth_status: str
    transaction_id: str | None = None
    meter_start: int | None = None
    meter_stop: int | None = None
    samples: int = 0
    stop_reason: str | None = None

    @property
    def authorized(self) -> bool:
        return self.auth_status == "Accepted"

    @property
    def energy_wh(self) -> int:
        if self.meter_start is None or self.meter_stop is None:
            return 0
        return self.meter_stop - self.meter_start


@dataclass(slots=True)
class DeviceVariable:
    """One 2.x device-model variable (attribute Actual only)."""

    component: str
    variable: str
    value: str
    mutability: str = "ReadWrite"
    data_type: str = "string"
    component_instance: str | None = None
    variable_instance: str | None = None
    evse: int | None = None
    connector: int | None = None

    def component_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.component}
        if self.component_instance is not None:
            out["instance"] = self.component_instance
        if self.evse is not None:
            out["evse"] = {"id": self.evse} | ({"connectorId": self.connector} if self.connector is not None else {})
        return out

    def variable_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.variable}
        if self.variable_instance is not None:
            out["instance"] = self.variable_instance
        return out

    def same_component(self, component: dict[str, Any]) -> bool:
        evse = component.get("evse") or {}
        return (
            self.component == component["name"]
            and self.component_instance == component.get("instance")
            and self.evse == evse.get("id")
            and self.connector == evse.get("connectorId")
        )


def default_configuration(connectors: int, heartbeat_interval: int = 300) -> dict[str, tuple[str, bool]]:
    """A realistic 1.6 configuration: key -> (value, readonly)."""
    return {
        "AllowOfflineTxForUnknownId": ("false", False),
        "AuthorizationCacheEnabled": ("true", False),
        "AuthorizeRemoteTxRequests": ("false", False),
        "ChargeProfileMaxStackLevel": ("10", True),
        "ChargingScheduleAllowedChargingRateUnit": ("Current,Power", True),
        "ChargingScheduleMaxPeriods": ("24", True),
        "ClockAlignedDataInterval": ("0", False),
        "ConnectionTimeOut": ("60", False),
        "GetConfigurationMaxKeys": ("64", True),
        "HeartbeatInterval": (str(heartbeat_interval), False),
        "LocalAuthListEnabled": ("true", False),
        "LocalAuthListMaxLength": ("100", True),
        "LocalAuthorizeOffline": ("true", False),
        "LocalPreAuthorize": ("false", False),
        "MaxChargingProfilesInstalled": ("10", True),
        "MeterValuesAlignedData": ("Energy.Active.Import.Register", False),
        "MeterValuesSampledData": ("Energy.Active.Import.Register,Power.Active.Import", False),
        "MeterValueSampleInterval": ("60", False),
        "NumberOfConnectors": (str(connectors), True),
        "ReserveConnectorZeroSupported": ("false", True),
        "ResetRetries": ("1", False),
        "SendLocalListMaxLength": ("100", True),
        "StopTransactionOnEVSideDisconnect": ("true", False),
        "StopTransactionOnInvalidId": ("true", False),
        "StopTxnAlignedData": ("", False),
        "StopTxnSampledData": ("Energy.Active.Import.Register", False),
        "SupportedFeatureProfiles": (
            "Core,FirmwareManagement,LocalAuthListManagement,Reservation,SmartCharging,RemoteTrigger",
            True,
        ),
        "TransactionMessageAttempts": ("3", False),
        "TransactionMessageRetryInterval": ("60", False),
        "UnlockConnectorOnEVSideDisconnect": ("true", False),
        "WebSocketPingInterval": ("0", False),
    }


def default_device_model(connectors: int, heartbeat_interval: int = 300) -> list[DeviceVariable]:
    """A small but realistic 2.x device model."""
    dv = DeviceVariable
    model = [
        dv("ChargingStation", "AvailabilityState", "Available", "ReadOnly", "OptionList"),
        dv("ChargingStation", "Available", "true", "ReadOnly", "boolean"),
        dv("ChargingStation", "Model", "SimCharger", "ReadOnly"),
        dv("ChargingStation", "VendorName", "OCPPGW-Sim", "ReadOnly"),
        dv("OCPPCommCtrlr", "HeartbeatInterval", str(heartbeat_interval), data_type="integer"),
        dv("OCPPCommCtrlr", "MessageTimeout", "30", data_type="integer", variable_instance="Default"),
        dv("OCPPCommCtrlr", "MessageAttempts", "3", data_type="integer", variable_instance="TransactionEvent"),
        dv("OCPPCommCtrlr", "MessageAttemptInterval", "60", data_type="integer", variable_instance="TransactionEvent"),
        dv("OCPPCommCtrlr", "WebSocketPingInterval", "0", data_type="integer"),
        dv("OCPPCommCtrlr", "ResetRetries", "1", data_type="integer"),
        dv("SampledDataCtrlr", "TxUpdatedInterval", "60", data_type="integer"),
        dv(
            "SampledDataCtrlr",
            "TxUpdatedMeasurands",
            "Energy.Active.Import.Register,Power.Active.Import",
            "ReadWrite",
            "MemberList",
        ),
        dv("SampledDataCtrlr", "TxEndedMeasurands", "Energy.Active.Import.Register", "ReadWrite", "MemberList"),
        dv("AlignedDataCtrlr", "Interval", "0", data_type="integer"),
        dv("AlignedDataCtrlr", "Measurands", "Energy.Active.Import.Register", "ReadWrite", "MemberList"),
        dv("TxCtrlr", "EVConnectionTimeOut", "60", data_type="integer"),
        dv("TxCtrlr", "StopTxOnEVSideDisconnect", "true", data_type="boolean"),
        dv("TxCtrlr", "StopTxOnInvalidId", "true", data_type="boolean"),
        dv("TxCtrlr", "TxStartPoint", "Authorized", "ReadWrite", "MemberList"),
        dv("TxCtrlr", "TxStopPoint", "EVConnected,Authorized", "ReadWrite", "MemberList"),
        dv("AuthCtrlr", "AuthorizeRemoteStart", "false", data_type="boolean"),
        dv("AuthCtrlr", "LocalAuthorizeOffline", "true", data_type="boolean"),
        dv("AuthCtrlr", "LocalPreAuthorize", "false", data_type="boolean"),
        dv("AuthCacheCtrlr", "Enabled", "true", data_type="boolean"),
        dv("LocalAuthListCtrlr", "Enabled", "true", data_type="boolean"),
        dv("LocalAuthListCtrlr", "ItemsPerMessage", "100", "ReadOnly", "integer"),
        dv("SmartChargingCtrlr", "Enabled", "true", data_type="boolean"),
        dv("SmartChargingCtrlr", "ProfileStackLevel", "10", "ReadOnly", "integer"),
        dv("SmartChargingCtrlr", "RateUnit", "A,W", "ReadOnly", "MemberList"),
        dv("SmartChargingCtrlr", "PeriodsPerSchedule", "24", "ReadOnly", "integer"),
        dv("DeviceDataCtrlr", "ItemsPerMessage", "50", "ReadOnly", "integer", variable_instance="GetVariables"),
        dv("DeviceDataCtrlr", "ItemsPerMessage", "50", "ReadOnly", "integer", variable_instance="SetVariables"),
        dv("DeviceDataCtrlr", "BytesPerMessage", "65000", "ReadOnly", "integer", variable_instance="GetVariables"),
        dv("SecurityCtrlr", "SecurityProfile", "1", "ReadOnly", "integer"),
        dv("SecurityCtrlr", "OrganizationName", "OCPP Gateway Demo"),
    ]
    for n in range(1, connectors + 1):
        model.append(dv("EVSE", "AvailabilityState", "Available", "ReadOnly", "OptionList", evse=n))
        model.append(dv("EVSE", "Power", "22000", "ReadOnly", "decimal", evse=n))
        model.append(dv("Connector", "AvailabilityState", "Available", "ReadOnly", "OptionList", evse=n, connector=1))
        model.append(dv("Connector", "ConnectorType", "cType2", "ReadOnly", evse=n, connector=1))
    return model


class SimCharger(Endpoint):
    """A simulated charger. ``url`` is the CSMS (or gateway) endpoint; the charger id is appended."""

    def __init__(
        self,
        charger_id: str,
        version: Version,
        url: str,
        *,
        subprotocols: Sequence[str] | None = OFFER_OWN_VERSION,
        connectors: int = 1,
        id_tag: str = "SIMTAG0001",
        vendor: str = "OCPPGW-Sim",
        model: str = "SimCharger",
        serial: str | None = None,
        firmware: str = "1.0.0",
        meter_start_wh: int = 10_000,
        power_w: float = 7400.0,
        headers: dict[str, str] | None = None,
        password: str | None = None,
        keep_frames: int | None = None,
        counters: Counters | None = None,
        call_timeout: float = 30.0,
        open_timeout: float = 10.0,
        max_size: int | None = 2**20,
    ) -> None:
        super().__init__(charger_id, version, keep_frames=keep_frames, counters=counters)
        self.url = url
        self.subprotocols = [version.subprotocol] if subprotocols is OFFER_OWN_VERSION else list(subprotocols or [])
        self.connectors = connectors
        self.id_tag = id_tag
        self.vendor = vendor
        self.model = model
        self.serial = serial or f"SN-{charger_id}"[:25]
        self.firmware = firmware
        self.power_w = power_w
        self.headers = dict(headers or {})
        if password is not None:
            token = base64.b64encode(f"{charger_id}:{password}".encode()).decode()
            self.headers["Authorization"] = f"Basic {token}"
        self.call_timeout = call_timeout
        self.open_timeout = open_timeout
        self.max_size = max_size
        self.subprotocol: str | None = None
        self.booted = False
        self.boot_response: dict[str, Any] | None = None
        self.heartbeat_interval = 300
        self.register_wh: dict[int, int] = {c: meter_start_wh for c in range(1, connectors + 1)}
        self.connector_status: dict[int, str] = {c: "Available" for c in range(0, connectors + 1)}
        self.transactions: dict[int, ActiveTransaction] = {}  # connector -> running transaction
        self.finished: deque[ActiveTransaction] = deque(maxlen=100)  # most recent first out
        self.configuration = default_configuration(connectors)
        self.device_model = default_device_model(connectors)
        self.charging_profiles: list[dict[str, Any]] = []
        self.local_list_version = 0
        self.reservations: dict[int, dict[str, Any]] = {}
        self.resets: list[str] = []

    # ----------------------------------------------------------------- connection

    @property
    def full_url(self) -> str:
        return f"{self.url.rstrip('/')}/{self.charger_id}"

    async def connect(self) -> str | None:
        """Open the WebSocket; returns the negotiated subprotocol.

        Raises what ``websockets`` raises when the handshake is refused
        (``InvalidStatus`` carries the HTTP status) or the server is down (``OSError``).
        When several subprotocols are offered, the charger speaks the one the server picked.
        """
        ws = await ws_connect(
            self.full_url,
            subprotocols=self.subprotocols or None,  # type: ignore[arg-type]
            compression=None,
            open_timeout=self.open_timeout,
            max_size=self.max_size,
            additional_headers=self.headers or None,
        )
        self.subprotocol = ws.subprotocol
        negotiated = Version.from_subprotocol(ws.subprotocol or "")
        if negotiated is not None:
            self.version = negotiated
        elif self.subprotocols:
            self._violation(f"server accepted the connection without one of {self.subprotocols}")
        self._attach(ws)
        return ws.subprotocol

    async def __aenter__(self) -> SimCharger:
        await self.connect()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def wait_for(self, predicate: Callable[[], T], timeout: float = 10.0) -> T:
        """Wait until ``predicate()`` is truthy (re-checked on every frame)."""
        return await self.changes.wait_for(predicate, timeout)

    async def request(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        """A normal CALL with the charger's timeout."""
        return await self.call(action, payload, self.call_timeout)

    # ----------------------------------------------------------------- scripted steps

    @property
    def v16(self) -> bool:
        return self.version is Version.V16

    async def boot(self, reason: str = "PowerUp", report_status: bool = True) -> dict[str, Any]:
        """BootNotification; when Accepted, StatusNotification for each connector and a Heartbeat."""
        if self.v16:
            payload: dict[str, Any] = {
                "chargePointVendor": self.vendor[:20],
                "chargePointModel": self.model[:20],
                "chargePointSerialNumber": self.serial[:25],
                "firmwareVersion": self.firmware[:50],
            }
        else:
            payload = {
                "reason": reason,
                "chargingStation": {
                    "model": self.model[:20],
                    "vendorName": self.vendor[:50],
                    "serialNumber": self.serial[:25],
                    "firmwareVersion": self.firmware[:50],
                },
            }
        response = await self.request("BootNotification", payload)
        self.boot_response = response
        self.heartbeat_interval = int(response.get("interval") or self.heartbeat_interval)
        self.booted = response["status"] == "Accepted"
        if self.booted and report_status:
            first = 0 if self.v16 else 1  # 1.6 also reports the charge point itself as connector 0
            for connector in range(first, self.connectors + 1):
                await self._status_notification(connector, self.connector_status[connector])
            await self.heartbeat()
        return response

    async def heartbeat(self) -> str:
        response = await self.request("Heartbeat", {})
        return str(response["currentTime"])

    async def authorize(self, id_tag: str | None = None) -> str:
        """Authorize; returns the status (Accepted, Invalid, Blocked, ...)."""
        tag = id_tag or self.id_tag
        if self.v16:
            response = await self.request("Authorize", {"idTag": tag})
            return str(response["idTagInfo"]["status"])
        response = await self.request("Authorize", {"idToken": self._id_token(tag)})
        return str(response["idTokenInfo"]["status"])

    def _id_token(self, tag: str, kind: str = "ISO14443") -> dict[str, Any]:
        return {"idToken": tag, "type": kind}

    async def _status_notification(self, connector: int, status: str) -> None:
        if self.v16:
            payload = {"connectorId": connector, "errorCode": "NoError", "status": status, "timestamp": now_iso()}
        else:
            payload = {
                "timestamp": now_iso(),
                "connectorStatus": _CONNECTOR_STATUS_2X[status],
                "evseId": connector,
                "connectorId": 1,
            }
        await self.request("StatusNotification", payload)

    async def set_status(self, connector: int, status: str) -> None:
        """Change a connector's state (1.6 vocabulary) and tell the CSMS the way the version does."""
        previous = self.connector_status.get(connector, "Available")
        self.connector_status[connector] = status
        self.changes.notify()
        if self.v16:
            await self._status_notification(connector, status)
            return
        if _CONNECTOR_STATUS_2X[status] != _CONNECTOR_STATUS_2X.get(previous):
            await self._status_notification(connector, status)
        tx = self.transactions.get(connector)
        state = _CHARGING_STATE.get(status)
        if tx is not None and state is not None and state != tx.charging_state:
            tx.charging_state = state
            await self._transaction_event(tx, "Updated", "ChargingStateChanged", {"chargingState": state})

    async def _transaction_event(
        self,
        tx: ActiveTransaction,
        event: str,
        trigger: str,
        info: dict[str, Any] | None = None,
        meter: list[dict[str, Any]] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "eventType": event,
            "timestamp": now_iso(),
            "triggerReason": trigger,
            "seqNo": tx.next_seq_no,
            "transactionInfo": {"transactionId": tx.transaction_id, **(info or {})},
        }
        if meter:
            payload["meterValue"] = meter
        payload.update(extra or {})
        tx.next_seq_no += 1
        return await self.request("TransactionEvent", payload)

    async def start_transaction(
        self,
        connector: int = 1,
        id_tag: str | None = None,
        remote_start_id: int | None = None,
        token_type: str = "ISO14443",
    ) -> ActiveTransaction:
        """Start a transaction (1.6 StartTransaction; 2.x TransactionEvent Started).

        If the CSMS does not accept the id, the transaction is stopped at once
        (reason DeAuthorized) as a real charger would; check ``auth_status``.
        """
        if connector in self.transactions:
            raise RuntimeError(f"{self.charger_id}: connector {connector} already has a transaction")
        tag = id_tag or self.id_tag
        start = self.register_wh[connector]
        if self.v16:
            response = await self.request(
                "StartTransaction",
                {"connectorId": connector, "idTag": tag, "meterStart": start, "timestamp": now_iso()},
            )
            tx = ActiveTransaction(str(response["transactionId"]), connector, tag, start)
            tx.auth_status = response["idTagInfo"]["status"]
            self.transactions[connector] = tx
        else:
            tx = ActiveTransaction(str(uuid.uuid4()), connector, tag, start, remote_start_id=remote_start_id)
            self.transactions[connector] = tx
            info: dict[str, Any] = {"chargingState": "Charging"}
            if remote_start_id is not None:
                info["remoteStartId"] = remote_start_id
            response = await self._transaction_event(
                tx,
                "Started",
                "RemoteStart" if remote_start_id is not None else "Authorized",
                info,
                [meter_value(self.version, start, None, "Transaction.Begin")],
                {"idToken": self._id_token(tag, token_type), "evse": {"id": connector, "connectorId": 1}},
            )
            tx.auth_status = (response.get("idTokenInfo") or {}).get("status", "Accepted")
        if tx.auth_status != "Accepted":
            await self.stop_transaction(connector, "DeAuthorized")
        return tx

    async def send_meter_values(
        self, connector: int = 1, energy_delta_wh: int = 0, power_w: float | None = None, context: str | None = None
    ) -> None:
        """Advance the energy register and report it (with power): in the transaction if one runs."""
        self.register_wh[connector] += energy_delta_wh
        tx = self.transactions.get(connector)
        ctx = context or "Sample.Periodic"
        mv = meter_value(self.version, self.register_wh[connector], power_w, ctx)
        if self.v16:
            payload: dict[str, Any] = {"connectorId": connector, "meterValue": [mv]}
            if tx is not None:
                payload["transactionId"] = int(tx.transaction_id)
            await self.request("MeterValues", payload)
        elif tx is not None:
            trigger = "Trigger" if ctx == "Trigger" else "MeterValuePeriodic"
            await self._transaction_event(tx, "Updated", trigger, None, [mv])
        else:
            await self.request("MeterValues", {"evseId": connector, "meterValue": [mv]})

    async def stop_transaction(self, connector: int = 1, reason: str = "Local") -> ActiveTransaction:
        """Stop the connector's transaction (``reason`` in 1.6 vocabulary; mapped for 2.x)."""
        tx = self.transactions.pop(connector)
        tx.meter_stop = self.register_wh[connector]
        tx.stop_reason = reason
        end = meter_value(self.version, tx.meter_stop, None, "Transaction.End")
        if self.v16:
            payload: dict[str, Any] = {
                "meterStop": tx.meter_stop,
                "timestamp": now_iso(),
                "transactionId": int(tx.transaction_id),
                "reason": reason,
                "idTag": tx.id_tag,
                "transactionData": [end],
            }
            await self.request("StopTransaction", payload)
        else:
            stopped, trigger = _STOP_2X.get(reason, (reason, "AbnormalCondition"))
            await self._transaction_event(
                tx, "Ended", trigger, {"stoppedReason": stopped, "chargingState": "EVConnected"}, [end]
            )
        self.finished.append(tx)
        return tx

    async def run_session(
        self,
        energy_wh: int = 5000,
        meter_interval: float = 0.0,
        samples: int = 3,
        connector: int = 1,
        id_tag: str | None = None,
        power_w: float | None = None,
        suspend: bool = True,
    ) -> SessionSummary:
        """A whole charging session, booting first if needed.

        Authorize -> Preparing -> start -> Charging -> ``samples`` meter values
        every ``meter_interval`` s (register +energy_wh in total, power) with a
        SuspendedEV pause midway -> stop (Local) -> Finishing -> Available.
        """
        if not self.booted:
            response = await self.boot()
            if not self.booted:
                raise RuntimeError(f"{self.charger_id}: BootNotification {response['status']}")
        tag = id_tag or self.id_tag
        summary = SessionSummary(self.charger_id, self.version, connector, tag, await self.authorize(tag))
        if not summary.authorized:
            return summary
        await self.set_status(connector, "Preparing")
        tx = await self.start_transaction(connector, tag)
        summary.transaction_id = tx.transaction_id
        summary.meter_start = tx.meter_start
        if tx.auth_status != "Accepted":
            summary.auth_status = tx.auth_status
            summary.meter_stop = tx.meter_stop
            summary.stop_reason = tx.stop_reason
            await self.set_status(connector, "Finishing")
            await self.set_status(connector, "Available")
            return summary
        await self.set_status(connector, "Charging")
        power = self.power_w if power_w is None else power_w
        steps = max(samples, 0)
        for i in range(steps):
            await asyncio.sleep(meter_interval)
            if suspend and steps >= 2 and i == steps // 2:
                await self.set_status(connector, "SuspendedEV")
                await self.set_status(connector, "Charging")
            delta = energy_wh // steps + (energy_wh % steps if i == steps - 1 else 0)
            await self.send_meter_values(connector, delta, power)
            summary.samples += 1
        if steps == 0:
            self.register_wh[connector] += energy_wh
        await self.stop_transaction(connector, "Local")
        summary.meter_stop = tx.meter_stop
        summary.stop_reason = tx.stop_reason
        await self.set_status(connector, "Finishing")
        await self.set_status(connector, "Available")
        return summary

    # ----------------------------------------------------------------- misbehaviour helpers

    @staticmethod
    def oversized_payload(size: int) -> dict[str, Any]:
        """A DataTransfer payload whose frame is at least ``size`` bytes (valid in every version)."""
        return {"vendorId": "org.example.sim", "messageId": "Oversized", "data": "x" * size}

    # ----------------------------------------------------------------- answering the CSMS

    async def handle_call(self, action: str, payload: dict[str, Any]) -> HandlerResult:
        handler = (_HANDLERS_16 if self.v16 else _HANDLERS_2X).get(action) or _HANDLERS_ALL.get(action)
        if handler is not None:
            return handler(self, payload)
        generic = minimal_payload(self.version, action, response=True)
        if generic is None:
            raise Reject(ErrorKind.NOT_SUPPORTED, f"the simulated charger does not support {action}")
        return generic

    def _free_connector(self, wanted: int | None) -> int | None:
        if wanted is not None:
            ok = 1 <= wanted <= self.connectors and wanted not in self.transactions
            return wanted if ok else None
        for c in range(1, self.connectors + 1):
            if c not in self.transactions and self.connector_status.get(c) != "Unavailable":
                return c
        return None

    def _tx_by_id(self, transaction_id: str) -> ActiveTransaction | None:
        for tx in self.transactions.values():
            if tx.transaction_id == transaction_id:
                return tx
        return None

    async def _remote_start(self, connector: int, tag: str, remote_start_id: int | None, token_type: str) -> None:
        await self.set_status(connector, "Preparing")
        tx = await self.start_transaction(connector, tag, remote_start_id, token_type)
        if tx.auth_status == "Accepted":
            await self.set_status(connector, "Charging")
        else:
            await self.set_status(connector, "Available")

    async def _finish(self, connector: int, reason: str) -> None:
        if connector in self.transactions:
            await self.stop_transaction(connector, reason)
            await self.set_status(connector, "Finishing")
            await self.set_status(connector, "Available")

    # 1.6 ------------------------------------------------------------------

    def _h16_remote_start(self, p: dict[str, Any]) -> HandlerResult:
        connector = self._free_connector(p.get("connectorId"))
        if connector is None:
            return {"status": "Rejected"}
        return Answer({"status": "Accepted"}, lambda: self._remote_start(connector, p["idTag"], None, "ISO14443"))

    def _h16_remote_stop(self, p: dict[str, Any]) -> HandlerResult:
        tx = self._tx_by_id(str(p["transactionId"]))
        if tx is None:
            return {"status": "Rejected"}
        return Answer({"status": "Accepted"}, lambda: self._finish(tx.connector_id, "Remote"))

    def _h16_get_configuration(self, p: dict[str, Any]) -> HandlerResult:
        keys = p.get("key") or list(self.configuration)
        known = [
            {"key": k, "readonly": self.configuration[k][1], "value": self.configuration[k][0]}
            for k in keys
            if k in self.configuration
        ]
        unknown = [k for k in keys if k not in self.configuration]
        out: dict[str, Any] = {"configurationKey": known}
        if unknown:
            out["unknownKey"] = unknown
        return out

    def _h16_change_configuration(self, p: dict[str, Any]) -> HandlerResult:
        key, value = p["key"], p["value"]
        if key not in self.configuration:
            return {"status": "NotSupported"}
        if self.configuration[key][1]:
            return {"status": "Rejected"}
        self.configuration[key] = (value, False)
        if key == "HeartbeatInterval" and value.isdigit():
            self.heartbeat_interval = int(value)
        return {"status": "Accepted"}

    def _h16_change_availability(self, p: dict[str, Any]) -> HandlerResult:
        connector = p["connectorId"]
        if connector > self.connectors:
            return {"status": "Rejected"}
        targets = list(range(0, self.connectors + 1)) if connector == 0 else [connector]
        status = "Unavailable" if p["type"] == "Inoperative" else "Available"
        if status == "Unavailable" and any(c in self.transactions for c in targets):
            return {"status": "Scheduled"}

        async def then() -> None:
            for c in targets:
                await self.set_status(c, status)

        return Answer({"status": "Accepted"}, then)

    def _h16_unlock(self, p: dict[str, Any]) -> HandlerResult:
        connector = p["connectorId"]
        if not 1 <= connector <= self.connectors:
            return {"status": "NotSupported"}
        if connector in self.transactions:
            return Answer({"status": "Unlocked"}, lambda: self._finish(connector, "UnlockCommand"))
        return {"status": "Unlocked"}

    def _h16_trigger(self, p: dict[str, Any]) -> HandlerResult:
        what = p["requestedMessage"]
        connector = p.get("connectorId")
        if connector is not None and not 0 <= connector <= self.connectors:
            return {"status": "Rejected"}

        async def then() -> None:
            if what == "BootNotification":
                await self.boot(report_status=False)
            elif what == "Heartbeat":
                await self.heartbeat()
            elif what == "StatusNotification":
                for c in [connector] if connector is not None else range(0, self.connectors + 1):
                    await self._status_notification(c, self.connector_status[c])
            elif what == "MeterValues":
                for c in [connector] if connector else range(1, self.connectors + 1):
                    await self.send_meter_values(c, 0, self.power_w if c in self.transactions else 0.0, "Trigger")
            elif what == "DiagnosticsStatusNotification":
                await self.request("DiagnosticsStatusNotification", {"status": "Idle"})
            elif what == "FirmwareStatusNotification":
                await self.request("FirmwareStatusNotification", {"status": "Idle"})

        return Answer({"status": "Accepted"}, then)

    def _h16_composite(self, p: dict[str, Any]) -> HandlerResult:
        unit = p.get("chargingRateUnit", "A")
        return {
            "status": "Accepted",
            "connectorId": p["connectorId"],
            "scheduleStart": now_iso(),
            "chargingSchedule": {
                "duration": p["duration"],
                "chargingRateUnit": unit,
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 32.0 if unit == "A" else 22000.0}],
            },
        }

    def _h16_diagnostics(self, p: dict[str, Any]) -> HandlerResult:
        async def then() -> None:
            for status in ("Uploading", "Uploaded"):
                await self.request("DiagnosticsStatusNotification", {"status": status})

        return Answer({"fileName": f"diagnostics-{self.charger_id}.log"}, then)

    def _h16_update_firmware(self, p: dict[str, Any]) -> HandlerResult:
        async def then() -> None:
            for status in ("Downloading", "Downloaded", "Installing", "Installed"):
                await self.request("FirmwareStatusNotification", {"status": status})

        return Answer({}, then)

    def _h16_send_local_list(self, p: dict[str, Any]) -> HandlerResult:
        self.local_list_version = p["listVersion"]
        return {"status": "Accepted"}

    def _h16_local_list_version(self, p: dict[str, Any]) -> HandlerResult:
        return {"listVersion": self.local_list_version}

    def _h16_reserve(self, p: dict[str, Any]) -> HandlerResult:
        if p["connectorId"] > self.connectors:
            return {"status": "Rejected"}
        if p["connectorId"] in self.transactions:
            return {"status": "Occupied"}
        self.reservations[p["reservationId"]] = p
        return {"status": "Accepted"}

    # 2.x ------------------------------------------------------------------

    def _h2_request_start(self, p: dict[str, Any]) -> HandlerResult:
        connector = self._free_connector(p.get("evseId"))
        if connector is None:
            return {"status": "Rejected"}
        token = p["idToken"]
        return Answer(
            {"status": "Accepted"},
            lambda: self._remote_start(connector, token["idToken"], p["remoteStartId"], token["type"]),
        )

    def _h2_request_stop(self, p: dict[str, Any]) -> HandlerResult:
        tx = self._tx_by_id(p["transactionId"])
        if tx is None:
            return {"status": "Rejected"}
        return Answer({"status": "Accepted"}, lambda: self._finish(tx.connector_id, "Remote"))

    def _find_variable(self, component: dict[str, Any], variable: dict[str, Any]) -> DeviceVariable | str:
        in_component = [v for v in self.device_model if v.same_component(component)]
        if not in_component:
            return "UnknownComponent"
        for v in in_component:
            if v.variable == variable["name"] and v.variable_instance == variable.get("instance"):
                return v
        return "UnknownVariable"

    def _variable_result(
        self, item: dict[str, Any], forbidden: str
    ) -> tuple[dict[str, Any], DeviceVariable | None]:
        """The result skeleton for one Get/SetVariables item, and the variable if the access may proceed.

        ``forbidden`` is the mutability that rules the access out (WriteOnly to read, ReadOnly to write).
        """
        found = self._find_variable(item["component"], item["variable"])
        result: dict[str, Any] = {"component": item["component"], "variable": item["variable"]}
        if "attributeType" in item:
            result["attributeType"] = item["attributeType"]
        if isinstance(found, str):
            result["attributeStatus"] = found
        elif item.get("attributeType", "Actual") != "Actual":
            result["attributeStatus"] = "NotSupportedAttributeType"
        elif found.mutability == forbidden:
            result["attributeStatus"] = "Rejected"
        else:
            result["attributeStatus"] = "Accepted"
            return result, found
        return result, None

    def _h2_get_variables(self, p: dict[str, Any]) -> HandlerResult:
        results = []
        for item in p["getVariableData"]:
            result, found = self._variable_result(item, forbidden="WriteOnly")
            if found is not None:
                result["attributeValue"] = found.value
            results.append(result)
        return {"getVariableResult": results}

    def _h2_set_variables(self, p: dict[str, Any]) -> HandlerResult:
        results = []
        for item in p["setVariableData"]:
            result, found = self._variable_result(item, forbidden="ReadOnly")
            if found is not None:
                found.value = item["attributeValue"]
                if found.variable == "HeartbeatInterval" and found.value.isdigit():
                    self.heartbeat_interval = int(found.value)
            results.append(result)
        return {"setVariableResult": results}

    def report_data(self) -> list[dict[str, Any]]:
        """The device model as NotifyReport reportData."""
        out = []
        for v in self.device_model:
            attribute: dict[str, Any] = {"type": "Actual", "mutability": v.mutability}
            if v.mutability != "WriteOnly":
                attribute["value"] = v.value
            out.append(
                {
                    "component": v.component_json(),
                    "variable": v.variable_json(),
                    "variableAttribute": [attribute],
                    "variableCharacteristics": {"dataType": v.data_type, "supportsMonitoring": False},
                }
            )
        return out

    async def send_report(self, request_id: int, chunk: int = 20) -> None:
        """NotifyReport with the whole device model, in parts of ``chunk`` items (seqNo, tbc)."""
        data = self.report_data()
        parts = [data[i : i + chunk] for i in range(0, len(data), chunk)]
        for seq, part in enumerate(parts):
            await self.request(
                "NotifyReport",
                {
                    "requestId": request_id,
                    "generatedAt": now_iso(),
                    "reportData": part,
                    "tbc": seq < len(parts) - 1,
                    "seqNo": seq,
                },
            )

    def _h2_base_report(self, p: dict[str, Any]) -> HandlerResult:
        return Answer({"status": "Accepted"}, lambda: self.send_report(p["requestId"]))

    def _h2_change_availability(self, p: dict[str, Any]) -> HandlerResult:
        evse = (p.get("evse") or {}).get("id")
        if evse is not None and evse > self.connectors:
            return {"status": "Rejected"}
        targets = list(range(1, self.connectors + 1)) if not evse else [evse]
        status = "Unavailable" if p["operationalStatus"] == "Inoperative" else "Available"
        if status == "Unavailable" and any(c in self.transactions for c in targets):
            return {"status": "Scheduled"}

        async def then() -> None:
            for c in targets:
                await self.set_status(c, status)

        return Answer({"status": "Accepted"}, then)

    def _h2_unlock(self, p: dict[str, Any]) -> HandlerResult:
        evse, connector = p["evseId"], p["connectorId"]
        if not 1 <= evse <= self.connectors or connector != 1:
            return {"status": "UnknownConnector"}
        if evse in self.transactions:
            return {"status": "OngoingAuthorizedTransaction"}
        return {"status": "Unlocked"}

    def _h2_trigger(self, p: dict[str, Any]) -> HandlerResult:
        what = p["requestedMessage"]
        evse = (p.get("evse") or {}).get("id")
        if evse is not None and not 0 <= evse <= self.connectors:
            return {"status": "Rejected"}
        connectors = [evse] if evse else list(range(1, self.connectors + 1))

        async def then() -> None:
            if what == "BootNotification":
                await self.boot("Triggered", report_status=False)
            elif what == "Heartbeat":
                await self.heartbeat()
            elif what == "StatusNotification":
                for c in connectors:
                    await self._status_notification(c, self.connector_status[c])
            elif what in ("MeterValues", "TransactionEvent"):
                for c in connectors:
                    if what == "MeterValues" or c in self.transactions:
                        await self.send_meter_values(c, 0, self.power_w if c in self.transactions else 0.0, "Trigger")
            elif what == "LogStatusNotification":
                await self.request("LogStatusNotification", {"status": "Idle"})
            elif what == "FirmwareStatusNotification":
                await self.request("FirmwareStatusNotification", {"status": "Idle"})

        if what in ("BootNotification", "Heartbeat", "StatusNotification", "MeterValues"):
            return Answer({"status": "Accepted"}, then)
        if what in ("LogStatusNotification", "FirmwareStatusNotification"):
            return Answer({"status": "Accepted"}, then)
        if what == "TransactionEvent":
            if not any(c in self.transactions for c in connectors):
                return {"status": "Rejected"}
            return Answer({"status": "Accepted"}, then)
        return {"status": "NotImplemented"}

    def _h2_composite(self, p: dict[str, Any]) -> HandlerResult:
        unit = p.get("chargingRateUnit", "A")
        return {
            "status": "Accepted",
            "schedule": {
                "evseId": p["evseId"],
                "duration": p["duration"],
                "scheduleStart": now_iso(),
                "chargingRateUnit": unit,
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 32.0 if unit == "A" else 22000.0}],
            },
        }

    def _h2_get_log(self, p: dict[str, Any]) -> HandlerResult:
        request_id = p["requestId"]

        async def then() -> None:
            for status in ("Uploading", "Uploaded"):
                await self.request("LogStatusNotification", {"status": status, "requestId": request_id})

        return Answer({"status": "Accepted", "filename": f"{p['logType']}-{self.charger_id}.log"}, then)

    def _h2_update_firmware(self, p: dict[str, Any]) -> HandlerResult:
        request_id = p["requestId"]

        async def then() -> None:
            for status in ("Downloading", "Downloaded", "Installing", "Installed"):
                await self.request("FirmwareStatusNotification", {"status": status, "requestId": request_id})

        return Answer({"status": "Accepted"}, then)

    def _h2_send_local_list(self, p: dict[str, Any]) -> HandlerResult:
        self.local_list_version = p["versionNumber"]
        return {"status": "Accepted"}

    def _h2_local_list_version(self, p: dict[str, Any]) -> HandlerResult:
        return {"versionNumber": self.local_list_version}

    def _h2_reserve(self, p: dict[str, Any]) -> HandlerResult:
        evse = p.get("evseId")
        if evse is not None and evse > self.connectors:
            return {"status": "Rejected"}
        if evse is not None and evse in self.transactions:
            return {"status": "Occupied"}
        self.reservations[p["id"]] = p
        return {"status": "Accepted"}

    def _h2_transaction_status(self, p: dict[str, Any]) -> HandlerResult:
        out: dict[str, Any] = {"messagesInQueue": False}
        if "transactionId" in p:
            out["ongoingIndicator"] = self._tx_by_id(p["transactionId"]) is not None
        return out

    # shared ----------------------------------------------------------------

    def _h_reset(self, p: dict[str, Any]) -> HandlerResult:
        self.resets.append(p["type"])
        return {"status": "Accepted"}

    def _h_accepted(self, p: dict[str, Any]) -> HandlerResult:
        return {"status": "Accepted"}

    def _h_set_profile(self, p: dict[str, Any]) -> HandlerResult:
        self.charging_profiles.append(p)
        return {"status": "Accepted"}

    def _h_clear_profile(self, p: dict[str, Any]) -> HandlerResult:
        if not self.charging_profiles:
            return {"status": "Unknown"}
        self.charging_profiles.clear()
        return {"status": "Accepted"}

    def _h_cancel_reservation(self, p: dict[str, Any]) -> HandlerResult:
        return {"status": "Accepted" if self.reservations.pop(p["reservationId"], None) else "Rejected"}

    def _h_data_transfer(self, p: dict[str, Any]) -> HandlerResult:
        out: dict[str, Any] = {"status": "Accepted"}
        if "data" in p:
            out["data"] = p["data"]
        return out


_Handler = Callable[[SimCharger, dict[str, Any]], HandlerResult]

_HANDLERS_16: dict[str, _Handler] = {
    "RemoteStartTransaction": SimCharger._h16_remote_start,
    "RemoteStopTransaction": SimCharger._h16_remote_stop,
    "GetConfiguration": SimCharger._h16_get_configuration,
    "ChangeConfiguration": SimCharger._h16_change_configuration,
    "ChangeAvailability": SimCharger._h16_change_availability,
    "UnlockConnector": SimCharger._h16_unlock,
    "TriggerMessage": SimCharger._h16_trigger,
    "GetCompositeSchedule": SimCharger._h16_composite,
    "GetDiagnostics": SimCharger._h16_diagnostics,
    "UpdateFirmware": SimCharger._h16_update_firmware,
    "SendLocalList": SimCharger._h16_send_local_list,
    "GetLocalListVersion": SimCharger._h16_local_list_version,
    "ReserveNow": SimCharger._h16_reserve,
}
_HANDLERS_2X: dict[str, _Handler] = {
    "RequestStartTransaction": SimCharger._h2_request_start,
    "RequestStopTransaction": SimCharger._h2_request_stop,
    "GetVariables": SimCharger._h2_get_variables,
    "SetVariables": SimCharger._h2_set_variables,
    "GetBaseReport": SimCharger._h2_base_report,
    "GetReport": SimCharger._h2_base_report,
    "ChangeAvailability": SimCharger._h2_change_availability,
    "UnlockConnector": SimCharger._h2_unlock,
    "TriggerMessage": SimCharger._h2_trigger,
    "GetCompositeSchedule": SimCharger._h2_composite,
    "GetLog": SimCharger._h2_get_log,
    "UpdateFirmware": SimCharger._h2_update_firmware,
    "SendLocalList": SimCharger._h2_send_local_list,
    "GetLocalListVersion": SimCharger._h2_local_list_version,
    "ReserveNow": SimCharger._h2_reserve,
    "GetTransactionStatus": SimCharger._h2_transaction_status,
}
_HANDLERS_ALL: dict[str, _Handler] = {
    "Reset": SimCharger._h_reset,
    "ClearCache": SimCharger._h_accepted,
    "SetChargingProfile": SimCharger._h_set_profile,
    "ClearChargingProfile": SimCharger._h_clear_profile,
    "CancelReservation": SimCharger._h_cancel_reservation,
    "DataTransfer": SimCharger._h_data_transfer,
}

# Actions a CSMS may send to a charger, per version (the handler table covers these; the rest is generic).
CSMS_INITIATED: dict[Version, tuple[str, ...]] = {
    Version.V16: (*_HANDLERS_16, *_HANDLERS_ALL),
    Version.V201: (*_HANDLERS_2X, *_HANDLERS_ALL),
    Version.V21: (*_HANDLERS_2X, *_HANDLERS_ALL),
}

__all__ = [
    "CSMS_INITIATED",
    "OFFER_OWN_VERSION",
    "ActiveTransaction",
    "DeviceVariable",
    "SessionSummary",
    "SimCharger",
    "default_configuration",
    "default_device_model",
]
