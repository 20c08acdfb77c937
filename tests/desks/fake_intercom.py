"""A fake Intercom REST API for the desk conformance suite and the Intercom tests
(aiohttp, 127.0.0.1:0).

Shaped on the calls ``deskbridge.outbound.intercom`` makes: Bearer auth (401 with
Intercom's ``error.list`` otherwise) and the ``Intercom-Version`` header (the real API
falls back to the app's default version without it; the fake answers 400 so a missing
pin is caught), ``X-RateLimit-*`` headers on every answer, contacts (find by external_id
for users only, create with 409 on a taken external_id or email, update, search),
conversations opened by a contact, replies as the contact (``attachment_files``, at most
10) and admin notes, conversation search, ``GET /me``. Custom attributes must be among
``data_attributes`` (400 otherwise), as in a workspace. Agent replies come back as the
signed ``conversation.admin.replied`` notification. Erasure: ``DELETE /contacts/{id}``,
read back by ``GET /contacts/{id}`` (``not_found`` in an ``error.list`` once gone);
``delete_lag`` keeps a deleted contact visible, ``wrong_route`` answers every call with
a proxy's HTML 404.
"""

from __future__ import annotations

import asyncio
import base64
import html
import itertools
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from deskbridge.outbound.intercom.webhook import html_to_text, sign

from .base import FakeDesk, FakePart, FakeTicket, FakeUser, Faults, partial_failure

__all__ = ["ACCESS_TOKEN", "ADMIN_ID", "CLIENT_SECRET", "FakeIntercom"]

ACCESS_TOKEN = "ic-conformance-token"
CLIENT_SECRET = "ic-conformance-client-secret"
ADMIN_ID = "991267001"
VERSION = "2.14"
RATE_LIMIT = 10_000


@dataclass
class _Contact:
    id: str
    role: str
    external_id: str | None = None
    name: str | None = None
    email: str | None = None
    phone: str | None = None
    custom_attributes: dict[str, Any] = field(default_factory=dict)

    def json(self) -> dict[str, Any]:
        return {
            "type": "contact",
            "id": self.id,
            "workspace_id": "fakeapp",
            "external_id": self.external_id,
            "role": self.role,
            "email": self.email,
            "phone": self.phone,
            "name": self.name,
            "custom_attributes": dict(self.custom_attributes),
        }


@dataclass
class _Part:
    id: str
    part_type: str
    author_type: str
    author_id: str
    body: str
    created_at: int
    files: list[tuple[str, str, bytes]] = field(default_factory=list)
    """(token, name, bytes) of each attachment."""
    content_types: list[str] = field(default_factory=list)


@dataclass
class _Conversation:
    id: str
    contact_id: str
    created_at: int
    source_id: str
    source_body: str
    parts: list[_Part] = field(default_factory=list)
    state: str = "open"
    tags: list[str] = field(default_factory=list)
    team: str | None = None


class FakeIntercom(FakeDesk):
    desk = "intercom"
    dedups_retries = True
    """A retried first message searches the contact's recent conversations. The fake's
    search is consistent at once (Intercom's can lag behind a new conversation; set
    ``search_lag`` to model that: conversations that new are not found)."""
    writes = {
        "create": ("POST", r"/conversations"),
        "append": ("POST", r"/conversations/\d+/reply"),
    }
    reconciles = frozenset({"create", "append"})
    """Create: the contact's recent conversations by search; append: the conversation's
    newest parts (``GET /conversations/{id}``)."""

    def __init__(self, *, data_attributes: frozenset[str] | None = None) -> None:
        self.data_attributes = (
            frozenset({"deskbridge_emails", "deskbridge_phones"})
            if data_attributes is None
            else data_attributes
        )
        self.search_lag = 0.0
        self.delete_lag = False
        """Accept a contact's deletion but keep it visible."""
        self.wrong_route = False
        """Answer every call with an HTML 404, as a wrong base_url or a proxy does."""
        self.last_notification = b""
        self.version = VERSION
        self._contacts: dict[str, _Contact] = {}
        self._conversations: dict[str, _Conversation] = {}
        self._files: dict[str, tuple[str, bytes, str]] = {}
        self._calls: list[tuple[str, str, int]] = []
        self._bodies: list[tuple[str, str, Any]] = []
        self._fail: list[tuple[int, dict[str, str] | None]] = []
        self._stall: list[float] = []
        self.faults = Faults()
        self._ids = itertools.count(100_000_001)
        self._runner: web.AppRunner | None = None
        self.url = ""

    # -- FakeDesk ------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(middlewares=[self._gate])
        app.router.add_get("/me", self._me)
        app.router.add_get("/contacts/find_by_external_id/{external_id}", self._find_contact)
        app.router.add_post("/contacts/search", self._search_contacts)
        app.router.add_get("/contacts/{id}", self._get_contact)
        app.router.add_put("/contacts/{id}", self._update_contact)
        app.router.add_delete("/contacts/{id}", self._delete_contact)
        app.router.add_post("/contacts", self._create_contact)
        app.router.add_post("/conversations/search", self._search_conversations)
        app.router.add_post("/conversations", self._create_conversation)
        app.router.add_post("/conversations/{id}/reply", self._reply)
        app.router.add_get("/conversations/{id}", self._retrieve_conversation)
        app.router.add_post("/tags", self._create_tag)
        app.router.add_post("/conversations/{id}/tags", self._tag_conversation)
        app.router.add_post("/conversations/{id}/parts", self._assign)
        app.router.add_get("/downloads/{token}", self._download)
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
            f'{{type: intercom, base_url: "{self.url}", access_token: "{ACCESS_TOKEN}", '
            f'client_secret: "{CLIENT_SECRET}", api_version: "{self.version}"}}'
        )

    def users(self) -> list[FakeUser]:
        return [
            FakeUser(
                id=c.id,
                external_id=c.external_id,
                name=c.name,
                emails=[c.email] if c.email else [],
                phones=[c.phone] if c.phone else [],
            )
            for c in self._contacts.values()
        ]

    def tickets(self) -> list[FakeTicket]:
        out = []
        for conv in self._conversations.values():
            parts = []
            for p in conv.parts:
                author = {"user": "user", "lead": "user", "admin": "agent", "bot": "agent"}
                kind = "note" if p.part_type == "note" else author.get(p.author_type, "agent")
                parts.append(FakePart(kind, _plain(p.body), [name for _, name, _ in p.files]))
            out.append(FakeTicket(id=conv.id, user_id=conv.contact_id, parts=parts))
        return out

    def calls(self) -> list[tuple[str, str, int]]:
        return list(self._calls)

    def bodies(self) -> list[tuple[str, str, Any]]:
        """Every JSON body the API took: (method, path, body)."""
        return list(self._bodies)

    def contacts(self) -> list[dict[str, Any]]:
        return [c.json() for c in self._contacts.values()]

    def fail(self, status: int, times: int, headers: dict[str, str] | None = None) -> None:
        """The next ``times`` calls get ``status``; a 429 without ``headers`` carries
        Intercom's own: Remaining 0 and a Reset one second ahead."""
        self._fail += [(status, headers)] * times

    def stall(self, seconds: float, times: int) -> None:
        """The next ``times`` calls do their work, then answer ``seconds`` late."""
        self._stall += [seconds] * times

    async def agent_reply(
        self,
        client: Any,
        rt: Any,
        ticket_id: str,
        text: str,
        attachment: tuple[str, bytes, str] | None = None,
    ) -> None:
        conv = self._conversations[ticket_id]
        files: list[tuple[str, str, bytes]] = []
        types: list[str] = []
        if attachment is not None:
            token = uuid.uuid4().hex
            self._files[token] = attachment
            files.append((token, attachment[0], attachment[1]))
            types.append(attachment[2])
        part = self._add_part(conv, "comment", "admin", ADMIN_ID, _html(text), files, types)
        await self.notify(client, "conversation.admin.replied", conv, [part])

    async def notify_customer_part(self, client: Any, rt: Any, ticket_id: str) -> None:
        conv = self._conversations[ticket_id]
        part = next(p for p in reversed(conv.parts) if p.author_type in ("user", "lead"))
        # Intercom's topic for it, and the same part under the admin topic (a part of the
        # contact's must never be taken for a reply whatever the topic says)
        await self.notify(client, "conversation.user.replied", conv, [part])
        await self.notify(client, "conversation.admin.replied", conv, [part])

    # -- notifications -------------------------------------------------------------------

    def notification(self, topic: str, conv: _Conversation, parts: list[_Part]) -> bytes:
        """A notification as Intercom sends it: ``data.item`` is the conversation, its
        ``conversation_parts`` the parts the notification is about."""
        now = int(time.time())
        return json.dumps(
            {
                "type": "notification_event",
                "app_id": "fakeapp",
                "id": f"notif_{uuid.uuid4()}",
                "topic": topic,
                "delivery_status": "pending",
                "delivery_attempts": 1,
                "delivered_at": 0,
                "first_sent_at": now,
                "created_at": now,
                "links": {},
                "self": None,
                "data": {"type": "notification_event_data", "item": self._item(conv, parts)},
            }
        ).encode()

    async def notify(
        self, client: Any, topic: str, conv: _Conversation, parts: list[_Part]
    ) -> None:
        body = self.last_notification = self.notification(topic, conv, parts)
        resp = await client.post(
            "/desks/intercom/acme",
            data=body,
            headers={
                "X-Hub-Signature": sign(CLIENT_SECRET, body),
                "Content-Type": "application/json",
            },
        )
        assert resp.status == 200, await resp.text()

    def _item(self, conv: _Conversation, parts: list[_Part]) -> dict[str, Any]:
        contact = self._contacts[conv.contact_id]
        return {
            "type": "conversation",
            "id": conv.id,
            "created_at": conv.created_at,
            "updated_at": int(time.time()),
            "title": None,
            "source": {
                "type": "conversation",
                "id": conv.source_id,
                "delivered_as": "customer_initiated",
                "subject": "",
                "body": _html(conv.source_body),
                "author": {"type": "user", "id": conv.contact_id, "name": contact.name},
                "attachments": [],
                "redacted": False,
            },
            "contacts": {
                "type": "contact.list",
                "contacts": [
                    {"type": "contact", "id": conv.contact_id, "external_id": contact.external_id}
                ],
            },
            "open": conv.state == "open",
            "state": conv.state,
            "read": True,
            "conversation_parts": {
                "type": "conversation_part.list",
                "conversation_parts": [self._part_json(p) for p in parts],
                "total_count": len(parts),
            },
        }

    def _part_json(self, p: _Part) -> dict[str, Any]:
        author: dict[str, Any] = {"type": p.author_type, "id": p.author_id}
        if p.author_type == "admin":
            author.update(name="Sam Agent", email="sam@acme.test")
        return {
            "type": "conversation_part",
            "id": p.id,
            "part_type": p.part_type,
            "body": p.body,
            "created_at": p.created_at,
            "updated_at": p.created_at,
            "notified_at": p.created_at,
            "assigned_to": None,
            "author": author,
            "attachments": [
                {
                    "type": "upload",
                    "name": name,
                    "url": f"{self.url}/downloads/{token}?expires=1",
                    "content_type": ctype,
                    "filesize": len(data),
                    "width": None,
                    "height": None,
                }
                for (token, name, data), ctype in zip(p.files, p.content_types, strict=True)
            ],
            "external_id": None,
            "redacted": False,
        }

    def _add_part(
        self,
        conv: _Conversation,
        part_type: str,
        author_type: str,
        author_id: str,
        body: str,
        files: list[tuple[str, str, bytes]] | None = None,
        types: list[str] | None = None,
    ) -> _Part:
        part = _Part(
            id=str(next(self._ids)),
            part_type=part_type,
            author_type=author_type,
            author_id=author_id,
            body=body,
            created_at=int(time.time()),
            files=files or [],
            content_types=types or [],
        )
        conv.parts.append(part)
        return part

    # -- the API ---------------------------------------------------------------------------

    @web.middleware
    async def _gate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/downloads/"):
            return await handler(request)  # signed file URLs take no token
        if self.wrong_route:
            self._calls.append((request.method, request.path, 404))
            return web.Response(
                status=404,
                text="<html><body><h1>404 Not Found</h1></body></html>",
                content_type="text/html",
            )
        if request.headers.get("Authorization") != f"Bearer {ACCESS_TOKEN}":
            return self._answer(request, 401, "unauthorized", "Access Token Invalid")
        if not request.headers.get("Intercom-Version"):
            return self._answer(request, 400, "intercom_version_missing", "No Intercom-Version")
        mode = self.faults.take(request.method, request.path)
        if mode is not None:
            self._calls.append((request.method, request.path, 0))
            limited = {
                "X-RateLimit-Limit": str(RATE_LIMIT),
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": str(int(time.time()) + 1),
            }
            return await partial_failure(
                mode,
                request,
                handler,
                lambda: _error(429, "rate_limit_exceeded", "injected", limited),
            )
        if self._fail:
            status, headers = self._fail.pop(0)
            if status == 429 and headers is None:
                headers = {
                    "X-RateLimit-Limit": str(RATE_LIMIT),
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset": str(int(time.time()) + 1),
                }
            code = "rate_limit_exceeded" if status == 429 else "injected_fault"
            return self._answer(request, status, code, "injected", headers)
        if request.can_read_body:
            try:
                self._bodies.append((request.method, request.path, await request.json()))
            except ValueError:
                return self._answer(request, 400, "parameter_invalid", "Invalid JSON")
        resp = await handler(request)
        resp.headers.update(_limits())
        self._calls.append((request.method, request.path, resp.status))
        if self._stall:
            # the work is done, the answer is late: the client times out and retries
            await asyncio.sleep(self._stall.pop(0))
        return resp

    def _answer(
        self,
        request: web.Request,
        status: int,
        code: str,
        message: str,
        headers: dict[str, str] | None = None,
    ) -> web.Response:
        self._calls.append((request.method, request.path, status))
        return _error(status, code, message, headers)

    async def _me(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"type": "admin", "id": ADMIN_ID, "name": "Deskbridge Bot", "email": "bot@acme.test"}
        )

    async def _find_contact(self, request: web.Request) -> web.Response:
        ext = request.match_info["external_id"]
        for c in self._contacts.values():
            if c.external_id == ext and c.role == "user":  # the endpoint serves no leads
                return web.json_response(c.json())
        return _error(404, "not_found", "User Not Found")

    async def _get_contact(self, request: web.Request) -> web.Response:
        c = self._contacts.get(request.match_info["id"])
        if c is None:
            return _error(404, "not_found", "Contact Not Found")
        return web.json_response(c.json())

    async def _delete_contact(self, request: web.Request) -> web.Response:
        contact_id = request.match_info["id"]
        if contact_id not in self._contacts:
            return _error(404, "not_found", "User Not Found")
        if not self.delete_lag:
            del self._contacts[contact_id]
        return web.json_response({"id": contact_id, "object": "contact", "deleted": True})

    def _attributes_error(self, body: dict[str, Any]) -> web.Response | None:
        attrs = body.get("custom_attributes") or {}
        for name in attrs:
            if name not in self.data_attributes:
                return _error(
                    400, "parameter_not_found", f"Custom attribute '{name}' does not exist"
                )
        return None

    async def _create_contact(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("role") not in ("user", "lead"):
            return _error(400, "parameter_invalid", "role must be user or lead")
        refused = self._attributes_error(body)
        if refused is not None:
            return refused
        for c in self._contacts.values():
            same_ext = body.get("external_id") and c.external_id == body["external_id"]
            same_email = body.get("email") and c.email == body["email"]
            if same_ext or same_email:
                return _error(
                    409,
                    "conflict",
                    f"A contact matching those details already exists with id={c.id}",
                )
        contact = _Contact(
            id=uuid.uuid4().hex[:24],
            role=body["role"],
            external_id=body.get("external_id"),
            name=body.get("name"),
            email=body.get("email"),
            phone=body.get("phone"),
            custom_attributes=dict(body.get("custom_attributes") or {}),
        )
        self._contacts[contact.id] = contact
        return web.json_response(contact.json())

    async def _update_contact(self, request: web.Request) -> web.Response:
        c = self._contacts.get(request.match_info["id"])
        if c is None:
            return _error(404, "not_found", "Contact Not Found")
        body = await request.json()
        refused = self._attributes_error(body)
        if refused is not None:
            return refused
        email = body.get("email")
        if email and any(o.email == email and o.id != c.id for o in self._contacts.values()):
            return _error(409, "conflict", "A contact matching those details already exists")
        for key in ("name", "email", "phone"):
            if key in body:
                setattr(c, key, body[key])
        c.custom_attributes.update(body.get("custom_attributes") or {})
        return web.json_response(c.json())

    async def _search_contacts(self, request: web.Request) -> web.Response:
        query = (await request.json()).get("query", {})
        found = [c.json() for c in self._contacts.values() if _matches(c.json(), query)]
        return web.json_response({"type": "list", "data": found, "total_count": len(found)})

    async def _create_tag(self, request: web.Request) -> web.Response:
        """Create or update a tag by name (``POST /tags``)."""
        name = (await request.json()).get("name")
        if not isinstance(name, str) or not name:
            return _error(400, "parameter_not_found", "name is required")
        tags = self.__dict__.setdefault("_tag_ids", {})
        tag_id = tags.setdefault(name, str(next(self._ids)))
        return web.json_response({"type": "tag", "id": tag_id, "name": name})

    async def _tag_conversation(self, request: web.Request) -> web.Response:
        conv = self._conversations.get(request.match_info["id"])
        body = await request.json()
        names = {v: k for k, v in self.__dict__.get("_tag_ids", {}).items()}
        if conv is None:
            return _error(404, "not_found", "Conversation Not Found")
        if not body.get("admin_id") or str(body.get("id")) not in names:
            return _error(400, "parameter_invalid", "id and admin_id are required")
        conv.tags.append(names[str(body["id"])])
        return web.json_response({"type": "tag", "id": body["id"]})

    async def _assign(self, request: web.Request) -> web.Response:
        conv = self._conversations.get(request.match_info["id"])
        body = await request.json()
        if conv is None:
            return _error(404, "not_found", "Conversation Not Found")
        if body.get("message_type") != "assignment" or body.get("type") not in ("team", "admin"):
            return _error(400, "parameter_invalid", "not an assignment")
        if body["type"] == "team":
            conv.team = str(body.get("assignee_id"))
        return web.json_response({"type": "conversation", "id": conv.id})

    async def _create_conversation(self, request: web.Request) -> web.Response:
        body = await request.json()
        sender = body.get("from") or {}
        contact = self._contacts.get(str(sender.get("id")))
        if contact is None:
            return _error(404, "not_found", "User Not Found")
        if sender.get("type") not in ("user", "lead", "contact"):
            return _error(400, "parameter_invalid", "from.type is invalid")
        if not isinstance(body.get("body"), str) or not body["body"]:
            return _error(400, "parameter_not_found", "body is required")
        if "attachment_files" in body:
            return _error(400, "parameter_invalid", "attachment_files is not accepted here")
        now = int(time.time())
        conv = _Conversation(
            id=str(next(self._ids)),
            contact_id=contact.id,
            created_at=now,
            source_id=str(next(self._ids)),
            source_body=body["body"],
        )
        conv.parts.append(
            _Part(conv.source_id, "source", contact.role, contact.id, _html(body["body"]), now)
        )
        self._conversations[conv.id] = conv
        return web.json_response(
            {
                "type": "user_message",
                "id": conv.source_id,
                "created_at": now,
                "body": body["body"],
                "message_type": "inapp",
                "conversation_id": conv.id,
            }
        )

    async def _reply(self, request: web.Request) -> web.Response:
        conv = self._conversations.get(request.match_info["id"])
        if conv is None:
            return _error(404, "not_found", "Resource Not Found")
        body = await request.json()
        if body.get("type") == "admin":
            if body.get("admin_id") != ADMIN_ID:
                return _error(400, "parameter_invalid", "admin_id is invalid")
            if body.get("message_type") not in ("comment", "note"):
                return _error(400, "parameter_invalid", "message_type is invalid")
            self._add_part(conv, body["message_type"], "admin", ADMIN_ID, body.get("body") or "")
            return web.json_response(self._conversation_json(conv))
        if body.get("type") != "user" or body.get("message_type") != "comment":
            return _error(400, "parameter_invalid", "type/message_type is invalid")
        contact = self._contacts.get(str(body.get("intercom_user_id")))
        if contact is None or contact.id != conv.contact_id:
            return _error(404, "not_found", "User Not Found")
        if not isinstance(body.get("body"), str):
            return _error(400, "parameter_not_found", "body is required")
        files = body.get("attachment_files") or []
        if len(files) > 10:
            return _error(400, "parameter_invalid", "You can include up to 10 attachment files")
        stored: list[tuple[str, str, bytes]] = []
        types: list[str] = []
        for f in files:
            try:
                data = base64.b64decode(f["data"], validate=True)
            except (KeyError, ValueError):
                return _error(400, "parameter_invalid", "attachment_files data is invalid")
            token = uuid.uuid4().hex
            self._files[token] = (f["name"], data, f["content_type"])
            stored.append((token, f["name"], data))
            types.append(f["content_type"])
        body_html = _html(body["body"])
        self._add_part(conv, "comment", contact.role, contact.id, body_html, stored, types)
        conv.state = "open"
        return web.json_response(self._conversation_json(conv))

    async def _retrieve_conversation(self, request: web.Request) -> web.Response:
        conv = self._conversations.get(request.match_info["id"])
        if conv is None:
            return _error(404, "not_found", "Resource Not Found")
        return web.json_response(self._conversation_json(conv))

    def _conversation_json(self, conv: _Conversation) -> dict[str, Any]:
        item = self._item(conv, [p for p in conv.parts if p.part_type != "source"])
        item["conversation_parts"]["conversation_parts"] = item["conversation_parts"][
            "conversation_parts"
        ][-500:]
        return item

    async def _search_conversations(self, request: web.Request) -> web.Response:
        query = (await request.json()).get("query", {})
        horizon = time.time() - self.search_lag
        found = []
        for conv in self._conversations.values():
            if conv.created_at > horizon and self.search_lag:
                continue
            item = self._item(conv, [])
            flat = {
                "source.author.id": conv.contact_id,
                "created_at": conv.created_at,
                "id": conv.id,
                "state": conv.state,
            }
            if _matches(flat, query):
                found.append(item)
        return web.json_response(
            {"type": "conversation.list", "conversations": found, "total_count": len(found)}
        )

    async def _download(self, request: web.Request) -> web.Response:
        entry = self._files.get(request.match_info["token"])
        if entry is None:
            return web.Response(status=404)
        _, data, ctype = entry
        return web.Response(body=data, content_type=ctype)


def _limits() -> dict[str, str]:
    return {
        "X-RateLimit-Limit": str(RATE_LIMIT),
        "X-RateLimit-Remaining": str(RATE_LIMIT - 1),
        "X-RateLimit-Reset": str(int(time.time()) + 10),
    }


def _error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    return web.json_response(
        {
            "type": "error.list",
            "request_id": uuid.uuid4().hex,
            "errors": [{"code": code, "message": message}],
        },
        status=status,
        headers={**_limits(), **(headers or {})},
    )


def _matches(item: dict[str, Any], query: dict[str, Any]) -> bool:
    """Intercom's search query: nested AND/OR groups of {field, operator, value}."""
    if "value" in query and isinstance(query.get("value"), list) and "field" not in query:
        results = [_matches(item, q) for q in query["value"]]
        return all(results) if query.get("operator", "AND") == "AND" else any(results)
    have = item.get(query.get("field", ""))
    want = query.get("value")
    op = query.get("operator", "=")
    if op == "=":
        return str(have) == str(want)
    if op == ">":
        return have is not None and want is not None and float(have) > float(want)
    if op == "<":
        return have is not None and want is not None and float(have) < float(want)
    return False


def _html(text: str) -> str:
    """How Intercom stores a plain-text body: escaped, one <p> per line."""
    return "".join(f"<p>{html.escape(line)}</p>" for line in text.split("\n")) or "<p></p>"


def _plain(body: str) -> str:
    return html_to_text(body)
