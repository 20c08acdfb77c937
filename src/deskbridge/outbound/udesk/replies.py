"""Agent replies out of Udesk: the replies list of a ticket (polled) and the callback a
Udesk trigger posts. Pure: JSON in, ``AgentReply`` out.

Which replies are relayed: public replies whose author is an agent, that deskbridge did
not write itself. Customer replies (every message deskbridge files on the customer's
behalf), internal notes, and anything carrying one of our markers are not.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from deskbridge.adapters.payload import load_object
from deskbridge.errors import SignatureInvalid
from deskbridge.outbound.udesk.html import to_text
from deskbridge.schemas import AgentReply, Attachment, AttachmentKind, Desk, RawRequest

__all__ = [
    "CUSTOMER_MARK",
    "NOTE_MARK",
    "TRIGGER_SHAPE",
    "agent_replies",
    "is_customers",
    "is_ours",
    "parse_callback",
    "verify_callback",
]

NOTE_MARK = "[deskbridge internal note]"
"""Starts every internal note deskbridge writes."""
CUSTOMER_MARK = "· deskbridge]"
"""Ends the first line of a customer message filed as a marked reply."""
TRIGGER_SHAPE = "udesk-trigger/1"
"""The ``deskbridge`` key of the trigger body documented in docs/desks/udesk.md."""

_AGENT_TYPES = frozenset({"agent", "admin", "staff"})
_FALSE = frozenset({"false", "0", "no", "private", "internal"})


def is_ours(content: str) -> bool:
    """Whether a reply's text carries one of the markers deskbridge writes."""
    head = content.lstrip().split("\n", 1)[0]
    return head.startswith(NOTE_MARK) or head.rstrip().endswith(CUSTOMER_MARK)


def is_customers(item: Mapping[str, Any]) -> bool:
    """Whether a replies-list item is a customer's message: written as the customer, or
    filed by deskbridge as a marked reply."""
    author = item.get("author")
    author = author if isinstance(author, Mapping) else {}
    user_type = (_str(author.get("user_type") or item.get("user_type")) or "").lower()
    head = (_str(item.get("content")) or "").split("\n", 1)[0]
    return user_type == "customer" or head.rstrip().endswith(CUSTOMER_MARK)


def agent_replies(
    account: str, ticket_id: str, replies: Iterable[Mapping[str, Any]], *, skip: set[str]
) -> tuple[list[AgentReply], list[str]]:
    """The relayable replies among ``replies`` (ids in ``skip`` excluded), oldest first,
    and the ids of every reply looked at (relayed or not), to remember."""
    out: list[tuple[str, AgentReply]] = []
    seen: list[str] = []
    for item in replies:
        reply_id = _str(item.get("id"))
        if reply_id is None or reply_id in skip:
            continue
        seen.append(reply_id)
        author = item.get("author")
        author = author if isinstance(author, Mapping) else {}
        user_type = _str(author.get("user_type") or item.get("user_type")) or ""
        content = _str(item.get("content")) or ""
        if user_type.lower() not in _AGENT_TYPES or not _public(item.get("public")):
            continue
        if is_ours(content):
            continue
        created = _str(item.get("created_at")) or ""
        out.append(
            (
                created,
                AgentReply(
                    account=account,
                    desk=Desk.UDESK,
                    dedup_key=f"reply:{ticket_id}:{reply_id}",
                    ticket_id=ticket_id,
                    external_id=reply_id,
                    text=_text(content, _str(item.get("content_type"))),
                    attachments=_attachments(item.get("attachments")),
                    author_name=_str(author.get("nick_name") or author.get("name")),
                    occurred_at=_when(created) or datetime.now(UTC),
                ),
            )
        )
    out.sort(key=lambda pair: (_when(pair[0]) or datetime.max.replace(tzinfo=UTC), pair[1]))
    return [reply for _, reply in out], seen


def verify_callback(req: RawRequest, secret: str | None) -> None:
    """Raise ``SignatureInvalid`` unless the URL carries the account's ``?secret=``.
    Udesk signs nothing, so the secret in the URL is the only proof."""
    given = req.query.get("secret", "")
    if not secret or not given:
        raise SignatureInvalid("udesk callback: no secret")
    if not hmac.compare_digest(given.encode(), secret.encode()):
        raise SignatureInvalid("udesk callback: wrong secret")


def parse_callback(req: RawRequest, *, account: str) -> list[AgentReply]:
    """Agent replies in a trigger's callback body. Udesk's own event callbacks
    (``{"action", "message"}``) and other valid JSON carry none and give ``[]``."""
    data = load_object(req.body, what="udesk callback")
    if data.get("deskbridge") != TRIGGER_SHAPE:
        return []
    ticket_id = _str(data.get("ticket_id"))
    reply_id = _str(data.get("reply_id"))
    if ticket_id is None or reply_id is None or not _str(data.get("content")):
        # a trigger without the reply itself: the poller brings it
        return []
    item = {
        "id": reply_id,
        "content": data.get("content"),
        "content_type": data.get("content_type"),
        "public": data.get("public"),
        "created_at": data.get("created_at"),
        "attachments": data.get("attachments"),
        "author": {"user_type": data.get("user_type"), "nick_name": data.get("author_name")},
    }
    replies, _ = agent_replies(account, ticket_id, [item], skip=set())
    return replies


def _public(value: Any) -> bool:
    if value is None or value == "":
        return True
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() not in _FALSE


def _text(content: str, content_type: str | None) -> str:
    if (content_type or "").lower() == "html" or content.lstrip().startswith("<"):
        return to_text(content)
    return content.strip()


def _attachments(value: Any) -> tuple[Attachment, ...]:
    if not isinstance(value, list):
        return ()
    out: list[Attachment] = []
    for item in value:
        if not isinstance(item, Mapping):
            continue
        url = _str(item.get("url"))
        if not url:
            continue
        name = _str(item.get("file_name") or item.get("name"))
        size = item.get("size")
        out.append(
            Attachment(
                kind=_kind(name or url),
                ref=url,
                filename=name,
                size=size if isinstance(size, int) and not isinstance(size, bool) else None,
            )
        )
    return tuple(out)


def _kind(name: str) -> AttachmentKind:
    ext = name.rsplit("?", 1)[0].rsplit(".", 1)[-1].lower()
    if ext in ("jpg", "jpeg", "png", "gif", "webp", "bmp"):
        return "image"
    if ext in ("mp4", "mov", "webm", "3gp"):
        return "video"
    if ext in ("mp3", "m4a", "ogg", "wav", "amr", "aac"):
        return "audio"
    return "document"


def _when(value: str) -> datetime | None:
    for fmt in ("%Y-%m-%d %H:%M:%S %z", "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d %H:%M:%S"):
        try:
            when = datetime.strptime(value.strip(), fmt)
        except ValueError:
            continue
        return when if when.tzinfo else when.replace(tzinfo=UTC)
    return None


def _str(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None
