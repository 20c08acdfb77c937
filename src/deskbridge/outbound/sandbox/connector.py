"""The sandbox desk: tickets kept in deskbridge's own Redis and shown at ``/sandbox/``.

For trying deskbridge without a helpdesk account. Agent replies are typed into the page's
form and take the same ``deliver_to_channel`` path as a real desk's webhook.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Protocol

from deskbridge.errors import PayloadInvalid, PermanentError, SignatureInvalid
from deskbridge.outbound.base import Filed
from deskbridge.outbound.capabilities import TagsTickets
from deskbridge.outbound.render import render, subject
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

__all__ = ["SandboxBackend", "SandboxConnector"]


class SandboxBackend(Protocol):
    """Where sandbox tickets live (``store.SandboxStore``)."""

    async def create_ticket(
        self,
        account: str,
        *,
        subject: str,
        requester: str,
        channel: str,
        idempotency_key: str | None = None,
    ) -> str: ...

    async def exists(self, account: str, ticket_id: str) -> bool: ...

    async def add_message(
        self,
        account: str,
        ticket_id: str,
        *,
        author: str,
        text: str,
        attachments: tuple[str, ...] = (),
        idempotency_key: str | None = None,
    ) -> tuple[str, int]: ...


class SandboxConnector(TagsTickets):
    """The ``DeskConnector`` for ``Desk.SANDBOX``: tickets in ``backend``, no optional
    capabilities. Its agent replies come from the sandbox pages, not a webhook."""

    desk: ClassVar[Desk] = Desk.SANDBOX
    secret_headers: ClassVar[frozenset[str]] = frozenset()
    secret_query: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, account: str, backend: SandboxBackend) -> None:
        self.account = account
        self._backend = backend

    async def ensure_user(self, contact: Contact) -> str:
        return contact.id

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
        ticket = conv.ticket_id
        if ticket is None or not await self._backend.exists(self.account, ticket):
            ticket = await self._backend.create_ticket(
                self.account,
                subject=subject(msg),
                requester=_requester(msg),
                channel=msg.channel.value,
                idempotency_key=f"{idempotency_key}:ticket",
            )
            fields = conv.fields
            if fields is not None and (fields.tags or fields.priority or fields.group):
                # the sandbox has no ticket fields: routing's decision shows as a note
                shown = [
                    f"tags: {', '.join(fields.tags)}" if fields.tags else "",
                    f"priority: {fields.priority}" if fields.priority else "",
                    f"group: {fields.group}" if fields.group else "",
                    *(f"{k}: {v}" for k, v in fields.custom_fields.items()),
                ]
                await self._backend.add_message(
                    self.account,
                    ticket,
                    author="note",
                    text="Routing: " + "; ".join(x for x in shown if x),
                    idempotency_key=f"{idempotency_key}:routing",
                )
        names = tuple(f"{f.filename} ({f.mime_type}, {len(f.data)} bytes)" for f in files)
        msg_id, count = await self._backend.add_message(
            self.account,
            ticket,
            author="customer",
            text=render(msg),
            attachments=names,
            idempotency_key=idempotency_key,
        )
        return Filed(ticket_id=ticket, message_id=msg_id, comment_count=count)

    async def add_note(self, conv: ConversationRef, text: str) -> None:
        if conv.ticket_id is None:
            raise PermanentError("sandbox note: the conversation has no ticket")
        await self._backend.add_message(self.account, conv.ticket_id, author="note", text=text)

    async def add_tags(self, conv: ConversationRef, tags: Sequence[str]) -> None:
        """The sandbox has no ticket fields: the tags show as a note, as routing's do."""
        if conv.ticket_id is None:
            raise PermanentError("sandbox tags: the conversation has no ticket")
        text = "Tags: " + ", ".join(tags)
        await self._backend.add_message(self.account, conv.ticket_id, author="note", text=text)

    async def record_reply(self, ticket_id: str, text: str) -> str:
        """Show an agent's reply on the ticket (the page's form calls this)."""
        msg_id, _ = await self._backend.add_message(
            self.account, ticket_id, author="agent", text=text
        )
        return msg_id

    async def forget_user(self, user_id: str, *, tickets: Sequence[str] = ()) -> list[str]:
        """The sandbox keeps no users; its tickets live in deskbridge's own Redis and are
        erased with the contact's conversations."""
        return []

    async def fetch(self, attachment: Attachment) -> Upload:
        raise PermanentError("sandbox replies carry no attachments")

    def verify_webhook(self, req: RawRequest) -> None:
        # The sandbox has no webhook: replies come from its own page, never over HTTP.
        raise SignatureInvalid("the sandbox desk takes replies from its page only")

    def parse_webhook(self, req: RawRequest) -> list[AgentReply]:
        raise PayloadInvalid("the sandbox desk has no webhook")


def _requester(msg: Message) -> str:
    """Who the ticket names: the sender's name or handle, else the address they wrote
    from (an email sender who gave no name), else "customer"."""
    address = next((i.value for i in msg.sender.identities if i.kind in ("email", "phone")), None)
    return msg.sender.display_name or msg.sender.username or address or "customer"
