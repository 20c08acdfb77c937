"""What a channel reports back: delivery statuses of our replies, and channel events
(follows, retracted messages) that update what deskbridge already filed."""

from __future__ import annotations

from deskbridge.flows.notes import note
from deskbridge.flows.runtime import Runtime
from deskbridge.schemas import ChannelEvent, Delivery, DeliveryState, StatusUpdate

__all__ = ["apply_channel_event", "apply_status"]


async def apply_status(rt: Runtime, d: Delivery, st: StatusUpdate) -> DeliveryState:
    """Record a channel's status on the reply it refers to (by the channel's message id,
    or by time for a read/delivery watermark); a failed reply becomes a note."""
    targets: list[str] = []
    if st.external_id:
        found = await rt.deliveries.sent_by(d.account, st.channel.value, st.external_id)
        targets += [found] if found else []
    if st.watermark is not None:
        conv_id = rt.conversations.conversation_id(d.account, st.channel, st.thread)
        targets += await rt.deliveries.sent_before(
            d.account, conv_id, int(st.watermark.timestamp() * 1000)
        )
    at_ms = int(st.occurred_at.timestamp() * 1000)
    error = " ".join(x for x in (st.error_code, st.error) if x)
    changed = 0
    for target in dict.fromkeys(targets):
        if not await rt.deliveries.channel_status(d.account, target, st.status, at_ms, error):
            continue
        changed += 1
        if st.status != "failed":
            continue
        reply = await rt.deliveries.get(d.account, target)
        if reply is not None:
            await note(
                rt,
                reply,
                f"{st.channel.value.capitalize()} reports that this reply was not delivered"
                f"{': ' + error if error else ''}. Delivery {reply.id}.",
            )
    return DeliveryState.DELIVERED if changed else DeliveryState.SKIPPED


async def apply_channel_event(rt: Runtime, d: Delivery, ev: ChannelEvent) -> DeliveryState:
    """Follows and unfollows are kept on the contact (no ticket); a retracted message
    becomes an internal note on the conversation's ticket."""
    if ev.action in ("follow", "unfollow") and ev.sender is not None:
        contact = await rt.conversations.resolve_contact(
            d.account, ev.sender.identities, ev.sender.display_name
        )
        state = "following" if ev.action == "follow" else "unfollowed"
        value = f"{state} since {ev.occurred_at.isoformat()}"
        await rt.conversations.set_attribute(
            d.account, contact.id, f"{ev.channel.value}_follow", value
        )
        return DeliveryState.DELIVERED
    if ev.action == "unsend":
        conv = await rt.conversations.get(d.account, d.conversation_id)
        if conv is None or conv.ticket_id is None:
            return DeliveryState.SKIPPED
        await note(
            rt,
            d,
            f"The customer retracted a message on {ev.channel.value} (message {ev.external_id}). "
            "It stays on the ticket as it was received.",
        )
        return DeliveryState.DELIVERED
    return DeliveryState.SKIPPED  # join/leave: nothing for the desk
