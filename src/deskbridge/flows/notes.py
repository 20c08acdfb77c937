"""Internal notes: what deskbridge tells the agent on a conversation's ticket.

A note is a delivery of its own (kind ``note``, inbound, in the conversation's lane), so
a desk that fails to take it retries it, dead-letters it and lets an operator replay it
like any message: ``note`` queues it, ``file_note`` (run by ``deliver_to_desk``) files it.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from deskbridge.errors import DeliveryError, PermanentError
from deskbridge.flows.budget import wait_for_budget
from deskbridge.flows.ingest import queue_note
from deskbridge.flows.runtime import Runtime
from deskbridge.outbound.capabilities import TagsTickets, TicketUpdateBudget
from deskbridge.schemas import ConversationRef, Delivery, DeliveryState, DeskNote, brand
from deskbridge.store import ConversationRecord

__all__ = ["file_note", "note", "note_on", "ref", "tell_agent"]

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


async def note(
    rt: Runtime,
    d: Delivery,
    text: str,
    *,
    why: str,
    conversation_id: str | None = None,
    tags: tuple[str, ...] = (),
) -> bool:
    """Queue an internal note about delivery ``d`` on the ticket of its conversation (or
    of ``conversation_id``). ``why`` names the cause within ``d`` (``held-3``, ``dead-0``):
    the same cause queues the note once, however often the causing work is retried.
    ``tags`` go on the ticket with it where the desk has tags. True when it was queued
    now; False when queued before or there is nowhere to put it."""
    queued = await note_on(
        rt, d.account, conversation_id or d.conversation_id, text, cause=f"{d.id}:{why}", tags=tags
    )
    if queued:
        log.info("delivery %s: internal note queued (%s)", d.id, why)
    return queued


async def note_on(
    rt: Runtime,
    account: str,
    conversation_id: str,
    text: str,
    *,
    cause: str,
    tags: tuple[str, ...] = (),
) -> bool:
    """Queue an internal note on the ticket of ``conversation_id``, once per ``cause``
    (for what no delivery caused: a survey answered on deskbridge's own page). True when
    it was queued now."""
    if rt.desk(account) is None:
        return False
    conv = await rt.conversations.get(account, conversation_id)
    if conv is None:
        return False
    return await queue_note(
        rt,
        DeskNote(
            account=account,
            channel=conv.channel,
            dedup_key=f"note:{conv.id}:{cause}",
            thread=conv.thread,
            occurred_at=datetime.now(UTC),
            text=text,
            cause=cause,
            tags=tags,
        ),
        conv.id,
    )


async def file_note(rt: Runtime, d: Delivery, n: DeskNote) -> DeliveryState:
    """File a queued note on its conversation's ticket (skipped when the conversation has
    no ticket). A desk's failure raises ``DeliveryError``: the caller's policy retries
    it or keeps it as a dead letter. A desk with a per-ticket update budget is kept under
    it (the note is an update). The note's tags go first (adding a tag twice is
    harmless; a note is not idempotent), on desks that have tags."""
    desk = rt.desk(d.account)
    if desk is None:
        raise PermanentError(f"account {d.account} has no desk configured")
    conv = await rt.conversations.get(d.account, d.conversation_id)
    if conv is None or conv.ticket_id is None:
        return DeliveryState.SKIPPED
    limit = desk.ticket_update_limit if isinstance(desk, TicketUpdateBudget) else None
    if limit is not None:
        await wait_for_budget(rt, d, limit, desk.desk.value, conv.ticket_id)
    if n.tags and isinstance(desk, TagsTickets):
        await desk.add_tags(ref(conv, d.account), n.tags)
        if limit is not None:
            await rt.deliveries.note_ticket_update(
                d.account, desk.desk.value, conv.ticket_id, limit[1]
            )
    await desk.add_note(ref(conv, d.account), n.text)
    if limit is not None:
        await rt.deliveries.note_ticket_update(d.account, desk.desk.value, conv.ticket_id, limit[1])
    return DeliveryState.DELIVERED


async def tell_agent(rt: Runtime, d: Delivery, exc: DeliveryError) -> None:
    """A reply that cannot reach the customer becomes an internal note on the ticket."""
    await note(
        rt,
        d,
        f"deskbridge could not deliver this reply on {brand(d.channel)}: {exc}. "
        f"Delivery {d.id} is kept as a dead letter and can be replayed.",
        why=f"dead-{d.replays}",
    )
