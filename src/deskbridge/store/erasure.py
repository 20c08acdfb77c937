"""The Redis side of retention, erasure and export (docs/privacy.md): walks over an
account's keys that no single store owns. ``flows/privacy.py`` decides what goes, and
when; this module knows where it lives.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from deskbridge.schemas import Channel, Delivery, Desk, Direction, Identity
from deskbridge.store import keys
from deskbridge.store.connection import guarded, structures
from deskbridge.store.crypto import Vault
from deskbridge.store.deliveries import DeliveryStore

__all__ = ["Erasure", "ErasurePlan"]

_CHUNK = 500


@dataclass(frozen=True, slots=True)
class ErasurePlan:
    """What one account's erasure removes once its deliveries are purged: the contact
    ids (merged ones too), their identities, conversations (with each one's channel when
    its record was readable), the purged deliveries and raw requests, the raw-request
    sources to unindex, and the strings that mark a sandbox outbox entry as theirs."""

    account: str
    desk: str
    contact_ids: frozenset[str]
    identities: tuple[Identity, ...]
    conversations: tuple[str, ...]
    channels: dict[str, str]
    delivery_ids: frozenset[str]
    raw_ids: frozenset[str]
    sources: tuple[str, ...]
    needles: tuple[str, ...]
    visitors: tuple[str, ...] = ()
    """The widget visitors (their conversations' threads) whose history goes too."""


@guarded
class Erasure:
    """Retention sweeps and erasure walks over an account's keys. Redis failures raise
    ``StoreUnavailable`` (``rewrite_aof`` reports them instead)."""

    def __init__(self, redis: aioredis.Redis, vault: Vault, deliveries: DeliveryStore) -> None:
        self._redis = redis
        self._typed = structures(redis)
        self._vault = vault
        self._deliveries = deliveries

    # --- retention ---------------------------------------------------------------------------

    async def unindex_dead(self, account: str, delivery_id: str) -> None:
        """Drop a dead letter whose record is gone from the dead-letter index."""
        await self._redis.zrem(keys.dead(account), delivery_id)

    async def count_raw(self, account: str, raw_ids: set[str]) -> int:
        """How many of the raw requests ``raw_ids`` are still stored."""
        if not raw_ids:
            return 0
        return int(await self._redis.exists(*(keys.raw(account, i) for i in raw_ids)))

    async def trim_raw_index(self, account: str, source: str, before_ms: int) -> int:
        """Drop raw-index entries of ``source`` that arrived before ``before_ms``."""
        return int(
            await self._redis.zremrangebyscore(keys.raws(account, source), "-inf", f"({before_ms}")
        )

    async def sandbox_tickets_before(self, account: str, cutoff_s: float) -> list[str]:
        """Sandbox tickets last updated before ``cutoff_s`` (epoch seconds)."""
        old = await self._redis.zrangebyscore(keys.sandbox_tickets(account), "-inf", f"({cutoff_s}")
        return [t.decode() for t in old]

    async def drop_sandbox_ticket(self, account: str, ticket_id: str) -> None:
        pipe = self._redis.pipeline(transaction=True)
        pipe.delete(
            keys.sandbox_ticket(account, ticket_id), keys.sandbox_messages(account, ticket_id)
        )
        pipe.zrem(keys.sandbox_tickets(account), ticket_id)
        await pipe.execute()

    async def filter_outbox(self, account: str, drop: Callable[[dict[str, Any]], bool]) -> int:
        """Remove the sandbox outbox entries ``drop`` picks (LREM by value: safe against
        concurrent pushes). Returns how many."""
        key = keys.sandbox_outbox(account)
        removed = 0
        for blob in await self._typed.lrange(key, 0, -1):
            entry = json.loads(self._vault.open(blob, key))
            if drop(entry):
                removed += int(await self._typed.lrem(key, 0, blob))
        return removed

    # --- a contact's deliveries --------------------------------------------------------------

    async def deliveries_of(self, account: str, convs: set[str]) -> list[Delivery]:
        """Every delivery of ``convs``: the listing index, dead letters and pending work."""
        ids: set[str] = set()
        for key in (keys.deliveries(account), keys.dead(account), keys.pending(account)):
            ids |= {x.decode() for x in await self._redis.zrange(key, 0, -1)}
        for conv in convs:
            for direction in Direction:
                lane = await self._typed.lrange(keys.lane(account, direction.value, conv), 0, -1)
                ids |= {x.decode() for x in lane}
        ordered = sorted(ids)
        out: list[Delivery] = []
        for start in range(0, len(ordered), _CHUNK):
            chunk = ordered[start : start + _CHUNK]
            pipe = self._redis.pipeline(transaction=False)
            for i in chunk:
                pipe.hget(keys.delivery(account, i), "conversation_id")
            owners = await pipe.execute()
            mine = [i for i, c in zip(chunk, owners, strict=True) if c and c.decode() in convs]
            got = await self._deliveries.get_many([(account, i) for i in mine])
            out += [d for d in got if d is not None]
        return out

    # --- erasure -----------------------------------------------------------------------------

    async def erase(self, plan: ErasurePlan, report: dict[str, int]) -> None:
        """Remove what ``plan`` names, adding what went to ``report``'s counts. Idempotent."""
        hashes = {
            c: await self._typed.hgetall(keys.conversation(plan.account, c))
            for c in plan.conversations
        }
        await self._erase_raw(plan)
        await self._forget_marks(plan, report)
        tickets: set[str] = set()
        for conv in plan.conversations:
            ticket = await self._erase_conversation(plan, conv, hashes[conv])
            if ticket:
                tickets.add(ticket)
            report["conversations"] += 1
        for cid in plan.contact_ids:
            shared = await self._redis.get(keys.contact_ticket(plan.account, plan.desk, cid))
            if shared:
                tickets.add(shared.decode().partition("|")[0])
        if plan.desk == Desk.SANDBOX.value:
            await self._erase_sandbox(plan, tickets, report)
        needles = plan.needles
        report["sandbox_outbox"] += await self.filter_outbox(
            plan.account, lambda entry: any(n in json.dumps(entry) for n in needles)
        )
        await self._erase_contacts(plan, report)
        for visitor in plan.visitors:
            v = self._vault.digest("webchat", plan.account, visitor)
            report["webchat_histories"] += (
                await self._redis.delete(
                    keys.webchat_history(plan.account, v),
                    keys.webchat_seq(plan.account, v),
                    keys.webchat_ids(plan.account, v),
                    keys.webchat_receipts(plan.account, v),
                    keys.webchat_typing(plan.account, v),
                )
                and 1
            )
            index = keys.webchat_files(plan.account, v)
            ids = await self._typed.smembers(index)
            files = [keys.webchat_file(plan.account, v, i.decode()) for i in ids]
            if files:
                report["webchat_files"] += await self._redis.delete(*files)
            await self._redis.delete(index)

    async def _erase_raw(self, plan: ErasurePlan) -> None:
        if not plan.raw_ids:
            return
        a = plan.account
        # counted by the caller (``count_raw``) before the deliveries' purge
        await self._redis.delete(*(keys.raw(a, i) for i in plan.raw_ids))
        for source in plan.sources:
            await self._redis.zrem(keys.raws(a, source), *plan.raw_ids)

    async def _forget_marks(self, plan: ErasurePlan, report: dict[str, int]) -> None:
        # dedup marks keep their place (a redelivery must not bring the data back) but
        # forget which delivery they led to
        a, ids = plan.account, set(plan.delivery_ids)
        for name in await self._scan_values(keys.dedup(a, "*", "*"), ids):
            await self._redis.set(name, "erased", keepttl=True)
            report["dedup_marks"] += 1
        for name in await self._scan_values(keys.sent(a, "*", "*"), ids):
            report["sent_marks"] += int(await self._redis.delete(name))

    async def _erase_conversation(self, plan: ErasurePlan, conv: str, h: dict[bytes, bytes]) -> str:
        """Delete one conversation's keys; returns its ticket id ('' for none)."""
        a = plan.account
        ticket = h.get(b"ticket_id", b"").decode()
        conv_desk = h.get(b"desk", plan.desk.encode()).decode()
        pipe = self._redis.pipeline(transaction=False)
        pipe.delete(keys.conversation(a, conv), keys.sent_by_time(a, conv))
        pipe.delete(keys.bot_session(a, conv), keys.bot_log(a, conv), keys.csat_open(a, conv))
        for direction in Direction:
            pipe.delete(keys.lane(a, direction.value, conv))
        channel = plan.channels.get(conv)
        if channel is not None:
            pipe.zrem(keys.awaiting(a), f"{channel}|{conv}")
        if ticket:
            digest = self._vault.digest("ticket", conv_desk, ticket)
            pipe.delete(
                keys.ticket(a, conv_desk, digest),
                keys.ticket_updates(a, conv_desk, digest),
                keys.udesk_relayed(a, self._vault.digest("ticket", "udesk", ticket)),
                # and the names these had before issue 18 (keys digest-ids renames them)
                keys.ticket(a, conv_desk, ticket),
                keys.ticket_updates(a, conv_desk, ticket),
                keys.udesk_relayed(a, ticket),
            )
            pipe.zrem(keys.udesk_active(a), ticket)
        await pipe.execute()
        return ticket

    async def _erase_sandbox(
        self, plan: ErasurePlan, tickets: set[str], report: dict[str, int]
    ) -> None:
        a = plan.account
        for ticket in sorted(tickets):
            if await self._redis.exists(keys.sandbox_ticket(a, ticket)):
                report["sandbox_tickets"] += 1
            await self.drop_sandbox_ticket(a, ticket)
        await self._drop_sandbox_idempotency(a, tickets, plan.delivery_ids)

    async def _erase_contacts(self, plan: ErasurePlan, report: dict[str, int]) -> None:
        a, desk = plan.account, plan.desk
        for cid in plan.contact_ids:
            removed = await self._redis.delete(
                keys.contact(a, cid),
                keys.contact_conversations(a, cid),
                keys.contact_ticket(a, desk, cid),
                keys.desk_user(a, desk, cid),
                *(keys.consent(a, c.value, cid) for c in Channel),
            )
            report["contact_records"] += int(removed)
        legacy = await self._scan_values(keys.identity(a, "*"), set(plan.contact_ids))
        if legacy:
            report["identity_index"] += int(await self._redis.delete(*legacy))
        for ident in plan.identities:
            if ident.kind == "channel_user" and ident.channel is not None:
                digest = self._vault.digest("profile", a, ident.channel.value, ident.value)
                await self._redis.delete(keys.profile(a, ident.channel.value, digest))

    async def _scan_values(self, pattern: str, values: set[str]) -> list[str]:
        """Keys matching ``pattern`` whose string value is one of ``values``."""
        found: list[str] = []
        if not values:
            return found
        batch: list[bytes] = []

        async def check(names: list[bytes]) -> None:
            got = await self._redis.mget(names)
            found.extend(
                n.decode() for n, v in zip(names, got, strict=True) if v and v.decode() in values
            )

        async for name in self._redis.scan_iter(match=pattern, count=1000):
            batch.append(name)
            if len(batch) >= _CHUNK:
                await check(batch)
                batch = []
        if batch:
            await check(batch)
        return found

    async def _drop_sandbox_idempotency(
        self, account: str, tickets: set[str], delivery_ids: Iterable[str]
    ) -> None:
        """The sandbox's idempotency marks of these tickets (their values are ticket and
        message ids ``ticket-n``; their names carry delivery ids)."""
        pattern = keys.sandbox_idempotency(account, "*")
        names = [n async for n in self._redis.scan_iter(match=pattern, count=1000)]
        if not names:
            return
        values = await self._redis.mget(names)
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
            await self._redis.delete(*doomed)

    # --- the append-only file ----------------------------------------------------------------

    async def rewrite_aof(self) -> str:
        """Start ``BGREWRITEAOF`` so erased values leave the append-only file; returns
        what happened (a managed Redis may refuse: docs/privacy.md). Never raises."""
        try:
            await self._redis.execute_command("BGREWRITEAOF")  # type: ignore[no-untyped-call]
        except ResponseError as exc:
            text = str(exc).lower()
            if "already in progress" in text or "scheduled" in text:
                return "scheduled"
            return f"refused by Redis ({str(exc)[:120]}): see docs/privacy.md (managed Redis)"
        except RedisError as exc:
            return f"failed ({type(exc).__name__}): see docs/privacy.md"
        return "started"
