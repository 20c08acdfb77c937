"""Failures at each step of intake and delivery, injected one at a time.

Intake: a failure before, inside or after the intake script never leaves a dedup mark
that would take the channel's redelivery of an event we did not store for a duplicate,
and whatever was stored still reaches the desk. Inside the script the failure is made by
wrapping ``redis.call`` so that its n-th write raises, for every n.

Delivery: two states a ``kill -9`` of the worker used to leave behind (found by the fault
runs, see docs/reliability.md) are pinned here.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from typing import Any

import pytest

from deskbridge.errors import StoreUnavailable
from deskbridge.pipeline import worker as worker_module
from deskbridge.pipeline.worker import run_worker, sweep_once
from deskbridge.schemas import Channel, Direction, Message, RawRequest, Sender
from deskbridge.store import IntakeEvent, keys
from deskbridge.store.scripts import INTAKE, PARSE_FAILED

from ..conftest import drain, redis_of

# Every write of the wrapped script counts; the n-th raises as a failed command would.
_FAULTY = """
local real = redis
local writes = 0
local reads = {EXISTS = true, GET = true, HGET = true, LINDEX = true, LPOS = true,
  LRANGE = true, ZSCORE = true, TTL = true, PTTL = true}
local redis = setmetatable({
  call = function(cmd, ...)
    if not reads[string.upper(cmd)] then
      writes = writes + 1
      if writes == FAIL_AT then error(real.error_reply('ERR injected failure')) end
    end
    return real.call(cmd, ...)
  end,
}, {__index = real})
"""


def faulty(script: str, fail_at: int) -> str:
    return _FAULTY.replace("FAIL_AT", str(fail_at)) + script


def message(n: int, thread: str = "42") -> Message:
    return Message(
        account="acme",
        channel=Channel.TELEGRAM,
        dedup_key=str(5000 + n),
        thread=thread,
        occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
        external_id=str(n),
        sender=Sender(external_id=thread, display_name="Ann"),
        text=f"crash point {n}",
    )


async def accept(rt: Any, msgs: list[Message]) -> list[bool]:
    result: list[bool] = await rt.intake.accept(
        account="acme",
        source="telegram",
        direction=Direction.INBOUND,
        channel="telegram",
        desk="sandbox",
        req=RawRequest(method="POST", path="/webhooks/telegram/acme", body=b"{}"),
        events=[
            IntakeEvent(
                dedup_key=m.dedup_key,
                conversation_id=rt.conversations.conversation_id("acme", m.channel, m.thread),
                event=m,
            )
            for m in msgs
        ],
    )
    return result


async def stored(rt: Any, redis: Any, msg: Message) -> bool:
    """The dedup mark of ``msg`` names an event that is stored and pending in its lane."""
    mark = await redis.get(
        keys.dedup("acme", "telegram", rt.vault.digest("dedup", "telegram", msg.dedup_key))
    )
    if mark is None:
        return False
    event_id = mark.decode()
    conv = rt.conversations.conversation_id("acme", msg.channel, msg.thread)
    d = await rt.deliveries.get("acme", event_id)
    lane = [x.decode() for x in await redis.lrange(keys.lane("acme", "inbound", conv), 0, -1)]
    return bool(
        await redis.exists(keys.event("acme", event_id))
        and d is not None
        and d.state.value == "pending"
        and event_id in lane
        and await redis.zscore(keys.pending("acme"), event_id) is not None
    )


async def filed(rt: Any) -> list[str]:
    texts: list[str] = []
    for ticket in await rt.sandbox.tickets("acme"):
        texts += [m.text for m in ticket.messages]
    return texts


async def test_a_failure_at_any_write_of_intake_leaves_no_blocking_mark(
    make_runtime, redis
) -> None:
    rt = make_runtime()
    real = rt.intake._intake
    steps = 0
    for fail_at in range(1, 60):
        await redis.flushdb()
        # an earlier message heads the lane, so the failing one waits behind it as usual
        first, second = message(1), message(2)
        assert await accept(rt, [first]) == [True]
        rt.intake._intake = redis_script(rt, faulty(INTAKE, fail_at))
        try:
            await accept(rt, [second])
        except StoreUnavailable:
            pass
        else:
            break  # fewer writes than fail_at: every step has had its failure
        finally:
            rt.intake._intake = real
        steps += 1
        mark = await redis.exists(
            keys.dedup("acme", "telegram", rt.vault.digest("dedup", "telegram", second.dedup_key))
        )
        assert not mark or await stored(rt, redis, second), f"write {fail_at}: mark, no event"
        # the 503 made the channel send it again
        assert await accept(rt, [second]) == [not mark]
        assert await stored(rt, redis, second), f"write {fail_at}: redelivery not stored"
        await sweep_once(rt)
        await drain(rt)
        texts = await filed(rt)
        assert "crash point 1" in texts and "crash point 2" in texts, f"write {fail_at}"
        assert texts.index("crash point 1") < texts.index("crash point 2")
    assert steps >= 8, "the wrapper never reached the script's writes"


async def test_a_failure_at_any_write_of_parse_failed_leaves_no_blocking_mark(
    make_runtime, redis
) -> None:
    rt = make_runtime()
    real = rt.intake._parse_failed
    req = RawRequest(method="POST", path="/webhooks/telegram/acme", body=b'{"update_id":"x"}')
    kw: dict[str, Any] = dict(
        account="acme",
        source="telegram",
        direction=Direction.INBOUND,
        channel="telegram",
        desk="sandbox",
        req=req,
        error="bad update_id",
        dedup_key="body-1",
    )
    steps = 0
    for fail_at in range(1, 30):
        await redis.flushdb()
        rt.intake._parse_failed = redis_script(rt, faulty(PARSE_FAILED, fail_at))
        try:
            await rt.intake.accept_parse_failed(**kw)
        except StoreUnavailable:
            pass
        else:
            break
        finally:
            rt.intake._parse_failed = real
        steps += 1
        assert not await redis.exists(
            keys.dedup("acme", "telegram", rt.vault.digest("dedup", "telegram", "body-1"))
        )
        assert await rt.intake.accept_parse_failed(**kw) is True
        mark = await redis.get(
            keys.dedup("acme", "telegram", rt.vault.digest("dedup", "telegram", "body-1"))
        )
        assert await redis.zscore(keys.dead("acme"), mark) is not None
        assert await redis.exists(keys.raw("acme", mark.decode()))
    assert steps >= 4


@pytest.mark.parametrize("when", ["before the round trip", "after the script ran"])
async def test_a_lost_connection_around_the_script(make_runtime, redis, when) -> None:
    """Before: nothing was written, the redelivery is stored. After (the answer was lost):
    the event is stored, and the redelivery is the duplicate it really is."""
    rt = make_runtime()
    coalescer = rt.intake.coalescer
    submit = coalescer._submit
    lost = ConnectionError("connection reset")

    def broken(packed: bytes, wanted: int, answered: Any) -> None:
        if when == "after the script ran":  # written and run; the answer never comes
            submit(packed, wanted, lambda _: answered(lost))
        else:
            answered(lost)

    coalescer._submit = broken
    with pytest.raises(StoreUnavailable):
        await accept(rt, [message(1)])
    coalescer._submit = submit
    assert await accept(rt, [message(1)]) == [when == "before the round trip"]
    assert await stored(rt, redis, message(1))
    await drain(rt)
    assert await filed(rt) == ["crash point 1"]


def redis_script(rt: Any, text: str) -> Any:
    return redis_of(rt).register_script(text)


# -- delivery --------------------------------------------------------------------------


async def test_a_conversation_record_cut_short_by_a_kill_heals(make_runtime, redis) -> None:
    """A worker killed between the two writes that created a conversation left a record
    without its thread, and every later delivery of that conversation failed (a stuck
    lane). The record is now written in one transaction, and such a record heals."""
    rt = make_runtime()
    msg = message(1)
    conv = rt.conversations.conversation_id("acme", msg.channel, msg.thread)
    await redis.hset(keys.conversation("acme", conv), "channel", "telegram")
    await accept(rt, [msg])
    await drain(rt)
    assert await filed(rt) == ["crash point 1"]
    rec = await rt.conversations.get("acme", conv)
    assert rec is not None and rec.thread == "42"


async def test_the_worker_supervisor_survives_a_job_cancelled_before_it_ran(
    make_runtime, monkeypatch
) -> None:
    """When Redis went away, arq's ``close`` re-raised the CancelledError of a job it had
    cancelled before that job started, and the supervisor loop ended: the worker process
    exited (status 0) and nothing was delivered any more."""
    rt = make_runtime()
    starts: list[int] = []
    restarted = asyncio.Event()

    class FlakyWorker:
        async def main(self) -> None:
            starts.append(1)
            if len(starts) == 1:
                raise ConnectionError("Redis went away")
            restarted.set()
            await asyncio.Event().wait()

        async def close(self) -> None:
            if len(starts) == 1:
                never_ran = asyncio.ensure_future(asyncio.sleep(1))
                never_ran.cancel()
                await asyncio.gather(never_ran)  # what arq's close does with its jobs

    async def idle(_: Any) -> None:
        await asyncio.Event().wait()

    monkeypatch.setattr(worker_module, "build_worker", lambda *a, **k: FlakyWorker())
    monkeypatch.setattr(worker_module, "_background", idle)
    task = asyncio.create_task(run_worker(rt, "redis://unused"))
    await asyncio.wait_for(restarted.wait(), 10)
    assert not task.done()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert task.cancelled()
