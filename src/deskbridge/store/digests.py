"""Renames the dedup and sent keys written before issue 18, which carried a provider's
message id in their name (a WhatsApp id encodes the customer's number), to the keyed
digest the store uses now. Their TTL is kept (RENAME keeps it); a mark that already
exists under its digest wins and the old one is deleted."""

from __future__ import annotations

import redis.asyncio as aioredis

from deskbridge.store import keys
from deskbridge.store.connection import guarded
from deskbridge.store.crypto import Vault

__all__ = ["IdKeys"]


@guarded
class IdKeys:
    """The one-off migration of id-bearing key names. Idempotent; Redis failures raise
    ``StoreUnavailable``."""

    def __init__(self, redis: aioredis.Redis, vault: Vault, *, batch: int = 500) -> None:
        self._redis = redis
        self._vault = vault
        self._batch = batch

    async def digest_names(self, *, dry_run: bool = False) -> dict[str, int]:
        """Rename every old-style key; returns how many of each kind (``dedup``,
        ``sent``) were found (and, unless ``dry_run``, renamed)."""
        out = {"dedup": 0, "sent": 0}
        for match in keys.ID_KEY_PATTERNS:
            async for raw in self._redis.scan_iter(match=match, count=self._batch):
                name = raw.decode() if isinstance(raw, bytes) else str(raw)
                parts = keys.id_key(name)
                if parts is None:
                    continue
                kind, account, source, ident = parts
                out[kind] += 1
                if dry_run:
                    continue
                build = keys.dedup if kind == "dedup" else keys.sent
                target = build(account, source, self._vault.digest(kind, source, ident))
                if not await self._redis.renamenx(name, target):
                    await self._redis.delete(name)
        return out
