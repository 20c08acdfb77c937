"""What a desk connector may do beyond ``DeskConnector`` (``outbound.base``).

A new desk implements ``DeskConnector``; everything here is optional. A connector
declares each capability it has by subclassing its protocol (``class
ZendeskConnector(MergesUsers, TicketUpdateBudget, RegistersDeskWebhook)``), so mypy
checks the signatures; the flows ask ``isinstance(desk, MergesUsers)``, never
``getattr``.

- ``MergesUsers``: an operator's contact merge also merges the two desk users.
- ``TicketUpdateBudget``: the desk limits updates per ticket; deskbridge coalesces a
  conversation's waiting messages rather than meet 429s.
- ``PollsReplies``: agent replies are fetched by the worker's poller, for desks that
  cannot push them (Udesk).
- ``ReadsCommentFiles``: the desk's agent-reply webhook may leave a comment's files
  out (``AgentReply.files_at_desk``); they are read from the desk's API before sending.
- ``RegistersDeskWebhook``: what ``deskbridge channels register`` calls to create the
  desk's agent-reply webhook.
- ``ReportsSolved``: the desk's webhook also says when a ticket is solved (the
  satisfaction survey's trigger).
- ``PollsSolved``: the worker's poller reads whether a ticket is solved (Udesk, which
  pushes nothing).
- ``TagsTickets``: the desk can add tags to a ticket (the survey's score as a tag).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol, TypeGuard, runtime_checkable

from deskbridge.adapters.capabilities import capable
from deskbridge.schemas import AgentReply, Attachment, ConversationRef, RawRequest

__all__ = [
    "MergesUsers",
    "NoBudget",
    "Polled",
    "PollsReplies",
    "PollsSolved",
    "ReadsCommentFiles",
    "RegistersDeskWebhook",
    "ReportsSolved",
    "TagsTickets",
    "TicketUpdateBudget",
    "has_update_budget",
]


@runtime_checkable
class MergesUsers(Protocol):
    """A desk that can merge two of its end users into one."""

    async def merge_users(self, user_id: str, into: str) -> None:
        """Merge end user ``user_id`` into ``into`` (its identities and tickets move).
        May be permanent at the desk. Raises ``DeliveryError``."""
        ...


@runtime_checkable
class TicketUpdateBudget(Protocol):
    """A desk that allows only so many updates per ticket in a window."""

    ticket_update_limit: ClassVar[tuple[int, float]]
    """At most this many updates per ticket per this many seconds (Zendesk: 30 per 10
    minutes). Past it, deskbridge coalesces a conversation's waiting messages into one
    update and otherwise waits for the window rather than meet 429s."""


def has_update_budget(desk: object) -> TypeGuard[TicketUpdateBudget]:
    """Whether ``desk`` is a ``TicketUpdateBudget`` (answered once per class:
    ``adapters.capabilities.capable``)."""
    return capable(desk, TicketUpdateBudget)


class NoBudget(Exception):
    """A low-priority call found no token to spare: deliveries come first."""


@dataclass(frozen=True, slots=True)
class Polled:
    """One ticket's replies read by the poller: the agent replies to relay, and every
    reply id looked at (to remember once the replies are taken in)."""

    ticket_id: str
    replies: list[AgentReply]
    seen: list[str]


@runtime_checkable
class PollsReplies(Protocol):
    """A desk connector whose agent replies are fetched rather than pushed."""

    account: str
    poll_interval: float
    """Seconds between two polls of the account."""

    async def active_tickets(self) -> list[str]:
        """Tickets worth polling now (recent activity), newest first."""
        ...

    async def claim_poll(self) -> bool:
        """Whether this process polls the account now (one process per interval)."""
        ...

    async def poll_ticket(self, ticket_id: str, *, urgent: bool = False) -> Polled:
        """The ticket's replies not taken in yet. Without ``urgent``, raises ``NoBudget``
        rather than wait for the rate budget that deliveries need."""
        ...

    async def mark_seen(self, polled: Polled) -> None:
        """Remember a poll's replies once they are taken in (relayed or skipped)."""
        ...


@runtime_checkable
class RegistersDeskWebhook(Protocol):
    """A desk whose API can create the agent-reply webhook pointing at us."""

    async def register_webhook(self, url: str, *, name: str) -> str:
        """Make sure a webhook named ``name`` posts agent replies to ``url``; returns its
        signing secret. Idempotent. Raises ``DeliveryError``."""
        ...


@runtime_checkable
class ReadsCommentFiles(Protocol):
    """A desk whose agent-reply webhook may not carry the comment's attachments."""

    async def comment_files(self, ticket_id: str, comment_id: str) -> tuple[Attachment, ...]:
        """The attachments of comment ``comment_id`` on ticket ``ticket_id`` (empty when
        it has none or is not found). Read-only. Raises ``DeliveryError``."""
        ...


@runtime_checkable
class ReportsSolved(Protocol):
    """A desk whose webhook tells when a ticket is solved or closed."""

    def solved_tickets(self, req: RawRequest) -> list[str]:
        """The tickets a verified webhook body reports solved ([] for anything else).
        Pure; never raises for a body ``parse_webhook`` accepts."""
        ...


@runtime_checkable
class PollsSolved(Protocol):
    """A polled desk whose ticket status is read by the poller (the survey's trigger)."""

    async def is_solved(self, ticket_id: str, *, urgent: bool = False) -> bool:
        """Whether the ticket is solved or closed now. Read-only. Without ``urgent``,
        raises ``NoBudget`` rather than wait for the rate budget; raises ``DeliveryError``."""
        ...


@runtime_checkable
class TagsTickets(Protocol):
    """A desk that can add tags to a ticket."""

    async def add_tags(self, conv: ConversationRef, tags: Sequence[str]) -> None:
        """Add ``tags`` to the conversation's ticket, keeping its other tags. Idempotent.
        Raises ``PermanentError`` without a ticket, ``DeliveryError`` otherwise."""
        ...
