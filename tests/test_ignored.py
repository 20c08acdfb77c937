"""Nothing acknowledged and dropped without a named reason an operator can list (DESIGN
invariant 10): each item not filed is counted and kept as a sealed record, listed by
``GET /admin/v1/events/ignored`` and ``deskbridge events list --ignored``."""

from __future__ import annotations

import json
from typing import Any

import httpx

from deskbridge.adapters.base import Ignored
from deskbridge.adapters.line.parse import parse_items
from deskbridge.adapters.messenger.parse import parse as messenger_parse
from deskbridge.adapters.whatsapp.parse import parse as whatsapp_parse
from deskbridge.gateway import create_app
from deskbridge.gateway.admin import PREFIX

from .conftest import TG_SECRET, TG_TOKEN, redis_of
from .test_admin_api import ALL, SECRET, auth, token
from .test_admin_cli import run
from .test_gateway import signed, update

TWO = f"""
accounts:
  acme:
    desk: {{type: sandbox}}
    channels:
      - type: telegram
        bot_token: "{TG_TOKEN}"
        secret_token: "{TG_SECRET}"
        base_url: https://tg.test
  beta:
    desk: {{type: sandbox}}
    channels:
      - type: telegram
        bot_token: "654321:OTHER-token_abcdefghijklmno"
        secret_token: "{TG_SECRET}"
        base_url: https://tg.test
"""

POLL = json.dumps({"update_id": 7, "poll": {"id": "1", "question": "?", "options": []}}).encode()


async def listed(client: Any, tok: str, **params: str) -> tuple[int, Any]:
    resp = await client.get(PREFIX + "/events/ignored", params=params, headers=auth(tok))
    return resp.status, await resp.json()


async def test_each_account_lists_only_its_own_ignored_items(make_runtime, aiohttp_client) -> None:
    rt = make_runtime(TWO, admin_jwt_secret=SECRET)
    client = await aiohttp_client(create_app(rt, role="serve"))
    for account in ("acme", "beta"):
        resp = await client.post(f"/webhooks/telegram/{account}", data=POLL, headers=signed())
        assert resp.status == 200

    status, body = await listed(client, token(*ALL))
    assert status == 200
    assert sorted((i["account"], i["source"], i["reason"]) for i in body["items"]) == [
        ("acme", "telegram", "not_a_message"),
        ("beta", "telegram", "not_a_message"),
    ]
    # the raw request is kept with it, for re-ingest once deskbridge handles polls
    [acme] = [i for i in body["items"] if i["account"] == "acme"]
    assert await rt.listing.raw("acme", acme["raw_id"]) is not None

    limited = token("deliveries:read", "account:acme")
    status, body = await listed(client, limited)
    assert status == 200 and [i["account"] for i in body["items"]] == ["acme"]
    status, _ = await listed(client, limited, account="beta")
    assert status == 400  # as for an account that does not exist
    # nothing in the record is readable without the key: never a body in clear
    for raw in await redis_of(rt).keys("db:{acme}:ign:*"):
        assert b"poll" not in await redis_of(rt).get(raw)


async def test_a_redelivery_is_listed_as_a_duplicate_by_its_provider_id(
    make_runtime, aiohttp_client
) -> None:
    rt = make_runtime(admin_jwt_secret=SECRET)
    client = await aiohttp_client(create_app(rt, role="serve"))
    for _ in range(2):
        assert (await client.post("/webhooks/telegram/acme", data=update(), headers=signed())).ok
    _, body = await listed(client, token(*ALL), reason="duplicate")
    [item] = body["items"]
    assert item["source"] == "telegram" and item["provider_id"]
    assert item["raw_id"] is None  # the first copy's raw request is the one kept
    _, body = await listed(client, token(*ALL), reason="echo")
    assert body["items"] == []


def test_messenger_echoes_are_named_with_their_mid() -> None:
    body = json.dumps(
        {
            "object": "page",
            "entry": [
                {
                    "id": "P1",
                    "time": 1750000000000,
                    "messaging": [
                        {
                            "sender": {"id": "P1"},
                            "recipient": {"id": "U1"},
                            "timestamp": 1750000000000,
                            "message": {"mid": "m.1", "text": "ours", "is_echo": True},
                        },
                        {
                            "sender": {"id": "U1"},
                            "recipient": {"id": "P1"},
                            "timestamp": 1750000000000,
                            "message": {"mid": "m.2", "text": "ours", "is_echo": True},
                        },
                        {
                            "sender": {"id": "U1"},
                            "recipient": {"id": "P1"},
                            "timestamp": 1750000000000,
                            "reaction": {"mid": "m.0", "action": "react", "emoji": "x"},
                        },
                    ],
                },
                {"id": "P2", "time": 1750000000000, "messaging": []},
            ],
        }
    ).encode()
    parsed = messenger_parse(body, routes={"P1": "acme"})
    assert parsed.events == []
    assert parsed.skipped == (
        Ignored("echo", "acme"),
        Ignored("echo", "acme", "m.2"),
        Ignored("reaction", "acme"),
        Ignored("unrouted"),
    )


def test_line_events_we_do_not_file_are_named_with_their_event_id() -> None:
    def event(kind: str, eid: str, mode: str = "active") -> dict[str, Any]:
        return {
            "type": kind,
            "mode": mode,
            "timestamp": 1750000000000,
            "webhookEventId": eid,
            "deliveryContext": {"isRedelivery": False},
            "source": {"type": "user", "userId": "U" + "0" * 32},
        }

    body = json.dumps(
        {
            "destination": "U" + "1" * 32,
            "events": [event("memberJoined", "E1"), event("follow", "E2", mode="standby")],
        }
    ).encode()
    parsed = parse_items(body, account="acme")
    assert parsed.events == []
    assert parsed.skipped == (
        Ignored("event_memberJoined", "acme", "E1"),
        Ignored("standby", "acme", "E2"),
    )


async def test_the_cli_lists_ignored_items(make_runtime, aiohttp_server) -> None:
    rt = make_runtime(admin_jwt_secret=SECRET)
    server = await aiohttp_server(create_app(rt, role="serve"))
    url = str(server.make_url("")).rstrip("/")
    async with httpx.AsyncClient() as client:
        resp = await client.post(f"{url}/webhooks/telegram/acme", content=POLL, headers=signed())
        assert resp.status_code == 200
    table = await run("events", "list", "--ignored", "--url", url)
    assert table.exit_code == 0, table.output
    assert "not_a_message" in table.stdout and "1 ignored item(s)" in table.stderr
    as_json = await run("events", "list", "--ignored", "--reason", "echo", "--json", "--url", url)
    assert json.loads(as_json.stdout)["items"] == []
    misuse = await run("events", "list", "--reason", "echo", "--url", url)
    assert misuse.exit_code != 0


def test_whatsapp_statuses_we_do_not_file_are_named_with_their_wamid() -> None:
    body = json.dumps(
        {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": "100000000000001",
                    "changes": [
                        {
                            "field": "messages",
                            "value": {
                                "messaging_product": "whatsapp",
                                "metadata": {
                                    "display_phone_number": "15550001111",
                                    "phone_number_id": "200000000000002",
                                },
                                "statuses": [
                                    {
                                        "id": "wamid.P1",
                                        "status": "played",
                                        "timestamp": "1750000000",
                                        "recipient_id": "15550002222",
                                    }
                                ],
                            },
                        }
                    ],
                }
            ],
        }
    ).encode()
    parsed = whatsapp_parse(body, routes={"200000000000002": "acme"})
    assert parsed.events == []
    assert parsed.skipped == (Ignored("status_played", "acme", "wamid.P1"),)
