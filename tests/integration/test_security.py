"""Charger authentication and TLS: OCPP security profiles 1, 2 and 3 end to end."""

from __future__ import annotations

import base64
import ssl
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from gateway.ocppj import Version
from gateway.sim.csms import DemoCsms
from tests.conftest import GatewayFactory, cli
from tests.rawpeers import RawCharger, RawCsms, dumps


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


def server_files(ca: trustme.CA, tmp_path: Path) -> dict[str, Any]:
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_file, key_file = tmp_path / "server.pem", tmp_path / "server.key"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    for extra in cert.cert_chain_pems[1:]:
        extra.write_to_path(str(cert_file), append=True)
    cert.private_key_pem.write_to_path(str(key_file))
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return {"cert_file": str(cert_file), "key_file": str(key_file), "ca_file": str(ca_file)}


async def test_basic_auth_profile_1(start_gateway: GatewayFactory, raw_csms: RawCsms,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A charger with a configured password must present it; wrong or missing credentials get 401."""
    monkeypatch.setenv("CP1_PASSWORD", "s3cret-AuthorizationKey")
    gw = await start_gateway({"main": {"url": raw_csms.url, "ocpp": "1.6"}},
                             chargers={"CP1": {"password_env": "CP1_PASSWORD"}})
    url = f"ws://127.0.0.1:{gw.listen_port}/ocpp/CP1"
    wrong = (None, basic("CP1", "wrong"), basic("CP2", "s3cret-AuthorizationKey"), {"Authorization": "Basic !!"})
    for headers in wrong:
        with pytest.raises(InvalidStatus) as exc:
            await RawCharger.connect(url, ["ocpp1.6"], additional_headers=headers)
        assert exc.value.response.status_code == 401
        assert exc.value.response.headers["WWW-Authenticate"].startswith("Basic")
    charger = await RawCharger.connect(url, ["ocpp1.6"], additional_headers=basic("CP1", "s3cret-AuthorizationKey"))
    await charger.send(dumps(2, "h", "Heartbeat", {}))
    assert await raw_csms.recv("CP1") == [2, "h", "Heartbeat", {}]
    assert "s3cret" not in raw_csms.headers["CP1"].get("Authorization", "")  # credentials end at the gateway
    await charger.close()


async def test_require_charger_auth_refuses_chargers_without_a_password(
    start_gateway: GatewayFactory, raw_csms: RawCsms
) -> None:
    """With require_charger_auth, a charger that has no configured password cannot connect at all."""
    gw = await start_gateway({"main": {"url": raw_csms.url, "ocpp": "1.6"}}, require_charger_auth=True)
    with pytest.raises(InvalidStatus) as exc:
        await RawCharger.connect(f"ws://127.0.0.1:{gw.listen_port}/ocpp/ANY", ["ocpp1.6"],
                                 additional_headers=basic("ANY", "guess"))
    assert exc.value.response.status_code == 401


async def test_missing_password_variable_stops_start_up(start_gateway: GatewayFactory, raw_csms: RawCsms) -> None:
    """A charger whose password_env is not set stops the gateway from starting, naming the key."""
    from gateway.config import ConfigError

    with pytest.raises(ConfigError, match=r"chargers\.CP1\.password_env"):
        await start_gateway({"main": {"url": raw_csms.url, "ocpp": "1.6"}},
                            chargers={"CP1": {"password_env": "NO_SUCH_VARIABLE_HERE"}})


async def test_tls_towards_chargers_and_a_wss_csms_profile_2(
    start_gateway: GatewayFactory, ca: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chargers connect over wss:// with Basic auth, and the gateway reaches a wss:// CSMS trusting a private CA."""
    files = server_files(ca, tmp_path)
    csms_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(csms_ssl)
    csms = DemoCsms(versions=(Version.V201,), ssl=csms_ssl)
    await csms.start()
    monkeypatch.setenv("CP1_PASSWORD", "pw")
    try:
        gw = await start_gateway(
            {"main": {"url": csms.url, "ocpp": "2.0.1", "tls": {"ca_file": files["ca_file"]}}},
            listen={"host": "127.0.0.1", "port": 0, "tls": {"cert_file": files["cert_file"],
                                                            "key_file": files["key_file"]}},
            chargers={"CP1": {"password_env": "CP1_PASSWORD"}},
        )
        client_ssl = ssl.create_default_context()
        ca.configure_trust(client_ssl)
        async with connect(f"wss://127.0.0.1:{gw.listen_port}/ocpp/CP1", subprotocols=["ocpp2.0.1"],  # type: ignore[list-item]
                           ssl=client_ssl, additional_headers=basic("CP1", "pw"), proxy=None) as ws:
            await ws.send(dumps(2, "h1", "Heartbeat", {}))
            answer = await ws.recv()
        assert '"currentTime"' in str(answer)
        assert csms.charger("CP1").calls_in("Heartbeat") == [{}]
    finally:
        await csms.stop()


async def test_mutual_tls_checks_the_certificate_belongs_to_the_charger_profile_3(
    start_gateway: GatewayFactory, raw_csms: RawCsms, ca: trustme.CA, tmp_path: Path
) -> None:
    """With require_client_cert, only a certificate whose CN is the charger id opens that charger's connection."""
    files = server_files(ca, tmp_path)
    gw = await start_gateway(
        {"main": {"url": raw_csms.url, "ocpp": "1.6"}},
        listen={"host": "127.0.0.1", "port": 0, "tls": {
            "cert_file": files["cert_file"], "key_file": files["key_file"],
            "client_ca_file": files["ca_file"], "require_client_cert": True}},
    )

    def client(cn: str) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        ca.configure_trust(ctx)
        ca.issue_cert(cn, common_name=cn).configure_cert(ctx)
        return ctx

    async with connect(f"wss://127.0.0.1:{gw.listen_port}/ocpp/CP7", subprotocols=["ocpp1.6"],  # type: ignore[list-item]
                       ssl=client("CP7"), proxy=None) as ws:
        await ws.send(dumps(2, "h1", "Heartbeat", {}))
        assert await raw_csms.recv("CP7") == [2, "h1", "Heartbeat", {}]
    with pytest.raises(InvalidStatus) as exc:
        async with connect(f"wss://127.0.0.1:{gw.listen_port}/ocpp/CP7", subprotocols=["ocpp1.6"],  # type: ignore[list-item]
                           ssl=client("SOMEONE-ELSE"), proxy=None):
            pass
    assert exc.value.response.status_code == 403


# --------------------------------------------------------------- admin API token

ADMIN_TOKEN = "t0ken-for-the-admin-api"


async def admin_get(port: int, path: str, token: str | None = None) -> tuple[int, dict[str, str], str]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{port}{path}", headers=headers) as resp:
            return resp.status, dict(resp.headers), await resp.text()


async def test_admin_token_guards_the_api_but_not_metrics_or_health(
    start_gateway: GatewayFactory, raw_csms: RawCsms, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With admin.token_env, /api/* needs the bearer token; /metrics and /healthz stay open for scrapers."""
    monkeypatch.setenv("GW_ADMIN_TOKEN", ADMIN_TOKEN)
    gw = await start_gateway({"main": {"url": raw_csms.url, "ocpp": "1.6"}},
                             admin={"host": "127.0.0.1", "port": 0, "token_env": "GW_ADMIN_TOKEN"})
    for path in ("/api/chargers", "/api/chargers/CP1/messages"):
        for token in (None, "wrong", ADMIN_TOKEN + "x"):
            status, headers, body = await admin_get(gw.admin_port, path, token)
            assert status == 401, (path, token)
            assert headers["WWW-Authenticate"].startswith("Bearer")
            assert "Authorization: Bearer" in body
        status, _, _ = await admin_get(gw.admin_port, path, ADMIN_TOKEN)
        assert status == 200
    for path in ("/metrics", "/healthz"):
        assert (await admin_get(gw.admin_port, path))[0] == 200


async def test_without_a_token_the_api_is_open_as_before(start_gateway: GatewayFactory, raw_csms: RawCsms) -> None:
    """No admin.token_env: the API answers without credentials (bind it to 127.0.0.1)."""
    gw = await start_gateway({"main": {"url": raw_csms.url, "ocpp": "1.6"}})
    assert (await admin_get(gw.admin_port, "/api/chargers"))[0] == 200


async def test_missing_admin_token_variable_stops_start_up(start_gateway: GatewayFactory, raw_csms: RawCsms) -> None:
    """An admin.token_env that is not set stops the gateway from starting, naming the key."""
    from gateway.config import ConfigError

    with pytest.raises(ConfigError, match=r"admin\.token_env: environment variable NO_SUCH_TOKEN_VARIABLE"):
        await start_gateway({"main": {"url": raw_csms.url, "ocpp": "1.6"}},
                            admin={"host": "127.0.0.1", "port": 0, "token_env": "NO_SUCH_TOKEN_VARIABLE"})


async def test_the_route_command_sends_the_token_from_the_named_variable(
    start_gateway: GatewayFactory, raw_csms: RawCsms, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`ocpp-gateway route --token-env` authenticates; without it the command fails with the API's reason."""
    monkeypatch.setenv("GW_ADMIN_TOKEN", ADMIN_TOKEN)
    gw = await start_gateway({"a": {"url": raw_csms.url, "ocpp": "1.6"}, "b": {"url": raw_csms.url, "ocpp": "1.6"}},
                             chargers={"CP1": {}}, admin={"host": "127.0.0.1", "port": 0,
                                                          "token_env": "GW_ADMIN_TOKEN"})
    admin = f"http://127.0.0.1:{gw.admin_port}"
    code, _, err = await cli("route", "CP1", "--primary", "b", "--admin", admin)
    assert code == 1 and "Authorization: Bearer" in err
    code, out, err = await cli("route", "CP1", "--primary", "b", "--admin", admin, "--token-env", "GW_ADMIN_TOKEN")
    assert code == 0, err
    assert "CP1: primary b (from admin)" in out
    code, _, err = await cli("route", "CP1", "--reset", "--admin", admin, "--token-env", "UNSET_TOKEN_VARIABLE")
    assert code == 1 and "UNSET_TOKEN_VARIABLE" in err
