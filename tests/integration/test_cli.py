"""The ocpp-gateway command as users run it: a real subprocess, a real config file, real signals."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import sys
from pathlib import Path

import pytest
import yaml

from tests.rawpeers import RawCharger, RawCsms

CLI = [sys.executable, "-m", "gateway.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def run_cli(*args: str, timeout: float = 30) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(*CLI, *args, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("csms: {a: {url: 'http://x', ocpp: '1.6'}}\ndefault_route: {primary: a}\n", "csms.a.url: must start with ws://"),
        ("csms: {a: {url: 'ws://x', ocpp: '3.0'}}\ndefault_route: {primary: a}\n", "csms.a.ocpp"),
        ("csms: {a: {url: 'ws://x', ocpp: '1.6'}}\ndefault_route: {primary: b}\n",
         "default_route.primary: no csms named 'b'"),
        ("csms: {a: {url: 'ws://x', ocpp: '1.6'}}\ndefault_route: {primary: a}\nlisten: {prot: 1}\n",
         "listen.prot: unknown key"),
        ("csms: [\n", "not valid YAML"),
        ("default_route: {primary: a}\n", "csms: Field required"),
    ],
)
async def test_bad_config_exits_non_zero_naming_file_and_key(tmp_path: Path, text: str, expected: str) -> None:
    """A broken configuration stops `run` with status 2 and a message naming the file, the key and the problem."""
    path = tmp_path / "gateway.yaml"
    path.write_text(text)
    code, _out, err = await run_cli("run", "--config", str(path))
    assert code == 2
    assert str(path) in err
    assert expected in err


async def test_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    """A config path that does not exist is reported, not a traceback."""
    code, _out, err = await run_cli("run", "--config", str(tmp_path / "nope.yaml"))
    assert code == 2 and "cannot read" in err and "Traceback" not in err


async def test_run_relays_logs_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    """`ocpp-gateway run` serves chargers, writes JSON log lines, flushes the message log and exits 0 on SIGTERM."""
    csms = await RawCsms().start()
    csms.auto["BootNotification"] = {"status": "Accepted", "currentTime": "2026-01-01T00:00:00Z", "interval": 60}
    port, admin = free_port(), free_port()
    db = tmp_path / "gw.db"
    config = {
        "listen": {"host": "127.0.0.1", "port": port},
        "admin": {"host": "127.0.0.1", "port": admin},
        "store": f"sqlite:///{db}",
        "csms": {"main": {"url": csms.url, "ocpp": "1.6"}},
        "default_route": {"primary": "main"},
        "chargers": {"CP7": {}},
    }
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = await asyncio.create_subprocess_exec(*CLI, "run", "--config", str(path),
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        charger = None
        for _ in range(100):
            try:
                charger = await RawCharger.connect(f"ws://127.0.0.1:{port}/ocpp/CP7", ["ocpp1.6"])
                break
            except OSError:
                await asyncio.sleep(0.1)
        assert charger is not None, "gateway did not start listening"
        answer = await charger.call("b1", "BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"})
        assert answer[0] == 3 and answer[2]["status"] == "Accepted"
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(charger.ws.wait_closed(), 10)
        assert charger.ws.close_code == 1001
        _out, err = await asyncio.wait_for(proc.communicate(), 15)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await csms.stop()
    assert proc.returncode == 0
    lines = [json.loads(line) for line in err.decode().splitlines() if line.startswith("{")]
    events = [line["event"] for line in lines]
    assert "gateway_started" in events and "gateway_stopped" in events
    assert any(line.get("charger_id") == "CP7" for line in lines if line["event"] == "charger_connected")
    # The message log was flushed before exit and the CLI reads it back.
    code, out, _ = await run_cli("logs", "CP7", "--config", str(path), "--jsonl")
    assert code == 0
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["action"] for r in records[:4]] == ["BootNotification"] * 4
    assert records[0]["payload"] == {"chargePointVendor": "V", "chargePointModel": "M"}
    code, out, _ = await run_cli("logs", "CP7", "--config", str(path), "--limit", "2")
    assert code == 0 and "BootNotification" in out


async def test_help_documents_every_subcommand() -> None:
    """`ocpp-gateway --help` lists every subcommand."""
    code, out, _ = await run_cli("--help")
    assert code == 0
    for sub in ("run", "demo", "logs", "conformance", "check-config", "bench"):
        assert sub in out


async def test_check_config_accepts_a_good_file(tmp_path: Path) -> None:
    """check-config validates the file and the mapping tables and says OK."""
    path = tmp_path / "g.yaml"
    path.write_text("csms: {a: {url: 'ws://x:1/ocpp', ocpp: 2.0.1}}\ndefault_route: {primary: a}\n")
    code, out, _ = await run_cli("check-config", "--config", str(path))
    assert code == 0 and "OK" in out


async def test_broken_operator_mapping_table_stops_start_up(tmp_path: Path) -> None:
    """An operator mapping file that is not a table stops the gateway with the file and row named."""
    mdir = tmp_path / "maps"
    mdir.mkdir()
    (mdir / "stop_reasons.yaml").write_text("rows:\n  - {v16: Local, v201: Local}\n  - just a string\n")
    path = tmp_path / "g.yaml"
    path.write_text(
        f"csms: {{a: {{url: 'ws://x:1/ocpp', ocpp: 2.0.1}}}}\ndefault_route: {{primary: a}}\nmapping_dirs: ['{mdir}']\n"
    )
    code, _out, err = await run_cli("check-config", "--config", str(path))
    assert code == 2
    assert "stop_reasons.yaml: row 2" in err




async def test_bad_translator_option_is_caught_before_any_charger_connects(tmp_path: Path) -> None:
    """A per-charger translator option the translator rejects fails check-config, naming the charger."""
    path = tmp_path / "g.yaml"
    path.write_text(
        "csms: {a: {url: 'ws://x:1/ocpp', ocpp: 2.0.1}}\ndefault_route: {primary: a}\n"
        "chargers: {CP9: {ocpp: '1.6', options: {connector_map: 'not a map'}}}\n"
    )
    code, _out, err = await run_cli("check-config", "--config", str(path))
    assert code == 2
    assert "chargers.CP9.options" in err
