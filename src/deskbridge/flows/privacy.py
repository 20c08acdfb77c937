"""Privacy by default (issue 10): retention sweeps, the right to erasure, the right of
access, and the first-contact consent notice. See docs/privacy.md. This module decides
what goes and in which order (desk first, under the lanes' locks); the walks over the
keys are ``store/erasure.py``'s.

Erasure and export read a contact's data across every account of its merge scope. The
audit entry of an erasure keeps the contact id (a random id that names nobody once the
data is gone) and counts, never values, digests of values or conversation ids (those
are keyed digests of a channel thread: whoever holds the lookup key could confirm a
guess).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from deskbridge.flows import deferred
from deskbridge.flows.automated import automated_reply
from deskbridge.flows.ingest import app_scopes, queue_automated
from deskbridge.flows.runtime import Runtime
from deskbridge.outbound.base import unconfirmed
from deskbridge.schemas import Channel, Delivery, Direction, Identity, Message
from deskbridge.store import new_id
from deskbridge.store.erasure import ErasurePlan
from deskbridge.store.graph import IdentityGraph

__all__ = ["ErasureBusy", "consent_notice", "export", "forget", "sweep_retention"]

log = logging.getLogger(__name__)

Clock = Callable[[], float]


class ErasureBusy(Exception):
    """A delivery of the contact's conversations is in flight; try again shortly."""


# --- consent notice ------------------------------------------------------------------------


async def consent_notice(rt: Runtime, d: Delivery, msg: Message, contact_id: str) -> bool:
    """Queue the account's consent notice for ``msg.channel`` to a contact the identity
    graph just created: once per contact and channel (``SET NX``), as an automated reply
    through the normal outbound path. True when queued."""
    acc = rt.accounts.accounts[d.account]
    notice = acc.notice_for(msg.channel)
    if notice is None:
        return False
    if not await rt.conversations.claim_consent(d.account, msg.channel.value, contact_id):
        return False
    # the reply job reads the conversation: make sure it exists before it can run
    await rt.conversations.ensure(
        d.account,
        d.conversation_id,
        msg.channel,
        msg.thread,
        contact_id,
        inbound_at=msg.occurred_at.timestamp(),
    )
    # the SET NX flag is what makes it once; a dedup key naming the contact would
    # outlive an erasure in the dedup mark's name
    reply = automated_reply(
        rt, d.account, dedup_key=f"consent:{new_id()}", ticket_id="", text=notice.message()
    )
    await queue_automated(rt, reply, d.conversation_id, msg.channel.value)
    rt.metrics.event("privacy", "consent_notice", msg.channel.value)
    return True


# --- retention -----------------------------------------------------------------------------


async def sweep_retention(rt: Runtime, *, clock: Clock = time.time) -> dict[str, int]:
    """Enforce what TTLs cannot: dead letters past ``dead_letters_days`` (with their
    events and raw bodies), raw-request index entries past the raw retention, sandbox
    tickets and outbox entries past the delivered retention, graph audit trails and the
    admin audit log past ``audit_days``. Returns counts by kind."""
    now_ms = int(clock() * 1000)
    out = {"dead_letters": 0, "raw_index": 0, "sandbox_tickets": 0, "sandbox_outbox": 0}
    out["graph_audit"] = out["admin_audit"] = 0
    longest_audit = 0
    graph = rt.conversations.graph
    scopes: dict[str, int] = {}
    for account in rt.accounts.accounts:
        r = rt.retention(account)
        longest_audit = max(longest_audit, r.audit_s)
        scope = rt.conversations.scope(account)
        scopes[scope] = max(scopes.get(scope, 0), r.audit_s)
        out["dead_letters"] += await _purge_dead(rt, account, now_ms - r.dead_s * 1000)
        for source in _sources(rt, account):
            out["raw_index"] += await rt.erasure.trim_raw_index(
                account, source, now_ms - r.raw_s * 1000
            )
        cutoff = now_ms / 1000 - r.delivered_s
        for ticket in await rt.erasure.sandbox_tickets_before(account, cutoff):
            await rt.erasure.drop_sandbox_ticket(account, ticket)
            out["sandbox_tickets"] += 1
        out["sandbox_outbox"] += await rt.erasure.filter_outbox(account, _sent_before(cutoff))
    for scope in app_scopes(rt):
        # what a platform app posted that named no account: the deployment's retention
        dead_s = rt.retention(scope).dead_s
        out["dead_letters"] += await _purge_dead(rt, scope, now_ms - dead_s * 1000)
    if graph is not None:
        for scope, audit_s in scopes.items():
            out["graph_audit"] += await graph.trim_audit(scope, now_ms - audit_s * 1000)
    if longest_audit:
        out["admin_audit"] = await rt.audit.trim(now_ms - longest_audit * 1000)
    if any(out.values()):
        log.info("retention sweep: %s", ", ".join(f"{k} {v}" for k, v in out.items() if v))
    return out


def _sent_before(cutoff: float) -> Callable[[dict[str, Any]], bool]:
    return lambda entry: float(entry.get("at", 0)) < cutoff


async def _purge_dead(rt: Runtime, account: str, before_ms: int) -> int:
    """Purge ``account``'s dead letters older than ``before_ms``; returns how many."""
    purged = 0
    for delivery_id in await rt.deliveries.dead_before(account, before_ms):
        d = await rt.deliveries.get(account, delivery_id)
        if d is None:
            await rt.erasure.unindex_dead(account, delivery_id)
            continue
        raw_id = await _event_raw_id(rt, d)
        if await rt.deliveries.purge(d, raw_id=raw_id, only_dead=True):
            purged += 1
    return purged


def _sources(rt: Runtime, account: str) -> list[str]:
    acc = rt.accounts.accounts[account]
    return sorted({ch.type for ch in acc.channels} | {acc.desk.type, "deskbridge"})


async def _event_raw_id(rt: Runtime, d: Delivery) -> str | None:
    if d.raw_id:
        return d.raw_id
    if not d.event_id:
        return None
    try:
        record = await rt.deliveries.event(d.account, d.event_id)
    except KeyError:
        return None
    raw_id = record.get("raw_id")
    return str(raw_id) if raw_id else None


# --- erasure -------------------------------------------------------------------------------


def _graph(rt: Runtime) -> IdentityGraph:
    graph = rt.conversations.graph
    if graph is None:  # pragma: no cover - every runtime builds one
        raise RuntimeError("this deployment has no identity graph")
    return graph


def _scope_accounts(rt: Runtime, account: str) -> list[str]:
    scope = rt.conversations.scope(account)
    return [a for a in rt.accounts.accounts if rt.conversations.scope(a) == scope]


async def _contact_ids(rt: Runtime, account: str, contact_id: str) -> set[str]:
    scope = rt.conversations.scope(account)
    return {contact_id} | await _graph(rt).aliases(scope, contact_id)


async def _conversations(rt: Runtime, account: str, ids: Iterable[str]) -> list[str]:
    found: set[str] = set()
    for cid in ids:
        found |= set(await rt.conversations.conversations_of(account, cid))
    return sorted(found)


async def _lock_lanes(rt: Runtime, account: str, convs: list[str], token: str) -> None:
    """Hold every lane of ``convs`` so no worker delivers while we erase: a worker holds
    its lane's lock for the whole attempt, so waiting for it waits for the attempt."""
    s = rt.settings
    ttl_ms = int((s.job_timeout_seconds + s.job_grace_seconds) * 1000) + 60_000
    deadline = time.monotonic() + s.job_timeout_seconds + s.job_grace_seconds
    for conv in convs:
        for direction in Direction:
            while not await rt.deliveries.lock_lane(account, direction, conv, token, ttl_ms):
                if time.monotonic() > deadline:
                    await _unlock_lanes(rt, account, convs, token)
                    raise ErasureBusy("a delivery of this contact is in flight; try again")
                await asyncio.sleep(0.1)


async def _unlock_lanes(rt: Runtime, account: str, convs: list[str], token: str) -> None:
    for conv in convs:
        for direction in Direction:
            await rt.deliveries.unlock_lane(account, direction, conv, token)


def _needles(identities: list[Identity], threads: list[str]) -> list[str]:
    """What marks a sandbox outbox entry as this person's (ids, numbers, addresses)."""
    out = {i.value for i in identities} | set(threads)
    out |= {i.value.lstrip("+") for i in identities if i.kind == "phone"}
    return sorted(x for x in out if len(x) >= 4)


async def _forget_account(
    rt: Runtime, account: str, ids: set[str], identities: list[Identity], report: dict[str, int]
) -> None:
    convs = await _conversations(rt, account, ids)
    token = new_id()
    await _lock_lanes(rt, account, convs, token)
    try:
        records = {c: await rt.conversations.get(account, c) for c in convs}
        delivered = await rt.erasure.deliveries_of(account, set(convs))
        raw_of = {d.id: await _event_raw_id(rt, d) for d in delivered}
        raw_ids = {r for r in raw_of.values() if r}
        # counted before the purge, which deletes most of them with their deliveries
        report["raw_requests"] += await rt.erasure.count_raw(account, raw_ids)
        for d in delivered:
            if await rt.deliveries.purge(d, raw_id=raw_of[d.id]):
                report["deliveries"] += 1
                report["dead_letters"] += d.state.value == "dead"
        threads = [rec.thread for rec in records.values() if rec is not None]
        plan = ErasurePlan(
            account=account,
            desk=rt.accounts.accounts[account].desk.type,
            contact_ids=frozenset(ids),
            identities=tuple(identities),
            conversations=tuple(convs),
            channels={c: rec.channel.value for c, rec in records.items() if rec is not None},
            delivery_ids=frozenset(d.id for d in delivered),
            raw_ids=frozenset(raw_ids),
            sources=tuple(_sources(rt, account)),
            needles=tuple(_needles(identities, threads)),
            visitors=tuple(
                rec.thread
                for rec in records.values()
                if rec is not None and rec.channel is Channel.WEBCHAT
            ),
        )
        await rt.erasure.erase(plan, report)
    finally:
        await _unlock_lanes(rt, account, convs, token)


async def _desk_users(rt: Runtime, accounts: list[str], ids: set[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for account in accounts:
        desk = rt.accounts.accounts[account].desk.type
        for cid in sorted(ids):
            user = await rt.conversations.desk_user(account, desk, cid)
            if user is not None:
                out.setdefault(account, user.partition("|")[0])
    return out


async def _desk_tickets(rt: Runtime, account: str, ids: set[str]) -> list[str]:
    tickets: set[str] = set()
    for conv in await _conversations(rt, account, ids):
        rec = await rt.conversations.get(account, conv)
        if rec is not None and rec.ticket_id:
            tickets.add(rec.ticket_id)
    return sorted(tickets)


async def _unconfirmed_report(
    rt: Runtime,
    account: str,
    contact_id: str,
    accounts: list[str],
    desk_report: list[dict[str, Any]],
    who: str,
) -> dict[str, Any]:
    await rt.audit.record(
        who,
        "contacts.forget",
        0,
        {
            "account": account,
            "contact": contact_id,
            "desk": [
                {"account": x["account"], "steps": len(x["done"]), "confirmed": x["confirmed"]}
                for x in desk_report
            ],
        },
    )
    rt.metrics.event("privacy", "forget", "unconfirmed")
    return {
        "contact": contact_id,
        "account": account,
        "accounts": accounts,
        "removed": {},
        "desk": desk_report,
        "aof_rewrite": "not needed",
        "nothing_left": False,
        "confirmed": False,
    }


async def forget(
    rt: Runtime, account: str, contact_id: str, *, at_desk: bool, who: str
) -> dict[str, Any]:
    """Erase everything deskbridge holds about a contact (docs/privacy.md, in order):
    the desk user and tickets first when ``at_desk`` (a desk failure raises
    ``DeliveryError`` before anything local changed, so the erasure can be retried;
    a desk step not read back as gone returns ``confirmed: false`` and erases nothing
    local, so a later run finds the desk ids again),
    then its conversations' deliveries, events and raw requests (under the lanes'
    locks, so no worker delivers meanwhile), conversations, sandbox tickets and outbox
    entries, contact records, the identity graph; then the audit entry and an
    append-only-file rewrite. Idempotent: a second run removes nothing."""
    graph = _graph(rt)
    scope = rt.conversations.scope(account)
    contact_id = await graph.resolve(scope, contact_id)
    ids = await _contact_ids(rt, account, contact_id)
    identities = await graph.members(scope, contact_id)
    accounts = _scope_accounts(rt, account)
    desk_report: list[dict[str, Any]] = []
    if at_desk:
        for acc_name, user_id in (await _desk_users(rt, accounts, ids)).items():
            connector = rt.desk(acc_name)
            if connector is None:
                continue
            tickets = await _desk_tickets(rt, acc_name, ids)
            done = await connector.forget_user(user_id, tickets=tickets)
            desk_report.append(
                {
                    "account": acc_name,
                    "desk": connector.desk.value,
                    "done": done,
                    "confirmed": not unconfirmed(done),
                }
            )
    if not all(x["confirmed"] for x in desk_report):
        # keep the desk user and ticket ids so that a later run can read them back again
        return await _unconfirmed_report(rt, account, contact_id, accounts, desk_report, who)
    counts = dict.fromkeys(
        (
            "deliveries",
            "dead_letters",
            "raw_requests",
            "dedup_marks",
            "sent_marks",
            "conversations",
            "sandbox_tickets",
            "sandbox_outbox",
            "contact_records",
            "identity_index",
            "webchat_histories",
            "webchat_files",
        ),
        0,
    )
    for acc_name in accounts:
        await _forget_account(rt, acc_name, ids, identities, counts)
    counts.update(await graph.forget(scope, contact_id))
    nothing = not any(counts.values()) and not any(x["done"] for x in desk_report)
    await rt.audit.record(
        who,
        "contacts.forget",
        0 if nothing else 1,
        {
            "account": account,
            "contact": contact_id,
            "removed": {k: v for k, v in counts.items() if v},
            "desk": [
                {"account": x["account"], "steps": len(x["done"]), "confirmed": True}
                for x in desk_report
            ],
        },
    )
    rewrite = await rt.erasure.rewrite_aof() if not nothing else "not needed"
    rt.metrics.event("privacy", "forget", "nothing" if nothing else "erased")
    log.info("contact %s erased (%d keys groups)", contact_id, sum(counts.values()))
    return {
        "contact": contact_id,
        "account": account,
        "accounts": accounts,
        "removed": counts,
        "desk": desk_report,
        "aof_rewrite": rewrite,
        "nothing_left": nothing,
        "confirmed": True,
    }


# --- access --------------------------------------------------------------------------------


def _identity(i: Identity) -> dict[str, Any]:
    return {
        "kind": i.kind,
        "channel": i.channel.value if i.channel else None,
        "value": i.value,
        "strength": i.strength,
        "source": i.source,
    }


async def export(rt: Runtime, account: str, contact_id: str) -> dict[str, Any]:
    """Everything deskbridge holds about a contact, as one JSON-ready document
    (docs/privacy.md, "Export format"). Message bodies are decrypted."""
    graph = _graph(rt)
    scope = rt.conversations.scope(account)
    contact_id = await graph.resolve(scope, contact_id)
    ids = await _contact_ids(rt, account, contact_id)
    members = await graph.members(scope, contact_id)
    doc: dict[str, Any] = {
        "format": "deskbridge.contact-export/1",
        "exported_at": datetime.now(UTC).isoformat(),
        "contact_id": contact_id,
        "merged_contact_ids": sorted(ids - {contact_id}),
        "scope": scope,
        "identities": [_identity(i) for i in members],
        "edges": [
            {"a": _identity(e.a), "b": _identity(e.b), "merging": e.merging, "evidence": e.evidence}
            for e in await graph.edges(scope, contact_id)
        ],
        "suggestions": [
            {"contacts": list(s.contacts), "reason": s.reason, "at": s.at, "source": s.source}
            for s in await graph.suggestions_of(scope, ids)
        ],
        "accounts": [],
    }
    for acc_name in _scope_accounts(rt, account):
        contact = await rt.conversations.contact(acc_name, contact_id)
        desk = rt.accounts.accounts[acc_name].desk.type
        users = await _desk_users(rt, [acc_name], ids)
        convs_out = []
        convs = await _conversations(rt, acc_name, ids)
        deliveries = await rt.erasure.deliveries_of(acc_name, set(convs))
        for conv in convs:
            rec = await rt.conversations.get(acc_name, conv)
            if rec is None:
                continue
            mine = sorted((d for d in deliveries if d.conversation_id == conv), key=lambda d: d.id)
            convs_out.append(
                {
                    "id": conv,
                    "channel": rec.channel.value,
                    "thread": rec.thread,
                    "ticket_id": rec.ticket_id,
                    "context": rec.context,
                    "last_inbound_at": rec.last_inbound_at,
                    "deliveries": [await _delivery_doc(rt, d) for d in mine],
                }
            )
        if contact is None and not convs_out and not users:
            continue
        doc["accounts"].append(
            {
                "account": acc_name,
                "contact": json.loads(contact.model_dump_json()) if contact else None,
                "desk": desk,
                "desk_user_id": users.get(acc_name),
                "conversations": convs_out,
            }
        )
    return doc


async def _delivery_doc(rt: Runtime, d: Delivery) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(d.model_dump_json())
    out["attempt_log"] = [
        json.loads(a.model_dump_json(exclude_none=True))
        for a in await rt.deliveries.attempts(d.account, d.id)
    ]
    if d.event_id:
        # an event not parsed yet (the deferred parse) is parsed for the export, not stored
        record = await deferred.record_of(rt, d, write=False)
        out["event"] = record["event"] if record else None
    raw_id = await _event_raw_id(rt, d)
    raw = await rt.deliveries.raw_request(d.account, raw_id) if raw_id else None
    out["raw_request"] = (
        {
            "method": raw.method,
            "path": raw.path,
            "body": raw.body.decode("utf-8", "replace"),
        }
        if raw is not None
        else None
    )
    return out
