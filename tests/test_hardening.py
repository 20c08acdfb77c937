"""Hardening of the entrances: verify before parse, JSON shape limits, failed-auth
throttling, the SSRF guard of untrusted downloads, sandbox pages, request ids."""

from __future__ import annotations

import io
import json
import logging
import time

import httpx
import pytest
from aiohttp import web

from deskbridge.adapters.payload import MAX_DEPTH, MAX_ITEMS, loads
from deskbridge.adapters.telegram import sample_update
from deskbridge.errors import PermanentError
from deskbridge.gateway import create_app
from deskbridge.gateway.sandbox import SECURITY_HEADERS
from deskbridge.gateway.state import AUTH_FAILURES
from deskbridge.gateway.throttle import FailedAuth
from deskbridge.http import Fetcher, GuardedTransport, UnsafeAddress, address_allowed
from deskbridge.logs import REQUEST_ID, JsonFormatter, RequestIdFilter
from deskbridge.outbound.zendesk import webhook as zd_webhook

from .conftest import TG_SECRET, ZD_SECRET, ZENDESK_YAML

URL = "/webhooks/telegram/acme"
SIGNED = {"X-Telegram-Bot-Api-Secret-Token": TG_SECRET, "Content-Type": "application/json"}


def deep(n: int) -> bytes:
    return b'{"a":' * n + b"1" + b"}" * n


# --- JSON shape limits --------------------------------------------------------------------


def test_loads_accepts_up_to_the_limits() -> None:
    assert loads(deep(MAX_DEPTH - 1)) is not None
    assert len(loads(b"[" + b",".join([b"1"] * (MAX_ITEMS - 1)) + b"]")) == MAX_ITEMS - 1


@pytest.mark.parametrize(
    "body",
    [
        deep(MAX_DEPTH + 1),
        b"[" * 100_000,
        b"[" * 100_000 + b"]" * 100_000,
        # pydantic-core refuses the lone surrogate, so json.loads sees the deep body
        b'["\\ud800",' + b"[" * 5000 + b"]" * 5001,
        b"[" + b",".join([b"1"] * (MAX_ITEMS + 1)) + b"]",
    ],
    ids=["depth", "open", "closed", "fallback", "count"],
)
def test_loads_refuses_past_the_limits(body: bytes) -> None:
    with pytest.raises(ValueError, match="JSON"):
        loads(body)


# --- the routes ---------------------------------------------------------------------------


@pytest.fixture
async def client(make_runtime, aiohttp_client):
    return await aiohttp_client(create_app(make_runtime(), role="serve"))


async def test_deep_body_is_verified_first_then_refused(client, redis) -> None:
    body = deep(10_000)
    bad = await client.post(
        URL, data=body, headers={**SIGNED, "X-Telegram-Bot-Api-Secret-Token": "x"}
    )
    assert bad.status == 401
    good = await client.post(URL, data=body, headers=SIGNED)
    assert good.status == 400
    assert await redis.dbsize() == 0


async def test_unknown_account_is_answered_like_a_bad_signature(client) -> None:
    body = sample_update("hi", update_id=1, chat_id=1, user_id=1, date=1_750_000_000)
    wrong = await client.post(URL, data=body, headers={"X-Telegram-Bot-Api-Secret-Token": "x"})
    unknown = await client.post("/webhooks/telegram/nobody", data=body, headers=SIGNED)
    desk = await client.post("/desks/zendesk/nobody", data=body)
    assert wrong.status == unknown.status == desk.status == 401
    assert await wrong.read() == await unknown.read() == await desk.read()


async def test_failed_auth_is_throttled_per_source_but_verified_traffic_never(
    make_runtime, aiohttp_client, redis
) -> None:
    # the limits come from settings (DESKBRIDGE_FAILED_AUTH_BURST / _PER_MINUTE)
    app = create_app(make_runtime(failed_auth_burst=3, failed_auth_per_minute=1), role="serve")
    assert app[AUTH_FAILURES].burst == 3
    client = await aiohttp_client(app)
    body = sample_update("hi", update_id=7, chat_id=1, user_id=1, date=1_750_000_000)
    bad = {"X-Telegram-Bot-Api-Secret-Token": "wrong"}
    statuses = [(await client.post(URL, data=body, headers=bad)).status for _ in range(5)]
    assert statuses == [401, 401, 401, 429, 429]
    throttled = await client.post(URL, data=body, headers=bad)
    assert throttled.headers["Retry-After"] == "60"
    for i in range(5):
        ok = await client.post(
            URL,
            data=sample_update("hi", update_id=100 + i, chat_id=1, user_id=1, date=1_750_000_000),
            headers=SIGNED,
        )
        assert ok.status == 200
    metrics = await (await client.get("/metrics")).text()
    assert (
        'deskbridge_events_total{outcome="rejected",reason="throttled",source="telegram"} 3.0'
        in metrics
    )


def test_failed_auth_buckets_refill_and_are_bounded() -> None:
    now = [0.0]
    limiter = FailedAuth(burst=2, per_minute=60, max_sources=2, clock=lambda: now[0])
    assert [limiter.failed("a") for _ in range(3)] == [False, False, True]
    now[0] += 1.0
    assert limiter.failed("a") is False
    limiter.failed("b")
    limiter.failed("c")
    assert len(limiter._buckets) == 2


async def test_zendesk_callback_checks_signature_and_time_window_before_parsing(
    make_runtime, aiohttp_client, redis
) -> None:
    client = await aiohttp_client(create_app(make_runtime(ZENDESK_YAML), role="serve"))

    def headers(body: bytes, ts: str) -> dict[str, str]:
        return {
            zd_webhook.SIGNATURE_HEADER: zd_webhook.sign(ZD_SECRET, ts, body),
            zd_webhook.TIMESTAMP_HEADER: ts,
        }

    body = deep(10_000)
    stale = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 3600))
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    assert (await client.post("/desks/zendesk/acme", data=body)).status == 401
    assert (
        await client.post("/desks/zendesk/acme", data=body, headers=headers(body, stale))
    ).status == 401
    assert (
        await client.post("/desks/zendesk/acme", data=body, headers=headers(body, now))
    ).status == 400
    big = b" " * (1024 * 1024 + 1)
    assert (
        await client.post("/desks/zendesk/acme", data=io.BytesIO(big), headers=headers(big, now))
    ).status == 413
    assert await redis.dbsize() == 0


# --- request ids and logs -----------------------------------------------------------------


async def test_request_id_is_echoed_or_made(client) -> None:
    given = await client.get("/healthz", headers={"X-Request-Id": "abc-123"})
    assert given.headers["X-Request-Id"] == "abc-123"
    made = await client.get("/healthz", headers={"X-Request-Id": "bad id\u00e9"})
    assert len(made.headers["X-Request-Id"]) == 32
    missing = await client.get("/nowhere")
    assert missing.status == 404 and missing.headers["X-Request-Id"]


def test_json_log_lines_carry_the_request_id() -> None:
    record = logging.LogRecord("deskbridge.x", logging.INFO, __file__, 1, "hello %s", ("w",), None)
    token = REQUEST_ID.set("rid-1")
    try:
        RequestIdFilter().filter(record)
    finally:
        REQUEST_ID.reset(token)
    line = json.loads(JsonFormatter().format(record))
    assert line["msg"] == "hello w" and line["request_id"] == "rid-1"
    assert line["level"] == "INFO" and line["logger"] == "deskbridge.x"


# --- sandbox pages ------------------------------------------------------------------------


async def test_sandbox_pages_carry_security_headers_and_a_csrf_form(client) -> None:
    resp = await client.get("/sandbox/")
    assert resp.status == 200
    for name, value in SECURITY_HEADERS.items():
        assert resp.headers[name] == value
    assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]
    refused = await client.post("/sandbox/acme/tickets/1/reply", data={"text": "x", "csrf": "no"})
    assert refused.status == 403
    assert refused.headers["X-Frame-Options"] == "DENY"


@pytest.mark.parametrize(
    ("yaml_name", "setting", "status"),
    [
        ("zendesk", None, 404),
        ("zendesk", True, 200),
        ("sandbox", None, 200),
        ("sandbox", False, 404),
    ],
)
async def test_sandbox_pages_are_off_unless_asked(
    make_runtime, aiohttp_client, yaml_name, setting, status
) -> None:
    from .conftest import DEMO_YAML

    yaml_text = ZENDESK_YAML if yaml_name == "zendesk" else DEMO_YAML
    rt = make_runtime(yaml_text, sandbox_pages=setting)
    client = await aiohttp_client(create_app(rt, role="serve"))
    assert (await client.get("/sandbox/")).status == status


# --- SSRF guard ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ip", "allowed"),
    [
        ("93.184.216.34", True),
        ("2606:2800:220:1:248:1893:25c8:1946", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("0.0.0.0", False),  # noqa: S104 - an address to refuse, not to bind
        ("224.0.0.1", False),
        ("240.0.0.1", False),
        ("255.255.255.255", False),
        ("::1", False),
        ("::", False),
        ("fe80::1%eth0", False),
        ("fc00::1", False),
        ("ff02::1", False),
        ("::ffff:127.0.0.1", False),
        ("::ffff:169.254.169.254", False),
        ("64:ff9b::a9fe:a9fe", False),
        ("2002:7f00:1::", False),
        ("not an ip", False),
    ],
)
def test_address_allowed(ip: str, allowed: bool) -> None:
    assert address_allowed(ip) is allowed


@pytest.fixture
async def local_server(aiohttp_server):
    """Serves /file, and /redirect to another loopback origin."""

    async def file(request: web.Request) -> web.Response:
        return web.Response(body=b"data", content_type="image/png")

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(request.query["to"])

    app = web.Application()
    app.router.add_get("/file", file)
    app.router.add_get("/redirect", redirect)
    return await aiohttp_server(app, host="127.0.0.1", port=0)


async def test_guarded_transport_refuses_loopback(local_server) -> None:
    async with httpx.AsyncClient(transport=GuardedTransport()) as guarded:
        with pytest.raises(UnsafeAddress):
            await guarded.get(str(local_server.make_url("/file")))
        with pytest.raises(UnsafeAddress):
            await guarded.get(f"http://localhost:{local_server.port}/file")


async def test_a_redirect_into_loopback_is_refused_when_the_origin_was_untrusted(
    local_server,
) -> None:
    trusted = str(local_server.make_url("/"))
    target = f"http://localhost:{local_server.port}/file"  # another origin: untrusted
    url = httpx.URL(str(local_server.make_url("/redirect")), params={"to": target})
    async with httpx.AsyncClient() as plain, Fetcher(plain, [trusted]) as fetcher:
        first = await fetcher.client_for(url).get(url)
        assert first.status_code == 302 and fetcher.trusted(url)
        hop = url.join(first.headers["location"])
        assert not fetcher.trusted(hop)
        with pytest.raises(UnsafeAddress):
            await fetcher.client_for(hop).get(hop)
        # the trusted origin itself still serves, on loopback
        ok = await fetcher.client_for(httpx.URL(trusted + "file")).get(trusted + "file")
        assert ok.content == b"data"
        with pytest.raises(UnsafeAddress):
            fetcher.client_for(httpx.URL("file:///etc/passwd"))


async def test_zendesk_fetch_refuses_a_redirect_off_the_desk_into_loopback(
    local_server,
) -> None:
    from deskbridge.config import parse_accounts
    from deskbridge.outbound.zendesk.connector import ZendeskConnector
    from deskbridge.schemas import Attachment

    base = str(local_server.make_url("")).rstrip("/")
    yaml_text = ZENDESK_YAML.replace("https://acme.zendesk.test", base)
    config = parse_accounts(yaml_text).accounts["acme"].desk
    target = f"http://localhost:{local_server.port}/file"
    async with httpx.AsyncClient() as plain:
        zd = ZendeskConnector("acme", config, plain)  # type: ignore[arg-type]
        own = await zd.fetch(Attachment(kind="document", ref=f"{base}/file"))
        assert own.data == b"data"
        ref = str(httpx.URL(f"{base}/redirect", params={"to": target}))
        with pytest.raises(PermanentError):
            await zd.fetch(Attachment(kind="document", ref=ref))
