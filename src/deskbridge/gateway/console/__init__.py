"""The operator console, ``/console/``: server-rendered pages over the admin API.

Every page and form calls the admin API's own functions after the same checks (token
verified, denylist read, the route's scope), so the console can do nothing the API
cannot, and its writes land in the same audit log. Served when
``DESKBRIDGE_CONSOLE=true``, or when unset in the demo (no accounts file).
"""

from __future__ import annotations

import asyncio
import logging
from importlib import resources

from aiohttp import web
from pydantic import ValidationError

from deskbridge.errors import StoreUnavailable
from deskbridge.gateway.admin import routes as api
from deskbridge.gateway.admin.contacts import (
    ContactsBadInput,
    ContactsNotFound,
    decide_route,
    export_route,
    forget_route,
    link_route,
    show_route,
)
from deskbridge.gateway.console import bulk, contacts, deliveries, overview
from deskbridge.gateway.console.render import SECURITY_HEADERS, e
from deskbridge.gateway.console.session import (
    ConsoleHandler,
    Ctx,
    guard,
    redirect,
    signin,
    signin_form,
    signout,
)
from deskbridge.gateway.state import RUNTIME

__all__ = ["PAGES", "add_routes", "enabled"]

log = logging.getLogger(__name__)

_STATIC = {
    "console.css": "text/css",
    "console.js": "text/javascript",
    "favicon.svg": "image/svg+xml",
}


def enabled(app: web.Application) -> bool:
    """``DESKBRIDGE_CONSOLE``; unset: on in the demo, off with an accounts file."""
    settings = app[RUNTIME].settings
    return settings.console if settings.console is not None else not settings.production()


def _safe(handler: ConsoleHandler) -> ConsoleHandler:
    """Bad input and missing records as pages (the admin API's 400 and 404)."""

    async def wrapped(request: web.Request, ctx: Ctx) -> web.StreamResponse:
        try:
            return await handler(request, ctx)
        except (api.BadInput, ContactsBadInput) as exc:
            return ctx.page("Bad request", f'<p class="flash bad">{e(str(exc))}</p>', status=400)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            return ctx.page(
                "Bad request", f'<p class="flash bad">{e(where)}: {e(first["msg"])}</p>', status=400
            )
        except ContactsNotFound as exc:
            return ctx.page("Not found", f'<p class="flash bad">{e(str(exc))}</p>', status=404)
        except (StoreUnavailable, OSError) as exc:
            log.error("console %s: store unavailable (%s)", request.path, type(exc).__name__)
            return ctx.page(
                "Unavailable", "<p>The store is unavailable; try again.</p>", status=503
            )

    return wrapped


async def _static(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if name not in _STATIC:
        raise web.HTTPNotFound()
    data = resources.files("deskbridge.gateway.console").joinpath("static", name).read_bytes()
    return web.Response(
        body=data,
        content_type=_STATIC[name],
        headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"},
    )


async def _stop_bulk(app: web.Application) -> None:
    """Bulk jobs end with the gateway; their ids left stay in Redis to resume."""
    tasks = list(app[bulk.BULK_TASKS].tasks)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _home(request: web.Request) -> web.StreamResponse:
    return redirect("/console/")


PAGES: list[tuple[str, str, str | None, ConsoleHandler]] = [
    ("GET", "/console/", api.scope_of(api.list_route), overview.overview),
    ("GET", "/console/deliveries", api.scope_of(api.list_route), deliveries.listing),
    ("GET", "/console/deliveries/bulk", api.scope_of(api.replay_route), deliveries.bulk_confirm),
    ("POST", "/console/deliveries/replay", api.scope_of(api.replay_route), deliveries.replay_post),
    (
        "POST",
        "/console/deliveries/discard",
        api.scope_of(api.discard_route),
        deliveries.discard_post,
    ),
    ("GET", "/console/deliveries/{id}", api.scope_of(api.show_route), deliveries.delivery),
    ("GET", "/console/bulk/{job}", api.scope_of(api.replay_route), bulk.progress),
    ("POST", "/console/bulk/{job}/resume", api.scope_of(api.replay_route), bulk.resume_post),
    ("GET", "/console/events", api.scope_of(api.events_route), deliveries.events),
    ("GET", "/console/events/{id}", api.scope_of(api.event_route), deliveries.event),
    (
        "POST",
        "/console/events/reingest",
        api.scope_of(api.reingest_route),
        deliveries.reingest_post,
    ),
    ("GET", "/console/audit", api.scope_of(api.audit_route), deliveries.audit),
    ("GET", "/console/contacts", api.scope_of(show_route), contacts.contacts),
    ("GET", "/console/contacts/export/{ref}", api.scope_of(export_route), contacts.export_get),
    ("POST", "/console/contacts/decide", api.scope_of(decide_route), contacts.decide_post),
    ("POST", "/console/contacts/link", api.scope_of(link_route), contacts.link_post),
    ("POST", "/console/contacts/forget", api.scope_of(forget_route), contacts.forget_post),
    ("POST", "/console/signout", None, signout),
]
"""(method, path, scope, handler) of every page behind a session: each scope is the one
the admin route doing the same work requires."""


def add_routes(app: web.Application) -> None:
    """Mount the console when enabled (else its paths are 404)."""
    if not enabled(app):
        return
    app[bulk.BULK_TASKS] = bulk.Running()
    app.on_cleanup.append(_stop_bulk)
    app.router.add_get("/console", _home)
    app.router.add_get("/console/signin", signin_form)
    app.router.add_post("/console/signin", signin)
    app.router.add_get("/console/static/{name}", _static)
    for method, path, scope, handler in PAGES:
        app.router.add_route(method, path, guard(scope, _safe(handler)))
