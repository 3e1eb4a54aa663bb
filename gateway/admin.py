"""The admin HTTP API (aiohttp): metrics, health, chargers and their message logs.

It sees the estate only through ``gateway.estate.AdminEstate``. Every body,
errors included, is built by a JSON encoder: ids and messages are data, never
pasted into JSON text.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any, NoReturn

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from pydantic import ValidationError

from gateway import console, security
from gateway.config import Route
from gateway.estate import AdminEstate, MigrationRequestError
from gateway.routing import WHEN_VALUES, RouteChange, RouteChangeState, RouteError
from gateway.store import StoreError
from gateway.vendors.metrics import VendorMetrics

GATEWAY_KEY: web.AppKey[AdminEstate] = web.AppKey("gateway")
MAX_LIMIT = 10_000


def _fail(error: type[web.HTTPError], message: str, **extra: Any) -> NoReturn:
    """Answer with ``error`` and the JSON body ``{"error": message, **extra}``."""
    raise error(text=json.dumps({"error": message, **extra}), content_type="application/json")


async def metrics(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY_KEY]
    stats = gw.store.stats
    gw.metrics.store_log.update(stats)
    gw.metrics.store_queue.set(stats.get("queue_depth", 0))
    now = time.monotonic()
    if gw.metrics.phases_due(now):
        gw.metrics.set_phases(gw.migration()["summary"]["phases"], now)
    _know_estate(gw)
    return web.Response(body=gw.metrics.exposition(), content_type="text/plain", charset="utf-8",
                        headers={"X-Content-Type-Options": "nosniff"})


def _know_estate(gw: AdminEstate) -> None:
    """Series the configuration implies start at 0 (CSMS links, shadow comparisons, vendor accounts)."""
    config = gw.config
    routes = [config.default_route, *(c.route for c in config.chargers.values()),
              *(a.route for a in config.vendors.values())]
    gw.metrics.know_estate(config.csms, {r.shadow for r in routes if r is not None and r.shadow is not None})
    vendor = getattr(gw.metrics, "vendor", None)
    if isinstance(vendor, VendorMetrics):
        for name, account in config.vendors.items():
            vendor.know_account(account.adapter, name)


async def healthz(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY_KEY]
    # Still 200 while the store is away: chargers are served (their sessions wait), so a load balancer keeps us.
    return web.json_response({"status": "ok", "chargers_connected": gw.connected_count(), **gw.store_status()})


async def chargers(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY_KEY]
    return web.json_response(gw.describe_chargers())


async def charger(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY_KEY]
    cid = request.match_info["id"]
    await gw.refresh_record(cid)
    for item in gw.describe_chargers():
        if item["id"] == cid:
            change = gw.route_change(cid)
            item["route_change"] = change.as_dict() if change is not None else None
            item["route_history"] = gw.route_history(cid)
            return web.json_response(item)
    _fail(web.HTTPNotFound, f"unknown charger {cid}")


def _int_param(request: web.Request, name: str, default: int | None, lo: int, hi: int) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        _fail(web.HTTPBadRequest, f"{name} must be an integer")
    if not lo <= value <= hi:
        _fail(web.HTTPBadRequest, f"{name} must be between {lo} and {hi}")
    return value


async def messages(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY_KEY]
    cid = request.match_info["id"]
    limit = _int_param(request, "limit", 100, 1, MAX_LIMIT) or 100
    after = _int_param(request, "after_id", None, 0, 2**62)
    try:
        records = await gw.store.messages(cid, limit=limit, after_id=after)
    except StoreError as exc:
        _fail(web.HTTPServiceUnavailable, f"message log unavailable: {exc}")
    return web.json_response(records)


async def differences(request: web.Request) -> web.Response:
    """The shadow answers that differed from the primary's, newest last (?limit=N&action=A)."""
    gw = request.app[GATEWAY_KEY]
    cid = request.match_info["id"]
    limit = _int_param(request, "limit", None, 1, MAX_LIMIT)
    found = await gw.differences(cid, limit, request.query.get("action") or None)
    if found is None:
        _fail(web.HTTPNotFound, f"unknown charger {cid}")
    return web.json_response(found, dumps=_dumps)


async def migration(request: web.Request) -> web.Response:
    """Per charger: route, phase, comparisons, open transactions, offline queue, readiness."""
    return web.json_response(request.app[GATEWAY_KEY].migration(), dumps=_dumps)


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


async def put_route(request: web.Request) -> web.Response:
    """Cut a charger over: {"primary", "shadow"?, "when"?: "idle"|"now", "deadline"?, "force"?}.

    200 when the change is applied, 202 while it waits (for open
    transactions; the body says which, and until when), 409 when the new
    CSMS rejected the charger or the deadline passed: the route stays.
    """
    gw = request.app[GATEWAY_KEY]
    cid = request.match_info["id"]
    body = await _json_body(request, required=True)
    options = _change_options(body)
    try:
        route = Route.model_validate(body)
    except ValidationError as exc:
        _fail(web.HTTPBadRequest, f"expected {{primary, shadow?, when?, deadline?, force?}}: {exc}")
    if cid not in gw.config.chargers and not gw.is_connected(cid) and not gw.config.allow_unknown_chargers:
        _fail(web.HTTPNotFound, f"unknown charger {cid}")
    return await _route_answer(gw, cid, route, options)


async def delete_route(request: web.Request) -> web.Response:
    """Roll a charger back to the route in the config file (same options and answers as PUT)."""
    gw = request.app[GATEWAY_KEY]
    cid = request.match_info["id"]
    options = _change_options(await _json_body(request, required=False))
    return await _route_answer(gw, cid, None, options)


async def _json_body(request: web.Request, required: bool) -> dict[str, Any]:
    if not required and not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except ValueError as exc:
        _fail(web.HTTPBadRequest, f"the body is not JSON: {exc}")
    if not isinstance(body, dict):
        _fail(web.HTTPBadRequest, "the body must be a JSON object")
    return body


def _change_options(body: dict[str, Any]) -> dict[str, Any]:
    """Take ``when``, ``deadline`` (epoch seconds or ISO 8601) and ``force`` out of a route body."""
    when = body.pop("when", "idle")
    if when not in WHEN_VALUES:
        _fail(web.HTTPBadRequest, f"when must be one of {', '.join(WHEN_VALUES)}")
    force = body.pop("force", False)
    if not isinstance(force, bool):
        _fail(web.HTTPBadRequest, "force must be true or false")
    deadline = body.pop("deadline", None)
    if isinstance(deadline, str):
        try:
            parsed = dt.datetime.fromisoformat(deadline.replace("Z", "+00:00"))
        except ValueError:
            _fail(web.HTTPBadRequest, "deadline must be epoch seconds or an ISO 8601 date and time")
        if parsed.tzinfo is None:
            _fail(web.HTTPBadRequest, "deadline needs a time zone (e.g. 2026-05-01T22:00:00Z)")
        deadline = parsed.timestamp()
    elif deadline is not None and (isinstance(deadline, bool) or not isinstance(deadline, int | float)):
        _fail(web.HTTPBadRequest, "deadline must be epoch seconds or an ISO 8601 date and time")
    return {"when": when, "force": force, "deadline": float(deadline) if deadline is not None else None}


async def _route_answer(gw: AdminEstate, cid: str, route: Route | None, options: dict[str, Any]) -> web.Response:
    try:
        change = await gw.set_route(cid, route, actor="api", **options)
    except RouteError as exc:
        _fail(web.HTTPBadRequest, str(exc), known=sorted(gw.config.csms))
    except StoreError as exc:
        _fail(web.HTTPServiceUnavailable, f"store unavailable, the route is not shared yet: {exc}")
    status = {RouteChangeState.APPLIED: 200, RouteChangeState.PENDING: 202}.get(change.state, 409)
    return web.json_response(route_view(gw, change), status=status)


def route_view(gw: AdminEstate, change: RouteChange) -> dict[str, Any]:
    """A route change as the API answers it: the route it leads to, its state, and why it waits or failed."""
    shown = change.as_dict()
    return {"id": change.charger_id, "route": shown["route"], "state": shown["state"], "reason": change.reason,
            "open_transactions": shown["open_transactions"], "deadline": change.deadline,
            "route_source": "admin" if gw.route_overridden(change.charger_id) else "config", "change": shown}


# The console's page holds no data (its script reads /api/*), so it is served without the token. Its
# script and styles come only from here and it may talk only to this server.
_CONSOLE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                               "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _console_file(name: str) -> web.Response:
    return web.Response(body=console.asset(name), content_type=console.ASSETS[name], charset="utf-8",
                        headers=_CONSOLE_HEADERS)


async def console_page(request: web.Request) -> web.Response:
    """The read-only console (gateway/console/): plain HTML and a script over the JSON API."""
    return _console_file("index.html")


async def console_asset(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in console.ASSETS:
        _fail(web.HTTPNotFound, "no such console file")
    return _console_file(name)


def _actor(request: web.Request) -> str:
    """Who asks, as history records it: the X-Actor header (the CLI sends user@host), else "api"."""
    given = request.headers.get("X-Actor", "")
    actor = "".join(ch for ch in given if ch.isprintable())[:64].strip()
    return actor or "api"


async def _plan_request(call: Any) -> web.Response:
    try:
        return web.json_response(await call)
    except MigrationRequestError as exc:
        error = {400: web.HTTPBadRequest, 404: web.HTTPNotFound, 409: web.HTTPConflict}.get(
            exc.status, web.HTTPUnprocessableEntity)
        _fail(error, exc.problems[0] if len(exc.problems) == 1 else f"{len(exc.problems)} problems",
              problems=exc.problems)


async def post_plan(request: web.Request) -> web.Response:
    """Submit a migration plan (the plan file's content as JSON); ?dry_run=1 only says what it would do."""
    plans = request.app[GATEWAY_KEY].migration_plans
    try:
        body = await request.json()
    except ValueError:
        _fail(web.HTTPBadRequest, "expected the plan as a JSON object")
    if request.query.get("dry_run", "").lower() in ("1", "true", "yes"):
        return await _plan_request(plans.preview(body))
    response = await _plan_request(plans.submit(body, _actor(request)))
    response.set_status(201)
    return response


async def get_plans(request: web.Request) -> web.Response:
    return web.json_response(request.app[GATEWAY_KEY].migration_plans.plans())


async def get_plan(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    history = _int_param(request, "history", None, 0, 1_000_000)
    found = request.app[GATEWAY_KEY].migration_plans.plan(name, history)
    if found is None:
        _fail(web.HTTPNotFound, f"no plan named {name}")
    return web.json_response(found)


async def control_plan(request: web.Request) -> web.Response:
    """pause, resume (also a stopped plan: its failed wave is tried again) or abort a plan."""
    plans = request.app[GATEWAY_KEY].migration_plans
    return await _plan_request(plans.control(request.match_info["name"], request.match_info["command"],
                                             _actor(request)))


def _require_token(digest: bytes) -> Middleware:
    """/api/* answers only requests that carry the configured bearer token."""

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/api/") and not security.bearer_ok(request.headers.get("Authorization"), digest):
            return web.json_response({"error": "this admin API needs 'Authorization: Bearer <token>'"}, status=401,
                                     headers={"WWW-Authenticate": 'Bearer realm="ocpp-gateway"'})
        return await handler(request)

    return check


def make_admin_app(estate: AdminEstate, token_digest: bytes | None = None) -> web.Application:
    """The admin app over ``estate``; with ``token_digest`` (SHA-256 of the token), /api/* needs the token."""
    token = token_digest
    app = web.Application(middlewares=[_require_token(token)] if token is not None else [])
    app[GATEWAY_KEY] = estate
    app.router.add_get("/", console_page)
    app.router.add_get("/console/{name}", console_asset)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/api/chargers", chargers)
    app.router.add_get("/api/chargers/{id:[^/]+}", charger)
    app.router.add_get("/api/chargers/{id:[^/]+}/messages", messages)
    app.router.add_get("/api/chargers/{id:[^/]+}/differences", differences)
    app.router.add_get("/api/migration", migration)
    app.router.add_put("/api/chargers/{id:[^/]+}/route", put_route)
    app.router.add_delete("/api/chargers/{id:[^/]+}/route", delete_route)
    app.router.add_post("/api/migration/plans", post_plan)
    app.router.add_get("/api/migration/plans", get_plans)
    app.router.add_get("/api/migration/plans/{name:[^/]+}", get_plan)
    app.router.add_post("/api/migration/plans/{name:[^/]+}/{command:pause|resume|abort}", control_plan)
    return app
