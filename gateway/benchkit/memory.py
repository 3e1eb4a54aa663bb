"""What an idle charger costs the gateway in memory, by allocation site or by object type.

    python -m gateway.benchkit.memory [--chargers 2000] [--top 30] [--frames 1] [--group lineno|filename]
    python -m gateway.benchkit.memory --objects [--chargers 2000]

The gateway runs in this process (pass-through by default, SQLite message
log, the bench's configuration); the CSMS simulator and the load generator
are the bench's own subprocesses. After a short burst of every message kind
(imports, compiled validators and caches belong to the process, not to the
chargers) ``--chargers`` chargers connect, boot and stay idle, and what the
process holds more is divided by the chargers held:

- by default, the Python heap by allocation site (tracemalloc; ``--frames``
  above 1 shows where each site was called from);
- with ``--objects``, the objects the garbage collector tracks, by type, with
  their shallow ``sys.getsizeof`` (dicts by their first keys, coroutines and
  generators by their code), and RSS without tracemalloc's own bookkeeping.

The bench's idle stage (``ocpp-gateway bench --stages idle``) is the RSS
figure to quote; this is where to look when it moves.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import tempfile
import tracemalloc
import types
from pathlib import Path
from typing import Any

import yaml

from gateway import logs
from gateway.app import Gateway
from gateway.bench import LOOPBACK, Csms, LoadGenProc, free_port, gateway_config
from gateway.benchkit.procs import raise_nofile, rss_bytes
from gateway.cli import tune_gc
from gateway.config import load_config

# Sites and types below this share of a charger are not worth a line.
_MIN_BYTES_PER_CHARGER = 16.0
_Counts = dict[str, tuple[int, int]]


async def measure(chargers: int, csms_ocpp: str = "1.6", objects: bool = False, group: str = "lineno",
                  top: int = 30, frames: int = 1) -> dict[str, Any]:
    """Hold ``chargers`` idle chargers on an in-process gateway; what they hold per charger."""
    raise_nofile()
    with tempfile.TemporaryDirectory(prefix="gw-memory-") as tmp_name:
        tmp = Path(tmp_name)
        csms = Csms(free_port(), tmp / "csms.log")
        loadgen = LoadGenProc(tmp / "loadgen.log")
        await csms.start()
        await loadgen.start()
        listen, admin = free_port(), free_port()
        config = gateway_config(tmp, listen, admin, csms.port, csms_ocpp)
        config["logging"]["level"] = "warning"
        path = tmp / "gateway.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        gw = Gateway(load_config(path))
        await gw.start()
        tune_gc()  # as ``ocpp-gateway run`` does
        url = f"ws://{LOOPBACK}:{listen}/ocpp"
        try:
            await loadgen.call("saturate", 60, url=url, conns=20, warmup=0.5, window=0.5, pids={})
            await asyncio.sleep(1.0)
            gc.collect()
            # A snapshot's traces are themselves tuples and lists: objects are counted without tracemalloc.
            if not objects:
                tracemalloc.start(frames)
            before = _objects() if objects else tracemalloc.take_snapshot()
            rss_0 = rss_bytes(os.getpid())
            held = await loadgen.call("hold", 300, url=url, n=chargers, timeout=240.0)
            await asyncio.sleep(2.0)
            # As the gateway runs, garbage in cycles waits for a collection of its generation: RSS before and after.
            rss_running = rss_bytes(os.getpid())
            garbage = gc.collect()
            after = _objects() if objects else tracemalloc.take_snapshot()
            rss_n = rss_bytes(os.getpid())
            count = held["held"] or 1
            out: dict[str, Any] = {"held": held["held"], "failed": held["failed"],
                                   "rss_running_per_charger": (rss_running - rss_0) / count,
                                   "rss_per_charger": (rss_n - rss_0) / count, "traced": not objects,
                                   "garbage_per_charger": garbage / count}
            if isinstance(before, dict) and isinstance(after, dict):
                out["types"] = _per_type(before, after, count, top)
            elif isinstance(before, tracemalloc.Snapshot) and isinstance(after, tracemalloc.Snapshot):
                stats = after.compare_to(before, "traceback" if frames > 1 else group)
                out["heap_per_charger"] = sum(s.size_diff for s in stats) / count
                out["blocks_per_charger"] = sum(s.count_diff for s in stats) / count
                out["sites"] = [(_site(s.traceback, group), s.size_diff / count, s.count_diff / count)
                                for s in stats[:top] if s.size_diff / count >= _MIN_BYTES_PER_CHARGER]
            await loadgen.call("release", 60)
            return out
        finally:
            tracemalloc.stop()
            await loadgen.stop()
            await gw.stop()
            await csms.stop()


def _objects() -> _Counts:
    """Bytes (``sys.getsizeof``, shallow) and count of the objects the collector tracks, by kind."""
    found: _Counts = {}
    for obj in gc.get_objects():
        kind = type(obj)
        name = f"{kind.__module__}.{kind.__qualname__}"
        if isinstance(obj, (types.CoroutineType, types.GeneratorType)):  # which code is suspended
            name = f"{name} {obj.__qualname__}"
        elif kind is dict:  # an instance's __dict__ or a table: its first keys tell
            keys = sorted(str(k)[:24] for k in list(obj)[:4])
            name = "dict {" + ", ".join(keys) + (", ...}" if len(obj) > 4 else "}")
        size, n = found.get(name, (0, 0))
        found[name] = (size + sys.getsizeof(obj), n + 1)
    return found


def _per_type(before: _Counts, after: _Counts, count: int, top: int) -> list[tuple[str, float, float]]:
    grown = [(name, (size - before.get(name, (0, 0))[0]) / count, (n - before.get(name, (0, 0))[1]) / count)
             for name, (size, n) in after.items()]
    grown.sort(key=lambda t: -t[1])
    return [g for g in grown[:top] if g[1] >= _MIN_BYTES_PER_CHARGER]


def _site(tb: tracemalloc.Traceback, group: str) -> str:
    """The allocation site, most recent frame first."""
    if group == "filename":
        return _short(tb[0].filename)
    calls = [f"{_short(f.filename)}:{f.lineno}" for f in reversed(tb)]
    return "\n                        <- ".join(calls)


def _short(filename: str) -> str:
    for marker in ("site-packages/", "python3.11/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return os.path.relpath(filename)


def render(result: dict[str, Any]) -> str:
    lines = [f"idle chargers held: {result['held']:,} (failed {result['failed']})"]
    if result["traced"]:  # tracemalloc's own bookkeeping, and the snapshots, are in the process's RSS
        lines.append("RSS per idle charger: not with tracemalloc on (see --objects)")
    else:
        lines.append(f"RSS per idle charger: {result['rss_running_per_charger'] / 1024:.1f} KiB as running, "
                     f"{result['rss_per_charger'] / 1024:.1f} KiB after a full collection")
    lines.append(f"unreachable objects the full collection found: {result['garbage_per_charger']:.1f} per charger")
    if "types" in result:
        lines.append("   B/charger  objects  kind (gc-tracked objects, shallow sizes)")
        lines.extend(f"  {size:10,.0f}  {n:7.1f}  {name}" for name, size, n in result["types"])
    if "heap_per_charger" in result:
        lines.append(f"Python heap per idle charger: {result['heap_per_charger']:,.0f} B "
                     f"({result['heap_per_charger'] / 1024:.1f} KiB), {result['blocks_per_charger']:.0f} blocks")
        lines.append("   B/charger  blocks  site")
        lines.extend(f"  {size:10,.0f}  {blocks:6.1f}  {site}" for site, size, blocks in result["sites"])
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gateway.benchkit.memory",
                                description="What an idle charger costs the gateway in memory.")
    p.add_argument("--chargers", type=int, default=2000, help="idle chargers to hold (default 2000)")
    p.add_argument("--csms-ocpp", default="1.6", help="the CSMS's OCPP version: 1.6 is pass-through (default)")
    p.add_argument("--group", choices=("lineno", "filename"), default="lineno", help="allocation sites by line or file")
    p.add_argument("--frames", type=int, default=1, help="frames per allocation site (default 1)")
    p.add_argument("--top", type=int, default=30, help="lines to print (default 30)")
    p.add_argument("--objects", action="store_true",
                   help="objects by type and RSS, without tracemalloc, instead of allocation sites")
    args = p.parse_args(argv)
    logs.configure("json", "warning")
    result = asyncio.run(measure(args.chargers, args.csms_ocpp, args.objects, args.group, args.top, args.frames))
    print(render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
