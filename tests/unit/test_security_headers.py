"""Authorization headers: schemes are case-insensitive (RFC 9110 11.1), credentials are not."""

from __future__ import annotations

import base64
import hashlib

import pytest

from gateway.security import basic_auth_ok, bearer_ok

PASSWORD = "s3cret-AuthorizationKey"
DIGEST = hashlib.sha256(PASSWORD.encode()).digest()
CREDS = base64.b64encode(f"CP1:{PASSWORD}".encode()).decode()


@pytest.mark.parametrize(
    ("header", "ok"),
    [
        (f"Basic {CREDS}", True),
        (f"basic {CREDS}", True),
        (f"BASIC {CREDS}", True),
        (f"bAsIc   {CREDS}  ", True),
        (f"Basic {base64.b64encode(b'CP1:wrong').decode()}", False),
        (f"Basic {base64.b64encode(f'CP2:{PASSWORD}'.encode()).decode()}", False),
        (f"Basic {base64.b64encode(PASSWORD.encode()).decode()}", False),  # no user:
        (f"Bearer {CREDS}", False),
        (f"Basicx {CREDS}", False),
        (f"Basic{CREDS}", False),
        ("Basic ", False),
        ("Basic !!", False),
        ("", False),
        (None, False),
    ],
)
def test_basic_auth(header: str | None, ok: bool) -> None:
    """Basic credentials are accepted in any case of the scheme name and only with the charger's id and password."""
    assert basic_auth_ok(header, "CP1", DIGEST) is ok


@pytest.mark.parametrize(
    ("header", "ok"),
    [
        (f"Bearer {PASSWORD}", True),
        (f"bearer {PASSWORD}", True),
        (f"BEARER  {PASSWORD} ", True),
        (f"Bearer {PASSWORD.upper()}", False),  # the token itself is case-sensitive
        (f"Basic {PASSWORD}", False),
        ("Bearer ", False),
        ("Bearer", False),
        (None, False),
    ],
)
def test_bearer_token(header: str | None, ok: bool) -> None:
    """A bearer token is accepted in any case of the scheme name, and only the exact token."""
    assert bearer_ok(header, DIGEST) is ok
