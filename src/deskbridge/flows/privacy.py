"""Privacy by default (issue 10): retention sweeps, the right to erasure, the right of
access, and the first-contact consent notice. See docs/privacy.md.

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

from redis.exceptions import RedisError, ResponseError

from deskbridge.flows.runtime import Runtime
from deskbridge.schemas import AgentReply, Channel, Delivery, Desk, Direction, Identity, Message
from deskbridge.store import IntakeEvent, keys, new_id
from deskbridge.store.audit import AuditLog
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
    flag = keys.consent(d.account, msg.channel.value, contact_id)
    if not await rt.redis.set(flag, str(int(time.time())), nx=True):
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
    reply = AgentReply(
        account=d.account,
        desk=Desk(acc.desk.type),
        # the SET NX flag is what makes it once; a dedup key naming the contact would
        # outlive an erasure in the dedup mark's name
        dedup_key=f"consent:{new_id()}",
        ticket_id="",
        external_id=f"consent:{new_id()}",
        text=notice.message(),
        author_name="deskbridge",
        automated=True,
        occurred_at=datetime.now(UTC),
    )
    await rt.intake.accept(
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
        for delivery_id in await rt.deliveries.dead_before(account, now_ms - r.dead_s * 1000):
            d = await rt.deliveries.get(account, delivery_id)
            if d is None:
                await rt.redis.zrem(keys.dead(account), delivery_id)
                continue
            raw_id = await _event_raw_id(rt, d)
            if await rt.deliveries.purge(d, raw_id=raw_id, only_dead=True):
                out["dead_letters"] += 1
        for source in _sources(rt, account):
            out["raw_index"] += int(
                await rt.redis.zremrangebyscore(
                    keys.raws(account, source), "-inf", f"({now_ms - r.raw_s * 1000}"
                )
            )
        cutoff = now_ms / 1000 - r.delivered_s
        old = await rt.redis.zrangebyscore(keys.sandbox_tickets(account), "-inf", f"({cutoff}")
        for raw_ticket in old:
            await _drop_sandbox_ticket(rt, account, raw_ticket.decode())
            out["sandbox_tickets"] += 1
        out["sandbox_outbox"] += await _filter_outbox(
            rt, account, lambda entry, c=cutoff: float(entry.get("at", 0)) < c
        )
    if graph is not None:
        for scope, audit_s in scopes.items():
            out["graph_audit"] += await graph.trim_audit(scope, now_ms - audit_s * 1000)
    if longest_audit:
        out["admin_audit"] = int(
            await rt.redis.xtrim(
                keys.AUDIT, minid=str(now_ms - longest_audit * 1000), approximate=False
            )
        )
    if any(out.values()):
        log.info("retention sweep: %s", ", ".join(f"{k} {v}" for k, v in out.items() if v))
    return out


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


async def _drop_sandbox_ticket(rt: Runtime, account: str, ticket_id: str) -> None:
    pipe = rt.redis.pipeline(transaction=True)
    pipe.delete(keys.sandbox_ticket(account, ticket_id), keys.sandbox_messages(account, ticket_id))
    pipe.zrem(keys.sandbox_tickets(account), ticket_id)
    await pipe.execute()


async def _filter_outbox(rt: Runtime, account: str, drop: Callable[[dict[str, Any]], bool]) -> int:
    """Remove the sandbox outbox entries ``drop`` picks (LREM by value: safe against
    concurrent pushes)."""
    key = keys.sandbox_outbox(account)
    removed = 0
    for blob in await rt.redis.lrange(key, 0, -1):
        entry = json.loads(rt.vault.open(blob, key))
        if drop(entry):
            removed += int(await rt.redis.lrem(key, 0, blob))
    return removed


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


async def _deliveries_of(rt: Runtime, account: str, convs: set[str]) -> list[Delivery]:
    """Every delivery of ``convs``: the listing index, dead letters and pending work."""
    ids: set[str] = set()
    for key in (keys.deliveries(account), keys.dead(account), keys.pending(account)):
        ids |= {x.decode() for x in await rt.redis.zrange(key, 0, -1)}
    for conv in convs:
        for direction in Direction:
            lane = await rt.redis.lrange(keys.lane(account, direction.value, conv), 0, -1)
            ids |= {x.decode() for x in lane}
    ordered = sorted(ids)
    out: list[Delivery] = []
    for start in range(0, len(ordered), 500):
        chunk = ordered[start : start + 500]
        pipe = rt.redis.pipeline(transaction=False)
        for i in chunk:
            pipe.hget(keys.delivery(account, i), "conversation_id")
        owners = await pipe.execute()
        mine = [i for i, c in zip(chunk, owners, strict=True) if c and c.decode() in convs]
        got = await rt.deliveries.get_many([(account, i) for i in mine])
        out += [d for d in got if d is not None]
    return out


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


async def _scan_values(rt: Runtime, pattern: str, values: set[str]) -> list[str]:
    """Keys matching ``pattern`` whose string value is one of ``values``."""
    found: list[str] = []
    if not values:
        return found
    batch: list[bytes] = []

    async def check(names: list[bytes]) -> None:
        got = await rt.redis.mget(names)
        found.extend(
            n.decode() for n, v in zip(names, got, strict=True) if v and v.decode() in values
        )

    async for name in rt.redis.scan_iter(match=pattern, count=1000):
        batch.append(name)
        if len(batch) >= 500:
            await check(batch)
            batch = []
    if batch:
        await check(batch)
    return found


def _needles(identities: list[Identity], threads: list[str]) -> list[str]:
    """What marks a sandbox outbox entry as this person's (ids, numbers, addresses)."""
    out = {i.value for i in identities} | set(threads)
    out |= {i.value.lstrip("+") for i in identities if i.kind == "phone"}
    return sorted(x for x in out if len(x) >= 4)


async def _forget_account(
    rt: Runtime, account: str, ids: set[str], identities: list[Identity], report: dict[str, int]
) -> None:
    r = rt.redis
    desk = rt.accounts.accounts[account].desk.type
    convs = await _conversations(rt, account, ids)
    token = new_id()
    await _lock_lanes(rt, account, convs, token)
    try:
        records = {c: await rt.conversations.get(account, c) for c in convs}
        raw_hashes = {c: await r.hgetall(keys.conversation(account, c)) for c in convs}
        delivered = await _deliveries_of(rt, account, set(convs))
        delivery_ids = {d.id for d in delivered}
        raw_ids: set[str] = set()
        for d in delivered:
            raw_id = await _event_raw_id(rt, d)
            if raw_id:
                raw_ids.add(raw_id)
            if await rt.deliveries.purge(d, raw_id=raw_id):
                report["deliveries"] += 1
                report["dead_letters"] += d.state.value == "dead"
        if raw_ids:
            report["raw_requests"] += int(await r.delete(*(keys.raw(account, i) for i in raw_ids)))
            for source in _sources(rt, account):
                await r.zrem(keys.raws(account, source), *raw_ids)
        # dedup marks keep their place (a redelivery must not bring the data back) but
        # forget which delivery they led to
        for name in await _scan_values(rt, keys.dedup(account, "*", "*"), delivery_ids):
            await r.set(name, "erased", keepttl=True)
            report["dedup_marks"] += 1
        for name in await _scan_values(rt, keys.sent(account, "*", "*"), delivery_ids):
            report["sent_marks"] += int(await r.delete(name))
        tickets: set[str] = set()
        for conv in convs:
            h = raw_hashes[conv]
            rec = records[conv]
            ticket = h.get(b"ticket_id", b"").decode()
            conv_desk = h.get(b"desk", desk.encode()).decode()
            pipe = r.pipeline(transaction=False)
            pipe.delete(keys.conversation(account, conv), keys.sent_by_time(account, conv))
            for direction in Direction:
                pipe.delete(keys.lane(account, direction.value, conv))
            if rec is not None:
                pipe.zrem(keys.awaiting(account), f"{rec.channel.value}|{conv}")
            if ticket:
                tickets.add(ticket)
                pipe.delete(
                    keys.ticket(account, conv_desk, ticket),
                    keys.ticket_updates(account, conv_desk, ticket),
                    keys.udesk_relayed(account, ticket),
                )
                pipe.zrem(keys.udesk_active(account), ticket)
            await pipe.execute()
            report["conversations"] += 1
        for cid in ids:
            shared = await r.get(keys.contact_ticket(account, desk, cid))
            if shared:
                tickets.add(shared.decode().partition("|")[0])
        if desk == Desk.SANDBOX.value:
            for ticket in sorted(tickets):
                if await r.exists(keys.sandbox_ticket(account, ticket)):
                    report["sandbox_tickets"] += 1
                await _drop_sandbox_ticket(rt, account, ticket)
            await _drop_sandbox_idempotency(rt, account, tickets, delivery_ids)
        threads = [rec.thread for rec in records.values() if rec is not None]
        needles = _needles(identities, threads)
        report["sandbox_outbox"] += await _filter_outbox(
            rt, account, lambda entry: any(n in json.dumps(entry) for n in needles)
        )
        for cid in ids:
            removed = await r.delete(
                keys.contact(account, cid),
                keys.contact_conversations(account, cid),
                keys.contact_ticket(account, desk, cid),
                keys.desk_user(account, desk, cid),
                *(keys.consent(account, c.value, cid) for c in Channel),
            )
            report["contact_records"] += int(removed)
        legacy = await _scan_values(rt, keys.identity(account, "*"), ids)
        if legacy:
            report["identity_index"] += int(await r.delete(*legacy))
        for ident in identities:
            if ident.kind == "channel_user" and ident.channel is not None:
                digest = rt.vault.digest("profile", account, ident.channel.value, ident.value)
                await r.delete(keys.profile(account, ident.channel.value, digest))
    finally:
        await _unlock_lanes(rt, account, convs, token)


async def _drop_sandbox_idempotency(
    rt: Runtime, account: str, tickets: set[str], delivery_ids: set[str]
) -> None:
    """The sandbox's idempotency marks of these tickets (their values are ticket and
    message ids ``ticket-n``; their names carry delivery ids)."""
    names = [
        n
        async for n in rt.redis.scan_iter(match=keys.sandbox_idempotency(account, "*"), count=1000)
    ]
    if not names:
        return
    values = await rt.redis.mget(names)
    doomed = []
    for name, value in zip(names, values, strict=True):
        v = value.decode() if value else ""
        if (
            v in tickets
            or v.partition("-")[0] in tickets
            or any(i in name.decode() for i in delivery_ids)
        ):
            doomed.append(name)
    if doomed:
        await rt.redis.delete(*doomed)


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


async def forget(
    rt: Runtime, account: str, contact_id: str, *, at_desk: bool, who: str
) -> dict[str, Any]:
    """Erase everything deskbridge holds about a contact (docs/privacy.md, in order):
    the desk user and tickets first when ``at_desk`` (a desk failure raises
    ``DeliveryError`` before anything local changed, so the erasure can be retried),
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
            desk_report.append({"account": acc_name, "desk": connector.desk.value, "done": done})
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
        ),
        0,
    )
    for acc_name in accounts:
        await _forget_account(rt, acc_name, ids, identities, counts)
    counts.update(await graph.forget(scope, contact_id))
    nothing = not any(counts.values()) and not any(x["done"] for x in desk_report)
    await AuditLog(rt.redis).record(
        who,
        "contacts.forget",
        0 if nothing else 1,
        {
            "account": account,
            "contact": contact_id,
            "removed": {k: v for k, v in counts.items() if v},
            "desk": [{"account": x["account"], "steps": len(x["done"])} for x in desk_report],
        },
    )
    rewrite = await _rewrite_aof(rt) if not nothing else "not needed"
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
    }


async def _rewrite_aof(rt: Runtime) -> str:
    """Start ``BGREWRITEAOF`` so erased values leave the append-only file. A managed
    Redis that refuses the command says so here; docs/privacy.md says what to do."""
    try:
        await rt.redis.execute_command("BGREWRITEAOF")  # type: ignore[no-untyped-call]
    except ResponseError as exc:
        text = str(exc).lower()
        if "already in progress" in text or "scheduled" in text:
            return "scheduled"
        return f"refused by Redis ({str(exc)[:120]}): see docs/privacy.md (managed Redis)"
    except RedisError as exc:
        return f"failed ({type(exc).__name__}): see docs/privacy.md"
    return "started"


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
        deliveries = await _deliveries_of(rt, acc_name, set(convs))
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
        try:
            record = await rt.deliveries.event(d.account, d.event_id)
        except KeyError:
            record = None
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
