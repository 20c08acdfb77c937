"""Intake: store inbound events, their delivery records and jobs in one atomic write.

Concurrent requests are coalesced (group commit): the script calls of one turn of the
event loop go out in one write, as that turn ends, on a connection the intake keeps for
itself (``store/mux.py``'s ``own_multiplexer``). Batches are pipelined on it without a
limit: Redis runs a connection's commands in the order they came, so a request stored
after another is queued after it (lanes keep arrival order), and the gateway never
waits for one batch's answers before it sends the next. Each call is answered from the
connection's reader as its own reply arrives, not when its batch's last one does and
not one loop iteration later in a reading task: at the peak, the gateway no longer sits
idle with every request in flight waiting on Redis (+20-30 % acks/s,
docs/benchmarks.md). With ``wait_replicas``, each batch is followed by ``WAIT`` and its
calls are answered with it; one ``WAIT`` is in flight at a time (calls made meanwhile go
as one batch after it), since each would hold up the connection's next commands.
"""

from __future__ import annotations

import asyncio
import functools
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
from deskbridge.store.mux import Answered, Multiplexer, own_multiplexer
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


_Call = tuple[AsyncScript, "asyncio.Future[Any]", bytes]


class Coalescer:
    """Runs script calls in shared pipelines (group commit); see the module docstring."""

    def __init__(
        self, redis: aioredis.Redis, *, wait_replicas: int = 0, wait_timeout_ms: int = 1000
    ) -> None:
        self._redis = redis
        self._wait = _pack(b"WAIT", wait_replicas, wait_timeout_ms) if wait_replicas else b""
        self._replicas = wait_replicas
        self._queue: list[_Call] = []
        self._scheduled = False
        self._mux: Multiplexer | None = None
        self._scripts: dict[int, AsyncScript] = {}
        self._in_flight = 0
        self._waiting = 0  # WAITs written and not answered (with wait_replicas)
        self.flushes = 0
        self.calls = 0
        self.most_in_flight = 0

    async def call(self, script: AsyncScript, keys: list[str], args: list[Any]) -> Any:
        """The script's result. Raises ``StoreUnavailable`` when Redis fails."""
        return await self._call(script, _pack(b"EVALSHA", script.sha, len(keys), *keys, *args))

    async def call_packed(self, script: AsyncScript, packed: bytes) -> Any:
        """``call`` of ``script`` with its EVALSHA already packed (``frame``): the
        arguments an account and a source always send the same are packed once. The
        script's sha is its source's digest, so the bytes stay valid after a reload."""
        return await self._call(script, packed)

    def register(self, script: AsyncScript) -> None:
        """Load ``script`` first on every new connection (``_preamble``)."""
        self._scripts.setdefault(id(script), script)

    def _call(self, script: AsyncScript, packed: bytes) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        if id(script) not in self._scripts:
            self._scripts[id(script)] = script
        future = loop.create_future()
        self._queue.append((script, future, packed))
        if not self._scheduled:
            # the calls of this turn of the loop go together, written as it ends
            self._scheduled = True
            loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        self._scheduled = False
        if self._replicas and self._waiting:
            # one WAIT at a time: Redis runs a connection's commands in turn, so WAITs
            # written back to back would each hold up the next (a lagging replica would
            # add its timeout per batch); the calls queue and go as one batch after it
            return
        batch, self._queue = self._queue, []
        if batch:
            self._send(batch, retry=True)

    def _send(self, batch: list[_Call], *, retry: bool) -> None:
        """One batch's EVALSHAs (then ``WAIT`` when replicas must confirm) in one write
        on the intake's connection, behind every batch written before it. Each call is
        answered as its own reply is read, not when the batch's last one is (with
        ``wait_replicas``: when the ``WAIT`` is)."""
        self.flushes += 1
        self.calls += len(batch)
        self._in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self._in_flight)
        left = [len(batch)]
        if not self._replicas:
            for call in batch:
                self._submit(call[2], 1, functools.partial(self._answered, call, retry, left))
        else:
            held: list[tuple[_Call, Any]] = []
            for call in batch:
                self._submit(call[2], 1, functools.partial(_hold, held, call))
            self._waiting += 1
            self._submit(self._wait, 1, functools.partial(self._confirmed, held, retry, left))
        self._write()

    def _multiplexer(self) -> Multiplexer:
        mux = self._mux
        if mux is None or mux._closed or mux._loop is not asyncio.get_running_loop():
            mux = self._mux = own_multiplexer(self._redis.connection_pool, preamble=self._preamble)
        return mux

    def _submit(self, packed: bytes, wanted: int, answered: Answered) -> None:
        self._multiplexer().submit(packed, wanted, answered)

    def _write(self) -> None:
        self._multiplexer().flush()

    def _preamble(self) -> list[bytes]:
        """A new connection loads every script seen so far before its first batch, so
        that no batch on it meets ``NOSCRIPT`` (whose retry would follow later ones)."""
        return [_pack(b"SCRIPT", b"LOAD", _source(s)) for s in self._scripts.values()]

    def _confirmed(
        self, held: list[tuple[_Call, Any]], retry: bool, left: list[int], acked: Any
    ) -> None:
        """The ``WAIT`` after a batch: its calls are answered only when enough replicas
        hold what they wrote. Then the calls queued meanwhile go, as one batch."""
        self._waiting -= 1
        if isinstance(acked, list):
            (acked,) = acked
        if not isinstance(acked, BaseException) and int(acked) < self._replicas:
            acked = _NotReplicated(f"written to the primary, confirmed by {acked} replica(s)")
        for call, outcome in held:
            self._answered(
                call, retry, left, acked if isinstance(acked, BaseException) else outcome
            )
        if self._queue and not self._scheduled:
            self._flush()

    def _answered(self, call: _Call, retry: bool, left: list[int], outcome: Any) -> None:
        left[0] -= 1
        if not left[0]:
            self._in_flight -= 1
        if isinstance(outcome, list):  # a reply of its own
            (outcome,) = outcome
        if isinstance(outcome, NoScriptError) and retry:
            # a flushed script cache: loaded and run again, written now from the reader
            # in the order the calls came, ahead of every batch not yet written
            self._submit(_pack(b"SCRIPT", b"LOAD", _source(call[0])), 1, _ignore)
            self._send([call], retry=False)
        elif isinstance(outcome, ResponseError):
            _settle(call[1], StoreUnavailable(f"intake script failed: {type(outcome).__name__}"))
        elif isinstance(outcome, BaseException):
            _settle(
                call[1],
                StoreUnavailable(f"intake write failed: {type(outcome).__name__}: {outcome}"),
            )
        else:
            _settle(call[1], outcome)


class _NotReplicated(Exception):
    pass


def _hold(held: list[tuple[_Call, Any]], call: _Call, outcome: Any) -> None:
    held.append((call, outcome))


def _ignore(outcome: Any) -> None:
    pass


def _settle(future: asyncio.Future[Any], outcome: Any) -> None:
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


def _source(script: AsyncScript) -> bytes | str:
    text = script.script
    return text if isinstance(text, bytes | str) else bytes(text)


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
        for script in (self._intake, self._deferred, self._parse_failed, self._ignored):
            # loaded first on every connection the group commit opens (its preamble), so
            # that no call meets NOSCRIPT on a fresh Redis: a retry written from the
            # reader could land behind a later call of the same conversation
            self._coalescer.register(script)
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
