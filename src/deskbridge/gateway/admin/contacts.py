"""``/admin/v1/contacts``: the identity graph for operators (issue 8).

A contact is named by a *reference*: its id, a phone number (``+`` and digits), an email
address, or ``channel:id`` (``telegram:700000001``, ``whatsapp:16505551234``). Links and
unlinks name two identifiers the same way. Every write is audited (who, what, the
contact ids; never the identifiers' values) and recorded in the graph's own trail.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ValidationError

from deskbridge.adapters.registry import CHANNELS
from deskbridge.errors import DeliveryError
from deskbridge.flows import Runtime, privacy
from deskbridge.flows.proactive import OPT_OUT
from deskbridge.gateway.admin.auth import Principal
from deskbridge.gateway.admin.models import (
    ContactAccountQuery,
    DecideBody,
    ForgetBody,
    LinkBody,
    OptOutBody,
)
from deskbridge.gateway.state import RUNTIME
from deskbridge.identity.normalize import email_key
from deskbridge.identity.phones import e164
from deskbridge.outbound.capabilities import MergesUsers
from deskbridge.schemas import Channel, Contact, Identity
from deskbridge.store.graph import IdentityGraph

__all__ = [
    "ContactsBadInput",
    "ContactsNotFound",
    "contact_routes",
    "decide",
    "describe",
    "export",
    "forget",
    "link",
    "show",
    "suggestions",
    "unlink",
]

_CONTACT_ID = re.compile(r"^[0-9a-f]{32}$")


class ContactsBadInput(Exception):
    """400: a reference or body that cannot be used."""


class ContactsNotFound(Exception):
    """404: no such contact."""


def identity_ref(ref: str) -> Identity:
    """``+16505551234``, ``ana@example.com`` or ``channel:id`` as the identifier it names
    (operator references are strong: the operator vouches for them)."""
    ref = ref.strip()
    if ref.startswith(("+", "00")):
        phone = e164(ref)
        if phone is None:
            raise ContactsBadInput(f"{ref!r} is not a valid phone number")
        return Identity(kind="phone", value=phone, strength="strong", source="operator")
    channel, colon, value = ref.partition(":")
    if colon and channel in CHANNELS and value:
        return Identity(
            kind="channel_user",
            value=value,
            channel=Channel(channel),
            strength="strong",
            source="operator",
        )
    if "@" in ref:
        key = email_key(ref)
        if key is None:
            raise ContactsBadInput(f"{ref!r} is not an email address")
        return Identity(kind="email", value=key, strength="strong", source="operator")
    raise ContactsBadInput(
        f"{ref!r}: give a contact id, +E.164 number, email address or channel:id "
        f"(channels: {', '.join(CHANNELS)})"
    )


def _graph(rt: Runtime) -> IdentityGraph:
    graph = rt.conversations.graph
    if graph is None:  # pragma: no cover - every runtime builds one
        raise ContactsBadInput("this deployment has no identity graph")
    return graph


def _account(rt: Runtime, account: str | None, who: Principal) -> str:
    """The account a contacts request is about: given, or the only one the token sees.
    An account the token does not see is refused like one that does not exist."""
    visible = [a for a in rt.accounts.accounts if who.sees(a)]
    if not account:
        if len(visible) == 1:
            return visible[0]
        raise ContactsBadInput("account: required (this deployment has several)")
    if account not in visible:
        raise ContactsBadInput(f"account: no account {account!r}")
    return account


async def _contact_id(rt: Runtime, account: str, ref: str) -> str:
    return (await _lookup(rt, account, ref))[0]


async def _lookup(rt: Runtime, account: str, ref: str) -> tuple[str, bool]:
    """The contact ``ref`` names, and whether it owns ``ref`` (False: it only wrote as
    ``ref`` without proof, such as an unauthenticated email sender). Raises
    ``ContactsNotFound``, or ``ContactsBadInput`` when several contacts claimed it."""
    graph = _graph(rt)
    scope = rt.conversations.scope(account)
    if _CONTACT_ID.match(ref):
        return await graph.resolve(scope, ref), True
    ident = identity_ref(ref)
    found = await graph.find(scope, ident)
    if found is not None:
        return found, True
    claimed = await graph.claimants(scope, ident)
    if len(claimed) > 1:
        raise ContactsBadInput(
            f"{ref!r} was claimed without proof by several contacts ({', '.join(claimed)}): "
            "name one by its id"
        )
    if not claimed:
        raise ContactsNotFound(f"no contact with {ref!r} in account {account}")
    return claimed[0], False


def _identity(i: Identity) -> dict[str, Any]:
    return {
        "kind": i.kind,
        "channel": i.channel.value if i.channel else None,
        "value": i.value,
        "strength": i.strength,
        "source": i.source,
    }


async def describe(rt: Runtime, account: str, contact_id: str) -> dict[str, Any]:
    """Everything deskbridge holds about how it recognises this contact."""
    graph = _graph(rt)
    scope = rt.conversations.scope(account)
    contact: Contact | None = await rt.conversations.contact(account, contact_id)
    members = await graph.members(scope, contact_id)
    if contact is None and not members:
        raise ContactsNotFound(f"no contact {contact_id} in account {account}")
    conversations = []
    for conv_id in await rt.conversations.conversations_of(account, contact_id):
        conv = await rt.conversations.get(account, conv_id)
        if conv is not None:
            conversations.append(
                {"id": conv.id, "channel": conv.channel.value, "ticket_id": conv.ticket_id}
            )
    desk_users = {}
    desk = rt.accounts.accounts[account].desk.type
    user = await rt.conversations.desk_user(account, desk, contact_id)
    if user is not None:
        desk_users[desk] = user.partition("|")[0]
    edges = [
        {
            "a": _identity(e.a),
            "b": _identity(e.b),
            "merging": e.merging,
            "evidence": e.evidence,
        }
        for e in await graph.edges(scope, contact_id)
    ]
    return {
        "id": contact_id,
        "account": account,
        "scope": scope,
        "display_name": contact.display_name if contact else None,
        "created_at": contact.created_at.isoformat() if contact else None,
        "attributes": contact.attributes if contact else {},
        "identities": [_identity(i) for i in members],
        "edges": edges,
        "conversations": conversations,
        "desk_users": desk_users,
    }


async def _parse(request: web.Request, model: type[BaseModel]) -> Any:
    try:
        return model.model_validate(await request.json())
    except ValueError as exc:  # JSON errors and ValidationError
        if isinstance(exc, ValidationError):
            first = exc.errors()[0]
            where = ".".join(str(x) for x in first["loc"]) or "body"
            raise ContactsBadInput(f"{where}: {first['msg']}") from None
        raise ContactsBadInput("the body is not JSON") from None


def _query_account(request: web.Request) -> str | None:
    """The ``account`` query parameter, through ``ContactAccountQuery``."""
    q = request.query
    try:
        found = ContactAccountQuery.model_validate(
            {k: q[k] for k in ContactAccountQuery.model_fields if k in q}
        )
    except ValidationError as exc:
        raise ContactsBadInput(str(exc.errors()[0]["msg"])) from None
    return found.account


async def show_route(request: web.Request, who: Principal) -> web.Response:
    rt = request.app[RUNTIME]
    return web.json_response(
        await show(rt, who, request.match_info["ref"], _query_account(request))
    )


async def show(rt: Runtime, who: Principal, ref: str, account: str | None) -> dict[str, Any]:
    """The contact ``ref`` names (``describe``), with ``unverified_match`` when it only
    wrote as ``ref`` without proof. Raises ``ContactsBadInput`` and ``ContactsNotFound``."""
    name = _account(rt, account, who)
    contact_id, owned = await _lookup(rt, name, ref)
    found = await describe(rt, name, contact_id)
    if not owned:
        found["unverified_match"] = ref
    return found


async def _merge_desk_users(
    rt: Runtime, account: str, merges: tuple[tuple[str, str], ...]
) -> list[str]:
    """After an operator's merge: each merged contact's desk user merged into the
    survivor's, where the desk can merge users. Returns what was done, per merge."""
    desk = rt.desk(account)
    if not isinstance(desk, MergesUsers):
        return [f"{rt.accounts.accounts[account].desk.type} cannot merge users"]
    done: list[str] = []
    for survivor, merged in merges:
        keep = await rt.conversations.desk_user(account, desk.desk.value, survivor)
        drop = await rt.conversations.desk_user(account, desk.desk.value, merged)
        if keep is None or drop is None:
            done.append(f"{merged}: no desk user to merge")
            continue
        keep_id, drop_id = keep.partition("|")[0], drop.partition("|")[0]
        if keep_id == drop_id:
            continue
        try:
            await desk.merge_users(drop_id, keep_id)
        except DeliveryError as exc:
            raise ContactsBadInput(f"the desk refused to merge users: {exc}") from None
        await rt.conversations.set_desk_user(account, desk.desk.value, merged, keep_id)
        done.append(f"desk user {drop_id} merged into {keep_id}")
    return done


async def link_route(request: web.Request, who: Principal) -> web.Response:
    body: LinkBody = await _parse(request, LinkBody)
    return web.json_response(await link(request.app[RUNTIME], who, body))


async def link(rt: Runtime, who: Principal, body: LinkBody) -> dict[str, Any]:
    """An operator's link between two known identifiers (their contacts merge); audited.
    Raises ``ContactsBadInput`` and ``ContactsNotFound``."""
    account = _account(rt, body.account, who)
    a, b = identity_ref(body.a), identity_ref(body.b)
    scope = rt.conversations.scope(account)
    graph = _graph(rt)
    if await graph.find(scope, a) is None or await graph.find(scope, b) is None:
        raise ContactsNotFound("both identifiers must already belong to contacts")
    observed = await graph.link(scope, a, b, actor=who.sub, reason=body.reason)
    rt.metrics.event("identity", "merge", "manual", n=len(observed.merges))
    desk_done = (
        await _merge_desk_users(rt, account, observed.merges) if body.merge_desk_users else []
    )
    await rt.audit.record(
        who.sub,
        "contacts.link",
        1,
        {"account": account, "contact": observed.contact_id, "merged": observed.merges},
    )
    return {
        "contact": observed.contact_id,
        "merged": [m[1] for m in observed.merges],
        "desk": desk_done,
    }


async def unlink_route(request: web.Request, who: Principal) -> web.Response:
    body: LinkBody = await _parse(request, LinkBody)
    return web.json_response(await unlink(request.app[RUNTIME], who, body))


async def unlink(rt: Runtime, who: Principal, body: LinkBody) -> dict[str, Any]:
    """Remove an operator's link (the contact splits when nothing else joins the two
    sides); audited. Raises ``ContactsBadInput`` and ``ContactsNotFound``."""
    account = _account(rt, body.account, who)
    a, b = identity_ref(body.a), identity_ref(body.b)
    split = await _graph(rt).unlink(
        rt.conversations.scope(account), a, b, actor=who.sub, reason=body.reason
    )
    if split is None:
        raise ContactsNotFound("those two identifiers are not linked")
    if split.new is not None:
        rt.metrics.event("identity", "split", "manual")
    await rt.audit.record(
        who.sub,
        "contacts.unlink",
        1,
        {"account": account, "kept": split.kept, "split_off": split.new},
    )
    return {"kept": split.kept, "split_off": split.new}


async def suggestions_route(request: web.Request, who: Principal) -> web.Response:
    rt = request.app[RUNTIME]
    return web.json_response(await suggestions(rt, who, _query_account(request)))


async def suggestions(rt: Runtime, who: Principal, account: str | None) -> dict[str, Any]:
    """Merge suggestions awaiting a decision in ``account`` (or the one the token sees)."""
    name = _account(rt, account, who)
    pending = await _graph(rt).suggestions(rt.conversations.scope(name))
    return {
        "suggestions": [
            {"contacts": list(s.contacts), "reason": s.reason, "at": s.at, "source": s.source}
            for s in pending
        ],
    }


async def decide_route(request: web.Request, who: Principal) -> web.Response:
    body: DecideBody = await _parse(request, DecideBody)
    return web.json_response(await decide(request.app[RUNTIME], who, body))


async def decide(rt: Runtime, who: Principal, body: DecideBody) -> dict[str, Any]:
    """Accept (link the two contacts) or reject a merge suggestion; audited. Raises
    ``ContactsBadInput`` and ``ContactsNotFound``."""
    account = _account(rt, body.account, who)
    for c in body.contacts:
        if not _CONTACT_ID.match(c):
            raise ContactsBadInput(f"contacts: {c!r} is not a contact id")
    done = await _graph(rt).decide(
        rt.conversations.scope(account), body.contacts, accept=body.accept, actor=who.sub
    )
    if not done:
        raise ContactsNotFound("no such pending suggestion")
    desk_done: list[str] = []
    if body.accept:
        rt.metrics.event("identity", "merge", "manual")
        if body.merge_desk_users:
            scope = rt.conversations.scope(account)
            survivor = await _graph(rt).resolve(scope, body.contacts[0])
            others = tuple((survivor, c) for c in body.contacts if c != survivor)
            desk_done = await _merge_desk_users(rt, account, others)
    await rt.audit.record(
        who.sub,
        "contacts.accept" if body.accept else "contacts.reject",
        1,
        {"account": account, "contacts": list(body.contacts)},
    )
    return {"decided": True, "accepted": body.accept, "desk": desk_done}


async def _erasure_target(rt: Runtime, account: str, ref: str) -> str | None:
    """The contact ``ref`` names, or None when deskbridge holds nothing under it (a
    malformed reference is still a 400)."""
    try:
        return await _contact_id(rt, account, ref)
    except ContactsNotFound:
        return None


async def forget_route(request: web.Request, who: Principal) -> web.Response:
    rt = request.app[RUNTIME]
    raw = await request.read()
    body = ForgetBody()
    if raw.strip():
        body = await _parse(request, ForgetBody)
    try:
        report = await forget(rt, who, request.match_info["ref"], body)
    except privacy.ErasureBusy as exc:
        return web.json_response({"error": "busy", "message": str(exc)}, status=409)
    except DeliveryError as exc:
        # the desk refused or failed: nothing local was erased yet, so it can be retried
        return web.json_response(
            {"error": "desk_failed", "message": f"desk erasure failed, nothing erased: {exc}"},
            status=502,
        )
    return web.json_response(report)


async def forget(rt: Runtime, who: Principal, ref: str, body: ForgetBody) -> dict[str, Any]:
    """Erase the contact ``ref`` names (``flows.privacy.forget``; audited there). Raises
    ``ContactsBadInput``, ``privacy.ErasureBusy`` and ``DeliveryError`` (the desk failed:
    nothing erased)."""
    account = _account(rt, body.account, who)
    contact_id = await _erasure_target(rt, account, ref)
    if contact_id is None:
        return {
            "contact": None,
            "account": account,
            "removed": {},
            "desk": [],
            "nothing_left": True,
            "confirmed": True,
        }
    report: dict[str, Any] = await privacy.forget(
        rt, account, contact_id, at_desk=body.desk, who=who.sub
    )
    return report


async def opt_out_route(request: web.Request, who: Principal) -> web.Response:
    """Record the customer's opt-out of proactive messages and surveys (or its end)."""
    rt = request.app[RUNTIME]
    body: OptOutBody = await _parse(request, OptOutBody)
    account = _account(rt, body.account, who)
    contact_id = await _contact_id(rt, account, request.match_info["ref"])
    if await rt.conversations.contact(account, contact_id) is None:
        raise ContactsNotFound(f"no contact {contact_id} in account {account}")
    value = "true" if body.opt_out else "false"
    await rt.conversations.set_attribute(account, contact_id, OPT_OUT, value)
    await rt.audit.record(
        who.sub,
        "contacts.opt_out" if body.opt_out else "contacts.opt_in",
        1,
        {"account": account, "contact": contact_id, "reason": body.reason},
    )
    return web.json_response({"contact": contact_id, "opt_out": body.opt_out})


async def export_route(request: web.Request, who: Principal) -> web.Response:
    rt = request.app[RUNTIME]
    return web.json_response(
        await export(rt, who, request.match_info["ref"], _query_account(request))
    )


async def export(rt: Runtime, who: Principal, ref: str, account: str | None) -> dict[str, Any]:
    """Everything held about the contact ``ref`` names; audited. Raises
    ``ContactsBadInput`` and ``ContactsNotFound``."""
    account = _account(rt, account, who)
    contact_id = await _contact_id(rt, account, ref)
    doc = await privacy.export(rt, account, contact_id)
    if not doc["identities"] and not doc["accounts"]:
        raise ContactsNotFound(f"no contact {contact_id} in account {account}")
    await rt.audit.record(
        who.sub, "contacts.export", 1, {"account": account, "contact": contact_id}
    )
    return doc


def contact_routes() -> list[tuple[str, str, str, Any]]:
    return [
        ("POST", "/contacts/{ref}/forget", "contacts:write", forget_route),
        ("GET", "/contacts/{ref}/export", "contacts:read", export_route),
        ("POST", "/contacts/{ref}/opt-out", "contacts:write", opt_out_route),
        ("GET", "/contacts/suggestions", "contacts:read", suggestions_route),
        ("POST", "/contacts/suggestions/decide", "contacts:write", decide_route),
        ("POST", "/contacts/link", "contacts:write", link_route),
        ("POST", "/contacts/unlink", "contacts:write", unlink_route),
        ("GET", "/contacts/{ref}", "contacts:read", show_route),
    ]
