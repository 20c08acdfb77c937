"""What the Udesk desk shares across processes: the per-account token bucket that keeps
every worker under Udesk's per-minute budget, the tickets to poll for agent replies, the
replies already taken in, and what each filing created (so a retry does not file twice).
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from deskbridge.errors import StoreUnavailable
from deskbridge.store import keys
from deskbridge.store.connection import structures
from deskbridge.store.crypto import Vault

__all__ = ["RedisUdeskState"]

# Refill and take in one step, on Redis's clock (workers' clocks may disagree). A caller
# of low priority passes a ``reserve``: it only takes when that many tokens would remain,
# so it never competes for the last tokens deliveries are waiting for.
TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local capacity = tonumber(ARGV[1])
local per_ms = tonumber(ARGV[2])
local reserve = tonumber(ARGV[3])
local tokens = tonumber(redis.call('HGET', KEYS[1], 'tokens') or ARGV[1])
local ts = tonumber(redis.call('HGET', KEYS[1], 'ts') or now)
tokens = math.min(capacity, tokens + math.max(0, now - ts) * per_ms)
local wait = 0
if tokens >= 1 + reserve then
  tokens = tokens - 1
else
  wait = math.ceil((1 + reserve - tokens) / per_ms)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return wait
"""


class RedisUdeskState:
    """``outbound.udesk.UdeskState`` over Redis: one instance per process, shared by every
    Udesk account of it. Redis failures raise ``StoreUnavailable``."""

    def __init__(self, redis: aioredis.Redis, vault: Vault) -> None:
        self._redis = redis
        self._vault = vault
        self._take = redis.register_script(TAKE)

    async def take(
        self, account: str, desk: str, *, capacity: float, per_second: float, reserve: float
    ) -> float:
        """Take one token: 0.0 when granted, else the seconds until one would be there."""
        per_ms = per_second / 1000.0
        ttl_ms = int(max(60_000, capacity / per_ms * 2))
        async with _guard():
            wait_ms = await self._take(
                keys=[keys.rate_bucket(account, desk)],
                args=[repr(float(capacity)), repr(per_ms), repr(float(reserve)), ttl_ms],
            )
        return int(wait_ms) / 1000.0

    async def touch(self, account: str, ticket_id: str, at: float) -> None:
        async with _guard():
            await self._redis.zadd(keys.udesk_active(account), {ticket_id: int(at * 1000)})

    async def active(self, account: str, since: float) -> list[str]:
        """Tickets touched since ``since`` (unix s), most recent first. Older ones are
        forgotten, with the reply ids remembered for them."""
        key = keys.udesk_active(account)
        cutoff = int(since * 1000)
        async with _guard():
            stale = await self._redis.zrangebyscore(key, "-inf", f"({cutoff}")
            if stale:
                await self._redis.zrem(key, *stale)
                await self._redis.delete(
                    *(name for t in stale for name in self._relayed_names(account, _s(t)))
                )
            found = await self._redis.zrevrangebyscore(key, "+inf", cutoff)
        return [_s(t) for t in found]

    async def relayed(self, account: str, ticket_id: str) -> set[str]:
        async with _guard():
            names = list(self._relayed_names(account, ticket_id))
            members = await structures(self._redis).sunion(names)
        return {_s(m) for m in members}

    async def mark_relayed(
        self, account: str, ticket_id: str, reply_ids: list[str], ttl: float
    ) -> None:
        if not reply_ids:
            return
        key = self._relayed_names(account, ticket_id)[0]
        async with _guard(), self._redis.pipeline(transaction=True) as pipe:
            pipe.sadd(key, *reply_ids)
            pipe.expire(key, max(1, int(ttl)))
            await pipe.execute()

    def _relayed_names(self, account: str, ticket_id: str) -> tuple[str, str]:
        """The ticket's relayed set by its digest name, and by the name it had before
        issue 18 (read too, so an upgrade never takes a reply in twice; it expires with
        the ticket's activity)."""
        digest = self._vault.digest("ticket", "udesk", ticket_id)
        return keys.udesk_relayed(account, digest), keys.udesk_relayed(account, ticket_id)

    async def recall(self, account: str, key: str) -> str | None:
        async with _guard():
            value = await self._redis.get(keys.udesk_memo(account, _digest(key)))
        return _s(value) if value is not None else None

    async def remember(self, account: str, key: str, value: str, ttl: float) -> None:
        async with _guard():
            await self._redis.set(
                keys.udesk_memo(account, _digest(key)), value, px=max(1, int(ttl * 1000))
            )

    async def claim_poll(self, account: str, ttl: float) -> bool:
        """True for the one process whose turn it is to poll ``account`` for ``ttl`` s."""
        async with _guard():
            got = await self._redis.set(
                keys.udesk_poll_lock(account), "1", nx=True, px=max(1, int(ttl * 1000))
            )
        return bool(got)


@asynccontextmanager
async def _guard() -> AsyncIterator[None]:
    try:
        yield
    except (RedisError, OSError) as exc:
        raise StoreUnavailable(f"udesk state: {type(exc).__name__}") from exc


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:32]
