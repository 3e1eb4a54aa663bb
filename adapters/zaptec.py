"""Zaptec cloud adapter (api.zaptec.com).

Facts used (api.zaptec.com/help, docs.zaptec.com, custom-components/zaptec):

- ``POST /oauth/token`` (form: grant_type=password, username, password) ->
  ``access_token``, ``expires_in`` (about 24 h); no refresh token: log in again.
- ``GET /api/chargers`` -> ``{"Data": [{Id, DeviceId, Name, InstallationId,
  IsOnline, IsAuthorizationRequired, ...}]}``; the model is told by the
  DeviceId's prefix (ZAP/ZGB/ZAG Go, GPN/GPG Go 2, ZPR/ZCS/ZCH/ZPG Pro).
- ``GET /api/chargers/{id}/state`` -> ``[{ChargerId, StateId, ValueAsString}]``:
  -2 IsOnline, 501-503 voltages, 513 TotalChargePower (W), 553
  TotalChargePowerSession (kWh), 554 SignedMeterValue (OCMF, the energy
  register in kWh), 708 ChargeCurrentSet, 710 ChargerOperationMode, 711
  IsEnabled, 718 FinalStopActive, 721 SessionIdentifier, 723
  CompletedSession (JSON: SessionId, Energy, AuthenticationCode,
  StoppedByRFID), 911 firmware (SmartComputerSoftwareApplicationVersion).
- ``POST /api/chargers/{id}/sendCommand/{102 Restart, 200 UpgradeFirmware,
  506 StopChargingFinal, 507 ResumeCharging, 10001 DeauthorizeAndStop}``;
  ``POST /api/chargers/{id}/authorizecharge``; the dynamic limit is the
  installation's ``POST /api/installation/{id}/update {availableCurrent}``
  (the charger's own ``POST /api/chargers/{id}/update {maxChargeCurrent}``
  when other chargers share the installation).
- 429 (and 5xx) with Retry-After; clients stay under 10 requests per second.

The energy register: Zaptec signs the meter (554) only every 15 minutes, so
during a session the register is the signed value at the session's first
poll plus the session's energy (553), and at the end the session's own
total from CompletedSession.

Options: ``limit_via`` (installation | charger; default: installation when
the charger is alone in it), ``max_current`` (default 32), and the common
``ev_connect_timeout``, ``reboot_grace``.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, ClassVar

from adapters.vendor_base import (
    UNKNOWN_MODE,
    ApiRequest,
    ChargerInfo,
    CompletedSession,
    Credentials,
    Flow,
    Reading,
    Token,
    Unsupported,
    VendorAdapter,
    VendorAuthError,
    expect_ok,
    op_mode_table,
    register,
)

IS_ONLINE = -2
VOLTAGES = (501, 502, 503)
TOTAL_CHARGE_POWER = 513
SESSION_ENERGY = 553
SIGNED_METER_VALUE = 554
CHARGE_CURRENT_SET = 708
OPERATION_MODE = 710
IS_ENABLED = 711
FINAL_STOP_ACTIVE = 718
SESSION_IDENTIFIER = 721
COMPLETED_SESSION = 723
FIRMWARE = 911

RESTART, UPGRADE_FIRMWARE, STOP_FINAL, RESUME, DEAUTHORIZE_AND_STOP = 102, 200, 506, 507, 10001
OP_REQUESTING, OP_FINISHED = 2, 5

_MODELS = {
    "ZAP": "Zaptec Go", "ZGB": "Zaptec Go", "ZAG": "Zaptec Go",
    "GPN": "Zaptec Go 2", "GPG": "Zaptec Go 2",
    "ZPR": "Zaptec Pro", "ZCS": "Zaptec Pro", "ZCH": "Zaptec Pro", "ZPG": "Zaptec Pro",
}


def _truthy(value: str | None) -> bool | None:
    if value is None or value == "":
        return None
    return value.strip().lower() in ("1", "true")


def _float(value: str | None) -> float | None:
    try:
        return None if value is None or value == "" else float(value)
    except ValueError:
        return None


def ocmf_register_wh(value: str | None) -> float | None:
    """The 1-0:1.8.0 reading (Wh) of an OCMF string ``OCMF|{...}|{signature}``."""
    if not value or not value.startswith("OCMF|"):
        return None
    try:
        body = json.loads(value.split("|")[1])
    except (IndexError, ValueError):
        return None
    readings = [r for r in body.get("RD", []) if r.get("RI", "1-0:1.8.0") == "1-0:1.8.0" and "RV" in r]
    if not readings:
        return None
    last = readings[-1]
    factor = 1.0 if str(last.get("RU", "kWh")).lower() == "wh" else 1000.0
    return float(last["RV"]) * factor


def _timestamp(value: Any) -> float | None:
    """A Zaptec state Timestamp ("2025-05-16T13:07:45.803", UTC without a zone) as unix seconds."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


def completed_session(value: str | None) -> CompletedSession | None:
    if not value:
        return None
    try:
        data = json.loads(value)
    except ValueError:
        return None
    code = data.get("AuthenticationCode") or None
    if isinstance(code, str) and code.lower().startswith("nfc-"):
        code = code[4:]
    energy = data.get("Energy")
    return CompletedSession(
        session_id=data.get("SessionId"),
        energy_wh=None if energy is None else float(energy) * 1000.0,
        id_token=code,
        stopped_locally=bool(data.get("StoppedByRFID")),
    )


class ZaptecAdapter(VendorAdapter):
    name: ClassVar[str] = "zaptec"
    vendor_name: ClassVar[str] = "Zaptec"
    default_base_url: ClassVar[str] = "https://api.zaptec.com"
    request_budget: ClassVar[tuple[int, float]] = (10, 1.0)

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        self.modes = op_mode_table("zaptec_op_mode")

    # ---------------------------------------------------------------- account

    def login(self, credentials: Credentials, now: float) -> Flow[Token]:
        req = ApiRequest("POST", "/oauth/token", auth=False, purpose="login",
                         form={"grant_type": "password", "username": credentials.username,
                               "password": credentials.password})
        resp = yield req
        body = resp.json if isinstance(resp.json, dict) else {}
        if not resp.ok or not body.get("access_token"):
            detail = body.get("error_description") or body.get("error") or f"HTTP {resp.status}"
            raise VendorAuthError(f"Zaptec login refused: {detail}")
        lifetime = float(body.get("expires_in") or 86400)
        return Token(str(body["access_token"]), now + lifetime, None, lifetime)

    def discover(self) -> Flow[list[ChargerInfo]]:
        body = yield from expect_ok(ApiRequest("GET", "/api/chargers", purpose="discovery"))
        items = (body or {}).get("Data") or []
        per_installation: dict[str, int] = {}
        for item in items:
            inst = item.get("InstallationId")
            if inst:
                per_installation[inst] = per_installation.get(inst, 0) + 1
        out = []
        for item in items:
            device = str(item.get("DeviceId") or item.get("MID") or item["Id"])
            inst = item.get("InstallationId")
            extra = {
                "installation_id": inst,
                "installation_chargers": per_installation.get(inst, 0) if inst else 0,
                "auth_required": bool(item.get("IsAuthorizationRequired")),
                "device_type": item.get("DeviceType"),
            }
            model = self.option("model", _MODELS.get(device[:3].upper(), "Zaptec"))
            out.append(ChargerInfo(str(item["Id"]), self.vendor_name, model, device, None, item.get("Name"), extra))
        return out

    # ---------------------------------------------------------------- polling

    def poll(self, charger: ChargerInfo, state: dict[str, Any]) -> Flow[Reading]:
        body = yield from expect_ok(ApiRequest("GET", f"/api/chargers/{charger.vendor_id}/state", purpose="poll"))
        return self.reading(body, state.get("memo") or {})

    def reading(self, body: Any, memo: dict[str, Any]) -> Reading:
        """A Reading from a ``GET /api/chargers/{id}/state`` body and the previous poll's memo."""
        values: dict[int, str | None] = {}
        stamps: dict[int, float] = {}
        for item in body or []:
            sid = item.get("StateId", item.get("stateId"))
            if isinstance(sid, int):
                values[sid] = item.get("ValueAsString", item.get("valueAsString"))
                stamp = _timestamp(item.get("Timestamp", item.get("timestamp")))
                if stamp is not None:
                    stamps[sid] = stamp
        mode_value = _float(values.get(OPERATION_MODE))
        mode_code = int(mode_value) if mode_value is not None else None
        mode = self.modes.get(mode_code, UNKNOWN_MODE) if mode_code is not None else UNKNOWN_MODE
        online = _truthy(values.get(IS_ONLINE))
        session_id = values.get(SESSION_IDENTIFIER) or None
        session_wh = _float(values.get(SESSION_ENERGY))
        session_wh = None if session_wh is None else session_wh * 1000.0
        signed = ocmf_register_wh(values.get(SIGNED_METER_VALUE))
        voltages = [v for v in (_float(values.get(i)) for i in VOLTAGES) if v is not None and v > 100]

        # The register: the signed reading, carried through a session by the session's own energy.
        new_memo = dict(memo)
        register_wh = signed if signed is not None else memo.get("last_register")
        if session_id is not None and mode.ev_connected:
            if memo.get("session") != session_id:
                # The signed value is the register when it was signed: before the session began it is the
                # session's starting point; signed during the session it already holds (about) its energy.
                signed_before = signed is not None and stamps.get(SIGNED_METER_VALUE, 0.0) <= stamps.get(
                    SESSION_IDENTIFIER, 0.0)
                start = signed if signed is not None else float(memo.get("last_register") or 0.0)
                base = start if signed_before else start - (session_wh or 0.0)
                new_memo["session"] = session_id
                new_memo["base_wh"] = max(base, float(memo.get("last_register") or 0.0))
            register_wh = float(new_memo["base_wh"]) + (session_wh or 0.0)
        completed = completed_session(values.get(COMPLETED_SESSION))
        if completed is not None and completed.session_id == memo.get("session") and completed.energy_wh is not None:
            register_wh = float(memo.get("base_wh", 0.0)) + completed.energy_wh
        if register_wh is not None:
            last = memo.get("last_register")
            register_wh = max(register_wh, float(last)) if last is not None else register_wh
            new_memo["last_register"] = register_wh

        return Reading(
            online=True if online is None else online,
            op_mode=mode_code,
            connector_status=mode.connector_status,
            charging_state=mode.charging_state,
            ev_connected=mode.ev_connected,
            charging=mode.charging,
            fault=mode.fault,
            power_w=_float(values.get(TOTAL_CHARGE_POWER)),
            register_wh=register_wh,
            session_id=session_id if mode.ev_connected else None,
            session_wh=session_wh,
            firmware=values.get(FIRMWARE) or None,
            voltage=sum(voltages) / len(voltages) if voltages else None,
            phases=len(voltages) or None,
            current_limit_a=_float(values.get(CHARGE_CURRENT_SET)),
            enabled=_truthy(values.get(IS_ENABLED)),
            completed=completed,
            vendor={"final_stop": _truthy(values.get(FINAL_STOP_ACTIVE)) or False},
            memo=new_memo,
        )

    # ---------------------------------------------------------------- commands

    def _send_command(self, charger: ChargerInfo, command: int, purpose: str) -> Flow[None]:
        yield from expect_ok(ApiRequest("POST", f"/api/chargers/{charger.vendor_id}/sendCommand/{command}",
                                        purpose=purpose))

    def start(self, charger: ChargerInfo, reading: Reading, state: dict[str, Any]) -> Flow[None]:
        if reading.op_mode == OP_FINISHED and reading.vendor.get("final_stop"):
            yield from self._send_command(charger, RESUME, "RequestStartTransaction")
        else:
            yield from expect_ok(ApiRequest("POST", f"/api/chargers/{charger.vendor_id}/authorizecharge",
                                            purpose="RequestStartTransaction"))

    def stop(self, charger: ChargerInfo, reading: Reading, state: dict[str, Any]) -> Flow[None]:
        # With authorisation the session must end for good (a new card or start is needed); without, pause it.
        command = DEAUTHORIZE_AND_STOP if charger.extra.get("auth_required") else STOP_FINAL
        yield from self._send_command(charger, command, "RequestStopTransaction")

    def set_current(self, charger: ChargerInfo, amps: float | None, reading: Reading) -> Flow[None]:
        value = float(self.option("max_current", 32)) if amps is None else amps
        via = self.option("limit_via", "installation" if charger.extra.get("installation_chargers") == 1
                          else "charger")
        inst = charger.extra.get("installation_id")
        if via == "installation" and inst:
            req = ApiRequest("POST", f"/api/installation/{inst}/update", json={"availableCurrent": value},
                             purpose="SetChargingProfile")
        else:
            req = ApiRequest("POST", f"/api/chargers/{charger.vendor_id}/update", json={"maxChargeCurrent": value},
                             purpose="SetChargingProfile")
        yield from expect_ok(req)

    def reboot(self, charger: ChargerInfo) -> Flow[None]:
        yield from self._send_command(charger, RESTART, "Reset")

    def set_available(self, charger: ChargerInfo, available: bool) -> Flow[None]:
        # IsEnabled (711) is reported but the public API offers no command to change it.
        raise Unsupported("command to enable or disable a charger")

    def update_firmware(self, charger: ChargerInfo) -> Flow[None]:
        yield from self._send_command(charger, UPGRADE_FIRMWARE, "UpdateFirmware")


register("zaptec", ZaptecAdapter)
