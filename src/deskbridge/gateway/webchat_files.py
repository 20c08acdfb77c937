"""The widget's files over HTTP: a visitor's upload, links to their own files, and the
links in the history the socket sends.

``POST /widget/v1/{account}/attachments?name=<file name>`` takes the file's bytes as the
body, with the upload token the socket's ``welcome`` gave (``Authorization: Bearer``);
the site's page calls it across origins, so it answers CORS preflights for the
account's ``allowed_origins`` only (the Fetch standard: ``Authorization`` must be listed
in ``Access-Control-Allow-Headers``, a wildcard does not cover it). The body is read
by the webhooks' reader (``gateway/intake.py:read_raw``), refused as soon as it passes
the account's ``max_media_bytes`` and given a deadline scaled to it; its type
is what its bytes show (``adapters/webchat/files.py``). Kept an hour; a message frame
that names it keeps it as long as the visitor's history.

``GET /widget/v1/{account}/files/{visitor}/{file}/{name}?e=&s=``: one of the visitor's
own files, for their transcript: the link is signed with the account's ``secret`` and
expires (a fresh one comes each time the history is sent); anything else is a 404.
An agent's files are signed anew the same way, as ``/media/`` links
(``store/media.py``): a returning visitor's links of either kind work as long as the
history lasts, and none is signed past it.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from typing import Any
from urllib.parse import quote, urlsplit

from aiohttp import web
from pydantic import ValidationError

from deskbridge.adapters.base import MediaLinks
from deskbridge.adapters.webchat.files import FILE_ID, safe_name, sniff
from deskbridge.adapters.webchat.identity import (
    check_file_link,
    check_upload_token,
    file_link,
    upload_token,
)
from deskbridge.config import WebchatConfig
from deskbridge.errors import RequestRefused, SignatureInvalid, StoreUnavailable
from deskbridge.flows import Runtime
from deskbridge.gateway.intake import read_raw
from deskbridge.gateway.state import RUNTIME
from deskbridge.schemas import Attachment, Channel
from deskbridge.store.webchat import Entry, WidgetFile

__all__ = ["add_routes", "upload_grant", "with_links"]

log = logging.getLogger(__name__)

_PENDING_S = 3600
"""How long an upload no message names yet is kept."""
_TOKEN_S = 12 * 3600
"""An upload token's life; every (re)connection gets a new one."""
_LINK_S = 86400
_KEY_CHARS = frozenset("0123456789abcdef")
_FILE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    # opened on its own, a file runs nothing and loads nothing
    "Content-Security-Policy": "default-src 'none'; sandbox",
    "Cross-Origin-Resource-Policy": "cross-origin",
    "Referrer-Policy": "no-referrer",
}


def _config(rt: Runtime, account: str) -> WebchatConfig | None:
    acc = rt.accounts.accounts.get(account)
    ch = acc.channel(Channel.WEBCHAT) if acc is not None else None
    return ch if isinstance(ch, WebchatConfig) else None


def upload_grant(cfg: WebchatConfig, account: str, visitor_key: str) -> dict[str, Any] | None:
    """The ``upload`` member of the socket's ``welcome``: the visitor's upload token,
    the size limit and the types taken; None when the account takes no files."""
    if not cfg.media_types:
        return None
    expires = int(time.time()) + _TOKEN_S
    return {
        "token": upload_token(cfg.secret.get_secret_value(), account, visitor_key, expires),
        "max_bytes": cfg.max_media_bytes,
        "types": list(cfg.media_types),
    }


def with_links(
    cfg: WebchatConfig, links: MediaLinks, account: str, visitor_key: str, entry: Entry
) -> dict[str, Any]:
    """A history entry as sent to the socket, its files with links signed now: the
    visitor's own files on this gateway, an agent's through ``/media/`` (the desk's
    attachment, never the entry's record of it). A link lasts about a day and never
    past the history's expiry; only an http(s) link is ever sent (an agent's file without
    one is left out)."""
    body = entry.body
    files = body.get("files")
    if not isinstance(files, list) or not files:
        return body
    now = time.time()
    # the same visitor link for an hour, so the browser's cache serves a transcript
    # shown again
    expires = (int(now) // 3600 + 1) * 3600 + _LINK_S
    if entry.until is not None:
        expires = min(expires, int(entry.until))
    if body.get("role") == "visitor":
        return {**body, "files": _visitor_links(cfg, account, visitor_key, files, expires)}
    return {**body, "files": _agent_links(links, account, files, expires - now)}


def _visitor_links(
    cfg: WebchatConfig, account: str, visitor_key: str, files: list[Any], expires: int
) -> list[dict[str, Any]]:
    secret = cfg.secret.get_secret_value()
    linked = []
    for f in files:
        if not isinstance(f, dict):
            continue
        fid, name = str(f.get("id", "")), str(f.get("name", "file"))
        sig = file_link(secret, account, visitor_key, fid, expires)
        path = f"/widget/v1/{quote(account)}/files/{visitor_key}/{fid}/{quote(name, safe='')}"
        linked.append({**f, "url": f"{path}?e={expires}&s={sig}"})
    return linked


def _agent_links(
    links: MediaLinks, account: str, files: list[Any], ttl: float
) -> list[dict[str, Any]]:
    shown: list[dict[str, Any]] = []
    for f in files:
        if not isinstance(f, dict):
            continue
        name, desk, url = str(f.get("name") or "file"), f.get("desk"), f.get("url")
        if isinstance(desk, dict):
            try:
                url = links.url_for(account, Attachment.model_validate(desk), ttl=ttl)
            except ValidationError:
                url = None
        # an entry kept before links were signed when sent carries its own (7 days); a
        # file without an http(s) link is left out (the script would make one of nothing)
        if isinstance(url, str) and urlsplit(url).scheme in ("http", "https"):
            shown.append({"name": name, "url": url})
    return shown


def _refuse(status: int, code: str, detail: str, cors: dict[str, str]) -> web.Response:
    return web.json_response({"error": code, "detail": detail}, status=status, headers=cors)


def _cors(request: web.Request, cfg: WebchatConfig) -> dict[str, str] | None:
    """The CORS headers for the request's ``Origin``, None when the origin is not one
    of the account's sites."""
    origin = request.headers.get("Origin", "")
    if origin not in cfg.allowed_origins:
        return None
    return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}


async def preflight(request: web.Request) -> web.Response:
    """``OPTIONS`` before a cross-origin upload: allowed for the account's sites only."""
    cfg = _config(request.app[RUNTIME], request.match_info["account"])
    cors = _cors(request, cfg) if cfg is not None else None
    if cors is None:
        raise web.HTTPForbidden(text="this site may not upload to the widget")
    return web.Response(
        status=204,
        headers={
            **cors,
            "Access-Control-Allow-Methods": "POST",
            "Access-Control-Allow-Headers": "authorization, content-type",
            "Access-Control-Max-Age": "600",
        },
    )


async def upload(request: web.Request) -> web.Response:
    """``POST /widget/v1/{account}/attachments``: 201 with the file's id, name, type and
    size. 404 for an account without the widget, 403 for an origin not on its list,
    401 for a missing or bad upload token, 429 past ``uploads_per_minute`` (per visitor
    and per IP), 413 over ``max_media_bytes``, 415 for a type the account does not take,
    400 for an empty body, 503 when the store is down. A refusal stores nothing."""
    rt = request.app[RUNTIME]
    account = request.match_info["account"]
    cfg = _config(rt, account)
    if cfg is None:
        raise web.HTTPNotFound()
    cors = _cors(request, cfg)
    if cors is None:
        rt.metrics.event("webchat", "refused", "origin")
        raise web.HTTPForbidden(text="this site may not upload to the widget")
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    try:
        if scheme.lower() != "bearer":
            raise SignatureInvalid("no bearer token")
        visitor_key = check_upload_token(cfg.secret.get_secret_value(), account, token, time.time())
    except SignatureInvalid:
        rt.metrics.event("webchat", "refused", "upload_token")
        return _refuse(401, "token", "the upload token is missing, forged or expired", cors)
    if not cfg.media_types:
        return _refuse(415, "type", "this site takes no files", cors)
    try:
        return await _store(rt, request, cfg, account, visitor_key, cors)
    except StoreUnavailable:
        return _refuse(503, "unavailable", "try again shortly", cors)


async def _store(
    rt: Runtime,
    request: web.Request,
    cfg: WebchatConfig,
    account: str,
    visitor_key: str,
    cors: dict[str, str],
) -> web.Response:
    store = rt.webchat
    per_minute = cfg.uploads_per_minute
    if not (
        await store.allow(account, "upload", visitor_key, per_minute)
        and await store.allow(account, "upload-ip", request.remote or "", per_minute)
    ):
        rt.metrics.event("webchat", "refused", "rate_limited")
        resp = _refuse(429, "rate_limited", f"at most {per_minute} files a minute", cors)
        resp.headers["Retry-After"] = str(60 - int(time.time()) % 60)
        return resp
    try:
        # the webhooks' reader: refused from Content-Length or as soon as the streamed
        # body passes the limit, with a deadline scaled to it
        data = (await read_raw(request, cfg.max_media_bytes)).body
    except RequestRefused as exc:
        rt.metrics.event("webchat", "refused", exc.reason)
        limit = cfg.max_media_bytes
        detail = f"a file may have at most {limit} bytes" if exc.status == 413 else str(exc)
        resp = _refuse(exc.status, exc.reason, detail, cors)
        if exc.status != 413:
            resp.force_close()  # the rest of the body is not worth waiting for
        return resp
    if not data:
        return _refuse(400, "empty", "the file is empty", cors)
    mime = sniff(data)
    if mime is None or mime not in cfg.media_types:
        rt.metrics.event("webchat", "refused", "media_type")
        taken = ", ".join(cfg.media_types)
        return _refuse(415, "type", f"this site takes these files: {taken}", cors)
    name = safe_name(request.query.get("name", ""), mime)
    file = WidgetFile(
        id=secrets.token_urlsafe(16),
        name=name,
        mime_type=mime,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )
    await store.put_file(account, visitor_key, file, data, ttl_s=_PENDING_S)
    rt.metrics.event("webchat", "uploaded", mime)
    log.info("webchat %s: a visitor uploaded a file (%s, %d bytes)", account, mime, file.size)
    body = {"id": file.id, "name": file.name, "type": file.mime_type, "size": file.size}
    return web.json_response(body, status=201, headers=cors)


async def serve(request: web.Request) -> web.Response:
    """``GET /widget/v1/{account}/files/{visitor}/{file}/{name}?e=&s=``: the file, for a
    link ``with_links`` signed and that has not expired; else 404."""
    rt = request.app[RUNTIME]
    account = request.match_info["account"]
    visitor_key, fid = request.match_info["visitor"], request.match_info["file"]
    cfg = _config(rt, account)
    if cfg is None or not FILE_ID.fullmatch(fid) or not set(visitor_key) <= _KEY_CHARS:
        raise web.HTTPNotFound(text="no such file")
    try:
        check_file_link(
            cfg.secret.get_secret_value(),
            account,
            visitor_key,
            fid,
            request.query.get("e", ""),
            request.query.get("s", ""),
            time.time(),
        )
    except SignatureInvalid:
        raise web.HTTPNotFound(text="no such file") from None
    try:
        found = await rt.webchat.read_file(account, visitor_key, fid)
    except StoreUnavailable:
        raise web.HTTPServiceUnavailable(text="try again later") from None
    if found is None:
        raise web.HTTPNotFound(text="no such file")
    file, data = found
    inline = file.mime_type.startswith("image/")
    return web.Response(
        body=data,
        content_type=file.mime_type,
        headers={
            **_FILE_HEADERS,
            "Cache-Control": "private, max-age=3600",
            "Content-Disposition": _disposition("inline" if inline else "attachment", file.name),
        },
    )


def _disposition(kind: str, name: str) -> str:
    """RFC 6266: a plain ASCII ``filename`` for old clients, the UTF-8 ``filename*``
    (RFC 5987) beside it."""
    plain = "".join(c if " " <= c < "\x7f" and c not in '"\\' else "_" for c in name)
    return f"{kind}; filename=\"{plain}\"; filename*=UTF-8''{quote(name, safe='')}"


def add_routes(app: web.Application) -> None:
    app.router.add_route("OPTIONS", "/widget/v1/{account}/attachments", preflight)
    app.router.add_post("/widget/v1/{account}/attachments", upload)
    app.router.add_get("/widget/v1/{account}/files/{visitor}/{file}/{name}", serve)
