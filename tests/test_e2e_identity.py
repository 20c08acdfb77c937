"""The identity graph end to end: one customer across channels is one contact and one
desk user; an unverified claim or somebody else's number never merges."""

from __future__ import annotations

import json
import time

from deskbridge.adapters.sip.simulate import send_sample
from deskbridge.adapters.whatsapp import sample_message as whatsapp_message
from deskbridge.gateway import create_app
from deskbridge.listeners.sip import start_sip_listeners
from deskbridge.schemas import Channel, Identity

from .conftest import META_YAML, WA_NUMBER, drain
from .test_e2e_meta import ZD, meta_headers

SIP_CHANNEL = """
      - type: sip
        listen: "127.0.0.1:0"
        transports: [udp]
        domains: [sip.acme.example]
        numbers: ["+14155550100"]
        trusted_peers: [127.0.0.1/32]
        timers: {t1: 0.02, t2: 0.16, t4: 0.1}
"""


def with_sip(yaml: str) -> str:
    marker = "      - type: messenger\n"
    assert marker in yaml
    return yaml.replace(marker, SIP_CHANNEL.lstrip("\n") + marker, 1)


async def test_whatsapp_and_an_asserted_sip_number_are_one_contact_and_one_zendesk_user(
    make_runtime, aiohttp_client, respx_mock
) -> None:
    rt = make_runtime(with_sip(META_YAML))
    client = await aiohttp_client(create_app(rt, role="serve"))
    users = respx_mock.post(f"{ZD}/users/create_or_update").respond(201, json={"user": {"id": 501}})
    respx_mock.get(f"{ZD}/users/501/identities").respond(
        200,
        json={
            "identities": [{"id": 1, "type": "phone_number", "value": "+5491123456789"}],
            "next_page": None,
        },
    )
    added = respx_mock.post(f"{ZD}/users/501/identities").respond(201, json={"identity": {"id": 2}})
    tickets = respx_mock.post(f"{ZD}/tickets").respond(
        201, json={"ticket": {"id": 77}, "audit": {"events": [{"type": "Comment", "id": 1}]}}
    )
    respx_mock.put(f"{ZD}/tickets/77").respond(
        200, json={"ticket": {"id": 77}, "audit": {"events": [{"type": "Comment", "id": 2}]}}
    )
    respx_mock.post(f"{ZD}/tickets/77/comments").respond(200, json={})
    respx_mock.post(f"{ZD}/tickets/78").respond(200, json={})

    body = whatsapp_message(
        "Hola, ¿mi pedido?",
        phone_number_id=WA_NUMBER,
        wa_id="5491123456789",
        name="Ana",
        message_id="wamid.AR1",
        timestamp=int(time.time()),
    )
    resp = await client.post("/webhooks/whatsapp", data=body, headers=meta_headers(body))
    assert resp.status == 200
    await drain(rt)

    [listener] = await start_sip_listeners(rt)
    try:
        status = await send_sample(
            listener.addresses()["udp"],
            text="Soy Ana, te escribo por SMS",
            sender="tel:+54-11-2345-6789",  # asserted by the trusted trunk
            target="sip:+14155550100@sip.acme.example",
        )
        assert status == 200
        await drain(rt)
    finally:
        await listener.close()

    sent = [json.loads(c.request.content)["user"] for c in users.calls]
    assert len({u["external_id"] for u in sent}) == 1  # one contact, one desk user
    contact_id = sent[0]["external_id"]
    contact = await rt.conversations.contact("acme", contact_id)
    assert contact is not None
    phones = {i.value for i in contact.identities if i.kind == "phone"}
    assert phones == {"+5491123456789", "+541123456789"}
    channels = {i.channel for i in contact.identities if i.kind == "channel_user"}
    assert channels == {Channel.WHATSAPP, Channel.SIP}
    # the second spelling went to Zendesk as the user's second identity
    values = [json.loads(c.request.content)["identity"]["value"] for c in added.calls]
    assert "+541123456789" in values
    assert tickets.call_count == 2  # channel scope: one ticket per channel conversation


async def test_an_unauthenticated_claim_of_a_known_address_is_only_a_suggestion(
    make_runtime,
) -> None:
    rt = make_runtime(META_YAML)
    graph = rt.conversations.graph
    assert graph is not None
    verified = Identity(kind="email", value="ana@example.com", strength="strong", source="dmarc")
    known, _ = await rt.conversations.observe_contact("acme", (verified,), "Ana")
    spoof = Identity(kind="email", value="Ana@Example.com", strength="weak", source="from")
    claim, observed = await rt.conversations.observe_contact("acme", (spoof,), "Ana?")
    assert claim.id != known.id
    assert observed is not None and observed.suggestions
    again, _ = await rt.conversations.observe_contact("acme", (spoof,), None)
    assert again.id == claim.id  # the claimant keeps one contact of their own
    [pending] = await graph.suggestions("acme")
    assert set(pending.contacts) == {known.id, claim.id} and pending.reason == "weak"
    from deskbridge.pipeline.worker import sweep_once

    await sweep_once(rt)
    gauge = rt.metrics.registry.get_sample_value(
        "deskbridge_identity_suggestions_pending", {"scope": "acme"}
    )
    assert gauge == 1


async def test_a_telegram_contact_card_of_someone_else_does_not_merge(make_runtime) -> None:
    from deskbridge.adapters.telegram.parse import parse

    rt = make_runtime(META_YAML)
    owner = Identity(kind="phone", value="+16505551234", strength="strong", source="whatsapp")
    wa_user = Identity(
        kind="channel_user",
        value="16505551234",
        channel=Channel.WHATSAPP,
        strength="strong",
        source="whatsapp",
    )
    owner_contact, _ = await rt.conversations.observe_contact("acme", (wa_user, owner), "Ana")
    update = {
        "update_id": 1,
        "message": {
            "message_id": 5,
            "date": int(time.time()),
            "chat": {"id": 700000001, "type": "private"},
            "from": {"id": 700000001, "is_bot": False, "first_name": "Bob"},
            "contact": {"phone_number": "+16505551234", "first_name": "Ana", "user_id": 42},
        },
    }
    [event] = parse(json.dumps(update).encode(), account="acme")
    assert event.kind == "message"
    bob, _ = await rt.conversations.observe_contact(
        "acme", event.sender.identities, event.sender.display_name
    )
    assert bob.id != owner_contact.id
    assert "+16505551234" not in {i.value for i in bob.identities}


CONTACT_SCOPE_YAML = """
apps:
  meta:
    type: meta
    app_secret: "{secret}"
    verify_token: "v"
accounts:
  acme:
    desk: {{type: sandbox}}
    conversation_scope: contact
    channels:
      - type: whatsapp
        app: meta
        phone_number_id: "{number}"
        access_token: wa-access-token
        sandbox: true
      - type: sip
        listen: "127.0.0.1:0"
        transports: [udp]
        domains: [sip.acme.example]
        numbers: ["+14155550100"]
        trusted_peers: [127.0.0.1/32]
        sandbox: true
        timers: {{t1: 0.02, t2: 0.16, t4: 0.1}}
"""


async def test_contact_scope_keeps_one_ticket_and_answers_on_the_last_channel(
    make_runtime, aiohttp_client
) -> None:
    from datetime import UTC, datetime

    from deskbridge.flows.ingest import accept_replies
    from deskbridge.schemas import AgentReply, Desk

    from .conftest import META_SECRET

    rt = make_runtime(CONTACT_SCOPE_YAML.format(secret=META_SECRET, number=WA_NUMBER))
    client = await aiohttp_client(create_app(rt, role="serve"))
    body = whatsapp_message(
        "First on WhatsApp",
        phone_number_id=WA_NUMBER,
        wa_id="16505551234",
        name="Ana",
        message_id="wamid.C1",
        timestamp=int(time.time()),
    )
    assert (
        await client.post("/webhooks/whatsapp", data=body, headers=meta_headers(body))
    ).status == 200
    await drain(rt)
    [listener] = await start_sip_listeners(rt)
    try:
        status = await send_sample(
            listener.addresses()["udp"],
            text="Then by SMS",
            sender="tel:+16505551234",
            target="sip:+14155550100@sip.acme.example",
        )
        assert status == 200
        await drain(rt)
    finally:
        await listener.close()
    [ticket] = await rt.sandbox.tickets("acme")
    assert [m.text for m in ticket.messages] == ["First on WhatsApp", "Then by SMS"]

    reply = AgentReply(
        account="acme",
        desk=Desk.SANDBOX,
        dedup_key="r-contact",
        ticket_id=ticket.id,
        external_id="a1",
        text="Answered where you wrote last",
        occurred_at=datetime.now(UTC),
    )
    await accept_replies(rt, "acme", "sandbox", None, [reply])
    await drain(rt)
    [sent] = await rt.sandbox.sent("acme")
    assert sent["channel"] == "sip" and sent["text"].endswith("Answered where you wrote last")


SMS_CHANNEL = """
      - type: sms
        account_sid: "AC0123456789abcdef0123456789abcdef"
        auth_token: "twilio-token-for-identity-tests"
        webhook_url: "https://bridge.example.com/webhooks/sms/acme"
        default_sender: "+14155550100"
        base_url: https://twilio.test
"""


async def test_whatsapp_and_sms_from_one_number_are_one_contact_and_one_zendesk_user(
    make_runtime, aiohttp_client, respx_mock
) -> None:
    from urllib.parse import parse_qsl

    from deskbridge.adapters.sms import sample_message as sms_message
    from deskbridge.adapters.sms.signature import sign as twilio_sign

    marker = "      - type: messenger\n"
    rt = make_runtime(META_YAML.replace(marker, SMS_CHANNEL.lstrip("\n") + marker, 1))
    client = await aiohttp_client(create_app(rt, role="serve"))
    users = respx_mock.post(f"{ZD}/users/create_or_update").respond(201, json={"user": {"id": 501}})
    respx_mock.get(f"{ZD}/users/501/identities").respond(
        200, json={"identities": [], "next_page": None}
    )
    respx_mock.post(f"{ZD}/users/501/identities").respond(201, json={"identity": {"id": 2}})
    respx_mock.post(f"{ZD}/tickets").respond(
        201, json={"ticket": {"id": 77}, "audit": {"events": [{"type": "Comment", "id": 1}]}}
    )
    respx_mock.put(f"{ZD}/tickets/77").respond(
        200, json={"ticket": {"id": 77}, "audit": {"events": [{"type": "Comment", "id": 2}]}}
    )
    body = whatsapp_message(
        "Hi, my order?",
        phone_number_id=WA_NUMBER,
        wa_id="14155550142",
        name="Ann",
        message_id="wamid.US1",
        timestamp=int(time.time()),
    )
    assert (
        await client.post("/webhooks/whatsapp", data=body, headers=meta_headers(body))
    ).status == 200
    await drain(rt)
    form = sms_message(
        "Texting you instead",
        account_sid="AC0123456789abcdef0123456789abcdef",
        sender="+14155550142",
        to="+14155550100",
        seed="identity",
    )
    url = "https://bridge.example.com/webhooks/sms/acme"
    headers = {
        "X-Twilio-Signature": twilio_sign(
            "twilio-token-for-identity-tests", url, parse_qsl(form.decode())
        ),
        "Content-Type": "application/x-www-form-urlencoded",
    }
    assert (await client.post("/webhooks/sms/acme", data=form, headers=headers)).status == 200
    await drain(rt)
    sent = [json.loads(c.request.content)["user"] for c in users.calls]
    assert len({u["external_id"] for u in sent}) == 1  # one contact, one desk user
    contact = await rt.conversations.contact("acme", sent[0]["external_id"])
    assert contact is not None
    channels = {i.channel for i in contact.identities if i.kind == "channel_user"}
    assert channels == {Channel.WHATSAPP, Channel.SMS}
