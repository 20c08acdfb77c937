"""Desk-side update budgets: a conversation that floods a ticket is filed in fewer
updates, never dropped, and never pushed into the desk's 429s (Zendesk: 30 updates per
ticket per 10 minutes)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from deskbridge.gateway import create_app
from deskbridge.schemas import DeliveryState, Direction
from deskbridge.store import keys

from .conftest import drain, redis_of
from .desks.fake_zendesk import FakeZendesk
from .helpers import deliveries, kill_worker_when
from .test_desk_conformance import TG, TG_FILES, customer_says, telegram, yaml_for


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
        key = keys.ticket_updates(
            "acme", "zendesk", rt.vault.digest("ticket", "zendesk", ticket_id)
        )
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


async def test_a_message_that_was_tried_on_its_own_is_never_merged_into_another(
    make_runtime, aiohttp_client, respx_mock
) -> None:
    """A delivery with attempts of its own (a head once, before an operator replayed a
    dead one in front of it) may have a write at the desk that only its own turn can
    reconcile: the merge run stops before it."""
    fake, rt, client, ticket_id = await _with_ticket(make_runtime, aiohttp_client, respx_mock)
    try:
        key = keys.ticket_updates(
            "acme", "zendesk", rt.vault.digest("ticket", "zendesk", ticket_id)
        )
        now = int(time.time() * 1000)
        await redis_of(rt).zadd(key, {f"old{i}": now - 1000 for i in range(26)})  # 27 used
        for i in range(5):
            await customer_says(client, f"flood {i}", 8101 + i)
        pending = sorted(
            (
                d
                for d in await deliveries(rt, Direction.INBOUND)
                if d.state is DeliveryState.PENDING
            ),
            key=lambda d: d.id,
        )
        assert len(pending) == 5
        r: Any = redis_of(rt)  # redis-py's stubs type hset as sync or async
        await r.hset(keys.delivery("acme", pending[2].id), "attempts", "1")
        await drain(rt)
        [ticket] = fake.tickets()
        user_parts = [p.text for p in ticket.parts if p.author == "user"]
        assert user_parts[0] == "first"
        # flood 0 merges flood 1 and stops at flood 2, whose own update carries 3 and 4
        assert len(user_parts) == 3
        assert "flood 0" in user_parts[1] and "flood 1" in user_parts[1]
        assert "flood 2" not in user_parts[1]
        assert all(f"flood {i}" in user_parts[2] for i in (2, 3, 4))
        assert sum(part.count("flood") for part in user_parts) == 5  # each message once
    finally:
        await fake.stop()


async def test_a_spent_budget_waits_for_the_window(
    make_runtime, aiohttp_client, respx_mock
) -> None:
    fake, rt, client, ticket_id = await _with_ticket(make_runtime, aiohttp_client, respx_mock)
    try:
        key = keys.ticket_updates(
            "acme", "zendesk", rt.vault.digest("ticket", "zendesk", ticket_id)
        )
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


async def test_a_chatty_customer_is_never_stranded_behind_the_window(
    make_runtime, aiohttp_client, respx_mock
) -> None:
    """30 updates spent, then the 31st to 57th messages (one with a file): when the window
    frees one update, all 27 go in it, each line with its time and author, the file
    attached to that update; none waits for a later window (issue 16)."""
    fake, rt, client, ticket_id = await _with_ticket(make_runtime, aiohttp_client, respx_mock)
    respx_mock.post(f"{TG}/getFile").respond(
        200,
        json={
            "ok": True,
            "result": {"file_id": "doc1", "file_unique_id": "u1", "file_path": "docs/f1.pdf"},
        },
    )
    respx_mock.get(f"{TG_FILES}/docs/f1.pdf").respond(
        200, content=b"%PDF-1.4 invoice", headers={"Content-Type": "application/pdf"}
    )
    document = {
        "file_id": "doc1",
        "file_unique_id": "u1",
        "file_name": "invoice.pdf",
        "mime_type": "application/pdf",
        "file_size": 16,
    }
    try:
        for n in range(2, 31):  # messages 2..30: each its own update while the budget lasts
            await customer_says(client, f"message {n}", 8200 + n)
            await drain(rt)
        [ticket] = fake.tickets()
        assert len([p for p in ticket.parts if p.author == "user"]) == 30
        key = keys.ticket_updates(
            "acme", "zendesk", rt.vault.digest("ticket", "zendesk", ticket_id)
        )
        assert await redis_of(rt).zcard(key) == 30
        # the oldest update leaves the window in under a second; the others stay
        [(oldest, _)] = await redis_of(rt).zrange(key, 0, 0, withscores=True)
        await redis_of(rt).zadd(key, {oldest: int(time.time() * 1000) - 600_000 + 800})

        for n in range(31, 58):
            extra: dict[str, object] = {"document": document} if n == 40 else {}
            if n == 45:  # someone else in the chat: their own name on their line
                extra["from"] = {"id": 43, "is_bot": False, "first_name": "Bob"}
            await customer_says(client, f"message {n}", 8200 + n, **extra)
        await drain(rt)

        [ticket] = fake.tickets()
        user_parts = [p for p in ticket.parts if p.author == "user"]
        assert len(user_parts) == 31  # the 27 waiting messages cost one update
        merged = user_parts[-1]
        lines = merged.text.split("\n\n")
        assert [line.split(": ", 1)[1].split("\n")[0] for line in lines] == [
            f"message {n}" for n in range(31, 58)
        ]
        assert all(line.startswith("[") and "] " in line for line in lines)
        assert "[attached: invoice.pdf]" in lines[40 - 31]
        authors = [line.split("] ", 1)[1].split(": ", 1)[0] for line in lines]
        assert authors[45 - 31] == "Bob" and set(authors) - {"Bob"} == {authors[0]}
        assert merged.attachments == ["invoice.pdf"]
        done = await deliveries(rt, Direction.INBOUND)
        assert {d.state for d in done} == {DeliveryState.DELIVERED}
        assert sum(d.reason == "coalesced" for d in done) == 26
        assert await redis_of(rt).zcard(key) == 30
        assert not any(status == 429 for _, _, status in fake.calls())
    finally:
        await fake.stop()


async def test_what_does_not_fit_in_one_comment_waits_for_the_next_update(
    make_runtime, aiohttp_client, respx_mock, monkeypatch
) -> None:
    from deskbridge.flows import budget

    monkeypatch.setattr(budget, "_MAX_MERGED_CHARS", 120)
    fake, rt, client, ticket_id = await _with_ticket(make_runtime, aiohttp_client, respx_mock)
    try:
        key = keys.ticket_updates(
            "acme", "zendesk", rt.vault.digest("ticket", "zendesk", ticket_id)
        )
        edge = int(time.time() * 1000) - 600_000 + 800  # they leave the window in 0.8 s
        await redis_of(rt).zadd(key, {f"old{i}": edge for i in range(28)})  # 29 used
        for n in range(5):
            await customer_says(client, f"long message number {n} " + "x" * 10, 8300 + n)
        await drain(rt)
        [ticket] = fake.tickets()
        user_parts = [p.text for p in ticket.parts if p.author == "user"][1:]
        assert len(user_parts) > 1 and "long message number 1" in user_parts[0]
        assert all(len(p) <= 120 for p in user_parts)
        joined = "\n".join(user_parts)
        order = [joined.index(f"long message number {n}") for n in range(5)]
        assert order == sorted(order)
        done = await deliveries(rt, Direction.INBOUND)
        assert {d.state for d in done} == {DeliveryState.DELIVERED}
    finally:
        await fake.stop()


async def test_a_file_that_cannot_be_fetched_yet_ends_the_merge_not_the_head(
    make_runtime, aiohttp_client, respx_mock
) -> None:
    fake, rt, client, ticket_id = await _with_ticket(make_runtime, aiohttp_client, respx_mock)
    respx_mock.post(f"{TG}/getFile").respond(
        200,
        json={
            "ok": True,
            "result": {"file_id": "doc1", "file_unique_id": "u1", "file_path": "docs/f1.pdf"},
        },
    )
    answers = [httpx.Response(503)]  # the file host fails once, then serves it
    pdf = httpx.Response(200, content=b"%PDF-1.4", headers={"Content-Type": "application/pdf"})
    download = respx_mock.get(f"{TG_FILES}/docs/f1.pdf").mock(
        side_effect=lambda request: answers.pop(0) if answers else pdf
    )
    document = {"file_id": "doc1", "file_unique_id": "u1", "file_name": "late.pdf"}
    try:
        key = keys.ticket_updates(
            "acme", "zendesk", rt.vault.digest("ticket", "zendesk", ticket_id)
        )
        edge = int(time.time() * 1000) - 600_000 + 800
        await redis_of(rt).zadd(key, {f"old{i}": edge for i in range(28)})  # 29 used
        for n in range(4):
            extra = {"document": document} if n == 2 else {}
            await customer_says(client, f"part {n}", 8400 + n, **extra)
        await drain(rt)
        [ticket] = fake.tickets()
        user_parts = [p for p in ticket.parts if p.author == "user"][1:]
        assert "part 0" in user_parts[0].text and "part 1" in user_parts[0].text
        assert "part 2" not in user_parts[0].text
        joined = "\n".join(p.text for p in user_parts)
        order = [joined.index(f"part {n}") for n in range(4)]
        assert order == sorted(order)
        assert [name for p in user_parts for name in p.attachments] == ["late.pdf"]
        assert download.call_count >= 2  # failed inside the merge, fetched on its own
        done = await deliveries(rt, Direction.INBOUND)
        assert {d.state for d in done} == {DeliveryState.DELIVERED}
    finally:
        await fake.stop()


def _copies(fake: FakeZendesk, texts: list[str]) -> dict[str, int]:
    """How many of the ticket's comments by the customer hold each of ``texts``."""
    [ticket] = fake.tickets()
    parts = [p.text for p in ticket.parts if p.author == "user"]

    def holds(part: str, text: str) -> bool:  # alone, or a line of a merged update
        return part == text or any(line.endswith(f": {text}") for line in part.split("\n\n"))

    return {t: sum(holds(p, t) for p in parts) for t in texts}


async def _flood(client, rt, fake: FakeZendesk, ticket_id: str, used: int, n: int) -> list[str]:
    """``used`` updates of the ticket's budget spent, then ``n`` messages waiting."""
    key = keys.ticket_updates("acme", "zendesk", rt.vault.digest("ticket", "zendesk", ticket_id))
    now = int(time.time() * 1000)
    await redis_of(rt).zadd(key, {f"old{i}": now - 1000 for i in range(used - 1)})
    texts = [f"flood {i}" for i in range(n)]
    for i, text in enumerate(texts):
        await customer_says(client, text, 8500 + i)
    return texts


async def test_a_merged_update_whose_answer_was_lost_settles_exactly_what_it_carried(
    make_runtime, aiohttp_client, respx_mock
) -> None:
    """The desk took a merged update (the head and the four messages behind it) and the
    answer was lost; five more messages came before the retry. The retry merges exactly
    what the lost update carried, so the desk's read-back settles those five messages and
    only them: before, it merged all nine afresh, the read-back found the update, and
    the four it never held were marked delivered (lost)."""
    fake, rt, client, ticket_id = await _with_ticket(make_runtime, aiohttp_client, respx_mock)
    try:
        texts = await _flood(client, rt, fake, ticket_id, 28, 5)  # 2 updates left for 5
        desk = rt.desks["acme"]
        real_append = desk.append
        more = [f"flood {i}" for i in range(5, 9)]
        sent: list[str] = []

        async def more_arrive(*args: Any, **kwargs: Any) -> Any:
            try:
                return await real_append(*args, **kwargs)
            finally:
                if fake.faults.fired and not sent:  # the lost answer: they write on
                    sent.extend(more)
                    for i, text in enumerate(more):
                        await customer_says(client, text, 8600 + i)

        desk.append = more_arrive
        fake.fault("dropped", "append")  # applied, then the connection reset
        await drain(rt)
        assert fake.faults.fired and sent
        assert _copies(fake, texts + more) == dict.fromkeys(texts + more, 1)
        done = await deliveries(rt, Direction.INBOUND)
        assert {d.state for d in done} == {DeliveryState.DELIVERED}
    finally:
        await fake.stop()


@pytest.mark.parametrize("how", ["killed", "cut off"])
async def test_a_run_stopped_after_recording_a_merged_update_files_nothing_twice(
    how: str, make_runtime, aiohttp_client, respx_mock, monkeypatch
) -> None:
    """The desk answered a merged update (the head and four messages), the run recorded
    it and finished two of the merged deliveries, then stopped: its worker was killed, or
    the delivery's own deadline cut it off. The next run knows the update is filed with
    those messages: it settles the head by the desk's read-back and finishes the two left.
    Before, the head was filed again (killed: nothing said it was in doubt) or the two
    left were filed again on their own (cut off: a fresh merge left them out)."""
    from deskbridge.flows import filing
    from deskbridge.flows.budget import finish_merged as real_finish

    fake = FakeZendesk()
    await fake.start()
    telegram(respx_mock)
    rt = make_runtime(yaml_for(fake), job_timeout_seconds=5 if how == "killed" else 1)
    client = await aiohttp_client(create_app(rt, role="serve"))
    try:
        await customer_says(client, "first", 8000)
        await drain(rt)
        [ticket] = fake.tickets()
        texts = await _flood(client, rt, fake, ticket.id, 26, 5)  # 4 left for 5: one update
        stopped = asyncio.Event()

        async def stop_midway(rt_: Any, d: Any, merged: list[Any], desk: str) -> None:
            if stopped.is_set():
                return await real_finish(rt_, d, merged, desk)
            await real_finish(rt_, d, merged[:2], desk)
            stopped.set()
            await asyncio.sleep(3600)  # killed, or cut off by the deadline, here

        monkeypatch.setattr(filing, "finish_merged", stop_midway)
        if how == "killed":
            await kill_worker_when(rt, stopped)
        await drain(rt)
        assert stopped.is_set()
        assert _copies(fake, texts) == dict.fromkeys(texts, 1)
        done = await deliveries(rt, Direction.INBOUND)
        assert {d.state for d in done} == {DeliveryState.DELIVERED}
        assert sum(d.reason == "coalesced" for d in done) == 4
    finally:
        await fake.stop()


async def test_a_comment_marked_by_the_budget_read_is_not_in_doubt(
    make_runtime, aiohttp_client, respx_mock
) -> None:
    """The budget read writes the desk write's in-flight mark (FILING_BUDGET); the filing
    must then not take its own mark for an earlier run's: no audit read-back, one update,
    and the mark gone once the desk answered."""
    fake, rt, client, ticket_id = await _with_ticket(make_runtime, aiohttp_client, respx_mock)
    try:
        before = len(fake.calls())
        await customer_says(client, "second", 8001)
        await drain(rt)
        calls = fake.calls()[before:]
        assert [m for m, path, _ in calls if "audits" in path] == []  # not reconciled
        assert calls == [("PUT", f"/api/v2/tickets/{ticket_id}", 200)]  # one update, no read
        [ticket] = fake.tickets()
        assert [p.text for p in ticket.parts if p.author == "user"] == ["first", "second"]
        redis: Any = redis_of(rt)
        assert [k async for k in redis.scan_iter(match="db:{acme}:deskwrite:*")] == []
    finally:
        await fake.stop()
