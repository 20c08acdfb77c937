"""Delivery records: the state of every piece of work, its attempts, lanes and dead letters."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

import redis.asyncio as aioredis
from arq.constants import in_progress_key_prefix, job_key_prefix

from deskbridge.schemas import Attempt, Delivery, DeliveryState, Direction, RawRequest
from deskbridge.store import keys
from deskbridge.store.connection import guarded, structures
from deskbridge.store.crypto import Vault
from deskbridge.store.ids import new_id
from deskbridge.store.packing import pack, unpack
from deskbridge.store.raw import read_raw_record
from deskbridge.store.records import StoredEvent, event_record, record_head
from deskbridge.store.scripts import (
    CHANNEL_STATUS,
    CLAIM,
    COMPLETE,
    DESK_WRITE,
    DISCARD,
    FILING_BUDGET,
    FINISH,
    HOLD,
    PURGE,
    REHOLD,
    RELEASE,
    REPLAY,
    REQUEUE,
    UNPARSEABLE,
)

__all__ = ["JOB_FUNCTIONS", "Completed", "DeliveryStore", "Unparsed"]

JOB_FUNCTIONS: dict[Direction, str] = {
    Direction.INBOUND: "deliver_to_desk",
    Direction.OUTBOUND: "deliver_to_channel",
}

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass(frozen=True, slots=True)
class Unparsed:
    """A delivery whose event was stored unparsed (the deferred parse): its raw request
    (verified and scrubbed at the ack), when it arrived, and its item (the digest of the
    dedup key the gateway's ``peek`` read). ``DeliveryStore.materialize`` writes its event."""

    raw_id: str
    raw: RawRequest
    received_at: float
    item: str


def _window_wait(oldest_ms: float | None, window_s: float, now_ms: int) -> float:
    """Seconds until the oldest update (its score, ms) leaves a window of ``window_s``."""
    if oldest_ms is None:
        return 0.0
    return max(0.0, (oldest_ms + window_s * 1000 - now_ms) / 1000)


def _carried(mark: bytes | None, filed: bytes | None) -> tuple[str, ...] | None:
    """The deliveries merged into an earlier desk write of a delivery that may be at the
    desk, from its in-flight mark (``begin_desk_write``) and its record's ``desk_filed``
    (``queue_end_desk_write``): its message and theirs went as one update, so a later
    attempt must carry exactly them (those still pending) for the desk's reconciliation
    to settle all of them. None when no write of it went out; () when the write carried
    none, or its mark was written by an earlier version, which did not say."""
    if filed is not None:
        return tuple(filed.decode().split())
    if mark is None:
        return None
    _, sep, ids = mark.decode().partition("|")
    return tuple(ids.split()) if sep else ()


def _ms(value: bytes | str | None) -> datetime:
    return datetime.fromtimestamp(int(value or 0) / 1000, UTC)


def _s(value: bytes | None) -> str | None:
    return value.decode() if value is not None else None


def _delivery(h: dict[bytes, bytes]) -> Delivery | None:
    if b"id" not in h:  # gone (or only a stray field written after it expired)
        return None
    d = {k.decode(): v for k, v in h.items()}
    status = d.get("last_status")
    return Delivery(
        id=d["id"].decode(),
        account=d["account"].decode(),
        direction=Direction(d["direction"].decode()),
        channel=d["channel"].decode(),
        desk=d["desk"].decode(),
        conversation_id=d["conversation_id"].decode(),
        event_id=d["event_id"].decode(),
        state=DeliveryState(d["state"].decode()),
        attempts=int(d.get("attempts", b"0")),
        created_at=_ms(d.get("created_at")),
        updated_at=_ms(d.get("updated_at")),
        last_error=_s(d.get("last_error")),
        last_status=int(status) if status else None,
        reason=_s(d.get("reason")),
        channel_status=_s(d.get("channel_status")),
        channel_error=_s(d.get("channel_error")),
        raw_id=_s(d.get("raw_id")),
        replays=int(d.get("replays", b"0")),
        replayed_at=_ms(d["replayed_at"]) if "replayed_at" in d else None,
        replayed_by=_s(d.get("replayed_by")),
        discarded_at=_ms(d["discarded_at"]) if "discarded_at" in d else None,
        discarded_by=_s(d.get("discarded_by")),
        discard_reason=_s(d.get("discard_reason")),
        rate_limited_s=int(d.get("rate_limited_ms", b"0")) / 1000,
        kind=_s(d.get("kind")),
    )


class Completed(NamedTuple):
    """What ``DeliveryStore.complete`` did beyond the delivery: whether the account has
    problems noted (``report_problem``), and the next head's delivery id and queue score
    (ms) when its job was started for the caller."""

    problems: bool
    started: tuple[str, int] | None


@guarded
class DeliveryStore:
    def __init__(self, redis: aioredis.Redis, vault: Vault, *, job_expiry_ms: int) -> None:
        self._redis = redis
        self._typed = structures(redis)
        self._vault = vault
        self._job_expiry_ms = job_expiry_ms
        self._finish = redis.register_script(FINISH)
        self._requeue = redis.register_script(REQUEUE)
        self._release = redis.register_script(_RELEASE)
        self._hold = redis.register_script(HOLD)
        self._release_held = redis.register_script(RELEASE)
        self._channel_status = redis.register_script(CHANNEL_STATUS)
        self._replay = redis.register_script(REPLAY)
        self._discard = redis.register_script(DISCARD)
        self._purge = redis.register_script(PURGE)
        self._rehold = redis.register_script(REHOLD)
        self._claim = redis.register_script(CLAIM)
        self._complete = redis.register_script(COMPLETE)
        self._desk_write = redis.register_script(DESK_WRITE)
        self._filing_budget = redis.register_script(FILING_BUDGET)
        self._unparseable = redis.register_script(UNPARSEABLE)

    async def get(self, account: str, delivery_id: str) -> Delivery | None:
        return _delivery(await self._typed.hgetall(keys.delivery(account, delivery_id)))

    async def claim(
        self, account: str, delivery_id: str, direction: Direction, token: str, ttl_ms: int
    ) -> tuple[Delivery | None, str | None, bool, dict[str, Any] | Unparsed | None]:
        """A worker's start, in one round trip: the delivery; when it is pending in
        ``direction``, its lane's head, and whether the lane lock was taken with ``token``
        (only for the head); once locked, its event record (as ``event`` reads it), or
        when its parse was deferred and the record is not written yet, its ``Unparsed``
        raw request; None when both are gone. Returns (delivery or None, head, locked,
        event record)."""
        h, head, locked, *rest = await self._claim(
            keys=[keys.delivery(account, delivery_id)],
            args=[
                keys.lane(account, direction.value, ""),
                keys.lane_lock(account, direction.value, ""),
                token,
                ttl_ms,
                delivery_id,
                keys.event(account, ""),
                keys.raw(account, ""),
            ],
        )
        # a record of the other direction heads no lane of ``direction``: never locked
        fields = dict(zip(h[::2], h[1::2], strict=True))
        d = _delivery(fields)
        record: dict[str, Any] | Unparsed | None = None
        if d is not None and rest and isinstance(rest[0], bytes):
            record = self._event_record(keys.event(account, d.event_id), rest[0])
        elif d is not None and len(rest) > 1 and isinstance(rest[1], bytes):
            record = self._unparsed(d, fields[b"item"].decode(), rest[1])
        return d, head.decode() if isinstance(head, bytes) else None, bool(locked), record

    def _unparsed(self, d: Delivery, item: str, blob: bytes) -> Unparsed:
        raw_id = d.raw_id or d.id
        meta, body = read_raw_record(self._vault.open(blob, keys.raw(d.account, raw_id)))
        req = RawRequest(
            method=meta["method"],
            path=meta["path"],
            query=meta["query"],
            headers=meta["headers"],
            body=body,
        )
        return Unparsed(raw_id, req, float(meta["received_at"]), item)

    async def event_or_unparsed(self, d: Delivery) -> dict[str, Any] | Unparsed:
        """``d``'s event record, or its ``Unparsed`` raw request while the worker has not
        parsed it (the deferred parse). Raises KeyError when neither is kept."""
        a = d.account
        pipe = self._redis.pipeline(transaction=True)
        pipe.get(keys.event(a, d.event_id))
        pipe.hget(keys.delivery(a, d.id), "item")
        pipe.get(keys.raw(a, d.raw_id or d.id))
        blob, item, raw = await pipe.execute()
        if blob is not None:
            return self._event_record(keys.event(a, d.event_id), blob)
        if item is None or raw is None:
            raise KeyError(d.event_id)
        return self._unparsed(d, item.decode(), raw)

    def pick(self, source: str, item: str, events: Sequence[StoredEvent]) -> StoredEvent | None:
        """The one of ``events`` (a full parse of an ``Unparsed`` raw request) whose dedup
        key is ``item`` (its digest, as the dedup mark's key names it); None if none is."""
        for ev in events:
            if self._vault.digest("dedup", source, ev.dedup_key) == item:
                return ev
        return None

    async def materialize(
        self, d: Delivery, unparsed: Unparsed, event: StoredEvent, raw_ttl_s: int
    ) -> dict[str, Any]:
        """Write the sealed event record of a delivery whose parse was deferred, as the
        intake would have (same format, same ``received_at`` and raw id; kept when one is
        there already), and give its raw request the rest of its retention from its
        arrival. Returns the record as ``event`` reads it."""
        loaded, record = self._materialized(d, unparsed, event)
        await self.write_materialized(d, unparsed, record, raw_ttl_s)
        return loaded

    def materialize_behind(
        self, d: Delivery, unparsed: Unparsed, event: StoredEvent, raw_ttl_s: int
    ) -> tuple[dict[str, Any], asyncio.Future[None]]:
        """``materialize`` with its write started and not awaited: the record, and the
        write's future (it raises ``StoreUnavailable`` as ``materialize`` would). The
        caller's next command goes in the same round trip (``store.mux``), and the caller
        awaits the write before it finishes the delivery."""
        loaded, record = self._materialized(d, unparsed, event)
        return loaded, asyncio.ensure_future(
            self.write_materialized(d, unparsed, record, raw_ttl_s)
        )

    def _materialized(
        self, d: Delivery, unparsed: Unparsed, event: StoredEvent
    ) -> tuple[dict[str, Any], bytes]:
        record = event_record(record_head(unparsed.raw_id, unparsed.received_at), d.event_id, event)
        loaded: dict[str, Any] = json.loads(record)
        return loaded, record

    async def write_materialized(
        self, d: Delivery, unparsed: Unparsed, record: bytes, raw_ttl_s: int
    ) -> None:
        """``materialize``'s write of ``record`` (``_materialized``)."""
        key = keys.event(d.account, d.event_id)
        pipe = self._redis.pipeline(transaction=True)
        pipe.set(key, self._vault.seal(pack(record), key), nx=True)
        pipe.expireat(keys.raw(d.account, unparsed.raw_id), int(unparsed.received_at) + raw_ttl_s)
        await pipe.execute()

    async def settle_raw(self, d: Delivery, unparsed: Unparsed, raw_ttl_s: int) -> None:
        """The raw request of a deferred delivery that filed nothing (an ignored item)
        keeps the rest of its retention from its arrival, as the gateway would have."""
        await self._redis.expireat(
            keys.raw(d.account, unparsed.raw_id), int(unparsed.received_at) + raw_ttl_s
        )

    async def unparseable(
        self,
        d: Delivery,
        unparsed: Unparsed,
        error: str,
        body_key: str,
        dedup_ttl_s: int,
        token: str,
    ) -> bool:
        """Make a deferred delivery whose raw request the full parse refused the
        ``parse_failed`` dead letter the gateway would have made: kept without expiry and
        listed as unparsed for re-ingest, its item's dedup mark replaced by the body's
        (``body_key``: the dedup key the gateway gives an unparseable body), out of its
        lane (the next head's job enqueued), the lane lock released. ``error`` must not
        contain the body. True when it was still pending."""
        a, source = d.account, d.channel
        k, args = self._finishing(d, DeliveryState.DEAD, "parse_failed", 0, error)
        done = await self._unparseable(
            keys=[
                *k,
                keys.raw(a, unparsed.raw_id),
                keys.raws(a, source),
                keys.unparsed(a, source),
                keys.dedup(a, source, unparsed.item),
                keys.dedup(a, source, self._vault.digest("dedup", source, body_key)),
                keys.lane_lock(a, d.direction.value, d.conversation_id),
            ],
            args=[*args, dedup_ttl_s, token],
        )
        return bool(done)

    def _finishing(
        self, d: Delivery, state: DeliveryState, reason: str, retention_s: int, last_error: str
    ) -> tuple[list[str], list[Any]]:
        """FINISH's seven keys and ten arguments (``COMPLETE`` and ``UNPARSEABLE`` start
        with them)."""
        a = d.account
        return [
            keys.delivery(a, d.id),
            keys.pending(a),
            keys.dead(a),
            keys.lane(a, d.direction.value, d.conversation_id),
            keys.ARQ_QUEUE,
            keys.event(a, d.event_id),
            keys.expiring(a),
        ], [
            int(time.time() * 1000),
            state.value,
            reason,
            retention_s,
            self._job_expiry_ms,
            JOB_FUNCTIONS[d.direction],
            a,
            d.id,
            job_key_prefix,
            last_error[:500],
        ]

    async def complete(
        self,
        delivery: Delivery,
        state: DeliveryState,
        attempt: Attempt,
        token: str,
        *,
        retention_s: int = 0,
        job_id: str | None = None,
        start_next_ms: int = 0,
    ) -> Completed:
        """After an attempt that spent the budget without an error: ``record_attempt``,
        ``finish`` and ``unlock_lane`` in one atomic round trip, and with ``job_id`` what
        arq does when that job ends (the worker then skips arq's own finish). With
        ``start_next_ms`` too, the next head's job is started for this worker (arq's
        in-progress mark, that long) when it is due and no one else has it: the worker
        runs it next (``Completed.started``)."""
        a, d = delivery.account, delivery
        k, args = self._finishing(d, state, "", retention_s, "")
        k += [
            keys.attempts(a, d.id),
            keys.lane_lock(a, d.direction.value, d.conversation_id),
            keys.problems(a),
        ]
        args += [attempt.model_dump_json(exclude_none=True), token]
        if job_id is not None:
            k += [
                keys.arq_job(job_id),
                keys.arq_in_progress(job_id),
                keys.arq_retry(job_id),
                keys.ARQ_ABORTS,
            ]
            args.append(job_id)
            if start_next_ms:
                args += [in_progress_key_prefix, start_next_ms]
        head, problems, score = await self._complete(keys=k, args=args)
        started = None
        if score:
            started = (head.decode(), int(float(score)))
        return Completed(bool(problems), started)

    async def get_many(self, refs: Sequence[tuple[str, str]]) -> list[Delivery | None]:
        """The deliveries of ``(account, id)`` pairs in one round trip (None where gone)."""
        pipe = self._redis.pipeline(transaction=False)
        for account, delivery_id in refs:
            pipe.hgetall(keys.delivery(account, delivery_id))
        return [_delivery(h) for h in await pipe.execute()]

    async def event(self, account: str, event_id: str) -> dict[str, Any]:
        """The stored event record (decrypted). Raises KeyError when it is gone."""
        key = keys.event(account, event_id)
        blob = await self._redis.get(key)
        if blob is None:
            raise KeyError(event_id)
        return self._event_record(key, blob)

    def _event_record(self, key: str, blob: bytes) -> dict[str, Any]:
        record: dict[str, Any] = json.loads(unpack(self._vault.open(blob, key)))
        return record

    async def raw_request(self, account: str, raw_id: str) -> RawRequest | None:
        """The stored request an event came in (None once its retention ran out)."""
        key = keys.raw(account, raw_id)
        blob = await self._redis.get(key)
        if blob is None:
            return None
        meta, body = read_raw_record(self._vault.open(blob, key))
        return RawRequest(
            method=meta["method"],
            path=meta["path"],
            query=meta["query"],
            headers=meta["headers"],
            body=body,
        )

    async def attempts(self, account: str, delivery_id: str) -> list[Attempt]:
        rows = await self._typed.lrange(keys.attempts(account, delivery_id), 0, -1)
        return [Attempt.model_validate_json(r) for r in rows]

    async def record_attempt(
        self, account: str, delivery_id: str, attempt: Attempt, *, spends_budget: bool
    ) -> int:
        """Append ``attempt``; returns the attempts that spent the budget so far."""
        key = keys.delivery(account, delivery_id)
        now_ms = int(time.time() * 1000)
        pipe = self._redis.pipeline(transaction=True)
        pipe.rpush(keys.attempts(account, delivery_id), attempt.model_dump_json(exclude_none=True))
        pipe.hincrby(key, "attempts", 1 if spends_budget else 0)
        if attempt.outcome == "rate_limited" and attempt.wait:
            pipe.hincrby(key, "rate_limited_ms", int(attempt.wait * 1000))
        fields: dict[str, str | int] = {"updated_at": now_ms}
        if attempt.error:
            fields["last_error"] = attempt.error[:500]
        if attempt.http_status is not None:
            fields["last_status"] = attempt.http_status
        pipe.hset(key, mapping=fields)
        if attempt.outcome in ("delivered", "skipped") and not attempt.error:
            # an error of an earlier attempt no longer describes the delivery (the
            # attempts keep it)
            pipe.hdel(key, "last_error")
        results = await pipe.execute()
        return int(results[1])

    async def begin_desk_write(
        self, account: str, delivery_id: str, ttl_s: int, carried: Sequence[str] = ()
    ) -> bool:
        """Note that a desk write of the delivery goes out now, carrying the messages of
        the deliveries ``carried`` (merged into its update). True when that write is in
        doubt: an earlier run noted one and no attempt was recorded after it (that run
        died with the write in flight), or an earlier write was recorded as filed (the
        run died, or was cut off, after recording it: ``queue_end_desk_write``)."""
        marks = [
            keys.desk_write(account, delivery_id),
            keys.attempts(account, delivery_id),
            keys.delivery(account, delivery_id),
        ]
        return bool(await self._desk_write(keys=marks, args=[max(1, ttl_s), " ".join(carried)]))

    def queue_end_desk_write(
        self,
        pipe: Any,
        account: str,
        delivery_id: str,
        ticket_update: tuple[str, str, float] | None,
        carried: Sequence[str] = (),
    ) -> None:
        """The desk answered the write: the mark of ``begin_desk_write`` goes, the delivery
        record keeps that its message is filed, with the deliveries ``carried`` in the
        same update (``desk_filed``: until the delivery is finished, any later attempt
        reconciles rather than writes, and merges exactly those), and ``ticket_update``
        (desk, ticket id, window in s) is noted as ``note_ticket_update`` does. Queued on
        ``pipe``: a transaction of the conversation store (``set_ticket(also=...)``) on
        the same connection, one round trip for both."""
        pipe.delete(keys.desk_write(account, delivery_id))
        pipe.hset(keys.delivery(account, delivery_id), "desk_filed", " ".join(carried))
        if ticket_update is not None:
            self._note_ticket_update(pipe, account, *ticket_update)

    async def lane_ids(
        self, account: str, direction: Direction, conversation_id: str, limit: int
    ) -> list[str]:
        """The first ``limit`` deliveries of a lane, head first."""
        ids = await self._typed.lrange(
            keys.lane(account, direction.value, conversation_id), 0, limit - 1
        )
        return [i.decode() for i in ids]

    async def ticket_updates(
        self, account: str, desk: str, ticket_id: str, window_s: float
    ) -> tuple[int, float]:
        """How many updates we made to the ticket in the last ``window_s`` seconds, and
        how long until the oldest of them leaves the window."""
        key = keys.ticket_updates(account, desk, self._vault.digest("ticket", desk, ticket_id))
        now = int(time.time() * 1000)
        pipe = self._redis.pipeline(transaction=True)
        pipe.zremrangebyscore(key, 0, now - int(window_s * 1000))
        pipe.zcard(key)
        pipe.zrange(key, 0, 0, withscores=True)
        _, count, oldest = await pipe.execute()
        return int(count), _window_wait(oldest[0][1] if oldest else None, window_s, now)

    async def filing_budget(
        self,
        d: Delivery,
        desk: str,
        ticket_id: str,
        budget: tuple[int, float],
        limit: int,
        mark_ttl_s: int,
    ) -> tuple[int, float, list[str], tuple[str, ...] | None, bool]:
        """For filing ``d`` on ``ticket_id`` under ``budget`` (updates, per seconds), in
        one script: ``ticket_updates``, ``lane_ids`` of its lane (``limit``), what an
        earlier desk write of it carried (``carried``), and whether ``begin_desk_write``'s
        mark was written too (last: True when the write goes alone, and no earlier write
        exists, so it is not in doubt)."""
        most, window_s = budget
        a = d.account
        now = int(time.time() * 1000)
        used, oldest, lane, mark, filed, marked = await self._filing_budget(
            keys=[
                keys.ticket_updates(a, desk, self._vault.digest("ticket", desk, ticket_id)),
                keys.lane(a, Direction.INBOUND.value, d.conversation_id),
                keys.desk_write(a, d.id),
                keys.delivery(a, d.id),
                keys.attempts(a, d.id),
            ],
            args=[now, int(window_s * 1000), limit, most, d.id, max(1, mark_ttl_s)],
        )
        wait = _window_wait(float(oldest) if oldest is not None else None, window_s, now)
        ids = [i.decode() for i in lane]
        return int(used), wait, ids, _carried(mark, filed), bool(marked)

    async def note_ticket_update(
        self, account: str, desk: str, ticket_id: str, window_s: float
    ) -> None:
        pipe = self._redis.pipeline(transaction=True)
        self._note_ticket_update(pipe, account, desk, ticket_id, window_s)
        await pipe.execute()

    def _note_ticket_update(
        self, pipe: Any, account: str, desk: str, ticket_id: str, window_s: float
    ) -> None:
        key = keys.ticket_updates(account, desk, self._vault.digest("ticket", desk, ticket_id))
        now = int(time.time() * 1000)
        pipe.zadd(key, {f"{now}:{new_id()}": now})
        pipe.pexpire(key, int(window_s * 1000) + 1000)

    async def lock_lane(
        self, account: str, direction: Direction, conversation_id: str, token: str, ttl_ms: int
    ) -> bool:
        key = keys.lane_lock(account, direction.value, conversation_id)
        return bool(await self._redis.set(key, token, nx=True, px=ttl_ms))

    async def unlock_lane(
        self, account: str, direction: Direction, conversation_id: str, token: str
    ) -> None:
        await self._release(
            keys=[keys.lane_lock(account, direction.value, conversation_id)], args=[token]
        )

    async def finish(
        self,
        delivery: Delivery,
        state: DeliveryState,
        *,
        reason: str = "",
        last_error: str = "",
        retention_s: int = 0,
    ) -> str | None:
        """Set the final ``state``, leave the lane and enqueue the next head's job.
        Returns that next delivery id. Idempotent for a delivery already finished."""
        k, args = self._finishing(delivery, state, reason, retention_s, last_error)
        head = await self._finish(keys=k, args=args)
        return head.decode() if isinstance(head, bytes) else None

    async def hold(self, delivery: Delivery) -> bool:
        """Park a pending delivery (its lane waits) until ``release_held``."""
        a = delivery.account
        done = await self._hold(
            keys=[keys.delivery(a, delivery.id), keys.pending(a)],
            args=[int(time.time() * 1000), delivery.id],
        )
        return bool(done)

    async def release_held(
        self, account: str, direction: Direction, conversation_id: str
    ) -> str | None:
        """If the conversation's lane waits on a held delivery, make it pending and
        enqueue its job. Returns its id."""
        head = await self._release_held(
            keys=[
                keys.lane(account, direction.value, conversation_id),
                keys.pending(account),
                keys.ARQ_QUEUE,
            ],
            args=[
                int(time.time() * 1000),
                self._job_expiry_ms,
                JOB_FUNCTIONS[direction],
                account,
                keys.delivery_prefix(account),
                job_key_prefix,
            ],
        )
        return head.decode() if isinstance(head, bytes) else None

    async def record_sent(
        self,
        delivery: Delivery,
        external_ids: tuple[str, ...],
        *,
        ttl: int = 30 * 86400,
        keep: int = 200,
    ) -> None:
        """Remember which delivery sent these channel messages, for their statuses."""
        a = delivery.account
        now_ms = int(time.time() * 1000)
        pipe = self._redis.pipeline(transaction=False)
        for ext in external_ids:
            pipe.set(
                keys.sent(a, delivery.channel, self._sent_digest(delivery.channel, ext)),
                delivery.id,
                ex=ttl,
            )
        zkey = keys.sent_by_time(a, delivery.conversation_id)
        pipe.zadd(zkey, {delivery.id: now_ms})
        pipe.zremrangebyrank(zkey, 0, -keep - 1)
        pipe.expire(zkey, ttl)
        await pipe.execute()

    def _sent_digest(self, channel: str, external_id: str) -> str:
        return self._vault.digest("sent", channel, external_id)

    async def sent_by(self, account: str, channel: str, external_id: str) -> str | None:
        value = await self._redis.get(
            keys.sent(account, channel, self._sent_digest(channel, external_id))
        )
        return value.decode() if value is not None else None

    async def sent_before(self, account: str, conversation_id: str, watermark_ms: int) -> list[str]:
        rows = await self._redis.zrangebyscore(
            keys.sent_by_time(account, conversation_id), "-inf", watermark_ms
        )
        return [r.decode() for r in rows]

    async def channel_status(
        self, account: str, delivery_id: str, status: str, at_ms: int, error: str = ""
    ) -> bool:
        """Record a channel status on a reply's delivery (never downgrading it)."""
        changed = await self._channel_status(
            keys=[keys.delivery(account, delivery_id)], args=[status, at_ms, error[:300]]
        )
        return bool(changed)

    async def report_problem(self, account: str, what: str, text: str) -> None:
        """Something that keeps failing for an account (a rejected token), for /readyz."""
        await self._typed.hset(keys.problems(account), what, f"{int(time.time())} {text[:300]}")

    async def clear_problem(self, account: str, what: str) -> None:
        await self._typed.hdel(keys.problems(account), what)

    async def problems(self, account: str) -> dict[str, str]:
        """What keeps failing, each as ``"<text> (since <UTC time>)"``."""
        rows = await self._typed.hgetall(keys.problems(account))
        return {k.decode(): _since(v.decode()) for k, v in rows.items()}

    async def stale_pending(self, account: str, older_than_ms: int, limit: int = 500) -> list[str]:
        rows = await self._redis.zrangebyscore(
            keys.pending(account), "-inf", older_than_ms, start=0, num=limit
        )
        return [r.decode() for r in rows]

    async def requeue(self, delivery: Delivery) -> bool:
        """Enqueue the job of a pending delivery that heads its lane and has none."""
        a = delivery.account
        done = await self._requeue(
            keys=[
                keys.delivery(a, delivery.id),
                keys.lane(a, delivery.direction.value, delivery.conversation_id),
                keys.ARQ_QUEUE,
                keys.arq_job(delivery.id),
            ],
            args=[
                int(time.time() * 1000),
                self._job_expiry_ms,
                JOB_FUNCTIONS[delivery.direction],
                a,
                delivery.id,
            ],
        )
        return bool(done)

    async def dead(self, account: str, limit: int = 100) -> list[str]:
        rows = await self._redis.zrevrange(keys.dead(account), 0, limit - 1)
        return [r.decode() for r in rows]

    async def counts(self, account: str) -> dict[str, int]:
        pipe = self._redis.pipeline(transaction=False)
        pipe.zcard(keys.pending(account))
        pipe.zcard(keys.dead(account))
        pending, dead = await pipe.execute()
        return {"pending": int(pending), "dead": int(dead)}

    async def queue_depth(self) -> int:
        return int(await self._redis.zcard(keys.ARQ_QUEUE))

    async def locate(self, accounts: Sequence[str], delivery_id: str) -> str | None:
        """The account (of ``accounts``) holding ``delivery_id``: ids are unique across
        accounts, so one pipeline of EXISTS finds it."""
        pipe = self._redis.pipeline(transaction=False)
        for account in accounts:
            pipe.exists(keys.delivery(account, delivery_id))
        found = await pipe.execute()
        return next((a for a, hit in zip(accounts, found, strict=True) if hit), None)

    async def last_outcome(self, account: str, delivery_id: str) -> Attempt | None:
        row = await self._typed.lindex(keys.attempts(account, delivery_id), -1)
        return Attempt.model_validate_json(row) if row is not None else None

    async def replay(self, delivery: Delivery, who: str) -> str:
        """Make a dead letter pending again (fresh retry budget, back in its lane at its
        arrival place, its job enqueued when it heads the lane). Idempotent: anything not
        dead is left as it is. Returns ``replayed``, ``parse_failed``, ``missing`` or the
        state the delivery was left in."""
        a = delivery.account
        result = await self._replay(
            keys=[
                keys.delivery(a, delivery.id),
                keys.pending(a),
                keys.dead(a),
                keys.lane(a, delivery.direction.value, delivery.conversation_id),
                keys.ARQ_QUEUE,
                keys.arq_job(delivery.id),
            ],
            args=[
                int(time.time() * 1000),
                self._job_expiry_ms,
                JOB_FUNCTIONS[delivery.direction],
                a,
                delivery.id,
                who,
            ],
        )
        return result.decode() if isinstance(result, bytes) else str(result)

    async def discard(self, delivery: Delivery, who: str, why: str, *, retention_s: int) -> str:
        """Mark a dead, held or pending delivery ``discarded`` (who, when, why), take it out
        of its lane and hand the lane on; it expires after ``retention_s``. Returns
        ``discarded``, ``missing`` or the state the delivery was left in."""
        a = delivery.account
        result = await self._discard(
            keys=[
                keys.delivery(a, delivery.id),
                keys.pending(a),
                keys.dead(a),
                keys.lane(a, delivery.direction.value, delivery.conversation_id),
                keys.ARQ_QUEUE,
                keys.event(a, delivery.event_id),
                keys.expiring(a),
                keys.raw(a, delivery.raw_id or delivery.id),
                keys.unparsed(a, delivery.channel),
            ],
            args=[
                int(time.time() * 1000),
                who,
                why,
                retention_s,
                self._job_expiry_ms,
                JOB_FUNCTIONS[delivery.direction],
                a,
                delivery.id,
                job_key_prefix,
            ],
        )
        return result.decode() if isinstance(result, bytes) else str(result)

    async def purge(
        self, delivery: Delivery, *, raw_id: str | None = None, only_dead: bool = False
    ) -> bool:
        """Delete ``delivery`` with its attempts, event, raw request (``raw_id``, else its
        own ``raw_id``), job and every index entry. ``only_dead``: only if it is still a
        dead letter. True when it existed."""
        a, i = delivery.account, delivery.id
        done = await self._purge(
            keys=[
                keys.delivery(a, i),
                keys.attempts(a, i),
                keys.event(a, delivery.event_id or i),
                keys.raw(a, raw_id or delivery.raw_id or i),
                keys.dead(a),
                keys.deliveries(a),
                keys.expiring(a),
                keys.unparsed(a, delivery.channel),
                keys.pending(a),
                keys.lane(a, delivery.direction.value, delivery.conversation_id),
                keys.ARQ_QUEUE,
                keys.arq_job(i),
            ],
            args=[i, "dead" if only_dead else ""],
        )
        return bool(done)

    async def dead_before(self, account: str, before_ms: int, limit: int = 500) -> list[str]:
        """Dead letters that died before ``before_ms`` (oldest first)."""
        rows = await self._redis.zrangebyscore(
            keys.dead(account), "-inf", f"({before_ms}", start=0, num=limit
        )
        return [r.decode() for r in rows]

    async def trim_index(self, account: str, limit: int = 1000) -> int:
        """Drop expired records from the listing index. Returns how many."""
        now_ms = int(time.time() * 1000)
        gone = await self._redis.zrangebyscore(
            keys.expiring(account), "-inf", now_ms, start=0, num=limit
        )
        if gone:
            pipe = self._redis.pipeline(transaction=False)
            pipe.zrem(keys.deliveries(account), *gone)
            pipe.zrem(keys.expiring(account), *gone)
            await pipe.execute()
        return len(gone)

    async def parts(self, account: str, delivery_id: str) -> dict[int, str]:
        """The parts of a multi-part send the channel accepted: part number → platform id."""
        return (await self.part_state(account, delivery_id))[0]

    async def part_state(self, account: str, delivery_id: str) -> tuple[dict[int, str], set[int]]:
        """``parts``, and the parts whose last call began and ended neither accepted nor
        refused (its outcome unknown), in one round trip."""
        rows = await self._typed.hgetall(keys.parts(account, delivery_id))
        accepted = {int(k): v.decode() for k, v in rows.items() if k.isdigit()}
        unknown = {int(k.split(b":")[0]) for k in rows if k.endswith(b":unknown")}
        return accepted, unknown

    async def record_part(
        self, account: str, delivery_id: str, part: int, platform_id: str
    ) -> None:
        """Record ``part`` as accepted by the channel (``platform_id``). Idempotent."""
        key = keys.parts(account, delivery_id)
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(key, str(part), platform_id)
        pipe.hdel(key, f"{part}:unknown")
        await pipe.execute()

    async def record_unknown_part(self, account: str, delivery_id: str, part: int) -> None:
        """Remember that a call for ``part`` began: its outcome is unknown until the part
        is recorded or ``forget_unknown_part``."""
        await self._typed.hset(keys.parts(account, delivery_id), f"{part}:unknown", "1")

    async def forget_unknown_part(self, account: str, delivery_id: str, part: int) -> None:
        """The call for ``part`` was refused: nothing of it reached the platform."""
        await self._typed.hdel(keys.parts(account, delivery_id), f"{part}:unknown")

    async def hold_again(self, delivery: Delivery) -> str | None:
        """Put a reply the channel accepted, and later reported undeliverable for a closed
        reply window, back in its lane at its arrival place: ``held`` at the head (until
        ``release_held``), else ``pending`` behind the head. None when it is not a
        delivered reply (already back in its lane, replayed, gone)."""
        a = delivery.account
        done = await self._rehold(
            keys=[
                keys.delivery(a, delivery.id),
                keys.lane(a, delivery.direction.value, delivery.conversation_id),
                keys.event(a, delivery.event_id),
                keys.expiring(a),
                keys.pending(a),
            ],
            args=[int(time.time() * 1000), delivery.id, keys.delivery_prefix(a)],
        )
        return done.decode() if isinstance(done, bytes) else None


def _since(stored: str) -> str:
    """A problem as stored (``"<epoch seconds> <text>"``) as a reader wants it."""
    stamp, _, text = stored.partition(" ")
    if not stamp.isdigit():
        return stored
    at = datetime.fromtimestamp(int(stamp), UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    return f"{text} (since {at})"
