"""Conversations that change threads: a chat the channel replaced by another (a Telegram
group upgraded to a supergroup gets a new chat id and the old one is dead)."""

from __future__ import annotations

import logging

from deskbridge.flows.runtime import Runtime
from deskbridge.schemas import ChannelEvent, Delivery, DeliveryState

__all__ = ["move_thread"]

log = logging.getLogger(__name__)


async def move_thread(rt: Runtime, d: Delivery, ev: ChannelEvent) -> DeliveryState:
    """Re-point the old chat's conversation at the new chat (agent replies go there) and
    file the new chat's messages on the old conversation's ticket. Either notice of the
    move (``moved_to`` from the old chat, ``moved_from`` from the new one) does it all;
    the second finds it done. SKIPPED when the old chat had no conversation."""
    if ev.external_id is None:
        return DeliveryState.SKIPPED
    old, new = (
        (ev.thread, ev.external_id) if ev.action == "moved_to" else (ev.external_id, ev.thread)
    )
    convs = rt.conversations
    moved = await convs.move_thread(
        d.account,
        convs.conversation_id(d.account, ev.channel, old),
        convs.conversation_id(d.account, ev.channel, new),
        new,
    )
    log.info("delivery %s: %s chat moved: %s", d.id, ev.channel.value, moved)
    return DeliveryState.DELIVERED if moved else DeliveryState.SKIPPED
