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
from dataclasses import dataclass

import redis.asyncio as aioredis

from deskbridge.store import keys
from deskbridge.store.connection import guarded, structures

__all__ = ["BULK_TTL_S", "BulkJob", "BulkJobs", "ConsoleSessions"]


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


@guarded
class ConsoleSessions:
    """Open, check and close console sessions. Redis failures raise ``StoreUnavailable``
    (the console then refuses: a session it cannot read is never taken as valid).
    ``bulk`` keeps the console's bulk jobs."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self.bulk = BulkJobs(redis)

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


BULK_TTL_S = 86_400
"""How long a console bulk job's record lives after its last batch."""


@dataclass(frozen=True, slots=True)
class BulkJob:
    """A console bulk replay or discard: who started it, what, and how far it got."""

    id: str
    who: str
    action: str
    reason: str
    total: int
    done: int
    changed: int
    skipped: int
    missing: int
    state: str
    """``running``, ``done`` or ``stopped`` (``error`` says why)."""
    error: str
    updated_at: float
    left: int


@guarded
class BulkJobs:
    """Console bulk jobs in Redis: the ids still to do, consumed a batch at a time, and
    the progress the progress page reads. Redis failures raise ``StoreUnavailable``."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._typed = structures(redis)

    async def open(self, who: str, action: str, reason: str, ids: list[str]) -> str:
        """A new running job over ``ids``; its id."""
        job = secrets.token_urlsafe(16)
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(
            keys.console_bulk(job),
            mapping={
                "who": who,
                "action": action,
                "reason": reason,
                "total": len(ids),
                "done": 0,
                "changed": 0,
                "skipped": 0,
                "missing": 0,
                "state": "running",
                "error": "",
                "updated_at": f"{time.time():.3f}",
            },
        )
        if ids:
            pipe.rpush(keys.console_bulk_ids(job), *ids)
        pipe.expire(keys.console_bulk(job), BULK_TTL_S)
        pipe.expire(keys.console_bulk_ids(job), BULK_TTL_S)
        await pipe.execute()
        return job

    async def get(self, job: str) -> BulkJob | None:
        pipe = self._redis.pipeline(transaction=False)
        pipe.hgetall(keys.console_bulk(job))
        pipe.llen(keys.console_bulk_ids(job))
        row, left = await pipe.execute()
        if not row:
            return None
        f = {k.decode(): v.decode() for k, v in row.items()}
        return BulkJob(
            id=job,
            who=f["who"],
            action=f["action"],
            reason=f["reason"],
            total=int(f["total"]),
            done=int(f["done"]),
            changed=int(f["changed"]),
            skipped=int(f["skipped"]),
            missing=int(f["missing"]),
            state=f["state"],
            error=f["error"],
            updated_at=float(f["updated_at"]),
            left=int(left),
        )

    async def batch(self, job: str, size: int) -> list[str]:
        """The next ``size`` ids still to do (left in place until ``advance``)."""
        rows = await self._typed.lrange(keys.console_bulk_ids(job), 0, size - 1)
        return [r.decode() for r in rows]

    async def advance(self, job: str, n: int, changed: int, skipped: int, missing: int) -> None:
        """The first ``n`` ids are done: drop them and count what they did."""
        pipe = self._redis.pipeline(transaction=True)
        pipe.ltrim(keys.console_bulk_ids(job), n, -1)
        pipe.hincrby(keys.console_bulk(job), "done", n)
        pipe.hincrby(keys.console_bulk(job), "changed", changed)
        pipe.hincrby(keys.console_bulk(job), "skipped", skipped)
        pipe.hincrby(keys.console_bulk(job), "missing", missing)
        pipe.hset(keys.console_bulk(job), "updated_at", f"{time.time():.3f}")
        pipe.expire(keys.console_bulk(job), BULK_TTL_S)
        pipe.expire(keys.console_bulk_ids(job), BULK_TTL_S)
        await pipe.execute()

    async def finish(self, job: str, state: str, error: str = "") -> None:
        """The job ended: ``done``, ``running`` again (resumed) or ``stopped`` with why."""
        await self._typed.hset(
            keys.console_bulk(job),
            mapping={"state": state, "error": error, "updated_at": f"{time.time():.3f}"},
        )
