"""The group commit pipelines up to two batches on one connection: answers are matched
to their calls in order, a request stored after another stays behind it, and a failed
connection fails exactly the batches sent on it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis

from deskbridge.errors import StoreUnavailable
from deskbridge.store.intake import Coalescer

PUSH = "redis.call('RPUSH', KEYS[1], ARGV[1]) return tonumber(ARGV[1])"


async def _issue(c: Coalescer, script: Any, key: str, n: int) -> list[Any]:
    """``n`` calls in arrival order, a few per turn of the loop, so that batches form
    while others are in flight."""
    calls = []
    for i in range(n):
        calls.append(asyncio.ensure_future(c.call(script, [key], [i])))
        if i % 5 == 4:
            await asyncio.sleep(0)
    return await asyncio.gather(*calls, return_exceptions=True)


async def test_pipelined_batches_keep_arrival_order_and_their_answers(
    redis: aioredis.Redis,
) -> None:
    c = Coalescer(redis)
    script = redis.register_script(PUSH)
    results = await _issue(c, script, "order", 400)
    assert results == list(range(400))  # each call got its own answer
    r: Any = redis
    assert [int(x) for x in await r.lrange("order", 0, -1)] == list(range(400))
    assert c.most_in_flight == 2  # batches did overlap
    assert c.flushes > 2


async def test_a_connection_lost_mid_pipeline_fails_what_was_sent_on_it(
    redis: aioredis.Redis,
) -> None:
    c = Coalescer(redis)
    script = redis.register_script(PUSH)
    assert await c.call(script, ["lost"], [0]) == 0
    conn = c._conn
    real = conn.read_response
    failed = False

    async def read_response(*args: Any, **kwargs: Any) -> Any:
        nonlocal failed
        if not failed:
            failed = True
            await asyncio.sleep(0.05)  # a second batch goes out meanwhile
            raise ConnectionError("connection reset")
        return await real(*args, **kwargs)

    conn.read_response = read_response
    results = await _issue(c, script, "lost", 20)
    bad = [r for r in results if isinstance(r, StoreUnavailable)]
    assert bad and c.most_in_flight == 2
    assert all(isinstance(r, StoreUnavailable | int) for r in results)
    # the next call opens a new connection, and the pool holds no connection twice
    assert await c.call(script, ["lost"], [99]) == 99
    pool: Any = redis.connection_pool
    available = pool._available_connections
    assert len(available) == len({id(x) for x in available})


async def test_scripts_are_loaded_on_a_new_connection(
    redis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = Coalescer(redis)
    script = redis.register_script(PUSH)
    assert await c.call(script, ["load"], [1]) == 1
    r: Any = redis
    await r.script_flush()
    await c._drop(c._conn)  # as after a failure
    reloads = []
    real = r.script_load

    async def script_load(text: Any) -> Any:
        reloads.append(text)
        return await real(text)

    monkeypatch.setattr(r, "script_load", script_load)
    assert await c.call(script, ["load"], [2]) == 2
    assert reloads == []  # no NOSCRIPT, so no reload and retry behind later batches
    # a flush on a live connection still recovers, by the retry
    await r.script_flush()
    assert await c.call(script, ["load"], [3]) == 3
    assert len(reloads) == 1


@pytest.mark.parametrize("n", [1, 3])
async def test_an_idle_coalescer_sends_each_call_at_once(redis: aioredis.Redis, n: int) -> None:
    c = Coalescer(redis)
    script = redis.register_script(PUSH)
    for i in range(n):
        assert await c.call(script, ["idle"], [i]) == i
    assert c.flushes == n and c.most_in_flight == 1
