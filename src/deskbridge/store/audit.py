"""The admin audit log: one Redis stream, appended to on every admin write, never trimmed."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis

from deskbridge.store import keys
from deskbridge.store.connection import guarded

__all__ = ["AuditEntry", "AuditLog"]

_STREAM_ID = re.compile(r"^\d+-\d+$")


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """Who (the admin token's ``sub``) did what, when, to how many, with the request's
    parameters (ids and filters, never message content)."""

    id: str
    at: datetime
    who: str
    action: str
    count: int
    details: dict[str, Any]


@guarded
class AuditLog:
    """The admin API's append-only audit log. Redis failures raise ``StoreUnavailable``."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis

    async def record(self, who: str, action: str, count: int, details: dict[str, Any]) -> str:
        """Append one entry; returns its stream id."""
        entry_id = await self._redis.xadd(
            keys.AUDIT,
            {
                "at": int(time.time() * 1000),
                "who": who,
                "action": action,
                "count": count,
                "details": json.dumps(details, separators=(",", ":"), sort_keys=True),
            },
        )
        return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)

    async def read(
        self, *, limit: int, before: str | None = None
    ) -> tuple[list[AuditEntry], str | None]:
        """Entries newest first, older than the entry ``before`` (a stream id), and the
        cursor of the next page (None at the start of the log). Raises ValueError for a
        ``before`` that is not a stream id."""
        if before is not None and not _STREAM_ID.match(before):
            raise ValueError("not a cursor returned by this API")
        top = f"({before}" if before else "+"
        rows = await self._redis.xrevrange(keys.AUDIT, max=top, min="-", count=limit)
        entries = []
        for raw_id, fields in rows:
            f = {k.decode(): v.decode() for k, v in fields.items()}
            entries.append(
                AuditEntry(
                    id=raw_id.decode(),
                    at=datetime.fromtimestamp(int(f.get("at", "0")) / 1000, UTC),
                    who=f.get("who", ""),
                    action=f.get("action", ""),
                    count=int(f.get("count", "0")),
                    details=json.loads(f.get("details", "{}")),
                )
            )
        more = len(entries) == limit and entries
        return entries, entries[-1].id if more else None

    async def trim(self, before_ms: int) -> int:
        """Drop the entries older than ``before_ms`` (epoch ms); returns how many."""
        return int(await self._redis.xtrim(keys.AUDIT, minid=str(before_ms), approximate=False))
