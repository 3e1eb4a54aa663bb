"""ocpp-gateway report: the estate's migration report from the store of a stopped gateway, in every format."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import shutil
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.app import Gateway
from gateway.config import parse_config
from gateway.ocppj import Version
from gateway.sim.csms import DemoCsms
from tests.conftest import cli, gateway_config
from tests.rawpeers import RawCharger


async def shadowed_estate(tmp_path: Path, legacy: DemoCsms, new: DemoCsms) -> str:
    """Two 1.6 chargers shadowed to a 2.0.1 CSMS that refuses BADTAG; the gateway is stopped after. Config path."""
    csms = {"legacy": {"url": legacy.url, "ocpp": "1.6"}, "new": {"url": new.url, "ocpp": "2.0.1"}}
    cfg = gateway_config(tmp_path, csms, default_route={"primary": "legacy", "shadow": "new"},
                         migration={"ready_after": 4},
                         chargers={"CP1": {}, "CP2": {}, "CP9": {"route": {"primary": "legacy"}}})
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(cfg))
    gw = Gateway(parse_config(cfg))
    await gw.start()
    try:
        for cid, tag in (("CP1", "BADTAG"), ("CP2", "GOODTAG")):
            charger = await RawCharger.connect(f"ws://127.0.0.1:{gw.listen_port}/ocpp/{cid}", ["ocpp1.6"])
            await charger.call("b1", "BootNotification", {"chargePointVendor": "ACME", "chargePointModel": "One"})
            await charger.call("h1", "Heartbeat", {})
            await charger.call("a1", "Authorize", {"idTag": "GOODTAG"})
            await charger.call("a2", "Authorize", {"idTag": tag})
            for _ in range(100):
                book = gw.comparisons.get(cid)
                if book is not None and book.targets["new"].total().compared == 4:
                    break
                await asyncio.sleep(0.05)
            await charger.close()
    finally:
        await gw.stop()
    return str(path)


class Tables(HTMLParser):
    """The tables of a page: id or action, and the text of each cell by row."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[dict[str, Any]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "table":
            self.tables.append({"id": a.get("id"), "action": a.get("data-action"), "rows": []})
        elif tag == "tr" and self.tables:
            self.tables[-1]["rows"].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self.tables:
            self.tables[-1]["rows"][-1].append("".join(self._cell).strip())
            self._cell = None


@pytest.fixture
async def config(tmp_path: Path) -> str:
    """The configuration of a stopped gateway whose store holds the shadowed estate's comparisons."""
    legacy = await DemoCsms(versions=(Version.V16,)).start()
    new = await DemoCsms(versions=(Version.V201,), auth={"BADTAG": "Invalid"}).start()
    try:
        return await shadowed_estate(tmp_path, legacy, new)
    finally:
        await legacy.stop()
        await new.stop()


async def test_the_report_answers_is_it_ready_from_a_stopped_gateway(config: str, tmp_path: Path) -> None:
    """After the gateway stops, report lists each charger's readiness and exactly the one differing Authorize."""
    code, out, err = await cli("report", "--config", config, "--format", "json")
    assert code == 0, err
    report = json.loads(out)
    rows = {r["id"]: r for r in report["chargers"]}
    assert set(rows) == {"CP1", "CP2", "CP9"}
    assert (rows["CP2"]["phase"], rows["CP2"]["readiness"]) == ("shadowing", {"ready": True, "reasons": []})
    assert rows["CP1"]["readiness"]["ready"] is False
    assert rows["CP1"]["readiness"]["reasons"] == [
        "Authorize differed (status at idTagInfo.status) 0 exchange(s) ago; 4 clean exchanges needed since"]
    assert rows["CP9"]["phase"] == "legacy-only" and rows["CP9"]["readiness"]["ready"] is False
    # The transaction ledger counts open transactions for pass-through chargers too (none open here).
    assert rows["CP1"]["open_transactions"] == 0 and rows["CP1"]["offline_queue"] == 0
    assert report["summary"]["ready"] == 1 and report["summary"]["phases"] == {"shadowing": 2, "legacy-only": 1}
    assert [(d["charger_id"], d["action"], [x["path"] for x in d["differences"]]) for d in report["differences"]] \
        == [("CP1", "Authorize", ["idTagInfo.status"])]
    assert report["actions"]["Authorize"]["kinds"]["status"] == 1

    code, out, _ = await cli("report", "--config", config, "--format", "csv")
    table = list(csv.DictReader(io.StringIO(out)))
    assert [(r["charger_id"], r["ready"], r["compared"], r["differed"]) for r in table] == [
        ("CP1", "no", "4", "1"), ("CP2", "yes", "4", "0"), ("CP9", "no", "0", "0")]

    code, out, _ = await cli("report", "--config", config)
    assert code == 0 and "1 of 3 chargers ready to move" in out
    assert "status   idTagInfo.status: primary \"Accepted\", new \"Invalid\"" in out

    page = tmp_path / "report.html"
    code, out, err = await cli("report", "--config", config, "--format", "html", "--output", str(page))
    assert code == 0 and out == "", err
    parsed = Tables()
    parsed.feed(page.read_text())
    assert [(t["id"], t["action"]) for t in parsed.tables] == [("chargers", None), ("actions", None),
                                                               (None, "Authorize")]
    (header, row) = parsed.tables[2]["rows"]
    assert header == ["When", "Charger", "Request", "Differences", "Primary answered", "Compared CSMS answered"]
    assert row[1] == "CP1" and '"BADTAG"' in row[2] and '"Accepted"' in row[4] and '"Invalid"' in row[5]


async def test_report_of_a_store_that_is_not_there_says_so(tmp_path: Path) -> None:
    """A store URL with nothing behind it gives one clear line and exit code 1."""
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump({"store": f"sqlite:///{tmp_path}/missing.db",
                                    "csms": {"a": {"url": "ws://127.0.0.1:9/ocpp", "ocpp": "1.6"}},
                                    "default_route": {"primary": "a"}}))
    code, out, err = await cli("report", "--config", str(path))
    assert code == 1 and out == "" and "no message log at" in err


@pytest.mark.skipif(shutil.which("chromium") is None,
                    reason="needs Debian's chromium package (apt-get install chromium) for the headless browser")
async def test_the_html_report_opens_in_a_browser_with_its_tables(config: str, tmp_path: Path) -> None:
    """Headless Chromium loads the mailed page on its own (no network) and finds every table in its DOM."""
    page = tmp_path / "report.html"
    code, _, err = await cli("report", "--config", config, "--format", "html", "--output", str(page))
    assert code == 0, err
    proc = await asyncio.create_subprocess_exec(
        "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", f"--user-data-dir={tmp_path}/cr",
        "--dump-dom", page.as_uri(), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    dom, chromium_err = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode == 0, chromium_err.decode()[-2000:]
    parsed = Tables()
    parsed.feed(dom.decode())
    assert [(t["id"], t["action"]) for t in parsed.tables] == [("chargers", None), ("actions", None),
                                                               (None, "Authorize")]
    chargers = {r[0]: r for r in parsed.tables[0]["rows"][1:]}
    assert chargers["CP1"][7] == "not ready" and chargers["CP2"][7] == "ready"
    assert parsed.tables[1]["rows"][1][:4] == ["Authorize", "4", "3", "1"]
