"""``/csat/{token}``: the page an email survey's score links open (docs/csat.md).

GET shows the chosen score with an optional comment box and a *Send* button; only the
POST records the answer, so a mail scanner that opens every link answers nothing. The
token is sealed by deskbridge (``store.csat.SurveyLinks``): it names one survey and one
score and expires with the survey, so the form needs no CSRF token. A survey is
answered once. The page loads nothing, runs no script, and its token never leaves it
(``Referrer-Policy: no-referrer``, ``Cache-Control: no-store``).
"""

from __future__ import annotations

import base64
import hashlib
import html
import logging

from aiohttp import web

from deskbridge.errors import StoreUnavailable
from deskbridge.flows import csat
from deskbridge.gateway.state import RUNTIME
from deskbridge.routing.csat import CHOICES
from deskbridge.store.csat import SurveyLink, SurveyLinkError

__all__ = ["add_routes"]

log = logging.getLogger(__name__)

_MAX_BODY = 16 * 1024
_STYLE = (
    "body{font:16px/1.5 system-ui,sans-serif;max-width:32rem;margin:2rem auto;padding:0 1rem;"
    "color:#1f2328}h1{font-size:1.3rem}.score{font-size:1.6rem;margin:.5rem 0}"
    "textarea{width:100%;box-sizing:border-box;min-height:6rem;font:inherit}"
    "button{font:inherit;padding:.4rem 1.2rem;margin-top:.5rem}"
)
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'sha256-"
        + base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()
        + "'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Robots-Tag": "noindex",
}
_OUTCOMES = {
    "recorded": "Thank you! Your answer is recorded.",
    "already": "This survey was answered already. Thank you!",
    "closed": "This survey is closed. Thank you all the same!",
}


def _page(title: str, body: str, status: int = 200) -> web.Response:
    doc = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body>{body}</body></html>"
    )
    return web.Response(status=status, text=doc, content_type="text/html", headers=_HEADERS)


def _link(request: web.Request) -> SurveyLink:
    try:
        return request.app[RUNTIME].survey_links.open(request.match_info["token"])
    except SurveyLinkError:
        raise web.HTTPNotFound(
            text="This survey link is not valid or has expired.", headers=_HEADERS
        ) from None


async def show(request: web.Request) -> web.Response:
    """The chosen score and the comment form; records nothing."""
    link = _link(request)
    choice = html.escape(CHOICES[link.score - 1])
    return _page(
        "How did we do?",
        "<h1>How did we do?</h1>"
        f'<p>You chose:</p><p class="score">{choice}</p>'
        '<form method="post"><label for="comment">Anything to add? (optional)</label>'
        '<textarea id="comment" name="comment" maxlength="2000"></textarea>'
        '<button type="submit">Send</button></form>',
    )


async def record(request: web.Request) -> web.Response:
    """Record the score (and comment) once per survey; a second POST changes nothing."""
    link = _link(request)
    if (request.content_length or 0) > _MAX_BODY:
        raise web.HTTPRequestEntityTooLarge(
            max_size=_MAX_BODY, actual_size=request.content_length or 0, headers=_HEADERS
        )
    form = await request.post()
    comment = form.get("comment", "")
    try:
        outcome = await csat.answer_by_link(
            request.app[RUNTIME], link, comment if isinstance(comment, str) else ""
        )
    except StoreUnavailable:
        log.warning("survey page: Redis unavailable; answer not recorded")
        return _page("Try again", "<p>Please try again in a minute.</p>", status=503)
    return _page("Thank you", f"<h1>{html.escape(_OUTCOMES[outcome])}</h1>")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/csat/{token}", show)
    app.router.add_post("/csat/{token}", record)
