"""The admin HTTP API (aiohttp): metrics, health, chargers and their message logs.

It sees the estate only through ``gateway.estate.AdminEstate``. Every body,
errors included, is built by a JSON encoder: ids and messages are data, never
pasted into JSON text.
"""

from __future__ import annotations

import json
from typing import Any, NoReturn

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from pydantic import ValidationError

from gateway import security
from gateway.config import Route
from gateway.estate import AdminEstate
from gateway.store import StoreError

GATEWAY_KEY: web.AppKey[AdminEstate] = web.AppKey("gateway")
MAX_LIMIT = 10_000


def _fail(error: type[web.HTTPError], message: str, **extra: Any) -> NoReturn:
    """Answer with ``error`` and the JSON body ``{"error": message, **extra}``."""
    raise error(text=json.dumps({"error": message, **extra}), content_type="application/json")


async def metrics(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY_KEY]
    stats = gw.store.stats
    gw.metrics.store_records.set(stats.get("written", 0))
    gw.metrics.store_queue.set(stats.get("queue_depth", 0))
    gw.metrics.store_dropped.set(stats.get("dropped", 0))
    return web.Response(body=gw.metrics.exposition(), content_type="text/plain", charset="utf-8",
                        headers={"X-Content-Type-Options": "nosniff"})


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
    for item in gw.describe_chargers():
        if item["id"] == cid:
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
    """Cut a charger over: {"primary": "<csms>", "shadow": "<csms>" | null}."""
    gw = request.app[GATEWAY_KEY]
    cid = request.match_info["id"]
    try:
        body = await request.json()
        route = Route.model_validate(body)
    except (ValueError, ValidationError) as exc:
        _fail(web.HTTPBadRequest, f"expected {{primary, shadow?}}: {exc}")
    if cid not in gw.config.chargers and not gw.is_connected(cid) and not gw.config.allow_unknown_chargers:
        _fail(web.HTTPNotFound, f"unknown charger {cid}")
    try:
        effective = await gw.set_route(cid, route)
    except KeyError as exc:
        _fail(web.HTTPBadRequest, f"no csms named {exc.args[0]!r}", known=sorted(gw.config.csms))
    except StoreError as exc:
        _fail(web.HTTPServiceUnavailable, f"store unavailable, the route is not shared yet: {exc}")
    return web.json_response({"id": cid, "route": effective.model_dump() if effective else None,
                              "route_source": "admin"})


async def delete_route(request: web.Request) -> web.Response:
    """Roll a charger back to the route in the config file."""
    gw = request.app[GATEWAY_KEY]
    cid = request.match_info["id"]
    try:
        effective = await gw.set_route(cid, None)
    except StoreError as exc:
        _fail(web.HTTPServiceUnavailable, f"store unavailable, the route is not shared yet: {exc}")
    return web.json_response({"id": cid, "route": effective.model_dump() if effective else None,
                              "route_source": "config"})


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
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/api/chargers", chargers)
    app.router.add_get("/api/chargers/{id:[^/]+}", charger)
    app.router.add_get("/api/chargers/{id:[^/]+}/messages", messages)
    app.router.add_get("/api/chargers/{id:[^/]+}/differences", differences)
    app.router.add_get("/api/migration", migration)
    app.router.add_put("/api/chargers/{id:[^/]+}/route", put_route)
    app.router.add_delete("/api/chargers/{id:[^/]+}/route", delete_route)
    return app
