"""How long a migration plan of N chargers takes on this machine.

    python -m gateway.benchkit.migration_plan --chargers 1000 --wave-size 250 --observe 5

One process: a gateway (SQLite store in a temporary directory), two demo
CSMSs and a fleet of simulated 1.6 chargers that boot and then idle, and
reconnect (as real chargers do) when a route change closes them. The plan
moves every charger from ``old`` to ``new`` with no pause between waves;
the time reported is from submitting the plan to its completion, so it is
the waves' ``observe`` windows plus what the plan itself costs (route
changes, reconnects, gate reads of the message log, saving progress).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from typing import Any

from gateway import logs
from gateway.app import Gateway
from gateway.config import parse_config
from gateway.ocppj import Version
from gateway.sim.csms import DemoCsms
from gateway.sim.fleet import Fleet


async def measure(chargers: int, wave_size: int, observe: float) -> dict[str, Any]:
    old = await DemoCsms(versions=(Version.V16,), keep_frames=20).start()
    new = await DemoCsms(versions=(Version.V16,), keep_frames=20).start()
    with tempfile.TemporaryDirectory() as tmp:
        config = parse_config({
            "listen": {"host": "127.0.0.1", "port": 0}, "admin": {"host": "127.0.0.1", "port": 0},
            "store": f"sqlite:///{tmp}/gateway.db", "allow_unknown_chargers": True,
            "csms": {"old": {"url": old.url, "ocpp": "1.6"}, "new": {"url": new.url, "ocpp": "1.6"}},
            "default_route": {"primary": "old"},
            "upstream": {"reconnect_initial": 0.1, "reconnect_max": 1.0},
        })
        gw = Gateway(config)
        await gw.start()
        ids = [f"BENCH{i:05d}" for i in range(chargers)]
        fleet = Fleet(f"ws://127.0.0.1:{gw.listen_port}/ocpp", versions=(Version.V16,), ids=ids,
                      heartbeat_interval=3600, session_pause=(3600.0, 3600.0), backoff=(0.1, 1.0), keep_frames=5)
        await fleet.start()
        try:
            await fleet.wait_for(lambda: fleet.stats.boots >= chargers, timeout=300)
            plan = {"name": "bench", "selection": {"id_pattern": "BENCH*"}, "route": {"primary": "new"},
                    "waves": {"size": wave_size, "pause": 0}, "gates": {"observe": observe}}
            started = time.monotonic()
            await gw.migration_plans.submit(plan, "bench")
            await gw.migration_plans.wait("bench")
            elapsed = time.monotonic() - started
            progress = gw.migration_plans.progress["bench"]
            waves = [{"wave": w.index, "chargers": len(w.chargers), "state": w.state,
                      "moving_s": round((w.moved_at or 0) - (w.started_at or 0), 2),
                      "observing_s": round((w.finished_at or 0) - (w.moved_at or 0), 2)} for w in progress.waves]
            await fleet.wait_for(lambda: len(new.connected) >= chargers, timeout=120)
            reconnected = time.monotonic() - started
        finally:
            await fleet.stop()
            await gw.stop()
            await old.stop()
            await new.stop()
    overhead = elapsed - observe * len(waves)
    return {"chargers": chargers, "waves": len(waves), "wave_size": wave_size, "observe_s": observe,
            "status": progress.status, "moved": progress.counts()["moved"], "plan_s": round(elapsed, 2),
            "plan_overhead_s": round(overhead, 2), "all_on_new_csms_s": round(reconnected, 2), "per_wave": waves}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway.benchkit.migration_plan", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chargers", type=int, default=1000)
    parser.add_argument("--wave-size", type=int, default=250)
    parser.add_argument("--observe", type=float, default=5.0, help="each wave's observation window (seconds)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    logs.configure("console", "error")
    result = asyncio.run(measure(args.chargers, args.wave_size, args.observe))
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{result['chargers']} chargers in {result['waves']} waves of {result['wave_size']}, observe "
          f"{result['observe_s']:g} s per wave: plan {result['status']} in {result['plan_s']} s "
          f"({result['plan_overhead_s']} s beyond the observe windows); every charger on the new CSMS after "
          f"{result['all_on_new_csms_s']} s")
    for w in result["per_wave"]:
        print(f"  wave {w['wave']}: {w['chargers']} chargers, moved in {w['moving_s']} s, "
              f"observed {w['observing_s']} s, {w['state']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
