"""Charger authentication and TLS: OCPP security profiles 1 (Basic), 2 (TLS + Basic) and 3 (mutual TLS).

Secrets are read once at start-up from the environment variables the config
names; they are kept only as SHA-256 digests and never logged.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import ssl
from typing import Any

from gateway.config import ClientTls, ConfigError, GatewayConfig, ServerTls


def charger_secrets(config: GatewayConfig) -> dict[str, bytes]:
    """Charger id -> SHA-256 of its Basic password, for chargers that have one configured."""
    out: dict[str, bytes] = {}
    for cid, entry in config.chargers.items():
        if entry.password_env is None:
            continue
        secret = os.environ.get(entry.password_env)
        if not secret:
            raise ConfigError(f"chargers.{cid}.password_env: environment variable {entry.password_env} is not set")
        out[cid] = hashlib.sha256(secret.encode()).digest()
    return out


def admin_token_digest(config: GatewayConfig) -> bytes | None:
    """SHA-256 of the admin API's bearer token, or None when the config asks for none."""
    env = config.admin.token_env
    if env is None:
        return None
    token = os.environ.get(env)
    if not token:
        raise ConfigError(f"admin.token_env: environment variable {env} is not set")
    return hashlib.sha256(token.encode()).digest()


def bearer_ok(header: str | None, digest: bytes) -> bool:
    """Whether an Authorization header carries the bearer token whose digest is ``digest``."""
    token = _credentials(header, "bearer")
    if token is None:
        return False
    return hmac.compare_digest(hashlib.sha256(token.encode()).digest(), digest)


def basic_auth_ok(header: str | None, charger_id: str, digest: bytes) -> bool:
    """Whether an Authorization header carries ``charger_id`` and the password whose digest is ``digest``."""
    encoded = _credentials(header, "basic")
    if encoded is None:
        return False
    try:
        decoded = base64.b64decode(encoded, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return False
    user, sep, password = decoded.partition(":")
    password_ok = hmac.compare_digest(hashlib.sha256(password.encode()).digest(), digest)
    return bool(sep) and user == charger_id and password_ok


def _credentials(header: str | None, scheme: str) -> str | None:
    """The credentials of an Authorization header in ``scheme``; RFC 9110 11.1: schemes are case-insensitive."""
    if not header:
        return None
    given, _, credentials = header.strip().partition(" ")
    credentials = credentials.strip(" ")
    if given.lower() != scheme or not credentials:
        return None
    return credentials


def server_context(tls: ServerTls) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2  # OCPP security whitepaper: TLS 1.2 or higher
    ctx.load_cert_chain(tls.cert_file, tls.key_file)
    if tls.client_ca_file:
        ctx.load_verify_locations(tls.client_ca_file)
        ctx.verify_mode = ssl.CERT_REQUIRED if tls.require_client_cert else ssl.CERT_OPTIONAL
    return ctx


def client_context(tls: ClientTls | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=tls.ca_file if tls else None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls and tls.cert_file:
        ctx.load_cert_chain(tls.cert_file, tls.key_file)
    return ctx


def peer_common_name(peercert: dict[str, Any] | None) -> str | None:
    """The subject CN of a verified peer certificate (``SSLObject.getpeercert()``)."""
    if not peercert:
        return None
    for rdn in peercert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None
