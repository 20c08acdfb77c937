"""What every channel implements: its inbound side and its outbound side.

A new channel is a package under ``adapters/`` with:

- a ``Receiver`` (or a ``WebhookParser`` wrapped in ``AccountReceiver``) that verifies
  and parses a webhook request, and declares which of its headers and query parameters
  carry our own secret (``secret_headers``, ``secret_query``: raw records never hold
  them);
- a ``ChannelAdapter`` that fetches the customer's files and sends the agent's replies.

What it may also do (health reports, sender authentication, files read from the stored
request, display-name lookups, webhook registration) is declared by subclassing the
protocols of ``adapters.capabilities``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import ClassVar, Protocol, runtime_checkable

from deskbridge.errors import DeliveryError
from deskbridge.schemas import (
    AgentReply,
    Attachment,
    Channel,
    ChannelAddress,
    InboundEvent,
    RawRequest,
    SendReceipt,
    Upload,
)

__all__ = [
    "AccountReceiver",
    "ChannelAdapter",
    "Handshake",
    "Ignored",
    "ItemFailure",
    "MediaLinks",
    "MemoryProgress",
    "Parsed",
    "Part",
    "Peeked",
    "Peeks",
    "Progress",
    "Receiver",
    "Skip",
    "TokenCache",
    "WebhookParser",
    "send_part",
    "send_parts",
]


class Progress(Protocol):
    """The parts of one outbound send the platform already accepted, across attempts.

    A reply that takes several platform calls (text chunks, attachments, LINE batches,
    SIP segments) is sent part by part; each accepted part is recorded (with the
    platform's id) before the next one goes, and a retry resumes at the first part not
    accepted. Parts are numbered from 0 in the order the adapter sends them, which must
    not depend on anything but the reply and the address."""

    def accepted(self, part: int) -> str | None:
        """The platform id of ``part`` if an earlier attempt got it accepted, else None."""
        ...

    async def record(self, part: int, platform_id: str) -> None:
        """Record ``part`` as accepted. Raises ``StoreUnavailable``."""
        ...

    def uncertain(self, part: int) -> bool:
        """True when a call for ``part`` began (in any attempt, in any process) and ended
        neither accepted nor refused: the platform may already have it."""
        ...

    async def begin(self, part: int) -> None:
        """A call for ``part`` is about to go out: until it is recorded or ``not_applied``,
        its outcome is unknown, even if this process dies. Raises ``StoreUnavailable``."""
        ...

    async def not_applied(self, part: int) -> None:
        """The call for ``part`` failed and the platform did not apply it."""
        ...

    async def resending(self, part: int) -> None:
        """``part`` goes out again after an unknown outcome with nothing that lets the
        platform recognise the repeat: counted (``ambiguous_resends``) and logged."""
        ...


class MemoryProgress:
    """Progress kept only for one call (tests, and sends nothing can resume)."""

    def __init__(self, accepted: dict[int, str] | None = None) -> None:
        self.parts: dict[int, str] = dict(accepted or {})
        self.unknown: set[int] = set()
        self.resent: list[int] = []

    def accepted(self, part: int) -> str | None:
        return self.parts.get(part)

    async def record(self, part: int, platform_id: str) -> None:
        self.parts[part] = platform_id
        self.unknown.discard(part)

    def uncertain(self, part: int) -> bool:
        return part in self.unknown

    async def begin(self, part: int) -> None:
        self.unknown.add(part)

    async def not_applied(self, part: int) -> None:
        self.unknown.discard(part)

    async def resending(self, part: int) -> None:
        self.resent.append(part)


Part = Callable[[], Awaitable[str]]
"""One platform call of a multi-part send; returns the platform's id for the part."""


async def send_part(progress: Progress, part: int, call: Part, *, keyed: bool = False) -> str:
    """Send ``part`` unless ``progress`` has it, and record it as soon as it is accepted.
    ``keyed``: the call carries an idempotency key, so a repeat after an unknown outcome
    is recognised by the platform and not counted. The call is marked as begun first (a
    crash before its answer is recorded leaves it uncertain); a failure the platform did
    not apply clears the mark. Failures are re-raised."""
    done = progress.accepted(part)
    if done is not None:
        return done
    if not keyed and progress.uncertain(part):
        await progress.resending(part)
    await progress.begin(part)
    try:
        platform_id = await call()
    except DeliveryError as exc:
        if exc.outcome == "not_applied":
            await progress.not_applied(part)
        raise
    await progress.record(part, platform_id)
    return platform_id


async def send_parts(
    progress: Progress | None, calls: Sequence[Part], *, keyed: bool = False
) -> tuple[str, ...]:
    """Send ``calls`` in order as parts 0, 1, ... (``send_part``); every part's id, those
    accepted by earlier attempts included."""
    progress = progress if progress is not None else MemoryProgress()
    return tuple([await send_part(progress, i, call, keyed=keyed) for i, call in enumerate(calls)])


@dataclass(frozen=True, slots=True)
class Handshake:
    """The answer to a platform's verification request (Meta's ``hub.challenge`` GET)."""

    status: int
    body: str
    content_type: str = "text/plain"


@dataclass(frozen=True, slots=True)
class ItemFailure:
    """One item of a batch (a Meta message or status, a Messenger event, a LINE event)
    that could not be parsed while its siblings were.

    ``account`` owns the item (its phone number id, Page id or URL), None when the item
    does not say whose it is. ``key`` is stable across redeliveries of the same item (the
    dead letter's dedup key). ``body`` is the raw record kept for it: the request body cut
    down to what ``account`` owns (or, for None, to the parts nobody could be named for),
    so re-ingest parses it again with the same receiver. ``error`` never holds body text.
    """

    account: str | None
    key: str
    error: str
    body: bytes
    app: str | None = None
    """The platform app whose secret signed the body (a Meta app's name), where the item
    is kept when ``account`` is None."""


@dataclass(frozen=True, slots=True)
class Ignored:
    """One item read and deliberately not filed, with the name of the decision (``echo``,
    ``status``, ``auto_reply``, ``own_mail``, ``unrouted``, ``unhandled``...). ``account``:
    whose it is (None: no account of ours, kept under the app that signed the body);
    ``provider_id``: the platform's id of the item where it has one (a wamid, an event
    id), never text from it."""

    reason: str
    account: str | None = None
    provider_id: str = ""
    app: str | None = None


class Skip(Exception):
    """Raised by an item reader to say the item is deliberately not filed, and why
    (``Batch.item`` records it as ``Ignored``)."""

    def __init__(self, reason: str, provider_id: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.provider_id = provider_id


@dataclass(frozen=True, slots=True)
class Parsed:
    """The events of one webhook request, each carrying its account. ``unrouted`` counts
    entries for numbers or Pages no configured account owns (counted and skipped).

    ``failures``: the items that could not be parsed (their siblings are in ``events``).
    ``bodies``: for a body that concerns several accounts, each account's cut of it (only
    its own entries), which is what is kept raw under that account; None when the whole
    body belongs to the events' one account."""

    events: list[InboundEvent]
    unrouted: int = 0
    failures: tuple[ItemFailure, ...] = ()
    bodies: Mapping[str, bytes] | None = None
    ignored: tuple[str, ...] = ()
    """A named reason per item read and deliberately not filed (echo, auto-reply, ...)."""
    token: tuple[str, str] | None = None
    """A provider's one-time request token and a digest of what it brought (Mailgun): a
    token seen before with something else is a replay, refused before anything is stored."""
    skipped: tuple[Ignored, ...] = ()
    """Items deliberately not filed, each with its reason, account and provider id (kept
    for ``events list --ignored``); ``ignored`` holds reasons alone, for the URL's account."""


@dataclass(frozen=True, slots=True)
class Peeked:
    """What ``Peeks.peek`` read of a body of the channel's common shape: the account, the
    dedup key and the thread of its one item, exactly as the full parse would name them
    should it file an event (it may still not: the worker parses and decides)."""

    account: str
    dedup_key: str
    thread: str


@runtime_checkable
class Peeks(Protocol):
    """A receiver with a cheap look at the common shape of its bodies (the deferred
    parse, docs/benchmarks.md): the gateway stores such a body with its dedup mark and
    its lane's job without parsing it, and the worker runs the full ``parse`` on the
    stored raw request before it files the event.

    Contract, checked over the channel's fixtures and corpus: whenever ``peek`` returns
    a ``Peeked`` and ``parse`` of the same request returns events, they are exactly one
    event with that account, ``dedup_key`` and ``thread``. ``peek`` returns None for
    anything unusual (several items, a type it does not expect, a kind ``parse`` is
    known to ignore), and the gateway then runs ``parse`` as before. It never raises:
    a body ``parse`` refuses must make ``peek`` return None or be one the worker may
    find unreadable (it becomes the same ``parse_failed`` dead letter there)."""

    def peek(self, req: RawRequest) -> Peeked | None:
        """The one item's account, dedup key and thread, or None (see the class)."""
        ...


@runtime_checkable
class AnswersWebhooks(Protocol):
    """A receiver whose platform reads the body of the 2xx that acknowledges its webhook
    (Twilio takes it as TwiML, and logs warning 12300 for every JSON answer). Others get
    ``{"ok":true}``."""

    def answer(self) -> tuple[bytes, str]:
        """The acknowledgement's body and content type (the same for every request)."""
        ...


class Receiver(Protocol):
    """The inbound side of a channel: what one webhook URL verifies and parses. Pure:
    bytes and headers in, events or a typed error out.

    A Meta app posts every WhatsApp number and Page it serves to one URL, so its receiver
    is per app and routes each entry to the account that owns it; Telegram's is per
    account (``AccountReceiver``).
    """

    @property
    def channel(self) -> Channel: ...

    @property
    def max_body_bytes(self) -> int: ...

    @property
    def secret_headers(self) -> frozenset[str]:
        """Lower-case names of headers that carry our own secret (not a signature over the
        body, which is safe to keep): dropped before the request is stored."""
        ...

    @property
    def secret_query(self) -> frozenset[str]:
        """Query parameters that carry our own secret: dropped before storing."""
        ...

    def handshake(self, req: RawRequest) -> Handshake | None:
        """Answer a verification GET, or None when the channel has no handshake."""
        ...

    def verify(self, req: RawRequest) -> None:
        """Raise ``SignatureInvalid`` unless the request carries the channel's proof."""
        ...

    def parse(self, req: RawRequest) -> Parsed:
        """Events in the body (none for valid events we do not handle).

        Raises ``PayloadInvalid`` for a body that is not what the channel sends at all (not
        JSON), ``ParseFailed`` for a body of the channel's shape we cannot handle.
        """
        ...


class WebhookParser(Protocol):
    """A per-account webhook endpoint (Telegram): ``parse`` returns the events directly."""

    channel: ClassVar[Channel]
    max_body_bytes: int
    secret_headers: ClassVar[frozenset[str]]
    secret_query: ClassVar[frozenset[str]]

    def handshake(self, req: RawRequest) -> Handshake | None: ...

    def verify(self, req: RawRequest) -> None: ...

    def parse(self, req: RawRequest) -> list[InboundEvent]: ...


class AccountReceiver:
    """The receiver of a channel with one webhook URL per account."""

    def __init__(self, parser: WebhookParser) -> None:
        self.channel = parser.channel
        self.max_body_bytes = parser.max_body_bytes
        self.secret_headers = parser.secret_headers
        self.secret_query = parser.secret_query
        self._parser = parser

    def handshake(self, req: RawRequest) -> Handshake | None:
        return self._parser.handshake(req)

    def verify(self, req: RawRequest) -> None:
        self._parser.verify(req)

    def parse(self, req: RawRequest) -> Parsed:
        return Parsed(self._parser.parse(req))


class MediaLinks(Protocol):
    """Short-lived signed URLs under ``DESKBRIDGE_PUBLIC_URL`` for files a channel must
    fetch by URL (Messenger, LINE). A URL serves that one desk attachment, nothing else."""

    def url_for(self, account: str, attachment: Attachment, *, ttl: float | None = None) -> str:
        """A URL serving ``attachment`` for ``ttl`` seconds (default: one hour)."""
        ...

    def video_preview_url(self) -> str:
        """A generic preview image (PNG) for video messages of channels that need one."""
        ...


class TokenCache(Protocol):
    """Access tokens shared by every process of a deployment (Redis), so a platform that
    limits live tokens (LINE: 30 per channel) sees one, renewed under a lock."""

    async def get(self, name: str) -> str | None:
        """The cached token, or None when there is none or it is about to expire."""
        ...

    async def put(self, name: str, token: str, ttl: float) -> None:
        """Cache ``token`` for ``ttl`` seconds (callers pass less than its lifetime)."""
        ...

    def lock(self, name: str) -> AbstractAsyncContextManager[None]:
        """Held while one process issues a new token; others wait, then ``get`` it."""
        ...


class ChannelAdapter(Protocol):
    """The outbound side of one account's channel: fetching the customer's files and
    sending the agent's replies, the only I/O, through the injected ``httpx.AsyncClient``.
    Errors are ``RetryableError``/``PermanentError`` (via ``deskbridge.http.classify``)
    or ``WindowClosed``.
    """

    channel: ClassVar[Channel]
    takes_files: ClassVar[bool]
    """True: ``send`` gets the reply's files as bytes. False: it sends
    ``reply.attachments`` by URL (``MediaLinks``) and gets no bytes."""
    account: str

    async def fetch(self, attachment: Attachment) -> Upload:
        """Download an inbound attachment's bytes (size-capped)."""
        ...

    async def send(
        self,
        reply: AgentReply,
        to: ChannelAddress,
        files: Sequence[Upload],
        progress: Progress | None = None,
    ) -> SendReceipt:
        """Send an agent's reply, obeying the channel's limits and reply windows
        (``to.last_inbound_at``). Raises ``WindowClosed`` when it must wait for the
        customer to write again. Parts ``progress`` already has are not sent again; each
        part is recorded in it as soon as the platform accepts it (None: a fresh
        ``MemoryProgress``). ``external_ids`` lists every part's id."""
        ...

    async def reengage(self, to: ChannelAddress) -> SendReceipt:
        """Invite a customer whose window is closed to write again (WhatsApp's approved
        template). Raises ``PermanentError`` when the channel or account has none."""
        ...
