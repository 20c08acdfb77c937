"""A lane runs on in the task that ended its head: the round trip that completes a
delivery starts the next head's job for this worker (arq's in-progress mark), and the
worker runs it next without a poll, a start or a job read. What arq does for a job it
started still holds for these: a retry goes back to the queue after its delay, a
failure ends the job (the sweeper finds the delivery), a cancel or a stop leaves the job
to run again at once, and a worker that dies leaves the mark to expire."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from arq import Retry, func
from arq.connections import RedisSettings, create_pool

from deskbridge.pipeline import build_worker
from deskbridge.pipeline.tasks import LANES, LaneNext, Lanes
from deskbridge.pipeline.worker import _Worker
from deskbridge.schemas import Attempt, DeliveryState, Direction
from deskbridge.store import keys

from .conftest import TEST_REDIS_URL, drain
from .test_pipeline import fake_desk
from .test_store import accept, message


async def _lane(rt: Any, redis: Any, thread: str) -> list[str]:
    conv = rt.conversations.conversation_id("acme", message(0, thread).channel, thread)
    return [x.decode() for x in await redis.lrange(keys.lane("acme", "inbound", conv), 0, -1)]


async def test_a_lane_runs_on_in_the_task_that_ended_its_head(
    make_runtime: Any, redis: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = make_runtime()
    desk = fake_desk(rt)
    threads = ["1", "2", "3"]
    for n in range(12):
        await accept(rt, [message(n, thread=threads[n % 3])])
    chained: list[str] = []
    run_next = _Worker._run_next

    async def counted(self: _Worker, job: LaneNext) -> None:
        chained.append(job.delivery_id)
        await run_next(self, job)

    monkeypatch.setattr(_Worker, "_run_next", counted)
    await drain(rt)
    for t in threads:  # each conversation in its order
        assert [text for th, text in desk.filed if th == t] == [
            f"message {n}" for n in range(12) if threads[n % 3] == t
        ]
    # every message behind a head was run by the task that ended the one before it
    assert len(chained) == 9
    assert await redis.zcard(keys.pending("acme")) == 0
    assert await redis.keys("arq:*") == []  # no job, mark or try count left behind


async def _claimed_head(rt: Any, redis: Any) -> tuple[Any, str, str]:
    """Two messages in one conversation; the first claimed as a worker claims it."""
    await accept(rt, [message(1), message(2)])
    first, second = await _lane(rt, redis, "42")
    d, head, locked, _ = await rt.deliveries.claim(
        "acme", first, Direction.INBOUND, "token", 60_000
    )
    assert head == first and locked
    return d, first, second


@pytest.mark.parametrize("elsewhere", ["free", "in progress", "deferred"])
async def test_the_next_head_is_started_only_when_due_and_free(
    make_runtime: Any, redis: Any, elsewhere: str
) -> None:
    rt = make_runtime()
    d, first, second = await _claimed_head(rt, redis)
    mark = keys.arq_in_progress(second)
    later = int(time.time() * 1000) + 60_000
    if elsewhere == "in progress":  # another worker started its job already
        await redis.psetex(mark, 90_000, b"1")
    elif elsewhere == "deferred":  # its job waits for a retry's delay
        await redis.set(keys.arq_job(second), b"{}")
        await redis.zadd(keys.ARQ_QUEUE, {second: later})
    attempt = Attempt(at=datetime.now(UTC), outcome="delivered")
    done = await rt.deliveries.complete(
        d, DeliveryState.DELIVERED, attempt, "token", job_id=first, start_next_ms=5_000
    )
    assert await _lane(rt, redis, "42") == [second]
    if elsewhere == "free":
        assert done.started is not None and done.started[0] == second
        assert abs(done.started[1] - time.time() * 1000) < 5_000  # its queue score
        assert 0 < await redis.pttl(mark) <= 5_000
    else:
        assert done.started is None
        if elsewhere == "in progress":
            assert await redis.pttl(mark) > 5_000  # the other worker's mark, untouched
        else:
            assert not await redis.exists(mark)
            assert await redis.zscore(keys.ARQ_QUEUE, second) == later


async def test_without_a_worker_nothing_is_started(make_runtime: Any, redis: Any) -> None:
    rt = make_runtime()
    d, _, second = await _claimed_head(rt, redis)
    attempt = Attempt(at=datetime.now(UTC), outcome="delivered")
    done = await rt.deliveries.complete(d, DeliveryState.DELIVERED, attempt, "token")
    assert done.started is None
    assert not await redis.exists(keys.arq_in_progress(second))
    assert await redis.zscore(keys.ARQ_QUEUE, second) is not None  # arq's poll runs it


async def _started(redis: Any, job_id: str, score: int) -> None:
    """``job_id`` queued and started for this worker, as COMPLETE leaves it."""
    await redis.set(keys.arq_job(job_id), b'{"t":null,"f":"deliver_to_desk"}')
    await redis.zadd(keys.ARQ_QUEUE, {job_id: score})
    await redis.psetex(keys.arq_in_progress(job_id), 60_000, b"1")


async def _worker_running(rt: Any, fn: Any) -> Any:
    """The worker with ``fn`` as its inbound task and its pool open (no main loop: its
    jobs are run directly)."""
    worker = build_worker(rt, TEST_REDIS_URL)
    worker.functions["deliver_to_desk"] = func(fn, name="deliver_to_desk")
    worker._pool = await create_pool(RedisSettings.from_dsn(TEST_REDIS_URL))
    return worker


@pytest.mark.parametrize("outcome", ["retry", "failure", "cancel"])
async def test_a_started_head_ends_as_arq_would_end_it(
    make_runtime: Any, redis: Any, outcome: str
) -> None:
    rt = make_runtime()
    job_id = "dlv-next"
    score = int(time.time() * 1000)
    await _started(redis, job_id, score)
    ran: list[tuple[str, str]] = []
    running = asyncio.Event()

    async def work(ctx: dict[str, Any], account: str, delivery_id: str) -> None:
        ran.append((account, delivery_id))
        running.set()
        assert ctx["job_id"] == delivery_id and ctx["score"] == score
        if outcome == "retry":
            raise Retry(defer=5)
        if outcome == "failure":
            raise ValueError("a bug")
        await asyncio.sleep(10)

    worker = await _worker_running(rt, work)
    try:
        job = LaneNext(job_id, score, "deliver_to_desk", "acme")
        runner = asyncio.ensure_future(worker._run_next(job))
        if outcome == "cancel":  # a stop: the worker cancels its running jobs
            await running.wait()
            assert worker.tasks[job_id] is not None  # the poll would skip it
            runner.cancel()
            await runner  # handed back; the cancel ends there, as in arq's run_job
        else:
            await runner
    finally:
        await worker.close()
    assert ran == [("acme", job_id)]
    assert job_id not in worker.tasks
    assert not await redis.exists(keys.arq_in_progress(job_id))  # free to run again
    queued = await redis.zscore(keys.ARQ_QUEUE, job_id)
    if outcome == "retry":  # back in the queue, 5 s after it was due
        assert queued is not None and queued >= score + 5_000
    elif outcome == "failure":  # ended, as arq ends a job that raised
        assert queued is None and not await redis.exists(keys.arq_job(job_id))
    else:  # queued as it was: any worker runs it again at once
        assert queued == score and await redis.exists(keys.arq_job(job_id))


async def test_a_stopping_worker_hands_a_started_head_back(make_runtime: Any, redis: Any) -> None:
    rt = make_runtime()
    score = int(time.time() * 1000)
    job = b'{"t":null,"f":"deliver_to_desk","a":["acme","dlv-first"],"k":{},"et":1}'
    await redis.set(keys.arq_job("dlv-first"), job)
    await redis.zadd(keys.ARQ_QUEUE, {"dlv-first": score})
    await _started(redis, "dlv-next", score)
    ran: list[str] = []
    worker: Any = None

    async def work(ctx: dict[str, Any], account: str, delivery_id: str) -> None:
        ran.append(delivery_id)
        lanes: Lanes = ctx[LANES]
        lanes.started[delivery_id] = LaneNext("dlv-next", score, "deliver_to_desk", account)
        worker.allow_pick_jobs = False  # the worker was told to stop meanwhile

    worker = await _worker_running(rt, work)
    try:
        await worker.run_job("dlv-first", score)
    finally:
        await worker.close()
    assert ran == ["dlv-first"]  # the started head was not run here...
    assert not await redis.exists(keys.arq_in_progress("dlv-next"))  # ...but handed back
    assert await redis.zscore(keys.ARQ_QUEUE, "dlv-next") == score


def test_the_delivery_store_translates_redis_errors() -> None:
    """``@guarded`` wraps the store's methods: a lost Redis is ``StoreUnavailable``."""
    from deskbridge.store.deliveries import DeliveryStore

    assert hasattr(DeliveryStore.complete, "__wrapped__")
    assert hasattr(DeliveryStore.claim, "__wrapped__")


async def test_the_intake_loads_its_scripts_before_its_first_call(make_runtime: Any) -> None:
    """No intake call meets NOSCRIPT on a fresh Redis (its retry could land behind a later
    call of the same conversation): every intake script is in the connection's preamble."""
    rt = make_runtime()
    assert len(rt.intake.coalescer._preamble()) == 4
