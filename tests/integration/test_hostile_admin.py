"""Admin API error bodies are built by a JSON encoder: an id cannot inject keys or break the JSON (issue 16, item 4).

NEEDS THE LEAD'S admin.py FIX (every API body through a JSON encoder): until
it is merged, the GET /api/chargers/{id} cases fail. The ids with a brace
fail for a second reason: aiohttp's default {id} pattern excludes braces, so
its router answers a plain-text 404 that no handler builds.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import aiohttp
import orjson
import pytest

from gateway.app import Gateway
from gateway.config import parse_config
from tests.conftest import gateway_config

INJECTIONS = [
    'x","admin":true,"y":"',
    'x"}',
    'x\\',
    'x"',
    "x\x00y",
    "x\ny",
    "</script><script>alert(1)</script>",
    "ä€𝄞",
]


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    gw = Gateway(parse_config(gateway_config(tmp_path, {"main": {"url": "ws://127.0.0.1:9/ocpp", "ocpp": "1.6"}},
                                             allow_unknown_chargers=False)))
    await gw.start()
    yield gw
    await gw.stop()


def admin_url(gw: Gateway, cid: str, tail: str = "") -> str:
    return f"http://127.0.0.1:{gw.admin_port}/api/chargers/{quote(cid, safe='')}{tail}"


async def json_body(resp: aiohttp.ClientResponse) -> object:
    """The body, which must be valid JSON whatever the id was."""
    raw = await resp.read()
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise AssertionError(f"invalid JSON ({exc}): {raw!r}") from None


@pytest.mark.parametrize("cid", INJECTIONS, ids=[repr(c) for c in INJECTIONS])
async def test_an_unknown_charger_error_carries_the_id_as_a_string(gateway: Gateway, cid: str) -> None:
    """GET /api/chargers/<id> answers 404 with one "error" key whose value names the id, exactly."""
    async with aiohttp.ClientSession() as http, http.get(admin_url(gateway, cid)) as resp:
        assert resp.status == 404
        body = await json_body(resp)
    assert isinstance(body, dict) and set(body) == {"error"}, body
    assert isinstance(body["error"], str) and cid in body["error"]


@pytest.mark.parametrize("cid", INJECTIONS, ids=[repr(c) for c in INJECTIONS])
async def test_a_route_change_for_an_unknown_charger_answers_valid_json(gateway: Gateway, cid: str) -> None:
    """PUT /api/chargers/<id>/route for an unknown id answers 404 in valid JSON, the id kept as a string."""
    async with aiohttp.ClientSession() as http, http.put(admin_url(gateway, cid, "/route"),
                                                         json={"primary": "main"}) as resp:
        assert resp.status == 404
        body = await json_body(resp)
    assert isinstance(body, dict) and set(body) == {"error"} and cid in body["error"]


@pytest.mark.parametrize("query", ["limit=x\"", "limit=0", 'after_id="}'])
async def test_bad_query_parameters_answer_valid_json(gateway: Gateway, query: str) -> None:
    """A bad ?limit or ?after_id gets 400 with a JSON error."""
    async with aiohttp.ClientSession() as http, http.get(admin_url(gateway, "CP1", f"/messages?{query}")) as resp:
        assert resp.status == 400
        body = await json_body(resp)
    assert isinstance(body, dict) and isinstance(body.get("error"), str)
