"""HTML for the console: one layout, small helpers. Every value goes through ``e``
(HTML escaping) before it reaches a page; helpers take already-escaped HTML only where
their parameter says so."""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from urllib.parse import urlencode

from aiohttp import web

__all__ = [
    "DASH",
    "NAV",
    "SECURITY_HEADERS",
    "csrf_field",
    "e",
    "layout",
    "page",
    "query_link",
    "state",
    "table",
    "when",
]

e = html.escape
DASH = "\u2013"

SECURITY_HEADERS = {
    # the stylesheet and the one script are files deskbridge serves; nothing inline runs
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

NAV = (
    ("overview", "/console/", "Overview"),
    ("deliveries", "/console/deliveries", "Deliveries"),
    ("events", "/console/events", "Raw events"),
    ("contacts", "/console/contacts", "Contacts"),
    ("audit", "/console/audit", "Audit log"),
)


def layout(
    title: str,
    body: str,
    *,
    active: str = "",
    who: str = "",
    csrf: str = "",
    refresh: int | None = None,
) -> str:
    """A whole page: ``body`` is HTML; ``who`` and ``csrf`` (signed in) add the menu and
    the sign-out button; ``refresh`` reloads it every so many seconds (a meta tag, which
    the CSP allows: no script needed)."""
    nav = ""
    if who:
        links = "".join(
            f'<a href="{href}"{" aria-current=page" if key == active else ""}>{label}</a>'
            for key, href, label in NAV
        )
        nav = (
            f'<nav aria-label="Console">{links}</nav><div class=who><span>Signed in as '
            f"<b>{e(who)}</b></span>"
            '<form method=post action="/console/signout">'
            f"{csrf_field(csrf)}<button type=submit>Sign out</button></form></div>"
        )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        + (f'<meta http-equiv="refresh" content="{int(refresh)}">' if refresh else "")
        + f"<title>{e(title)} · deskbridge console</title>"
        '<link rel="icon" href="/console/static/favicon.svg">'
        '<link rel="stylesheet" href="/console/static/console.css">'
        '<script src="/console/static/console.js" defer></script></head><body>'
        '<a class=skip href="#main">Skip to content</a>'
        f'<header><a href="/console/"><b>deskbridge</b> console</a>{nav}</header>'
        f'<main id="main"><h1>{e(title)}</h1>{body}</main></body></html>'
    )


def page(
    title: str,
    body: str,
    *,
    status: int = 200,
    active: str = "",
    who: str = "",
    csrf: str = "",
    refresh: int | None = None,
) -> web.Response:
    """``layout`` as a response with the console's security headers."""
    return web.Response(
        text=layout(title, body, active=active, who=who, csrf=csrf, refresh=refresh),
        status=status,
        content_type="text/html",
        headers=SECURITY_HEADERS,
    )


def csrf_field(csrf: str) -> str:
    return f'<input type="hidden" name="csrf" value="{e(csrf)}">'


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], empty: str) -> str:
    """A table; cells are HTML (escape values first). Headers ending in ``#`` are
    right-aligned numbers."""
    head = "".join(
        f"<th scope=col class=num>{e(h[:-1])}</th>"
        if h.endswith("#")
        else f"<th scope=col>{e(h)}</th>"
        for h in headers
    )
    nums = [h.endswith("#") for h in headers]
    body = "".join(
        "<tr>"
        + "".join(
            f"<td class=num>{c}</td>" if n else f"<td>{c}</td>"
            for c, n in zip(row, nums, strict=True)
        )
        + "</tr>"
        for row in rows
    )
    if not body:
        body = f'<tr><td colspan="{len(headers)}" class=muted>{e(empty)}</td></tr>'
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def state(value: str) -> str:
    shown = "failed" if value == "dead" else value
    return f'<span class="state state-{e(value)}">{e(shown)}</span>'


def when(at: datetime | str | float | None) -> str:
    """A UTC time, or a dash."""
    if at is None or at == "":
        return "<span class=muted>\u2013</span>"
    if isinstance(at, str):
        at = datetime.fromisoformat(at)
    elif isinstance(at, int | float):
        at = datetime.fromtimestamp(at, UTC)
    text = at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    return f'<time datetime="{e(at.isoformat())}">{text}</time>'


def query_link(path: str, params: Mapping[str, str | None], text: str) -> str:
    """A link to ``path`` with the non-empty ``params`` (``text`` is escaped)."""
    q = urlencode({k: v for k, v in params.items() if v})
    return f'<a href="{e(path + ("?" + q if q else ""))}">{e(text)}</a>'


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "\u2013"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"
