"""The filing's budget read (DeliveryStore.filing_budget): one script reads a ticket's
update budget, the lane and any earlier desk write, and writes the desk write's
in-flight mark only when the write is known to go alone and not in doubt; otherwise the
filing notes its write itself (begin_desk_write), as before."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from deskbridge.schemas import Delivery, DeliveryState, Direction
from deskbridge.store import keys

from .conftest import redis_of

BUDGET = (30, 600.0)
TTL = 7 * 86400


def _delivery(i: str) -> Delivery:
    now = datetime.now(UTC)
    return Delivery(
        id=i,
        account="acme",
        direction=Direction.INBOUND,
        channel="telegram",
        desk="zendesk",
        conversation_id="conv1",
        event_id=i,
        state=DeliveryState.PENDING,
        created_at=now,
        updated_at=now,
    )


async def _setup(rt: Any, lane: list[str], used: int) -> Any:
    r: Any = redis_of(rt)
    if lane:
        await r.rpush(keys.lane("acme", "inbound", "conv1"), *lane)
    key = keys.ticket_updates("acme", "zendesk", rt.vault.digest("ticket", "zendesk", "77"))
    now = int(time.time() * 1000)
    if used:
        await r.zadd(key, {f"u{i}": now - 1000 - i for i in range(used)})
    return r


async def test_a_write_that_goes_alone_is_marked_in_the_same_round_trip(make_runtime) -> None:
    rt = make_runtime()
    r = await _setup(rt, ["d1", "d2"], used=3)
    await r.rpush(keys.attempts("acme", "d1"), "x", "y")  # two attempts recorded before
    used, wait, lane, carried, marked = await rt.deliveries.filing_budget(
        _delivery("d1"), "zendesk", "77", BUDGET, 10, TTL
    )
    assert (used, lane, carried, marked) == (3, ["d1", "d2"], None, True)
    assert 598 < wait <= 600  # the oldest update leaves the window in ~10 minutes
    mark = keys.desk_write("acme", "d1")
    assert await r.get(mark) == b"2|"  # DESK_WRITE's mark: attempt count, no carried ids
    assert 0 < await r.ttl(mark) <= TTL
    # a later attempt (the worker died in the write) finds it in doubt, as before
    assert await rt.deliveries.begin_desk_write("acme", "d1", TTL) is True


async def test_no_mark_when_the_write_may_carry_others_or_was_written_before(
    make_runtime,
) -> None:
    rt = make_runtime()
    r = await _setup(rt, ["d1", "d2", "d3", "d4"], used=27)  # 3 left, 3 waiting: a merge
    *_, carried, marked = await rt.deliveries.filing_budget(
        _delivery("d1"), "zendesk", "77", BUDGET, 10, TTL
    )
    assert (carried, marked) == (None, False)
    assert await r.exists(keys.desk_write("acme", "d1")) == 0
    # the window's last update: the filing scans the lane further itself
    await r.zadd(
        keys.ticket_updates("acme", "zendesk", rt.vault.digest("ticket", "zendesk", "77")),
        {"u27": int(time.time() * 1000), "u28": int(time.time() * 1000)},
    )
    *_, marked = await rt.deliveries.filing_budget(
        _delivery("d2"), "zendesk", "77", BUDGET, 10, TTL
    )
    assert marked is False
    # an earlier write of it, merged with d9: carried, and the mark left as it was
    await r.set(keys.desk_write("acme", "d3"), "0|d9")
    *_, carried, marked = await rt.deliveries.filing_budget(
        _delivery("d3"), "zendesk", "77", (100, 600.0), 10, TTL
    )
    assert (carried, marked) == (("d9",), False)
    assert await r.get(keys.desk_write("acme", "d3")) == b"0|d9"


async def test_a_spent_budget_marks_nothing(make_runtime) -> None:
    rt = make_runtime()
    r = await _setup(rt, ["d1"], used=30)
    used, wait, _, _, marked = await rt.deliveries.filing_budget(
        _delivery("d1"), "zendesk", "77", BUDGET, 10, TTL
    )
    assert (used, marked) == (30, False) and wait > 0
    assert await r.exists(keys.desk_write("acme", "d1")) == 0
