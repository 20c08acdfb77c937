"""``deskbridge stats`` over a running gateway's /metrics."""

from __future__ import annotations

import asyncio
import time

from click.testing import CliRunner
from prometheus_client import generate_latest

from deskbridge.cli.main import cli
from deskbridge.cli.stats import quantile, summarize
from deskbridge.flows.enrichment import refresh_waiting
from deskbridge.gateway import create_app
from deskbridge.metrics import Metrics, csat_by_team
from deskbridge.schemas import Channel, Desk, brand


def test_quantiles_are_the_bucket_they_fall_in() -> None:
    buckets = [(60.0, 10.0), (300.0, 30.0), (float("inf"), 40.0)]
    assert quantile(buckets, 0.5) == (60.0, 300.0)  # no invented point inside the bucket
    assert quantile(buckets, 0.9) == (300.0, float("inf"))
    assert quantile(buckets, 0.2) == (0.0, 60.0)
    assert quantile([(60.0, 0.0), (float("inf"), 0.0)], 0.5) is None


def observed() -> Metrics:
    m = Metrics()
    for seconds in (30, 90, 200, 250, 4000):
        m.first_response.labels("acme", "whatsapp", "es").observe(seconds)
    m.reply_time.labels("acme", "whatsapp", "en").observe(100)
    m.messages.labels("acme", "whatsapp", "inbound").inc(12)
    m.messages.labels("acme", "whatsapp", "outbound").inc(5)
    m.awaiting.labels("acme", "whatsapp").set(3)
    m.sla_breaches.labels("acme", "whatsapp").set(1)
    for score, language, team in ((5, "en", "billing"), (4, "es", "none"), (3, "en", "billing")):
        m.csat_score.labels("acme", "whatsapp", language, team).observe(score)
    m.bot_sessions.labels("acme", "whatsapp", "en", "started").inc(10)
    m.bot_sessions.labels("acme", "whatsapp", "en", "handed_off").inc(3)
    return m


def test_summary_of_the_service_figures() -> None:
    rows = summarize(generate_latest(observed().registry).decode())
    r = rows[("acme", "whatsapp")]
    assert (r["inbound"], r["outbound"], r["awaiting"], r["breaches"]) == (12, 5, 3, 1)
    assert r["first_p50"] == (60.0, 300.0) and r["first_p90"] == (3600.0, 7200.0)
    assert r["reply_p50"] == r["reply_p90"] == (100.0, 100.0)  # one response: exact
    assert (r["csat_sum"], r["csat_count"]) == (12, 3)  # languages summed
    assert (r["bot_started"], r["bot_handed_off"]) == (10, 3)
    # per team (the routing's desk group), channels and languages summed
    teams = csat_by_team(generate_latest(observed().registry).decode())
    assert teams == {("acme", "billing"): (8.0, 2.0), ("acme", "none"): (4.0, 1.0)}


async def test_a_single_response_prints_its_own_time(make_runtime, aiohttp_server) -> None:
    rt = make_runtime()
    rt.metrics = Metrics()
    rt.metrics.first_response.labels("acme", "whatsapp", "").observe(94)
    for seconds in (90, 200, 250):
        rt.metrics.reply_time.labels("acme", "whatsapp", "").observe(seconds)
    server = await aiohttp_server(create_app(rt, role="serve"))
    url = str(server.make_url("")).rstrip("/")
    result = await asyncio.to_thread(CliRunner().invoke, cli, ["stats", "--url", url])
    assert result.exit_code == 0, result.output
    [row] = [line for line in result.output.splitlines() if "acme" in line]
    assert row.split()[1] == "WhatsApp"
    assert "94 s" in row and "3 min" not in row  # was "p50 3 min" (interpolated)
    assert row.count("1 min to 5 min") == 2  # the reply times: their bucket, both percentiles


async def test_waiting_returns_to_zero_once_nobody_waits(make_runtime) -> None:
    rt = make_runtime()
    waiting = rt.metrics.awaiting.labels("acme", "telegram")
    await rt.service.mark_waiting("acme", "conv-1", "telegram", time.time() - 30)
    await refresh_waiting(rt, "acme", {})
    assert waiting._value.get() == 1
    await rt.service.mark_answered("acme", "conv-1", "telegram")
    await refresh_waiting(rt, "acme", {})
    assert waiting._value.get() == 0  # was stuck at 1: only waiting channels were updated


async def test_the_command_reads_a_running_gateway(make_runtime, aiohttp_server) -> None:
    rt = make_runtime()
    rt.metrics = observed()
    server = await aiohttp_server(create_app(rt, role="serve"))
    url = str(server.make_url("")).rstrip("/")
    result = await asyncio.to_thread(CliRunner().invoke, cli, ["stats", "--url", url])
    assert result.exit_code == 0, result.output
    assert "WhatsApp" in result.output and "12" in result.output
    assert "4.0 (3)" in result.output  # the average score, of three answers
    assert "7/10" in result.output  # bot sessions that ended without a person
    [team] = [line for line in result.output.splitlines() if "billing" in line]
    assert team.split() == ["acme", "billing", "4.0", "(2)"]  # no row for "none"
    down = await asyncio.to_thread(
        CliRunner().invoke, cli, ["stats", "--url", "http://127.0.0.1:9"]
    )
    assert down.exit_code == 3


def test_brand_names_come_from_one_table() -> None:
    assert [c.brand for c in Channel] == [
        "Telegram",
        "WhatsApp",
        "Messenger",
        "Instagram",
        "LINE",
        "Email",
        "SIP",
        "SMS",
        "Web chat",
    ]
    # every channel and desk has its spelling (a new one that forgot it fails here)
    assert {d.brand for d in Desk} == {"Sandbox", "Zendesk", "Intercom", "Udesk"}
    assert Desk.UDESK.brand == "Udesk" and brand("twilio") == "Twilio"
    assert brand("not-a-brand") == "not-a-brand"


def test_ticket_subjects_and_desk_names_spell_brands() -> None:
    from datetime import UTC, datetime

    from deskbridge.outbound.common import display_name
    from deskbridge.outbound.render import subject
    from deskbridge.schemas import Contact, Identity, Message, Sender

    for channel, spelled in ((Channel.WHATSAPP, "WhatsApp"), (Channel.LINE, "LINE")):
        msg = Message(
            account="acme",
            channel=channel,
            dedup_key="d",
            thread="t",
            occurred_at=datetime.now(UTC),
            external_id="e",
            sender=Sender(external_id="u"),
            text="hello",
        )
        assert subject(msg) == f"{spelled}: hello"  # was "Whatsapp: hello", "Line: hello"
        contact = Contact(
            id="c",
            account="acme",
            created_at=datetime.now(UTC),
            identities=(Identity(kind="channel_user", channel=channel, value="u"),),
        )
        assert display_name(contact) == f"{spelled} user"
