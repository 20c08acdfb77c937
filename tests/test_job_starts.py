"""The worker starts an arq job in one script (store/jobs.py): the same checks as arq's
WATCH/EXISTS/ZSCORE/MULTI sequence, so two workers never run one job at once."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from arq.constants import default_queue_name, in_progress_key_prefix

from deskbridge.store.jobs import JobStarts

NOW = 1_800_000_000_000


async def test_a_due_queued_job_starts_once_and_is_marked_in_progress(
    redis: aioredis.Redis,
) -> None:
    r: Any = redis
    await r.zadd(default_queue_name, {"job-1": NOW - 5})
    starts = JobStarts(redis)
    assert await starts.start("job-1", NOW, 15_000) == NOW - 5
    ttl = await r.pttl(in_progress_key_prefix + "job-1")
    assert 14_000 < ttl <= 15_000
    # a second worker (or a second poll) finds it in progress
    assert await JobStarts(redis).start("job-1", NOW, 15_000) is None
    assert await r.zscore(default_queue_name, "job-1") == NOW - 5  # still queued


async def test_a_job_not_due_or_gone_does_not_start(redis: aioredis.Redis) -> None:
    r: Any = redis
    starts = JobStarts(redis)
    await r.zadd(default_queue_name, {"later": NOW + 60_000})
    assert await starts.start("later", NOW, 15_000) is None  # re-enqueued with a delay
    assert await starts.start("done", NOW, 15_000) is None  # finished: not in the queue
    assert await r.exists(in_progress_key_prefix + "later", in_progress_key_prefix + "done") == 0


async def test_the_script_is_loaded_again_after_redis_forgot_it(redis: aioredis.Redis) -> None:
    r: Any = redis
    await r.zadd(default_queue_name, {"job-2": NOW})
    starts = JobStarts(redis)
    await r.script_flush()
    assert await starts.start("job-2", NOW, 1_000) == NOW


async def test_a_delivered_job_ends_in_its_own_last_round_trip(
    make_runtime: Any, redis: aioredis.Redis, monkeypatch: Any
) -> None:
    """The delivery's COMPLETE script also ends its arq job (job, in-progress and retry
    keys, queue entry), so arq's own finish, one more round trip, is skipped."""
    from arq.worker import Worker

    from .conftest import drain
    from .test_store import accept, message

    finished: list[str] = []
    real = Worker.finish_job

    async def finish_job(self: Any, job_id: str, *args: Any, **kwargs: Any) -> None:
        finished.append(job_id)
        await real(self, job_id, *args, **kwargs)

    monkeypatch.setattr(Worker, "finish_job", finish_job)
    rt = make_runtime()
    await accept(rt, [message(1), message(2), message(3, thread="other")])
    await drain(rt)
    assert len(await rt.sandbox.tickets("acme")) == 2
    assert finished == []  # arq's finish never ran: every job ended in COMPLETE
    r: Any = redis
    left = sorted(k.decode() for k in await r.keys("arq:*"))
    assert left == [], left
