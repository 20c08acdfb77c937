"""``deskbridge stats``: the service figures of a running gateway, read from its
``/metrics`` (no Redis access needed)."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import click
import httpx
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from rich.table import Table

__all__ = ["quantile", "stats", "summarize"]

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False)


def quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """The ``q`` quantile of a Prometheus histogram (cumulative ``(le, count)`` pairs),
    interpolated within the bucket, as ``histogram_quantile`` does. None when empty."""
    buckets = sorted(buckets)
    if not buckets or buckets[-1][1] == 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if math.isinf(le):
                return lower  # in the open-ended bucket: the last finite bound
            span = count - below
            return lower + (le - lower) * ((rank - below) / span if span else 1.0)
        lower, below = le, count
    return None


def summarize(text: str) -> dict[tuple[str, str], dict[str, Any]]:
    """Per (account, channel): messages in and out, waiting conversations, SLA
    breaches, first-response and reply-time medians and 90th percentiles, satisfaction
    scores (sum and count) and bot sessions (started, handed off)."""
    rows: dict[tuple[str, str], dict[str, Any]] = defaultdict(dict)
    hist: dict[tuple[str, str, str], list[tuple[float, float]]] = defaultdict(list)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            key = (labels.get("account", ""), labels.get("channel", ""))
            if sample.name == "deskbridge_messages_total":
                rows[key][labels.get("direction", "")] = int(sample.value)
            elif sample.name == "deskbridge_conversations_awaiting_reply":
                rows[key]["awaiting"] = int(sample.value)
            elif sample.name == "deskbridge_sla_breaches":
                rows[key]["breaches"] = int(sample.value)
            elif sample.name in ("deskbridge_csat_score_sum", "deskbridge_csat_score_count"):
                which = "csat_sum" if sample.name.endswith("_sum") else "csat_count"
                rows[key][which] = rows[key].get(which, 0.0) + sample.value  # languages summed
            elif sample.name == "deskbridge_bot_sessions_total":
                which = f"bot_{labels.get('outcome', '')}"
                rows[key][which] = rows[key].get(which, 0.0) + sample.value
            elif sample.name in (
                "deskbridge_first_response_seconds_bucket",
                "deskbridge_reply_seconds_bucket",
            ):
                which = "first" if "first" in sample.name else "reply"
                hist[(*key, which)].append((float(labels["le"]), sample.value))
    for (account, channel, which), buckets in hist.items():
        merged: dict[float, float] = defaultdict(float)
        for le, count in buckets:  # languages summed
            merged[le] += count
        pairs = sorted(merged.items())
        rows[(account, channel)][f"{which}_p50"] = quantile(pairs, 0.5)
        rows[(account, channel)][f"{which}_p90"] = quantile(pairs, 0.9)
    return dict(rows)


def _csat(r: dict[str, Any]) -> str:
    """The average score and how many answered: ``4.3 (12)``."""
    count = r.get("csat_count", 0.0)
    return f"{r.get('csat_sum', 0.0) / count:.1f} ({count:.0f})" if count else "-"


def _bot(r: dict[str, Any]) -> str:
    """Bot sessions resolved without a person, of those started: ``8/10``."""
    started = r.get("bot_started", 0.0)
    if not started:
        return "-"
    return f"{started - r.get('bot_handed_off', 0.0):.0f}/{started:.0f}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


@click.command()
@click.option(
    "--url",
    envvar="DESKBRIDGE_URL",
    default="http://127.0.0.1:8080",
    show_default=True,
    help="The running gateway (its /metrics), or its DESKBRIDGE_METRICS_ADDRESS.",
)
@click.option(
    "--token",
    envvar="DESKBRIDGE_METRICS_TOKEN",
    default=None,
    help="The gateway's DESKBRIDGE_METRICS_TOKEN, when it has one (sent as a bearer).",
)
def stats(url: str, token: str | None) -> None:
    """Print the service figures of a running gateway: messages per channel, customers
    waiting, SLA breaches, first-response and reply times (median and 90th percentile),
    the average satisfaction score (and how many answered), and the bot sessions that
    ended without a person.

    \b
    Example:
      deskbridge stats --url http://127.0.0.1:8080
    """
    try:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        resp = httpx.get(url.rstrip("/") + "/metrics", headers=headers, timeout=10)
        resp.raise_for_status()
    except httpx.HTTPError as exc:
        err.print(f"[bold red]error:[/] cannot read {url}/metrics ({type(exc).__name__})")
        raise SystemExit(3) from None
    rows = summarize(resp.text)
    table = Table(box=None, header_style="bold")
    for col in ("account", "channel", "in", "out", "waiting", "SLA breached"):
        table.add_column(col)
    for col in ("first reply p50", "p90", "reply p50", "p90"):
        table.add_column(col, justify="right")
    for (account, channel), r in sorted(rows.items()):
        if not account:
            continue
        table.add_row(
            account,
            channel,
            str(r.get("inbound", 0)),
            str(r.get("outbound", 0)),
            str(r.get("awaiting", 0)),
            str(r.get("breaches", 0)),
            _duration(r.get("first_p50")),
            _duration(r.get("first_p90")),
            _duration(r.get("reply_p50")),
            _duration(r.get("reply_p90")),
        )
    out.print(table)
    surveys = Table(box=None, header_style="bold")
    for col in ("account", "channel", "CSAT (answers)", "bot resolved/sessions"):
        surveys.add_column(col)
    for (account, channel), r in sorted(rows.items()):
        if account and (r.get("csat_count") or r.get("bot_started")):
            surveys.add_row(account, channel, _csat(r), _bot(r))
    if surveys.row_count:
        out.print(surveys)
