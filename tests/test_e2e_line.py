"""LINE end to end: signed webhook in, Zendesk ticket, the agent's answer by reply token
while it is fresh and by push after."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

from deskbridge.adapters.line import sample_message
from deskbridge.gateway import create_app

from .conftest import LINE_SECRET, LINE_YAML, drain
from .test_e2e import zendesk_comment, zendesk_headers
from .test_e2e_meta import zendesk_routes

USER = "U" + "a" * 32


def line_headers(body: bytes) -> dict[str, str]:
    digest = hmac.new(LINE_SECRET.encode(), body, hashlib.sha256).digest()
    return {
        "x-line-signature": base64.b64encode(digest).decode(),
        "Content-Type": "application/json",
    }


async def test_line_reply_token_then_push(make_runtime, aiohttp_client, respx_mock, redis) -> None:
    rt = make_runtime(LINE_YAML)
    client = await aiohttp_client(create_app(rt, role="serve"))
    create, _ = zendesk_routes(respx_mock, ticket_id=66)
    profile = respx_mock.get(f"https://line.test/v2/bot/profile/{USER}").respond(
        200, json={"userId": USER, "displayName": "Kenji"}
    )
    body = sample_message(
        "返品したいです",
        user_id=USER,
        event_id="01HZZZZZZZZZZZZZZZZZZZZZZZ",
        message_id="5001",
        timestamp_ms=int(time.time() * 1000),
        reply_token="rt-1",
    )
    for _ in range(2):  # a redelivery is the same event
        assert (
            await client.post("/webhooks/line/acme", data=body, headers=line_headers(body))
        ).status == 200
    assert (
        await client.post("/webhooks/line/acme", data=body, headers=line_headers(b"x"))
    ).status == 401
    verify = json.dumps({"destination": "U" + "0" * 32, "events": []}).encode()
    assert (
        await client.post("/webhooks/line/acme", data=verify, headers=line_headers(verify))
    ).status == 200
    await drain(rt)
    assert create.call_count == 1
    ticket = json.loads(create.calls[0].request.content)["ticket"]
    assert ticket["comment"]["body"] == "返品したいです" and "Kenji" in ticket["subject"]
    assert profile.call_count == 1

    reply_api = respx_mock.post("https://line.test/v2/bot/message/reply").respond(
        200, json={"sentMessages": [{"id": "701", "quoteToken": "q"}]}
    )
    push_api = respx_mock.post("https://line.test/v2/bot/message/push").respond(
        200, json={"sentMessages": [{"id": "702", "quoteToken": "q"}]}
    )
    first = zendesk_comment(66, 3001, "Of course, here is how.")
    await client.post("/desks/zendesk/acme", data=first, headers=zendesk_headers(first))
    await drain(rt)
    sent = json.loads(reply_api.calls[0].request.content)
    assert sent == {
        "replyToken": "rt-1",
        "messages": [{"type": "text", "text": "Of course, here is how."}],
    }
    assert reply_api.calls[0].request.headers["Authorization"] == "Bearer line-access-token"

    second = zendesk_comment(66, 3002, "Anything else?")
    await client.post("/desks/zendesk/acme", data=second, headers=zendesk_headers(second))
    await drain(rt)
    assert reply_api.call_count == 1  # the token was spent: the second answer is pushed
    pushed = json.loads(push_api.calls[0].request.content)
    assert pushed == {"to": USER, "messages": [{"type": "text", "text": "Anything else?"}]}
    assert push_api.calls[0].request.headers["X-Line-Retry-Key"]
    metrics = await (await client.get("/metrics")).text()
    assert 'deskbridge_channel_quota_messages_total{account="acme",channel="line"} 1.0' in metrics
