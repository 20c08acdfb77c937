"""The thin controllers of intake: read, verify, parse, store, answer.

Nothing is acknowledged before it is stored: every 2xx here follows a completed intake
script. Refusals (401/400/413) change no state and are counted by reason.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence

from aiohttp import web

from deskbridge.errors import (
    ParseFailed,
    PayloadTooLarge,
    RequestRefused,
    SignatureInvalid,
    StoreUnavailable,
)
from deskbridge.gateway.keys import AUTH_FAILURES, RUNTIME
from deskbridge.pipeline import Runtime
from deskbridge.schemas import AgentReply, Direction, InboundEvent, RawRequest
from deskbridge.store import IntakeEvent

__all__ = ["accept_replies", "channel_handshake", "channel_webhook", "desk_webhook", "read_raw"]

log = logging.getLogger(__name__)

_OK = b'{"ok":true}'
_DESK_MAX_BODY = 1024 * 1024


async def read_raw(request: web.Request, limit: int) -> RawRequest:
    """The request as adapters see it. Raises ``PayloadTooLarge`` past ``limit`` bytes."""
    length = request.content_length
    if length is not None and length > limit:
        raise PayloadTooLarge(f"body over {limit} bytes")
    if length is not None:
        body = await request.read()
    else:
        chunks: list[bytes] = []
        size = 0
        while chunk := await request.content.read(65536):
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"body over {limit} bytes")
            chunks.append(chunk)
        body = b"".join(chunks)
    # aiohttp's header and query mappings are read-only views; the header one is
    # case-insensitive, which is what RawRequest promises (copying cost ~10 us a request)
    return RawRequest(
        method=request.method,
        path=request.path,
        query=request.query,
        headers=request.headers,
        body=body,
    )


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
    body = {401: "unauthorized", 400: "bad request", 413: "payload too large"}.get(
        exc.status, "refused"
    )
    return web.json_response({"ok": False, "error": body}, status=exc.status)


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
        try:
            parsed = receiver.parse(req)
        except ParseFailed as exc:
            await _keep_unparseable(rt, channel, account, req, exc)
            return web.Response(body=_OK, content_type="application/json")
        if parsed.unrouted:
            rt.metrics.event(channel, "ignored", "unrouted", n=parsed.unrouted)
        by_account: dict[str, list[IntakeEvent]] = {}
        for ev in parsed.events:
            by_account.setdefault(ev.account, []).append(
                IntakeEvent(
                    dedup_key=ev.dedup_key,
                    conversation_id=rt.conversations.conversation_id(
                        ev.account, ev.channel, ev.thread
                    ),
                    event=ev,
                )
            )
        if not by_account:
            rt.metrics.event(channel, "ignored", "")
        # one request may carry events of several accounts (a Meta app's batch)
        for acc, events in by_account.items():
            await _store(rt, acc, channel, Direction.INBOUND, channel, req, events)
    except RequestRefused as exc:
        return _refused(request, rt, source, exc)
    except StoreUnavailable as exc:
        return _unavailable(rt, source, exc)
    return web.Response(body=_OK, content_type="application/json")


async def _keep_unparseable(
    rt: Runtime, channel: str, account: str | None, req: RawRequest, exc: ParseFailed
) -> None:
    """Keep a verified body we could not parse as a dead letter, for re-ingest after a
    fix. Without an account in the URL it is kept under every account of the channel."""
    owners = [account] if account else sorted(a for (a, c) in rt.adapters if c.value == channel)
    for acc in owners:
        stored = await rt.intake.accept_parse_failed(
            account=acc,
            source=channel,
            direction=Direction.INBOUND,
            channel=channel,
            desk=rt.accounts.accounts[acc].desk.type,
            req=req,
            error=str(exc),
            dedup_key="body-" + hashlib.sha256(req.body).hexdigest()[:32],
        )
        rt.metrics.event(channel, "parse_failed" if stored else "duplicate", "parse")
    log.warning("%s: kept an unparseable body as a dead letter", channel)


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


async def accept_replies(
    rt: Runtime, account: str, source: str, req: RawRequest | None, replies: list[AgentReply]
) -> int:
    """Queue agent replies for their conversations' channels. Replies deskbridge wrote
    itself (the loop guard) and replies on tickets it does not know are skipped.
    Returns how many were new. Raises ``StoreUnavailable``."""
    by_channel: dict[str, list[IntakeEvent]] = {}
    for reply in replies:
        if await rt.conversations.is_ours(account, reply.desk.value, reply.external_id):
            rt.metrics.event(source, "ignored", "ours")
            continue
        conv_id = await rt.conversations.for_ticket(account, reply.desk.value, reply.ticket_id)
        conv = await rt.conversations.get(account, conv_id) if conv_id else None
        if conv is None:
            rt.metrics.event(source, "ignored", "unknown_ticket")
            continue
        by_channel.setdefault(conv.channel.value, []).append(
            IntakeEvent(
                dedup_key=reply.dedup_key,
                conversation_id=conv.id,
                event=reply,
            )
        )
    accepted = 0
    # a delivery record names its channel, so one intake call per channel
    for channel, events in by_channel.items():
        accepted += await _store(rt, account, source, Direction.OUTBOUND, channel, req, events)
    return accepted


async def store_events(
    rt: Runtime, account: str, source: str, req: RawRequest, events: Sequence[InboundEvent]
) -> int:
    """Store inbound events from a listener (SMTP, SIP) with the intake script, as the
    webhook routes do; returns how many were new. Raises ``StoreUnavailable``."""
    intake = [
        IntakeEvent(
            dedup_key=ev.dedup_key,
            conversation_id=rt.conversations.conversation_id(account, ev.channel, ev.thread),
            event=ev,
        )
        for ev in events
    ]
    return await _store(rt, account, source, Direction.INBOUND, source, req, intake)


async def _store(
    rt: Runtime,
    account: str,
    source: str,
    direction: Direction,
    channel: str,
    req: RawRequest | None,
    events: list[IntakeEvent],
) -> int:
    """One intake call, counted; returns how many events were new."""
    new = await rt.intake.accept(
        account=account,
        source=source,
        direction=direction,
        channel=channel,
        desk=rt.accounts.accounts[account].desk.type,
        req=req,
        events=events,
    )
    accepted = sum(new)
    rt.metrics.event(source, "accepted", "", n=accepted)
    rt.metrics.event(source, "duplicate", "", n=len(new) - accepted)
    return accepted


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
        try:
            replies = desk.parse_webhook(req)
        except ParseFailed as exc:
            # verified, but not a shape we can read: kept for re-ingest after a fix, and
            # acknowledged (a desk that keeps getting errors suspends its webhook)
            stored = await rt.intake.accept_parse_failed(
                account=account,
                source=desk_name,
                direction=Direction.OUTBOUND,
                channel=desk_name,
                desk=desk_name,
                req=req,
                error=str(exc),
                dedup_key="body-" + hashlib.sha256(req.body).hexdigest()[:32],
            )
            rt.metrics.event(desk_name, "parse_failed" if stored else "duplicate", "parse")
            log.warning("%s: kept an unparseable agent-reply body as a dead letter", desk_name)
            return web.Response(body=_OK, content_type="application/json")
        if replies:
            await accept_replies(rt, account, desk_name, req, replies)
        else:
            rt.metrics.event(desk_name, "ignored", "")
    except RequestRefused as exc:
        return _refused(request, rt, source, exc)
    except StoreUnavailable as exc:
        return _unavailable(rt, source, exc)
    return web.Response(body=_OK, content_type="application/json")
