"""The aiohttp application: webhook and desk routes, the admin API, health, metrics, the
sandbox."""

from __future__ import annotations

import asyncio
import random
import re
import secrets
from collections.abc import Awaitable, Callable

from aiohttp import web

from deskbridge.flows import Runtime
from deskbridge.gateway import (
    admin,
    console,
    demo,
    health,
    intake,
    media,
    sandbox,
    survey,
    webchat,
)
from deskbridge.gateway.state import AUTH_FAILURES, CSRF, ROLE, RUNTIME, STOPPING
from deskbridge.gateway.throttle import FailedAuth
from deskbridge.logs import REQUEST_ID

__all__ = ["create_app", "create_metrics_app"]

# aiohttp's own cap; each route enforces its smaller limit while reading.
_CLIENT_MAX = 64 * 1024 * 1024

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# a caller's id is kept when it is short and plain (a proxy's or the platform's)
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


@web.middleware
async def _observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Gives each request an id, carried in its log records and echoed as X-Request-Id,
    and counts its answer by route. One middleware, not two: each layer costs every
    request (the ack path's included) a wrapper call."""
    given = request.headers.get("X-Request-Id", "")
    # an unguessable-enough id without a syscall (uuid4 reads os.urandom per request);
    # random's state is reseeded in a forked child
    rid = given if _REQUEST_ID.fullmatch(given) else f"{random.getrandbits(128):032x}"
    token = REQUEST_ID.set(rid)
    route = request.match_info.route.resource
    name = route.canonical if route is not None else "unmatched"
    metrics = request.app[RUNTIME].metrics
    try:
        resp = await handler(request)
    except web.HTTPException as exc:
        exc.headers["X-Request-Id"] = rid
        metrics.request(name, exc.status)
        raise
    finally:
        REQUEST_ID.reset(token)
    metrics.request(name, resp.status)
    resp.headers["X-Request-Id"] = rid
    return resp


def create_app(rt: Runtime, *, role: str = "serve") -> web.Application:
    """The gateway for ``rt``. ``role`` is ``run``, ``serve`` or ``worker`` (health and
    metrics only). The caller owns ``rt`` (opens and closes its Redis and HTTP client)."""
    app = web.Application(client_max_size=_CLIENT_MAX, middlewares=[_observe])
    app[RUNTIME] = rt
    app[AUTH_FAILURES] = FailedAuth(
        burst=rt.settings.failed_auth_burst, per_minute=rt.settings.failed_auth_per_minute
    )
    app[ROLE] = role
    app[STOPPING] = asyncio.Event()
    app[CSRF] = secrets.token_urlsafe(24)
    app.router.add_get("/healthz", health.healthz)
    app.router.add_get("/readyz", health.readyz)
    if rt.settings.metrics_address is None:
        app.router.add_get("/metrics", health.metrics)
    if role == "worker":
        return app
    for path in ("/webhooks/{channel}", "/webhooks/{channel}/{account}"):
        app.router.add_post(path, intake.channel_webhook)
        app.router.add_get(path, intake.channel_handshake)
    # Mailgun posts raw MIME only to a URL that ends in "mime"
    app.router.add_post("/webhooks/{channel}/{account}/mime", intake.channel_webhook)
    app.router.add_get("/media/preview/video.png", media.video_preview)
    app.router.add_get("/media/{token}", media.serve)
    app.router.add_get("/media/{token}/{name}", media.serve)
    app.router.add_post("/desks/{desk}/{account}", intake.desk_webhook)
    survey.add_routes(app)  # email surveys' score links
    # never open: without an admin key every admin route answers 503
    admin.add_routes(
        app,
        admin.admin_auth(rt.settings, rt.accounts),
        "the admin API is disabled: set DESKBRIDGE_ADMIN_JWT_SECRET or "
        "DESKBRIDGE_ADMIN_JWT_PUBLIC_KEY(_PATH) on the gateway",
    )
    webchat.add_routes(app)
    sandbox.add_routes(app)
    console.add_routes(app)
    demo.add_routes(app, pages=sandbox.pages_enabled(rt))
    return app


def create_metrics_app(rt: Runtime) -> web.Application:
    """The listener of ``DESKBRIDGE_METRICS_ADDRESS``: ``/metrics`` and nothing else."""
    app = web.Application(client_max_size=1024)
    app[RUNTIME] = rt
    app.router.add_get("/metrics", health.metrics_only)
    return app
