"""One suite every desk connector passes, each against a fake of its own API.

The customer writes on Telegram (signed webhooks to the gateway; Telegram's Bot API is
mocked with respx); the desk is a fake shaped on the real one (tests/desks/), enforcing
its auth scheme and injecting faults on demand. Switching an account's desk is a config
change: the same steps run for every desk.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, parse_qsl

import pytest

from deskbridge.adapters.instagram import sample_message as instagram_message
from deskbridge.adapters.meta import sign
from deskbridge.adapters.sms import sample_message as sms_message
from deskbridge.adapters.sms import vonage
from deskbridge.adapters.sms.signature import sign as sms_sign
from deskbridge.adapters.telegram import sample_update
from deskbridge.gateway import create_app
from deskbridge.schemas import DeliveryState, Direction

from .conftest import META_SECRET, TG_SECRET, TG_TOKEN, drain
from .desks.base import MODES, FakeDesk, Mode
from .helpers import deliveries, kill_worker_when, rsa_private_key

TG = f"https://tg.test/bot{TG_TOKEN}"
TG_FILES = f"https://tg.test/file/bot{TG_TOKEN}"

# desk name → module:class of its fake; every desk deskbridge supports is listed
FAKES = {
    "sandbox": "tests.desks.fake_sandbox:FakeSandbox",
    "zendesk": "tests.desks.fake_zendesk:FakeZendesk",
    "intercom": "tests.desks.fake_intercom:FakeIntercom",
    "udesk": "tests.desks.fake_udesk:FakeUdesk",
}


def _fake(name: str) -> FakeDesk:
    module, _, cls = FAKES[name].partition(":")
    return getattr(importlib.import_module(module), cls)()


@pytest.fixture(params=sorted(FAKES))
async def fake(request: pytest.FixtureRequest) -> AsyncIterator[FakeDesk]:
    desk = _fake(request.param)
    await desk.start()
    try:
        yield desk
    finally:
        await desk.stop()


def yaml_for(fake: FakeDesk, extra: str = "") -> str:
    return f"""
accounts:
  acme:
    desk: {fake.desk_yaml()}
    channels:
      - type: telegram
        bot_token: "{TG_TOKEN}"
        secret_token: "{TG_SECRET}"
        base_url: https://tg.test
{extra}"""


BOT = """
    responders:
      chain:
        - type: knowledge_base
          entries:
            - questions: [when are you open, what are your opening hours]
              answer: We are open Monday to Friday, 9:00 to 18:00.
        - {type: http, url: "https://bot.test/answer", secret: bot-secret-0123456789}
"""


@contextlib.asynccontextmanager
async def gateway(
    fake: FakeDesk, make_runtime: Any, aiohttp_client: Any, extra: str = "", **settings: Any
) -> AsyncIterator[tuple[Any, Any]]:
    rt = make_runtime(yaml_for(fake, extra), **settings)
    fake.bind(rt)  # fakes that live inside deskbridge (the sandbox) wrap the runtime's desk
    client = await aiohttp_client(create_app(rt, role="serve"))
    yield rt, client


def telegram(respx_mock: Any) -> Any:
    respx_mock.route(host="127.0.0.1").pass_through()
    return respx_mock.post(f"{TG}/sendMessage").respond(
        200, json={"ok": True, "result": {"message_id": 555, "date": 1, "chat": {"id": 42}}}
    )


async def customer_says(client: Any, text: str, update_id: int, **extra: Any) -> None:
    body = json.loads(sample_update(text, update_id=update_id, chat_id=42, user_id=42))
    body["message"].update(extra)
    if "document" in extra:
        del body["message"]["text"]
        body["message"]["caption"] = text
    resp = await client.post(
        "/webhooks/telegram/acme",
        data=json.dumps(body).encode(),
        headers={"X-Telegram-Bot-Api-Secret-Token": TG_SECRET, "Content-Type": "application/json"},
    )
    assert resp.status == 200


async def refresh(fake: FakeDesk) -> None:
    await fake.refresh()


# -- filing -------------------------------------------------------------------------------


async def test_first_message_creates_the_user_and_ticket_later_ones_append_in_order(
    fake: FakeDesk, make_runtime: Any, aiohttp_client: Any, respx_mock: Any
) -> None:
    telegram(respx_mock)
    async with gateway(fake, make_runtime, aiohttp_client) as (rt, client):
        for i, text in enumerate(["Where is my order?", "It was order 42.", "Thanks!"]):
            await customer_says(client, text, 7001 + i)
        await drain(rt)
        await refresh(fake)
    [ticket] = fake.tickets()
    texts = [p.text for p in ticket.parts if p.author == "user"]
    assert [t.strip() for t in texts] == ["Where is my order?", "It was order 42.", "Thanks!"]
    users = fake.users()
    assert len(users) == 1 and ticket.user_id == users[0].id


async def test_a_hand_off_brings_the_bot_session_onto_the_ticket(
    fake: FakeDesk, make_runtime: Any, aiohttp_client: Any, respx_mock: Any
) -> None:
    """The bot answers what it knows (nothing filed yet); when the customer asks for a
    person, the ticket opens with the whole exchange, the bot's lines marked as
    automated, and the customer's message after it. Later messages go to the ticket."""
    send = telegram(respx_mock)
    respx_mock.post("https://bot.test/answer").respond(
        200, json={"reply": "Noted, thank you.", "collect": {"order_number": "42"}}
    )
    async with gateway(fake, make_runtime, aiohttp_client, BOT) as (rt, client):
        await customer_says(client, "When are you open?", 7051)
        await customer_says(client, "My parcel of order 42 is late", 7054)
        await drain(rt)
        await refresh(fake)
        assert fake.tickets() == []
        await customer_says(client, "I want to talk to a human please", 7052)
        await customer_says(client, "It is about order 42.", 7053)
        await drain(rt)
        await refresh(fake)
    bodies = [c.request.content.decode() for c in send.calls]
    assert sum("We are open Monday to Friday" in b for b in bodies) == 1
    [ticket] = fake.tickets()
    first, second = [p.text for p in ticket.parts if p.author == "user"]
    assert "handed over: the customer asked for a person" in first
    lines = [line.strip() for line in first.splitlines() if line.strip()]
    asked = next(i for i, line in enumerate(lines) if "When are you open?" in line)
    assert lines[asked].startswith("Customer, ")
    assert lines[asked + 1].startswith("Bot (automated), ")
    assert "We are open Monday to Friday" in lines[asked + 1]
    assert "My parcel of order 42 is late" in lines[asked + 2]
    assert lines[asked + 3].startswith("Bot (automated), ") and "Noted" in lines[asked + 3]
    assert "[Collected by the bot: order_number: 42]" in lines
    assert first.rstrip().endswith("I want to talk to a human please")
    assert second.strip() == "It is about order 42."


async def test_attachments_arrive(
    fake: FakeDesk, make_runtime: Any, aiohttp_client: Any, respx_mock: Any
) -> None:
    telegram(respx_mock)
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
    async with gateway(fake, make_runtime, aiohttp_client) as (rt, client):
        await customer_says(client, "My invoice", 7101, document=document)
        await drain(rt)
        await refresh(fake)
    [ticket] = fake.tickets()
    parts = [p for p in ticket.parts if p.author == "user"]
    # with its text, or (Intercom opens conversations with text only) in the next part
    assert any("My invoice" in p.text for p in parts)
    assert sum("invoice.pdf" in name for p in parts for name in p.attachments) == 1, parts


async def test_a_retried_delivery_does_not_duplicate(
    fake: FakeDesk, make_runtime: Any, aiohttp_client: Any, respx_mock: Any
) -> None:
    if not fake.dedups_retries:
        pytest.skip(f"{fake.desk} gives no way to find what an unanswered call created")
    telegram(respx_mock)
    # the desk does the work but answers after our timeout: the attempt fails, and the
    # retry must find the ticket rather than open a second one
    fake.stall(1.0, times=3)
    async with gateway(fake, make_runtime, aiohttp_client, http_timeout=0.3) as (rt, client):
        await customer_says(client, "Only once, please", 7201)
        await drain(rt)
        await refresh(fake)
    tickets = fake.tickets()
    assert len(tickets) == 1
    texts = [p.text.strip() for p in tickets[0].parts if p.author == "user"]
    assert texts.count("Only once, please") == 1


# -- faults -------------------------------------------------------------------------------


async def test_429_is_honoured_without_spending_the_budget(
    fake: FakeDesk, make_runtime: Any, aiohttp_client: Any, respx_mock: Any
) -> None:
    telegram(respx_mock)
    fake.fail(429, times=1)
    async with gateway(fake, make_runtime, aiohttp_client) as (rt, client):
        await customer_says(client, "Rate limited?", 7301)
        await drain(rt)
        await refresh(fake)
        [d] = await deliveries(rt, Direction.INBOUND)
        log = await rt.deliveries.attempts("acme", d.id)
    assert d.state is DeliveryState.DELIVERED
    assert [str(a.outcome) for a in log] == ["rate_limited", "delivered"]
    assert d.attempts == 1  # only the attempt that delivered; the wait spent nothing
    assert len(fake.tickets()) == 1


@pytest.mark.parametrize("fault", ["5xx", "timeout"])
async def test_5xx_and_timeouts_are_retried(
    fault: str, fake: FakeDesk, make_runtime: Any, aiohttp_client: Any, respx_mock: Any
) -> None:
    telegram(respx_mock)
    if fault == "5xx":
        fake.fail(503, times=2)
    else:
        if not fake.dedups_retries:
            pytest.skip(f"{fake.desk}: a timeout after the work would duplicate")
        fake.stall(1.0, times=1)
    async with gateway(fake, make_runtime, aiohttp_client, http_timeout=0.3) as (rt, client):
        await customer_says(client, "Is anyone there?", 7401)
        await drain(rt)
        await refresh(fake)
        [d] = await deliveries(rt, Direction.INBOUND)
        log = await rt.deliveries.attempts("acme", d.id)
    assert d.state is DeliveryState.DELIVERED
    assert str(log[-1].outcome) == "delivered" and str(log[0].outcome) == "retry"
    assert len(fake.tickets()) == 1


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("call", ["create", "append"])
async def test_a_write_whose_answer_is_lost_lands_once_or_is_counted(
    call: str,
    mode: Mode,
    fake: FakeDesk,
    make_runtime: Any,
    aiohttp_client: Any,
    respx_mock: Any,
) -> None:
    """Partial failure at the desk: the write is refused with the desk's retry hint, or
    applied and then its answer is lost (reset, timeout, a proxy's 502). Exactly one copy
    where the desk lets deskbridge check (idempotency key or read-back); elsewhere at most
    one extra, counted in deskbridge_ambiguous_resends_total and the attempt log; never
    a message lost."""
    telegram(respx_mock)
    async with gateway(fake, make_runtime, aiohttp_client, http_timeout=0.3) as (rt, client):
        if call == "append":
            await customer_says(client, "Opening the ticket", 7801)
            await drain(rt)
        fake.fault(mode, call)
        await customer_says(client, "Exactly once, please", 7802)
        await drain(rt)
        await refresh(fake)
        inbound = await deliveries(rt, Direction.INBOUND)
        logs = [await rt.deliveries.attempts("acme", d.id) for d in inbound]
        resent = rt.metrics.registry.get_sample_value(
            "deskbridge_ambiguous_resends_total", {"peer": fake.desk}
        )
    assert fake.faults.fired, "the fault never fired"
    assert [d.state for d in inbound] == [DeliveryState.DELIVERED] * len(inbound)
    copies = [
        p.text.strip()
        for t in fake.tickets()
        for p in t.parts
        if p.author == "user" and "Exactly once, please" in p.text
    ]
    extra = int(resent or 0)
    if mode == "rate_limited" or call in fake.reconciles:
        assert len(copies) == 1 and extra == 0, copies
    else:
        assert len(copies) == 2 and extra == 1, copies  # sent again, and counted
        assert [a.resent for a in logs[-1] if a.outcome == "resent"] == [
            f"{fake.desk} {call} ticket"
        ]
    if mode != "rate_limited":
        assert any(a.ambiguous for a in logs[-1])  # the attempt log says it was in doubt


async def test_a_worker_killed_with_an_append_in_flight_files_it_once(
    fake: FakeDesk, make_runtime: Any, aiohttp_client: Any, respx_mock: Any
) -> None:
    """The desk applied the comment; the worker died before it recorded anything. The
    job runs again, knows the write was in flight, and reconciles instead of appending."""
    telegram(respx_mock)
    async with gateway(fake, make_runtime, aiohttp_client, job_timeout_seconds=1) as (rt, client):
        await customer_says(client, "Opening the ticket", 7901)
        await drain(rt)
        desk = rt.desks["acme"]
        real_append = desk.append
        filed = asyncio.Event()

        async def append_then_die(*args: Any, **kwargs: Any) -> Any:
            result = await real_append(*args, **kwargs)
            filed.set()
            await asyncio.sleep(3600)  # killed here: filed at the desk, not yet recorded
            return result

        desk.append = append_then_die
        await customer_says(client, "Exactly once, please", 7902)
        await kill_worker_when(rt, filed, 5)
        desk.append = real_append
        await drain(rt)
        await refresh(fake)
        inbound = await deliveries(rt, Direction.INBOUND)
    assert [d.state for d in inbound] == [DeliveryState.DELIVERED] * 2
    copies = [p.text for t in fake.tickets() for p in t.parts if "Exactly once, please" in p.text]
    assert len(copies) == 1, copies


async def test_permanent_4xx_goes_to_the_dead_letters(
    fake: FakeDesk, make_runtime: Any, aiohttp_client: Any, respx_mock: Any
) -> None:
    telegram(respx_mock)
    fake.fail(422, times=50)
    async with gateway(fake, make_runtime, aiohttp_client) as (rt, client):
        await customer_says(client, "This will not file", 7501)
        await drain(rt)
        [d] = await deliveries(rt, Direction.INBOUND)
    assert d.state is DeliveryState.DEAD
    assert d.attempts == 1  # no retry storm on a permanent refusal


# -- agent replies ------------------------------------------------------------------------


async def test_an_agent_reply_becomes_exactly_one_channel_message(
    fake: FakeDesk, make_runtime: Any, aiohttp_client: Any, respx_mock: Any
) -> None:
    send = telegram(respx_mock)
    doc = respx_mock.post(f"{TG}/sendDocument").respond(
        200, json={"ok": True, "result": {"message_id": 556, "date": 1, "chat": {"id": 42}}}
    )
    async with gateway(fake, make_runtime, aiohttp_client) as (rt, client):
        await customer_says(client, "Hello desk", 7601)
        await drain(rt)
        await refresh(fake)
        [ticket] = fake.tickets()
        files = fake.reply_attachments
        attachment = ("label.pdf", b"%PDF-1.4 label", "application/pdf") if files else None
        await fake.agent_reply(client, rt, ticket.id, "Your parcel ships today.", attachment)
        await drain(rt)
        replies = await deliveries(rt, Direction.OUTBOUND)
    assert len(replies) == 1 and replies[0].state is DeliveryState.DELIVERED
    # the text goes as a message, or as the caption of the file (multipart)
    bodies = [c.request.content.decode(errors="replace") for c in [*send.calls, *doc.calls]]
    assert sum("Your parcel ships today." in b for b in bodies) == 1
    if attachment is not None:
        assert doc.call_count == 1 and "label.pdf" in bodies[-1]


async def test_our_own_messages_are_never_echoed_back(
    fake: FakeDesk, make_runtime: Any, aiohttp_client: Any, respx_mock: Any
) -> None:
    send = telegram(respx_mock)
    async with gateway(fake, make_runtime, aiohttp_client) as (rt, client):
        await customer_says(client, "Do not echo me", 7701)
        await drain(rt)
        await refresh(fake)
        [ticket] = fake.tickets()
        await fake.notify_customer_part(client, rt, ticket.id)
        await drain(rt)
        replies = await deliveries(rt, Direction.OUTBOUND)
    assert replies == [] and send.call_count == 0


async def test_a_verified_desk_body_we_cannot_read_is_kept_not_refused(
    make_runtime: Any, aiohttp_client: Any
) -> None:
    """The desk's signature is right but the shape is not one we parse: 200 (a desk whose
    webhook keeps failing suspends it) and a parse_failed dead letter for re-ingest."""
    from datetime import UTC, datetime

    from deskbridge.outbound.zendesk.webhook import sign

    from .conftest import ZD_SECRET, ZENDESK_YAML

    rt = make_runtime(ZENDESK_YAML)
    client = await aiohttp_client(create_app(rt, role="serve"))
    body = json.dumps({"hello": "from the webhook builder"}).encode()
    ts = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    headers = {
        "X-Zendesk-Webhook-Signature": sign(ZD_SECRET, ts, body),
        "X-Zendesk-Webhook-Signature-Timestamp": ts,
        "Content-Type": "application/json",
    }
    for _ in range(2):  # a redelivery is kept once
        assert (await client.post("/desks/zendesk/acme", data=body, headers=headers)).status == 200
    [dead] = await deliveries(rt, Direction.OUTBOUND)
    assert dead.state is DeliveryState.DEAD and dead.reason == "parse_failed"


# -- the other channels ---------------------------------------------------------------------
# Each desk files an Instagram customer (the Meta app's signed webhook) and the agent's
# reply goes back through the Instagram messaging API, the sender named by its profile.

IG_ID = "17841400000000001"
IGSID = "1790000000000042"
IG_API = "https://graph-ig.test/v23.0"


def yaml_with_instagram(fake: FakeDesk) -> str:
    return (
        f"""
apps:
  meta:
    type: meta
    app_secret: "{META_SECRET}"
    verify_token: verify
"""
        + yaml_for(fake)
        + f"""      - type: instagram
        app: meta
        ig_id: "{IG_ID}"
        access_token: ig-access-token
        base_url: https://graph-ig.test
"""
    )


async def test_an_instagram_customer_is_filed_named_and_answered(
    fake: FakeDesk, make_runtime: Any, aiohttp_client: Any, respx_mock: Any
) -> None:
    respx_mock.route(host="127.0.0.1").pass_through()
    profile = respx_mock.get(f"{IG_API}/{IGSID}").respond(
        200, json={"id": IGSID, "name": "Ana Ruiz", "username": "ana.ruiz"}
    )
    send = respx_mock.post(f"{IG_API}/{IG_ID}/messages").respond(
        200, json={"recipient_id": IGSID, "message_id": "aWdfT1VU"}
    )
    rt = make_runtime(yaml_with_instagram(fake))
    fake.bind(rt)
    client = await aiohttp_client(create_app(rt, role="serve"))
    body = instagram_message(
        "¿Tienen la talla M?",
        ig_id=IG_ID,
        igsid=IGSID,
        mid="aWdfSU4x",
        timestamp_ms=int(time.time() * 1000),
    )
    headers = {"X-Hub-Signature-256": sign(META_SECRET, body), "Content-Type": "application/json"}
    for _ in range(2):  # a redelivery files once
        assert (await client.post("/webhooks/instagram", data=body, headers=headers)).status == 200
    await drain(rt)
    await refresh(fake)
    [ticket] = fake.tickets()
    assert [p.text.strip() for p in ticket.parts if p.author == "user"] == ["¿Tienen la talla M?"]
    assert profile.called and any(u.name and "Ana Ruiz" in u.name for u in fake.users())
    await fake.agent_reply(client, rt, ticket.id, "Sí, la tenemos.", None)
    await drain(rt)
    [out] = await deliveries(rt, Direction.OUTBOUND)
    assert out.state is DeliveryState.DELIVERED
    [sent] = [json.loads(c.request.content) for c in send.calls]
    assert sent["recipient"] == {"id": IGSID} and sent["messaging_type"] == "RESPONSE"
    assert sent["message"]["text"].strip() == "Sí, la tenemos."


SMS_SID = "AC" + "0123456789abcdef" * 2
SMS_TOKEN = "twilio-auth-token-for-tests"
SMS_URL = "https://bridge.example.com/webhooks/sms/acme"
SMS_API = f"https://twilio.test/2010-04-01/Accounts/{SMS_SID}/Messages.json"
VONAGE_SECRET = "vonage-signature-secret-for-tests"
VONAGE_APP = "aaaaaaaa-bbbb-4ccc-8ddd-0123456789ab"
VONAGE_KEY = rsa_private_key()
VONAGE_API = "https://vonage.test/v1/messages"


def _twilio_sms(fake: FakeDesk, text: str) -> tuple[str, bytes, dict[str, str]]:
    """The account's SMS channel on Twilio, and a customer's signed webhook."""
    entry = f"""      - type: sms
        account_sid: "{SMS_SID}"
        auth_token: "{SMS_TOKEN}"
        webhook_url: "{SMS_URL}"
        default_sender: "+14155550100"
        base_url: https://twilio.test
"""
    body = sms_message(
        text, account_sid=SMS_SID, sender="+14155550142", to="+14155550199", seed="conformance"
    )
    headers = {
        "X-Twilio-Signature": sms_sign(SMS_TOKEN, SMS_URL, parse_qsl(body.decode())),
        "Content-Type": "application/x-www-form-urlencoded",
    }
    return yaml_for(fake) + entry, body, headers


def _vonage_sms(fake: FakeDesk, text: str) -> tuple[str, bytes, dict[str, str]]:
    """The account's SMS channel on Vonage, and a customer's signed webhook."""
    entry = {
        "type": "sms",
        "provider": "vonage",
        "api_key": "a1b2c3d4",
        "api_secret": "vonage-api-secret",
        "signature_secret": VONAGE_SECRET,
        "application_id": VONAGE_APP,
        "private_key": VONAGE_KEY,
        "webhook_url": SMS_URL,
        "default_sender": "+14155550100",
        "base_url": "https://vonage.test",
    }
    body = vonage.sample_inbound(
        text, sender="+14155550142", to="+14155550199", seed="conformance", now=time.time()
    )
    token = vonage.sign(VONAGE_SECRET, body, api_key="a1b2c3d4", application_id=VONAGE_APP)
    headers = {"Authorization": token, "Content-Type": "application/json"}
    return yaml_for(fake) + "      - " + json.dumps(entry) + "\n", body, headers


def _twilio_sent(content: bytes) -> tuple[str, str, str]:
    form = parse_qs(content.decode())
    return form["To"][0], form["From"][0], form["Body"][0]


def _vonage_sent(content: bytes) -> tuple[str, str, str]:
    doc = json.loads(content)
    return "+" + doc["to"], "+" + doc["from"], doc["text"]


SMS_PROVIDERS: dict[str, Any] = {
    "twilio": (_twilio_sms, SMS_API, (201, {"sid": "SM" + "a" * 32}), _twilio_sent),
    "vonage": (_vonage_sms, VONAGE_API, (202, {"message_uuid": VONAGE_APP}), _vonage_sent),
}


@pytest.mark.parametrize("provider", sorted(SMS_PROVIDERS))
async def test_an_sms_customer_is_filed_and_answered_from_the_number_they_wrote_to(
    provider: str, fake: FakeDesk, make_runtime: Any, aiohttp_client: Any, respx_mock: Any
) -> None:
    channel, api, (status, answer), read_sent = SMS_PROVIDERS[provider]
    respx_mock.route(host="127.0.0.1").pass_through()
    send = respx_mock.post(api).respond(status, json=answer)
    yaml_text, body, headers = channel(fake, "Where is my parcel?")
    rt = make_runtime(yaml_text)
    fake.bind(rt)
    client = await aiohttp_client(create_app(rt, role="serve"))
    for _ in range(2):  # a redelivery files once
        assert (await client.post("/webhooks/sms/acme", data=body, headers=headers)).status == 200
    await drain(rt)
    await refresh(fake)
    [ticket] = fake.tickets()
    assert [p.text.strip() for p in ticket.parts if p.author == "user"] == ["Where is my parcel?"]
    await fake.agent_reply(client, rt, ticket.id, "It arrives tomorrow.", None)
    await drain(rt)
    [out] = await deliveries(rt, Direction.OUTBOUND)
    assert out.state is DeliveryState.DELIVERED
    [(to, sender, text)] = [read_sent(c.request.content) for c in send.calls]
    assert (to, sender) == ("+14155550142", "+14155550199")
    assert text.strip() == "It arrives tomorrow."


WEBCHAT_ORIGIN = "https://shop.example.com"


def yaml_with_webchat(fake: FakeDesk) -> str:
    return yaml_for(fake) + (
        f"""      - type: webchat
        secret: webchat-visitor-secret-0123456789
        allowed_origins: ["{WEBCHAT_ORIGIN}"]
"""
    )


async def test_a_widget_visitor_is_filed_and_answered_on_their_socket(
    fake: FakeDesk, make_runtime: Any, aiohttp_client: Any, respx_mock: Any
) -> None:
    respx_mock.route(host="127.0.0.1").pass_through()
    rt = make_runtime(yaml_with_webchat(fake))
    fake.bind(rt)
    client = await aiohttp_client(create_app(rt, role="serve"))
    ws = await client.ws_connect("/widget/v1/acme/socket", origin=WEBCHAT_ORIGIN)
    await ws.send_json({"type": "hello", "visitor": None, "after": 0})
    assert (await ws.receive_json(timeout=5))["type"] == "welcome"
    for _ in range(2):  # a resend after a reconnect files once
        await ws.send_json({"type": "message", "id": "conformance-1", "text": "Is it in stock?"})
        assert (await ws.receive_json(timeout=5))["type"] in ("ack", "message")
    await drain(rt)
    await refresh(fake)
    [ticket] = fake.tickets()
    assert [p.text.strip() for p in ticket.parts if p.author == "user"] == ["Is it in stock?"]
    await fake.agent_reply(client, rt, ticket.id, "Yes, two left.", None)
    await drain(rt)
    [out] = await deliveries(rt, Direction.OUTBOUND)
    assert out.state is DeliveryState.DELIVERED
    states: dict[str, str] = {}
    while (frame := await ws.receive_json(timeout=5)).get("role") != "agent":
        states.update(frame.get("states", {}))
    assert frame["text"].strip() == "Yes, two left."
    assert states == {"conformance-1": "delivered"}  # filed at the desk
    # the agent's reply says they read it, on every desk
    status = await ws.receive_json(timeout=5)
    assert status == {"type": "status", "states": {"conformance-1": "read"}}
    await ws.close()
