"""A fake Udesk Open API v2 for the desk conformance suite and tests/test_udesk.py
(aiohttp, 127.0.0.1:0).

Shaped on the calls ``deskbridge.outbound.udesk`` makes. It enforces the v2 signature:
``sign`` is recomputed from the token it issued at ``log_in``; a stale timestamp (over
5 minutes) and a nonce seen in the last 15 minutes are refused. It counts calls in a
sliding minute and refuses past ``limit_per_minute``. The refusal codes (2001 bad sign,
2002 stale timestamp, 2003 reused nonce, 429 rate limit, 3001 not found) are this fake's,
not Udesk's published ones: see docs/desks/udesk.md. Agent replies reach deskbridge the
way they do from Udesk: the account's poller reads the ticket's replies. Erasure:
``DELETE /customers/destroy_customer`` and ``/tickets/destroy_ticket`` (shapes deskbridge
assumes, unconfirmed in Udesk's documentation); ``wrong_route`` answers every call with
a proxy's HTML 404.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from deskbridge.outbound.udesk import sign
from deskbridge.outbound.udesk.replies import CUSTOMER_MARK, NOTE_MARK

from .base import FakeDesk, FakePart, FakeTicket, FakeUser, Faults, partial_failure

__all__ = ["ADMIN", "PASSWORD", "SECRET", "FakeUdesk"]

ADMIN = "admin@acme.test"
PASSWORD = "udesk-conformance-password"
SECRET = "udesk-callback-secret"
_CN = timezone(timedelta(hours=8))
_API = "/open_api_v1"


class FakeUdesk(FakeDesk):
    desk = "udesk"
    dedups_retries = False
    """Udesk has no idempotency key and no external id to look a ticket up by: a call
    that did its work but answered too late may be repeated."""
    writes = {
        "create": ("POST", rf"{_API}/tickets"),
        "append": ("POST", rf"{_API}/tickets/\d+/replies"),
    }
    reconciles = frozenset({"append"})
    """A reply is found again in the ticket's replies list; a ticket cannot be."""

    def __init__(self, *, limit_per_minute: int = 60, burst: int = 30) -> None:
        self.limit_per_minute = limit_per_minute
        self.burst = burst
        self.token = f"tok-{uuid.uuid4()}"
        self._customers: dict[str, dict[str, Any]] = {}
        self._tickets: dict[str, FakeTicket] = {}
        self.wrong_route = False
        """Answer every call with an HTML 404, as a wrong base_url or a proxy does."""
        self._replies: dict[str, list[dict[str, Any]]] = {}
        self._files: dict[str, tuple[str, bytes, str]] = {}
        self._nonces: dict[str, float] = {}
        self._recent: list[float] = []
        self._calls: list[tuple[str, str, int]] = []
        self._fail: list[tuple[int, dict[str, str]]] = []
        self._stall: list[float] = []
        self.faults = Faults()
        self._ids = itertools.count(5001)
        self._runner: web.AppRunner | None = None
        self.url = ""
        self.logins = 0
        self.reply_ids = True
        """False: a reply is answered ``{"code": 1000}`` without its id (seen in the wild)."""
        self.status: dict[str, int] = {}
        """A ticket's ``status_id`` (1 open, 2 resolved, 3 closed, 4 solving; 1 unset)."""
        self.bodies: list[tuple[str, Any]] = []
        """(path, JSON body or bytes) of every accepted write, for assertions."""

    # -- FakeDesk ------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(middlewares=[self._gate])
        app.router.add_post(f"{_API}/log_in", self._log_in)
        app.router.add_get(f"{_API}/customers/get_customer", self._get_customer)
        app.router.add_post(f"{_API}/customers", self._create_customer)
        app.router.add_put(f"{_API}/customers/update_customer", self._update_customer)
        app.router.add_post(f"{_API}/tickets", self._create_ticket)
        app.router.add_post(f"{_API}/tickets/upload_file", self._upload)
        app.router.add_post(f"{_API}/tickets/{{id}}/replies", self._add_reply)
        app.router.add_get(f"{_API}/tickets/{{id}}/replies", self._list_replies)
        app.router.add_get(f"{_API}/tickets/detail", self._detail)
        app.router.add_delete(f"{_API}/customers/destroy_customer", self._destroy_customer)
        app.router.add_delete(f"{_API}/tickets/destroy_ticket", self._destroy_ticket)
        app.router.add_get("/files/{id}", self._file)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def desk_yaml(self) -> str:
        return (
            f'{{type: udesk, base_url: "{self.url}", email: "{ADMIN}", '
            f'password: "{PASSWORD}", callback_secret: "{SECRET}", '
            f"requests_per_minute: {self.limit_per_minute}, burst: {self.burst}, "
            "max_wait_seconds: 5}"
        )

    def users(self) -> list[FakeUser]:
        return [
            FakeUser(
                id=cid,
                external_id=c.get("web_token"),
                name=c.get("nick_name"),
                emails=[e for e in [c.get("email"), *c["other_emails"]] if e],
                phones=[p["content"] for p in c["cellphones"]],
            )
            for cid, c in self._customers.items()
        ]

    def tickets(self) -> list[FakeTicket]:
        return list(self._tickets.values())

    def calls(self) -> list[tuple[str, str, int]]:
        return list(self._calls)

    def fail(self, status: int, times: int, headers: dict[str, str] | None = None) -> None:
        if status == 429 and headers is None:
            headers = {"Retry-After": "1"}
        self._fail += [(status, headers or {})] * times

    def stall(self, seconds: float, times: int) -> None:
        self._stall += [seconds] * times

    def expire_token(self) -> None:
        """Udesk forgets the token it issued (the next signed call is refused)."""
        self.token = f"tok-{uuid.uuid4()}"

    async def agent_reply(
        self,
        client: Any,
        rt: Any,
        ticket_id: str,
        text: str,
        attachment: tuple[str, bytes, str] | None = None,
    ) -> None:
        from deskbridge.flows.polling import poll_once

        self.add_agent_reply(ticket_id, text, attachment)
        await poll_once(rt, "acme", urgent=True)

    async def notify_customer_part(self, client: Any, rt: Any, ticket_id: str) -> None:
        from deskbridge.flows.polling import poll_once

        await poll_once(rt, "acme", urgent=True)

    def add_agent_reply(
        self,
        ticket_id: str,
        text: str,
        attachment: tuple[str, bytes, str] | None = None,
        *,
        public: bool = True,
    ) -> str:
        """An agent answers on the ticket in Udesk's agent console; returns the reply id."""
        reply_id = str(next(self._ids))
        files = []
        if attachment is not None:
            self._files[reply_id] = attachment
            files.append(
                {
                    "url": f"{self.url}/files/{reply_id}",
                    "file_name": attachment[0],
                    "size": len(attachment[1]),
                }
            )
        self._reply(ticket_id, reply_id, text, "agent", public=public, files=files)
        author = "agent" if public else "note"
        self._tickets[ticket_id].parts.append(
            FakePart(author, text, [attachment[0]] if attachment else [])
        )
        return reply_id

    # -- the API ---------------------------------------------------------------------------

    @web.middleware
    async def _gate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/files/"):
            return await handler(request)
        if self.wrong_route:
            self._calls.append((request.method, request.path, 404))
            return web.Response(
                status=404,
                text="<html><body><h1>404 Not Found</h1></body></html>",
                content_type="text/html",
            )
        now = time.time()
        self._recent = [t for t in self._recent if t > now - 60]
        if len(self._recent) >= self.limit_per_minute:
            return self._refuse(request, 429, 429, "too many requests")
        self._recent.append(now)
        if request.path != f"{_API}/log_in":
            refused = self._check_sign(request, now)
            if refused is not None:
                return self._refuse(request, 200, *refused)
        mode = self.faults.take(request.method, request.path)
        if mode is not None:
            self._calls.append((request.method, request.path, 0))
            return await partial_failure(
                mode,
                request,
                handler,
                lambda: web.json_response(
                    {"code": 429, "message": "too many requests"},
                    status=429,
                    # Udesk's own code in the body; Retry-After keeps the suite's wait short
                    headers={"Retry-After": "1"},
                ),
            )
        if self._fail:
            status, headers = self._fail.pop(0)
            self._calls.append((request.method, request.path, status))
            return web.json_response(
                {"code": status, "message": "injected"}, status=status, headers=headers
            )
        resp = await handler(request)
        self._calls.append((request.method, request.path, resp.status))
        if self._stall:
            await asyncio.sleep(self._stall.pop(0))
        return resp

    def _check_sign(self, request: web.Request, now: float) -> tuple[int, str] | None:
        q = request.query
        ts, nonce = q.get("timestamp", ""), q.get("nonce", "")
        if q.get("email") != ADMIN or q.get("sign_version") != "v2" or not nonce:
            return 2001, "sign invalid"
        if not ts.isdigit() or abs(now - int(ts)) > 300:
            return 2002, "timestamp expired"
        self._nonces = {n: t for n, t in self._nonces.items() if t > now - 900}
        if nonce in self._nonces:
            return 2003, "nonce used"
        self._nonces[nonce] = now
        if q.get("sign") != sign(ADMIN, self.token, int(ts), nonce):
            return 2001, "sign invalid"
        return None

    def _refuse(self, request: web.Request, status: int, code: int, message: str) -> web.Response:
        self._calls.append((request.method, request.path, code))
        return web.json_response({"code": code, "message": message}, status=status)

    async def _log_in(self, request: web.Request) -> web.Response:
        data = await request.json()
        if data.get("email") != ADMIN or data.get("password") != PASSWORD:
            return web.json_response({"code": 2001, "message": "wrong password"})
        self.logins += 1
        return web.json_response({"code": 1000, "open_api_auth_token": self.token})

    def _find(self, kind: str, value: str) -> str | None:
        for cid, c in self._customers.items():
            if (
                (kind == "id" and cid == value)
                or (kind == "token" and c.get("web_token") == value)
                or (kind == "email" and value in [c.get("email"), *c["other_emails"]])
                or (kind == "cellphone" and value in [p["content"] for p in c["cellphones"]])
            ):
                return cid
        return None

    def _customer_json(self, cid: str) -> dict[str, Any]:
        c = self._customers[cid]
        return {
            "id": int(cid),
            "nick_name": c.get("nick_name"),
            "email": c.get("email"),
            "web_token": c.get("web_token"),
            "other_emails": [{"id": i, "content": e} for i, e in enumerate(c["other_emails"])],
            "cellphones": c["cellphones"],
        }

    async def _get_customer(self, request: web.Request) -> web.Response:
        cid = self._find(request.query.get("type", ""), request.query.get("content", ""))
        if cid is None:
            return web.json_response({"code": 3001, "message": "customer not found"})
        return web.json_response({"code": 1000, "customer": self._customer_json(cid)})

    async def _destroy_customer(self, request: web.Request) -> web.Response:
        cid = self._find(request.query.get("type", ""), request.query.get("content", ""))
        if cid is None:
            return web.json_response({"code": 3001, "message": "customer not found"})
        del self._customers[cid]
        return web.json_response({"code": 1000})

    async def _destroy_ticket(self, request: web.Request) -> web.Response:
        if self._tickets.pop(request.query.get("content", ""), None) is None:
            return web.json_response({"code": 3001, "message": "ticket not found"})
        return web.json_response({"code": 1000})

    def _phones(self, pairs: list[list[Any]], have: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = [p for p in have if any(p["id"] == pid for pid, _ in pairs)]
        for pid, content in pairs:
            if pid is None:
                out.append({"id": next(self._ids), "content": str(content)})
        return out

    async def _create_customer(self, request: web.Request) -> web.Response:
        data = await request.json()
        self.bodies.append((request.path, data))
        customer = data["customer"]
        cid = str(next(self._ids))
        self._customers[cid] = {
            "nick_name": customer.get("nick_name"),
            "email": customer.get("email"),
            "web_token": customer.get("web_token"),
            "other_emails": [e for _, e in data.get("other_emails") or []],
            "cellphones": self._phones(customer.get("cellphones") or [], []),
        }
        return web.json_response({"code": 1000, "customer": self._customer_json(cid)})

    async def _update_customer(self, request: web.Request) -> web.Response:
        data = await request.json()
        self.bodies.append((request.path, data))
        cid = self._find(request.query.get("type", ""), request.query.get("content", ""))
        if cid is None:
            return web.json_response({"code": 3001, "message": "customer not found"})
        c, update = self._customers[cid], data["customer"]
        if "web_token" in update:
            c["web_token"] = update["web_token"]
        if "cellphones" in update:
            c["cellphones"] = self._phones(update["cellphones"], c["cellphones"])
        c["other_emails"] += [e for _, e in data.get("other_emails") or []]
        return web.json_response({"code": 1000, "customer": self._customer_json(cid)})

    async def _create_ticket(self, request: web.Request) -> web.Response:
        data = await request.json()
        self.bodies.append((request.path, data))
        t = data["ticket"]
        if not t.get("subject") or not t.get("content"):
            return web.json_response({"code": 2100, "message": "subject and content required"})
        cid = self._find(t.get("type", ""), str(t.get("type_content", "")))
        if cid is None:
            return web.json_response({"code": 3001, "message": "customer not found"})
        ticket_id = str(next(self._ids))
        self._tickets[ticket_id] = FakeTicket(ticket_id, cid, [FakePart("user", t["content"])])
        self._replies[ticket_id] = []
        # the opening message is listed as the customer's first reply
        self._reply(ticket_id, f"{ticket_id}-0", t["content"], "customer")
        return web.json_response({"code": 1000, "ticket_id": int(ticket_id)})

    def _reply(
        self,
        ticket_id: str,
        reply_id: str,
        content: str,
        user_type: str,
        *,
        public: bool = True,
        files: list[dict[str, Any]] | None = None,
    ) -> None:
        self._replies[ticket_id].append(
            {
                "id": int(reply_id) if reply_id.isdigit() else reply_id,
                "content": content,
                "content_type": "text",
                "public": public,
                "created_at": datetime.now(_CN).strftime("%Y-%m-%d %H:%M:%S %z"),
                "author": {
                    "id": 1 if user_type == "agent" else 2,
                    "user_type": user_type,
                    "nick_name": "Sam Agent" if user_type == "agent" else "Customer",
                },
                "attachments": files or [],
            }
        )

    async def _add_reply(self, request: web.Request) -> web.Response:
        ticket_id = request.match_info["id"]
        if ticket_id not in self._tickets:
            return web.json_response({"code": 3001, "message": "ticket not found"})
        data = await request.json()
        self.bodies.append((request.path, data))
        reply = data["reply"]
        content = str(reply.get("content") or "")
        if not content:
            return web.json_response({"code": 2100, "message": "content required"})
        public = reply.get("public", True) is not False
        customer = reply.get("user_type") == "customer"
        if customer and str(reply.get("customer_id")) != self._tickets[ticket_id].user_id:
            return web.json_response({"code": 2100, "message": "not the ticket's customer"})
        reply_id = str(next(self._ids))
        self._reply(
            ticket_id, reply_id, content, "customer" if customer else "agent", public=public
        )
        marked = content.split("\n", 1)[0].endswith(CUSTOMER_MARK)
        if not public or content.startswith(NOTE_MARK):
            author = "note"
        elif customer or marked:
            author = "user"
        else:
            author = "agent"
        self._tickets[ticket_id].parts.append(FakePart(author, content))
        if not self.reply_ids:
            return web.json_response({"code": 1000})
        return web.json_response({"code": 1000, "reply": {"id": int(reply_id)}})

    async def _list_replies(self, request: web.Request) -> web.Response:
        ticket_id = request.match_info["id"]
        if ticket_id not in self._replies:
            return web.json_response({"code": 3001, "message": "ticket not found"})
        items = list(reversed(self._replies[ticket_id]))  # newest first
        return web.json_response(
            {
                "code": 1000,
                "replies": items,
                "meta": {"current_page": 1, "total_pages": 1, "total_count": len(items)},
            }
        )

    async def _detail(self, request: web.Request) -> web.Response:
        ticket_id = request.query.get("id", "")
        if ticket_id not in self._tickets:
            return web.json_response({"code": 3001, "message": "ticket not found"})
        status_id = self.status.get(ticket_id, 1)
        names = {1: "开启", 2: "已解决", 3: "已关闭", 4: "解决中"}
        return web.json_response(
            {
                "code": 1000,
                "ticket": {
                    "id": int(ticket_id),
                    "status_id": status_id,
                    "status": names[status_id],
                },
            }
        )

    async def _upload(self, request: web.Request) -> web.Response:
        ticket_id = request.query.get("ticket_id", "")
        name = request.query.get("file_name", "")
        if ticket_id not in self._tickets or not name:
            return web.json_response({"code": 3001, "message": "ticket not found"})
        data = await request.read()
        self.bodies.append((request.path, data))
        last = next(p for p in reversed(self._tickets[ticket_id].parts) if p.author == "user")
        last.attachments.append(name)
        return web.json_response({"code": 1000})

    async def _file(self, request: web.Request) -> web.Response:
        found = self._files.get(request.match_info["id"])
        if found is None:
            raise web.HTTPNotFound()
        return web.Response(body=found[1], content_type=found[2])
