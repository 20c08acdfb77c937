"""The widget's receipts and typing, over the socket and a real Redis: a visitor's message
goes sent → delivered (filed at the desk, merged into another's desk update or not) →
read (the sandbox agent opened the ticket, or an agent replied; a bot's answer says
nothing) and keeps that on return; "agent is typing" reaches the socket through any
gateway process, is said again, and lapses."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

from deskbridge.flows import Runtime, widget
from deskbridge.flows.ingest import accept_replies
from deskbridge.gateway import create_app
from deskbridge.store import keys

from .conftest import drain, redis_of
from .desks.fake_zendesk import FakeZendesk
from .test_desk_conformance import WEBCHAT_ORIGIN, yaml_with_webchat
from .test_webchat import ORIGIN, _hello, _reply, _until, yaml

SOCKET = "/widget/v1/acme/socket"


async def _frames_until(ws: Any, kind: str) -> list[dict[str, Any]]:
    """Every frame up to and including the next one of ``kind``."""
    frames: list[dict[str, Any]] = []
    while not frames or frames[-1]["type"] != kind:
        frames.append(await ws.receive_json(timeout=5))
    return frames


async def _socket_and_another_process(
    make_runtime: Any, aiohttp_client: Any
) -> tuple[Runtime, Any, Any, str]:
    """A visitor's socket on one gateway process, and another process's runtime sharing
    its Redis (the worker that files and replies): that runtime, the first process's
    client, the socket and the visitor's token."""
    here = make_runtime(yaml())
    client = await aiohttp_client(create_app(here, role="serve"))
    ws = await client.ws_connect(SOCKET, origin=ORIGIN)
    token = (await _hello(ws, visitor=None, after=0))["visitor"]
    return make_runtime(yaml()), client, ws, token


async def _filed(ws: Any, rt: Runtime, text: str) -> str:
    """The visitor writes ``text`` (``client-msg-1``), a worker of ``rt`` files it: the
    sandbox ticket's id."""
    await ws.send_json({"type": "message", "id": "client-msg-1", "text": text})
    await _until(ws, "ack")
    await drain(rt)
    [ticket] = await rt.sandbox.tickets("acme")
    return ticket.id


async def _csrf(client: Any, ticket_id: str) -> str:
    page = await client.get(f"/sandbox/acme/tickets/{ticket_id}")
    found = re.search(r'name="csrf" value="([^"]+)"', await page.text())
    assert page.status == 200 and found is not None
    return found.group(1)


async def test_a_message_goes_delivered_then_read_and_keeps_it_on_return(
    make_runtime: Any, aiohttp_client: Any
) -> None:
    rt = make_runtime(yaml())
    client = await aiohttp_client(create_app(rt, role="serve"))
    ws = await client.ws_connect(SOCKET, origin=ORIGIN)
    token = (await _hello(ws, visitor=None, after=0))["visitor"]
    await ws.send_json({"type": "message", "id": "client-msg-1", "text": "Where is my order?"})
    await _until(ws, "ack")
    await drain(rt)  # filed at the desk
    assert await _until(ws, "status") == {
        "type": "status",
        "states": {"client-msg-1": "delivered"},
    }

    # a second message is stored, not filed yet, when the agent opens the ticket
    await ws.send_json({"type": "message", "id": "client-msg-2", "text": "Hello?"})
    await _until(ws, "ack")
    [ticket] = await rt.sandbox.tickets("acme")
    assert (await client.get(f"/sandbox/acme/tickets/{ticket.id}")).status == 200
    assert (await _until(ws, "status"))["states"] == {"client-msg-1": "read"}
    await drain(rt)
    assert (await _until(ws, "status"))["states"] == {"client-msg-2": "delivered"}
    # the open page's poll: the agent sees the new message
    assert (await client.get(f"/sandbox/acme/tickets/{ticket.id}/live")).status == 200
    assert (await _until(ws, "status"))["states"] == {"client-msg-2": "read"}
    await ws.close()

    # back later: the conversation, then where each message got
    ws = await client.ws_connect(SOCKET, origin=ORIGIN)
    await _hello(ws, visitor=token, after=0)
    frames = [await ws.receive_json(timeout=5) for _ in range(3)]
    assert [f["type"] for f in frames] == ["message", "message", "status"]
    assert frames[2]["states"] == {"client-msg-1": "read", "client-msg-2": "read"}
    await ws.close()


async def test_an_agents_reply_through_another_process_says_they_read_but_a_bots_does_not(
    make_runtime: Any, aiohttp_client: Any
) -> None:
    b, _, ws, _ = await _socket_and_another_process(make_runtime, aiohttp_client)
    ticket_id = await _filed(ws, b, "Is it in stock?")
    assert (await _until(ws, "status"))["states"] == {"client-msg-1": "delivered"}

    bot = _reply(ticket_id, "Our assistant will check.", 1).model_copy(update={"automated": True})
    await accept_replies(b, "acme", "sandbox", None, [bot, _reply(ticket_id, "Yes, two.", 2)])
    await drain(b)
    frames = await _frames_until(ws, "status")
    assert [(f["type"], f.get("text")) for f in frames] == [
        ("message", "Our assistant will check."),
        ("message", "Yes, two."),
        ("status", None),
    ]
    assert frames[-1]["states"] == {"client-msg-1": "read"}
    await ws.close()


async def test_typing_reaches_the_visitor_through_any_process_is_renewed_and_lapses(
    make_runtime: Any, aiohttp_client: Any
) -> None:
    b, _, ws, token = await _socket_and_another_process(make_runtime, aiohttp_client)
    visitor = token.partition(".")[0]

    await b.webchat.typing("acme", visitor, seconds=0.6)
    on = await _until(ws, "typing")
    assert on["on"] is True and 0 < on["seconds"] <= 0.6
    started = time.monotonic()
    assert await _until(ws, "typing") == {"type": "typing", "on": False}
    assert 0.3 < time.monotonic() - started < 3  # it lapsed: nobody said so

    await b.webchat.typing("acme", visitor, seconds=2)
    assert (await _until(ws, "typing"))["on"] is True
    await asyncio.sleep(1)
    await b.webchat.typing("acme", visitor, seconds=2)  # said again before it lapsed
    renewed = time.monotonic()
    assert (await _until(ws, "typing"))["on"] is True
    assert await _until(ws, "typing") == {"type": "typing", "on": False}
    assert time.monotonic() - renewed > 1.5
    await ws.close()


async def test_the_sandbox_reply_box_says_the_agent_types_until_the_reply_arrives(
    make_runtime: Any, aiohttp_client: Any
) -> None:
    b, client, ws, _ = await _socket_and_another_process(make_runtime, aiohttp_client)
    ticket_id = await _filed(ws, b, "Anyone there?")
    typing_url = f"/sandbox/acme/tickets/{ticket_id}/typing"
    csrf = await _csrf(client, ticket_id)
    assert (await client.post(typing_url, data={"csrf": "stale"})).status == 403
    missing = "/sandbox/acme/tickets/999/typing"
    assert (await client.post(missing, data={"csrf": csrf})).status == 404
    assert (await client.post(typing_url, data={"csrf": csrf})).status == 204
    on = await _until(ws, "typing")
    assert on == {"type": "typing", "on": True, "seconds": widget.TYPING_SECONDS}

    # the reply ends the typing at once, not seconds later
    await accept_replies(b, "acme", "sandbox", None, [_reply(ticket_id, "I am here.", 1)])
    await drain(b)
    frames = await _frames_until(ws, "typing")
    assert [f.get("text") for f in frames if f["type"] == "message"] == ["I am here."]
    assert frames[-1] == {"type": "typing", "on": False}
    await ws.close()
    # a ticket deskbridge knows of no widget visitor for: nobody to tell
    assert await widget.typing(b, "acme", "sandbox", "999") is False
    assert await widget.seen(b, "acme", "sandbox", "999") == 0


async def test_messages_merged_into_one_desk_update_are_each_delivered(
    make_runtime: Any, aiohttp_client: Any, respx_mock: Any
) -> None:
    fake = FakeZendesk()
    await fake.start()
    respx_mock.route(host="127.0.0.1").pass_through()
    try:
        rt = make_runtime(yaml_with_webchat(fake))
        client = await aiohttp_client(create_app(rt, role="serve"))
        ws = await client.ws_connect(SOCKET, origin=WEBCHAT_ORIGIN)
        await _hello(ws, visitor=None, after=0)
        await ws.send_json({"type": "message", "id": "client-msg-0", "text": "first"})
        await _until(ws, "ack")
        await drain(rt)
        assert (await _until(ws, "status"))["states"] == {"client-msg-0": "delivered"}
        [ticket] = fake.tickets()
        # 28 of Zendesk's 30 updates per ticket spent: the next ones go as one
        budget = keys.ticket_updates(
            "acme", "zendesk", rt.vault.digest("ticket", "zendesk", ticket.id)
        )
        now = int(time.time() * 1000)
        await redis_of(rt).zadd(budget, {f"old{i}": now - 1000 for i in range(27)})
        ids = [f"client-msg-{i}" for i in range(1, 6)]
        for i, cid in enumerate(ids):
            await ws.send_json({"type": "message", "id": cid, "text": f"flood {i}"})
            await _until(ws, "ack")
        await drain(rt)
        states: dict[str, str] = {}
        while len(states) < len(ids):
            states.update((await _until(ws, "status"))["states"])
        assert states == dict.fromkeys(ids, "delivered")
        [ticket] = fake.tickets()
        assert len([p for p in ticket.parts if p.author == "user"]) == 2  # merged
        await ws.close()
    finally:
        await fake.stop()
