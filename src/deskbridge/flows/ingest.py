"""Taking events in: the one path from a verified request (or a listener, a poller, a
re-ingest, the sandbox, deskbridge itself) to the intake script.

Every function here returns only after the intake script stored what it was given, so a
caller may acknowledge as soon as it returns; each raises ``StoreUnavailable`` when the
store cannot take the events (the caller answers 503, or tries again later).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Sequence

from deskbridge.flows.runtime import Runtime
from deskbridge.schemas import AgentReply, DeskNote, Direction, InboundEvent, RawRequest
from deskbridge.store import IntakeEvent

__all__ = [
    "accept_account_events",
    "accept_events",
    "accept_replies",
    "keep_unparseable",
    "queue_automated",
    "queue_note",
]

log = logging.getLogger(__name__)


async def accept_events(
    rt: Runtime, source: str, req: RawRequest | None, events: Iterable[InboundEvent]
) -> int:
    """Store inbound events, each under the account it names (one Meta batch may carry
    several accounts); returns how many were new."""
    by_account: dict[str, list[IntakeEvent]] = {}
    for ev in events:
        by_account.setdefault(ev.account, []).append(
            IntakeEvent(
                dedup_key=ev.dedup_key,
                conversation_id=rt.conversations.conversation_id(ev.account, ev.channel, ev.thread),
                event=ev,
            )
        )
    new = 0
    for account, batch in by_account.items():
        new += sum(await _store(rt, account, source, Direction.INBOUND, source, req, batch))
    return new


async def accept_account_events(
    rt: Runtime, account: str, source: str, req: RawRequest | None, events: list[IntakeEvent]
) -> list[bool]:
    """Store one account's inbound events (re-ingest); per event, whether it was new."""
    return await _store(rt, account, source, Direction.INBOUND, source, req, events)


async def accept_replies(
    rt: Runtime, account: str, source: str, req: RawRequest | None, replies: Sequence[AgentReply]
) -> int:
    """Queue agent replies for their conversations' channels. Replies deskbridge wrote
    itself (the loop guard) and replies on tickets it does not know are skipped.
    Returns how many were new."""
    by_channel: dict[str, list[IntakeEvent]] = {}
    for reply in replies:
        desk = reply.desk.value
        if await rt.conversations.is_ours(account, desk, reply.external_id):
            rt.metrics.event(source, "ignored", "ours")
            continue
        conv_id = await rt.conversations.for_ticket(account, desk, reply.ticket_id)
        conv = await rt.conversations.get(account, conv_id) if conv_id else None
        if conv is None:
            rt.metrics.event(source, "ignored", "unknown_ticket")
            continue
        by_channel.setdefault(conv.channel.value, []).append(
            IntakeEvent(dedup_key=reply.dedup_key, conversation_id=conv.id, event=reply)
        )
    accepted = 0
    # a delivery record names its channel, so one intake call per channel
    for channel, events in by_channel.items():
        accepted += sum(await _store(rt, account, source, Direction.OUTBOUND, channel, req, events))
    return accepted


async def queue_automated(
    rt: Runtime, reply: AgentReply, conversation_id: str, channel: str
) -> bool:
    """Queue a message deskbridge itself sends the customer (an off-hours answer, a
    consent notice): ``reply.automated`` must be set, so channels send it without an
    agent's tag. Once per ``reply.dedup_key``: True when it was new."""
    if not reply.automated:
        raise ValueError("an automated reply must say so (automated=True)")
    event = IntakeEvent(dedup_key=reply.dedup_key, conversation_id=conversation_id, event=reply)
    new = await rt.intake.accept(
        account=reply.account,
        source="deskbridge",
        direction=Direction.OUTBOUND,
        channel=channel,
        desk=reply.desk.value,
        req=None,
        events=[event],
    )
    return any(new)


async def queue_note(rt: Runtime, note: DeskNote, conversation_id: str) -> bool:
    """Queue an internal note for the agent as an inbound delivery of kind ``note`` in the
    conversation's lane (after the message it concerns), filed by ``deliver_to_desk`` with
    retries and dead letters like any message. Once per ``note.dedup_key`` (derived from
    its cause, so a retry of the causing delivery does not queue it twice): True when new."""
    event = IntakeEvent(dedup_key=note.dedup_key, conversation_id=conversation_id, event=note)
    new = await rt.intake.accept(
        account=note.account,
        source="deskbridge",
        direction=Direction.INBOUND,
        channel=note.channel.value,
        desk=rt.accounts.accounts[note.account].desk.type,
        req=None,
        events=[event],
        kind="note",
    )
    return any(new)


async def keep_unparseable(
    rt: Runtime,
    owners: Sequence[str],
    source: str,
    direction: Direction,
    req: RawRequest,
    error: str,
) -> None:
    """Keep a verified body we could not parse as a ``parse_failed`` dead letter under
    each of ``owners``, for re-ingest after a fix. Idempotent per body."""
    dedup_key = "body-" + hashlib.sha256(req.body).hexdigest()[:32]
    for account in owners:
        stored = await rt.intake.accept_parse_failed(
            account=account,
            source=source,
            direction=direction,
            channel=source,
            desk=rt.accounts.accounts[account].desk.type,
            req=req,
            error=error,
            dedup_key=dedup_key,
        )
        rt.metrics.event(source, "parse_failed" if stored else "duplicate", "parse")
    log.warning("%s: kept an unparseable body as a dead letter", source)


async def _store(
    rt: Runtime,
    account: str,
    source: str,
    direction: Direction,
    channel: str,
    req: RawRequest | None,
    events: list[IntakeEvent],
) -> list[bool]:
    """One intake call, counted; per event, whether it was new."""
    new = await rt.intake.accept(
        account=account,
        source=source,
        direction=direction,
        channel=channel,
        desk=rt.accounts.accounts[account].desk.type,
        req=req,
        events=events,
    )
    accepted = sum(new)
    rt.metrics.event(source, "accepted", "", n=accepted)
    rt.metrics.event(source, "duplicate", "", n=len(new) - accepted)
    return new
