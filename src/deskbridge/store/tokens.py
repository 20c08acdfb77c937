"""Platform access tokens shared by every process of a deployment, sealed at rest."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as aioredis

from deskbridge.errors import StoreUnavailable
from deskbridge.store import keys
from deskbridge.store.connection import guarded
from deskbridge.store.crypto import Vault
from deskbridge.store.ids import new_id

__all__ = ["RedisTokenCache"]

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@guarded
class RedisTokenCache:
    """``adapters.base.TokenCache`` over Redis. ``lock`` waits up to ``lock_wait`` seconds
    for another process's renewal, and expires by itself if its holder dies. Redis
    failures raise ``StoreUnavailable``."""

    def __init__(
        self,
        redis: aioredis.Redis,
        vault: Vault,
        *,
        lock_ttl: float = 30.0,
        lock_wait: float = 30.0,
    ) -> None:
        self._redis = redis
        self._vault = vault
        self._lock_ttl_ms = int(lock_ttl * 1000)
        self._lock_wait = lock_wait
        self._release = redis.register_script(_RELEASE)

    async def get(self, name: str) -> str | None:
        key = keys.token(name)
        blob = await self._redis.get(key)
        if not blob:
            return None
        return self._vault.open(blob, key).decode() or None

    async def put(self, name: str, token: str, ttl: float) -> None:
        key = keys.token(name)
        await self._redis.set(
            key, self._vault.seal(token.encode(), key), px=max(1, int(ttl * 1000))
        )

    @asynccontextmanager
    async def lock(self, name: str) -> AsyncIterator[None]:
        key = keys.token_lock(name)
        mine = new_id()
        deadline = time.monotonic() + self._lock_wait
        while not await self._redis.set(key, mine, nx=True, px=self._lock_ttl_ms):
            if time.monotonic() > deadline:
                raise StoreUnavailable(f"token renewal lock for {name} is held too long")
            await asyncio.sleep(0.05)
        try:
            yield
        finally:
            await self._release(keys=[key], args=[mine])
