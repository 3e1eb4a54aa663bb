"""A local Easee cloud (api.easee.com) for tests and the demo.

Endpoints, JSON field names and codes as documented at developer.easee.com
(and used by pyeasee): ``POST /api/accounts/login``,
``POST /api/accounts/refresh_token``, ``GET /api/chargers``,
``GET /api/chargers/{id}/state``, ``GET /api/chargers/{id}/config``,
``GET /state/{id}/observations?ids=``, ``POST /api/chargers/{id}/commands/
{start_charging|stop_charging|pause_charging|resume_charging|reboot|
update_firmware|set_dynamic_charger_current}``, ``POST /api/chargers/{id}/
settings``, ``POST /local-ocpp/v1/connection-details/{id}``,
``POST /local-ocpp/v1/connections/chargers/{id}``. Commands answer 202 with
the Easee command receipt. Tokens expire after ``token_lifetime`` (401),
the rate limit answers 429 with ``Retry-After``; see ``vendor_cloud``.

    async with EaseeCloud(speedup=3600) as cloud:
        cloud.add_charger("EH000001")
        cloud.charger("EH000001").plug_in(rfid="04AABBCC")
"""

from __future__ import annotations

import itertools
import time
from typing import Any

from aiohttp import web

from gateway.sim.vendor_cloud import CloudServer, SimPoint, public

# chargerOpMode values (developer.easee.com/docs/enumerations)
OFFLINE, DISCONNECTED, AWAITING_START, CHARGING, COMPLETED, ERROR, READY_TO_CHARGE, AWAITING_AUTHORIZATION = range(8)


def op_mode(p: SimPoint) -> int:
    if not p.reachable:
        return OFFLINE
    if not p.car_connected:
        return DISCONNECTED
    if p.error:
        return ERROR
    if p.auth_required and not p.authorized:
        return AWAITING_AUTHORIZATION
    if p.paused:
        return COMPLETED
    if not p.enabled or p.limit < 6.0:
        return AWAITING_START
    if p.car_full:
        return READY_TO_CHARGE
    return CHARGING


def reason_for_no_current(p: SimPoint) -> int:
    if not p.enabled:
        return 53  # charger disabled
    if not p.car_connected:
        return 50  # secondary unit not requesting current / no car connected
    if p.limit < 6.0:
        return 52  # max dynamic charger current too low
    if p.auth_required and not p.authorized:
        return 55  # pending authorisation
    if p.car_full:
        return 79  # car not charging
    return 0


class EaseeCloud(CloudServer):
    """The Easee REST API over a set of ``SimPoint`` chargers."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.chargers: dict[str, SimPoint] = {}
        self.ocpp_details: dict[str, dict[str, Any]] = {}  # charger id -> stored local-OCPP connection details
        self.ocpp_applied: dict[str, str] = {}  # charger id -> applied version
        self._command_ids = itertools.count(1)

    def add_charger(self, charger_id: str, **kwargs: Any) -> SimPoint:
        kwargs.setdefault("firmware", "294")
        kwargs.setdefault("latest_firmware", "296")
        point = SimPoint(charger_id, speedup=self.speedup, **kwargs)
        self.chargers[charger_id] = point
        return point

    def charger(self, charger_id: str) -> SimPoint:
        return self.chargers[charger_id]

    # ---------------------------------------------------------------- routes

    def routes(self, app: web.Application) -> None:
        r = app.router
        r.add_post("/api/accounts/login", self.login)
        r.add_post("/api/accounts/refresh_token", self.refresh)
        r.add_get("/api/chargers", self.list_chargers)
        r.add_get("/api/chargers/{id}/state", self.state)
        r.add_get("/api/chargers/{id}/config", self.config)
        r.add_get("/state/{id}/observations", self.observations)
        r.add_post("/api/chargers/{id}/commands/{command}", self.command)
        r.add_post("/api/chargers/{id}/settings", self.settings)
        r.add_post("/local-ocpp/v1/connection-details/{id}", self.connection_details)
        r.add_get("/local-ocpp/v1/connection-details/{id}", self.get_connection_details)
        r.add_post("/local-ocpp/v1/connections/chargers/{id}", self.apply_connection)

    def _point(self, request: web.Request) -> SimPoint:
        point = self.chargers.get(request.match_info["id"])
        if point is None:
            raise web.HTTPNotFound(text='{"title": "Charger not found", "status": 404}',
                                   content_type="application/json")
        point.advance()
        return point

    def _token_body(self, user: str) -> dict[str, Any]:
        access, refresh = self.issue_token(user)
        return {"accessToken": access, "expiresIn": self.token_lifetime, "accessClaims": ["User"],
                "tokenType": "Bearer", "refreshToken": refresh}

    @public
    async def login(self, request: web.Request) -> web.Response:
        body = await request.json()
        user, password = body.get("userName"), body.get("password")
        if user not in self.users or self.users[user] != password:
            return web.json_response({"errorCode": 100, "errorCodeName": "InvalidUserPassword",
                                      "title": "Invalid username or password", "status": 400}, status=400)
        self.logins += 1
        return web.json_response(self._token_body(user))

    @public
    async def refresh(self, request: web.Request) -> web.Response:
        body = await request.json()
        access, refresh = body.get("accessToken", ""), body.get("refreshToken", "")
        entry = self._tokens.get(access)
        user = entry[0] if entry else next(iter(self.users), "")
        if not self.redeem_refresh(access, refresh):
            return web.json_response({"title": "Invalid refresh token", "status": 401}, status=401)
        self.refreshes += 1
        return web.json_response(self._token_body(user))

    async def list_chargers(self, request: web.Request) -> web.Response:
        return web.json_response([
            {"id": p.id, "name": f"Charger {p.id}", "color": 1, "createdOn": "2023-01-01T00:00:00Z",
             "updatedOn": "2024-01-01T00:00:00Z", "backPlate": {"id": f"BP{p.id}", "masterBackPlateId": f"BP{p.id}"},
             "levelOfAccess": 1, "productCode": 1}
            for p in self.chargers.values()])

    async def state(self, request: web.Request) -> web.Response:
        p = self._point(request)
        mode = op_mode(p)
        power_kw = p.power_w / 1000.0
        current = p.power_w / (p.voltage * p.phases) if p.power_w else 0.0
        return web.json_response({
            "smartCharging": False, "cableLocked": p.car_connected, "chargerOpMode": mode,
            "totalPower": round(power_kw, 3), "sessionEnergy": round(p.session_wh / 1000.0, 6),
            "energyPerHour": round(power_kw, 3), "wiFiRSSI": -55, "cellRSSI": None, "localRSSI": None,
            "outputPhase": 30 if p.phases == 3 else 10, "dynamicCircuitCurrentP1": 40.0,
            "dynamicCircuitCurrentP2": 40.0, "dynamicCircuitCurrentP3": 40.0,
            "latestPulse": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "chargerFirmware": int(p.firmware), "latestFirmware": int(p.latest_firmware),
            "voltage": p.voltage, "chargerRAT": 1, "lockCablePermanently": False,
            "inCurrentT2": round(current, 2), "inCurrentT3": round(current, 2) if p.phases == 3 else 0.0,
            "inCurrentT4": round(current, 2) if p.phases == 3 else 0.0, "inCurrentT5": 0.0,
            "outputCurrent": round(current, 2), "isOnline": p.reachable,
            "inVoltageT1T2": None, "inVoltageT2T3": p.voltage, "ledMode": 18, "cableRating": 32,
            "dynamicChargerCurrent": p.limit, "reasonForNoCurrent": reason_for_no_current(p),
            "wiFiAPEnabled": False, "lifetimeEnergy": round(p.lifetime_wh / 1000.0, 6),
            "offlineMaxCircuitCurrentP1": 32, "offlineMaxCircuitCurrentP2": 32, "offlineMaxCircuitCurrentP3": 32,
            "errorCode": 0, "fatalErrorCode": 0, "errors": [], "deratedCurrent": 0.0, "deratingActive": False,
        })

    async def config(self, request: web.Request) -> web.Response:
        p = self._point(request)
        return web.json_response({
            "isEnabled": p.enabled, "lockCablePermanently": False, "authorizationRequired": p.auth_required,
            "remoteStartRequired": False, "smartButtonEnabled": False, "wiFiSSID": "sim",
            "detectedPowerGridType": 1, "offlineChargingMode": 0, "circuitMaxCurrentP1": 32.0,
            "circuitMaxCurrentP2": 32.0, "circuitMaxCurrentP3": 32.0, "enableIdleCurrent": False,
            "limitToSinglePhaseCharging": p.phases == 1, "phaseMode": 2, "localNodeType": 1,
            "localAuthorizationRequired": False, "maxChargerCurrent": p.max_current, "ledStripBrightness": 50,
        })

    async def observations(self, request: web.Request) -> web.Response:
        p = self._point(request)
        wanted = {int(x) for x in request.query.get("ids", "").split(",") if x.strip().isdigit()}
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        values: dict[int, Any] = {109: op_mode(p), 120: p.power_w, 121: p.session_wh / 1000.0,
                                  124: p.lifetime_wh / 1000.0, 128: p.rfid if p.car_connected else None}
        return web.json_response({"observations": [{"id": i, "value": values.get(i), "timestamp": stamp}
                                                   for i in sorted(wanted) if i in values]})

    def _receipt(self, p: SimPoint) -> web.Response:
        return web.json_response([{"device": p.id, "commandId": next(self._command_ids),
                                   "ticks": int(time.time() * 10_000_000)}], status=202)

    async def command(self, request: web.Request) -> web.Response:
        p = self._point(request)
        name = request.match_info["command"]
        body = await request.json() if request.can_read_body else None
        if not p.reachable and name != "reboot":
            return web.json_response({"title": "Charger offline", "status": 400}, status=400)
        if name == "start_charging":
            if not p.car_connected:
                return web.json_response({"title": "No car connected", "status": 400}, status=400)
            p.authorized, p.paused = True, False
        elif name in ("stop_charging", "pause_charging"):
            p.paused = True
        elif name == "resume_charging":
            p.paused = False
        elif name == "reboot":
            p.reboot(self.reboot_seconds)
        elif name == "update_firmware":
            p.firmware = p.latest_firmware
            p.reboot(self.reboot_seconds)
        elif name == "set_dynamic_charger_current":
            if not isinstance(body, dict) or "amps" not in body:
                return web.json_response({"title": "amps is required", "status": 400}, status=400)
            p.limit = min(float(body["amps"]), p.max_current)
        else:
            return web.json_response({"title": f"Unknown command {name}", "status": 404}, status=404)
        self.commands.append((p.id, name, body))
        return self._receipt(p)

    async def settings(self, request: web.Request) -> web.Response:
        p = self._point(request)
        body = await request.json()
        if "enabled" in body:
            p.enabled = bool(body["enabled"])
        if "dynamicChargerCurrent" in body:
            p.limit = min(float(body["dynamicChargerCurrent"]), p.max_current)
        if "maxChargerCurrent" in body:
            p.max_current = float(body["maxChargerCurrent"])
        self.commands.append((p.id, "settings", body))
        return self._receipt(p)

    async def connection_details(self, request: web.Request) -> web.Response:
        p = self._point(request)
        body = await request.json()
        mode = body.get("connectivityMode")
        url = (body.get("websocketConnectionArgs") or {}).get("url")
        if mode not in ("DualProtocol", "OcppOff", "OcppOnly") or not isinstance(url, str):
            return web.json_response({"title": "Invalid connection details", "status": 400}, status=400)
        version = f"v{len(self.ocpp_details) + 1}-{int(time.time())}"
        self.ocpp_details[p.id] = {"version": version, "connectivityMode": mode,
                                   "websocketConnectionArgs": {"url": url}}
        return web.json_response({"version": version}, status=201)

    async def get_connection_details(self, request: web.Request) -> web.Response:
        p = self._point(request)
        details = self.ocpp_details.get(p.id)
        if details is None:
            return web.json_response({"title": "Not found", "status": 404}, status=404)
        return web.json_response(details)

    async def apply_connection(self, request: web.Request) -> web.Response:
        p = self._point(request)
        body = await request.json()
        details = self.ocpp_details.get(p.id)
        if details is None or details["version"] != body.get("version"):
            return web.json_response({"title": "Unknown version", "status": 400}, status=400)
        self.ocpp_applied[p.id] = body["version"]
        return web.json_response({"chargerId": p.id, "version": body["version"]}, status=200)
