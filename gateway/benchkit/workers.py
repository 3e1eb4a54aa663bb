"""More than one core: the gateway with 1 and 2 worker processes (``workers: N``), and 20,000 idle chargers.

    python -m gateway.benchkit.workers                  # every stage
    python -m gateway.benchkit.workers --quick          # a smoke run
    python -m gateway.benchkit.workers --stages idle --idle 20000 --idle-workers 3

Every piece is a separate process, as in ``ocpp-gateway bench``: CSMS simulators
(``gateway.benchkit.csms``'s server, several processes sharing one port with
SO_REUSEPORT), load generators (``gateway.benchkit.loadgen``) and the gateway as
operators run it (``python -m gateway.cli run`` with ``workers: N``; with N > 1
a supervisor and N workers), its store a PostgreSQL server the benchmark starts
for itself (``OwnPostgres``: Debian's binaries, a temporary data directory,
``max_locks_per_transaction`` sized for one advisory lock per charger; the
default lock table holds about 6,000) or, with ``--shared-postgres``, a fresh
schema at ``--url``. Several workers need PostgreSQL; 1 worker uses the same
store so the comparison is fair, and a 1-worker SQLite run is the reference.

Stages:

1. ``saturation``: 1 worker on SQLite, then 1 and 2 workers on PostgreSQL,
   ``--sat-conns`` chargers each sending their next CALL as soon as the previous
   one is answered: answered CALLs/s, p99, CPU µs per CALL of the gateway's
   processes and of PostgreSQL's, each process's share of the window.
2. ``held``: for 1 and 2 workers, hold ``--held`` idle chargers (booted) or as many
   as the workers' open-files budget allows: held, seconds, fds and RSS per worker.
3. ``idle``: ``--idle`` idle chargers with ``--idle-workers`` workers, the load
   split over ``--loadgens`` load generators and ``--csms-procs`` CSMS processes
   (each process keeps under its open-files limit).

``run_workers_bench(options)`` returns the figures as a dict (``ocpp-gateway bench``
can call it); ``main`` prints one JSON line per stage and a summary.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gateway.bench import (
    LOOPBACK,
    BenchError,
    GatewayProc,
    LoadGenProc,
    _read_json_line,
    _spawn,
    _stop,
    free_port,
    gateway_config,
    http_get,
)
from gateway.benchkit.procs import fd_count, nofile_hard_limit, rss_bytes

FD_RESERVE = 64  # per process: listening sockets, epoll, the store's connections, stdio, ...
FDS_PER_CHARGER = 2  # the charger's socket and its upstream socket to the CSMS
STAGES = ("saturation", "held", "idle")


@dataclass
class WorkersOptions:
    url: str = "postgresql://postgres@127.0.0.1:5432/test"
    stages: tuple[str, ...] = STAGES
    sat_conns: int = 100
    sat_warmup: float = 2.0
    sat_window: float = 10.0
    held: int = 15_000
    idle: int = 20_000
    idle_workers: int = 3
    loadgens: int = 2
    csms_procs: int = 2
    hold_timeout: float = 300.0
    settle: float = 3.0
    overrides: dict[str, Any] = field(default_factory=dict)
    own_postgres: bool = True


def charger_capacity(workers: int, fd_limit: int) -> int:
    """Chargers ``workers`` processes can hold within ``fd_limit`` open files each, with the kernel spreading
    connections evenly (in practice a little unevenly: keep a margin)."""
    return workers * ((fd_limit - FD_RESERVE) // FDS_PER_CHARGER)


def workers_needed(chargers: int, fd_limit: int, margin: float = 0.1) -> int:
    """Workers for ``chargers`` so that each stays under ``fd_limit`` with ``margin`` for an uneven spread."""
    per_worker = int((fd_limit - FD_RESERVE) // FDS_PER_CHARGER * (1 - margin))
    return max(1, -(-chargers // per_worker))


# ------------------------------------------------------------------ a PostgreSQL of the benchmark's own


def locks_needed(chargers: int, connections: int = 100) -> int:
    """``max_locks_per_transaction`` for ``chargers`` advisory locks (one per charger held, gateway/cluster.py):
    PostgreSQL's lock table has max_locks_per_transaction x (max_connections + max_prepared_transactions)
    slots for every lock of the server, 6,400 with the defaults (64 x 100)."""
    return max(64, 1 << (int(chargers * 1.25 / connections) - 1).bit_length())


class OwnPostgres:
    """A throw-away PostgreSQL server (Debian's binaries, a temporary data directory, trust auth, loopback),
    with a lock table sized for ``chargers``: the shared server's default holds about 6,000 advisory locks."""

    def __init__(self, work: Path, chargers: int) -> None:
        self.data = work / "postgres"
        self.port = free_port()
        self.locks = locks_needed(chargers)
        self.bin = self._bin_dir()

    @staticmethod
    def _bin_dir() -> Path:
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
        if not found:
            raise BenchError("--own-postgres needs PostgreSQL's server binaries (apt-get install postgresql)")
        return found[-1].parent

    @property
    def url(self) -> str:
        return f"postgresql://postgres@{LOOPBACK}:{self.port}/postgres"

    def _as_owner(self) -> list[str]:
        """PostgreSQL refuses to run as root: as root, run its tools as the postgres user."""
        return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    async def _run(self, *args: str) -> None:
        proc = await asyncio.create_subprocess_exec(*self._as_owner(), *args, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.STDOUT)
        out, _ = await proc.communicate()
        if proc.returncode != 0:
            raise BenchError(f"{Path(args[0]).name} failed: {out.decode(errors='replace')[-800:]}")

    async def start(self) -> None:
        self.data.mkdir(mode=0o700)
        if os.geteuid() == 0:
            import shutil

            shutil.chown(self.data, "postgres", "postgres")
            self.data.parent.chmod(0o755)
        await self._run(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
                        "--no-sync")
        options = (f"-p {self.port} -c listen_addresses={LOOPBACK} -c unix_socket_directories={self.data} "
                   f"-c max_locks_per_transaction={self.locks} -c fsync=off -c synchronous_commit=off")
        await self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options, "-w", "-l",
                        str(self.data / "server.log"), "start")

    async def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(BenchError):
                await self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")


# ------------------------------------------------------------------ CSMS simulators sharing one port


async def serve_csms(port: int) -> None:
    """``gateway.benchkit.csms``'s server on a port other processes share (SO_REUSEPORT), until SIGTERM."""
    from gateway.benchkit.csms import CsmsServer

    loop = asyncio.get_running_loop()
    server = CsmsServer()
    listener = await loop.create_server(server.protocol, LOOPBACK, port, backlog=4096, reuse_address=True,
                                        reuse_port=True)
    sys.stdout.write(json.dumps({"port": listener.sockets[0].getsockname()[1]}) + "\n")
    sys.stdout.flush()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    listener.close()
    server.close_all()
    await asyncio.sleep(0.05)


class CsmsGroup:
    """``count`` CSMS simulator processes on one port: the kernel spreads the gateway's upstream links."""

    def __init__(self, count: int, work: Path) -> None:
        self.count = count
        self.port = free_port()
        self.work = work
        self.procs: list[asyncio.subprocess.Process] = []

    @property
    def pids(self) -> dict[str, int]:
        return {f"csms{i}": p.pid for i, p in enumerate(self.procs)}

    async def start(self) -> None:
        for i in range(self.count):
            proc = await _spawn([sys.executable, "-m", "gateway.benchkit.workers", "csms", str(self.port)],
                                self.work / f"csms{i}.log")
            self.procs.append(proc)
            await _read_json_line(proc, 30, f"CSMS simulator {i} start")

    async def stop(self) -> None:
        await asyncio.gather(*(_stop(p, 10) for p in self.procs))


# ------------------------------------------------------------------ the gateway with N workers


class Host:
    """``ocpp-gateway run`` with ``workers: N``: the supervisor (N > 1) or the one process."""

    def __init__(self, gateway: GatewayProc, workers: int, store: str) -> None:
        self.gateway = gateway
        self.workers = workers
        self.store = store  # "postgresql" or "sqlite"

    async def pids(self) -> dict[str, int]:
        """``supervisor`` and ``w0``, ``w1`` ... (one process: ``w0``)."""
        if self.workers == 1:
            return {"w0": self.gateway.pid}
        status, body = await http_get(self.gateway.admin_port, "/healthz", 10.0)
        if status != 200:
            raise BenchError(f"/healthz answered {status}: {body[:300]!r}")
        health = json.loads(body)
        return {"supervisor": self.gateway.pid, **{f"w{w['worker']}": int(w["pid"]) for w in health["workers"]}}

    async def per_worker(self) -> dict[str, dict[str, int]]:
        return {name: {"fds": fd_count(pid), "rss": rss_bytes(pid)} for name, pid in (await self.pids()).items()}


class WorkersBench:
    def __init__(self, opts: WorkersOptions, work: Path) -> None:
        self.opts = opts
        self.work = work
        self.schema = f"bench_workers_{uuid.uuid4().hex[:10]}"
        self.results: dict[str, Any] = {"fd_limit": nofile_hard_limit(), "fds_per_charger": FDS_PER_CHARGER}

    def say(self, text: str) -> None:
        print(f"[workers {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)

    def host(self, workers: int, csms: CsmsGroup, sqlite: bool = False) -> Host:
        listen, admin = free_port(), free_port()
        config = gateway_config(self.work, listen, admin, csms.port, "1.6", self.opts.overrides)
        if not sqlite:  # gateway_config's store is a temporary SQLite file
            config["store"] = f"{self.opts.url}?schema={self.schema}"
        config["workers"] = workers
        path = self.work / f"gateway-{workers}{'-sqlite' if sqlite else ''}.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return Host(GatewayProc(path, listen, admin, self.work / f"{path.stem}.log"), workers,
                    "sqlite" if sqlite else "postgresql")

    async def run(self) -> dict[str, Any]:
        o = self.opts
        own: OwnPostgres | None = None
        if o.own_postgres:
            own = OwnPostgres(self.work, max(o.idle, o.held))
            self.say(f"starting a PostgreSQL of its own (max_locks_per_transaction={own.locks})")
            await own.start()
            o.url = own.url
            self.results["postgres"] = {"own": True, "max_locks_per_transaction": own.locks}
        try:
            return await self.stages()
        finally:
            if own is not None:
                await own.stop()

    async def stages(self) -> dict[str, Any]:
        o = self.opts
        procs = max(o.csms_procs if "idle" in o.stages else 1, 1)
        csms = CsmsGroup(procs, self.work)
        loadgens = [LoadGenProc(self.work / f"loadgen{i}.log")
                    for i in range(max(o.loadgens if {"idle", "held"} & set(o.stages) else 1, 1))]
        try:
            await csms.start()
            for lg in loadgens:
                await lg.start()
            if "saturation" in o.stages:
                sat = self.results["saturation"] = {
                    "1_sqlite": await self.with_host(1, csms, self.saturation, loadgens, sqlite=True),
                    **{str(n): await self.with_host(n, csms, self.saturation, loadgens) for n in (1, 2)}}
                sat["ratio_2_to_1"] = round(sat["2"]["calls_per_s"] / sat["1"]["calls_per_s"], 2) \
                    if sat["1"]["calls_per_s"] else None
                self.emit("saturation")
            if "held" in o.stages:
                self.results["held"] = {n: await self.with_host(n, csms, self.hold, loadgens, min(
                    o.held, int(charger_capacity(n, self.results["fd_limit"]) * 0.95))) for n in (1, 2)}
                self.emit("held")
            if "idle" in o.stages:
                self.results["idle"] = await self.with_host(o.idle_workers, csms, self.hold, loadgens, o.idle)
                self.emit("idle")
        finally:
            for lg in loadgens:
                await lg.stop()
            await csms.stop()
            await self.drop_schema()
        return self.results

    def emit(self, stage: str) -> None:
        print(json.dumps({stage: self.results[stage]}), flush=True)

    async def with_host(self, workers: int, csms: CsmsGroup, stage: Any, *args: Any,
                        sqlite: bool = False) -> dict[str, Any]:
        host = self.host(workers, csms, sqlite)
        self.say(f"starting the gateway with {workers} worker{'s' if workers > 1 else ''}"
                 + (" (SQLite store)" if sqlite else ""))
        await host.gateway.start(timeout=120)
        try:
            result: dict[str, Any] = await stage(host, csms, *args)
        finally:
            t0 = time.monotonic()
            await host.gateway.stop()
            self.say(f"stopped in {time.monotonic() - t0:.1f} s")
        result["stop_seconds"] = round(time.monotonic() - t0, 1)
        return result

    async def saturation(self, host: Host, csms: CsmsGroup, loadgens: list[LoadGenProc]) -> dict[str, Any]:
        o = self.opts
        url = f"ws://{LOOPBACK}:{host.gateway.listen_port}/ocpp"
        self.say(f"saturation: {host.workers} worker(s), {o.sat_conns} chargers, {o.sat_window:g} s")
        # A first short run compiles the validators and fills the caches of every worker before measuring.
        await loadgens[0].call("saturate", 120, url=url, conns=o.sat_conns, warmup=0.5, window=1.0)
        # The store's own processes (the message log is written by PostgreSQL backends): their CPU counts too.
        pids = {**await host.pids(), **csms.pids, **{f"pg{pid}": pid for pid in postgres_pids()}}
        paused0 = await by_worker(host, "ocpp_gateway_store_backpressure_episodes_total", ())
        sat = await loadgens[0].call("saturate", o.sat_window + 120, url=url, conns=o.sat_conns,
                                     warmup=o.sat_warmup, window=o.sat_window, pids=pids)
        paused1 = await by_worker(host, "ocpp_gateway_store_backpressure_episodes_total", ())
        cpu = {k: v for k, v in sat["cpu_seconds"].items() if not k.startswith("pg")}
        cpu["postgres"] = sum(v for k, v in sat["cpu_seconds"].items() if k.startswith("pg"))
        calls = max(int(sat["calls"]), 1)
        gateway_cpu = sum(v for k, v in cpu.items() if k.startswith("w") or k == "supervisor")
        return {"workers": host.workers, "store": host.store,
                "calls_per_s": round(sat["calls_per_s"]), "p50_ms": sat["p50_ms"],
                "p99_ms": sat["p99_ms"], "errors": sat["errors"],
                "gateway_cpu_us_per_call": round(gateway_cpu / calls * 1e6),
                "postgres_cpu_us_per_call": round(cpu["postgres"] / calls * 1e6),
                "cpu_seconds": {k: round(v, 2) for k, v in cpu.items()},
                "cpu_busy_of_window": {k: round(v / sat["seconds"], 2) for k, v in cpu.items()},
                "log_backpressure_episodes": sum(paused1.values()) - sum(paused0.values()),
                "machine_load_1min": os.getloadavg()[0],
                "charger_calls_by_worker": await self.calls_per_worker(host)}

    async def calls_per_worker(self, host: Host) -> dict[str, int]:
        """Charger CALLs each worker relayed so far."""
        return await by_worker(host, "ocpp_gateway_frames_total{",
                               ('peer="charger"', 'direction="in"', 'message_type="CALL"'))

    async def hold(self, host: Host, csms: CsmsGroup, loadgens: list[LoadGenProc], n: int) -> dict[str, Any]:
        """Hold ``n`` booted idle chargers, split over the load generators; fds and RSS of every process."""
        o = self.opts
        url = f"ws://{LOOPBACK}:{host.gateway.listen_port}/ocpp"
        pids = await host.pids()
        base = {name: rss_bytes(pid) for name, pid in pids.items()}
        shares = [n // len(loadgens) + (1 if i < n % len(loadgens) else 0) for i in range(len(loadgens))]
        self.say(f"holding {n} idle chargers on {host.workers} worker(s), load generators {shares}, "
                 f"{csms.count} CSMS process(es)")
        t0 = time.monotonic()
        answers = await asyncio.gather(*(lg.call("hold", o.hold_timeout + 60, url=url, n=share,
                                                 timeout=o.hold_timeout)
                                         for lg, share in zip(loadgens, shares, strict=True) if share))
        seconds = time.monotonic() - t0
        await asyncio.sleep(o.settle)
        held = sum(int(a["held"]) for a in answers)
        per_process = await host.per_worker()
        connected = await self.connected_by_worker(host)
        csms_fds = {name: fd_count(pid) for name, pid in csms.pids.items()}
        worker_rss = sum(v["rss"] - base[k] for k, v in per_process.items() if k.startswith("w"))
        for lg in loadgens:
            await lg.call("release", 120)
        t_release = time.monotonic()
        while sum((await self.connected_by_worker(host)).values()) and time.monotonic() - t_release < 300:
            await asyncio.sleep(0.5)
        let_go = time.monotonic() - t_release
        failures: dict[str, int] = {}
        for a in answers:
            for reason, count in a.get("failures", {}).items():
                failures[reason] = failures.get(reason, 0) + int(count)
        return {"workers": host.workers, "requested": n, "held": held, "failed": sum(int(a["failed"]) for a in answers),
                "failures": failures, "seconds": round(seconds, 1), "connected_by_worker": connected,
                "all_disconnected_seconds": round(let_go, 1),
                "fds": {k: v["fds"] for k, v in per_process.items()},
                "rss_mib": {k: round(v["rss"] / 2**20, 1) for k, v in per_process.items()},
                "rss_per_charger_kib": round(worker_rss / held / 1024, 1) if held else None,
                "csms_fds": csms_fds, "max_fds_of_a_process": max([*(v["fds"] for v in per_process.values()),
                                                                   *csms_fds.values()])}

    async def connected_by_worker(self, host: Host) -> dict[str, int]:
        return await by_worker(host, "ocpp_gateway_chargers_connected{", ())

    async def drop_schema(self) -> None:
        import psycopg

        with contextlib.suppress(psycopg.Error):
            conn = await psycopg.AsyncConnection.connect(self.opts.url, autocommit=True)
            async with conn:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')


def postgres_pids() -> list[int]:
    """Every PostgreSQL process on this machine (backends, WAL writer, checkpointer ...)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() in ("postgres", "postmaster"):
                    pids.append(int(entry.name))
    return pids


async def by_worker(host: Host, prefix: str, labels: tuple[str, ...]) -> dict[str, int]:
    """A metric summed per worker from the host's merged /metrics (one process: worker "0")."""
    _, body = await http_get(host.gateway.admin_port, "/metrics", 10.0)
    out: dict[str, int] = {}
    for line in body.decode("utf-8", "replace").splitlines():
        if line.startswith(prefix) and all(label in line for label in labels):
            worker = line.split('worker="', 1)[1].split('"', 1)[0] if 'worker="' in line else "0"
            out[worker] = out.get(worker, 0) + int(float(line.rpartition(" ")[2]))
    return out


async def run_workers_bench(opts: WorkersOptions | None = None) -> dict[str, Any]:
    """Every stage asked for in ``opts``; the figures as a dict (what ``main`` prints as its summary)."""
    opts = opts or WorkersOptions()
    with tempfile.TemporaryDirectory(prefix="workers-bench-") as tmp:
        return await WorkersBench(opts, Path(tmp)).run()


async def _until_terminated(opts: WorkersOptions) -> dict[str, Any]:
    """The benchmark, cancelled by SIGTERM (``ocpp-gateway bench`` stops it at its timeout) so that its cleanup
    runs: without this, the PostgreSQL it started and its load generators outlived it."""
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    return await run_workers_bench(opts)


def render(results: dict[str, Any]) -> str:
    """The figures as the Markdown table docs/benchmark.md shows."""
    lines = ["| stage | workers | figure |", "|---|---|---|"]
    for sat in (results.get("saturation") or {}).values():
        if isinstance(sat, dict):
            lines.append(f"| saturation ({sat['store']}) | {sat['workers']} | {sat['calls_per_s']:,} CALLs/s, "
                         f"p99 {sat['p99_ms']:.1f} ms, gateway CPU {sat['gateway_cpu_us_per_call']} µs/CALL, "
                         f"PostgreSQL CPU {sat['postgres_cpu_us_per_call']} µs/CALL, by worker "
                         f"{sat['charger_calls_by_worker']} |")
    for key in ("held", "idle"):
        stage = results.get(key) or {}
        for held in (stage.values() if key == "held" else [stage] if stage else []):
            lines.append(f"| {key} | {held['workers']} | {held['held']:,} of {held['requested']:,} held in "
                         f"{held['seconds']} s, by worker {held['connected_by_worker']}, fds {held['fds']}, "
                         f"{held['rss_per_charger_kib']} KiB/charger |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["csms"]:  # a CSMS simulator process of the group (CsmsGroup starts these)
        from gateway.benchkit.procs import raise_nofile

        raise_nofile()
        asyncio.run(serve_csms(int(argv[1])))
        return 0
    ap = argparse.ArgumentParser(prog="python -m gateway.benchkit.workers", description=__doc__.split("\n")[0])
    d = WorkersOptions()
    ap.add_argument("--url", default=d.url, help="PostgreSQL for the store (a fresh schema, dropped after); "
                    "only with --shared-postgres")
    ap.add_argument("--shared-postgres", action="store_true",
                    help="use --url instead of starting a PostgreSQL of its own (whose lock table is sized for "
                    "the chargers: one advisory lock each)")
    ap.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated, of {', '.join(STAGES)}")
    ap.add_argument("--sat-conns", type=int, default=d.sat_conns)
    ap.add_argument("--sat-window", type=float, default=d.sat_window)
    ap.add_argument("--held", type=int, default=d.held, help="idle chargers of the held stage (capped by fds)")
    ap.add_argument("--idle", type=int, default=d.idle, help="idle chargers of the idle stage")
    ap.add_argument("--idle-workers", type=int, default=0,
                    help="workers of the idle stage (default: as many as the fd limit needs)")
    ap.add_argument("--loadgens", type=int, default=d.loadgens)
    ap.add_argument("--csms-procs", type=int, default=d.csms_procs)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a gateway config key, dotted (admission.rate=1000); repeatable")
    ap.add_argument("--quick", action="store_true", help="a smoke run: small counts, short windows")
    ap.add_argument("--json", metavar="PATH", help="also write the figures and the table as JSON (ocpp-gateway bench "
                    "reads them)")
    args = ap.parse_args(argv)
    limit = nofile_hard_limit()
    opts = WorkersOptions(
        url=args.url, stages=tuple(s for s in args.stages.split(",") if s), sat_conns=args.sat_conns,
        sat_window=args.sat_window, held=args.held, idle=args.idle,
        idle_workers=args.idle_workers or workers_needed(args.idle, limit), loadgens=args.loadgens,
        csms_procs=args.csms_procs, own_postgres=not args.shared_postgres,
        overrides={k: yaml.safe_load(v) for k, _, v in (item.partition("=") for item in args.set)})
    if args.quick:
        opts.sat_conns, opts.sat_warmup, opts.sat_window, opts.held, opts.idle = 20, 0.5, 2.0, 300, 600
        opts.settle = 1.0
    try:
        results = asyncio.run(_until_terminated(opts))
    except asyncio.CancelledError:
        print("workers benchmark: terminated; its PostgreSQL and processes are stopped", file=sys.stderr)
        return 1
    print(json.dumps({"summary": results}, indent=2))
    print(render(results))
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": results, "table": render(results)}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
