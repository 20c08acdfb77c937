"""One kept raw request through the admin API, the CLI and the console: its sealed
fields (the body, header and query values that name the sender) only for a token with
``contacts:read``, and their opening audited."""

from __future__ import annotations

import json

from deskbridge.adapters.telegram import sample_update
from deskbridge.gateway import create_app
from deskbridge.gateway.admin.routes import PREFIX
from deskbridge.store import keys

from .conftest import redis_of
from .test_admin_api import SECRET, auth, token
from .test_admin_cli import run
from .test_console import EVERY, console, sign_in
from .test_gateway import signed

SENDER = 987654321
WORDS = "Ana's secret words"
PEER = "203.0.113.77"
SEALED = (WORDS, str(SENDER), PEER, "tracking-ref-5550")
READ = ("deliveries:read", "deliveries:write", "audit:read")


async def kept(client) -> str:
    """A Telegram update posted to the gateway: the id of its kept raw request."""
    body = sample_update(WORDS, update_id=4001, chat_id=SENDER, user_id=SENDER, date=1_750_000_000)
    headers = {**signed(), "X-Forwarded-For": PEER}
    resp = await client.post(
        "/webhooks/telegram/acme?ref=tracking-ref-5550", data=body, headers=headers
    )
    assert resp.status == 200
    [raw] = await redis_of(client.rt).zrange(keys.raws("acme", "telegram"), 0, -1)
    return raw.decode()


async def show(client, raw_id: str, *scopes: str):
    resp = await client.get(f"{PREFIX}/events/{raw_id}", headers=auth(token(*scopes)))
    return resp.status, await resp.json()


async def test_the_api_opens_sealed_fields_only_with_contacts_read(
    make_runtime, aiohttp_client
) -> None:
    rt = make_runtime(admin_jwt_secret=SECRET)
    client = await aiohttp_client(create_app(rt, role="serve"))
    client.rt = rt
    raw_id = await kept(client)

    status, shut = await show(client, raw_id, *READ)
    assert status == 200
    assert shut["body"] is None and "contacts:read" in shut["redacted"]
    assert shut["headers"]["x-forwarded-for"] is None and shut["query"] == {"ref": None}
    assert shut["headers"]["content-type"] == "application/json"  # names nobody
    assert shut["source"] == "telegram" and shut["size"] > 0 and not shut["parse_failed"]
    text = json.dumps(shut)
    assert not any(s in text for s in SEALED)
    assert "x-telegram-bot-api-secret-token" not in text  # never kept at all
    assert await rt.audit.read(limit=5) == ([], None)  # a redacted read is not audited

    status, opened = await show(client, raw_id, *READ, "contacts:read")
    assert status == 200 and opened["redacted"] is None
    assert opened["body_encoding"] == "utf-8" and WORDS in opened["body"]
    assert opened["headers"]["x-forwarded-for"] == PEER and opened["query"] == {
        "ref": "tracking-ref-5550"
    }
    entries, _ = await rt.audit.read(limit=5)
    assert [(x.who, x.action, x.details) for x in entries] == [
        ("ops@test", "events.show", {"account": "acme", "id": raw_id})
    ]

    status, missing = await show(client, "0" * 32, *READ)
    assert status == 404 and missing["error"] == "not_found"
    status, _ = await show(client, raw_id, "contacts:read")
    assert status == 403
    # a token limited to another account cannot see it: the same 404 as no such request
    status, hidden = await show(client, raw_id, *READ, "contacts:read", "account:globex")
    assert status == 404 and not any(s in json.dumps(hidden) for s in SEALED)
    entries, _ = await rt.audit.read(limit=5)
    assert len(entries) == 1  # only the opened read


async def test_the_cli_shows_a_raw_request(make_runtime, aiohttp_server, aiohttp_client) -> None:
    rt = make_runtime(admin_jwt_secret=SECRET)
    server = await aiohttp_server(create_app(rt, role="serve"))
    url = str(server.make_url("")).rstrip("/")
    client = await aiohttp_client(server)
    client.rt = rt
    raw_id = await kept(client)

    shut = await run("events", "show", raw_id, "--url", url, tok=token(*READ))
    assert shut.exit_code == 0, shut.output
    assert "telegram" in shut.stdout and "(redacted)" in shut.stdout
    assert "contacts:read" in shut.stderr
    assert not any(s in shut.output for s in SEALED)
    opened = await run(
        "events", "show", raw_id, "--json", "--url", url, tok=token(*READ, "contacts:read")
    )
    assert opened.exit_code == 0 and WORDS in json.loads(opened.stdout)["body"]
    missing = await run("events", "show", "0" * 32, "--url", url, tok=token(*READ))
    assert missing.exit_code != 0 and "no kept raw request" in missing.output


async def test_the_console_page_of_one_raw_request(make_runtime, aiohttp_client) -> None:
    client = await console(make_runtime, aiohttp_client)
    raw_id = await kept(client)
    await sign_in(client, token(*(s for s in EVERY if not s.startswith("contacts:"))))
    listing = await client.get("/console/events")
    assert f'href="/console/events/{raw_id}"' in await listing.text()
    page = await client.get(f"/console/events/{raw_id}")
    assert page.status == 200
    text = await page.text()
    assert "Redacted" in text and "contacts:read" in text and "x-forwarded-for" in text
    assert not any(s in text for s in SEALED)
    assert "unsafe-inline" not in page.headers["Content-Security-Policy"]

    client.session.cookie_jar.clear()
    await sign_in(client, token(*EVERY))
    page = await client.get(f"/console/events/{raw_id}")
    text = await page.text()
    assert page.status == 200 and "Ana&#x27;s secret words" in text and PEER in text
    assert len(text.encode()) < 200_000
    entries, _ = await client.rt.audit.read(limit=5)
    assert entries[0].action == "events.show"
    missing = await client.get("/console/events/" + "0" * 32)
    assert missing.status == 404


async def test_a_large_body_keeps_the_page_under_200_kb(make_runtime, aiohttp_client) -> None:
    client = await console(make_runtime, aiohttp_client)
    body = sample_update('"<&>' * 15_000, update_id=4002, chat_id=7, user_id=7, date=1_750_000_000)
    resp = await client.post("/webhooks/telegram/acme", data=body, headers=signed())
    assert resp.status == 200
    [raw] = await redis_of(client.rt).zrange(keys.raws("acme", "telegram"), 0, -1)
    await sign_in(client, token(*EVERY))
    page = await client.get(f"/console/events/{raw.decode()}")
    text = await page.text()
    assert page.status == 200 and len(text.encode()) < 200_000
    assert "The first 25,000 characters; the admin API gives it whole." in text
