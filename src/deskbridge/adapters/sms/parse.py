"""Twilio Programmable Messaging webhooks to normalized events (pure).

Inbound messages (twilio.com/docs/messaging/guides/webhook-request): ``MessageSid``,
``AccountSid``, ``From``, ``To``, ``Body``, ``NumMedia`` with ``MediaUrl{N}`` and
``MediaContentType{N}``, ``OptOutType`` (``STOP``/``START``/``HELP`` when the Messaging
Service has Advanced Opt-Out). Status callbacks (twilio.com/docs/messaging/guides/
track-outbound-message-status): ``MessageSid``, ``MessageStatus``, ``ErrorCode``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Literal

from deskbridge.adapters.base import Parsed
from deskbridge.adapters.sms.common import MAX_MEDIA, attachment_kind, inbound, keyword
from deskbridge.errors import ParseFailed
from deskbridge.identity.normalize import phone_key
from deskbridge.identity.phones import e164
from deskbridge.schemas import Attachment, Channel, StatusUpdate

__all__ = ["parse"]

_SID = re.compile(r"^(SM|MM)[0-9a-f]{32}$")

# Twilio's MessageStatus values; what they tell about a reply we sent
_STATUS: dict[str, Literal["sent", "delivered", "read", "failed"]] = {
    "sent": "sent",
    "delivered": "delivered",
    "read": "read",
    "failed": "failed",
    "undelivered": "failed",
}
_INTERIM = frozenset(
    {"accepted", "scheduled", "queued", "sending", "canceled", "partially_delivered"}
)


def parse(
    params: Sequence[tuple[str, str]], *, account: str, account_sid: str, now: datetime
) -> Parsed:
    """The events of one Twilio webhook. ``ParseFailed`` when it is not a message or a
    status callback of this Twilio account (never quoting the body)."""
    form: dict[str, str] = {}
    for name, value in params:
        form.setdefault(name, value)
    if form.get("AccountSid", account_sid) != account_sid:
        raise ParseFailed("sms: the webhook names another Twilio account")
    sid = form.get("MessageSid") or form.get("SmsSid") or ""
    if not _SID.fullmatch(sid):
        raise ParseFailed("sms: no readable MessageSid")
    if "MessageStatus" in form and "Body" not in form and "NumMedia" not in form:
        return _status(form, sid, account=account, now=now)
    return _inbound(form, sid, account=account, now=now)


def _status(form: Mapping[str, str], sid: str, *, account: str, now: datetime) -> Parsed:
    raw = form["MessageStatus"].strip().lower()
    status = _STATUS.get(raw)
    if status is None:
        return Parsed([], ignored=(f"status_{raw}" if raw in _INTERIM else "status_other",))
    to = e164(form.get("To", ""))
    error = form.get("ErrorCode") or None
    return Parsed(
        [
            StatusUpdate(
                account=account,
                channel=Channel.SMS,
                dedup_key=f"{raw}:{sid}",
                thread=phone_key(to) if to else form.get("To", "") or sid,
                occurred_at=now,
                external_id=sid,
                status=status,
                error_code=error if status == "failed" else None,
                error=f"Twilio error {error}" if error and status == "failed" else None,
            )
        ]
    )


def _inbound(form: Mapping[str, str], sid: str, *, account: str, now: datetime) -> Parsed:
    raw_from = form.get("From", "")
    phone = e164(raw_from)
    if phone is None:
        # a short code or alphanumeric sender cannot be answered as a person
        return Parsed([], ignored=("no_phone_sender",))
    body = form.get("Body", "")
    attachments, notes = _media(form)
    return inbound(
        account=account,
        message_id=sid,
        phone=phone,
        text=body,
        attachments=attachments,
        notes=notes,
        word=keyword(body, form.get("OptOutType", "")),
        occurred_at=now,
        context={"to": form.get("To", ""), "from": raw_from},
    )


def _media(form: Mapping[str, str]) -> tuple[list[Attachment], list[str]]:
    try:
        count = int(form.get("NumMedia", "0") or "0")
    except ValueError:
        raise ParseFailed("sms: NumMedia is not a number") from None
    attachments: list[Attachment] = []
    notes: list[str] = []
    for i in range(min(max(count, 0), MAX_MEDIA)):
        url = form.get(f"MediaUrl{i}", "")
        mime = form.get(f"MediaContentType{i}", "") or None
        if not url.startswith("https://"):
            notes.append(f"MMS media {i} without an https URL")
            continue
        attachments.append(Attachment(kind=attachment_kind(mime), ref=url, mime_type=mime))
    return attachments, notes
