"""A fake Zendesk Support API for the fault tests, served on 127.0.0.1 port 0.

Shaped like the calls ``deskbridge.outbound.zendesk`` makes: ``users/create_or_update``
matched on ``external_id``, tickets created with ``Idempotency-Key`` (kept 2 hours: the
same key and body replays the first answer with ``x-idempotency-lookup: hit``, the same
key with another body gets 400 ``IdempotentRequestError``), ``GET /tickets?external_id=``,
comments by ``PUT /tickets/{id}`` (not idempotent, as in Zendesk) with the comment in the
audit, and each update's ``metadata`` kept on its audit as ``metadata.custom``, listed by
``GET /tickets/{id}/audits`` (cursor pages, oldest first). Each account of the harness
gets its own desk under ``/{account}/api/v2``.

Faults are switched on from the test: every call answers 5xx until a deadline
(``fail_for``), ticket calls answer 429 with ``Retry-After`` (``rate_limit``), a marker
that always fails (``poison``), a per-call latency (``latency``), and a clock that can
jump past the 2-hour idempotency window (``advance``).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import json
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

__all__ = ["IDEMPOTENCY_TTL_S", "Comment", "DeskAccount", "FakeZendesk", "Request"]

IDEMPOTENCY_TTL_S = 2 * 3600.0
ARRIVED = web.RequestKey("arrived", float)
MARKER = re.compile(r"\bc(\d+) m(\d+)\b")


@dataclass(frozen=True, slots=True)
class Request:
    """One call as the desk saw it. ``conv`` is the ticket's external_id where known."""

    at: float
    method: str
    route: str
    status: int
    conv: str | None = None
    marker: tuple[int, int] | None = None
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class Comment:
    """One comment filed. ``markers``: every message marker it carries, in order (a
    comment that merges several waiting messages carries several); ``marker`` is the
    first of them."""

    ticket_id: int
    conv: str
    marker: tuple[int, int] | None
    at: float
    markers: tuple[tuple[int, int], ...] = ()


@dataclass
class DeskAccount:
    """The state of one account's desk."""

    users: dict[str, int] = field(default_factory=dict)
    tickets: dict[int, dict[str, Any]] = field(default_factory=dict)
    comments: list[Comment] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    idempotency: dict[str, tuple[float, str, int, dict[str, Any]]] = field(default_factory=dict)
    audits: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    fail_until: float = 0.0
    fail_status: int = 503
    rate_limited: int = 0
    retry_after: float = 1.0
    poison: str | None = None
    latency: float = 0.0
    before_answer: Callable[[str], Awaitable[None]] | None = None
    """Called after a call took effect, before its answer goes out."""

    def tickets_by_conv(self) -> Counter[str]:
        return Counter(t["external_id"] for t in self.tickets.values())

    def markers(self) -> Counter[tuple[int, int]]:
        """How many comments carry each message marker (every marker of a comment that
        merges several messages counts): above 1 is a message filed twice."""
        return Counter(m for c in self.comments for m in c.markers)

    def order(self, chat: int) -> list[int]:
        """The message numbers of ``chat`` in the order the desk first filed them."""
        seen: list[int] = []
        for c in self.comments:
            for m in c.markers:
                if m[0] == chat and m[1] not in seen:
                    seen.append(m[1])
        return seen


class FakeZendesk:
    def __init__(self, email: str, api_token: str) -> None:
        raw = f"{email}/token:{api_token}".encode()
        self._auth = "Basic " + base64.b64encode(raw).decode()
        self.accounts: dict[str, DeskAccount] = {}
        self._ids = itertools.count(1000)
        self._offset = 0.0
        self._runner: web.AppRunner | None = None
        self.port = 0

    def account(self, name: str) -> DeskAccount:
        return self.accounts.setdefault(name, DeskAccount())

    def base_url(self, account: str) -> str:
        return f"http://127.0.0.1:{self.port}/{account}"

    def now(self) -> float:
        """The desk's clock (monotonic, plus any ``advance``)."""
        return time.monotonic() + self._offset

    def advance(self, seconds: float) -> None:
        """Jump the desk's clock, e.g. past the 2-hour idempotency window."""
        self._offset += seconds

    def fail_for(self, account: str, seconds: float, status: int = 503) -> None:
        acc = self.account(account)
        acc.fail_until, acc.fail_status = time.monotonic() + seconds, status

    def rate_limit(self, account: str, count: int, retry_after: float) -> None:
        """Answer the next ``count`` ticket calls with 429 and ``Retry-After``."""
        acc = self.account(account)
        acc.rate_limited, acc.retry_after = count, retry_after

    async def start(self) -> int:
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_post("/{account}/api/v2/users/create_or_update", self._user)
        app.router.add_get("/{account}/api/v2/users/{id}/identities", self._identities)
        app.router.add_post("/{account}/api/v2/users/{id}/identities", self._add_identity)
        app.router.add_get("/{account}/api/v2/tickets", self._find)
        app.router.add_post("/{account}/api/v2/tickets", self._create)
        app.router.add_put("/{account}/api/v2/tickets/{id}", self._update)
        app.router.add_get("/{account}/api/v2/tickets/{id}/audits", self._audits)
        app.middlewares.append(_arrival)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = int(self._runner.addresses[0][1])
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # -- plumbing ----------------------------------------------------------------------

    async def _gate(
        self, request: web.Request, route: str, *, conv: str | None = None, body: Any = None
    ) -> tuple[DeskAccount, web.Response | None]:
        """Authentication and the switched-on faults; a response when the call fails.
        Every call is logged with the time it arrived."""
        acc = self.account(request.match_info["account"])
        now = request[ARRIVED]
        if acc.latency:
            await asyncio.sleep(acc.latency)
        marker = _marker(body)
        status, retry_after = 0, None
        if request.headers.get("Authorization") != self._auth:
            status = 401
        elif now < acc.fail_until:
            status = acc.fail_status
        elif acc.poison and route.startswith("tickets") and acc.poison in json.dumps(body):
            status = 500
        elif acc.rate_limited > 0 and route.startswith("tickets"):
            acc.rate_limited -= 1
            status, retry_after = 429, acc.retry_after
        if not status:
            return acc, None
        acc.requests.append(Request(now, request.method, route, status, conv, marker, retry_after))
        if status == 429:
            headers = {"Retry-After": f"{retry_after:g}"}
            return acc, web.json_response(
                {"error": "APIRateLimitExceeded"}, status=429, headers=headers
            )
        if status == 401:
            return acc, web.json_response({"error": "Couldn't authenticate you"}, status=401)
        return acc, web.json_response({"error": "ServiceUnavailable"}, status=status)

    def _log(self, acc: DeskAccount, request: web.Request, route: str, **kw: Any) -> None:
        acc.requests.append(Request(request[ARRIVED], request.method, route, 200, **kw))

    def _file(
        self,
        acc: DeskAccount,
        ticket_id: int,
        comment: dict[str, Any],
        metadata: dict[str, Any] | None = None,
    ) -> int:
        comment_id = next(self._ids)
        conv = acc.tickets[ticket_id]["external_id"]
        found = _markers(comment)
        first = found[0] if found else None
        acc.comments.append(Comment(ticket_id, conv, first, time.monotonic(), found))
        acc.tickets[ticket_id]["comments"] += 1
        acc.audits.setdefault(ticket_id, []).append(
            {
                "id": next(self._ids),
                "ticket_id": ticket_id,
                "metadata": {"custom": metadata or {}},
                "events": [{"type": "Comment", "id": comment_id}],
            }
        )
        return comment_id

    # -- users -------------------------------------------------------------------------

    async def _user(self, request: web.Request) -> web.Response:
        body = await request.json()
        acc, failed = await self._gate(request, "users/create_or_update")
        if failed is not None:
            return failed
        user = body.get("user") or {}
        external = str(user.get("external_id"))
        created = external not in acc.users
        user_id = acc.users.setdefault(external, next(self._ids))
        self._log(acc, request, "users/create_or_update")
        answer = {"user": {"id": user_id, "external_id": external, "role": "end-user"}}
        return web.json_response(answer, status=201 if created else 200)

    async def _identities(self, request: web.Request) -> web.Response:
        _, failed = await self._gate(request, "users/identities")
        if failed is not None:
            return failed
        return web.json_response({"identities": [], "next_page": None})

    async def _add_identity(self, request: web.Request) -> web.Response:
        _, failed = await self._gate(request, "users/identities")
        if failed is not None:
            return failed
        return web.json_response({"identity": {"id": next(self._ids)}}, status=201)

    # -- tickets -----------------------------------------------------------------------

    async def _find(self, request: web.Request) -> web.Response:
        conv = request.query.get("external_id", "")
        acc, failed = await self._gate(request, "tickets/find", conv=conv)
        if failed is not None:
            return failed
        found = [_public(t) for t in acc.tickets.values() if t["external_id"] == conv]
        self._log(acc, request, "tickets/find", conv=conv)
        return web.json_response({"tickets": found, "next_page": None, "count": len(found)})

    async def _create(self, request: web.Request) -> web.Response:
        raw = await request.read()
        body = json.loads(raw)
        ticket = body.get("ticket") or {}
        conv = str(ticket.get("external_id"))
        acc, failed = await self._gate(request, "tickets/create", conv=conv, body=body)
        if failed is not None:
            return failed
        key = request.headers.get("Idempotency-Key")
        digest = hashlib.sha256(raw).hexdigest()
        now = self.now()
        if key:
            kept = acc.idempotency.get(key)
            if kept is not None and now - kept[0] < IDEMPOTENCY_TTL_S:
                if kept[1] != digest:
                    self._log(acc, request, "tickets/create", conv=conv, marker=_marker(body))
                    return web.json_response(
                        {
                            "error": "IdempotentRequestError",
                            "description": "Idempotency key was used with a different request",
                        },
                        status=400,
                    )
                self._log(acc, request, "tickets/create", conv=conv, marker=_marker(body))
                headers = {"x-idempotency-lookup": "hit"}
                return web.json_response(kept[3], status=kept[2], headers=headers)
        ticket_id = next(self._ids)
        comment = ticket.get("comment") or {}
        acc.tickets[ticket_id] = {
            "id": ticket_id,
            "external_id": conv,
            "status": "new",
            "subject": ticket.get("subject", ""),
            "description": comment.get("body", ""),
            "requester_id": ticket.get("requester_id"),
            "comments": 0,
        }
        comment_id = self._file(acc, ticket_id, comment, ticket.get("metadata"))
        answer = {
            "ticket": _public(acc.tickets[ticket_id]),
            "audit": {"events": [{"type": "Comment", "id": comment_id}]},
        }
        if key:
            acc.idempotency[key] = (now, digest, 201, answer)
        self._log(acc, request, "tickets/create", conv=conv, marker=_marker(body))
        if acc.before_answer is not None:
            await acc.before_answer("tickets/create")
        return web.json_response(answer, status=201, headers={"x-idempotency-lookup": "miss"})

    async def _update(self, request: web.Request) -> web.Response:
        body = await request.json()
        acc = self.account(request.match_info["account"])
        ticket_id = int(request.match_info["id"])
        known = acc.tickets.get(ticket_id)
        conv = known["external_id"] if known else None
        acc, failed = await self._gate(request, "tickets/update", conv=conv, body=body)
        if failed is not None:
            return failed
        if known is None:
            return web.json_response({"error": "RecordNotFound"}, status=404)
        update = body.get("ticket") or {}
        comment_id = self._file(acc, ticket_id, update.get("comment") or {}, update.get("metadata"))
        known["status"] = "open"
        self._log(acc, request, "tickets/update", conv=conv, marker=_marker(body))
        if acc.before_answer is not None:
            await acc.before_answer("tickets/update")
        return web.json_response(
            {
                "ticket": _public(known),
                "audit": {"events": [{"type": "Comment", "id": comment_id}]},
            }
        )

    async def _audits(self, request: web.Request) -> web.Response:
        """A ticket's audits, oldest first, in cursor pages (``page[size]``, ``page[after]``)."""
        acc, failed = await self._gate(request, "tickets/audits")
        if failed is not None:
            return failed
        audits = acc.audits.get(int(request.match_info["id"]), [])
        size = int(request.query.get("page[size]", "100"))
        start = int(request.query.get("page[after]", "0"))
        more = start + size < len(audits)
        self._log(acc, request, "tickets/audits")
        return web.json_response(
            {
                "audits": audits[start : start + size],
                "meta": {"has_more": more, "after_cursor": str(start + size) if more else None},
            }
        )


@web.middleware
async def _arrival(request: web.Request, handler: Any) -> web.StreamResponse:
    request[ARRIVED] = time.monotonic()
    try:
        response: web.StreamResponse = await handler(request)
    except ConnectionResetError:
        # the worker was killed while sending: nothing was filed, nobody reads the answer
        return web.Response(status=499)
    return response


def _public(ticket: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in ticket.items() if k != "comments"}


def _marker(body: Any) -> tuple[int, int] | None:
    found = _markers(body)
    return found[0] if found else None


def _markers(body: Any) -> tuple[tuple[int, int], ...]:
    """Every message marker in a comment (or a ticket's first comment), each once, in
    the order they appear."""
    if not isinstance(body, dict):
        return ()
    text = body.get("body")
    if text is None:
        comment = (body.get("ticket") or {}).get("comment") or {}
        text = f"{comment.get('body') or ''}\n{comment.get('html_body') or ''}"
    found = ((int(c), int(n)) for c, n in MARKER.findall(str(text or "")))
    return tuple(dict.fromkeys(found))
