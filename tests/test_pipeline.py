"""The worker against a real Redis: order, retries, rate limits, dead letters, lost jobs."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Sequence

from arq.connections import RedisSettings, create_pool

from deskbridge.errors import PermanentError, RetryableError
from deskbridge.outbound.base import Filed
from deskbridge.outbound.sandbox import SandboxConnector
from deskbridge.pipeline import sweep_once
from deskbridge.schemas import (
    AgentReply,
    Contact,
    ConversationRef,
    DeliveryState,
    Desk,
    Direction,
    Message,
    Upload,
)
from deskbridge.store import keys

from .conftest import TEST_REDIS_URL, drain
from .test_store import accept, message


class RecordingDesk(SandboxConnector):
    """The sandbox desk, with injectable failures and delays, recording what it filed."""

    def __init__(
        self, inner: SandboxConnector, failures: Sequence[Exception] = (), delay: float = 0.0
    ):
        super().__init__(inner.account, inner._backend)
        self.failures = list(failures)
        self.delay = delay
        self.filed: list[tuple[str, str]] = []
        self.calls = 0
        self.notes: list[str] = []

    async def ensure_user(self, contact: Contact) -> str:
        return contact.id

    async def append(
        self,
        conv: ConversationRef,
        user_id: str,
        msg: Message,
        files: Sequence[Upload],
        *,
        idempotency_key: str,
        retried: bool,
        in_doubt: bool = False,
    ) -> Filed:
        self.calls += 1
        if self.delay:
            await asyncio.sleep(random.uniform(0, self.delay))
        if self.failures:
            raise self.failures.pop(0)
        filed = await super().append(
            conv,
            user_id,
            msg,
            files,
            idempotency_key=idempotency_key,
            retried=retried,
            in_doubt=in_doubt,
        )
        self.filed.append((msg.thread, msg.text))
        return filed

    async def add_note(self, conv: ConversationRef, text: str) -> None:
        self.notes.append(text)
        await super().add_note(conv, text)


def fake_desk(rt, **kw) -> RecordingDesk:
    desk = RecordingDesk(rt.desks["acme"], **kw)
    rt.desks["acme"] = desk
    return desk


async def only_delivery(rt, redis, state_key=None) -> str:
    ids = await redis.keys("db:{acme}:dlv:*")
    ids = [k.decode().rsplit(":", 1)[1] for k in ids if not k.endswith((b":attempts", b":parts"))]
    assert len(ids) == 1, ids
    return ids[0]


async def test_conversation_order_is_kept_with_many_jobs_in_flight(make_runtime, redis) -> None:
    rt = make_runtime(max_jobs=20)
    desk = fake_desk(rt, delay=0.01)
    threads = ["1", "2", "3"]
    expected: dict[str, list[str]] = {t: [] for t in threads}
    for n in range(45):
        t = threads[n % 3]
        expected[t].append(f"message {n}")
        await accept(rt, [message(n, thread=t)])
    # extra jobs for every delivery, as a sweeper or a replay could add: only heads may act
    pool = await create_pool(
        RedisSettings.from_dsn(TEST_REDIS_URL),
        job_serializer=lambda d: json.dumps(d).encode(),
        job_deserializer=json.loads,
    )
    for key in await redis.keys("db:{acme}:dlv:*"):
        if not key.endswith((b":attempts", b":parts")):
            d_id = key.decode().rsplit(":", 1)[1]
            await pool.enqueue_job("deliver_to_desk", "acme", d_id, _job_id=f"extra-{d_id}")
    await pool.aclose()
    await drain(rt)
    got: dict[str, list[str]] = {t: [] for t in threads}
    for thread, text in desk.filed:
        got[thread].append(text)
    assert got == expected
    assert await redis.zcard(keys.pending("acme")) == 0
    # every conversation got one ticket
    assert len(await rt.sandbox.tickets("acme")) == 3


async def test_retryable_failures_back_off_then_deliver(make_runtime, redis) -> None:
    rt = make_runtime()
    desk = fake_desk(rt, failures=[RetryableError("desk: HTTP 503", status=503)] * 2)
    await accept(rt, [message(1)])
    await drain(rt)
    d_id = await only_delivery(rt, redis)
    d = await rt.deliveries.get("acme", d_id)
    assert d.state is DeliveryState.DELIVERED
    attempts = await rt.deliveries.attempts("acme", d_id)
    assert [a.outcome for a in attempts] == ["retry", "retry", "delivered"]
    assert attempts[0].http_status == 503 and attempts[0].wait is not None
    assert desk.calls == 3 and len(desk.filed) == 1


async def test_rate_limit_waits_do_not_spend_the_budget(make_runtime, redis) -> None:
    rt = make_runtime(max_attempts=2)
    fake_desk(rt, failures=[RetryableError("desk: 429", status=429, retry_after=0.01)] * 4)
    await accept(rt, [message(1)])
    await drain(rt)
    d = await rt.deliveries.get("acme", await only_delivery(rt, redis))
    assert d.state is DeliveryState.DELIVERED
    outcomes = [a.outcome for a in await rt.deliveries.attempts("acme", d.id)]
    assert outcomes == ["rate_limited"] * 4 + ["delivered"]
    assert d.attempts == 1


async def test_a_delivery_that_succeeds_after_a_failure_keeps_no_last_error(
    make_runtime, redis
) -> None:
    rt = make_runtime()
    fake_desk(rt, failures=[RetryableError("desk: timeout")])
    await accept(rt, [message(1)])
    await drain(rt)
    d = await rt.deliveries.get("acme", await only_delivery(rt, redis))
    assert d.state is DeliveryState.DELIVERED and d.last_error is None
    # the attempt that failed still says why
    attempts = await rt.deliveries.attempts("acme", d.id)
    assert [(a.outcome, a.error) for a in attempts] == [
        ("retry", "desk: timeout"),
        ("delivered", None),
    ]


async def test_budget_exhausted_goes_to_dead_letters_and_lane_moves_on(make_runtime, redis) -> None:
    rt = make_runtime(max_attempts=3)
    desk = fake_desk(rt, failures=[RetryableError("desk: timeout")] * 3)
    await accept(rt, [message(1), message(2)])
    await drain(rt)
    dead = [x.decode() for x in await redis.zrange(keys.dead("acme"), 0, -1)]
    assert len(dead) == 1
    d = await rt.deliveries.get("acme", dead[0])
    assert d.state is DeliveryState.DEAD and d.reason == "exhausted" and d.attempts == 3
    assert d.last_error == "desk: timeout"
    # the next message of the conversation was not held back forever
    assert [t for _, t in desk.filed] == ["message 2"]


async def test_permanent_failure_is_dead_at_once(make_runtime, redis) -> None:
    rt = make_runtime()
    desk = fake_desk(rt, failures=[PermanentError("desk: HTTP 400", status=400)])
    await accept(rt, [message(1)])
    await drain(rt)
    d = await rt.deliveries.get("acme", await only_delivery(rt, redis))
    assert d.state is DeliveryState.DEAD and d.reason == "permanent" and d.last_status == 400
    assert desk.calls == 1


async def test_failed_reply_becomes_an_internal_note(make_runtime, redis, respx_mock) -> None:
    from deskbridge.flows.ingest import accept_replies

    rt = make_runtime()
    desk = fake_desk(rt)
    await accept(rt, [message(1)])
    await drain(rt)
    [ticket] = await rt.sandbox.tickets("acme")
    respx_mock.post(url__regex=r"https://tg\.test/bot.*/sendMessage").respond(
        403,
        json={
            "ok": False,
            "error_code": 403,
            "description": "Forbidden: bot was blocked by the user",
        },
    )
    from datetime import UTC, datetime

    reply = AgentReply(
        account="acme",
        desk=Desk.SANDBOX,
        dedup_key="r1",
        ticket_id=ticket.id,
        external_id="agent-1",
        text="Hello!",
        occurred_at=datetime.now(UTC),
    )
    assert await accept_replies(rt, "acme", "sandbox", None, [reply]) == 1
    await drain(rt)
    dead = [x.decode() for x in await redis.zrange(keys.dead("acme"), 0, -1)]
    d = await rt.deliveries.get("acme", dead[0])
    assert d.direction is Direction.OUTBOUND and d.reason == "permanent"
    assert len(desk.notes) == 1 and "could not deliver" in desk.notes[0]
    assert "Hello!" not in desk.notes[0]
    t = await rt.sandbox.ticket("acme", ticket.id)
    assert [m.author for m in t.messages] == ["customer", "note"]


async def test_sweeper_re_enqueues_a_pending_delivery_whose_job_was_lost(
    make_runtime, redis
) -> None:
    rt = make_runtime()
    desk = fake_desk(rt)
    await accept(rt, [message(1)])
    d_id = await only_delivery(rt, redis)
    await redis.delete(keys.arq_job(d_id))
    await redis.zrem(keys.ARQ_QUEUE, d_id)
    await drain(rt)
    assert desk.filed == []
    assert await sweep_once(rt) == 1
    assert await sweep_once(rt) == 0  # the job exists now
    await drain(rt)
    assert [t for _, t in desk.filed] == ["message 1"]


async def test_killed_worker_loses_nothing_and_does_not_file_twice(make_runtime, redis) -> None:
    rt = make_runtime(job_timeout_seconds=1)
    desk = fake_desk(rt)
    filed = asyncio.Event()
    real_append = desk.append

    async def append_then_die(*args, **kwargs):
        result = await real_append(*args, **kwargs)
        filed.set()
        await asyncio.sleep(3600)  # killed here: filed at the desk, not yet recorded
        return result

    desk.append = append_then_die  # type: ignore[method-assign]
    await accept(rt, [message(1)])
    task = asyncio.create_task(drain(rt))
    await asyncio.wait_for(filed.wait(), 5)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    d_id = await only_delivery(rt, redis)
    assert (await rt.deliveries.get("acme", d_id)).state is DeliveryState.PENDING
    # what arq's in-progress expiry and the lane lock's TTL do in time (both outlive the
    # job's deadline); a killed process would not have released the lock itself
    await redis.delete(f"arq:in-progress:{d_id}")
    for lock in await redis.keys("db:{acme}:lock:*"):
        await redis.delete(lock)
    desk.append = real_append  # type: ignore[method-assign]
    await drain(rt)
    assert (await rt.deliveries.get("acme", d_id)).state is DeliveryState.DELIVERED
    [ticket] = await rt.sandbox.tickets("acme")
    assert [m.text for m in ticket.messages] == ["message 1"]


async def test_a_file_that_keeps_failing_does_not_hold_back_its_message(
    make_runtime, redis
) -> None:
    from deskbridge.schemas import Attachment, Channel

    rt = make_runtime(max_attempts=3)
    fake_desk(rt)
    adapter = rt.adapters[("acme", Channel.TELEGRAM)]
    fetches = []

    async def flaky_fetch(attachment):
        fetches.append(attachment.ref)
        raise RetryableError("telegram getFile: HTTP 502", status=502)

    adapter.fetch = flaky_fetch
    msg = message(1).model_copy(
        update={"attachments": (Attachment(kind="image", ref="file-1", filename="photo.jpg"),)}
    )
    await accept(rt, [msg])
    await drain(rt)
    d = await rt.deliveries.get("acme", await only_delivery(rt, redis))
    assert d.state is DeliveryState.DELIVERED
    assert len(fetches) == 3  # retried with the delivery, then given up on
    [ticket] = await rt.sandbox.tickets("acme")
    [filed] = ticket.messages
    assert "message 1" in filed.text
    assert "Attachment not available (image photo.jpg: telegram getFile: HTTP 502)" in filed.text


async def test_a_delivery_past_its_deadline_is_retried_not_dropped(make_runtime, redis) -> None:
    rt = make_runtime(job_timeout_seconds=0.3)
    desk = fake_desk(rt)
    real_append = desk.append
    calls = []

    async def slow_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            await asyncio.sleep(5)  # a desk that hangs, once
        return await real_append(*args, **kwargs)

    desk.append = slow_once  # type: ignore[method-assign]
    await accept(rt, [message(1)])
    await drain(rt)
    d = await rt.deliveries.get("acme", await only_delivery(rt, redis))
    assert d.state is DeliveryState.DELIVERED
    outcomes = [a.outcome for a in await rt.deliveries.attempts("acme", d.id)]
    assert outcomes == ["retry", "delivered"]
    assert "longer than 0.3s" in (await rt.deliveries.attempts("acme", d.id))[0].error


async def _reply_with_a_refused_file(rt, redis, respx_mock, text: str):
    from datetime import UTC, datetime

    from deskbridge.flows.ingest import accept_replies
    from deskbridge.http import UnsafeAddress
    from deskbridge.schemas import Attachment

    desk = fake_desk(rt)

    async def refuse(att):
        raise UnsafeAddress("untrusted URL: the host resolves to a non-public address")

    desk.fetch = refuse  # type: ignore[method-assign]
    await accept(rt, [message(1)])
    await drain(rt)
    [ticket] = await rt.sandbox.tickets("acme")
    send = respx_mock.post(url__regex=r"https://tg\.test/bot.*/sendMessage").respond(
        200, json={"ok": True, "result": {"message_id": 9, "date": 1, "chat": {"id": 42}}}
    )
    doc = respx_mock.post(url__regex=r"https://tg\.test/bot.*/sendDocument").respond(500)
    reply = AgentReply(
        account="acme",
        desk=Desk.SANDBOX,
        dedup_key="r-file",
        ticket_id=ticket.id,
        external_id="agent-file",
        text=text,
        attachments=(
            Attachment(
                kind="document",
                ref="http://127.0.0.1:6379/label.pdf",
                filename="label.pdf",
            ),
        ),
        occurred_at=datetime.now(UTC),
    )
    assert await accept_replies(rt, "acme", "sandbox", None, [reply]) == 1
    await drain(rt)
    [out] = [
        d
        for d in [await rt.deliveries.get("acme", i) for i in await all_delivery_ids(redis)]
        if d.direction is Direction.OUTBOUND
    ]
    return desk, send, doc, out


async def all_delivery_ids(redis) -> list[str]:
    ids = await redis.keys("db:{acme}:dlv:*")
    return [k.decode().rsplit(":", 1)[1] for k in ids if k.count(b":") == 3]


async def test_a_refused_attachment_never_costs_the_reply_its_text(
    make_runtime, redis, respx_mock
) -> None:
    """Telegram: the SSRF guard refuses the desk's attachment URL; the text goes out
    alone and the agent is told which file was left out and why."""
    rt = make_runtime()
    desk, send, doc, out = await _reply_with_a_refused_file(
        rt, redis, respx_mock, "Your label is attached."
    )
    assert out.state is DeliveryState.DELIVERED
    assert send.call_count == 1 and doc.call_count == 0
    assert "Your label is attached." in send.calls[0].request.content.decode()
    [text] = desk.notes
    assert "label.pdf" in text and "untrusted URL" in text
    assert "127.0.0.1" not in text and "Your label is attached." not in text


async def test_a_reply_of_only_refused_attachments_is_dead_with_a_note(
    make_runtime, redis, respx_mock
) -> None:
    rt = make_runtime()
    desk, send, doc, out = await _reply_with_a_refused_file(rt, redis, respx_mock, "")
    assert out.state is DeliveryState.DEAD and out.reason == "permanent"
    assert send.call_count == 0 and doc.call_count == 0
    [text] = desk.notes
    assert "could not deliver" in text and "label.pdf" in text


async def test_closing_a_worker_is_not_logged_as_a_signal(make_runtime, caplog) -> None:
    # arq's close() says "shutdown on SIGUSR1" whatever happened; deskbridge says closed
    rt = make_runtime()
    with caplog.at_level("INFO", logger="arq.worker"):
        await drain(rt)
    closed = [r.getMessage() for r in caplog.records if r.name == "arq.worker"]
    assert any(m.startswith("worker closed ◆ ") and "jobs complete" in m for m in closed)
    assert not any("SIGUSR1" in m for m in closed)


class FailsOnce(RecordingDesk):
    """Fails its third call with a retryable error (a message in the middle of a lane)."""

    failed = False

    async def append(self, *args, **kw) -> Filed:
        if self.calls == 2 and not self.failed:
            self.calls += 1
            self.failed = True
            raise RetryableError("desk busy")
        return await super().append(*args, **kw)


async def test_a_retry_in_the_middle_of_a_lane_keeps_its_order(make_runtime, redis) -> None:
    rt = make_runtime()
    desk = FailsOnce(rt.desks["acme"])
    rt.desks["acme"] = desk
    for n in range(5):
        await accept(rt, [message(n, thread="1")])
    await drain(rt)
    assert desk.filed == [("1", f"message {n}") for n in range(5)]
    assert desk.failed and desk.calls == 6
    assert await redis.zcard(keys.pending("acme")) == 0
    assert await redis.keys("arq:job:*") == []
