"""``ocpp-gateway``: the command line.

    ocpp-gateway run --config gateway.yaml
    ocpp-gateway demo [--chargers N] [--duration S]
    ocpp-gateway logs <charger_id> [--limit N] [--jsonl] [--follow] [--config F | --store URL]
    ocpp-gateway conformance [--charger V] [--csms V] [--markdown]
    ocpp-gateway check-config --config gateway.yaml [--connect]
    ocpp-gateway route <charger_id> --primary NEW [--shadow OLD] | --reset
    ocpp-gateway report --config F [--format text|json|csv|html] [--output FILE]
    ocpp-gateway replay --config F --charger ID|--all --csms NAME [--since T] [--until T] [--prefix P]
    ocpp-gateway migrate plan.yaml [--dry-run] | --status [NAME] | --pause|--resume|--abort NAME
    ocpp-gateway sim charger --ocpp 1.6 --url ws://host:9000/ocpp --id CP1 [--transactions N]
    ocpp-gateway sim csms --ocpp 2.0.1 --port 8180

Every subcommand's ``--help`` ends with examples.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import sys
import time
from typing import TYPE_CHECKING, Any

import structlog

from gateway.config import (
    ConfigError,
    GatewayConfig,
    load_config,
    read_config_data,
    salvage,
    shares_store,
    validate,
    worker_count,
    workers_problem,
)
from gateway.ocppj import Version

if TYPE_CHECKING:
    from gateway.workers import WorkerSlot


def _examples(*lines: str) -> str:
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


class _Subcommands:
    """``add_parser`` with the examples every subcommand's --help ends with."""

    def __init__(self, sub: Any) -> None:
        self.sub = sub

    def add(self, name: str, examples: list[str], **kwargs: Any) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = self.sub.add_parser(
            name, epilog=_examples(*examples), formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs
        )
        return parser


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ocpp-gateway",
        description="OCPP migration gateway: chargers connect to it as to their CSMS; it relays and translates "
        "every frame between OCPP 1.6J, 2.0.1 and 2.1 to the CSMS each charger is routed to.",
        epilog=_examples("ocpp-gateway check-config --config gateway.yaml --connect",
                         "ocpp-gateway run --config gateway.yaml", "ocpp-gateway demo --chargers 20",
                         "ocpp-gateway COMMAND --help"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = _Subcommands(p.add_subparsers(dest="command", required=True, metavar="COMMAND"))

    run = sub.add("run", ["ocpp-gateway run --config /etc/ocpp-gateway/gateway.yaml",
                         "ocpp-gateway run --config gateway.yaml --workers 4   # PostgreSQL store: 4 processes"],
                  help="run the gateway service",
                  description="Run the gateway until SIGTERM/SIGINT. Before listening it checks what check-config "
                  "checks without --connect; any problem stops it with exit status 2.")
    run.add_argument("--config", "-c", required=True, help="YAML configuration file")
    run.add_argument("--workers", type=_workers, metavar="N|auto",
                     help="processes sharing the charger port, instead of the config's workers: (docs/cluster.md)")
    run.add_argument("--worker", help=argparse.SUPPRESS)  # INDEX:FD:PORT, given by the supervisor to its workers

    check = sub.add(
        "check-config",
        ["ocpp-gateway check-config --config gateway.yaml",
         "ocpp-gateway check-config --config gateway.yaml --connect   # also reach the store and every CSMS"],
        help="validate a configuration file, its environment and mapping tables, then exit",
        description="Report every problem of a configuration in one run, one line each naming the file and the "
        "key: the file itself, mapping_dirs, the store location, TLS files, the environment variables it names "
        "(admin token, passwords, vendor credentials), the mapping tables and translator options. Creates nothing. "
        "Exit status 0 when all is well, 2 otherwise.",
    )
    check.add_argument("--config", "-c", required=True, help="YAML configuration file")
    check.add_argument("--connect", action="store_true",
                       help="also open the store (read only) and knock on every CSMS endpoint; say which answer")

    demo = sub.add(
        "demo", ["ocpp-gateway demo", "ocpp-gateway demo --chargers 200 --duration 120 --no-vendors"],
        help="self-contained demo: gateway + demo CSMS + simulated chargers with a live summary",
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

    logs = sub.add("logs", ["ocpp-gateway logs CP001 --config gateway.yaml --limit 20",
                            "ocpp-gateway logs CP001 --jsonl --follow --store sqlite:////var/lib/ocpp-gateway/gateway.db"],
                   help="print a charger's message log",
                   description="Print a charger's message log, oldest first. Exit status 1 when the store "
                   "cannot be read or holds no message for the charger.")
    logs.add_argument("charger_id")
    logs.add_argument("--limit", "-n", type=int, default=50)
    logs.add_argument("--jsonl", action="store_true", help="one JSON record per line")
    logs.add_argument("--follow", "-f", action="store_true", help="keep printing new records")
    src = logs.add_mutually_exclusive_group()
    src.add_argument("--config", "-c", help="read the store URL from this configuration file")
    src.add_argument("--store", help="store URL (default: the demo's sqlite:///ocpp-gateway-demo.db)")

    conf = sub.add("conformance", ["ocpp-gateway conformance --charger 1.6 --csms 2.0.1",
                                   "ocpp-gateway conformance --markdown > docs/conformance.md"],
                   help="print the conformance list of a charger/CSMS version pair",
                   description="Print, from the translators' own tables, what becomes of each message.")
    conf.add_argument("--charger", help="charger OCPP version (1.6, 2.0.1, 2.1); default: every pair")
    conf.add_argument("--csms", help="CSMS OCPP version (1.6, 2.0.1, 2.1); default: every pair")
    conf.add_argument("--markdown", action="store_true", help="Markdown (docs/conformance.md) instead of text")

    route = sub.add(
        "route",
        ["ocpp-gateway route CP001 --primary new --shadow legacy --config gateway.yaml",
         "ocpp-gateway route CP001 --reset --admin http://127.0.0.1:9100 --token-env GW_ADMIN_TOKEN"],
        help="cut a charger over to another CSMS, add a shadow, or roll back (via the admin API)",
        description="Set a charger's route on a running gateway without closing the charger's connection: the "
        "gateway introduces the charger to the new CSMS (its last boot, its connectors' status) and then switches "
        "its traffic. By default the switch waits until the charger's open transactions on the current CSMS end "
        "(see --deadline, --force, --now). The change is kept across restarts until --reset puts the config file's "
        "route back. Exit status: 0 applied or waiting, 1 refused, rejected or cancelled.",
    )
    route.add_argument("charger_id")
    target = route.add_mutually_exclusive_group(required=True)
    target.add_argument("--primary", help="the CSMS whose answers the charger gets")
    target.add_argument("--reset", action="store_true", help="roll back to the route in the config file")
    route.add_argument("--shadow", help="a CSMS that sees the charger's traffic without answering it")
    route.add_argument("--now", action="store_true",
                       help="switch at once; open transactions stay with the CSMS that started them until they end")
    route.add_argument("--deadline", metavar="WHEN",
                       help="how long to wait for open transactions: an ISO 8601 time (2026-05-01T22:00:00Z) or "
                       "+SECONDS from now; then --force switches anyway, otherwise the change is cancelled")
    route.add_argument("--force", action="store_true",
                       help="switch at the deadline (at once without one) even with transactions open")
    _admin_options(route)

    _migrate_parser(sub)

    native_example = "ocpp-gateway vendor native-ocpp easee-EH123456 --config gateway.yaml --url wss://gw.example/ocpp"
    vendor = sub.add("vendor", [native_example], help="vendor cloud chargers: move them to native OCPP")
    vsub = _Subcommands(vendor.add_subparsers(dest="vendor_command", required=True, metavar="VENDOR_COMMAND"))
    native = vsub.add(
        "native-ocpp", [native_example], help="point a cloud charger at the gateway's own OCPP URL (Easee)",
        description="Ask the vendor cloud to connect the charger natively (OCPP) to the gateway; the gateway keeps "
        "its charger id, route and history and the cloud adapter steps aside.",
    )
    native.add_argument("charger_id", help="the gateway's charger id (e.g. easee-EH123456)")
    native.add_argument("--config", "-c", required=True)
    native.add_argument("--url", help="the gateway's OCPP URL as the charger must reach it (ws(s)://host:port/ocpp)")

    _migration_parsers(sub)

    bench = sub.add("bench", ["ocpp-gateway bench --quick", "ocpp-gateway bench --json bench.json"],
                    help="benchmark the gateway against a direct connection (see README)")
    bench.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the benchmark script")

    _sim_parsers(sub)
    return p


def _admin_options(parser: argparse.ArgumentParser) -> None:
    """--admin URL | --config F, and --token-env: how a command finds a running gateway's admin API."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--admin", help="admin API base URL (default http://127.0.0.1:9100)")
    where.add_argument("--config", "-c",
                       help="take the admin address (and admin.token_env) from this configuration file")
    parser.add_argument("--token-env", metavar="NAME",
                        help="environment variable with the admin API's bearer token (default: the config's "
                        "admin.token_env)")


def _migrate_parser(sub: _Subcommands) -> None:
    migrate = sub.add(
        "migrate",
        ["ocpp-gateway migrate plan.yaml --dry-run --config gateway.yaml   # what would move; which gates hold",
         "ocpp-gateway migrate plan.yaml --config gateway.yaml             # submit: the gateway runs it",
         "ocpp-gateway migrate --status --config gateway.yaml              # every plan",
         "ocpp-gateway migrate --status move-west --config gateway.yaml    # one plan and its history",
         "ocpp-gateway migrate --pause move-west --admin http://127.0.0.1:9100 --token-env GW_ADMIN_TOKEN"],
        help="move many chargers in gated waves (a migration plan run by the gateway)",
        description="Submit a migration plan (docs/migration-plans.md) to a running gateway through its admin API. "
        "The gateway runs it (waves, pauses, gates, automatic roll-back) and keeps its progress in the store, so "
        "neither this command exiting nor a gateway restart stops it. Exit status 2 for a plan file with "
        "problems (one line each, naming the file and the key), 1 when the gateway refuses or cannot be reached.",
    )
    migrate.add_argument("plan", nargs="?", help="the plan file (YAML)")
    migrate.add_argument("--dry-run", action="store_true",
                         help="print what would move, in which waves, and which gates hold today; change nothing")
    action = migrate.add_mutually_exclusive_group()
    action.add_argument("--status", nargs="?", const="", metavar="NAME",
                        help="print every plan's progress, or one plan's waves and history")
    action.add_argument("--pause", metavar="NAME", help="pause a running plan after its current step")
    action.add_argument("--resume", metavar="NAME",
                        help="resume a paused plan, or retry a stopped plan from the wave that stopped it")
    action.add_argument("--abort", metavar="NAME", help="stop a plan for good where it is (no roll-back)")
    migrate.add_argument("--history", type=int, default=20, help="history entries shown with --status NAME")
    _admin_options(migrate)


def _workers(text: str) -> int | str:
    if text == "auto":
        return text
    if text.isdigit() and int(text) >= 1:
        return int(text)
    raise argparse.ArgumentTypeError("a number of processes (1 or more) or auto")


def _version(text: str) -> Version:
    try:
        return Version.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _sim_parsers(sub: _Subcommands) -> None:
    sim = sub.add("sim", ["ocpp-gateway sim csms --ocpp 2.0.1 --port 8181",
                          "ocpp-gateway sim charger --ocpp 1.6 --url ws://127.0.0.1:9000/ocpp --id CP001"],
                  help="a strict simulated charger or CSMS, to try the gateway without writing code",
                  description="The strict recording peers the tests use: they print every frame and what the "
                  "other side got wrong, and exit 1 if it broke a rule.")
    ssub = _Subcommands(sim.add_subparsers(dest="sim_command", required=True, metavar="PEER"))
    charger = ssub.add(
        "charger",
        ["ocpp-gateway sim charger --ocpp 1.6 --url ws://127.0.0.1:9000/ocpp --id CP001 --transactions 2",
         "ocpp-gateway sim charger --ocpp 2.0.1 --url ws://127.0.0.1:9000/ocpp --id CP002 --password-env CP002_PW "
         "--stay"],
        help="connect one simulated charger, boot it and run charging sessions",
        description="Connect to <url>/<id>, boot (BootNotification, StatusNotification, Heartbeat), run N "
        "charging sessions (Authorize, start, meter values, stop) and disconnect; with --stay keep answering "
        "the CSMS (remote start, configuration, ...) until Ctrl-C. Exit 0 when every step succeeded and the "
        "server broke no rule.",
    )
    charger.add_argument("--ocpp", type=_version, required=True, help="1.6, 2.0.1 or 2.1")
    charger.add_argument("--url", required=True, help="the gateway's (or a CSMS's) endpoint; the id is appended")
    charger.add_argument("--id", required=True, dest="charger_id", help="charger id")
    charger.add_argument("--transactions", "-n", type=int, default=1, help="charging sessions to run (default 1)")
    charger.add_argument("--id-tag", default="SIMTAG0001", help="the token presented (default SIMTAG0001)")
    charger.add_argument("--energy", type=int, default=5000, help="Wh charged per session (default 5000)")
    charger.add_argument("--meter-interval", type=float, default=1.0,
                         help="seconds between the 3 meter values of a session (default 1)")
    charger.add_argument("--password-env", metavar="NAME", help="environment variable with the HTTP Basic password")
    charger.add_argument("--stay", action="store_true", help="stay connected after the sessions until Ctrl-C")
    charger.add_argument("--quiet", "-q", action="store_true", help="do not print every frame")
    csms = ssub.add(
        "csms", ["ocpp-gateway sim csms --ocpp 2.0.1 --port 8181", "ocpp-gateway sim csms --ocpp 1.6 --port 8180 -q"],
        help="run a strict simulated CSMS that accepts every charger",
        description="Listen on ws://HOST:PORT/ocpp/<charger_id>, answer every CALL validly, validate every frame "
        "against the OCPP schemas, print each one, and on SIGINT/SIGTERM (or after --duration) print the "
        "chargers, transactions and violations seen. Exit 1 if any charger broke a rule.",
    )
    csms.add_argument("--ocpp", type=_version, required=True, help="1.6, 2.0.1 or 2.1")
    csms.add_argument("--port", type=int, default=8180, help="port to listen on (default 8180; 0 = any)")
    csms.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    csms.add_argument("--duration", type=float, help="stop after this many seconds (default: until Ctrl-C)")
    csms.add_argument("--quiet", "-q", action="store_true", help="do not print every frame")


def _migration_parsers(sub: _Subcommands) -> None:
    """``report`` and ``replay``: is a new CSMS ready for these chargers (docs/shadow-and-compare.md)."""
    report = sub.add(
        "report", ["ocpp-gateway report --config gateway.yaml",
                   "ocpp-gateway report --config gateway.yaml --format html --output migration.html"],
        help="migration report: per charger, does the new CSMS answer like the old one, is it ready",
        description="Read the shadow comparisons from the store (the gateway may be stopped) and write the "
        "estate's migration report.",
    )
    report.add_argument("--config", "-c", required=True)
    report.add_argument("--format", choices=("text", "json", "csv", "html"), default="text")
    report.add_argument("--output", "-o", help="write to this file instead of standard output")
    replay = sub.add(
        "replay", ["ocpp-gateway replay --config gateway.yaml --charger CP001 --csms new",
                   "ocpp-gateway replay --config gateway.yaml --all --csms new --since 2026-11-29T00:00:00Z "
                   "--format html -o replay.html"],
        help="send recorded charger CALLs to a candidate CSMS and compare its answers with the log's",
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
        for line in exc.problems:
            print(f"ocpp-gateway: {line}", file=sys.stderr)
        raise SystemExit(2) from None


def _check_config(path: str, connect: bool) -> int:
    """Every problem of the file in one run: the file, its environment, the tables (and with --connect, peers)."""
    from gateway import checks

    try:
        data = read_config_data(path)
    except ConfigError as exc:
        for line in exc.problems:
            print(f"ocpp-gateway: {line}", file=sys.stderr)
        return 2
    config, problems = validate(data, path)
    rows = 0
    if config is not None:
        findings = checks.static_problems(config)
        rows, table_findings = checks.table_problems(config)
        findings += table_findings
        if connect:
            findings += asyncio.run(checks.connect_report(config))
    elif isinstance(data, dict):
        # The tables and peers need a valid file; what it points at can be checked from the parts that are.
        findings = checks.static_problems(salvage(data))
    else:
        findings = []
    problems += [f"{path}: {f}" for f in findings if not f.ok]
    problems = list(dict.fromkeys(problems))  # a bad store URL is found by the check and by --connect
    for f in findings:
        if f.ok:
            print(f"{path}: {f}")
    for line in problems:
        print(f"ocpp-gateway: {line}", file=sys.stderr)
    if problems or config is None:
        print(f"ocpp-gateway: {path}: {len(problems)} problem{'s' if len(problems) != 1 else ''}", file=sys.stderr)
        return 2
    print(f"{path}: OK ({len(config.csms)} CSMS, {len(config.chargers)} chargers, {rows} mapping rows)")
    return 0


def _refuse_start(path: str, config: GatewayConfig) -> bool:
    """Print what would stop the gateway from working (check-config's checks, without --connect)."""
    from gateway.checks import static_problems

    problems = [f for f in static_problems(config) if not f.ok]
    for f in problems:
        print(f"ocpp-gateway: cannot start: {path}: {f}", file=sys.stderr)
    return bool(problems)


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


async def _serve(config: GatewayConfig, slot: WorkerSlot | None = None) -> int:
    """Run one gateway process: the whole gateway, or (``slot``) one of a supervisor's workers."""
    from gateway.app import Gateway
    from gateway.logs import get_logger

    limit = raise_open_files_limit()
    if limit < 4 * 1024:
        get_logger().warning("open_files_limit_low", limit=limit,
                             hint="each charger needs two sockets; raise LimitNOFILE / ulimit -n")

    # A worker shares the charger port; vendor clouds are polled by worker 0 alone (one poller per account).
    gw = Gateway(config, reuse_port=slot is not None, run_vendors=slot is None or slot.index == 0)
    # Before start: a SIGTERM while starting (or right after "gateway_started") is a clean stop, not a kill.
    from gateway.workers import on_stop_signal

    stop = asyncio.Event()
    on_stop_signal(stop.set)
    try:
        await gw.start()
    except BaseException:
        await gw.store.close()
        raise
    if slot is not None:
        from gateway.workers import report_ready

        report_ready(slot, gw)
    tune_gc()
    await stop.wait()
    await gw.stop()
    return 0


def _admin_api(args: argparse.Namespace) -> tuple[str, dict[str, str]] | None:
    """The admin API's base URL and request headers from --admin/--config/--token-env (None: a message said why)."""
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
            return None
        headers["Authorization"] = f"Bearer {token}"
    return base.rstrip("/"), headers


async def _route(args: argparse.Namespace) -> int:
    import aiohttp

    api = _admin_api(args)
    if api is None:
        return 1
    base, headers = api
    url = f"{base}/api/chargers/{args.charger_id}/route"
    options: dict[str, object] = {"when": "now" if args.now else "idle", "force": args.force}
    if args.deadline:
        deadline = args.deadline.strip()
        options["deadline"] = time.time() + float(deadline[1:]) if deadline.startswith("+") else deadline
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60), headers=headers) as http:
            if args.reset:
                request = http.delete(url, json=options)
            else:
                request = http.put(url, json={"primary": args.primary, "shadow": args.shadow, **options})
            async with request as resp:
                body = await resp.json(content_type=None)
    except aiohttp.ClientError as exc:
        print(f"ocpp-gateway: cannot reach the admin API at {base}: {exc}", file=sys.stderr)
        return 1
    if resp.status not in (200, 202):
        print(f"ocpp-gateway: {body.get('reason') or body.get('error', body)}", file=sys.stderr)
        return 1
    route = body["route"] or {}
    shadow = f", shadow {route['shadow']}" if route.get("shadow") else ""
    if body.get("state") == "pending":
        until = f" until {_iso(body['deadline'])}" if body.get("deadline") else ""
        print(f"{args.charger_id}: pending primary {route.get('primary')}{shadow}: {body.get('reason')}{until}")
        return 0
    note = f"; {body['reason']}" if body.get("reason") else ""
    print(f"{args.charger_id}: primary {route.get('primary')}{shadow} (from {body['route_source']}){note}")
    return 0


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:  # argparse.REMAINDER would reject `bench --quick`: the benchmark parses its own
        from gateway.bench import bench_command

        return bench_command(argv[1:])
    args = _parser().parse_args(argv)
    from gateway import logs as logsetup

    if args.command == "run":
        return _run(args.config, args.workers, args.worker)
    if args.command == "check-config":
        return _check_config(args.config, args.connect)
    if args.command == "sim":
        return _sim(args)
    if args.command == "demo":
        logsetup.configure("console", "warning")
        from gateway.demo import run_demo

        return run_demo(args)
    if args.command == "logs":
        store_url = args.store or "sqlite:///ocpp-gateway-demo.db"
        if args.config:
            store_url = _load(args.config).store
        from gateway.store.cli import run_logs

        return run_logs(store_url, args.charger_id, args.limit, args.jsonl, args.follow)
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
    if args.command == "migrate":
        from gateway.migration.cli import run_migrate

        api = _admin_api(args)
        return 1 if api is None else asyncio.run(run_migrate(args, *api))
    if args.command == "bench":
        from gateway.bench import bench_command

        return int(bench_command(args.args))
    raise AssertionError(args.command)


def _run(path: str, workers: int | str | None = None, worker: str | None = None) -> int:
    from gateway import logs as logsetup
    from gateway.store import StoreError
    from mappings import MappingError

    config = _load(path)
    if workers is not None:
        config = config.model_copy(update={"workers": workers})
        problem = workers_problem(workers, config.store)
        if problem is not None:
            print(f"ocpp-gateway: cannot start: {path}: {problem} (--workers {workers})", file=sys.stderr)
            return 2
    if _refuse_start(path, config):
        return 2
    logsetup.configure(config.logging.format, config.logging.level)
    count = worker_count(config.workers, config.store)
    slot: WorkerSlot | None = None
    if worker is not None:
        from gateway.workers import WorkerSlot, die_with_supervisor, worker_config

        slot = WorkerSlot.parse(worker)
        die_with_supervisor()
        config = worker_config(config, slot)
        structlog.contextvars.bind_contextvars(worker=slot.index)
    elif count > 1:
        from gateway.workers import supervise

        return supervise(path, config, count)
    elif config.workers == "auto":
        from gateway.logs import get_logger

        why = "a SQLite store is one process's" if not shares_store(config.store) else "one core"
        get_logger().info("workers", workers=1, reason=f"workers: auto runs one process here ({why})")
    try:
        return asyncio.run(_serve(config, slot))
    except StoreError as exc:  # start-up failures: one line naming the key and the cause
        print(f"ocpp-gateway: cannot start: {path}: store: {exc}", file=sys.stderr)
        return 2
    except (MappingError, ConfigError) as exc:
        print(f"ocpp-gateway: cannot start: {path}: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the port is taken, a certificate cannot be read, ...
        print(f"ocpp-gateway: cannot start: {exc}", file=sys.stderr)
        return 1


def _sim(args: argparse.Namespace) -> int:
    from gateway.sim import cli as sim

    if args.sim_command == "csms":
        return asyncio.run(sim.run_csms(args.ocpp, args.host, args.port, args.duration, args.quiet))
    password = None
    if args.password_env:
        password = os.environ.get(args.password_env)
        if not password:
            print(f"ocpp-gateway sim charger: environment variable {args.password_env} is not set", file=sys.stderr)
            return 2
    return asyncio.run(sim.run_charger(
        args.ocpp, args.url, args.charger_id, args.transactions, password=password, id_tag=args.id_tag,
        energy_wh=args.energy, meter_interval=args.meter_interval, stay=args.stay, quiet=args.quiet,
    ))


def entry() -> Any:  # pragma: no cover
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
