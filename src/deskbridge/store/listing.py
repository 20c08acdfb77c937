"""Reading the admin indexes page by page: deliveries by creation time, kept raw requests
by arrival. Newest first, with opaque cursors that stay valid while records come and go.

A page walks one sorted set per account (and per source for raw requests), merged by
(score, id) descending; ids are unique across accounts, so the pair orders everything.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import redis.asyncio as aioredis

from deskbridge.schemas import Delivery, DeliveryState, Direction
from deskbridge.store import keys
from deskbridge.store.connection import guarded
from deskbridge.store.crypto import Vault
from deskbridge.store.deliveries import DeliveryStore
from deskbridge.store.raw import read_raw_record

__all__ = [
    "Cursor",
    "DeliveryFilter",
    "IgnoredEntry",
    "Listing",
    "Page",
    "RawEntry",
    "RawFilter",
    "list_deliveries",
    "list_ignored",
    "list_raw",
]

T = TypeVar("T")

_CHUNK = 200
SCAN_BUDGET = 5000
"""Index entries one page examines at most; a page may then hold fewer matches than asked,
and its cursor continues the walk."""


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a page ended: the (score, id) of the last entry it examined."""

    score: int
    id: str

    def encode(self) -> str:
        return base64.urlsafe_b64encode(f"{self.score}:{self.id}".encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        """Raises ValueError for anything ``encode`` did not make."""
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
            score, _, ident = raw.partition(":")
            if not ident or not ident.isalnum():
                raise ValueError("bad cursor")
            return cls(int(score), ident)
        except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
            raise ValueError("not a cursor returned by this API") from exc


@dataclass(slots=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None
    scanned: int = 0


@dataclass(frozen=True, slots=True)
class DeliveryFilter:
    """What a delivery must match; None matches anything. Times are creation times in ms,
    ``since`` inclusive, ``until`` exclusive; ``error`` is a case-insensitive substring of
    the last error or the dead letter's reason."""

    state: DeliveryState | None = None
    direction: Direction | None = None
    channel: str | None = None
    desk: str | None = None
    conversation: str | None = None
    error: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None
    kind: str | None = None
    """``note`` (deskbridge's internal notes) or ``event`` (everything else)."""

    def matches(self, d: Delivery) -> bool:
        created = int(d.created_at.timestamp() * 1000)
        if self.error is not None:
            text = f"{d.last_error or ''}\n{d.reason or ''}".lower()
            if self.error.lower() not in text:
                return False
        return (
            (self.state is None or d.state is self.state)
            and (self.direction is None or d.direction is self.direction)
            and (self.channel is None or d.channel == self.channel)
            and (self.desk is None or d.desk == self.desk)
            and (self.conversation is None or d.conversation_id == self.conversation)
            and (self.since_ms is None or created >= self.since_ms)
            and (self.until_ms is None or created < self.until_ms)
            and (self.kind is None or (d.kind or "event") == self.kind)
        )


async def _walk(
    redis: aioredis.Redis,
    key: str,
    lo: int | None,
    hi: int | None,
    after: Cursor | None,
) -> AsyncIterator[tuple[int, str]]:
    """Members of the sorted set ``key`` with lo <= score < hi, by (score, id) descending,
    strictly after ``after``. Entries sharing a score are never skipped or repeated."""
    low = "-inf" if lo is None else str(lo)
    while True:
        if after is not None and (hi is None or after.score < hi):
            ties = await redis.zrangebyscore(key, after.score, after.score)
            if lo is None or after.score >= lo:
                for member in sorted((t.decode() for t in ties), reverse=True):
                    if member < after.id:
                        yield after.score, member
            top = f"({after.score}"
        else:
            top = "+inf" if hi is None else f"({hi}"
        rows = await redis.zrevrangebyscore(key, top, low, start=0, num=_CHUNK, withscores=True)
        for member, score in rows:
            yield int(score), member.decode()
        if len(rows) < _CHUNK:
            return
        after = Cursor(int(rows[-1][1]), rows[-1][0].decode())


async def _merge(
    walks: Sequence[tuple[T, AsyncIterator[tuple[int, str]]]],
) -> AsyncIterator[tuple[int, str, T]]:
    """Several walks as one, by (score, id) descending; each entry tagged with its walk's tag."""
    heads: list[tuple[tuple[int, str], T, AsyncIterator[tuple[int, str]]]] = []
    for tag, it in walks:
        first = await anext(it, None)
        if first is not None:
            heads.append((first, tag, it))
    while heads:
        i = max(range(len(heads)), key=lambda n: heads[n][0])
        (score, ident), tag, it = heads[i]
        yield score, ident, tag
        nxt = await anext(it, None)
        if nxt is None:
            heads.pop(i)
        else:
            heads[i] = (nxt, tag, it)


def _index(account: str, state: DeliveryState | None) -> str:
    # dead letters and pending work have their own sets; every other state is read from
    # the index of all deliveries and filtered
    if state is DeliveryState.DEAD:
        return keys.dead(account)
    if state is DeliveryState.PENDING:
        return keys.pending(account)
    return keys.deliveries(account)


async def list_deliveries(
    redis: aioredis.Redis,
    store: DeliveryStore,
    accounts: Sequence[str],
    filt: DeliveryFilter,
    *,
    limit: int,
    cursor: Cursor | None = None,
    budget: int = SCAN_BUDGET,
) -> Page[Delivery]:
    """One page of deliveries of ``accounts`` matching ``filt``, newest first. Index
    entries whose record has expired are dropped from the index on the way."""
    walks = []
    for account in accounts:
        key = _index(account, filt.state)
        # the dead and pending sets are scored by a time at or after creation, so only
        # the all-deliveries index can be cut at ``until``
        hi = filt.until_ms if key == keys.deliveries(account) else None
        walks.append(((account, key), _walk(redis, key, filt.since_ms, hi, cursor)))
    items: list[Delivery] = []
    scanned = 0
    last: Cursor | None = None
    exhausted = False
    merged = _merge(walks)
    while len(items) < limit and scanned < budget:
        batch: list[tuple[int, str, tuple[str, str]]] = []
        async for entry in merged:
            batch.append(entry)
            if len(batch) >= min(_CHUNK, budget - scanned):
                break
        if not batch:
            exhausted = True
            break
        found = await store.get_many([(acc, ident) for _, ident, (acc, _) in batch])
        gone: dict[str, list[str]] = {}
        for (score, ident, (_, key)), d in zip(batch, found, strict=True):
            scanned += 1
            last = Cursor(score, ident)
            if d is None:
                gone.setdefault(key, []).append(ident)
            elif filt.matches(d):
                items.append(d)
                if len(items) >= limit:
                    break
        for key, idents in gone.items():
            await redis.zrem(key, *idents)
    return Page(items, None if exhausted or last is None else last.encode(), scanned)


@dataclass(frozen=True, slots=True)
class RawFilter:
    sources: tuple[str, ...] = ()
    """Channels (or desks) to list; empty: every source of the account."""
    since_ms: int | None = None
    until_ms: int | None = None


@dataclass(frozen=True, slots=True)
class RawEntry:
    """A kept raw request, without its body. ``delivery_id`` is set for a body our parser
    rejected (its ``parse_failed`` dead letter)."""

    id: str
    account: str
    source: str
    received_at: datetime
    method: str
    path: str
    size: int
    delivery_id: str | None = None


async def read_raw(
    redis: aioredis.Redis, vault: Vault, account: str, raw_id: str
) -> tuple[dict[str, Any], bytes] | None:
    """A kept raw request's metadata and body (None once it expired)."""
    key = keys.raw(account, raw_id)
    blob = await redis.get(key)
    if blob is None:
        return None
    return read_raw_record(vault.open(blob, key))


async def list_raw(
    redis: aioredis.Redis,
    vault: Vault,
    sources: Mapping[str, Sequence[str]],
    filt: RawFilter,
    *,
    limit: int,
    cursor: Cursor | None = None,
    budget: int = SCAN_BUDGET,
) -> Page[RawEntry]:
    """One page of kept raw requests (``sources``: each account's channels and desk),
    newest first: those stored with their events and those kept as ``parse_failed``."""
    walks = []
    for account, names in sources.items():
        for source in names:
            if filt.sources and source not in filt.sources:
                continue
            for key, unparsed in (
                (keys.raws(account, source), False),
                (keys.unparsed(account, source), True),
            ):
                walk = _walk(redis, key, filt.since_ms, filt.until_ms, cursor)
                walks.append(((account, source, key, unparsed), walk))
    items: list[RawEntry] = []
    scanned = 0
    last: Cursor | None = None
    async for score, ident, (account, source, key, unparsed) in _merge(walks):
        if len(items) >= limit or scanned >= budget:
            return Page(items, last.encode() if last else None, scanned)
        scanned += 1
        last = Cursor(score, ident)
        found = await read_raw(redis, vault, account, ident)
        if found is None:
            await redis.zrem(key, ident)
            continue
        meta, body = found
        items.append(
            RawEntry(
                id=ident,
                account=account,
                source=source,
                received_at=datetime.fromtimestamp(score / 1000, UTC),
                method=str(meta.get("method", "")),
                path=str(meta.get("path", "")),
                size=len(body),
                delivery_id=ident if unparsed else None,
            )
        )
    return Page(items, None, scanned)


@dataclass(frozen=True, slots=True)
class IgnoredEntry:
    """An inbound item acknowledged and deliberately not filed (never its text)."""

    id: str
    account: str
    source: str
    reason: str
    provider_id: str
    received_at: datetime
    raw_id: str | None


async def list_ignored(
    redis: aioredis.Redis,
    vault: Vault,
    accounts: Sequence[str],
    filt: RawFilter,
    *,
    reason: str | None = None,
    limit: int,
    cursor: Cursor | None = None,
    budget: int = SCAN_BUDGET,
) -> Page[IgnoredEntry]:
    """One page of the ignored items of ``accounts`` (scopes), newest first, of the
    sources in ``filt`` (all when empty) and ``reason`` (any when None)."""
    walks = [
        (account, _walk(redis, keys.ignoreds(account), filt.since_ms, filt.until_ms, cursor))
        for account in accounts
    ]
    items: list[IgnoredEntry] = []
    scanned = 0
    last: Cursor | None = None
    async for score, ident, account in _merge(walks):
        if len(items) >= limit or scanned >= budget:
            return Page(items, last.encode() if last else None, scanned)
        scanned += 1
        last = Cursor(score, ident)
        key = keys.ignored(account, ident)
        blob = await redis.get(key)
        if blob is None:
            await redis.zrem(keys.ignoreds(account), ident)
            continue
        rec = json.loads(vault.open(blob, key))
        if (filt.sources and rec.get("source") not in filt.sources) or (
            reason is not None and rec.get("reason") != reason
        ):
            continue
        items.append(
            IgnoredEntry(
                id=ident,
                account=account,
                source=str(rec.get("source", "")),
                reason=str(rec.get("reason", "")),
                provider_id=str(rec.get("provider_id") or ""),
                received_at=datetime.fromtimestamp(score / 1000, UTC),
                raw_id=rec.get("raw_id") or None,
            )
        )
    return Page(items, None, scanned)


@guarded
class Listing:
    """The admin API's reads of the delivery and raw-request indexes. Redis failures
    raise ``StoreUnavailable``."""

    def __init__(self, redis: aioredis.Redis, vault: Vault, deliveries: DeliveryStore) -> None:
        self._redis = redis
        self._vault = vault
        self._deliveries = deliveries

    async def deliveries(
        self,
        accounts: Sequence[str],
        filt: DeliveryFilter,
        *,
        limit: int,
        cursor: Cursor | None = None,
    ) -> Page[Delivery]:
        """``list_deliveries`` over this store."""
        return await list_deliveries(
            self._redis, self._deliveries, accounts, filt, limit=limit, cursor=cursor
        )

    async def raws(
        self,
        sources: Mapping[str, Sequence[str]],
        filt: RawFilter,
        *,
        limit: int,
        cursor: Cursor | None = None,
    ) -> Page[RawEntry]:
        """``list_raw`` over this store."""
        return await list_raw(self._redis, self._vault, sources, filt, limit=limit, cursor=cursor)

    async def ignored(
        self,
        accounts: Sequence[str],
        filt: RawFilter,
        *,
        reason: str | None = None,
        limit: int,
        cursor: Cursor | None = None,
    ) -> Page[IgnoredEntry]:
        """``list_ignored`` over this store."""
        return await list_ignored(
            self._redis, self._vault, accounts, filt, reason=reason, limit=limit, cursor=cursor
        )

    async def raw(self, account: str, raw_id: str) -> tuple[dict[str, Any], bytes] | None:
        """A kept raw request's metadata and body (None once it expired)."""
        return await read_raw(self._redis, self._vault, account, raw_id)

    async def indexed(
        self, account: str, source: str, ids: Sequence[str], *, unparsed: bool
    ) -> list[tuple[str, float]]:
        """Which of ``ids`` the raw index of ``source`` (or its ``parse_failed`` index)
        holds, with their arrival times (ms), in the order of ``ids``."""
        key = keys.unparsed(account, source) if unparsed else keys.raws(account, source)
        pipe = self._redis.pipeline(transaction=False)
        for ident in ids:
            pipe.zscore(key, ident)
        scores = await pipe.execute()
        return [(i, s) for i, s in zip(ids, scores, strict=True) if s is not None]

    async def dedup_mark(self, account: str, source: str, dedup_key: str) -> bytes | None:
        """The value of an inbound event's dedup mark (its delivery id), None when unset."""
        value: bytes | None = await self._redis.get(
            keys.dedup(account, source, self._vault.digest("dedup", source, dedup_key))
        )
        return value
