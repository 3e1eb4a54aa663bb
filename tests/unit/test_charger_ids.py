"""Charger ids: the identifierString alphabet is admitted; what could mean something else upstream is not."""

from __future__ import annotations

import pytest

from gateway import charger_ids
from gateway.charger_ids import IdRules, from_path, upstream_url
from gateway.config import ConfigError, parse_config

WIDE = IdRules(extra_characters="#? %")

ADMITTED = [
    ("/ocpp/CP001", "CP001"),
    ("/CP001", "CP001"),
    ("/ocpp/v16/CP-001_a", "CP-001_a"),
    ("/ocpp/CP001?token=x", "CP001"),
    ("/ocpp/a*b-c_d=e:f+g|h@i.j", "a*b-c_d=e:f+g|h@i.j"),
    ("/ocpp/%43%50%31", "CP1"),  # encoded letters are still letters
    ("/ocpp/" + "x" * 48, "x" * 48),
    ("/ocpp/...a", "...a"),
]


@pytest.mark.parametrize(("path", "charger_id"), ADMITTED)
def test_identifier_strings_are_admitted(path: str, charger_id: str) -> None:
    """Ids in the identifierString alphabet of at most 48 characters are admitted, decoded."""
    assert from_path(path) == (charger_id, None)


REFUSED = [
    ("/ocpp/CPPW%23", "'#'"),
    ("/ocpp/CPPW%3Fx=1", "'?'"),
    ("/ocpp/EVIL%2FCPPW", "'/'"),
    ("/ocpp/..%2F..%2Fadmin", "'/'"),
    ("/ocpp/..", "relative path segment"),
    ("/ocpp/.", "relative path segment"),
    ("/ocpp/CP%0D%0AX", "'\\n', '\\r'"),
    ("/ocpp/CP%00", "'\\x00'"),
    ("/ocpp/CP%20X", "' '"),
    ("/ocpp/CP%C3%A4", "'ä'"),
    ("/ocpp/CP%FF", "not percent-encoded UTF-8"),
    ("/ocpp/CP%25", "'%'"),
    ("/ocpp/" + "x" * 49, "49 characters; at most 48"),
    ("/ocpp/", "must end with the charger id"),
    ("/ocpp/CP1/", "must end with the charger id"),
    ("/", "must end with the charger id"),
    ("/?x=CP1", "must end with the charger id"),
]


@pytest.mark.parametrize(("path", "reason"), REFUSED)
def test_everything_else_is_refused_with_the_reason(path: str, reason: str) -> None:
    """Characters outside the alphabet, dot segments, over-long and missing ids are refused, saying why."""
    _, problem = from_path(path)
    assert problem is not None and reason in problem, problem


def test_an_operator_can_widen_the_alphabet() -> None:
    """Extra characters are admitted only when the operator lists them; control characters never are."""
    assert from_path("/ocpp/CPPW%23", WIDE) == ("CPPW#", None)
    assert from_path("/ocpp/A%20B%3F", WIDE) == ("A B?", None)
    assert from_path("/ocpp/A%0AB", WIDE)[1] is not None
    assert from_path("/ocpp/A%2FB", WIDE)[1] is not None
    assert from_path("/ocpp/" + "x" * 60, IdRules(max_length=64)) == ("x" * 60, None)


@pytest.mark.parametrize(
    ("charger_id", "url"),
    [
        ("CP001", "ws://csms/ocpp/CP001"),
        ("a*b-c_d=e:f+g@i.j", "ws://csms/ocpp/a*b-c_d=e:f+g@i.j"),
        ("a|b", "ws://csms/ocpp/a%7Cb"),
        ("CPPW#", "ws://csms/ocpp/CPPW%23"),
        ("CPPW?x=1", "ws://csms/ocpp/CPPW%3Fx=1"),
        ("A B", "ws://csms/ocpp/A%20B"),
        ("100%", "ws://csms/ocpp/100%25"),
        ("ä", "ws://csms/ocpp/%C3%A4"),
    ],
)
def test_the_upstream_url_carries_the_id_as_one_encoded_segment(charger_id: str, url: str) -> None:
    """The id is percent-encoded, so whatever the operator admits stays one path segment upstream."""
    assert upstream_url("ws://csms/ocpp", charger_id) == url


def test_the_upstream_url_decodes_back_to_the_id() -> None:
    """Every admissible character survives the round trip gateway -> CSMS unchanged."""
    rules = IdRules(extra_characters="#?/%& ;,'\"<>[]{}\\^`ä")
    cid = "".join(sorted(rules.allowed - {"/"}))[:200]
    url = upstream_url("ws://csms/ocpp", cid)
    assert from_path(url.removeprefix("ws://csms"), IdRules(extra_characters=rules.extra_characters,
                                                            max_length=255)) == (cid, None)


CSMS = {"csms": {"main": {"url": "ws://csms/ocpp", "ocpp": "1.6"}}, "default_route": {"primary": "main"}}


@pytest.mark.parametrize(
    ("extra", "message"),
    [("\n", "control or layout character"), ("\t", "control or layout character"), ("/", "separates URL path")],
)
def test_the_alphabet_cannot_be_widened_to_dangerous_characters(extra: str, message: str) -> None:
    """Control characters and '/' are refused in charger_ids.extra_characters, naming the key."""
    with pytest.raises(ConfigError, match=rf"charger_ids\.extra_characters: .*{message}"):
        parse_config({**CSMS, "charger_ids": {"extra_characters": extra}})


def test_a_configured_charger_outside_the_alphabet_is_a_config_error() -> None:
    """A chargers: key that could never be admitted is reported at start-up, not silently unreachable."""
    with pytest.raises(ConfigError, match=r"chargers\.CP#1: the charger id contains '#'"):
        parse_config({**CSMS, "chargers": {"CP#1": {}}})
    config = parse_config({**CSMS, "chargers": {"CP#1": {}}, "charger_ids": {"extra_characters": "#"}})
    assert config.charger_ids.rules.allowed >= charger_ids.IDENTIFIER_CHARACTERS | {"#"}
