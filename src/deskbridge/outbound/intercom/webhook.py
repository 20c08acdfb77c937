"""Verify and parse Intercom's webhook notifications (agent replies).

Pure functions over a ``RawRequest``: no I/O.

A notification is ``{type: "notification_event", id: "notif_…", topic, created_at,
data: {type: "notification_event_data", item: <conversation>}}``. For conversation
topics the item is the conversation, and its ``conversation_parts`` hold the part(s)
the notification is about. Only ``conversation.admin.replied`` carries replies; a part
is relayed when an admin or a bot wrote it as a comment. Parts by the contact (every
message deskbridge files) and notes are never relayed.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import logging
import mimetypes
import re
from datetime import UTC, datetime
from typing import Any

from inscriptis import get_text  # type: ignore[import-untyped]  # ships no py.typed
from lxml import html as lxml_html  # type: ignore[import-untyped]  # no stubs installed
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from deskbridge.adapters.payload import load_object
from deskbridge.errors import ParseFailed, PayloadInvalid, SignatureInvalid
from deskbridge.schemas import AgentReply, Attachment, Desk, RawRequest

__all__ = [
    "ADMIN_CLOSED",
    "ADMIN_NOTED",
    "ADMIN_REPLIED",
    "SIGNATURE_HEADER",
    "USER_REPLIED",
    "html_to_text",
    "parse",
    "sign",
    "solved",
    "verify",
]

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "x-hub-signature"
ADMIN_REPLIED = "conversation.admin.replied"
ADMIN_NOTED = "conversation.admin.noted"
ADMIN_CLOSED = "conversation.admin.closed"
USER_REPLIED = "conversation.user.replied"

_REPLY_AUTHORS = frozenset({"admin", "bot"})
_REPLY_PARTS = frozenset({"comment", "quick_reply"})
_BLANK_RUNS = re.compile(r"\n{3,}")


def sign(secret: str, body: bytes) -> str:
    """The ``X-Hub-Signature`` value: ``sha1=`` + hex HMAC-SHA1(key=client_secret, body)."""
    return "sha1=" + hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()


def verify(req: RawRequest, secret: str | None) -> None:
    """Raise ``SignatureInvalid`` unless ``X-Hub-Signature`` signs the raw body with
    ``secret`` (compared in constant time). Intercom sends no timestamp to check."""
    if not secret:
        raise SignatureInvalid("intercom: no client_secret configured")
    signature = (req.headers.get(SIGNATURE_HEADER) or "").strip()
    if not signature.lower().startswith("sha1="):
        raise SignatureInvalid("intercom: X-Hub-Signature missing")
    expected = sign(secret, req.body)
    if not hmac.compare_digest(expected.encode(), signature.lower().encode()):
        raise SignatureInvalid("intercom: signature mismatch")


def solved(req: RawRequest) -> list[str]:
    """The conversation a ``conversation.admin.closed`` notification closed ([] for any
    other body)."""
    try:
        doc = load_object(req.body, what="intercom")
    except PayloadInvalid:
        return []
    if doc.get("type") != "notification_event" or doc.get("topic") != ADMIN_CLOSED:
        return []
    try:
        note = _validate(doc)
    except ParseFailed:
        return []
    return [note.data.item.id] if note.data.item.id else []


def parse(req: RawRequest, *, account: str) -> list[AgentReply]:
    """The agents' (and bots') replies in a verified notification.

    Raises ``PayloadInvalid`` for a body that is not a JSON object and ``ParseFailed`` for
    a JSON object that is not a notification, or an admin reply without a conversation.
    Other topics (notes, closes, ``ping``) give [].
    """
    doc = load_object(req.body, what="intercom")
    if doc.get("type") != "notification_event":
        raise ParseFailed("intercom: JSON object is not a notification_event")
    note = _validate(doc)
    if note.topic == ADMIN_CLOSED:
        # Recorded, not relayed: the customer's channel has no notion of a closed ticket.
        log.info(
            "intercom %s: conversation %s closed (notification %s)",
            account,
            note.data.item.id or "?",
            note.id or "?",
        )
        return []
    if note.topic != ADMIN_REPLIED:
        return []
    conversation = note.data.item
    if not conversation.id:
        raise ParseFailed("intercom: admin reply without a conversation id")
    fallback = _when(note.created_at) or datetime.now(UTC)
    replies: list[AgentReply] = []
    for index, part in enumerate(conversation.conversation_parts.conversation_parts):
        reply = _reply(part, index, note, conversation.id, account=account, fallback=fallback)
        if reply is not None:
            replies.append(reply)
    return replies


def html_to_text(body: str) -> str:
    """Intercom's HTML part body as the channel's plain text: paragraphs and line breaks
    kept, links as ``text (url)``, entities unescaped."""
    if not body.strip():
        return ""
    if "<" not in body:
        return _tidy(str(get_text(body)))
    try:
        root = lxml_html.fragment_fromstring(body, create_parent="div")
        for anchor in root.iter("a"):
            href = (anchor.get("href") or "").strip()
            label = anchor.text_content().strip()
            if not href or href.startswith("#") or href.lower().startswith("javascript:"):
                continue
            shown = href.removeprefix("mailto:")
            text = shown if not label or label in (href, shown) else f"{label} ({shown})"
            tail = anchor.tail
            for child in list(anchor):
                anchor.remove(child)
            anchor.text = text
            anchor.tail = tail
        # the children alone: inscriptis indents the content of a wrapping <div>
        inner = html.escape(root.text or "", quote=False) + "".join(
            lxml_html.tostring(child, encoding="unicode") for child in root
        )
        text = str(get_text(inner))
    except Exception:  # lxml raises a zoo of errors on hostile markup
        text = str(get_text(re.sub(r"<[^>]*>", " ", body)))
    return _tidy(text)


def _tidy(text: str) -> str:
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    return _BLANK_RUNS.sub("\n\n", "\n".join(lines)).strip()


# -- the raw shapes (extra="ignore": Intercom adds fields) ------------------------------


class _Raw(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, coerce_numbers_to_str=True)


class _Author(_Raw):
    type: str | None = None
    id: str | None = None
    name: str | None = None


class _PartAttachment(_Raw):
    url: str | None = None
    name: str | None = None
    content_type: str | None = None
    filesize: int | None = None


class _Part(_Raw):
    id: str | None = None
    part_type: str | None = None
    body: str | None = None
    created_at: int | None = None
    author: _Author = _Author()
    attachments: list[_PartAttachment] = Field(default_factory=list)
    redacted: bool = False


class _PartList(_Raw):
    conversation_parts: list[_Part] = Field(default_factory=list)


class _Conversation(_Raw):
    id: str | None = None
    conversation_parts: _PartList = _PartList()


class _Data(_Raw):
    item: _Conversation = _Conversation()


class _Notification(_Raw):
    id: str | None = None
    topic: str = ""
    created_at: int | None = None
    data: _Data = _Data()


def _validate(doc: dict[str, Any]) -> _Notification:
    try:
        return _Notification.model_validate(doc)
    except ValidationError as exc:
        # Field names only: the input (message bodies) stays out of the error.
        fields = sorted({".".join(str(p) for p in e["loc"]) for e in exc.errors()})
        raise ParseFailed(f"intercom: unexpected payload shape at {', '.join(fields)}") from None


def _reply(
    part: _Part,
    index: int,
    note: _Notification,
    conversation_id: str,
    *,
    account: str,
    fallback: datetime,
) -> AgentReply | None:
    author = (part.author.type or "").lower()
    # The contact's own parts (user, lead, contact) are what deskbridge filed.
    if author not in _REPLY_AUTHORS or part.redacted:
        return None
    if (part.part_type or "comment") not in _REPLY_PARTS:
        return None
    text = html_to_text(part.body or "")
    attachments = tuple(
        _attachment(a) for a in part.attachments if a.url and a.url.startswith("http")
    )
    if not text and not attachments:
        return None
    # The part id is the better key: a redelivered notification carries the same parts.
    part_id = part.id or f"{note.id or 'notif'}:{index}"
    return AgentReply(
        account=account,
        desk=Desk.INTERCOM,
        dedup_key=f"part:{part_id}",
        ticket_id=conversation_id,
        external_id=part_id,
        text=text,
        attachments=attachments,
        author_name=(part.author.name or "").strip() or None,
        automated=author == "bot",
        occurred_at=_when(part.created_at) or fallback,
    )


def _attachment(a: _PartAttachment) -> Attachment:
    url = a.url or ""
    name = a.name or url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1] or None
    mime = a.content_type if a.content_type and "/" in a.content_type else None
    if mime is None and name:
        mime = mimetypes.guess_type(name)[0]
    kind = "image" if (mime or "").startswith("image/") else "document"
    return Attachment(kind=kind, ref=url, filename=name, mime_type=mime, size=a.filesize)


def _when(value: int | str | None) -> datetime | None:
    try:
        seconds = int(value) if value is not None else None
    except ValueError:
        return None
    return datetime.fromtimestamp(seconds, UTC) if seconds else None
