"""The conformance list for same-version pairs: each action once, under the side that initiates it."""

from __future__ import annotations

import io
import re

import pytest

from adapters import directions
from adapters.base import Side
from gateway import schemas
from gateway.conformance import render_markdown, render_text
from gateway.ocppj import Version

V16, V201, V21 = Version.V16, Version.V201, Version.V21


def markdown_rows(version: Version) -> list[tuple[str, str]]:
    """(initiated by, message) of every row of the markdown list for ``version`` -> ``version``."""
    out = io.StringIO()
    render_markdown([(version, version)], out)
    rows = re.findall(r"^\| (charger|csms) \| (\w+) \|", out.getvalue(), flags=re.MULTILINE)
    return [(side, action) for side, action in rows]


def text_sections(version: Version) -> dict[str, list[str]]:
    """The actions the text list shows under "initiated by the charger" and "initiated by the csms"."""
    out = io.StringIO()
    render_text(version, version, out)
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in out.getvalue().splitlines():
        heading = re.match(r"^  initiated by the (charger|csms):$", line)
        if heading:
            current = sections.setdefault(heading.group(1), [])
        elif current is not None and line.startswith("    "):
            current.append(line.split()[0])
    return sections


@pytest.mark.parametrize("version", [V16, V201, V21])
def test_each_action_is_listed_once_per_side_that_sends_it(version: Version) -> None:
    """Every action of the version appears exactly once for each side that may send it, and nowhere else."""
    expected = sorted(
        (side.value, action) for action in schemas.actions(version) for side in directions.senders(version, action)
    )
    assert sorted(markdown_rows(version)) == expected
    sections = text_sections(version)
    assert sorted(sections["charger"]) == directions.sent_by(version, Side.CHARGER)
    assert sorted(sections["csms"]) == directions.sent_by(version, Side.CSMS)


@pytest.mark.parametrize(
    ("version", "action", "sides"),
    [
        (V16, "RemoteStartTransaction", ["csms"]),
        (V16, "StartTransaction", ["charger"]),
        (V16, "DataTransfer", ["charger", "csms"]),
        (V201, "RequestStartTransaction", ["csms"]),
        (V201, "TransactionEvent", ["charger"]),
        (V201, "GetVariables", ["csms"]),
        (V21, "NotifyDERAlarm", ["charger"]),
        (V21, "SetDERControl", ["csms"]),
        (V21, "DataTransfer", ["charger", "csms"]),
    ],
)
def test_an_action_sits_under_its_initiating_side(version: Version, action: str, sides: list[str]) -> None:
    """The issue's example: RemoteStartTransaction is initiated by the CSMS only, DataTransfer by both."""
    assert sorted(side for side, name in markdown_rows(version) if name == action) == sides
    listed_under = sorted(side for side, names in text_sections(version).items() if action in names)
    assert listed_under == sides
