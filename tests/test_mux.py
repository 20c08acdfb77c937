"""The multiplexed client (store/mux.py): many tasks' commands, scripts and transactions
share one connection and each gets its own answer; what must keep a connection of its
own does; a lost, closed or silent connection fails exactly the commands in flight on
it, and the next command connects again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError, NoScriptError, ResponseError, WatchError

from deskbridge.store.connection import MuxArqRedis, connect, muxed_arq
from deskbridge.store.mux import MuxRedis, multiplexer

from .conftest import TEST_REDIS_URL


@pytest.fixture
async def mux() -> AsyncIterator[Any]:
    client = connect(TEST_REDIS_URL)
    assert isinstance(client, MuxRedis)
    await client.flushdb()
    yield client
    await client.flushdb()
    await client.aclose()


async def _mux_client_id(r: Any) -> int:
    """The server's id of the multiplexed connection (found by its local address)."""
    await r.ping()
    conn = multiplexer(r.connection_pool)._conn
    host, port = conn._writer.get_extra_info("sockname")[:2]
    for client in await r.client_list():
        if client["addr"] == f"{host}:{port}":
            return int(client["id"])
    raise AssertionError("the multiplexed connection is not in CLIENT LIST")


async def test_many_tasks_share_one_connection_and_get_their_own_answers(mux: Any) -> None:
    async def one(i: int) -> tuple[Any, ...]:
        await mux.set(f"k{i}", i)
        value = await mux.get(f"k{i}")
        count = await mux.incr("counter")
        h = await mux.hgetall(f"missing{i}")
        return int(value), count, h

    results = await asyncio.gather(*(one(i) for i in range(300)))
    assert [v for v, _, _ in results] == list(range(300))
    assert sorted(c for _, c, _ in results) == list(range(1, 301))
    assert all(h == {} for _, _, h in results)  # redis-py's answer shapes (callbacks)
    m = multiplexer(mux.connection_pool)
    assert m.requests >= 1200
    assert m.writes * 20 < m.requests  # a turn of the loop's commands went in one write
    assert len(mux.connection_pool._in_use_connections) <= 2  # the shared one (+ a ping)


async def test_transactions_from_many_tasks_stay_whole(mux: Any) -> None:
    async def tx(i: int) -> list[Any]:
        pipe = mux.pipeline(transaction=True)
        pipe.rpush("log", f"{i}:a")
        pipe.set(f"t{i}", i)
        pipe.rpush("log", f"{i}:b")
        pipe.get(f"t{i}")
        return list(await pipe.execute())

    results = await asyncio.gather(*(tx(i) for i in range(200)))
    assert [int(r[3]) for r in results] == list(range(200))
    log = [x.decode() for x in await mux.lrange("log", 0, -1)]
    # no other task's command fell between a transaction's MULTI and EXEC
    for a, b in zip(log[::2], log[1::2], strict=True):
        assert a.split(":")[0] == b.split(":")[0] and (a[-1], b[-1]) == ("a", "b")


async def test_plain_pipelines_and_error_replies(mux: Any) -> None:
    await mux.set("s", "x")
    pipe = mux.pipeline(transaction=False)
    pipe.incr("n").lpush("s", 1).get("n")
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        await pipe.execute()
    pipe = mux.pipeline(transaction=False)
    pipe.incr("n").lpush("s", 1).get("n")
    first, error, last = await pipe.execute(raise_on_error=False)
    assert (first, last) == (2, b"2") and isinstance(error, ResponseError)
    # in a transaction, a command Redis refuses to queue aborts the whole of it
    tx = mux.pipeline(transaction=True)
    tx.set("never", 1).execute_command("NOSUCHCOMMAND").set("never2", 1)
    with pytest.raises(ResponseError):
        await tx.execute()
    assert await mux.exists("never", "never2") == 0
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        await mux.lpush("s", 1)
    assert await mux.get("s") == b"x"  # the connection goes on answering in order


async def test_scripts_are_loaded_again_after_a_flush(mux: Any) -> None:
    script = mux.register_script("return redis.call('INCR', KEYS[1])")
    assert await script(keys=["c"]) == 1
    await mux.script_flush()
    with pytest.raises(NoScriptError):
        await mux.evalsha(script.sha, 1, "c")
    assert await script(keys=["c"]) == 2  # redis-py's NOSCRIPT path: loaded, run again


async def test_a_blocking_pop_keeps_its_own_connection(mux: Any) -> None:
    waiting = asyncio.ensure_future(mux.blpop(["q"], timeout=2))
    await asyncio.sleep(0.05)
    # the shared connection is not blocked behind it
    for i in range(20):
        assert await mux.incr("free") == i + 1
    assert not waiting.done()
    await mux.rpush("q", "job")
    assert tuple(await waiting) == (b"q", b"job")


async def test_watch_transactions_take_a_connection_of_their_own(mux: Any) -> None:
    await mux.set("w", 1)
    async with mux.pipeline(transaction=True) as pipe:
        await pipe.watch("w")
        value = int(await pipe.get("w"))
        await mux.set("w", 5)  # another writer, on the shared connection
        pipe.multi()
        pipe.set("w", value + 1)
        with pytest.raises(WatchError):
            await pipe.execute()
    assert await mux.get("w") == b"5"


async def test_a_lost_connection_fails_what_was_in_flight_and_the_next_call_reconnects(
    mux: Any,
) -> None:
    await mux.ping()
    m = multiplexer(mux.connection_pool)
    conn = m._conn
    writer = conn._writer
    calls = [asyncio.ensure_future(mux.incr("lost")) for _ in range(10)]
    for _ in range(10):  # until they are written, and no answer read yet
        if m._waiting:
            break
        await asyncio.sleep(0)
    assert m._waiting
    conn._writer.transport.abort()
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(r, ConnectionError | int) for r in results)
    assert any(isinstance(r, ConnectionError) for r in results)
    assert await mux.incr("lost") >= 1  # a new connection
    assert m._conn._writer is not writer  # (the pool's connection object, connected again)
    available = mux.connection_pool._available_connections
    assert len(available) == len({id(x) for x in available})  # none given back twice


async def test_a_connection_the_server_closes_is_noticed_before_the_next_call(
    mux: Any, redis: aioredis.Redis
) -> None:
    killed = await _mux_client_id(mux)
    await redis.execute_command("CLIENT", "KILL", "ID", killed)
    m = multiplexer(mux.connection_pool)
    for _ in range(100):
        if m._conn is None:
            break
        await asyncio.sleep(0.01)
    assert m._conn is None  # the reader saw the close at once
    assert await mux.set("after", 1) is True  # nothing sent into the dead connection
    assert await _mux_client_id(mux) != killed


BUSY = """
local t = redis.call('TIME')
local start = t[1] * 1000000 + t[2]
repeat t = redis.call('TIME') until t[1] * 1000000 + t[2] - start > tonumber(ARGV[1])
return 1
"""


async def test_a_silent_server_fails_the_calls_after_socket_timeout(
    redis: aioredis.Redis,
) -> None:
    slow = MuxRedis.from_url(TEST_REDIS_URL, socket_timeout=0.2)
    other = MuxRedis.from_url(TEST_REDIS_URL)
    try:
        await slow.ping()
        busy = asyncio.ensure_future(other.eval(BUSY, 0, 600_000))  # Redis busy 0.6 s
        await asyncio.sleep(0.05)
        # the watchdog's error, not the end of the busy spell's answer
        with pytest.raises(ConnectionError, match=r"did not answer in 0\.2 s"):
            await slow.get("anything")
        assert await busy == 1
        assert await slow.get("anything") is None  # connected again
    finally:
        await slow.aclose()
        await other.aclose()


async def test_a_cancelled_caller_leaves_the_answers_in_order(mux: Any) -> None:
    other = MuxRedis.from_url(TEST_REDIS_URL)
    try:
        await mux.set("a", "A")
        await mux.set("b", "B")
        busy = asyncio.ensure_future(other.eval(BUSY, 0, 200_000))
        await asyncio.sleep(0.02)
        first = asyncio.ensure_future(mux.get("a"))
        second = asyncio.ensure_future(mux.get("b"))
        await asyncio.sleep(0.01)
        first.cancel()
        assert await second == b"B"
        assert await mux.get("a") == b"A"
        await busy
    finally:
        await other.aclose()


async def test_arqs_worker_pool_is_multiplexed() -> None:
    from arq.connections import RedisSettings, create_pool

    arq = await create_pool(RedisSettings.from_dsn(TEST_REDIS_URL))
    muxed = muxed_arq(arq)
    try:
        assert isinstance(muxed, MuxArqRedis)
        job = await muxed.enqueue_job("some_task", _job_id="mux-job")  # WATCH: redis-py's
        assert job is not None and await muxed.zscore("arq:queue", "mux-job") is not None
    finally:
        await muxed.flushdb()
        await muxed.aclose()
    assert muxed.connection_pool._in_use_connections == set()


async def test_an_idle_connection_is_not_taken_for_a_silent_one(redis: aioredis.Redis) -> None:
    """The silence ``socket_timeout`` bounds runs from the oldest unanswered command, not
    from the last answer: a command sent after an idle spell, whose answer Redis holds
    up a little, is answered, not cut off."""
    quick = MuxRedis.from_url(TEST_REDIS_URL, socket_timeout=0.3)
    other = MuxRedis.from_url(TEST_REDIS_URL)
    try:
        await quick.ping()  # the watchdog is armed here, and fires 0.3 s later
        await asyncio.sleep(0.25)  # idle: no command outstanding
        busy = asyncio.ensure_future(other.eval(BUSY, 0, 150_000))  # Redis busy 0.15 s
        await asyncio.sleep(0.02)
        assert await quick.get("late") is None  # answered ~0.13 s after it was sent
        assert await busy == 1
    finally:
        await quick.aclose()
        await other.aclose()
