"""One gateway instance against two behind HAProxy on one PostgreSQL, and the takeover after a SIGKILL.

    python -m gateway.benchkit.cluster --chargers 1000 --takeover 2000

Every piece is a separate process, as in ``ocpp-gateway bench``: the CSMS
simulator (``gateway.benchkit.csms``), the load generator
(``gateway.benchkit.loadgen``), Debian's ``haproxy`` with
examples/haproxy.cfg (only its addresses changed) and ``ocpp-gateway run``
instances whose store is one fresh schema of the PostgreSQL at ``--url``.

1. direct: load generator -> CSMS, the reference for "added" latency;
2. one instance behind HAProxy, then 3. two instances behind HAProxy, each
   at the same offered load (``--chargers`` chargers, one Heartbeat +
   MeterValues every ``--period`` s plus a transaction mix) and at saturation;
4. takeover: ``--takeover`` chargers connected through HAProxy to two
   instances, SIGKILL of the instance holding more of them, time until every
   charger it held has reconnected and had its BootNotification answered.

Prints one JSON object per step and a summary; ``--quick`` is a smoke run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import shutil
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

from gateway.bench import LOOPBACK, Csms, GatewayProc, LoadGenProc, free_port, gateway_config, http_get

ROOT = Path(__file__).resolve().parents[2]


def haproxy_config(frontend: int, servers: list[tuple[int, int]], access_log: bool = True) -> str:
    """examples/haproxy.cfg with only its addresses changed (and its access log, if asked): what operators run."""
    text = (ROOT / "examples" / "haproxy.cfg").read_text()
    text = re.sub(r"(?m)^(\s*bind) :\d+", rf"\1 {LOOPBACK}:{frontend}", text)
    if not access_log:  # a line per charger connection: a benchmark would measure the log
        text = re.sub(r"(?m)^\s*log stdout.*$", "", text)
    lines = [ln for ln in text.splitlines() if not re.match(r"\s*server gw\d", ln)]
    lines += [f"    server gw{i + 1} {LOOPBACK}:{port} check port {admin}" for i, (port, admin) in enumerate(servers)]
    return "\n".join(lines) + "\n"


class HAProxy:
    def __init__(self, work: Path, servers: list[GatewayProc]) -> None:
        self.port = free_port()
        self.cfg = work / f"haproxy-{len(servers)}.cfg"
        self.cfg.write_text(haproxy_config(self.port, [(g.listen_port, g.admin_port) for g in servers], False))
        self.log = work / f"haproxy-{len(servers)}.log"
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with self.log.open("wb") as out:
            self.proc = await asyncio.create_subprocess_exec("haproxy", "-db", "-f", str(self.cfg), stdout=out,
                                                             stderr=asyncio.subprocess.STDOUT)
        await asyncio.sleep(2.5)  # health checks: inter 1s, rise 2

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            await self.proc.wait()


async def connected(gw: GatewayProc) -> int:
    """Chargers connected to one instance, from its /metrics."""
    status, body = await http_get(gw.admin_port, "/metrics", 10.0)
    if status != 200:
        return 0
    total = 0.0
    for line in body.decode().splitlines():
        if line.startswith("ocpp_gateway_chargers_connected{"):
            total += float(line.rpartition(" ")[2])
    return int(total)


class ClusterBench:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.schema = f"bench_cluster_{uuid.uuid4().hex[:10]}"
        self.results: dict[str, Any] = {}

    def say(self, text: str) -> None:
        print(f"[cluster {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)

    def gateway(self, n: int, csms: Csms) -> GatewayProc:
        listen, admin = free_port(), free_port()
        config = gateway_config(self.work, listen, admin, csms.port, "1.6", self.args.overrides)
        config["store"] = f"{self.args.url}?schema={self.schema}"
        config["instance_id"] = f"gw{n}"
        config["workers"] = 1  # one process per instance behind HAProxy: the figures are per instance
        path = self.work / f"gw{n}.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return GatewayProc(path, listen, admin, self.work / f"gw{n}.log")

    async def load(self, name: str, loadgen: LoadGenProc, port: int, pids: dict[str, int]) -> dict[str, Any]:
        a = self.args
        url = f"ws://{LOOPBACK}:{port}/ocpp"
        self.say(f"{name}: {a.chargers} chargers every {a.period:g} s for {a.window:g} s")
        real = await loadgen.call("realistic", 600, url=url, n=a.chargers, period=a.period, window=a.window,
                                  ramp=a.period, pids=pids)
        self.say(f"{name}: saturation, {a.sat_conns} connections, {a.sat_window:g} s")
        sat = await loadgen.call("saturate", 600, url=url, conns=a.sat_conns, warmup=1.0, window=a.sat_window,
                                 pids=pids)
        out = {"offered_calls_per_s": real["calls_per_s"], "p50_ms": real["p50_ms"], "p99_ms": real["p99_ms"],
               "errors": real["errors"], "saturation_calls_per_s": sat["calls_per_s"],
               "saturation_p99_ms": sat["p99_ms"], "cpu_seconds": sat["cpu_seconds"]}
        print(json.dumps({name: out}), flush=True)
        return out

    async def run(self) -> dict[str, Any]:
        csms = Csms(free_port(), self.work / "csms.log")
        loadgen = LoadGenProc(self.work / "loadgen.log")
        gws = [self.gateway(1, csms), self.gateway(2, csms)]
        proxies: list[HAProxy] = []
        try:
            await csms.start()
            await loadgen.start()
            await gws[0].start()
            if not self.args.takeover_only:
                self.results["direct"] = await self.load("direct", loadgen, csms.port, {"csms": csms.pid})
                one = HAProxy(self.work, gws[:1])
                proxies.append(one)
                await one.start()
                self.results["one_instance"] = await self.load(
                    "one_instance", loadgen, one.port, {"csms": csms.pid, "gw1": gws[0].pid})
                await one.stop()

            await gws[1].start()
            two = HAProxy(self.work, gws)
            proxies.append(two)
            await two.start()
            if not self.args.takeover_only:
                self.results["two_instances"] = await self.load(
                    "two_instances", loadgen, two.port, {"csms": csms.pid, "gw1": gws[0].pid, "gw2": gws[1].pid})
            self.results["takeover"] = await self.takeover(loadgen, two, gws)
        finally:
            await loadgen.stop()
            for proxy in proxies:
                await proxy.stop()
            for gw in gws:
                await gw.stop()
            await csms.stop()
            await self.drop_schema()
        return self.results

    async def takeover(self, loadgen: LoadGenProc, proxy: HAProxy, gws: list[GatewayProc]) -> dict[str, Any]:
        n = self.args.takeover
        self.say(f"takeover: holding {n} chargers through HAProxy")
        held = await loadgen.call("hold", 600, url=f"ws://{LOOPBACK}:{proxy.port}/ocpp", n=n, timeout=300)
        if held["held"] < n:
            raise SystemExit(f"takeover: only {held['held']} of {n} chargers connected")
        await asyncio.sleep(1.5)  # the gauges are read by /metrics as they are
        counts = [await connected(gw) for gw in gws]
        victim = gws[counts.index(max(counts))]
        lost = max(counts)
        await loadgen.call("arm", 10, timeout=300)
        assert victim.proc is not None
        self.say(f"takeover: SIGKILL of the instance holding {lost} of {n} (per instance: {counts})")
        t_kill = time.monotonic()
        victim.proc.send_signal(signal.SIGKILL)
        await victim.proc.wait()
        st = await loadgen.call("storm_wait", 330, n=lost, timeout=300)
        await loadgen.call("release", 120)
        rebooted = int(st.get("rebooted", 0))
        out = {"chargers": n, "per_instance": counts, "on_killed_instance": lost, "served_again": rebooted,
               "lost_connections": st.get("lost", 0), "attempts": st.get("attempts", 0),
               "busy_refusals": st.get("busy_refusals", 0), "gave_up": st.get("gave_up", 0),
               "first_drop_s": round(st["t_first_lost"] - t_kill, 3) if "t_first_lost" in st else None,
               "all_served_again_s": round(st["t_last_boot"] - t_kill, 3)
               if rebooted >= lost and "t_last_boot" in st else None,
               "failures": st.get("failures", {})}
        print(json.dumps({"takeover": out}), flush=True)
        return out

    async def drop_schema(self) -> None:
        import psycopg

        with contextlib.suppress(psycopg.Error):
            conn = await psycopg.AsyncConnection.connect(self.args.url, autocommit=True)
            async with conn:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/test")
    ap.add_argument("--chargers", type=int, default=1000, help="chargers of the offered load")
    ap.add_argument("--period", type=float, default=10.0)
    ap.add_argument("--window", type=float, default=20.0)
    ap.add_argument("--sat-conns", type=int, default=50)
    ap.add_argument("--sat-window", type=float, default=5.0)
    ap.add_argument("--takeover", type=int, default=2000, help="chargers connected when an instance is killed")
    ap.add_argument("--takeover-only", action="store_true", help="skip the load comparison")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a gateway config key for every instance, dotted (admission.rate=1000); repeatable")
    ap.add_argument("--quick", action="store_true", help="a smoke run: 100 chargers, short windows")
    args = ap.parse_args(argv)
    args.overrides = {k: yaml.safe_load(v) for k, _, v in (item.partition("=") for item in args.set)}
    if args.quick:
        args.chargers, args.period, args.window, args.sat_conns, args.sat_window, args.takeover = 100, 2, 4, 10, 2, 200
    if shutil.which("haproxy") is None:
        raise SystemExit("haproxy is not installed (apt-get install haproxy)")
    with tempfile.TemporaryDirectory(prefix="cluster-bench-") as tmp:
        results = asyncio.run(ClusterBench(args, Path(tmp)).run())
    print(json.dumps({"summary": results}, indent=2))


if __name__ == "__main__":
    main()
