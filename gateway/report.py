"""The migration report: per charger, is the new CSMS ready for it, and where does it answer differently.

One view serves three readers: ``GET /api/migration`` (a running gateway),
``ocpp-gateway report`` (the store of a running or stopped gateway) and
``ocpp-gateway replay`` (a candidate CSMS tried against recorded traffic).
``charger_row`` builds one charger's line from its route, its comparisons
(``gateway.compare``) and its translation state; ``estate_report`` adds the
estate's totals per action and the differing exchanges; ``render`` writes
the report as text, JSON, CSV or one self-contained HTML page.
"""

from __future__ import annotations

import csv
import html
import io
import sys
import time
from collections.abc import Iterable, Mapping
from typing import Any, TextIO

import orjson

from gateway.compare import (
    DEFAULT_READY_AFTER,
    KINDS,
    STATE_PREFIX,
    ChargerComparisons,
    Tally,
    readiness,
)
from gateway.config import GatewayConfig, Route
from gateway.store import Store, StoreError, iso_utc, open_store

GATEWAY_STATE = "__gateway__"  # the store's state slot for gateway-wide state (route overrides until 0.x)
ROUTE_KEY = "__route__:"  # + charger id: that charger's route record (override, latest change, history)
FORMATS = ("text", "json", "csv", "html")
# Translator namespaces that keep the charger's running transactions (adapters/*/state.py).
_TX_NAMESPACES = ("v16_v201", "v201_v16")


def phase(route: Route | None, config_route: Route | None, comparisons: ChargerComparisons | None) -> str:
    """legacy-only, shadowing or cut-over, from the charger's route (unrouted: the gateway refuses it)."""
    if route is None:
        return "unrouted"
    if route.shadow is not None:
        return "shadowing"
    moved = config_route is not None and route.primary != config_route.primary
    if moved or (comparisons is not None and route.primary in comparisons.targets):
        return "cut-over"
    return "legacy-only"


def open_transactions(state: Mapping[str, Any] | None) -> int | None:
    """Transactions the translator holds open for the charger; None where the gateway keeps no such state."""
    if not state:
        return None
    ledger = state.get("transactions")  # gateway.connection.ledger: every open transaction and its owner
    if isinstance(ledger, dict):
        return len(ledger)
    found: int | None = None
    spaces = [(k, v) for k, v in state.items() if isinstance(v, dict)]
    per_csms = state.get("primary")  # translator state kept per CSMS (gateway.connection.charger)
    if isinstance(per_csms, dict):
        spaces.extend((k, v) for space in per_csms.values() if isinstance(space, dict)
                      for k, v in space.items() if isinstance(v, dict))
    for key, space in list(spaces):
        if key.startswith(("outer:", "inner:")):  # a composed translator's levels
            spaces.extend((k, v) for k, v in space.items() if isinstance(v, dict))
    for key, space in spaces:
        if key in _TX_NAMESPACES and isinstance(space.get("tx"), dict):
            running = sum(1 for tx in space["tx"].values() if isinstance(tx, dict) and not tx.get("ended"))
            found = (found or 0) + running
    return found


def charger_row(charger_id: str, route: Route | None, config_route: Route | None,
                comparisons: ChargerComparisons | None, state: Mapping[str, Any] | None,
                ready_after: int = DEFAULT_READY_AFTER, connected: bool | None = None,
                target: str | None = None, offline_queue: int | None = None) -> dict[str, Any]:
    """One charger's line of the migration view; ``target``: judge it against this CSMS (default: from its route);
    ``offline_queue``: messages store-and-forward keeps for its CSMSs (None: unknown)."""
    if target is None:
        preferred = (route.shadow, route.primary) if route is not None else ()
        target = comparisons.main_target(preferred) if comparisons is not None else None
    if target is None and route is not None:
        target = route.shadow
    by_action: dict[str, dict[str, int]] = {}
    total = Tally()
    if comparisons is not None and target in comparisons.targets:
        for action, t in sorted(comparisons.targets[target].by_action.items()):
            by_action[action] = t.as_dict()
        total = comparisons.targets[target].total()
    last = comparisons.latest(limit=1) if comparisons is not None else []
    return {
        "id": charger_id,
        "connected": connected,
        "route": route.model_dump() if route is not None else None,
        "phase": phase(route, config_route, comparisons),
        "csms": target,
        **total.as_dict(),
        "actions": by_action,
        "last_difference": _brief(last[0]) if last else None,
        "open_transactions": open_transactions(state),
        "offline_queue": offline_queue,
        "readiness": readiness(comparisons, target, ready_after),
    }


def _brief(entry: Mapping[str, Any]) -> dict[str, Any]:
    return {"ts": iso_utc(entry["ts"]), "csms": entry["csms"], "action": entry["action"],
            "unique_id": entry["unique_id"], "differences": entry["differences"]}


def difference_view(charger_id: str, entry: Mapping[str, Any]) -> dict[str, Any]:
    """A kept differing exchange as the API and the report show it."""
    return {"charger_id": charger_id, **entry, "ts": iso_utc(entry["ts"])}


def migration_view(rows: list[dict[str, Any]], ready_after: int) -> dict[str, Any]:
    """The rows with the estate's summary: how many chargers in each phase, how many ready."""
    phases: dict[str, int] = {}
    for row in rows:
        phases[row["phase"]] = phases.get(row["phase"], 0) + 1
    return {
        "ready_after": ready_after,
        "summary": {
            "chargers": len(rows),
            "ready": sum(1 for r in rows if r["readiness"]["ready"]),
            "phases": phases,
            "compared": sum(r["compared"] for r in rows),
            "agreed": sum(r["agreed"] for r in rows),
            "differed": sum(r["differed"] for r in rows),
        },
        "chargers": rows,
    }


def estate_report(view: dict[str, Any], comparisons: Mapping[str, ChargerComparisons], source: str,
                  now: float | None = None) -> dict[str, Any]:
    """The migration view plus, per action, the estate's tallies and every kept differing exchange."""
    actions: dict[str, dict[str, Any]] = {}
    differences: list[dict[str, Any]] = []
    for row in view["chargers"]:
        for action, t in row["actions"].items():
            a = actions.setdefault(action, {"compared": 0, "agreed": 0, "differed": 0,
                                            "kinds": dict.fromkeys(KINDS, 0)})
            for key in ("compared", "agreed", "differed"):
                a[key] += t[key]
        book = comparisons.get(row["id"])
        if book is None or row["csms"] is None:
            continue
        for entry in book.latest():
            if entry["csms"] != row["csms"]:
                continue
            differences.append(difference_view(row["id"], entry))
            a = actions.setdefault(entry["action"], {"compared": 0, "agreed": 0, "differed": 0,
                                                     "kinds": dict.fromkeys(KINDS, 0)})
            for d in entry["differences"]:
                a["kinds"][d["kind"]] += 1
    differences.sort(key=lambda d: (d["action"], d["ts"], d["charger_id"]))
    return {"generated_at": iso_utc(time.time() if now is None else now), "source": source, **view,
            "actions": dict(sorted(actions.items())), "differences": differences}


# ------------------------------------------------------------------------------- from a store (offline)


async def report_from_store(config: GatewayConfig, store: Store) -> dict[str, Any]:
    """The estate's report from the store alone: works while the gateway is stopped."""
    states = await store.load_states("")
    kept = config.migration.differences_kept
    comparisons = {key.removeprefix(STATE_PREFIX): ChargerComparisons.restore(value, kept)
                   for key, value in states.items() if key.startswith(STATE_PREFIX)}
    saved_routes: dict[str, Any] = dict(states.get(GATEWAY_STATE, {}).get("routes", {}))  # before route records
    saved_routes.update({key.removeprefix(ROUTE_KEY): record.get("override") for key, record in states.items()
                         if key.startswith(ROUTE_KEY)})
    overrides: dict[str, Route] = {}
    for cid, raw in saved_routes.items():
        try:
            overrides[cid] = Route.model_validate(raw)
        except ValueError:
            continue
    # Only chargers' own states: the gateway's records (routes, charger records, plans) are keyed "__...".
    translation = {k: v for k, v in states.items() if not k.startswith(("__", STATE_PREFIX))}
    ids = sorted({*config.chargers, *comparisons, *overrides, *translation})
    queued = await store.offline_queue_depths()
    rows = [charger_row(cid, overrides.get(cid) or config.route_for(cid), config.route_for(cid),
                        comparisons.get(cid), translation.get(cid), config.migration.ready_after,
                        offline_queue=queued.get(cid, 0))
            for cid in ids]
    view = migration_view(rows, config.migration.ready_after)
    return estate_report(view, comparisons, f"store {store.description}")


# ------------------------------------------------------------------------------------------ rendering


def render(report: dict[str, Any], fmt: str) -> str:
    """The report as ``text``, ``json``, ``csv`` or ``html``."""
    if fmt == "json":
        return orjson.dumps(report, option=orjson.OPT_INDENT_2).decode() + "\n"
    if fmt == "csv":
        return _csv(report)
    if fmt == "html":
        return _html(report)
    if fmt == "text":
        return _text(report)
    raise ValueError(f"unknown report format {fmt!r} (one of {', '.join(FORMATS)})")


def _rate(agreed: int, compared: int) -> str:
    return f"{100.0 * agreed / compared:.1f}%" if compared else "-"


def _route_text(route: Mapping[str, Any] | None) -> str:
    if route is None:
        return "-"
    return str(route["primary"]) + (f" (shadow {route['shadow']})" if route.get("shadow") else "")


def _table(header: list[str], rows: Iterable[list[str]]) -> list[str]:
    rows = list(rows)
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    return [line, "  ".join("-" * w for w in widths),
            *("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)]


def _text(report: dict[str, Any]) -> str:
    s = report["summary"]
    out = [f"Migration report ({report['source']}, {report['generated_at']})",
           f"{s['ready']} of {s['chargers']} chargers ready to move; {s['compared']} exchanges compared, "
           f"{s['agreed']} agreed, {s['differed']} differed (ready after {report['ready_after']} clean exchanges)",
           ""]
    out += _table(["charger", "phase", "route", "compared", "agreed", "differed", "ready", "why not"],
                  ([r["id"], r["phase"], _route_text(r["route"]), str(r["compared"]), str(r["agreed"]),
                    str(r["differed"]), "yes" if r["readiness"]["ready"] else "no",
                    "; ".join(r["readiness"]["reasons"])] for r in report["chargers"]))
    if report["actions"]:
        out += ["", "By action:"]
        out += _table(["action", "compared", "agreed", "differed", "agreement", "kinds of difference"],
                      ([a, str(t["compared"]), str(t["agreed"]), str(t["differed"]),
                        _rate(t["agreed"], t["compared"]),
                        ", ".join(f"{k} {n}" for k, n in t["kinds"].items() if n)]
                       for a, t in report["actions"].items()))
    if report["differences"]:
        out += ["", "Differences (newest kept per charger):"]
        for d in report["differences"]:
            out.append(f"  {d['ts']}  {d['charger_id']}  {d['action']}  {d['unique_id']}")
            for diff in d["differences"]:
                out.append(f"      {diff['kind']:<8} {diff['path']}: primary {_json(diff['primary'])}, "
                           f"{d['csms']} {_json(diff['shadow'])}")
    return "\n".join(out) + "\n"


def _json(value: Any, indent: bool = False) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2 if indent else 0).decode()


CSV_COLUMNS = ("charger_id", "phase", "primary", "shadow", "csms", "compared", "agreed", "differed", "ready",
               "reasons", "last_difference_action", "last_difference_at", "open_transactions", "offline_queue")


def _csv(report: dict[str, Any]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in report["chargers"]:
        route = r["route"] or {}
        last = r["last_difference"] or {}
        writer.writerow([r["id"], r["phase"], route.get("primary", ""), route.get("shadow") or "", r["csms"] or "",
                         r["compared"], r["agreed"], r["differed"], "yes" if r["readiness"]["ready"] else "no",
                         "; ".join(r["readiness"]["reasons"]), last.get("action", ""), last.get("ts", ""),
                         "" if r["open_transactions"] is None else r["open_transactions"],
                         "" if r["offline_queue"] is None else r["offline_queue"]])
    return buf.getvalue()


_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:2em}
table{border-collapse:collapse;margin:.5em 0 1.5em}
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}
th{background:#f2f2f2}td.num{text-align:right}
.ready{color:#16691c;font-weight:600}.not-ready{color:#a11;font-weight:600}
pre{margin:0;font:12px/1.3 ui-monospace,monospace;white-space:pre-wrap;max-width:38em}
.kind-status,.kind-error,.kind-missing,.kind-timeout{color:#a11}
"""


def _html(report: dict[str, Any]) -> str:
    e = html.escape
    s = report["summary"]
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Migration report {e(report['generated_at'])}</title><style>{_CSS}</style></head><body>",
        "<h1>Is the new CSMS ready for these chargers?</h1>",
        f"<p>{e(report['source'])}, generated {e(report['generated_at'])}. "
        f"<strong>{s['ready']} of {s['chargers']}</strong> chargers ready to move. {s['compared']} exchanges "
        f"compared: {s['agreed']} agreed, {s['differed']} differed. A charger is ready after "
        f"{report['ready_after']} exchanges in a row without a status, error, missing or timeout difference.</p>",
        '<h2>Chargers</h2><table id="chargers"><thead><tr><th>Charger</th><th>Phase</th><th>Route</th>'
        "<th>Compared</th><th>Agreed</th><th>Differed</th><th>Open transactions</th><th>Ready</th>"
        "<th>Why not</th></tr></thead><tbody>",
    ]
    for r in report["chargers"]:
        ready = r["readiness"]["ready"]
        parts.append(
            f"<tr><td>{e(r['id'])}</td><td>{e(r['phase'])}</td><td>{e(_route_text(r['route']))}</td>"
            f"<td class=num>{r['compared']}</td><td class=num>{r['agreed']}</td><td class=num>{r['differed']}</td>"
            f"<td class=num>{'' if r['open_transactions'] is None else r['open_transactions']}</td>"
            f"<td class={'ready' if ready else 'not-ready'}>{'ready' if ready else 'not ready'}</td>"
            f"<td>{e('; '.join(r['readiness']['reasons']))}</td></tr>")
    parts.append("</tbody></table>")
    if report["actions"]:
        parts.append('<h2>By action</h2><table id="actions"><thead><tr><th>Action</th><th>Compared</th>'
                     "<th>Agreed</th><th>Differed</th><th>Agreement</th><th>Kinds of difference</th></tr></thead>"
                     "<tbody>")
        for action, t in report["actions"].items():
            kinds = ", ".join(f"{k} {n}" for k, n in t["kinds"].items() if n)
            parts.append(f"<tr><td>{e(action)}</td><td class=num>{t['compared']}</td><td class=num>{t['agreed']}"
                         f"</td><td class=num>{t['differed']}</td><td class=num>{_rate(t['agreed'], t['compared'])}"
                         f"</td><td>{e(kinds)}</td></tr>")
        parts.append("</tbody></table>")
    by_action: dict[str, list[dict[str, Any]]] = {}
    for d in report["differences"]:
        by_action.setdefault(d["action"], []).append(d)
    for action, items in by_action.items():
        parts.append(f'<h2>{e(action)}: answers that differed</h2><table class="differences" '
                     f'data-action="{e(action)}"><thead><tr><th>When</th><th>Charger</th><th>Request</th>'
                     "<th>Differences</th><th>Primary answered</th><th>Compared CSMS answered</th></tr></thead><tbody>")
        for d in items:
            diffs = "".join(f'<li class="kind-{e(x["kind"])}">{e(x["kind"])} <code>{e(x["path"])}</code>: '
                            f"{e(_json(x['primary']))} vs {e(_json(x['shadow']))}</li>" for x in d["differences"])
            parts.append(f"<tr><td>{e(d['ts'])}</td><td>{e(d['charger_id'])}</td>"
                         f"<td><pre>{e(_json(d['request'], True))}</pre></td><td><ul>{diffs}</ul></td>"
                         f"<td><pre>{e(_json(d['primary'], True))}</pre></td>"
                         f"<td><pre>{e(_json(d['shadow'], True))}</pre></td></tr>")
        parts.append("</tbody></table>")
    if not by_action:
        parts.append("<p>No differing answers were kept.</p>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def open_for_reading(config: GatewayConfig, command: str, err: TextIO) -> Store | None:
    """The configured store, not started (reads only, no pruning); None after saying why it cannot be."""
    try:
        return open_store(config.store, retention_days=None)
    except ValueError as exc:
        print(f"ocpp-gateway {command}: {exc}", file=err)
        return None


def emit(report: dict[str, Any], fmt: str, output: str | None, out: TextIO, err: TextIO, command: str) -> int:
    """Print the report, or write it to ``output`` (a file an operator can mail); the exit code."""
    text = render(report, fmt)
    if output is None or output == "-":
        out.write(text)
        out.flush()
        return 0
    try:
        with open(output, "w", encoding="utf-8") as fh:
            fh.write(text)
    except OSError as exc:
        print(f"ocpp-gateway {command}: cannot write {output}: {exc.strerror}", file=err)
        return 1
    return 0


async def report_command(config: GatewayConfig, fmt: str, output: str | None, out: TextIO = sys.stdout,
                         err: TextIO = sys.stderr) -> int:
    """``ocpp-gateway report``: the estate's migration report from the store; exit 1 if it cannot be read."""
    store = open_for_reading(config, "report", err)
    if store is None:
        return 1
    try:
        data = await report_from_store(config, store)
    except StoreError as exc:
        print(f"ocpp-gateway report: {exc}", file=err)
        return 1
    finally:
        await store.close()
    return emit(data, fmt, output, out, err, "report")
