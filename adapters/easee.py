"""Easee cloud adapter (api.easee.com).

Facts used (developer.easee.com, pyeasee):

- Login ``POST /api/accounts/login {userName, password}`` -> ``accessToken``,
  ``expiresIn`` (s), ``refreshToken``; refresh
  ``POST /api/accounts/refresh_token {accessToken, refreshToken}``.
- ``GET /api/chargers`` lists the account's chargers (``id`` is the serial,
  e.g. EH123456); ``GET /api/chargers/{id}/state`` has ``chargerOpMode``,
  ``totalPower`` (kW), ``sessionEnergy`` and ``lifetimeEnergy`` (kWh),
  ``voltage``, ``outputPhase``, ``dynamicChargerCurrent``, ``isOnline``,
  ``reasonForNoCurrent`` (53: charger disabled), ``chargerFirmware``.
- The RFID of the running session is observation 128 (UserIDToken):
  ``GET /state/{id}/observations?ids=128``, fetched once when charging starts.
- Commands ``POST /api/chargers/{id}/commands/{start_charging, stop_charging,
  pause_charging, resume_charging, reboot, update_firmware}``;
  ``.../commands/set_dynamic_charger_current {amps, minutes}`` (minutes 0:
  until changed); ``POST /api/chargers/{id}/settings {enabled}``.
- Native OCPP: ``POST /local-ocpp/v1/connection-details/{id}`` then
  ``POST /local-ocpp/v1/connections/chargers/{id} {version}``.
- 429 with Retry-After; clients keep under about 500 requests per 5 minutes.

Options (``vendors.<account>.options``): ``model`` (BootNotification model,
default from the serial's prefix), ``max_current`` (A restored when a
charging profile is cleared, default 32), ``rfid`` (false: never fetch the
RFID observation), ``ev_connect_timeout``, ``reboot_grace``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from adapters.vendor_base import (
    ApiRequest,
    ChargerInfo,
    Credentials,
    Flow,
    Reading,
    Token,
    VendorAdapter,
    VendorApiError,
    VendorAuthError,
    expect_ok,
    op_mode_table,
    register,
)

# Serial prefix -> product (the id of an Easee charger is its serial number).
_MODELS = {"EH": "Easee Home", "EC": "Easee Charge"}
USER_ID_TOKEN = 128  # observation: the RFID card of the running session
OP_CHARGING_PAUSED = 4  # Completed: a paused session is resumed, not started


def _phases(output_phase: Any) -> int | None:
    """Easee outputPhase (10-15 one phase, 20-22 two, 30 three) -> number of phases."""
    try:
        code = int(output_phase)
    except (TypeError, ValueError):
        return None
    return code // 10 if 10 <= code < 40 else None


def _float(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


class EaseeAdapter(VendorAdapter):
    name: ClassVar[str] = "easee"
    vendor_name: ClassVar[str] = "Easee"
    default_base_url: ClassVar[str] = "https://api.easee.com"
    request_budget: ClassVar[tuple[int, float]] = (500, 300.0)
    supports_native_ocpp: ClassVar[bool] = True

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        self.modes = op_mode_table("easee_op_mode")

    # ---------------------------------------------------------------- account

    def _token(self, body: Any, now: float) -> Token:
        if not isinstance(body, dict) or not body.get("accessToken"):
            raise VendorAuthError("Easee login answered without an accessToken")
        lifetime = float(body.get("expiresIn") or 3600)
        return Token(str(body["accessToken"]), now + lifetime, body.get("refreshToken"), lifetime)

    def login(self, credentials: Credentials, now: float) -> Flow[Token]:
        req = ApiRequest("POST", "/api/accounts/login",
                         json={"userName": credentials.username, "password": credentials.password},
                         auth=False, purpose="login")
        resp = yield req
        if not resp.ok:
            raise VendorAuthError(f"Easee login refused (HTTP {resp.status})")
        return self._token(resp.json, now)

    def refresh(self, token: Token, now: float) -> Flow[Token] | None:
        if not token.refresh_token:
            return None
        return self._refresh(token, now)

    def _refresh(self, token: Token, now: float) -> Flow[Token]:
        req = ApiRequest("POST", "/api/accounts/refresh_token",
                         json={"accessToken": token.access_token, "refreshToken": token.refresh_token},
                         auth=False, purpose="token refresh")
        resp = yield req
        if not resp.ok:
            raise VendorAuthError(f"Easee token refresh refused (HTTP {resp.status})")
        return self._token(resp.json, now)

    def discover(self) -> Flow[list[ChargerInfo]]:
        body = yield from expect_ok(ApiRequest("GET", "/api/chargers", purpose="discovery"))
        out = []
        for item in body or []:
            cid = str(item["id"])
            model = self.option("model", _MODELS.get(cid[:2].upper(), "Easee"))
            extra = {"product_code": item.get("productCode"), "level_of_access": item.get("levelOfAccess")}
            out.append(ChargerInfo(cid, self.vendor_name, model, cid, None, item.get("name"), extra))
        return out

    # ---------------------------------------------------------------- polling

    def poll(self, charger: ChargerInfo, state: dict[str, Any]) -> Flow[Reading]:
        body = yield from expect_ok(ApiRequest("GET", f"/api/chargers/{charger.vendor_id}/state", purpose="poll"))
        reading = self.reading(body)
        starting = reading.charging and state.get("tx") is None
        if starting and reading.online and self.option("rfid", True):
            resp = yield ApiRequest("GET", f"/state/{charger.vendor_id}/observations",
                                    params={"ids": str(USER_ID_TOKEN)}, purpose="session RFID")
            if resp.ok:
                reading.id_token = _observation(resp.json, USER_ID_TOKEN)
        return reading

    def reading(self, body: dict[str, Any]) -> Reading:
        """A Reading from a ``GET /api/chargers/{id}/state`` body."""
        mode_code = body.get("chargerOpMode")
        mode = self.modes.get(int(mode_code)) if isinstance(mode_code, int) else None
        if mode is None:
            mode = self.modes[0]
        online = bool(body.get("isOnline", True)) and mode.online
        power = _float(body.get("totalPower"))
        lifetime = _float(body.get("lifetimeEnergy"))
        session = _float(body.get("sessionEnergy"))
        firmware = body.get("chargerFirmware")
        return Reading(
            online=online,
            op_mode=mode_code,
            connector_status=mode.connector_status,
            charging_state=mode.charging_state,
            ev_connected=mode.ev_connected,
            charging=mode.charging,
            fault=mode.fault,
            power_w=None if power is None else power * 1000.0,
            register_wh=None if lifetime is None else lifetime * 1000.0,
            session_wh=None if session is None else session * 1000.0,
            firmware=None if firmware is None else str(firmware),
            voltage=_float(body.get("voltage")) or None,
            phases=_phases(body.get("outputPhase")),
            current_limit_a=_float(body.get("dynamicChargerCurrent")),
            enabled=False if body.get("reasonForNoCurrent") == 53 else None,
            vendor={"reason_for_no_current": body.get("reasonForNoCurrent")},
        )

    # ---------------------------------------------------------------- commands

    def _command(self, charger: ChargerInfo, command: str, purpose: str, json: Any = None) -> Flow[None]:
        yield from expect_ok(ApiRequest("POST", f"/api/chargers/{charger.vendor_id}/commands/{command}",
                                        json=json, purpose=purpose))

    def start(self, charger: ChargerInfo, reading: Reading, state: dict[str, Any]) -> Flow[None]:
        command = "resume_charging" if reading.op_mode == OP_CHARGING_PAUSED else "start_charging"
        yield from self._command(charger, command, "RequestStartTransaction")

    def stop(self, charger: ChargerInfo, reading: Reading, state: dict[str, Any]) -> Flow[None]:
        yield from self._command(charger, "stop_charging", "RequestStopTransaction")

    def set_current(self, charger: ChargerInfo, amps: float | None, reading: Reading) -> Flow[None]:
        value = float(self.option("max_current", 32)) if amps is None else amps
        # Whole amps, rounded down: a limit is never exceeded by rounding.
        yield from self._command(charger, "set_dynamic_charger_current", "SetChargingProfile",
                                 {"amps": int(value), "minutes": 0})

    def reboot(self, charger: ChargerInfo) -> Flow[None]:
        yield from self._command(charger, "reboot", "Reset")

    def set_available(self, charger: ChargerInfo, available: bool) -> Flow[None]:
        yield from expect_ok(ApiRequest("POST", f"/api/chargers/{charger.vendor_id}/settings",
                                        json={"enabled": available}, purpose="ChangeAvailability"))

    def update_firmware(self, charger: ChargerInfo) -> Flow[None]:
        yield from self._command(charger, "update_firmware", "UpdateFirmware")

    def native_ocpp(self, charger: ChargerInfo, ocpp_url: str) -> Flow[dict[str, Any]]:
        details = {"connectivityMode": "DualProtocol", "websocketConnectionArgs": {"url": ocpp_url}}
        req = ApiRequest("POST", f"/local-ocpp/v1/connection-details/{charger.vendor_id}", json=details,
                         purpose="native OCPP")
        resp = yield req
        version = resp.json.get("version") if resp.ok and isinstance(resp.json, dict) else None
        if not version:
            raise VendorApiError(req, resp)
        yield from expect_ok(ApiRequest("POST", f"/local-ocpp/v1/connections/chargers/{charger.vendor_id}",
                                        json={"version": version}, purpose="native OCPP"))
        return {"version": version, "url": ocpp_url, "connectivityMode": "DualProtocol"}


def _observation(body: Any, wanted: int) -> str | None:
    """One observation's value from ``/state/{id}/observations`` (a list, or {"observations": [...]})."""
    items = body.get("observations", []) if isinstance(body, dict) else body
    for item in items or []:
        if isinstance(item, dict) and item.get("id") == wanted:
            value = item.get("value")
            return str(value) if value not in (None, "") else None
    return None


register("easee", EaseeAdapter)
