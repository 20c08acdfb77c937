"""End to end in one process: a signed Telegram webhook becomes a desk ticket, and the
agent's reply on that ticket becomes a Telegram sendMessage."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from datetime import UTC, datetime
from typing import Any

from deskbridge.adapters.telegram import sample_update
from deskbridge.gateway import create_app
from deskbridge.outbound.zendesk.webhook import sign
from deskbridge.pipeline import run_worker
from deskbridge.schemas import Channel

from .conftest import TEST_REDIS_URL, TG_SECRET, TG_TOKEN, ZD_SECRET, ZENDESK_YAML, drain, redis_of

ZD = "https://acme.zendesk.test/api/v2"
TG = f"https://tg.test/bot{TG_TOKEN}"


def telegram_headers() -> dict[str, str]:
    return {"X-Telegram-Bot-Api-Secret-Token": TG_SECRET, "Content-Type": "application/json"}


def zendesk_comment(
    ticket_id: int,
    comment_id: int,
    body: str,
    *,
    staff: bool = True,
    files: list[dict[str, Any]] | None = None,
    listed: bool = True,
) -> bytes:
    """A signed-shape ``comment_added`` event. Zendesk's carries no ``attachments``
    (``listed=False``: deskbridge then reads them from List Comments); ``listed=True``
    puts ``files`` (default none) in the event, for tests not about that read."""
    author_id = "9001" if staff else "501"
    extra = {"attachments": files or []} if listed else {}
    return json.dumps(
        {
            "type": "zen:event-type:ticket.comment_added",
            "account_id": 1,
            "id": f"evt-{comment_id}",
            "time": datetime.now(UTC).isoformat(),
            "zendesk_event_version": "2022-11-06",
            "subject": f"zen:ticket:{ticket_id}",
            "detail": {"id": str(ticket_id), "requester_id": "501", "status": "OPEN"},
            "event": {
                "comment": {
                    "id": str(comment_id),
                    "body": body,
                    "is_public": True,
                    "author": {"id": author_id, "is_staff": staff, "name": "Sam Agent"},
                    **extra,
                }
            },
        }
    ).encode()


def zendesk_headers(body: bytes) -> dict[str, str]:
    ts = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "X-Zendesk-Webhook-Signature": sign(ZD_SECRET, ts, body),
        "X-Zendesk-Webhook-Signature-Timestamp": ts,
        "Content-Type": "application/json",
    }


async def test_telegram_to_zendesk_and_back(
    make_runtime, aiohttp_client, respx_mock, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    rt = make_runtime(ZENDESK_YAML)
    client = await aiohttp_client(create_app(rt, role="serve"))
    user = respx_mock.post(f"{ZD}/users/create_or_update").respond(201, json={"user": {"id": 501}})
    respx_mock.get(f"{ZD}/users/501/identities").respond(
        200, json={"identities": [], "next_page": None}
    )
    create = respx_mock.post(f"{ZD}/tickets").respond(
        201,
        json={
            "ticket": {"id": 77, "status": "new"},
            "audit": {"events": [{"type": "Comment", "id": 1001}]},
        },
    )
    update = respx_mock.put(f"{ZD}/tickets/77").respond(
        200,
        json={
            "ticket": {"id": 77, "status": "open"},
            "audit": {"events": [{"type": "Comment", "id": 1002}]},
        },
    )
    send = respx_mock.post(f"{TG}/sendMessage").respond(
        200, json={"ok": True, "result": {"message_id": 555, "date": 1, "chat": {"id": 42}}}
    )
    # comment_added carries no files: the comment's are read from List Comments
    comments = respx_mock.get(f"{ZD}/tickets/77/comments").respond(
        200,
        json={
            "comments": [{"id": 2001, "body": "It ships today, Ana.", "attachments": []}],
            "meta": {"has_more": False, "after_cursor": None},
        },
    )

    # 1. two customer messages, the first one twice (Telegram retried)
    first = sample_update(
        "Where is my order?", update_id=9001, chat_id=42, user_id=42, first_name="Ana"
    )
    second = sample_update(
        "It was due Monday.", update_id=9002, chat_id=42, user_id=42, first_name="Ana"
    )
    for body in (first, first, second):
        resp = await client.post("/webhooks/telegram/acme", data=body, headers=telegram_headers())
        assert resp.status == 200
    await drain(rt)

    assert user.call_count == 1
    sent_user = json.loads(user.calls[0].request.content)["user"]
    assert "role" not in sent_user and sent_user["name"] == "Ana"
    assert create.call_count == 1
    ticket = json.loads(create.calls[0].request.content)["ticket"]
    assert ticket["requester_id"] == ticket["submitter_id"] == ticket["comment"]["author_id"] == 501
    assert ticket["comment"]["body"] == "Where is my order?"
    assert ticket["comment"]["public"] is True
    assert create.calls[0].request.headers["Idempotency-Key"]
    conv_id = rt.conversations.conversation_id("acme", Channel.TELEGRAM, "42")
    assert ticket["external_id"] == conv_id
    assert update.call_count == 1
    comment = json.loads(update.calls[0].request.content)["ticket"]["comment"]
    assert comment == {"body": "It was due Monday.", "author_id": 501, "public": True}

    # 2. the agent answers; Zendesk posts the signed event (twice: webhooks may repeat)
    reply = zendesk_comment(77, 2001, "It ships today, Ana.", listed=False)
    for _ in range(2):
        resp = await client.post("/desks/zendesk/acme", data=reply, headers=zendesk_headers(reply))
        assert resp.status == 200
    # an end-user comment (ours, or the customer's on the web) is never relayed
    echo = zendesk_comment(77, 1002, "It was due Monday.", staff=False)
    assert (
        await client.post("/desks/zendesk/acme", data=echo, headers=zendesk_headers(echo))
    ).status == 200
    # a tampered body is refused
    bad = await client.post(
        "/desks/zendesk/acme", data=reply + b" ", headers=zendesk_headers(reply)
    )
    assert bad.status == 401
    await drain(rt)

    assert send.call_count == 1
    assert json.loads(send.calls[0].request.content) == {
        "chat_id": 42,
        "text": "It ships today, Ana.",
    }
    assert comments.call_count == 1
    assert comments.calls[0].request.url.params["sort_order"] == "desc"


async def test_telegram_through_the_sandbox_desk(make_runtime, aiohttp_client, respx_mock) -> None:
    rt = make_runtime()
    client = await aiohttp_client(create_app(rt, role="serve"))
    send = respx_mock.post(f"{TG}/sendMessage").respond(
        200, json={"ok": True, "result": {"message_id": 9, "date": 1, "chat": {"id": 42}}}
    )
    body = sample_update("hello sandbox", update_id=1, chat_id=42, user_id=42, first_name="Bo")
    assert (
        await client.post("/webhooks/telegram/acme", data=body, headers=telegram_headers())
    ).status == 200
    await drain(rt)

    index = await (await client.get("/sandbox/")).text()
    assert "hello sandbox" in index and "Bo" in index
    page = await (await client.get("/sandbox/acme/tickets/1")).text()
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found is not None
    csrf = found.group(1)

    forged = await client.post(
        "/sandbox/acme/tickets/1/reply", data={"csrf": "x", "text": "hi"}, allow_redirects=False
    )
    assert forged.status == 403
    resp = await client.post(
        "/sandbox/acme/tickets/1/reply",
        data={"csrf": csrf, "text": "Hi Bo!"},
        allow_redirects=False,
    )
    assert resp.status == 303
    await drain(rt)
    assert json.loads(send.calls[0].request.content) == {"chat_id": 42, "text": "Hi Bo!"}
    t = await rt.sandbox.ticket("acme", "1")
    assert [(m.author, m.text) for m in t.messages] == [
        ("customer", "hello sandbox"),
        ("agent", "Hi Bo!"),
    ]


async def _kill_clients_of_this_db(redis: Any) -> None:
    """``CLIENT KILL`` of this database's other connections only: other test runs may
    share the server on other database numbers."""
    own = await redis.client_id()
    db = redis.connection_pool.connection_kwargs.get("db", 0)
    for client in await redis.client_list():
        if int(client["db"]) == db and int(client["id"]) != own:
            await redis.client_kill_filter(_id=client["id"])


async def wait_delivered(rt, count: int, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        keys_ = [
            k
            for k in await redis_of(rt).keys("db:{acme}:dlv:*")
            if not k.endswith((b":attempts", b":parts"))
        ]
        # redis-py types async commands as `Awaitable[T] | T`
        states = [await redis_of(rt).hget(k, "state") for k in keys_]  # type: ignore[misc]
        if states.count(b"delivered") >= count:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"not delivered within {within}s")


async def test_supervised_worker_survives_dropped_redis_connections(
    make_runtime, aiohttp_client, redis
) -> None:
    rt = make_runtime()
    client = await aiohttp_client(create_app(rt, role="run"))
    worker = asyncio.create_task(run_worker(rt, TEST_REDIS_URL))
    try:
        body = sample_update("one", update_id=5, chat_id=7, user_id=7)
        await client.post("/webhooks/telegram/acme", data=body, headers=telegram_headers())
        await wait_delivered(rt, 1)
        assert (await client.get("/readyz")).status == 200  # heartbeat written
        # drop every connection but this test's own, as a Redis restart or failover would
        await _kill_clients_of_this_db(redis)
        body = sample_update("two", update_id=6, chat_id=7, user_id=7)
        for _ in range(50):  # the gateway's own pool reconnects on the next command
            resp = await client.post(
                "/webhooks/telegram/acme", data=body, headers=telegram_headers()
            )
            if resp.status == 200:
                break
            await asyncio.sleep(0.1)
        await wait_delivered(rt, 2)
    finally:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
    [ticket] = await rt.sandbox.tickets("acme")
    assert [m.text for m in ticket.messages] == ["one", "two"]
