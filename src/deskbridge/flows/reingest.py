"""Re-ingest: kept raw requests parsed again by today's receivers and fed through the
normal intake, for when a parser bug mis-read traffic and the fix is deployed.

Semantics (docs/admin.md states them for operators):

- The request is not verified again: only verified requests were kept, and the secret
  headers that proved it were never stored.
- Only the events of the raw request's own account are taken (a Meta batch kept under
  each account it concerned is re-ingested per account; records kept since batches are
  cut per account hold only that account's part). A record kept under a platform app's
  own scope (``app:<name>``: a body or item that named no account) gives each event it
  now yields to the account that event names, as the live webhook would.
- An item that still cannot be read leaves the dead letter in place and is reported as
  an error; the items that now parse are taken.
- Intake deduplicates as for a live webhook: an event whose dedup mark is still there is
  reported as a duplicate with the state of the delivery that took it, and is not stored
  again. Dedup marks live ``DESKBRIDGE_DEDUP_TTL_SECONDS``; a request stored with events
  and older than that is refused unless ``allow_duplicates`` (its events could reach the
  desk twice). A ``parse_failed`` body never had events, so it has no such limit.
- A ``parse_failed`` dead letter whose body now parses is discarded (reason
  ``re-ingested``, by the caller), so it leaves the dead letters.
- A dry run parses and looks up dedup marks, and writes nothing.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

from deskbridge.adapters.base import Receiver
from deskbridge.adapters.sip.receiver import SipReceiver, StoredSip
from deskbridge.adapters.webchat.stored import StoredWebchat
from deskbridge.config import (
    InstagramConfig,
    MessengerConfig,
    SipConfig,
    WebchatConfig,
    WhatsAppConfig,
)
from deskbridge.errors import ParseFailed, RequestRefused
from deskbridge.flows.ingest import APP_SCOPE, accept_account_events, accept_replies, app_scope
from deskbridge.flows.runtime import Runtime
from deskbridge.schemas import AgentReply, Channel, InboundEvent, RawRequest
from deskbridge.store import IntakeEvent
from deskbridge.store.listing import RawEntry

__all__ = ["RawOutcome", "reingest_one"]


@dataclass(slots=True)
class RawOutcome:
    """What re-ingesting one kept request did (or, in a dry run, would do)."""

    id: str
    account: str
    source: str
    parse_failed: bool
    events: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    def counts(self) -> dict[str, int]:
        out = {"new": 0, "duplicate": 0, "ignored": 0}
        for ev in self.events:
            out[ev["status"]] += 1
        return out

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "account": self.account,
            "source": self.source,
            "parse_failed": self.parse_failed,
            "events": self.events,
            **self.counts(),
        }
        if self.error is not None:
            body["error"] = self.error
        return body


async def _taken_by(rt: Runtime, account: str, source: str, dedup_key: str) -> dict[str, Any]:
    """A duplicate's delivery (the dedup mark holds the event id, which its first
    delivery shares) and its state; None values once the record expired."""
    held = await rt.listing.dedup_mark(account, source, dedup_key)
    if held is None:
        return {"status": "new"}
    delivery_id = held.decode()
    d = await rt.deliveries.get(account, delivery_id)
    return {
        "status": "duplicate",
        "delivery_id": delivery_id,
        "state": d.state.value if d is not None else "expired",
    }


async def reingest_one(
    rt: Runtime,
    entry: RawEntry,
    *,
    who: str,
    dry_run: bool,
    allow_duplicates: bool,
) -> RawOutcome:
    """Parse one kept request again and take its new events in. Never raises for the
    request's content; ``StoreUnavailable`` propagates."""
    account, source = entry.account, entry.source
    out = RawOutcome(entry.id, account, source, parse_failed=entry.delivery_id is not None)
    found = await rt.listing.raw(account, entry.id)
    if found is None:
        out.error = "the raw request has expired"
        return out
    meta, body = found
    if not out.parse_failed and not allow_duplicates:
        window_ms = rt.settings.dedup_ttl_seconds * 1000
        if entry.received_at.timestamp() * 1000 < time.time() * 1000 - window_ms:
            out.error = (
                "older than the dedup window: its events could reach the desk twice "
                "(allow_duplicates to take it anyway)"
            )
            return out
    req = RawRequest(
        method=str(meta.get("method", "POST")),
        path=str(meta.get("path", "")),
        query=dict(meta.get("query") or {}),
        headers=dict(meta.get("headers") or {}),
        body=body,
    )
    desk = rt.desk(account)
    try:
        if desk is not None and source == desk.desk.value:
            # records kept before secrets were declared may still hold them: not again
            await _replies(rt, out, req.scrubbed(desk.secret_headers, desk.secret_query), dry_run)
        else:
            await _channel(rt, out, req, dry_run)
    except ParseFailed as exc:
        out.error = f"still does not parse: {exc}"[:300]
        return out
    except RequestRefused as exc:
        out.error = f"refused by today's parser: {exc}"[:300]
        return out
    if out.parse_failed and not dry_run and entry.delivery_id is not None:
        dead = await rt.deliveries.get(account, entry.delivery_id)
        if dead is not None:
            await rt.deliveries.discard(
                dead, who, "re-ingested", retention_s=rt.retention(dead.account).delivered_s
            )
    return out


def _receiver(rt: Runtime, source: str, scope: str) -> Receiver | None:
    """The receiver that reads ``source`` for an account, or for an app's own scope the
    app's receiver (the one of any account that names the app)."""
    if not scope.startswith(APP_SCOPE):
        return rt.receiver(source, scope)
    for name, acc in rt.accounts.accounts.items():
        for ch in acc.channels:
            if isinstance(ch, WhatsAppConfig | MessengerConfig | InstagramConfig) and (
                ch.type == source and app_scope(ch.app) == scope
            ):
                return rt.receiver(source, name)
    return None


async def _channel(rt: Runtime, out: RawOutcome, req: RawRequest, dry_run: bool) -> None:
    """Events of the record's own scope: an account takes only its own events; an app's
    record (items that named no account) gives each event to the account it now names.
    Items that still cannot be read raise ``ParseFailed`` after the rest were taken."""
    scope, source = out.account, out.source
    receiver = _receiver(rt, source, scope) or _stored_receiver(rt, source, scope)
    if receiver is None:
        raise RequestRefused(f"channel {source} is not configured for {scope}")
    req = req.scrubbed(receiver.secret_headers, receiver.secret_query)
    parsed = receiver.parse(req)
    app = scope.startswith(APP_SCOPE)
    by_account: dict[str, list[InboundEvent]] = {}
    for ev in parsed.events:
        if app or ev.account == scope:
            by_account.setdefault(ev.account, []).append(ev)
    for account, events in by_account.items():
        raw = req
        if parsed.bodies is not None:
            raw = dataclasses.replace(req, body=parsed.bodies.get(account, b""))
        await _take(rt, out, account, raw, events, dry_run)
    left = [f for f in parsed.failures if (f.account is None if app else f.account == scope)]
    if left:
        raise ParseFailed(left[0].error)


async def _take(
    rt: Runtime,
    out: RawOutcome,
    account: str,
    req: RawRequest,
    parsed: list[InboundEvent],
    dry_run: bool,
) -> None:
    source = out.source
    events = [
        IntakeEvent(
            dedup_key=ev.dedup_key,
            conversation_id=rt.conversations.conversation_id(account, ev.channel, ev.thread),
            event=ev,
        )
        for ev in parsed
    ]
    # whether an event is a duplicate is known before the write; the write decides
    before = [await _taken_by(rt, account, source, ev.dedup_key) for ev in events]
    new = [t["status"] == "new" for t in before]
    if not dry_run and events:
        new = await accept_account_events(rt, account, Channel(source).value, req, events)
    for ev, ie, taken, is_new in zip(parsed, events, before, new, strict=True):
        entry: dict[str, Any] = {"kind": ev.kind, "conversation_id": ie.conversation_id}
        if account != out.account:
            entry["account"] = account
        if is_new and not dry_run:
            entry |= await _taken_by(rt, account, source, ev.dedup_key)
            entry["status"] = "new"
        elif is_new:
            entry["status"] = "new"
        else:
            entry |= taken if taken["status"] == "duplicate" else {"status": "duplicate"}
        out.events.append(entry)


def _stored_receiver(rt: Runtime, source: str, account: str) -> Receiver | None:
    """SIP and the widget have no webhook URL, so no receiver in the registry: the
    parser of what their listener or socket kept."""
    acc = rt.accounts.accounts.get(account)
    config = acc.channel(Channel(source)) if acc is not None and source in _STORED else None
    if isinstance(config, SipConfig):
        return StoredSip(SipReceiver(account, config))
    if isinstance(config, WebchatConfig):
        return StoredWebchat(account)
    return None


_STORED = (Channel.SIP.value, Channel.WEBCHAT.value)


async def _replies(rt: Runtime, out: RawOutcome, req: RawRequest, dry_run: bool) -> None:
    """A desk's agent-reply webhook kept raw: parsed by the desk connector, queued as the
    live route does (the loop guard and unknown tickets still apply)."""
    desk = rt.desk(out.account)
    assert desk is not None
    replies: list[AgentReply] = desk.parse_webhook(req)
    before = [await _taken_by(rt, out.account, out.source, r.dedup_key) for r in replies]
    if not dry_run and any(t["status"] == "new" for t in before):
        await accept_replies(rt, out.account, out.source, req, replies)
    for reply, taken in zip(replies, before, strict=True):
        if taken["status"] == "new" and not dry_run:
            after = await _taken_by(rt, out.account, out.source, reply.dedup_key)
            # the loop guard or an unknown ticket leaves no mark: nothing was queued
            taken = (
                {**after, "status": "new"} if after["status"] != "new" else {"status": "ignored"}
            )
        out.events.append({"kind": "agent_reply", **taken})
