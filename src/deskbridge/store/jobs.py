"""Starting an arq job in one round trip (the worker's ``start_jobs``)."""

from __future__ import annotations

import redis.asyncio as aioredis

from deskbridge.store import keys
from deskbridge.store.scripts import START_JOB

__all__ = ["JobStarts"]


class JobStarts:
    """arq's start check and in-progress mark as one script (``scripts.START_JOB``)."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._start = redis.register_script(START_JOB)

    async def start(self, job_id: str, now_ms: int, in_progress_ms: int) -> int | None:
        """Mark ``job_id`` as started here and return its queue score (ms), or None when
        it must not run now: another worker started it, it has left the queue (done), or
        it is not due yet (enqueued again with a delay). Raises redis-py's errors."""
        score = await self._start(
            keys=[keys.arq_in_progress(job_id), keys.ARQ_QUEUE],
            args=[job_id, now_ms, in_progress_ms],
        )
        return None if score is None else int(float(score))
