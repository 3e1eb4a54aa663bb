"""The Easee adapter: its requests, its reading of the state body, its op-mode table."""

from __future__ import annotations

from typing import Any

import pytest

from adapters import vendor_base as vb
from adapters.easee import EaseeAdapter
from adapters.vendor_base import ApiRequest, ApiResponse, ChargerInfo, Credentials, Reading, Token

CHARGER = ChargerInfo("EH123456", "Easee", "Easee Home", "EH123456")


def state_body(**overrides: Any) -> dict[str, Any]:
    """A /api/chargers/{id}/state body shaped like the real one (trimmed)."""
    body = {
        "smartCharging": False, "cableLocked": True, "chargerOpMode": 3, "totalPower": 7.36,
        "sessionEnergy": 2.5, "energyPerHour": 0, "wiFiRSSI": -55, "outputPhase": 30,
        "dynamicCircuitCurrentP1": 40, "latestPulse": "2024-02-13T06:02:46Z", "chargerFirmware": 294,
        "latestFirmware": 296, "voltage": 231.5, "outputCurrent": 10.6, "isOnline": True,
        "inCurrentT2": 10.6, "inCurrentT3": 10.6, "inCurrentT4": 10.6, "inCurrentT5": 0,
        "dynamicChargerCurrent": 32, "reasonForNoCurrent": 0, "lifetimeEnergy": 413.31,
        "errorCode": 0, "fatalErrorCode": 0,
    }
    body.update(overrides)
    return body


class Api:
    """Answers requests from a path table and records them."""

    def __init__(self, answers: dict[str, ApiResponse] | None = None) -> None:
        self.answers = answers or {}
        self.sent: list[ApiRequest] = []

    def __call__(self, req: ApiRequest) -> ApiResponse:
        self.sent.append(req)
        return self.answers.get(req.label, ApiResponse(200, {}))


@pytest.mark.parametrize(
    ("mode", "status", "charging_state", "ev", "charging"),
    [
        (1, "Available", "Idle", False, False),
        (2, "Occupied", "SuspendedEVSE", True, False),
        (3, "Occupied", "Charging", True, True),
        (4, "Occupied", "SuspendedEV", True, False),
        (5, "Faulted", "SuspendedEVSE", True, False),
        (6, "Occupied", "SuspendedEV", True, False),
        (7, "Occupied", "EVConnected", True, False),
    ],
)
def test_op_modes_map_to_connector_status_and_charging_state(
    mode: int, status: str, charging_state: str, ev: bool, charging: bool
) -> None:
    """chargerOpMode follows mappings/easee_op_mode.yaml."""
    r = EaseeAdapter().reading(state_body(chargerOpMode=mode))
    assert (r.connector_status, r.charging_state, r.ev_connected, r.charging) == (status, charging_state, ev, charging)
    assert r.online


@pytest.mark.parametrize("body", [state_body(chargerOpMode=0), state_body(isOnline=False)])
def test_an_offline_charger_reads_as_offline(body: dict[str, Any]) -> None:
    """Op mode 0 or isOnline false: the charger is not connected to the Easee cloud."""
    assert EaseeAdapter().reading(body).online is False


def test_the_state_body_converts_to_wh_w_and_phases() -> None:
    """kW and kWh become W and Wh; outputPhase 30 is three phases; firmware is a string."""
    r = EaseeAdapter().reading(state_body())
    assert r.power_w == pytest.approx(7360.0)
    assert r.register_wh == pytest.approx(413310.0)
    assert r.session_wh == pytest.approx(2500.0)
    assert (r.phases, r.voltage, r.firmware, r.current_limit_a) == (3, 231.5, "294", 32.0)


def test_reason_for_no_current_53_means_disabled() -> None:
    """reasonForNoCurrent 53 (charger disabled) reads as not enabled."""
    assert EaseeAdapter().reading(state_body(chargerOpMode=1, reasonForNoCurrent=53)).enabled is False


def test_login_and_refresh_use_the_documented_bodies() -> None:
    """Login posts userName/password; refresh posts accessToken/refreshToken; expiresIn sets the expiry."""
    token_body = {"accessToken": "AT", "expiresIn": 86400, "refreshToken": "RT", "tokenType": "Bearer"}
    api = Api({"POST /api/accounts/login": ApiResponse(200, token_body),
               "POST /api/accounts/refresh_token": ApiResponse(200, {**token_body, "accessToken": "AT2"})})
    adapter = EaseeAdapter()
    token = vb.drive(adapter.login(Credentials("me@example.com", "pw"), 1000.0), api)
    assert (token.access_token, token.refresh_token, token.expires_at) == ("AT", "RT", 87400.0)
    assert api.sent[0].json == {"userName": "me@example.com", "password": "pw"} and not api.sent[0].auth
    flow = adapter.refresh(token, 2000.0)
    assert flow is not None
    assert vb.drive(flow, api).access_token == "AT2"
    assert api.sent[1].json == {"accessToken": "AT", "refreshToken": "RT"}


def test_a_refused_login_raises_auth_error() -> None:
    """HTTP 400 on login is a VendorAuthError (the runner does not retry it in a loop)."""
    with pytest.raises(vb.VendorAuthError):
        vb.drive(EaseeAdapter().login(Credentials("me", "bad"), 0.0), Api({
            "POST /api/accounts/login": ApiResponse(400, {"title": "Invalid credentials"})}))


def test_discovery_lists_the_chargers_with_model_from_the_serial() -> None:
    """GET /api/chargers: the id is the serial; EH is an Easee Home."""
    api = Api({"GET /api/chargers": ApiResponse(200, [
        {"id": "EH123456", "name": "Garage", "productCode": 1, "levelOfAccess": 1},
        {"id": "XY000001", "name": "Other", "productCode": 9, "levelOfAccess": 1}])})
    found = vb.drive(EaseeAdapter().discover(), api)
    assert [(c.vendor_id, c.serial, c.model, c.name) for c in found] == [
        ("EH123456", "EH123456", "Easee Home", "Garage"), ("XY000001", "XY000001", "Easee", "Other")]


def test_the_rfid_is_fetched_once_when_charging_starts() -> None:
    """Observation 128 is read only on the poll where a transaction would start."""
    api = Api({"GET /api/chargers/EH123456/state": ApiResponse(200, state_body()),
               "GET /state/EH123456/observations": ApiResponse(200, {"observations": [
                   {"id": 128, "value": "04AABBCC", "timestamp": "2024-01-01T00:00:00Z"}]})})
    adapter = EaseeAdapter()
    r = vb.drive(adapter.poll(CHARGER, vb.new_state()), api)
    assert r.id_token == "04AABBCC"
    assert api.sent[1].params == {"ids": "128"}
    busy = vb.new_state()
    busy["tx"] = {"id": "T"}
    vb.drive(adapter.poll(CHARGER, busy), api)
    assert len(api.sent) == 3  # only the state this time


@pytest.mark.parametrize(
    ("action", "payload", "reading", "request_"),
    [
        ("RequestStartTransaction", {"idToken": {"idToken": "A", "type": "Central"}, "remoteStartId": 1},
         Reading(op_mode=7, connector_status="Occupied", ev_connected=True),
         ("POST", "/api/chargers/EH123456/commands/start_charging", None)),
        ("RequestStartTransaction", {"idToken": {"idToken": "A", "type": "Central"}, "remoteStartId": 1},
         Reading(op_mode=4, connector_status="Occupied", ev_connected=True),
         ("POST", "/api/chargers/EH123456/commands/resume_charging", None)),
        ("Reset", {"type": "Immediate"}, Reading(), ("POST", "/api/chargers/EH123456/commands/reboot", None)),
        ("ChangeAvailability", {"operationalStatus": "Inoperative"}, Reading(),
         ("POST", "/api/chargers/EH123456/settings", {"enabled": False})),
        ("UpdateFirmware", {"requestId": 1, "firmware": {"location": "x", "retrieveDateTime": "2024-01-01T00:00:00Z"}},
         Reading(), ("POST", "/api/chargers/EH123456/commands/update_firmware", None)),
        ("SetChargingProfile", {"evseId": 1, "chargingProfile": {
            "id": 1, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile", "chargingProfileKind": "Relative",
            "chargingSchedule": [{"id": 1, "chargingRateUnit": "W", "chargingSchedulePeriod": [
                {"startPeriod": 0, "limit": 11000.0}]}]}},
         Reading(voltage=230.0, phases=3),
         ("POST", "/api/chargers/EH123456/commands/set_dynamic_charger_current", {"amps": 15, "minutes": 0})),
    ],
)
def test_csms_commands_become_the_documented_easee_requests(
    action: str, payload: dict[str, Any], reading: Reading, request_: tuple[str, str, Any]
) -> None:
    """Each command is sent to its Easee endpoint with the documented body, and accepted."""
    api = Api()
    outcome = vb.drive(vb.handle_csms_call(EaseeAdapter(), CHARGER, action, payload, reading, vb.new_state(), 0.0),
                       api)
    assert outcome.response is not None and outcome.response["status"] == "Accepted"
    assert [(r.method, r.path, r.json) for r in api.sent] == [request_]


def test_remote_stop_is_stop_charging() -> None:
    """RequestStopTransaction posts commands/stop_charging."""
    st = vb.new_state()
    st["tx"] = {"id": "T1", "seq": 1}
    api = Api()
    vb.drive(vb.handle_csms_call(EaseeAdapter(), CHARGER, "RequestStopTransaction", {"transactionId": "T1"},
                                 Reading(ev_connected=True, charging=True), st, 0.0), api)
    assert [r.path for r in api.sent] == ["/api/chargers/EH123456/commands/stop_charging"]


def test_native_ocpp_stores_the_connection_details_then_applies_their_version() -> None:
    """The local-OCPP switch posts connection details (DualProtocol, the URL) and applies the returned version."""
    api = Api({"POST /local-ocpp/v1/connection-details/EH123456": ApiResponse(201, {"version": "v7"})})
    result = vb.drive(EaseeAdapter().native_ocpp(CHARGER, "ws://gw:9000/ocpp/easee-EH123456"), api)
    assert [(r.path, r.json) for r in api.sent] == [
        ("/local-ocpp/v1/connection-details/EH123456",
         {"connectivityMode": "DualProtocol", "websocketConnectionArgs": {"url": "ws://gw:9000/ocpp/easee-EH123456"}}),
        ("/local-ocpp/v1/connections/chargers/EH123456", {"version": "v7"}),
    ]
    assert result["version"] == "v7"


def test_refresh_without_a_refresh_token_means_log_in_again() -> None:
    """A token without refreshToken has no refresh flow."""
    assert EaseeAdapter().refresh(Token("A", 0.0), 0.0) is None
