"""Filing an inbound event in the desk: a message (or a call) becomes a comment on the
sender's ticket; a status or a channel event updates what deskbridge already filed.

``file_event`` is the whole flow, in named steps over the typed event union. Safe to run
more than once for one delivery: each step is idempotent or keyed by the delivery.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import UTC, datetime
from typing import Any

from pydantic import TypeAdapter, ValidationError

from deskbridge.errors import PermanentError
from deskbridge.flows import csat, enrichment, proactive, responders, widget
from deskbridge.flows.automated import off_hours_ack
from deskbridge.flows.budget import Prepare, finish_merged, within_update_budget
from deskbridge.flows.contacts import (
    authenticated,
    desk_user_from,
    sender_contact,
    with_display_name,
)
from deskbridge.flows.deferred import PARSED
from deskbridge.flows.files import inbound_files
from deskbridge.flows.notes import file_note, note, ref
from deskbridge.flows.runtime import Runtime
from deskbridge.flows.statuses import apply_channel_event, apply_status
from deskbridge.identity.phones import readable
from deskbridge.outbound import DeskConnector
from deskbridge.outbound.base import Filed
from deskbridge.outbound.capabilities import has_update_budget
from deskbridge.schemas import (
    Attempt,
    CallEvent,
    ChannelEvent,
    Contact,
    Delivery,
    DeliveryState,
    DeskFields,
    DeskNote,
    Direction,
    InboundEvent,
    Message,
    StatusUpdate,
)
from deskbridge.store import ConversationRecord

log = logging.getLogger(__name__)

__all__ = ["call_message", "file_event", "file_message"]

_EVENT: TypeAdapter[InboundEvent] = TypeAdapter(InboundEvent)
_DESK_WRITE_TTL_S = 7 * 86400
"""How long a desk write in flight is remembered: beyond any retry of its delivery."""


async def file_event(
    rt: Runtime, d: Delivery, record: dict[str, Any] | None = None
) -> DeliveryState:
    """Deliver one stored inbound event to the account's desk. Raises ``DeliveryError``
    (retry or dead letter: the caller's policy decides). ``record``: the event record
    as the worker's claim read it (read here when None)."""
    if record is None:
        record = await rt.deliveries.event(d.account, d.event_id)
    if record["event"].get("kind") == "note":
        n = DeskNote.model_validate(record["event"])
        if proactive.is_proactive_note(n):
            return await proactive.file_on_ticket(rt, d, n)
        return await file_note(rt, d, n)
    parsed = record.get(PARSED)
    if isinstance(parsed, Message | StatusUpdate | CallEvent | ChannelEvent):
        event: InboundEvent = parsed  # this attempt's own parse: validated already
    else:
        try:
            event = _EVENT.validate_python(record["event"])
        except ValidationError:
            return DeliveryState.SKIPPED  # a kind this version does not file
    raw_id: str | None = record.get("raw_id")
    match event:
        case StatusUpdate():
            return await apply_status(rt, d, event)
        case ChannelEvent():
            return await apply_channel_event(rt, d, event)
        case CallEvent():
            return await file_message(rt, d, call_message(event), raw_id, enrich=False)
        case Message():
            state = await _customer_message(rt, d, event, raw_id)
            await widget.filed(rt, d.account, [event])
            return state
    return DeliveryState.SKIPPED  # pragma: no cover - the union is closed


async def _customer_message(
    rt: Runtime, d: Delivery, event: Message, raw_id: str | None
) -> DeliveryState:
    """A customer's message: filed, unless a survey takes it or the bot answers it."""
    msg = await with_display_name(rt, d, event)
    acc = rt.accounts.accounts[d.account]
    if acc.responders is None and acc.csat is None:
        return await file_message(rt, d, msg, raw_id, enrich=True)
    front = await _front(rt, d, msg, raw_id)
    if front is None:
        return DeliveryState.DELIVERED  # a survey answer, or the bot answered
    return await file_message(rt, d, front, raw_id, enrich=True, checked=True)


async def file_message(
    rt: Runtime,
    d: Delivery,
    msg: Message,
    raw_id: str | None,
    *,
    enrich: bool,
    checked: bool = False,
) -> DeliveryState:
    """File ``msg`` as the sender's comment on the conversation's ticket. ``enrich``:
    the account's routing rules set the desk fields (customers' messages, not calls).
    ``checked``: the sender was authenticated already (the bot front desk did it)."""
    if not checked:
        msg = await authenticated(rt, d, msg, raw_id)
    desk = rt.desk(d.account)
    if desk is None:
        raise PermanentError(f"account {d.account} has no desk configured")
    contact = await sender_contact(rt, d, msg)
    conv, cached_user = await _conversation(rt, d, msg, contact, desk.desk.value)
    user_id = await desk_user_from(rt, desk, contact, cached_user)
    files, msg = await inbound_files(rt, d, msg, raw_id)
    conv = await _contact_ticket(rt, d, desk, contact, conv)
    if conv.ticket_id is None:
        await rt.conversations.mark_create_attempted(d.account, conv.id)
    fields = await _desk_fields(rt, d, conv, msg, contact) if enrich else None
    if enrich:
        fields = responders.desk_fields(rt, d.account, msg, fields)
    limit = desk.ticket_update_limit if has_update_budget(desk) else None
    merged: list[Delivery] = []
    marked = False
    if limit is not None and conv.ticket_id is not None:
        budget = await within_update_budget(
            rt,
            d,
            limit,
            (desk.desk.value, conv.ticket_id),
            msg,
            _merging(rt, msg),
            files,
            mark_ttl_s=_DESK_WRITE_TTL_S,
        )
        msg, merged, marked = budget.msg, budget.merged, budget.marked
        files = [*files, *budget.files]
    carried = [o.id for o in merged]
    filed = await desk.append(
        ref(conv, d.account).model_copy(update={"fields": fields}),
        user_id,
        msg,
        files,
        idempotency_key=f"deskbridge-{d.id}",
        retried=conv.create_attempted or d.attempts > 0,
        in_doubt=await _in_doubt(rt, d, carried, marked=marked),
    )
    # the desk answered; the ticket update counts against the desk's budget (one write),
    # in the same transaction as the ticket's record
    update = (desk.desk.value, filed.ticket_id, limit[1]) if limit is not None else None
    await _record_filed(rt, d, desk, conv, contact, filed, msg, (update, carried))
    if filed.resent is not None:
        await _count_resend(rt, d, desk.desk.value, filed.resent)
    await finish_merged(rt, d, merged, desk.desk.value)
    await widget.filed_merged(rt, d.account, merged)
    enrichment.count_inbound(rt, d.account, msg)
    await _after_filing(rt, d, conv, msg, filed.ticket_id)
    return DeliveryState.DELIVERED


async def _front(rt: Runtime, d: Delivery, msg: Message, raw_id: str | None) -> Message | None:
    """Before filing: the answer to an open satisfaction survey is recorded, not filed;
    the account's bot may answer (None), or hand over (the message, with its session)."""
    msg = await authenticated(rt, d, msg, raw_id)
    contact = await sender_contact(rt, d, msg)
    conv, _ = await _conversation(rt, d, msg, contact)
    if await csat.capture(rt, d, msg, conv):
        return None
    return await responders.front_desk(rt, d, msg, conv)


def _merging(rt: Runtime, head: Message) -> Prepare:
    """A message merged into ``head``'s update gets its sender's name, and a sender other
    than the head's is observed in the identity graph, as it would have been alone."""

    async def prepare(other: Delivery, m: Message) -> Message:
        m = await with_display_name(rt, other, m)
        if m.sender.external_id != head.sender.external_id:
            await sender_contact(rt, other, m)
        return m

    return prepare


async def _in_doubt(rt: Runtime, d: Delivery, carried: list[str], *, marked: bool) -> bool:
    """Whether an earlier attempt may have filed the message without deskbridge knowing:
    it failed with an unknown outcome, its worker died with the write in flight, or it
    recorded the write as filed and was cut off before the delivery was finished. The
    desk then reconciles before writing again. Notes this write as in flight, carrying
    the messages of the deliveries ``carried`` (merged into its update), unless the
    budget's read ``marked`` it already (it found no earlier write then)."""
    if not marked and await rt.deliveries.begin_desk_write(
        d.account, d.id, _DESK_WRITE_TTL_S, carried
    ):
        return True
    if d.attempts == 0:
        return False  # every failure that may have been applied spends the budget
    return any(a.ambiguous for a in await rt.deliveries.attempts(d.account, d.id))


async def _count_resend(rt: Runtime, d: Delivery, desk: str, call: str) -> None:
    """A call sent again without a way to check the earlier one: counted, and a line in
    the attempt log, so an operator paged for a duplicate finds it."""
    rt.metrics.ambiguous_resends.labels(peer=desk).inc()
    await rt.deliveries.record_attempt(
        d.account,
        d.id,
        Attempt(at=datetime.now(UTC), outcome="resent", resent=call),
        spends_budget=False,
    )
    log.info("delivery %s: %s sent again after an unknown outcome", d.id, call)


async def _conversation(
    rt: Runtime, d: Delivery, msg: Message, contact: Contact, desk: str | None = None
) -> tuple[ConversationRecord, str | None]:
    """The conversation record, created on first sight; the customer's latest reply
    token and context are kept, and replies held for a closed window may go again.
    With ``desk``, the contact's stored desk user there, read in the same round trip."""
    conv, replies, user = await rt.conversations.ensure_seen(
        d.account,
        d.conversation_id,
        msg.channel,
        msg.thread,
        contact.id,
        inbound_at=msg.occurred_at.timestamp(),
        desk=desk,
    )
    # the customer wrote, so a closed reply window is open again: held replies may go.
    # With no reply in the lane there is none to release (a reply queued from now on
    # sees the window this message opened).
    if replies:
        await rt.deliveries.release_held(d.account, Direction.OUTBOUND, conv.id)
    if msg.context:
        await rt.conversations.set_context(d.account, conv.id, msg.context)
    if msg.reply_token:
        await rt.conversations.set_reply_token(
            d.account, conv.id, msg.reply_token, msg.occurred_at.timestamp()
        )
    return conv, user


async def _contact_ticket(
    rt: Runtime, d: Delivery, desk: DeskConnector, contact: Contact, conv: ConversationRecord
) -> ConversationRecord:
    """With ``conversation_scope: contact``, every channel's messages join the contact's
    one ticket."""
    if not _per_contact(rt, d.account):
        return conv
    shared = await rt.conversations.contact_ticket(d.account, desk.desk.value, contact.id)
    if shared is not None and shared[0] != conv.ticket_id:
        return dataclasses.replace(conv, ticket_id=shared[0], comment_count=shared[1])
    return conv


def _per_contact(rt: Runtime, account: str) -> bool:
    return rt.accounts.accounts[account].conversation_scope == "contact"


async def _desk_fields(
    rt: Runtime, d: Delivery, conv: ConversationRecord, msg: Message, contact: Contact
) -> DeskFields | None:
    """The account's routing rules over the enriched message, as desk fields; the facts
    found are kept on the contact, the language and the team (group) on the conversation."""
    routing = rt.accounts.accounts[d.account].routing
    if routing is None:
        return None
    found = await enrichment.enrich(rt, d.account, routing, msg, contact)
    fields = enrichment.fields_of(enrichment.decide(routing, msg, found))
    facts = found.as_attributes()
    if facts:
        await rt.conversations.set_attributes(d.account, contact.id, facts)
    if found.language:
        await rt.conversations.set_language(d.account, conv.id, found.language)
    if fields.group:
        await rt.conversations.set_team(d.account, conv.id, fields.group)
    return fields


async def _record_filed(
    rt: Runtime,
    d: Delivery,
    desk: DeskConnector,
    conv: ConversationRecord,
    contact: Contact,
    filed: Filed,
    msg: Message,
    written: tuple[tuple[str, str, float] | None, list[str]],
) -> None:
    """The desk write is over (``queue_end_desk_write``, with the ticket update for the
    budget and the deliveries carried in it: ``written``), the ticket now answers to this
    conversation (in contact scope, the agent's reply goes out on the channel the
    customer wrote on last), the comment is marked as ours so the desk's webhook does not
    bring it back, and the customer waits for an answer since their oldest unanswered
    message: one transaction."""
    update, carried = written
    count = filed.comment_count if filed.comment_count is not None else conv.comment_count + 1
    name = desk.desk.value
    await rt.conversations.set_ticket(
        d.account,
        name,
        conv.id,
        filed.ticket_id,
        count,
        ours=filed.message_id,
        waiting=(msg.channel.value, msg.occurred_at.timestamp()),
        also=lambda pipe: rt.deliveries.queue_end_desk_write(
            pipe, d.account, d.id, update, carried
        ),
    )
    if _per_contact(rt, d.account):
        await rt.conversations.set_contact_ticket(
            d.account, name, contact.id, filed.ticket_id, count
        )


async def _after_filing(
    rt: Runtime, d: Delivery, conv: ConversationRecord, msg: Message, ticket_id: str
) -> None:
    """For an account with routing: a translation for the agent, and the off-hours
    acknowledgement for the customer."""
    routing = rt.accounts.accounts[d.account].routing
    if routing is None:
        return
    language = await rt.conversations.language(d.account, conv.id)
    translated = await enrichment.translation_note(rt, routing, msg.text, language)
    if translated is not None:
        await note(rt, d, translated, why="translation")
    await off_hours_ack(
        rt, d.account, d.conversation_id, msg.channel, routing, msg.occurred_at, ticket_id
    )


def call_message(call: CallEvent) -> Message:
    """A call as the visible message on the caller's ticket, so an agent can call back:
    "Missed call from +1 650 555 1234 at 14:05 UTC on 2026-11-22 (callback requested)"."""
    caller = call.sender.external_id
    who = readable(caller) if caller.startswith("+") else caller
    when = call.occurred_at.astimezone(UTC).strftime("%H:%M UTC on %Y-%m-%d")
    to = f" to {readable(call.callee)}" if call.callee and call.callee.startswith("+") else ""
    if call.state == "redirected":
        text = (
            f"Call from {who}{to} at {when}, forwarded to the call centre ({call.redirected_to})."
        )
    elif call.hung_up:
        rang = f" after {call.duration:.0f} s" if call.duration is not None else ""
        text = f"Missed call from {who}{to} at {when}: the caller hung up{rang} while it rang."
    else:
        extra = " (callback requested)" if call.callback_requested else ""
        text = f"Missed call from {who}{to} at {when}{extra}."
    return Message(
        account=call.account,
        channel=call.channel,
        dedup_key=call.dedup_key,
        thread=call.thread,
        occurred_at=call.occurred_at,
        external_id=f"call:{call.call_id}",
        sender=call.sender,
        text=text,
        context=call.context,
    )
