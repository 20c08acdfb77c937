"""Routing and service metrics through the worker: enrichment lands on the contact,
rules set the desk's fields, off-hours customers hear when to expect an answer (once),
and first-response/reply times are measured."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx

from deskbridge.flows.ingest import accept_replies
from deskbridge.gateway import create_app
from deskbridge.pipeline.worker import sweep_once
from deskbridge.schemas import AgentReply, Channel, Desk

from .conftest import TG_SECRET, TG_TOKEN, drain, redis_of
from .desks.fake_zendesk import FakeZendesk
from .test_desk_conformance import customer_says, telegram

ROUTING = """
    routing:
      languages: [en, es, de]
      keywords:
        - {tag: refund, pattern: "refund|reembolso"}
      vip:
        contacts: []
      rules:
        - name: spanish refunds
          when: {language: [es], tags: [refund]}
          then:
            priority: high
            group: "360000111"
            tags: [latam]
            custom_fields: {"360222": billing}
"""


def yaml_for(desk: str, routing: str = ROUTING) -> str:
    return f"""
accounts:
  acme:
    desk: {desk}
{routing}
    channels:
      - type: telegram
        bot_token: "{TG_TOKEN}"
        secret_token: "{TG_SECRET}"
        base_url: https://tg.test
"""


async def test_rules_set_zendesk_fields_and_facts_land_on_the_contact(
    make_runtime, aiohttp_client, respx_mock
) -> None:
    fake = FakeZendesk()
    seen: list[dict[str, Any]] = []
    original = fake._create

    async def spy(request):
        seen.append(await request.json())
        return await original(request)

    fake._create = spy  # type: ignore[method-assign]  # before start(): routes bind it
    await fake.start()
    telegram(respx_mock)
    try:
        rt = make_runtime(yaml_for(fake.desk_yaml()))
        client = await aiohttp_client(create_app(rt, role="serve"))
        await customer_says(client, "Hola, quiero un reembolso de mi pedido, por favor", 9001)
        await drain(rt)
    finally:
        await fake.stop()
    [body] = seen
    ticket = body["ticket"]
    assert ticket["priority"] == "high" and ticket["group_id"] == 360000111
    assert {"refund", "latam", "deskbridge"} <= set(ticket["tags"])
    assert ticket["custom_fields"] == [{"id": 360222, "value": "billing"}]


async def test_sandbox_shows_the_decision_and_the_contact_keeps_its_language(
    make_runtime, aiohttp_client, respx_mock
) -> None:
    telegram(respx_mock)
    rt = make_runtime(yaml_for("{type: sandbox}"))
    client = await aiohttp_client(create_app(rt, role="serve"))
    await customer_says(client, "Hola, quiero un reembolso de mi pedido, por favor", 9101)
    await customer_says(client, "ok", 9102)
    await drain(rt)
    [ticket] = await rt.sandbox.tickets("acme")
    full = await rt.sandbox.ticket("acme", ticket.id)
    notes = [m.text for m in full.messages if m.author == "note"]
    assert notes and "refund" in notes[0] and "priority: high" in notes[0]
    conv_id = rt.conversations.conversation_id("acme", Channel.TELEGRAM, "42")
    conv = await rt.conversations.get("acme", conv_id)
    contact = await rt.conversations.contact("acme", conv.contact_id)
    assert contact.attributes["language"] == "es"  # "ok" kept the prior


async def test_off_hours_ack_once_per_conversation_and_service_times(
    make_runtime, aiohttp_client, respx_mock
) -> None:
    send = telegram(respx_mock)
    closed = """
    routing:
      business_hours: {time_zone: UTC, weekly: {}}
      off_hours_ack: "Thanks! We are closed and will answer {next_open}."
      sla: {telegram: 0}
"""
    rt = make_runtime(yaml_for("{type: sandbox}", closed))
    client = await aiohttp_client(create_app(rt, role="serve"))
    await customer_says(client, "Anyone there?", 9201)
    await customer_says(client, "Hello?", 9202)
    await drain(rt)
    texts = [json.loads(c.request.content)["text"] for c in send.calls]
    assert texts == ["Thanks! We are closed and will answer as soon as we can."]
    await sweep_once(rt)
    sample = rt.metrics.registry.get_sample_value
    labels = {"account": "acme", "channel": "telegram"}
    assert sample("deskbridge_conversations_awaiting_reply", labels) == 1
    assert sample("deskbridge_sla_breaches", labels) == 1
    assert sample("deskbridge_off_hours_acknowledgements_total", labels) == 1

    [ticket] = await rt.sandbox.tickets("acme")
    for n in (1, 2):
        reply = AgentReply(
            account="acme",
            desk=Desk.SANDBOX,
            dedup_key=f"agent-{n}",
            ticket_id=ticket.id,
            external_id=f"agent-{n}",
            text=f"answer {n}",
            occurred_at=datetime.now(UTC),
        )
        await accept_replies(rt, "acme", "sandbox", None, [reply])
        await drain(rt)
        if n == 1:
            await customer_says(client, "One more question", 9203)
            await drain(rt)
    hist = {"account": "acme", "channel": "telegram", "language": ""}
    assert sample("deskbridge_first_response_seconds_count", hist) == 1
    assert sample("deskbridge_reply_seconds_count", hist) == 2
    assert sample("deskbridge_messages_total", {**labels, "direction": "inbound"}) == 3
    await sweep_once(rt)
    assert sample("deskbridge_conversations_awaiting_reply", labels) == 0


def test_route_explain_offline(tmp_path) -> None:
    from click.testing import CliRunner

    from deskbridge.cli.main import cli

    path = tmp_path / "accounts.yaml"
    path.write_text(yaml_for("{type: sandbox}"))
    result = CliRunner().invoke(
        cli,
        [
            "route",
            "--config",
            str(path),
            "--account",
            "acme",
            "--channel",
            "whatsapp",
            "--text",
            "Hola, necesito un reembolso de mi pedido",
            "--from",
            "+5491123456789",
            "--explain",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "language: es" in result.output and "country: AR" in result.output
    assert "fired: spanish refunds" in result.output and "priority: high" in result.output
    assert "FIRED  spanish refunds" in result.output
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml_for("{type: sandbox}", ROUTING.replace('"refund|reembolso"', '"("')))
    checked = CliRunner().invoke(cli, ["check-config", str(bad)])
    assert checked.exit_code == 2 and "regex" in checked.output


async def test_translation_note_and_translate_back(
    make_runtime, aiohttp_client, respx_mock
) -> None:
    send = telegram(respx_mock)
    lt = respx_mock.post("https://lt.internal.example/translate")
    lt.side_effect = [
        httpx.Response(200, json={"translatedText": "I want a refund"}),
        httpx.Response(200, json={"translatedText": "Tu pedido sale hoy"}),
    ]
    routing = """
    routing:
      languages: [en, es]
      team_language: en
      translation: {provider: libretranslate, base_url: "https://lt.internal.example", region: eu}
"""
    rt = make_runtime(yaml_for("{type: sandbox}", routing))
    client = await aiohttp_client(create_app(rt, role="serve"))
    await customer_says(client, "Hola, quiero un reembolso de mi pedido, por favor", 9301)
    await drain(rt)
    [ticket] = await rt.sandbox.tickets("acme")
    full = await rt.sandbox.ticket("acme", ticket.id)
    [note] = [m.text for m in full.messages if m.author == "note"]
    assert "Translation (es → en" in note and "I want a refund" in note and "#translate" in note
    reply = AgentReply(
        account="acme",
        desk=Desk.SANDBOX,
        dedup_key="tr-1",
        ticket_id=ticket.id,
        external_id="tr-1",
        text="#translate Your order ships today",
        occurred_at=datetime.now(UTC),
    )
    await accept_replies(rt, "acme", "sandbox", None, [reply])
    await drain(rt)
    [sent] = [json.loads(c.request.content)["text"] for c in send.calls]
    assert sent == "Tu pedido sale hoy"
    asked = json.loads(lt.calls[1].request.content)
    assert (asked["q"], asked["source"], asked["target"]) == ("Your order ships today", "en", "es")


async def test_intercom_and_udesk_get_routing_fields(
    make_runtime, aiohttp_client, respx_mock
) -> None:
    from .desks.fake_intercom import FakeIntercom
    from .desks.fake_udesk import FakeUdesk

    telegram(respx_mock)
    routing = ROUTING.replace('group: "360000111"', "group: support-latam")
    for fake in (FakeIntercom(), FakeUdesk()):
        await fake.start()
        try:
            rt = make_runtime(yaml_for(fake.desk_yaml(), routing))
            client = await aiohttp_client(create_app(rt, role="serve"))
            await customer_says(client, "Hola, quiero un reembolso de mi pedido, por favor", 9400)
            await drain(rt)
            if isinstance(fake, FakeIntercom):
                [conv] = fake._conversations.values()
                assert {"refund", "latam"} <= set(conv.tags)
                assert conv.team == "support-latam"
            else:
                [(_, body)] = [b for b in fake.bodies if b[0].endswith("/tickets")]
                ticket = body["ticket"]
                assert "refund" in ticket["tags"] and "latam" in ticket["tags"]
                assert ticket["agent_group_name"] == "support-latam"
                assert ticket["priority"] == "高"
                assert ticket["ticket_field"] == {"360222": "billing"}
        finally:
            await fake.stop()
        await redis_of(rt).flushdb()


def test_check_config_warns_when_translation_leaves_the_region(tmp_path) -> None:
    from click.testing import CliRunner

    from deskbridge.cli.main import cli

    routing = """
    region: eu
    routing:
      team_language: en
      translation: {provider: deepl, api_key: "k:fx", region: us}
"""
    path = tmp_path / "accounts.yaml"
    path.write_text(yaml_for("{type: sandbox}", routing))
    result = CliRunner().invoke(cli, ["check-config", str(path)])
    assert result.exit_code == 0, result.output
    assert "warning" in result.output and "(us)" in result.output and "(eu)" in result.output


def test_each_language_team_keeps_its_own_hours() -> None:
    from deskbridge.flows.enrichment import off_hours_text
    from deskbridge.routing.config import RoutingConfig

    config = RoutingConfig.model_validate(
        {
            "business_hours": {"time_zone": "Europe/Berlin", "weekly": {"mon": "09:00-18:00"}},
            "team_hours": {
                "es": {"time_zone": "America/Mexico_City", "weekly": {"mon": "09:00-18:00"}}
            },
            "off_hours_ack": "Closed until {next_open}",
        }
    )
    # Monday 2026-11-23 20:00 UTC: Berlin (21:00) closed, Mexico City (14:00) open
    at = datetime(2026, 11, 23, 20, 0, tzinfo=UTC)
    assert off_hours_text(config, at, "en") is not None
    assert off_hours_text(config, at, "es") is None
