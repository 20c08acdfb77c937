"""``deskbridge stats``: the service figures of a running gateway, read from its
``/metrics`` (no Redis access needed)."""

from __future__ import annotations

from typing import Any

import click
import httpx
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from deskbridge.metrics import csat_by_team, percentile_text, quantile, summarize
from deskbridge.schemas import brand

__all__ = ["quantile", "stats", "summarize"]

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False)


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


@click.command()
@click.option(
    "--url",
    envvar="DESKBRIDGE_URL",
    default=None,
    help="The running gateway (its /metrics), or its DESKBRIDGE_METRICS_ADDRESS (default "
    "$DESKBRIDGE_URL, else http://$DESKBRIDGE_HOST:$DESKBRIDGE_PORT).",
)
@click.option(
    "--token",
    envvar="DESKBRIDGE_METRICS_TOKEN",
    default=None,
    help="The gateway's DESKBRIDGE_METRICS_TOKEN, when it has one (sent as a bearer).",
)
def stats(url: str | None, token: str | None) -> None:
    """Print the service figures of a running gateway: messages per channel, customers
    waiting, SLA breaches, first-response and reply times (median and 90th percentile),
    the average satisfaction score (and how many answered), and the bot sessions that
    ended without a person.

    The satisfaction score is shown per channel and per team (the desk group the
    account's routing rules assigned).

    A percentile is exact when there was one response; otherwise it is the bucket of
    the gateway's histogram it falls in (bounds 1, 5, 15, 30 min, 1, 2, 4, 8, 24, 48 h),
    printed as a range such as "1 min to 5 min".

    \b
    Example:
      deskbridge stats --url http://127.0.0.1:8080
    """
    from deskbridge.cli.admin_api import default_url

    url = url or default_url()
    try:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        resp = httpx.get(url.rstrip("/") + "/metrics", headers=headers, timeout=10)
        resp.raise_for_status()
    except httpx.HTTPError as exc:
        err.print(f"error: cannot read {url}/metrics ({type(exc).__name__})", markup=False)
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
            brand(channel),
            str(r.get("inbound", 0)),
            str(r.get("outbound", 0)),
            str(r.get("awaiting", 0)),
            str(r.get("breaches", 0)),
            percentile_text(r.get("first_p50")),
            percentile_text(r.get("first_p90")),
            percentile_text(r.get("reply_p50")),
            percentile_text(r.get("reply_p90")),
        )
    # never squeezed into the terminal (or 80 columns when piped): figures stay whole
    wanted = Measurement.get(out, out.options.update_width(1000), table).maximum
    out.width = max(out.width, wanted)
    out.print(table)
    surveys = Table(box=None, header_style="bold")
    for col in ("account", "channel", "CSAT (answers)", "bot resolved/sessions"):
        surveys.add_column(col)
    for (account, channel), r in sorted(rows.items()):
        if account and (r.get("csat_count") or r.get("bot_started")):
            surveys.add_row(account, brand(channel), _csat(r), _bot(r))
    if surveys.row_count:
        out.print(surveys)
    teams = Table(box=None, header_style="bold")
    for col in ("account", "team", "CSAT (answers)"):
        teams.add_column(col)
    for (account, team), (total, count) in sorted(csat_by_team(resp.text).items()):
        if account and count and team != "none":
            teams.add_row(account, team, _csat({"csat_sum": total, "csat_count": count}))
    if teams.row_count:
        out.print(teams)
