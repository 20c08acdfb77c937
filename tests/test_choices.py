"""Choices (``AgentReply.choices``: a survey's scores, a bot's quick replies) as each
channel's native control, and as numbered lines where a channel has none; a tap comes
back as a message whose text is the choice. The platforms' APIs under respx."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import respx

from deskbridge.adapters.capabilities import OffersChoices
from deskbridge.adapters.text import numbered
from deskbridge.schemas import AgentReply, Channel, ChannelAddress, Desk

from .conftest import TG_SECRET, TG_TOKEN
from .test_proactive import LINE_USER, PAGE, PHONE, PSID, WA, YAML

YAML_ALL = (
    YAML
    + f"""      - type: telegram
        bot_token: "{TG_TOKEN}"
        secret_token: "{TG_SECRET}"
        base_url: https://tg.test
"""
)
SCORES = ("1", "2", "3", "4", "5")


def reply(text: str = "How did we do?", choices: tuple[str, ...] = SCORES) -> AgentReply:
    return AgentReply(
        account="acme",
        desk=Desk.SANDBOX,
        dedup_key="r1",
        ticket_id="t1",
        external_id="r1",
        text=text,
        automated=True,
        choices=choices,
        occurred_at=datetime.now(UTC),
    )


def to(channel: Channel, thread: str) -> ChannelAddress:
    return ChannelAddress(
        channel=channel,
        account="acme",
        thread=thread,
        last_inbound_at=datetime.now(UTC) - timedelta(minutes=5),
    )


def last_body(route: respx.Route) -> dict[str, Any]:
    return json.loads(route.calls.last.request.content)


async def test_telegram_offers_a_one_time_reply_keyboard(make_runtime: Any, api: Any) -> None:
    rt = make_runtime(YAML_ALL)
    route = api.post(f"https://tg.test/bot{TG_TOKEN}/sendMessage").respond(
        200, json={"ok": True, "result": {"message_id": 9, "date": 1, "chat": {"id": 42}}}
    )
    await rt.adapter("acme", Channel.TELEGRAM).send(reply(), to(Channel.TELEGRAM, "42"))
    body = last_body(route)
    assert body["text"] == "How did we do?"
    assert body["reply_markup"] == {
        "keyboard": [[{"text": s}] for s in SCORES],
        "one_time_keyboard": True,
        "resize_keyboard": True,
    }


async def test_whatsapp_offers_an_interactive_list(make_runtime: Any, api: Any) -> None:
    rt = make_runtime(YAML_ALL)
    route = api.post(f"https://graph.test/v23.0/{WA}/messages").respond(
        200, json={"messages": [{"id": "wamid.X"}]}
    )
    adapter = rt.adapter("acme", Channel.WHATSAPP)
    await adapter.send(reply(choices=("5 - Great", "1 - Bad")), to(Channel.WHATSAPP, PHONE))
    body = last_body(route)
    assert body["type"] == "interactive"
    assert body["interactive"]["type"] == "list"
    assert body["interactive"]["body"] == {"text": "How did we do?"}
    rows = body["interactive"]["action"]["sections"][0]["rows"]
    assert [r["title"] for r in rows] == ["5 - Great", "1 - Bad"]
    # too long for a list message's body: plain text with numbered lines
    long = "x" * 1100
    await adapter.send(reply(long, ("a", "b")), to(Channel.WHATSAPP, PHONE))
    body = last_body(route)
    assert body["type"] == "text" and body["text"]["body"].endswith("\n\n1. a\n2. b")


async def test_messenger_offers_quick_replies(make_runtime: Any, api: Any) -> None:
    rt = make_runtime(YAML_ALL)
    route = api.post(f"https://graph.test/v23.0/{PAGE}/messages").respond(
        200, json={"recipient_id": PSID, "message_id": "m_1"}
    )
    await rt.adapter("acme", Channel.MESSENGER).send(reply(), to(Channel.MESSENGER, PSID))
    message = last_body(route)["message"]
    assert message["text"] == "How did we do?"
    assert [q["title"] for q in message["quick_replies"]] == list(SCORES)
    assert all(q["content_type"] == "text" for q in message["quick_replies"])


async def test_line_offers_quick_reply_message_actions(make_runtime: Any, api: Any) -> None:
    rt = make_runtime(YAML_ALL)
    route = api.post("https://line.test/v2/bot/message/push").respond(
        200, json={"sentMessages": [{"id": "1"}]}
    )
    await rt.adapter("acme", Channel.LINE).send(reply(), to(Channel.LINE, LINE_USER))
    [message] = last_body(route)["messages"]
    items = message["quickReply"]["items"]
    assert [i["action"] for i in items] == [
        {"type": "message", "label": s, "text": s} for s in SCORES
    ]


def test_channels_without_native_controls_get_numbered_lines() -> None:
    assert numbered("How did we do?", ("1", "2")) == "How did we do?\n\n1. 1\n2. 2"
    from deskbridge.adapters.email.adapter import EmailAdapter
    from deskbridge.adapters.sip import SipAdapter

    assert OffersChoices not in EmailAdapter.__mro__
    assert OffersChoices not in SipAdapter.__mro__
