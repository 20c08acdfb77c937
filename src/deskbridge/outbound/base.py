"""What every desk connector implements (``DeskConnector``) and what it returns.

A new desk is a package under ``outbound/`` with a class that implements
``DeskConnector``: ensure users, file messages, add notes, fetch and erase, verify and
parse the agent-reply webhook, and declare the webhook's secret headers and query
parameters (so raw records never hold them). What it may also do (merge users, a
per-ticket update budget, polling for replies, registering its webhook) is declared by
subclassing the protocols of ``outbound.capabilities``.
"""

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

__all__ = ["UNCONFIRMED", "DeskConnector", "Filed", "unconfirmed"]

UNCONFIRMED = "could not confirm"
"""How a ``forget_user`` line starts when the desk did not show the thing gone."""


def unconfirmed(lines: Sequence[str]) -> list[str]:
    """The steps of a ``forget_user`` answer that were not read back as gone."""
    return [line for line in lines if line.startswith(UNCONFIRMED)]


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
    resent: str | None = None
    """The call this filing sent again although an earlier attempt's outcome was unknown,
    where the desk offers no idempotency key and no read-back (e.g. ``udesk create
    ticket``): the message may be there twice. The caller counts it."""


class DeskConnector(Protocol):
    """One account's helpdesk.

    Calls raise ``RetryableError`` / ``PermanentError`` via ``deskbridge.http.classify``.
    ``verify_webhook`` and ``parse_webhook`` are pure.
    """

    desk: ClassVar[Desk]
    account: str
    secret_headers: ClassVar[frozenset[str]]
    """Lower-case names of the agent-reply webhook's headers that carry our own secret
    (not a signature over the body): dropped before the request is stored."""
    secret_query: ClassVar[frozenset[str]]
    """Query parameters of the agent-reply webhook that carry our own secret (Udesk's
    ``secret``): dropped before the request is stored."""

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
        in_doubt: bool = False,
    ) -> Filed:
        """File ``msg`` as the end user's message: create the ticket when ``conv.ticket_id``
        is None, append otherwise. ``retried`` says an earlier attempt may have created the
        ticket already (look it up before creating again). ``in_doubt`` says an earlier
        attempt's outcome is unknown (a timeout or reset after the request was written):
        reconcile by idempotency key or read-back before writing again, and where the desk
        offers neither, write again and say so in ``Filed.resent``."""
        ...

    async def add_note(self, conv: ConversationRef, text: str) -> None:
        """Add an internal (agent-only) note to the conversation's ticket."""
        ...

    async def fetch(self, attachment: Attachment) -> Upload:
        """Download an agent reply's attachment from the desk."""
        ...

    async def forget_user(self, user_id: str, *, tickets: Sequence[str] = ()) -> list[str]:
        """Erase the person at the desk (right to erasure): ``tickets`` first where the
        desk keeps them apart from the user, then the user. Returns one line per step.
        A step counts as done only once the desk's read-back says the resource itself
        is not found (its own not-found body, not any 404); otherwise its line starts
        with ``UNCONFIRMED``. Idempotent."""
        ...

    def verify_webhook(self, req: RawRequest) -> None:
        """Raise ``SignatureInvalid`` unless the desk's webhook signature is valid and fresh."""
        ...

    def parse_webhook(self, req: RawRequest) -> list[AgentReply]:
        """Public agent replies in a desk webhook (never comments deskbridge wrote itself).
        Raises ``PayloadInvalid`` for bodies the desk does not send."""
        ...
