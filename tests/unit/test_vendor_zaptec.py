"""The Zaptec adapter: its requests, its reading of the state observations, the energy register."""

from __future__ import annotations

import json
from typing import Any

import pytest

from adapters import vendor_base as vb
from adapters.vendor_base import ApiRequest, ApiResponse, ChargerInfo, Credentials, Reading
from adapters.zaptec import ZaptecAdapter, completed_session, ocmf_register_wh

CID = "aa1e305c-402a-383a-7c33-eba7270a5e6b"
ALONE = ChargerInfo(CID, "Zaptec", "Zaptec Pro", "ZPR000001",
                    extra={"installation_id": "inst-1", "installation_chargers": 1, "auth_required": True})
SHARED = ChargerInfo(CID, "Zaptec", "Zaptec Go", "ZAP000001",
                     extra={"installation_id": "inst-2", "installation_chargers": 4, "auth_required": False})


def ocmf(kwh: float) -> str:
    body = {"FV": "1.0", "GI": "Zaptec Pro MID", "RD": [{"TM": "2025-04-09T17:45:00,507+00:00 R", "RV": kwh,
                                                         "RI": "1-0:1.8.0", "RU": "kWh", "ST": "G"}]}
    return "OCMF|" + json.dumps(body) + '|{"SA":"ECDSA-secp384r1-SHA256","SD":"MGUC"}'


def observations(stamps: dict[int, str] | None = None, **values: Any) -> list[dict[str, Any]]:
    """A /api/chargers/{id}/state body: StateId -> ValueAsString (keys s<id>, n<id> for negatives)."""
    out = []
    for key, value in values.items():
        sid = -int(key[1:]) if key[0] == "n" else int(key[1:])
        stamp = (stamps or {}).get(sid, "2025-05-16T13:07:45.803")
        item: dict[str, Any] = {"ChargerId": CID, "StateId": sid, "Timestamp": stamp}
        if value is not None:
            item["ValueAsString"] = str(value)
        out.append(item)
    return out


class Api:
    def __init__(self, answers: dict[str, ApiResponse] | None = None) -> None:
        self.answers = answers or {}
        self.sent: list[ApiRequest] = []

    def __call__(self, req: ApiRequest) -> ApiResponse:
        self.sent.append(req)
        return self.answers.get(req.label, ApiResponse(200, {}))


@pytest.mark.parametrize(
    ("mode", "status", "charging_state", "charging"),
    [(1, "Available", "Idle", False), (2, "Occupied", "EVConnected", False), (3, "Occupied", "Charging", True),
     (5, "Occupied", "SuspendedEV", False), (4, "Unavailable", "Idle", False)],
)
def test_operation_modes_follow_the_table(mode: int, status: str, charging_state: str, charging: bool) -> None:
    """StateId 710 maps through mappings/zaptec_op_mode.yaml; unknown modes are Unavailable."""
    r = ZaptecAdapter().reading(observations(n2=1, s710=mode), {})
    assert (r.connector_status, r.charging_state, r.charging) == (status, charging_state, charging)


def test_is_online_zero_is_offline() -> None:
    """StateId -2 (IsOnline) 0 marks the charger offline."""
    assert ZaptecAdapter().reading(observations(n2=0, s710=1), {}).online is False


def test_ocmf_gives_the_register_in_wh() -> None:
    """The signed meter value's 1-0:1.8.0 reading in kWh becomes Wh."""
    assert ocmf_register_wh(ocmf(2410.009)) == pytest.approx(2410009.0)
    assert ocmf_register_wh("garbage") is None


def test_completed_session_is_parsed() -> None:
    """CompletedSession (723): SessionId, Energy (kWh), the nfc- card, StoppedByRFID."""
    done = completed_session(json.dumps({"SessionId": "S1", "Energy": 6.5, "AuthenticationCode": "nfc-9A798939",
                                         "StoppedByRFID": True}))
    assert done == vb.CompletedSession("S1", 6500.0, "9A798939", True)


SIGNED_BEFORE = {554: "2025-05-16T12:00:00.000", 721: "2025-05-16T12:30:00.000"}
SIGNED_DURING = {554: "2025-05-16T12:45:00.000", 721: "2025-05-16T12:30:00.000"}


@pytest.mark.parametrize(
    ("stamps", "start"),
    [(SIGNED_BEFORE, 100500.0), (SIGNED_DURING, 100000.0)],  # signed during the session: it holds 0.5 kWh of it
)
def test_the_register_follows_the_session_between_signed_readings(stamps: dict[int, str], start: float) -> None:
    """During a session the register is the session's starting register plus the session's energy."""
    adapter = ZaptecAdapter()
    r1 = adapter.reading(observations(stamps, n2=1, s710=3, s721="S1", s553="0.500", s554=ocmf(100.5),
                                      s513="7000"), {})
    assert r1.register_wh == pytest.approx(start + 500.0) and r1.session_id == "S1"
    r2 = adapter.reading(observations(stamps, n2=1, s710=3, s721="S1", s553="2.000", s554=ocmf(100.5)),
                         r1.memo or {})
    assert r2.register_wh == pytest.approx(start + 2000.0)
    done = json.dumps({"SessionId": "S1", "Energy": 2.2, "StoppedByRFID": False})
    r3 = adapter.reading(observations(stamps, n2=1, s710=1, s553="0", s554=ocmf(100.5), s723=done), r2.memo or {})
    assert r3.register_wh == pytest.approx(start + 2200.0)
    assert r3.completed is not None and r3.completed.session_id == "S1"


def test_login_is_the_password_grant_with_a_form_body() -> None:
    """POST /oauth/token form grant_type=password; expires_in sets the expiry; no refresh token."""
    api = Api({"POST /oauth/token": ApiResponse(200, {"access_token": "T", "token_type": "Bearer",
                                                      "expires_in": 86399})})
    adapter = ZaptecAdapter()
    token = vb.drive(adapter.login(Credentials("u", "p"), 0.0), api)
    assert api.sent[0].form == {"grant_type": "password", "username": "u", "password": "p"}
    assert (token.access_token, token.expires_at) == ("T", 86399.0)
    assert adapter.refresh(token, 1.0) is None


def test_a_refused_login_says_why() -> None:
    """invalid_grant becomes a VendorAuthError with Zaptec's description."""
    api = Api({"POST /oauth/token": ApiResponse(400, {"error": "invalid_grant",
                                                      "error_description": "Invalid username or password"})})
    with pytest.raises(vb.VendorAuthError, match="Invalid username"):
        vb.drive(ZaptecAdapter().login(Credentials("u", "bad"), 0.0), api)


def test_discovery_reads_the_data_list_and_counts_chargers_per_installation() -> None:
    """GET /api/chargers Data: the DeviceId is the serial and tells the model."""
    api = Api({"GET /api/chargers": ApiResponse(200, {"Pages": 1, "Data": [
        {"Id": "a", "DeviceId": "ZPR000001", "Name": "P1", "InstallationId": "i1", "IsAuthorizationRequired": True},
        {"Id": "b", "DeviceId": "ZAP000002", "Name": "G1", "InstallationId": "i2"},
        {"Id": "c", "DeviceId": "ZAP000003", "Name": "G2", "InstallationId": "i2"}]})})
    found = vb.drive(ZaptecAdapter().discover(), api)
    assert [(c.vendor_id, c.serial, c.model, c.extra["installation_chargers"]) for c in found] == [
        ("a", "ZPR000001", "Zaptec Pro", 1), ("b", "ZAP000002", "Zaptec Go", 2), ("c", "ZAP000003", "Zaptec Go", 2)]
    assert found[0].extra["auth_required"] is True


@pytest.mark.parametrize(
    ("charger", "action", "payload", "reading", "expected"),
    [
        (ALONE, "RequestStartTransaction", {"idToken": {"idToken": "A", "type": "Central"}, "remoteStartId": 1},
         Reading(op_mode=2, ev_connected=True), ("POST", f"/api/chargers/{CID}/authorizecharge", None)),
        (ALONE, "RequestStartTransaction", {"idToken": {"idToken": "A", "type": "Central"}, "remoteStartId": 1},
         Reading(op_mode=5, ev_connected=True, vendor={"final_stop": True}),
         ("POST", f"/api/chargers/{CID}/sendCommand/507", None)),
        (ALONE, "Reset", {"type": "Immediate"}, Reading(), ("POST", f"/api/chargers/{CID}/sendCommand/102", None)),
        (ALONE, "UpdateFirmware", {"requestId": 1, "firmware": {"location": "x", "retrieveDateTime":
                                                               "2024-01-01T00:00:00Z"}}, Reading(),
         ("POST", f"/api/chargers/{CID}/sendCommand/200", None)),
        (ALONE, "SetChargingProfile", {"evseId": 1, "chargingProfile": {
            "id": 1, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile", "chargingProfileKind": "Relative",
            "chargingSchedule": [{"id": 1, "chargingRateUnit": "A", "chargingSchedulePeriod": [
                {"startPeriod": 0, "limit": 16.0}]}]}}, Reading(),
         ("POST", "/api/installation/inst-1/update", {"availableCurrent": 16.0})),
        (SHARED, "SetChargingProfile", {"evseId": 1, "chargingProfile": {
            "id": 1, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile", "chargingProfileKind": "Relative",
            "chargingSchedule": [{"id": 1, "chargingRateUnit": "A", "chargingSchedulePeriod": [
                {"startPeriod": 0, "limit": 10.0}]}]}}, Reading(),
         ("POST", f"/api/chargers/{CID}/update", {"maxChargeCurrent": 10.0})),
    ],
)
def test_csms_commands_become_the_documented_zaptec_requests(
    charger: ChargerInfo, action: str, payload: dict[str, Any], reading: Reading, expected: tuple[str, str, Any]
) -> None:
    """Start/resume, restart, firmware and the dynamic limit (installation when alone, else the charger)."""
    api = Api()
    outcome = vb.drive(vb.handle_csms_call(ZaptecAdapter(), charger, action, payload, reading, vb.new_state(), 0.0),
                       api)
    assert outcome.response is not None and outcome.response["status"] == "Accepted"
    assert [(r.method, r.path, r.json) for r in api.sent] == [expected]


@pytest.mark.parametrize(("charger", "command"), [(ALONE, 10001), (SHARED, 506)])
def test_remote_stop_deauthorizes_when_authorisation_is_required_else_stops_final(
    charger: ChargerInfo, command: int
) -> None:
    """RequestStopTransaction: DeauthorizeAndStop (10001) with authorisation, StopChargingFinal (506) without."""
    st = vb.new_state()
    st["tx"] = {"id": "T1", "seq": 1}
    api = Api()
    vb.drive(vb.handle_csms_call(ZaptecAdapter(), charger, "RequestStopTransaction", {"transactionId": "T1"},
                                 Reading(ev_connected=True, charging=True), st, 0.0), api)
    assert [r.path for r in api.sent] == [f"/api/chargers/{CID}/sendCommand/{command}"]


def test_change_availability_is_rejected_as_unsupported() -> None:
    """Zaptec's API cannot enable/disable a charger: ChangeAvailability is Rejected, nothing is sent."""
    api = Api()
    outcome = vb.drive(vb.handle_csms_call(ZaptecAdapter(), ALONE, "ChangeAvailability",
                                           {"operationalStatus": "Inoperative"}, Reading(), vb.new_state(), 0.0), api)
    assert api.sent == []
    assert outcome.response is not None
    assert outcome.response["statusInfo"]["reasonCode"] == "UnsupportedByVendor"
