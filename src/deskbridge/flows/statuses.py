"""What a channel reports back: delivery statuses of our replies, and channel events
(follows, retracted messages) that update what deskbridge already filed."""

from __future__ import annotations

from deskbridge.errors import WindowClosed
from deskbridge.flows.notes import note, ref
from deskbridge.flows.replies import consent_attribute, hold_again
from deskbridge.flows.runtime import Runtime
from deskbridge.flows.threads import move_thread
from deskbridge.schemas import ChannelEvent, Delivery, DeliveryState, StatusUpdate

__all__ = ["apply_channel_event", "apply_status"]


async def apply_status(rt: Runtime, d: Delivery, st: StatusUpdate) -> DeliveryState:
    """Record a channel's status on the reply it refers to (by the channel's message id,
    or by time for a read/delivery watermark); a failed reply becomes a note, and one
    that failed because the reply window was closed is held again (``hold_again``)."""
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
        if st.status == "failed" and await _held_again(rt, d, target, st, error):
            changed += 1
            continue
        changed += await rt.deliveries.channel_status(d.account, target, st.status, at_ms, error)
    return DeliveryState.DELIVERED if changed else DeliveryState.SKIPPED


async def _held_again(rt: Runtime, d: Delivery, target: str, st: StatusUpdate, error: str) -> bool:
    """A failed reply: held again when its reply window was closed (True: there is no
    status to record, the reply goes again); otherwise the agent gets a note (queued
    before the status is recorded, once per cause, so a retry of this status cannot lose
    it) and False."""
    reply = await rt.deliveries.get(d.account, target)
    if reply is None:
        return False
    if st.window_closed:
        # a later part's status, or one for a reply already on its way again: nothing to do
        # (a status older than the reply's last send by more than Meta's second-rounded
        # timestamps can explain is a late one of an earlier send: that send was held)
        stale = st.occurred_at.timestamp() + 60 < reply.updated_at.timestamp()
        if reply.state is DeliveryState.DELIVERED and not stale:
            await hold_again(rt, reply, WindowClosed(error or "reply window closed"))
        return True
    if reply.channel_status != "failed":
        await note(
            rt,
            reply,
            f"{st.channel.brand} reports that this reply was not delivered"
            f"{': ' + error if error else ''}. Delivery {reply.id}.",
            why=f"failed-{reply.replays}",
        )
    return False


async def apply_channel_event(rt: Runtime, d: Delivery, ev: ChannelEvent) -> DeliveryState:
    """Follows and unfollows are kept on the contact (no ticket); a retracted message
    becomes an internal note on the conversation's ticket (this delivery is the note:
    a desk's failure retries it)."""
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
    if ev.action in ("opt_out", "opt_in") and ev.sender is not None:
        # consent to messages on the channel: `send_reply` refuses to send while it is
        # withdrawn (docs/channels/sms.md)
        # the conversation's contact: the one `send_reply` asks
        conv = await rt.conversations.get(d.account, d.conversation_id)
        if conv is not None and conv.contact_id:
            contact_id = conv.contact_id
        else:
            contact_id = (
                await rt.conversations.resolve_contact(
                    d.account, ev.sender.identities, ev.sender.display_name
                )
            ).id
        state = "opted_out" if ev.action == "opt_out" else "opted_in"
        await rt.conversations.set_attribute(
            d.account,
            contact_id,
            consent_attribute(ev.channel),
            f"{state} since {ev.occurred_at.isoformat()}",
        )
        return DeliveryState.DELIVERED
    if ev.action == "unsend":
        conv = await rt.conversations.get(d.account, d.conversation_id)
        desk = rt.desk(d.account)
        if conv is None or conv.ticket_id is None or desk is None:
            return DeliveryState.SKIPPED
        await desk.add_note(
            ref(conv, d.account),
            f"The customer retracted a message on {ev.channel.brand} (message {ev.external_id}). "
            "It stays on the ticket as it was received.",
        )
        return DeliveryState.DELIVERED
    if ev.action in ("moved_to", "moved_from"):
        return await move_thread(rt, d, ev)
    return DeliveryState.SKIPPED  # join/leave: nothing for the desk
