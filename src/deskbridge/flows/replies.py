"""Sending an agent's reply on the customer's channel, within the channel's rules, and
holding it when the channel's reply window is closed."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from deskbridge.adapters.capabilities import OffersChoices
from deskbridge.adapters.text import numbered
from deskbridge.errors import PermanentError, WindowClosed
from deskbridge.flows import enrichment, proactive, responders
from deskbridge.flows.files import reply_files
from deskbridge.flows.notes import note
from deskbridge.flows.runtime import Runtime
from deskbridge.outbound.capabilities import ReadsCommentFiles
from deskbridge.schemas import (
    AgentReply,
    Attempt,
    Channel,
    ChannelAddress,
    Delivery,
    DeliveryState,
    Desk,
)
from deskbridge.store import ConversationRecord

__all__ = [
    "StoredProgress",
    "consent_attribute",
    "hold",
    "hold_again",
    "send_reply",
    "stored_progress",
]

log = logging.getLogger(__name__)


def consent_attribute(channel: Channel) -> str:
    """The contact attribute that keeps the customer's consent to messages on
    ``channel`` (``opted_out since ...`` / ``opted_in since ...``)."""
    return f"{channel.value}_consent"


async def send_reply(
    rt: Runtime, d: Delivery, record: dict[str, Any] | None = None
) -> DeliveryState:
    """Send one stored agent reply. Raises ``DeliveryError`` (the caller's policy
    decides) or ``WindowClosed`` (the caller holds it, see ``hold``). ``record``: the
    event record as the worker's claim read it (read here when None)."""
    if record is None:
        record = await rt.deliveries.event(d.account, d.event_id)
    reply = AgentReply.model_validate(record["event"])
    # a bot's answer may spend the reply token; other automated messages never do
    conv, to = await _address(
        rt, d, automated=(reply.automated and not reply.bot) or reply.proactive
    )
    reply = await enrichment.translate_reply(
        rt, rt.accounts.accounts[d.account].routing, d.account, conv.id, reply
    )
    adapter = rt.adapter(d.account, conv.channel)
    if adapter is None:
        raise PermanentError(f"channel {conv.channel.value} is not configured for {d.account}")
    await _consented(rt, d.account, conv)
    reply = await _files_at_desk(rt, d.account, reply)
    if reply.choices and not (
        isinstance(adapter, OffersChoices) and len(reply.choices) <= adapter.max_choices
    ):
        reply = reply.model_copy(
            update={"text": numbered(reply.text, reply.choices), "choices": ()}
        )
    if not reply.text and not reply.attachments and reply.template is None:
        # the comment's files were all the desk had, and it has none (removed, redacted)
        log.warning("%s: reply %s has nothing to send", d.account, d.id)
        rt.metrics.event(reply.desk.value, "ignored", "empty_reply")
        return DeliveryState.SKIPPED
    files, left_out = await reply_files(rt, d, adapter, reply)
    if left_out and not files and not reply.text.strip():
        raise PermanentError("every attachment was left out: " + "; ".join(left_out))
    progress = await stored_progress(rt, d)
    if to.reply_token:
        # spent at the first accepted call: a retry after a later part failed must not
        # try it again (LINE would refuse it and the part would go twice)
        progress.on_first_accept(
            functools.partial(
                rt.conversations.clear_reply_token, d.account, conv.id, to.reply_token
            )
        )
    receipt = await adapter.send(reply, to, files, progress)
    if receipt.used_reply_token and to.reply_token:
        await rt.conversations.clear_reply_token(d.account, conv.id, to.reply_token)
    if receipt.quota_messages:
        rt.metrics.quota_messages.labels(d.account, conv.channel.value).inc(receipt.quota_messages)
    if receipt.external_ids:
        await rt.deliveries.record_sent(d, receipt.external_ids)
        if reply.desk is Desk.SANDBOX:  # the ticket's page lists its own channel calls
            await rt.sandbox.link_sent(d.account, reply.ticket_id, receipt.external_ids)
    await enrichment.record_reply(
        rt, d.account, conv.id, conv.channel.value, automated=reply.automated or reply.proactive
    )
    if reply.proactive:
        await proactive.file_sent(rt, d, reply, conv.channel)
    elif not reply.automated:
        await responders.agent_replied(rt, d.account, conv.id)
    if left_out:
        await note(
            rt,
            d,
            f"deskbridge sent this reply on {conv.channel.brand} without "
            + "; ".join(f"the attachment {x}" for x in left_out)
            + ". Send it another way if the customer needs it.",
            why=f"left-out-{d.replays}",
        )
    return DeliveryState.DELIVERED


async def _files_at_desk(rt: Runtime, account: str, reply: AgentReply) -> AgentReply:
    """The reply with its comment's files read from the desk where its webhook left them
    out (Zendesk's ``comment_added``). Raises ``DeliveryError``."""
    desk = rt.desk(account)
    if not reply.files_at_desk or not isinstance(desk, ReadsCommentFiles):
        return reply
    found = await desk.comment_files(reply.ticket_id, reply.external_id)
    return reply.model_copy(update={"attachments": found, "files_at_desk": False})


class StoredProgress:
    """The parts of a reply's send kept with its delivery record (``Progress``): a retry,
    a new worker after a crash, or an operator's replay resumes after the last accepted
    part. A part sent again after an unknown outcome without an idempotency key is
    counted (``ambiguous_resends``) and written to the attempt log."""

    def __init__(
        self, rt: Runtime, d: Delivery, accepted: dict[int, str], unknown: set[int]
    ) -> None:
        self._rt = rt
        self._d = d
        self.parts = accepted
        self._unknown = unknown
        self._first: Callable[[], Awaitable[object]] | None = None

    def on_first_accept(self, callback: Callable[[], Awaitable[object]]) -> None:
        """Run ``callback`` once, right after the first part this attempt records."""
        self._first = callback

    def accepted(self, part: int) -> str | None:
        return self.parts.get(part)

    async def record(self, part: int, platform_id: str) -> None:
        await self._rt.deliveries.record_part(self._d.account, self._d.id, part, platform_id)
        self.parts[part] = platform_id
        self._unknown.discard(part)
        first, self._first = self._first, None
        if first is not None:
            await first()

    def uncertain(self, part: int) -> bool:
        return part in self._unknown

    async def begin(self, part: int) -> None:
        await self._rt.deliveries.record_unknown_part(self._d.account, self._d.id, part)
        self._unknown.add(part)

    async def not_applied(self, part: int) -> None:
        await self._rt.deliveries.forget_unknown_part(self._d.account, self._d.id, part)
        self._unknown.discard(part)

    async def resending(self, part: int) -> None:
        d = self._d
        self._rt.metrics.ambiguous_resends.labels(peer=d.channel).inc()
        await self._rt.deliveries.record_attempt(
            d.account,
            d.id,
            Attempt(
                at=datetime.now(UTC),
                outcome="resent",
                error=f"part {part} sent again after an unknown outcome: {d.channel} has no"
                " idempotency key, the customer may see it twice",
            ),
            spends_budget=False,
        )
        log.info("delivery %s: part %d sent again after an unknown outcome", d.id, part)


async def stored_progress(rt: Runtime, d: Delivery) -> StoredProgress:
    """The progress of ``d``'s send so far, read from the store."""
    accepted, unknown = await rt.deliveries.part_state(d.account, d.id)
    return StoredProgress(rt, d, accepted, unknown)


async def hold(rt: Runtime, d: Delivery, closed: WindowClosed) -> None:
    """The reply window is closed: park the reply until the customer writes, invite them
    back once per silence (the channel's approved template), and tell the agent."""
    conv, to = await _address(rt, d)
    # the note's cause counts this delivery's attempts: each hold is noted once, however
    # often a crash makes the worker run this again before the hold is recorded
    seen = len(await rt.deliveries.attempts(d.account, d.id))
    invited = await _invite(rt, d, conv, to)
    await note(
        rt,
        d,
        f"deskbridge is holding this reply: the customer's {conv.channel.brand} reply window is "
        f"closed ({closed}). It will be sent as soon as the customer writes again. {invited}",
        why=f"held-{seen}",
    )
    await rt.deliveries.hold(d)
    await rt.deliveries.record_attempt(
        d.account,
        d.id,
        Attempt(at=datetime.now(UTC), outcome="held", error=str(closed)),
        spends_budget=False,
    )
    rt.metrics.deliveries.labels(d.direction.value, "held").inc()
    log.info("delivery %s held: reply window closed", d.id)


async def hold_again(rt: Runtime, d: Delivery, closed: WindowClosed) -> None:
    """The channel accepted reply ``d`` and later reported, by status webhook, that it
    was not delivered because the reply window was closed (WhatsApp 131047): the same
    path as a send refused for it. The reply goes back to its arrival place in its lane
    (held at the head; later replies not yet sent wait behind it), the customer is
    invited back once per silence and the agent told. If the customer wrote since the
    reply went out, it is released at once."""
    conv, to = await _address(rt, d)
    seen = len(await rt.deliveries.attempts(d.account, d.id))
    invited = await _invite(rt, d, conv, to)
    await note(
        rt,
        d,
        f"{conv.channel.brand} reports that this reply was not delivered: the "
        f"customer's reply window was closed ({closed}). deskbridge is holding it and will "
        f"send it again as soon as the customer writes. {invited}",
        why=f"held-{seen}",
    )
    if await rt.deliveries.hold_again(d) is None:
        return
    await rt.deliveries.record_attempt(
        d.account,
        d.id,
        Attempt(at=datetime.now(UTC), outcome="held", error=f"reported by status: {closed}"),
        spends_budget=False,
    )
    rt.metrics.deliveries.labels(d.direction.value, "held").inc()
    log.info("delivery %s held again: the channel reported its reply window closed", d.id)
    if (conv.last_inbound_at or 0) > d.updated_at.timestamp():
        await rt.deliveries.release_held(d.account, d.direction, conv.id)


async def _invite(rt: Runtime, d: Delivery, conv: ConversationRecord, to: ChannelAddress) -> str:
    """Send the channel's re-engagement template once per silence; what the note says."""
    adapter = rt.adapter(d.account, conv.channel)
    if adapter is None or (
        conv.reengaged_at is not None and (conv.last_inbound_at or 0) <= conv.reengaged_at
    ):
        return "The customer was already invited to write back."
    try:
        await adapter.reengage(to)
    except PermanentError as exc:
        return f"The customer was not invited to write back: {exc}."
    await rt.conversations.mark_reengaged(d.account, conv.id, time.time())
    return "A re-engagement template was sent to invite them to write back."


async def _consented(rt: Runtime, account: str, conv: ConversationRecord) -> None:
    """Raise ``PermanentError`` when the customer withdrew their consent to messages on
    the conversation's channel (SMS STOP) and has not given it again."""
    contact = await rt.conversations.contact(account, conv.contact_id)
    state = contact.attributes.get(consent_attribute(conv.channel), "") if contact else ""
    if state.startswith("opted_out"):
        raise PermanentError(
            f"the customer opted out of {conv.channel.value} ({state}); nothing is sent"
            " until they opt back in (START)"
        )


def _at(ts: float | None) -> datetime | None:
    return datetime.fromtimestamp(ts, UTC) if ts is not None else None


async def _address(
    rt: Runtime, d: Delivery, *, automated: bool = False
) -> tuple[ConversationRecord, ChannelAddress]:
    conv = await rt.conversations.get(d.account, d.conversation_id)
    if conv is None:
        raise PermanentError("the conversation behind this ticket is gone")
    # an automated message never spends the reply token an agent's answer could use
    token = None if automated else conv.reply_token
    to = ChannelAddress(
        channel=conv.channel,
        account=d.account,
        thread=conv.thread,
        last_inbound_at=_at(conv.last_inbound_at),
        reply_token=token,
        reply_token_at=_at(conv.reply_token_at) if token else None,
        context=conv.context,
    )
    return conv, to
