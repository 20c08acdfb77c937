"""Udesk Open API v2 calls for one account: customers, tickets, replies, attachments.

Every call is signed afresh (new nonce, current timestamp), waits for its token in the
account's bucket shared by every worker, and turns its outcome into the ``errors`` tree:
``code: 1000`` is success; a refused signature renews the token once; HTTP 429, 5xx and
timeouts are retryable; other codes are permanent. Log lines carry the account, Udesk
ids and outcomes, never tokens, emails, phone numbers or bodies.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ClassVar

import httpx

from deskbridge.adapters.base import TokenCache
from deskbridge.config.accounts import UdeskDeskConfig
from deskbridge.errors import PermanentError, RetryableError
from deskbridge.http import classify, parse_retry_after, transport_error
from deskbridge.metrics import Metrics
from deskbridge.outbound.base import UNCONFIRMED, Filed
from deskbridge.outbound.capabilities import NoBudget, Polled, PollsReplies, PollsSolved
from deskbridge.outbound.common import display_name, download, unique
from deskbridge.outbound.common import phones as contact_phones
from deskbridge.outbound.render import render, subject
from deskbridge.outbound.udesk import replies
from deskbridge.outbound.udesk.sign import signed_query
from deskbridge.outbound.udesk.state import UdeskState
from deskbridge.schemas import (
    AgentReply,
    Attachment,
    Contact,
    ConversationRef,
    Desk,
    Message,
    RawRequest,
    Upload,
)

__all__ = ["NoBudget", "Polled", "UdeskConnector"]


_PRIORITY = {"urgent": "紧急", "high": "高", "normal": "标准", "low": "低"}
"""Routing's priorities as Udesk's default priority names [U]."""

log = logging.getLogger(__name__)

_API = "/open_api_v1"
_OK = 1000
_TOKEN_TTL = 12 * 3600.0
_MEMO_TTL = 7 * 86400.0
_RELAYED_TTL = 30 * 86400.0
_MAX_REPLY_PAGES = 10
_RATE_LIMIT_WAIT = 60.0
_DESK = Desk.UDESK.value
_UNKNOWN = "unknown-reply:"
"""A reply Udesk accepted (``code: 1000``) without telling its id: ``unknown-reply:<ticket>``."""
_SOLVED_IDS = frozenset({2, 3})
_SOLVED_NAMES = frozenset({"已解决", "已关闭", "resolved", "closed", "solved"})
"""A ticket's ``status_id`` 2 (已解决, resolved) and 3 (已关闭, closed) [U]; by name when
the answer carries no ``status_id``."""
_BY_ID = "id"
"""How a customer is named by its Udesk id in ``type``/``type_content`` pairs [U]."""


class UdeskConnector(PollsReplies, PollsSolved):
    """One account's Udesk: the ``DeskConnector`` for ``Desk.UDESK``, plus the polling
    side (``active_tickets``, ``poll_ticket``, ``mark_seen``) the worker's poller uses.
    Udesk documents no per-ticket limit (no ``TicketUpdateBudget``): the account-wide
    bucket paces every call."""

    desk: ClassVar[Desk] = Desk.UDESK
    secret_headers: ClassVar[frozenset[str]] = frozenset()
    # Udesk signs nothing: the account's callback secret rides in the URL's query
    secret_query: ClassVar[frozenset[str]] = frozenset({"secret"})

    def __init__(
        self,
        account: str,
        config: UdeskDeskConfig,
        client: httpx.AsyncClient,
        *,
        tokens: TokenCache,
        state: UdeskState,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.account = account
        self._config = config
        self._client = client
        self._tokens = tokens
        self._state = state
        self._metrics = metrics
        self._clock = clock
        self._sleep = sleep
        self._base = config.api_base()
        base = httpx.URL(self._base)
        self._origin = (base.scheme, base.host, base.port)
        self._token_name = f"udesk.{account}"
        rpm = config.requests_per_minute
        self._capacity = float(config.burst or max(1, rpm // 6))
        # no 60 s window may hold more than rpm calls: burst + refill over a minute = rpm
        self._per_second = max(rpm - self._capacity, 1.0) / 60.0
        self._reserve = self._capacity * (1.0 - config.poll_share)
        self.poll_interval = config.poll_interval_seconds

    # -- customers --------------------------------------------------------------------

    async def ensure_user(self, contact: Contact) -> str:
        """The Udesk customer id for ``contact``: found by its deskbridge id
        (``web_token``), else by email or phone, else created; given every email and phone
        the contact has. Idempotent."""
        emails = unique(i.value.strip().lower() for i in contact.identities if i.kind == "email")
        phones = contact_phones(contact)
        lookups = [("token", contact.id)]
        lookups += [("email", e) for e in emails] + [("cellphone", p) for p in phones]
        for kind, value in lookups:
            found = await self._find_customer(kind, value)
            if found is not None:
                customer_id = _str(found.get("id"))
                if customer_id is None:
                    continue
                await self._complete(customer_id, found, contact, emails, phones, kind)
                return customer_id
        customer: dict[str, Any] = {
            "nick_name": display_name(contact, limit=255),
            "web_token": contact.id,
            "cellphones": [[None, p] for p in phones],
        }
        if emails:
            customer["email"] = emails[0]
        what = "udesk create customer"
        body = await self._call(
            "POST",
            "/customers",
            what=what,
            json={"customer": customer, "other_emails": [[None, e] for e in emails[1:]]},
        )
        customer_id = _str(_obj(body, "customer").get("id"))
        if customer_id is None:
            raise PermanentError(f"{what}: no customer id in the response")
        log.info(
            "udesk %s: customer %s created for contact %s", self.account, customer_id, contact.id
        )
        return customer_id

    async def _find_customer(self, kind: str, value: str) -> dict[str, Any] | None:
        body = await self._request(
            "GET",
            "/customers/get_customer",
            what=f"udesk get customer by {kind}",
            params={"type": kind, "content": value},
            json=None,
            content=None,
            headers=None,
            low=False,
            missing_ok=True,
        )
        if body is None:
            return None
        found = _obj(body, "customer")
        return found or None

    async def _complete(
        self,
        customer_id: str,
        found: dict[str, Any],
        contact: Contact,
        emails: list[str],
        phones: list[str],
        found_by: str,
    ) -> None:
        """Add the contact's emails and phones the customer lacks (and our id)."""
        have_phones = [
            (c.get("id"), str(c.get("content") or ""))
            for c in _list(found, "cellphones")
            if c.get("content")
        ]
        have_emails = {str(found.get("email") or "").lower()} | {
            str(e.get("content") if isinstance(e, dict) else e or "").lower()
            for e in found.get("other_emails") or []
        }
        new_phones = [p for p in phones if _digits(p) not in {_digits(h) for _, h in have_phones}]
        new_emails = [e for e in emails if e not in have_emails]
        if not new_phones and not new_emails and found_by == "token":
            return
        update: dict[str, Any] = {"web_token": contact.id}
        if new_phones:
            update["cellphones"] = [[i, p] for i, p in have_phones] + [
                [None, p] for p in new_phones
            ]
        body: dict[str, Any] = {"customer": update}
        if new_emails:
            body["other_emails"] = [[None, e] for e in new_emails]
        await self._call(
            "PUT",
            "/customers/update_customer",
            what="udesk update customer",
            params={"type": _BY_ID, "content": customer_id},
            json=body,
        )
        log.info(
            "udesk %s: customer %s given %d phone(s), %d email(s)",
            self.account,
            customer_id,
            len(new_phones),
            len(new_emails),
        )

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
        """File ``msg`` as customer ``user_id``'s: a new ticket when the conversation has
        none, else a reply on it; files are uploaded to the ticket afterwards.

        What each filing created is remembered under ``idempotency_key``, so a retried
        delivery never files the message twice (Udesk has no idempotency key of its own).
        A call whose answer was lost (``in_doubt``) is reconciled where Udesk allows it: a
        reply is looked for in the ticket's replies list before it is posted again; a
        ticket cannot be looked up, so it is created again and ``Filed.resent`` says so.
        """
        resent: str | None = None
        memo = await self._state.recall(self.account, idempotency_key)
        if memo is not None:
            ticket_id, message_id, uploaded = _memo(memo)
            log.info("udesk %s: %s already filed (earlier attempt)", self.account, message_id)
        else:
            text = render(msg)
            if conv.ticket_id is None:
                ticket_id = await self._create_ticket(conv, user_id, msg, text)
                message_id = f"ticket:{ticket_id}"
                resent = "udesk create ticket" if in_doubt else None
            else:
                ticket_id = conv.ticket_id
                reply = self._reply_body(user_id, msg, text)
                checked, found = await self._posted(ticket_id, reply) if in_doubt else (True, None)
                message_id = found or await self._customer_reply(ticket_id, reply)
                resent = None if checked else "udesk add reply"
            uploaded = 0
            await self._state.remember(
                self.account, idempotency_key, f"{ticket_id}|{message_id}|0", _MEMO_TTL
            )
            if not message_id.startswith(("ticket:", _UNKNOWN)):
                await self._state.mark_relayed(self.account, ticket_id, [message_id], _RELAYED_TTL)
        for n, f in enumerate(files):
            if n < uploaded:
                continue
            await self._upload(ticket_id, f)
            await self._state.remember(
                self.account, idempotency_key, f"{ticket_id}|{message_id}|{n + 1}", _MEMO_TTL
            )
        await self._state.touch(self.account, ticket_id, self._clock())
        return Filed(ticket_id=ticket_id, message_id=message_id, resent=resent)

    async def _create_ticket(
        self, conv: ConversationRef, user_id: str, msg: Message, text: str
    ) -> str:
        what = "udesk create ticket"
        ticket: dict[str, Any] = {
            "subject": subject(msg, limit=200),
            "content": text,
            "type": _BY_ID,
            "type_content": user_id,
            "tags": f"deskbridge,deskbridge_{msg.channel.value}",
        }
        fields = conv.fields
        if fields is not None:
            # [V] ticket fields per udesk.cn/doc/apiv2/tickets: tags (comma list),
            # priority, agent_group_name, ticket_field (custom fields by field name);
            # [U] the priority names below are Udesk's defaults, unverified
            if fields.tags:
                ticket["tags"] = ",".join(
                    ["deskbridge", f"deskbridge_{msg.channel.value}", *fields.tags]
                )
            if fields.priority:
                ticket["priority"] = _PRIORITY.get(fields.priority, fields.priority)
            if fields.group:
                ticket["agent_group_name"] = fields.group
            if fields.custom_fields:
                ticket["ticket_field"] = dict(fields.custom_fields)
        body = await self._call("POST", "/tickets", what=what, json={"ticket": ticket})
        ticket_id = _str(body.get("ticket_id")) or _str(_obj(body, "ticket").get("id"))
        if ticket_id is None:
            raise PermanentError(f"{what}: no ticket id in the response")
        log.info(
            "udesk %s: ticket %s created for conversation %s", self.account, ticket_id, conv.id
        )
        return ticket_id

    def _reply_body(self, user_id: str, msg: Message, text: str) -> dict[str, Any]:
        if self._config.customer_replies == "author":
            return {"content": text, "user_type": "customer", "customer_id": _num(user_id)}
        who = msg.sender.display_name or "Customer"
        head = f"[{who} via {msg.channel.brand} {replies.CUSTOMER_MARK}"
        return {"content": f"{head}\n\n{text}"}

    async def _customer_reply(self, ticket_id: str, reply: dict[str, Any]) -> str:
        """Post ``reply``; its id. ``code: 1000`` without an id is still a success (the
        reply is there): the id is recorded as unknown, never as a failure to retry."""
        what = "udesk add reply"
        body = await self._call(
            "POST", f"/tickets/{ticket_id}/replies", what=what, json={"reply": reply}
        )
        reply_id = _str(_obj(body, "reply").get("id")) or _str(body.get("reply_id"))
        if reply_id is None:
            log.warning(
                "udesk %s: %s on ticket %s succeeded without a reply id",
                self.account,
                what,
                ticket_id,
            )
            return f"{_UNKNOWN}{ticket_id}"
        return reply_id

    async def _posted(self, ticket_id: str, reply: dict[str, Any]) -> tuple[bool, str | None]:
        """The id of a reply an earlier attempt posted (its answer lost), else None: a
        customer's reply on the ticket with the same content that no filing recorded
        (each filing remembers its reply id; the poller never remembers customers'
        replies). Reads the ticket's replies list (``GET /tickets/{id}/replies``), the one
        the poller reads. Returns whether the list could be read (a refusal: not checked,
        the caller posts and counts it) and the reply's id."""
        known = await self._state.relayed(self.account, ticket_id)
        wanted = " ".join(str(reply["content"]).split())
        found: str | None = None
        for page in range(1, _MAX_REPLY_PAGES + 1):
            try:
                body = await self._call(
                    "GET",
                    f"/tickets/{ticket_id}/replies",
                    what="udesk list replies",
                    params={"page": str(page), "per_page": "100"},
                )
            except PermanentError as exc:
                log.warning(
                    "udesk %s: listing replies refused (%s); posting unchecked", self.account, exc
                )
                return False, None
            for item in _list(body, "replies"):
                reply_id = _str(item.get("id"))
                content = _str(item.get("content")) or ""
                if reply_id is None or reply_id in known or not replies.is_customers(item):
                    continue
                if " ".join(content.split()) == wanted:
                    found = reply_id
            total = _obj(body, "meta").get("total_pages")
            if not isinstance(total, int) or page >= total:
                break
        if found is not None:
            log.info(
                "udesk %s: ticket %s already holds this reply (earlier attempt)",
                self.account,
                ticket_id,
            )
        return True, found

    async def _upload(self, ticket_id: str, f: Upload) -> None:
        await self._call(
            "POST",
            "/tickets/upload_file",
            what="udesk upload file",
            params={"ticket_id": ticket_id, "file_name": f.filename or "attachment"},
            content=f.data,
            headers={"Content-Type": "application/octet-stream"},
        )

    async def add_note(self, conv: ConversationRef, text: str) -> None:
        """Write an internal note (a non-public reply starting with ``NOTE_MARK``) on the
        conversation's ticket. Raises ``PermanentError`` without a ticket. Not idempotent."""
        if conv.ticket_id is None:
            raise PermanentError("udesk add note: the conversation has no ticket")
        body = await self._call(
            "POST",
            f"/tickets/{conv.ticket_id}/replies",
            what="udesk add note",
            json={"reply": {"content": f"{replies.NOTE_MARK} {text}", "public": False}},
        )
        note_id = _str(_obj(body, "reply").get("id")) or _str(body.get("reply_id"))
        if note_id is not None:
            await self._state.mark_relayed(self.account, conv.ticket_id, [note_id], _RELAYED_TTL)

    # -- agent replies: polling and callbacks -------------------------------------------

    async def active_tickets(self) -> list[str]:
        """Tickets deskbridge filed on within ``active_window_seconds``, newest first."""
        since = self._clock() - self._config.active_window_seconds
        return await self._state.active(self.account, since)

    async def claim_poll(self) -> bool:
        """Whether this process polls the account now (one process per interval)."""
        return await self._state.claim_poll(self.account, self.poll_interval * 0.9)

    async def poll_ticket(self, ticket_id: str, *, urgent: bool = False) -> Polled:
        """The ticket's replies not taken in yet. Without ``urgent`` the calls are of low
        priority and raise ``NoBudget`` rather than wait for a token."""
        skip = await self._state.relayed(self.account, ticket_id)
        items: list[dict[str, Any]] = []
        for page in range(1, _MAX_REPLY_PAGES + 1):
            body = await self._call(
                "GET",
                f"/tickets/{ticket_id}/replies",
                what="udesk list replies",
                params={"page": str(page), "per_page": "100"},
                low=not urgent,
            )
            items += _list(body, "replies")
            total = _obj(body, "meta").get("total_pages")
            if not isinstance(total, int) or page >= total:
                break
        found, seen = replies.agent_replies(self.account, ticket_id, items, skip=skip)
        # Customers' replies stay out of the remembered set: only a filing puts one there,
        # so a reply whose filing lost its answer is still found by ``_posted``.
        customers = {_str(i.get("id")) for i in items if replies.is_customers(i)}
        return Polled(
            ticket_id=ticket_id, replies=found, seen=[i for i in seen if i not in customers]
        )

    async def is_solved(self, ticket_id: str, *, urgent: bool = False) -> bool:
        """Whether the ticket's status is resolved or closed (``GET /tickets/detail``).
        Without ``urgent`` the call is of low priority and raises ``NoBudget``."""
        body = await self._call(
            "GET",
            "/tickets/detail",
            what="udesk ticket detail",
            params={"id": ticket_id},
            low=not urgent,
        )
        ticket = _obj(body, "ticket")
        status_id = ticket.get("status_id")
        if isinstance(status_id, int) and not isinstance(status_id, bool):
            return status_id in _SOLVED_IDS
        if isinstance(status_id, str) and status_id.isdigit():
            return int(status_id) in _SOLVED_IDS
        return (_str(ticket.get("status")) or "").lower() in _SOLVED_NAMES

    async def mark_seen(self, polled: Polled) -> None:
        """Remember a poll's replies once they are taken in (relayed or skipped)."""
        await self._state.mark_relayed(self.account, polled.ticket_id, polled.seen, _RELAYED_TTL)

    def verify_webhook(self, req: RawRequest) -> None:
        """Raise ``SignatureInvalid`` unless the URL's ``?secret=`` is ``callback_secret``."""
        secret = self._config.callback_secret
        replies.verify_callback(req, secret.get_secret_value() if secret else None)

    def parse_webhook(self, req: RawRequest) -> list[AgentReply]:
        """Agent replies in a trigger's callback; see :func:`replies.parse_callback`."""
        return replies.parse_callback(req, account=self.account)

    # -- attachments ------------------------------------------------------------------

    async def fetch(self, attachment: Attachment) -> Upload:
        """Download an agent's attachment (at most ``max_attachment_bytes``). A URL on the
        Udesk host is signed; any other host (Udesk's file storage) gets no credentials."""
        signed: dict[str, str] = {}
        try:
            first = httpx.URL(attachment.ref)
        except httpx.InvalidURL:
            first = None
        if first is not None and (first.scheme, first.host, first.port) == self._origin:
            await self._acquire(low=False)
            signed = self._signed(await self._token())

        def params(url: httpx.URL) -> dict[str, str]:
            return signed if (url.scheme, url.host, url.port) == self._origin else {}

        return await download(
            self._client,
            attachment,
            trusted=self._base,
            limit=self._config.max_attachment_bytes,
            what="udesk fetch attachment",
            params=params,
        )

    # -- plumbing ---------------------------------------------------------------------

    async def forget_user(self, user_id: str, *, tickets: Sequence[str] = ()) -> list[str]:
        """Delete the tickets, then the customer. UNVERIFIED: the endpoints
        (``DELETE /tickets/destroy_ticket`` and ``DELETE /customers/destroy_customer``,
        ``type=id``) follow the shape of Udesk's other customer and ticket calls; we could
        not confirm them in Udesk's public documentation, nor a read-back with a
        documented not-found shape, so every step is reported as not confirmed."""
        done: list[str] = []
        for ticket in dict.fromkeys(tickets):
            body = await self._request(
                "DELETE",
                "/tickets/destroy_ticket",
                what="udesk destroy_ticket",
                params={"type": "id", "content": ticket},
                json=None,
                content=None,
                headers=None,
                low=False,
                missing_ok=True,
            )
            answer = "asked" if body is not None else "refused or not found"
            done.append(f"{UNCONFIRMED}: ticket {ticket} deletion {answer}; check it at Udesk")
        body = await self._request(
            "DELETE",
            "/customers/destroy_customer",
            what="udesk destroy_customer",
            params={"type": "id", "content": user_id},
            json=None,
            content=None,
            headers=None,
            low=False,
            missing_ok=True,
        )
        answer = "asked" if body is not None else "refused or not found"
        done.append(f"{UNCONFIRMED}: customer {user_id} deletion {answer}; check it at Udesk")
        return done

    async def _acquire(self, *, low: bool) -> None:
        """Wait for a token of the account's bucket. A low-priority caller never waits
        (``NoBudget``); a delivery waits up to ``max_wait_seconds``, then is deferred
        with ``retry_after`` (a wait that does not spend its retry budget)."""
        reserve = self._reserve if low else 0.0
        deadline: float | None = None
        waiting = False
        try:
            while True:
                wait = await self._state.take(
                    self.account,
                    _DESK,
                    capacity=self._capacity,
                    per_second=self._per_second,
                    reserve=reserve,
                )
                if wait <= 0:
                    return
                if low:
                    raise NoBudget(f"udesk {self.account}: no budget to spare for polling")
                now = time.monotonic()
                if deadline is None:
                    deadline = now + self._config.max_wait_seconds
                if now + wait > deadline:
                    if self._metrics is not None:
                        self._metrics.desk_rate_deferred.labels(self.account, _DESK).inc()
                    raise RetryableError(
                        f"udesk {self.account}: over the rate budget; deferred",
                        retry_after=max(wait, 1.0),
                    )
                if not waiting and self._metrics is not None:
                    self._metrics.desk_rate_waiting.labels(self.account, _DESK).inc()
                waiting = True
                await self._sleep(wait)
        finally:
            if waiting and self._metrics is not None:
                self._metrics.desk_rate_waiting.labels(self.account, _DESK).dec()

    def _signed(self, token: str) -> dict[str, str]:
        return signed_query(self._config.email, token, int(self._clock()), str(uuid.uuid4()))

    async def _token(self) -> str:
        static = self._config.open_api_token
        if static is not None:
            return static.get_secret_value()
        cached = await self._tokens.get(self._token_name)
        return cached if cached else await self._renew(stale=None)

    async def _renew(self, *, stale: str | None) -> str:
        """A new token from ``log_in``, unless another process renewed it meanwhile."""
        async with self._tokens.lock(self._token_name):
            cached = await self._tokens.get(self._token_name)
            if cached and cached != stale:
                return cached
            token = await self._log_in()
            await self._tokens.put(self._token_name, token, _TOKEN_TTL)
            return token

    async def _log_in(self) -> str:
        what = "udesk log_in"
        password = self._config.password
        if password is None:
            raise PermanentError(f"{what}: no password configured", status=401)
        await self._acquire(low=False)
        try:
            resp = await self._client.post(
                f"{self._base}{_API}/log_in",
                json={"email": self._config.email, "password": password.get_secret_value()},
            )
        except httpx.HTTPError as exc:
            raise transport_error(exc, what=what) from exc
        if resp.status_code in (401, 403):
            raise PermanentError(f"{what}: refused (HTTP {resp.status_code})", status=401)
        classify(resp, what=what)
        body = _json(resp)
        token = body.get("open_api_auth_token") if body else None
        if body is None or body.get("code") != _OK or not isinstance(token, str) or not token:
            code = body.get("code") if body else None
            raise PermanentError(f"{what}: refused (code {code})", status=401)
        log.info("udesk %s: signed in, token renewed", self.account)
        return token

    async def _call(
        self,
        method: str,
        path: str,
        *,
        what: str,
        params: dict[str, str] | None = None,
        json: Any = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        low: bool = False,
    ) -> dict[str, Any]:
        """One signed call; its JSON body, whose ``code`` is 1000."""
        body = await self._request(
            method,
            path,
            what=what,
            params=params,
            json=json,
            content=content,
            headers=headers,
            low=low,
            missing_ok=False,
        )
        if body is None:  # pragma: no cover - missing_ok=False never gives None
            raise PermanentError(f"{what}: no response body")
        return body

    async def _request(
        self,
        method: str,
        path: str,
        *,
        what: str,
        params: dict[str, str] | None,
        json: Any,
        content: bytes | None,
        headers: dict[str, str] | None,
        low: bool,
        missing_ok: bool,
    ) -> dict[str, Any] | None:
        """One signed call. ``missing_ok``: a refusal other than auth or rate gives None
        (a lookup that found nothing)."""
        refreshed = False
        while True:
            await self._acquire(low=low)
            token = await self._token()
            query = {**(params or {}), **self._signed(token)}
            try:
                resp = await self._client.request(
                    method,
                    f"{self._base}{_API}{path}",
                    params=query,
                    json=json,
                    content=content,
                    headers=headers,
                )
            except httpx.HTTPError as exc:
                raise transport_error(exc, what=what) from exc
            body = _json(resp)
            code = body.get("code") if body is not None else None
            if resp.status_code in (401, 403) or code in self._config.auth_error_codes:
                if not refreshed and self._config.open_api_token is None:
                    refreshed = True
                    log.info("udesk %s: %s refused the signature; renewing", self.account, what)
                    await self._renew(stale=token)
                    continue
                raise PermanentError(
                    f"{what}: Udesk refused the signature (code {code})", status=401
                )
            if resp.status_code == 429 or code in self._config.rate_limit_codes:
                wait = parse_retry_after(resp.headers.get("retry-after"))
                raise RetryableError(
                    f"{what}: rate limited by Udesk (code {code})",
                    status=429,
                    retry_after=_RATE_LIMIT_WAIT if wait is None else wait,
                )
            classify(resp, what=what)
            if body is None:
                raise PermanentError(f"{what}: response is not a JSON object")
            if code != _OK:
                if missing_ok:
                    return None
                raise PermanentError(f"{what}: refused (code {code})")
            return body


def _json(resp: httpx.Response) -> dict[str, Any] | None:
    try:
        data = resp.json()
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _memo(value: str) -> tuple[str, str, int]:
    ticket_id, message_id, uploaded = [*value.split("|"), "", "", "0"][:3]
    return ticket_id, message_id, int(uploaded) if uploaded.isdigit() else 0


def _digits(phone: str) -> str:
    return "".join(c for c in phone if c.isdigit())


def _num(value: str) -> int | str:
    return int(value) if value.isdigit() else value


def _str(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value:
        return value
    return None


def _obj(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    return value if isinstance(value, dict) else {}


def _list(data: dict[str, Any], key: str) -> list[dict[str, Any]]:
    value = data.get(key)
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []
