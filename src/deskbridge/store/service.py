"""How the service answers: which conversations wait for an agent reply, since when."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from deskbridge.store import keys
from deskbridge.store.connection import guarded

__all__ = ["Answered", "ServiceStore"]


@dataclass(frozen=True, slots=True)
class Answered:
    """What a conversation's hash said when an agent reply answered it (epoch seconds)."""

    awaiting_since: float | None
    first_inbound_at: float | None
    first_replied: bool
    language: str | None


def queue_waiting(pipe: Any, account: str, conversation_id: str, channel: str, at: float) -> None:
    """``mark_waiting``'s writes, queued on ``pipe`` (for a store that writes them with
    its own in one round trip)."""
    key = keys.conversation(account, conversation_id)
    stamp = f"{at:.3f}"
    pipe.hsetnx(key, "first_inbound_at", stamp)
    pipe.hsetnx(key, "awaiting_since", stamp)
    pipe.zadd(keys.awaiting(account), {f"{channel}|{conversation_id}": float(stamp)}, nx=True)


@guarded
class ServiceStore:
    """The ``awaiting`` set and the conversations' service-time fields. Redis failures
    raise ``StoreUnavailable``."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis

    async def mark_waiting(
        self, account: str, conversation_id: str, channel: str, at: float
    ) -> None:
        """The customer waits since ``at`` unless they already waited (idempotent)."""
        pipe = self._redis.pipeline(transaction=True)
        queue_waiting(pipe, account, conversation_id, channel, at)
        await pipe.execute()

    async def mark_answered(self, account: str, conversation_id: str, channel: str) -> Answered:
        """The conversation no longer waits; returns what it recorded before."""
        key = keys.conversation(account, conversation_id)
        pipe = self._redis.pipeline(transaction=True)
        pipe.hmget(key, ["awaiting_since", "first_inbound_at", "first_replied", "language"])
        pipe.hdel(key, "awaiting_since")
        pipe.hset(key, "first_replied", "1")
        pipe.zrem(keys.awaiting(account), f"{channel}|{conversation_id}")
        (since, first, replied, language), *_ = await pipe.execute()
        return Answered(
            awaiting_since=float(since) if since is not None else None,
            first_inbound_at=float(first) if first is not None else None,
            first_replied=replied is not None,
            language=language.decode() if language else None,
        )

    async def waiting(self, account: str) -> list[tuple[str, float]]:
        """Every waiting conversation's channel and since when (epoch seconds)."""
        rows = await self._redis.zrange(keys.awaiting(account), 0, -1, withscores=True)
        return [(member.decode().partition("|")[0], float(since)) for member, since in rows]
