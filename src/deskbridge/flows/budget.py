"""Per-ticket update budgets (Zendesk: 30 updates per ticket per 10 minutes): when the
budget left cannot give each waiting message its own update, messages are merged."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from deskbridge.errors import RetryableError
from deskbridge.flows.runtime import Runtime
from deskbridge.outbound.render import render
from deskbridge.schemas import Attempt, Delivery, DeliveryState, Direction, Message

__all__ = ["finish_merged", "wait_for_budget", "within_update_budget"]

log = logging.getLogger(__name__)


async def within_update_budget(
    rt: Runtime, d: Delivery, limit: tuple[int, float], desk: str, ticket_id: str, msg: Message
) -> tuple[Message, list[Delivery]]:
    """Keep a ticket under its desk's update ``limit`` (at most this many per so many
    seconds). Returns the message to file and the waiting deliveries merged into it.

    When the budget left cannot give each waiting message of this conversation its own
    update, the head and the plain-text messages right behind it (same sender, no files)
    go as one update, each line stamped with its time. With no budget at all, raises
    ``RetryableError`` with the window's wait (a wait the desk would otherwise enforce
    with 429s; it spends no retries)."""
    most, _ = limit
    used = await wait_for_budget(rt, d, limit, desk, ticket_id)
    cap = rt.settings.coalesce_max_messages
    lane = await rt.deliveries.lane_ids(d.account, Direction.INBOUND, d.conversation_id, cap)
    waiting = [i for i in lane if i != d.id]
    if not waiting or most - used > len(waiting):
        return msg, []
    merged = await _mergeable(rt, d, msg, waiting)
    if not merged:
        return msg, []
    lines = [f"[{msg.occurred_at.astimezone(UTC):%H:%M:%S}] {render(msg)}"]
    lines += [f"[{m.occurred_at.astimezone(UTC):%H:%M:%S}] {render(m)}" for _, m in merged]
    last = merged[-1][1]
    if last.context:
        await rt.conversations.set_context(d.account, d.conversation_id, last.context)
    combined = msg.model_copy(
        update={
            "text": "\n\n".join(lines),
            "note": None,
            "reply_to": None,
            "reply_quote": None,
            "edit_of": None,
            "location": None,
            "contact": None,
        }
    )
    log.info(
        "delivery %s: %d waiting messages filed with it (%s update budget)",
        d.id,
        len(merged),
        desk,
    )
    return combined, [o for o, _ in merged]


async def wait_for_budget(
    rt: Runtime, d: Delivery, limit: tuple[int, float], desk: str, ticket_id: str
) -> int:
    """The updates the ticket had within its window; with none left, raises
    ``RetryableError`` with the window's wait (it spends no retries)."""
    most, window = limit
    used, wait = await rt.deliveries.ticket_updates(d.account, desk, ticket_id, window)
    if used >= most:
        raise RetryableError(
            f"{desk} allows {most} updates per ticket per {window:g}s", retry_after=wait + 0.5
        )
    return used


async def _mergeable(
    rt: Runtime, d: Delivery, msg: Message, waiting: list[str]
) -> list[tuple[Delivery, Message]]:
    """The pending plain-text messages of the same sender right behind the head."""
    merged: list[tuple[Delivery, Message]] = []
    for other_id in waiting:
        other = await rt.deliveries.get(d.account, other_id)
        if other is None or other.state is not DeliveryState.PENDING:
            break
        event = (await rt.deliveries.event(d.account, other.event_id))["event"]
        if event.get("kind") != "message":
            break
        m = Message.model_validate(event)
        if m.attachments or m.sender.external_id != msg.sender.external_id:
            break  # files go on their own; so does another person's message
        merged.append((other, m))
    return merged


async def finish_merged(rt: Runtime, d: Delivery, merged: list[Delivery], desk: str) -> None:
    """The deliveries filed inside ``d``'s update are done, and out of the lane."""
    for other in merged:
        await rt.deliveries.record_attempt(
            d.account,
            other.id,
            Attempt(at=datetime.now(UTC), outcome="delivered", error=f"coalesced into {d.id}"),
            spends_budget=True,
        )
        await rt.deliveries.finish(
            other,
            DeliveryState.DELIVERED,
            reason="coalesced",
            retention_s=rt.retention(d.account).delivered_s,
        )
    if merged:
        rt.metrics.event("desk", "coalesced", desk, n=len(merged))
