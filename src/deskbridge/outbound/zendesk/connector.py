"""Zendesk Support API calls for one account: users, tickets, uploads, attachments, webhooks.

Every call goes through the injected ``httpx.AsyncClient`` and turns its outcome into the
``errors`` tree with :func:`deskbridge.http.classify`; nothing here decides to retry.
Log lines carry the account, Zendesk ids and outcomes, never tokens, emails, phone
numbers or bodies.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import httpx

from deskbridge.config.accounts import ZendeskDeskConfig
from deskbridge.errors import ParseFailed, PermanentError
from deskbridge.http import classify, transport_error
from deskbridge.outbound.base import UNCONFIRMED, Filed
from deskbridge.outbound.capabilities import (
    MergesUsers,
    ReadsCommentFiles,
    RegistersDeskWebhook,
    ReportsSolved,
    TagsTickets,
    TicketUpdateBudget,
)
from deskbridge.outbound.common import display_name, download, unique
from deskbridge.outbound.common import phones as contact_phones
from deskbridge.outbound.render import render, subject
from deskbridge.outbound.zendesk import webhook
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

__all__ = ["MAX_ATTACHMENT_BYTES", "ZendeskConnector"]

log = logging.getLogger(__name__)

MAX_ATTACHMENT_BYTES = 20 * 1024 * 1024
_MAX_WEBHOOK_PAGES = 20
_MAX_AUDIT_PAGES = 20
_COMMENT_PAGES = 5
_AUDIT_MARK = "deskbridge_delivery"
"""The key under the update's ``metadata.custom`` naming the delivery that wrote it."""
_IDEMPOTENCY_KEY_MAX = 255
_CLOSED_MARKERS = ("closed prevents ticket update", "closedticket", "closed_prevents_ticket_update")
_PURGED = "Permanently Deleted User"  # Show Deleted User's name once the GDPR purge ran


class ZendeskConnector(
    MergesUsers,
    TicketUpdateBudget,
    RegistersDeskWebhook,
    ReadsCommentFiles,
    ReportsSolved,
    TagsTickets,
):
    """One account's Zendesk Support: the ``DeskConnector`` for ``Desk.ZENDESK``.

    Customer messages are filed as the end user (requester, submitter and comment author),
    so Zendesk shows them as the customer's and the agent-reply webhook can tell them apart.
    """

    desk: ClassVar[Desk] = Desk.ZENDESK
    # the webhook is signed (HMAC over the body), so nothing in it is a secret to drop
    secret_headers: ClassVar[frozenset[str]] = frozenset()
    secret_query: ClassVar[frozenset[str]] = frozenset()
    # Zendesk: "30 updates per 10 minutes per user per ticket" (Update Ticket limits)
    ticket_update_limit: ClassVar[tuple[int, float]] = (30, 600.0)

    def __init__(
        self,
        account: str,
        config: ZendeskDeskConfig,
        client: httpx.AsyncClient,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.account = account
        self._config = config
        self._client = client
        self._clock = clock
        base = httpx.URL(config.api_base())
        self._api = config.api_base() + "/api/v2"
        self._origin = (base.scheme, base.host, base.port)
        self._auth = {"Authorization": _authorization(config)}

    # -- users ------------------------------------------------------------------------

    async def ensure_user(self, contact: Contact) -> str:
        """The Zendesk user id for ``contact`` (matched on external_id or email), created or
        updated, then given the contact's other emails and phones. Idempotent."""
        emails = unique(i.value.strip().lower() for i in contact.identities if i.kind == "email")
        phones = contact_phones(contact)
        # No "role": new users are end users by default, and create_or_update also updates
        # a user matched by email, so sending a role could demote an agent whose address a
        # customer wrote from.
        user: dict[str, Any] = {
            "name": display_name(contact),
            "external_id": contact.id,
            "skip_verify_email": True,
        }
        if emails:
            user["email"] = emails[0]
        if phones:
            user["phone"] = phones[0]
        what = "zendesk users/create_or_update"
        resp = await self._call("POST", "/users/create_or_update", what=what, json={"user": user})
        if resp.status_code == 422 and "phone" in user:
            # Most likely the phone is another user's and the account wants unique phones.
            # Who owns the number is an identity-graph question; the message must be filed.
            log.warning(
                "zendesk %s: contact %s refused with its phone (HTTP 422); retrying without it",
                self.account,
                contact.id,
            )
            del user["phone"]
            resp = await self._call(
                "POST", "/users/create_or_update", what=what, json={"user": user}
            )
        classify(resp, what=what)
        user_id = _str_id(_obj(self._json(resp, what), "user").get("id"))
        if user_id is None:
            raise PermanentError(f"{what}: no user id in the response", status=resp.status_code)
        if len(emails) > 1 or len(phones) > 1 or (phones and "phone" not in user):
            await self._add_identities(user_id, emails, phones)
        return user_id

    async def _add_identities(self, user_id: str, emails: list[str], phones: list[str]) -> None:
        what = "zendesk list identities"
        resp = await self._call("GET", f"/users/{user_id}/identities", what=what)
        classify(resp, what=what)
        have: set[tuple[str, str]] = set()
        for item in _list(self._json(resp, what), "identities"):
            kind, value = item.get("type"), item.get("value")
            if isinstance(kind, str) and isinstance(value, str):
                have.add((kind, _identity_key(kind, value)))
        wanted = [("email", e) for e in emails] + [("phone_number", p) for p in phones]
        for kind, value in wanted:
            if (kind, _identity_key(kind, value)) in have:
                continue
            identity: dict[str, Any] = {"type": kind, "value": value}
            if kind == "email":
                identity["skip_verify_email"] = True  # placement inside identity: [U]
            what = "zendesk add identity"
            resp = await self._call(
                "POST", f"/users/{user_id}/identities", what=what, json={"identity": identity}
            )
            if resp.status_code in (409, 422):
                # The value belongs to another Zendesk user (or Zendesk rejects its form).
                # Two users claiming one phone is for the identity graph to settle later;
                # failing here would keep the customer's message out of the desk.
                log.warning(
                    "zendesk %s: %s identity not added to user %s (HTTP %s)",
                    self.account,
                    kind,
                    user_id,
                    resp.status_code,
                )
                continue
            classify(resp, what=what)
            log.info("zendesk %s: %s identity added to user %s", self.account, kind, user_id)

    # -- tickets ----------------------------------------------------------------------

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
        """File ``msg`` as ``user_id``'s public comment: a new ticket when the conversation has
        none, a follow-up when its ticket is closed or full, else a comment on it.

        Ticket creation is idempotent (Idempotency-Key, and a lookup by external_id when
        ``retried``). Adding a comment is not, so every update carries the delivery's key in
        its audit's ``metadata.custom``, and when ``in_doubt`` the ticket's audits are read
        for it before the comment is added again.
        """
        filing = _Filing(
            conv=conv,
            user_id=user_id,
            msg=msg,
            text=render(msg),
            uploads=await self._upload(files),
            retried=retried,
            in_doubt=in_doubt,
        )
        if conv.ticket_id is None:
            return await self._create(filing, key=idempotency_key, follows=None)
        if conv.comment_count >= self._config.max_comments_per_ticket:
            log.info(
                "zendesk %s: ticket %s holds %d comments; filing a follow-up",
                self.account,
                conv.ticket_id,
                conv.comment_count,
            )
            return await self._create(
                filing, key=f"{idempotency_key}:followup", follows=conv.ticket_id
            )
        return await self._comment(
            filing, conv.ticket_id, key=idempotency_key, count=conv.comment_count
        )

    async def _upload(self, files: Sequence[Upload]) -> list[str]:
        # Upload tokens live 60 minutes, so every attempt uploads afresh.
        tokens: list[str] = []
        for f in files:
            what = "zendesk upload"
            resp = await self._call(
                "POST",
                "/uploads",
                what=what,
                params={"filename": f.filename or "attachment"},
                content=f.data,
                headers={"Content-Type": f.mime_type or "application/octet-stream"},
            )
            classify(resp, what=what)
            token = _obj(self._json(resp, what), "upload").get("token")
            if not isinstance(token, str) or not token:
                raise PermanentError(f"{what}: no token in the response", status=resp.status_code)
            tokens.append(token)
        return tokens

    async def _create(
        self,
        filing: _Filing,
        *,
        key: str,
        follows: str | None,
        excluded: frozenset[str] = frozenset(),
    ) -> Filed:
        """A new ticket (a follow-up of ``follows`` when set) with the message as its first
        comment, unless an earlier attempt already made it. Tickets in ``excluded`` (and
        ``follows``) are never taken for that earlier attempt's."""
        if follows is not None:
            excluded |= {follows}
        if filing.retried:
            found = await self._find_ticket(filing.conv.id, excluded)
            if found is not None:
                return await self._adopt(filing, found, key=key, excluded=excluded)
        ticket: dict[str, Any] = {
            "subject": subject(filing.msg),
            "comment": filing.comment(),
            "requester_id": _num(filing.user_id),
            "submitter_id": _num(filing.user_id),
            "external_id": filing.conv.id,
            "tags": ["deskbridge", f"deskbridge_{filing.msg.channel.value}"],
        }
        if follows is not None:
            # Zendesk links only closed tickets; for a full ticket it has no effect.
            ticket["via_followup_source_id"] = _num(follows)
        _apply_fields(ticket, filing.conv.fields)
        body = {"ticket": ticket}
        what = "zendesk create ticket"
        resp = await self._post_ticket(body, key, what=what)
        if resp.status_code == 400 and _error_code(resp) == "IdempotentRequestError":
            # The key was used with another body: upload tokens differ on every attempt.
            # If that attempt made the ticket, use it; if not, a key bound to this body
            # still protects against our own duplicate POSTs.
            found = await self._find_ticket(filing.conv.id, excluded)
            if found is not None:
                return await self._adopt(filing, found, key=key, excluded=excluded)
            resp = await self._post_ticket(body, f"{key}:{_digest(body)}", what=what)
        classify(resp, what=what)
        data = self._json(resp, what)
        ticket_id = _str_id(_obj(data, "ticket").get("id"))
        if ticket_id is None:
            raise PermanentError(f"{what}: no ticket id in the response", status=resp.status_code)
        log.info(
            "zendesk %s: ticket %s created for conversation %s%s (idempotency %s)",
            self.account,
            ticket_id,
            filing.conv.id,
            f" as a follow-up of {follows}" if follows else "",
            resp.headers.get("x-idempotency-lookup", "n/a"),
        )
        return Filed(
            ticket_id=ticket_id,
            message_id=_comment_id(data) or f"ticket:{ticket_id}",
            comment_count=1,
        )

    async def _post_ticket(self, body: dict[str, Any], key: str, *, what: str) -> httpx.Response:
        return await self._call(
            "POST", "/tickets", what=what, json=body, headers={"Idempotency-Key": _idempotency(key)}
        )

    async def _adopt(
        self, filing: _Filing, found: dict[str, Any], *, key: str, excluded: frozenset[str]
    ) -> Filed:
        """Use a ticket an earlier attempt created. Its first comment is this message when
        the texts agree; otherwise the message is added to it."""
        ticket_id = _str_id(found.get("id")) or ""
        description = found.get("description")
        if isinstance(description, str) and _same_text(description, filing.text):
            log.info(
                "zendesk %s: ticket %s already holds this message (earlier attempt)",
                self.account,
                ticket_id,
            )
            return Filed(ticket_id=ticket_id, message_id=f"ticket:{ticket_id}", comment_count=None)
        log.info("zendesk %s: appending to ticket %s found by external_id", self.account, ticket_id)
        return await self._comment(filing, ticket_id, key=key, count=None, excluded=excluded)

    async def _comment(
        self,
        filing: _Filing,
        ticket_id: str,
        *,
        key: str,
        count: int | None,
        excluded: frozenset[str] = frozenset(),
    ) -> Filed:
        what = "zendesk update ticket"
        checked = True
        if filing.in_doubt:
            checked, found = await self._audited(ticket_id, key)
            if found is not None:
                log.info(
                    "zendesk %s: ticket %s already holds this comment (audit of an earlier"
                    " attempt)",
                    self.account,
                    ticket_id,
                )
                return Filed(
                    ticket_id=ticket_id,
                    message_id=found,
                    comment_count=None if count is None else count + 1,
                )
        update: dict[str, Any] = {"comment": filing.comment(), "metadata": _audit_metadata(key)}
        fields = filing.conv.fields
        if fields is not None and fields.tags:
            update["additional_tags"] = list(fields.tags)
        resp = await self._call("PUT", f"/tickets/{ticket_id}", what=what, json={"ticket": update})
        if resp.status_code == 422 and _is_closed(resp):
            log.info("zendesk %s: ticket %s is closed; filing a follow-up", self.account, ticket_id)
            return await self._create(
                filing, key=f"{key}:followup", follows=ticket_id, excluded=excluded
            )
        classify(resp, what=what)
        comment_id = _comment_id(self._json(resp, what))
        return Filed(
            ticket_id=ticket_id,
            message_id=comment_id or f"ticket:{ticket_id}",
            comment_count=None if count is None else count + 1,
            resent=None if checked else what,
        )

    async def _find_ticket(
        self, external_id: str, excluded: frozenset[str]
    ) -> dict[str, Any] | None:
        """The newest ticket with ``external_id`` that can still take comments."""
        what = "zendesk list tickets by external_id"
        resp = await self._call("GET", "/tickets", what=what, params={"external_id": external_id})
        classify(resp, what=what)
        best: dict[str, Any] | None = None
        for ticket in _list(self._json(resp, what), "tickets"):
            ticket_id = _str_id(ticket.get("id"))
            status = str(ticket.get("status") or "").lower()
            if ticket_id is None or ticket_id in excluded or status in ("closed", "deleted"):
                continue
            if best is None or _order(ticket_id) > _order(_str_id(best.get("id")) or ""):
                best = ticket
        return best

    async def _audited(self, ticket_id: str, key: str) -> tuple[bool, str | None]:
        """Whether the ticket's audits could be read, and the comment id of the update
        whose audit carries ``key`` in ``metadata.custom`` (an earlier attempt's whose
        answer was lost). Reads ``GET /tickets/{id}/audits`` (cursor pages of 100, oldest
        first). A refusal (4xx but 429) or more pages than deskbridge reads: not checked,
        and the comment is added again (the caller counts it)."""
        what = "zendesk list audits"
        params: dict[str, str] = {"page[size]": "100"}
        for _ in range(_MAX_AUDIT_PAGES):
            resp = await self._call("GET", f"/tickets/{ticket_id}/audits", what=what, params=params)
            if 400 <= resp.status_code < 500 and resp.status_code != 429:
                log.warning(
                    "zendesk %s: %s refused (HTTP %s); adding the comment unchecked",
                    self.account,
                    what,
                    resp.status_code,
                )
                return False, None
            classify(resp, what=what)
            data = self._json(resp, what)
            for audit in _list(data, "audits"):
                if _obj(_obj(audit, "metadata"), "custom").get(_AUDIT_MARK) == key:
                    return True, _comment_id({"audit": audit}) or f"ticket:{ticket_id}"
            meta = _obj(data, "meta")
            after = meta.get("after_cursor")
            if not meta.get("has_more") or not isinstance(after, str) or not after:
                return True, None
            params = {"page[size]": "100", "page[after]": after}
        log.warning(
            "zendesk %s: ticket %s has more audits than deskbridge reads; adding the comment",
            self.account,
            ticket_id,
        )
        return False, None

    async def add_note(self, conv: ConversationRef, text: str) -> None:
        """Add an internal note (written as the API user) to the conversation's ticket.
        Raises ``PermanentError`` when the conversation has no ticket. Not idempotent."""
        if conv.ticket_id is None:
            raise PermanentError("zendesk add note: the conversation has no ticket")
        what = "zendesk add note"
        resp = await self._call(
            "PUT",
            f"/tickets/{conv.ticket_id}",
            what=what,
            json={"ticket": {"comment": {"body": text, "public": False}}},
        )
        classify(resp, what=what)

    async def add_tags(self, conv: ConversationRef, tags: Sequence[str]) -> None:
        """Add tags to the conversation's ticket (``additional_tags`` on a ticket update:
        its other tags stay). A closed ticket takes no update: logged and skipped.
        Raises ``PermanentError`` when the conversation has no ticket."""
        if conv.ticket_id is None:
            raise PermanentError("zendesk add tags: the conversation has no ticket")
        what = "zendesk add tags"
        resp = await self._call(
            "PUT",
            f"/tickets/{conv.ticket_id}",
            what=what,
            json={"ticket": {"additional_tags": list(tags)}},
        )
        if resp.status_code == 422 and _is_closed(resp):
            log.info("zendesk %s: ticket %s is closed; no tags", self.account, conv.ticket_id)
            return
        classify(resp, what=what)

    # -- attachments ------------------------------------------------------------------

    async def fetch(self, attachment: Attachment) -> Upload:
        """Download an agent's attachment from its content URL (at most 20 MB).

        Credentials go only to the Zendesk host; a redirect elsewhere (Zendesk's file host)
        is followed without them.
        """
        return await download(
            self._client,
            attachment,
            trusted=self._config.api_base(),
            limit=MAX_ATTACHMENT_BYTES,
            what="zendesk fetch attachment",
            headers=lambda url: dict(self._auth) if self._is_zendesk(url) else {},
        )

    async def comment_files(self, ticket_id: str, comment_id: str) -> tuple[Attachment, ...]:
        """The attachments of a comment, read from ``GET /tickets/{id}/comments`` (List
        Comments, newest first, cursor pages): ``comment_added`` events carry none. At
        most ``_COMMENT_PAGES`` pages are read; a comment not found there has none."""
        what = "zendesk list comments"
        params = {"sort_order": "desc", "page[size]": "100"}
        for _ in range(_COMMENT_PAGES):
            resp = await self._call(
                "GET", f"/tickets/{ticket_id}/comments", what=what, params=params
            )
            classify(resp, what=what)
            page = self._json(resp, what)
            try:
                found = webhook.comment_attachments(page, comment_id)
            except ParseFailed as exc:
                raise PermanentError(f"{what}: {exc}", status=resp.status_code) from None
            if found is not None:
                return found
            meta = page.get("meta")
            after = meta.get("after_cursor") if isinstance(meta, dict) else None
            if not (isinstance(meta, dict) and meta.get("has_more")) or not after:
                break
            params = {**params, "page[after]": str(after)}
        log.warning(
            "zendesk %s: comment %s not found on ticket %s; sending it without files",
            self.account,
            comment_id,
            ticket_id,
        )
        return ()

    def _is_zendesk(self, url: httpx.URL) -> bool:
        return (url.scheme, url.host, url.port) == self._origin

    # -- agent-reply webhook ----------------------------------------------------------

    def verify_webhook(self, req: RawRequest) -> None:
        """Raise ``SignatureInvalid`` unless signed with ``webhook_secret`` in the last 5 min."""
        secret = self._config.webhook_secret
        webhook.verify(req, secret.get_secret_value() if secret else None, now=self._clock())

    def parse_webhook(self, req: RawRequest) -> list[AgentReply]:
        """Public agent comments in the webhook body; see :func:`webhook.parse`."""
        return webhook.parse(req, account=self.account, now=self._clock())

    def solved_tickets(self, req: RawRequest) -> list[str]:
        """The ticket the "ticket solved" trigger reports (docs/desks/zendesk.md)."""
        return webhook.solved(req)

    async def register_webhook(self, url: str, *, name: str) -> str:
        """Make sure a webhook subscribed to ``ticket.comment_added`` posts to ``url`` and
        return its signing secret. Reuses a webhook with that endpoint or name. Idempotent."""
        existing = await self._find_webhook(url, name)
        if existing is None:
            what = "zendesk create webhook"
            resp = await self._call(
                "POST",
                "/webhooks",
                what=what,
                json={
                    "webhook": {
                        "name": name,
                        "description": f"deskbridge: agent replies for account {self.account}",
                        "endpoint": url,
                        "http_method": "POST",
                        "request_format": "json",
                        "status": "active",
                        "subscriptions": [webhook.COMMENT_ADDED],
                    }
                },
            )
            classify(resp, what=what)
            webhook_id = _str_id(_obj(self._json(resp, what), "webhook").get("id"))
            if webhook_id is None:
                raise PermanentError(
                    f"{what}: no webhook id in the response", status=resp.status_code
                )
            log.info("zendesk %s: webhook %s created", self.account, webhook_id)
        else:
            webhook_id = _str_id(existing.get("id")) or ""
            if existing.get("endpoint") != url or existing.get("status") != "active":
                what = "zendesk update webhook"
                resp = await self._call(
                    "PATCH",
                    f"/webhooks/{webhook_id}",
                    what=what,
                    json={"webhook": {"endpoint": url, "status": "active"}},
                )
                classify(resp, what=what)
            log.info("zendesk %s: reusing webhook %s", self.account, webhook_id)
        what = "zendesk webhook signing secret"
        resp = await self._call("GET", f"/webhooks/{webhook_id}/signing_secret", what=what)
        classify(resp, what=what)
        secret = _obj(self._json(resp, what), "signing_secret").get("secret")
        if not isinstance(secret, str) or not secret:
            raise PermanentError(f"{what}: no secret in the response", status=resp.status_code)
        return secret

    async def _find_webhook(self, url: str, name: str) -> dict[str, Any] | None:
        """An event webhook for comment_added at ``url`` (preferred) or named ``name``."""
        by_name: dict[str, Any] | None = None
        params: dict[str, str] = {"page[size]": "100"}
        for _ in range(_MAX_WEBHOOK_PAGES):
            what = "zendesk list webhooks"
            resp = await self._call("GET", "/webhooks", what=what, params=params)
            classify(resp, what=what)
            data = self._json(resp, what)
            for hook in _list(data, "webhooks"):
                subscriptions = hook.get("subscriptions")
                if (
                    not isinstance(subscriptions, list)
                    or webhook.COMMENT_ADDED not in subscriptions
                ):
                    continue
                if hook.get("endpoint") == url:
                    return hook
                if by_name is None and hook.get("name") == name:
                    by_name = hook
            meta = _obj(data, "meta")
            after = meta.get("after_cursor")
            if not meta.get("has_more") or not isinstance(after, str) or not after:
                break
            params = {"page[size]": "100", "page[after]": after}
        return by_name

    # -- erasure ----------------------------------------------------------------------

    async def merge_users(self, user_id: str, into: str) -> None:
        """Merge end user ``user_id`` into ``into`` (``PUT /users/{id}/merge``): its
        identities and tickets move to ``into``. Zendesk's merge is permanent, so only an
        operator's confirmed merge calls this."""
        what = "zendesk merge users"
        resp = await self._call(
            "PUT", f"/users/{user_id}/merge", what=what, json={"user": {"id": _num(into)}}
        )
        classify(resp, what=what)

    async def forget_user(self, user_id: str, *, tickets: Sequence[str] = ()) -> list[str]:
        """Delete the tickets (bulk delete, then permanent deletion of the deleted
        tickets), then the user (delete, then permanently delete: Zendesk's GDPR path),
        then read each back. Both bulk calls start background jobs, so a ticket or user
        still visible right after is reported as not confirmed yet, never as deleted."""
        done: list[str] = []
        ids = [t for t in dict.fromkeys(tickets) if t.isdigit()]
        for start in range(0, len(ids), 100):
            chunk = ",".join(ids[start : start + 100])
            for path in ("/tickets/destroy_many", "/deleted_tickets/destroy_many"):
                await self._delete(path, params={"ids": chunk})
        await self._delete(f"/users/{user_id}")
        await self._delete(f"/deleted_users/{user_id}")
        if ids:
            left = [t for t in ids if not await self._gone(f"/tickets/{t}")]
            if len(left) < len(ids):
                done.append(f"tickets deleted (read back: not found): {len(ids) - len(left)}")
            if left:
                done.append(
                    f"{UNCONFIRMED} yet: tickets {', '.join(left)} still visible at "
                    "Zendesk (or the read-back was not Zendesk's not-found); "
                    "run forget again later"
                )
        if await self._gone(f"/users/{user_id}", inactive_ok=True) and await self._gone(
            f"/deleted_users/{user_id}", purged_ok=True
        ):
            done.append("user permanently deleted (read back: not found)")
        else:
            done.append(
                f"{UNCONFIRMED} yet: user {user_id} still visible at Zendesk (or the "
                "read-back was not Zendesk's not-found); run forget again later"
            )
        return done

    async def _delete(self, path: str, params: dict[str, str] | None = None) -> None:
        what = f"zendesk DELETE {path.rsplit('/', 1)[0] if params is None else path}"
        resp = await self._call("DELETE", path, what=what, params=params)
        # a 404 is judged by the read-back, not here
        if resp.status_code != 404:
            classify(resp, what=what)

    async def _gone(self, path: str, *, inactive_ok: bool = False, purged_ok: bool = False) -> bool:
        """Whether ``GET path`` shows the resource gone: Zendesk's own not-found body
        (``{"error": "RecordNotFound"}``), a deactivated user (``inactive_ok``, what
        Show User returns for a deleted one) or a deleted user already scrubbed
        (``purged_ok``: Show Deleted User's "Permanently Deleted User"). Anything else,
        an HTML 404 from a proxy or a wrong ``base_url`` included, is not gone."""
        what = f"zendesk GET {path.rsplit('/', 1)[0]}"
        resp = await self._call("GET", path, what=what)
        try:
            data = resp.json()
        except ValueError:
            return False
        if not isinstance(data, dict):
            return False
        if resp.status_code == 404:
            return data.get("error") == "RecordNotFound"
        if resp.status_code != 200:
            classify(resp, what=what)
            return False
        user = data.get("user")
        if inactive_ok and isinstance(user, dict):
            return user.get("active") is False
        deleted = data.get("deleted_user")
        if purged_ok and isinstance(deleted, dict):
            return deleted.get("name") == _PURGED and not deleted.get("email")
        return False

    # -- plumbing ---------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        *,
        what: str,
        json: Any = None,
        params: dict[str, str] | None = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        try:
            return await self._client.request(
                method,
                self._api + path,
                json=json,
                params=params,
                content=content,
                headers={**self._auth, **(headers or {})},
            )
        except httpx.HTTPError as exc:
            raise transport_error(exc, what=what) from exc

    @staticmethod
    def _json(resp: httpx.Response, what: str) -> dict[str, Any]:
        try:
            data = resp.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise PermanentError(f"{what}: response is not a JSON object", status=resp.status_code)
        return data


@dataclass(frozen=True, slots=True)
class _Filing:
    """One message on its way into a ticket (the same for every ticket it may land in)."""

    conv: ConversationRef
    user_id: str
    msg: Message
    text: str
    uploads: list[str]
    retried: bool
    in_doubt: bool

    def comment(self) -> dict[str, Any]:
        comment: dict[str, Any] = {
            "body": self.text,
            "public": True,
            "author_id": _num(self.user_id),
        }
        if self.uploads:
            comment["uploads"] = list(self.uploads)
        return comment


def _audit_metadata(key: str) -> dict[str, Any]:
    """The update's ``metadata``, naming the delivery: Zendesk keeps it on the update's
    audit as ``metadata.custom`` (Tickets API: "Write only. Metadata for the audit. In the
    audit object, the data is specified in the custom property of the metadata object")."""
    return {_AUDIT_MARK: key}


def _authorization(config: ZendeskDeskConfig) -> str:
    if config.oauth_token is not None:
        return f"Bearer {config.oauth_token.get_secret_value()}"
    token = config.api_token.get_secret_value() if config.api_token else ""
    raw = f"{config.email}/token:{token}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


def _identity_key(kind: str, value: str) -> str:
    if kind == "phone_number":
        return "".join(c for c in value if c.isdigit() or c == "+")
    return value.strip().lower()


def _num(value: str) -> int | str:
    """Zendesk ids are integers; send them as such."""
    return int(value) if value.isdigit() else value


def _str_id(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value:
        return value
    return None


def _order(ticket_id: str) -> tuple[int, str]:
    return (int(ticket_id), "") if ticket_id.isdigit() else (-1, ticket_id)


def _obj(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    return value if isinstance(value, dict) else {}


def _list(data: dict[str, Any], key: str) -> list[dict[str, Any]]:
    value = data.get(key)
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _comment_id(data: dict[str, Any]) -> str | None:
    """The id of the Comment event in a create/update response's audit."""
    for event in _list(_obj(data, "audit"), "events"):
        if event.get("type") == "Comment":
            return _str_id(event.get("id"))
    return None


def _error_body(resp: httpx.Response) -> dict[str, Any]:
    try:
        data = resp.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _error_code(resp: httpx.Response) -> str:
    error = _error_body(resp).get("error")
    if isinstance(error, dict):
        error = error.get("title") or error.get("code")
    return error if isinstance(error, str) else ""


def _is_closed(resp: httpx.Response) -> bool:
    """Whether a 422 says the ticket is closed, e.g. {"error":"RecordInvalid","details":
    {"status":[{"description":"Status: closed prevents ticket update"}]}}."""
    details = _error_body(resp).get("details")
    if not isinstance(details, dict):
        return False
    for entries in details.values():
        items = entries if isinstance(entries, list) else [entries]
        for item in items:
            if not isinstance(item, dict):
                continue
            text = " ".join(str(item.get(k, "")) for k in ("description", "error", "type")).lower()
            if any(marker in text for marker in _CLOSED_MARKERS):
                return True
    return False


def _same_text(a: str, b: str) -> bool:
    return " ".join(a.split()) == " ".join(b.split())


def _apply_fields(ticket: dict[str, Any], fields: DeskFields | None) -> None:
    """Routing's fields on a new ticket: tags (beside ours), priority, group_id,
    custom_fields (by numeric field id) and ticket_form_id."""
    if fields is None:
        return
    ticket["tags"] = list(dict.fromkeys([*ticket.get("tags", []), *fields.tags]))
    if fields.priority:
        ticket["priority"] = fields.priority
    if fields.group:
        ticket["group_id"] = _num(fields.group)
    if fields.form:
        ticket["ticket_form_id"] = _num(fields.form)
    if fields.custom_fields:
        ticket["custom_fields"] = [
            {"id": _num(k), "value": v} for k, v in fields.custom_fields.items()
        ]


def _idempotency(key: str) -> str:
    if len(key) <= _IDEMPOTENCY_KEY_MAX:
        return key
    return hashlib.sha256(key.encode()).hexdigest()


def _digest(body: dict[str, Any]) -> str:
    raw = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(raw).hexdigest()[:16]
