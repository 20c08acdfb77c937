"""The website chat widget's HTTP side: the script (one file at a versioned URL), one
WebSocket per visitor, and the demo page ``/sandbox/widget``.

The gateway is stateless: a visitor's conversation lives in Redis (``store/webchat.py``).
A socket sends the history above the last number the widget saw, then whatever is
posted later: every process subscribes once to the store's notifications and wakes the
sockets it holds, so an agent's reply reaches the visitor through any process.

Frames (JSON). Widget → gateway: ``hello`` {visitor token | user {user_id, email, name,
hash}, after}, ``message`` {id, text, files?: [upload id]}, ``offline`` {id, text, email}.
Gateway → widget: ``welcome`` {visitor, online, upload?}, ``message`` {seq, role, text,
id?, author?, at, files}, ``ack`` {id, seq}, ``error`` {code, id?}, ``status`` {states:
{id: delivered | read}} (the visitor's messages whose receipt changed), ``typing`` {on,
seconds?} (an agent types; it ends with ``on`` false, or after ``seconds`` without
another). Files are uploaded over HTTP first (``gateway/webchat_files.py``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import hashlib
import html
import json
import logging
import re
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from importlib import resources
from typing import Any
from urllib.parse import quote

from aiohttp import WSMsgType, web

from deskbridge.adapters.webchat import Visitor, anonymous, message, user_hash, verified
from deskbridge.adapters.webchat.files import attachment, file_ids
from deskbridge.adapters.webchat.stored import raw_request
from deskbridge.config import WebchatConfig
from deskbridge.errors import PayloadInvalid, SignatureInvalid, StoreUnavailable
from deskbridge.flows import Runtime
from deskbridge.flows.ingest import accept_events
from deskbridge.gateway import webchat_files
from deskbridge.gateway.state import RUNTIME
from deskbridge.schemas import Attachment, Channel, Message
from deskbridge.store.connection import honour_cancel
from deskbridge.store.webchat import View

__all__ = ["SCRIPT_PATH", "add_routes", "demo_page", "integrity"]

log = logging.getLogger(__name__)

SCRIPT_PATH = "/widget/v1/deskbridge-chat.js"
_DAY = 86400
_MAX_FRAME = 64 * 1024
_GONE = "webchat: a file is no longer kept; attach it again"
_HOST = re.compile(r"[A-Za-z0-9.-]+(:\d{1,5})?|\[[0-9A-Fa-f:.]+\](:\d{1,5})?")
_DEMO_HEADERS = {
    # what a site embedding the widget allows: the script (by its integrity hash), its
    # socket and uploads, the visitor's files (images: the gateway's file links only,
    # as a site would write it; CSP's http source also matches https), and the style
    # element it adds
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; connect-src 'self'; img-src {files}; "
        "style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def _script() -> bytes:
    return (
        resources.files("deskbridge.gateway").joinpath("widget", "deskbridge-chat.js").read_bytes()
    )


def integrity() -> str:
    """The script's Subresource Integrity value (``sha384-…``), as the docs give it."""
    return "sha384-" + base64.b64encode(hashlib.sha384(_script()).digest()).decode()


class Hub:
    """The sockets this process holds, by (account, visitor digest): each is woken when
    its visitor's history grows."""

    def __init__(self) -> None:
        self._waiting: dict[tuple[str, str], set[asyncio.Event]] = defaultdict(set)

    def join(self, key: tuple[str, str]) -> asyncio.Event:
        event = asyncio.Event()
        self._waiting[key].add(event)
        return event

    def leave(self, key: tuple[str, str], event: asyncio.Event) -> None:
        self._waiting[key].discard(event)
        if not self._waiting[key]:
            del self._waiting[key]

    def wake(self, account: str, visitor: str, seq: int) -> None:
        for event in self._waiting.get((account, visitor), ()):
            event.set()

    def wake_all(self) -> None:
        for events in self._waiting.values():
            for event in events:
                event.set()


HUB = web.AppKey("webchat_hub", Hub)


async def _listening(app: web.Application) -> AsyncIterator[None]:
    rt, hub = app[RUNTIME], app[HUB]

    async def run() -> None:
        while True:
            honour_cancel()
            try:
                await rt.webchat.listen(hub.wake)
            except StoreUnavailable:
                await asyncio.sleep(1.0)
            except Exception as exc:
                # a listener that died would leave every socket of this process without
                # live replies (seen: redis-py failing inside a connect as its pool closed)
                log.warning(
                    "webchat: the reply listener failed (%s); listening again", type(exc).__name__
                )
                await asyncio.sleep(1.0)
            # notifications may have been missed: every socket re-reads its history
            hub.wake_all()

    task = asyncio.create_task(run())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _config(rt: Runtime, account: str) -> WebchatConfig | None:
    acc = rt.accounts.accounts.get(account)
    ch = acc.channel(Channel.WEBCHAT) if acc is not None else None
    return ch if isinstance(ch, WebchatConfig) else None


def _online(rt: Runtime, account: str) -> bool:
    routing = rt.accounts.accounts[account].routing
    hours = routing.business_hours if routing is not None else None
    return hours is None or hours.is_open(datetime.now(UTC))


async def script(request: web.Request) -> web.Response:
    # versioned URL: v1 changes only compatibly and keeps its integrity hash per release
    return web.Response(
        body=_script(),
        content_type="text/javascript",
        charset="utf-8",
        headers={
            "Cache-Control": "public, max-age=86400",
            "Access-Control-Allow-Origin": "*",
            "X-Content-Type-Options": "nosniff",
        },
    )


def _visitor(cfg: WebchatConfig, hello: dict[str, Any]) -> tuple[Visitor, str | None]:
    user = hello.get("user")
    if isinstance(user, dict) and cfg.identity_secret is not None:
        fields = {k: user.get(k) for k in ("user_id", "email", "name", "hash", "email_hash")}
        if not all(v is None or isinstance(v, str) for v in fields.values()):
            raise SignatureInvalid("webchat identity: fields are strings")
        return (
            verified(
                cfg.identity_secret.get_secret_value(),
                user_hash_given=fields["hash"] or "",
                user_id=fields["user_id"],
                email=fields["email"],
                name=fields["name"],
                email_hash_given=fields["email_hash"],
            ),
            None,
        )
    token = hello.get("visitor")
    visitor, token = anonymous(
        cfg.secret.get_secret_value(), token if isinstance(token, str) else None
    )
    return visitor, token


class _Session:
    """One visitor's socket."""

    def __init__(
        self, rt: Runtime, account: str, cfg: WebchatConfig, ws: web.WebSocketResponse, ip: str
    ) -> None:
        self.rt, self.account, self.cfg, self.ws, self.ip = rt, account, cfg, ws, ip
        self.visitor = Visitor("")
        self.key = ""
        """The store's digest of the visitor's id (names their keys and files)."""
        self.last = 0
        self.receipts: dict[str, str] = {}
        self.typing_until = 0.0
        """Until when (monotonic) the widget was told an agent types; 0: not typing."""

    async def pump(self, wake: asyncio.Event) -> None:
        """Sends the history above ``last``, then each new entry as it is posted, and the
        visitor's receipts and the agent's typing as they change."""
        while True:
            honour_cancel()
            wake.clear()
            try:
                view = await self.rt.webchat.view(self.account, self.visitor.id, self.last)
            except StoreUnavailable:
                await asyncio.sleep(1.0)
                continue
            for e in view.entries:
                body = webchat_files.with_links(self.cfg, self.rt.links, self.account, self.key, e)
                await self.ws.send_json({"type": "message", "seq": e.seq, **body})
                self.last = e.seq
            if view.unreadable:
                self._skipped(view.unreadable)
            self.last = max(self.last, view.last)  # an unreadable entry is not read again
            await self._indicators(view)
            honour_cancel()  # a close landing inside the read above must not wait forever
            if not view.full:
                # typing lapses without a notification: look again when it should have
                lapse = view.typing_s + 0.05 if view.typing_s else None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), lapse)

    def _skipped(self, unreadable: dict[int, str]) -> None:
        """History entries that did not open are left out (the rest and live messages
        still flow): counted and logged by number and reason, never their content."""
        self.rt.metrics.event("webchat", "skipped", "history_unreadable", len(unreadable))
        log.warning(
            "webchat: account %s: %d history entries of a visitor skipped (numbers %d to %d): %s",
            self.account,
            len(unreadable),
            min(unreadable),
            max(unreadable),
            "; ".join(sorted(set(unreadable.values()))),
        )

    async def _indicators(self, view: View) -> None:
        """The receipts that changed since the widget last heard, and the agent's typing
        when it starts, is said again, or ends."""
        changed = {i: s for i, s in view.receipts.items() if self.receipts.get(i) != s}
        if changed:
            await self.ws.send_json({"type": "status", "states": changed})
            self.receipts.update(changed)
        until = time.monotonic() + view.typing_s if view.typing_s else 0.0
        if until and until > self.typing_until + 0.5:
            await self.ws.send_json(
                {"type": "typing", "on": True, "seconds": round(view.typing_s, 1)}
            )
        elif not until and self.typing_until:
            await self.ws.send_json({"type": "typing", "on": False})
        self.typing_until = until

    async def receive(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind not in ("message", "offline"):
            return
        cid = frame.get("id") if isinstance(frame.get("id"), str) else None
        try:
            try:
                msg = message(
                    self.account,
                    self.visitor,
                    frame,
                    now=datetime.now(UTC),
                    max_chars=self.cfg.max_text_chars,
                    files=await self._files(frame),
                )
            except PayloadInvalid as exc:
                await self.ws.send_json(
                    {"type": "error", "code": "invalid", "id": cid, "detail": str(exc)}
                )
                return
            seq = await self._take(frame, msg)
        except StoreUnavailable:
            await self.ws.send_json({"type": "error", "code": "unavailable", "id": cid})
            return
        if seq is not None:
            await self.ws.send_json({"type": "ack", "id": msg.external_id, "seq": seq})

    async def _files(self, frame: dict[str, Any]) -> list[Attachment]:
        """The uploads the frame's ``files`` name, as attachments. Raises
        ``PayloadInvalid`` when one is not (or no longer) the visitor's."""
        ids = file_ids(frame)
        if not ids:
            return []
        found = await self.rt.webchat.files(self.account, self.key, ids)
        if len(found) != len(ids):
            raise PayloadInvalid(_GONE)
        return [
            attachment(self.key, f.id, name=f.name, mime=f.mime_type, size=f.size, sha256=f.sha256)
            for f in found
        ]

    async def _take(self, frame: dict[str, Any], msg: Message) -> int | None:
        """Stores the message for the desk and in the visitor's history; its sequence
        number, or None when it was refused (and the widget told why)."""
        store, cid = self.rt.webchat, msg.external_id
        allowed = await store.allow(
            self.account, "visitor", self.visitor.id, self.cfg.messages_per_minute
        ) and await store.allow(self.account, "ip", self.ip, self.cfg.connections_per_minute)
        if not allowed:
            self.rt.metrics.event("webchat", "refused", "rate_limited")
            await self.ws.send_json({"type": "error", "code": "rate_limited", "id": cid})
            return None
        ttl_s = self.cfg.history_days * _DAY
        ids = [a.ref.partition("/")[2] for a in msg.attachments]
        if ids and not await store.keep_files(self.account, self.key, ids, ttl_s=ttl_s):
            refusal = {"type": "error", "code": "invalid", "id": cid, "detail": _GONE}
            await self.ws.send_json(refusal)
            return None
        raw = raw_request(
            self.account,
            self.visitor,
            json.dumps(frame, separators=(",", ":")).encode(),
            msg.occurred_at,
            msg.attachments,
        )
        # stored for the desk first (deduplicated by the visitor's id for it), then in
        # the visitor's history (idempotent too): a resend after a failure in between
        # completes both and is acknowledged once more
        await accept_events(self.rt, "webchat", raw, [msg])
        body: dict[str, Any] = {
            "role": "visitor",
            "id": cid,
            "text": msg.text,
            "at": msg.occurred_at.isoformat(),
        }
        if msg.attachments:
            body["files"] = [
                {"id": fid, "name": a.filename, "type": a.mime_type, "size": a.size}
                for a, fid in zip(msg.attachments, ids, strict=True)
            ]
        seq, _ = await store.post(self.account, self.visitor.id, body, client_id=cid, ttl_s=ttl_s)
        return seq


async def socket(request: web.Request) -> web.WebSocketResponse:
    """``/widget/v1/{account}/socket``: 404 for an account without the widget, 403 for
    an origin not on its allow-list, 429 past the IP's connections per minute."""
    rt = request.app[RUNTIME]
    account = request.match_info["account"]
    cfg = _config(rt, account)
    if cfg is None:
        raise web.HTTPNotFound()
    if request.headers.get("Origin", "") not in cfg.allowed_origins:
        rt.metrics.event("webchat", "refused", "origin")
        raise web.HTTPForbidden(text="this site may not open the widget")
    ip = request.remote or ""
    try:
        if not await rt.webchat.allow(account, "ip", ip, cfg.connections_per_minute):
            raise web.HTTPTooManyRequests()
    except StoreUnavailable:
        raise web.HTTPServiceUnavailable() from None
    ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=_MAX_FRAME)
    await ws.prepare(request)
    session = _Session(rt, account, cfg, ws, ip)
    try:
        hello = await ws.receive_json(timeout=15.0)
        if not isinstance(hello, dict) or hello.get("type") != "hello":
            raise PayloadInvalid("webchat: the first frame is hello")
        session.visitor, token = _visitor(cfg, hello)
        language = hello.get("language")
        if isinstance(language, str) and re.fullmatch(r"[a-z]{2}", language):
            session.visitor = dataclasses.replace(session.visitor, language=language)
        after = hello.get("after")
        session.last = after if isinstance(after, int) and after >= 0 else 0
    except SignatureInvalid:
        log.info("webchat %s: a visitor's identity was refused", account)
        await ws.send_json({"type": "error", "code": "identity"})
        await ws.close()
        return ws
    except (TimeoutError, PayloadInvalid, ValueError, TypeError):
        await ws.send_json({"type": "error", "code": "invalid"})
        await ws.close()
        return ws
    session.key = rt.webchat.visitor_key(account, session.visitor.id)
    await ws.send_json(
        {
            "type": "welcome",
            "visitor": token,
            "verified": session.visitor.verified,
            "online": _online(rt, account),
            "languages": list(cfg.languages),
            "upload": webchat_files.upload_grant(cfg, account, session.key),
        }
    )
    hub = request.app[HUB]
    key = (account, session.key)
    wake = hub.join(key)
    pump = asyncio.create_task(session.pump(wake))
    try:
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            try:
                frame = json.loads(msg.data)
            except ValueError:
                continue
            if isinstance(frame, dict):
                await session.receive(frame)
    except ConnectionError:
        pass  # the visitor went away while we answered: the widget resends what it lacks
    finally:
        hub.leave(key, wake)
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await pump
    return ws


def _demo_account(rt: Runtime, wanted: str | None) -> tuple[str, WebchatConfig] | None:
    for name in rt.accounts.accounts:
        cfg = _config(rt, name)
        if cfg is not None and cfg.sandbox and (wanted is None or wanted == name):
            return name, cfg
    return None


async def demo_page(request: web.Request) -> web.Response:
    """``/sandbox/widget[?account=&email=]``: a page with the widget, as a site embeds
    it. With ``email`` the page signs the visitor in as the site's backend would (the
    identity secret of a sandboxed account only)."""
    rt = request.app[RUNTIME]
    found = _demo_account(rt, request.query.get("account"))
    if found is None:
        raise web.HTTPNotFound(text="no sandboxed account has the widget")
    name, cfg = found
    attrs = {"data-account": name}
    email = request.query.get("email")
    if email and cfg.identity_secret is not None:
        attrs["data-email"] = email
        attrs["data-name"] = request.query.get("name", "")
        attrs["data-user-hash"] = user_hash(cfg.identity_secret.get_secret_value(), email)
    tag_attrs = " ".join(f'{k}="{html.escape(v)}"' for k, v in attrs.items())
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>deskbridge widget demo</title></head>
<body><h1>A site with the deskbridge chat widget</h1>
<p>Account <code>{html.escape(name)}</code>. Open the chat at the bottom right; agents
answer in the sandbox desk (<a href="/sandbox/">/sandbox/</a>).</p>
<script src="{SCRIPT_PATH}" integrity="{integrity()}" crossorigin="anonymous" {tag_attrs}></script>
</body></html>"""
    host = request.host if _HOST.fullmatch(request.host) else None
    files = f"http://{host}/widget/v1/{quote(name)}/files/" if host else "'self'"
    csp = _DEMO_HEADERS["Content-Security-Policy"].format(files=files)
    headers = {**_DEMO_HEADERS, "Content-Security-Policy": csp}
    return web.Response(text=page, content_type="text/html", headers=headers)


def add_routes(app: web.Application) -> None:
    """The script and the socket (the demo page is added with the sandbox pages)."""
    app[HUB] = Hub()
    app.cleanup_ctx.append(_listening)
    app.router.add_get(SCRIPT_PATH, script)
    app.router.add_get("/widget/v1/{account}/socket", socket)
    webchat_files.add_routes(app)
