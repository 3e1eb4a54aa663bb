"""``ocpp-gateway``: the command line.

    ocpp-gateway run --config gateway.yaml
    ocpp-gateway demo [--chargers N] [--duration S]
    ocpp-gateway logs <charger_id> [--limit N] [--jsonl] [--follow] [--config F | --store URL]
    ocpp-gateway conformance [--charger V] [--csms V] [--markdown]
    ocpp-gateway check-config --config gateway.yaml
    ocpp-gateway route <charger_id> --primary NEW [--shadow OLD] | --reset
    ocpp-gateway report --config F [--format text|json|csv|html] [--output FILE]
    ocpp-gateway replay --config F --charger ID|--all --csms NAME [--since T] [--until T] [--prefix P]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from typing import Any

from gateway.config import ConfigError, GatewayConfig, load_config


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ocpp-gateway",
        description="OCPP migration gateway: chargers connect to it as to their CSMS; it relays and translates "
        "every frame between OCPP 1.6J, 2.0.1 and 2.1 to the CSMS each charger is routed to.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the gateway service", description="Run the gateway until SIGTERM/SIGINT.")
    run.add_argument("--config", "-c", required=True, help="YAML configuration file")

    check = sub.add_parser("check-config", help="validate a configuration file and its mapping tables, then exit")
    check.add_argument("--config", "-c", required=True)

    demo = sub.add_parser(
        "demo", help="self-contained demo: gateway + demo CSMS + simulated chargers with a live summary",
        description="Start the gateway, an embedded demo CSMS per OCPP version and simulated 1.6J/2.0.1/2.1 "
        "chargers that boot, heartbeat, authorize and charge; print a live summary.",
    )
    demo.add_argument("--chargers", type=int, default=12, help="number of simulated chargers (default 12)")
    demo.add_argument("--duration", type=float, default=60.0, help="seconds to run; 0 = until Ctrl-C (default 60)")
    demo.add_argument("--port", type=int, default=9000, help="charger-facing port (default 9000; 0 = any)")
    demo.add_argument("--admin-port", type=int, default=9100, help="admin/metrics port (default 9100; 0 = any)")
    demo.add_argument("--store", default="sqlite:///ocpp-gateway-demo.db", help="message log store URL")
    demo.add_argument("--translate", action=argparse.BooleanOptionalAction, default=True,
                      help="route some chargers to a CSMS of another OCPP version (default on)")
    demo.add_argument("--vendors", action=argparse.BooleanOptionalAction, default=True,
                      help="add cloud-locked Easee/Zaptec chargers from simulated vendor clouds (default on)")

    logs = sub.add_parser("logs", help="print a charger's message log",
                          description="Print a charger's message log, oldest first.")
    logs.add_argument("charger_id")
    logs.add_argument("--limit", "-n", type=int, default=50)
    logs.add_argument("--jsonl", action="store_true", help="one JSON record per line")
    logs.add_argument("--follow", "-f", action="store_true", help="keep printing new records")
    src = logs.add_mutually_exclusive_group()
    src.add_argument("--config", "-c", help="read the store URL from this configuration file")
    src.add_argument("--store", help="store URL (default: the demo's sqlite:///ocpp-gateway-demo.db)")

    conf = sub.add_parser("conformance", help="print the conformance list of a charger/CSMS version pair",
                          description="Print, from the translators' own tables, what becomes of each message.")
    conf.add_argument("--charger", help="charger OCPP version (1.6, 2.0.1, 2.1); default: every pair")
    conf.add_argument("--csms", help="CSMS OCPP version (1.6, 2.0.1, 2.1); default: every pair")
    conf.add_argument("--markdown", action="store_true", help="Markdown (docs/conformance.md) instead of text")

    route = sub.add_parser(
        "route", help="cut a charger over to another CSMS, add a shadow, or roll back (via the admin API)",
        description="Set a charger's route on a running gateway. The charger is reconnected onto the new route; "
        "the change is kept across restarts until --reset puts the config file's route back.",
    )
    route.add_argument("charger_id")
    target = route.add_mutually_exclusive_group(required=True)
    target.add_argument("--primary", help="the CSMS whose answers the charger gets")
    target.add_argument("--reset", action="store_true", help="roll back to the route in the config file")
    route.add_argument("--shadow", help="a CSMS that sees the charger's traffic without answering it")
    where = route.add_mutually_exclusive_group()
    where.add_argument("--admin", help="admin API base URL (default http://127.0.0.1:9100)")
    where.add_argument("--config", "-c",
                       help="take the admin address (and admin.token_env) from this configuration file")
    route.add_argument("--token-env", metavar="NAME",
                       help="environment variable with the admin API's bearer token (default: the config's "
                       "admin.token_env)")

    vendor = sub.add_parser("vendor", help="vendor cloud chargers: move them to native OCPP")
    vsub = vendor.add_subparsers(dest="vendor_command", required=True, metavar="VENDOR_COMMAND")
    native = vsub.add_parser(
        "native-ocpp", help="point a cloud charger at the gateway's own OCPP URL (Easee)",
        description="Ask the vendor cloud to connect the charger natively (OCPP) to the gateway; the gateway keeps "
        "its charger id, route and history and the cloud adapter steps aside.",
    )
    native.add_argument("charger_id", help="the gateway's charger id (e.g. easee-EH123456)")
    native.add_argument("--config", "-c", required=True)
    native.add_argument("--url", help="the gateway's OCPP URL as the charger must reach it (ws(s)://host:port/ocpp)")

    _migration_parsers(sub)

    bench = sub.add_parser("bench", help="benchmark the gateway against a direct connection (see README)")
    bench.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the benchmark script")
    return p


def _migration_parsers(sub: Any) -> None:
    """``report`` and ``replay``: is a new CSMS ready for these chargers (docs/shadow-and-compare.md)."""
    report = sub.add_parser(
        "report", help="migration report: per charger, does the new CSMS answer like the old one, is it ready",
        description="Read the shadow comparisons from the store (the gateway may be stopped) and write the "
        "estate's migration report.",
    )
    report.add_argument("--config", "-c", required=True)
    report.add_argument("--format", choices=("text", "json", "csv", "html"), default="text")
    report.add_argument("--output", "-o", help="write to this file instead of standard output")
    replay = sub.add_parser(
        "replay", help="send recorded charger CALLs to a candidate CSMS and compare its answers with the log's",
        description="Replay the charger CALLs in the message log to a candidate CSMS under a test charger id "
        "(<prefix><id>), translated for its version, and report where its answers differ from those the real CSMS "
        "gave. Nothing is ever sent to a charger.",
    )
    replay.add_argument("--config", "-c", required=True)
    which = replay.add_mutually_exclusive_group(required=True)
    which.add_argument("--charger", action="append", metavar="ID", help="a charger to replay (repeatable)")
    which.add_argument("--all", action="store_true", help="every charger in the log")
    replay.add_argument("--csms", required=True, help="the candidate: a CSMS name from the config")
    replay.add_argument("--since", help="only CALLs at or after this time (ISO 8601, or unix seconds)")
    replay.add_argument("--until", help="only CALLs before this time")
    replay.add_argument("--prefix", default="replay-", help="test charger id prefix at the candidate "
                        "(default replay-)")
    replay.add_argument("--as-real-id", action="store_true",
                        help="use the chargers' real ids at the candidate (only for a CSMS that expects it)")
    replay.add_argument("--concurrency", type=int, default=50, help="chargers replayed at once (default 50)")
    replay.add_argument("--format", choices=("text", "json", "csv", "html"), default="text")
    replay.add_argument("--output", "-o", help="write the report to this file instead of standard output")
    replay.add_argument("--no-progress", action="store_true", help="no progress line on standard error")


def _load(path: str) -> GatewayConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"ocpp-gateway: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def raise_open_files_limit() -> int:
    """Lift the soft open-files limit to the hard one: each charger costs two sockets (charger + upstream)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            return target
        except (ValueError, OSError):
            return soft
    return soft


def tune_gc() -> None:
    """Make full garbage collections rare: with thousands of chargers the heap holds ~10^6 objects, and each
    full collection stops the event loop for about a second (measured: p99 latency 0.5-1.4 s -> 5 ms)."""
    import gc

    gc.freeze()  # what start-up built (modules, schemas, tables) is never collected again
    gc.set_threshold(50_000, 20, 100)


async def _serve(config: GatewayConfig) -> int:
    from gateway.app import Gateway
    from gateway.logs import get_logger

    limit = raise_open_files_limit()
    if limit < 4 * 1024:
        get_logger().warning("open_files_limit_low", limit=limit,
                             hint="each charger needs two sockets; raise LimitNOFILE / ulimit -n")

    gw = Gateway(config)
    await gw.start()
    tune_gc()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await gw.stop()
    return 0


async def _route(args: argparse.Namespace) -> int:
    import aiohttp

    base = args.admin or "http://127.0.0.1:9100"
    token_env = args.token_env
    if args.config:
        admin = _load(args.config).admin
        base = f"http://{'127.0.0.1' if admin.host in ('0.0.0.0', '::') else admin.host}:{admin.port}"
        token_env = token_env or admin.token_env
    headers = {}
    if token_env:
        token = os.environ.get(token_env)
        if not token:
            print(f"ocpp-gateway: environment variable {token_env} (the admin API token) is not set", file=sys.stderr)
            return 1
        headers["Authorization"] = f"Bearer {token}"
    url = f"{base.rstrip('/')}/api/chargers/{args.charger_id}/route"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15), headers=headers) as http:
            if args.reset:
                request = http.delete(url)
            else:
                request = http.put(url, json={"primary": args.primary, "shadow": args.shadow})
            async with request as resp:
                body = await resp.json(content_type=None)
    except aiohttp.ClientError as exc:
        print(f"ocpp-gateway: cannot reach the admin API at {base}: {exc}", file=sys.stderr)
        return 1
    if resp.status != 200:
        print(f"ocpp-gateway: {body.get('error', body)}", file=sys.stderr)
        return 1
    route = body["route"] or {}
    shadow = f", shadow {route['shadow']}" if route.get("shadow") else ""
    print(f"{args.charger_id}: primary {route.get('primary')}{shadow} (from {body['route_source']})")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:  # argparse.REMAINDER would reject `bench --quick`: the benchmark parses its own
        from gateway.bench import bench_command

        return bench_command(argv[1:])
    args = _parser().parse_args(argv)
    from gateway import logs as logsetup

    if args.command == "run":
        config = _load(args.config)
        logsetup.configure(config.logging.format, config.logging.level)
        try:
            return asyncio.run(_serve(config))
        except Exception as exc:  # start-up failures: one clear line, non-zero exit
            from mappings import MappingError

            if isinstance(exc, MappingError | OSError | ConfigError):
                print(f"ocpp-gateway: cannot start: {exc}", file=sys.stderr)
                return 1
            raise
    if args.command == "check-config":
        config = _load(args.config)
        from gateway.app import Gateway
        from mappings import MappingError

        try:
            rows = Gateway(config).check()
        except (MappingError, ConfigError) as exc:
            print(f"ocpp-gateway: {exc}", file=sys.stderr)
            return 2
        print(f"{args.config}: OK ({len(config.csms)} CSMS, {len(config.chargers)} chargers, {rows} mapping rows)")
        return 0
    if args.command == "demo":
        logsetup.configure("console", "warning")
        from gateway.demo import run_demo

        return run_demo(args)
    if args.command == "logs":
        store_url = args.store or "sqlite:///ocpp-gateway-demo.db"
        if args.config:
            store_url = _load(args.config).store
        from gateway.store.cli import logs_command

        try:
            return int(asyncio.run(logs_command(store_url, args.charger_id, args.limit, args.jsonl, args.follow)))
        except KeyboardInterrupt:
            return 0
    if args.command == "conformance":
        from gateway.conformance import conformance_command

        return conformance_command(args.charger, args.csms, args.markdown)
    if args.command == "vendor":
        from gateway.vendors.native import main as native_main

        return native_main(_load(args.config), args.charger_id, args.url)
    if args.command == "route":
        return asyncio.run(_route(args))
    if args.command == "report":
        from gateway.report import report_command

        return asyncio.run(report_command(_load(args.config), args.format, args.output))
    if args.command == "replay":
        from gateway.replay import replay_command

        return asyncio.run(replay_command(_load(args.config), args))
    if args.command == "bench":
        from gateway.bench import bench_command

        return int(bench_command(args.args))
    raise AssertionError(args.command)


def entry() -> Any:  # pragma: no cover
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
