"""Verify and parse the webhook that tells deskbridge an agent replied in Zendesk.

Pure functions over a ``RawRequest``: no I/O, the clock is passed in.

Two body shapes are accepted on the same route:

* the event-subscription envelope Zendesk sends for ``zen:event-type:ticket.comment_added``
  (``{type, account_id, id, time, zendesk_event_version, subject, detail, event}``), and
* the JSON body of a trigger's "Notify active webhook" action, as documented in
  ``docs/desks/zendesk.md`` (marked by ``"deskbridge": "zendesk-trigger/1"``).

Only public comments written by staff are relayed: deskbridge files customer messages
as the end user, so relaying end-user comments would echo customers back to themselves.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import mimetypes
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError

from deskbridge.adapters.payload import load_object
from deskbridge.errors import ParseFailed, PayloadInvalid, SignatureInvalid
from deskbridge.schemas import AgentReply, Attachment, Desk, RawRequest

__all__ = [
    "COMMENT_ADDED",
    "SIGNATURE_HEADER",
    "SOLVED_MARKER",
    "TIMESTAMP_HEADER",
    "TOLERANCE_SECONDS",
    "TRIGGER_MARKER",
    "comment_attachments",
    "parse",
    "sign",
    "solved",
    "verify",
]

COMMENT_ADDED = "zen:event-type:ticket.comment_added"
SIGNATURE_HEADER = "x-zendesk-webhook-signature"
TIMESTAMP_HEADER = "x-zendesk-webhook-signature-timestamp"
TOLERANCE_SECONDS = 300.0
TRIGGER_MARKER = "zendesk-trigger/1"
SOLVED_MARKER = "zendesk-solved/1"
"""The body of the "ticket solved" trigger (docs/desks/zendesk.md): ``{"deskbridge":
"zendesk-solved/1", "ticket_id": "{{ticket.id}}"}``."""

_EVENT_PREFIX = "zen:event-type:"
_STAFF_ROLES = frozenset({"agent", "admin", "administrator"})


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """Zendesk's signature: base64(HMAC-SHA256(key=secret, msg=timestamp + body))."""
    digest = hmac.new(secret.encode(), timestamp.encode() + body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def verify(
    req: RawRequest, secret: str | None, *, now: float, tolerance: float = TOLERANCE_SECONDS
) -> None:
    """Raise ``SignatureInvalid`` unless ``req`` carries a valid, fresh Zendesk signature.

    ``now`` is unix seconds; a timestamp further than ``tolerance`` seconds from it, in
    either direction, is refused (replays, badly skewed clocks).
    """
    if not secret:
        raise SignatureInvalid("zendesk: no webhook_secret configured")
    signature = req.headers.get(SIGNATURE_HEADER)
    timestamp = req.headers.get(TIMESTAMP_HEADER)
    if not signature or not timestamp:
        raise SignatureInvalid("zendesk: signature headers missing")
    expected = sign(secret, timestamp, req.body)
    if not hmac.compare_digest(expected.encode(), signature.strip().encode()):
        raise SignatureInvalid("zendesk: signature mismatch")
    when = _timestamp_seconds(timestamp)
    if when is None:
        raise SignatureInvalid("zendesk: unreadable signature timestamp")
    if abs(now - when) > tolerance:
        raise SignatureInvalid("zendesk: signature timestamp outside the accepted window")


def solved(req: RawRequest) -> list[str]:
    """The ticket the "ticket solved" trigger reports ([] for any other body)."""
    try:
        doc = load_object(req.body, what="zendesk")
    except PayloadInvalid:
        return []
    ticket = doc.get("ticket_id")
    if doc.get("deskbridge") != SOLVED_MARKER or not isinstance(ticket, str | int):
        return []
    ticket = str(ticket).strip()
    return [ticket] if ticket.isdigit() else []


def parse(req: RawRequest, *, account: str, now: float) -> list[AgentReply]:
    """The public staff replies in a verified Zendesk webhook body.

    Raises ``PayloadInvalid`` for a body that is not a JSON object, ``ParseFailed`` for a
    JSON object of neither accepted shape, or of one of them with required fields missing.
    Any other Zendesk event type, and comments that are private or not by staff, give [].
    """
    doc = load_object(req.body, what="zendesk")

    fallback = _fallback_time(req, now)
    kind = doc.get("type")
    if isinstance(kind, str) and kind.startswith(_EVENT_PREFIX):
        if kind != COMMENT_ADDED:
            return []
        return _from_event(_validate(_CommentAddedEvent, doc), account=account, fallback=fallback)
    if doc.get("deskbridge") == TRIGGER_MARKER:
        return _from_trigger(_validate(_TriggerBody, doc), account=account, fallback=fallback)
    if doc.get("deskbridge") == SOLVED_MARKER:
        if not solved(req):
            raise ParseFailed("zendesk: solved trigger body without a ticket id")
        return []  # read by ``solved``
    raise ParseFailed("zendesk: JSON object is neither an event envelope nor the trigger body")


# -- the raw shapes (extra="ignore": Zendesk adds fields) ------------------------------


class _Raw(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, coerce_numbers_to_str=True)


class _Author(_Raw):
    id: str | None = None
    is_staff: bool = False
    name: str | None = None


class _EventAttachment(_Raw):
    # comment_added does not document attachments; this is the shape Zendesk uses for
    # them in attachment_linked_to_comment, accepted here in case it appears.
    content_url: str
    content_type: str | None = None
    filename: str | None = Field(
        default=None, validation_alias=AliasChoices("filename", "file_name")
    )
    size: int | None = None


class _Comment(_Raw):
    id: str = Field(min_length=1)
    body: str | None = None
    is_public: bool = False
    author: _Author = _Author()
    # None: the event left the comment's files out (Zendesk documents none for
    # comment_added), so they are read from the Ticket Comments API before sending
    attachments: list[_EventAttachment] | None = None


class _EventBody(_Raw):
    comment: _Comment


class _Detail(_Raw):
    id: str | None = None
    requester_id: str | None = None


class _CommentAddedEvent(_Raw):
    type: str
    id: str | None = None
    time: str | None = None
    subject: str | None = None
    detail: _Detail = _Detail()
    event: _EventBody


class _TriggerAttachment(_Raw):
    url: str = Field(min_length=1)
    filename: str | None = None
    content_type: str | None = None
    size: int | None = None


class _TriggerBody(_Raw):
    deskbridge: str
    ticket_id: str = Field(min_length=1)
    comment_id: str = Field(min_length=1)
    comment_public: str = ""
    author_id: str = ""
    author_name: str = ""
    author_role: str = ""
    current_user_role: str = ""
    requester_id: str = ""
    occurred_at: str = ""
    body: str = ""
    attachments: list[_TriggerAttachment] = Field(default_factory=list)


_M = TypeVar("_M", bound=_Raw)


def _validate(model: type[_M], doc: dict[str, Any]) -> _M:
    try:
        return model.model_validate(doc)
    except ValidationError as exc:
        # Field names only: the input (comment bodies) stays out of the error.
        fields = sorted({".".join(str(p) for p in e["loc"]) for e in exc.errors()})
        raise ParseFailed(f"zendesk: unexpected payload shape at {', '.join(fields)}") from None


# -- to AgentReply -----------------------------------------------------------------------


def _from_event(ev: _CommentAddedEvent, *, account: str, fallback: datetime) -> list[AgentReply]:
    comment = ev.event.comment
    if not comment.is_public or not comment.author.is_staff:
        return []
    # Belt and braces: a comment by the ticket's requester is the customer's, whatever
    # is_staff says (an agent can be the requester of a ticket deskbridge did not file).
    if comment.author.id and comment.author.id == ev.detail.requester_id:
        return []
    ticket_id = ev.detail.id or _ticket_from_subject(ev.subject)
    if not ticket_id:
        raise ParseFailed("zendesk: comment_added event without a ticket id")
    attachments = tuple(
        _attachment(a.content_url, a.filename, a.content_type, a.size)
        for a in comment.attachments or ()
    )
    text = (comment.body or "").strip()
    at_desk = comment.attachments is None
    if not text and not attachments and not at_desk:
        return []
    return [
        AgentReply(
            account=account,
            desk=Desk.ZENDESK,
            dedup_key=f"comment:{comment.id}",
            ticket_id=ticket_id,
            external_id=comment.id,
            text=text,
            attachments=attachments,
            author_name=comment.author.name or None,
            occurred_at=_iso(ev.time) or fallback,
            files_at_desk=at_desk,
        )
    ]


def _from_trigger(body: _TriggerBody, *, account: str, fallback: datetime) -> list[AgentReply]:
    if body.comment_public.strip().lower() == "false":
        return []
    if body.author_id and body.author_id == body.requester_id:
        return []
    if not _trigger_author_is_staff(body):
        return []
    attachments = tuple(
        _attachment(a.url, a.filename, a.content_type, a.size) for a in body.attachments
    )
    text = body.body.strip()
    if not text and not attachments:
        return []
    return [
        AgentReply(
            account=account,
            desk=Desk.ZENDESK,
            dedup_key=f"comment:{body.comment_id}",
            ticket_id=body.ticket_id,
            external_id=body.comment_id,
            text=text,
            attachments=attachments,
            author_name=body.author_name.strip() or None,
            occurred_at=_iso(body.occurred_at) or fallback,
        )
    ]


def _trigger_author_is_staff(body: _TriggerBody) -> bool:
    role = _role(body.author_role)
    if role:
        return role in _STAFF_ROLES
    # The comment author's role did not render. current_user is whoever made the update,
    # which for comments deskbridge files is the API user (an agent) even though the
    # author is the customer; the requester check above already dropped those, so an
    # agent updater is then the author.
    return _role(body.current_user_role) in _STAFF_ROLES


def _role(value: str) -> str:
    return value.strip().lower().replace("_", "-")


def _attachment(url: str, filename: str | None, mime: str | None, size: int | None) -> Attachment:
    name = filename or _name_from_url(url)
    mime_type = mime if mime and "/" in mime else None
    if mime_type is None and name:
        mime_type = mimetypes.guess_type(name)[0]
    kind = "image" if (mime_type or "").startswith("image/") else "document"
    return Attachment(kind=kind, ref=url, filename=name, mime_type=mime_type, size=size)


def _name_from_url(url: str) -> str | None:
    parts = urlsplit(url)
    names = parse_qs(parts.query).get("name")
    if names and names[0]:
        return names[0]
    last = parts.path.rstrip("/").rsplit("/", 1)[-1]
    return last or None


def comment_attachments(page: Mapping[str, Any], comment_id: str) -> tuple[Attachment, ...] | None:
    """The attachments of comment ``comment_id`` in one page of the List Comments answer
    (``{"comments": [{"id", "attachments": [{content_url, file_name, content_type,
    size}]}]}``), None when the page does not hold that comment. Raises ``ParseFailed``
    for a page of another shape."""
    try:
        listed = _CommentPage.model_validate(page)
    except ValidationError:
        raise ParseFailed("zendesk: unexpected List Comments answer") from None
    for c in listed.comments:
        if c.id == comment_id:
            return tuple(
                _attachment(a.content_url, a.filename, a.content_type, a.size)
                for a in c.attachments or ()
            )
    return None


class _CommentPage(_Raw):
    comments: list[_Comment] = Field(default_factory=list)


def _ticket_from_subject(subject: str | None) -> str | None:
    if subject and subject.startswith("zen:ticket:"):
        return subject.removeprefix("zen:ticket:") or None
    return None


def _iso(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _timestamp_seconds(value: str) -> float | None:
    value = value.strip()
    if value.isdigit():
        return float(value)
    when = _iso(value)
    return when.timestamp() if when else None


def _fallback_time(req: RawRequest, now: float) -> datetime:
    """When the body has no usable time: the signed timestamp, else ``now``."""
    headers: Mapping[str, str] = req.headers
    stamp = _timestamp_seconds(headers.get(TIMESTAMP_HEADER, "") or "")
    return datetime.fromtimestamp(stamp if stamp is not None else now, UTC)
