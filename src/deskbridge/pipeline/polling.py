"""Agent replies from desks that cannot push them (Udesk): the worker polls the replies of
tickets with recent activity and takes new agent replies in like a desk webhook would.

Polls spend the account's shared rate budget at low priority, so they never hold up a
delivery; one worker polls an account per interval; reply ids taken in are remembered,
and the intake's dedup mark and loop guard stop any second copy or echo.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Protocol, runtime_checkable

from deskbridge.errors import DeliveryError
from deskbridge.flows.ingest import accept_replies
from deskbridge.flows.runtime import Runtime
from deskbridge.outbound.udesk.connector import NoBudget, Polled
from deskbridge.store.connection import UNAVAILABLE

__all__ = ["PollingDesk", "poll_loop", "poll_once"]

log = logging.getLogger(__name__)

_TICK = 1.0


@runtime_checkable
class PollingDesk(Protocol):
    """A desk connector whose agent replies are fetched rather than pushed."""

    account: str
    poll_interval: float

    async def active_tickets(self) -> list[str]: ...

    async def claim_poll(self) -> bool: ...

    async def poll_ticket(self, ticket_id: str, *, urgent: bool = False) -> Polled: ...

    async def mark_seen(self, polled: Polled) -> None: ...


async def poll_once(rt: Runtime, account: str, *, urgent: bool = False) -> int:
    """Poll ``account``'s active tickets once; returns how many new agent replies were
    taken in. Without ``urgent`` it stops as soon as deliveries need the rate budget.
    Raises ``StoreUnavailable``; a desk error on one ticket is logged and skipped."""
    desk = rt.desk(account)
    if not isinstance(desk, PollingDesk):
        return 0
    taken = 0
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
    return taken


async def poll_loop(rt: Runtime) -> None:
    """Poll every polling desk's account at its interval, until cancelled. Returns at
    once when no account has such a desk."""
    desks: dict[str, Any] = {a: d for a, d in rt.desks.items() if isinstance(d, PollingDesk)}
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
