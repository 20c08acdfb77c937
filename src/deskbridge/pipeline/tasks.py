"""The arq tasks: ``deliver_to_desk`` (channel → desk) and ``deliver_to_channel`` (desk →
channel). Jobs carry ids only; the delivery record is the truth.

A conversation's deliveries form a lane (a Redis list, in arrival order). Only the lane's
head is worked on; finishing it (delivered or dead) enqueues the next head's job in the
same script. A job for a delivery that is not the head ends at once: its turn will come.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from deskbridge.errors import (
    DeliveryError,
    PermanentError,
    RetryableError,
    StoreUnavailable,
    WindowClosed,
)
from deskbridge.identity.phones import readable
from deskbridge.outbound.base import DeskConnector
from deskbridge.outbound.render import render
from deskbridge.pipeline import privacy, retry
from deskbridge.pipeline import routing as routing_step
from deskbridge.pipeline.runtime import Runtime
from deskbridge.routing.config import RoutingConfig
from deskbridge.schemas import (
    AgentReply,
    Attempt,
    AttemptOutcome,
    CallEvent,
    ChannelAddress,
    ChannelEvent,
    Contact,
    ConversationRef,
    Delivery,
    DeliveryState,
    Desk,
    DeskFields,
    Direction,
    Message,
    StatusUpdate,
    Upload,
)
from deskbridge.store import ConversationRecord, IntakeEvent, keys, new_id
from deskbridge.store.graph import Observed

__all__ = ["call_message", "deliver_to_channel", "deliver_to_desk", "job_deadline"]

log = logging.getLogger(__name__)

Work = Callable[[Runtime, Delivery], Awaitable[DeliveryState]]


def job_deadline(work_timeout: float, grace: float = 15.0) -> float:
    """arq's job timeout (and the lane lock's TTL): the work's own deadline plus ``grace``
    to record the outcome, write a note and hand the lane on."""
    return work_timeout + grace


async def deliver_to_desk(ctx: dict[str, Any], account: str, delivery_id: str) -> None:
    """File one inbound event in the account's desk. Safe to run more than once."""
    await _run(ctx["runtime"], account, delivery_id, _to_desk)


async def deliver_to_channel(ctx: dict[str, Any], account: str, delivery_id: str) -> None:
    """Send one agent reply on the customer's channel. Safe to run more than once."""
    await _run(ctx["runtime"], account, delivery_id, _to_channel)


async def _run(rt: Runtime, account: str, delivery_id: str, work: Work) -> None:
    d = await rt.deliveries.get(account, delivery_id)
    if d is None:
        log.warning("delivery %s not found (expired or erased)", delivery_id)
        return
    if d.state is DeliveryState.HELD:
        return  # waits for the customer; release_held() enqueues it again
    if d.state is not DeliveryState.PENDING:
        # Finished elsewhere (replayed, discarded): make sure its lane moves on.
        await rt.deliveries.finish(d, d.state)
        return
    head = await rt.deliveries.lane_head(account, d.direction, d.conversation_id)
    if head != d.id:
        return
    token = new_id()
    s = rt.settings
    lock_ms = int(job_deadline(s.job_timeout_seconds, s.job_grace_seconds) * 1000)
    if not await rt.deliveries.lock_lane(account, d.direction, d.conversation_id, token, lock_ms):
        retry.busy()
    try:
        try:
            state = await _attempt(rt, d, work)
        except StoreUnavailable as exc:
            # a shared token cache or lock in Redis failed mid-delivery: try again later
            await _failed(rt, d, RetryableError(str(exc)))
            return
        except DeliveryError as exc:
            await _failed(rt, d, exc)
            return
        if state is None:
            return  # held until the customer writes again
        outcome: AttemptOutcome = "delivered" if state is DeliveryState.DELIVERED else "skipped"
        await rt.deliveries.record_attempt(
            account, d.id, Attempt(at=datetime.now(UTC), outcome=outcome), spends_budget=True
        )
        retention = rt.retention(account).delivered_s
        await rt.deliveries.finish(d, state, retention_s=retention)
        if await rt.deliveries.has_problems(account):
            await rt.deliveries.clear_problem(account, _peer(d))
        rt.metrics.deliveries.labels(d.direction.value, state.value).inc()
        if state is DeliveryState.DELIVERED:
            rt.metrics.delivery_latency.labels(d.direction.value).observe(
                max(0.0, time.time() - d.created_at.timestamp())
            )
        log.info("delivery %s %s %s", d.id, d.direction.value, state.value)
    finally:
        await rt.deliveries.unlock_lane(account, d.direction, d.conversation_id, token)


async def _attempt(rt: Runtime, d: Delivery, work: Work) -> DeliveryState | None:
    """One attempt under the work's own deadline; None when the reply was held."""
    try:
        # inside arq's longer timeout: a slow peer becomes a retry with backoff, where arq
        # would fail the job and drop it (the sweeper would only find it later)
        async with asyncio.timeout(rt.settings.job_timeout_seconds):
            return await work(rt, d)
    except WindowClosed as closed:
        await _hold(rt, d, closed)
        return None
    except TimeoutError:
        raise RetryableError(
            f"delivery took longer than {rt.settings.job_timeout_seconds:g}s"
        ) from None


async def _failed(rt: Runtime, d: Delivery, exc: DeliveryError) -> None:
    decision = rt.policy.decide(exc, d.attempts + 1)
    await rt.deliveries.record_attempt(
        d.account,
        d.id,
        Attempt(
            at=datetime.now(UTC),
            outcome=decision.outcome,
            error=str(exc),
            http_status=exc.status,
            wait=decision.wait if decision.action == "retry" else None,
        ),
        spends_budget=decision.spends_budget,
    )
    rt.metrics.deliveries.labels(d.direction.value, decision.outcome).inc()
    log.info("delivery %s %s: %s (%s)", d.id, decision.outcome, exc, d.direction.value)
    if exc.status in (401, 403):
        # a rejected credential fails every delivery to that peer: /readyz shows it
        log.warning(
            "account %s: %s rejected our credentials (HTTP %s)", d.account, _peer(d), exc.status
        )
        await rt.deliveries.report_problem(d.account, _peer(d), str(exc))
    if decision.action == "retry":
        retry.retry_later(decision.wait)
    await rt.deliveries.finish(d, DeliveryState.DEAD, reason=decision.outcome, last_error=str(exc))
    if d.direction is Direction.OUTBOUND:
        await _tell_agent(rt, d, exc)


def _peer(d: Delivery) -> str:
    """Who a delivery talks to: the desk for inbound work, the channel for replies."""
    return f"desk {d.desk}" if d.direction is Direction.INBOUND else f"channel {d.channel}"


async def _tell_agent(rt: Runtime, d: Delivery, exc: DeliveryError) -> None:
    """A reply that cannot reach the customer becomes an internal note on the ticket."""
    await _note(
        rt,
        d,
        f"deskbridge could not deliver this reply on {d.channel}: {exc}. "
        f"Delivery {d.id} is kept as a dead letter and can be replayed.",
    )


async def _note(rt: Runtime, d: Delivery, text: str) -> None:
    """An internal note on the ticket of ``d``'s conversation. Best effort: a note that
    fails is logged, never retried (it must not hold up the lane)."""
    desk = rt.desk(d.account)
    conv = await rt.conversations.get(d.account, d.conversation_id)
    if desk is None or conv is None or conv.ticket_id is None:
        return
    try:
        await desk.add_note(_ref(conv, "", d.account), text)
    except DeliveryError as note_exc:
        log.warning("delivery %s: internal note failed: %s", d.id, note_exc)


def _ref(conv: ConversationRecord, subject: str, account: str) -> ConversationRef:
    return ConversationRef(
        id=conv.id,
        account=account,
        channel=conv.channel,
        ticket_id=conv.ticket_id,
        contact_id=conv.contact_id,
        subject=subject,
        comment_count=conv.comment_count,
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


def _fingerprint(contact: Contact) -> str:
    parts = sorted(f"{i.kind}:{i.channel}:{i.value}" for i in contact.identities)
    return hashlib.sha256("\n".join([contact.display_name or "", *parts]).encode()).hexdigest()[:16]


async def _desk_user(rt: Runtime, desk: DeskConnector, contact: Contact) -> str:
    """The desk user of ``contact``; the desk is asked again only when identities change."""
    fp = _fingerprint(contact)
    cached = await rt.conversations.desk_user(contact.account, desk.desk.value, contact.id)
    if cached is not None:
        user_id, _, cached_fp = cached.partition("|")
        if cached_fp == fp:
            return user_id
    user_id = await desk.ensure_user(contact)
    await rt.conversations.set_desk_user(
        contact.account, desk.desk.value, contact.id, f"{user_id}|{fp}"
    )
    return user_id


async def _to_desk(rt: Runtime, d: Delivery) -> DeliveryState:  # noqa: C901 - rewritten in flows/ (issue 15)
    record = await rt.deliveries.event(d.account, d.event_id)
    event = record["event"]
    if event.get("kind") == "status":
        return await _apply_status(rt, d, StatusUpdate.model_validate(event))
    if event.get("kind") == "channel_event":
        return await _apply_channel_event(rt, d, ChannelEvent.model_validate(event))
    if event.get("kind") == "call":
        msg = call_message(CallEvent.model_validate(event))
    elif event.get("kind") == "message":
        msg = await _with_display_name(rt, d, Message.model_validate(event))
    else:
        return DeliveryState.SKIPPED
    msg = await _authenticated(rt, d, msg, record.get("raw_id"))
    desk = rt.desk(d.account)
    if desk is None:
        raise PermanentError(f"account {d.account} has no desk configured")
    contact = await _sender_contact(rt, d, msg)
    conv = await rt.conversations.ensure(
        d.account,
        d.conversation_id,
        msg.channel,
        msg.thread,
        contact.id,
        inbound_at=msg.occurred_at.timestamp(),
    )
    # the customer wrote, so a closed reply window is open again: held replies may go
    await rt.deliveries.release_held(d.account, Direction.OUTBOUND, conv.id)
    if msg.context:
        await rt.conversations.set_context(d.account, conv.id, msg.context)
    if msg.reply_token:
        await rt.conversations.set_reply_token(
            d.account, conv.id, msg.reply_token, msg.occurred_at.timestamp()
        )
    user_id = await _desk_user(rt, desk, contact)
    files, msg = await _fetch_inbound(rt, d, msg, record.get("raw_id"))
    per_contact = rt.accounts.accounts[d.account].conversation_scope == "contact"
    if per_contact:
        # one ticket per contact: this channel's messages join the contact's ticket
        shared = await rt.conversations.contact_ticket(d.account, desk.desk.value, contact.id)
        if shared is not None and shared[0] != conv.ticket_id:
            conv = dataclasses.replace(conv, ticket_id=shared[0], comment_count=shared[1])
    if conv.ticket_id is None:
        await rt.conversations.mark_create_attempted(d.account, conv.id)
    routing = rt.accounts.accounts[d.account].routing
    fields: DeskFields | None = None
    if routing is not None and event.get("kind") == "message":
        found = await routing_step.enrich(rt, d.account, routing, msg, contact)
        fields = routing_step.fields_of(routing_step.decide(routing, msg, found))
        facts = found.as_attributes()
        if facts:
            await rt.conversations.set_attributes(d.account, contact.id, facts)
        if found.language:
            await rt.conversations.set_language(d.account, conv.id, found.language)
    merged: list[Delivery] = []
    limit = getattr(desk, "ticket_update_limit", None)
    if limit is not None and conv.ticket_id is not None and not files:
        msg, merged = await _within_update_budget(rt, d, desk.desk.value, conv.ticket_id, msg)
    filed = await desk.append(
        _ref(conv, "", d.account).model_copy(update={"fields": fields}),
        user_id,
        msg,
        files,
        idempotency_key=f"deskbridge-{d.id}",
        retried=conv.create_attempted or d.attempts > 0,
    )
    if limit is not None:
        await rt.deliveries.note_ticket_update(
            d.account, desk.desk.value, filed.ticket_id, limit[1]
        )
    for other in merged:
        # filed inside this delivery's update: done, and out of the lane
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
        rt.metrics.event("desk", "coalesced", desk.desk.value, n=len(merged))
    count = filed.comment_count if filed.comment_count is not None else conv.comment_count + 1
    # the ticket now answers to this conversation: in contact scope, the agent's reply
    # goes out on the channel the customer wrote on last
    await rt.conversations.set_ticket(d.account, desk.desk.value, conv.id, filed.ticket_id, count)
    if per_contact:
        await rt.conversations.set_contact_ticket(
            d.account, desk.desk.value, contact.id, filed.ticket_id, count
        )
    await rt.conversations.mark_ours(d.account, desk.desk.value, filed.message_id)
    await routing_step.record_inbound(rt, d.account, conv.id, msg)
    if routing is not None:
        language = await rt.redis.hget(keys.conversation(d.account, conv.id), "language")
        note = await routing_step.translation_note(
            rt, routing, msg.text, language.decode() if language else None
        )
        if note is not None:
            await _note(rt, d, note)
        await _off_hours_ack(rt, d, routing, msg, filed.ticket_id)
    return DeliveryState.DELIVERED


async def _off_hours_ack(
    rt: Runtime, d: Delivery, routing: RoutingConfig, msg: Message, ticket_id: str
) -> None:
    """Outside business hours, the customer hears when to expect an answer: once per
    conversation per closed period (the intake's dedup mark keeps it to one), sent as
    an automatic message (no HUMAN_AGENT tag on Messenger, Auto-Submitted on email)."""
    language = await rt.redis.hget(keys.conversation(d.account, d.conversation_id), "language")
    ack = routing_step.off_hours_text(
        routing, msg.occurred_at, language.decode() if language else None
    )
    if ack is None:
        return
    text, period = ack
    reply = AgentReply(
        account=d.account,
        desk=Desk(rt.accounts.accounts[d.account].desk.type),
        dedup_key=f"offhours:{d.conversation_id}:{period}",
        ticket_id=ticket_id,
        external_id=f"offhours:{d.conversation_id}:{period}",
        text=text,
        author_name="deskbridge",
        automated=True,
        occurred_at=datetime.now(UTC),
    )
    new = await rt.intake.accept(
        account=d.account,
        source="deskbridge",
        direction=Direction.OUTBOUND,
        channel=msg.channel.value,
        desk=reply.desk.value,
        req=None,
        events=[
            IntakeEvent(dedup_key=reply.dedup_key, conversation_id=d.conversation_id, event=reply)
        ],
    )
    if any(new):
        rt.metrics.off_hours_acks.labels(d.account, msg.channel.value).inc()


async def _within_update_budget(
    rt: Runtime, d: Delivery, desk: str, ticket_id: str, msg: Message
) -> tuple[Message, list[Delivery]]:
    """Keep a ticket under its desk's update limit (Zendesk: 30 per 10 minutes).

    When the budget left cannot give each waiting message of this conversation its own
    update, the head and the plain-text messages right behind it (same sender, no files)
    go as one update, each line stamped with its time. With no budget at all, wait for
    the window (a wait the desk would otherwise enforce with 429s; it spends no retries).
    """
    desk_connector = rt.desk(d.account)
    limit = getattr(desk_connector, "ticket_update_limit", None)
    assert limit is not None
    most, window = limit
    used, wait = await rt.deliveries.ticket_updates(d.account, desk, ticket_id, window)
    if used >= most:
        raise RetryableError(
            f"{desk} allows {most} updates per ticket per {window:g}s", retry_after=wait + 0.5
        )
    cap = rt.settings.coalesce_max_messages
    lane = await rt.deliveries.lane_ids(d.account, Direction.INBOUND, d.conversation_id, cap)
    waiting = [i for i in lane if i != d.id]
    if not waiting or most - used > len(waiting):
        return msg, []
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


async def _authenticated(rt: Runtime, d: Delivery, msg: Message, raw_id: str | None) -> Message:
    """Channels that can authenticate a sender only with network lookups (email's own
    DKIM check) do it here, in the worker, never on the ack path."""
    check = getattr(rt.adapter(d.account, msg.channel), "authenticate_sender", None)
    if check is None or not raw_id:
        return msg
    req = await rt.deliveries.raw_request(d.account, raw_id)
    return await check(req, msg) if req is not None else msg


async def _sender_contact(rt: Runtime, d: Delivery, msg: Message) -> Contact:
    """The sender's contact. A sender the channel does not identify (a LINE group member
    who is not named) is filed as the conversation's contact rather than as a stranger
    per message."""
    if not any(i.strength == "strong" for i in msg.sender.identities):
        conv = await rt.conversations.get(d.account, d.conversation_id)
        known = await rt.conversations.contact(d.account, conv.contact_id) if conv else None
        if known is not None:
            return known
    acc = rt.accounts.accounts[d.account]
    contact, observed = await rt.conversations.observe_contact(
        d.account,
        msg.sender.identities,
        msg.sender.display_name,
        shared=acc.shared_keys(),
        source=msg.channel.value,
    )
    if observed is not None:
        await _after_observation(rt, d, observed)
        if observed.created:
            await privacy.consent_notice(rt, d, msg, contact.id)
    return contact


async def _after_observation(rt: Runtime, d: Delivery, observed: Observed) -> None:
    """Count what the graph did; tell agents on the tickets of a contact that was merged
    into another (the desk users stay apart until an operator merges them there)."""
    if observed.created:
        rt.metrics.event("identity", "contact_created", "")
    rt.metrics.event("identity", "merge", "automatic", n=len(observed.merges))
    rt.metrics.event("identity", "suggestion", "", n=len(observed.suggestions))
    for survivor, merged in observed.merges:
        for conv_id in await rt.conversations.conversations_of(d.account, merged):
            conv = await rt.conversations.get(d.account, conv_id)
            if conv is None or conv.ticket_id is None or conv_id == d.conversation_id:
                continue
            desk = rt.desk(d.account)
            if desk is None:
                continue
            text = (
                f"deskbridge recognised this customer as the same person as contact {survivor} "
                f"(strong evidence on {d.channel}); contact {merged} was merged into it, and "
                "new tickets go to that contact's desk user. Merge the desk users if you agree."
            )
            try:
                await desk.add_note(_ref(conv, "", d.account), text)
            except DeliveryError as exc:
                log.warning("note on a merged contact's ticket failed: %s", type(exc).__name__)


async def _fetch_inbound(
    rt: Runtime, d: Delivery, msg: Message, raw_id: str | None
) -> tuple[list[Upload], Message]:
    """Download the message's files, or read them from the stored request for channels
    whose files travel inside it (email). A file that can never be fetched (too large,
    gone) does not hold the message back: the agent sees a note in its place."""
    adapter = rt.adapter(d.account, msg.channel)
    from_request = getattr(adapter, "file_from_request", None)
    stored = None
    if from_request is not None and msg.attachments and raw_id:
        stored = await rt.deliveries.raw_request(d.account, raw_id)
    files: list[Upload] = []
    missing: list[str] = []
    for att in msg.attachments:
        if adapter is None:
            missing.append(f"{att.kind}: channel not configured")
            continue
        try:
            if from_request is not None:
                if stored is None:
                    raise PermanentError("the stored request has expired")
                files.append(from_request(stored, att))
            else:
                files.append(await adapter.fetch(att))
        except PermanentError as exc:
            missing.append(f"{att.kind} {att.filename or ''}: {exc}".replace("  ", " "))
        except RetryableError as exc:
            if d.attempts + 1 < rt.policy.max_attempts:
                raise  # try the whole delivery again later
            # the budget is spent: deliver the message, saying which file is missing
            missing.append(f"{att.kind} {att.filename or ''}: {exc}".replace("  ", " "))
    if missing:
        note = "; ".join(f"Attachment not available ({m})" for m in missing)
        msg = msg.model_copy(update={"note": f"{msg.note}; {note}" if msg.note else note})
    return files, msg


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


async def _to_channel(rt: Runtime, d: Delivery) -> DeliveryState:
    record = await rt.deliveries.event(d.account, d.event_id)
    reply = AgentReply.model_validate(record["event"])
    conv, to = await _address(rt, d, automated=reply.automated)
    reply = await routing_step.translate_reply(
        rt, rt.accounts.accounts[d.account].routing, d.account, conv.id, reply
    )
    adapter = rt.adapter(d.account, conv.channel)
    if adapter is None:
        raise PermanentError(f"channel {conv.channel.value} is not configured for {d.account}")
    desk = rt.desk(d.account)
    files: list[Upload] = []
    if adapter.takes_files:
        for att in reply.attachments:
            if desk is None:
                raise PermanentError("no desk to fetch the reply's attachments from")
            files.append(await desk.fetch(att))
    # A failure after part of a split reply was sent retries the whole reply: the customer
    # may see a part twice, which beats losing the rest.
    receipt = await adapter.send(reply, to, files)
    if receipt.used_reply_token and to.reply_token:
        await rt.conversations.clear_reply_token(d.account, conv.id, to.reply_token)
    if receipt.quota_messages:
        rt.metrics.quota_messages.labels(d.account, conv.channel.value).inc(receipt.quota_messages)
    if receipt.external_ids:
        await rt.deliveries.record_sent(d, receipt.external_ids)
    await routing_step.record_reply(
        rt, d.account, conv.id, conv.channel.value, automated=reply.automated
    )
    return DeliveryState.DELIVERED


async def _hold(rt: Runtime, d: Delivery, closed: WindowClosed) -> None:
    """The reply window is closed: park the reply until the customer writes, invite them
    back once per silence (the channel's approved template), and tell the agent."""
    conv, to = await _address(rt, d)
    adapter = rt.adapter(d.account, conv.channel)
    invited = "The customer was already invited to write back."
    if adapter is not None and (
        conv.reengaged_at is None or (conv.last_inbound_at or 0) > conv.reengaged_at
    ):
        try:
            await adapter.reengage(to)
        except PermanentError as exc:
            invited = f"The customer was not invited to write back: {exc}."
        else:
            await rt.conversations.mark_reengaged(d.account, conv.id, time.time())
            invited = "A re-engagement template was sent to invite them to write back."
    await rt.deliveries.record_attempt(
        d.account,
        d.id,
        Attempt(at=datetime.now(UTC), outcome="held", error=str(closed)),
        spends_budget=False,
    )
    await rt.deliveries.hold(d)
    rt.metrics.deliveries.labels(d.direction.value, "held").inc()
    log.info("delivery %s held: reply window closed", d.id)
    await _note(
        rt,
        d,
        f"deskbridge is holding this reply: the customer's {conv.channel.value} reply window is "
        f"closed ({closed}). It will be sent as soon as the customer writes again. {invited}",
    )


async def _apply_status(rt: Runtime, d: Delivery, st: StatusUpdate) -> DeliveryState:
    """Record a channel's status on the reply it refers to; a failed reply becomes a note."""
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
        if await rt.deliveries.channel_status(d.account, target, st.status, at_ms, error):
            changed += 1
            if st.status == "failed":
                reply = await rt.deliveries.get(d.account, target)
                if reply is not None:
                    await _note(
                        rt,
                        reply,
                        f"{st.channel.value.capitalize()} reports that this reply was not delivered"
                        f"{': ' + error if error else ''}. Delivery {reply.id}.",
                    )
    return DeliveryState.DELIVERED if changed else DeliveryState.SKIPPED


_PROFILE_TTL = 86400


async def _with_display_name(rt: Runtime, d: Delivery, msg: Message) -> Message:
    """Channels that send no name (LINE) are asked once a day per person. A failed lookup
    never holds up the message."""
    if msg.sender.display_name:
        return msg
    adapter = rt.adapter(d.account, msg.channel)
    lookup = getattr(adapter, "display_name", None)
    if lookup is None:
        return msg
    user = msg.sender.external_id
    name = await rt.conversations.display_name(d.account, msg.channel.value, user)
    if name is None:
        name = await lookup(user, msg.thread)
        if not name:
            return msg
        await rt.conversations.remember_display_name(
            d.account, msg.channel.value, user, name, _PROFILE_TTL
        )
    return msg.model_copy(update={"sender": msg.sender.model_copy(update={"display_name": name})})


async def _apply_channel_event(rt: Runtime, d: Delivery, ev: ChannelEvent) -> DeliveryState:
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
        await _note(
            rt,
            d,
            f"The customer retracted a message on {ev.channel.value} (message {ev.external_id}). "
            "It stays on the ticket as it was received.",
        )
        return DeliveryState.DELIVERED
    return DeliveryState.SKIPPED  # join/leave: nothing for the desk
