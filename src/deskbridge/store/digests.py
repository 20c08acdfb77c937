"""Renames the keys written before issue 18 that carried a provider's or desk's id in
their name (dedup and sent marks — a WhatsApp id encodes the customer's number —, desk
ticket lookups, per-ticket update windows, the loop guard's desk message ids, Udesk's
relayed reply sets) to the keyed digest the store uses now. Their TTL is kept (RENAME
keeps it); a key that already exists under its digest wins and the old one is deleted
(two relayed sets are merged)."""

from __future__ import annotations

import redis.asyncio as aioredis

from deskbridge.store import keys
from deskbridge.store.connection import guarded, structures
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
        """Rename every old-style key; returns how many of each kind (``keys.ID_KINDS``)
        were found (and, unless ``dry_run``, renamed)."""
        out = dict.fromkeys(keys.ID_KINDS, 0)
        for match in keys.ID_KEY_PATTERNS:
            async for raw in self._redis.scan_iter(match=match, count=self._batch):
                name = raw.decode() if isinstance(raw, bytes) else str(raw)
                parts = keys.id_key(name)
                if parts is None:
                    continue
                out[parts[0]] += 1
                if not dry_run:
                    await self._rename(name, *parts)
        return out

    async def _rename(self, name: str, kind: str, account: str, source: str, ident: str) -> None:
        target = self._target(kind, account, source, ident)
        if await self._redis.renamenx(name, target):
            return
        if kind == "relayed":  # both names hold reply ids taken in: keep them all
            await structures(self._redis).sunionstore(target, [target, name])
        await self._redis.delete(name)

    def _target(self, kind: str, account: str, source: str, ident: str) -> str:
        digest = self._vault.digest
        if kind == "dedup":
            return keys.dedup(account, source, digest(kind, source, ident))
        if kind == "sent":
            return keys.sent(account, source, digest(kind, source, ident))
        if kind == "ours":
            return keys.ours(account, source, digest("ours", source, ident))
        if kind == "relayed":
            return keys.udesk_relayed(account, digest("ticket", "udesk", ident))
        if kind == "ticket":
            return keys.ticket(account, source, digest("ticket", source, ident))
        return keys.ticket_updates(account, source, digest("ticket", source, ident))
