"""The admin API, ``/admin/v1/``: deliveries, kept raw requests, the audit log.

Every route but the OpenAPI document needs a bearer token with the route's scope: 401
(with ``WWW-Authenticate``) for a missing or bad token, 403 for a missing scope, 503 when
no admin key is configured. Errors are JSON: ``{"error": code, "message": text}``. Bad
input is refused with 400 before anything is written; every write is appended to the audit
log with the token's ``sub``.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from deskbridge.config import InstagramConfig, MessengerConfig, WhatsAppConfig
from deskbridge.errors import StoreUnavailable
from deskbridge.flows import Runtime
from deskbridge.flows.ingest import app_scope
from deskbridge.flows.reingest import reingest_one
from deskbridge.gateway.admin.auth import LEEWAY_S, AdminAuth, Principal, TokenInvalid
from deskbridge.gateway.admin.contacts import ContactsBadInput, ContactsNotFound, contact_routes
from deskbridge.gateway.admin.messages import message_routes
from deskbridge.gateway.admin.models import (
    CHANNEL_NAMES,
    DESK_NAMES,
    MAX_LIMIT,
    SOURCES,
    STATES,
    AccountQuery,
    AuditEntry,
    AuditPage,
    DeliveryDetail,
    DeliveryPage,
    DeliveryQuery,
    DiscardBody,
    DiscardResult,
    EventsQuery,
    FilterBody,
    HealthDetail,
    IdsBody,
    IgnoredEvent,
    IgnoredPage,
    IgnoredQuery,
    Lookup,
    LookupItem,
    PageQuery,
    RawEvent,
    RawEventDetail,
    RawPage,
    ReingestBody,
    ReingestedRaw,
    ReingestResult,
    ReingestTotals,
    ReplayBody,
    ReplayResult,
    RevokeBody,
    RevokeResult,
    Skipped,
)
from deskbridge.gateway.admin.openapi import document
from deskbridge.gateway.health import readiness
from deskbridge.gateway.state import ROLE, RUNTIME, STOPPING
from deskbridge.schemas import Delivery, DeliveryState, Direction
from deskbridge.store.listing import (
    Cursor,
    DeliveryFilter,
    IgnoredEntry,
    RawEntry,
    RawFilter,
)

__all__ = [
    "ADMIN_AUTH",
    "PREFIX",
    "BadInput",
    "add_routes",
    "audit_page",
    "delivery_detail",
    "discard",
    "list_deliveries",
    "list_events",
    "principal",
    "raw_detail",
    "reingest",
    "replay",
    "scope_of",
]

log = logging.getLogger(__name__)

PREFIX = "/admin/v1"
ADMIN_AUTH = web.AppKey("admin_auth", AdminAuth)
_ADMIN_OFF = web.AppKey("admin_off", str)

_MAX_FILTERED = 10_000

Handler = Callable[[web.Request, Principal], Awaitable[web.StreamResponse]]
Q = TypeVar("Q", bound=BaseModel)


class BadInput(Exception):
    """400: the request's parameters are wrong (the message says which)."""


def _error(status: int, code: str, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status, headers=headers)


def _bearer(request: web.Request) -> str | None:
    value = request.headers.get("Authorization", "")
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


async def principal(rt: Runtime, auth: AdminAuth, token: str) -> Principal:
    """The caller ``token`` names, checked against the denylist. Raises ``TokenInvalid``
    and ``StoreUnavailable``."""
    who = auth.verify(token)
    # no cache: a revocation holds on every gateway from the next request
    if await rt.revocations.revoked(who.jti, who.sub, who.issued_at):
        raise TokenInvalid("token revoked")
    return who


def scope_of(handler: Handler) -> str:
    """The scope the admin route served by ``handler`` requires (what the console, built
    on the same functions, requires too)."""
    return next(scope for _, _, scope, h in ROUTES if h is handler)


def _guard(scope: str, handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Authenticate, authorize ``scope``, translate errors; then ``handler``."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        auth = request.app.get(ADMIN_AUTH)
        if auth is None:
            return _error(503, "admin_disabled", request.app[_ADMIN_OFF])
        token = _bearer(request)
        realm = 'Bearer realm="deskbridge-admin"'
        if token is None:
            return _error(
                401, "unauthorized", "missing bearer token", **{"WWW-Authenticate": realm}
            )
        try:
            who = await principal(request.app[RUNTIME], auth, token)
        except TokenInvalid as exc:
            challenge = f'{realm}, error="invalid_token"'
            return _error(401, "unauthorized", str(exc), **{"WWW-Authenticate": challenge})
        except (StoreUnavailable, OSError) as exc:
            log.error("admin %s: store unavailable (%s)", request.path, type(exc).__name__)
            return _error(503, "unavailable", "the store is unavailable, try again")
        if scope not in who.scopes:
            challenge = f'{realm}, error="insufficient_scope", scope="{scope}"'
            return _error(
                403,
                "forbidden",
                f"this token lacks the scope {scope}",
                **{"WWW-Authenticate": challenge},
            )
        try:
            return await handler(request, who)
        except (BadInput, ContactsBadInput) as exc:
            return _error(400, "bad_request", str(exc))
        except ContactsNotFound as exc:
            return _error(404, "not_found", str(exc))
        except (StoreUnavailable, OSError) as exc:
            log.error("admin %s: store unavailable (%s)", request.path, type(exc).__name__)
            return _error(503, "unavailable", "the store is unavailable, try again")

    return guarded


# --- input -------------------------------------------------------------------------------


def _time(name: str, value: str | None) -> int | None:
    """An RFC 3339 time with its offset, as epoch milliseconds."""
    if value is None or value == "":
        return None
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise BadInput(f"{name}: not an RFC 3339 time (2024-05-01T10:00:00Z)") from None
    if at.tzinfo is None:
        raise BadInput(f"{name}: give the offset (Z or +02:00)")
    return int(at.timestamp() * 1000)


def _choice(name: str, value: str | None, allowed: list[str]) -> str | None:
    if value is None or value == "":
        return None
    if value not in allowed:
        raise BadInput(f"{name}: {value!r} is not one of {', '.join(allowed)}")
    return value


def _limit(value: str | None, default: int = 50) -> int:
    if value is None:
        return default
    if not value.isdigit() or not 1 <= int(value) <= MAX_LIMIT:
        raise BadInput(f"limit: a number from 1 to {MAX_LIMIT}")
    return int(value)


def _cursor(value: str | None) -> Cursor | None:
    if not value:
        return None
    try:
        return Cursor.decode(value)
    except ValueError as exc:
        raise BadInput(f"cursor: {exc}") from None


def _scopes(rt: Runtime) -> list[str]:
    """Every store scope: the accounts, then each platform app's own (``app:<name>``)."""
    return sorted(rt.accounts.accounts) + [app_scope(a) for a in sorted(rt.accounts.apps)]


def _accounts(rt: Runtime, account: str | None, who: Principal) -> list[str]:
    """The scopes a request reads: ``account`` (an account or ``app:<name>``), else every
    scope the token sees. One the token does not see is refused exactly like one that
    does not exist, so a token cannot probe other tenants' names."""
    visible = [a for a in _scopes(rt) if who.sees(a)]
    if account is None or account == "":
        return visible
    if account not in visible:
        raise BadInput(f"account: no account {account!r}")
    return [account]


def _filter(rt: Runtime, f: FilterBody, who: Principal) -> tuple[list[str], DeliveryFilter]:
    state = _choice("state", f.state, STATES)
    direction = _choice("direction", f.direction, [d.value for d in Direction])
    filt = DeliveryFilter(
        state=DeliveryState.DEAD if state == "failed" else DeliveryState(state) if state else None,
        direction=Direction(direction) if direction else None,
        channel=_choice("channel", f.channel, CHANNEL_NAMES),
        desk=_choice("desk", f.desk, DESK_NAMES),
        conversation=f.conversation or None,
        error=f.error or None,
        since_ms=_time("since", f.since),
        until_ms=_time("until", f.until),
        kind=_choice("kind", f.kind, ["note", "event"]),
    )
    return _accounts(rt, f.account, who), filt


async def _body(request: web.Request, model: type[BaseModel]) -> Any:
    try:
        raw = await request.read()
        return model.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
        )
        raise BadInput(problems) from None


def _query(request: web.Request, model: type[Q]) -> Q:
    """The request's query string through ``model``; raises ``BadInput`` (first problem)."""
    q = request.query
    try:
        return model.model_validate({k: q[k] for k in model.model_fields if k in q})
    except ValidationError as exc:
        raise BadInput(str(exc.errors()[0]["msg"])) from None


def _answer(model: BaseModel, *, exclude_none: bool = False) -> web.Response:
    """``model`` as the JSON answer (``exclude_none``: without empty optional fields)."""
    return web.json_response(model.model_dump(mode="json", exclude_none=exclude_none))


# --- deliveries --------------------------------------------------------------------------


async def list_deliveries(rt: Runtime, who: Principal, q: DeliveryQuery) -> DeliveryPage:
    """A page of the deliveries the token sees that match ``q``. Raises ``BadInput``."""
    accounts, filt = _filter(rt, q, who)
    page = await rt.listing.deliveries(
        accounts,
        filt,
        limit=_limit(q.limit),
        cursor=_cursor(q.cursor),
    )
    return DeliveryPage(deliveries=page.items, next_cursor=page.next_cursor)


async def list_route(request: web.Request, who: Principal) -> web.Response:
    rt = request.app[RUNTIME]
    return _answer(await list_deliveries(rt, who, _query(request, DeliveryQuery)))


async def _find(
    rt: Runtime, who: Principal, delivery_id: str, account: str | None = None
) -> Delivery | None:
    if not delivery_id.isalnum() or len(delivery_id) > 64:
        return None
    found = await rt.deliveries.locate(_accounts(rt, account, who), delivery_id)
    return await rt.deliveries.get(found, delivery_id) if found else None


async def delivery_detail(
    rt: Runtime, who: Principal, ident: str, account: str | None = None
) -> DeliveryDetail | None:
    """One delivery the token sees, with its attempts and the parts sent (None: none)."""
    d = await _find(rt, who, ident, account)
    if d is None:
        return None
    attempts = await rt.deliveries.attempts(d.account, d.id)
    parts = await rt.deliveries.parts(d.account, d.id)
    return DeliveryDetail(
        **dict(d),
        attempt_log=list(attempts),
        parts_sent={str(n): parts[n] for n in sorted(parts)},
    )


async def show_route(request: web.Request, who: Principal) -> web.Response:
    rt = request.app[RUNTIME]
    ident = request.match_info["id"]
    detail = await delivery_detail(rt, who, ident, _query(request, AccountQuery).account)
    if detail is None:
        return _error(404, "not_found", f"no delivery {ident}")
    return _answer(detail, exclude_none=True)


async def lookup_route(request: web.Request, who: Principal) -> web.Response:
    """Many deliveries at once, with each one's last attempt (how the CLI polls a replay)."""
    rt = request.app[RUNTIME]
    body: IdsBody = await _body(request, IdsBody)
    found: list[LookupItem] = []
    missing: list[str] = []
    for ident in dict.fromkeys(body.ids):
        d = await _find(rt, who, ident, body.account)
        if d is None:
            missing.append(ident)
            continue
        last = await rt.deliveries.last_outcome(d.account, d.id)
        found.append(LookupItem(**dict(d), last_attempt=last))
    return _answer(Lookup(deliveries=found, missing=missing), exclude_none=True)


async def _select(
    rt: Runtime, body: ReplayBody, who: Principal
) -> tuple[list[Delivery], list[str], bool]:
    """The deliveries a replay names (by ids, or all a filter matches up to a cap), the
    ids not found, and whether the filter matched more than the cap."""
    if (body.ids is None) == (body.filter is None):
        raise BadInput("give either ids or filter")
    if body.ids is not None:
        chosen: list[Delivery] = []
        missing: list[str] = []
        for ident in dict.fromkeys(body.ids):
            d = await _find(rt, who, ident, body.account)
            if d is None:
                missing.append(ident)
            else:
                chosen.append(d)
        return chosen, missing, False
    assert body.filter is not None
    accounts, filt = _filter(rt, body.filter, who)
    if filt.state is None:
        filt = DeliveryFilter(**{**_fields(filt), "state": DeliveryState.DEAD})
    chosen, cursor = [], None
    while True:
        page = await rt.listing.deliveries(accounts, filt, limit=MAX_LIMIT, cursor=cursor)
        chosen += page.items
        if page.next_cursor is None:
            return chosen[:_MAX_FILTERED], [], len(chosen) > _MAX_FILTERED
        if len(chosen) > _MAX_FILTERED:
            return chosen[:_MAX_FILTERED], [], True
        cursor = Cursor.decode(page.next_cursor)


def _fields(filt: DeliveryFilter) -> dict[str, Any]:
    return {name: getattr(filt, name) for name in DeliveryFilter.__dataclass_fields__}


def _replayable(d: Delivery) -> str | None:
    """Why ``d`` would be skipped by a replay (None: it would be replayed)."""
    if d.state is not DeliveryState.DEAD:
        return d.state.value
    if d.reason == "parse_failed":
        return "parse_failed (re-ingest its raw request instead)"
    return None


async def replay_route(request: web.Request, who: Principal) -> web.Response:
    body: ReplayBody = await _body(request, ReplayBody)
    return _answer(await replay(request.app[RUNTIME], who, body))


async def replay(rt: Runtime, who: Principal, body: ReplayBody) -> ReplayResult:
    """Replay the dead letters ``body`` names (or say what would be, with ``dry_run``);
    audited unless a dry run. Raises ``BadInput``."""
    chosen, missing, truncated = await _select(rt, body, who)
    replayed: list[str] = []
    skipped: list[Skipped] = []
    # oldest first, so each goes back into its lane before the later ones
    for d in sorted(chosen, key=lambda d: d.id):
        if body.dry_run:
            why = _replayable(d)
        else:
            result = await rt.deliveries.replay(d, who.sub)
            why = None if result == "replayed" else result
            if result == "parse_failed":
                why = _replayable(d)
        if why is None:
            replayed.append(d.id)
        else:
            skipped.append(Skipped(id=d.id, reason=why))
    if not body.dry_run:
        details: dict[str, Any] = {"skipped": len(skipped), "missing": len(missing)}
        if body.ids is not None:
            details["ids"] = body.ids[:100]
        if body.filter is not None:
            details["filter"] = body.filter.model_dump(exclude_none=True)
        await rt.audit.record(who.sub, "deliveries.replay", len(replayed), details)
        log.info("admin replay by token sub: %d replayed, %d skipped", len(replayed), len(skipped))
    return ReplayResult(
        dry_run=body.dry_run,
        matched=len(chosen),
        replayed=replayed,
        skipped=skipped,
        missing=missing,
        truncated=truncated,
    )


async def discard_route(request: web.Request, who: Principal) -> web.Response:
    body: DiscardBody = await _body(request, DiscardBody)
    return _answer(await discard(request.app[RUNTIME], who, body))


async def discard(rt: Runtime, who: Principal, body: DiscardBody) -> DiscardResult:
    """Discard the deliveries ``body`` names, with its reason; audited. Raises
    ``BadInput`` (no reason)."""
    if not body.reason.strip():
        raise BadInput("reason: say why")
    discarded: list[str] = []
    skipped: list[Skipped] = []
    missing: list[str] = []
    for ident in dict.fromkeys(body.ids):
        d = await _find(rt, who, ident, body.account)
        if d is None:
            missing.append(ident)
            continue
        result = await rt.deliveries.discard(
            d, who.sub, body.reason.strip(), retention_s=rt.retention(d.account).delivered_s
        )
        if result == "discarded":
            discarded.append(d.id)
        else:
            skipped.append(Skipped(id=d.id, reason=result))
    await rt.audit.record(
        who.sub,
        "deliveries.discard",
        len(discarded),
        {"ids": body.ids[:100], "reason": body.reason.strip(), "skipped": len(skipped)},
    )
    return DiscardResult(discarded=discarded, skipped=skipped, missing=missing)


# --- raw events ----------------------------------------------------------------------------


def _sources(rt: Runtime, accounts: list[str]) -> dict[str, list[str]]:
    """Where each scope keeps raw requests: an account's channels and desk; an app's
    channels (the products of the accounts that name it)."""
    out: dict[str, list[str]] = {}
    for a in accounts:
        acc = rt.accounts.accounts.get(a)
        if acc is not None:
            out[a] = [*(c.type for c in acc.channels), acc.desk.type]
        else:
            out[a] = sorted(
                {
                    c.type
                    for other in rt.accounts.accounts.values()
                    for c in other.channels
                    if isinstance(c, WhatsAppConfig | MessengerConfig | InstagramConfig)
                    and app_scope(c.app) == a
                }
            )
    return out


def _raw(entry: RawEntry) -> RawEvent:
    return RawEvent(
        id=entry.id,
        account=entry.account,
        source=entry.source,
        received_at=entry.received_at.isoformat(),
        method=entry.method,
        path=entry.path,
        size=entry.size,
        parse_failed=entry.delivery_id is not None,
        delivery_id=entry.delivery_id,
    )


def _source(name: str, value: str | None) -> tuple[str, ...]:
    chosen = _choice(name, value, SOURCES)
    return (chosen,) if chosen else ()


async def events_route(request: web.Request, who: Principal) -> web.Response:
    return _answer(await list_events(request.app[RUNTIME], who, _query(request, EventsQuery)))


async def list_events(rt: Runtime, who: Principal, q: EventsQuery) -> RawPage:
    """A page of the kept raw requests the token sees (never their bodies)."""
    accounts = _accounts(rt, q.account, who)
    filt = RawFilter(
        sources=_source("channel", q.channel),
        since_ms=_time("since", q.since),
        until_ms=_time("until", q.until),
    )
    page = await rt.listing.raws(
        _sources(rt, accounts),
        filt,
        limit=_limit(q.limit),
        cursor=_cursor(q.cursor),
    )
    return RawPage(events=[_raw(e) for e in page.items], next_cursor=page.next_cursor)


async def event_route(request: web.Request, who: Principal) -> web.Response:
    rt = request.app[RUNTIME]
    ident = request.match_info["id"]
    detail = await raw_detail(rt, who, ident, _query(request, AccountQuery).account)
    if detail is None:
        return _error(404, "not_found", f"no kept raw request {ident}")
    return _answer(detail)  # a redacted field is there, as null


SEALED_SCOPE = "contacts:read"
"""The scope that opens a kept request's sealed fields (its body, header and query values
name the sender), as it opens contacts."""
_OPEN_HEADERS = frozenset({"content-type", "content-length", "content-encoding", "user-agent"})
"""Header values that never name the sender: shown to every reader."""
REDACTED = f"the body, header and query values name the sender: they need {SEALED_SCOPE}"


async def _find_raw(
    rt: Runtime, who: Principal, ident: str, account: str | None
) -> tuple[str, str, int, bool] | None:
    """Where the kept raw request ``ident`` is indexed: account, source, when (ms), and
    whether it is a parse failure. None when no scope the token sees holds it."""
    for scope, names in _sources(rt, _accounts(rt, account, who)).items():
        for source in names:
            for unparsed in (False, True):
                for _, score in await rt.listing.indexed(scope, source, [ident], unparsed=unparsed):
                    return scope, source, int(score), unparsed
    return None


async def raw_detail(
    rt: Runtime, who: Principal, ident: str, account: str | None = None
) -> RawEventDetail | None:
    """One kept raw request the token sees (None: none, or it expired). Its sealed fields
    are opened only with ``contacts:read``, and that opening is audited (``events.show``)
    as an export is. Raises ``BadInput`` (an account the token does not see)."""
    found = await _find_raw(rt, who, ident, account)
    if found is None:
        return None
    scope, source, received_ms, unparsed = found
    record = await rt.listing.raw(scope, ident)
    if record is None:
        return None
    meta, body = record
    opened = SEALED_SCOPE in who.scopes
    headers = {
        str(k): (str(v) if opened or str(k).lower() in _OPEN_HEADERS else None)
        for k, v in dict(meta.get("headers") or {}).items()
    }
    query = {str(k): (str(v) if opened else None) for k, v in dict(meta.get("query") or {}).items()}
    text, encoding = None, None
    if opened:
        try:
            text, encoding = body.decode(), "utf-8"
        except UnicodeDecodeError:
            text, encoding = base64.b64encode(body).decode(), "base64"
        await rt.audit.record(who.sub, "events.show", 1, {"account": scope, "id": ident})
    delivery_id = ident if unparsed else None
    return RawEventDetail(
        id=ident,
        account=scope,
        source=source,
        received_at=datetime.fromtimestamp(received_ms / 1000, UTC).isoformat(),
        method=str(meta.get("method", "")),
        path=str(meta.get("path", "")),
        size=len(body),
        parse_failed=unparsed,
        delivery_id=delivery_id,
        headers=headers,
        query=query,
        body=text,
        body_encoding=encoding,
        redacted=None if opened else REDACTED,
    )


def _ignored(entry: IgnoredEntry) -> IgnoredEvent:
    return IgnoredEvent(
        id=entry.id,
        account=entry.account,
        source=entry.source,
        reason=entry.reason,
        provider_id=entry.provider_id,
        received_at=entry.received_at.isoformat(),
        raw_id=entry.raw_id,
    )


async def ignored_route(request: web.Request, who: Principal) -> web.Response:
    """Items acknowledged and deliberately not filed, of the accounts the token sees."""
    rt = request.app[RUNTIME]
    q = _query(request, IgnoredQuery)
    filt = RawFilter(
        sources=_source("channel", q.channel),
        since_ms=_time("since", q.since),
        until_ms=_time("until", q.until),
    )
    page = await rt.listing.ignored(
        _accounts(rt, q.account, who),
        filt,
        reason=q.reason or None,
        limit=_limit(q.limit),
        cursor=_cursor(q.cursor),
    )
    items = [_ignored(e) for e in page.items]
    return _answer(IgnoredPage(items=items, next_cursor=page.next_cursor))


async def reingest_route(request: web.Request, who: Principal) -> web.Response:
    body: ReingestBody = await _body(request, ReingestBody)
    return _answer(await reingest(request.app[RUNTIME], who, body))


async def reingest(rt: Runtime, who: Principal, body: ReingestBody) -> ReingestResult:
    """Re-ingest the kept raw requests ``body`` names through today's parsers (or say
    what would happen, with ``dry_run``); audited unless a dry run. Raises ``BadInput``."""
    accounts = _accounts(rt, body.account, who)
    filt = RawFilter(
        sources=_source("channel", body.channel),
        since_ms=_time("since", body.since),
        until_ms=_time("until", body.until),
    )
    if body.ids is None and filt.since_ms is None and body.cursor is None:
        raise BadInput("give ids, or since (and until) to choose the raw requests")
    if body.ids is not None:
        entries, next_cursor = await _raws_by_id(rt, accounts, filt, body.ids)
    else:
        page = await rt.listing.raws(
            _sources(rt, accounts),
            filt,
            limit=body.limit,
            cursor=_cursor(body.cursor),
        )
        entries, next_cursor = page.items, page.next_cursor
    outcomes = []
    # oldest first: events of one conversation go into their lane in arrival order
    for entry in sorted(entries, key=lambda e: (e.received_at, e.id)):
        outcome = await reingest_one(
            rt, entry, who=who.sub, dry_run=body.dry_run, allow_duplicates=body.allow_duplicates
        )
        outcomes.append(outcome)
    totals = {"raw": len(outcomes), "new": 0, "duplicate": 0, "ignored": 0, "errors": 0}
    for o in outcomes:
        for k, v in o.counts().items():
            totals[k] += v
        totals["errors"] += o.error is not None
    if not body.dry_run:
        details = body.model_dump(exclude_none=True, exclude={"ids", "dry_run"})
        if body.ids is not None:
            details["ids"] = body.ids[:100]
        details |= {"duplicate": totals["duplicate"], "errors": totals["errors"]}
        await rt.audit.record(who.sub, "events.reingest", totals["new"], details)
    return ReingestResult(
        dry_run=body.dry_run,
        totals=ReingestTotals(**totals),
        raw=[ReingestedRaw.model_validate(o.as_json()) for o in outcomes],
        next_cursor=next_cursor,
    )


async def _raws_by_id(
    rt: Runtime, accounts: list[str], filt: RawFilter, ids: list[str]
) -> tuple[list[RawEntry], None]:
    """Kept raw requests by id: looked up in each account's indexes."""
    wanted = set(ids)
    found: list[RawEntry] = []
    for account, names in _sources(rt, accounts).items():
        for source in names:
            if filt.sources and source not in filt.sources:
                continue
            for unparsed in (False, True):
                held = await rt.listing.indexed(account, source, list(wanted), unparsed=unparsed)
                for ident, score in held:
                    found.append(
                        RawEntry(
                            id=ident,
                            account=account,
                            source=source,
                            received_at=datetime.fromtimestamp(score / 1000, UTC),
                            method="",
                            path="",
                            size=0,
                            delivery_id=ident if unparsed else None,
                        )
                    )
    missing = wanted - {e.id for e in found}
    if missing:
        raise BadInput(f"ids: no kept raw request {sorted(missing)[0]} (see GET {PREFIX}/events)")
    return found, None


# --- audit, document -----------------------------------------------------------------------


async def audit_route(request: web.Request, who: Principal) -> web.Response:
    if who.limited:
        # the audit log is the deployment's, across accounts: not for a tenant's token
        return _error(403, "forbidden", AUDIT_LIMITED)
    return _answer(await audit_page(request.app[RUNTIME], _query(request, PageQuery)))


AUDIT_LIMITED = "the audit log needs a token not limited to accounts"


async def audit_page(rt: Runtime, q: PageQuery) -> AuditPage:
    """A page of the audit log, newest first (check ``Principal.limited`` first: the log
    spans accounts). Raises ``BadInput`` (a cursor it did not give out)."""
    try:
        entries, cursor = await rt.audit.read(limit=_limit(q.limit), before=q.cursor or None)
    except ValueError as exc:
        raise BadInput(f"cursor: {exc}") from None
    return AuditPage(
        entries=[
            AuditEntry(
                id=e.id,
                at=e.at.isoformat(),
                who=e.who,
                action=e.action,
                count=e.count,
                details=e.details,
            )
            for e in entries
        ],
        next_cursor=cursor,
    )


async def revoke_route(request: web.Request, who: Principal) -> web.Response:
    rt = request.app[RUNTIME]
    body: RevokeBody = await _body(request, RevokeBody)
    if (body.jti is None) == (body.subject is None):
        raise BadInput("give jti or subject, not both")
    now = int(datetime.now(UTC).timestamp())
    # the longest any token still accepted can live: issued within the leeway, max_ttl long
    horizon = now + request.app[ADMIN_AUTH].max_ttl + 2 * LEEWAY_S
    if body.jti is not None:
        until = min(body.exp + LEEWAY_S, horizon) if body.exp is not None else horizon
        await rt.revocations.revoke_token(body.jti, until)
        details: dict[str, Any] = {"jti": body.jti}
        cutoff = None
    else:
        assert body.subject is not None
        until, cutoff = horizon, now
        await rt.revocations.revoke_subject(body.subject, now, until)
        details = {"subject": body.subject, "issued_up_to": now}
    await rt.audit.record(who.sub, "tokens.revoke", 1, details)
    log.info("admin token revoked (%s)", "jti" if body.jti else "subject")
    return _answer(
        RevokeResult(
            jti=body.jti,
            subject=body.subject,
            issued_up_to=datetime.fromtimestamp(cutoff, UTC) if cutoff is not None else None,
            kept_until=datetime.fromtimestamp(until, UTC),
        )
    )


async def openapi_route(request: web.Request) -> web.Response:
    return web.json_response(document())


async def health_route(request: web.Request, who: Principal) -> web.Response:
    """``/readyz`` with its details, for the accounts the token sees (always 200: the
    report says whether the process is ready)."""
    _, report = await readiness(
        request.app[RUNTIME],
        request.app[ROLE],
        sees=who.sees,
        stopping=request.app[STOPPING].is_set(),
    )
    return _answer(HealthDetail.model_validate(report), exclude_none=True)


ROUTES: list[tuple[str, str, str, Handler]] = [
    ("GET", "/deliveries", "deliveries:read", list_route),
    ("POST", "/deliveries/lookup", "deliveries:read", lookup_route),
    ("POST", "/deliveries/replay", "deliveries:write", replay_route),
    ("POST", "/deliveries/discard", "deliveries:write", discard_route),
    ("GET", "/deliveries/{id}", "deliveries:read", show_route),
    ("GET", "/events", "deliveries:read", events_route),
    ("GET", "/events/ignored", "deliveries:read", ignored_route),
    ("GET", "/events/{id}", "deliveries:read", event_route),
    ("POST", "/events/reingest", "deliveries:write", reingest_route),
    ("GET", "/audit", "audit:read", audit_route),
    ("POST", "/tokens/revoke", "tokens:write", revoke_route),
    *contact_routes(),
    *message_routes(),
    ("GET", "/health", "ops:read", health_route),
]
"""(method, path under PREFIX, scope, handler) of every authenticated admin route."""


def add_routes(app: web.Application, auth: AdminAuth | None, disabled_reason: str) -> None:
    """Mount the admin API. With ``auth`` None every route answers 503 with
    ``disabled_reason`` (the admin API is never open)."""
    if auth is not None:
        app[ADMIN_AUTH] = auth
    app[_ADMIN_OFF] = disabled_reason
    app.router.add_get(f"{PREFIX}/openapi.json", openapi_route)
    for method, path, scope, handler in ROUTES:
        app.router.add_route(method, PREFIX + path, _guard(scope, handler))
