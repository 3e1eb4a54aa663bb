"""Pre-serialised OCPP-J frames: the charger's CALL templates and the CSMS simulator's answers.

Everything is bytes built once at start-up. A CALL is ``head + uid + tail``
(or ``head + uid + mid + transaction id + tail``); an answer is
``b'[3,"' + uid + b'",' + payload + b']'`` with the payload chosen by action.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson

from gateway import schemas
from gateway.ocppj import Version

_TX_SENTINEL = 987654321987


def iso_now() -> str:
    """The current UTC time as OCPP writes it, to the second."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# ---------------------------------------------------------------- charger side (OCPP 1.6J)


@dataclass(frozen=True, slots=True)
class CallTemplate:
    """One CALL as bytes around the unique id (and the transaction id, when ``needs_tx``)."""

    action: str
    tail: bytes  # after the uid; when needs_tx: up to the transaction id
    after_tx: bytes = b""
    needs_tx: bool = False

    def build(self, uid: bytes, tx: bytes = b"") -> bytes:
        if self.needs_tx:
            return b'[2,"' + uid + self.tail + tx + self.after_tx
        return b'[2,"' + uid + self.tail


def _template(action: str, payload: dict[str, object]) -> CallTemplate:
    text = orjson.dumps([2, "", action, payload])[len(b'[2,"') :]
    marker = str(_TX_SENTINEL).encode()
    if marker in text:
        before, after = text.split(marker)
        return CallTemplate(action, before, after, needs_tx=True)
    return CallTemplate(action, text)


def charger_payloads_v16(ts: str, charger_index: int = 0) -> dict[str, tuple[str, dict[str, object]]]:
    """Every CALL a benchmark 1.6 charger sends, by kind: (action, payload). ``_TX_SENTINEL`` marks the tx id."""
    tag = f"BENCH{charger_index % 1000:04d}"
    sampled = [
        {"value": "12345.6", "context": "Sample.Periodic", "measurand": "Energy.Active.Import.Register",
         "unit": "Wh"},
        {"value": "7200.0", "context": "Sample.Periodic", "measurand": "Power.Active.Import", "unit": "W"},
    ]
    return {
        "boot": ("BootNotification", {"chargePointVendor": "BenchVendor", "chargePointModel": "BenchModel",
                                      "chargePointSerialNumber": f"SN{charger_index:08d}",
                                      "firmwareVersion": "1.0.0"}),
        "heartbeat": ("Heartbeat", {}),
        "available": ("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Available",
                                             "timestamp": ts}),
        "charging": ("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Charging",
                                            "timestamp": ts}),
        "meter": ("MeterValues", {"connectorId": 1, "meterValue": [{"timestamp": ts, "sampledValue": sampled}]}),
        "meter_tx": ("MeterValues", {"connectorId": 1, "transactionId": _TX_SENTINEL,
                                     "meterValue": [{"timestamp": ts, "sampledValue": sampled}]}),
        "authorize": ("Authorize", {"idTag": tag}),
        "start": ("StartTransaction", {"connectorId": 1, "idTag": tag, "meterStart": 12000, "timestamp": ts}),
        "stop": ("StopTransaction", {"transactionId": _TX_SENTINEL, "meterStop": 19500, "timestamp": ts,
                                     "reason": "Local"}),
    }


def charger_templates_v16(ts: str | None = None) -> dict[str, CallTemplate]:
    """The 1.6 charger's CALL templates by kind (see ``charger_payloads_v16``)."""
    return {kind: _template(action, payload)
            for kind, (action, payload) in charger_payloads_v16(ts or iso_now()).items()}


def example_payload(payload: dict[str, object], tx: int = 42) -> dict[str, object]:
    """A template payload with its transaction-id marker replaced, for schema checks."""
    return orjson.loads(orjson.dumps(payload).replace(str(_TX_SENTINEL).encode(), str(tx).encode()))  # type: ignore[no-any-return]


# ---------------------------------------------------------------- CSMS side

Responder = Callable[[bytes], bytes]  # the CALL frame -> the answer's payload


def csms_payloads(version: Version, ts: str) -> dict[str, dict[str, object]]:
    """The fixed answer payloads of the simulated CSMS, by action (transaction answers are dynamic)."""
    boot = {"currentTime": ts, "interval": 300, "status": "Accepted"}
    if version is Version.V16:
        return {
            "BootNotification": boot,
            "Heartbeat": {"currentTime": ts},
            "StatusNotification": {},
            "MeterValues": {},
            "Authorize": {"idTagInfo": {"status": "Accepted"}},
            "StopTransaction": {"idTagInfo": {"status": "Accepted"}},
            "DataTransfer": {"status": "Accepted"},
        }
    return {
        "BootNotification": boot,
        "Heartbeat": {"currentTime": ts},
        "StatusNotification": {},
        "MeterValues": {},
        "Authorize": {"idTokenInfo": {"status": "Accepted"}},
        "TransactionEvent": {},
        "DataTransfer": {"status": "Accepted"},
    }


def _no_required_fields(version: Version, action: str) -> bool:
    try:
        schema = schemas.load_schema(version, action, True)
    except (FileNotFoundError, OSError):
        return False
    return not schema.get("required")


class CsmsAnswers:
    """The simulated CSMS's answer to each CALL, as bytes, for one OCPP version."""

    def __init__(self, version: Version, ts: str | None = None) -> None:
        self.version = version
        self._tx = 0
        fixed = csms_payloads(version, ts or iso_now())
        self.fixed: dict[bytes, bytes] = {action.encode(): orjson.dumps(payload) for action, payload in fixed.items()}
        for action in sorted(schemas.actions(version)):
            key = action.encode()
            if key not in self.fixed and _no_required_fields(version, action):
                self.fixed[key] = b"{}"
        self._accepted_token = orjson.dumps({"idTokenInfo": {"status": "Accepted"}})

    def answer(self, uid: bytes, action: bytes, frame: bytes) -> bytes:
        """The whole answer frame for a CALL (``frame`` is only read for the dynamic answers)."""
        payload = self.fixed.get(action)
        if payload is None:
            if action == b"StartTransaction":
                self._tx += 1
                payload = b'{"transactionId":%d,"idTagInfo":{"status":"Accepted"}}' % self._tx
            else:
                return b'[4,"' + uid + b'","NotImplemented","benchmark CSMS does not answer this action",{}]'
        elif action == b"TransactionEvent" and b'"idToken"' in frame:
            payload = self._accepted_token
        return b'[3,"' + uid + b'",' + payload + b"]"


def split_call(frame: bytes) -> tuple[bytes, bytes] | None:
    """(unique id, action) of a CALL frame, by scanning for quotes; None if it is not a plain CALL.

    The gateway and the load generator write compact JSON, so the first four
    quotes delimit the id and the action; anything else is parsed properly.
    """
    if frame.startswith(b'[2,"'):
        q2 = frame.find(b'"', 4)
        q3 = frame.find(b'"', q2 + 1)
        q4 = frame.find(b'"', q3 + 1)
        if q4 > 0 and frame[q2 + 1 : q3] == b"," and b"\\" not in frame[4:q4]:
            return frame[4:q2], frame[q3 + 1 : q4]
    try:
        msg = orjson.loads(frame)
    except orjson.JSONDecodeError:
        return None
    if isinstance(msg, list) and len(msg) >= 3 and msg[0] == 2 and isinstance(msg[1], str) and isinstance(msg[2], str):
        return orjson.dumps(msg[1])[1:-1], msg[2].encode()
    return None
