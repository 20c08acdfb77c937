"""The group commit pipelines its batches on one connection of its own: answers are
matched to their calls in order, a request stored after another stays behind it, and a
failed connection fails exactly the batches sent on it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from deskbridge.errors import StoreUnavailable
from deskbridge.store.connection import connect
from deskbridge.store.intake import Coalescer

from .conftest import TEST_REDIS_URL

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
    assert c.most_in_flight >= 2  # batches did overlap
    assert c.flushes > 2


BUSY = """
local t = redis.call('TIME')
local start = t[1] * 1000000 + t[2]
repeat t = redis.call('TIME') until t[1] * 1000000 + t[2] - start > tonumber(ARGV[1])
return 1
"""


async def _turns(done: Callable[[], bool]) -> None:
    """Let the loop turn until ``done()``."""
    for _ in range(20):
        if done():
            return
        await asyncio.sleep(0)
    raise AssertionError("never happened")


async def _drop(c: Coalescer) -> None:
    """Close the coalescer's connection as a failure would, and wait until it is gone."""
    assert c._mux is not None
    link = c._mux._link
    assert link is not None
    link.fail(ConnectionError("connection reset"))
    await link.lost
    assert link.released is not None
    await link.released


async def test_a_connection_lost_mid_pipeline_fails_what_was_sent_on_it(
    redis: aioredis.Redis,
) -> None:
    c = Coalescer(redis)
    script = redis.register_script(PUSH)
    assert await c.call(script, ["lost"], [0]) == 0
    assert c._mux is not None
    link = c._mux._link
    assert link is not None
    other: Any = connect(TEST_REDIS_URL)
    busy = asyncio.ensure_future(other.eval(BUSY, 0, 300_000))  # Redis busy 0.3 s
    await asyncio.sleep(0.05)
    calls = [asyncio.ensure_future(c.call(script, ["lost"], [i])) for i in range(1, 11)]
    await _turns(lambda: c.most_in_flight == 1 and bool(link.waiting))  # written
    calls += [asyncio.ensure_future(c.call(script, ["lost"], [i])) for i in range(11, 21)]
    await _turns(lambda: c.most_in_flight == 2)  # a second batch behind it, unanswered
    link.fail(ConnectionError("connection reset"))
    assert await busy == 1
    await other.aclose()
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(r, StoreUnavailable) for r in results)  # both batches failed
    # the next call opens a new connection, and the pool holds no connection twice
    assert await c.call(script, ["lost"], [99]) == 99
    assert c._mux._link is not link
    assert link.released is not None
    await link.released
    pool: Any = redis.connection_pool
    available = pool._available_connections
    assert len(available) == len({id(x) for x in available})


async def test_scripts_are_loaded_on_a_new_connection(redis: aioredis.Redis) -> None:
    c = Coalescer(redis)
    script = redis.register_script(PUSH)
    assert await c.call(script, ["load"], [1]) == 1
    r: Any = redis
    await r.script_flush()
    await _drop(c)  # as after a failure
    sent = c.flushes
    assert await c.call(script, ["load"], [2]) == 2
    assert c.flushes == sent + 1  # no NOSCRIPT, so no retry behind later batches
    # a flush on a live connection still recovers: loaded and run again, in one write
    await r.script_flush()
    assert await c.call(script, ["load"], [3]) == 3
    assert c.flushes == sent + 3
    assert [x.decode() for x in await r.lrange("load", 0, -1)] == ["1", "2", "3"]


async def test_a_retried_batch_keeps_its_order_ahead_of_later_calls(
    redis: aioredis.Redis,
) -> None:
    """After a flush of the script cache on a live connection, the calls that met
    ``NOSCRIPT`` are written again from the reader, ahead of calls queued later."""
    c = Coalescer(redis)
    script = redis.register_script(PUSH)
    assert await c.call(script, ["order"], [0]) == 0
    r: Any = redis
    await r.script_flush()
    first = [asyncio.ensure_future(c.call(script, ["order"], [i])) for i in range(1, 6)]
    await _turns(lambda: c.flushes == 2)  # written (and will meet NOSCRIPT)
    later = [asyncio.ensure_future(c.call(script, ["order"], [i])) for i in range(6, 11)]
    assert await asyncio.gather(*first, *later) == list(range(1, 11))
    assert [int(x) for x in await r.lrange("order", 0, -1)] == list(range(11))


async def test_a_replica_count_short_of_the_wanted_fails_the_batch(
    redis: aioredis.Redis,
) -> None:
    """``wait_replicas``: a batch no replica confirmed is not acknowledged (this server
    has none); what the primary wrote stays, and the platform's retry finds it."""
    c = Coalescer(redis, wait_replicas=1, wait_timeout_ms=50)
    script = redis.register_script(PUSH)
    with pytest.raises(StoreUnavailable, match="confirmed by 0 replica"):
        await c.call(script, ["wait"], [1])
    r: Any = redis
    assert await r.lrange("wait", 0, -1) == [b"1"]


@pytest.mark.parametrize("n", [1, 3])
async def test_an_idle_coalescer_sends_each_call_at_once(redis: aioredis.Redis, n: int) -> None:
    c = Coalescer(redis)
    script = redis.register_script(PUSH)
    for i in range(n):
        assert await c.call(script, ["idle"], [i]) == i
    assert c.flushes == n and c.most_in_flight == 1


async def test_with_replicas_one_wait_is_in_flight_and_later_calls_go_as_one_batch(
    redis: aioredis.Redis,
) -> None:
    """WAITs are not written back to back (each would hold up the next for its timeout):
    calls made while one is unanswered go together after it."""
    c = Coalescer(redis, wait_replicas=1, wait_timeout_ms=100)
    script = redis.register_script(PUSH)
    first = asyncio.ensure_future(c.call(script, ["one-wait"], [0]))
    await _turns(lambda: c.flushes == 1)
    later = [asyncio.ensure_future(c.call(script, ["one-wait"], [i])) for i in range(1, 4)]
    for _ in range(3):
        await asyncio.sleep(0)
    assert c.flushes == 1  # held behind the unanswered WAIT
    results = await asyncio.gather(first, *later, return_exceptions=True)
    assert all(isinstance(r, StoreUnavailable) for r in results)  # no replica here
    assert c.flushes == 2 and c.most_in_flight == 1
    r: Any = redis
    assert [int(x) for x in await r.lrange("one-wait", 0, -1)] == [0, 1, 2, 3]
