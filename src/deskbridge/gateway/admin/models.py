"""The admin API's request and response models: the routes parse and answer through
them, and ``openapi.py`` builds the served document from their JSON schemas.

Query strings arrive as text, so query models keep ``str`` fields and the routes check
them with their own messages; ``json_schema_extra`` says what each one takes.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer

from deskbridge.adapters.registry import CHANNELS
from deskbridge.outbound.registry import DESKS
from deskbridge.schemas import Attempt, Delivery, DeliveryState, Direction

__all__ = [
    "CHANNEL_NAMES",
    "DESK_NAMES",
    "MAX_IDS",
    "MAX_LIMIT",
    "MAX_REINGEST",
    "SOURCES",
    "STATES",
    "AccountHealth",
    "AccountQuery",
    "AuditEntry",
    "AuditPage",
    "ContactAccountQuery",
    "DecideBody",
    "DeliveryDetail",
    "DeliveryPage",
    "DeliveryQuery",
    "DiscardBody",
    "DiscardResult",
    "Error",
    "EventsQuery",
    "FilterBody",
    "ForgetBody",
    "ForgetDesk",
    "ForgetResult",
    "HealthDetail",
    "IdsBody",
    "IgnoredEvent",
    "IgnoredPage",
    "IgnoredQuery",
    "LinkBody",
    "Lookup",
    "LookupItem",
    "MessageBody",
    "MessageQueued",
    "OptOutBody",
    "PageQuery",
    "RawEvent",
    "RawEventDetail",
    "RawPage",
    "ReingestBody",
    "ReingestResult",
    "ReingestTotals",
    "ReingestedEvent",
    "ReingestedRaw",
    "ReplayBody",
    "ReplayResult",
    "RevokeBody",
    "RevokeResult",
    "Skipped",
    "TemplateBody",
]

MAX_LIMIT = 500
MAX_IDS = 1000
MAX_REINGEST = 1000

STATES = [s.value for s in DeliveryState] + ["failed"]
"""The states a filter takes: ``failed`` is ``dead``."""
CHANNEL_NAMES = [c.value for c in CHANNELS]
DESK_NAMES = [d.value for d in DESKS]
SOURCES = CHANNEL_NAMES + DESK_NAMES
"""What a kept raw request came from: a channel's webhook or a desk's."""


def _text(**extra: Any) -> Callable[[dict[str, Any]], None]:
    """A ``json_schema_extra`` that says what an optional text field takes: ``extra``
    goes on its string branch, so null stays allowed where the model allows it."""

    def amend(schema: dict[str, Any]) -> None:
        for branch in schema.get("anyOf", [schema]):
            if branch.get("type") == "string":
                branch.update(extra)

    return amend


def _enum(values: list[str]) -> Callable[[dict[str, Any]], None]:
    return _text(enum=values)


_WHEN = _text(format="date-time")


# --- request bodies and query parameters ---------------------------------------------------


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FilterBody(_In):
    """A delivery filter in a request body (the list route's query parameters)."""

    account: str | None = Field(default=None, description="One account (default: all).")
    state: str | None = Field(
        default=None, description="failed is dead.", json_schema_extra=_enum(STATES)
    )
    direction: str | None = Field(
        default=None, json_schema_extra=_enum([d.value for d in Direction])
    )
    channel: str | None = Field(default=None, json_schema_extra=_enum(CHANNEL_NAMES))
    desk: str | None = Field(default=None, json_schema_extra=_enum(DESK_NAMES))
    conversation: str | None = Field(default=None, description="A conversation id.")
    error: str | None = Field(
        default=None,
        max_length=200,
        description="Case-insensitive text in the last error or the dead letter's reason.",
    )
    since: str | None = Field(
        default=None, description="Created at or after (RFC 3339).", json_schema_extra=_WHEN
    )
    until: str | None = Field(
        default=None, description="Created before (RFC 3339).", json_schema_extra=_WHEN
    )
    kind: str | None = Field(
        default=None,
        description="note: the internal notes deskbridge writes for agents; event: the rest.",
        json_schema_extra=_enum(["note", "event"]),
    )


class PageQuery(_In):
    """A page of a newest-first list."""

    limit: str | None = Field(
        default=None,
        description=f"Page size (1-{MAX_LIMIT}, default 50).",
        json_schema_extra=_text(type="integer", minimum=1, maximum=MAX_LIMIT),
    )
    cursor: str | None = Field(default=None, description="The next_cursor of the previous page.")


class DeliveryQuery(PageQuery, FilterBody):
    """``GET /deliveries``: a filter and a page."""


class AccountQuery(_In):
    """Where to look for one delivery."""

    account: str | None = Field(default=None, description="Where to look (default: every account).")


class ContactAccountQuery(_In):
    """The account a contact belongs to."""

    account: str | None = Field(
        default=None, description="The account (required when there are several)."
    )


class EventsQuery(PageQuery):
    """``GET /events``: kept raw requests by account, source and time, a page at a time."""

    account: str | None = Field(default=None, description="One account (default: all).")
    channel: str | None = Field(
        default=None, description="A channel or desk.", json_schema_extra=_enum(SOURCES)
    )
    since: str | None = Field(
        default=None, description="Received at or after.", json_schema_extra=_WHEN
    )
    until: str | None = Field(default=None, description="Received before.", json_schema_extra=_WHEN)


class IgnoredQuery(EventsQuery):
    """``GET /events/ignored``: items acknowledged and deliberately not filed."""

    reason: str | None = Field(default=None, description="One reason (echo, duplicate, ...).")


class IdsBody(_In):
    """Deliveries by id, optionally in one account."""

    ids: list[str] = Field(min_length=1, max_length=MAX_IDS)
    account: str | None = None


class ReplayBody(_In):
    """ids, or a filter (its state defaults to dead; at most 10,000 matches)."""

    ids: list[str] | None = Field(default=None, min_length=1, max_length=MAX_IDS)
    account: str | None = Field(default=None, description="With ids: where to look.")
    filter: FilterBody | None = None
    dry_run: bool = False


class DiscardBody(_In):
    """Deliveries to discard and why."""

    ids: list[str] = Field(min_length=1, max_length=MAX_IDS)
    reason: str = Field(min_length=1, max_length=500)
    account: str | None = None


class ReingestBody(_In):
    """ids, or a time range (since, optional until) with paging."""

    account: str | None = None
    channel: str | None = Field(default=None, json_schema_extra=_enum(SOURCES))
    since: str | None = Field(default=None, json_schema_extra=_WHEN)
    until: str | None = Field(default=None, json_schema_extra=_WHEN)
    ids: list[str] | None = Field(default=None, min_length=1, max_length=MAX_REINGEST)
    limit: int = Field(default=100, ge=1, le=MAX_REINGEST)
    cursor: str | None = None
    dry_run: bool = False
    allow_duplicates: bool = Field(
        default=False, description="Also take requests older than the dedup window."
    )


class LinkBody(_In):
    """Two identifiers to link (or unlink) and why."""

    account: str | None = None
    a: str = Field(min_length=1, max_length=320, description="+E.164, email or channel:id")
    b: str = Field(min_length=1, max_length=320)
    reason: str = Field(min_length=1, max_length=500)
    merge_desk_users: bool = False
    """Also merge the two desk users where the desk can (Zendesk: permanent)."""


class TemplateBody(_In):
    """An approved WhatsApp template and its body parameters, in order."""

    name: str = Field(pattern=r"^[a-z0-9_]{1,512}$")
    language: str = Field(default="en_US", pattern=r"^[a-z]{2,3}(_[A-Z]{2})?$")
    params: list[str] = Field(default_factory=list, max_length=20)


class MessageBody(_In):
    """A message the business sends first (docs/admin.md, "Proactive messages")."""

    account: str | None = None
    to: str = Field(
        min_length=1, max_length=320, description="contact id, +E.164, email or channel:id"
    )
    channel: str | None = Field(default=None, json_schema_extra=_enum(CHANNEL_NAMES))
    text: str = Field(default="", max_length=4096)
    template: TemplateBody | None = None
    tag: str | None = Field(default=None, description="Messenger message tag")
    human: bool = False
    """A person wrote it (Messenger's HUMAN_AGENT tag is only for people)."""
    author: str = Field(default="", max_length=200)
    key: str = Field(
        min_length=1,
        max_length=200,
        pattern=r"^[A-Za-z0-9._:-]+$",
        description="the caller's idempotency key: the same key sends once",
    )


class MessageQueued(BaseModel):
    """Where a proactive message was queued: a delivery like any reply (list, show and
    replay it under /deliveries)."""

    delivery_id: str
    conversation_id: str
    channel: str
    contact: str
    duplicate: bool


class DecideBody(_In):
    """A decision on a merge suggestion."""

    account: str | None = None
    contacts: tuple[str, str]
    accept: bool
    merge_desk_users: bool = False


class OptOutBody(_In):
    """The customer's word on messages they did not ask for (proactive messages and
    satisfaction surveys)."""

    account: str | None = None
    opt_out: bool = True
    reason: str = Field(default="", max_length=500)


class ForgetBody(_In):
    """Where to erase a contact and whether at the desk too."""

    account: str | None = None
    desk: bool = Field(
        default=False, description="Also delete the desk user and tickets (default false)."
    )


# --- responses -----------------------------------------------------------------------------


def _compact(items: list[Any]) -> list[dict[str, Any]]:
    """Items as JSON without their empty optional fields (as the API has always sent)."""
    return [item.model_dump(mode="json", exclude_none=True) for item in items]


class Error(BaseModel):
    """Every refusal's body."""

    error: Literal[
        "bad_request",
        "unauthorized",
        "forbidden",
        "not_found",
        "admin_disabled",
        "unavailable",
        "busy",
        "desk_failed",
    ]
    message: str


class DeliveryPage(BaseModel):
    """A page of deliveries (optional fields are left out when empty)."""

    deliveries: list[Delivery]
    next_cursor: str | None

    @field_serializer("deliveries")
    def _deliveries(self, value: list[Delivery]) -> list[dict[str, Any]]:
        return _compact(value)


class DeliveryDetail(Delivery):
    """One delivery with every attempt (serialised without empty optional fields)."""

    attempt_log: list[Attempt]
    parts_sent: dict[str, str] = Field(
        default_factory=dict,
        description="The parts of a multi-part send the channel accepted: part number → the"
        " platform's id.",
    )


class LookupItem(Delivery):
    """A delivery with its last attempt, if any."""

    last_attempt: Attempt | None = None


class Lookup(BaseModel):
    """Deliveries found by id, and the ids not found (serialised without empty fields)."""

    deliveries: list[LookupItem]
    missing: list[str]


class Skipped(BaseModel):
    """A delivery a write left alone, and why."""

    id: str
    reason: str


class ReplayResult(BaseModel):
    """What a replay did (or, dry, would do)."""

    dry_run: bool
    matched: int
    replayed: list[str]
    skipped: list[Skipped]
    missing: list[str]
    truncated: bool


class ForgetDesk(BaseModel):
    """What an erasure did at one account's desk."""

    account: str
    desk: str
    done: list[str] = Field(
        description="One line per step; a step not read back as gone starts with "
        "'could not confirm'."
    )
    confirmed: bool = Field(
        description="True only when the desk read back every ticket and the user as not "
        "found (its own not-found answer, not any 404)."
    )


class ForgetResult(BaseModel):
    """What an erasure removed. When a desk step is not confirmed, nothing local is
    erased (``removed`` is empty) so that a later run can read the desk back again."""

    contact: str | None
    account: str
    accounts: list[str] = []
    removed: dict[str, int]
    desk: list[ForgetDesk]
    aof_rewrite: str | None = None
    nothing_left: bool
    confirmed: bool = Field(
        default=True, description="False when any desk step could not be confirmed."
    )


class DiscardResult(BaseModel):
    """What a discard did."""

    discarded: list[str]
    skipped: list[Skipped]
    missing: list[str]


class RawEvent(BaseModel):
    """A kept raw request (never its body)."""

    id: str
    account: str
    source: str = Field(description="The channel (or desk) it came from.")
    received_at: str = Field(json_schema_extra=_WHEN)
    method: str
    path: str
    size: int
    parse_failed: bool
    delivery_id: str | None = Field(default=None, description="Its parse_failed dead letter.")


class RawEventDetail(RawEvent):
    """A kept raw request with its headers, query and body. The sealed fields (the body,
    header and query values: they name the sender) are opened only for a token that also
    has ``contacts:read``; otherwise they are null and ``redacted`` says so."""

    headers: dict[str, str | None] = Field(
        description="Header names (secret headers were never kept); values null when redacted."
    )
    query: dict[str, str | None] = Field(description="Query parameters; values null when redacted.")
    body: str | None = Field(description="The exact body, or null when redacted.")
    body_encoding: Literal["utf-8", "base64"] | None = Field(
        default=None, description="How ``body`` is written: text, or base64 for other bytes."
    )
    redacted: str | None = Field(
        default=None, description="Why the sealed fields are null (the scope they need)."
    )


class RawPage(BaseModel):
    """A page of kept raw requests."""

    events: list[RawEvent]
    next_cursor: str | None

    @field_serializer("events")
    def _events(self, value: list[RawEvent]) -> list[dict[str, Any]]:
        return _compact(value)


class IgnoredEvent(BaseModel):
    """An inbound item acknowledged and deliberately not filed, with the decision's name
    (never its text). ``raw_id``: the raw request it came in, while it is kept."""

    id: str
    account: str
    source: str = Field(description="The channel it came from.")
    reason: str
    provider_id: str = Field(description="The platform's id of the item, where it has one.")
    received_at: str = Field(json_schema_extra=_WHEN)
    raw_id: str | None = None


class IgnoredPage(BaseModel):
    """A page of ignored items."""

    items: list[IgnoredEvent]
    next_cursor: str | None


class ReingestedEvent(BaseModel):
    """One event a re-ingest found in a raw request."""

    model_config = ConfigDict(extra="allow")

    kind: str
    conversation_id: str | None = None
    status: Literal["new", "duplicate", "ignored"]
    delivery_id: str | None = None
    state: str | None = None


class ReingestedRaw(BaseModel):
    """What re-ingesting one raw request did."""

    id: str
    account: str
    source: str
    parse_failed: bool
    events: list[ReingestedEvent]
    new: int
    duplicate: int
    ignored: int
    error: str | None = None


class ReingestTotals(BaseModel):
    """Counts over every raw request of a re-ingest."""

    raw: int
    new: int
    duplicate: int
    ignored: int
    errors: int


class ReingestResult(BaseModel):
    """Per raw request, what a re-ingest took (or, dry, would take)."""

    dry_run: bool
    totals: ReingestTotals
    raw: list[ReingestedRaw]
    next_cursor: str | None

    @field_serializer("raw")
    def _raw(self, value: list[ReingestedRaw]) -> list[dict[str, Any]]:
        # exactly the fields each outcome gave
        return [r.model_dump(mode="json", exclude_unset=True) for r in value]


class AuditEntry(BaseModel):
    """One admin write."""

    id: str
    at: str = Field(json_schema_extra=_WHEN)
    who: str = Field(description="The token's sub.")
    # documented, not enforced: an entry written by a newer version must still be listed
    action: str = Field(
        json_schema_extra=_text(
            enum=[
                "deliveries.replay",
                "deliveries.discard",
                "events.reingest",
                "contacts.link",
                "contacts.unlink",
                "contacts.accept",
                "contacts.reject",
                "contacts.forget",
                "contacts.export",
            ]
        )
    )
    count: int
    details: dict[str, Any]


class AuditPage(BaseModel):
    """A page of the audit log."""

    entries: list[AuditEntry]
    next_cursor: str | None


class RevokeBody(_In):
    """A token to revoke: by ``jti`` (optionally with its ``exp``, epoch seconds, so the
    entry is dropped when the token would have expired anyway), or every token of a
    ``subject`` issued up to now."""

    jti: str | None = Field(default=None, min_length=1, max_length=128)
    exp: int | None = Field(default=None, ge=0)
    subject: str | None = Field(default=None, min_length=1, max_length=200)


class RevokeResult(BaseModel):
    """What a revocation refuses, and until when the denylist keeps it."""

    jti: str | None
    subject: str | None
    issued_up_to: datetime | None
    kept_until: datetime


class AccountHealth(BaseModel):
    """One account as ``GET /health`` reports it."""

    desk: str
    channels: list[str]
    problems: dict[str, str] | None = Field(
        default=None, description="What keeps failing (a rejected token), by what."
    )


class HealthDetail(BaseModel):
    """Readiness with its details: what ``/readyz`` keeps from the world."""

    status: Literal["ready", "not ready"]
    role: str
    region: str | None
    checks: dict[str, str]
    redis_primary: str = Field(
        description="The Redis this process talks to: host:port (or a socket path); with "
        "Sentinel, the primary they named last and the name asked for."
    )
    accounts: dict[str, AccountHealth] = Field(
        description="The accounts the token sees, with their desk, channels and problems."
    )
