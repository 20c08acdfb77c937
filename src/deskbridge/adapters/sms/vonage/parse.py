"""Vonage Messages API webhooks (v1) to normalized events (pure).

Per the Messages API reference (developer.vonage.com/en/api/messages, its OpenAPI
document ``messages-olympus`` v1, and the official SDKs' webhook models, e.g.
vonage-java-sdk ``InboundMessage`` and ``MessageStatus``):

- inbound SMS: ``channel`` ``sms``, ``message_uuid``, ``to`` (our number), ``from`` (the
  customer; E.164 digits without ``+``), ``timestamp`` (ISO 8601), ``text``,
  ``sms.num_messages``, ``sms.keyword``;
- inbound MMS: ``channel`` ``mms``, ``message_type`` ``text``, ``image``, ``audio``,
  ``video``, ``file`` or ``vcard`` (an object with ``url``, ``name``, a ``caption`` on
  images and files), and ``content`` (``[{type, url}]``) when it has several files;
- status: ``message_uuid``, ``to`` (the customer), ``from``, ``timestamp``, ``channel``,
  ``status`` (``submitted``, ``delivered``, ``rejected``, ``undeliverable``; ``read`` on
  channels that have it) and ``error`` (``type``, ``title`` = the code, ``detail``).

Webhooks of the application's other channels (WhatsApp, RCS, ...) are not SMS: ignored
by name (``other_channel``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from deskbridge.adapters.base import Parsed
from deskbridge.adapters.sms.common import MAX_MEDIA, inbound, keyword
from deskbridge.adapters.sms.vonage.codes import describe
from deskbridge.errors import ParseFailed
from deskbridge.identity.normalize import phone_key
from deskbridge.identity.phones import e164
from deskbridge.schemas import Attachment, AttachmentKind, Channel, StatusUpdate

__all__ = ["parse"]

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_CODE = re.compile(r"^\d{1,5}$")

# Vonage's statuses; what they tell about a reply we sent
_STATUS: dict[str, Literal["sent", "delivered", "read", "failed"]] = {
    "submitted": "sent",
    "delivered": "delivered",
    "read": "read",
    "rejected": "failed",
    "undeliverable": "failed",
}
# an MMS part's object name → what deskbridge files it as (vCards are documents)
_MEDIA: dict[str, tuple[AttachmentKind, str | None]] = {
    "image": ("image", None),
    "audio": ("audio", None),
    "video": ("video", None),
    "file": ("document", None),
    "vcard": ("document", "text/vcard"),
}


def parse(doc: Mapping[str, Any], *, account: str, now: datetime) -> Parsed:
    """The events of one Vonage webhook. ``ParseFailed`` when it names no message
    (never quoting the body)."""
    uuid = doc.get("message_uuid")
    if not isinstance(uuid, str) or not _UUID.fullmatch(uuid):
        raise ParseFailed("sms: no readable message_uuid")
    uuid = uuid.lower()
    if doc.get("channel") not in ("sms", "mms"):
        return Parsed([], ignored=("other_channel",))
    occurred = _when(doc.get("timestamp")) or now
    if "status" in doc:
        return _status(doc, uuid, account=account, occurred=occurred)
    return _inbound(doc, uuid, account=account, occurred=occurred)


def _when(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _number(value: Any) -> str | None:
    """A Vonage number (E.164 digits without ``+``) in E.164."""
    raw = _text(value).strip()
    return e164(raw, international=True) if raw.lstrip("+").isdigit() else None


def _status(doc: Mapping[str, Any], uuid: str, *, account: str, occurred: datetime) -> Parsed:
    raw = _text(doc.get("status")).strip().lower()
    status = _STATUS.get(raw)
    if status is None:
        return Parsed([], ignored=("status_other",))
    customer = _number(doc.get("to"))
    code = _error_code(doc.get("error")) if status == "failed" else None
    error = None
    if status == "failed":
        error = f"Vonage error {code} ({describe(code)})" if code else "Vonage gave no reason"
    return Parsed(
        [
            StatusUpdate(
                account=account,
                channel=Channel.SMS,
                dedup_key=f"{raw}:{uuid}",
                thread=phone_key(customer) if customer else uuid,
                occurred_at=occurred,
                external_id=uuid,
                status=status,
                error_code=code,
                error=error,
            )
        ]
    )


def _error_code(error: Any) -> str | None:
    """The numeric code of a status's ``error``: its ``title``, else the fragment of its
    ``type`` URL (``.../api-errors/messages#1240``)."""
    if not isinstance(error, Mapping):
        return None
    for candidate in (_text(error.get("title")), _text(error.get("type")).rpartition("#")[2]):
        if _CODE.fullmatch(candidate.strip()):
            return candidate.strip()
    return None


def _inbound(doc: Mapping[str, Any], uuid: str, *, account: str, occurred: datetime) -> Parsed:
    phone = _number(doc.get("from"))
    if phone is None:
        # a short code or an alphanumeric sender cannot be answered as a person
        return Parsed([], ignored=("no_phone_sender",))
    attachments, notes, caption = _media(doc)
    text = _text(doc.get("text")) or caption
    if not (text or attachments or notes) and doc.get("message_type") not in (None, "text"):
        notes.append("An MMS deskbridge cannot show (Vonage sent no text or file)")
    ours = _number(doc.get("to"))
    return inbound(
        account=account,
        message_id=uuid,
        phone=phone,
        text=text,
        attachments=attachments,
        notes=notes,
        word=keyword(text),
        occurred_at=occurred,
        context={"to": ours or _text(doc.get("to")), "from": phone},
    )


def _media(doc: Mapping[str, Any]) -> tuple[list[Attachment], list[str], str]:
    """The files of an MMS (its ``content`` list, else its one typed object), notes on
    those that cannot be fetched, and the caption of a single image or file."""
    parts: list[tuple[str, Mapping[str, Any]]] = []
    content = doc.get("content")
    if isinstance(content, list):
        parts = [(_text(p.get("type")), p) for p in content if isinstance(p, Mapping)]
    else:
        parts = [(k, doc[k]) for k in _MEDIA if isinstance(doc.get(k), Mapping)]
    attachments: list[Attachment] = []
    notes: list[str] = []
    caption = ""
    for i, (kind, part) in enumerate(parts[:MAX_MEDIA]):
        url = _text(part.get("url"))
        if not url.startswith("https://"):
            notes.append(f"MMS media {i} without an https URL")
            continue
        filed_as, mime = _MEDIA.get(kind, ("document", None))
        name = _text(part.get("name")) or None
        attachments.append(Attachment(kind=filed_as, ref=url, filename=name, mime_type=mime))
        caption = caption or _text(part.get("caption"))
    return attachments, notes, caption
