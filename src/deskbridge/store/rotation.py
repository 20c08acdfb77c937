"""Key rotation: re-seal every stored record under the vault's active key, online.

``SEALED`` is the table of every key that holds sealed data (strings, hash fields, list
entries, sorted-set members), kept in step with ``store/keys.py`` and the stores by
``tests/test_keys.py::test_rotation_table_covers_every_sealed_record``. A rotation SCANs
the whole database in batches; each record under an older key is opened and sealed again,
then written back by a compare-and-swap script, so a record a live process rewrote in the
meantime is never overwritten. The SCAN cursor and the counts are kept in Redis after each
batch: an interrupted rotation resumes where it stopped (SCAN may return a key twice;
re-sealing is idempotent, a record under the active key is left alone).

Streams are not in the table: their entries cannot be rewritten in place, and none holds a
sealed value (docs/security-keys.md, "What is sealed").
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import redis.asyncio as aioredis

from deskbridge.store import keys
from deskbridge.store.connection import structures
from deskbridge.store.crypto import SealBroken, Vault
from deskbridge.store.ids import new_id
from deskbridge.store.webchat import history_aad

__all__ = ["SEALED", "Rotation", "RotationBusy", "SealedKind", "Tally", "classify"]

Shape = Literal["string", "hash", "list", "zset"]
_H = keys.HOLE


def _same(key: str, field_: str) -> str:
    return key


def _field(key: str, field_: str) -> str:
    return f"{key}#{field_}"


def _node(key: str, field_: str) -> str:
    return keys.graph_node_for(key)


_WIDGET_HISTORY = keys.pattern(keys.webchat_history(_H, _H))


def _widget_history(key: str, field_: str) -> str:
    # sealed with the account and the visitor's digest, both in the key name
    found = _WIDGET_HISTORY.match(key)
    return history_aad(found.group(1), found.group(2)) if found else key


@dataclass(frozen=True, slots=True)
class SealedKind:
    """One kind of key that holds sealed values, and the associated data they are sealed
    with (a function of the key name and, for hashes, the field)."""

    name: str
    pattern: re.Pattern[str]
    shape: Shape
    fields: tuple[str, ...] = ()
    """Hash fields that are sealed; empty: every field's value."""
    aad: Callable[[str, str], str] = _same


def _tokens() -> re.Pattern[str]:
    # every token key but the renewal locks beside them
    head = keys.token("")
    lock = keys.token_lock("")[len(head) :]
    return re.compile("^" + re.escape(head) + "(?!.*" + re.escape(lock) + "$).+$")


SEALED: tuple[SealedKind, ...] = (
    SealedKind("raw request", keys.pattern(keys.raw(_H, _H)), "string"),
    SealedKind("ignored item", keys.pattern(keys.ignored(_H, _H)), "string"),
    SealedKind("event", keys.pattern(keys.event(_H, _H)), "string"),
    SealedKind("contact", keys.pattern(keys.contact(_H, _H)), "string"),
    SealedKind("display name", keys.pattern(keys.profile(_H, _H, _H)), "string"),
    SealedKind(
        "conversation",
        keys.pattern(keys.conversation(_H, _H)),
        "hash",
        ("thread", "reply_token", "context"),
        _field,
    ),
    SealedKind("bot turns", keys.pattern(keys.bot_log(_H, _H)), "hash", (), _field),
    SealedKind("identity node", keys.pattern(keys.graph_node(_H, _H)), "hash", ("v",)),
    SealedKind("identity spellings", keys.pattern(keys.graph_spellings(_H, _H)), "hash", (), _node),
    SealedKind("sandbox ticket", keys.pattern(keys.sandbox_ticket(_H, _H)), "hash", ("meta",)),
    SealedKind("sandbox messages", keys.pattern(keys.sandbox_messages(_H, _H)), "list"),
    SealedKind("sandbox outbox", keys.pattern(keys.sandbox_outbox(_H)), "list"),
    SealedKind("platform token", _tokens(), "string"),
    SealedKind(
        "widget file",
        keys.pattern(keys.webchat_file(_H, _H, _H)),
        "hash",
        ("meta", "data"),
        _field,
    ),
    SealedKind("widget history", _WIDGET_HISTORY, "zset", (), _widget_history),
)


def classify(key: str) -> SealedKind | None:
    """The kind of sealed record ``key`` holds (None: it holds no sealed value)."""
    for kind in SEALED:
        if kind.pattern.match(key):
            return kind
    return None


# KEYS: the record. ARGV: the value read, the value to write. 1 swapped, 0 changed since.
_STRING_CAS = r"""
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
  return 1
end
return 0
"""
# ARGV: field, value read, value to write
_HASH_CAS = r"""
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
  return 1
end
return 0
"""
# Entries carry a random nonce, so the old value names its position exactly.
_LIST_CAS = r"""
local i = redis.call('LPOS', KEYS[1], ARGV[1])
if i then
  redis.call('LSET', KEYS[1], i, ARGV[2])
  return 1
end
return 0
"""
# The same for a sorted set's member, which keeps its score (the new member is added
# before the old one goes: a set left empty for a moment would be deleted with its TTL).
_ZSET_CAS = r"""
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score then
  redis.call('ZADD', KEYS[1], score, ARGV[2])
  redis.call('ZREM', KEYS[1], ARGV[1])
  return 1
end
return 0
"""
# KEYS: lock. ARGV: owner, ttl ms
_RENEW = r"""
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
return false
"""
_RELEASE = r"""
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

_COUNTS = ("resealed", "current", "unreadable", "vanished")
_KEEP_UNREADABLE = 50


class RotationBusy(Exception):
    """Another rotation holds the lock."""


@dataclass
class Tally:
    """What a pass found: records per (kind, key id), and what rotation did."""

    by_key: Counter[tuple[str, str]] = field(default_factory=Counter)
    resealed: int = 0
    current: int = 0
    unreadable: int = 0
    vanished: int = 0
    """Records deleted or replaced (by a live writer, under the active key) meanwhile."""
    unreadable_keys: list[str] = field(default_factory=list)
    scanned: int = 0

    def key_ids(self) -> Counter[str]:
        out: Counter[str] = Counter()
        for (_, kid), n in self.by_key.items():
            out[kid] += n
        return out

    def note_unreadable(self, key: str, field_: str) -> None:
        self.unreadable += 1
        if len(self.unreadable_keys) < _KEEP_UNREADABLE:
            self.unreadable_keys.append(f"{key}#{field_}" if field_ else key)


@dataclass(frozen=True, slots=True)
class _Item:
    kind: SealedKind
    key: str
    field: str
    """The hash field ("" for strings, list entries and sorted-set members)."""
    value: bytes


class Rotation:
    """Counts (``census``) or re-seals (``run``) every sealed record of the database."""

    def __init__(
        self, redis: aioredis.Redis, vault: Vault, *, batch: int = 500, pause: float = 0.0
    ) -> None:
        self._redis = redis
        self._typed = structures(redis)
        self._vault = vault
        self._batch = batch
        self._pause = pause
        self._cas = {
            "string": redis.register_script(_STRING_CAS),
            "hash": redis.register_script(_HASH_CAS),
            "list": redis.register_script(_LIST_CAS),
            "zset": redis.register_script(_ZSET_CAS),
        }
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)

    async def _read(self, found: list[tuple[SealedKind, str]]) -> list[_Item]:
        pipe = self._redis.pipeline(transaction=False)
        for kind, key in found:
            if kind.shape == "string":
                pipe.get(key)
            elif kind.shape == "hash":
                pipe.hgetall(key)
            elif kind.shape == "zset":
                pipe.zrange(key, 0, -1)
            else:
                pipe.lrange(key, 0, -1)
        items: list[_Item] = []
        for (kind, key), got in zip(found, await pipe.execute(), strict=True):
            if got is None:
                continue
            if kind.shape == "string":
                items.append(_Item(kind, key, "", got))
            elif kind.shape == "hash":
                for f_raw, v in got.items():
                    f = f_raw.decode()
                    if not kind.fields or f in kind.fields:
                        items.append(_Item(kind, key, f, v))
            else:
                items.extend(_Item(kind, key, "", v) for v in got)
        return [i for i in items if i.value]

    async def census(self, on_batch: Callable[[Tally], None] | None = None) -> Tally:
        """Records per (kind, key id), read from the records' headers (nothing is opened,
        nothing written). Ids the vault does not hold count as unreadable too."""
        tally = Tally()
        cursor = 0
        known = set(self._vault.key_ids)
        while True:
            cursor, names = await self._redis.scan(cursor=cursor, count=self._batch)
            tally.scanned += len(names)
            found = [(k, n) for n in (x.decode() for x in names) if (k := classify(n))]
            for item in await self._read(found):
                kid = Vault.record_key_id(item.value) or "(not sealed)"
                tally.by_key[(item.kind.name, kid)] += 1
                if kid not in known:
                    tally.note_unreadable(item.key, item.field)
            if on_batch is not None:
                on_batch(tally)
            if cursor == 0:
                return tally

    async def state(self) -> dict[str, str]:
        """The stored progress of the last rotation (empty when none ran)."""
        raw = await self._typed.hgetall(keys.ROTATION)
        return {k.decode(): v.decode() for k, v in raw.items()}

    async def run(
        self, *, restart: bool = False, on_batch: Callable[[Tally], None] | None = None
    ) -> Tally:
        """Re-seal every record not under the active key; resumes a rotation to the same
        active key that stopped midway unless ``restart``. Raises ``RotationBusy`` when
        another rotation runs. Idempotent."""
        owner = new_id()
        lock_ms = 60_000
        if not await self._redis.set(keys.ROTATION_LOCK, owner, nx=True, px=lock_ms):
            raise RotationBusy("another `deskbridge keys rotate` is running")
        try:
            tally, cursor = await self._resume(restart)
            while True:
                cursor, names = await self._redis.scan(cursor=cursor, count=self._batch)
                tally.scanned += len(names)
                found = [(k, n) for n in (x.decode() for x in names) if (k := classify(n))]
                for item in await self._read(found):
                    await self._rotate(item, tally)
                await self._save(tally, cursor)
                if not await self._renew(keys=[keys.ROTATION_LOCK], args=[owner, lock_ms]):
                    raise RotationBusy("the rotation lock was lost; run it again to resume")
                if on_batch is not None:
                    on_batch(tally)
                if cursor == 0:
                    await self._typed.hset(keys.ROTATION, "finished_at", f"{time.time():.3f}")
                    return tally
                if self._pause:
                    await asyncio.sleep(self._pause)
        finally:
            await self._release(keys=[keys.ROTATION_LOCK], args=[owner])

    async def _resume(self, restart: bool) -> tuple[Tally, int]:
        st = await self.state()
        active = self._vault.active_id
        if not restart and st.get("active") == active and "finished_at" not in st:
            tally = Tally(
                resealed=int(st.get("resealed", 0)),
                current=int(st.get("current", 0)),
                unreadable=int(st.get("unreadable", 0)),
                vanished=int(st.get("vanished", 0)),
                unreadable_keys=json.loads(st.get("unreadable_keys", "[]")),
                scanned=int(st.get("scanned", 0)),
            )
            return tally, int(st.get("cursor", 0))
        pipe = self._redis.pipeline(transaction=True)
        pipe.delete(keys.ROTATION)
        pipe.hset(
            keys.ROTATION,
            mapping={"active": active, "started_at": f"{time.time():.3f}", "cursor": 0},
        )
        await pipe.execute()
        return Tally(), 0

    async def _save(self, tally: Tally, cursor: int) -> None:
        mapping: dict[str, str | int] = {name: getattr(tally, name) for name in _COUNTS}
        mapping |= {
            "cursor": cursor,
            "scanned": tally.scanned,
            "updated_at": f"{time.time():.3f}",
            "unreadable_keys": json.dumps(tally.unreadable_keys),
        }
        await self._typed.hset(keys.ROTATION, mapping=mapping)

    async def _rotate(self, item: _Item, tally: Tally) -> None:
        value = item.value
        aad = item.kind.aad(item.key, item.field)
        for _ in range(5):
            kid = Vault.record_key_id(value)
            tally.by_key[(item.kind.name, kid or "(not sealed)")] += 1
            if kid == self._vault.active_id:
                tally.current += 1
                return
            try:
                fresh = self._vault.reseal(value, aad)
            except SealBroken:
                tally.note_unreadable(item.key, item.field)
                return
            shape = item.kind.shape
            if shape == "hash":
                args: list[bytes | str] = [item.field, value, fresh]
            else:
                args = [value, fresh]
            if await self._cas[shape](keys=[item.key], args=args):
                tally.resealed += 1
                return
            tally.by_key[(item.kind.name, kid or "(not sealed)")] -= 1
            # a live process changed the record since it was read: read it again
            if shape in ("list", "zset"):
                tally.vanished += 1  # entries are never rewritten, only trimmed away
                return
            again = (
                await self._redis.get(item.key)
                if shape == "string"
                else await self._typed.hget(item.key, item.field)
            )
            if not again:
                tally.vanished += 1
                return
            value = again
        tally.note_unreadable(item.key, item.field)  # pragma: no cover - a record in a storm
