"""The gateway in-process: acknowledgement only after storage, refusals change nothing."""

from __future__ import annotations

import io
import json

import pytest

from deskbridge.adapters.telegram import sample_update
from deskbridge.gateway import create_app
from deskbridge.gateway.admin import mint
from deskbridge.store import keys

from .conftest import TG_SECRET

URL = "/webhooks/telegram/acme"


def update(update_id: int = 1001, text: str = "hello") -> bytes:
    return sample_update(text, update_id=update_id, chat_id=42, user_id=42, date=1_750_000_000)


def signed(secret: str = TG_SECRET) -> dict[str, str]:
    return {"X-Telegram-Bot-Api-Secret-Token": secret, "Content-Type": "application/json"}


async def state(redis) -> dict[str, int]:
    """Counts of stored events (an event record, or a delivery whose event is kept as its
    raw request until the worker parses it: the deferred parse), deliveries and keys."""
    names = [k.decode() for k in await redis.keys("*")]
    events = {n.rsplit(":", 1)[1] for n in names if ":evt:" in n}
    for n in names:
        if ":dlv:" in n and n.count(":") == 3 and await redis.hexists(n, "item"):
            events.add(n.rsplit(":", 1)[1])
    return {
        "events": len(events),
        "deliveries": sum(":dlv:" in n and not n.endswith(":attempts") for n in names),
        "keys": len(names),
    }


@pytest.fixture
async def client(make_runtime, aiohttp_client):
    rt = make_runtime()
    return await aiohttp_client(create_app(rt, role="serve"))


async def test_good_secret_stores_one_event_and_acks(client, redis) -> None:
    resp = await client.post(URL, data=update(), headers=signed())
    assert resp.status == 200
    assert await resp.json() == {"ok": True}
    assert (await state(redis))["events"] == 1
    assert await redis.zcard(keys.ARQ_QUEUE) == 1


async def test_same_update_twice_is_stored_once(client, redis) -> None:
    for _ in range(2):
        resp = await client.post(URL, data=update(), headers=signed())
        assert resp.status == 200
    s = await state(redis)
    assert s["events"] == 1 and s["deliveries"] == 1
    metrics = await (await client.get("/metrics")).text()
    assert 'deskbridge_events_total{outcome="duplicate",reason="",source="telegram"} 1.0' in metrics


@pytest.mark.parametrize(
    ("path", "headers", "body", "status"),
    [
        (URL, signed("wrong-secret"), update(), 401),
        (URL, {"Content-Type": "application/json"}, update(), 401),
        ("/webhooks/telegram/nobody", signed(), update(), 401),
        ("/webhooks/whatsapp/acme", signed(), update(), 401),
        (URL, signed(), b'{"update_id": 1, "message": {"mess', 400),
        (URL, signed(), b"[1, 2]", 400),
        (URL, signed(), b"x" * (1024 * 1024 + 1), 413),
    ],
    ids=[
        "bad-secret",
        "no-secret",
        "unknown-account",
        "unknown-channel",
        "truncated",
        "not-object",
        "oversized",
    ],
)
async def test_refusals_change_no_state(client, redis, path, headers, body, status) -> None:
    resp = await client.post(path, data=io.BytesIO(body), headers=headers)
    assert resp.status == status
    assert (await state(redis))["keys"] == 0
    metrics = await (await client.get("/metrics")).text()
    assert 'outcome="rejected"' in metrics


async def test_unknown_account_and_bad_secret_look_the_same(client) -> None:
    a = await client.post("/webhooks/telegram/nobody", data=update(), headers=signed())
    b = await client.post(URL, data=update(), headers=signed("nope"))
    assert (a.status, await a.read()) == (b.status, await b.read())


async def test_oversized_chunked_body_is_refused(client, redis) -> None:
    async def chunks():
        for _ in range(20):
            yield b"x" * 65536

    resp = await client.post(URL, data=chunks(), headers=signed())
    assert resp.status == 413
    assert (await state(redis))["keys"] == 0


async def test_verified_but_unparseable_is_kept_as_dead_letter(client, redis) -> None:
    resp = await client.post(URL, data=b'{"update_id": "not-a-number"}', headers=signed())
    assert resp.status == 200
    dead = await redis.zrange(keys.dead("acme"), 0, -1)
    assert len(dead) == 1
    assert (await state(redis))["events"] == 0


async def test_valid_update_we_do_not_handle_is_acked_without_state(client, redis) -> None:
    body = json.dumps(
        {"update_id": 5, "poll": {"id": "1", "question": "?", "options": []}}
    ).encode()
    resp = await client.post(URL, data=body, headers=signed())
    assert resp.status == 200
    # nothing to deliver: only the ignored item's record and its raw request (invariant 10)
    names = sorted(k.decode() for k in await redis.keys("*"))
    assert (await state(redis))["deliveries"] == (await state(redis))["events"] == 0
    assert await redis.zcard(keys.ARQ_QUEUE) == 0
    assert [n.split(":")[2] for n in names] == ["ign", "ignz", "raw", "rawz"]


async def test_redis_down_answers_503(make_runtime, aiohttp_client, redis) -> None:
    from deskbridge.store import Intake, connect

    rt = make_runtime()
    down = connect("redis://127.0.0.1:1/0")
    rt.intake = Intake(down, rt.vault, dedup_ttl=60, raw_ttl=60, job_expiry_ms=1000)
    client = await aiohttp_client(create_app(rt, role="serve"))
    resp = await client.post(URL, data=update(), headers=signed())
    assert resp.status == 503
    await down.aclose()


async def test_health_and_readiness(client, make_runtime, aiohttp_client) -> None:
    assert await (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status == 200
    # the world learns ready or not (and the region): no account, desk or channel
    assert await ready.json() == {"status": "ready", "region": None}
    # the details are the admin API's, scope ops:read
    secret = "admin-secret-for-tests-0123456789abcdef"
    ops = mint(
        secret,
        algorithm="HS256",
        subject="ops@test",
        scopes=["ops:read"],
        ttl_seconds=600,
        audience="deskbridge-admin",
    )
    admin = await aiohttp_client(create_app(make_runtime(admin_jwt_secret=secret), role="serve"))
    detail = await admin.get("/admin/v1/health", headers={"Authorization": f"Bearer {ops}"})
    assert detail.status == 200
    body = await detail.json()
    assert body["checks"] == {"redis": "ok"}
    assert body["accounts"]["acme"] == {"desk": "sandbox", "channels": ["telegram"]}
    assert (await admin.get("/admin/v1/health")).status == 401
    # in `run`, readiness also needs a live worker heartbeat
    rt = make_runtime(admin_jwt_secret=secret)
    run_client = await aiohttp_client(create_app(rt, role="run"))
    not_ready = await run_client.get("/readyz")
    assert not_ready.status == 503
    assert await not_ready.json() == {"status": "not ready", "region": None}
    detail = await run_client.get("/admin/v1/health", headers={"Authorization": f"Bearer {ops}"})
    assert (await detail.json())["checks"]["worker"] == "no heartbeat"


async def test_metrics_count_requests_by_route(client) -> None:
    await client.post(URL, data=update(), headers=signed())
    text = await (await client.get("/metrics")).text()
    assert (
        'deskbridge_http_requests_total{route="/webhooks/{channel}/{account}",status="200"} 1.0'
        in text
    )
    assert "deskbridge_queue_depth 1.0" in text


async def test_sandbox_channel_api_needs_the_bot_token(make_runtime, aiohttp_client) -> None:
    demo = """
accounts:
  acme:
    desk: {type: sandbox}
    channels:
      - {type: telegram, bot_token: "1:abc", secret_token: s, sandbox: true}
"""
    client = await aiohttp_client(create_app(make_runtime(demo), role="serve"))
    ok = await client.post(
        "/sandbox/channel-api/acme/telegram/bot1:abc/sendMessage", json={"chat_id": 1, "text": "hi"}
    )
    assert ok.status == 200 and (await ok.json())["ok"] is True
    bad = await client.post(
        "/sandbox/channel-api/acme/telegram/bot1:xyz/sendMessage", json={"chat_id": 1, "text": "hi"}
    )
    assert bad.status == 401
