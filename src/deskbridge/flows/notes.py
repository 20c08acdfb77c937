"""Internal notes: what deskbridge tells the agent on a conversation's ticket."""

from __future__ import annotations

import logging

from deskbridge.errors import DeliveryError
from deskbridge.flows.runtime import Runtime
from deskbridge.schemas import ConversationRef, Delivery
from deskbridge.store import ConversationRecord

__all__ = ["note", "ref", "tell_agent"]

log = logging.getLogger(__name__)


def ref(conv: ConversationRecord, account: str, subject: str = "") -> ConversationRef:
    """The desk's view of a stored conversation."""
    return ConversationRef(
        id=conv.id,
        account=account,
        channel=conv.channel,
        ticket_id=conv.ticket_id,
        contact_id=conv.contact_id,
        subject=subject,
        comment_count=conv.comment_count,
    )


async def note(rt: Runtime, d: Delivery, text: str) -> None:
    """An internal note on the ticket of ``d``'s conversation. Best effort: a note that
    fails is logged, never retried (it must not hold up the lane)."""
    desk = rt.desk(d.account)
    conv = await rt.conversations.get(d.account, d.conversation_id)
    if desk is None or conv is None or conv.ticket_id is None:
        return
    try:
        await desk.add_note(ref(conv, d.account), text)
    except DeliveryError as exc:
        log.warning("delivery %s: internal note failed: %s", d.id, exc)


async def tell_agent(rt: Runtime, d: Delivery, exc: DeliveryError) -> None:
    """A reply that cannot reach the customer becomes an internal note on the ticket."""
    await note(
        rt,
        d,
        f"deskbridge could not deliver this reply on {d.channel}: {exc}. "
        f"Delivery {d.id} is kept as a dead letter and can be replayed.",
    )
