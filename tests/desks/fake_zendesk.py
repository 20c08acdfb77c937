"""A fake Zendesk Support API for the desk conformance suite (aiohttp, 127.0.0.1:0).

Shaped on the calls ``deskbridge.outbound.zendesk`` makes, with Zendesk's API-token
basic auth (``{email}/token:{api_token}``) enforced: users by ``create_or_update``
(matched on external_id), identities, uploads, tickets created with an
``Idempotency-Key`` (kept two hours), comments by ``PUT /tickets/{id}``, tickets by
``external_id``, each update's audit with its ``metadata.custom`` (Ticket Audits API).
Agent replies come back as the signed ``ticket.comment_added`` event, which (as Zendesk's)
carries no attachments: the agent's comments, with their files, are served by List
Comments (``GET /tickets/{id}/comments``, cursor pages, ``sort_order``).
Erasure: bulk ticket deletion and permanent deletion, Delete User and Permanently Delete
User, read back by Show Ticket, Show User (a deleted user is ``active: false``) and Show
Deleted User (``Permanently Deleted User`` once purged); a missing record is Zendesk's
``{"error": "RecordNotFound"}`` 404. ``purge_lag`` keeps deletions pending (Zendesk runs
them as background jobs); ``wrong_route`` answers every API call with a proxy's HTML 404.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from deskbridge.outbound.zendesk.webhook import sign

from .base import FakeDesk, FakePart, FakeTicket, FakeUser, Faults, partial_failure

__all__ = ["FakeZendesk"]

EMAIL = "bot@acme.test"
API_TOKEN = "zd-conformance-token"
SECRET = "zd-conformance-webhook-secret"


class FakeZendesk(FakeDesk):
    desk = "zendesk"
    dedups_retries = True
    """Tickets carry our conversation id as external_id, so a retried create finds them."""
    writes = {
        "create": ("POST", r"/api/v2/tickets"),
        "append": ("PUT", r"/api/v2/tickets/\d+"),
    }
    reconciles = frozenset({"create", "append"})
    """Create: Idempotency-Key and external_id; append: the delivery id in audit metadata."""

    def __init__(self) -> None:
        self._users: dict[str, FakeUser] = {}
        self._identities: dict[str, list[dict[str, Any]]] = {}
        self._tickets: dict[str, FakeTicket] = {}
        self._external: dict[str, str] = {}
        self._uploads: dict[str, tuple[str, bytes, str]] = {}
        self._idempotent: dict[str, dict[str, Any]] = {}
        self._audits: dict[str, list[dict[str, Any]]] = {}
        self._comments: dict[str, list[dict[str, Any]]] = {}
        self._deleted_users: dict[str, FakeUser] = {}
        self._purged: set[str] = set()
        self.purge_lag = False
        """Accept deletions but leave everything visible (the background job has not run)."""
        self.wrong_route = False
        """Answer every API call with an HTML 404, as a wrong base_url or a proxy does."""
        self.event_attachments = False
        """Put the comment's attachments in the event too (a shape Zendesk does not send)."""
        self.faults = Faults()
        self._calls: list[tuple[str, str, int]] = []
        self._fail: list[tuple[int, dict[str, str]]] = []
        self._stall: list[float] = []
        self._ids = itertools.count(1001)
        self._runner: web.AppRunner | None = None
        self.url = ""

    # -- FakeDesk ------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(middlewares=[self._gate])
        api = "/api/v2"
        app.router.add_post(f"{api}/users/create_or_update", self._user)
        app.router.add_get(f"{api}/users/{{id}}/identities", self._list_identities)
        app.router.add_post(f"{api}/users/{{id}}/identities", self._add_identity)
        app.router.add_post(f"{api}/uploads", self._upload)
        app.router.add_post(f"{api}/tickets", self._create)
        app.router.add_get(f"{api}/tickets", self._find)
        app.router.add_put(f"{api}/tickets/{{id}}", self._update)
        app.router.add_get(f"{api}/tickets/{{id}}/audits", self._list_audits)
        app.router.add_get(f"{api}/tickets/{{id}}/comments", self._list_comments)
        app.router.add_put(f"{api}/users/{{id}}/merge", self._merge)
        app.router.add_delete(f"{api}/tickets/destroy_many", self._destroy_tickets)
        app.router.add_delete(f"{api}/deleted_tickets/destroy_many", self._purge_tickets)
        app.router.add_get(f"{api}/tickets/{{id}}", self._show_ticket)
        app.router.add_delete(f"{api}/users/{{id}}", self._delete_user)
        app.router.add_get(f"{api}/users/{{id}}", self._show_user)
        app.router.add_delete(f"{api}/deleted_users/{{id}}", self._purge_user)
        app.router.add_get(f"{api}/deleted_users/{{id}}", self._show_deleted_user)
        app.router.add_get("/attachments/{token}", self._attachment)
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
            f'{{type: zendesk, base_url: "{self.url}", email: {EMAIL}, '
            f'api_token: {API_TOKEN}, webhook_secret: "{SECRET}"}}'
        )

    def users(self) -> list[FakeUser]:
        return list(self._users.values())

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

    async def agent_reply(
        self,
        client: Any,
        rt: Any,
        ticket_id: str,
        text: str,
        attachment: tuple[str, bytes, str] | None = None,
    ) -> None:
        comment_id = str(next(self._ids))
        names: list[str] = []
        attachments = []
        if attachment is not None:
            token = f"att{comment_id}"
            self._uploads[token] = attachment
            names.append(attachment[0])
            attachments.append(
                {
                    "content_url": f"{self.url}/attachments/{token}",
                    "file_name": attachment[0],
                    "content_type": attachment[2],
                    "size": len(attachment[1]),
                }
            )
        self._tickets[ticket_id].parts.append(FakePart("agent", text, names))
        self._comments.setdefault(ticket_id, []).append(
            {
                "id": int(comment_id),
                "type": "Comment",
                "author_id": 9001,
                "body": text,
                "public": True,
                "attachments": [{"id": next(self._ids), **a} for a in attachments],
            }
        )
        await self._notify(
            client,
            ticket_id,
            comment_id,
            text,
            staff=True,
            attachments=attachments if self.event_attachments else None,
        )

    async def notify_customer_part(self, client: Any, rt: Any, ticket_id: str) -> None:
        ticket = self._tickets[ticket_id]
        last = next(p for p in reversed(ticket.parts) if p.author == "user")
        await self._notify(client, ticket_id, str(next(self._ids)), last.text, staff=False)

    # -- the webhook -----------------------------------------------------------------------

    async def _notify(
        self,
        client: Any,
        ticket_id: str,
        comment_id: str,
        text: str,
        *,
        staff: bool,
        attachments: list[dict[str, Any]] | None = None,
    ) -> None:
        ticket = self._tickets[ticket_id]
        body = json.dumps(
            {
                "type": "zen:event-type:ticket.comment_added",
                "account_id": 1,
                "id": f"evt-{comment_id}",
                "time": datetime.now(UTC).isoformat(),
                "zendesk_event_version": "2022-11-06",
                "subject": f"zen:ticket:{ticket_id}",
                "detail": {"id": ticket_id, "requester_id": ticket.user_id, "status": "OPEN"},
                "event": {
                    "comment": {
                        "id": comment_id,
                        "body": text,
                        "is_public": True,
                        **({"attachments": attachments} if attachments is not None else {}),
                        "author": {
                            "id": "9001" if staff else ticket.user_id,
                            "is_staff": staff,
                            "name": "Sam Agent" if staff else "Customer",
                        },
                    }
                },
            }
        ).encode()
        ts = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        resp = await client.post(
            "/desks/zendesk/acme",
            data=body,
            headers={
                "X-Zendesk-Webhook-Signature": sign(SECRET, ts, body),
                "X-Zendesk-Webhook-Signature-Timestamp": ts,
                "Content-Type": "application/json",
            },
        )
        assert resp.status == 200, await resp.text()

    # -- the API ---------------------------------------------------------------------------

    @web.middleware
    async def _gate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/attachments/"):
            return await handler(request)
        if self.wrong_route:
            self._calls.append((request.method, request.path, 404))
            return web.Response(
                status=404,
                text="<html><body><h1>404 Not Found</h1></body></html>",
                content_type="text/html",
            )
        expected = base64.b64encode(f"{EMAIL}/token:{API_TOKEN}".encode()).decode()
        if request.headers.get("Authorization") != f"Basic {expected}":
            self._calls.append((request.method, request.path, 401))
            return web.json_response({"error": "Couldn't authenticate you"}, status=401)
        mode = self.faults.take(request.method, request.path)
        if mode is not None:
            self._calls.append((request.method, request.path, 0))
            return await partial_failure(
                mode,
                request,
                handler,
                lambda: web.json_response(
                    {"error": "APIRateLimitExceeded"}, status=429, headers={"Retry-After": "1"}
                ),
            )
        if self._fail:
            status, headers = self._fail.pop(0)
            self._calls.append((request.method, request.path, status))
            return web.json_response(
                {"error": "InjectedFault", "description": "injected"},
                status=status,
                headers=headers,
            )
        resp = await handler(request)
        self._calls.append((request.method, request.path, resp.status))
        if self._stall:
            # the work is done, the answer is late: the client times out and retries
            await asyncio.sleep(self._stall.pop(0))
        return resp

    async def _user(self, request: web.Request) -> web.Response:
        user = (await request.json())["user"]
        ext = user.get("external_id")
        found = next((u for u in self._users.values() if ext and u.external_id == ext), None)
        if found is None:
            found = FakeUser(id=str(next(self._ids)), external_id=ext)
            self._users[found.id] = found
            self._identities[found.id] = []
        found.name = user.get("name")
        for kind, field in (("email", found.emails), ("phone", found.phones)):
            if user.get(kind) and user[kind] not in field:
                field.append(user[kind])
                itype = "email" if kind == "email" else "phone_number"
                self._identities[found.id].append(
                    {"id": next(self._ids), "type": itype, "value": user[kind]}
                )
        return web.json_response({"user": {"id": int(found.id)}}, status=201)

    async def _list_identities(self, request: web.Request) -> web.Response:
        idents = self._identities.get(request.match_info["id"], [])
        return web.json_response({"identities": idents, "next_page": None})

    async def _add_identity(self, request: web.Request) -> web.Response:
        user = self._users[request.match_info["id"]]
        ident = (await request.json())["identity"]
        target = user.emails if ident["type"] == "email" else user.phones
        if ident["value"] not in target:
            target.append(ident["value"])
        self._identities[user.id].append({"id": next(self._ids), **ident})
        return web.json_response({"identity": {"id": next(self._ids)}}, status=201)

    async def _upload(self, request: web.Request) -> web.Response:
        token = f"up{next(self._ids)}"
        self._uploads[token] = (
            request.query.get("filename", "file"),
            await request.read(),
            request.headers.get("Content-Type", "application/octet-stream"),
        )
        return web.json_response({"upload": {"token": token}}, status=201)

    def _part(self, comment: dict[str, Any], author: str) -> FakePart:
        names = [self._uploads[t][0] for t in comment.get("uploads", [])]
        return FakePart(author, comment.get("body") or comment.get("html_body") or "", names)

    async def _create(self, request: web.Request) -> web.Response:
        body = await request.json()
        key = request.headers.get("Idempotency-Key")
        if key and key in self._idempotent:
            return web.json_response(
                self._idempotent[key], status=201, headers={"x-idempotency-lookup": "hit"}
            )
        t = body["ticket"]
        ticket_id = str(next(self._ids))
        ticket = FakeTicket(id=ticket_id, user_id=str(t["requester_id"]))
        ticket.parts.append(self._part(t["comment"], "user"))
        self._tickets[ticket_id] = ticket
        self._external[t["external_id"]] = ticket_id
        answer = {
            "ticket": {"id": int(ticket_id), "status": "new"},
            "audit": self._audit(ticket_id, t),
        }
        if key:
            self._idempotent[key] = answer
        return web.json_response(answer, status=201)

    async def _find(self, request: web.Request) -> web.Response:
        ext = request.query.get("external_id", "")
        found = []
        if ext in self._external:
            t = self._tickets[self._external[ext]]
            found.append({"id": int(t.id), "status": "open", "description": t.parts[0].text})
        return web.json_response({"tickets": found, "next_page": None})

    async def _update(self, request: web.Request) -> web.Response:
        ticket = self._tickets.get(request.match_info["id"])
        if ticket is None:
            return web.json_response({"error": "RecordNotFound"}, status=404)
        update = (await request.json())["ticket"]
        comment = update["comment"]
        author = "user" if comment.get("public", True) else "note"
        ticket.parts.append(self._part(comment, author))
        return web.json_response(
            {
                "ticket": {"id": int(ticket.id), "status": "open"},
                "audit": self._audit(ticket.id, update),
            }
        )

    def _audit(self, ticket_id: str, ticket: dict[str, Any]) -> dict[str, Any]:
        """The update's audit: its comment event, and the update's ``metadata`` kept as
        ``metadata.custom`` (Zendesk's "Setting Metadata")."""
        audit = {
            "id": next(self._ids),
            "ticket_id": int(ticket_id),
            "metadata": {"system": {"client": "deskbridge"}, "custom": ticket.get("metadata", {})},
            "events": [{"type": "Comment", "id": next(self._ids), "public": True}],
        }
        self._audits.setdefault(ticket_id, []).append(audit)
        return audit

    async def _list_audits(self, request: web.Request) -> web.Response:
        """Cursor pages, oldest first (``page[size]``, ``page[after]``)."""
        audits = self._audits.get(request.match_info["id"], [])
        size = int(request.query.get("page[size]", "100"))
        start = int(request.query.get("page[after]", "0"))
        page = audits[start : start + size]
        more = start + size < len(audits)
        return web.json_response(
            {
                "audits": page,
                "meta": {"has_more": more, "after_cursor": str(start + size) if more else None},
            }
        )

    async def _list_comments(self, request: web.Request) -> web.Response:
        """List Comments: cursor pages (``page[size]``, ``page[after]``), oldest first
        unless ``sort_order=desc``. Only the agents' comments are kept here."""
        comments = list(self._comments.get(request.match_info["id"], []))
        if request.query.get("sort_order") == "desc":
            comments.reverse()
        size = int(request.query.get("page[size]", "100"))
        start = int(request.query.get("page[after]", "0"))
        more = start + size < len(comments)
        return web.json_response(
            {
                "comments": comments[start : start + size],
                "meta": {"has_more": more, "after_cursor": str(start + size) if more else None},
            }
        )

    async def _merge(self, request: web.Request) -> web.Response:
        """Merge End Users: the user in the path into ``user.id``."""
        source = self._users.get(request.match_info["id"])
        target = self._users.get(str((await request.json())["user"]["id"]))
        if source is None or target is None:
            return web.json_response({"error": "RecordNotFound"}, status=404)
        target.emails += [e for e in source.emails if e not in target.emails]
        target.phones += [p for p in source.phones if p not in target.phones]
        for ticket in self._tickets.values():
            if ticket.user_id == source.id:
                ticket.user_id = target.id
        del self._users[source.id]
        return web.json_response({"user": {"id": int(target.id)}})

    async def _destroy_tickets(self, request: web.Request) -> web.Response:
        if not self.purge_lag:
            for ticket_id in request.query["ids"].split(","):
                self._tickets.pop(ticket_id, None)
        return web.json_response({"job_status": {"id": "job1", "status": "queued"}})

    async def _purge_tickets(self, request: web.Request) -> web.Response:
        return web.json_response({"job_status": {"id": "job2", "status": "queued"}})

    async def _show_ticket(self, request: web.Request) -> web.Response:
        ticket_id = request.match_info["id"]
        if ticket_id not in self._tickets:
            return _not_found()
        return web.json_response({"ticket": {"id": int(ticket_id)}})

    async def _delete_user(self, request: web.Request) -> web.Response:
        user_id = request.match_info["id"]
        if user_id not in self._users:
            return _not_found()
        if not self.purge_lag:
            self._deleted_users[user_id] = self._users.pop(user_id)
        return web.json_response({"user": {"id": int(user_id), "active": self.purge_lag}})

    async def _show_user(self, request: web.Request) -> web.Response:
        user_id = request.match_info["id"]
        if user_id in self._users:
            return web.json_response({"user": {"id": int(user_id), "active": True}})
        if user_id in self._deleted_users:
            return web.json_response({"user": {"id": int(user_id), "active": False}})
        return _not_found()

    async def _purge_user(self, request: web.Request) -> web.Response:
        user_id = request.match_info["id"]
        if user_id not in self._deleted_users:
            return _not_found()
        if not self.purge_lag:
            del self._deleted_users[user_id]
            self._purged.add(user_id)
        return web.json_response({"deleted_user": {"id": int(user_id)}})

    async def _show_deleted_user(self, request: web.Request) -> web.Response:
        user_id = request.match_info["id"]
        if user_id in self._purged:
            name = "Permanently Deleted User"
            return web.json_response({"deleted_user": {"id": int(user_id), "name": name}})
        user = self._deleted_users.get(user_id)
        if user is None:
            return _not_found()
        return web.json_response({"deleted_user": {"id": int(user_id), "name": user.name}})

    async def _attachment(self, request: web.Request) -> web.Response:
        _, data, ctype = self._uploads[request.match_info["token"]]
        return web.Response(body=data, content_type=ctype)


def _not_found() -> web.Response:
    return web.json_response({"error": "RecordNotFound", "description": "Not found"}, status=404)
