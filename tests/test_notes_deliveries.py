"""Notes to agents are deliveries: queued in the conversation's inbound lane, retried,
dead-lettered, listed and replayed like any message (issue 16), against the fake
Intercom (whose admin lookup, ``GET /me``, comes before every first note)."""

from __future__ import annotations

from typing import Any

from deskbridge.flows.notes import note
from deskbridge.gateway import create_app
from deskbridge.gateway.admin import PREFIX
from deskbridge.schemas import Channel, DeliveryState, Direction

from .conftest import drain
from .desks.fake_intercom import FakeIntercom
from .helpers import deliveries
from .test_admin_api import SECRET, auth, token
from .test_desk_conformance import customer_says, telegram, yaml_for


async def _ticket(make_runtime: Any, aiohttp_client: Any, respx_mock: Any) -> Any:
    fake = FakeIntercom()
    await fake.start()
    telegram(respx_mock)
    rt = make_runtime(yaml_for(fake), admin_jwt_secret=SECRET)
    client = await aiohttp_client(create_app(rt, role="serve"))
    await customer_says(client, "Where is my parcel?", 9100)
    await drain(rt)
    [first] = await deliveries(rt, Direction.INBOUND)
    assert first.state is DeliveryState.DELIVERED
    return fake, rt, client, first


def _notes(fake: FakeIntercom) -> list[str]:
    [ticket] = fake.tickets()
    return [p.text for p in ticket.parts if p.author == "note"]


async def test_a_failed_note_is_retried_then_dead_then_listed_and_replayed(
    make_runtime, aiohttp_client, respx_mock
) -> None:
    fake, rt, client, first = await _ticket(make_runtime, aiohttp_client, respx_mock)
    try:
        # the admin lookup behind the note answers 404: a permanent refusal
        fake.fail(404, times=1)
        assert await note(rt, first, "Look at this one", why="test")
        await drain(rt)
        [n] = [d for d in await deliveries(rt, Direction.INBOUND) if d.id != first.id]
        assert (n.kind, n.state, n.reason, n.conversation_id) == (
            "note",
            DeliveryState.DEAD,
            "permanent",
            first.conversation_id,
        )
        assert _notes(fake) == []

        headers = auth(token("deliveries:read", "deliveries:write"))
        resp = await client.get(
            f"{PREFIX}/deliveries", params={"kind": "note", "state": "failed"}, headers=headers
        )
        listed = (await resp.json())["deliveries"]
        assert resp.status == 200 and [d["id"] for d in listed] == [n.id]
        assert listed[0]["kind"] == "note"
        resp = await client.get(f"{PREFIX}/deliveries", params={"kind": "event"}, headers=headers)
        assert [d["id"] for d in (await resp.json())["deliveries"]] == [first.id]
        resp = await client.get(f"{PREFIX}/deliveries/{n.id}", headers=headers)
        shown = await resp.json()
        assert shown["kind"] == "note" and [a["outcome"] for a in shown["attempt_log"]] == [
            "permanent"
        ]

        resp = await client.post(
            f"{PREFIX}/deliveries/replay", json={"ids": [n.id]}, headers=headers
        )
        assert resp.status == 200 and (await resp.json())["replayed"] == [n.id]
        await drain(rt)
        assert _notes(fake) == ["Look at this one"]
        assert (await rt.deliveries.get("acme", n.id)).state is DeliveryState.DELIVERED
    finally:
        await fake.stop()


async def test_a_note_the_desk_fails_for_a_while_is_retried_and_filed_once(
    make_runtime, aiohttp_client, respx_mock
) -> None:
    fake, rt, _, first = await _ticket(make_runtime, aiohttp_client, respx_mock)
    try:
        fake.fail(503, times=2)
        assert await note(rt, first, "Second try works", why="test")
        # the same cause again (a retry of the work that wrote it): not queued twice
        assert not await note(rt, first, "Second try works", why="test")
        await drain(rt)
        [n] = [d for d in await deliveries(rt, Direction.INBOUND) if d.id != first.id]
        log = [str(a.outcome) for a in await rt.deliveries.attempts("acme", n.id)]
        assert n.state is DeliveryState.DELIVERED and log == ["retry", "retry", "delivered"]
        assert _notes(fake) == ["Second try works"]
    finally:
        await fake.stop()


async def test_a_note_that_never_gets_through_is_a_dead_letter(
    make_runtime, aiohttp_client, respx_mock
) -> None:
    fake, rt, _, first = await _ticket(make_runtime, aiohttp_client, respx_mock)
    try:
        fake.fail(503, times=100)
        await note(rt, first, "Nobody will read this", why="test")
        await drain(rt)
        [n] = [d for d in await deliveries(rt, Direction.INBOUND) if d.id != first.id]
        assert n.state is DeliveryState.DEAD and n.reason == "exhausted"
        assert n.attempts == rt.policy.max_attempts
    finally:
        await fake.stop()


async def test_a_note_waits_behind_the_message_it_concerns_and_skips_without_a_ticket(
    make_runtime, aiohttp_client, respx_mock
) -> None:
    fake, rt, client, first = await _ticket(make_runtime, aiohttp_client, respx_mock)
    try:
        fake.fail(503, times=1)  # the next message is retried once...
        await customer_says(client, "Hello again", 9101)
        # ...and a note queued meanwhile lands after it (same lane)
        assert await note(rt, first, "About the second message", why="order")
        await drain(rt)
        [ticket] = fake.tickets()
        texts = [p.text for p in ticket.parts]
        assert texts.index("Hello again") < texts.index("About the second message")
        # a conversation with no ticket: the note has nowhere to go, and says so
        await rt.conversations.ensure(
            "acme", "no-ticket", Channel.TELEGRAM, "43", "contact-x", inbound_at=0
        )
        assert await note(rt, first, "Nowhere", why="nowhere", conversation_id="no-ticket")
        await drain(rt)
        [skipped] = [d for d in await deliveries(rt, Direction.INBOUND) if d.kind == "note"][-1:]
        assert (skipped.conversation_id, skipped.state) == ("no-ticket", DeliveryState.SKIPPED)
    finally:
        await fake.stop()
