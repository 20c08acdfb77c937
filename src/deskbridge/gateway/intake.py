"""The thin controllers of intake: read, verify, parse, store, answer.

Nothing is acknowledged before it is stored: every 2xx here follows a completed intake
script. Refusals (401/400/413; 503 for an unsigned Vonage webhook, so that it comes
again signed) change no state and are counted by reason.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import cast

from aiohttp import ClientPayloadError, web

from deskbridge.adapters.base import AnswersWebhooks, Peeks
from deskbridge.errors import (
    BodyTooSlow,
    ClientGone,
    ParseFailed,
    PayloadTooLarge,
    RequestRefused,
    SignatureInvalid,
    StoreUnavailable,
)
from deskbridge.flows import Runtime, csat, ingest
from deskbridge.gateway.state import AUTH_FAILURES, RUNTIME
from deskbridge.outbound.capabilities import ReportsSolved
from deskbridge.schemas import Direction, RawRequest
from deskbridge.store.ids import new_id

__all__ = ["channel_handshake", "channel_webhook", "desk_webhook", "read_raw"]

log = logging.getLogger(__name__)

_OK = b'{"ok":true}'
_DESK_MAX_BODY = 1024 * 1024


async def read_raw(request: web.Request, limit: int) -> RawRequest:
    """The request as adapters see it. Raises ``PayloadTooLarge`` past ``limit`` bytes."""
    length = request.content_length
    if length is not None and length > limit:
        raise PayloadTooLarge(f"body over {limit} bytes")
    try:
        if length is not None and request.content.is_eof():
            # the whole body came with the head (a webhook's usual ~1 KB): reading it
            # cannot wait, so it needs no deadline (arming one cost ~9 us an ack)
            body = await request.read()
        else:
            # a slow body holds a connection and its buffer: a deadline scaled to the limit
            async with asyncio.timeout(request.app[RUNTIME].settings.body_timeout(limit)):
                body = await _read_body(request, limit, length)
    except TimeoutError:
        raise BodyTooSlow("the body did not arrive in time") from None
    except (ConnectionResetError, ClientPayloadError):
        raise ClientGone("the client went away during the body") from None
    # aiohttp's header and query mappings are read-only views; the header one is
    # case-insensitive, which is what RawRequest promises (copying cost ~10 us a request)
    return RawRequest(
        method=request.method,
        path=request.path,
        query=request.query,
        headers=request.headers,
        body=body,
    )


async def _read_body(request: web.Request, limit: int, length: int | None) -> bytes:
    if length is not None:
        return await request.read()
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(65536):
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"body over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _ok(receiver: object) -> web.Response:
    """The acknowledgement: ``{"ok":true}``, or the body the channel's platform reads."""
    answer = _ANSWERS.get(type(receiver))
    if answer is None:  # once per receiver class: a protocol check costs ~5 us
        answerer = receiver if isinstance(receiver, AnswersWebhooks) else None
        answer = _ANSWERS[type(receiver)] = answerer.answer() if answerer else _OK_JSON
    body, content_type = answer
    return web.Response(body=body, content_type=content_type)


_OK_JSON = (_OK, "application/json")
_ANSWERS: dict[type, tuple[bytes, str]] = {}


@functools.cache
def _peeks(cls: type) -> bool:
    """Whether receivers of ``cls`` offer ``peek`` (an isinstance check of a protocol
    costs ~5 us; a webhook asks once per request)."""
    return issubclass(cls, Peeks)


def _refused(request: web.Request, rt: Runtime, source: str, exc: RequestRefused) -> web.Response:
    if isinstance(exc, SignatureInvalid):
        # only failed authentication spends the source's budget; verified traffic never
        # gets here, so it is never throttled
        limiter = request.app[AUTH_FAILURES]
        if limiter.failed(request.remote or "unknown"):
            rt.metrics.event(source, "rejected", "throttled")
            return web.json_response(
                {"ok": False, "error": "too many failed attempts"},
                status=429,
                headers={"Retry-After": str(limiter.retry_after())},
            )
    rt.metrics.event(source, "rejected", exc.reason)
    body = {
        401: "unauthorized",
        400: "bad request",
        413: "payload too large",
        503: "temporarily unavailable",
    }.get(exc.status, "refused")
    resp = web.json_response({"ok": False, "error": body}, status=exc.status)
    if isinstance(exc, (BodyTooSlow, ClientGone)):
        resp.force_close()  # the rest of the body is not worth waiting for
    return resp


def _unavailable(rt: Runtime, source: str, exc: StoreUnavailable) -> web.Response:
    rt.metrics.event(source, "rejected", "store")
    log.error("intake failed for %s: %s", source, exc)
    # 503 makes the platform send the event again later
    return web.json_response({"ok": False, "error": "temporarily unavailable"}, status=503)


async def channel_webhook(request: web.Request) -> web.Response:
    """``POST /webhooks/{channel}[/{account}]``."""
    rt = request.app[RUNTIME]
    channel = request.match_info["channel"]
    account = request.match_info.get("account")
    receiver = rt.receiver(channel, account)
    source = channel if receiver is not None else "unknown"
    try:
        if receiver is None:
            # the same answer as a bad signature, so account names cannot be probed
            raise SignatureInvalid("unknown account or channel")
        req = await read_raw(request, receiver.max_body_bytes)
        receiver.verify(req)
        # what proved the request is ours, never stored (even sealed)
        req = req.scrubbed(receiver.secret_headers, receiver.secret_query)
        if _peeks(type(receiver)):
            # the common shape: stored unparsed, the worker parses it (flows/deferred.py)
            peeked = cast(Peeks, receiver).peek(req)
            if peeked is not None:
                await ingest.accept_peeked(rt, channel, req, peeked, raw_id=new_id())
                return _ok(receiver)
        try:
            parsed = receiver.parse(req)
        except ParseFailed as exc:
            await _keep_unparseable(rt, channel, account, req, exc)
            return _ok(receiver)
        if parsed.unrouted:
            rt.metrics.event(channel, "ignored", "unrouted", n=parsed.unrouted)
        if parsed.token is not None and not await rt.intake.claim_token(
            account or "", channel, *parsed.token
        ):
            raise SignatureInvalid("a signed token replayed with another body")
        # one raw id for the events and the items not filed: the two scripts share
        # the intake's round trip, and the body is kept once
        raw_id = new_id()
        stored = ingest.accept_events(rt, channel, req, parsed.events, parsed.bodies, raw_id=raw_id)
        if ingest.has_ignored(parsed):
            await asyncio.gather(
                stored,
                ingest.record_ignored(rt, channel, req, parsed, account=account, raw_id=raw_id),
            )
        else:
            await stored  # the ack path's common case: no second task to schedule
        if parsed.failures:
            # after the siblings: a store failure here answers 503, and the platform's
            # retry finds the siblings already taken (dedup) and keeps the failures
            await ingest.keep_failures(rt, channel, req, parsed)
    except RequestRefused as exc:
        return _refused(request, rt, source, exc)
    except StoreUnavailable as exc:
        return _unavailable(rt, source, exc)
    return _ok(receiver)


async def _keep_unparseable(
    rt: Runtime, channel: str, account: str | None, req: RawRequest, exc: ParseFailed
) -> None:
    """A body that is not a batch we can read item by item names no owner: it is kept
    under the URL's account, else under the platform app that signed it (never copied
    into the accounts of the app, which may not own it)."""
    if account:
        owner = account
    elif exc.app is not None:
        owner = ingest.app_scope(exc.app)
    else:  # pragma: no cover - only Meta receivers serve a URL without an account
        log.warning("%s: an unparseable body names no owner; not kept", channel)
        return
    await ingest.keep_unparseable(rt, [owner], channel, Direction.INBOUND, req, str(exc))


async def channel_handshake(request: web.Request) -> web.Response:
    """``GET /webhooks/{channel}[/{account}]``: a platform's verification request."""
    rt = request.app[RUNTIME]
    receiver = rt.receiver(request.match_info["channel"], request.match_info.get("account"))
    if receiver is None:
        return _refused(request, rt, "unknown", SignatureInvalid("unknown account or channel"))
    req = RawRequest(
        method="GET",
        path=request.path,
        query=dict(request.query),
        headers={k.lower(): v for k, v in request.headers.items()},
    )
    answer = receiver.handshake(req)
    if answer is None:
        raise web.HTTPMethodNotAllowed("GET", ["POST"])
    return web.Response(status=answer.status, text=answer.body, content_type=answer.content_type)


async def desk_webhook(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    desk_name = request.match_info["desk"]
    account = request.match_info["account"]
    desk = rt.desk(account)
    source = desk_name if desk is not None and desk.desk.value == desk_name else "unknown"
    try:
        if source == "unknown" or desk is None:
            raise SignatureInvalid("unknown account or desk")
        req = await read_raw(request, _DESK_MAX_BODY)
        desk.verify_webhook(req)
        req = req.scrubbed(desk.secret_headers, desk.secret_query)
        try:
            replies = desk.parse_webhook(req)
        except ParseFailed as exc:
            # verified, but not a shape we can read: kept for re-ingest after a fix, and
            # acknowledged (a desk that keeps getting errors suspends its webhook)
            await ingest.keep_unparseable(
                rt, [account], desk_name, Direction.OUTBOUND, req, str(exc)
            )
            return web.Response(body=_OK, content_type="application/json")
        # a ticket solved: its satisfaction survey is scheduled (stored) before the answer
        solved = desk.solved_tickets(req) if isinstance(desk, ReportsSolved) else []
        for ticket_id in solved:
            await csat.ticket_solved(rt, account, desk_name, ticket_id)
        if replies:
            await ingest.accept_replies(rt, account, desk_name, req, replies)
        elif not solved:
            rt.metrics.event(desk_name, "ignored", "unhandled")
    except RequestRefused as exc:
        return _refused(request, rt, source, exc)
    except StoreUnavailable as exc:
        return _unavailable(rt, source, exc)
    return web.Response(body=_OK, content_type="application/json")
