"""Vendor-cloud chargers for ``ocpp-gateway demo``: simulated Easee and Zaptec clouds with EVs coming and going.

    vendor_demo = VendorDemo(easee_route="csms-201", zaptec_route="csms-16")
    config["vendors"] = await vendor_demo.start()   # the `vendors:` section pointing at the simulators
    ...                                             # start the gateway (it starts the vendor runner)
    await vendor_demo.stop()

The simulated EVs charge at realistic power with time sped up
(``speedup``), so sessions show kWh within seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import tempfile
from pathlib import Path
from typing import Any

import yaml

from gateway.sim.easee_cloud import EaseeCloud
from gateway.sim.vendor_cloud import SimPoint
from gateway.sim.zaptec_cloud import ZaptecCloud

USER, PASSWORD = "demo@example.com", "demo-password"


class VendorDemo:
    def __init__(
        self,
        easee_route: str,
        zaptec_route: str | None = None,
        *,
        easee_chargers: int = 2,
        zaptec_chargers: int = 1,
        poll_interval: float = 2.0,
        speedup: float = 120.0,
        session: tuple[float, float] = (8.0, 20.0),
        pause: tuple[float, float] = (3.0, 8.0),
    ) -> None:
        self.easee = EaseeCloud(users={USER: PASSWORD}, speedup=speedup)
        self.zaptec = ZaptecCloud(users={USER: PASSWORD}, speedup=speedup, signed_interval=60.0)
        self.routes = (easee_route, zaptec_route or easee_route)
        self.counts = (easee_chargers, zaptec_chargers)
        self.poll_interval = poll_interval
        self.session = session
        self.pause = pause
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> dict[str, Any]:
        """Start both clouds and the EVs; return the gateway's ``vendors:`` configuration section."""
        await self.easee.start()
        await self.zaptec.start()
        self._dir = tempfile.TemporaryDirectory(prefix="ocpp-gateway-demo-")
        creds = Path(self._dir.name) / "vendor-credentials.yaml"
        creds.write_text(yaml.safe_dump({"username": USER, "password": PASSWORD}), encoding="utf-8")
        points: list[SimPoint] = []
        for i in range(self.counts[0]):
            points.append(self.easee.add_charger(f"EH{100001 + i}"))
        for i in range(self.counts[1]):
            points.append(self.zaptec.add_charger(f"ZAP{100001 + i}"))
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._ev(p), name=f"demo-ev:{p.id}") for p in points]
        common = {"credentials_file": str(creds), "poll_interval": self.poll_interval}
        return {
            "demo-easee": {"adapter": "easee", "base_url": self.easee.base_url, "route": {"primary": self.routes[0]},
                           **common},
            "demo-zaptec": {"adapter": "zaptec", "base_url": self.zaptec.base_url,
                            "route": {"primary": self.routes[1]}, **common},
        }

    async def _ev(self, point: SimPoint) -> None:
        """An EV that arrives, charges for a while (sometimes until full) and leaves, forever."""
        rng = random.Random(point.id)
        await asyncio.sleep(rng.uniform(0.5, 3.0))
        while True:
            point.plug_in(rfid=f"{rng.getrandbits(32):08X}")
            await asyncio.sleep(rng.uniform(*self.session))
            point.unplug()
            await asyncio.sleep(rng.uniform(*self.pause))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.easee.stop()
        await self.zaptec.stop()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    @property
    def sessions_wh(self) -> float:
        """Energy the simulated EVs have drawn so far (all sessions, Wh)."""
        points: list[SimPoint] = [*self.easee.chargers.values(), *self.zaptec.chargers.values()]
        return sum(p.lifetime_wh - 1_000_000.0 for p in points)
