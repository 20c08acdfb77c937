"""Redis Sentinel failover under load, short version (``make faults`` runs the long one).

A primary, a replica and three Sentinels (Debian's redis-server and redis-sentinel), two
gateways and two workers with ``REDIS_URL=redis+sentinel://...`` and
``DESKBRIDGE_WAIT_REPLICAS=1``, customers writing at a bounded rate, ``kill -9`` of the
primary. Asserted: nothing acknowledged is lost, every delivery is made, a comment is
filed twice only if its job was in flight when the primary died, the refusals were 503s
or refused connections (retried), and every process is ready again by itself.
"""

from __future__ import annotations

import time

import pytest

from .scenarios import SHORT
from .sentinel import FailoverHarness, failover

pytestmark = [pytest.mark.slow, pytest.mark.asyncio, pytest.mark.timeout(180)]


async def test_kill_9_of_the_primary_fails_over_and_loses_nothing() -> None:
    t0 = time.monotonic()
    async with FailoverHarness(["failover"], SHORT.timing, log_level="WARNING") as h:
        print(f"\nstarted in {time.monotonic() - t0:.1f}s")
        r = await failover(
            h,
            account="failover",
            chats=16,
            interval=0.2,
            before_s=2.0,
            after_s=1.5,
            restart_delay_s=0.5,
            drain_timeout=40.0,
        )
        tails = h.tails()
    o = r.outcome
    print(
        f"\nfailover {r.killed} -> {r.promoted} in {r.switch_s:.1f}s, rejoined "
        f"{r.rejoin_s:.1f}s: {o.row()}; {r.refused} refused over {r.refused_s:.1f}s "
        f"{r.statuses}; in flight {r.in_flight}"
    )
    assert r.promoted and r.promoted != r.killed
    assert o.drained, f"not drained: {o.pending} pending\n{tails}"
    assert o.acked > 0 and o.lost == [], f"lost {o.lost}\n{tails}"
    assert o.dead_letters == 0 and o.dup_tickets == 0 and o.out_of_order == 0
    assert set(r.statuses) <= {200, 503, 0}, r.statuses
    assert r.ready_after == [200, 200, 200, 200], tails
