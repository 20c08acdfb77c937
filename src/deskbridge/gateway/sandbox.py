"""The sandbox desk's pages (``/sandbox/``) and the sandbox channel API.

The pages list the sandbox tickets with their messages and a reply form; a reply takes
the same ``deliver_to_channel`` path a real desk's webhook takes. A channel in sandbox mode
sends to ``/sandbox/channel-api/{account}/{channel}/...`` instead of the platform, and the
page shows what it was asked to send. Meant for trying deskbridge: do not expose it.

Served only when asked: ``DESKBRIDGE_SANDBOX_PAGES=true`` serves both, ``false`` neither;
unset, the pages are served when an account uses the sandbox desk (the demo account
does) and the channel API when a channel runs in sandbox mode. Otherwise they are 404.
The pages carry a strict Content-Security-Policy and a CSRF token on the reply form.

For a website chat visitor the ticket's page is what a real desk's agent view is: the
visitor sees their messages read while it is open (and visible), and "agent is typing"
while the agent types in its reply box (flows/widget.py).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import html
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from aiohttp import web
from pydantic import SecretStr

from deskbridge.adapters.meta.outbound import MessagingAdapter
from deskbridge.adapters.meta.subscribe import AppWebhook
from deskbridge.adapters.sms.vonage import signature as vonage_signature
from deskbridge.adapters.whatsapp.adapter import WhatsAppAdapter
from deskbridge.config import (
    InstagramConfig,
    LineConfig,
    MessengerConfig,
    SmsConfig,
    TelegramConfig,
    VonageSmsConfig,
    WhatsAppConfig,
)
from deskbridge.errors import SignatureInvalid, StoreUnavailable
from deskbridge.flows import Runtime, csat, widget
from deskbridge.flows.ingest import accept_replies
from deskbridge.gateway import webchat
from deskbridge.gateway.state import CSRF, RUNTIME
from deskbridge.outbound.sandbox import SandboxConnector
from deskbridge.schemas import AgentReply, Channel, Desk, brand

__all__ = ["add_routes"]

_STYLE = """
body{font:15px/1.45 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
header{background:#1d2330;color:#fff;padding:.8rem 1.5rem}
header a{color:#fff;text-decoration:none}
main{max-width:60rem;margin:1.5rem auto;padding:0 1rem}
section{background:#fff;border:1px solid #dde1e7;border-radius:6px;
  padding:1rem 1.2rem;margin-bottom:1rem}
table{border-collapse:collapse;width:100%}.calls{table-layout:fixed}
td,th{text-align:left;padding:.35rem .5rem;border-bottom:1px solid #eee;vertical-align:top}
.calls td,td.long,h2{overflow-wrap:anywhere}
.calls col.when{width:7.5rem}.calls col.ch{width:7rem}.calls col.call{width:8rem}
.calls col.to{width:11rem}.calls col.tk{width:4.5rem}
.msg{border-left:4px solid #9aa5b5;padding:.4rem .8rem;margin:.6rem 0;background:#fafbfc}
.msg,.pre,.wire{white-space:pre-wrap;overflow-wrap:anywhere}
.wire{font:12px/1.35 ui-monospace,monospace;background:#f3f4f6;padding:.4rem;margin:.3rem 0}
summary{cursor:pointer;color:#556;font-size:.85em}
.customer{border-color:#2f7de1}.agent{border-color:#1a9f5b}
.note{border-color:#e0a100;background:#fff9e6}
.meta{color:#667;font-size:.85em}textarea{width:100%;min-height:6rem;font:inherit;
  box-sizing:border-box}
button{font:inherit;padding:.4rem 1rem;margin-top:.5rem}code{background:#eef;padding:0 .2rem}
"""

# Keeps a ticket's page current without a reload (the reply form and what is typed in it
# stay): polls the page's /live twin and swaps the parts whose version changed.
_SCRIPT = """
(function () {
  var live = document.getElementById("live");
  if (!live) { return; }
  function poll() {
    if (document.visibilityState === "hidden") { return; }
    fetch(live.getAttribute("data-src"), {cache: "no-store", credentials: "same-origin"})
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (d) {
        if (!d || d.v === live.getAttribute("data-v")) { return; }
        Object.keys(d.parts).forEach(function (id) {
          var el = document.getElementById(id);
          if (el) { el.innerHTML = d.parts[id]; }
        });
        live.setAttribute("data-v", d.v);
      })
      .catch(function () {});
  }
  setInterval(poll, 1500);
})();
(function () {
  // tells the customer's widget that the agent is typing, at most every two seconds
  var box = document.getElementById("text");
  var form = box && box.form;
  if (!box || !form || !box.getAttribute("data-typing")) { return; }
  var last = 0;
  box.addEventListener("input", function () {
    var now = Date.now();
    if (!box.value.trim() || now - last < 2000) { return; }
    last = now;
    var body = new FormData();
    body.append("csrf", form.elements.csrf.value);
    fetch(box.getAttribute("data-typing"), {method: "POST", body: body,
      credentials: "same-origin"}).catch(function () {});
  });
})();
"""

_e = html.escape


def _sha256(text: str) -> str:
    return base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


SECURITY_HEADERS = {
    # the inline style block and script are allowed by their hashes; nothing else loads
    # or runs, and the script may only fetch from this origin
    "Content-Security-Policy": (
        f"default-src 'none'; style-src 'sha256-{_sha256(_STYLE)}'; "
        f"script-src 'sha256-{_sha256(_SCRIPT)}'; connect-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _secured(handler: Handler) -> Handler:
    """``handler`` with the pages' security headers on every answer, errors included."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            resp = await handler(request)
        except web.HTTPException as exc:
            exc.headers.update(SECURITY_HEADERS)
            raise
        resp.headers.update(SECURITY_HEADERS)
        return resp

    return wrapped


def _page(title: str, body: str, *, refresh: bool = False, live: bool = False) -> web.Response:
    meta = '<meta http-equiv="refresh" content="3">' if refresh else ""
    script = f"<script>{_SCRIPT}</script>" if live else ""
    doc = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">{meta}'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)} · deskbridge sandbox</title><style>{_STYLE}</style></head>"
        '<body><header><a href="/sandbox/"><b>deskbridge</b> sandbox desk</a></header>'
        f"<main>{body}</main>{script}</body></html>"
    )
    return web.Response(text=doc, content_type="text/html", headers={"Cache-Control": "no-store"})


def _table(
    headers: list[str], rows: list[list[str]], empty: str, *, cols: str = "", cls: str = ""
) -> str:
    """An HTML table; cells are given as HTML (escape values before passing them), a
    cell that is a whole ``<td ...>`` element as is."""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(c if c.startswith("<td") else f"<td>{c}</td>" for c in row) + "</tr>"
        for row in rows
    )
    if not rows:
        body = f'<tr><td colspan="{len(headers)}">{empty}</td></tr>'
    klass = f' class="{cls}"' if cls else ""
    return f"<table{klass}>{cols}<tr>{head}</tr>{body}</table>"


def _when(ts: float) -> str:
    when = datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"<span class=meta>{when}</span>"


def _sandbox_accounts(rt: Runtime) -> list[str]:
    return [n for n, acc in rt.accounts.accounts.items() if acc.desk.type == Desk.SANDBOX.value]


def _account(request: web.Request) -> tuple[Runtime, str]:
    rt = request.app[RUNTIME]
    account = request.match_info["account"]
    if account not in _sandbox_accounts(rt):
        raise web.HTTPNotFound(text="no sandbox desk for this account")
    return rt, account


def _ticket_link(account: str, ticket_id: str) -> str:
    return f'<a href="/sandbox/{_e(account)}/tickets/{_e(ticket_id)}">#{_e(ticket_id)}</a>'


async def index(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    parts: list[str] = []
    accounts = _sandbox_accounts(rt)
    if not accounts:
        parts.append("<section><p>No account uses the sandbox desk.</p></section>")
    for account in accounts:
        tickets = await rt.sandbox.tickets(account)
        rows = [
            [
                _ticket_link(account, t.id),
                f"<td class=long>{_e(t.subject)}</td>",
                f"<td class=long>{_e(t.requester)}</td>",
                _e(brand(t.channel)),
                str(len(t.messages)),
                _when(t.updated_at),
            ]
            for t in tickets
        ]
        empty = "No tickets yet. Try <code>deskbridge simulate telegram --text hello</code>."
        headers = ["Ticket", "Subject", "Requester", "Channel", "Messages", "Updated"]
        parts.append(
            f"<section><h2>Account <code>{_e(account)}</code></h2>"
            f"{_table(headers, rows, empty)}</section>"
        )
        of = {i: t.id for t in tickets for i in t.sent_ids}
        sent = await rt.sandbox.sent(account, limit=20)
        parts.append(f"<section>{_outbox(account, sent, of)}</section>")
    return _page("Tickets", "".join(parts), refresh=True)


def _call_text(e: dict[str, Any]) -> str:
    """What was sent, as the customer would read it; the wire form (a SIP request, a
    mail's headers) folded away under it."""
    subject = str(e.get("subject") or "")
    head = f"<div><b>{_e(subject)}</b></div>" if subject else ""
    detail = str(e.get("detail") or "")
    wire = (
        f"<details><summary>wire form</summary><div class=wire>{_e(detail)}</div></details>"
        if detail
        else ""
    )
    return f"{head}<div class=pre>{_e(str(e.get('text', '')))}</div>{wire}"


def _outbox(account: str, sent: list[dict[str, Any]], of: dict[str, str] | None = None) -> str:
    """The channel calls in ``sent``; with ``of`` (platform id → ticket), a Ticket
    column (the index), else they are one ticket's (its page)."""
    rows = []
    for e in sent:
        row = [
            _when(e["at"]),
            _e(brand(str(e.get("channel", "")))),
            f"<code>{_e(e.get('method', ''))}</code>",
            _e(str(e.get("to", ""))),
        ]
        if of is not None:
            tid = of.get(str(e.get("id", "")))
            row.append(_ticket_link(account, tid) if tid else "")
        rows.append([*row, _call_text(e)])
    headers = ["When", "Channel", "Call", "To"] + (["Ticket"] if of is not None else []) + ["Text"]
    cols = "".join(
        f'<col class="{c}">' for c in ["when", "ch", "call", "to"] + (["tk"] if of else [])
    )
    if of is None:
        title = "Sent on channels for this ticket"
        empty = "Nothing sent for this ticket yet. Send a reply and its channel call shows here."
    else:
        title = "Sent on channels (sandbox channel API)"
        empty = "Nothing sent yet. Reply to a ticket and the channel call shows up here."
    table = _table(headers, rows, empty, cols=f"<colgroup>{cols}<col></colgroup>", cls="calls")
    return f"<h3>{title}</h3>{table}"


def _message(author: str, at: float, text: str, attachments: tuple[str, ...]) -> str:
    files = "".join(f"<div class=meta>📎 {_e(a)}</div>" for a in attachments)
    return (
        f'<div class="msg {_e(author)}"><div class=meta>{_e(author)} · {_when(at)}</div>'
        f"{_e(text)}{files}</div>"
    )


async def _ticket_parts(rt: Runtime, account: str, ticket_id: str) -> dict[str, str] | None:
    """The parts of a ticket's page that change: its messages and its channel calls."""
    t = await rt.sandbox.ticket(account, ticket_id)
    if t is None:
        return None
    sent = await rt.sandbox.sent_as(account, t.sent_ids)
    return {
        "messages": "".join(_message(m.author, m.at, m.text, m.attachments) for m in t.messages),
        "sent": _outbox(account, sent),
    }


def _version(parts: dict[str, str]) -> str:
    return hashlib.sha256("\x1f".join(parts.values()).encode()).hexdigest()[:16]


async def _seen(rt: Runtime, account: str, ticket_id: str) -> None:
    """The agent has the ticket open: a widget visitor's messages on it are read."""
    # a receipt, not the page: what fails now is marked on the page's next poll
    with contextlib.suppress(StoreUnavailable):
        await widget.seen(rt, account, Desk.SANDBOX.value, ticket_id)


async def ticket(request: web.Request) -> web.Response:
    rt, account = _account(request)
    ticket_id = request.match_info["ticket"]
    t = await rt.sandbox.ticket(account, ticket_id)
    parts = await _ticket_parts(rt, account, ticket_id)
    if t is None or parts is None:
        raise web.HTTPNotFound(text="no such ticket")
    await _seen(rt, account, ticket_id)
    base = f"/sandbox/{_e(account)}/tickets/{_e(t.id)}"
    form = (
        f'<form method="post" action="{base}/reply">'
        f'<input type="hidden" name="csrf" value="{_e(request.app[CSRF])}">'
        f'<label for="text"><b>Reply as agent</b> (sent to the customer on '
        f"{_e(brand(t.channel))})</label>"
        f'<textarea id=text name=text required data-typing="{base}/typing"></textarea>'
        "<button type=submit>Send reply</button></form>"
        f'<form method="post" action="/sandbox/{_e(account)}/tickets/{_e(t.id)}/solve">'
        f'<input type="hidden" name="csrf" value="{_e(request.app[CSRF])}">'
        "<button type=submit>Solve</button> <span class=meta>marks the ticket solved: the "
        "customer gets the satisfaction survey on their channel when the account has "
        "<code>csat:</code></span></form>"
    )
    body = (
        f'<div id=live data-src="{base}/live" data-v="{_version(parts)}">'
        f"<section><h2>#{_e(t.id)} {_e(t.subject)}</h2>"
        f"<p class=meta>Requester: {_e(t.requester)} · channel {_e(brand(t.channel))}</p>"
        f"<div id=messages>{parts['messages']}</div>{form}</section>"
        f"<section id=sent>{parts['sent']}</section></div>"
    )
    return _page(f"Ticket {t.id}", body, live=True)


async def live(request: web.Request) -> web.Response:
    """The changing parts of a ticket's page as JSON ``{"v": version, "parts": {id:
    html}}``, for the page's own script."""
    rt, account = _account(request)
    parts = await _ticket_parts(rt, account, request.match_info["ticket"])
    if parts is None:
        raise web.HTTPNotFound(text="no such ticket")
    # the page polls only while it is visible: the agent is looking at the ticket
    await _seen(rt, account, request.match_info["ticket"])
    return web.json_response(
        {"v": _version(parts), "parts": parts}, headers={"Cache-Control": "no-store"}
    )


async def reply(request: web.Request) -> web.Response:
    rt, account = _account(request)
    ticket_id = request.match_info["ticket"]
    form = await request.post()
    token = str(form.get("csrf", ""))
    if not hmac.compare_digest(token.encode(), request.app[CSRF].encode()):
        raise web.HTTPForbidden(text="stale form: reload the page")
    text = str(form.get("text", "")).strip()
    if not text:
        raise web.HTTPBadRequest(text="the reply is empty")
    if not await rt.sandbox.exists(account, ticket_id):
        raise web.HTTPNotFound(text="no such ticket")
    desk = rt.desk(account)
    assert isinstance(desk, SandboxConnector)
    msg_id = await desk.record_reply(ticket_id, text)
    agent_reply = AgentReply(
        account=account,
        desk=Desk.SANDBOX,
        dedup_key=f"reply:{msg_id}",
        ticket_id=ticket_id,
        external_id=msg_id,
        text=text,
        author_name="Sandbox agent",
        occurred_at=datetime.now(UTC),
    )
    try:
        await accept_replies(rt, account, Desk.SANDBOX.value, None, [agent_reply])
    except StoreUnavailable as exc:
        raise web.HTTPServiceUnavailable(text="store unavailable, try again") from exc
    raise web.HTTPSeeOther(f"/sandbox/{account}/tickets/{ticket_id}")


async def _ticket_form(request: web.Request) -> tuple[Runtime, str, str]:
    """The account and ticket of a form posted on a ticket's page: 403 for a stale form
    (its CSRF token), 404 for a ticket that is not there."""
    rt, account = _account(request)
    ticket_id = request.match_info["ticket"]
    form = await request.post()
    token = str(form.get("csrf", ""))
    if not hmac.compare_digest(token.encode(), request.app[CSRF].encode()):
        raise web.HTTPForbidden(text="stale form: reload the page")
    if not await rt.sandbox.exists(account, ticket_id):
        raise web.HTTPNotFound(text="no such ticket")
    return rt, account, ticket_id


async def typing(request: web.Request) -> web.Response:
    """The agent types in the reply box (the page says so every two seconds): a widget
    visitor sees "agent is typing" (204; nothing for a ticket of another channel)."""
    rt, account, ticket_id = await _ticket_form(request)
    try:
        await widget.typing(rt, account, Desk.SANDBOX.value, ticket_id)
    except StoreUnavailable as exc:
        raise web.HTTPServiceUnavailable(text="store unavailable, try again") from exc
    return web.Response(status=204)


async def solve(request: web.Request) -> web.Response:
    """The agent marks the ticket solved: what a desk's status webhook says."""
    rt, account, ticket_id = await _ticket_form(request)
    try:
        outcome = await csat.ticket_solved(rt, account, Desk.SANDBOX.value, ticket_id)
        said = _SOLVED.get(outcome, outcome)
        await rt.sandbox.add_message(account, ticket_id, author="note", text=f"Solved. {said}")
    except StoreUnavailable as exc:
        raise web.HTTPServiceUnavailable(text="store unavailable, try again") from exc
    raise web.HTTPSeeOther(f"/sandbox/{account}/tickets/{ticket_id}")


_SOLVED = {
    "scheduled": "The satisfaction survey is scheduled.",
    "not_configured": "No survey: the account has no csat settings.",
    "unknown_ticket": "No survey: no conversation behind this ticket.",
    "already": "The survey of this ticket was scheduled before.",
    "opted_out": "No survey: the customer opted out.",
    "recent": "No survey: the customer was surveyed recently.",
}


# --- the sandbox channel API -------------------------------------------------------------


def _buttons(labels: list[str]) -> str:
    """The choices a message offered, as the sandbox page shows them."""
    return f"\n[buttons: {' | '.join(labels)}]" if labels else ""


def _telegram_error(status: int, description: str) -> web.Response:
    return web.json_response(
        {"ok": False, "error_code": status, "description": description}, status=status
    )


async def telegram_api(request: web.Request) -> web.Response:
    """Stands in for api.telegram.org for a channel in sandbox mode."""
    rt = request.app[RUNTIME]
    account = request.match_info["account"]
    account_cfg = rt.accounts.accounts.get(account)
    channel_cfg = account_cfg.channel(Channel.TELEGRAM) if account_cfg else None
    if not isinstance(channel_cfg, TelegramConfig):
        return _telegram_error(401, "Unauthorized")
    bot = request.match_info["bot"].removeprefix("bot")
    if (
        channel_cfg is None
        or not channel_cfg.sandbox
        or not hmac.compare_digest(bot.encode(), channel_cfg.bot_token.get_secret_value().encode())
    ):
        return _telegram_error(401, "Unauthorized")
    method = request.match_info["method"]
    fields: dict[str, Any] = {}
    file_note = ""
    if request.content_type == "application/json":
        fields = await request.json()
    elif request.can_read_body:
        form = await request.post()
        for k, v in form.items():
            if isinstance(v, web.FileField):
                data = v.file.read()
                file_note = f"[{k}: {v.filename}, {v.content_type}, {len(data)} bytes]"
            else:
                fields[k] = v
    else:
        fields = dict(request.query)
    now = int(time.time())
    if method in ("sendMessage", "sendPhoto", "sendDocument"):
        text = str(fields.get("text") or fields.get("caption") or "")
        markup = fields.get("reply_markup")
        if isinstance(markup, dict) and isinstance(markup.get("keyboard"), list):
            keys = [str(k.get("text")) for row in markup["keyboard"] for k in row]
            text += _buttons(keys)
        if file_note:
            text = f"{file_note}\n{text}" if text else file_note
        message_id = time.time_ns() // 1000 % 2_000_000_000
        await rt.sandbox.record_sent(
            account,
            {
                "channel": "telegram",
                "method": method,
                "to": fields.get("chat_id"),
                "text": text,
                "id": str(message_id),
            },
        )
        result = {"message_id": message_id, "date": now, "chat": {"id": fields.get("chat_id")}}
        return web.json_response({"ok": True, "result": result})
    if method == "getMe":
        return web.json_response(
            {
                "ok": True,
                "result": {
                    "id": 1,
                    "is_bot": True,
                    "first_name": "Sandbox",
                    "username": "sandbox_bot",
                },
            }
        )
    if method in ("setWebhook", "deleteWebhook"):
        return web.json_response(
            {"ok": True, "result": True, "description": "sandbox: nothing to register"}
        )
    if method == "getFile":
        return _telegram_error(400, "Bad Request: the sandbox holds no files")
    return _telegram_error(404, "Not Found")


async def to_index(request: web.Request) -> web.Response:
    raise web.HTTPFound("/sandbox/")


def _bearer(request: web.Request) -> str:
    auth = request.headers.get("Authorization", "")
    if auth.startswith("Bearer "):
        return auth.removeprefix("Bearer ")
    return request.query.get("access_token", "")


def _graph_error(status: int, code: int, message: str) -> web.Response:
    body = {
        "error": {
            "message": message,
            "type": "OAuthException",
            "code": code,
            "fbtrace_id": "sandbox",
        }
    }
    return web.json_response(body, status=status)


_G = TypeVar("_G", WhatsAppConfig, MessengerConfig, InstagramConfig)


def _graph_channel(
    rt: Runtime,
    account: str,
    request: web.Request,
    channel: Channel,
    kind: type[_G],
    token: Callable[[_G], SecretStr],
) -> _G | None:
    """The account's ``channel`` when it runs in sandbox mode and the request carries its
    token as a bearer (what the Graph API stand-ins accept), else None."""
    cfg = rt.accounts.accounts.get(account)
    ch = cfg.channel(channel) if cfg else None
    if not isinstance(ch, kind) or not ch.sandbox:
        return None
    if not hmac.compare_digest(_bearer(request).encode(), token(ch).get_secret_value().encode()):
        return None
    return ch


def _subscribers(ch: WhatsAppConfig | MessengerConfig | InstagramConfig) -> set[str]:
    """The ids whose ``subscribed_apps`` an account's token may read and set."""
    if isinstance(ch, WhatsAppConfig):
        return {ch.waba_id} if ch.waba_id else set()
    if isinstance(ch, MessengerConfig):
        return {ch.page_id}
    return {ch.ig_id, *([ch.page_id] if ch.page_id else [])}


async def _registration(
    request: web.Request, rt: Runtime, account: str, channel: Channel
) -> web.Response | None:
    """``/<app-id>/subscriptions`` (the app token) and ``/<id>/subscribed_apps`` (the
    channel's token) for ``channels register``, else None. The sandbox app is set up for
    this gateway: reading says it posts every field deskbridge reads to the gateway's own
    URL, and a POST that Meta would take is accepted (it changes nothing)."""
    parts = request.match_info["tail"].strip("/").split("/")
    if len(parts) != 3 or parts[2] not in ("subscriptions", "subscribed_apps"):
        return None
    cfg = rt.accounts.accounts.get(account)
    ch = cfg.channel(channel) if cfg else None
    adapter = rt.adapter(account, channel)
    if (
        not isinstance(ch, WhatsAppConfig | MessengerConfig | InstagramConfig)
        or not ch.sandbox
        or not isinstance(adapter, MessagingAdapter | WhatsAppAdapter)
    ):
        return _graph_error(401, 190, "Invalid OAuth access token")
    app, hook, node = rt.accounts.apps[ch.app], adapter.app_hook, parts[1]
    token = ch.page_access_token if isinstance(ch, MessengerConfig) else ch.access_token
    if parts[2] == "subscriptions":
        token = SecretStr(f"{app.app_id}|{app.app_secret.get_secret_value()}")
        if app.app_id is None or node != app.app_id:
            return _graph_error(400, 100, "(#100) Unknown app in the deskbridge sandbox")
    elif node not in _subscribers(ch):
        return _graph_error(400, 100, "Unsupported request in the deskbridge sandbox")
    if not hmac.compare_digest(_bearer(request).encode(), token.get_secret_value().encode()):
        return _graph_error(401, 190, "Invalid OAuth access token")
    if request.method == "POST":
        return await _subscribe(request, app.verify_token, hook, parts[2])
    if parts[2] == "subscriptions":
        url = f"{rt.settings.base_public_url()}/webhooks/{channel.value}"
        fields = [{"name": f, "version": ch.graph_version} for f in hook.fields]
        entry = {"object": hook.object, "callback_url": url, "active": True, "fields": fields}
        return web.json_response({"data": [entry]})
    about = {"id": app.app_id, "name": "deskbridge sandbox"}
    if isinstance(ch, WhatsAppConfig):
        return web.json_response({"data": [{"whatsapp_business_api_data": about}]})
    return web.json_response({"data": [{**about, "subscribed_fields": list(hook.fields)}]})


async def _subscribe(
    request: web.Request, verify_token: SecretStr, hook: AppWebhook, edge: str
) -> web.Response:
    """A POST to a subscription edge: refused as Meta would refuse it, else accepted."""
    form = await request.post()
    if edge == "subscribed_apps":
        return web.json_response({"success": True})
    if form.get("object") != hook.object or not hook.by_api:
        return _graph_error(400, 100, "(#100) Meta's API does not set this object's webhook")
    given = str(form.get("verify_token", ""))
    if not hmac.compare_digest(given.encode(), verify_token.get_secret_value().encode()):
        return _graph_error(400, 2200, "(#2200) Callback verification failed")
    return web.json_response({"success": True})


async def whatsapp_api(request: web.Request) -> web.Response:
    """Stands in for the WhatsApp Cloud API (Graph) for a channel in sandbox mode."""
    rt = request.app[RUNTIME]
    account = request.match_info["account"]
    registered = await _registration(request, rt, account, Channel.WHATSAPP)
    if registered is not None:
        return registered
    ch = _graph_channel(
        rt, account, request, Channel.WHATSAPP, WhatsAppConfig, lambda c: c.access_token
    )
    if ch is None:
        return _graph_error(401, 190, "Invalid OAuth access token")
    parts = request.match_info["tail"].strip("/").split("/")
    if request.method == "POST" and parts[-1] == "media":
        form = await request.post()
        size = sum(len(v.file.read()) for v in form.values() if isinstance(v, web.FileField))
        return web.json_response({"id": f"sandbox-media-{size}-{int(time.time() * 1000)}"})
    if request.method == "POST" and parts[-1] == "messages":
        body = await request.json()
        kind = str(body.get("type", "text"))
        payload = body.get(kind) if isinstance(body.get(kind), dict) else {}
        text = payload.get("body") or payload.get("caption") or payload.get("name") or ""
        if kind == "interactive":
            rows = [r for s in payload.get("action", {}).get("sections", []) for r in s["rows"]]
            text = str((payload.get("body") or {}).get("text", ""))
            text += _buttons([str(r.get("title")) for r in rows])
        elif kind != "text":
            media = f": {payload['id']}" if payload.get("id") else ""
            text = f"[{kind}{media}] {text}".strip()
        to = body.get("to") or body.get("recipient")
        wamid = f"wamid.SANDBOX{time.time_ns() // 1000}"
        await rt.sandbox.record_sent(
            account,
            {
                "channel": "whatsapp",
                "method": f"messages ({kind})",
                "to": to,
                "text": text,
                "id": wamid,
            },
        )
        return web.json_response(
            {
                "messaging_product": "whatsapp",
                "contacts": [{"input": to}],
                "messages": [{"id": wamid}],
            }
        )
    return _graph_error(400, 100, "Unsupported request in the deskbridge sandbox")


async def messenger_api(request: web.Request) -> web.Response:
    """Stands in for the Messenger Send API (Graph) for a channel in sandbox mode."""
    rt = request.app[RUNTIME]
    account = request.match_info["account"]
    registered = await _registration(request, rt, account, Channel.MESSENGER)
    if registered is not None:
        return registered
    ch = _graph_channel(
        rt, account, request, Channel.MESSENGER, MessengerConfig, lambda c: c.page_access_token
    )
    if ch is None:
        return _graph_error(401, 190, "Invalid OAuth access token")
    tail = request.match_info["tail"].strip("/").split("/")
    if request.method == "GET" and len(tail) == 2 and tail[1].isdigit():
        # the User Profile API: GET /{version}/{PSID}?fields=first_name,last_name
        return web.json_response(
            {"first_name": "Messenger Demo", "last_name": "Customer", "id": tail[1]}
        )
    if request.method != "POST" or tail[-1] != "messages":
        return _graph_error(400, 100, "Unsupported request in the deskbridge sandbox")
    body = await request.json()
    message = body.get("message") or {}
    text = message.get("text") or ""
    text += _buttons([str(q.get("title")) for q in message.get("quick_replies") or []])
    if isinstance(message.get("attachment"), dict):
        att = message["attachment"]
        text = f"[{att.get('type')}: {att.get('payload', {}).get('url', '')}]"
    method = str(body.get("messaging_type", ""))
    if body.get("tag"):
        method += f" {body['tag']}"
    psid = (body.get("recipient") or {}).get("id")
    mid = f"m_SANDBOX{time.time_ns() // 1000}"
    await rt.sandbox.record_sent(
        account, {"channel": "messenger", "method": method, "to": psid, "text": text, "id": mid}
    )
    return web.json_response({"recipient_id": psid, "message_id": mid})


async def instagram_api(request: web.Request) -> web.Response:
    """Stands in for the Instagram messaging and user profile APIs (Graph) for a channel
    in sandbox mode."""
    rt = request.app[RUNTIME]
    account = request.match_info["account"]
    registered = await _registration(request, rt, account, Channel.INSTAGRAM)
    if registered is not None:
        return registered
    ch = _graph_channel(
        rt, account, request, Channel.INSTAGRAM, InstagramConfig, lambda c: c.access_token
    )
    if ch is None:
        return _graph_error(401, 190, "Invalid OAuth access token")
    tail = request.match_info["tail"].strip("/")
    if request.method == "GET":
        # `/me` (the token check) and `/<IGSID>` (the profile of a customer)
        if tail.endswith("/me"):
            return web.json_response({"id": ch.ig_id})
        return web.json_response(
            {"name": "Instagram Demo Customer", "username": "demo.customer", "id": tail}
        )
    if request.method != "POST" or not tail.endswith("messages"):
        return _graph_error(400, 100, "Unsupported request in the deskbridge sandbox")
    body = await request.json()
    message = body.get("message") or {}
    text = message.get("text") or ""
    if isinstance(message.get("attachment"), dict):
        att = message["attachment"]
        text = f"[{att.get('type')}: {att.get('payload', {}).get('url', '')}]"
    method = str(body.get("messaging_type", ""))
    if body.get("tag"):
        method += f" {body['tag']}"
    igsid = (body.get("recipient") or {}).get("id")
    await rt.sandbox.record_sent(
        account, {"channel": "instagram", "method": method, "to": igsid, "text": text}
    )
    return web.json_response(
        {"recipient_id": igsid, "message_id": f"aWdfSANDBOX{int(time.time() * 1_000_000)}"}
    )


def _basic_auth(request: web.Request, user: str, password: SecretStr) -> bool:
    """Whether ``request`` carries HTTP basic auth for ``user`` and ``password``."""
    expected = f"{user}:{password.get_secret_value()}".encode()
    given = request.headers.get("Authorization", "").removeprefix("Basic ")
    try:
        decoded = base64.b64decode(given, validate=True)
    except ValueError:
        decoded = b""
    return hmac.compare_digest(decoded, expected)


def _twilio_error(status: int, code: int, message: str) -> web.Response:
    return web.json_response(
        {"code": code, "message": message, "more_info": "", "status": status}, status=status
    )


async def sms_api(request: web.Request) -> web.Response:
    """Stands in for Twilio's Messages resource, or Vonage's Messages and Applications
    APIs, for an SMS channel in sandbox mode (by the channel's provider)."""
    rt = request.app[RUNTIME]
    account = request.match_info["account"]
    cfg = rt.accounts.accounts.get(account)
    ch = cfg.channel(Channel.SMS) if cfg else None
    if isinstance(ch, VonageSmsConfig) and ch.sandbox:
        return await _vonage_api(request, rt, account, ch)
    if not isinstance(ch, SmsConfig) or not ch.sandbox:
        return _twilio_error(401, 20003, "Authenticate")
    if not _basic_auth(request, ch.account_sid, ch.auth_token):
        return _twilio_error(401, 20003, "Authenticate")
    tail = "/" + request.match_info["tail"].strip("/")
    account_path = f"/2010-04-01/Accounts/{ch.account_sid}"
    if request.method == "GET" and tail == account_path + ".json":
        return web.json_response({"sid": ch.account_sid, "status": "active"})
    if request.method != "POST" or tail != account_path + "/Messages.json":
        return _twilio_error(404, 20404, "The requested resource was not found")
    form = await request.post()
    to = str(form.get("To", ""))
    sender = str(form.get("From") or form.get("MessagingServiceSid") or "")
    if not to.startswith("+"):
        return _twilio_error(400, 21211, "The 'To' number is not a valid phone number.")
    text = str(form.get("Body", ""))
    media = [str(m) for m in form.getall("MediaUrl", [])]
    if media:
        text += "".join(f" [media: {m}]" for m in media)
    await rt.sandbox.record_sent(
        account, {"channel": "sms", "method": f"from {sender}", "to": to, "text": text}
    )
    sid = "SM" + hashlib.sha256(f"{to}{time.time_ns()}".encode()).hexdigest()[:32]
    return web.json_response({"sid": sid, "status": "queued", "to": to}, status=201)


def _vonage_error(status: int, title: str, code: str = "") -> web.Response:
    kind = f"https://developer.vonage.com/api-errors/messages#{code}" if code else ""
    return web.json_response(
        {"type": kind or "https://developer.vonage.com/api-errors", "title": title},
        status=status,
        content_type="application/problem+json",
    )


async def _vonage_api(
    request: web.Request, rt: Runtime, account: str, ch: VonageSmsConfig
) -> web.Response:
    tail = "/" + request.match_info["tail"].strip("/")
    if request.method == "GET" and tail == f"/v2/applications/{ch.application_id}":
        if not _basic_auth(request, ch.api_key, ch.api_secret):
            return _vonage_error(401, "Unauthorized")
        return web.json_response({"id": ch.application_id, "name": "deskbridge sandbox"})
    if request.method != "POST" or tail != "/v1/messages":
        return _vonage_error(404, "Not found in the deskbridge sandbox")
    try:
        claims = vonage_signature.application_claims(
            _bearer(request), ch.private_key.get_secret_value()
        )
    except SignatureInvalid:
        claims = {}
    if claims.get("application_id") != ch.application_id:
        return _vonage_error(401, "Unauthorized")
    body = await request.json()
    to = str(body.get("to", ""))
    if not to.isdigit():
        return _vonage_error(422, "Invalid recipient", "1430")
    text = str(body.get("text", ""))
    for part in body.get("content") or []:
        text += f" [{part.get('type')}: {part.get('url')}]"
    await rt.sandbox.record_sent(
        account,
        {
            "channel": "sms",
            "method": f"{body.get('channel')} from {body.get('from')}",
            "to": "+" + to,
            "text": text.strip(),
        },
    )
    return web.json_response({"message_uuid": str(uuid.uuid4())}, status=202)


async def line_api(request: web.Request) -> web.Response:
    """Stands in for the LINE Messaging API (api.line.me and api-data.line.me)."""
    rt = request.app[RUNTIME]
    account = request.match_info["account"]
    cfg = rt.accounts.accounts.get(account)
    ch = cfg.channel(Channel.LINE) if cfg else None
    token = ch.access_token if isinstance(ch, LineConfig) else None
    if not isinstance(ch, LineConfig) or not ch.sandbox or token is None:
        return web.json_response({"message": "Authentication failed"}, status=401)
    if not hmac.compare_digest(_bearer(request).encode(), token.get_secret_value().encode()):
        return web.json_response({"message": "Authentication failed"}, status=401)
    path = "/" + request.match_info["tail"].strip("/")
    now = int(time.time() * 1000)
    if request.method == "POST" and path in ("/v2/bot/message/reply", "/v2/bot/message/push"):
        body = await request.json()
        method = path.rsplit("/", 1)[1]
        sent = []
        for i, m in enumerate(body.get("messages") or []):
            text = m.get("text") or f"[{m.get('type')}: {m.get('originalContentUrl', '')}]"
            items = (m.get("quickReply") or {}).get("items") or []
            text += _buttons([str(i.get("action", {}).get("label")) for i in items])
            to = body.get("to") or "(reply token)"
            sent_id = str(now * 10 + i)
            await rt.sandbox.record_sent(
                account,
                {"channel": "line", "method": method, "to": to, "text": text, "id": sent_id},
            )
            sent.append({"id": sent_id, "quoteToken": f"sandbox-{now}-{i}"})
        return web.json_response({"sentMessages": sent})
    if request.method == "GET" and path.startswith("/v2/bot/profile/"):
        user = path.rsplit("/", 1)[1]
        return web.json_response(
            {"userId": user, "displayName": "LINE Demo Customer", "language": "en"}
        )
    if request.method == "GET" and path == "/v2/bot/info":
        return web.json_response(
            {"userId": "U" + "0" * 32, "basicId": "@sandbox", "displayName": "Sandbox"}
        )
    if request.method == "PUT" and path == "/v2/bot/channel/webhook/endpoint":
        return web.json_response({})
    return web.json_response({"message": "Not found in the deskbridge sandbox"}, status=404)


def pages_enabled(rt: Runtime) -> bool:
    """Whether the ``/sandbox/`` pages are served (see the module docstring)."""
    if rt.settings.sandbox_pages is not None:
        return rt.settings.sandbox_pages
    return bool(_sandbox_accounts(rt))


def api_enabled(rt: Runtime) -> bool:
    """Whether the sandbox channel API is served (see the module docstring)."""
    if rt.settings.sandbox_pages is not None:
        return rt.settings.sandbox_pages
    return any(ch.sandbox for acc in rt.accounts.accounts.values() for ch in acc.channels)


_STAND_INS: dict[Channel, tuple[str, Handler]] = {
    Channel.TELEGRAM: ("{bot}/{method}", telegram_api),
    Channel.WHATSAPP: ("{tail:.*}", whatsapp_api),
    Channel.MESSENGER: ("{tail:.*}", messenger_api),
    Channel.INSTAGRAM: ("{tail:.*}", instagram_api),
    Channel.LINE: ("{tail:.*}", line_api),
    Channel.SMS: ("{tail:.*}", sms_api),
}
"""The platform APIs a channel in sandbox mode talks to instead, by channel (the path
after ``/sandbox/channel-api/{account}/{channel}/``); email and SIP keep an outbox."""


def add_routes(app: web.Application) -> None:
    """Adds the pages and the channel API, each only when enabled (else they are 404)."""
    rt = app[RUNTIME]
    if pages_enabled(rt):
        app.router.add_get("/sandbox", _secured(to_index))
        app.router.add_get("/sandbox/", _secured(index))
        app.router.add_get("/sandbox/widget", webchat.demo_page)
        app.router.add_get("/sandbox/{account}/tickets/{ticket}", _secured(ticket))
        app.router.add_get("/sandbox/{account}/tickets/{ticket}/live", _secured(live))
        app.router.add_post("/sandbox/{account}/tickets/{ticket}/reply", _secured(reply))
        app.router.add_post("/sandbox/{account}/tickets/{ticket}/solve", _secured(solve))
        app.router.add_post("/sandbox/{account}/tickets/{ticket}/typing", _secured(typing))
    if not api_enabled(rt):
        return
    for channel, (tail, handler) in _STAND_INS.items():
        app.router.add_route("*", f"/sandbox/channel-api/{{account}}/{channel}/{tail}", handler)
