"""The arq worker, configured for deskbridge, and its supervisor and background loop.

arq is not left at its defaults: ``max_tries`` far above our own retry budget (which
the delivery record counts, so 429 waits can be free), ``keep_result=0``, a JSON
serializer (jobs carry ids only), a short ``job_timeout`` so a killed worker's job runs
again within seconds, and a short poll delay so an idle system delivers at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
from typing import Any

from arq import Retry, Worker, func
from arq.connections import create_pool
from arq.utils import ms_to_datetime, timestamp_ms

from deskbridge.flows import csat, enrichment, ingest, privacy
from deskbridge.flows.health import health_loop
from deskbridge.flows.polling import poll_loop
from deskbridge.flows.runtime import Runtime
from deskbridge.pipeline.tasks import (
    JOBS_ENDED,
    LANES,
    LaneNext,
    Lanes,
    deliver_to_channel,
    deliver_to_desk,
    job_deadline,
)
from deskbridge.store.connection import (
    CONNECTION_LOST,
    UNAVAILABLE,
    arq_pool,
    arq_settings,
    cause,
    honour_cancel,
    muxed_arq,
)
from deskbridge.store.jobs import JobStarts

__all__ = ["build_worker", "run_worker", "sweep_once"]

log = logging.getLogger(__name__)


class _ClosedNotSignalled(logging.Filter):
    """arq's ``close()`` logs "shutdown on SIGUSR1" (the signal it pretends to have had)
    whenever a worker is closed: on our shutdown, whatever signal ended the process, and
    on every restart after a lost Redis. Say what happened: the worker was closed."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if (
            isinstance(record.msg, str)
            and record.msg.startswith("shutdown on %s")
            and isinstance(args, tuple)
            and args[:1] == ("SIGUSR1",)
        ):
            record.msg = "worker closed" + record.msg.removeprefix("shutdown on %s")
            record.args = args[1:]
        return True


logging.getLogger("arq.worker").addFilter(_ClosedNotSignalled())

_MAX_TRIES = 100_000
_HEARTBEAT_TTL_S = 10


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


class _Worker(Worker):
    """arq's worker, starting each job in one round trip and skipping its own.

    arq starts a job with WATCH, EXISTS, ZSCORE and MULTI/PSETEX/EXEC: four round trips,
    about a quarter of the ~14 a delivered message cost in ``make bench``'s drain. Here
    the same check and mark are one script (``store.jobs``). And a job stays in the
    queue until it ends, so with ``max_jobs`` jobs in flight and a poll every 10 ms most
    ids a poll reads are jobs this very process runs: one whose task here has not ended
    is skipped without asking Redis.
    """

    _starts: JobStarts | None = None

    async def main(self) -> None:
        if self._pool is None:
            # arq's own pool (its connection retries at start-up), then multiplexed:
            # its polls and job reads share the worker's one connection
            self._pool = muxed_arq(
                await create_pool(
                    self.redis_settings,
                    job_deserializer=self.job_deserializer,
                    job_serializer=self.job_serializer,
                    default_queue_name=self.queue_name,
                    expires_extra_ms=self.expires_extra_ms,
                )
            )
        await super().main()

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        if self._starts is None:
            self._starts = JobStarts(self.pool)
        in_progress_ms = int(self.in_progress_timeout_s * 1000)
        for job_id_b in job_ids:
            job_id = job_id_b.decode()
            if (task := self.tasks.get(job_id)) is not None and not task.done():
                continue
            await self.sem.acquire()
            if self.job_counter >= self.max_jobs:
                self.sem.release()
                return
            self.job_counter += 1
            try:
                score = await self._starts.start(job_id, timestamp_ms(), in_progress_ms)
            except BaseException:
                self._job_ended()
                raise
            if score is None:  # started elsewhere, done, or not due yet
                self._job_ended()
                continue
            task = self.loop.create_task(self.run_job(job_id, score))
            task.add_done_callback(lambda _: self._job_ended())
            self.tasks[job_id] = task

    def _job_ended(self) -> None:
        self.job_counter -= 1
        self.sem.release()

    async def run_job(self, job_id: str, score: int) -> None:
        """arq's run of the job, then of the lane's next heads its last round trip started
        here (``tasks.Lanes``), one after another in this task: a message behind
        another in its conversation costs no poll, no start and no job read. Once the
        worker stops taking jobs, a head started just before is handed back to the
        queue (its mark removed: any worker runs it at once)."""
        await super().run_job(job_id, score)
        lanes: Lanes = self.ctx[LANES]
        task = asyncio.current_task()
        try:
            while (following := lanes.started.pop(job_id, None)) is not None:
                job_id = following.delivery_id
                if not self.allow_pick_jobs or (task is not None and task.cancelling()):
                    await asyncio.shield(self._hand_back(job_id))
                    return
                await self._run_next(following)
        finally:
            # a head started for this task that it will not run (a cancel): back at once
            left = lanes.started.pop(job_id, None)
            if left is not None:
                await asyncio.shield(self._hand_back(left.delivery_id))

    async def _hand_back(self, job_id: str) -> None:
        """arq's "cancelled, will be run again": the mark goes, the job stays queued."""
        await self.finish_job(job_id, False, None, 0, False, None, None)

    async def _run_next(self, job: LaneNext) -> None:
        """One started job, as arq's ``run_job`` would run it (the same deadline; ``Retry``
        puts it back in the queue after its delay; a failure or a timeout ends it, and the
        sweeper finds the delivery; a cancel leaves it to run again at once), without
        reading it back: its function and arguments are the lane's."""
        job_id = job.delivery_id
        function = self.functions[job.function]
        ctx = {
            **self.ctx,
            "job_id": job_id,
            "job_try": 1,
            "enqueue_time": ms_to_datetime(job.score),
            "score": job.score,
        }
        task = asyncio.current_task()
        assert task is not None
        self.tasks[job_id] = task  # the poll skips it, and a stop cancels it
        finish, incr_score = True, None
        try:
            async with asyncio.timeout(function.timeout_s or self.job_timeout_s):
                await function.coroutine(ctx, job.account, job_id)
        except Retry as exc:
            finish = False
            if exc.defer_score:
                incr_score = exc.defer_score + (timestamp_ms() - job.score)
            self.jobs_retried += 1
        except asyncio.CancelledError:
            # as arq's run_job: the job is handed back and the cancel ends here (arq's
            # close gathers its tasks without return_exceptions)
            await asyncio.shield(self._hand_back(job_id))
            return
        except Exception:
            log.exception("job %s:%s failed", job_id, job.function)
            self.jobs_failed += 1
        else:
            self.jobs_complete += 1
        finally:
            if self.tasks.get(job_id) is task:
                del self.tasks[job_id]
        await asyncio.shield(self.finish_job(job_id, finish, None, 0, False, incr_score, None))

    async def finish_job(self, job_id: str, *args: Any, **kwargs: Any) -> None:
        """arq's end of a job, unless the job's own last round trip already did it
        (``tasks.JOBS_ENDED``): a delivered message costs one round trip less."""
        ended: set[str] = self.ctx[JOBS_ENDED]
        if job_id in ended:
            ended.discard(job_id)
            return
        await super().finish_job(job_id, *args, **kwargs)


def build_worker(rt: Runtime, redis_url: str, *, burst: bool = False) -> Worker:
    """arq's worker for deskbridge's tasks; with a Sentinel URL its pool asks the same
    Sentinels for the primary (a new pool per worker: a restart after a failover finds
    the new primary)."""
    s = rt.settings
    pool = arq_pool(redis_url)
    if pool is not None:
        pool.job_serializer = _dumps
        pool.job_deserializer = json.loads
    worker = _Worker(
        functions=[
            func(deliver_to_desk, name="deliver_to_desk", max_tries=_MAX_TRIES),
            func(deliver_to_channel, name="deliver_to_channel", max_tries=_MAX_TRIES),
        ],
        redis_settings=arq_settings(redis_url) if pool is None else None,
        redis_pool=pool,
        job_serializer=_dumps,
        job_deserializer=json.loads,
        keep_result=0,
        job_timeout=job_deadline(s.job_timeout_seconds, s.job_grace_seconds),
        max_tries=_MAX_TRIES,
        max_jobs=s.max_jobs,
        poll_delay=s.poll_delay_seconds,
        handle_signals=False,
        burst=burst,
        ctx={"runtime": rt, JOBS_ENDED: set()},
        health_check_interval=60,
    )
    worker.ctx[LANES] = Lanes(int(worker.in_progress_timeout_s * 1000))
    return worker


async def sweep_once(rt: Runtime) -> int:
    """Re-enqueue pending deliveries that head their lane and have no job. Returns how many."""
    cutoff = int((time.time() - rt.settings.sweep_grace_seconds) * 1000)
    requeued = 0
    for account in rt.accounts.accounts:
        for delivery_id in await rt.deliveries.stale_pending(account, cutoff):
            d = await rt.deliveries.get(account, delivery_id)
            if d is not None and await rt.deliveries.requeue(d):
                requeued += 1
        await rt.deliveries.trim_index(account)
        counts = await rt.deliveries.counts(account)
        rt.metrics.pending.labels(account).set(counts["pending"])
        rt.metrics.dead.labels(account).set(counts["dead"])
        routing = rt.accounts.accounts[account].routing
        sla = {c.value: t for c, t in routing.sla.items()} if routing is not None else {}
        await enrichment.refresh_waiting(rt, account, sla)
    for scope in ingest.app_scopes(rt):
        # dead letters of what a platform app posted that named no account
        rt.metrics.dead.labels(scope).set((await rt.deliveries.counts(scope))["dead"])
    graph = rt.conversations.graph
    if graph is not None:
        for scope in sorted(set(rt.accounts.identity_scopes().values())):
            rt.metrics.suggestions.labels(scope).set(await graph.pending_count(scope))
    rt.metrics.queue_depth.set(await rt.deliveries.queue_depth())
    await privacy.sweep_retention(rt)
    await csat.send_due(rt)  # satisfaction surveys whose time has come
    if requeued:
        log.warning("sweeper re-enqueued %d deliveries that had no job", requeued)
    return requeued


async def _background(rt: Runtime) -> None:
    """Heartbeat every 2 s (``/readyz`` reads it) and the sweeper every interval."""
    identity = f"{socket.gethostname()}:{id(rt):x}"
    next_sweep = 0.0
    while True:
        try:
            await rt.health.beat(identity, _HEARTBEAT_TTL_S)
            if time.monotonic() >= next_sweep:
                await sweep_once(rt)
                next_sweep = time.monotonic() + rt.settings.sweep_interval_seconds
        except UNAVAILABLE as exc:
            log.warning("worker background loop: Redis unavailable (%s)", cause(exc))
        # a cancel that landed while redis-py sent a command may have been swallowed
        honour_cancel()
        await asyncio.sleep(2)


async def _close(worker: Worker) -> None:
    """Close a worker whose Redis may be gone. arq's ``close`` cancels the jobs in flight
    and gathers them: a job cancelled before it ever ran re-raises its CancelledError
    here, which must not end the supervisor (only our own cancellation may). No lane runs
    on meanwhile: no next head is started, and one started is handed back."""
    worker.allow_pick_jobs = False
    lanes = worker.ctx.get(LANES) if isinstance(worker, _Worker) else None
    if isinstance(lanes, Lanes):
        lanes.in_progress_ms = 0
    try:
        await worker.close()
    except CONNECTION_LOST:
        pass
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise


async def _main(worker: Worker, stopping: asyncio.Event, bound: float) -> None:
    """``worker.main()`` until it fails or ``stopping`` is set. Then it takes no new job,
    and the running ones get ``bound`` seconds to finish; ``_close`` cancels the rest,
    which arq hands back to the queue to run again (here or on another worker; the lane
    lock keeps them in order)."""
    main = asyncio.create_task(worker.main(), name="deskbridge-arq-main")
    stop = asyncio.create_task(stopping.wait())
    try:
        await asyncio.wait({main, stop}, return_when=asyncio.FIRST_COMPLETED)
        if main.done():
            return main.result()  # its error, if any, restarts the worker
        # arq's burst mode with no job left to start: its loop takes none, waits for
        # those running (a poll under way included) and returns
        worker.allow_pick_jobs = False
        lanes = worker.ctx.get(LANES)
        if isinstance(lanes, Lanes):
            lanes.in_progress_ms = 0  # a lane's next head is left to the queue
        worker.burst = True
        worker.max_burst_jobs = 0
        running = sum(not t.done() for t in worker.tasks.values())
        log.info("worker stopping: %d job(s) running, up to %gs to finish", running, bound)
        await asyncio.wait([main], timeout=bound)
        if not main.done():
            left = sum(not t.done() for t in worker.tasks.values())
            log.warning("worker stopping: %d job(s) handed back to the queue", left)
    finally:
        stop.cancel()
        await _stop_task(main)


async def _stop_task(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` and wait for it, cancelling again while it runs on: a cancel that
    lands while redis-py sends a command can be swallowed (Python 3.11's ``wait_for``)."""
    while not task.done():
        task.cancel()
        await asyncio.wait([task], timeout=1.0)
    if not task.cancelled():
        with contextlib.suppress(*UNAVAILABLE, asyncio.CancelledError):
            task.result()


async def run_worker(rt: Runtime, redis_url: str, stopping: asyncio.Event | None = None) -> None:
    """Run the worker until cancelled or ``stopping`` is set (a graceful stop: see
    ``_main``), restarting it whenever the Redis connection drops."""
    stopping = stopping or asyncio.Event()
    background = asyncio.create_task(_background(rt), name="deskbridge-worker-background")
    poller = asyncio.create_task(poll_loop(rt), name="deskbridge-desk-poller")
    health = asyncio.create_task(health_loop(rt), name="deskbridge-channel-health")
    delay = 0.5
    try:
        while not stopping.is_set():
            worker = build_worker(rt, redis_url)
            started = time.monotonic()
            try:
                await _main(worker, stopping, rt.settings.job_drain_seconds())
            except UNAVAILABLE as exc:
                log.warning("worker lost Redis (%s); restarting in %.1fs", cause(exc), delay)
            finally:
                await _close(worker)
            delay = 0.5 if time.monotonic() - started > 30 else min(delay * 2, 10.0)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):  # not wait_for: see _stop_task
                    await stopping.wait()
    finally:
        for task in (background, poller, health):
            await _stop_task(task)
