"""`check-config` and `run` as an operator meets them: every problem in one run, one line each, no traceback."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.ocppj import Version
from gateway.sim import DemoCsms
from tests.conftest import cli

CSMS = {"legacy": {"url": "ws://127.0.0.1:1/ocpp", "ocpp": "1.6"}}
OCPP_GATEWAY = Path(sys.executable).parent / "ocpp-gateway"  # the installed console script
PG = "postgresql://postgres@127.0.0.1:5432/test"


def write(tmp_path: Path, config: dict[str, Any] | str) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(config if isinstance(config, str) else yaml.safe_dump(config))
    return path


def base(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    return {"csms": CSMS, "default_route": {"primary": "legacy"}, "store": f"sqlite:///{tmp_path}/gw.db",
            "listen": {"host": "127.0.0.1", "port": 0}, "admin": {"host": "127.0.0.1", "port": 0}, **overrides}


async def run_gateway(path: Path, env: dict[str, str] | None = None, timeout: float = 30) -> tuple[int, str]:
    """`ocpp-gateway run` as a real process that is expected to refuse to start: exit code and stderr."""
    proc = await asyncio.create_subprocess_exec(
        str(OCPP_GATEWAY), "run", "--config", str(path), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env={**os.environ, **(env or {})})
    try:
        _, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.send_signal(signal.SIGTERM)
        await proc.wait()
        raise AssertionError("the gateway started although it should have refused") from None
    assert proc.returncode is not None
    return proc.returncode, err.decode()


def problem_lines(err: str) -> list[str]:
    """The problem lines of check-config's stderr, without the closing count."""
    return [line for line in err.splitlines()
            if line.startswith("ocpp-gateway: ") and not re.search(r": \d+ problems?$", line)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("csms: {a: {url: 'ws://x', ocpp: '3.0'}, b: {url: 'ws://y', ocpp: '1.6'}}\n"
                     "default_route: {primary: bb}\n",
                     ["csms.a.ocpp: unknown OCPP version '3.0'",
                      "default_route.primary: no csms named 'bb' (did you mean 'b'?)"],
                     id="bad version and route typo"),
        pytest.param("csms: {a: {url: 'ws://x', ocpp: '1.6'}}\ndefault_route: {primary: a}\n"
                     "listen: {prot: 1}\nchargers: {CP1: {rout: {primary: a}}}\n",
                     ["listen.prot: unknown key (did you mean 'port'?)",
                      "chargers.CP1.rout: unknown key (did you mean 'route'?)"], id="unknown keys"),
        pytest.param("csms: {a: {url: 'http://x', ocpp: '1.6'}}\nchargers: {CP1: {}, CP2: {}}\n",
                     ["csms.a.url: must start with ws://", "chargers.CP1: no route and no default_route",
                      "chargers.CP2: no route and no default_route"], id="url and missing routes"),
    ],
)
async def test_check_config_reports_every_validation_problem_in_one_run(
    tmp_path: Path, text: str, expected: list[str]
) -> None:
    """Several mistakes in one file are all reported, one line each naming the file and the key, exit 2."""
    path = write(tmp_path, text)
    code, _out, err = await cli("check-config", "--config", str(path))
    assert code == 2 and "Traceback" not in err
    lines = problem_lines(err)
    assert len(lines) == len(expected), err
    for line, wanted in zip(lines, expected, strict=True):
        assert line.startswith(f"ocpp-gateway: {path}: ") and wanted in line
    assert err.splitlines()[-1] == f"ocpp-gateway: {path}: {len(expected)} problem{'s' if len(expected) > 1 else ''}"


async def test_check_config_reports_what_the_config_points_at_all_at_once(tmp_path: Path) -> None:
    """A typo, missing or file mapping_dirs, an uncreatable SQLite path, unset admin token and vendor credentials:
    all six in one run, even though the typo makes the file invalid."""
    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory")
    path = write(tmp_path, base(
        tmp_path, listen={"host": "127.0.0.1", "prot": 9000},
        store=f"sqlite:///{a_file}/gw.db", mapping_dirs=[str(tmp_path / "nope"), str(a_file)],
        admin={"host": "127.0.0.1", "port": 0, "token_env": "I17_UNSET_TOKEN"},
        vendors={"easee-a": {"adapter": "easee", "username_env": "I17_UNSET_USER", "password_env": "I17_UNSET_PW"}},
    ))
    code, out, err = await cli("check-config", "--config", str(path))
    assert code == 2 and "OK" not in out and "Traceback" not in err
    assert problem_lines(err) == [
        f"ocpp-gateway: {path}: listen.prot: unknown key (did you mean 'port'?)",
        f"ocpp-gateway: {path}: mapping_dirs[0]: {tmp_path / 'nope'} does not exist",
        f"ocpp-gateway: {path}: mapping_dirs[1]: {a_file} is a file, not a directory of mapping tables",
        f"ocpp-gateway: {path}: store: cannot create {a_file}/gw.db: {a_file} is a file, not a directory",
        f"ocpp-gateway: {path}: admin.token_env: environment variable I17_UNSET_TOKEN (the admin API token) is not set",
        f"ocpp-gateway: {path}: vendors.easee-a: no username/password (looked in $I17_UNSET_USER, $I17_UNSET_PW)",
    ]


async def test_check_config_creates_nothing_and_says_what_run_will_create(tmp_path: Path) -> None:
    """A SQLite store in a directory that does not exist yet is a note, not a problem, and is not created."""
    path = write(tmp_path, base(tmp_path, store=f"sqlite:///{tmp_path}/state/sub/gw.db"))
    code, out, err = await cli("check-config", "--config", str(path))
    assert code == 0, err
    assert f"store: directory {tmp_path}/state/sub does not exist yet; `run` creates it" in out
    assert not (tmp_path / "state").exists()


@pytest.mark.parametrize(
    ("store", "expected"),
    [
        ("mysql://gw@db/gateway", "store: unsupported store URL 'mysql://gw@db/gateway'"),
        ("sqlite://relative.db", "store: bad sqlite URL"),
        ("postgresql://postgres@127.0.0.1:5432/test?schema=bad-name", "store: bad schema name 'bad-name'"),
    ],
)
async def test_a_bad_store_url_is_one_line_in_check_config_and_run(tmp_path: Path, store: str, expected: str) -> None:
    """A store URL the gateway cannot use: one line naming `store`, exit 2, from check-config and from run."""
    path = write(tmp_path, base(tmp_path, store=store))
    code, _out, err = await cli("check-config", "--config", str(path))
    assert code == 2 and "Traceback" not in err
    [line] = problem_lines(err)
    assert line.startswith(f"ocpp-gateway: {path}: {expected}")
    code, err = await run_gateway(path)
    assert code == 2 and "Traceback" not in err
    [line] = err.strip().splitlines()
    assert line.startswith(f"ocpp-gateway: cannot start: {path}: {expected}")


async def test_vendor_credentials_refuse_start_like_the_admin_token(tmp_path: Path) -> None:
    """Unset vendor credential variables stop `run` (exit 2, naming account and variables), as admin.token_env does."""
    vendors = {"zaptec-b": {"adapter": "zaptec", "username_env": "I17_ZU", "password_env": "I17_ZP"}}
    path = write(tmp_path, base(tmp_path, vendors=vendors))
    code, err = await run_gateway(path)
    assert code == 2 and "Traceback" not in err
    assert "vendors.zaptec-b: no username/password (looked in $I17_ZU, $I17_ZP)" in err
    code, _out, err = await cli("check-config", "--config", str(path))
    assert code == 2 and "vendors.zaptec-b" in err
    # With the variables set, check-config has nothing against the account.
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "check-config", "--config", str(path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "I17_ZU": "user", "I17_ZP": "secret"})
    out_b, err_b = await proc.communicate()
    assert proc.returncode == 0, err_b.decode()
    assert "OK" in out_b.decode()


async def test_run_with_an_unreachable_postgresql_prints_one_line(tmp_path: Path) -> None:
    """A PostgreSQL store nobody answers for stops `run` with one line naming `store` and the cause, exit 2."""
    path = write(tmp_path, base(tmp_path, store="postgresql://postgres@127.0.0.1:1/test?connect_timeout=3"))
    code, err = await run_gateway(path)
    assert code == 2
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert re.match(rf"ocpp-gateway: cannot start: {re.escape(str(path))}: store: cannot connect to postgresql .*"
                    r"127\.0\.0\.1.*port 1 failed: Connection refused", lines[0])


async def test_run_with_an_unwritable_sqlite_path_prints_one_line(tmp_path: Path) -> None:
    """A SQLite path under a regular file (unwritable even for root) stops `run`: one line, exit 2."""
    (tmp_path / "a-file").write_text("x")
    path = write(tmp_path, base(tmp_path, store=f"sqlite:///{tmp_path}/a-file/gw.db"))
    code, err = await run_gateway(path)
    assert code == 2
    assert err.strip().splitlines() == [
        f"ocpp-gateway: cannot start: {path}: store: cannot create {tmp_path}/a-file/gw.db: "
        f"{tmp_path}/a-file is a file, not a directory"
    ]


async def test_check_config_connect_says_which_peers_answer(tmp_path: Path) -> None:
    """--connect opens the store and knocks on every CSMS: a live one answers, a closed port does not (exit 2)."""
    async with DemoCsms([Version.V201]) as live:
        csms = {"up": {"url": live.url, "ocpp": "2.0.1"}, "down": {"url": "ws://127.0.0.1:1/ocpp", "ocpp": "1.6"}}
        path = write(tmp_path, base(tmp_path, csms=csms, default_route={"primary": "up"}, store=PG))
        code, out, err = await cli("check-config", "--config", str(path), "--connect")
    if "store: cannot connect" in err:
        pytest.skip(f"PostgreSQL not reachable at {PG}")
    assert code == 2
    assert re.search(r"store: postgresql .*: answers \(PostgreSQL \d+", out), out
    assert f"csms.up: {live.url} answers: WebSocket accepted (ocpp2.0.1)" in out
    assert problem_lines(err) == [f"ocpp-gateway: {path}: csms.down: ws://127.0.0.1:1/ocpp: no answer: "
                                  "Connect call failed ('127.0.0.1', 1)"]


async def test_check_config_connect_reports_an_unreachable_store(tmp_path: Path) -> None:
    """--connect on a PostgreSQL store that does not answer: the store line is a problem naming the cause."""
    async with DemoCsms([Version.V16]) as live:
        csms = {"a": {"url": live.url, "ocpp": "1.6"}}
        path = write(tmp_path, base(tmp_path, csms=csms, default_route={"primary": "a"},
                                    store="postgresql://postgres@127.0.0.1:1/test"))
        code, out, err = await cli("check-config", "--config", str(path), "--connect")
    assert code == 2
    assert "csms.a: " in out and "answers" in out
    [line] = problem_lines(err)
    assert "store: cannot connect to postgresql" in line and "Connection refused" in line


async def test_logs_of_an_unknown_charger_exits_non_zero(tmp_path: Path) -> None:
    """`logs NOSUCH` on a store that exists says there is nothing for that id and exits 1."""
    path = write(tmp_path, base(tmp_path))
    code, out, err = await cli("logs", "NOSUCH", "--config", str(path))
    assert code == 1 and out == ""
    assert "no message log at" in err  # the gateway never ran with this store
    from gateway.store import open_store

    store = open_store(f"sqlite:///{tmp_path}/gw.db")
    await store.start()
    await store.close()
    code, out, err = await cli("logs", "NOSUCH", "--config", str(path))
    assert code == 1 and out == ""
    assert "no messages for NOSUCH" in err


async def test_logs_on_a_postgresql_database_without_the_table_says_so(tmp_path: Path) -> None:
    """A PostgreSQL store the gateway never wrote to: one line saying there is no message log, not an SQL error."""
    code, out, err = await cli("logs", "CP1", "--store", f"{PG}?schema=i17_never_created")
    if "cannot connect" in err:
        pytest.skip(f"PostgreSQL not reachable at {PG}")
    assert code == 1 and out == ""
    assert err.strip() == ("ocpp-gateway logs: no message log in postgresql postgresql://postgres@127.0.0.1:5432/test "
                           "schema i17_never_created (has the gateway run with this store URL?)")
