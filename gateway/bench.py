"""``ocpp-gateway bench``: the gateway's cost against a direct charger -> CSMS connection, on this machine.

Starts, each in its own process, a fast CSMS simulator
(``gateway.benchkit.csms``), a load generator of simulated 1.6J chargers
(``gateway.benchkit.loadgen``) and, for the proxy scenarios, the proxy: the
gateway itself (``python -m gateway.cli run --config <tmp>``, message log in
a temporary SQLite file, metrics on) or a bare websockets relay
(``gateway.benchkit.relay``). Scenarios, side by side:

- direct: chargers -> CSMS simulator (the reference for latency and throughput);
- relay: chargers -> bare websockets relay -> CSMS simulator (1.6), the reference for CPU per CALL;
- passthrough: chargers (1.6) -> gateway -> CSMS simulator (1.6);
- translate: chargers (1.6) -> gateway -> CSMS simulator (2.0.1), when a
  1.6 -> 2.0.1 translator is registered ("not yet" otherwise);
- translate21: the same to a 2.1 CSMS (saturation and fixed-rate stages only).

Figures per scenario: saturation throughput (answered CALLs/s, closed loop),
the proxy's CPU microseconds per CALL there and at a fixed rate (open loop,
``--rate`` CALLs/s), with the ratio gateway / bare relay measured in the same
run, CALL round-trip p50/p99 at a fixed realistic load, proxy RSS per idle
charger (at each ``--idle`` count, against a freshly started, warmed-up
process), time for ``--storm`` chargers to reconnect and finish
BootNotification after a restart (of the gateway; of the CSMS for direct).

One "message" in every figure is one CALL answered: the charger's CALL and
its CALLRESULT, i.e. four frames through the gateway (two in, two out).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gateway.benchkit.durability import (
    DurabilityOptions,
    connected_chargers,
    fill_backlog,
    gateway_running,
    transaction_load,
    wait_replayed,
)
from gateway.benchkit.durability import render as render_durability
from gateway.benchkit.procs import child_setup, cpu_seconds, fd_count, nofile_hard_limit, raise_nofile, rss_bytes
from gateway.workers import terminate

LOOPBACK = "127.0.0.1"
_FD_RESERVE = 64  # listening sockets, epoll, the store's files, stdio, ... in the gateway process
STAGES = ("saturation", "fixed-rate", "realistic", "idle", "storm")


@dataclass(frozen=True)
class Scenario:
    header: str
    proxy: str | None  # the process between chargers and CSMS: None (direct), "relay" or "gateway"
    csms_ocpp: str
    stages: tuple[str, ...]


SCENARIO_SPECS = {
    "direct": Scenario("Direct", None, "1.6", ("saturation", "fixed-rate", "realistic", "storm")),
    "relay": Scenario("Bare relay", "relay", "1.6", ("saturation", "fixed-rate", "idle")),
    "passthrough": Scenario("Gateway 1.6->1.6", "gateway", "1.6", STAGES),
    "translate": Scenario("Gateway 1.6->2.0.1", "gateway", "2.0.1", STAGES),
    # Only what compares with the peer translator on the same pair: CPU per CALL.
    "translate21": Scenario("Gateway 1.6->2.1", "gateway", "2.1", ("saturation", "fixed-rate")),
}
SCENARIOS = tuple(SCENARIO_SPECS)
# Issue 18: CPU per CALL, gateway / bare relay, closed loop at 200 chargers.
RELAY_RATIO_TARGETS = {"passthrough": 1.0, "translate": 1.2, "translate21": 1.2}
STORM_TARGET_CHARGERS, STORM_TARGET_SECONDS = 5000, 10.0
RSS_TARGET_KIB = 25.0
KEPT_UP = 0.97  # answered / offered at the fixed rate below this: the proxy fell behind, the stage saturated it


# The stages of gateway/benchkit/workers.py a full run includes; its ``idle`` stage (20,000 chargers) is asked for.
WORKERS_STAGES = ("saturation", "held")
WORKERS_STAGE_NAMES = ("saturation", "held", "idle")


@dataclass
class Options:
    chargers: int = 5000
    period: float = 10.0
    window: float = 30.0
    ramp: float | None = None
    tx_prob: float = 0.1
    tx_ticks: int = 3
    sat_conns: int = 200
    sat_warmup: float = 2.0
    sat_window: float = 10.0
    rate_conns: int = 200
    rate: float = 1000.0
    rate_warmup: float = 2.0
    rate_window: float = 10.0
    idle: list[int] = field(default_factory=lambda: [1000, 10000])
    storm: int = 5000
    scenarios: list[str] = field(default_factory=lambda: list(SCENARIOS))
    stages: list[str] = field(default_factory=lambda: list(STAGES))
    settle: float = 2.0
    timeout: float = 300.0  # upper bound of any single step
    keep: str | None = None
    quiet: bool = False
    overrides: dict[str, Any] = field(default_factory=dict)  # dotted gateway-config keys -> values
    durability: DurabilityOptions | None = None  # --durability: only the store-and-forward figures
    # Stages of ``python -m gateway.benchkit.workers`` run after the scenarios (1 vs 2 worker processes).
    workers: list[str] = field(default_factory=lambda: list(WORKERS_STAGES))
    quick: bool = False  # passed on to the workers benchmark


QUICK = {"workers": [], "chargers": 500, "window": 10.0, "ramp": 5.0, "sat_warmup": 1.0, "sat_window": 4.0,
         "rate_warmup": 1.0, "rate_window": 4.0, "idle": [1000, 2000], "storm": 500, "settle": 1.0}


class BenchError(Exception):
    """A step of the benchmark failed; the message says which and why."""


# ------------------------------------------------------------------ processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    return env


async def _spawn(args: list[str], log: Path | None = None, pipe_stdout: bool = True) -> asyncio.subprocess.Process:
    stdout: Any = asyncio.subprocess.PIPE if pipe_stdout else None
    stderr: Any = None
    if log is not None:
        fh = log.open("ab")
        stderr = fh
        if not pipe_stdout:
            stdout = fh
    try:
        return await asyncio.create_subprocess_exec(
            *args, stdin=asyncio.subprocess.PIPE, stdout=stdout, stderr=stderr,
            preexec_fn=child_setup, env=_child_env(), limit=1 << 22,
        )
    finally:
        if log is not None:
            fh.close()


async def _stop(proc: asyncio.subprocess.Process, timeout: float = 60.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout``; always reaps the process."""
    await terminate(proc, timeout)


async def _read_json_line(proc: asyncio.subprocess.Process, timeout: float, what: str) -> dict[str, Any]:
    assert proc.stdout is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), timeout)
    except TimeoutError:
        raise BenchError(f"{what}: no answer within {timeout:.0f} s") from None
    if not line:
        raise BenchError(f"{what}: the process exited (status {proc.returncode})")
    result: dict[str, Any] = json.loads(line)
    return result


class _PeerProc:
    """A benchkit server process on a fixed port that prints one JSON line once it listens."""

    module = ""
    what = ""

    def __init__(self, port: int, log: Path, *args: str) -> None:
        self.port = port
        self.log = log
        self.args = list(args)
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self) -> float:
        """Start and wait until it listens; returns the monotonic time it was ready."""
        self.proc = await _spawn([sys.executable, "-m", self.module, "--host", LOOPBACK, "--port", str(self.port),
                                  *self.args], self.log)
        await _read_json_line(self.proc, 30, f"{self.what} start")
        return time.monotonic()

    async def stop(self) -> None:
        if self.proc is not None:
            await _stop(self.proc, 10)


class Csms(_PeerProc):
    """The CSMS simulator process."""

    module = "gateway.benchkit.csms"
    what = "CSMS simulator"


class RelayProc(_PeerProc):
    """The bare websockets relay (``gateway.benchkit.relay``) in front of the CSMS simulator at ``csms_port``."""

    module = "gateway.benchkit.relay"
    what = "bare relay"

    def __init__(self, port: int, log: Path, csms_port: int) -> None:
        super().__init__(port, log, "--csms", f"ws://{LOOPBACK}:{csms_port}/ocpp")


class GatewayProc:
    """The gateway as operators run it: ``python -m gateway.cli run --config <file>``."""

    def __init__(self, config: Path, listen_port: int, admin_port: int, log: Path) -> None:
        self.config = config
        self.listen_port = listen_port
        self.admin_port = admin_port
        self.log = log
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self, timeout: float = 60.0) -> float:
        """Start and wait until /healthz answers; returns the monotonic time it was ready."""
        self.proc = await _spawn([sys.executable, "-m", "gateway.cli", "run", "--config", str(self.config)],
                                 self.log, pipe_stdout=False)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.returncode is not None:
                raise BenchError(f"the gateway exited with status {self.proc.returncode} at start-up:\n"
                                 + _tail(self.log))
            with contextlib.suppress(OSError, TimeoutError):
                status, _ = await http_get(self.admin_port, "/healthz", 2.0)
                if status == 200:
                    return time.monotonic()
            await asyncio.sleep(0.05)
        raise BenchError(f"the gateway did not answer /healthz within {timeout:.0f} s:\n" + _tail(self.log))

    async def stop(self) -> None:
        if self.proc is not None:
            await _stop(self.proc, 60)

    async def metrics(self) -> dict[str, float]:
        """Totals of the gateway's own counters, summed over labels."""
        try:
            status, body = await http_get(self.admin_port, "/metrics", 10.0)
        except (OSError, TimeoutError):
            return {}
        return parse_metrics(body.decode("utf-8", "replace")) if status == 200 else {}


def _listen_port(proxy: GatewayProc | RelayProc) -> int:
    return proxy.listen_port if isinstance(proxy, GatewayProc) else proxy.port


class LoadGenProc:
    """The load generator process, one JSON command and answer per line."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.proc = await _spawn([sys.executable, "-m", "gateway.benchkit.loadgen"], self.log)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def call(self, op: str, wait: float, **args: Any) -> dict[str, Any]:
        """Run one command; ``wait`` bounds how long its answer may take."""
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, **args}).encode() + b"\n")
        await self.proc.stdin.drain()
        reply = await _read_json_line(self.proc, wait, f"load generator {op}")
        if not reply.pop("ok", False):
            raise BenchError(f"load generator {op}: {reply.get('error')}")
        return reply

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        with contextlib.suppress(BenchError, OSError, ConnectionError):
            await self.call("quit", 20)
        await _stop(self.proc, 10)


async def http_get(port: int, path: str, timeout: float) -> tuple[int, bytes]:
    """A minimal HTTP/1.0 GET on loopback: (status, body)."""

    async def go() -> tuple[int, bytes]:
        reader, writer = await asyncio.open_connection(LOOPBACK, port)
        try:
            writer.write(f"GET {path} HTTP/1.0\r\nHost: {LOOPBACK}:{port}\r\n\r\n".encode())
            await writer.drain()
            data = await reader.read(-1)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        head, _, body = data.partition(b"\r\n\r\n")
        parts = head.split(b" ", 2)
        return (int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0), body

    return await asyncio.wait_for(go(), timeout)


def parse_metrics(text: str) -> dict[str, float]:
    """Sum each ``ocpp_gateway_*`` sample over its labels (histogram buckets excluded)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line.startswith("ocpp_gateway_") or "_bucket{" in line or "_created" in line:
            continue
        name_part, _, value = line.rpartition(" ")
        name = name_part.split("{", 1)[0]
        try:
            out[name] = out.get(name, 0.0) + float(value)
        except ValueError:
            continue
    return out


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def count_log_errors(path: Path) -> int:
    try:
        with path.open("rb") as f:
            return sum(1 for line in f if b'"level": "error"' in line or b"Traceback" in line)
    except OSError:
        return 0


# ------------------------------------------------------------------ scenarios


def translator_status(csms_ocpp: str = "2.0.1") -> str | None:
    """None when a 1.6J -> ``csms_ocpp`` translator is registered, else why the scenario cannot run."""
    try:
        from adapters import registry
        from gateway.ocppj import Version

        if registry.translator_for(Version.V16, Version(csms_ocpp)) is None:
            return "not yet"
    except Exception as exc:  # a half-finished translator module must not stop the other scenarios
        return f"not available ({type(exc).__name__}: {exc})"
    return None


def gateway_config(tmp: Path, listen: int, admin: int, csms_port: int, csms_version: str,
                   overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The gateway's configuration for one scenario: product defaults, loopback, a temporary message log."""
    config: dict[str, Any] = {
        "listen": {"host": LOOPBACK, "port": listen},
        "admin": {"host": LOOPBACK, "port": admin},
        "store": f"sqlite:///{tmp / 'gateway.db'}",
        "csms": {"sim": {"url": f"ws://{LOOPBACK}:{csms_port}/ocpp", "ocpp": csms_version}},
        "default_route": {"primary": "sim"},
        "allow_unknown_chargers": True,
        "metrics": {"per_charger": False},
        "logging": {"format": "json", "level": "info"},
    }
    for dotted, value in (overrides or {}).items():
        node = config
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return config


class Run:
    """One benchmark run: every scenario, then the table."""

    def __init__(self, opts: Options, tmp: Path, argv: list[str] | None = None) -> None:
        self.opts = opts
        self.tmp = tmp
        self.argv = argv or []
        self.results: dict[str, Any] = {}

    def say(self, text: str) -> None:
        if not self.opts.quiet:
            print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)

    async def run_durability(self, d: DurabilityOptions) -> dict[str, Any]:
        """``--durability``: the durable barrier's cost on transaction CALLs, and the replay rate of a backlog."""
        results: dict[str, Any] = {"machine": machine_info(), "command": "ocpp-gateway bench " + " ".join(self.argv),
                                   "options": vars(d), "transactions": [], "replay": []}
        labels = {"1.6": "1.6 (pass-through)", "2.0.1": "2.0.1 (translation)"}
        for version, label in labels.items():
            for durable in (True, False):
                self.say(f"durability: transactions, CSMS {label}, barrier {'on' if durable else 'off'}")
                work = self.tmp / f"durability-{version}-{'on' if durable else 'off'}"
                row = await self._with_gateway(work, version, {"offline.durable_answers": durable},
                                               lambda url, gw: transaction_load(url, "tx", d))
                results["transactions"].append({"csms": label, "durable": durable, **row})
        for version, label in labels.items():
            self.say(f"durability: replay of {d.backlog:,} queued messages to a CSMS {label}")
            work = self.tmp / f"replay-{version}"
            quick_reconnect = {"upstream.reconnect_initial": 0.05, "upstream.reconnect_max": 0.5,
                               "offline.answer_after": 0.5}

            async def replay(url: str, gw: GatewayProc, csms: Csms) -> dict[str, Any]:
                async with connected_chargers(url, "backlog", d.backlog_chargers) as chargers:
                    fill = await fill_backlog(url, d, chargers)
                    await csms.start()
                    replayed = await wait_replayed(gw.metrics, fill["queued"], self.opts.timeout)
                return {"fill": fill, "replay": replayed}

            row = await self._with_gateway(work, version, quick_reconnect, replay, csms_up=False)
            results["replay"].append({"csms": label, "chargers": d.backlog_chargers, **row})
        return results

    async def _with_gateway(self, work: Path, csms_version: str, overrides: dict[str, Any], body: Any,
                            csms_up: bool = True) -> dict[str, Any]:
        """Run ``body(url, gateway[, csms])`` against a fresh CSMS simulator and gateway process."""
        work.mkdir(parents=True, exist_ok=True)
        csms = Csms(free_port(), work / "csms.log")
        listen, admin = free_port(), free_port()
        config = gateway_config(work, listen, admin, csms.port, csms_version, {**self.opts.overrides, **overrides})
        url = f"ws://{LOOPBACK}:{listen}/ocpp"
        try:
            if csms_up:
                await csms.start()
            async with gateway_running(lambda path: GatewayProc(path, listen, admin, work / "gateway.log"),
                                       work, config) as gw:
                result: dict[str, Any] = await (body(url, gw) if csms_up else body(url, gw, csms))
                result["gateway_log_errors"] = count_log_errors(gw.log)
                return result
        finally:
            await csms.stop()

    async def run(self) -> dict[str, Any]:
        if self.opts.durability is not None:
            return await self.run_durability(self.opts.durability)
        gateway_capacity = (nofile_hard_limit() - _FD_RESERVE) // 2
        self.results = {
            "machine": machine_info(),
            "options": {k: v for k, v in vars(self.opts).items() if k not in ("keep", "quiet")},
            "command": "ocpp-gateway bench " + " ".join(self.argv),
            "gateway_fd_capacity": gateway_capacity,
            "scenarios": {},
        }
        for name in self.opts.scenarios:
            spec = SCENARIO_SPECS[name]
            if spec.proxy == "gateway" and spec.csms_ocpp != "1.6":
                why = translator_status(spec.csms_ocpp)
                if why is not None:
                    self.say(f"translate: {why}")
                    self.results["scenarios"][name] = {"status": why}
                    continue
            self.say(f"scenario {name}")
            try:
                self.results["scenarios"][name] = await self.scenario(name)
            except BenchError as exc:
                self.say(f"scenario {name} failed: {exc}")
                self.results["scenarios"][name] = {"status": f"failed: {exc}"}
        self.results["summary"] = summarise(self.results["scenarios"], self.opts)
        if self.opts.workers:
            self.say(f"workers: {','.join(self.opts.workers)}")
            self.results["workers"] = await self.workers_stages()
        return self.results

    async def workers_stages(self) -> dict[str, Any]:
        """1 vs 2 worker processes (``workers: N``), measured by ``gateway.benchkit.workers`` in its own process:
        it starts a PostgreSQL of its own and several load generators, and imports this module."""
        out = self.tmp / "workers.json"
        args = [sys.executable, "-m", "gateway.benchkit.workers", "--stages", ",".join(self.opts.workers),
                "--json", str(out)] + (["--quick"] if self.opts.quick else [])
        for key, value in self.opts.overrides.items():
            args += ["--set", f"{key}={json.dumps(value)}"]
        proc = await _spawn(args, self.tmp / "workers.log", pipe_stdout=False)
        try:
            code = await asyncio.wait_for(proc.wait(), self.opts.timeout * 4)
        except TimeoutError:
            await _stop(proc)
            return {"status": "failed: timed out"}
        if code != 0 or not out.exists():
            return {"status": f"failed: exit {code}; {_tail(self.tmp / 'workers.log', 5)}"}
        figures: dict[str, Any] = json.loads(out.read_text())
        return {"status": "ok", **figures}

    @contextlib.asynccontextmanager
    async def processes(self, name: str) -> AsyncIterator[tuple[Csms, GatewayProc | RelayProc | None, LoadGenProc]]:
        spec = SCENARIO_SPECS[name]
        work = self.tmp / name
        work.mkdir(parents=True, exist_ok=True)
        csms = Csms(free_port(), work / "csms.log")
        loadgen = LoadGenProc(work / "loadgen.log")
        proxy: GatewayProc | RelayProc | None = None
        try:
            await csms.start()
            if spec.proxy == "gateway":
                listen, admin = free_port(), free_port()
                config = gateway_config(work, listen, admin, csms.port, spec.csms_ocpp, self.opts.overrides)
                path = work / "gateway.yaml"
                path.write_text(yaml.safe_dump(config, sort_keys=False))
                proxy = GatewayProc(path, listen, admin, work / "gateway.log")
                await proxy.start()
            elif spec.proxy == "relay":
                proxy = RelayProc(free_port(), work / "relay.log", csms.port)
                await proxy.start()
            await loadgen.start()
            yield csms, proxy, loadgen
        finally:
            await loadgen.stop()
            if proxy is not None:
                await proxy.stop()
            await csms.stop()

    async def scenario(self, name: str) -> dict[str, Any]:
        o = self.opts
        spec = SCENARIO_SPECS[name]
        stages = [s for s in spec.stages if s in o.stages]
        out: dict[str, Any] = {"status": "ok", "proxy": spec.proxy, "csms_ocpp": spec.csms_ocpp}
        async with self.processes(name) as (csms, proxy, loadgen):
            port = csms.port if proxy is None else _listen_port(proxy)
            url = f"ws://{LOOPBACK}:{port}/ocpp"
            pids = {"csms": csms.pid}
            if proxy is not None and spec.proxy is not None:
                pids[spec.proxy] = proxy.pid
            gateway = proxy if isinstance(proxy, GatewayProc) else None

            if "saturation" in stages:
                self.say(f"{name}: saturation (closed loop), {o.sat_conns} connections, {o.sat_window:g} s")
                out["saturation"] = await loadgen.call(
                    "saturate", o.timeout, url=url, conns=o.sat_conns, warmup=o.sat_warmup, window=o.sat_window,
                    pids=pids)

            if "fixed-rate" in stages:
                self.say(f"{name}: fixed rate (open loop), {o.rate_conns} connections, {o.rate:,.0f} CALLs/s, "
                         f"{o.rate_window:g} s")
                out["fixed_rate"] = await loadgen.call(
                    "paced", o.timeout, url=url, conns=o.rate_conns, rate=o.rate, warmup=o.rate_warmup,
                    window=o.rate_window, pids=pids)

            if "realistic" in stages:
                self.say(f"{name}: realistic load, {o.chargers} chargers, every {o.period:g} s, {o.window:g} s window")
                out["realistic"] = await loadgen.call(
                    "realistic", o.timeout + o.window + o.period, url=url, n=o.chargers, period=o.period,
                    window=o.window, ramp=o.ramp, tx_prob=o.tx_prob, tx_ticks=o.tx_ticks, pids=pids)

            if gateway is not None:
                out["metrics_after_load"] = await gateway.metrics()
            if proxy is not None and spec.proxy is not None and "idle" in stages:
                out["idle"] = await self.idle(name, proxy, spec.proxy, loadgen, url, pids)
            if "storm" in stages:
                out["storm"] = await self.storm(name, csms, gateway, loadgen, url)
            if gateway is not None:
                out["metrics_end"] = await gateway.metrics()
                out["gateway_log_errors"] = count_log_errors(gateway.log)
        return out

    async def idle(self, name: str, proxy: GatewayProc | RelayProc, role: str, loadgen: LoadGenProc, url: str,
                   pids: dict[str, int]) -> dict[str, Any]:
        """RSS of a fresh proxy with 0, then each ``--idle`` count of connected, booted, idle chargers."""
        o = self.opts
        self.say(f"{name}: idle memory, fresh {role}")
        await proxy.stop()
        await proxy.start()
        pids = {**pids, role: proxy.pid}
        # One short burst of every message kind: imports, compiled validators and caches are the
        # process's, not the chargers'.
        await loadgen.call("saturate", o.timeout, url=url, conns=min(20, o.sat_conns), warmup=0.5, window=0.5,
                           pids=pids)
        await asyncio.sleep(o.settle)
        base = await self.settled_rss(proxy.pid)
        capacity = (nofile_hard_limit() - _FD_RESERVE) // 2
        levels: list[dict[str, Any]] = []
        out: dict[str, Any] = {"rss_0": base, "fds_0": fd_count(proxy.pid), "levels": levels}
        for n in sorted(o.idle):
            target = min(n, capacity)
            self.say(f"{name}: holding {target} idle chargers" + (" (fd limit)" if target < n else ""))
            held = await loadgen.call("hold", o.timeout, url=url, n=target, timeout=min(o.timeout, 120.0))
            await asyncio.sleep(o.settle)
            rss = await self.settled_rss(proxy.pid)
            count = held["held"]
            levels.append({
                "requested": n, "target": target, "fd_limited": target < n, "held": count,
                "failed": held["failed"], "connect_seconds": held["seconds"], "rss": rss,
                "fds": fd_count(proxy.pid),
                "rss_per_charger_kib": (rss - base) / count / 1024 if count else None,
            })
        await loadgen.call("release", o.timeout)
        return out

    async def settled_rss(self, pid: int, max_wait: float = 10.0) -> int:
        """RSS once it stops moving (two samples 0.5 s apart within 0.5 %), or after ``max_wait``."""
        prev = rss_bytes(pid)
        deadline = time.monotonic() + max_wait
        while time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            cur = rss_bytes(pid)
            if abs(cur - prev) <= prev * 0.005:
                return cur
            prev = cur
        return prev

    async def storm(self, name: str, csms: Csms, gateway: GatewayProc | None, loadgen: LoadGenProc,
                    url: str) -> dict[str, Any]:
        """Hold ``--storm`` chargers, restart the gateway (or the CSMS for direct), time their return."""
        o = self.opts
        n = o.storm
        if gateway is not None:
            n = min(n, (nofile_hard_limit() - _FD_RESERVE) // 2)
        self.say(f"{name}: reconnect storm, {n} chargers, restarting the {'CSMS' if gateway is None else 'gateway'}")
        held = await loadgen.call("hold", o.timeout, url=url, n=n, timeout=min(o.timeout, 120.0))
        if held["held"] < n:
            raise BenchError(f"storm: only {held['held']} of {n} chargers connected")
        await loadgen.call("arm", 10, timeout=o.timeout)
        t_stop = time.monotonic()
        target: Csms | GatewayProc = csms if gateway is None else gateway
        await target.stop()
        t_spawn = time.monotonic()
        t_ready = await target.start()
        # What the storm costs each side, from ready until every charger has booted: the figures the
        # admission defaults are chosen from (docs/benchmark.md).
        pids = {"csms": csms.pid, "loadgen": loadgen.pid, **({"gateway": gateway.pid} if gateway else {})}
        cpu_ready = {k: cpu_seconds(pid) for k, pid in pids.items()}
        st = await loadgen.call("storm_wait", o.timeout + 10, n=n, timeout=o.timeout)
        cpu_done = {k: cpu_seconds(pid) for k, pid in pids.items()}
        t_done = time.monotonic()
        await loadgen.call("release", o.timeout)
        rebooted = int(st.get("rebooted", 0))
        t_last = st.get("t_last_boot")
        return {
            "chargers": n, "rebooted": rebooted, "complete": rebooted >= n,
            "stop_seconds": t_spawn - t_stop, "startup_seconds": t_ready - t_spawn,
            "reconnect_seconds": (t_last - t_ready) if t_last and rebooted >= n else None,
            "from_spawn_seconds": (t_last - t_spawn) if t_last and rebooted >= n else None,
            "attempts": st.get("attempts", 0), "busy_refusals": st.get("busy_refusals", 0),
            "gave_up": st.get("gave_up", 0), "failures": st.get("failures", {}),
            "cpu_seconds": {k: cpu_done[k] - cpu_ready[k] for k in cpu_done},
            "seconds_until": {q: t - t_ready for q, t in (st.get("t_boots_at") or {}).items()},
            "cpu_window_seconds": t_done - t_ready,
        }


def source_commit() -> str | None:
    """The git commit of the code being measured, when it runs from a checkout."""
    import subprocess

    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def machine_info() -> dict[str, Any]:
    import platform

    info: dict[str, Any] = {"cpus": os.cpu_count(), "python": platform.python_version(),
                            "platform": platform.platform(), "nofile_hard_limit": nofile_hard_limit(),
                            "commit": source_commit()}
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["mem_total_kib"] = int(line.split()[1])
    return info


# ------------------------------------------------------------------ summary and table


def _get(d: dict[str, Any], *path: str) -> Any:
    for key in path:
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d


def _per_call_us(stage: dict[str, Any] | None, role: str | None) -> float | None:
    """CPU microseconds of process ``role`` (utime + stime from /proc) per CALL answered in a measured stage."""
    if not stage or role is None or not stage.get("calls"):
        return None
    cpu = _get(stage, "cpu_seconds", role)
    return None if cpu is None else cpu / stage["calls"] * 1e6


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def summarise(scenarios: dict[str, Any], opts: Options) -> dict[str, Any]:
    """The headline figures per scenario, with ratios to direct and to the bare relay, and the issues' targets."""
    out: dict[str, Any] = {}
    for name, res in scenarios.items():
        if res.get("status") != "ok":
            out[name] = {"status": res.get("status")}
            continue
        spec = SCENARIO_SPECS.get(name)
        out[name] = _scenario_row(res, res.get("proxy", spec.proxy if spec else None))
    direct, relay = out.get("direct", {}), out.get("relay", {})
    for name, row in out.items():
        if row.get("status") != "ok" or name == "direct":
            continue
        if direct.get("status") == "ok":
            row["throughput_ratio"] = _ratio(row.get("throughput_calls_per_s"), direct.get("throughput_calls_per_s"))
            for q in ("p50", "p99"):
                if row.get(f"latency_{q}_ms") is not None and direct.get(f"latency_{q}_ms") is not None:
                    row[f"added_{q}_ms"] = row[f"latency_{q}_ms"] - direct[f"latency_{q}_ms"]
            row["reconnect_ratio"] = _ratio(row.get("reconnect_seconds"), direct.get("reconnect_seconds"))
        if name != "relay" and relay.get("status") == "ok":
            # The headline of issue 18: what the gateway costs per CALL next to a relay that does nothing else,
            # both measured in this run, so a busy machine moves both sides alike.
            row["cpu_vs_relay"] = _ratio(row.get("proxy_cpu_us_per_call"), relay.get("proxy_cpu_us_per_call"))
            row["cpu_vs_relay_fixed_rate"] = _ratio(row.get("proxy_cpu_us_per_call_fixed_rate"),
                                                    relay.get("proxy_cpu_us_per_call_fixed_rate"))
    out["cpu_vs_relay"] = {
        name: {"closed_loop": out[name].get("cpu_vs_relay"), "fixed_rate": out[name].get("cpu_vs_relay_fixed_rate"),
               "target_max": target}
        for name, target in RELAY_RATIO_TARGETS.items() if name in out
    }
    out["targets"] = check_targets(out, opts)
    return out


def _scenario_row(res: dict[str, Any], role: str | None) -> dict[str, Any]:
    """One scenario's figures from its raw readings (each stage only when it ran)."""
    row: dict[str, Any] = {"status": "ok", "proxy": role}
    sat, fixed, real = res.get("saturation"), res.get("fixed_rate"), res.get("realistic")
    if sat:
        row["throughput_calls_per_s"] = sat["calls_per_s"]
        row["proxy_cpu_us_per_call"] = _per_call_us(sat, role)
        peers = [_get(sat, "cpu_seconds", peer) for peer in ("loadgen", "csms")]
        if None not in peers and sat["calls"]:
            # What the two ends of a CALL spend on it: the budget a relay between them is measured against.
            row["peers_cpu_s_per_1000"] = sum(peers) / sat["calls"] * 1000
            row["peers_cpu_us_per_call"] = row["peers_cpu_s_per_1000"] * 1000
    if fixed:
        row["fixed_rate_offered_per_s"] = fixed["offered_per_s"]
        row["fixed_rate_calls_per_s"] = fixed["calls_per_s"]
        row["fixed_rate_p50_ms"] = fixed["p50_ms"]
        row["fixed_rate_p99_ms"] = fixed["p99_ms"]
        row["proxy_cpu_us_per_call_fixed_rate"] = _per_call_us(fixed, role)
        # A proxy that cannot answer the offered rate is saturated there: its CPU per CALL is then a closed-loop
        # figure (bigger batches, fewer wake-ups), not the fixed-rate one.
        row["fixed_rate_kept_up"] = fixed["calls_per_s"] >= KEPT_UP * fixed["offered_per_s"]
    if real:
        row["latency_p50_ms"] = real["p50_ms"]
        row["latency_p99_ms"] = real["p99_ms"]
        row["realistic_calls_per_s"] = real["calls_per_s"]
        row["proxy_cpu_us_per_call_realistic"] = _per_call_us(real, role)
    if role == "gateway":  # the names earlier runs and their JSON readers use
        for key, old in (("proxy_cpu_us_per_call", "gateway_cpu_s_per_1000"),
                         ("proxy_cpu_us_per_call_realistic", "gateway_cpu_s_per_1000_realistic")):
            if row.get(key) is not None:
                row[old] = row[key] / 1000
    row["reconnect_seconds"] = _get(res, "storm", "reconnect_seconds")
    row["reconnect_chargers"] = _get(res, "storm", "chargers")
    if res.get("storm"):
        # The storm's wall time moves with whatever else the machine runs; the CPU it took does not as much.
        row["reconnect_proxy_cpu_seconds"] = _get(res, "storm", "cpu_seconds", role) if role else None
        row["reconnect_busy_refusals"] = _get(res, "storm", "busy_refusals")
    dropped = _get(res, "metrics_after_load", "ocpp_gateway_store_records_dropped")
    if dropped is not None:
        # The message log is part of the product: a throughput that loses log records is not sustainable.
        row["log_records_dropped"] = dropped
    for level in _get(res, "idle", "levels") or []:
        row[f"rss_per_idle_charger_kib@{level['requested']}"] = level["rss_per_charger_kib"]
        row[f"idle_chargers_held@{level['requested']}"] = level["held"]
    return row


_GATEWAY_LABELS = {"passthrough": "pass-through", "translate": "translated", "translate21": "translated to 2.1"}


def check_targets(summary: dict[str, Any], opts: Options) -> list[dict[str, Any]]:
    """The issues' targets, each with the measured value and met / missed / not measured."""
    targets: list[dict[str, Any]] = []

    def add(name: str, value: Any, ok: bool | None, note: str = "") -> None:
        verdict = "not measured" if ok is None else ("met" if ok else "missed")
        targets.append({"target": name, "measured": value, "verdict": verdict, "note": note})

    def present(*names: str) -> list[tuple[str, dict[str, Any]]]:
        return [(n, summary[n]) for n in names if n in summary]

    relay_note = "" if summary.get("relay", {}).get("status") == "ok" else "needs the relay scenario"
    for name, row in present(*RELAY_RATIO_TARGETS):
        most = RELAY_RATIO_TARGETS[name]
        for key, stage in (("cpu_vs_relay", f"closed loop, {opts.sat_conns} chargers"),
                           ("cpu_vs_relay_fixed_rate", f"{opts.rate:,.0f} CALLs/s, {opts.rate_conns} chargers")):
            r = row.get(key)
            note = "" if r is not None else relay_note or str(row.get("status") or "")
            ok: bool | None = None if r is None else r <= most
            behind = [n for n in (name, "relay") if summary.get(n, {}).get("fixed_rate_kept_up") is False]
            if key == "cpu_vs_relay_fixed_rate" and behind:
                ok, note = None, f"{' and '.join(behind)} fell behind the fixed rate (busy machine?)"
            add(f"{_GATEWAY_LABELS[name]}: CPU per CALL <= {most:.1f}x bare relay ({stage})", r, ok, note)
    for name, floor in (("passthrough", 0.5), ("translate", 0.4)):
        if name not in summary:
            continue
        row = summary[name]
        r = row.get("throughput_ratio")
        note = "" if r is not None else str(row.get("status", ""))
        met = None if r is None else r >= floor
        if row.get("log_records_dropped"):
            met = False
            note = f"the message log dropped {row['log_records_dropped']:,.0f} records: not sustainable"
        add(f"{_GATEWAY_LABELS[name]} throughput >= {floor:.0%} of direct", r, met, note)
    for name, row in present("passthrough", "translate"):
        added = row.get("added_p99_ms")
        add(f"{name}: p99 added latency < 5 ms at {opts.chargers} chargers", added,
            None if added is None else added < 5.0)
    for name, row in present("passthrough", "translate"):
        per = [v for k, v in row.items() if k.startswith("rss_per_idle_charger_kib@") and v is not None]
        worst = max(per) if per else None
        add(f"{name}: <= {RSS_TARGET_KIB:.0f} KiB RSS per idle charger", worst,
            None if worst is None else worst <= RSS_TARGET_KIB)
    capacity = (nofile_hard_limit() - _FD_RESERVE) // 2
    for name, row in present("passthrough", "translate"):
        held = [v for k, v in row.items() if k.startswith("idle_chargers_held@")]
        most_held = max(held) if held else None
        tried = max(opts.idle) >= 10000
        note = ""
        ok = None if most_held is None or not tried else most_held >= 10000
        if most_held is not None and most_held < 10000:
            if not tried:
                note = "fewer requested (--idle)"
            elif most_held >= capacity:
                ok = None  # the machine's limit, not the gateway's
                note = (f"held all {most_held} this machine allows: RLIMIT_NOFILE hard limit {nofile_hard_limit()}, "
                        "two sockets per charger")
            else:
                note = "connections failed"
        add(f"{name}: 10,000 concurrent chargers on {os.cpu_count()} cores", most_held, ok, note)
    for name, row in present("passthrough", "translate"):
        seconds, n = row.get("reconnect_seconds"), row.get("reconnect_chargers")
        ok, note = None, ""
        if n is not None and n < STORM_TARGET_CHARGERS:
            note = f"measured with {n:,} chargers (--storm)"
        elif n is not None:
            ok = seconds is not None and seconds < STORM_TARGET_SECONDS
            note = "" if seconds is not None else "not every charger came back"
        add(f"{name}: {STORM_TARGET_CHARGERS:,} chargers back and booted after a restart in "
            f"< {STORM_TARGET_SECONDS:.0f} s", seconds, ok, note)
    return targets


def _fmt(value: Any, spec: str = ",.0f", suffix: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    return f"{value:{spec}}{suffix}"


def render_table(results: dict[str, Any]) -> str:
    summary = results["summary"]
    opts = results.get("options", {})
    names = list(results["scenarios"])
    rows: list[tuple[str, list[str]]] = []

    def cell(name: str, key: str, spec: str, ratio_key: str | None = None, ratio_spec: str = ".0%",
             ratio_suffix: str = "") -> str:
        row = summary.get(name, {})
        if row.get("status") != "ok":
            return str(row.get("status") or "-")
        text = _fmt(row.get(key), spec)
        if ratio_key and row.get(ratio_key) is not None:
            text += f" ({_fmt(row[ratio_key], ratio_spec)}{ratio_suffix})"
        return text

    def line(label: str, key: str, spec: str, *ratio: str) -> None:
        rows.append((label, [cell(n, key, spec, *ratio) for n in names]))

    def pair(name: str, first: str, second: str) -> str:
        row = summary.get(name, {})
        if row.get("status") != "ok" or row.get(first) is None:
            return cell(name, first, ".2f")
        return f"{_fmt(row[first], '.2f')} / {_fmt(row.get(second), '.2f')}"

    line(f"Saturation (CALLs/s), {_fmt(opts.get('sat_conns'))} chargers", "throughput_calls_per_s", ",.0f",
         "throughput_ratio")
    line("  proxy CPU µs / CALL", "proxy_cpu_us_per_call", ",.0f", "cpu_vs_relay", ".2f", "x")
    line("  chargers + CSMS CPU µs / CALL", "peers_cpu_us_per_call", ",.0f")
    rows.append((f"Fixed rate {_fmt(opts.get('rate'))}/s: answered (CALLs/s)",
                 [cell(n, "fixed_rate_calls_per_s", ",.0f")
                  + (" (behind)" if summary.get(n, {}).get("fixed_rate_kept_up") is False else "") for n in names]))
    rows.append(("  latency p50 / p99 (ms)", [pair(n, "fixed_rate_p50_ms", "fixed_rate_p99_ms") for n in names]))
    line("  proxy CPU µs / CALL", "proxy_cpu_us_per_call_fixed_rate", ",.0f", "cpu_vs_relay_fixed_rate", ".2f", "x")
    line("Realistic load (CALLs/s)", "realistic_calls_per_s", ",.0f")
    line("  latency p50 (ms)", "latency_p50_ms", ".2f", "added_p50_ms", "+.2f")
    line("  latency p99 (ms)", "latency_p99_ms", ".2f", "added_p99_ms", "+.2f")
    line("  proxy CPU µs / CALL", "proxy_cpu_us_per_call_realistic", ",.0f")
    line("Message-log records dropped", "log_records_dropped", ",.0f")
    levels = sorted({int(k.split("@")[1]) for row in summary.values() if isinstance(row, dict)
                     for k in row if k.startswith("rss_per_idle_charger_kib@")})
    for level in levels:
        line(f"RSS / idle charger @{level:,} (KiB)", f"rss_per_idle_charger_kib@{level}", ".1f")
        line(f"  chargers held @{level:,}", f"idle_chargers_held@{level}", ",.0f")
    storm_n = next((row.get("reconnect_chargers") for row in summary.values()
                    if isinstance(row, dict) and row.get("reconnect_chargers")), None)
    line(f"Reconnect {_fmt(storm_n, ',.0f')} chargers (s)", "reconnect_seconds", ".2f", "reconnect_ratio", ".1f",
         "x")
    line("  gateway CPU s until the last boot", "reconnect_proxy_cpu_seconds", ".2f")
    line("  HTTP 503 (busy) answers", "reconnect_busy_refusals", ",.0f")
    cols = [SCENARIO_SPECS[n].header if n in SCENARIO_SPECS else n for n in names]
    width0 = max(len(r[0]) for r in rows)
    widths = [max(len(c), *(len(r[1][i]) for r in rows)) for i, c in enumerate(cols)]
    lines = ["  ".join([" " * width0, *(c.rjust(w) for c, w in zip(cols, widths, strict=True))])]
    for label, cells in rows:
        lines.append("  ".join([label.ljust(width0), *(c.rjust(w) for c, w in zip(cells, widths, strict=True))]))
    lines.append("")
    lines.append("Saturation: (% of direct). CPU µs / CALL: the proxy process's utime + stime per answered CALL, "
                 "(x bare relay, same run).")
    lines.append("Latency: (+ms added over direct). Reconnect: (x direct).")
    ratios = [(n, r) for n, r in summary.get("cpu_vs_relay", {}).items() if r.get("closed_loop") is not None]
    if ratios:
        lines.append("")
        lines.append("CPU per CALL, gateway / bare relay (closed loop | fixed rate; target):")
        for n, r in ratios:
            lines.append(f"  {SCENARIO_SPECS[n].header:<20} {_fmt(r['closed_loop'], '.2f')}x | "
                         f"{_fmt(r['fixed_rate'], '.2f')}x; <= {r['target_max']:.1f}x")
    workers = results.get("workers")
    if workers:
        lines.append("")
        lines.append("More than one core (python -m gateway.benchkit.workers):")
        lines.append(workers.get("table") or str(workers.get("status")))
    lines.append("")
    lines.append("Targets:")
    for t in summary["targets"]:
        value = t["measured"]
        shown = _fmt(value, ".2f") if isinstance(value, float) else _fmt(value, ",")
        note = f"  [{t['note']}]" if t["note"] else ""
        lines.append(f"  {t['verdict']:>12}  {t['target']}: {shown}{note}")
    return "\n".join(lines)


# ------------------------------------------------------------------ command line


def _workers_stages(text: str) -> list[str]:
    return [] if text.strip() == "none" else list(_names(WORKERS_STAGE_NAMES, "workers stage")(text))


def _counts(text: str) -> list[int]:
    try:
        values = [int(x.replace("_", "")) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated counts, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("counts must be positive")
    return values


def _names(choices: tuple[str, ...], what: str) -> Any:
    def parse(text: str) -> list[str]:
        names = [x.strip() for x in text.split(",") if x.strip()]
        bad = [n for n in names if n not in choices]
        if bad or not names:
            raise argparse.ArgumentTypeError(f"unknown {what}(s) {bad}; choose from {', '.join(choices)}")
        return names

    return parse


def _override(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), yaml.safe_load(value)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ocpp-gateway bench",
        description="Measure the gateway against a direct charger -> CSMS connection and a bare websockets relay "
        "on this machine: throughput at saturation, CPU per CALL there and at a fixed rate (with the ratio "
        "gateway / bare relay from the same run), latency at a realistic load, memory per idle charger and the "
        "reconnect storm after a restart. Everything runs on 127.0.0.1 in separate processes.",
        epilog="examples:\n  ocpp-gateway bench --quick\n"
        "  ocpp-gateway bench --json bench.json --set admission.rate=1000",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--quick", action="store_true",
                   help="smaller counts and shorter windows (~3 minutes); explicit options still win")
    p.add_argument("--json", metavar="PATH", help="write every figure as JSON to PATH")
    p.add_argument("--chargers", type=int, help="chargers at the realistic load (default 5000; quick 500)")
    p.add_argument("--period", type=float, help="seconds between a charger's Heartbeat+MeterValues (default 10)")
    p.add_argument("--window", type=float, help="realistic-load measurement window, s (default 30; quick 10)")
    p.add_argument("--ramp", type=float, help="seconds of realistic load before measuring (default one period)")
    p.add_argument("--tx-prob", type=float, help="chance per period that an idle charger starts a transaction "
                   "(default 0.1)")
    p.add_argument("--tx-ticks", type=int, help="periods a transaction lasts (default 3)")
    p.add_argument("--sat-conns", type=int, help="chargers at saturation, closed loop (default 200)")
    p.add_argument("--sat-warmup", type=float, help="seconds of saturation before measuring (default 2; quick 1)")
    p.add_argument("--sat-window", type=float, help="saturation measurement window, s (default 10; quick 4)")
    p.add_argument("--rate", type=float, help="CALLs/s offered in the fixed-rate stage, open loop (default 1000)")
    p.add_argument("--rate-conns", type=int, help="chargers sharing the fixed rate (default 200)")
    p.add_argument("--rate-warmup", type=float, help="seconds at the fixed rate before measuring (default 2; quick 1)")
    p.add_argument("--rate-window", type=float, help="fixed-rate measurement window, s (default 10; quick 4)")
    p.add_argument("--idle", type=_counts, help="idle charger counts for the memory figure (default 1000,10000)")
    p.add_argument("--storm", type=int, help="chargers in the reconnect storm (default 5000; quick 500)")
    p.add_argument("--scenarios", type=_names(SCENARIOS, "scenario"),
                   help=f"subset of {','.join(SCENARIOS)} (default all)")
    p.add_argument("--stages", type=_names(STAGES, "stage"),
                   help=f"subset of {','.join(STAGES)} (default all; each scenario runs the ones it has)")
    p.add_argument("--settle", type=float, help="seconds to let memory settle before reading RSS (default 2)")
    p.add_argument("--timeout", type=float, help="upper bound of any single step, s (default 300)")
    p.add_argument("--set", metavar="KEY=VALUE", action="append", type=_override, default=[],
                   help="override a key of the gateway's configuration (dotted path, YAML value), e.g. "
                   "--set admission.rate=1000; repeatable")
    p.add_argument("--durability", action="store_true",
                   help="only the store-and-forward figures: throughput and p99 of transaction CALLs with and "
                   "without the durable barrier, and the replay rate of a backlog (see docs/benchmark.md)")
    p.add_argument("--tx-chargers", type=int, help="--durability: chargers looping transactions (default 20)")
    p.add_argument("--tx-seconds", type=float, help="--durability: measurement window per configuration (default 10)")
    p.add_argument("--backlog", type=int, help="--durability: messages queued before the CSMS returns "
                   "(default 10000)")
    p.add_argument("--backlog-chargers", type=int, help="--durability: chargers sharing the backlog (default 10)")
    p.add_argument("--workers", type=_workers_stages, help="stages of the workers benchmark (1 vs 2 worker "
                   f"processes) to run after the scenarios, of {','.join(WORKERS_STAGE_NAMES)}, or none "
                   f"(default {','.join(WORKERS_STAGES)}; quick none)")
    p.add_argument("--keep", metavar="DIR", help="keep logs, configs and the message log in DIR")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return p


def options_from(args: argparse.Namespace) -> Options:
    opts = Options()
    if args.quick:
        for key, value in QUICK.items():
            setattr(opts, key, value)
    for key in ("chargers", "period", "window", "ramp", "tx_prob", "tx_ticks", "sat_conns", "sat_warmup",
                "sat_window", "rate", "rate_conns", "rate_warmup", "rate_window", "idle", "storm", "scenarios",
                "stages", "settle", "timeout", "keep", "workers"):
        value = getattr(args, key)
        if value is not None:
            setattr(opts, key, value)
    opts.quiet = args.quiet
    opts.quick = args.quick
    opts.overrides = dict(args.set)
    if args.durability:
        d = opts.durability = DurabilityOptions()
        if args.quick:
            d.seconds, d.warmup = 4.0, 1.0
        for key, attr in (("tx_chargers", "chargers"), ("tx_seconds", "seconds"), ("backlog", "backlog"),
                          ("backlog_chargers", "backlog_chargers")):
            if (value := getattr(args, key)) is not None:
                setattr(d, attr, value)
    return opts


async def run_bench(opts: Options, argv: list[str] | None = None) -> dict[str, Any]:
    if opts.keep:
        tmp = Path(opts.keep)
        tmp.mkdir(parents=True, exist_ok=True)
        return await Run(opts, tmp, argv).run()
    with tempfile.TemporaryDirectory(prefix="ocpp-bench-") as d:
        return await Run(opts, Path(d), argv).run()


def bench_command(argv: list[str]) -> int:
    if argv[:1] == ["--"]:  # `ocpp-gateway bench -- --quick`
        argv = argv[1:]
    args = parser().parse_args(argv)
    opts = options_from(args)
    raise_nofile()
    started = time.monotonic()
    try:
        results = asyncio.run(run_bench(opts, argv))
    except KeyboardInterrupt:
        return 130
    results["elapsed_seconds"] = time.monotonic() - started
    print(render_durability(results) if opts.durability is not None else render_table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")
        print(f"\nfigures written to {args.json}")
    if opts.durability is not None:
        return 0 if all(not r["replay"].get("timed_out") for r in results["replay"]) else 1
    failed = [n for n, r in results["scenarios"].items() if str(r.get("status", "")).startswith("failed")]
    return 1 if failed else 0


__all__ = ["bench_command", "parse_metrics", "render_table", "summarise"]


if __name__ == "__main__":
    sys.exit(bench_command(sys.argv[1:]))
