"""The arq tasks: ``deliver_to_desk`` (channel → desk) and ``deliver_to_channel`` (desk →
channel). Jobs carry ids only; the delivery record is the truth.

A conversation's deliveries form a lane (a Redis list, in arrival order). Only the lane's
head is worked on; finishing it (delivered or dead) enqueues the next head's job in the
same script, and in the worker a delivered head's script also starts that job for the
worker, which runs it next in the same task (``Lanes``). A job for a delivery that is
not the head ends at once: its turn will come.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from deskbridge.errors import (
    DeliveryError,
    RetryableError,
    StoreUnavailable,
    WindowClosed,
)
from deskbridge.flows import deferred
from deskbridge.flows.filing import file_event
from deskbridge.flows.notes import tell_agent
from deskbridge.flows.replies import hold, send_reply
from deskbridge.flows.runtime import Runtime
from deskbridge.pipeline import retry
from deskbridge.schemas import Attempt, AttemptOutcome, Delivery, DeliveryState, Direction
from deskbridge.store import JOB_FUNCTIONS, Unparsed, new_id

__all__ = ["LaneNext", "Lanes", "deliver_to_channel", "deliver_to_desk", "job_deadline"]

log = logging.getLogger(__name__)

Work = Callable[[Runtime, Delivery, dict[str, Any] | None], Awaitable[DeliveryState]]
"""An attempt: the runtime, the claimed delivery and its event record as ``CLAIM`` read it
(None when it was gone: the work reads it again and fails as it would)."""


def job_deadline(work_timeout: float, grace: float = 15.0) -> float:
    """arq's job timeout (and the lane lock's TTL): the work's own deadline plus ``grace``
    to record the outcome, write a note and hand the lane on."""
    return work_timeout + grace


JOBS_ENDED = "jobs_ended"
"""The worker's ``ctx`` key of a set: ids of the jobs whose task already did arq's end of
the job in its own last round trip (``DeliveryStore.complete``); the worker skips arq's
finish for them (pipeline/worker.py)."""

LANES = "lanes"
"""The worker's ``ctx`` key of its ``Lanes``. Where the ``ctx`` has none (a test's own
``ctx``), no next head is started."""


class LaneNext(NamedTuple):
    """A lane's next head, its job started by the round trip that ended the one before."""

    delivery_id: str
    score: int
    """Its arq queue score (ms)."""
    function: str
    account: str


@dataclass(slots=True)
class Lanes:
    """The worker's lanes run on in the same task (pipeline/worker.py): the round trip
    that ends a job also starts the next head's job, for ``in_progress_ms`` (arq's
    in-progress mark; 0 once the worker stops taking jobs: nothing more is started),
    and ``started`` maps the ended job's id to that head, which the worker runs next."""

    in_progress_ms: int
    started: dict[str, LaneNext] = field(default_factory=dict)


async def deliver_to_desk(ctx: dict[str, Any], account: str, delivery_id: str) -> None:
    """File one inbound event in the account's desk. Safe to run more than once."""
    await _run(ctx["runtime"], account, delivery_id, Direction.INBOUND, file_event, ctx)


async def deliver_to_channel(ctx: dict[str, Any], account: str, delivery_id: str) -> None:
    """Send one agent reply on the customer's channel. Safe to run more than once."""
    await _run(ctx["runtime"], account, delivery_id, Direction.OUTBOUND, send_reply, ctx)


async def _run(
    rt: Runtime,
    account: str,
    delivery_id: str,
    direction: Direction,
    work: Work,
    ctx: dict[str, Any],
) -> None:
    """One job: claim the delivery (one round trip: the record, its lane's head, the lane
    lock and the event record), attempt it, and record the outcome (one round trip when
    it succeeded: the attempt, the new state, the next head's job, the lock's release and
    the end of the arq job)."""
    token = new_id()
    s = rt.settings
    lock_ms = int(job_deadline(s.job_timeout_seconds, s.job_grace_seconds) * 1000)
    d, head, locked, record = await rt.deliveries.claim(
        account, delivery_id, direction, token, lock_ms
    )
    if d is None:
        log.warning("delivery %s not found (expired or erased)", delivery_id)
        return
    if d.state is DeliveryState.HELD:
        return  # waits for the customer; release_held() enqueues it again
    if d.state is not DeliveryState.PENDING:
        # Finished elsewhere (replayed, discarded): make sure its lane moves on.
        await rt.deliveries.finish(d, d.state)
        return
    if head != d.id:
        return
    if not locked:
        retry.busy()
    completed = False
    writing: asyncio.Future[None] | None = None
    try:
        try:
            if isinstance(record, Unparsed):
                # the deferred parse: the event record's write goes with the flow's next
                # command, and is awaited before the delivery is finished
                parsed = await deferred.parse_stored(rt, d, record, behind=True)
                if not isinstance(parsed, dict):
                    await deferred.settle(rt, d, record, parsed, token)
                    completed = True
                    return
                record = parsed
                writing = record.pop(deferred.WRITING, None)
            state = await _attempt_written(rt, d, work, record, writing)
        except StoreUnavailable as exc:
            # a shared token cache or lock in Redis failed mid-delivery: try again later
            await _failed(rt, d, RetryableError(str(exc)))
            return
        except DeliveryError as exc:
            await _failed(rt, d, exc)
            return
        if state is None:
            return  # held until the customer writes again
        await _complete(rt, d, state, token, ctx)
        completed = True
    finally:
        if not completed:
            await rt.deliveries.unlock_lane(account, d.direction, d.conversation_id, token)


async def _complete(
    rt: Runtime, d: Delivery, state: DeliveryState, token: str, ctx: dict[str, Any]
) -> None:
    """The attempt's outcome, the next head's job, the lock's release and the end of the
    arq job in one round trip (``DeliveryStore.complete``); in the worker, the next
    head's job is started for it too (``Lanes``). A failure after the round trip
    leaves only the lock's release to the caller, which finds the lock gone."""
    account = d.account
    outcome: AttemptOutcome = "delivered" if state is DeliveryState.DELIVERED else "skipped"
    attempt = Attempt(at=datetime.now(UTC), outcome=outcome)
    ended: set[str] | None = ctx.get(JOBS_ENDED)
    job_id: str | None = ctx.get("job_id") if ended is not None else None
    lanes: Lanes | None = ctx.get(LANES) if job_id is not None else None
    done = await rt.deliveries.complete(
        d,
        state,
        attempt,
        token,
        retention_s=rt.retention(account).delivered_s,
        job_id=job_id,
        start_next_ms=lanes.in_progress_ms if lanes is not None else 0,
    )
    if ended is not None and job_id is not None:
        ended.add(job_id)
        if lanes is not None and done.started is not None:
            head, score = done.started
            lanes.started[job_id] = LaneNext(head, score, JOB_FUNCTIONS[d.direction], account)
    if done.problems:
        await rt.deliveries.clear_problem(account, _peer(d))
    rt.metrics.deliveries.labels(d.direction.value, state.value).inc()
    if state is DeliveryState.DELIVERED:
        rt.metrics.delivery_latency.labels(d.direction.value).observe(
            max(0.0, time.time() - d.created_at.timestamp())
        )
    log.info("delivery %s %s %s", d.id, d.direction.value, state.value)


async def _attempt_written(
    rt: Runtime,
    d: Delivery,
    work: Work,
    record: dict[str, Any] | None,
    writing: asyncio.Future[None] | None,
) -> DeliveryState | None:
    """``_attempt``; with ``writing`` (the deferred parse's write of the event record,
    started behind), that write is awaited after the attempt, whatever its outcome, and
    fails the attempt with ``StoreUnavailable`` when it failed."""
    try:
        state = await _attempt(rt, d, work, record)
    except BaseException:
        if writing is not None:
            await asyncio.wait([writing])
            if not writing.cancelled():
                writing.exception()  # retrieved: the attempt's own error is the one raised
        raise
    if writing is not None:
        await writing  # StoreUnavailable when the event record was not written
    return state


async def _attempt(
    rt: Runtime, d: Delivery, work: Work, record: dict[str, Any] | None
) -> DeliveryState | None:
    """One attempt under the work's own deadline; None when the reply was held."""
    try:
        # inside arq's longer timeout: a slow peer becomes a retry with backoff, where arq
        # would fail the job and drop it (the sweeper would only find it later)
        async with asyncio.timeout(rt.settings.job_timeout_seconds):
            return await work(rt, d, record)
    except WindowClosed as closed:
        await hold(rt, d, closed)
        return None
    except TimeoutError:
        # the call in flight was cut off after its request may have been written
        raise RetryableError(
            f"delivery took longer than {rt.settings.job_timeout_seconds:g}s", outcome="unknown"
        ) from None


async def _failed(rt: Runtime, d: Delivery, exc: DeliveryError) -> None:
    decision = rt.policy.decide(exc, d.attempts + 1, d.rate_limited_s)
    error = f"{decision.why} (last: {exc})" if decision.why else str(exc)
    await rt.deliveries.record_attempt(
        d.account,
        d.id,
        Attempt(
            at=datetime.now(UTC),
            outcome=decision.outcome,
            error=error,
            http_status=exc.status,
            wait=decision.wait if decision.action == "retry" else None,
            ambiguous=True if exc.outcome == "unknown" else None,
        ),
        spends_budget=decision.spends_budget,
    )
    rt.metrics.deliveries.labels(d.direction.value, decision.outcome).inc()
    log.info("delivery %s %s: %s (%s)", d.id, decision.outcome, exc, d.direction.value)
    if exc.status in (401, 403):
        # a rejected credential fails every delivery to that peer: /readyz shows it
        log.warning(
            "account %s: %s rejected our credentials (HTTP %s)", d.account, _peer(d), exc.status
        )
        await rt.deliveries.report_problem(d.account, _peer(d), str(exc))
    if decision.action == "retry":
        retry.retry_later(decision.wait)
    await rt.deliveries.finish(d, DeliveryState.DEAD, reason=decision.outcome, last_error=error)
    if d.direction is Direction.OUTBOUND:
        await tell_agent(rt, d, exc)


def _peer(d: Delivery) -> str:
    """Who a delivery talks to: the desk for inbound work, the channel for replies."""
    return f"desk {d.desk}" if d.direction is Direction.INBOUND else f"channel {d.channel}"
