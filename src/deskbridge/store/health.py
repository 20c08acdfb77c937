"""Liveness in Redis: the store answers, a worker's heartbeat is fresh."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from deskbridge.store import keys
from deskbridge.store.connection import guarded, primary

__all__ = ["HealthStore"]


@guarded
class HealthStore:
    """Pings and the worker heartbeat. Redis failures, and a ping slower than its
    timeout, raise ``StoreUnavailable`` (``cause`` names what failed)."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis

    async def ping(self, within_s: float) -> None:
        async with asyncio.timeout(within_s):
            await self._redis.ping()

    async def beat(self, identity: str, ttl_s: int) -> None:
        """A worker is alive for the next ``ttl_s`` seconds."""
        await self._redis.set(keys.HEARTBEAT, identity, ex=ttl_s)

    def primary(self) -> str:
        """Which Redis the pool talks to (no credentials)."""
        return primary(self._redis)

    async def worker_alive(self) -> bool:
        return bool(await self._redis.exists(keys.HEARTBEAT))
