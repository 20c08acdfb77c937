"""Transactions (RFC 3261 §17): the server side that absorbs retransmissions, and the
non-INVITE client side that sends our MESSAGEs.

Timers come from ``Timers`` (T1, T2, T4; §17.1.1.1 and Table 4), so tests run them in
milliseconds. Over UDP a server transaction keeps its final response for 64*T1 (Timer J,
or Timer H for INVITE) and sends it again for every retransmitted request; over TCP/TLS
nothing is retransmitted and transactions end at once.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from deskbridge.adapters.sip.message import (
    MAGIC_COOKIE,
    Headers,
    Request,
    Response,
    Via,
    reason_phrase,
)

__all__ = [
    "Flow",
    "ServerTransaction",
    "Timers",
    "TransactionLayer",
    "make_response",
    "new_branch",
    "new_tag",
    "response_address",
    "stamp_via",
    "transaction_key",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Timers:
    """RFC 3261 Table 4: T1 (RTT estimate, 500 ms), T2 (max non-INVITE retransmit
    interval, 4 s), T4 (how long the network holds a message, 5 s)."""

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0

    @property
    def timeout(self) -> float:
        """64*T1: Timers B, F, H and J."""
        return 64 * self.t1


class Flow(Protocol):
    """Where a request came from and how to answer it: a UDP socket and the peer's
    address, or the TCP/TLS connection it arrived on."""

    @property
    def transport(self) -> str:
        """``UDP``, ``TCP`` or ``TLS``."""
        ...

    @property
    def reliable(self) -> bool: ...

    @property
    def peer(self) -> tuple[str, int]: ...

    def send(self, data: bytes, addr: tuple[str, int]) -> None:
        """Send ``data`` (to ``addr`` on UDP; stream flows ignore it)."""
        ...


def new_branch() -> str:
    return MAGIC_COOKIE + secrets.token_hex(10)


def new_tag() -> str:
    return secrets.token_hex(8)


def transaction_key(req: Request) -> tuple[str, ...]:
    """§17.2.3: the top Via's branch and sent-by, and the method (ACK and CANCEL look up
    the INVITE they belong to by the INVITE's method; CANCEL's own transaction uses
    ``CANCEL``). Requests from RFC 2543 peers without the magic cookie are matched on
    Call-ID, CSeq number, From tag and the top Via instead (§17.2.3, last paragraph)."""
    via = req.top_via()
    method = "INVITE" if req.method == "ACK" else req.method
    sent_by = f"{via.host.lower()}:{via.port or 5060}"
    if via.branch.startswith(MAGIC_COOKIE):
        return (via.branch, sent_by, method)
    from_ = req.name_addr("From")
    tag = from_.tag if from_ else None
    return ("2543", req.call_id, str(req.cseq[0]), tag or "", sent_by, method)


def make_response(
    req: Request,
    status: int,
    *,
    to_tag: str | None,
    reason: str | None = None,
    extra: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    content_type: str | None = None,
) -> Response:
    """A response to ``req`` (§8.2.6): Via (all, in order), From, Call-ID and CSeq
    copied; To copied with ``to_tag`` added when it has none (never on 100, §8.2.6.2)."""
    out = Response(status, reason or reason_phrase(status), Headers())
    for v in req.headers.get_all("Via"):
        out.headers.add("Via", v)
    to = req.headers.get("To") or ""
    named = req.name_addr("To")
    if status != 100 and to_tag and named is not None and named.tag is None:
        to = f"{to};tag={to_tag}"
    out.headers.add("From", req.headers.get("From") or "")
    out.headers.add("To", to)
    out.headers.add("Call-ID", req.call_id)
    out.headers.add("CSeq", req.headers.get("CSeq") or "")
    for name, value in extra or []:
        out.headers.add(name, value)
    if body:
        out.headers.add("Content-Type", content_type or "text/plain")
    out.body = body
    return out


def response_address(via: Via, source: tuple[str, int]) -> tuple[str, int]:
    """Where a UDP response goes (§18.2.2 with RFC 3581's rport): the source address
    itself when the client asked with ``rport``, else the source IP (``received``) and
    the port in Via's sent-by (5060 when none)."""
    if "rport" in via.params:
        return source
    return source[0], via.port or 5060


def stamp_via(req: Request, source: tuple[str, int]) -> None:
    """Add ``received`` (§18.2.1) and fill ``rport`` (RFC 3581 §4) on the top Via, so the
    responses say where the request really came from."""
    vias = req.headers.get_all("Via")
    top = Via.parse(vias[0])
    params = dict(top.params)
    if top.host.strip("[]") != source[0]:
        params["received"] = source[0]
    if "rport" in params:
        params["rport"] = str(source[1])
        params["received"] = source[0]
    if params == top.params:
        return
    stamped = Via(top.transport, top.host, top.port, params)
    req.headers.remove("Via")
    for v in [str(stamped), *vias[1:]]:
        req.headers.add("Via", v)


class ServerTransaction:
    """One server transaction (§17.2.1 INVITE, §17.2.2 non-INVITE)."""

    def __init__(
        self,
        layer: TransactionLayer,
        key: tuple[str, ...],
        req: Request,
        flow: Flow,
        source: tuple[str, int],
    ) -> None:
        self.key = key
        self.request = req
        self.flow = flow
        self.invite = req.method == "INVITE"
        self.to_tag = new_tag()
        self.final: Response | None = None
        self.acked = False
        self._layer = layer
        self._last: bytes | None = None
        self._dest = response_address(req.top_via(), source)
        self._timers: list[asyncio.TimerHandle] = []
        self._interval = layer.timers.t1

    @property
    def completed(self) -> bool:
        return self.final is not None

    def respond(
        self,
        status: int,
        *,
        reason: str | None = None,
        extra: list[tuple[str, str]] | None = None,
        body: bytes = b"",
        content_type: str | None = None,
    ) -> Response | None:
        """Send a response; after a final one, later calls do nothing (returns None)."""
        if self.final is not None:
            return None
        resp = make_response(
            self.request,
            status,
            to_tag=self.to_tag,
            reason=reason,
            extra=extra,
            body=body,
            content_type=content_type,
        )
        self._last = resp.encode()
        self._send()
        if status >= 200:
            self.final = resp
            self._completed()
        return resp

    def retransmitted(self) -> None:
        """The same request again: answer with the last response, if any (§17.2.1,
        §17.2.2; in non-INVITE Trying nothing has been sent yet, so nothing is)."""
        if self._last is not None:
            self._send()

    def ack(self) -> None:
        """ACK of our non-2xx final response: INVITE Completed → Confirmed (§17.2.1)."""
        if not self.invite or self.final is None or self.acked:
            return
        self.acked = True
        self._cancel_timers()
        # Timer I: absorb ACK retransmissions for T4 (0 on reliable transports)
        self._later(0 if self.flow.reliable else self._layer.timers.t4, self.terminate)

    def terminate(self) -> None:
        self._cancel_timers()
        self._layer.forget(self.key, self)

    def _send(self) -> None:
        if self._last is None:
            return
        try:
            self.flow.send(self._last, self._dest)
        except OSError as exc:  # the peer went away; the transaction simply ends
            log.debug("sip: could not send a response: %s", exc.strerror or exc)

    def _completed(self) -> None:
        timers = self._layer.timers
        if self.flow.reliable:
            if self.invite:
                self._later(timers.timeout, self._no_ack)  # Timer H still bounds the wait
            else:
                self._later(0, self.terminate)  # Timer J = 0
            return
        if self.invite:
            self._later(self._interval, self._timer_g)
            self._later(timers.timeout, self._no_ack)  # Timer H
        else:
            self._later(timers.timeout, self.terminate)  # Timer J

    def _timer_g(self) -> None:
        if self.acked:
            return
        self._send()
        self._interval = min(2 * self._interval, self._layer.timers.t2)
        self._later(self._interval, self._timer_g)

    def _no_ack(self) -> None:
        if not self.acked:
            log.info("sip: no ACK for a final INVITE response (Timer H)")
        self.terminate()

    def _later(self, delay: float, fn: Callable[[], None]) -> None:
        loop = asyncio.get_running_loop()
        self._timers.append(loop.call_later(delay, fn))

    def _cancel_timers(self) -> None:
        for t in self._timers:
            t.cancel()
        self._timers.clear()


class TransactionLayer:
    """The table of live server transactions."""

    def __init__(self, timers: Timers, *, limit: int = 20_000) -> None:
        self.timers = timers
        self._table: dict[tuple[str, ...], ServerTransaction] = {}
        self._limit = limit

    def __len__(self) -> int:
        return len(self._table)

    def match(self, req: Request) -> ServerTransaction | None:
        return self._table.get(transaction_key(req))

    def invite_for(self, cancel: Request) -> ServerTransaction | None:
        """The INVITE transaction a CANCEL (or ACK) names (§9.2: same branch)."""
        key = transaction_key(cancel)
        return self._table.get((*key[:-1], "INVITE"))

    def create(self, req: Request, flow: Flow, source: tuple[str, int]) -> ServerTransaction:
        if len(self._table) >= self._limit:
            # a flood of distinct transactions: drop the oldest rather than grow forever
            oldest = next(iter(self._table))
            self._table.pop(oldest).terminate()
        key = transaction_key(req)
        tx = ServerTransaction(self, key, req, flow, source)
        self._table[key] = tx
        return tx

    def forget(self, key: tuple[str, ...], tx: ServerTransaction) -> None:
        if self._table.get(key) is tx:
            del self._table[key]

    def close(self) -> None:
        for tx in list(self._table.values()):
            tx.terminate()
