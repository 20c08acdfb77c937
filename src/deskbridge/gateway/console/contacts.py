"""The console's contact pages: search by any identifier, the identity graph as a
picture, merge suggestions to accept or reject, link and unlink, export, and forget
after typing the reference again. The work is the admin API's contacts functions."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from deskbridge.errors import DeliveryError
from deskbridge.flows import privacy
from deskbridge.gateway.admin.contacts import (
    ContactsBadInput,
    ContactsNotFound,
    decide,
    export,
    forget,
    link,
    show,
    suggestions,
    unlink,
)
from deskbridge.gateway.admin.models import DecideBody, ForgetBody, LinkBody
from deskbridge.gateway.console.charts import GraphNode, graph
from deskbridge.gateway.console.render import csrf_field, e, query_link, table, when
from deskbridge.gateway.console.session import Ctx, redirect
from deskbridge.schemas import Channel, Identity
from deskbridge.store.graph import IdentityGraph

__all__ = ["contacts", "decide_post", "export_get", "forget_post", "link_post"]


def _label(i: dict[str, Any]) -> str:
    kind = i["channel"] if i["kind"] == "channel_user" else i["kind"]
    return f"{kind}: {i['value']}"


def _key(i: dict[str, Any]) -> str:
    return f"{i['kind']}|{i['channel'] or ''}|{i['value']}"


def _personal(i: dict[str, Any], shared: frozenset[str]) -> bool:
    ident = Identity(
        kind=i["kind"],
        value=i["value"],
        channel=Channel(i["channel"]) if i["channel"] else None,
        strength=i["strength"],
        source=i["source"],
    )
    return IdentityGraph.personal(ident, shared)


def _picture(ctx: Ctx, doc: dict[str, Any]) -> str:
    shared = ctx.rt.accounts.accounts[doc["account"]].shared_keys
    nodes = [
        GraphNode(_key(i), _label(i), i["strength"] == "strong", _personal(i, shared))
        for i in doc["identities"]
    ]
    edges = []
    trail = []
    for edge in doc["edges"]:
        evidence = edge["evidence"]
        operator = any(x.get("source") == "operator" for x in evidence)
        summary = (
            "; ".join(f"{x.get('source', '?')} by {x.get('actor', '?')}" for x in evidence)
            or "no evidence kept"
        )
        edges.append(
            {
                "a_key": _key(edge["a"]),
                "b_key": _key(edge["b"]),
                "merging": edge["merging"],
                "operator": operator,
                "summary": summary,
            }
        )
        for x in evidence:
            trail.append(
                [
                    when(x.get("at")),
                    e(f"{_label(edge['a'])} ↔ {_label(edge['b'])}"),
                    "merging" if edge["merging"] else "not merging",
                    e(str(x.get("source", ""))),
                    e(str(x.get("actor", ""))),
                    e(str(x.get("reason", ""))),
                ]
            )
    legend = (
        "<p class=legend><span>solid blue line: strong, personal evidence (merges)</span>"
        "<span>dashed grey line: weak or shared evidence (never merges)</span>"
        "<span>green line: an operator's link</span><span>dashed circle: weak identifier</span>"
        "<span>tinted circle: shared identifier</span></p>"
    )
    return (
        graph(nodes, edges)
        + legend
        + "<h3>Evidence and merges</h3>"
        + table(["When", "Between", "Kind", "Source", "Made by", "Reason"], trail, "No evidence.")
    )


def _account_field(account: str) -> str:
    return f'<input type=hidden name=account value="{e(account)}">'


def _writes(ctx: Ctx, doc: dict[str, Any], ref: str) -> str:
    if not ctx.has("contacts:write"):
        return ""
    acc = _account_field(doc["account"])
    csrf = csrf_field(ctx.csrf)
    return (
        "<section><h2>Link or unlink</h2>"
        f'<form method=post action="/console/contacts/link">{csrf}{acc}'
        f'<input type=hidden name=a value="{e(ref)}">'
        '<p><label for="link-b">Other identifier</label> <input id="link-b" name=b required '
        'placeholder="+16505551234, email or telegram:123"> '
        '<label for="link-reason">Reason</label> <input id="link-reason" name=reason required></p>'
        "<button type=submit name=op value=link>Link</button> "
        "<button type=submit name=op value=unlink class=secondary>Unlink</button></form></section>"
        "<section><h2>Forget this contact</h2>"
        f'<form method=post action="/console/contacts/forget">{csrf}{acc}'
        f'<input type=hidden name=ref value="{e(ref)}">'
        f'<p><label for="forget-confirm">Type <code>{e(ref)}</code> to confirm</label><br>'
        '<input id="forget-confirm" name=confirm required autocomplete=off size=40></p>'
        "<p><label><input type=checkbox name=desk value=1> Also delete the desk user and "
        "tickets</label></p><button type=submit class=danger>Forget</button></form></section>"
    )


async def contacts(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    """Search by a reference; the contact with its graph; the pending suggestions."""
    rt = ctx.rt
    accounts = [a for a in rt.accounts.accounts if ctx.who.sees(a)]
    ref = request.query.get("q", "").strip()
    account = request.query.get("account", "").strip() or (
        accounts[0] if len(accounts) == 1 else ""
    )
    opts = "".join(
        f"<option{' selected' if a == account else ''}>{e(a)}</option>" for a in accounts
    )
    search = (
        '<section><form class=filters method=get action="/console/contacts" role="search">'
        f'<label for="q">Phone, email, channel:id or contact id<input id="q" name=q '
        f'value="{e(ref)}" size=34 required></label>'
        f'<label for="acc">Account<select id="acc" name=account>{opts}</select></label>'
        "<button type=submit>Find</button></form></section>"
    )
    found = ""
    if ref:
        try:
            doc = await show(rt, ctx.who, ref, account or None)
        except (ContactsBadInput, ContactsNotFound) as exc:
            found = f'<p class="flash bad" role="alert">{e(str(exc))}</p>'
        else:
            found = _contact(ctx, doc, ref)
    body = search + found + await _suggestions(ctx, account)
    return ctx.page("Contacts", body, active="contacts")


def _contact(ctx: Ctx, doc: dict[str, Any], ref: str) -> str:
    convs = table(
        ["Conversation", "Channel", "Ticket"],
        [
            [
                query_link("/console/deliveries", {"conversation": c["id"]}, c["id"]),
                e(c["channel"]),
                e(str(c["ticket_id"] or "")),
            ]
            for c in doc["conversations"]
        ],
        "No conversation.",
    )
    export = query_link(
        f"/console/contacts/export/{ref}", {"account": doc["account"]}, "Export everything (JSON)"
    )
    return (
        f"<section><h2>Contact <code>{e(doc['id'])}</code></h2>"
        f"<p>{e(doc['display_name'] or 'no name')} · account {e(doc['account'])} · "
        f"created {when(doc['created_at'])} · desk users "
        f"{e(json.dumps(doc['desk_users']))} · {export}</p>"
        f"{_picture(ctx, doc)}<h3>Conversations</h3>{convs}</section>" + _writes(ctx, doc, ref)
    )


async def _suggestions(ctx: Ctx, account: str) -> str:
    if not account:
        return ""
    try:
        pending = (await suggestions(ctx.rt, ctx.who, account))["suggestions"]
    except ContactsBadInput as exc:
        return f'<p class="flash bad">{e(str(exc))}</p>'
    rows = []
    for s in pending:
        a, b = s["contacts"]
        hidden = (
            csrf_field(ctx.csrf)
            + _account_field(account)
            + f'<input type=hidden name=a value="{e(a)}"><input type=hidden name=b value="{e(b)}">'
        )
        buttons = (
            f'<form method=post action="/console/contacts/decide" class=actions>{hidden}'
            f'<button type=submit name=decision value=accept aria-label="Accept merge of {e(a[-8:])} and {e(b[-8:])}">Accept</button>'
            f'<button type=submit name=decision value=reject class=secondary aria-label="Reject merge of {e(a[-8:])} and {e(b[-8:])}">Reject</button></form>'
            if ctx.has("contacts:write")
            else ""
        )
        rows.append(
            [
                query_link("/console/contacts", {"q": a, "account": account}, a[:12]),
                query_link("/console/contacts", {"q": b, "account": account}, b[:12]),
                e(s["reason"]),
                e(str(s["source"])),
                when(s["at"]),
                buttons,
            ]
        )
    return (
        f"<section><h2>Merge suggestions ({len(rows)})</h2>"
        + table(["Contact", "Contact", "Why", "From", "When", "Decision"], rows, "None waiting.")
        + "</section>"
    )


async def decide_post(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    f = ctx.form
    body = DecideBody(
        account=f.get("account") or None,
        contacts=(f.get("a", ""), f.get("b", "")),
        accept=f.get("decision") == "accept",
    )
    result = await decide(ctx.rt, ctx.who, body)
    ref = f.get("a", "")
    q = {"q": ref, "account": f.get("account", "")}
    return redirect(
        "/console/contacts?"
        + "&".join(f"{k}={v}" for k, v in q.items() if v)
        + ("&done=accepted" if result["accepted"] else "&done=rejected")
    )


async def link_post(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    f = ctx.form
    body = LinkBody(
        account=f.get("account") or None,
        a=f.get("a", ""),
        b=f.get("b", ""),
        reason=f.get("reason", ""),
    )
    result = await (unlink if f.get("op") == "unlink" else link)(ctx.rt, ctx.who, body)
    return ctx.page(
        "Contacts",
        f'<p class=flash role="status">Done: <code>{e(json.dumps(result))}</code></p>'
        + query_link(
            "/console/contacts", {"q": body.a, "account": body.account}, "Back to the contact"
        ),
        active="contacts",
    )


async def forget_post(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    f = ctx.form
    ref = f.get("ref", "")
    if not ref or f.get("confirm", "").strip() != ref:
        return ctx.page(
            "Not forgotten",
            "<p>The confirmation did not match the reference: nothing was erased.</p>",
            status=400,
            active="contacts",
        )
    body = ForgetBody(account=f.get("account") or None, desk=f.get("desk") == "1")
    try:
        report = await forget(ctx.rt, ctx.who, ref, body)
    except privacy.ErasureBusy as exc:
        return ctx.page("Busy", f"<p>{e(str(exc))}</p>", status=409, active="contacts")
    except DeliveryError as exc:
        return ctx.page("Desk failed", f"<p>Nothing erased: {e(str(exc))}</p>", status=502)
    removed = sum(v for v in report.get("removed", {}).values() if isinstance(v, int))
    return ctx.page(
        "Forgotten",
        f'<p class=flash role="status">Erased: {removed} records removed.</p>',
        active="contacts",
    )


async def export_get(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    doc = await export(ctx.rt, ctx.who, request.match_info["ref"], request.query.get("account"))
    return web.json_response(
        doc,
        headers={
            "Content-Disposition": 'attachment; filename="contact-export.json"',
            "Cache-Control": "no-store",
        },
    )
