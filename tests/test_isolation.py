"""Tenant isolation and per-item isolation in batches (DESIGN invariant 9).

One Meta app serves two accounts (two WhatsApp numbers, two Pages). A batch carrying a
good and a bad message for each, plus a change that names no number: the good ones are
filed, each bad one is a dead letter of its owner only, the unowned part is kept under
the app; and no account-limited admin token (API or CLI) lists, shows, exports,
replays or re-ingests anything of another account.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import quote

import pytest
from jose import jwt

from deskbridge.adapters.meta import sign
from deskbridge.gateway import create_app
from deskbridge.gateway.admin import PREFIX
from deskbridge.schemas import DeliveryState

from .conftest import LINE_SECRET, drain
from .test_admin_api import AUD, SECRET, auth, token
from .test_admin_cli import run

APP_SECRET = "isolation-meta-app-secret"
WA_ACME = "200000000000011"
WA_GLOBEX = "200000000000022"
PAGE_ACME = "300000000000011"
PAGE_GLOBEX = "300000000000022"
NOW = 1_750_000_000

YAML = f"""
apps:
  meta:
    type: meta
    app_secret: "{APP_SECRET}"
    verify_token: isolation-verify
accounts:
  acme:
    desk: {{type: sandbox}}
    channels:
      - type: whatsapp
        app: meta
        phone_number_id: "{WA_ACME}"
        access_token: wa-acme-token
        base_url: https://graph.test
      - type: messenger
        app: meta
        page_id: "{PAGE_ACME}"
        page_access_token: page-acme-token
        base_url: https://graph.test
  globex:
    desk: {{type: sandbox}}
    channels:
      - type: whatsapp
        app: meta
        phone_number_id: "{WA_GLOBEX}"
        access_token: wa-globex-token
        base_url: https://graph.test
      - type: messenger
        app: meta
        page_id: "{PAGE_GLOBEX}"
        page_access_token: page-globex-token
        base_url: https://graph.test
"""

MARKS = {
    "acme": ("ACME-OK-TEXT", "ACME-BAD-TEXT"),
    "globex": ("GLOBEX-OK-TEXT", "GLOBEX-BAD-TEXT"),
}
UNOWNED = "UNOWNED-TEXT"
READ = ("deliveries:read", "deliveries:write", "contacts:read")


def tokens() -> dict[str, str]:
    return {
        "acme": token(*READ, "account:acme"),
        "globex": token(*READ, "account:globex"),
        "app": token(*READ, "app:meta"),
        "all": token(*READ),
    }


def headers(body: bytes) -> dict[str, str]:
    return {"X-Hub-Signature-256": sign(APP_SECRET, body), "Content-Type": "application/json"}


def _wa_message(wa_id: str, mid: str, text: str, *, bad: bool = False) -> dict[str, Any]:
    # a timestamp that is no time at all: that message cannot be read (a JSON number is
    # read, as Meta's SDKs read it: issue 17)
    when: Any = "yesterday" if bad else str(NOW)
    return {"from": wa_id, "id": mid, "timestamp": when, "type": "text", "text": {"body": text}}


def _wa_change(number: str, wa_id: str, prefix: str, ok: str, bad: str) -> dict[str, Any]:
    return {
        "field": "messages",
        "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550001111", "phone_number_id": number},
            "contacts": [{"profile": {"name": "Customer"}, "wa_id": wa_id}],
            "messages": [
                _wa_message(wa_id, f"wamid.{prefix}OK", ok),
                _wa_message(wa_id, f"wamid.{prefix}BAD", bad, bad=True),
            ],
        },
    }


def whatsapp_batch() -> bytes:
    unowned = {"field": "messages", "value": {"messages": [{"text": {"body": UNOWNED}}]}}
    doc = {
        "object": "whatsapp_business_account",
        "entry": [
            {"id": "1001", "changes": [_wa_change(WA_ACME, "16505550101", "A", *MARKS["acme"])]},
            {
                "id": "1002",
                "changes": [_wa_change(WA_GLOBEX, "16505550202", "G", *MARKS["globex"])],
            },
            {"id": "1003", "changes": [unowned]},
        ],
    }
    return json.dumps(doc).encode()


def _page_entry(page: str, psid: str, prefix: str, ok: str, bad: str) -> dict[str, Any]:
    def event(mid: str, text: str, ts: Any) -> dict[str, Any]:
        return {
            "sender": {"id": psid},
            "recipient": {"id": page},
            "timestamp": ts,
            "message": {"mid": mid, "text": text},
        }

    return {
        "id": page,
        "time": NOW * 1000,
        # a negative timestamp cannot be read
        "messaging": [event(f"m_{prefix}OK", ok, NOW * 1000), event(f"m_{prefix}BAD", bad, -1)],
    }


def messenger_batch() -> bytes:
    doc = {
        "object": "page",
        "entry": [
            _page_entry(PAGE_ACME, "7100000000000011", "A", *MARKS["acme"]),
            _page_entry(PAGE_GLOBEX, "7100000000000022", "G", *MARKS["globex"]),
            {"time": NOW * 1000, "messaging": [{"message": {"text": UNOWNED}}]},
        ],
    }
    return json.dumps(doc).encode()


@pytest.fixture
async def gateway(make_runtime, aiohttp_client):
    rt = make_runtime(YAML, admin_jwt_secret=SECRET)
    client = await aiohttp_client(create_app(rt, role="serve"))
    client.rt = rt
    return client


async def _get(client, path: str, tok: str, **params: str) -> tuple[int, Any]:
    resp = await client.get(PREFIX + path, params=params, headers=auth(tok))
    return resp.status, await resp.json()


async def _post(client, path: str, tok: str, body: object) -> tuple[int, Any]:
    resp = await client.post(PREFIX + path, json=body, headers=auth(tok))
    return resp.status, await resp.json()


async def _deliveries(client, tok: str) -> list[dict[str, Any]]:
    status, body = await _get(client, "/deliveries", tok, limit="500")
    assert status == 200, body
    return body["deliveries"]


async def _raw_bodies(client, tok: str) -> list[tuple[dict[str, Any], bytes]]:
    status, body = await _get(client, "/events", tok, limit="500")
    assert status == 200, body
    out = []
    for entry in body["events"]:
        found = await client.rt.listing.raw(entry["account"], entry["id"])
        assert found is not None
        out.append((entry, found[1]))
    return out


async def _batch_in(client, channel: str, body: bytes) -> None:
    resp = await client.post(f"/webhooks/{channel}", data=body, headers=headers(body))
    assert resp.status == 200
    await drain(client.rt)


async def _check_isolation(client, channel: str) -> dict[str, list[dict[str, Any]]]:
    """Every token sees its own scope's deliveries and raw records, and nothing else."""
    toks = tokens()
    seen = {name: await _deliveries(client, tok) for name, tok in toks.items()}
    for account in ("acme", "globex"):
        mine = seen[account]
        assert {d["account"] for d in mine} == {account}
        states = sorted((d["state"], d.get("reason")) for d in mine)
        assert states == [("dead", "parse_failed"), ("delivered", None)], states
        assert all(d["channel"] == channel for d in mine)
    assert [(d["account"], d["reason"]) for d in seen["app"]] == [("app:meta", "parse_failed")]
    assert len(seen["all"]) == 5

    for name, tok in toks.items():
        if name == "all":
            continue
        for entry, body in await _raw_bodies(client, tok):
            text = body.decode()
            others = {k: v for k, v in MARKS.items() if k != name}
            assert all(m not in text for marks in others.values() for m in marks), entry
            if name in MARKS:
                assert entry["account"] == name and UNOWNED not in text
                if entry["parse_failed"]:
                    # the dead letter holds the bad item alone, not its good sibling
                    assert MARKS[name][1] in text and MARKS[name][0] not in text
            elif name == "app":
                assert entry["account"] == "app:meta" and UNOWNED in text
    return seen


async def _check_refusals(client, seen: dict[str, list[dict[str, Any]]]) -> None:
    """acme's token can neither read nor act on globex's or the app's deliveries."""
    toks = tokens()
    acme = toks["acme"]
    for other in [*seen["globex"], *seen["app"]]:
        assert (await _get(client, f"/deliveries/{other['id']}", acme))[0] == 404
        status, body = await _get(client, f"/deliveries/{other['id']}", acme, account="globex")
        assert status == 400 and "no account" in body["message"]
    other_ids = [d["id"] for d in [*seen["globex"], *seen["app"]]]
    status, body = await _post(client, "/deliveries/lookup", acme, {"ids": other_ids})
    assert (
        status == 200 and body["deliveries"] == [] and sorted(body["missing"]) == sorted(other_ids)
    )
    status, body = await _post(client, "/deliveries/replay", acme, {"ids": other_ids})
    assert status == 200 and body["replayed"] == [] and sorted(body["missing"]) == sorted(other_ids)
    status, body = await _post(
        client, "/deliveries/replay", acme, {"filter": {"account": "globex"}, "dry_run": True}
    )
    assert status == 400
    status, body = await _post(
        client, "/deliveries/discard", acme, {"ids": other_ids, "reason": "not mine"}
    )
    assert status in (200, 400) and not body.get("discarded")
    after = await _deliveries(client, toks["all"])
    assert sorted((d["id"], d["state"]) for d in after) == sorted(
        (d["id"], d["state"]) for d in seen["all"]
    )
    assert (await _get(client, "/events", acme, account="globex"))[0] == 400
    assert (await _get(client, "/events", acme, account="app:meta"))[0] == 400
    assert (await _get(client, "/audit", token("audit:read", "account:acme")))[0] == 403


async def test_a_whatsapp_batch_is_isolated_per_item_and_per_account(gateway) -> None:
    await _batch_in(gateway, "whatsapp", whatsapp_batch())
    seen = await _check_isolation(gateway, "whatsapp")
    await _check_refusals(gateway, seen)

    # the same batch again (Meta retries): nothing new, nothing copied anywhere
    await _batch_in(gateway, "whatsapp", whatsapp_batch())
    assert len(await _deliveries(gateway, tokens()["all"])) == 5


async def test_a_messenger_batch_is_isolated_per_item_and_per_account(gateway) -> None:
    await _batch_in(gateway, "messenger", messenger_batch())
    seen = await _check_isolation(gateway, "messenger")
    await _check_refusals(gateway, seen)


async def test_contacts_export_and_show_stay_in_the_token_s_account(gateway) -> None:
    await _batch_in(gateway, "whatsapp", whatsapp_batch())
    toks = tokens()
    acme_ref, globex_ref = quote("+16505550101"), quote("+16505550202")
    status, body = await _get(gateway, f"/contacts/{acme_ref}/export", toks["acme"])
    assert status == 200 and [a["account"] for a in body["accounts"]] == ["acme"]
    assert "16505550202" not in json.dumps(body) and "GLOBEX" not in json.dumps(body)
    # another account's customer is not found in the token's own account ...
    assert (await _get(gateway, f"/contacts/{globex_ref}/export", toks["acme"]))[0] == 404
    assert (await _get(gateway, f"/contacts/{globex_ref}", toks["acme"]))[0] == 404
    # ... and naming the other account is refused like an account that does not exist
    for path in (f"/contacts/{globex_ref}/export", f"/contacts/{globex_ref}"):
        status, body = await _get(gateway, path, toks["acme"], account="globex")
        assert status == 400 and "no account" in body["message"]
    status, body = await _get(gateway, f"/contacts/{globex_ref}/export", toks["globex"])
    assert status == 200 and [a["account"] for a in body["accounts"]] == ["globex"]


async def test_reingest_takes_only_the_owner_s_items(gateway) -> None:
    await _batch_in(gateway, "whatsapp", whatsapp_batch())
    rt = gateway.rt
    toks = tokens()
    acme_raws = await _raw_bodies(gateway, toks["acme"])
    globex_ids = [e["id"] for e, _ in await _raw_bodies(gateway, toks["globex"])]
    # another account's raw records do not exist for acme's token
    status, body = await _post(gateway, "/events/reingest", toks["acme"], {"ids": globex_ids})
    assert status == 400 and "no kept raw request" in body["message"]

    ids = [e["id"] for e, _ in acme_raws]
    status, body = await _post(gateway, "/events/reingest", toks["acme"], {"ids": ids})
    assert status == 200, body
    for outcome in body["raw"]:
        assert outcome["account"] == "acme"
        assert all(ev.get("account", "acme") == "acme" for ev in outcome["events"])
        if outcome["parse_failed"]:
            assert outcome["error"].startswith("still does not parse")
            assert outcome["events"] == []
        else:
            # acme's cut: its good message (a duplicate now), nothing of globex
            assert [ev["status"] for ev in outcome["events"]] == ["duplicate"]
    # the bad item is still acme's dead letter; globex's are untouched
    assert await rt.listing.dedup_mark("acme", "whatsapp", "wamid.GOK") is None
    acme = await _deliveries(gateway, toks["acme"])
    assert sorted(d["state"] for d in acme) == ["dead", "delivered"]

    app_ids = [e["id"] for e, _ in await _raw_bodies(gateway, toks["app"])]
    status, body = await _post(gateway, "/events/reingest", toks["app"], {"ids": app_ids})
    assert status == 200 and body["raw"][0]["error"].startswith("still does not parse")


async def test_a_batch_whose_envelope_names_no_account_is_kept_under_the_app(gateway) -> None:
    body = json.dumps({"object": "whatsapp_business_account", "entry": {"id": 1}}).encode()
    await _batch_in(gateway, "whatsapp", body)
    toks = tokens()
    assert await _deliveries(gateway, toks["acme"]) == []
    assert await _deliveries(gateway, toks["globex"]) == []
    (kept,) = await _deliveries(gateway, toks["app"])
    assert (kept["account"], kept["reason"]) == ("app:meta", "parse_failed")
    # the same body on an account's URL is that account's, as before
    resp = await gateway.post("/webhooks/whatsapp/acme", data=body, headers=headers(body))
    assert resp.status == 200
    assert [d["reason"] for d in await _deliveries(gateway, toks["acme"])] == ["parse_failed"]


async def test_the_cli_with_an_account_token_sees_only_that_account(
    make_runtime, aiohttp_server
) -> None:
    rt = make_runtime(YAML, admin_jwt_secret=SECRET)
    server = await aiohttp_server(create_app(rt, role="serve"))
    url = str(server.make_url("")).rstrip("/")
    body = whatsapp_batch()
    import httpx

    async with httpx.AsyncClient() as client:
        resp = await client.post(f"{url}/webhooks/whatsapp", content=body, headers=headers(body))
        assert resp.status_code == 200
    await drain(rt)

    minted = await run(
        "token", "create", "--scope", "deliveries:read", "--scope", "deliveries:write",
        "--account", "acme", "--ttl", "10m",
        DESKBRIDGE_ADMIN_JWT_SECRET=SECRET,
    )  # fmt: skip
    assert minted.exit_code == 0, minted.output
    tok = minted.output.strip()
    claims = jwt.decode(tok, SECRET, algorithms=["HS256"], audience=AUD)
    assert "account:acme" in claims["scope"].split()

    listed = await run("deliveries", "list", "--json", "--url", url, tok=tok)
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.output)["deliveries"]
    assert {r["account"] for r in rows} == {"acme"} and len(rows) == 2
    all_rows = json.loads((await run("deliveries", "list", "--json", "--url", url)).output)
    globex = [r["id"] for r in all_rows["deliveries"] if r["account"] == "globex"]
    assert len(globex) == 2
    shown = await run("deliveries", "show", globex[0], "--url", url, tok=tok)
    assert shown.exit_code != 0 and "GLOBEX" not in shown.output
    replayed = await run("deliveries", "replay", globex[0], "--url", url, tok=tok)
    assert "replayed 0" in replayed.output and "not found 1" in replayed.output
    events = await run("events", "list", "--json", "--url", url, tok=tok)
    assert events.exit_code == 0, events.output
    assert {e["account"] for e in json.loads(events.output)["events"]} == {"acme"}
    states = {d.id: d.state for d in [await rt.deliveries.get("globex", i) for i in globex] if d}
    assert DeliveryState.DEAD in states.values() and DeliveryState.DELIVERED in states.values()


LINE_DEST = "U" + "0" * 31 + "1"
LINE_SANDBOX_YAML = f"""
accounts:
  acme:
    desk: {{type: sandbox}}
    channels:
      - type: line
        channel_id: "2000000001"
        channel_secret: "{LINE_SECRET}"
        access_token: line-access-token
        base_url: https://line.test
        data_base_url: https://line-data.test
"""


def _line_event(event_id: str, text: str, *, bad: bool = False) -> dict[str, Any]:
    return {
        "type": "message",
        "mode": "active",
        # a timestamp as a string cannot be read
        "timestamp": str(NOW * 1000) if bad else NOW * 1000,
        "webhookEventId": event_id,
        "deliveryContext": {"isRedelivery": False},
        "source": {"type": "user", "userId": "U" + "0" * 31 + "2"},
        "replyToken": "reply-token",
        "message": {"id": event_id + "-m", "type": "text", "text": text, "quoteToken": "q"},
    }


async def test_one_bad_line_event_never_costs_its_siblings(make_runtime, aiohttp_client) -> None:
    import base64
    import hashlib
    import hmac

    rt = make_runtime(LINE_SANDBOX_YAML)
    client = await aiohttp_client(create_app(rt, role="serve"))
    doc = {
        "destination": LINE_DEST,
        "events": [
            _line_event("01J00000000000000000000001", "LINE-OK-TEXT"),
            _line_event("01J00000000000000000000002", "LINE-BAD-TEXT", bad=True),
        ],
    }
    body = json.dumps(doc).encode()
    sig = base64.b64encode(hmac.new(LINE_SECRET.encode(), body, hashlib.sha256).digest())
    resp = await client.post(
        "/webhooks/line/acme",
        data=body,
        headers={"x-line-signature": sig.decode(), "Content-Type": "application/json"},
    )
    assert resp.status == 200
    await asyncio.wait_for(drain(rt), timeout=60)
    page = await rt.listing.deliveries(["acme"], _all_filter(), limit=50, cursor=None)
    states = sorted((d.state.value, d.reason) for d in page.items)
    assert states == [("dead", "parse_failed"), ("delivered", None)], states
    (dead,) = [d for d in page.items if d.reason == "parse_failed"]
    assert dead.raw_id is not None
    found = await rt.listing.raw("acme", dead.raw_id)
    assert found is not None
    assert b"LINE-BAD-TEXT" in found[1] and b"LINE-OK-TEXT" not in found[1]


def _all_filter():
    from deskbridge.store.listing import DeliveryFilter

    return DeliveryFilter()


async def test_the_app_s_dead_letters_are_counted_and_expire_like_any_other(gateway) -> None:
    import time

    from deskbridge.flows import privacy
    from deskbridge.pipeline.worker import sweep_once

    await _batch_in(gateway, "whatsapp", whatsapp_batch())
    rt = gateway.rt
    await sweep_once(rt)
    assert rt.metrics.dead.labels("app:meta")._value.get() == 1
    now = time.time()
    kept = await privacy.sweep_retention(rt, clock=lambda: now + 179 * 86400)
    assert kept["dead_letters"] == 0
    swept = await privacy.sweep_retention(rt, clock=lambda: now + 181 * 86400)
    # the app's one, and each account's own
    assert swept["dead_letters"] == 3
    assert await _deliveries(gateway, tokens()["app"]) == []
