"""``ocpp-gateway demo``: the gateway, an embedded demo CSMS and a fleet of simulated chargers.

Everything runs in one process on loopback: the demo CSMS speaks 1.6J, 2.0.1
and 2.1 on one port; the gateway routes each simulated charger either to a
CSMS of its own version (pass-through) or, with ``--translate``, every third
charger to a CSMS of another version, so the translators show too.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from typing import Any, TextIO

from adapters import registry
from gateway.app import Gateway
from gateway.config import parse_config
from gateway.ocppj import Version
from gateway.sim.csms import DemoCsms
from gateway.sim.fleet import Fleet
from gateway.vendors.demo import VendorDemo

CSMS_NAMES = {Version.V16: "demo-csms-1.6", Version.V201: "demo-csms-2.0.1", Version.V21: "demo-csms-2.1"}
# Where a translated demo charger goes, in order of preference.
TRANSLATE_TO = {
    Version.V16: (Version.V201, Version.V21),
    Version.V201: (Version.V16, Version.V21),
    Version.V21: (Version.V201, Version.V16),
}


def plan_routes(versions: dict[str, Version], translate: bool) -> dict[str, Version]:
    """Which CSMS version each charger is routed to: its own, or (every third) another one it can be translated to."""
    routes = {}
    for i, (cid, version) in enumerate(sorted(versions.items())):
        target = version
        if translate and i % 3 == 2:
            target = next((t for t in TRANSLATE_TO[version] if registry.translator_for(version, t)), version)
        routes[cid] = target
    return routes


def _metric_total(gw: Gateway, name: str) -> float:
    total = 0.0
    for family in gw.metrics.registry.collect():
        for sample in family.samples:
            if sample.name == name:
                total += sample.value
    return total


def summary_line(gw: Gateway, fleet: Fleet, started: float) -> str:
    by_version: dict[str, int] = {}
    upstream_up = 0
    for conn in gw.connections.values():
        by_version[conn.version.value] = by_version.get(conn.version.value, 0) + 1
        upstream_up += conn.upstream.state == "up"
    versions = " ".join(f"{v}:{n}" for v, n in sorted(by_version.items()))
    frames = int(_metric_total(gw, "ocpp_gateway_frames_total"))
    errors = int(_metric_total(gw, "ocpp_gateway_callerrors_total"))
    s = fleet.stats
    return (
        f"[{time.monotonic() - started:5.0f}s] chargers {len(gw.connections)} ({versions or '-'}) "
        f"upstream up {upstream_up} | frames {frames} | CALLERRORs {errors} | "
        f"sessions {s.sessions} ({s.energy_wh / 1000:.1f} kWh)"
    )


async def demo(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    csms = await DemoCsms(versions=(Version.V21, Version.V201, Version.V16)).start()
    fleet = Fleet(
        "", count=args.chargers, id_prefix="DEMO", heartbeat_interval=10.0, session_pause=(2.0, 6.0),
        meter_interval=(0.5, 1.5), ramp_up=min(5.0, 0.05 * args.chargers),
    )
    routes = plan_routes(fleet.versions, args.translate)
    settings: dict[str, Any] = {
        "listen": {"host": "127.0.0.1", "port": args.port},
        "admin": {"host": "127.0.0.1", "port": args.admin_port},
        "store": args.store,
        "csms": {CSMS_NAMES[v]: {"url": csms.url, "ocpp": v.value} for v in Version},
        "chargers": {cid: {"route": {"primary": CSMS_NAMES[target]}} for cid, target in routes.items()},
        "call_timeout": 15,
    }
    vendor_demo = None
    if args.vendors:
        # Cloud-locked chargers: Easee onto the 2.0.1 CSMS, Zaptec onto the 1.6J one (through 2.0.1 -> 1.6).
        vendor_demo = VendorDemo(easee_route=CSMS_NAMES[Version.V201], zaptec_route=CSMS_NAMES[Version.V16])
        settings["vendors"] = await vendor_demo.start()
    config = parse_config(settings, "<demo>")
    gw = Gateway(config)
    try:
        await gw.start()
    except OSError as exc:
        await csms.stop()
        if vendor_demo is not None:
            await vendor_demo.stop()
        print(f"ocpp-gateway demo: cannot listen ({exc.strerror}); try --port 0 --admin-port 0", file=sys.stderr)
        return 1
    fleet.url = f"ws://127.0.0.1:{gw.listen_port}/ocpp"
    admin = f"http://127.0.0.1:{gw.admin_port}"
    translated = sum(1 for cid, t in routes.items() if t is not fleet.versions[cid])
    first = sorted(routes)[0]
    vendor_line = (
        "  + cloud-locked Easee and Zaptec chargers from simulated vendor clouds (ids easee-*, zaptec-*)\n"
        if vendor_demo is not None else ""
    )
    print(
        f"OCPP migration gateway demo\n"
        f"  chargers connect to ws://127.0.0.1:{gw.listen_port}/ocpp/<id>; demo CSMS at {csms.url}\n"
        f"  {len(routes)} simulated chargers (1.6J / 2.0.1 / 2.1), {translated} routed to a CSMS of another version\n"
        f"{vendor_line}"
        f"  metrics:      {admin}/metrics\n"
        f"  chargers:     {admin}/api/chargers\n"
        f"  message log:  {admin}/api/chargers/{first}/messages?limit=20\n"
        f"                ocpp-gateway logs {first} --store {args.store}\n"
        f"  Ctrl-C stops the demo.\n",
        file=out, flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    started = time.monotonic()
    await fleet.start()
    try:
        deadline = started + args.duration if args.duration > 0 else None
        while not stop.is_set():
            timeout = 2.0 if deadline is None else max(0.0, min(2.0, deadline - time.monotonic()))
            try:
                await asyncio.wait_for(stop.wait(), timeout)
            except TimeoutError:
                pass
            print(summary_line(gw, fleet, started), file=out, flush=True)
            if deadline is not None and time.monotonic() >= deadline:
                break
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await fleet.stop()
        await gw.stop()
        await csms.stop()
        if vendor_demo is not None:
            await vendor_demo.stop()
    s = fleet.stats
    violations = len(csms.violations)
    if vendor_demo is not None:
        print(f"\nCloud-locked chargers: simulated EVs drew {vendor_demo.sessions_wh / 1000:.1f} kWh through the "
              "Easee and Zaptec adapters.", file=out)
    print(
        f"\nDone: {s.boots} boots, {s.sessions} charging sessions ({s.energy_wh / 1000:.1f} kWh), "
        f"{s.counters.frames_sent} frames sent by chargers, {s.errors} charger-side errors, "
        f"{violations} schema violations seen by the demo CSMS. Message log flushed to {args.store}.",
        file=out, flush=True,
    )
    return 0


def run_demo(args: argparse.Namespace) -> int:
    return asyncio.run(demo(args))


__all__ = ["plan_routes", "run_demo"]
