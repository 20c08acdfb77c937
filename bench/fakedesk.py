"""A tiny fake Zendesk for ``bench/run.py``: answers the calls the Zendesk connector
(``deskbridge.outbound.zendesk.connector``) makes to file a customer message, and records
when each ticket create or update arrives.

Messages are matched by a marker in their text (``e2e-<n>``); ``wait(n)`` resolves with the
``time.monotonic()`` at which the desk received message ``n``.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections import Counter
from typing import Any

from aiohttp import web

__all__ = ["FakeZendesk"]

_MARKER = re.compile(r"e2e-(\d+)")


class FakeZendesk:
    """``latency_s``: every answer waits this long first (a real desk's API, from afar)."""

    def __init__(self, latency_s: float = 0.0) -> None:
        self.latency_s = latency_s
        self.calls: Counter[str] = Counter()
        self.arrivals: dict[int, tuple[float, str]] = {}
        self._waiters: dict[int, asyncio.Future[tuple[float, str]]] = {}
        self._ids = itertools.count(1000)
        self._users: dict[str, int] = {}
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> int:
        app = web.Application(middlewares=[self._delay] if self.latency_s > 0 else [])
        app.router.add_post("/api/v2/users/create_or_update", self._user)
        app.router.add_get("/api/v2/users/{id}/identities", self._identities)
        app.router.add_post("/api/v2/users/{id}/identities", self._add_identity)
        app.router.add_get("/api/v2/tickets", self._find_tickets)
        app.router.add_post("/api/v2/tickets", self._create_ticket)
        app.router.add_put("/api/v2/tickets/{id}", self._update_ticket)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = int(self._runner.addresses[0][1])
        return self.port

    @web.middleware
    async def _delay(self, request: web.Request, handler: Any) -> web.StreamResponse:
        await asyncio.sleep(self.latency_s)
        response: web.StreamResponse = await handler(request)
        return response

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def expect(self, n: int) -> asyncio.Future[tuple[float, str]]:
        fut: asyncio.Future[tuple[float, str]] = asyncio.get_running_loop().create_future()
        self._waiters[n] = fut
        return fut

    def _arrived(self, at: float, body: dict[str, Any], kind: str) -> None:
        comment = (body.get("ticket") or {}).get("comment") or {}
        m = _MARKER.search(str(comment.get("body", "")))
        if m is None:
            return
        n = int(m.group(1))
        self.arrivals.setdefault(n, (at, kind))
        fut = self._waiters.pop(n, None)
        if fut is not None and not fut.done():
            fut.set_result((at, kind))

    async def _user(self, request: web.Request) -> web.Response:
        self.calls["users/create_or_update"] += 1
        body = await request.json()
        external = str((body.get("user") or {}).get("external_id"))
        user_id = self._users.setdefault(external, next(self._ids))
        return web.json_response({"user": {"id": user_id, "external_id": external}})

    async def _identities(self, request: web.Request) -> web.Response:
        self.calls["identities"] += 1
        return web.json_response({"identities": []})

    async def _add_identity(self, request: web.Request) -> web.Response:
        self.calls["add identity"] += 1
        return web.json_response({"identity": {"id": next(self._ids)}}, status=201)

    async def _find_tickets(self, request: web.Request) -> web.Response:
        self.calls["tickets?external_id"] += 1
        return web.json_response({"tickets": []})

    async def _create_ticket(self, request: web.Request) -> web.Response:
        at = time.monotonic()
        self.calls["create ticket"] += 1
        body = await request.json()
        ticket_id = next(self._ids)
        self._arrived(at, body, "new ticket")
        audit = {"events": [{"type": "Comment", "id": next(self._ids)}]}
        return web.json_response({"ticket": {"id": ticket_id}, "audit": audit}, status=201)

    async def _update_ticket(self, request: web.Request) -> web.Response:
        at = time.monotonic()
        self.calls["update ticket"] += 1
        body = await request.json()
        ticket_id = int(request.match_info["id"])
        self._arrived(at, body, "comment")
        audit = {"events": [{"type": "Comment", "id": next(self._ids)}]}
        return web.json_response({"ticket": {"id": ticket_id}, "audit": audit})
