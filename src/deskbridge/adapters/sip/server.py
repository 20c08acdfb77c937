"""The SIP user agent server deskbridge runs on a trunk: the core above the transactions.

- Sources outside every trusted peer list get 403, and once a source has had
  ``refused_per_minute`` of those it is ignored without parsing (scanners hit every open
  port 5060). Malformed requests get 400 (505 for another SIP version) whenever they
  carry a Via to answer along, built from the header lines as received; else dropped.
- Every request (but ACK and CANCEL): a Request-URI scheme other than sip/sips/tel gets
  416, a ``Require`` gets 420 with ``Unsupported`` listing its options (we support no
  extension, §8.2.2.3). These are RFC 4475's expectations (tests/corpus/sip).
- MESSAGE (RFC 3428): 200 only once the event is stored (500 with Retry-After if the
  store fails), 415/413 for bodies we do not take. A retransmission is answered by its
  transaction; the intake's dedup mark (Call-ID + CSeq) makes a repeated request a no-op.
- INVITE (RFC 3261 §13.3, §17.2.1): 100 Trying, optionally 180 Ringing for a while, then
  302 to the call centre or 480/486/603; CANCEL gets 200 and the INVITE 487 (§9.2). We
  never answer 2xx (no media), so no dialog is ever created, and an INVITE without
  Contact (RFC 2543 style) is recorded like any other. A body that is neither SDP nor
  multipart gets 415, an Accept without SDP 406.
- OPTIONS → 200 (trunk keepalives), REGISTER → 403, BYE → 481, others → 405 with Allow.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from deskbridge.adapters.sip.message import (
    Headers,
    Request,
    Response,
    SipParseError,
    parse,
    reason_phrase,
)
from deskbridge.adapters.sip.receiver import Refused, SipReceiver, raw_request
from deskbridge.adapters.sip.transaction import (
    Flow,
    ServerTransaction,
    Timers,
    TransactionLayer,
    new_tag,
    response_address,
    stamp_via,
)
from deskbridge.adapters.sip.uri import SipSyntaxError, parse_uri, split_commas
from deskbridge.errors import DeskbridgeError, StoreUnavailable
from deskbridge.schemas import CallEvent, Message, RawRequest

__all__ = ["ALLOW", "RefusalLimiter", "SipService", "Store"]

log = logging.getLogger(__name__)

ALLOW = "INVITE, ACK, CANCEL, OPTIONS, MESSAGE"
SERVER = "deskbridge"

Store = Callable[[str, RawRequest, list[Message | CallEvent]], Awaitable[None]]
"""``(account, raw request, events)``: durably stored when it returns; raises
``StoreUnavailable`` when it could not be."""
Count = Callable[[str, str], None]
"""``(outcome, reason)``: counted in metrics."""


class RefusalLimiter:
    """A token bucket per source IP for 403 answers: ``per_minute``, bursts of as many.
    Remembers at most ``size`` sources (the least recently refused are forgotten)."""

    def __init__(
        self, per_minute: int, *, size: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._rate = per_minute / 60.0
        self._burst = float(per_minute)
        self._size = size
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def allow(self, ip: str) -> bool:
        now = self._clock()
        tokens, at = self._buckets.pop(ip, (self._burst, now))
        tokens = min(self._burst, tokens + (now - at) * self._rate)
        allowed = tokens >= 1.0
        self._buckets[ip] = (tokens - 1.0 if allowed else tokens, now)
        if len(self._buckets) > self._size:
            self._buckets.popitem(last=False)
        return allowed


def _now() -> datetime:
    return datetime.now(UTC)


class SipService:
    """Every account served on one listen address."""

    def __init__(
        self,
        receivers: list[SipReceiver],
        store: Store,
        *,
        timers: Timers,
        refused_per_minute: int | None = None,
        count: Count | None = None,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self.receivers = receivers
        self.transactions = TransactionLayer(timers)
        # default: the strictest of the accounts sharing this listener
        per_minute = refused_per_minute or min(r.config.refused_per_minute for r in receivers)
        self.limiter = RefusalLimiter(per_minute)
        self._store = store
        self._count = count or (lambda outcome, reason: None)
        self._clock = clock
        self._tasks: set[asyncio.Task[None]] = set()
        self._ringing: dict[tuple[str, ...], asyncio.Task[None]] = {}

    # -- entry point -------------------------------------------------------------------

    def received(self, data: bytes, source: tuple[str, int], flow: Flow) -> None:
        """One message from the network. Never raises."""
        try:
            self._received(data, source, flow)
        except Exception:  # the listener must outlive any bug in one request
            log.exception("sip: unexpected error handling a request")
            self._count("error", "internal")

    def _received(self, data: bytes, source: tuple[str, int], flow: Flow) -> None:
        trusted = any(r.trusts(source[0]) for r in self.receivers)
        if not trusted and not self.limiter.allow(source[0]):
            self._count("dropped", "rate_limited")
            return
        try:
            msg = parse(data, stream=flow.reliable)
        except SipParseError as exc:
            req = exc.partial
            if exc.answerable and req is not None and req.method != "ACK":
                with contextlib.suppress(SipSyntaxError, IndexError, ValueError):
                    stamp_via(req, source)  # only when the top Via is readable
                status = 403 if not trusted else exc.status
                self._answer_once(req, flow, source, status)
                self._count("refused" if not trusted else "malformed", str(status))
                log.debug("sip: answered an unreadable request %d", status)
            else:
                self._count("dropped", "malformed")
            return
        if isinstance(msg, Response):
            self._count("dropped", "stray_response")
            return
        stamp_via(msg, source)
        if not trusted:
            if msg.method != "ACK":
                self._answer_once(msg, flow, source, 403)
            self._count("refused", "untrusted")
            log.debug("sip: refused a %s from an untrusted source", msg.method[:16])
            return
        self._request(msg, data, source, flow)

    def unframeable(self, head: bytes, status: int, source: tuple[str, int], flow: Flow) -> None:
        """A stream message that cannot be framed (no Content-Length, too large): its
        head answered with ``status`` when it is a readable request from a trusted
        peer, before the connection is closed. Never raises."""
        try:
            if not any(r.trusts(source[0]) for r in self.receivers):
                return
            msg: Request | Response | None
            try:
                msg = parse(head, stream=True)
            except SipParseError as exc:
                msg = exc.partial if exc.answerable else None
            if isinstance(msg, Request) and msg.method != "ACK":
                with contextlib.suppress(SipSyntaxError, IndexError, ValueError):
                    stamp_via(msg, source)
                self._answer_once(msg, flow, source, status)
            self._count("malformed", "unframeable")
        except Exception:  # the listener must outlive any bug in one request
            log.exception("sip: unexpected error answering an unframeable message")

    def _answer_once(
        self,
        req: Request,
        flow: Flow,
        source: tuple[str, int],
        status: int,
        *,
        reason: str | None = None,
        extra: list[tuple[str, str]] | None = None,
    ) -> None:
        """A stateless answer (no transaction kept): refusals and garbage."""
        resp = stateless_response(req, status, reason=reason, extra=extra)
        resp.headers.add("Server", SERVER)
        try:
            to = response_address(req.top_via(), source)
        except (SipSyntaxError, IndexError, ValueError):
            to = source  # an unreadable Via: back where it came from
        with contextlib.suppress(OSError, ValueError):
            flow.send(resp.encode(), to)

    # -- requests ----------------------------------------------------------------------

    def _request(self, req: Request, data: bytes, source: tuple[str, int], flow: Flow) -> None:
        if req.method == "ACK":
            tx = self.transactions.match(req)
            if tx is not None:
                tx.ack()
            return  # an ACK for a 2xx (we send none) or for a forgotten transaction
        tx = self.transactions.match(req)
        if tx is not None:
            tx.retransmitted()
            self._count("retransmission", req.method[:16].lower())
            return
        tx = self.transactions.create(req, flow, source)
        if req.method != "CANCEL" and self._refused_extension(tx):
            return
        match req.method:
            case "MESSAGE":
                self._spawn(self._message(tx, data, source, flow))
            case "INVITE":
                self._invite(tx, data, source, flow)
            case "CANCEL":
                self._cancel(tx)
            case "OPTIONS":
                self._respond(tx, 200, extra=[("Allow", ALLOW), ("Accept", "text/plain")])
            case "REGISTER":
                self._respond(tx, 403, reason="Registration Not Accepted")
            case "BYE":
                self._respond(tx, 481)
            case _:
                self._respond(tx, 405, extra=[("Allow", ALLOW)])
        self._count("request", req.method[:16].lower() if req.method in _KNOWN else "other")

    def _refused_extension(self, tx: ServerTransaction) -> bool:
        """416 for a Request-URI we cannot route by scheme (§8.2.2.1), 420 for a
        ``Require`` (§8.2.2.3); True when it answered."""
        req = tx.request
        scheme = req.uri.partition(":")[0].lower()
        if scheme not in ("sip", "sips", "tel"):
            self._respond(tx, 416)
            self._count("refused", "416")
            return True
        required: list[str] = []
        for value in req.headers.get_all("Require"):
            with contextlib.suppress(SipSyntaxError):
                required.extend(t.strip() for t in split_commas(value) if t.strip())
        if required:
            self._respond(tx, 420, extra=[("Unsupported", ", ".join(dict.fromkeys(required)))])
            self._count("refused", "420")
            return True
        return False

    def _respond(
        self,
        tx: ServerTransaction,
        status: int,
        *,
        reason: str | None = None,
        extra: list[tuple[str, str]] | None = None,
    ) -> None:
        tx.respond(status, reason=reason, extra=[*(extra or []), ("Server", SERVER)])

    def _route(self, req: Request) -> SipReceiver:
        """The account serving the Request-URI. Raises ``Refused``."""
        try:
            uri = parse_uri(req.uri)
        except SipSyntaxError:
            raise Refused(416, "unsupported Request-URI scheme") from None
        for r in self.receivers:
            if r.serves(uri) is not None:
                return r
        raise Refused(404, "not a served number")

    async def _message(
        self, tx: ServerTransaction, data: bytes, source: tuple[str, int], flow: Flow
    ) -> None:
        req = tx.request
        try:
            receiver = self._route(req)
            if not receiver.trusts(source[0]):
                raise Refused(403, "not a trusted peer of this account")
            if req.headers.get("Contact") is not None:
                # RFC 3428 §4: a MESSAGE outside a dialog never carries Contact
                log.debug("sip: MESSAGE with Contact (ignored)")
            now = self._clock()
            event = receiver.message(req, source, flow.transport, now)
        except Refused as exc:
            self._respond(tx, exc.status, extra=exc.extra)
            self._count("refused", str(exc.status))
            return
        raw = raw_request(receiver.account, data, source, flow.transport, now)
        try:
            await self._store(receiver.account, raw, [event])
        except StoreUnavailable as exc:
            log.error("sip intake failed: %s", exc)
            self._respond(tx, 500, reason="Store Unavailable", extra=[("Retry-After", "5")])
            self._count("error", "store")
            return
        except DeskbridgeError as exc:
            log.warning("sip: refused a MESSAGE (%s)", type(exc).__name__)
            self._respond(tx, 400)
            return
        self._respond(tx, 200)
        self._count("accepted", "message")

    def _invite(
        self, tx: ServerTransaction, data: bytes, source: tuple[str, int], flow: Flow
    ) -> None:
        req = tx.request
        tx.respond(100)  # §17.2.1: stops the client's INVITE retransmissions at once
        refusal = _unacceptable_offer(req)
        if refusal is not None:
            self._respond(tx, refusal[0], extra=[refusal[1]])
            self._count("refused", str(refusal[0]))
            return
        try:
            receiver = self._route(req)
            if not receiver.trusts(source[0]):
                raise Refused(403, "not a trusted peer of this account")
            receiver.caller(req, source[0])
        except Refused as exc:
            self._respond(tx, exc.status, extra=exc.extra)
            self._count("refused", str(exc.status))
            return
        started = self._clock()
        ring = receiver.config.calls.ring_seconds
        if ring > 0:
            self._respond(tx, 180)
        task = self._spawn(self._ring_then_answer(tx, receiver, data, source, flow, ring, started))
        self._ringing[tx.key] = task
        key = tx.key

        def done(_: asyncio.Task[None]) -> None:
            self._ringing.pop(key, None)

        task.add_done_callback(done)

    async def _ring_then_answer(
        self,
        tx: ServerTransaction,
        receiver: SipReceiver,
        data: bytes,
        source: tuple[str, int],
        flow: Flow,
        ring: float,
        started: datetime,
    ) -> None:
        try:
            if ring > 0:
                await asyncio.sleep(ring)
        except asyncio.CancelledError:
            # the caller hung up while it rang: CANCEL answered the INVITE with 487
            event = receiver.call(
                tx.request,
                source,
                flow.transport,
                started,
                state="missed",
                hung_up=True,
                duration=(self._clock() - started).total_seconds(),
            )
            await self._file_call(receiver, data, source, flow, event)
            return
        calls = receiver.config.calls
        if calls.action == "redirect" and calls.redirect_to:
            event = receiver.call(
                tx.request,
                source,
                flow.transport,
                started,
                state="redirected",
                redirected_to=calls.redirect_to,
            )
            status, extra = 302, [("Contact", f"<{calls.redirect_to}>")]
        else:
            event = receiver.call(
                tx.request,
                source,
                flow.transport,
                started,
                state="missed",
                callback_requested=True,
            )
            status, extra = calls.reject_status, []
        # the call is recorded before it is answered; a store outage never blocks a call
        await self._file_call(receiver, data, source, flow, event)
        self._respond(tx, status, extra=extra)
        self._count("call", event.state)

    async def _file_call(
        self,
        receiver: SipReceiver,
        data: bytes,
        source: tuple[str, int],
        flow: Flow,
        event: CallEvent,
    ) -> None:
        raw = raw_request(receiver.account, data, source, flow.transport, event.occurred_at)
        try:
            await self._store(receiver.account, raw, [event])
        except DeskbridgeError as exc:
            log.error("sip: a call could not be recorded: %s", type(exc).__name__)
            self._count("error", "call_store")

    def _cancel(self, tx: ServerTransaction) -> None:
        """§9.2: 200 to the CANCEL; 487 to the INVITE if it had no final answer yet."""
        invite = self.transactions.invite_for(tx.request)
        if invite is None:
            self._respond(tx, 481)
            return
        self._respond(tx, 200)
        if invite.completed:
            return
        ringing = self._ringing.pop(invite.key, None)
        self._respond(invite, 487)
        if ringing is not None:
            ringing.cancel()
        self._count("call", "cancelled")

    # -- housekeeping ------------------------------------------------------------------

    def _spawn(self, coro: Awaitable[None]) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def close(self) -> None:
        """Let requests being stored finish (bounded), then drop every transaction."""
        pending = [t for t in self._tasks if not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=5)
        for t in list(self._tasks):
            t.cancel()
        self.transactions.close()


_KNOWN = frozenset({"MESSAGE", "INVITE", "CANCEL", "OPTIONS", "REGISTER", "BYE"})
_TAGGED = re.compile(r";\s*tag\s*=", re.IGNORECASE)
_SDP = "application/sdp"


def stateless_response(
    req: Request,
    status: int,
    *,
    reason: str | None = None,
    extra: list[tuple[str, str]] | None = None,
) -> Response:
    """An answer to ``req`` from its header lines as received (§8.2.6.2: Via, From, To,
    Call-ID, CSeq), whichever of them it has. Nothing is parsed again, so a request whose
    bad header made it unreadable can still be told so (RFC 4475 §3.1.2.6)."""
    out = Response(status, reason or reason_phrase(status), Headers())
    for name, value in req.headers:
        if name == "Via":
            out.headers.add(name, value)
    for name in ("From", "To", "Call-ID", "CSeq"):
        found = req.headers.get(name)
        if found is None:
            continue
        if name == "To" and status != 100 and not _TAGGED.search(found):
            found = f"{found};tag={new_tag()}"
        out.headers.add(name, found)
    for name, value in extra or []:
        out.headers.add(name, value)
    return out


def _unacceptable_offer(req: Request) -> tuple[int, tuple[str, str]] | None:
    """415 for an INVITE body we could not read (RFC 4475 §3.3.6), 406 when the caller
    accepts no SDP (§3.3.15); the header to answer with. SDP and multipart (SIP-T
    gateways wrap SDP and ISUP in multipart/mixed) are fine."""
    ctype = (req.headers.get("Content-Type") or "").partition(";")[0].strip().lower()
    if req.body and ctype and ctype != _SDP and not ctype.startswith("multipart/"):
        return 415, ("Accept", _SDP)
    accept = req.headers.get("Accept")
    if accept is not None and accept.strip():
        types = {a.partition(";")[0].strip().lower() for a in accept.split(",")}
        if not types & {_SDP, "application/*", "*/*"}:
            return 406, ("Accept", _SDP)
    return None
