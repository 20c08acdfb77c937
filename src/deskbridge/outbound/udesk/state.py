"""What the Udesk connector keeps outside itself (in Redis, shared by every process)."""

from __future__ import annotations

import time
from typing import Protocol

__all__ = ["MemoryUdeskState", "UdeskState"]


class UdeskState(Protocol):
    """``store.udesk.RedisUdeskState`` in production; ``MemoryUdeskState`` for one process."""

    async def take(
        self, account: str, desk: str, *, capacity: float, per_second: float, reserve: float
    ) -> float:
        """Take one token of the account's bucket: 0.0 when granted, else the seconds
        until one would be there (while ``reserve`` tokens remain untouched)."""
        ...

    async def touch(self, account: str, ticket_id: str, at: float) -> None: ...

    async def active(self, account: str, since: float) -> list[str]: ...

    async def relayed(self, account: str, ticket_id: str) -> set[str]: ...

    async def mark_relayed(
        self, account: str, ticket_id: str, reply_ids: list[str], ttl: float
    ) -> None: ...

    async def recall(self, account: str, key: str) -> str | None: ...

    async def remember(self, account: str, key: str, value: str, ttl: float) -> None: ...

    async def claim_poll(self, account: str, ttl: float) -> bool: ...


class MemoryUdeskState:
    """One process's state (no expiry beyond the bucket): for tests and tools."""

    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}
        self._active: dict[str, dict[str, float]] = {}
        self._relayed: dict[tuple[str, str], set[str]] = {}
        self._memo: dict[tuple[str, str], str] = {}

    async def take(
        self, account: str, desk: str, *, capacity: float, per_second: float, reserve: float
    ) -> float:
        now = time.monotonic()
        tokens, ts = self._buckets.get(f"{account}:{desk}", (capacity, now))
        tokens = min(capacity, tokens + (now - ts) * per_second)
        wait = 0.0
        if tokens >= 1 + reserve:
            tokens -= 1
        else:
            wait = (1 + reserve - tokens) / per_second
        self._buckets[f"{account}:{desk}"] = (tokens, now)
        return wait

    async def touch(self, account: str, ticket_id: str, at: float) -> None:
        self._active.setdefault(account, {})[ticket_id] = at

    async def active(self, account: str, since: float) -> list[str]:
        tickets = self._active.get(account, {})
        return [t for t, at in sorted(tickets.items(), key=lambda x: -x[1]) if at >= since]

    async def relayed(self, account: str, ticket_id: str) -> set[str]:
        return set(self._relayed.get((account, ticket_id), set()))

    async def mark_relayed(
        self, account: str, ticket_id: str, reply_ids: list[str], ttl: float
    ) -> None:
        self._relayed.setdefault((account, ticket_id), set()).update(reply_ids)

    async def recall(self, account: str, key: str) -> str | None:
        return self._memo.get((account, key))

    async def remember(self, account: str, key: str, value: str, ttl: float) -> None:
        self._memo[(account, key)] = value

    async def claim_poll(self, account: str, ttl: float) -> bool:
        return True
