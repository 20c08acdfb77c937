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
from rich.measure import Measurement
from rich.table import Table

from deskbridge.schemas import brand

__all__ = ["quantile", "stats", "summarize"]

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False)


def quantile(buckets: list[tuple[float, float]], q: float) -> tuple[float, float] | None:
    """The bounds ``(lower, upper]`` of the bucket of a Prometheus histogram (cumulative
    ``(le, count)`` pairs) that holds its ``q`` quantile; ``upper`` is infinite in the
    open-ended bucket. None when empty. A histogram keeps no finer truth than that."""
    buckets = sorted(buckets)
    if not buckets or buckets[-1][1] == 0:
        return None
    rank = q * buckets[-1][1]
    lower = 0.0
    for le, count in buckets:
        if count >= rank:
            return (lower, le)
        lower = le
    return None


_HISTOGRAMS = {
    "deskbridge_first_response_seconds": "first",
    "deskbridge_reply_seconds": "reply",
}


def summarize(text: str) -> dict[tuple[str, str], dict[str, Any]]:
    """Per (account, channel): messages in and out, waiting conversations, SLA
    breaches, and the first-response and reply-time medians and 90th percentiles as
    ``(lower, upper)`` seconds: the bucket each falls in, or ``(x, x)`` when exact (a
    single response, whose time the histogram's sum holds)."""
    rows: dict[tuple[str, str], dict[str, Any]] = defaultdict(dict)
    hist: dict[tuple[str, str, str], dict[float, float]] = defaultdict(lambda: defaultdict(float))
    totals: dict[tuple[str, str, str], list[float]] = defaultdict(lambda: [0.0, 0.0])
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            key = (labels.get("account", ""), labels.get("channel", ""))
            base, _, part = sample.name.rpartition("_")
            if sample.name == "deskbridge_messages_total":
                rows[key][labels.get("direction", "")] = int(sample.value)
            elif sample.name == "deskbridge_conversations_awaiting_reply":
                rows[key]["awaiting"] = int(sample.value)
            elif sample.name == "deskbridge_sla_breaches":
                rows[key]["breaches"] = int(sample.value)
            elif base in _HISTOGRAMS and part == "bucket":  # languages summed
                hist[(*key, _HISTOGRAMS[base])][float(labels["le"])] += sample.value
            elif base in _HISTOGRAMS and part in ("count", "sum"):
                totals[(*key, _HISTOGRAMS[base])][part == "sum"] += sample.value
    for (account, channel, which), merged in hist.items():
        count, total = totals[(account, channel, which)]
        pairs = sorted(merged.items())
        for name, q in (("p50", 0.5), ("p90", 0.9)):
            found = (total, total) if count == 1 else quantile(pairs, q)
            rows[(account, channel)][f"{which}_{name}"] = found
    return dict(rows)


def _short(seconds: float, *, exact: bool = False) -> str:
    if seconds < (120 if exact else 60):
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.0f} h"


def _duration(bounds: tuple[float, float] | None) -> str:
    """A percentile as the command prints it: exact, or the bucket it falls in."""
    if bounds is None:
        return "-"
    low, high = bounds
    if low == high:
        return _short(low, exact=True) if low < 7200 else f"{low / 3600:.1f} h"
    if math.isinf(high):
        return f"> {_short(low)}"
    if low == 0:
        return f"≤ {_short(high)}"
    return f"{_short(low)} to {_short(high)}"


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
    waiting, SLA breaches, first-response and reply times (median and 90th percentile).

    A percentile is exact when there was one response; otherwise it is the bucket of
    the gateway's histogram it falls in (bounds 1, 5, 15, 30 min, 1, 2, 4, 8, 24, 48 h),
    printed as a range such as "1 min to 5 min".

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
            brand(channel),
            str(r.get("inbound", 0)),
            str(r.get("outbound", 0)),
            str(r.get("awaiting", 0)),
            str(r.get("breaches", 0)),
            _duration(r.get("first_p50")),
            _duration(r.get("first_p90")),
            _duration(r.get("reply_p50")),
            _duration(r.get("reply_p90")),
        )
    # never squeezed into the terminal (or 80 columns when piped): figures stay whole
    wanted = Measurement.get(out, out.options.update_width(1000), table).maximum
    out.width = max(out.width, wanted)
    out.print(table)
