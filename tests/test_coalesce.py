"""Desk-side update budgets: a conversation that floods a ticket is filed in fewer
updates, never dropped, and never pushed into the desk's 429s (Zendesk: 30 updates per
ticket per 10 minutes)."""

from __future__ import annotations

import time

from deskbridge.gateway import create_app
from deskbridge.schemas import DeliveryState, Direction
from deskbridge.store import keys

from .conftest import drain, redis_of
from .desks.fake_zendesk import FakeZendesk
from .test_desk_conformance import customer_says, deliveries, telegram, yaml_for


async def _with_ticket(make_runtime, aiohttp_client, respx_mock):
    fake = FakeZendesk()
    await fake.start()
    telegram(respx_mock)
    rt = make_runtime(yaml_for(fake))
    client = await aiohttp_client(create_app(rt, role="serve"))
    await customer_says(client, "first", 8000)
    await drain(rt)
    [ticket] = fake.tickets()
    return fake, rt, client, ticket.id


async def test_a_flood_near_the_limit_is_filed_as_one_update(
    make_runtime, aiohttp_client, respx_mock
) -> None:
    fake, rt, client, ticket_id = await _with_ticket(make_runtime, aiohttp_client, respx_mock)
    try:
        key = keys.ticket_updates("acme", "zendesk", ticket_id)
        now = int(time.time() * 1000)
        await redis_of(rt).zadd(key, {f"old{i}": now - 1000 for i in range(27)})  # 28 used
        for i in range(5):
            await customer_says(client, f"flood {i}", 8001 + i)
        await drain(rt)
        [ticket] = fake.tickets()
        user_parts = [p.text for p in ticket.parts if p.author == "user"]
        assert user_parts[0] == "first"
        # two updates left, four messages waiting behind the head: one update for all
        assert len(user_parts) == 2
        combined = user_parts[1]
        assert [combined.index(f"flood {i}") for i in range(5)] == sorted(
            combined.index(f"flood {i}") for i in range(5)
        )
        done = await deliveries(rt, Direction.INBOUND)
        assert all(d.state is DeliveryState.DELIVERED for d in done)
        assert sum(d.reason == "coalesced" for d in done) == 4
        assert await redis_of(rt).zcard(key) == 29
    finally:
        await fake.stop()


async def test_a_spent_budget_waits_for_the_window(
    make_runtime, aiohttp_client, respx_mock
) -> None:
    fake, rt, client, ticket_id = await _with_ticket(make_runtime, aiohttp_client, respx_mock)
    try:
        key = keys.ticket_updates("acme", "zendesk", ticket_id)
        # 29 more updates (30 with the first), all leaving the window in about a second
        edge = int(time.time() * 1000) - 600_000 + 800
        await redis_of(rt).zadd(key, {f"old{i}": edge for i in range(29)})
        await customer_says(client, "after the window", 8100)
        await drain(rt)
        [d] = [x for x in await deliveries(rt, Direction.INBOUND) if x.state is not None][-1:]
        log = await rt.deliveries.attempts("acme", d.id)
        assert [str(a.outcome) for a in log] == ["rate_limited", "delivered"]
        assert not any(status == 429 for _, _, status in fake.calls())
        [ticket] = fake.tickets()
        assert [p.text for p in ticket.parts if p.author == "user"][-1] == "after the window"
    finally:
        await fake.stop()
