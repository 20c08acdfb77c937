"""Realistic Twilio webhook forms for ``deskbridge simulate sms`` and tests."""

from __future__ import annotations

import hashlib
from urllib.parse import urlencode

__all__ = ["sample_message", "sample_status"]


def _sid(prefix: str, seed: str) -> str:
    return prefix + hashlib.sha256(seed.encode()).hexdigest()[:32]


def sample_message(
    text: str, *, account_sid: str, sender: str, to: str, seed: str, media: tuple[str, ...] = ()
) -> bytes:
    """An inbound SMS (MMS with ``media`` URLs) as Twilio posts it: a form body (sign it
    with ``adapters.sms.signature.sign`` over the URL and these parameters)."""
    sid = _sid("MM" if media else "SM", seed)
    form = [
        ("ToCountry", "US"),
        ("SmsMessageSid", sid),
        ("NumMedia", str(len(media))),
        ("SmsSid", sid),
        ("SmsStatus", "received"),
        ("Body", text),
        ("To", to),
        ("NumSegments", "1"),
        ("MessageSid", sid),
        ("AccountSid", account_sid),
        ("From", sender),
        ("ApiVersion", "2010-04-01"),
    ]
    for i, url in enumerate(media):
        form += [(f"MediaContentType{i}", "image/jpeg"), (f"MediaUrl{i}", url)]
    return urlencode(form).encode()


def sample_status(
    status: str, *, account_sid: str, message_sid: str, sender: str, to: str, error: str = ""
) -> bytes:
    """A status callback for a message we sent."""
    form = [
        ("SmsSid", message_sid),
        ("SmsStatus", status),
        ("MessageStatus", status),
        ("To", to),
        ("MessageSid", message_sid),
        ("AccountSid", account_sid),
        ("From", sender),
        ("ApiVersion", "2010-04-01"),
    ]
    if error:
        form.append(("ErrorCode", error))
    return urlencode(form).encode()
