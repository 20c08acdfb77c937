"""The console's delivery pages: the overview, the list with the CLI's filters, one
delivery with its attempts, replay and discard (one, or a filtered set after a dry run),
raw events with re-ingest (dry run first) and the audit log. Each calls the admin API's
own function for the work, so the scopes, validation and audit entries are the API's."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from prometheus_client import generate_latest

from deskbridge.gateway.admin.models import (
    CHANNEL_NAMES,
    DESK_NAMES,
    MAX_IDS,
    MAX_LIMIT,
    SOURCES,
    STATES,
    DeliveryQuery,
    DiscardBody,
    EventsQuery,
    FilterBody,
    PageQuery,
    ReingestBody,
    ReplayBody,
)
from deskbridge.gateway.admin.routes import (
    AUDIT_LIMITED,
    audit_page,
    delivery_detail,
    discard,
    list_deliveries,
    list_events,
    reingest,
    replay,
)
from deskbridge.gateway.console.charts import Bar, bars
from deskbridge.gateway.console.render import (
    DASH,
    csrf_field,
    duration,
    e,
    query_link,
    state,
    table,
    when,
)
from deskbridge.gateway.console.session import Ctx
from deskbridge.gateway.health import readiness
from deskbridge.gateway.state import ROLE
from deskbridge.metrics import percentile_text, summarize
from deskbridge.schemas import Direction, brand

__all__ = [
    "audit",
    "bulk_confirm",
    "delivery",
    "discard_post",
    "events",
    "listing",
    "overview",
    "reingest_post",
    "replay_post",
]

_FILTERS = (
    "account",
    "state",
    "direction",
    "channel",
    "desk",
    "conversation",
    "error",
    "since",
    "until",
    "kind",
)
_RELATIVE = re.compile(r"^(\d{1,4})([mhd])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


def _time(value: str | None) -> str | None:
    """A filter time: RFC 3339, or ``30m``/``2h``/``7d`` ago (as the CLI takes)."""
    if not value:
        return None
    found = _RELATIVE.match(value.strip())
    if found:
        ago = timedelta(**{_UNITS[found[2]]: int(found[1])})
        return (datetime.now(UTC) - ago).isoformat(timespec="seconds")
    return value.strip()


def _filters(source: Mapping[str, str]) -> dict[str, str]:
    return {k: source[k].strip() for k in _FILTERS if source.get(k, "").strip()}


def _filter_body(values: Mapping[str, str]) -> FilterBody:
    return FilterBody(
        **{k: v for k, v in values.items() if k not in ("since", "until")},
        since=_time(values.get("since")),
        until=_time(values.get("until")),
    )


def _select(name: str, label: str, options: list[str], chosen: str) -> str:
    opts = '<option value="">any</option>' + "".join(
        f"<option{' selected' if o == chosen else ''}>{e(o)}</option>" for o in options
    )
    return f'<label for="f-{name}">{e(label)}<select id="f-{name}" name="{name}">{opts}</select></label>'


def _text(name: str, label: str, value: str, hint: str = "") -> str:
    return (
        f'<label for="f-{name}">{e(label)}<input id="f-{name}" name="{name}" value="{e(value)}"'
        f' placeholder="{e(hint)}" size="14"></label>'
    )


def _filter_form(ctx: Ctx, chosen: Mapping[str, str]) -> str:
    accounts = [a for a in ctx.rt.accounts.accounts if ctx.who.sees(a)]
    return (
        '<form class=filters method=get action="/console/deliveries" aria-label="Filter deliveries">'
        + _select("account", "Account", accounts, chosen.get("account", ""))
        + _select("state", "State", STATES, chosen.get("state", ""))
        + _select(
            "direction", "Direction", [d.value for d in Direction], chosen.get("direction", "")
        )
        + _select("channel", "Channel", CHANNEL_NAMES, chosen.get("channel", ""))
        + _select("desk", "Desk", DESK_NAMES, chosen.get("desk", ""))
        + _select("kind", "Kind", ["event", "note"], chosen.get("kind", ""))
        + _text("conversation", "Conversation", chosen.get("conversation", ""))
        + _text("error", "Error text", chosen.get("error", ""), "HTTP 422")
        + _text("since", "Since", chosen.get("since", ""), "2h or 2026-05-01T10:00Z")
        + _text("until", "Until", chosen.get("until", ""))
        + "<button type=submit>Filter</button></form>"
    )


# --- overview ---------------------------------------------------------------------------


async def overview(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    """The figures of ``/metrics`` and ``deskbridge stats``, and the delivery counts."""
    rt = ctx.rt
    accounts = [a for a in rt.accounts.accounts if ctx.who.sees(a)]
    rows = summarize(generate_latest(rt.metrics.registry).decode())
    pending = await list_deliveries(
        rt, ctx.who, DeliveryQuery(state="pending", limit=str(MAX_LIMIT))
    )
    retrying = sum(1 for d in pending.deliveries if d.attempts or d.last_error)
    oldest = min((d.created_at for d in pending.deliveries), default=None)
    counts = {a: await rt.deliveries.counts(a) for a in accounts}
    waiting = [w for a in accounts for w in await rt.service.waiting(a)]
    now = time.time()
    figures = [
        ("Pending", f"{sum(c['pending'] for c in counts.values())}"),
        ("Retrying", f"{retrying}{'+' if pending.next_cursor else ''}"),
        ("Failed (dead)", f"{sum(c['dead'] for c in counts.values())}"),
        ("Oldest pending", duration(now - oldest.timestamp()) if oldest else DASH),
        ("Customers waiting", str(len(waiting))),
        ("Longest wait", duration(now - min(s for _, s in waiting)) if waiting else DASH),
    ]
    grid = "".join(f"<div class=figure><b>{e(v)}</b><span>{e(k)}</span></div>" for k, v in figures)
    mine = {k: r for k, r in rows.items() if k[0] in accounts}
    msg_chart = bars(
        "Messages per channel",
        [
            Bar(
                f"{a} · {c}",
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
                str(r.get("inbound", 0)),
                str(r.get("outbound", 0)),
                str(r.get("awaiting", 0)),
                str(r.get("breaches", 0)),
                percentile_text(r.get("first_p50")),
                percentile_text(r.get("first_p90")),
            ]
            for (a, c), r in sorted(mine.items())
        ],
        "No messages since this process started.",
    )
    body = (
        f'<div class=grid aria-label="Delivery figures">{grid}</div>'
        f"<section><h2>Messages per channel</h2>{msg_chart}</section>"
        f"<section><h2>Deliveries</h2>{dlv_chart}"
        f"<p>{query_link('/console/deliveries', {'state': 'failed'}, 'See failed deliveries')}</p></section>"
        f"<section><h2>Service</h2>{service}<p class=muted>From this process's metrics, as "
        "<code>/metrics</code> and <code>deskbridge stats</code> report them.</p></section>"
        + await _health(request, ctx)
    )
    return ctx.page("Overview", body, active="overview")


async def _health(request: web.Request, ctx: Ctx) -> str:
    if not ctx.has("ops:read"):
        return "<section><h2>Channel health</h2><p class=muted>Needs the <code>ops:read</code> scope.</p></section>"
    ready, report = await readiness(ctx.rt, request.app[ROLE], sees=ctx.who.sees)
    checks: dict[str, Any] = dict(report.get("checks", {}))  # type: ignore[call-overload]
    accounts: dict[str, Any] = dict(report.get("accounts", {}))  # type: ignore[call-overload]
    rows = [
        [
            e(name),
            e(str(info.get("desk", ""))),
            e(", ".join(info.get("channels", []))),
            e("; ".join(f"{k}: {v}" for k, v in info.get("problems", {}).items()))
            or "<span class=muted>none</span>",
        ]
        for name, info in sorted(accounts.items())
    ]
    status = "ready" if ready else "not ready"
    return (
        f"<section><h2>Channel health</h2><p>Gateway <b>{e(status)}</b>: "
        f"{e(', '.join(f'{k} {v}' for k, v in checks.items()))}</p>"
        + table(["Account", "Desk", "Channels", "Problems"], rows, "No accounts.")
        + "</section>"
    )


# --- deliveries -------------------------------------------------------------------------------


async def listing(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    chosen = _filters(request.query)
    query = DeliveryQuery(
        **{**{k: v for k, v in chosen.items() if k not in ("since", "until")}},
        since=_time(chosen.get("since")),
        until=_time(chosen.get("until")),
        limit="50",
        cursor=request.query.get("cursor") or None,
    )
    page = await list_deliveries(ctx.rt, ctx.who, query)
    rows = [
        [
            f'<a href="/console/deliveries/{e(d.id)}"><code>{e(d.id[:12])}…</code></a>',
            state(d.state.value),
            e(d.direction.value),
            e(d.channel),
            e(d.desk),
            e(d.account),
            when(d.created_at),
            str(d.attempts),
            e((d.last_error or d.reason or "")[:120]),
        ]
        for d in page.deliveries
    ]
    more = (
        f"<p class=pager>{query_link('/console/deliveries', {**chosen, 'cursor': page.next_cursor}, 'Next page →')}</p>"
        if page.next_cursor
        else ""
    )
    bulk = ""
    if ctx.has("deliveries:write"):
        hidden = "".join(
            f'<input type=hidden name="{k}" value="{e(v)}">' for k, v in chosen.items()
        )
        bulk = (
            "<div class=actions>"
            f'<form method=get action="/console/deliveries/bulk">{hidden}<input type=hidden name=action value=replay>'
            "<button type=submit class=secondary>Replay every match…</button></form>"
            f'<form method=get action="/console/deliveries/bulk">{hidden}<input type=hidden name=action value=discard>'
            "<button type=submit class=secondary>Discard every match…</button></form></div>"
        )
    body = (
        f"<section>{_filter_form(ctx, chosen)}</section><section>"
        + table(
            [
                "Delivery",
                "State",
                "Direction",
                "Channel",
                "Desk",
                "Account",
                "Created",
                "Attempts#",
                "Last error",
            ],
            rows,
            "No delivery matches (a narrow filter may need the next page).",
        )
        + more
        + bulk
        + "</section>"
    )
    return ctx.page("Deliveries", body, active="deliveries")


async def delivery(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    ident = request.match_info["id"]
    d = await delivery_detail(ctx.rt, ctx.who, ident)
    if d is None:
        return ctx.page(
            "Not found",
            f"<p>No delivery <code>{e(ident)}</code>.</p>",
            status=404,
            active="deliveries",
        )
    facts = [
        ("State", state(d.state.value)),
        ("Account", e(d.account)),
        ("Direction", e(d.direction.value)),
        ("Channel → desk", f"{e(d.channel)} → {e(d.desk)}"),
        (
            "Conversation",
            query_link(
                "/console/deliveries", {"conversation": d.conversation_id}, d.conversation_id
            ),
        ),
        ("Created", when(d.created_at)),
        ("Updated", when(d.updated_at)),
        ("Attempts", str(d.attempts)),
        ("Last error", e(d.last_error or DASH)),
        ("Last HTTP status", e(str(d.last_status or DASH))),
        ("Dead because", e(d.reason or DASH)),
        ("Replays", f"{d.replays} (last by {e(d.replayed_by or DASH)})"),
        (
            "Discarded",
            f"{e(d.discard_reason or DASH)} (by {e(d.discarded_by or DASH)})"
            if d.discarded_at
            else DASH,
        ),
        ("Channel status", e(d.channel_status or DASH)),
    ]
    kv = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts)
    attempts = table(
        ["When", "Outcome", "HTTP status#", "Wait (s)#", "Error"],
        [
            [
                when(a.at),
                e(a.outcome),
                e(str(a.http_status or "")),
                e(f"{a.wait:g}" if a.wait else ""),
                e(a.error or ""),
            ]
            for a in d.attempt_log
        ],
        "No attempt yet.",
    )
    parts = table(
        ["Part#", "Platform id"],
        [[e(n), f"<code>{e(pid)}</code>"] for n, pid in d.parts_sent.items()],
        "No part sent yet.",
    )
    actions = ""
    if ctx.has("deliveries:write"):
        ident_field = f'<input type=hidden name=id value="{e(d.id)}"><input type=hidden name=confirmed value=1>'
        actions = (
            "<section><h2>Actions</h2><div class=actions>"
            + (
                f'<form method=post action="/console/deliveries/replay">{csrf_field(ctx.csrf)}{ident_field}'
                "<button type=submit>Replay</button></form>"
                if d.state.value == "dead" and d.reason != "parse_failed"
                else ""
            )
            + f'<form method=post action="/console/deliveries/discard">{csrf_field(ctx.csrf)}{ident_field}'
            '<label for="reason">Reason to discard</label> <input id="reason" name="reason" required maxlength=500>'
            " <button type=submit class=danger>Discard</button></form></div></section>"
        )
    body = (
        f'<section><dl class=kv aria-label="Delivery">{kv}</dl></section>'
        f"<section><h2>Attempts</h2>{attempts}</section>"
        f"<section><h2>Parts sent</h2>{parts}</section>{actions}"
    )
    return ctx.page(f"Delivery {d.id[:12]}…", body, active="deliveries")


async def _matching(ctx: Ctx, filt: FilterBody) -> tuple[list[str], bool]:
    """The ids a filter matches, up to 10,000 (and whether there were more)."""
    ids: list[str] = []
    cursor: str | None = None
    while True:
        q = DeliveryQuery(**filt.model_dump(exclude_none=True), limit=str(MAX_LIMIT), cursor=cursor)
        page = await list_deliveries(ctx.rt, ctx.who, q)
        ids += [d.id for d in page.deliveries]
        if page.next_cursor is None or len(ids) >= 10_000:
            return ids[:10_000], page.next_cursor is not None
        cursor = page.next_cursor


async def bulk_confirm(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    """How many a replay or discard of the filter would change, with the confirmation."""
    action = request.query.get("action")
    chosen = _filters(request.query)
    filt = _filter_body(chosen)
    if action == "replay":
        dry = await replay(ctx.rt, ctx.who, ReplayBody(filter=filt, dry_run=True))
        ids, more = dry.replayed, dry.truncated
        said = f"{len(ids)} dead letters would be replayed; {len(dry.skipped)} matching deliveries would be skipped (not dead, or parse failures)."
        extra = ""
    elif action == "discard":
        ids, more = await _matching(ctx, filt)
        said = (
            f"{len(ids)} deliveries match; those that are dead, held or pending would be discarded."
        )
        extra = '<p><label for="reason">Reason</label><br><input id="reason" name="reason" required maxlength=500 size=50></p>'
    else:
        return ctx.page(
            "Bad request", "<p>Choose replay or discard.</p>", status=400, active="deliveries"
        )
    if more:
        said += " More than 10,000 match: narrow the filter, or run it again after this batch."
    hidden = "".join(f'<input type=hidden name="{k}" value="{e(v)}">' for k, v in chosen.items())
    verb = "replayed" if action == "replay" else "discarded"
    body = (
        f'<section><p role="status"><b>{e(said)}</b></p>'
        f"<p>Filter: <code>{e(json.dumps(chosen)) or 'none'}</code></p>"
        f'<form id=bulk method=post action="/console/deliveries/{action}" data-verb="{verb}">'
        f"{csrf_field(ctx.csrf)}{hidden}<input type=hidden name=confirmed value=1>{extra}"
        f'<button type=submit class="{"danger" if action == "discard" else ""}">'
        f"{e(action.capitalize())} {len(ids)}</button></form>"
        '<progress id="bulk-progress" hidden value="0" aria-label="Progress"></progress>'
        '<p id="bulk-status" role="status" aria-live="polite"></p>'
        f'<script type="application/json" id="bulk-ids">{json.dumps(ids)}</script></section>'
    )
    return ctx.page(f"Confirm {action}", body, active="deliveries")


def _ids(form: Mapping[str, str]) -> list[str]:
    return [i for i in form.get("id", "").split() if i]


def _done(
    ctx: Ctx, title: str, changed: list[str], skipped: list[Any], missing: list[str]
) -> web.StreamResponse:
    rows = [
        [f'<a href="/console/deliveries/{e(i)}"><code>{e(i)}</code></a>', "done"]
        for i in changed[:200]
    ]
    rows += [[f"<code>{e(s.id)}</code>", e(f"skipped: {s.reason}")] for s in skipped[:200]]
    rows += [[f"<code>{e(i)}</code>", "not found"] for i in missing[:200]]
    body = (
        f'<p class=flash role="status">{len(changed)} done, {len(skipped)} skipped, {len(missing)} not found.</p>'
        + "<section>"
        + table(["Delivery", "Result"], rows, "Nothing.")
        + "</section>"
        + '<p><a href="/console/deliveries">Back to deliveries</a></p>'
    )
    return ctx.page(title, body, active="deliveries")


def _json(changed: int, skipped: int) -> web.Response:
    return web.json_response(
        {"changed": changed, "skipped": skipped}, headers={"Cache-Control": "no-store"}
    )


async def replay_post(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    ids = _ids(ctx.form)
    if ctx.form.get("confirmed") != "1":
        return ctx.page("Bad request", "<p>Confirm the replay first.</p>", status=400)
    if ids:
        result = await replay(ctx.rt, ctx.who, ReplayBody(ids=ids[:MAX_IDS]))
    else:
        result = await replay(ctx.rt, ctx.who, ReplayBody(filter=_filter_body(_filters(ctx.form))))
    if ctx.form.get("format") == "json":
        return _json(len(result.replayed), len(result.skipped))
    return _done(ctx, "Replayed", result.replayed, result.skipped, result.missing)


async def discard_post(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    ids = _ids(ctx.form)
    reason = ctx.form.get("reason", "").strip()
    if ctx.form.get("confirmed") != "1" or not reason:
        return ctx.page(
            "Bad request", "<p>Give the reason to discard, and confirm.</p>", status=400
        )
    if not ids:
        ids, _ = await _matching(ctx, _filter_body(_filters(ctx.form)))
    discarded: list[str] = []
    skipped: list[Any] = []
    missing: list[str] = []
    for at in range(0, len(ids), MAX_IDS):
        result = await discard(
            ctx.rt, ctx.who, DiscardBody(ids=ids[at : at + MAX_IDS], reason=reason)
        )
        discarded += result.discarded
        skipped += result.skipped
        missing += result.missing
    if ctx.form.get("format") == "json":
        return _json(len(discarded), len(skipped))
    return _done(ctx, "Discarded", discarded, skipped, missing)


# --- raw events ---------------------------------------------------------------------------


async def events(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    q = request.query
    chosen = {
        k: q[k].strip() for k in ("account", "channel", "since", "until") if q.get(k, "").strip()
    }
    query = EventsQuery(
        account=chosen.get("account"),
        channel=chosen.get("channel"),
        since=_time(chosen.get("since")),
        until=_time(chosen.get("until")),
        limit="50",
        cursor=q.get("cursor") or None,
    )
    page = await list_events(ctx.rt, ctx.who, query)
    writable = ctx.has("deliveries:write")
    rows = [
        [
            (
                f'<input type=checkbox name=id value="{e(r.id)}" form=reingest aria-label="Select {e(r.id)}">'
                if writable
                else ""
            ),
            f"<code>{e(r.id[:12])}…</code>",
            e(r.account),
            e(r.source),
            when(r.received_at),
            e(f"{r.method} {r.path}"),
            str(r.size),
            (
                f'<a href="/console/deliveries/{e(r.delivery_id)}">parse failed</a>'
                if r.delivery_id
                else "parsed"
            ),
        ]
        for r in page.events
    ]
    accounts = [a for a in ctx.rt.accounts.accounts if ctx.who.sees(a)]
    form = (
        '<form class=filters method=get action="/console/events" aria-label="Filter raw events">'
        + _select("account", "Account", accounts, chosen.get("account", ""))
        + _select("channel", "Channel or desk", SOURCES, chosen.get("channel", ""))
        + _text("since", "Since", chosen.get("since", ""), "1d")
        + _text("until", "Until", chosen.get("until", ""))
        + "<button type=submit>Filter</button></form>"
    )
    more = (
        f"<p class=pager>{query_link('/console/events', {**chosen, 'cursor': page.next_cursor}, 'Next page →')}</p>"
        if page.next_cursor
        else ""
    )
    reingest_form = (
        f'<form id=reingest method=post action="/console/events/reingest">{csrf_field(ctx.csrf)}'
        "<button type=submit>Re-ingest selected (dry run first)</button></form>"
        if writable
        else ""
    )
    body = (
        f"<section>{form}</section><section>"
        + table(
            ["", "Raw request", "Account", "Source", "Received", "Request", "Bytes#", "Parsed"],
            rows,
            "No kept raw request matches.",
        )
        + more
        + reingest_form
        + "</section><p class=muted>Bodies are never shown: they are re-read only to re-ingest.</p>"
    )
    return ctx.page("Raw events", body, active="events")


async def reingest_post(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    ids = _ids(ctx.form)
    if not ids:
        return ctx.page(
            "Bad request",
            "<p>Select the raw requests to re-ingest.</p>",
            status=400,
            active="events",
        )
    dry = ctx.form.get("confirmed") != "1"
    result = await reingest(ctx.rt, ctx.who, ReingestBody(ids=ids, dry_run=dry))
    t = result.totals
    rows = [
        [
            f"<code>{e(r.id[:12])}…</code>",
            e(r.source),
            str(r.new),
            str(r.duplicate),
            str(r.ignored),
            e(r.error or ""),
        ]
        for r in result.raw
    ]
    hidden = "".join(f'<input type=hidden name=id value="{e(i)}">' for i in ids)
    confirm = (
        f'<form method=post action="/console/events/reingest">{csrf_field(ctx.csrf)}{hidden}'
        f"<input type=hidden name=confirmed value=1><button type=submit>Re-ingest {t.new} new events</button></form>"
        if dry
        else ""
    )
    said = "Dry run: nothing changed yet." if dry else "Re-ingested."
    body = (
        f'<p class=flash role="status">{said} {t.raw} requests: {t.new} new, {t.duplicate} duplicate, '
        f"{t.ignored} ignored, {t.errors} errors.</p><section>"
        + table(
            ["Raw request", "Source", "New#", "Duplicate#", "Ignored#", "Error"], rows, "Nothing."
        )
        + confirm
        + "</section>"
    )
    return ctx.page("Re-ingest", body, active="events")


# --- audit ------------------------------------------------------------------------------------


async def audit(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    if ctx.who.limited:
        return ctx.page("Not allowed", f"<p>{e(AUDIT_LIMITED)}.</p>", status=403, active="audit")
    page = await audit_page(
        ctx.rt, PageQuery(limit="100", cursor=request.query.get("cursor") or None)
    )
    rows = [
        [
            when(x.at),
            e(x.who),
            f"<code>{e(x.action)}</code>",
            str(x.count),
            f"<code>{e(json.dumps(x.details)[:300])}</code>",
        ]
        for x in page.entries
    ]
    more = (
        f"<p class=pager>{query_link('/console/audit', {'cursor': page.next_cursor}, 'Older →')}</p>"
        if page.next_cursor
        else ""
    )
    body = (
        "<section>"
        + table(["When", "Who", "Action", "Count#", "Details"], rows, "No entry yet.")
        + more
        + "</section>"
    )
    return ctx.page("Audit log", body, active="audit")
