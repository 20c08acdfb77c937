from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol

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

__all__ = ["DeskConnector", "Filed"]


@dataclass(frozen=True, slots=True)
class Filed:
    """Where a message landed in the desk.

    ``ticket_id`` may differ from the conversation's previous ticket (a new ticket, or a
    follow-up of a closed or full one). ``comment_count`` is the ticket's count of comments
    after this one when the desk tells us, else None.
    """

    ticket_id: str
    message_id: str
    comment_count: int | None = None


class DeskConnector(Protocol):
    """One account's helpdesk.

    Calls raise ``RetryableError`` / ``PermanentError`` via ``deskbridge.http.classify``.
    ``verify_webhook`` and ``parse_webhook`` are pure.
    """

    desk: ClassVar[Desk]
    account: str
    ticket_update_limit: ClassVar[tuple[int, float] | None]
    """At most this many updates per ticket per this many seconds (Zendesk: 30 per 10
    minutes), or None. Past it, deskbridge coalesces a conversation's waiting messages
    into one update and otherwise waits for the window rather than meet 429s."""

    async def ensure_user(self, contact: Contact) -> str:
        """The desk's user id for ``contact``, created or updated with all its identities.
        Idempotent."""
        ...

    async def append(
        self,
        conv: ConversationRef,
        user_id: str,
        msg: Message,
        files: Sequence[Upload],
        *,
        idempotency_key: str,
        retried: bool,
    ) -> Filed:
        """File ``msg`` as the end user's message: create the ticket when ``conv.ticket_id``
        is None, append otherwise. ``retried`` says an earlier attempt may have created the
        ticket already (look it up before creating again)."""
        ...

    async def add_note(self, conv: ConversationRef, text: str) -> None:
        """Add an internal (agent-only) note to the conversation's ticket."""
        ...

    async def fetch(self, attachment: Attachment) -> Upload:
        """Download an agent reply's attachment from the desk."""
        ...

    async def forget_user(self, user_id: str, *, tickets: Sequence[str] = ()) -> list[str]:
        """Erase the person at the desk (right to erasure): ``tickets`` first where the
        desk keeps them apart from the user, then the user. Returns what was done, one
        line per step; something already gone counts as done (idempotent)."""
        ...

    def verify_webhook(self, req: RawRequest) -> None:
        """Raise ``SignatureInvalid`` unless the desk's webhook signature is valid and fresh."""
        ...

    def parse_webhook(self, req: RawRequest) -> list[AgentReply]:
        """Public agent replies in a desk webhook (never comments deskbridge wrote itself).
        Raises ``PayloadInvalid`` for bodies the desk does not send."""
        ...
