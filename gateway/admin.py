"""The admin HTTP API (aiohttp): metrics, health, chargers and their message logs."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from pydantic import ValidationError

from gateway import security
from gateway.config import Route
from gateway.store import StoreError

if TYPE_CHECKING:
    from gateway.app import Gateway

GATEWAY_KEY: web.AppKey[Gateway] = web.AppKey("gateway")
MAX_LIMIT = 10_000


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
    return web.json_response({"status": "ok", "chargers_connected": len(gw.connections)})


async def chargers(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY_KEY]
    return web.json_response(gw.describe_chargers())


async def charger(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY_KEY]
    cid = request.match_info["id"]
    for item in gw.describe_chargers():
        if item["id"] == cid:
            return web.json_response(item)
    raise web.HTTPNotFound(text=f'{{"error": "unknown charger {cid}"}}', content_type="application/json")


def _int_param(request: web.Request, name: str, default: int | None, lo: int, hi: int) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise web.HTTPBadRequest(text=f'{{"error": "{name} must be an integer"}}',
                                 content_type="application/json") from None
    if not lo <= value <= hi:
        raise web.HTTPBadRequest(text=f'{{"error": "{name} must be between {lo} and {hi}"}}',
                                 content_type="application/json")
    return value


async def messages(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY_KEY]
    cid = request.match_info["id"]
    limit = _int_param(request, "limit", 100, 1, MAX_LIMIT) or 100
    after = _int_param(request, "after_id", None, 0, 2**62)
    try:
        records = await gw.store.messages(cid, limit=limit, after_id=after)
    except StoreError as exc:
        raise web.HTTPServiceUnavailable(text=f'{{"error": "message log unavailable: {exc}"}}',
                                         content_type="application/json") from None
    return web.json_response(records)


async def put_route(request: web.Request) -> web.Response:
    """Cut a charger over: {"primary": "<csms>", "shadow": "<csms>" | null}."""
    gw = request.app[GATEWAY_KEY]
    cid = request.match_info["id"]
    try:
        body = await request.json()
        route = Route.model_validate(body)
    except (ValueError, ValidationError) as exc:
        raise web.HTTPBadRequest(text=json.dumps({"error": f"expected {{primary, shadow?}}: {exc}"}),
                                 content_type="application/json") from None
    if cid not in gw.config.chargers and cid not in gw.connections and not gw.config.allow_unknown_chargers:
        raise web.HTTPNotFound(text=json.dumps({"error": f"unknown charger {cid}"}), content_type="application/json")
    try:
        effective = await gw.set_route(cid, route)
    except KeyError as exc:
        known = sorted(gw.config.csms)
        raise web.HTTPBadRequest(text=json.dumps({"error": f"no csms named {exc.args[0]!r}", "known": known}),
                                 content_type="application/json") from None
    return web.json_response({"id": cid, "route": effective.model_dump() if effective else None,
                              "route_source": "admin"})


async def delete_route(request: web.Request) -> web.Response:
    """Roll a charger back to the route in the config file."""
    gw = request.app[GATEWAY_KEY]
    cid = request.match_info["id"]
    effective = await gw.set_route(cid, None)
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


def make_admin_app(gateway: Gateway) -> web.Application:
    token = gateway.admin_token
    app = web.Application(middlewares=[_require_token(token)] if token is not None else [])
    app[GATEWAY_KEY] = gateway
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/api/chargers", chargers)
    app.router.add_get("/api/chargers/{id}", charger)
    app.router.add_get("/api/chargers/{id}/messages", messages)
    app.router.add_put("/api/chargers/{id}/route", put_route)
    app.router.add_delete("/api/chargers/{id}/route", delete_route)
    return app
