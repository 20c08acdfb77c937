"""Udesk desk connector against the fake Udesk (tests/desks/fake_udesk.py), its shared
token bucket and state on a real Redis, the poller and the trigger callback."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from deskbridge.adapters.telegram import sample_update
from deskbridge.config import UdeskDeskConfig
from deskbridge.errors import PayloadInvalid, PermanentError, RetryableError, SignatureInvalid
from deskbridge.flows import csat
from deskbridge.flows.polling import poll_once
from deskbridge.gateway import create_app
from deskbridge.metrics import Metrics
from deskbridge.outbound import DeskConnector
from deskbridge.outbound.udesk import UdeskConnector, sign
from deskbridge.outbound.udesk.replies import NOTE_MARK, TRIGGER_SHAPE, agent_replies
from deskbridge.outbound.udesk.sign import signed_query
from deskbridge.schemas import (
    Attachment,
    Channel,
    Contact,
    ConversationRef,
    Desk,
    Identity,
    Message,
    RawRequest,
    Sender,
    Upload,
)
from deskbridge.store import Vault
from deskbridge.store.crypto import decode_key
from deskbridge.store.packing import unpack
from deskbridge.store.tokens import RedisTokenCache
from deskbridge.store.udesk import RedisUdeskState

from .conftest import TEST_KEY, TG_SECRET, TG_TOKEN, drain
from .desks.fake_udesk import ADMIN, PASSWORD, SECRET, FakeUdesk
from .test_responders import sample

TG = f"https://tg.test/bot{TG_TOKEN}"


@pytest.fixture
async def fake() -> AsyncIterator[FakeUdesk]:
    desk = FakeUdesk(limit_per_minute=600, burst=100)
    await desk.start()
    yield desk
    await desk.stop()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5) as client:
        yield client


def config(fake: FakeUdesk, **extra: Any) -> UdeskDeskConfig:
    values: dict[str, Any] = {
        "base_url": fake.url,
        "email": ADMIN,
        "password": PASSWORD,
        "callback_secret": SECRET,
        "requests_per_minute": 600,
        "burst": 100,
    }
    values.update(extra)
    return UdeskDeskConfig(**values)


def connector(
    fake: FakeUdesk,
    http: httpx.AsyncClient,
    redis: aioredis.Redis,
    metrics: Metrics | None = None,
    **extra: Any,
) -> UdeskConnector:
    vault = Vault.from_secret(decode_key(TEST_KEY))
    return UdeskConnector(
        "acme",
        config(fake, **extra),
        http,
        tokens=RedisTokenCache(redis, vault),
        state=RedisUdeskState(redis, vault),
        metrics=metrics,
    )


def contact(*identities: Identity, name: str | None = "Ann Lee") -> Contact:
    tg = Identity(kind="channel_user", value="42", channel=Channel.TELEGRAM, strength="strong")
    return Contact(
        id="c-1",
        account="acme",
        display_name=name,
        identities=(tg, *identities),
        created_at=datetime.now(UTC),
    )


def message(text: str, n: int = 1) -> Message:
    return Message(
        account="acme",
        channel=Channel.TELEGRAM,
        dedup_key=f"m{n}",
        thread="42",
        occurred_at=datetime.now(UTC),
        external_id=f"m{n}",
        sender=Sender(external_id="42", display_name="Ann Lee"),
        text=text,
    )


def conv(ticket_id: str | None = None) -> ConversationRef:
    return ConversationRef(
        id="conv-1",
        account="acme",
        channel=Channel.TELEGRAM,
        ticket_id=ticket_id,
        contact_id="c-1",
        subject="",
    )


# -- signing and tokens -------------------------------------------------------------------


def test_sign_matches_a_fixed_example() -> None:
    token = "11111111-2222-3333-4444-555555555555"
    nonce = "6f1c7c9e-2b1d-4a8e-9d3f-0c2b7a5e4d11"
    expected = "ac4114203a9b361f905b457fdea90bb367bffdc785a2ad46e897c1f7bcf98e59"
    assert sign("admin@acme.test", token, 1700000000, nonce) == expected
    query = signed_query("admin@acme.test", token, 1700000000, nonce)
    assert query == {
        "email": "admin@acme.test",
        "timestamp": "1700000000",
        "nonce": nonce,
        "sign_version": "v2",
        "sign": expected,
    }


def test_satisfies_the_desk_connector_protocol(
    fake: FakeUdesk, http: httpx.AsyncClient, redis: aioredis.Redis
) -> None:
    c: DeskConnector = connector(fake, http, redis)
    assert c.desk is Desk.UDESK


def test_config_needs_one_credential_and_a_host() -> None:
    with pytest.raises(ValueError, match="exactly one of password or open_api_token"):
        UdeskDeskConfig(subdomain="acme", email=ADMIN)
    with pytest.raises(ValueError, match="subdomain or base_url"):
        UdeskDeskConfig(email=ADMIN, password="x")
    cfg = UdeskDeskConfig(subdomain="acme", region="global", email=ADMIN, open_api_token="t")
    assert cfg.api_base() == "https://acme.udeskglobal.com"


async def test_logs_in_once_and_renews_the_token_when_refused(
    fake: FakeUdesk, http: httpx.AsyncClient, redis: aioredis.Redis
) -> None:
    first = connector(fake, http, redis)
    second = connector(fake, http, redis)  # another worker: shares the token through Redis
    await first.ensure_user(contact())
    await second.ensure_user(contact())
    assert fake.logins == 1
    fake.expire_token()
    await second.ensure_user(contact())
    assert fake.logins == 2
    codes = [status for _, path, status in fake.calls() if path.endswith("get_customer")]
    assert 2001 in codes and codes[-1] == 200
    stored = await redis.get("deskbridge:token:udesk.acme")
    assert stored and fake.token.encode() not in stored  # sealed at rest


async def test_a_static_token_refused_is_permanent(
    fake: FakeUdesk, http: httpx.AsyncClient, redis: aioredis.Redis
) -> None:
    c = connector(fake, http, redis, password=None, open_api_token="not-the-token")
    with pytest.raises(PermanentError) as err:
        await c.ensure_user(contact())
    assert err.value.status == 401 and fake.logins == 0


async def test_every_call_has_a_fresh_nonce(
    fake: FakeUdesk, http: httpx.AsyncClient, redis: aioredis.Redis
) -> None:
    c = connector(fake, http, redis)
    for _ in range(3):
        await c.ensure_user(contact())
    assert all(status == 200 for _, _, status in fake.calls())


# -- customers, tickets, replies, files ---------------------------------------------------


async def test_a_new_customer_carries_every_phone_and_email(
    fake: FakeUdesk, http: httpx.AsyncClient, redis: aioredis.Redis
) -> None:
    c = connector(fake, http, redis)
    who = contact(
        Identity(kind="phone", value="+8613600000001", strength="strong"),
        Identity(kind="phone", value="+8613600000002", strength="strong"),
        Identity(kind="email", value="ann@example.com", strength="strong"),
        Identity(kind="email", value="ann@work.example", strength="strong"),
    )
    customer_id = await c.ensure_user(who)
    [(_, body)] = [b for b in fake.bodies if b[0].endswith("/customers")]
    assert body == {
        "customer": {
            "nick_name": "Ann Lee",
            "web_token": "c-1",
            "cellphones": [[None, "+8613600000001"], [None, "+8613600000002"]],
            "email": "ann@example.com",
        },
        "other_emails": [[None, "ann@work.example"]],
    }
    [user] = fake.users()
    assert user.id == customer_id and user.external_id == "c-1"
    assert await c.ensure_user(who) == customer_id  # found by our id: nothing created


async def test_a_customer_found_by_email_gets_our_id_and_missing_phones(
    fake: FakeUdesk, http: httpx.AsyncClient, redis: aioredis.Redis
) -> None:
    c = connector(fake, http, redis)
    email = Identity(kind="email", value="ann@example.com", strength="strong")
    other = contact(email)
    first = await c.ensure_user(other.model_copy(update={"id": "c-0"}))
    phone = Identity(kind="phone", value="+8613600000009", strength="strong")
    assert await c.ensure_user(contact(email, phone)) == first
    [user] = fake.users()
    assert user.external_id == "c-1" and user.phones == ["+8613600000009"]


async def test_first_message_opens_a_ticket_later_ones_are_customer_replies(
    fake: FakeUdesk, http: httpx.AsyncClient, redis: aioredis.Redis
) -> None:
    c = connector(fake, http, redis)
    user = await c.ensure_user(contact())
    first = await c.append(
        conv(), user, message("Where is my order?"), [], idempotency_key="k1", retried=False
    )
    [(_, created)] = [b for b in fake.bodies if b[0].endswith("/tickets")]
    assert created["ticket"]["type"] == "id" and created["ticket"]["type_content"] == user
    assert created["ticket"]["content"] == "Where is my order?"
    assert first.message_id == f"ticket:{first.ticket_id}"
    second = await c.append(
        conv(first.ticket_id), user, message("Order 42", 2), [], idempotency_key="k2", retried=False
    )
    [(_, reply)] = [b for b in fake.bodies if b[0].endswith("/replies")]
    assert reply == {
        "reply": {"content": "Order 42", "user_type": "customer", "customer_id": int(user)}
    }
    again = await c.append(
        conv(first.ticket_id), user, message("Order 42", 2), [], idempotency_key="k2", retried=True
    )
    assert again == second  # remembered: not filed twice
    [ticket] = fake.tickets()
    assert [(p.author, p.text) for p in ticket.parts] == [
        ("user", "Where is my order?"),
        ("user", "Order 42"),
    ]


async def test_a_success_code_without_a_reply_id_is_delivered_with_the_id_unknown(
    fake: FakeUdesk, http: httpx.AsyncClient, redis: aioredis.Redis
) -> None:
    c = connector(fake, http, redis)
    user = await c.ensure_user(contact())
    first = await c.append(conv(), user, message("Hi"), [], idempotency_key="k1", retried=False)
    fake.reply_ids = False
    filed = await c.append(
        conv(first.ticket_id), user, message("Order 42", 2), [], idempotency_key="k2", retried=False
    )
    assert filed.ticket_id == first.ticket_id
    assert filed.message_id == f"unknown-reply:{first.ticket_id}"
    # a replay finds the memo: the reply is never posted twice
    again = await c.append(
        conv(first.ticket_id), user, message("Order 42", 2), [], idempotency_key="k2", retried=True
    )
    assert again == filed
    [ticket] = fake.tickets()
    assert [p.text for p in ticket.parts].count("Order 42") == 1


@pytest.mark.parametrize("replies", ["author", "marked"])
async def test_a_reply_in_doubt_is_found_in_the_replies_list_not_posted_again(
    replies: str, fake: FakeUdesk, http: httpx.AsyncClient, redis: aioredis.Redis
) -> None:
    c = connector(fake, http, redis, customer_replies=replies)
    user = await c.ensure_user(contact())
    first = await c.append(conv(), user, message("Hi"), [], idempotency_key="k1", retried=False)
    await c.append(
        conv(first.ticket_id),
        user,
        message("Same words", 2),
        [],
        idempotency_key="k2",
        retried=False,
    )
    fake.fault("dropped", "append")
    with pytest.raises(RetryableError) as lost:
        await c.append(
            conv(first.ticket_id),
            user,
            message("Same words", 3),
            [],
            idempotency_key="k3",
            retried=False,
        )
    assert lost.value.outcome == "unknown"
    # the poller reads the ticket meanwhile: the customer's reply is not remembered as seen
    await c.mark_seen(await c.poll_ticket(first.ticket_id, urgent=True))
    filed = await c.append(
        conv(first.ticket_id),
        user,
        message("Same words", 3),
        [],
        idempotency_key="k3",
        retried=True,
        in_doubt=True,
    )
    assert filed.resent is None and not filed.message_id.startswith("unknown")
    [ticket] = fake.tickets()
    # the earlier identical message (k2) is known as filed: it is not taken for k3's
    assert sum("Same words" in p.text for p in ticket.parts) == 2


async def test_a_ticket_in_doubt_is_created_again_and_says_so(
    fake: FakeUdesk, http: httpx.AsyncClient, redis: aioredis.Redis
) -> None:
    c = connector(fake, http, redis)
    user = await c.ensure_user(contact())
    fake.fault("timed_out", "create")
    quick = httpx.AsyncClient(timeout=0.3)
    try:
        with pytest.raises(RetryableError):
            await UdeskConnector(
                "acme",
                config(fake),
                quick,
                tokens=RedisTokenCache(redis, Vault.from_secret(decode_key(TEST_KEY))),
                state=RedisUdeskState(redis, Vault.from_secret(decode_key(TEST_KEY))),
            ).append(conv(), user, message("Hi"), [], idempotency_key="k1", retried=False)
    finally:
        await quick.aclose()
    filed = await c.append(
        conv(), user, message("Hi"), [], idempotency_key="k1", retried=True, in_doubt=True
    )
    assert filed.resent == "udesk create ticket"
    assert len(fake.tickets()) == 2  # Udesk offers no way to find the first one


async def test_marked_replies_name_the_customer(
    fake: FakeUdesk, http: httpx.AsyncClient, redis: aioredis.Redis
) -> None:
    c = connector(fake, http, redis, customer_replies="marked")
    user = await c.ensure_user(contact())
    filed = await c.append(conv(), user, message("Hi"), [], idempotency_key="k1", retried=False)
    await c.append(
        conv(filed.ticket_id),
        user,
        message("Still there?", 2),
        [],
        idempotency_key="k2",
        retried=False,
    )
    [(_, reply)] = [b for b in fake.bodies if b[0].endswith("/replies")]
    assert reply["reply"]["content"].startswith("[Ann Lee via Telegram · deskbridge]\n\n")
    assert "user_type" not in reply["reply"]


async def test_files_are_uploaded_to_the_ticket_once(
    fake: FakeUdesk, http: httpx.AsyncClient, redis: aioredis.Redis
) -> None:
    c = connector(fake, http, redis)
    user = await c.ensure_user(contact())
    files = [
        Upload("invoice.pdf", "application/pdf", b"%PDF-1.4"),
        Upload("a.jpg", "image/jpeg", b"\xff"),
    ]
    fake.fail(503, times=0)
    filed = await c.append(
        conv(), user, message("Files"), files, idempotency_key="k1", retried=False
    )
    uploads = [(p, q) for (m, p, q) in fake.calls() if p.endswith("upload_file")]
    assert len(uploads) == 2
    assert [b for p, b in fake.bodies if p.endswith("upload_file")] == [b"%PDF-1.4", b"\xff"]
    await c.append(conv(), user, message("Files"), files, idempotency_key="k1", retried=True)
    assert len([p for (_, p, _) in fake.calls() if p.endswith("upload_file")]) == 2
    [ticket] = fake.tickets()
    assert ticket.id == filed.ticket_id and ticket.parts[0].attachments == ["invoice.pdf", "a.jpg"]


async def test_add_note_is_a_marked_private_reply_never_relayed(
    fake: FakeUdesk, http: httpx.AsyncClient, redis: aioredis.Redis
) -> None:
    c = connector(fake, http, redis)
    user = await c.ensure_user(contact())
    filed = await c.append(conv(), user, message("Hi"), [], idempotency_key="k1", retried=False)
    await c.add_note(conv(filed.ticket_id), "could not deliver")
    [(_, note)] = [b for b in fake.bodies if b[0].endswith("/replies")]
    assert note == {"reply": {"content": f"{NOTE_MARK} could not deliver", "public": False}}
    polled = await c.poll_ticket(filed.ticket_id, urgent=True)
    assert polled.replies == []
    with pytest.raises(PermanentError):
        await c.add_note(conv(None), "no ticket")


async def test_fetch_downloads_an_agent_file_within_the_cap(
    fake: FakeUdesk, http: httpx.AsyncClient, redis: aioredis.Redis
) -> None:
    c = connector(fake, http, redis, max_attachment_bytes=10)
    user = await c.ensure_user(contact())
    filed = await c.append(conv(), user, message("Hi"), [], idempotency_key="k1", retried=False)
    fake.add_agent_reply(filed.ticket_id, "Label", ("label.pdf", b"%PDF", "application/pdf"))
    [reply] = (await c.poll_ticket(filed.ticket_id, urgent=True)).replies
    got = await c.fetch(reply.attachments[0])
    assert (got.filename, got.mime_type, got.data) == ("label.pdf", "application/pdf", b"%PDF")
    big = fake.add_agent_reply(
        filed.ticket_id, "Big", ("big.bin", b"x" * 11, "application/octet-stream")
    )
    with pytest.raises(PermanentError, match="over the 10-byte limit"):
        await c.fetch(Attachment(kind="document", ref=f"{fake.url}/files/{big}"))


# -- errors -------------------------------------------------------------------------------


async def test_errors_map_to_retryable_and_permanent(
    fake: FakeUdesk, http: httpx.AsyncClient, redis: aioredis.Redis
) -> None:
    c = connector(fake, http, redis)
    await c.ensure_user(contact())
    fake.fail(503, times=1)
    with pytest.raises(RetryableError):
        await c.ensure_user(contact())
    fake.fail(429, times=1)
    with pytest.raises(RetryableError) as err:
        await c.ensure_user(contact())
    assert err.value.status == 429 and err.value.retry_after == 1.0
    fake.fail(429, times=1, headers={})
    with pytest.raises(RetryableError) as err:
        await c.ensure_user(contact())
    assert err.value.retry_after == 60.0
    user = await c.ensure_user(contact())
    with pytest.raises(PermanentError, match="code 3001"):
        await c.append(conv("999999"), user, message("x"), [], idempotency_key="k", retried=False)


async def test_over_the_fakes_minute_is_a_rate_limit(
    http: httpx.AsyncClient, redis: aioredis.Redis
) -> None:
    small = FakeUdesk(limit_per_minute=3, burst=1)
    await small.start()
    try:
        # our budget is set too high on purpose: Udesk's refusal must still be retryable
        c = connector(small, http, redis, requests_per_minute=600, burst=100)
        await c.ensure_user(contact())  # log_in, lookup, create: the fake's 3 a minute
        with pytest.raises(RetryableError) as err:
            await c.ensure_user(contact())
        assert err.value.status == 429
        assert [s for _, _, s in small.calls()][-1] == 429
    finally:
        await small.stop()


# -- the shared rate budget ---------------------------------------------------------------


async def test_the_bucket_is_shared_by_connectors_on_one_redis(
    fake: FakeUdesk, http: httpx.AsyncClient, redis: aioredis.Redis
) -> None:
    metrics = Metrics()
    a = connector(fake, http, redis, metrics, requests_per_minute=60, burst=5, max_wait_seconds=0)
    b = connector(fake, http, redis, metrics, requests_per_minute=60, burst=5, max_wait_seconds=0)
    await a.ensure_user(contact())  # log_in, lookup, create: 3 tokens
    await b.ensure_user(contact())  # one lookup (the Udesk token is shared too): 1 token
    await a.ensure_user(contact())  # the last token
    with pytest.raises(RetryableError) as err:
        await b.ensure_user(contact())
    assert err.value.retry_after is not None and err.value.retry_after >= 1.0
    assert err.value.status is None  # our own deferral, not Udesk's 429
    deferred = metrics.registry.get_sample_value(
        "deskbridge_desk_rate_deferred_total", {"account": "acme", "desk": "udesk"}
    )
    assert deferred == 1.0
    assert len(fake.calls()) == 5  # the deferred call never reached Udesk


async def test_the_poller_never_takes_the_tokens_deliveries_need(
    fake: FakeUdesk, http: httpx.AsyncClient, redis: aioredis.Redis
) -> None:
    from deskbridge.outbound.udesk.connector import NoBudget

    c = connector(fake, http, redis, requests_per_minute=60, burst=6, poll_share=0.5)
    user = await c.ensure_user(contact())  # 3 of 6 tokens: 3 left, the reserve
    with pytest.raises(NoBudget):
        await c.poll_ticket("1")
    await c.append(conv(), user, message("Hi"), [], idempotency_key="k", retried=False)


# -- agent replies: poller and callback ---------------------------------------------------


def test_reply_list_keeps_public_agent_replies_only() -> None:
    items = [
        {
            "id": 3,
            "content": "<p>Ships <b>today</b></p>",
            "content_type": "html",
            "public": True,
            "created_at": "2024-05-01 10:00:05 +0800",
            "author": {"user_type": "agent", "nick_name": "Sam"},
        },
        {
            "id": 2,
            "content": "Where is it?",
            "created_at": "2024-05-01 10:00:00 +0800",
            "author": {"user_type": "customer"},
        },
        {"id": 4, "content": "internal", "public": False, "author": {"user_type": "agent"}},
        {"id": 5, "content": f"{NOTE_MARK} x", "author": {"user_type": "agent"}},
        {
            "id": 6,
            "content": "[Ann via Telegram · deskbridge]\n\nhi",
            "author": {"user_type": "agent"},
        },
        {"id": 7, "content": "old", "author": {"user_type": "agent"}},
    ]
    replies, seen = agent_replies("acme", "9", items, skip={"7"})
    assert [(r.external_id, r.text, r.author_name) for r in replies] == [
        ("3", "Ships today", "Sam")
    ]
    assert replies[0].dedup_key == "reply:9:3"
    assert seen == ["3", "2", "4", "5", "6"]


def raw(body: bytes, secret: str | None = SECRET) -> RawRequest:
    query = {"secret": secret} if secret is not None else {}
    return RawRequest(method="POST", path="/desks/udesk/acme", query=query, headers={}, body=body)


def test_callback_secret_is_checked(
    fake: FakeUdesk, http: httpx.AsyncClient, redis: aioredis.Redis
) -> None:
    c = connector(fake, http, redis)
    c.verify_webhook(raw(b"{}"))
    for bad in (None, "", "wrong"):
        with pytest.raises(SignatureInvalid):
            c.verify_webhook(raw(b"{}", bad))
    without = connector(fake, http, redis, callback_secret=None)
    with pytest.raises(SignatureInvalid):
        without.verify_webhook(raw(b"{}"))


def test_trigger_body_becomes_an_agent_reply(
    fake: FakeUdesk, http: httpx.AsyncClient, redis: aioredis.Redis
) -> None:
    c = connector(fake, http, redis)
    body = {
        "deskbridge": TRIGGER_SHAPE,
        "ticket_id": "77",
        "reply_id": "901",
        "content": "Hello from Udesk",
        "user_type": "agent",
        "author_name": "Sam",
        "public": "true",
        "created_at": "2024-05-01 10:00:00 +0800",
    }
    [reply] = c.parse_webhook(raw(json.dumps(body).encode()))
    assert (reply.ticket_id, reply.external_id, reply.dedup_key) == ("77", "901", "reply:77:901")
    customer = {**body, "user_type": "customer"}
    assert c.parse_webhook(raw(json.dumps(customer).encode())) == []
    nudge = {"deskbridge": TRIGGER_SHAPE, "ticket_id": "77"}
    assert c.parse_webhook(raw(json.dumps(nudge).encode())) == []
    event = {"action": "Customer_create", "message": {"id": 1}}
    assert c.parse_webhook(raw(json.dumps(event).encode())) == []
    with pytest.raises(PayloadInvalid):
        c.parse_webhook(raw(b"not json"))


# -- end to end through the runtime -------------------------------------------------------


def udesk_yaml(fake: FakeUdesk) -> str:
    return f"""
accounts:
  acme:
    desk: {fake.desk_yaml()}
    channels:
      - type: telegram
        bot_token: "{TG_TOKEN}"
        secret_token: "{TG_SECRET}"
        base_url: https://tg.test
"""


async def say(client: Any, text: str, update_id: int) -> None:
    resp = await client.post(
        "/webhooks/telegram/acme",
        data=sample_update(text, update_id=update_id, chat_id=42, user_id=42),
        headers={"X-Telegram-Bot-Api-Secret-Token": TG_SECRET, "Content-Type": "application/json"},
    )
    assert resp.status == 200


async def test_end_to_end_polled_reply_is_relayed_exactly_once_and_never_echoed(
    fake: FakeUdesk, make_runtime: Any, aiohttp_client: Any, respx_mock: Any
) -> None:
    respx_mock.route(host="127.0.0.1").pass_through()
    send = respx_mock.post(f"{TG}/sendMessage").respond(
        200, json={"ok": True, "result": {"message_id": 555, "date": 1, "chat": {"id": 42}}}
    )
    rt = make_runtime(udesk_yaml(fake))
    client = await aiohttp_client(create_app(rt, role="serve"))
    await say(client, "Where is my parcel?", 9001)
    await say(client, "Order 42", 9002)
    await drain(rt)
    [ticket] = fake.tickets()
    assert [p.text for p in ticket.parts] == ["Where is my parcel?", "Order 42"]
    assert await poll_once(rt, "acme", urgent=True) == 0  # our own messages: nothing
    reply_id = fake.add_agent_reply(ticket.id, "It ships today.")
    assert await poll_once(rt, "acme", urgent=True) == 1
    assert await poll_once(rt, "acme", urgent=True) == 0  # remembered
    # the same reply through a trigger callback is a duplicate, not a second message
    body = {
        "deskbridge": TRIGGER_SHAPE,
        "ticket_id": ticket.id,
        "reply_id": reply_id,
        "content": "It ships today.",
        "user_type": "agent",
    }
    resp = await client.post(f"/desks/udesk/acme?secret={SECRET}", data=json.dumps(body))
    assert resp.status == 200
    resp = await client.post("/desks/udesk/acme?secret=wrong", data=json.dumps(body))
    assert resp.status == 401
    await drain(rt)
    assert send.call_count == 1
    assert "It ships today." in send.calls[0].request.content.decode()


async def test_a_callback_is_stored_without_its_secret_query_parameter(
    fake: FakeUdesk, make_runtime: Any, aiohttp_client: Any, respx_mock: Any, redis: Any
) -> None:
    """Udesk proves a trigger callback with ``?secret=``: the raw record kept for
    re-ingest holds the body and path, never the secret (issue 15)."""
    respx_mock.route(host="127.0.0.1").pass_through()
    respx_mock.post(f"{TG}/sendMessage").respond(
        200, json={"ok": True, "result": {"message_id": 556, "date": 1, "chat": {"id": 42}}}
    )
    rt = make_runtime(udesk_yaml(fake))
    client = await aiohttp_client(create_app(rt, role="serve"))
    await say(client, "Where is my parcel?", 9101)
    await drain(rt)
    [ticket] = fake.tickets()
    body = {
        "deskbridge": TRIGGER_SHAPE,
        "ticket_id": ticket.id,
        "reply_id": "r-77",
        "content": "On its way.",
        "user_type": "agent",
    }
    resp = await client.post(f"/desks/udesk/acme?secret={SECRET}", data=json.dumps(body))
    assert resp.status == 200
    raw_keys = await redis.keys("db:{acme}:raw:*")
    blobs = [unpack(rt.vault.open(await redis.get(k), k.decode())) for k in raw_keys]
    from_udesk = [b for b in blobs if b"/desks/udesk/acme" in b]
    assert len(from_udesk) == 1
    assert SECRET.encode() not in from_udesk[0]
    assert b'"query":{}' in from_udesk[0]


async def test_the_poller_schedules_the_survey_of_a_solved_ticket_once(
    fake: FakeUdesk, make_runtime: Any, aiohttp_client: Any, respx_mock: Any
) -> None:
    """Udesk pushes no status change: the poller reads each active ticket's
    ``status_id`` (2 resolved, 3 closed) and a solved one gets its survey once."""
    respx_mock.route(host="127.0.0.1").pass_through()
    respx_mock.post(f"{TG}/sendMessage").respond(
        200, json={"ok": True, "result": {"message_id": 557, "date": 1, "chat": {"id": 42}}}
    )
    rt = make_runtime(udesk_yaml(fake) + "    csat: {delay_minutes: 0}\n")
    client = await aiohttp_client(create_app(rt, role="serve"))
    await say(client, "Where is my parcel?", 9201)
    await drain(rt)
    [ticket] = fake.tickets()
    fake.status[ticket.id] = 4  # solving
    await poll_once(rt, "acme", urgent=True)
    assert sample(rt.metrics.csat_surveys, outcome="scheduled") == 0
    fake.status[ticket.id] = 2  # resolved
    await poll_once(rt, "acme", urgent=True)
    assert sample(rt.metrics.csat_surveys, outcome="scheduled") == 1
    details = sum(1 for _, path, _ in fake.calls() if path.endswith("/tickets/detail"))
    await poll_once(rt, "acme", urgent=True)  # handled: its status is not read again
    assert sum(1 for _, path, _ in fake.calls() if path.endswith("/tickets/detail")) == details
    assert sample(rt.metrics.csat_surveys, outcome="scheduled") == 1
    assert await csat.send_due(rt) == 1


async def test_the_poller_reads_no_status_without_csat(
    fake: FakeUdesk, make_runtime: Any, aiohttp_client: Any, respx_mock: Any
) -> None:
    respx_mock.route(host="127.0.0.1").pass_through()
    rt = make_runtime(udesk_yaml(fake))
    client = await aiohttp_client(create_app(rt, role="serve"))
    await say(client, "Where is my parcel?", 9301)
    await drain(rt)
    [ticket] = fake.tickets()
    fake.status[ticket.id] = 3
    await poll_once(rt, "acme", urgent=True)
    assert not any(path.endswith("/tickets/detail") for _, path, _ in fake.calls())
