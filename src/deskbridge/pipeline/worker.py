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

from arq import Worker, func

from deskbridge.flows import csat, enrichment, ingest, privacy
from deskbridge.flows.health import health_loop
from deskbridge.flows.polling import poll_loop
from deskbridge.flows.runtime import Runtime
from deskbridge.pipeline.tasks import deliver_to_channel, deliver_to_desk, job_deadline
from deskbridge.store.connection import CONNECTION_LOST, UNAVAILABLE, arq_settings, cause

__all__ = ["build_worker", "run_worker", "sweep_once"]

log = logging.getLogger(__name__)

_MAX_TRIES = 100_000
_HEARTBEAT_TTL_S = 10


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def build_worker(rt: Runtime, redis_url: str, *, burst: bool = False) -> Worker:
    s = rt.settings
    return Worker(
        functions=[
            func(deliver_to_desk, name="deliver_to_desk", max_tries=_MAX_TRIES),
            func(deliver_to_channel, name="deliver_to_channel", max_tries=_MAX_TRIES),
        ],
        redis_settings=arq_settings(redis_url),
        job_serializer=_dumps,
        job_deserializer=json.loads,
        keep_result=0,
        job_timeout=job_deadline(s.job_timeout_seconds, s.job_grace_seconds),
        max_tries=_MAX_TRIES,
        max_jobs=s.max_jobs,
        poll_delay=s.poll_delay_seconds,
        handle_signals=False,
        burst=burst,
        ctx={"runtime": rt},
        health_check_interval=60,
    )


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
        await asyncio.sleep(2)


async def _close(worker: Worker) -> None:
    """Close a worker whose Redis may be gone. arq's ``close`` cancels the jobs in flight
    and gathers them: a job cancelled before it ever ran re-raises its CancelledError
    here, which must not end the supervisor (only our own cancellation may)."""
    try:
        await worker.close()
    except CONNECTION_LOST:
        pass
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise


async def run_worker(rt: Runtime, redis_url: str) -> None:
    """Run the worker until cancelled, restarting it whenever the Redis connection drops."""
    background = asyncio.create_task(_background(rt), name="deskbridge-worker-background")
    poller = asyncio.create_task(poll_loop(rt), name="deskbridge-desk-poller")
    health = asyncio.create_task(health_loop(rt), name="deskbridge-channel-health")
    delay = 0.5
    try:
        while True:
            worker = build_worker(rt, redis_url)
            started = time.monotonic()
            try:
                await worker.main()
            except UNAVAILABLE as exc:
                log.warning("worker lost Redis (%s); restarting in %.1fs", cause(exc), delay)
            finally:
                await _close(worker)
            delay = 0.5 if time.monotonic() - started > 30 else min(delay * 2, 10.0)
            await asyncio.sleep(delay)
    finally:
        for task in (background, poller, health):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
