"""What every fake desk offers the conformance suite (tests/test_desk_conformance.py).

A fake is shaped on the real API (paths, bodies, auth scheme), serves on 127.0.0.1
port 0 (or is a respx router), refuses calls without valid auth (401), and can inject
faults. It serves one account, ``acme``. Each fake subclasses ``FakeDesk`` explicitly
and overrides the optional parts (``bind``, ``refresh``, ``dedups_retries``,
``reply_attachments``) only where it differs from their defaults.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["FakeDesk", "FakePart", "FakeTicket", "FakeUser"]


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
