"""The console's overview: delivery counts and customers waiting from Redis (the same
everywhere), messages and first-reply times from the process's metrics (what
``/metrics`` and ``deskbridge stats`` report), channel health per channel from the
admin health report and the platform checks the worker exports."""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

from aiohttp import web

from deskbridge.gateway.admin.models import MAX_LIMIT, DeliveryQuery
from deskbridge.gateway.admin.routes import list_deliveries
from deskbridge.gateway.console.charts import Bar, bars
from deskbridge.gateway.console.render import DASH, duration, e, query_link, table
from deskbridge.gateway.console.session import Ctx
from deskbridge.gateway.health import readiness
from deskbridge.gateway.state import ROLE
from deskbridge.metrics import percentile_text, summarize
from deskbridge.schemas import brand

__all__ = ["overview"]

Key = tuple[str, str]


def _bar(bounds: tuple[float, float] | None) -> float | None:
    """A percentile's bar length: exact when the samples give it, else the upper end of
    the histogram bucket it falls in (the lower end for the open last bucket); the
    table beside the chart prints the bucket itself."""
    if bounds is None:
        return None
    low, high = bounds
    return low if low == high or high == float("inf") else high


async def _waiting(ctx: Ctx, accounts: list[str]) -> tuple[dict[Key, list[float]], dict[Key, int]]:
    """Since when each customer waits, and how many wait past the channel's response
    target, per (account, channel): read from Redis, as the worker's sweeper does."""
    since: dict[Key, list[float]] = defaultdict(list)
    breached: dict[Key, int] = defaultdict(int)
    now = time.time()
    for a in accounts:
        routing = ctx.rt.accounts.accounts[a].routing
        sla = {c.value: t for c, t in routing.sla.items()} if routing is not None else {}
        for channel, at in await ctx.rt.service.waiting(a):
            since[(a, channel)].append(at)
            target = sla.get(channel)
            if target is not None and now - at > target:
                breached[(a, channel)] += 1
    return since, breached


def _source_note(role: str) -> str:
    if role == "serve":
        return (
            "<p class=muted>This gateway runs without a worker (<code>deskbridge serve</code>): "
            "messages and first-reply times are counted in each worker's memory and are not "
            "in Redis, so they are not here. Read them from a worker with <code>deskbridge "
            "stats --url</code> its <code>DESKBRIDGE_METRICS_ADDRESS</code>. Waiting and SLA "
            "figures come from Redis.</p>"
        )
    return (
        "<p class=muted>Messages and first-reply times from this process's metrics (with its "
        "worker), as <code>/metrics</code> and <code>deskbridge stats</code> report them; "
        "waiting and SLA figures from Redis.</p>"
    )


async def overview(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    """The figures of ``/metrics`` and ``deskbridge stats``, and the delivery counts."""
    rt = ctx.rt
    accounts = [a for a in rt.accounts.accounts if ctx.who.sees(a)]
    rows = summarize(rt.metrics.exposition().decode())
    pending = await list_deliveries(
        rt, ctx.who, DeliveryQuery(state="pending", limit=str(MAX_LIMIT))
    )
    retrying = sum(1 for d in pending.deliveries if d.attempts or d.last_error)
    oldest = min((d.created_at for d in pending.deliveries), default=None)
    counts = {a: await rt.deliveries.counts(a) for a in accounts}
    waiting, breached = await _waiting(ctx, accounts)
    starts = [s for v in waiting.values() for s in v]
    now = time.time()
    figures = [
        ("Pending", f"{sum(c['pending'] for c in counts.values())}"),
        ("Retrying", f"{retrying}{'+' if pending.next_cursor else ''}"),
        ("Failed (dead)", f"{sum(c['dead'] for c in counts.values())}"),
        ("Oldest pending", duration(now - oldest.timestamp()) if oldest else DASH),
        ("Customers waiting", str(len(starts))),
        ("Longest wait", duration(now - min(starts)) if starts else DASH),
    ]
    grid = "".join(f"<div class=figure><b>{e(v)}</b><span>{e(k)}</span></div>" for k, v in figures)
    mine = {k: r for k, r in rows.items() if k[0] in accounts}
    msg_chart = bars(
        "Messages per channel",
        [
            Bar(
                f"{a} · {brand(c)}",
                [
                    ("bar-in", "inbound", r.get("inbound", 0)),
                    ("bar-out", "outbound", r.get("outbound", 0)),
                ],
            )
            for (a, c), r in sorted(mine.items())
            if "inbound" in r or "outbound" in r
        ],
    )
    dlv_chart = bars(
        "Deliveries by account",
        [
            Bar(a, [("bar-pending", "pending", c["pending"]), ("bar-dead", "failed", c["dead"])])
            for a, c in sorted(counts.items())
        ],
    )
    first_chart = bars(
        "First reply time per channel: median and 90th percentile",
        [
            Bar(
                f"{a} · {brand(c)}",
                [
                    ("bar-p50", "median", _bar(r["first_p50"]) or 0.0),
                    (
                        "bar-p90",
                        "90th percentile",
                        _bar(r.get("first_p90") or r["first_p50"]) or 0.0,
                    ),
                ],
                texts=[
                    percentile_text(r["first_p50"]),
                    percentile_text(r.get("first_p90") or r["first_p50"]),
                ],
            )
            for (a, c), r in sorted(mine.items())
            if r.get("first_p50") is not None
        ],
        fmt=duration,
    )
    service = table(
        [
            "Account",
            "Channel",
            "In#",
            "Out#",
            "Waiting#",
            "SLA breached#",
            "First reply p50#",
            "p90#",
        ],
        [
            [
                e(a),
                e(brand(c)),
                str(mine.get((a, c), {}).get("inbound", 0)),
                str(mine.get((a, c), {}).get("outbound", 0)),
                str(len(waiting.get((a, c), []))),
                str(breached.get((a, c), 0)),
                percentile_text(mine.get((a, c), {}).get("first_p50")),
                percentile_text(mine.get((a, c), {}).get("first_p90")),
            ]
            for a, c in sorted(set(mine) | set(waiting))
            if c
        ],
        "No messages yet.",
    )
    body = (
        f'<div class=grid aria-label="Delivery figures">{grid}</div>'
        f"<section><h2>Messages per channel</h2>{msg_chart}</section>"
        f"<section><h2>Deliveries</h2>{dlv_chart}"
        f"<p>{query_link('/console/deliveries', {'state': 'failed'}, 'See failed deliveries')}</p></section>"
        f"<section><h2>First reply times</h2>{first_chart}</section>"
        f"<section><h2>Service</h2>{service}{_source_note(request.app[ROLE])}</section>"
        + await _health(request, ctx)
    )
    return ctx.page("Overview", body, active="overview")


def _platform_checks(ctx: Ctx) -> dict[Key, dict[str, float]]:
    """``deskbridge_channel_health{account,channel,check}`` of this process's metrics
    (the worker polls the platforms and sets it)."""
    out: dict[Key, dict[str, float]] = defaultdict(dict)
    for family in ctx.rt.metrics.registry.collect():
        if family.name == "deskbridge_channel_health":
            for s in family.samples:
                out[(s.labels["account"], s.labels["channel"])][s.labels["check"]] = s.value
    return out


def _checks_text(values: dict[str, float]) -> str:
    said = []
    if "credentials_valid" in values:
        said.append("credentials valid" if values["credentials_valid"] else "credentials refused")
    if values.get("webhook_pending"):
        said.append(f"{values['webhook_pending']:g} updates held by the platform")
    if values.get("webhook_error_age_seconds"):
        said.append(f"last webhook error {duration(values['webhook_error_age_seconds'])} ago")
    if "quota_used_ratio" in values:
        said.append(f"quota {values['quota_used_ratio']:.0%} used")
    return "; ".join(said)


def _health_rows(accounts: dict[str, Any], checks: dict[Key, dict[str, float]]) -> list[list[str]]:
    rows = []
    for name, info in sorted(accounts.items()):
        problems: dict[str, str] = dict(info.get("problems") or {})
        peers = [(c, f"channel {c}") for c in info.get("channels", [])]
        desk = f"desk {info.get('desk', '')}"
        peers.append((desk, desk))
        # anything else that failed (a listener that could not bind) is a row of its own
        known = {what for _, what in peers}
        peers += [(what, what) for what in sorted(problems) if what not in known]
        for label, what in peers:
            mine = {k: v for k, v in problems.items() if k == what}
            platform = checks.get((name, label), {})
            bad = bool(mine) or platform.get("credentials_valid") == 0
            rows.append(
                [
                    e(name),
                    e(label),
                    '<span class="state state-dead">failing</span>'
                    if bad
                    else '<span class="state state-delivered">ok</span>',
                    e(_checks_text(platform)) or "<span class=muted>none in this process</span>",
                    e("; ".join(f"{k}: {v}" for k, v in mine.items()))
                    or "<span class=muted>none</span>",
                ]
            )
    return rows


async def _health(request: web.Request, ctx: Ctx) -> str:
    """Channel health per channel (and desk): the admin health route's report and the
    platform checks of ``/metrics``, for ``ops:read`` as that route needs."""
    if not ctx.has("ops:read"):
        return "<section><h2>Channel health</h2><p class=muted>Needs the <code>ops:read</code> scope.</p></section>"
    ready, report = await readiness(ctx.rt, request.app[ROLE], sees=ctx.who.sees)
    checks: dict[str, Any] = dict(report.get("checks", {}))  # type: ignore[call-overload]
    accounts: dict[str, Any] = dict(report.get("accounts", {}))  # type: ignore[call-overload]
    status = "ready" if ready else "not ready"
    return (
        f"<section><h2>Channel health</h2><p>Gateway <b>{e(status)}</b>: "
        f"{e(', '.join(f'{k} {v}' for k, v in checks.items()))}</p>"
        + table(
            ["Account", "Channel", "Status", "Platform checks", "Problems"],
            _health_rows(accounts, _platform_checks(ctx)),
            "No accounts.",
        )
        + "<p class=muted>Problems are what deliveries and listeners met (Redis, every "
        "process); platform checks are polled by the worker "
        "(<code>deskbridge_channel_health</code> in <code>/metrics</code>).</p></section>"
    )
