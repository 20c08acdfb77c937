"""Intercom API calls for one account: contacts, conversations, parts, notes, files.

Every call carries the Bearer token and the pinned ``Intercom-Version``, passes the
workspace's :class:`~deskbridge.outbound.intercom.throttle.Throttle`, and turns its
outcome into the ``errors`` tree with :func:`deskbridge.http.classify`; nothing here
decides to retry. Log lines carry the account, Intercom ids and outcomes, never tokens,
emails, phone numbers or bodies.
"""

from __future__ import annotations

import base64
import html
import logging
import re
import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar
from urllib.parse import quote

import httpx

from deskbridge.adapters.base import TokenCache
from deskbridge.config.accounts import IntercomDeskConfig
from deskbridge.errors import DeliveryError, PermanentError, RetryableError
from deskbridge.http import classify, transport_error
from deskbridge.outbound.base import UNCONFIRMED, Filed
from deskbridge.outbound.capabilities import ReportsSolved, TagsTickets
from deskbridge.outbound.common import display_name, download, unique
from deskbridge.outbound.common import phones as contact_phones
from deskbridge.outbound.intercom import webhook
from deskbridge.outbound.intercom.throttle import Throttle, for_workspace
from deskbridge.outbound.render import render
from deskbridge.schemas import (
    AgentReply,
    Attachment,
    Contact,
    ConversationRef,
    Desk,
    DeskFields,
    Message,
    RawRequest,
    Upload,
)

__all__ = [
    "EMAILS_ATTRIBUTE",
    "FILES_PER_PART",
    "MAX_ATTACHMENT_BYTES",
    "PHONES_ATTRIBUTE",
    "IntercomConnector",
]

log = logging.getLogger(__name__)

MAX_ATTACHMENT_BYTES = 20 * 1024 * 1024
FILES_PER_PART = 10
EMAILS_ATTRIBUTE = "deskbridge_emails"
PHONES_ATTRIBUTE = "deskbridge_phones"
# How far back a retried first message looks for the conversation an earlier attempt
# may have opened.
_RECENT_SECONDS = 24 * 3600
_CLOCK_SKEW = 60
_CONFLICT_ID = re.compile(r"\bid=([0-9a-f]{6,64})\b")
_LINK_ID = re.compile(r"/contacts/([0-9a-f]{6,64})>")


class IntercomConnector(ReportsSolved, TagsTickets):
    """One account's Intercom workspace: the ``DeskConnector`` for ``Desk.INTERCOM``.

    Customer messages are written as the contact (a conversation the contact opened,
    then replies with ``type: user``), so Intercom shows them as the customer's and the
    webhook parser can tell them from the agents' replies.
    """

    desk: ClassVar[Desk] = Desk.INTERCOM
    # the webhook is signed (HMAC over the body), so nothing in it is a secret to drop
    secret_headers: ClassVar[frozenset[str]] = frozenset()
    secret_query: ClassVar[frozenset[str]] = frozenset()
    # No TicketUpdateBudget: Intercom documents no per-conversation limit, only the
    # workspace's (the throttle).

    def __init__(
        self,
        account: str,
        config: IntercomDeskConfig,
        client: httpx.AsyncClient,
        *,
        clock: Callable[[], float] = time.time,
        throttle: Throttle | None = None,
        shared: TokenCache | None = None,
    ) -> None:
        self.account = account
        self._config = config
        self._client = client
        self._clock = clock
        self._api = config.api_base()
        token = config.access_token.get_secret_value()
        self._throttle = throttle or for_workspace(self._api, token, shared)
        self._headers = {
            "Authorization": f"Bearer {token}",
            "Intercom-Version": config.api_version,
            "Accept": "application/json",
        }
        api = httpx.URL(self._api)
        self._origin = (api.scheme, api.host, api.port)
        self._admin_id: str | None = config.admin_id
        self._attributes = config.identity_attributes

    # -- contacts ---------------------------------------------------------------------

    async def ensure_user(self, contact: Contact) -> str:
        """The Intercom contact id for ``contact`` (found by external_id = deskbridge's
        contact id), created or updated with its identities. Idempotent.

        Intercom holds one email and one phone; the rest go to the custom attributes
        ``deskbridge_emails`` and ``deskbridge_phones`` when the workspace has them.
        Fields an agent already filled in are not overwritten.
        """
        emails = unique(i.value.strip().lower() for i in contact.identities if i.kind == "email")
        phones = contact_phones(contact)
        extra: dict[str, str] = {}
        if self._attributes and len(emails) > 1:
            extra[EMAILS_ATTRIBUTE] = ", ".join(emails)
        if self._attributes and len(phones) > 1:
            extra[PHONES_ATTRIBUTE] = ", ".join(phones)
        wanted: dict[str, Any] = {"name": display_name(contact)}
        if emails:
            wanted["email"] = emails[0]
        if phones:
            wanted["phone"] = phones[0]

        existing = await self._find_contact(contact.id)
        created = False
        if existing is None:
            existing, created = await self._create_contact(contact.id, wanted, extra)
        contact_id = _str_id(existing.get("id"))
        if contact_id is None:
            raise PermanentError("intercom contact: no id in the response")
        if not created:
            await self._update_contact(contact_id, existing, wanted, extra)
        return contact_id

    async def _find_contact(self, external_id: str) -> dict[str, Any] | None:
        """The contact with ``external_id``, or None. Users are found directly; the
        lookup endpoint does not serve leads, which are searched for (search lags a few
        minutes behind creation, but this runs only when a contact's identities change)."""
        if self._config.contact_role == "lead":
            what = "intercom search contacts"
            query = {
                "query": {
                    "operator": "AND",
                    "value": [
                        {"field": "external_id", "operator": "=", "value": external_id},
                        {"field": "role", "operator": "=", "value": "lead"},
                    ],
                }
            }
            resp = await self._call("POST", "/contacts/search", what=what, json=query)
            classify(resp, what=what)
            found = _list(self._json(resp, what), "data")
            return found[0] if found else None
        what = "intercom find contact by external_id"
        resp = await self._call(
            "GET", f"/contacts/find_by_external_id/{quote(external_id, safe='')}", what=what
        )
        if resp.status_code == 404:
            return None
        if resp.status_code == 410:
            # Merged into another contact: the Link header names the surviving one.
            merged = _LINK_ID.search(resp.headers.get("link", ""))
            if merged:
                return await self._get_contact(merged.group(1))
        classify(resp, what=what)
        return self._json(resp, what)

    async def _get_contact(self, contact_id: str) -> dict[str, Any]:
        what = "intercom get contact"
        resp = await self._call("GET", f"/contacts/{contact_id}", what=what)
        classify(resp, what=what)
        return self._json(resp, what)

    async def _create_contact(
        self, external_id: str, wanted: dict[str, Any], extra: dict[str, str]
    ) -> tuple[dict[str, Any], bool]:
        """The new contact and True, or the one that already holds this external_id and
        False (another worker created it a moment ago)."""
        body: dict[str, Any] = {"role": self._config.contact_role, "external_id": external_id}
        body.update(wanted)
        if extra:
            body["custom_attributes"] = dict(extra)
        what = "intercom create contact"
        resp = await self._write_contact("POST", "/contacts", body, what=what)
        if resp is not None and resp.status_code == 409:
            # "A contact matching those details already exists with id=…": another
            # worker created it a moment ago (ours), or the email is someone else's.
            match = _CONFLICT_ID.search(_error_text(resp))
            other = await self._get_contact(match.group(1)) if match else None
            if other is not None and _str_id(other.get("external_id")) in (None, external_id):
                log.info(
                    "intercom %s: contact %s already exists; using it",
                    self.account,
                    other.get("id"),
                )
                return other, False
            if "email" not in body:
                classify(resp, what=what)
            log.warning(
                "intercom %s: the email of contact %s belongs to another Intercom contact; "
                "creating it without the email",
                self.account,
                external_id,
            )
            body.pop("email")
            resp = await self._write_contact("POST", "/contacts", body, what=what)
        if resp is None:  # pragma: no cover - a create always has fields left
            raise PermanentError(f"{what}: nothing to send")
        classify(resp, what=what)
        created = self._json(resp, what)
        log.info("intercom %s: contact %s created", self.account, created.get("id"))
        return created, True

    async def _update_contact(
        self,
        contact_id: str,
        existing: dict[str, Any],
        wanted: dict[str, Any],
        extra: dict[str, str],
    ) -> None:
        changes = {k: v for k, v in wanted.items() if v and not existing.get(k)}
        have = existing.get("custom_attributes")
        have = have if isinstance(have, dict) else {}
        attributes = {k: v for k, v in extra.items() if have.get(k) != v}
        if attributes:
            changes["custom_attributes"] = attributes
        if not changes:
            return
        what = "intercom update contact"
        resp = await self._write_contact("PUT", f"/contacts/{contact_id}", changes, what=what)
        if resp is not None and resp.status_code == 409 and "email" in changes:
            log.warning(
                "intercom %s: email not set on contact %s (another contact holds it)",
                self.account,
                contact_id,
            )
            changes.pop("email")
            resp = await self._write_contact("PUT", f"/contacts/{contact_id}", changes, what=what)
        if resp is None:
            return
        classify(resp, what=what)
        log.info(
            "intercom %s: contact %s updated (%s)", self.account, contact_id, ",".join(changes)
        )

    async def _write_contact(
        self, method: str, path: str, body: dict[str, Any], *, what: str
    ) -> httpx.Response | None:
        """A contact write. Custom attributes that the workspace has not defined make
        Intercom refuse the whole call (400); the call is then made without them. None
        when nothing was left to write."""
        if not body:
            return None
        resp = await self._call(method, path, what=what, json=body)
        if resp.status_code in (400, 422) and "custom_attributes" in body:
            log.warning(
                "intercom %s: %s refused the custom attributes %s (HTTP %s); create them "
                "under Settings > Data > People (type Text). Continuing without them.",
                self.account,
                what,
                ", ".join(sorted(body["custom_attributes"])),
                resp.status_code,
            )
            rest = {k: v for k, v in body.items() if k != "custom_attributes"}
            if not rest:
                return None
            resp = await self._call(method, path, what=what, json=rest)
        return resp

    # -- conversations ----------------------------------------------------------------

    async def append(
        self,
        conv: ConversationRef,
        user_id: str,
        msg: Message,
        files: Sequence[Upload],
        *,
        idempotency_key: str,
        retried: bool,
        in_doubt: bool = False,
    ) -> Filed:
        """File ``msg`` as the contact ``user_id``'s message: open a conversation when the
        conversation has none (or Intercom no longer has it), else reply as the contact.

        Files go along as ``attachment_files``, at most 10 per part; more make further
        parts. Intercom has no idempotency key: a retried first message looks for the
        conversation an earlier attempt opened (search, which can lag), and a reply
        ``in_doubt`` (an earlier attempt's answer was lost) is looked for among the
        conversation's parts before it is written again.
        """
        text = render(msg)
        chunks = [list(files[i : i + FILES_PER_PART]) for i in range(0, len(files), FILES_PER_PART)]
        if conv.ticket_id is not None:
            checked, first = (
                await self._replied(conv.ticket_id, user_id, text, msg.occurred_at.timestamp())
                if in_doubt
                else (True, None)
            )
            if first is None:
                first = await self._reply(
                    conv.ticket_id, user_id, text, chunks[0] if chunks else [], may_defer=True
                )
            if first is not None:
                last = await self._more_files(conv.ticket_id, user_id, chunks[1:])
                resent = None if checked else "intercom reply as contact"
                return Filed(ticket_id=conv.ticket_id, message_id=last or first, resent=resent)
            log.info(
                "intercom %s: conversation %s is gone; opening a new one",
                self.account,
                conv.ticket_id,
            )
        conversation_id, message_id = await self._open(user_id, text, retried=retried)
        if conv.fields is not None:
            await self._apply_fields(conversation_id, conv.fields)
        last = await self._more_files(conversation_id, user_id, chunks)
        return Filed(ticket_id=conversation_id, message_id=message_id if last is None else last)

    async def _apply_fields(self, conversation_id: str, fields: DeskFields) -> None:
        """Routing on a new conversation: its tags (``POST /tags`` creates or finds each
        by name, ``POST /conversations/{id}/tags`` attaches it) and its team
        (``POST /conversations/{id}/parts``, an assignment). Best effort: the message is
        filed already, so a refusal is logged rather than retried into a duplicate.
        Intercom has no ticket priority or custom fields on this path: routing's other
        fields are not sent."""
        try:
            admin_id = await self._note_admin()
            await self._tag(conversation_id, fields.tags, admin_id)
            if fields.group:
                what = "intercom assign team"
                resp = await self._call(
                    "POST",
                    f"/conversations/{conversation_id}/parts",
                    what=what,
                    json={
                        "message_type": "assignment",
                        "type": "team",
                        "admin_id": admin_id,
                        "assignee_id": fields.group,
                    },
                )
                classify(resp, what=what)
        except DeliveryError as exc:
            log.warning(
                "intercom %s: routing fields not applied to %s (%s)",
                self.account,
                conversation_id,
                type(exc).__name__,
            )

    async def _tag(self, conversation_id: str, names: Sequence[str], admin_id: str) -> int:
        """Attach tags by name: ``POST /tags`` creates or finds each (its id), then
        ``POST /conversations/{id}/tags`` attaches it as ``admin_id``. Returns how many
        came back without an id (not attached)."""
        missing = 0
        for name in names:
            what = "intercom tag"
            resp = await self._call("POST", "/tags", what=what, json={"name": name})
            classify(resp, what=what)
            tag_id = _str_id(self._json(resp, what).get("id"))
            if tag_id is None:
                missing += 1
                continue
            resp = await self._call(
                "POST",
                f"/conversations/{conversation_id}/tags",
                what=what,
                json={"id": tag_id, "admin_id": admin_id},
            )
            classify(resp, what=what)
        return missing

    async def add_tags(self, conv: ConversationRef, tags: Sequence[str]) -> None:
        """Tag the conversation (a tag needs its id and an admin: see ``_tag``). Attaching
        a tag twice is harmless. Raises ``PermanentError`` without a conversation."""
        if conv.ticket_id is None:
            raise PermanentError("intercom add tags: the conversation has no Intercom id")
        if await self._tag(conv.ticket_id, tags, await self._note_admin()):
            raise PermanentError("intercom tag: Intercom answered without the tag's id")

    async def _open(self, user_id: str, text: str, *, retried: bool) -> tuple[str, str]:
        """A conversation the contact opens with ``text`` (the body is plain text: the
        create endpoint takes no HTML and no files). Returns its id and the message id."""
        if retried:
            found = await self._recent_conversation(user_id, text)
            if found is not None:
                return found
        what = "intercom create conversation"
        body = {"from": {"type": self._config.contact_role, "id": user_id}, "body": text}
        resp = await self._call("POST", "/conversations", what=what, json=body)
        classify(resp, what=what)
        data = self._json(resp, what)
        conversation_id = _str_id(data.get("conversation_id"))
        if conversation_id is None:
            raise PermanentError(f"{what}: no conversation_id in the response", status=200)
        message_id = _str_id(data.get("id")) or f"conversation:{conversation_id}"
        log.info("intercom %s: conversation %s opened", self.account, conversation_id)
        return conversation_id, message_id

    async def _recent_conversation(self, user_id: str, text: str) -> tuple[str, str] | None:
        """The contact's conversation of the last day that starts with ``text`` (the
        earlier attempt's), found with conversation search. Best effort: search can lag
        behind a conversation created moments ago."""
        what = "intercom search conversations"
        since = int(self._clock()) - _RECENT_SECONDS
        query = {
            "query": {
                "operator": "AND",
                "value": [
                    {"field": "source.author.id", "operator": "=", "value": user_id},
                    {"field": "created_at", "operator": ">", "value": str(since)},
                ],
            },
            "pagination": {"per_page": 20},
        }
        resp = await self._call("POST", "/conversations/search", what=what, json=query)
        if 400 <= resp.status_code < 500 and resp.status_code != 429:
            log.warning(
                "intercom %s: %s refused (HTTP %s); opening a conversation without the check",
                self.account,
                what,
                resp.status_code,
            )
            return None
        classify(resp, what=what)
        wanted = _squash(text)
        best: tuple[int, str, str] | None = None
        for conversation in _list(self._json(resp, what), "conversations"):
            source = conversation.get("source")
            source = source if isinstance(source, dict) else {}
            body = source.get("body")
            conversation_id = _str_id(conversation.get("id"))
            if conversation_id is None or not isinstance(body, str):
                continue
            if _squash(webhook.html_to_text(body)) != wanted:
                continue
            created = conversation.get("created_at")
            stamp = created if isinstance(created, int) else 0
            message_id = _str_id(source.get("id")) or f"conversation:{conversation_id}"
            if best is None or stamp > best[0]:
                best = (stamp, conversation_id, message_id)
        if best is None:
            return None
        log.info(
            "intercom %s: conversation %s already holds this message (earlier attempt)",
            self.account,
            best[1],
        )
        return best[1], best[2]

    async def _reply(
        self,
        conversation_id: str,
        user_id: str,
        text: str,
        files: list[Upload],
        *,
        may_defer: bool,
    ) -> str | None:
        """One part written as the contact. Returns its id, or None when Intercom does
        not know the conversation (404)."""
        what = "intercom reply as contact"
        await self._throttle.admit(may_defer=may_defer, what=what)
        body: dict[str, Any] = {
            "message_type": "comment",
            "type": "user",
            "intercom_user_id": user_id,
            "body": text,
        }
        if files:
            body["attachment_files"] = [
                {
                    "content_type": f.mime_type or "application/octet-stream",
                    "data": base64.b64encode(f.data).decode("ascii"),
                    "name": f.filename or "attachment",
                }
                for f in files
            ]
        resp = await self._call(
            "POST", f"/conversations/{conversation_id}/reply", what=what, json=body, gated=False
        )
        if resp.status_code == 404:
            return None
        classify(resp, what=what)
        return _part_id(self._json(resp, what), user_id) or f"conversation:{conversation_id}"

    async def _replied(
        self, conversation_id: str, user_id: str, text: str, since: float
    ) -> tuple[bool, str | None]:
        """Whether the conversation could be read, and the id of the part an earlier
        attempt wrote: the conversation's newest part by the contact (``GET
        /conversations/{id}``, the latest 500 parts) when it holds ``text`` and was made
        after the message arrived (``since``, unix s). Only the newest counts: a
        conversation's parts are filed in order, one at a time. A refusal (4xx but 404
        and 429): not checked, the caller posts and counts it."""
        what = "intercom retrieve conversation"
        resp = await self._call("GET", f"/conversations/{conversation_id}", what=what)
        if resp.status_code == 404:
            return True, None  # gone: the reply's own 404 opens a new conversation
        if 400 <= resp.status_code < 500 and resp.status_code != 429:
            log.warning(
                "intercom %s: %s refused (HTTP %s); posting the reply unchecked",
                self.account,
                what,
                resp.status_code,
            )
            return False, None
        classify(resp, what=what)
        data = self._json(resp, what)
        parts = data.get("conversation_parts")
        items = _list(parts, "conversation_parts") if isinstance(parts, dict) else []
        for part in reversed(items):
            author = part.get("author")
            if not isinstance(author, dict) or _str_id(author.get("id")) != user_id:
                continue
            if part.get("part_type") != "comment":
                continue
            body = part.get("body")
            created = part.get("created_at")
            # Intercom's clock against ours: a minute's leeway (its stamps are whole seconds)
            fresh = isinstance(created, int) and created >= since - _CLOCK_SKEW
            if (
                fresh
                and isinstance(body, str)
                and _squash(webhook.html_to_text(body)) == _squash(text)
            ):
                log.info(
                    "intercom %s: conversation %s already holds this part (earlier attempt)",
                    self.account,
                    conversation_id,
                )
                return True, _str_id(part.get("id")) or f"conversation:{conversation_id}"
            return True, None
        return True, None

    async def _more_files(
        self, conversation_id: str, user_id: str, chunks: list[list[Upload]]
    ) -> str | None:
        """Parts carrying the files that did not fit in the first one; the last part's id."""
        last: str | None = None
        for chunk in chunks:
            label = "[Attachments: " + ", ".join(f.filename or "attachment" for f in chunk) + "]"
            # Mid-message: never defer now, or the retry would post the text again.
            part = await self._reply(conversation_id, user_id, label, chunk, may_defer=False)
            if part is None:
                raise PermanentError(f"intercom: conversation {conversation_id} vanished")
            last = part
        return last

    async def add_note(self, conv: ConversationRef, text: str) -> None:
        """An internal note on the conversation, written as ``admin_id`` (default: the
        token's admin). Raises ``PermanentError`` when there is no conversation. Not
        idempotent."""
        if conv.ticket_id is None:
            raise PermanentError("intercom add note: the conversation has no Intercom id")
        admin_id = await self._note_admin()
        paragraphs = [p for p in text.replace("\r\n", "\n").split("\n\n") if p.strip()]
        body = (
            "".join("<p>" + html.escape(p).replace("\n", "<br>") + "</p>" for p in paragraphs)
            or "<p></p>"
        )
        what = "intercom add note"
        resp = await self._call(
            "POST",
            f"/conversations/{conv.ticket_id}/reply",
            what=what,
            json={"message_type": "note", "type": "admin", "admin_id": admin_id, "body": body},
        )
        classify(resp, what=what)

    async def _note_admin(self) -> str:
        if self._admin_id is None:
            what = "intercom identify admin"
            resp = await self._call("GET", "/me", what=what)
            classify(resp, what=what)
            admin_id = _str_id(self._json(resp, what).get("id"))
            if admin_id is None:
                raise PermanentError(f"{what}: no admin id; set admin_id in the desk config")
            self._admin_id = admin_id
        return self._admin_id

    # -- attachments ------------------------------------------------------------------

    async def fetch(self, attachment: Attachment) -> Upload:
        """Download an agent's attachment (at most 20 MB). The token goes only to the
        configured API host; Intercom's file URLs are signed and fetched without it."""
        return await download(
            self._client,
            attachment,
            trusted=self._api,
            limit=MAX_ATTACHMENT_BYTES,
            what="intercom fetch attachment",
            headers=lambda url: dict(self._headers) if self._is_api(url) else {},
        )

    def _is_api(self, url: httpx.URL) -> bool:
        return (url.scheme, url.host, url.port) == self._origin

    # -- agent-reply webhook ----------------------------------------------------------

    def verify_webhook(self, req: RawRequest) -> None:
        """Raise ``SignatureInvalid`` unless ``X-Hub-Signature`` is the client secret's
        HMAC-SHA1 of the raw body."""
        webhook.verify(req, self._config.client_secret.get_secret_value())

    def parse_webhook(self, req: RawRequest) -> list[AgentReply]:
        """Agents' and bots' replies in the notification; see :func:`webhook.parse`."""
        return webhook.parse(req, account=self.account)

    def solved_tickets(self, req: RawRequest) -> list[str]:
        """A closed conversation (``conversation.admin.closed``)."""
        return webhook.solved(req)

    # -- erasure ----------------------------------------------------------------------

    async def forget_user(self, user_id: str, *, tickets: Sequence[str] = ()) -> list[str]:
        """Delete the contact (``DELETE /contacts/{id}``; Intercom destroys it for good
        after its 7-day grace period), then read it back: only Intercom's own not-found
        (``error.list`` with code ``not_found``) confirms it. Conversations belong to the
        contact and are not deleted one by one."""
        what = "intercom DELETE /contacts"
        resp = await self._call("DELETE", f"/contacts/{user_id}", what=what)
        if resp.status_code != 404:
            classify(resp, what=what)
        what = "intercom GET /contacts"
        back = await self._call("GET", f"/contacts/{user_id}", what=what)
        if back.status_code == 404 and _not_found(back):
            return ["contact deleted (read back: not found)"]
        if back.status_code not in (200, 404):
            classify(back, what=what)
        return [
            f"{UNCONFIRMED}: contact {user_id} still visible at Intercom (or the read-back "
            "was not Intercom's not-found); run forget again later"
        ]

    # -- plumbing ---------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        *,
        what: str,
        json: Any = None,
        gated: bool = True,
    ) -> httpx.Response:
        """One API call. ``gated`` calls first wait for the workspace's rate-limit window
        (see ``Throttle.admit``). A 429 raises ``RetryableError`` with the wait until
        ``X-RateLimit-Reset``."""
        if gated:
            await self._throttle.admit(may_defer=True, what=what)
        try:
            resp = await self._client.request(
                method, self._api + path, json=json, headers=self._headers
            )
        except httpx.HTTPError as exc:
            raise transport_error(exc, what=what) from exc
        wait = self._throttle.observe(resp.headers, resp.status_code)
        await self._throttle.push()
        if wait is not None:
            raise RetryableError(f"{what}: rate limited (HTTP 429)", status=429, retry_after=wait)
        return resp

    @staticmethod
    def _json(resp: httpx.Response, what: str) -> dict[str, Any]:
        try:
            data = resp.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise PermanentError(f"{what}: response is not a JSON object", status=resp.status_code)
        return data


def _str_id(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value:
        return value
    return None


def _list(data: dict[str, Any], key: str) -> list[dict[str, Any]]:
    value = data.get(key)
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _part_id(conversation: dict[str, Any], user_id: str) -> str | None:
    """The id of the newest part the contact wrote, in a reply's conversation response."""
    parts = conversation.get("conversation_parts")
    items = _list(parts, "conversation_parts") if isinstance(parts, dict) else []
    for part in reversed(items):
        author = part.get("author")
        if isinstance(author, dict) and _str_id(author.get("id")) == user_id:
            return _str_id(part.get("id"))
    return _str_id(items[-1].get("id")) if items else None


def _error_text(resp: httpx.Response) -> str:
    try:
        data = resp.json()
    except ValueError:
        return ""
    errors = data.get("errors") if isinstance(data, dict) else None
    if not isinstance(errors, list):
        return ""
    return " ".join(str(e.get("message", "")) for e in errors if isinstance(e, dict))


def _squash(text: str) -> str:
    return " ".join(text.split())


def _not_found(resp: httpx.Response) -> bool:
    """Whether ``resp`` is Intercom's own not-found error list, not any 404 page."""
    try:
        data = resp.json()
    except ValueError:
        return False
    if not isinstance(data, dict) or data.get("type") != "error.list":
        return False
    errors = data.get("errors")
    return isinstance(errors, list) and any(
        isinstance(e, dict) and e.get("code") == "not_found" for e in errors
    )
