"""Proactive messages (issue 23, part 3): ``POST /admin/v1/messages`` resolves the contact's
conversation, applies each channel's rules before anything is written, sends through
the normal outbound path (once per caller's key) and files what went out on the ticket.
The channels' APIs run under respx; the desk is the sandbox."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import respx

from deskbridge.gateway import create_app
from deskbridge.gateway.admin import PREFIX, mint
from deskbridge.schemas import Channel, DeliveryState, Direction, Identity, Message, Sender
from deskbridge.store import IntakeEvent

from .conftest import META_SECRET, META_VERIFY, drain

SECRET = "admin-secret-for-tests-0123456789abcdef"
WA = "200000000000002"
PAGE = "300000000000001"
PHONE = "16505551234"
PSID = "7000000000000001"
LINE_USER = "U00000000000000000000000000000002"

YAML = f"""
apps:
  meta:
    type: meta
    app_secret: "{META_SECRET}"
    verify_token: "{META_VERIFY}"
accounts:
  acme:
    desk: {{type: sandbox}}
    channels:
      - type: whatsapp
        app: meta
        phone_number_id: "{WA}"
        access_token: wa-access-token
        base_url: https://graph.test
      - type: messenger
        app: meta
        page_id: "{PAGE}"
        page_access_token: page-access-token
        base_url: https://graph.test
      - type: line
        channel_id: "2000000001"
        channel_secret: line-secret-for-proactive-tests
        access_token: line-access-token
        base_url: https://line.test
        data_base_url: https://line-data.test
"""


def token(*scopes: str) -> str:
    return mint(
        SECRET,
        algorithm="HS256",
        subject="ops@test",
        scopes=list(scopes),
        ttl_seconds=600,
        audience="deskbridge-admin",
    )


@pytest.fixture
def api() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as router:
        router.post(f"https://graph.test/v23.0/{WA}/messages").mock(
            return_value=httpx.Response(200, json={"messages": [{"id": "wamid.OUT1"}]})
        )
        router.post(f"https://graph.test/v23.0/{PAGE}/messages").mock(
            return_value=httpx.Response(200, json={"recipient_id": PSID, "message_id": "m_1"})
        )
        router.post("https://line.test/v2/bot/message/push").mock(
            return_value=httpx.Response(200, json={"sentMessages": [{"id": "461230966842064898"}]})
        )
        yield router


@pytest.fixture
async def admin(make_runtime, aiohttp_client):
    rt = make_runtime(YAML, admin_jwt_secret=SECRET)
    client = await aiohttp_client(create_app(rt, role="serve"))
    client.rt = rt
    return client


def _identities(channel: Channel, user: str) -> tuple[Identity, ...]:
    ids = [Identity(kind="channel_user", value=user, channel=channel, strength="strong")]
    if channel == Channel.WHATSAPP:
        ids.append(Identity(kind="phone", value="+" + user, strength="strong"))
    return tuple(ids)


async def customer_wrote(rt, channel: Channel, user: str, *, hours_ago: float) -> None:
    """The customer wrote on ``channel`` ``hours_ago``; filed in the sandbox desk."""
    msg = Message(
        account="acme",
        channel=channel,
        dedup_key=f"in-{channel.value}-{hours_ago}",
        thread=user,
        occurred_at=datetime.now(UTC) - timedelta(hours=hours_ago),
        external_id=f"in-{hours_ago}",
        sender=Sender(external_id=user, identities=_identities(channel, user)),
        text="where is my order?",
    )
    conv = rt.conversations.conversation_id("acme", channel, user)
    await rt.intake.accept(
        account="acme",
        source=channel.value,
        direction=Direction.INBOUND,
        channel=channel.value,
        desk="sandbox",
        req=None,
        events=[IntakeEvent(dedup_key=msg.dedup_key, conversation_id=conv, event=msg)],
    )
    await drain(rt)


async def send(client, body: dict[str, Any], *scopes: str) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token(*(scopes or ('messages:write',)))}"}
    resp = await client.post(PREFIX + "/messages", json=body, headers=headers)
    return resp.status, await resp.json()


def bodies(api: respx.MockRouter, url: str) -> list[dict[str, Any]]:
    return [json.loads(c.request.content) for c in api.calls if str(c.request.url) == url]


async def test_inside_the_whatsapp_window_a_text_goes_and_is_filed_on_the_ticket(
    admin, api
) -> None:
    rt = admin.rt
    await customer_wrote(rt, Channel.WHATSAPP, PHONE, hours_ago=1)
    status, answer = await send(
        admin, {"to": "+" + PHONE, "text": "Your parcel is delayed by a day.", "key": "k1"}
    )
    assert status == 202, answer
    assert answer["channel"] == "whatsapp" and not answer["duplicate"]
    await drain(rt)
    d = await rt.deliveries.get("acme", answer["delivery_id"])
    assert d is not None and d.state == DeliveryState.DELIVERED
    assert d.direction == Direction.OUTBOUND
    [sent] = bodies(api, f"https://graph.test/v23.0/{WA}/messages")
    assert sent["text"]["body"] == "Your parcel is delayed by a day."
    assert sent["to"] == "+" + PHONE
    [ticket] = await rt.sandbox.tickets("acme")
    texts = [m.text for m in ticket.messages if m.author == "note"]
    assert any(
        "Outbound message sent to the customer on whatsapp by ops@test" in t
        and "Your parcel is delayed by a day." in t
        for t in texts
    ), texts


async def test_the_same_key_sends_once_and_a_reused_key_is_refused(admin, api) -> None:
    rt = admin.rt
    await customer_wrote(rt, Channel.WHATSAPP, PHONE, hours_ago=1)
    body = {"to": f"whatsapp:{PHONE}", "text": "Delayed.", "key": "order-4711"}
    first = await send(admin, body)
    again = await send(admin, body)
    assert first[0] == 202 and again[0] == 200
    assert again[1]["duplicate"] and again[1]["delivery_id"] == first[1]["delivery_id"]
    other = await send(admin, {**body, "text": "Something else."})
    assert other[0] == 409 and other[1]["error"] == "key_reused"
    await drain(rt)
    assert len(bodies(api, f"https://graph.test/v23.0/{WA}/messages")) == 1


async def test_outside_the_whatsapp_window_text_is_refused_and_a_template_goes(admin, api) -> None:
    rt = admin.rt
    await customer_wrote(rt, Channel.WHATSAPP, PHONE, hours_ago=30)
    before = await rt.listing.dedup_mark("acme", "proactive", "proactive:t1")
    status, answer = await send(admin, {"to": "+" + PHONE, "text": "Hello", "key": "t1"})
    assert (status, answer["error"]) == (409, "template_required")
    after = await rt.listing.dedup_mark("acme", "proactive", "proactive:t1")
    assert before is None and after is None
    status, answer = await send(
        admin,
        {
            "to": "+" + PHONE,
            "template": {"name": "order_delayed", "language": "en_US", "params": ["4711"]},
            "key": "t1",
        },
    )
    assert status == 202, answer
    await drain(rt)
    [sent] = bodies(api, f"https://graph.test/v23.0/{WA}/messages")
    assert sent["type"] == "template"
    assert sent["template"] == {
        "name": "order_delayed",
        "language": {"code": "en_US"},
        "components": [{"type": "body", "parameters": [{"type": "text", "text": "4711"}]}],
    }


async def test_a_phone_without_a_whatsapp_conversation_opens_one_with_a_template(
    admin, api
) -> None:
    """A contact known only by phone (given on another channel): WhatsApp needs a
    template, and its record opens the ticket of the new conversation."""
    rt = admin.rt
    contact = await rt.conversations.resolve_contact(
        "acme", (Identity(kind="phone", value="+16505559876", strength="strong"),), "Bo"
    )
    status, answer = await send(admin, {"to": contact.id, "text": "hi", "key": "n1"})
    assert (status, answer["error"]) == (409, "template_required")
    assert await rt.conversations.conversations_of("acme", contact.id) == []  # nothing written
    template = {"name": "order_delayed", "params": ["4711"]}
    status, answer = await send(admin, {"to": contact.id, "template": template, "key": "n1"})
    assert status == 202, answer
    await drain(rt)
    [sent] = bodies(api, f"https://graph.test/v23.0/{WA}/messages")
    assert sent["to"] == "+16505559876" and sent["type"] == "template"
    [ticket] = await rt.sandbox.tickets("acme")
    assert "template order_delayed (en_US): 4711" in ticket.messages[0].text
    conv = await rt.conversations.get("acme", answer["conversation_id"])
    assert conv is not None and conv.ticket_id == ticket.id


async def test_messenger_needs_a_tag_outside_the_window(admin, api) -> None:
    rt = admin.rt
    await customer_wrote(rt, Channel.MESSENGER, PSID, hours_ago=48)
    to = f"messenger:{PSID}"
    status, answer = await send(admin, {"to": to, "text": "Update", "key": "m1"})
    assert (status, answer["error"]) == (409, "tag_required")
    status, answer = await send(admin, {"to": to, "text": "Update", "key": "m1", "tag": "PROMO"})
    assert (status, answer["error"]) == (409, "bad_tag")
    status, answer = await send(
        admin, {"to": to, "text": "Update", "key": "m1", "tag": "HUMAN_AGENT"}
    )
    assert (status, answer["error"]) == (409, "tag_refused")  # not a person's message
    status, answer = await send(
        admin, {"to": to, "text": "Shipped today.", "key": "m1", "tag": "POST_PURCHASE_UPDATE"}
    )
    assert status == 202, answer
    await drain(rt)
    [sent] = bodies(api, f"https://graph.test/v23.0/{PAGE}/messages")
    assert sent["messaging_type"] == "MESSAGE_TAG" and sent["tag"] == "POST_PURCHASE_UPDATE"


async def test_messenger_inside_the_window_is_an_update(admin, api) -> None:
    rt = admin.rt
    await customer_wrote(rt, Channel.MESSENGER, PSID, hours_ago=2)
    status, _ = await send(admin, {"to": f"messenger:{PSID}", "text": "News", "key": "m2"})
    assert status == 202
    await drain(rt)
    [sent] = bodies(api, f"https://graph.test/v23.0/{PAGE}/messages")
    assert sent["messaging_type"] == "UPDATE" and "tag" not in sent


async def test_line_pushes_and_refuses_when_the_quota_is_used_up(admin, api) -> None:
    rt = admin.rt
    await customer_wrote(rt, Channel.LINE, LINE_USER, hours_ago=5)
    api.get("https://line.test/v2/bot/message/quota").mock(
        return_value=httpx.Response(200, json={"type": "limited", "value": 200})
    )
    used = api.get("https://line.test/v2/bot/message/quota/consumption").mock(
        return_value=httpx.Response(200, json={"totalUsage": 12})
    )
    status, answer = await send(admin, {"to": f"line:{LINE_USER}", "text": "Hi", "key": "l1"})
    assert status == 202, answer
    await drain(rt)
    [pushed] = bodies(api, "https://line.test/v2/bot/message/push")
    assert pushed["to"] == LINE_USER
    used.mock(return_value=httpx.Response(200, json={"totalUsage": 200}))
    status, answer = await send(admin, {"to": f"line:{LINE_USER}", "text": "Hi", "key": "l2"})
    assert (status, answer["error"]) == (409, "quota_exhausted")


async def test_opted_out_and_unfollowed_customers_are_not_messaged(admin, api) -> None:
    rt = admin.rt
    await customer_wrote(rt, Channel.LINE, LINE_USER, hours_ago=1)
    contact = await rt.conversations.resolve_contact(
        "acme", _identities(Channel.LINE, LINE_USER), None
    )
    await rt.conversations.set_attribute("acme", contact.id, "line_follow", "unfollowed since x")
    status, answer = await send(
        admin, {"to": contact.id, "channel": "line", "text": "Hi", "key": "o1"}
    )
    assert (status, answer["error"]) == (409, "opted_out")
    await rt.conversations.set_attribute("acme", contact.id, "line_follow", "following")
    await rt.conversations.set_attribute("acme", contact.id, "opt_out", "true")
    status, answer = await send(admin, {"to": contact.id, "text": "Hi", "key": "o1"})
    assert (status, answer["error"]) == (409, "opted_out")


async def test_bad_input_scope_and_unknown_contacts(admin, api) -> None:
    status, _ = await send(admin, {"to": "+16505550199", "text": "x", "key": "b1"}, "ops:read")
    assert status == 403
    status, answer = await send(admin, {"to": "+16505550199", "text": "x", "key": "b1"})
    assert status == 404, answer
    status, answer = await send(admin, {"to": "+16505550199", "text": "x"})
    assert status == 400 and "key" in answer["message"]
    await customer_wrote(admin.rt, Channel.WHATSAPP, PHONE, hours_ago=1)
    status, answer = await send(
        admin, {"to": "+" + PHONE, "text": "x", "key": "b2", "tag": "ACCOUNT_UPDATE"}
    )
    assert (status, answer["error"]) == (409, "tag_unsupported")
    status, answer = await send(admin, {"to": "+" + PHONE, "key": "b3"})
    assert (status, answer["error"]) == (409, "text_or_template")


async def test_a_refused_send_is_a_dead_letter_and_replays(admin, api) -> None:
    """A platform refusal is a dead letter like any reply: listed, and replayable."""
    rt = admin.rt
    await customer_wrote(rt, Channel.WHATSAPP, PHONE, hours_ago=1)
    route = api.post(f"https://graph.test/v23.0/{WA}/messages")
    route.mock(
        return_value=httpx.Response(
            400, json={"error": {"message": "(100) Invalid parameter", "code": 100}}
        )
    )
    status, answer = await send(admin, {"to": "+" + PHONE, "text": "Hi", "key": "r1"})
    assert status == 202
    await drain(rt)
    d = await rt.deliveries.get("acme", answer["delivery_id"])
    assert d is not None and d.state == DeliveryState.DEAD
    route.mock(return_value=httpx.Response(200, json={"messages": [{"id": "wamid.OK"}]}))
    headers = {"Authorization": f"Bearer {token('deliveries:write')}"}
    resp = await admin.post(
        PREFIX + "/deliveries/replay",
        json={"ids": [answer["delivery_id"]], "account": "acme"},
        headers=headers,
    )
    assert resp.status == 200, await resp.text()
    await drain(rt)
    d = await rt.deliveries.get("acme", answer["delivery_id"])
    assert d is not None and d.state == DeliveryState.DELIVERED


async def test_an_operator_records_the_customers_opt_out(admin, api) -> None:
    rt = admin.rt
    await customer_wrote(rt, Channel.WHATSAPP, PHONE, hours_ago=1)
    headers = {"Authorization": f"Bearer {token('contacts:write')}"}
    path = f"{PREFIX}/contacts/+{PHONE}/opt-out"
    resp = await admin.post(path, json={"reason": "asked on the phone"}, headers=headers)
    assert resp.status == 200 and (await resp.json())["opt_out"] is True
    status, answer = await send(admin, {"to": "+" + PHONE, "text": "Hi", "key": "x1"})
    assert (status, answer["error"]) == (409, "opted_out")
    resp = await admin.post(path, json={"opt_out": False}, headers=headers)
    assert resp.status == 200
    status, _ = await send(admin, {"to": "+" + PHONE, "text": "Hi", "key": "x1"})
    assert status == 202
    missing = await admin.post(f"{PREFIX}/contacts/+16505550199/opt-out", json={}, headers=headers)
    assert missing.status == 404
    actions = [e.action for e in (await rt.audit.read(limit=10))[0]]
    assert "contacts.opt_out" in actions and "contacts.opt_in" in actions


async def test_a_key_reused_for_another_customer_is_refused(admin, api) -> None:
    rt = admin.rt
    await customer_wrote(rt, Channel.WHATSAPP, PHONE, hours_ago=1)
    await customer_wrote(rt, Channel.MESSENGER, PSID, hours_ago=1)
    body = {"text": "Delayed.", "key": "shared-key"}
    assert (await send(admin, {**body, "to": "+" + PHONE}))[0] == 202
    status, answer = await send(admin, {**body, "to": f"messenger:{PSID}"})
    assert (status, answer["error"]) == (409, "key_reused")
