"""Taking events in: the one path from a verified request (or a listener, a poller, a
re-ingest, the sandbox, deskbridge itself) to the intake script.

Every function here returns only after the intake script stored what it was given, so a
caller may acknowledge as soon as it returns; each raises ``StoreUnavailable`` when the
store cannot take the events (the caller answers 503, or tries again later).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Iterable, Mapping, Sequence

from deskbridge.adapters.base import Parsed, Peeked
from deskbridge.flows.runtime import Runtime
from deskbridge.schemas import (
    AgentReply,
    Channel,
    DeskNote,
    Direction,
    InboundEvent,
    RawRequest,
)
from deskbridge.store import IgnoredItem, IntakeEvent

__all__ = [
    "APP_SCOPE",
    "accept_account_events",
    "accept_events",
    "accept_peeked",
    "accept_replies",
    "app_scope",
    "app_scopes",
    "body_key",
    "has_ignored",
    "keep_failures",
    "keep_unparseable",
    "queue_automated",
    "queue_note",
    "record_ignored",
]

APP_SCOPE = "app:"
"""The prefix of a platform app's own store scope (``app:<name>``): where a body, or an
item of one, that names no account is kept. Account names cannot contain ``:``."""


def app_scope(app: str) -> str:
    """The store scope of the platform app ``app`` (a Meta app's name under ``apps:``)."""
    return APP_SCOPE + app


def app_scopes(rt: Runtime) -> list[str]:
    """The store scope of every configured platform app, sorted."""
    return [app_scope(a) for a in sorted(rt.accounts.apps)]


log = logging.getLogger(__name__)


async def accept_events(
    rt: Runtime,
    source: str,
    req: RawRequest | None,
    events: Iterable[InboundEvent],
    bodies: Mapping[str, bytes] | None = None,
    *,
    raw_id: str | None = None,
) -> int:
    """Store inbound events, each under the account it names (one Meta batch may carry
    several accounts); returns how many were new. ``bodies``: each account's cut of a
    body that is not one account's alone (``Parsed.bodies``): the raw record kept under
    an account holds only its own cut, never another account's entries. ``raw_id``: the
    id the raw request is kept under. Events the dedup marks already knew are recorded
    as ignored ``duplicate`` items (by their provider's id)."""
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
        raw = req
        if req is not None and bodies is not None:
            raw = dataclasses.replace(req, body=bodies.get(account, b""))
        fresh = await _store(
            rt, account, source, Direction.INBOUND, source, raw, batch, raw_id=raw_id
        )
        new += sum(fresh)
        repeated = [
            IgnoredItem("duplicate", ev.dedup_key)
            for ev, ok in zip(batch, fresh, strict=True)
            if not ok
        ]
        if repeated:
            await rt.intake.ignore(account=account, source=source, req=None, items=repeated)
    return new


async def accept_peeked(
    rt: Runtime, source: str, req: RawRequest, peeked: Peeked, *, raw_id: str
) -> bool:
    """Store the one item a receiver's ``peek`` read (the deferred parse: the worker
    parses the stored request, ``flows/deferred.py``) under ``raw_id``; True when new. A
    duplicate is recorded as ignored, as ``accept_events`` records one."""
    account = peeked.account
    new = await rt.intake.accept_deferred(
        account=account,
        source=source,
        desk=rt.accounts.accounts[account].desk.type,
        req=req,
        dedup_key=peeked.dedup_key,
        conversation_id=rt.conversations.conversation_id(account, Channel(source), peeked.thread),
        raw_id=raw_id,
    )
    if new:
        rt.metrics.event(source, "accepted", "")
    else:
        rt.metrics.event(source, "duplicate", "")
        duplicate = [IgnoredItem("duplicate", peeked.dedup_key)]
        await rt.intake.ignore(account=account, source=source, req=None, items=duplicate)
    return new


async def record_ignored(
    rt: Runtime,
    source: str,
    req: RawRequest | None,
    parsed: Parsed,
    *,
    account: str | None,
    raw_id: str | None = None,
) -> None:
    """Count and keep every item of ``parsed`` that was read and deliberately not filed
    (DESIGN invariant 10): ``Parsed.ignored`` (reasons of ``account``, the URL's) and
    ``Parsed.skipped`` (each of its own account, else of the app that signed the body);
    a request that brought nothing at all is one ``unhandled`` item. Each account's
    records sit with its raw request (its own cut of the body) under ``raw_id``; an
    app's records keep no body (it may hold several accounts' entries)."""
    owned: dict[str, list[IgnoredItem]] = {}
    if account and parsed.ignored:
        owned[account] = [IgnoredItem(reason) for reason in parsed.ignored]
    for reason in parsed.ignored:
        rt.metrics.event(source, "ignored", reason)
    for item in parsed.skipped:
        owner = item.account or (app_scope(item.app) if item.app else account)
        if item.reason != "unrouted":  # counted with its number (Parsed.unrouted)
            rt.metrics.event(source, "ignored", item.reason)
        if owner:
            owned.setdefault(owner, []).append(IgnoredItem(item.reason, item.provider_id))
    if not parsed.events and not parsed.ignored and not parsed.failures and not parsed.skipped:
        rt.metrics.event(source, "ignored", "unhandled")
        if account:
            owned[account] = [IgnoredItem("unhandled")]
    for owner, items in owned.items():
        raw = req
        if owner.startswith(APP_SCOPE):
            raw = None
        elif req is not None and parsed.bodies is not None:
            raw = dataclasses.replace(req, body=parsed.bodies.get(owner, b""))
        await rt.intake.ignore(account=owner, source=source, req=raw, items=items, raw_id=raw_id)


def has_ignored(parsed: Parsed) -> bool:
    """Whether ``record_ignored`` has anything to count or keep for ``parsed``."""
    return bool(parsed.ignored or parsed.skipped or not (parsed.events or parsed.failures))


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


def body_key(body: bytes) -> str:
    """The dedup key of a body kept as a ``parse_failed`` dead letter: the body itself
    (the items of a body we cannot read have no keys we could trust)."""
    return "body-" + hashlib.sha256(body).hexdigest()[:32]


async def keep_unparseable(
    rt: Runtime,
    owners: Sequence[str],
    source: str,
    direction: Direction,
    req: RawRequest,
    error: str,
    dedup_key: str | None = None,
) -> None:
    """Keep a verified body we could not parse as a ``parse_failed`` dead letter under
    each of ``owners`` (accounts, or an ``app_scope``), for re-ingest after a fix.
    Idempotent per ``dedup_key`` (default: per body)."""
    dedup_key = dedup_key or body_key(req.body)
    for account in owners:
        acc = rt.accounts.accounts.get(account)
        stored = await rt.intake.accept_parse_failed(
            account=account,
            source=source,
            direction=direction,
            channel=source,
            desk=acc.desk.type if acc is not None else "",
            req=req,
            error=error,
            dedup_key=dedup_key,
        )
        rt.metrics.event(source, "parse_failed" if stored else "duplicate", "parse")
    log.warning("%s: kept an unparseable body as a dead letter", source)


async def keep_failures(rt: Runtime, source: str, req: RawRequest, parsed: Parsed) -> None:
    """Keep each item of a batch that could not be read as a ``parse_failed`` dead letter
    of the account that owns it, holding only that item's record (``ItemFailure.body``);
    an item that names no owner goes to its app's scope (``ItemFailure.app``), and is dropped
    with a warning only when there is no app either (which no receiver produces).
    Idempotent per item."""
    for failure in parsed.failures:
        owner = failure.account
        if owner is None and failure.app is not None:
            owner = app_scope(failure.app)
        if owner is None:  # pragma: no cover - per-account receivers always name one
            log.warning("%s: an unreadable item names no owner; not kept", source)
            continue
        await keep_unparseable(
            rt,
            [owner],
            source,
            Direction.INBOUND,
            dataclasses.replace(req, body=failure.body),
            failure.error,
            dedup_key=failure.key,
        )


async def _store(
    rt: Runtime,
    account: str,
    source: str,
    direction: Direction,
    channel: str,
    req: RawRequest | None,
    events: list[IntakeEvent],
    *,
    raw_id: str | None = None,
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
        raw_id=raw_id,
    )
    accepted = sum(new)
    rt.metrics.event(source, "accepted", "", n=accepted)
    rt.metrics.event(source, "duplicate", "", n=len(new) - accepted)
    return new
