"""The admin console at GET /: served without the token, rendered by headless Chromium over the live JSON API."""

from __future__ import annotations

import asyncio
import os
import shutil
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.app import Gateway
from gateway.console import ASSETS
from gateway.ocppj import Version
from gateway.sim.csms import DemoCsms
from tests.conftest import GatewayFactory
from tests.rawpeers import RawCharger

ADMIN_TOKEN = "console-test-token-1234567890"
# A model name that is markup: the console must show it as text, never make an element of it.
HOSTILE_MODEL = "<img src=x id=pwn>"

needs_chromium = pytest.mark.skipif(
    shutil.which("chromium") is None,
    reason="needs Debian's chromium package (apt-get install chromium) for the headless browser")


class Page(HTMLParser):
    """What a rendered console shows: table rows by table id, which elements are hidden, every tag seen."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, list[list[str]]] = {}
        self.hidden: set[str] = set()
        self.text: dict[str, str] = {}
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self._table: str | None = None
        self._cell: list[str] | None = None
        self._in_body = False
        self._text_of: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append((tag, a))
        if a.get("id") and "hidden" in a:
            self.hidden.add(str(a["id"]))
        if tag == "table":
            self._table = a.get("id")
            self.rows[str(self._table)] = []
        elif tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._table and self._in_body:
            self.rows[self._table].append([])
        elif tag == "td" and self._in_body:
            self._cell = []
        elif tag == "p" and a.get("id"):
            self._text_of = str(a["id"])
            self.text[self._text_of] = ""

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self._text_of is not None:
            self.text[self._text_of] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None and self._table:
            self.rows[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tbody":
            self._in_body = False
        elif tag == "table":
            self._table = None
        elif tag == "p":
            self._text_of = None


async def rendered(url: str, tmp_path: Path) -> Page:
    """The console's DOM after its script ran: headless Chromium with a virtual-time budget for the fetches."""
    proc = await asyncio.create_subprocess_exec(
        "chromium", "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
        f"--user-data-dir={tmp_path}/chromium", "--virtual-time-budget=5000", "--dump-dom", url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env={**os.environ, "HOME": str(tmp_path)},
    )
    dom, err = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode == 0, err.decode()[-2000:]
    page = Page()
    page.feed(dom.decode())
    return page


async def shadowed_gateway(start_gateway: GatewayFactory, legacy: DemoCsms, new: DemoCsms,
                           **overrides: Any) -> tuple[Gateway, RawCharger]:
    """A gateway routing CP1 to the 1.6 CSMS, shadowed to the 2.0.1 one, after CP1 booted and sent a heartbeat."""
    gw = await start_gateway({"legacy": {"url": legacy.url, "ocpp": "1.6"}, "new": {"url": new.url, "ocpp": "2.0.1"}},
                             default_route={"primary": "legacy", "shadow": "new"}, **overrides)
    charger = await RawCharger.connect(f"ws://127.0.0.1:{gw.listen_port}/ocpp/CP1", ["ocpp1.6"])
    await charger.call("b1", "BootNotification", {"chargePointVendor": "ACME", "chargePointModel": HOSTILE_MODEL})
    await charger.call("h1", "Heartbeat", {})
    for _ in range(100):
        book = gw.comparisons.get("CP1")
        if book is not None and "new" in book.targets and book.targets["new"].total().compared == 2 \
                and len(await gw.store.messages("CP1", limit=20)) >= 8:
            break
        await asyncio.sleep(0.05)
    return gw, charger


async def admin_get(port: int, path: str) -> tuple[int, dict[str, str], bytes]:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}{path}") as resp:
        return resp.status, dict(resp.headers), await resp.read()


async def test_the_console_files_are_served_without_the_token(
    start_gateway: GatewayFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/ and /console/<file> answer without credentials (they hold no data), with a strict CSP; others are 404."""
    monkeypatch.setenv("GW_ADMIN_TOKEN", ADMIN_TOKEN)
    gw = await start_gateway({"legacy": {"url": "ws://127.0.0.1:9/ocpp", "ocpp": "1.6"}},
                             admin={"host": "127.0.0.1", "port": 0, "token_env": "GW_ADMIN_TOKEN"})
    for path, content_type in [("/", "text/html"), *((f"/console/{n}", t) for n, t in ASSETS.items())]:
        status, headers, body = await admin_get(gw.admin_port, path)
        assert status == 200 and headers["Content-Type"].startswith(content_type), path
        assert "script-src 'self'" in headers["Content-Security-Policy"] and body, path
    for path in ("/console/__init__.py", "/console/..%2f__init__.py", "/console/secret"):
        assert (await admin_get(gw.admin_port, path))[0] == 404, path
    assert (await admin_get(gw.admin_port, "/api/chargers"))[0] == 401


@needs_chromium
async def test_the_console_lists_the_estate_and_a_chargers_messages(
    start_gateway: GatewayFactory, tmp_path: Path
) -> None:
    """Chromium shows CP1 with its route, phase and agreement, and its messages with the markup payload as text."""
    async with DemoCsms(versions=(Version.V16,)) as legacy, DemoCsms(versions=(Version.V201,)) as new:
        gw, charger = await shadowed_gateway(start_gateway, legacy, new)
        page = await rendered(f"http://127.0.0.1:{gw.admin_port}/#charger=CP1", tmp_path)
        await charger.close()
    assert page.text["status"].startswith("Updated"), page.text
    assert "token-form" in page.hidden and "data" not in page.hidden
    estate = {row[0]: row for row in page.rows["estate"]}
    cp1 = estate["CP1"]
    assert cp1[1] == "1.6" and cp1[2] == "legacy (shadow new)" and cp1[3] == "shadowing" and cp1[4] == "yes", cp1
    assert cp1[5].endswith("s ago") and cp1[6] == "2/2 (100%) with new", cp1
    actions = [row[3] for row in page.rows["messages"]]
    assert "BootNotification" in actions and "Heartbeat" in actions, page.rows["messages"]
    assert any(HOSTILE_MODEL in row[4] for row in page.rows["messages"]), page.rows["messages"]
    assert not [a for tag, a in page.tags if a.get("id") == "pwn"], "a payload became markup"
    assert page.text["plans-note"] in ("Plans: not available on this gateway.", "No migration plans."), page.text


@needs_chromium
async def test_with_a_token_configured_the_console_asks_for_it_and_shows_no_data(
    start_gateway: GatewayFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under admin.token_env, the API answers 401 and the console shows the token prompt, not the estate."""
    monkeypatch.setenv("GW_ADMIN_TOKEN", ADMIN_TOKEN)
    async with DemoCsms(versions=(Version.V16,)) as legacy, DemoCsms(versions=(Version.V201,)) as new:
        gw, charger = await shadowed_gateway(start_gateway, legacy, new,
                                             admin={"host": "127.0.0.1", "port": 0, "token_env": "GW_ADMIN_TOKEN"})
        page = await rendered(f"http://127.0.0.1:{gw.admin_port}/", tmp_path)
        await charger.close()
    assert "token-form" not in page.hidden and "data" in page.hidden
    assert page.text["token-message"] == "This admin API needs a token."
    assert page.rows["estate"] == [], page.rows["estate"]
