"""WhatsApp and Messenger end to end: one Meta app's signed batches in, Zendesk and the
sandbox desk, agent replies out through the Graph API, statuses back."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

from deskbridge.adapters.messenger import sample_message as messenger_message
from deskbridge.adapters.meta import sign
from deskbridge.adapters.whatsapp import sample_message as whatsapp_message
from deskbridge.gateway import create_app
from deskbridge.schemas import DeliveryState, Direction

from .conftest import (
    META_SECRET,
    META_VERIFY,
    META_YAML,
    PAGE_ID,
    WA_NUMBER,
    WA_OTHER,
    ZD_SECRET,
    drain,
)
from .test_e2e import zendesk_comment, zendesk_headers

ZD = "https://acme.zendesk.test/api/v2"
GRAPH = "https://graph.test/v23.0"


def meta_headers(body: bytes) -> dict[str, str]:
    return {"X-Hub-Signature-256": sign(META_SECRET, body), "Content-Type": "application/json"}


def batch(*entries: bytes) -> bytes:
    """One webhook carrying the entries of several single-message bodies."""
    merged = {"object": "whatsapp_business_account", "entry": []}
    for body in entries:
        merged["entry"] += json.loads(body)["entry"]
    return json.dumps(merged).encode()


def zendesk_routes(respx_mock, ticket_id: int = 77):
    respx_mock.post(f"{ZD}/users/create_or_update").respond(201, json={"user": {"id": 501}})
    respx_mock.get(f"{ZD}/users/501/identities").respond(
        200, json={"identities": [], "next_page": None}
    )
    respx_mock.post(f"{ZD}/users/501/identities").respond(201, json={"identity": {"id": 1}})
    create = respx_mock.post(f"{ZD}/tickets").respond(
        201,
        json={"ticket": {"id": ticket_id}, "audit": {"events": [{"type": "Comment", "id": 1001}]}},
    )
    note = respx_mock.put(f"{ZD}/tickets/{ticket_id}").respond(
        200,
        json={"ticket": {"id": ticket_id}, "audit": {"events": [{"type": "Comment", "id": 1002}]}},
    )
    return create, note


async def test_whatsapp_batch_for_two_accounts_then_a_reply_and_its_statuses(
    make_runtime, aiohttp_client, respx_mock, redis
) -> None:
    rt = make_runtime(META_YAML)
    client = await aiohttp_client(create_app(rt, role="serve"))
    create, _ = zendesk_routes(respx_mock)
    now = int(time.time())
    to_acme = whatsapp_message(
        "Hola, my parcel?",
        phone_number_id=WA_NUMBER,
        wa_id="16505551234",
        name="Ana",
        message_id="wamid.A1",
        timestamp=now,
    )
    to_globex = whatsapp_message(
        "Hi globex",
        phone_number_id=WA_OTHER,
        wa_id="16505550000",
        message_id="wamid.G1",
        timestamp=now,
    )
    unknown = whatsapp_message(
        "lost", phone_number_id="999", wa_id="16505550001", message_id="wamid.X1", timestamp=now
    )
    body = batch(to_acme, to_globex, unknown)
    for _ in range(2):  # Meta redelivers
        resp = await client.post("/webhooks/whatsapp", data=body, headers=meta_headers(body))
        assert resp.status == 200
    await drain(rt)

    assert create.call_count == 1
    ticket = json.loads(create.calls[0].request.content)["ticket"]
    assert ticket["comment"]["body"] == "Hola, my parcel?"
    [globex_ticket] = await rt.sandbox.tickets("globex")
    assert [m.text for m in globex_ticket.messages] == ["Hi globex"]
    metrics = await (await client.get("/metrics")).text()
    assert (
        'deskbridge_events_total{outcome="ignored",reason="unrouted",source="whatsapp"} 2.0'
        in metrics
    )

    # the agent answers in Zendesk; WhatsApp accepts it
    send = respx_mock.post(f"{GRAPH}/{WA_NUMBER}/messages").respond(
        200, json={"messaging_product": "whatsapp", "messages": [{"id": "wamid.OUT1"}]}
    )
    reply = zendesk_comment(77, 2001, "It ships today.")
    assert (
        await client.post("/desks/zendesk/acme", data=reply, headers=zendesk_headers(reply))
    ).status == 200
    await drain(rt)
    sent = json.loads(send.calls[0].request.content)
    assert sent["to"] == "+16505551234" and sent["text"]["body"] == "It ships today."
    assert send.calls[0].request.headers["Authorization"] == "Bearer wa-access-token"

    # statuses come back, out of order
    def status(st: str) -> bytes:
        return json.dumps(
            {
                "object": "whatsapp_business_account",
                "entry": [
                    {
                        "id": "1",
                        "changes": [
                            {
                                "field": "messages",
                                "value": {
                                    "messaging_product": "whatsapp",
                                    "metadata": {
                                        "display_phone_number": "15550001111",
                                        "phone_number_id": WA_NUMBER,
                                    },
                                    "statuses": [
                                        {
                                            "id": "wamid.OUT1",
                                            "status": st,
                                            "timestamp": str(now + 5),
                                            "recipient_id": "16505551234",
                                        }
                                    ],
                                },
                            }
                        ],
                    }
                ],
            }
        ).encode()

    for st in ("read", "delivered"):
        body = status(st)
        assert (
            await client.post("/webhooks/whatsapp", data=body, headers=meta_headers(body))
        ).status == 200
    await drain(rt)
    outbound = [
        d
        for k in await redis.keys("db:{acme}:dlv:*")
        if not k.endswith((b":attempts", b":parts"))
        for d in [await rt.deliveries.get("acme", k.decode().rsplit(":", 1)[1])]
        if d.direction is Direction.OUTBOUND
    ]
    assert [(d.state, d.channel_status) for d in outbound] == [(DeliveryState.DELIVERED, "read")]


async def test_whatsapp_reply_after_the_window_waits_for_the_customer(
    make_runtime, aiohttp_client, respx_mock
) -> None:
    rt = make_runtime(META_YAML)
    client = await aiohttp_client(create_app(rt, role="serve"))
    zendesk_routes(respx_mock)
    old = int(time.time()) - 25 * 3600
    body = whatsapp_message(
        "old question",
        phone_number_id=WA_NUMBER,
        wa_id="16505551234",
        message_id="wamid.OLD",
        timestamp=old,
    )
    await client.post("/webhooks/whatsapp", data=body, headers=meta_headers(body))
    await drain(rt)
    send = respx_mock.post(f"{GRAPH}/{WA_NUMBER}/messages").respond(
        200, json={"messaging_product": "whatsapp", "messages": [{"id": "wamid.T1"}]}
    )
    reply = zendesk_comment(77, 2001, "Sorry for the wait!")
    await client.post("/desks/zendesk/acme", data=reply, headers=zendesk_headers(reply))
    await drain(rt)
    # only the approved template went out, without the agent's words
    [template] = [json.loads(c.request.content) for c in send.calls]
    assert template["type"] == "template" and template["template"]["name"] == "hello_again"
    assert "Sorry" not in json.dumps(template)

    body = whatsapp_message(
        "I'm back",
        phone_number_id=WA_NUMBER,
        wa_id="16505551234",
        message_id="wamid.NEW",
        timestamp=int(time.time()),
    )
    await client.post("/webhooks/whatsapp", data=body, headers=meta_headers(body))
    await drain(rt)
    texts = [json.loads(c.request.content).get("text", {}).get("body") for c in send.calls]
    assert texts[-1] == "Sorry for the wait!"


async def test_messenger_through_the_sandbox_desk(make_runtime, aiohttp_client, respx_mock) -> None:
    desk = (
        "type: zendesk\n      base_url: https://acme.zendesk.test\n      email: bot@acme.test\n"
        f'      api_token: zd-api-token\n      webhook_secret: "{ZD_SECRET}"'
    )
    assert desk in META_YAML
    yaml_text = META_YAML.replace(desk, "type: sandbox")
    rt = make_runtime(yaml_text)
    client = await aiohttp_client(create_app(rt, role="serve"))
    profile = respx_mock.get(f"{GRAPH}/7001").respond(
        200, json={"first_name": "Ana", "last_name": "Silva", "id": "7001"}
    )
    for n in (1, 2):
        body = messenger_message(
            "Is the shop open?",
            page_id=PAGE_ID,
            psid="7001",
            mid=f"m_{n}",
            timestamp_ms=int(time.time() * 1000),
        )
        assert (
            await client.post("/webhooks/messenger", data=body, headers=meta_headers(body))
        ).status == 200
    bad = await client.post("/webhooks/messenger", data=body + b" ", headers=meta_headers(body))
    assert bad.status == 401
    await drain(rt)
    [ticket] = await rt.sandbox.tickets("acme")
    assert ticket.channel == "messenger"
    # the User Profile API names the person (was "customer"), asked once and cached
    assert ticket.requester == "Ana Silva" and ticket.subject.startswith("Messenger: Ana Silva:")
    assert profile.call_count == 1
    send = respx_mock.post(f"{GRAPH}/{PAGE_ID}/messages").respond(
        200, json={"recipient_id": "7001", "message_id": "m_OUT"}
    )
    from deskbridge.flows.ingest import accept_replies
    from deskbridge.schemas import AgentReply, Desk

    reply = AgentReply(
        account="acme",
        desk=Desk.SANDBOX,
        dedup_key="r",
        ticket_id=ticket.id,
        external_id="a1",
        text="Yes, until 6pm.",
        occurred_at=datetime.now(UTC),
    )
    await accept_replies(rt, "acme", "sandbox", None, [reply])
    await drain(rt)
    sent = json.loads(send.calls[0].request.content)
    assert sent["recipient"] == {"id": "7001"} and sent["messaging_type"] == "RESPONSE"
    assert sent["message"] == {"text": "Yes, until 6pm."}


async def test_meta_verification_handshake(make_runtime, aiohttp_client) -> None:
    client = await aiohttp_client(create_app(make_runtime(META_YAML), role="serve"))
    ok = await client.get(
        "/webhooks/whatsapp",
        params={"hub.mode": "subscribe", "hub.verify_token": META_VERIFY, "hub.challenge": "42"},
    )
    assert ok.status == 200 and await ok.text() == "42"
    per_account = await client.get(
        "/webhooks/messenger/acme",
        params={"hub.mode": "subscribe", "hub.verify_token": META_VERIFY, "hub.challenge": "7"},
    )
    assert per_account.status == 200 and await per_account.text() == "7"
    wrong = await client.get(
        "/webhooks/whatsapp",
        params={"hub.mode": "subscribe", "hub.verify_token": "nope", "hub.challenge": "42"},
    )
    assert wrong.status == 403
    assert (
        await client.get("/webhooks/whatsapp/nobody", params={"hub.mode": "subscribe"})
    ).status == 401
    assert (await client.get("/webhooks/telegram/acme")).status == 401  # acme has no telegram


async def test_messenger_through_zendesk_with_an_agent_attachment_by_media_link(
    make_runtime, aiohttp_client, respx_mock
) -> None:
    rt = make_runtime(META_YAML)
    client = await aiohttp_client(create_app(rt, role="serve"))
    zendesk_routes(respx_mock, ticket_id=88)
    body = messenger_message(
        "Send me the label?",
        page_id=PAGE_ID,
        psid="7001",
        mid="m_1",
        timestamp_ms=int(time.time() * 1000),
    )
    await client.post("/webhooks/messenger", data=body, headers=meta_headers(body))
    await drain(rt)

    label = "https://acme.zendesk.test/attachments/token/abc/?name=label.png"
    respx_mock.get(label).respond(
        200, content=b"\x89PNG label", headers={"Content-Type": "image/png"}
    )
    send = respx_mock.post(f"{GRAPH}/{PAGE_ID}/messages").respond(
        200, json={"recipient_id": "7001", "message_id": "m_OUT"}
    )
    trigger = json.dumps(
        {
            "deskbridge": "zendesk-trigger/1",
            "ticket_id": "88",
            "comment_id": "555",
            "comment_public": "true",
            "author_id": "9001",
            "author_name": "Sam",
            "author_role": "Agent",
            "current_user_role": "Agent",
            "requester_id": "501",
            "occurred_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%MZ"),
            "body": "Here it is.",
            "attachments": [{"filename": "label.png", "url": label}],
        }
    ).encode()
    assert (
        await client.post("/desks/zendesk/acme", data=trigger, headers=zendesk_headers(trigger))
    ).status == 200
    await drain(rt)

    payloads = [json.loads(c.request.content) for c in send.calls]
    assert payloads[0]["message"] == {"text": "Here it is."}
    attachment = payloads[1]["message"]["attachment"]
    assert attachment["type"] == "image"
    media_url = attachment["payload"]["url"]
    assert media_url.startswith(rt.settings.base_public_url() + "/media/")
    # Meta fetches the URL: deskbridge serves the desk's file, and only that
    served = await client.get(media_url.removeprefix(rt.settings.base_public_url()))
    assert served.status == 200 and await served.read() == b"\x89PNG label"
