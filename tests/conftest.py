"""Shared fixtures: real servers on port 0, real SQLite stores in tmp_path."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.app import Gateway
from gateway.config import parse_config
from tests.rawpeers import RawCsms

GatewayFactory = Callable[..., Awaitable[Gateway]]


async def cli(*args: str) -> tuple[int, str, str]:
    """Run ``python -m gateway.cli *args`` as operators do; exit code, stdout, stderr."""
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "gateway.cli", *args,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    return proc.returncode or 0, out.decode(), err.decode()


def gateway_config(tmp_path: Path, csms: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    """A config dict listening on port 0 with its store in tmp_path."""
    cfg: dict[str, Any] = {
        "listen": {"host": "127.0.0.1", "port": 0},
        "admin": {"host": "127.0.0.1", "port": 0},
        "store": f"sqlite:///{tmp_path}/gateway.db",
        "csms": csms,
        "default_route": {"primary": next(iter(csms))},
        "allow_unknown_chargers": True,
        "upstream": {"reconnect_initial": 0.05, "reconnect_max": 0.5},
    }
    cfg.update(overrides)
    return cfg


@pytest.fixture
async def raw_csms() -> AsyncIterator[RawCsms]:
    csms = await RawCsms().start()
    yield csms
    await csms.stop()


@pytest.fixture
async def start_gateway(tmp_path: Path) -> AsyncIterator[GatewayFactory]:
    started: list[Gateway] = []

    async def factory(csms: dict[str, Any], **overrides: Any) -> Gateway:
        gw = Gateway(parse_config(gateway_config(tmp_path, csms, **overrides)))
        await gw.start()
        started.append(gw)
        return gw

    yield factory
    for gw in started:
        await gw.stop()
