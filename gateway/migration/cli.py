"""``ocpp-gateway migrate``: submit, preview, follow and steer migration plans through the admin API.

The plan runs inside the gateway; this command only talks to it, so the
plan survives the command exiting.
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import socket
import sys
from typing import Any

import aiohttp

from gateway.migration.plan import PlanError, parse_plan, read_plan_data


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _route(route: dict[str, Any] | None) -> str:
    if not route:
        return "config route"
    return str(route["primary"]) + (f" (shadow {route['shadow']})" if route.get("shadow") else "")


def _ids(ids: list[str], shown: int = 6) -> str:
    return ", ".join(ids[:shown]) + (f" ... (+{len(ids) - shown})" if len(ids) > shown else "")


def print_preview(body: dict[str, Any], source: str) -> None:
    waves = body["waves"]
    print(f"{source}: plan {body['name']}: {body['to_move']} charger(s) to {_route(body['route'])} "
          f"in {len(waves)} wave(s); {len(body['already_on_route'])} selected are there already")
    if body.get("exists"):
        print(f"  note: a plan named {body['name']} exists already; submitting needs another name")
    for cid, plan in sorted(body.get("in_other_plans", {}).items()):
        print(f"  note: {cid} belongs to running plan {plan}")
    blocked = None
    for wave in waves:
        ready = wave["readiness"]
        ids = [c["id"] for c in wave["chargers"]]
        verdict = "gate holds" if ready["ok"] else "gate fails: " + "; ".join(ready["reasons"])
        print(f"  wave {wave['wave']}: {len(ids)} charger(s): {_ids(ids)}")
        print(f"    readiness today: {verdict} (compared {ready['figures']['compared']}, "
              f"disagreement {ready['figures']['disagreement']:.1%})")
        if not ready["ok"] and blocked is None:
            blocked = wave["wave"]
    g = body["gates"]
    print(f"  gates: min_compared {g['min_compared']}, max_disagreement {g['max_disagreement']:.1%}, "
          f"max_callerror_rate {g['max_callerror_rate']:.1%}, max_connect_failures {g['max_connect_failures']}, "
          f"max_rejected_boots {g['max_rejected_boots']}, observe {g['observe']:g}s")
    if blocked is not None:
        print(f"  run now, the plan would stop before wave {blocked} (not ready)")
    print("  nothing was changed (dry run)")


def print_plans(plans: list[dict[str, Any]]) -> None:
    if not plans:
        print("no migration plans")
        return
    for p in plans:
        c = p["counts"]
        wave = f"wave {p['current_wave']}/{p['waves']}" if p["current_wave"] else f"{p['waves']} waves"
        print(f"{p['name']}: {p['status']}, {wave}; moved {c['moved']}, pending {c['pending'] + c['waiting']}, "
              f"rolled back {c['rolled_back']}, failed {c['failed']} of {p['chargers']}"
              + (f" ({p['reason']})" if p.get("reason") else ""))


def print_plan(plan: dict[str, Any]) -> None:
    print_plans([plan["summary"]])
    print(f"  submitted by {plan['actor']} at {_when(plan['created_at'])}; to {_route(plan['plan']['route'])}")
    for wave in plan["waves"]:
        line = f"  wave {wave['index']}: {wave['state']}, {len(wave['chargers'])} charger(s)"
        if wave.get("reason"):
            line += f" - {wave['reason']}"
        print(line)
    if plan["history"]:
        print("  history:")
    for h in plan["history"]:
        what = f"{h['charger']}: {_route(h['from'])} -> {_route(h['to'])}" if h["charger"] else ""
        where = f"wave {h['wave']} " if h["wave"] else ""
        reason = f" ({h['reason']})" if h.get("reason") else ""
        print(f"    {_when(h['ts'])} {h['actor']}: {where}{h['outcome']} {what}{reason}".rstrip())


async def run_migrate(args: argparse.Namespace, base: str, headers: dict[str, str]) -> int:
    """The migrate subcommand; 2 for a bad plan file, 1 when the gateway refuses or is unreachable."""
    headers = {**headers, "X-Actor": f"{getpass.getuser()}@{socket.gethostname()}"}
    command = next((c for c in ("pause", "resume", "abort") if getattr(args, c)), None)
    if args.status is None and command is None and not args.plan:
        print("ocpp-gateway migrate: name a plan file, or use --status, --pause, --resume or --abort",
              file=sys.stderr)
        return 2
    body: Any = None
    if args.status is None and command is None:
        try:
            body = read_plan_data(args.plan)
            parse_plan(body, args.plan)
        except PlanError as exc:
            for line in exc.problems:
                print(f"ocpp-gateway: {line}", file=sys.stderr)
            return 2
    try:
        async with aiohttp.ClientSession(base_url=base, timeout=aiohttp.ClientTimeout(total=60),
                                         headers=headers) as http:
            if args.status is not None:
                path = "/api/migration/plans" + (f"/{args.status}" if args.status else "")
                request = http.get(path, params={"history": str(args.history)} if args.status else None)
            elif command is not None:
                request = http.post(f"/api/migration/plans/{getattr(args, command)}/{command}")
            else:
                request = http.post("/api/migration/plans", json=body,
                                    params={"dry_run": "1"} if args.dry_run else None)
            async with request as resp:
                answer = await resp.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        print(f"ocpp-gateway: cannot reach the admin API at {base}: {exc}", file=sys.stderr)
        return 1
    if resp.status >= 300:
        problems = (answer.get("problems") or [answer.get("error", answer)]) if isinstance(answer, dict) else [answer]
        for line in problems:
            text = str(line)
            if args.plan and text.startswith("plan: "):
                text = f"{args.plan}: {text.removeprefix('plan: ')}"
            print(f"ocpp-gateway: {text}", file=sys.stderr)
        return 1
    if args.status == "":
        print_plans(answer)
    elif args.status:
        print_plan(answer)
    elif command is not None:
        print_plans([answer])
    elif args.dry_run:
        print_preview(answer, args.plan)
    else:
        print(f"{args.plan}: plan {answer['name']} submitted: {answer['chargers']} charger(s) in {answer['waves']} "
              f"wave(s); the gateway runs it. Follow it with: ocpp-gateway migrate --status {answer['name']}")
    return 0
