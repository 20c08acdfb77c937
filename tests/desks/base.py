"""What every fake desk offers the conformance suite (tests/test_desk_conformance.py).

A fake is shaped on the real API (paths, bodies, auth scheme), serves on 127.0.0.1
port 0 (or is a respx router), refuses calls without valid auth (401), and can inject
faults. It serves one account, ``acme``. Each fake subclasses ``FakeDesk`` explicitly
and overrides the optional parts (``bind``, ``refresh``, ``dedups_retries``,
``reply_attachments``) only where it differs from their defaults.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from aiohttp import web

__all__ = [
    "MODES",
    "FakeDesk",
    "FakePart",
    "FakeTicket",
    "FakeUser",
    "Faults",
    "Mode",
    "partial_failure",
]

Mode = Literal["rate_limited", "dropped", "timed_out", "proxy_5xx"]
"""How an armed call fails: ``rate_limited`` (refused with the desk's own retry hint,
nothing applied); ``dropped`` (applied, then the connection is reset before the answer);
``timed_out`` (applied, the answer comes after the client gave up); ``proxy_5xx``
(applied, then a proxy in front answers 502 with its own HTML page)."""
MODES: tuple[Mode, ...] = ("rate_limited", "dropped", "timed_out", "proxy_5xx")

STALL_SECONDS = 1.0
"""How late a ``timed_out`` answer comes: longer than the suite's client timeout."""


@dataclass
class _Armed:
    mode: Mode
    method: str
    path: str
    after: int


class Faults:
    """Partial failures armed on a fake's calls: the first ``after`` calls matching
    (method, path regex) go through, the next one fails with the mode, once."""

    def __init__(self) -> None:
        self._armed: list[_Armed] = []
        self.fired: list[tuple[Mode, str, str]] = []

    def arm(self, mode: Mode, method: str, path: str, *, after: int = 0) -> None:
        self._armed.append(_Armed(mode, method, path, after))

    def take(self, method: str, path: str) -> Mode | None:
        """The mode this call fails with, if an armed fault is due."""
        for armed in self._armed:
            if armed.method != method or re.fullmatch(armed.path, path) is None:
                continue
            if armed.after > 0:
                armed.after -= 1
                return None
            self._armed.remove(armed)
            self.fired.append((armed.mode, method, path))
            return armed.mode
        return None


async def partial_failure(
    mode: Mode,
    request: web.Request,
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    rate_limited: Callable[[], web.StreamResponse],
) -> web.StreamResponse:
    """Answer ``request`` the way ``mode`` fails (see ``Mode``); ``rate_limited`` builds
    the desk's own 429."""
    if mode == "rate_limited":
        return rate_limited()
    resp = await handler(request)  # the desk applies the call
    if mode == "dropped":
        if request.transport is not None:
            request.transport.abort()  # a reset: the client never reads the answer
        return resp
    if mode == "timed_out":
        await asyncio.sleep(STALL_SECONDS)
        return resp
    return web.Response(
        status=502, text="<html><body>502 Bad Gateway</body></html>", content_type="text/html"
    )


@dataclass
class FakeUser:
    id: str
    external_id: str | None = None
    name: str | None = None
    emails: list[str] = field(default_factory=list)
    phones: list[str] = field(default_factory=list)


@dataclass
class FakePart:
    author: str
    """``user`` (the customer, as filed by deskbridge), ``agent`` (a public reply) or
    ``note`` (internal)."""
    text: str
    attachments: list[str] = field(default_factory=list)
    """File names."""


@dataclass
class FakeTicket:
    id: str
    user_id: str
    parts: list[FakePart] = field(default_factory=list)


class FakeDesk(Protocol):
    desk: str
    """The ``Desk`` value: sandbox, zendesk, intercom, udesk."""

    dedups_retries: bool = False
    """The desk takes the delivery's idempotency key (or we can look up what an earlier
    attempt created), so a retried call after a lost answer files nothing twice."""

    reply_attachments: bool = True
    """Agents can attach files to their public replies."""

    writes: dict[str, tuple[str, str]]
    """The desk's write calls a fault can be armed on, by name (``create``: the first
    message opens a ticket; ``append``: a later one is added to it): (method, path
    regex)."""

    reconciles: frozenset[str] = frozenset()
    """The ``writes`` whose unknown outcome deskbridge can settle (an idempotency key or
    a read-back): exactly one copy lands. The others are sent again and counted."""

    faults: Faults

    def fault(self, mode: Mode, call: str, *, after: int = 0) -> None:
        """Fail the ``call`` (a ``writes`` name) after ``after`` of them went through."""
        method, path = self.writes[call]
        self.faults.arm(mode, method, path, after=after)

    def bind(self, rt: Any) -> None:
        """Called with the runtime before the gateway starts: fakes that live inside
        deskbridge (the sandbox) wrap the runtime's desk here. Default: nothing."""
        return None

    async def refresh(self) -> None:
        """Bring ``users()``/``tickets()`` up to date before they are read, for fakes
        that read them from elsewhere (the sandbox's Redis). Default: nothing."""
        return None

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def desk_yaml(self) -> str:
        """The ``desk:`` mapping of account ``acme`` in flow style (one line), pointing at
        this fake, e.g. ``{type: zendesk, base_url: "http://127.0.0.1:PORT", ...}``."""
        ...

    def users(self) -> list[FakeUser]: ...

    def tickets(self) -> list[FakeTicket]: ...

    def calls(self) -> list[tuple[str, str, int]]:
        """Every API call seen: (method, path, status answered)."""
        ...

    def fail(self, status: int, times: int, headers: dict[str, str] | None = None) -> None:
        """Answer the next ``times`` API calls with ``status`` (and ``headers``: a 429
        gets the desk's own rate-limit headers when none are given)."""
        ...

    def stall(self, seconds: float, times: int) -> None:
        """Hold the next ``times`` API calls for ``seconds`` before answering."""
        ...

    async def agent_reply(
        self,
        client: Any,
        rt: Any,
        ticket_id: str,
        text: str,
        attachment: tuple[str, bytes, str] | None = None,
    ) -> None:
        """An agent answers publicly on the ticket (with an optional file: name, bytes,
        MIME type); the reply reaches deskbridge as the real desk would bring it (a signed
        webhook posted with ``client``, an aiohttp test client of the gateway app, or the
        poller run once on ``rt``). Returns once deskbridge has taken it in."""
        ...

    async def notify_customer_part(self, client: Any, rt: Any, ticket_id: str) -> None:
        """Bring deskbridge the desk's notification (or poll result) for the latest part
        deskbridge itself filed as the customer: it must produce no agent reply."""
        ...
