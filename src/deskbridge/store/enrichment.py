"""What enrichment remembers between messages: VIP lookup answers."""

from __future__ import annotations

import redis.asyncio as aioredis

from deskbridge.store import keys
from deskbridge.store.connection import guarded

__all__ = ["EnrichmentCache"]


@guarded
class EnrichmentCache:
    """VIP lookup answers by a keyed digest of the contact's identities. Redis failures
    raise ``StoreUnavailable``."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis

    async def vip(self, account: str, digest: str) -> bool | None:
        """The cached answer, None when there is none."""
        cached = await self._redis.get(keys.vip_cache(account, digest))
        return None if cached is None else bool(cached == b"1")

    async def remember_vip(self, account: str, digest: str, answer: bool, ttl_s: int) -> None:
        await self._redis.set(keys.vip_cache(account, digest), "1" if answer else "0", ex=ttl_s)
