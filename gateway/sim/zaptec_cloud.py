"""A local Zaptec cloud (api.zaptec.com) for tests and the demo.

Endpoints, JSON field names and codes as documented at api.zaptec.com/help:
``POST /oauth/token`` (form, grant_type=password; ``access_token``,
``expires_in``; 400 ``invalid_grant``), ``GET /api/chargers``
(``{"Pages", "Data": [...]}``), ``GET /api/chargers/{id}``,
``GET /api/chargers/{id}/state`` (``[{ChargerId, StateId, Timestamp,
ValueAsString}]``), ``POST /api/chargers/{id}/sendCommand/{commandId}``
(102 restart, 200 upgrade firmware, 501 start, 502 stop, 506 stop final,
507 resume, 10001 deauthorize and stop), ``POST /api/chargers/{id}/
authorizecharge``, ``POST /api/chargers/{id}/update``,
``POST /api/installation/{id}/update``. Tokens expire (401), 429 with
``Retry-After``; see ``vendor_cloud``.

The signed meter value (StateId 554, OCMF) is refreshed every
``signed_interval`` seconds, like the real charger's 15 minutes.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timezone
from typing import Any

from aiohttp import web

from gateway.sim.vendor_cloud import CloudServer, SimPoint, public

UNKNOWN, DISCONNECTED, REQUESTING, CHARGING, FINISHED = 0, 1, 2, 3, 5


def _stamp(ts: float | None) -> str:
    """Zaptec's Timestamp format: UTC, milliseconds, no zone designator."""
    moment = datetime.fromtimestamp(ts if ts is not None else time.time(), timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


class ZaptecCharger(SimPoint):
    """A Zaptec charge point: sessions with ids, final stop, the completed-session record."""

    def __init__(self, charger_id: str, device_id: str, installation_id: str, **kwargs: Any) -> None:
        super().__init__(charger_id, **kwargs)
        self.device_id = device_id
        self.installation_id = installation_id
        self.final_stop = False
        self.completed: dict[str, Any] | None = None
        self.signed_wh = self.lifetime_wh
        self.signed_at = 0.0
        self.signed_wall = 0.0
        self.stopped_by_rfid = False

    def op_mode(self) -> int:
        if not self.car_connected:
            return DISCONNECTED
        if self.paused or (self.car_full and self.session_id is not None):
            return FINISHED
        if self.session_id is None or not self.may_charge:
            return REQUESTING
        return CHARGING

    def plug_in(self, rfid: str | None = None) -> None:
        super().plug_in(rfid)
        self.final_stop = False
        if rfid is not None or not self.auth_required:
            self.begin_session()

    def begin_session(self) -> None:
        self.session_id = str(uuid.uuid4())
        self.session_wh = 0.0
        self.session_start = time.time()
        self.authorized = True

    def end_session(self, by_rfid: bool = False) -> None:
        self.advance()
        if self.session_id is None:
            return
        self.completed = {
            "SessionId": self.session_id, "Energy": round(self.session_wh / 1000.0, 3),
            "StartDateTime": _iso(self.session_start or time.time()), "EndDateTime": _iso(time.time()),
            "ReliableClock": True, "StoppedByRFID": by_rfid,
            "AuthenticationCode": f"nfc-{self.rfid}" if self.rfid else "",
            "SignedSession": "OCMF|{}|{}",
        }
        self.session_id = None
        self.authorized = False
        self.paused = False

    def unplug(self) -> None:
        self.end_session()
        super().unplug()
        self.final_stop = False

    def tap_card(self, rfid: str) -> None:
        """A card at the reader: stops a running session, else authorises one."""
        if self.session_id is not None:
            self.rfid = self.rfid or rfid
            self.end_session(by_rfid=True)
        else:
            self.rfid = rfid
            self.begin_session()

    def signed(self, interval: float) -> float:
        now = time.monotonic()
        if now - self.signed_at >= interval or not self.signed_wall:
            self.signed_wh = self.lifetime_wh
            self.signed_at = now
            self.signed_wall = time.time()
        return self.signed_wh


class ZaptecCloud(CloudServer):
    """The Zaptec REST API over ``ZaptecCharger`` points."""

    def __init__(self, *, signed_interval: float = 900.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.signed_interval = signed_interval
        self.chargers: dict[str, ZaptecCharger] = {}
        self.installation_current: dict[str, float] = {}

    def add_charger(self, device_id: str, installation_id: str = "inst-1", **kwargs: Any) -> ZaptecCharger:
        kwargs.setdefault("firmware", "5.3.0.3")
        kwargs.setdefault("latest_firmware", "5.4.0.1")
        cid = str(uuid.uuid5(uuid.NAMESPACE_OID, device_id))
        point = ZaptecCharger(cid, device_id, installation_id, speedup=self.speedup, **kwargs)
        self.chargers[cid] = point
        return point

    def charger(self, device_id: str) -> ZaptecCharger:
        return next(p for p in self.chargers.values() if p.device_id == device_id or p.id == device_id)

    # ---------------------------------------------------------------- routes

    def routes(self, app: web.Application) -> None:
        r = app.router
        r.add_post("/oauth/token", self.token)
        r.add_get("/api/chargers", self.list_chargers)
        r.add_get("/api/chargers/{id}", self.details)
        r.add_get("/api/chargers/{id}/state", self.state)
        r.add_post("/api/chargers/{id}/sendCommand/{command}", self.send_command)
        r.add_post("/api/chargers/{id}/authorizecharge", self.authorize_charge)
        r.add_post("/api/chargers/{id}/update", self.update_charger)
        r.add_post("/api/installation/{id}/update", self.update_installation)

    def _point(self, request: web.Request) -> ZaptecCharger:
        point = self.chargers.get(request.match_info["id"])
        if point is None:
            raise web.HTTPNotFound(text='{"Code": 404, "Details": "Charger not found"}',
                                   content_type="application/json")
        point.advance()
        return point

    @public
    async def token(self, request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("grant_type") != "password":
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        user, password = str(form.get("username", "")), str(form.get("password", ""))
        if self.users.get(user) != password:
            return web.json_response({"error": "invalid_grant", "error_description": "Invalid username or password"},
                                     status=400)
        self.logins += 1
        access, _ = self.issue_token(user)
        return web.json_response({"access_token": access, "token_type": "Bearer",
                                  "expires_in": int(self.token_lifetime) or 1})

    def _summary(self, p: ZaptecCharger) -> dict[str, Any]:
        return {"OperatingMode": p.op_mode(), "IsOnline": p.reachable, "Id": p.id, "MID": p.device_id,
                "DeviceId": p.device_id, "SerialNo": f"Sim {p.device_id}", "Name": f"Charger {p.device_id}",
                "CreatedOnDate": "2023-08-10T08:47:59.73", "CircuitId": f"circuit-{p.installation_id}",
                "Active": True, "CurrentUserRoles": 3, "Pin": "0000", "DeviceType": 4,
                "InstallationName": f"Installation {p.installation_id}", "InstallationId": p.installation_id,
                "AuthenticationType": 2 if p.auth_required else 0, "IsAuthorizationRequired": p.auth_required}

    async def list_chargers(self, request: web.Request) -> web.Response:
        return web.json_response({"Pages": 1, "Data": [self._summary(p) for p in self.chargers.values()]})

    async def details(self, request: web.Request) -> web.Response:
        return web.json_response(self._summary(self._point(request)))

    async def state(self, request: web.Request) -> web.Response:
        p = self._point(request)
        ts = _stamp(time.time())
        signed = {"FV": "1.0", "GI": "ZAPTEC GO", "GS": p.device_id, "GV": p.firmware, "PG": "F1",
                  "RD": [{"TM": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S,000+00:00 R"),
                          "RV": round(p.signed(self.signed_interval) / 1000.0, 3), "RI": "1-0:1.8.0", "RU": "kWh",
                          "RT": "AC", "ST": "G"}]}
        current = p.power_w / (p.voltage * p.phases) if p.power_w else 0.0
        values: dict[int, Any] = {
            -2: "1" if p.reachable else "0", 501: f"{p.voltage:.3f}", 502: f"{p.voltage if p.phases == 3 else 0:.3f}",
            503: f"{p.voltage if p.phases == 3 else 0:.3f}", 507: f"{current:.3f}", 508: f"{current:.3f}",
            509: f"{current:.3f}", 510: f"{p.max_current:.0f}", 513: f"{p.power_w:.1f}",
            553: f"{p.session_wh / 1000.0:.3f}", 554: "OCMF|" + json.dumps(signed) + "|{}",
            708: f"{p.limit:.3f}", 710: str(p.op_mode() if p.reachable else DISCONNECTED),
            711: "1" if p.enabled else "0", 718: "1" if p.final_stop else "0",
            721: p.session_id, 911: p.firmware,
            723: json.dumps(p.completed) if p.completed else None,
        }
        stamps = {554: _stamp(p.signed_wall), 721: _stamp(p.session_start) if p.session_id else ts}
        return web.json_response([
            {"ChargerId": p.id, "StateId": sid, "Timestamp": stamps.get(sid, ts),
             **({"ValueAsString": v} if v is not None else {})}
            for sid, v in sorted(values.items())])

    async def send_command(self, request: web.Request) -> web.Response:
        p = self._point(request)
        try:
            command = int(request.match_info["command"])
        except ValueError:
            return web.json_response({"Code": 400, "Details": "Invalid command"}, status=400)
        if not p.reachable and command != 102:
            return web.json_response({"Code": 500, "Details": "Charger offline"}, status=500)
        if command == 102:
            p.reboot(self.reboot_seconds)
        elif command == 200:
            p.firmware = p.latest_firmware
            p.reboot(self.reboot_seconds)
        elif command in (502, 506):
            if not p.car_connected or p.final_stop:
                return web.json_response({"Code": 400, "Details": "Not allowed in this state"}, status=400)
            p.paused = True
            p.final_stop = command == 506
        elif command in (501, 507):
            if not p.paused:
                return web.json_response({"Code": 400, "Details": "Not paused"}, status=400)
            p.paused = False
            p.final_stop = False
        elif command == 10001:
            p.end_session()
            p.final_stop = False
        else:
            return web.json_response({"Code": 400, "Details": f"Unknown command {command}"}, status=400)
        self.commands.append((p.id, str(command), None))
        return web.Response(status=200)

    async def authorize_charge(self, request: web.Request) -> web.Response:
        p = self._point(request)
        if not p.car_connected:
            return web.json_response({"Code": 400, "Details": "No car connected"}, status=400)
        if p.session_id is None:
            p.begin_session()
        p.paused = False
        self.commands.append((p.id, "authorizecharge", None))
        return web.Response(status=200)

    async def update_charger(self, request: web.Request) -> web.Response:
        p = self._point(request)
        body = await request.json()
        if "maxChargeCurrent" in body:
            p.limit = min(float(body["maxChargeCurrent"]), p.max_current)
        self.commands.append((p.id, "update", body))
        return web.Response(status=200)

    async def update_installation(self, request: web.Request) -> web.Response:
        inst = request.match_info["id"]
        body = await request.json()
        amps = body.get("availableCurrent")
        if amps is None:
            phases = [body.get(f"availableCurrentPhase{i}") for i in (1, 2, 3)]
            if any(v is None for v in phases):
                return web.json_response({"Code": 400, "Details": "availableCurrent or all phases"}, status=400)
            amps = min(float(v) for v in phases if v is not None)
        points = [p for p in self.chargers.values() if p.installation_id == inst]
        if not points:
            return web.json_response({"Code": 404, "Details": "Installation not found"}, status=404)
        self.installation_current[inst] = float(amps)
        for p in points:
            p.advance()
            p.limit = min(float(amps), p.max_current)
        self.commands.append((inst, "installation/update", body))
        return web.Response(status=200)
