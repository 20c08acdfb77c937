"""The sandbox desk under the conformance suite: its tickets live in deskbridge's own
Redis, so the "fake" wraps the runtime's real connector to inject faults the way an API
would (429 with a wait, 5xx, a lost answer, a refusal)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

from deskbridge.errors import PermanentError, RetryableError
from deskbridge.flows.ingest import accept_replies
from deskbridge.outbound.base import Filed
from deskbridge.outbound.sandbox import SandboxConnector
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

from .base import FakeDesk, FakePart, FakeTicket, FakeUser, Faults

__all__ = ["FakeSandbox"]


class _Faulty:
    """The real sandbox connector behind injected faults: ``ensure_user`` and ``append``
    can fail or stall; the rest of the ``DeskConnector`` goes straight through."""

    desk: ClassVar[Desk] = SandboxConnector.desk
    secret_headers: ClassVar[frozenset[str]] = SandboxConnector.secret_headers
    secret_query: ClassVar[frozenset[str]] = SandboxConnector.secret_query

    def __init__(self, inner: SandboxConnector, fake: FakeSandbox) -> None:
        self._inner = inner
        self._fake = fake
        self.account = inner.account

    async def add_note(self, conv: ConversationRef, text: str) -> None:
        await self._inner.add_note(conv, text)

    async def record_reply(self, ticket_id: str, text: str) -> str:
        return await self._inner.record_reply(ticket_id, text)

    async def forget_user(self, user_id: str, *, tickets: Sequence[str] = ()) -> list[str]:
        return await self._inner.forget_user(user_id, tickets=tickets)

    async def fetch(self, attachment: Attachment) -> Upload:
        return await self._inner.fetch(attachment)

    def verify_webhook(self, req: RawRequest) -> None:
        self._inner.verify_webhook(req)

    def parse_webhook(self, req: RawRequest) -> list[AgentReply]:
        return self._inner.parse_webhook(req)

    def _gate(self, what: str) -> None:
        if self._fake._fail:
            status, headers = self._fake._fail.pop(0)
            self._fake._calls.append(("CALL", what, status))
            if status == 429:
                raise RetryableError(
                    "sandbox: rate limited", status=429, retry_after=float(headers["Retry-After"])
                )
            if status >= 500:
                raise RetryableError(f"sandbox: HTTP {status}", status=status)
            raise PermanentError(f"sandbox: HTTP {status}", status=status)
        self._fake._calls.append(("CALL", what, 200))

    async def ensure_user(self, contact: Contact) -> str:
        self._gate("ensure_user")
        user = await self._inner.ensure_user(contact)
        self._fake._users.setdefault(user, FakeUser(id=user, name=contact.display_name))
        return user

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
        self._gate("append")
        mode = self._fake.faults.take("CALL", "append")
        if mode == "rate_limited":
            raise RetryableError("sandbox: rate limited", status=429, retry_after=1.0)
        filed = await self._inner.append(
            conv,
            user_id,
            msg,
            files,
            idempotency_key=idempotency_key,
            retried=retried,
            in_doubt=in_doubt,
        )
        self._fake._owner[filed.ticket_id] = user_id
        if mode is not None:
            # applied, then the answer is lost (reset, timeout or a proxy's 502)
            raise RetryableError(f"sandbox: {mode} after the write", outcome="unknown")
        if self._fake._stall:
            await asyncio.sleep(self._fake._stall.pop(0))
            raise RetryableError("sandbox: the answer was lost (timeout)")
        return filed


class FakeSandbox(FakeDesk):
    desk = "sandbox"
    dedups_retries = True
    """Its store takes every write with the delivery's idempotency key."""
    writes = {"create": ("CALL", "append"), "append": ("CALL", "append")}
    reconciles = frozenset({"create", "append"})
    reply_attachments = False
    """Sandbox replies are typed into a page: text only."""

    def __init__(self) -> None:
        self._fail: list[tuple[int, dict[str, str]]] = []
        self._stall: list[float] = []
        self._calls: list[tuple[str, str, int]] = []
        self.faults = Faults()
        self._users: dict[str, FakeUser] = {}
        self._owner: dict[str, str] = {}
        self._tickets: list[FakeTicket] = []
        self._rt: Any = None

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def bind(self, rt: Any) -> None:
        inner = rt.desks["acme"]
        assert isinstance(inner, SandboxConnector)
        rt.desks["acme"] = _Faulty(inner, self)
        self._rt = rt

    async def refresh(self) -> None:
        tickets = []
        for t in await self._rt.sandbox.tickets("acme"):
            full = await self._rt.sandbox.ticket("acme", t.id)
            author = {"customer": "user", "agent": "agent", "note": "note"}
            parts = [
                FakePart(author.get(m.author, m.author), m.text, [a for a in m.attachments])
                for m in full.messages
            ]
            tickets.append(FakeTicket(id=t.id, user_id=self._owner.get(t.id, ""), parts=parts))
        self._tickets = tickets

    def desk_yaml(self) -> str:
        return "{type: sandbox}"

    def users(self) -> list[FakeUser]:
        return list(self._users.values())

    def tickets(self) -> list[FakeTicket]:
        return list(self._tickets)

    def calls(self) -> list[tuple[str, str, int]]:
        return list(self._calls)

    def fail(self, status: int, times: int, headers: dict[str, str] | None = None) -> None:
        if status == 429 and headers is None:
            headers = {"Retry-After": "1"}
        self._fail += [(status, headers or {})] * times

    def stall(self, seconds: float, times: int) -> None:
        self._stall += [min(seconds, 0.05)] * times

    async def agent_reply(
        self,
        client: Any,
        rt: Any,
        ticket_id: str,
        text: str,
        attachment: tuple[str, bytes, str] | None = None,
    ) -> None:
        desk = rt.desks["acme"]
        msg_id = await desk.record_reply(ticket_id, text)
        reply = AgentReply(
            account="acme",
            desk=Desk.SANDBOX,
            dedup_key=f"reply:{msg_id}",
            ticket_id=ticket_id,
            external_id=msg_id,
            text=text,
            author_name="Sandbox agent",
            occurred_at=datetime.now(UTC),
        )
        await accept_replies(rt, "acme", Desk.SANDBOX.value, None, [reply])

    async def notify_customer_part(self, client: Any, rt: Any, ticket_id: str) -> None:
        # nothing pushes customer messages back from the sandbox: there is nothing to echo
        return None
