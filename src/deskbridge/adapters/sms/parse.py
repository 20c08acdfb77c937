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
from deskbridge.errors import ParseFailed
from deskbridge.identity.normalize import phone_key
from deskbridge.identity.phones import e164
from deskbridge.schemas import (
    Attachment,
    AttachmentKind,
    Channel,
    ChannelEvent,
    Identity,
    InboundEvent,
    Message,
    Sender,
    StatusUpdate,
)

__all__ = ["OPT_IN", "OPT_OUT", "parse"]

# twilio.com/docs/messaging/tutorials/advanced-opt-out: the English keywords Twilio
# handles by default on long codes; opt-in and help per Twilio's support article on
# STOP filtering. Only a message that is the keyword alone counts (case-insensitive).
OPT_OUT = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"})
OPT_IN = frozenset({"START", "YES", "UNSTOP"})
_HELP = frozenset({"HELP", "INFO"})

_SID = re.compile(r"^(SM|MM)[0-9a-f]{32}$")
_MAX_MEDIA = 10  # Twilio: at most 10 media per MMS

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


def _sender(phone: str) -> Sender:
    # the carrier network asserts the originating number, as a trusted trunk's
    # P-Asserted-Identity does for SIP: strong (docs/channels/sms.md)
    return Sender(
        external_id=phone,
        identities=(
            Identity(kind="phone", value=phone, strength="strong", source="sms"),
            Identity(
                kind="channel_user",
                channel=Channel.SMS,
                value=phone,
                strength="strong",
                source="sms",
            ),
        ),
    )


def _inbound(form: Mapping[str, str], sid: str, *, account: str, now: datetime) -> Parsed:
    raw_from = form.get("From", "")
    phone = e164(raw_from)
    if phone is None:
        # a short code or alphanumeric sender cannot be answered as a person
        return Parsed([], ignored=("no_phone_sender",))
    thread = phone_key(phone)
    body = form.get("Body", "")
    attachments, notes = _media(form)
    events: list[InboundEvent] = []
    keyword = _keyword(form, body)
    if keyword in ("opt_out", "opt_in"):
        notes.append(
            "Opted out of SMS: no reply will be sent until they text START"
            if keyword == "opt_out"
            else "Opted back in to SMS"
        )
        events.append(
            ChannelEvent(
                account=account,
                channel=Channel.SMS,
                dedup_key=f"{keyword}:{sid}",
                thread=thread,
                occurred_at=now,
                action=keyword,
                sender=_sender(phone),
                external_id=sid,
            )
        )
    elif keyword == "help":
        notes.append("Asked for HELP (the carrier's keyword)")
    if not (body or attachments or notes):
        notes.append("Empty SMS")
    context = {"to": form.get("To", ""), "from": raw_from}
    events.insert(
        0,
        Message(
            account=account,
            channel=Channel.SMS,
            dedup_key=sid,
            thread=thread,
            occurred_at=now,
            external_id=sid,
            sender=_sender(phone),
            text=body,
            attachments=tuple(attachments),
            note="\n".join(notes) or None,
            context={k: v for k, v in context.items() if v},
        ),
    )
    return Parsed(events)


def _keyword(form: Mapping[str, str], body: str) -> Literal["opt_out", "opt_in", "help"] | None:
    declared = form.get("OptOutType", "").strip().upper()
    word = declared or body.strip().strip(".!").upper()
    if word in OPT_OUT:
        return "opt_out"
    if word in OPT_IN:
        return "opt_in"
    return "help" if word in _HELP else None


def _media(form: Mapping[str, str]) -> tuple[list[Attachment], list[str]]:
    try:
        count = int(form.get("NumMedia", "0") or "0")
    except ValueError:
        raise ParseFailed("sms: NumMedia is not a number") from None
    attachments: list[Attachment] = []
    notes: list[str] = []
    for i in range(min(max(count, 0), _MAX_MEDIA)):
        url = form.get(f"MediaUrl{i}", "")
        mime = form.get(f"MediaContentType{i}", "") or None
        if not url.startswith("https://"):
            notes.append(f"MMS media {i} without an https URL")
            continue
        attachments.append(Attachment(kind=_kind(mime), ref=url, mime_type=mime))
    return attachments, notes


def _kind(mime: str | None) -> AttachmentKind:
    major = (mime or "").partition("/")[0]
    if major in ("image", "audio", "video"):
        return major  # type: ignore[return-value]
    return "document"
