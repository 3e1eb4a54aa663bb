"""`ocpp-gateway sim charger` / `sim csms` as real processes, and the examples every --help ends with."""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import sys

import pytest

from gateway.cli import _parser, main
from tests.conftest import GatewayFactory, cli

SIM = [sys.executable, "-m", "gateway.cli", "sim"]


async def start_sim_csms(*args: str) -> tuple[asyncio.subprocess.Process, str]:
    """`ocpp-gateway sim csms` on port 0; the process and the URL it announces."""
    proc = await asyncio.create_subprocess_exec(*SIM, "csms", "--port", "0", *args,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    first = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
    match = re.search(r"listening on (ws://\S+)/<charger_id>", first)
    assert match, first
    return proc, match.group(1)


async def test_sim_charger_charges_through_the_gateway_to_the_sim_csms(start_gateway: GatewayFactory) -> None:
    """A 1.6 sim charger runs two sessions via a translating gateway to a 2.0.1 sim CSMS; both report no violation."""
    csms, url = await start_sim_csms("--ocpp", "2.0.1", "--quiet")
    try:
        gw = await start_gateway({"new": {"url": url, "ocpp": "2.0.1"}})
        code, out, err = await cli("sim", "charger", "--ocpp", "1.6", "--url", f"ws://127.0.0.1:{gw.listen_port}/ocpp",
                                   "--id", "CP1", "--transactions", "2", "--meter-interval", "0")
        assert code == 0, out + err
        assert "sim charger: CP1 connected to" in out and "(ocpp1.6)" in out
        assert re.search(r"CP1 charger -> CALL +StartTransaction", out)
        assert re.search(r"transaction 2/2: id \d+, authorization Accepted, 5000 Wh, 3 meter values", out)
        assert out.rstrip().endswith("sim charger: done, 0 violations")
    finally:
        csms.send_signal(signal.SIGTERM)
        summary, _ = await asyncio.wait_for(csms.communicate(), 30)
    assert csms.returncode == 0
    assert "sim csms: 1 chargers, 2 transactions (2 finished), 0 violations" in summary.decode()


async def test_sim_csms_prints_frames_and_stops_after_its_duration() -> None:
    """Without --quiet the sim CSMS prints each frame it sees; --duration ends it with a summary."""
    csms, url = await start_sim_csms("--ocpp", "1.6", "--duration", "6")
    code, out, _ = await cli("sim", "charger", "--ocpp", "1.6", "--url", url, "--id", "CP9", "--transactions", "0",
                             "--quiet")
    assert code == 0 and "done, 0 violations" in out
    assert "CALL" not in out  # --quiet: no frame lines
    printed, _ = await asyncio.wait_for(csms.communicate(), 30)
    text = printed.decode()
    assert re.search(r"CP9 CSMS <- CALL +BootNotification", text)
    assert re.search(r"CP9 CSMS -> CALLRESULT BootNotification", text)
    assert "sim csms: 1 chargers, 0 transactions (0 finished), 0 violations" in text and csms.returncode == 0


async def test_sim_charger_fails_clearly_when_refused_or_unreachable(start_gateway: GatewayFactory) -> None:
    """A refused handshake and a closed port each end the sim charger with exit 1 and one FAILED line."""
    gw = await start_gateway({"a": {"url": "ws://127.0.0.1:1/ocpp", "ocpp": "1.6"}}, allow_unknown_chargers=False)
    code, out, _ = await cli("sim", "charger", "--ocpp", "1.6", "--url", f"ws://127.0.0.1:{gw.listen_port}/ocpp",
                             "--id", "STRANGER")
    assert code == 1
    assert "sim charger: FAILED: handshake refused: HTTP 404 unknown charger 'STRANGER'" in out
    code, out, _ = await cli("sim", "charger", "--ocpp", "2.0.1", "--url", "ws://127.0.0.1:1/ocpp", "--id", "CP1")
    assert code == 1
    assert "sim charger: FAILED: cannot connect to ws://127.0.0.1:1/ocpp/CP1" in out


def _subcommands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every subcommand path of the CLI, nested ones included."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.append((*path, name))
                found += _subcommands(sub, (*path, name))
    return found


@pytest.mark.parametrize("path", _subcommands(_parser()), ids=" ".join)
def test_every_subcommands_help_shows_an_example(path: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    """`ocpp-gateway <subcommand> --help` ends with examples that start with that very subcommand."""
    with pytest.raises(SystemExit) as exit_:
        main([*path, "--help"])
    assert exit_.value.code == 0
    help_text = capsys.readouterr().out
    examples = help_text.split("examples:\n", 1)[1].splitlines()
    assert examples and all(line.startswith(f"  ocpp-gateway {' '.join(path)}") for line in examples), help_text
