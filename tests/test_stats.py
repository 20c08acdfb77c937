"""``deskbridge stats`` over a running gateway's /metrics."""

from __future__ import annotations

import asyncio

from click.testing import CliRunner
from prometheus_client import generate_latest

from deskbridge.cli.main import cli
from deskbridge.cli.stats import quantile, summarize
from deskbridge.gateway import create_app
from deskbridge.metrics import Metrics


def test_quantiles_interpolate_like_histogram_quantile() -> None:
    buckets = [(60.0, 10.0), (300.0, 30.0), (float("inf"), 40.0)]
    assert quantile(buckets, 0.5) == 60 + 240 * (20 - 10) / 20
    assert quantile(buckets, 0.9) == 300.0  # in the open bucket: its lower bound
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
    for score, language in ((5, "en"), (4, "es"), (3, "en")):
        m.csat_score.labels("acme", "whatsapp", language).observe(score)
    m.bot_sessions.labels("acme", "whatsapp", "en", "started").inc(10)
    m.bot_sessions.labels("acme", "whatsapp", "en", "handed_off").inc(3)
    return m


def test_summary_of_the_service_figures() -> None:
    rows = summarize(generate_latest(observed().registry).decode())
    r = rows[("acme", "whatsapp")]
    assert (r["inbound"], r["outbound"], r["awaiting"], r["breaches"]) == (12, 5, 3, 1)
    assert 60 < r["first_p50"] < 300 and r["reply_p50"] is not None
    assert (r["csat_sum"], r["csat_count"]) == (12, 3)  # languages summed
    assert (r["bot_started"], r["bot_handed_off"]) == (10, 3)


async def test_the_command_reads_a_running_gateway(make_runtime, aiohttp_server) -> None:
    rt = make_runtime()
    rt.metrics = observed()
    server = await aiohttp_server(create_app(rt, role="serve"))
    url = str(server.make_url("")).rstrip("/")
    result = await asyncio.to_thread(CliRunner().invoke, cli, ["stats", "--url", url])
    assert result.exit_code == 0, result.output
    assert "whatsapp" in result.output and "12" in result.output
    assert "4.0 (3)" in result.output  # the average score, of three answers
    assert "7/10" in result.output  # bot sessions that ended without a person
    down = await asyncio.to_thread(
        CliRunner().invoke, cli, ["stats", "--url", "http://127.0.0.1:9"]
    )
    assert down.exit_code == 3
