"""Console sessions: sign-in with an admin token (pasted, or a one-time link), an
HttpOnly SameSite=Strict cookie bound to the token's expiry, a CSRF token on every form,
and the same verification, revocation check and scopes as the admin API on every request.

The cookie holds a random session id and the admin token sealed under it (the Redis key
name of nothing: the session id is its associated data). Redis keeps only the session's
CSRF token, under a digest of the id, until the token expires; signing out deletes it.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from jose import jwt

from deskbridge.errors import StoreUnavailable
from deskbridge.flows import Runtime
from deskbridge.gateway.admin.auth import AdminAuth, Principal, TokenInvalid
from deskbridge.gateway.admin.routes import ADMIN_AUTH, principal
from deskbridge.gateway.console.render import SECURITY_HEADERS, csrf_field, e, page
from deskbridge.gateway.state import RUNTIME
from deskbridge.store.crypto import SealBroken

__all__ = [
    "COOKIE",
    "LINK_SCOPE",
    "LINK_WINDOW_S",
    "Ctx",
    "guard",
    "redirect",
    "signin",
    "signin_form",
    "signout",
]

log = logging.getLogger(__name__)

COOKIE = "deskbridge_console"
_SIGNIN_COOKIE = "deskbridge_console_signin"
LINK_SCOPE = "console:link"
"""The scope entry ``deskbridge console link`` adds: such a token signs in once, within
``LINK_WINDOW_S`` of being issued."""
LINK_WINDOW_S = 600

ConsoleHandler = Callable[[web.Request, "Ctx"], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Ctx:
    """A signed-in request: the runtime, who (the token's principal), the session's
    CSRF token and, for a POST, its form."""

    rt: Runtime
    who: Principal
    csrf: str
    form: Mapping[str, str] = field(default_factory=dict)
    until: int = 0
    """When the session's token expires (epoch second)."""

    def page(
        self,
        title: str,
        body: str,
        *,
        active: str = "",
        status: int = 200,
        refresh: int | None = None,
    ) -> web.Response:
        return page(
            title,
            body,
            active=active,
            status=status,
            who=self.who.sub,
            csrf=self.csrf,
            refresh=refresh,
        )

    def has(self, scope: str) -> bool:
        return scope in self.who.scopes


def _aad(session_id: str) -> str:
    return f"console:session:{session_id}"


def _cookie_value(rt: Runtime, session_id: str, token: str) -> str:
    sealed = rt.vault.seal(token.encode(), _aad(session_id))
    return f"{session_id}.{base64.urlsafe_b64encode(sealed).decode()}"


def _from_cookie(rt: Runtime, value: str) -> tuple[str, str] | None:
    """The session id and admin token a cookie carries (None: not one of ours)."""
    session_id, dot, blob = value.partition(".")
    if not dot or not session_id:
        return None
    try:
        token = rt.vault.open(base64.urlsafe_b64decode(blob.encode()), _aad(session_id))
    except (SealBroken, binascii.Error, ValueError):
        return None
    return session_id, token.decode()


def _set_cookie(
    resp: web.StreamResponse, request: web.Request, name: str, value: str, max_age: int
) -> None:
    resp.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/console",
        httponly=True,
        samesite="Strict",
        secure=request.secure,
    )


def _clear(resp: web.StreamResponse) -> None:
    resp.del_cookie(COOKIE, path="/console")


def redirect(location: str) -> web.Response:
    """A 303 to ``location`` (a path of ours) with the console's security headers."""
    return web.Response(status=303, headers={**SECURITY_HEADERS, "Location": location})


def _to_signin(request: web.Request, why: str = "") -> web.StreamResponse:
    """Where a request without a valid session goes: the sign-in page (GET), or 401."""
    if request.method == "GET":
        resp: web.StreamResponse = redirect("/console/signin" + (f"?why={why}" if why else ""))
    else:
        resp = page(
            "Signed out",
            "<p>Your session has ended. <a href=/console/signin>Sign in</a>.</p>",
            status=401,
        )
    _clear(resp)
    return resp


def _auth(request: web.Request) -> AdminAuth | None:
    return request.app.get(ADMIN_AUTH)


_DISABLED = (
    "<p>The console is built on the admin API, which is disabled on this gateway: set "
    "<code>DESKBRIDGE_ADMIN_JWT_SECRET</code> or <code>DESKBRIDGE_ADMIN_JWT_PUBLIC_KEY</code>."
    "</p>"
)


async def _session(request: web.Request, auth: AdminAuth) -> tuple[str, Principal, str, int] | str:
    """The session id, principal, CSRF token and token expiry of the request's session,
    or why there is none (``expired`` when the token no longer verifies)."""
    rt = request.app[RUNTIME]
    found = _from_cookie(rt, request.cookies.get(COOKIE, ""))
    if found is None:
        return ""
    session_id, token = found
    csrf = await rt.console.csrf(session_id)
    if csrf is None:
        return "ended"
    try:
        who = await principal(rt, auth, token)
    except TokenInvalid:
        await rt.console.close(session_id)
        return "expired"
    return session_id, who, csrf, int(jwt.get_unverified_claims(token)["exp"])


def guard(
    scope: str | None, handler: ConsoleHandler
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """``handler`` behind a valid session whose token has ``scope``, with the CSRF token
    checked on every POST. Bad input and missing records become pages, not tracebacks."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        auth = _auth(request)
        if auth is None:
            return page("Console unavailable", _DISABLED, status=503)
        try:
            found = await _session(request, auth)
        except (StoreUnavailable, OSError):
            return page("Unavailable", "<p>The store is unavailable; try again.</p>", status=503)
        if isinstance(found, str):
            return _to_signin(request, found)
        _, who, csrf, until = found
        form: Mapping[str, str] = {}
        if request.method == "POST":
            posted = await request.post()
            given = posted.get("csrf")
            if not isinstance(given, str) or not hmac.compare_digest(given.encode(), csrf.encode()):
                return page(
                    "Refused",
                    "<p>This form is stale or was not sent from the console: reload the page and try again.</p>",
                    status=403,
                )
            form = _form(posted)
        ctx = Ctx(request.app[RUNTIME], who, csrf, form, until)
        if scope is not None and scope not in who.scopes:
            return ctx.page(
                "Not allowed",
                f"<p>Your token lacks the scope <code>{e(scope)}</code> this page needs.</p>",
                status=403,
            )
        return await handler(request, ctx)

    return guarded


def _form(posted: Mapping[str, Any]) -> Mapping[str, str]:
    """A POST's text fields (files are ignored); repeated names keep every value joined
    by newlines, as the bulk forms send ids."""
    out: dict[str, str] = {}
    for key, value in posted.items():
        if isinstance(value, str):
            out[key] = f"{out[key]}\n{value}" if key in out else value
    return out


# --- sign-in and sign-out -------------------------------------------------------------------


async def signin_form(request: web.Request) -> web.StreamResponse:
    """The sign-in page; a sign-in link's fragment is moved into the form by the script."""
    if _auth(request) is None:
        return page("Console unavailable", _DISABLED, status=503)
    nonce = secrets.token_urlsafe(24)
    why = request.query.get("why", "")
    note = {
        "expired": "Your token expired or was revoked: sign in again.",
        "ended": "Your session has ended: sign in again.",
        "out": "Signed out.",
    }.get(why, "")
    body = (
        (f'<p class=flash role="status">{e(note)}</p>' if note else "")
        + '<section><form method=post action="/console/signin" data-autosubmit="1">'
        + csrf_field(nonce)
        + '<p><label for="token">Admin token</label><br>'
        '<textarea id="token" name="token" required autocomplete="off" spellcheck="false" '
        'rows="4" aria-describedby="token-help"></textarea></p>'
        '<p id="token-help" class=muted>Paste a token from <code>deskbridge token create '
        "--scope ...</code>, or open a link from <code>deskbridge console link</code>. The "
        "session lasts as long as the token and can do what its scopes allow.</p>"
        "<button type=submit>Sign in</button></form></section>"
    )
    resp = page("Sign in", body)
    _set_cookie(resp, request, _SIGNIN_COOKIE, nonce, 600)
    return resp


def _refused(request: web.Request, message: str, status: int = 401) -> web.Response:
    body = f'<p class="flash bad" role="alert">{e(message)}</p><p><a href="/console/signin">Try again</a></p>'
    return page("Sign-in refused", body, status=status)


async def signin(request: web.Request) -> web.StreamResponse:
    """Exchange a pasted token (or a link's) for a session cookie."""
    auth = _auth(request)
    if auth is None:
        return page("Console unavailable", _DISABLED, status=503)
    rt = request.app[RUNTIME]
    posted = await request.post()
    nonce, given = request.cookies.get(_SIGNIN_COOKIE, ""), posted.get("csrf", "")
    if (
        not nonce
        or not isinstance(given, str)
        or not hmac.compare_digest(nonce.encode(), given.encode())
    ):
        return _refused(request, "This sign-in form is stale: reload it and try again.", 403)
    token = str(posted.get("token", "")).strip()
    try:
        who = await principal(rt, auth, token)
        exp = int(jwt.get_unverified_claims(token)["exp"])
        if LINK_SCOPE in who.scopes:
            await _redeem(rt, who, exp)
        session_id, _ = await rt.console.open(exp)
    except TokenInvalid as exc:
        return _refused(request, f"Sign-in refused: {exc}.")
    except (StoreUnavailable, OSError):
        return page("Unavailable", "<p>The store is unavailable; try again.</p>", status=503)
    resp = redirect("/console/")
    _set_cookie(
        resp, request, COOKIE, _cookie_value(rt, session_id, token), max(1, exp - int(time.time()))
    )
    resp.del_cookie(_SIGNIN_COOKIE, path="/console")
    log.info("console sign-in by token sub")
    return resp


async def _redeem(rt: Runtime, who: Principal, exp: int) -> None:
    """A sign-in link works once, within ``LINK_WINDOW_S`` of being made."""
    if not who.jti:
        raise TokenInvalid("a sign-in link's token must carry a jti")
    if time.time() - who.issued_at > LINK_WINDOW_S:
        raise TokenInvalid("this sign-in link has expired; make a new one")
    if not await rt.console.redeem_link(who.jti, exp):
        raise TokenInvalid("this sign-in link was already used; make a new one")


async def signout(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    """End the session (the cookie is dead from now on, wherever it was copied)."""
    found = _from_cookie(ctx.rt, request.cookies.get(COOKIE, ""))
    if found is not None:
        await ctx.rt.console.close(found[0])
    resp = redirect("/console/signin?why=out")
    _clear(resp)
    return resp
