"""A reply the channel accepted and later reported undeliverable because the reply window
was closed (WhatsApp 131047 in a ``failed`` status webhook) takes the path of the same
error returned by the send: held again, the customer invited back once per silence, the
agent told; it goes out when the customer writes (issue 16)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

from deskbridge.adapters.whatsapp import sample_message as whatsapp_message
from deskbridge.gateway import create_app
from deskbridge.schemas import Channel, DeliveryState, Direction, StatusUpdate
from deskbridge.store import keys

from . import recorded
from .conftest import META_YAML, WA_NUMBER, drain
from .test_e2e import zendesk_comment, zendesk_headers
from .test_e2e_meta import GRAPH, meta_headers, zendesk_routes
from .test_windows import WindowedChannel, _deliveries, agent, customer, inbound


def window_failure(n: int, external_id: str, *, at: datetime | None = None) -> StatusUpdate:
    return StatusUpdate(
        account="acme",
        channel=Channel.TELEGRAM,
        dedup_key=f"wf-{n}",
        thread="42",
        occurred_at=at or datetime.now(UTC),
        external_id=external_id,
        status="failed",
        error_code="131047",
        error="Re-engagement message",
        window_closed=True,
    )


async def _notes(rt, ticket_id: str) -> list[str]:
    return [
        m.text for m in (await rt.sandbox.ticket("acme", ticket_id)).messages if m.author == "note"
    ]


async def _replies(rt, redis):
    out = [d for d in await _deliveries(rt, redis) if d.direction is Direction.OUTBOUND]
    return sorted(out, key=lambda d: d.id)


async def test_a_window_failure_by_webhook_holds_the_replies_again_in_order(
    make_runtime, redis
) -> None:
    rt = make_runtime()
    channel = WindowedChannel("acme")
    rt.adapters[("acme", Channel.TELEGRAM)] = channel
    await inbound(rt, customer(1, hours_ago=1))
    await drain(rt)
    [ticket] = await rt.sandbox.tickets("acme")
    await agent(rt, ticket.id, 1)
    await agent(rt, ticket.id, 2)
    await drain(rt)
    assert channel.sent == ["agent 1", "agent 2"]

    # both were accepted; the platform reports both undeliverable, the first twice
    for n, ext in ((1, "out-1"), (2, "out-2"), (3, "out-1")):
        await inbound(rt, window_failure(n, ext))
    await drain(rt)
    first, second = await _replies(rt, redis)
    # the first heads the lane, held; the second waits behind it (a lane is blocked by
    # its head only, so one message from the customer sends both)
    assert (first.state, second.state) == (DeliveryState.HELD, DeliveryState.PENDING)
    assert first.channel_status is None  # the resend's statuses will count
    # kept until the customer writes, however long that takes (no delivered retention)
    assert await redis.ttl(keys.delivery("acme", first.id)) == -1
    assert await redis.ttl(keys.event("acme", first.event_id)) == -1
    assert first.id not in {m.decode() for m in await redis.zrange(keys.expiring("acme"), 0, -1)}
    assert channel.invites == 1  # once per silence
    notes = await _notes(rt, ticket.id)
    assert len(notes) == 2 and all("reply window was closed" in n for n in notes)
    assert "re-engagement template was sent" in notes[0]
    assert "already invited" in notes[1]
    log = await rt.deliveries.attempts("acme", first.id)
    assert [str(a.outcome) for a in log] == ["delivered", "held"]

    # a later reply waits behind the held ones
    await agent(rt, ticket.id, 3)
    await drain(rt)
    assert channel.sent == ["agent 1", "agent 2"]

    await inbound(rt, customer(2, hours_ago=0))
    await drain(rt)
    assert channel.sent == ["agent 1", "agent 2", "agent 1", "agent 2", "agent 3"]
    assert {d.state for d in await _replies(rt, redis)} == {DeliveryState.DELIVERED}

    # a late report about the first send, after the resend: nothing changes
    await inbound(
        rt, window_failure(4, "out-1", at=datetime.fromtimestamp(time.time() - 3600, UTC))
    )
    await drain(rt)
    assert {d.state for d in await _replies(rt, redis)} == {DeliveryState.DELIVERED}
    assert channel.sent[-1] == "agent 3" and len(await _notes(rt, ticket.id)) == 2


async def test_a_customer_who_wrote_since_the_send_gets_the_reply_at_once(
    make_runtime, redis
) -> None:
    rt = make_runtime()
    channel = WindowedChannel("acme")
    rt.adapters[("acme", Channel.TELEGRAM)] = channel
    await inbound(rt, customer(1, hours_ago=1))
    await drain(rt)
    [ticket] = await rt.sandbox.tickets("acme")
    await agent(rt, ticket.id, 1)
    await drain(rt)
    await inbound(rt, customer(2, hours_ago=0))  # before the failure report arrives
    await drain(rt)
    await inbound(rt, window_failure(1, "out-1"))
    await drain(rt)
    assert channel.sent == ["agent 1", "agent 1"]
    [reply] = await _replies(rt, redis)
    assert reply.state is DeliveryState.DELIVERED
    assert [str(a.outcome) for a in await rt.deliveries.attempts("acme", reply.id)] == [
        "delivered",
        "held",
        "delivered",
    ]


async def test_other_failures_by_webhook_only_tell_the_agent(make_runtime, redis) -> None:
    rt = make_runtime()
    channel = WindowedChannel("acme")
    rt.adapters[("acme", Channel.TELEGRAM)] = channel
    await inbound(rt, customer(1, hours_ago=1))
    await drain(rt)
    [ticket] = await rt.sandbox.tickets("acme")
    await agent(rt, ticket.id, 1)
    await drain(rt)
    undeliverable = window_failure(1, "out-1").model_copy(
        update={"window_closed": False, "error_code": "131026", "error": "Message undeliverable"}
    )
    await inbound(rt, undeliverable)
    await inbound(rt, undeliverable.model_copy(update={"dedup_key": "again"}))
    await drain(rt)
    [reply] = await _replies(rt, redis)
    assert (reply.state, reply.channel_status) == (DeliveryState.DELIVERED, "failed")
    [note] = await _notes(rt, ticket.id)
    assert "131026 Message undeliverable" in note and channel.invites == 0


async def test_whatsapp_end_to_end_a_131047_status_brings_the_template_and_a_note(
    make_runtime, aiohttp_client, respx_mock, redis
) -> None:
    rt = make_runtime(META_YAML)
    client = await aiohttp_client(create_app(rt, role="serve"))
    _, put = zendesk_routes(respx_mock)
    almost = int(time.time()) - 23 * 3600 - 3590  # deskbridge still sees the window open
    body = whatsapp_message(
        "old question", phone_number_id=WA_NUMBER, wa_id="16505551234",
        message_id="wamid.OLD", timestamp=almost,
    )  # fmt: skip
    await client.post("/webhooks/whatsapp", data=body, headers=meta_headers(body))
    await drain(rt)
    send = respx_mock.post(f"{GRAPH}/{WA_NUMBER}/messages").respond(
        200, json={"messaging_product": "whatsapp", "messages": [{"id": "wamid.OUT1"}]}
    )
    reply = zendesk_comment(77, 2001, "Here is your answer")
    await client.post("/desks/zendesk/acme", data=reply, headers=zendesk_headers(reply))
    await drain(rt)
    assert [json.loads(c.request.content)["type"] for c in send.calls] == ["text"]

    # Meta accepted it, then reports the window closed (the recorded fixture's shape)
    doc = json.loads(recorded.fixture("whatsapp", "status_failed_window_closed"))
    status = doc["entry"][0]["changes"][0]["value"]["statuses"][0]
    status.update(id="wamid.OUT1", timestamp=str(int(time.time())))
    failed = json.dumps(doc).encode()
    for _ in range(2):  # redelivered: one hold, one template, one note
        resp = await client.post("/webhooks/whatsapp", data=failed, headers=meta_headers(failed))
        assert resp.status == 200
    await drain(rt)
    calls = [json.loads(c.request.content) for c in send.calls]
    assert [c["type"] for c in calls] == ["text", "template"]
    assert calls[1]["template"]["name"] == "hello_again"
    [held] = [d for d in await _deliveries(rt, redis) if d.direction is Direction.OUTBOUND]
    assert held.state is DeliveryState.HELD
    notes = [
        json.loads(c.request.content)["ticket"]["comment"]
        for c in put.calls
        if not json.loads(c.request.content)["ticket"]["comment"].get("public", True)
    ]
    assert len(notes) == 1 and "reply window was closed" in notes[0]["body"]
    assert "131047" in notes[0]["body"] and "Here is your answer" not in notes[0]["body"]

    body = whatsapp_message(
        "I'm back", phone_number_id=WA_NUMBER, wa_id="16505551234",
        message_id="wamid.NEW", timestamp=int(time.time()),
    )  # fmt: skip
    await client.post("/webhooks/whatsapp", data=body, headers=meta_headers(body))
    await drain(rt)
    texts = [json.loads(c.request.content).get("text", {}).get("body") for c in send.calls]
    assert texts == ["Here is your answer", None, "Here is your answer"]
    [sent] = [d for d in await _deliveries(rt, redis) if d.direction is Direction.OUTBOUND]
    assert sent.state is DeliveryState.DELIVERED
