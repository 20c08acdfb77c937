"""Console sessions: what the browser's session cookie stands for.

The cookie carries a random session id and the admin token sealed under it; Redis holds
only the session's CSRF token, under a digest of the id, until the admin token expires.
Signing out deletes that record, so a copied cookie is dead from then on; nothing in
Redis opens the token. Sign-in links are single-use: their ``jti`` is marked on first use.
"""

from __future__ import annotations

import hashlib
import secrets
import time

import redis.asyncio as aioredis

from deskbridge.store import keys
from deskbridge.store.connection import guarded

__all__ = ["ConsoleSessions"]


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


@guarded
class ConsoleSessions:
    """Open, check and close console sessions. Redis failures raise ``StoreUnavailable``
    (the console then refuses: a session it cannot read is never taken as valid)."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis

    async def open(self, until: int) -> tuple[str, str]:
        """A new session valid until epoch second ``until``: its id and CSRF token."""
        session_id, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        ttl = max(1, until - int(time.time()))
        await self._redis.set(keys.console_session(_digest(session_id)), csrf, ex=ttl)
        return session_id, csrf

    async def csrf(self, session_id: str) -> str | None:
        """The session's CSRF token; None when it was closed or has expired."""
        value = await self._redis.get(keys.console_session(_digest(session_id)))
        return value.decode() if value is not None else None

    async def close(self, session_id: str) -> None:
        """End the session (idempotent)."""
        await self._redis.delete(keys.console_session(_digest(session_id)))

    async def redeem_link(self, jti: str, until: int) -> bool:
        """Mark a sign-in link's token used; False when it was used before."""
        ttl = max(1, until - int(time.time()))
        return bool(await self._redis.set(keys.console_link(jti), "1", nx=True, ex=ttl))
