"""An open-loop HTTP/1.1 load generator for ``bench/run.py`` (wrk2 is not in Debian).

Requests go out on a fixed timetable (request ``i`` is due at ``t0 + i / rate``) over a
pool of keep-alive connections, one request in flight per connection. A request due
while every connection is busy waits in a backlog, and its latency is still measured
from the time it was *due*, not the time it was sent: a stalled server cannot slow the
generator down and hide its own stall (no coordinated omission).

Plain asyncio protocols, prebuilt request bytes and a minimal response parser keep the
generator's own cost per request to a few microseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import math
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "OpenLoopResult",
    "http_post",
    "line_message",
    "open_loop",
    "percentile",
    "telegram_update",
    "whatsapp_message",
]


def _padded(build: Callable[[str], dict[str, Any]], text: str, seed: int, size: int) -> bytes:
    """``build(text)`` as compact JSON, its text padded so the body is ``size`` bytes."""
    body = json.dumps(build(text), separators=(",", ":")).encode()
    if len(body) < size:
        padded = build(text + padding(seed, size - len(body)))
        body = json.dumps(padded, separators=(",", ":")).encode()
    return body


def telegram_update(update_id: int, chat_id: int, text: str, *, size: int, date: int) -> bytes:
    """A private-chat text ``message`` Update, its text padded so the body is ``size`` bytes
    (the same shape as ``bench/telegram.lua`` builds)."""

    def build(t: str) -> dict[str, Any]:
        user = {"id": chat_id, "is_bot": False, "first_name": "Bench", "language_code": "en"}
        chat = {"id": chat_id, "first_name": "Bench", "type": "private"}
        message = {"message_id": update_id, "from": user, "chat": chat, "date": date, "text": t}
        return {"update_id": update_id, "message": message}

    return _padded(build, text, update_id, size)


def whatsapp_message(
    n: int, wa_id: str, text: str, *, phone_number_id: str, size: int, date: int
) -> bytes:
    """A WhatsApp Cloud API ``messages`` webhook with one text message from ``wa_id`` to
    ``phone_number_id`` (the shape ``deskbridge simulate whatsapp`` posts), padded."""

    def build(t: str) -> dict[str, Any]:
        message = {
            "from": wa_id,
            "id": f"wamid.bench{n}",
            "timestamp": str(date),
            "type": "text",
            "text": {"body": t},
        }
        value = {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550001111", "phone_number_id": phone_number_id},
            "contacts": [{"profile": {"name": "Bench"}, "wa_id": wa_id}],
            "messages": [message],
        }
        change = {"value": value, "field": "messages"}
        return {"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [change]}]}

    return _padded(build, text, n, size)


def line_message(n: int, user_id: str, text: str, *, size: int, date_ms: int) -> bytes:
    """A LINE webhook body with one text ``message`` event from ``user_id`` (the shape
    ``deskbridge simulate line`` posts), padded."""

    def build(t: str) -> dict[str, Any]:
        event = {
            "type": "message",
            "message": {"type": "text", "id": str(n), "quoteToken": f"q{n}", "text": t},
            "webhookEventId": f"01BENCH{n:019d}",
            "deliveryContext": {"isRedelivery": False},
            "timestamp": date_ms,
            "source": {"type": "user", "userId": user_id},
            "replyToken": f"bench-reply-{n}",
            "mode": "active",
        }
        return {"destination": "U" + "0" * 32, "events": [event]}

    return _padded(build, text, n, size)


# the words bench/telegram.lua pads with: text that compresses like a customer's message
_PAD_TEXT = (
    "the to and you of is it that for on in your my this with have be are not we can please "
    "thanks hello order help when what will would could do delivery package arrived "
    "yesterday today tomorrow refund address number account payment card problem issue "
    "still waiting since last week again receipt invoice tracking store size colour broken "
    "wrong missing return exchange price discount code email phone call back soon possible "
    "morning evening weekend hours open closed Berlin Madrid Tokyo Lisbon Friday Monday "
    "18:30 #4411 12.50"
)
PAD_WORDS = _PAD_TEXT.split()


def padding(seed: int, n: int) -> str:
    """``n`` characters of words in a random order (the same for the same ``seed``)."""
    rnd = random.Random(seed)  # noqa: S311 - filler text, not a secret
    out = " ".join(rnd.choice(PAD_WORDS) for _ in range(n // 3 + 1))
    return out[:n]


def http_post(host: str, port: int, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    """The bytes of a keep-alive HTTP/1.1 POST."""
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (``p`` in 0..100) of ``values``; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(p / 100 * len(ordered))))
    return ordered[rank - 1]


@dataclass
class OpenLoopResult:
    target_rate: float
    duration_s: float
    """The measured window (after warm-up)."""
    scheduled: int
    completed: int
    non2xx: int
    unanswered: int
    achieved_rate: float
    """Completed requests per second in the measured window."""
    sent_rate: float
    """Requests sent per second in the measured window (the generator kept up if ~target)."""
    latencies: list[float] = field(repr=False)
    """Seconds from the time each measured request was due to its complete response."""
    due_s: list[float] = field(repr=False)
    """When each of ``latencies`` was due, in seconds since the measured window began."""
    send_lag: list[float] = field(repr=False)
    """Seconds from due to written, per measured request (backlog waits included)."""
    connections: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    window_start_unix: float = 0.0
    """Wall-clock time at which the measured window began (to match server logs)."""


class _Conn(asyncio.Protocol):
    def __init__(self, gen: _Gen) -> None:
        self.gen = gen
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.need = -1
        self.status = 0
        self.job = -1
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        while True:
            if self.need < 0:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = bytes(buf[:end]).lower()
                self.status = int(head[9:12])
                at = head.find(b"\r\ncontent-length:")
                if at < 0:
                    self.gen.protocol_error(self, "response without Content-Length")
                    return
                stop = head.find(b"\r\n", at + 2)
                self.need = end + 4 + int(head[at + 17 : stop if stop >= 0 else None])
            if len(buf) < self.need:
                return
            del buf[: self.need]
            self.need = -1
            self.gen.done(self, self.status)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.gen.lost(self)


class _Gen:
    def __init__(self, requests: Sequence[bytes]) -> None:
        n = len(requests)
        self.requests = requests
        self.due = [0.0] * n
        self.sent = [0.0] * n
        self.finished = [0.0] * n
        self.status = [0] * n
        self.idle: list[_Conn] = []
        self.backlog: deque[int] = deque()
        self.outstanding = 0
        self.errors: list[str] = []
        self.all_done = asyncio.Event()
        self.scheduling = True

    def dispatch(self, i: int, due: float) -> None:
        self.due[i] = due
        self.outstanding += 1
        if self.idle:
            self.send(self.idle.pop(), i)
        else:
            self.backlog.append(i)

    def send(self, conn: _Conn, i: int) -> None:
        conn.job = i
        self.sent[i] = time.monotonic()
        assert conn.transport is not None
        conn.transport.write(self.requests[i])

    def done(self, conn: _Conn, status: int) -> None:
        i = conn.job
        if i < 0:
            self.protocol_error(conn, "a response nobody asked for")
            return
        self.finished[i] = time.monotonic()
        self.status[i] = status
        conn.job = -1
        self.outstanding -= 1
        if self.backlog:
            self.send(conn, self.backlog.popleft())
        else:
            self.idle.append(conn)
            if not self.scheduling and self.outstanding == 0:
                self.all_done.set()

    def lost(self, conn: _Conn) -> None:
        if conn in self.idle:
            self.idle.remove(conn)
        if conn.job >= 0:
            self.errors.append(f"connection closed with request {conn.job} in flight")
            conn.job = -1
            self.outstanding -= 1

    def protocol_error(self, conn: _Conn, what: str) -> None:
        self.errors.append(what)
        if conn.transport is not None:
            conn.transport.abort()


async def open_loop(
    host: str,
    port: int,
    requests: Sequence[bytes],
    rate: float,
    *,
    warmup_s: float = 1.0,
    connections: int = 64,
    drain_timeout_s: float = 5.0,
) -> OpenLoopResult:
    """Send ``requests`` at ``rate`` per second; the first ``warmup_s`` seconds of the
    timetable are not measured. Ends at most ``drain_timeout_s`` after the last is due."""
    loop = asyncio.get_running_loop()
    gen = _Gen(requests)
    conns: list[_Conn] = []
    for _ in range(connections):
        _, proto = await loop.create_connection(lambda: _Conn(gen), host, port)
        conns.append(proto)
    gen.idle = list(conns)
    n = len(requests)
    interval = 1.0 / rate
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        t0 = time.monotonic() + 0.05
        wall_t0 = time.time() + 0.05
        i = 0
        while i < n:
            now = time.monotonic()
            while i < n and t0 + i * interval <= now:
                gen.dispatch(i, t0 + i * interval)
                i += 1
            if i < n:
                await asyncio.sleep(max(0.0, t0 + i * interval - time.monotonic()))
        gen.scheduling = False
        if gen.outstanding > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(gen.all_done.wait(), drain_timeout_s)
    finally:
        if gc_was_enabled:
            gc.enable()
        for c in conns:
            if c.transport is not None and not c.closed:
                c.transport.close()
    start = t0 + warmup_s
    measured = [j for j in range(n) if gen.due[j] >= start]
    answered = [j for j in measured if gen.finished[j] > 0.0]
    statuses: dict[int, int] = {}
    for j in answered:
        statuses[gen.status[j]] = statuses.get(gen.status[j], 0) + 1
    window = (n - 1) * interval - warmup_s if n > 1 else 0.0
    sent_in = [gen.sent[j] for j in measured if gen.sent[j] > 0.0]
    done_in = [gen.finished[j] for j in answered]
    sent_span = max(sent_in) - min(sent_in) if len(sent_in) > 1 else 0.0
    done_span = max(done_in) - min(done_in) if len(done_in) > 1 else 0.0
    if gen.errors:
        print(f"loadgen: {len(gen.errors)} errors, first: {gen.errors[0]}")
    return OpenLoopResult(
        target_rate=rate,
        duration_s=window,
        scheduled=len(measured),
        completed=len(answered),
        non2xx=sum(c for s, c in statuses.items() if not 200 <= s < 300),
        unanswered=len(measured) - len(answered),
        achieved_rate=(len(done_in) - 1) / done_span if done_span > 0 else 0.0,
        sent_rate=(len(sent_in) - 1) / sent_span if sent_span > 0 else 0.0,
        latencies=[gen.finished[j] - gen.due[j] for j in answered],
        due_s=[gen.due[j] - start for j in answered],
        send_lag=[gen.sent[j] - gen.due[j] for j in measured if gen.sent[j] > 0.0],
        connections=connections,
        statuses=statuses,
        window_start_unix=wall_t0 + warmup_s,
    )
