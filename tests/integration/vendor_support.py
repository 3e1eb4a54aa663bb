"""Test bench for the vendor adapters: a vendor cloud simulator -> a real Gateway -> the strict DemoCsms."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gateway.app import Gateway
from gateway.config import parse_config
from gateway.ocppj import Version
from gateway.sim.csms import CsmsCharger, CsmsTransaction, DemoCsms
from gateway.sim.vendor_cloud import CloudServer
from gateway.vendors import VendorManager
from gateway.vendors.manager import ChargerRunner
from tests.conftest import gateway_config

ACCOUNT = "acct"
USER, PASSWORD = "user@example.com", "secret"


@dataclass
class Bench:
    gw: Gateway
    csms: DemoCsms
    cloud: CloudServer
    manager: VendorManager
    config: dict[str, Any]

    def runner(self, charger_id: str) -> ChargerRunner:
        return self.manager.chargers[charger_id]

    async def charger(self, charger_id: str, timeout: float = 10.0) -> CsmsCharger:
        """The CSMS's record of a vendor charger once it has booted and reported its status."""
        c = await self.csms.wait_connected(charger_id, timeout)
        await self.csms.wait_for(lambda: c.boot is not None and c.status() is not None, timeout)
        return c

    async def until(self, predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
        """Wait for a condition on the CSMS side (re-checked on every frame) or anywhere else (polled)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            value = predicate()
            if value:
                return value
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise TimeoutError(f"condition not met within {timeout}s")
            with contextlib.suppress(TimeoutError):
                await self.csms.wait_for(predicate, min(remaining, 0.05))

    def statuses(self, charger_id: str) -> list[str]:
        """Every connectorStatus / 1.6 status the CSMS received from the charger, in order."""
        c = self.csms.charger(charger_id)
        return [str(p.get("connectorStatus") or p.get("status")) for p in c.calls_in("StatusNotification")]

    def assert_clean(self) -> None:
        """The strict CSMS saw no protocol violation and no simulator error."""
        assert self.csms.violations == []
        assert self.csms.errors == []


def transactions(c: CsmsCharger) -> list[CsmsTransaction]:
    return list(c.transactions.values())


@contextlib.asynccontextmanager
async def vendor_bench(
    tmp_path: Path,
    cloud: CloudServer,
    adapter: str,
    *,
    csms_version: Version = Version.V201,
    poll_interval: float = 0.05,
    options: dict[str, Any] | None = None,
    account: dict[str, Any] | None = None,
    call_timeout: float = 5.0,
    heartbeat_interval: int = 300,
) -> AsyncIterator[Bench]:
    """Start the cloud, a DemoCsms, a gateway with one vendor account (credentials from a file), its manager."""
    await cloud.start()
    csms = await DemoCsms(versions=(csms_version,), heartbeat_interval=heartbeat_interval).start()
    creds = tmp_path / "vendor-credentials.yaml"
    creds.write_text(yaml.safe_dump({"username": USER, "password": PASSWORD}), encoding="utf-8")
    vendor: dict[str, Any] = {
        "adapter": adapter, "base_url": cloud.base_url, "credentials_file": str(creds),
        "poll_interval": poll_interval, "route": {"primary": "main"},
        "options": {"outage_backoff_max": 0.2, "reboot_grace": 0.3, "discovery_interval": 3600, **(options or {})},
    }
    vendor.update(account or {})
    cfg = gateway_config(tmp_path, {"main": {"url": csms.url, "ocpp": csms_version.value}},
                         vendors={ACCOUNT: vendor}, call_timeout=call_timeout, allow_unknown_chargers=False)
    gw = Gateway(parse_config(cfg))
    await gw.start()
    manager: VendorManager | None = getattr(gw, "vendors", None)  # once Gateway.start wires it in
    own = manager is None
    if manager is None:
        manager = VendorManager(gw)
        await manager.start()
    try:
        yield Bench(gw, csms, cloud, manager, cfg)
    finally:
        if own:
            await manager.stop()
        await gw.stop()
        await csms.stop()
        await cloud.stop()
