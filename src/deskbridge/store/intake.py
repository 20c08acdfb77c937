"""Intake: store inbound events, their delivery records and jobs in one atomic write.

Concurrent requests are coalesced: while a batch is in flight, the writes of every other
request queue up and go out together in the next one (group commit). An idle gateway
pays one round trip per request; a busy one, one round trip per batch. Up to two
batches are in flight at once, pipelined on one connection: Redis runs a connection's
commands in the order they came, so a request stored after another is queued after it
(lanes keep arrival order), while the gateway does not sit idle waiting for each batch's
answer before it sends the next (+5 % acks/s at the peak, docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import hiredis
import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, RedisError, ResponseError

from deskbridge.errors import StoreUnavailable
from deskbridge.schemas import DeliveryState, Direction, RawRequest
from deskbridge.store import keys
from deskbridge.store.crypto import Vault
from deskbridge.store.deliveries import JOB_FUNCTIONS
from deskbridge.store.ids import new_id
from deskbridge.store.packing import pack
from deskbridge.store.raw import raw_record
from deskbridge.store.records import StoredEvent, event_record, record_head
from deskbridge.store.scripts import IGNORED, INTAKE, INTAKE_DEFERRED, PARSE_FAILED

log = logging.getLogger(__name__)

__all__ = ["Coalescer", "IgnoredItem", "Intake", "IntakeEvent", "raw_record"]


@dataclass(frozen=True, slots=True)
class IntakeEvent:
    """One parsed event to store: its dedup key, its conversation, the event itself."""

    dedup_key: str
    conversation_id: str
    event: StoredEvent


@dataclass(frozen=True, slots=True)
class IgnoredItem:
    """One inbound item acknowledged and deliberately not filed: the name of the decision
    and the platform's id of the item (no text from it)."""

    reason: str
    provider_id: str = ""
    id: str = ""
    """The record's id when it must be the same on a retry (the deferred parse's
    delivery); empty: a new one."""


class _NotReplicated(Exception):
    pass


_Call = tuple[AsyncScript, list[str], list[Any], "asyncio.Future[Any]", bytes | None]

_DEPTH = 2
"""Batches sent and not yet answered, at most: pipelined on one connection, in order."""


class Coalescer:
    """Runs script calls in shared pipelines (group commit); see the module docstring."""

    def __init__(
        self, redis: aioredis.Redis, *, wait_replicas: int = 0, wait_timeout_ms: int = 1000
    ) -> None:
        self._redis = redis
        self._wait = (wait_replicas, wait_timeout_ms)
        self._queue: list[_Call] = []
        self._scheduled = False
        self._in_flight = 0
        # the connection the batches are pipelined on (held; dropped when it fails)
        self._conn: Any = None
        self._sending = asyncio.Lock()
        self._last_read: asyncio.Future[None] | None = None
        self._scripts: dict[int, AsyncScript] = {}
        self.flushes = 0
        self.calls = 0
        self.most_in_flight = 0

    async def call(self, script: AsyncScript, keys: list[str], args: list[Any]) -> Any:
        """The script's result. Raises ``StoreUnavailable`` when Redis fails."""
        return await self._call((script, keys, args, _future(), None))

    async def call_packed(self, script: AsyncScript, packed: bytes) -> Any:
        """``call`` of ``script`` with its EVALSHA already packed (``frame``): the
        arguments an account and a source always send the same are packed once. The
        script's sha is its source's digest, so the bytes stay valid after a reload."""
        return await self._call((script, [], [], _future(), packed))

    async def _call(self, call: _Call) -> Any:
        fut = call[3]
        if id(call[0]) not in self._scripts:
            self._scripts[id(call[0])] = call[0]
        self._queue.append(call)
        self._kick()
        return await fut

    def _kick(self) -> None:
        if self._queue and not self._scheduled and self._in_flight < _DEPTH:
            self._scheduled = True
            asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        # runs after the calls of this turn of the loop have queued: they go together
        self._scheduled = False
        batch, self._queue = self._queue, []
        if not batch:
            return
        self._in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self._in_flight)
        try:
            await self._flush(batch)
        finally:
            self._in_flight -= 1
            self._kick()

    async def _flush(self, batch: list[_Call]) -> None:
        self.flushes += 1
        self.calls += len(batch)
        try:
            results = await self._execute(batch)
            # a restarted or flushed Redis forgot our scripts: load them, rerun those calls
            missing = [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]
            if missing:
                for script in {id(batch[i][0]): batch[i][0] for i in missing}.values():
                    script.sha = await self._redis.script_load(script.script)
                retried = await self._execute([batch[i] for i in missing])
                for i, r in zip(missing, retried, strict=True):
                    results[i] = r
        except Exception as exc:
            if not isinstance(exc, RedisError | OSError | _NotReplicated):
                log.exception("intake flush failed unexpectedly")
            err = StoreUnavailable(f"intake write failed: {type(exc).__name__}: {exc}")
            for _, _, _, fut, _ in batch:
                if not fut.done():
                    fut.set_exception(err)
            return
        for (_, _, _, fut, _), result in zip(batch, results, strict=True):
            if fut.done():
                continue
            if isinstance(result, Exception):
                fut.set_exception(
                    StoreUnavailable(f"intake script failed: {type(result).__name__}")
                )
            else:
                fut.set_result(result)

    async def _execute(self, batch: list[_Call]) -> list[Any]:
        """One round trip: an EVALSHA per call (then WAIT when replicas must confirm),
        packed here rather than by redis-py, whose generic encoder cost more than a third
        of the gateway's Redis time on the ack path. Error replies come back as values."""
        replicas, timeout_ms = self._wait
        packed = [
            p if p is not None else _pack(b"EVALSHA", script.sha, len(k), *k, *a)
            for script, k, a, _, p in batch
        ]
        if replicas:
            packed.append(_pack(b"WAIT", replicas, timeout_ms))
        loop = asyncio.get_running_loop()
        # answers are read in the order the batches were sent: each reader waits for the
        # one before it (the chain is extended before any await, in send order)
        before, mine = self._last_read, loop.create_future()
        self._last_read = mine
        conn: Any = None
        try:
            async with self._sending:  # FIFO: batches go out in the order they formed
                conn = await self._connection()
                await conn.send_packed_command(b"".join(packed), check_health=False)
            if before is not None:
                await asyncio.wait([before])
            if conn is not self._conn:
                # an earlier batch on this connection failed, and the connection with it
                raise ConnectionError("the connection failed before this batch's answer")
            results: list[Any] = []
            for _ in packed:
                try:
                    results.append(await conn.read_response())
                except ResponseError as exc:
                    results.append(exc)
        except BaseException:
            if conn is not None:
                await self._drop(conn)
            raise
        finally:
            mine.set_result(None)
        if replicas:
            acked = results.pop()
            if isinstance(acked, Exception) or int(acked) < replicas:
                raise _NotReplicated(f"written to the primary, confirmed by {acked} replica(s)")
        return results

    async def _connection(self) -> Any:
        """The pipelining connection; a new one first loads every script seen so far, so
        that no batch on it meets ``NOSCRIPT`` (whose retry would follow later batches)."""
        if self._conn is None:
            pool = self._redis.connection_pool
            conn = await pool.get_connection()
            try:
                scripts = list(self._scripts.values())
                if scripts:
                    load = b"".join(_pack(b"SCRIPT", b"LOAD", _source(s)) for s in scripts)
                    await conn.send_packed_command(load, check_health=False)
                    for _ in scripts:
                        await conn.read_response()
            except BaseException:
                await conn.disconnect()
                await pool.release(conn)
                raise
            self._conn = conn
        return self._conn

    async def _drop(self, conn: Any) -> None:
        """Close the connection that failed (its stream may hold half an answer) and give
        it back to the pool, which connects it again on its next use. Once: the batches
        behind it on the same connection find it gone. (At shutdown the pool closes it
        with its other connections.)"""
        if self._conn is not conn:
            return
        self._conn = None
        await conn.disconnect()
        await self._redis.connection_pool.release(conn)


def _source(script: AsyncScript) -> bytes | str:
    text = script.script
    return text if isinstance(text, bytes | str) else bytes(text)


def _future() -> asyncio.Future[Any]:
    return asyncio.get_running_loop().create_future()


def _pack(*args: bytes | str | int) -> bytes:
    """One command in RESP (hiredis's C packer: the same bytes as redis-py's, 6x faster)."""
    # hiredis's stub declares a one-element tuple and an untyped result
    return hiredis.pack_command(args)  # type: ignore[arg-type,no-any-return]


def _bulks(*args: bytes | str | int) -> bytes:
    """``args`` as RESP bulk strings without the array header: a piece of a command
    whose header counts every piece (``_frame``)."""
    packed = _pack(*args)
    return packed[packed.index(b"\r\n") + 2 :]


@dataclass(frozen=True, slots=True)
class _Frame:
    """An EVALSHA packed around its variable middle: ``head`` (array header, command,
    sha, key count and the leading keys) and ``tail`` (the trailing arguments)."""

    head: bytes
    tail: bytes

    def command(self, *middle: bytes | str | int) -> bytes:
        return self.head + _bulks(*middle) + self.tail


class Intake:
    """Stores what the gateway acknowledges. Every method is one atomic Redis script."""

    def __init__(
        self,
        redis: aioredis.Redis,
        vault: Vault,
        *,
        dedup_ttl: int,
        raw_ttl: int,
        raw_ttls: dict[str, int] | None = None,
        job_expiry_ms: int,
        wait_replicas: int = 0,
        wait_timeout_ms: int = 1000,
    ) -> None:
        """``raw_ttls``: an account's own raw retention (seconds), else ``raw_ttl``.
        ``wait_replicas``: acknowledge only what that many replicas confirmed (``WAIT``);
        the primary keeps what it wrote, and the platform's retry is then a duplicate."""
        self._vault = vault
        self._coalescer = Coalescer(
            redis, wait_replicas=wait_replicas, wait_timeout_ms=wait_timeout_ms
        )
        self._redis = redis
        self._intake = redis.register_script(INTAKE)
        self._deferred = redis.register_script(INTAKE_DEFERRED)
        self._frames: dict[tuple[str, str, str], _Frame] = {}
        self._parse_failed = redis.register_script(PARSE_FAILED)
        self._ignored = redis.register_script(IGNORED)
        self._dedup_ttl = dedup_ttl
        self._raw_ttl = raw_ttl
        self._raw_ttls = raw_ttls or {}
        self._job_expiry_ms = job_expiry_ms

    async def claim_token(self, account: str, source: str, token: str, bound: str) -> bool:
        """Bind a provider's one-time request token to what it brought (``bound``, e.g. a
        digest of the mail's Message-ID) for the dedup window. True when the token is new
        or came with the same ``bound`` before (a redelivery); False when it brought
        something else (a replayed signature). Raises StoreUnavailable."""
        key = keys.dedup(account, source, self._vault.digest("dedup", source, f"token:{token}"))
        try:
            if await self._redis.set(key, bound, nx=True, ex=self._dedup_ttl):
                return True
            held: bytes | None = await self._redis.get(key)
        except RedisError as exc:
            raise StoreUnavailable(f"token claim failed: {type(exc).__name__}") from exc
        return held is None or held.decode(errors="replace") == bound

    @property
    def coalescer(self) -> Coalescer:
        return self._coalescer

    async def accept(
        self,
        *,
        account: str,
        source: str,
        direction: Direction,
        channel: str,
        desk: str,
        req: RawRequest | None,
        events: Sequence[IntakeEvent],
        kind: str = "",
        raw_id: str | None = None,
    ) -> list[bool]:
        """Store ``events`` (each with a pending delivery and its job); True where new,
        False where the dedup mark says we already have it. ``kind``: written on each
        delivery record (``note``). ``raw_id``: the id to keep ``req`` under (default: a
        new one). Raises ``StoreUnavailable``."""
        if not events:
            return []
        now = time.time()
        now_ms = int(now * 1000)
        raw_id = raw_id or new_id()
        raw_key = keys.raw(account, raw_id)
        raw_blob = self._vault.seal(pack(raw_record(req, now)), raw_key) if req is not None else b""
        k: list[str] = [
            keys.pending(account),
            keys.ARQ_QUEUE,
            raw_key,
            keys.deliveries(account),
            keys.raws(account, source),
        ]
        a: list[Any] = [
            now_ms,
            raw_blob,
            self._raw_ttls.get(account, self._raw_ttl),
            self._dedup_ttl,
            self._job_expiry_ms,
            JOB_FUNCTIONS[direction],
            account,
            len(events),
            direction.value,
            channel,
            desk,
        ]
        head = record_head(raw_id if req is not None else None, now)
        for ev in events:
            # the first delivery of an event shares its id; re-ingest makes new ones
            event_id = new_id()
            event_key = keys.event(account, event_id)
            record = event_record(head, event_id, ev.event)
            k += [
                keys.dedup(account, source, self._vault.digest("dedup", source, ev.dedup_key)),
                event_key,
                keys.delivery(account, event_id),
                keys.lane(account, direction.value, ev.conversation_id),
                keys.arq_job(event_id),
            ]
            a += [event_id, self._vault.seal(pack(record), event_key), ev.conversation_id]
        if kind:
            a.append(kind)
        result = await self._coalescer.call(self._intake, k, a)
        return [bool(x) for x in result]

    async def accept_deferred(
        self,
        *,
        account: str,
        source: str,
        desk: str,
        req: RawRequest,
        dedup_key: str,
        conversation_id: str,
        raw_id: str,
    ) -> bool:
        """Store one inbound item whose parse is deferred to the worker (a receiver's
        ``peek`` read its dedup key and thread): the dedup mark, the raw request sealed
        under ``raw_id`` (also the id of its delivery and, once parsed, of its event), the
        delivery record naming the raw and the item, and the lane entry and job, in one
        script and no event record. The channel is ``source``. True when new, False for a
        duplicate. Raises ``StoreUnavailable``."""
        now = time.time()
        raw_key = keys.raw(account, raw_id)
        command = self._deferred_frame(account, source, desk).command(
            raw_key,
            keys.dedup(account, source, self._vault.digest("dedup", source, dedup_key)),
            keys.delivery(account, raw_id),
            keys.lane(account, Direction.INBOUND.value, conversation_id),
            keys.arq_job(raw_id),
            int(now * 1000),
            self._vault.seal(pack(raw_record(req, now)), raw_key),
            conversation_id,
        )
        return bool(await self._coalescer.call_packed(self._deferred, command))

    def _deferred_frame(self, account: str, source: str, desk: str) -> _Frame:
        """INTAKE_DEFERRED's constant pieces for one account and source, packed once."""
        frame = self._frames.get((account, source, desk))
        if frame is None:
            # 3 (command, sha, key count) + 4 leading keys + 8 in the middle + 8 trailing
            head = b"*23\r\n" + _bulks(
                b"EVALSHA",
                self._deferred.sha,
                9,
                keys.pending(account),
                keys.ARQ_QUEUE,
                keys.deliveries(account),
                keys.raws(account, source),
            )
            tail = _bulks(
                self._raw_ttls.get(account, self._raw_ttl),
                self._dedup_ttl,
                self._job_expiry_ms,
                JOB_FUNCTIONS[Direction.INBOUND],
                account,
                Direction.INBOUND.value,
                source,
                desk,
            )
            frame = self._frames[(account, source, desk)] = _Frame(head, tail)
        return frame

    async def ignore(
        self,
        *,
        account: str,
        source: str,
        req: RawRequest | None,
        items: Sequence[IgnoredItem],
        raw_id: str | None = None,
        kept_raw: str | None = None,
    ) -> str | None:
        """Record ``items`` (acknowledged, not filed) for the raw retention, each as a
        sealed record listed by ``events list --ignored``, and keep ``req`` under
        ``raw_id`` (once: a raw the intake script kept under that id is not written
        again; ``kept_raw``: the id of a request already stored, named by the records and
        not written). Returns the raw id kept, None without either. One atomic script,
        sent in the intake's shared round trip. Raises ``StoreUnavailable``."""
        if not items:
            return None
        now = time.time()
        now_ms = int(now * 1000)
        ttl = self._raw_ttls.get(account, self._raw_ttl)
        # ``kept_raw``: the request is already stored under that id (the deferred
        # parse's): the records name it, nothing is packed or sealed again
        kept = kept_raw or ((raw_id or new_id()) if req is not None else None)
        raw_key = keys.raw(account, kept or "none")
        req = None if kept_raw else req
        raw_blob = self._vault.seal(pack(raw_record(req, now)), raw_key) if req is not None else b""
        k = [keys.ignoreds(account), raw_key, keys.raws(account, source)]
        a: list[Any] = [now_ms, ttl, raw_blob]
        head = {"source": source, "received_at": now, "raw_id": kept}
        for item in items:
            item_id = item.id or new_id()  # a stable id writes the same record again
            key = keys.ignored(account, item_id)
            record = {**head, "id": item_id, "reason": item.reason, "provider_id": item.provider_id}
            k.append(key)
            a += [item_id, self._vault.seal(json.dumps(record).encode(), key)]
        await self._coalescer.call(self._ignored, k, a)
        return kept

    async def accept_parse_failed(
        self,
        *,
        account: str,
        source: str,
        direction: Direction,
        channel: str,
        desk: str,
        req: RawRequest,
        error: str,
        dedup_key: str,
    ) -> bool:
        """Keep a verified body our parser rejected as a ``parse_failed`` dead letter.
        ``error`` must not contain the body. False when already kept."""
        now = time.time()
        now_ms = int(now * 1000)
        delivery_id = new_id()
        raw_key = keys.raw(account, delivery_id)
        delivery = {
            "id": delivery_id,
            "account": account,
            "direction": direction.value,
            "channel": channel,
            "desk": desk,
            "conversation_id": "",
            "event_id": "",
            "raw_id": delivery_id,
            "state": DeliveryState.DEAD.value,
            "reason": "parse_failed",
            "last_error": error[:500],
            "attempts": 0,
            "created_at": now_ms,
            "updated_at": now_ms,
        }
        result = await self._coalescer.call(
            self._parse_failed,
            [
                keys.dedup(account, source, self._vault.digest("dedup", source, dedup_key)),
                raw_key,
                keys.delivery(account, delivery_id),
                keys.dead(account),
                keys.deliveries(account),
                keys.unparsed(account, source),
            ],
            [
                now_ms,
                self._vault.seal(pack(raw_record(req, now)), raw_key),
                self._dedup_ttl,
                json.dumps(delivery, separators=(",", ":")),
                delivery_id,
            ],
        )
        return bool(result)
