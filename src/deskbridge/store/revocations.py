"""Revoked admin tokens: a denylist by ``jti``, and per subject a cut-off time before
which every token of that subject is refused. Each entry expires once no token it could
match is still valid, so the list never grows past the tokens alive."""

from __future__ import annotations

import time

import redis.asyncio as aioredis

from deskbridge.store import keys
from deskbridge.store.connection import guarded

__all__ = ["Revocations"]


@guarded
class Revocations:
    """The admin tokens' denylist. Redis failures raise ``StoreUnavailable`` (the admin
    API then answers 503: a revocation it cannot read is never taken as none)."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis

    async def revoke_token(self, jti: str, until: int) -> None:
        """Refuse the token ``jti`` until epoch second ``until`` (its ``exp``, or the
        longest a token may live). Idempotent."""
        await self._redis.set(keys.revoked_token(jti), "1", exat=max(until, int(time.time()) + 1))

    async def revoke_subject(self, subject: str, cutoff: int, until: int) -> None:
        """Refuse every token of ``subject`` issued at or before epoch second ``cutoff``,
        until ``until`` (when the last of them has expired). Idempotent."""
        await self._redis.set(
            keys.revoked_subject(subject), str(cutoff), exat=max(until, int(time.time()) + 1)
        )

    async def revoked(self, jti: str, subject: str, issued_at: int) -> bool:
        """Whether a token is revoked: one round trip (MGET of both entries)."""
        by_jti, cutoff = await self._redis.mget(
            [keys.revoked_token(jti), keys.revoked_subject(subject)]
        )
        return by_jti is not None or (cutoff is not None and issued_at <= int(cutoff))
