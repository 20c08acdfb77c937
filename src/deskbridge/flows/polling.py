"""Agent replies from desks that cannot push them (Udesk): the worker polls the replies of
tickets with recent activity and takes new agent replies in like a desk webhook would.
With a ``csat:`` account it also reads each such ticket's status, and a solved one
schedules its satisfaction survey (docs/csat.md).

Polls spend the account's shared rate budget at low priority, so they never hold up a
delivery; one worker polls an account per interval; reply ids taken in are remembered,
and the intake's dedup mark and loop guard stop any second copy or echo.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from deskbridge.errors import DeliveryError
from deskbridge.flows import csat
from deskbridge.flows.ingest import accept_replies
from deskbridge.flows.runtime import Runtime
from deskbridge.outbound.capabilities import NoBudget, PollsReplies, PollsSolved
from deskbridge.store.connection import UNAVAILABLE

__all__ = ["poll_loop", "poll_once"]

log = logging.getLogger(__name__)

_TICK = 1.0


async def poll_once(rt: Runtime, account: str, *, urgent: bool = False) -> int:
    """Poll ``account``'s active tickets once; returns how many new agent replies were
    taken in. Without ``urgent`` it stops as soon as deliveries need the rate budget.
    Raises ``StoreUnavailable``; a desk error on one ticket is logged and skipped."""
    desk = rt.desk(account)
    if not isinstance(desk, PollsReplies):
        return 0
    taken = 0
    surveys = rt.accounts.accounts[account].csat is not None and isinstance(desk, PollsSolved)
    for ticket_id in await desk.active_tickets():
        try:
            polled = await desk.poll_ticket(ticket_id, urgent=urgent)
        except NoBudget:
            log.info("poll %s: rate budget kept for deliveries; resuming next round", account)
            break
        except DeliveryError as exc:
            log.warning("poll %s: ticket %s: %s", account, ticket_id, exc)
            continue
        if polled.replies:
            taken += await accept_replies(
                rt, account, polled.replies[0].desk.value, None, polled.replies
            )
        await desk.mark_seen(polled)
        if surveys and not await _solved(rt, account, desk, ticket_id, urgent=urgent):
            break
    return taken


async def _solved(rt: Runtime, account: str, desk: Any, ticket_id: str, *, urgent: bool) -> bool:
    """Schedule the survey of a ticket found solved; False when the rate budget is kept
    for deliveries. A ticket is read until it is handled once: surveyed, or passed over
    (opted out, surveyed recently)."""
    name = str(desk.desk.value)
    if await rt.csat.ticket_claimed(account, name, ticket_id):
        return True
    try:
        solved = await desk.is_solved(ticket_id, urgent=urgent)
    except NoBudget:
        log.info("poll %s: rate budget kept for deliveries; resuming next round", account)
        return False
    except DeliveryError as exc:
        log.warning("poll %s: ticket %s status: %s", account, ticket_id, exc)
        return True
    if solved:
        outcome = await csat.ticket_solved(rt, account, name, ticket_id)
        if outcome in ("opted_out", "recent", "unknown_ticket"):
            await rt.csat.claim_ticket(account, name, ticket_id)
    return True


async def poll_loop(rt: Runtime) -> None:
    """Poll every polling desk's account at its interval, until cancelled. Returns at
    once when no account has such a desk."""
    desks: dict[str, Any] = {a: d for a, d in rt.desks.items() if isinstance(d, PollsReplies)}
    if not desks:
        return
    due = dict.fromkeys(desks, 0.0)
    while True:
        for account, desk in desks.items():
            if time.monotonic() < due[account]:
                continue
            due[account] = time.monotonic() + desk.poll_interval
            try:
                if await desk.claim_poll():
                    taken = await poll_once(rt, account)
                    if taken:
                        log.info("poll %s: %d agent replies taken in", account, taken)
            except UNAVAILABLE as exc:
                log.warning("poll %s: Redis unavailable (%s)", account, type(exc).__name__)
        await asyncio.sleep(_TICK)
