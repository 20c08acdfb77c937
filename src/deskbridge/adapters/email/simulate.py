"""What a customer's mail looks like when an inbound-parse provider forwards it (for
``deskbridge simulate email`` and tests)."""

from __future__ import annotations

import hashlib
import hmac
import urllib.parse
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime

__all__ = ["sample_mail", "sample_mailgun_request"]


def sample_mail(
    text: str, *, sender: str, to: str, message_id: str, subject: str | None = None
) -> bytes:
    """A plain-text customer mail as raw MIME bytes; the subject defaults to the text's
    first line (email tickets take the mail's Subject)."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    first = text.strip().splitlines()
    msg["Subject"] = subject or (first[0][:78] if first else "Question")
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = f"<{message_id}>"
    msg.set_content(text)
    return msg.as_bytes()


def sample_mailgun_request(
    raw: bytes, *, signing_key: str, timestamp: int, recipient: str
) -> bytes:
    """A Mailgun ``forward()`` post to a URL ending in ``mime``, signed: urlencoded
    ``body-mime``, ``timestamp``, ``token`` and ``signature`` (hex HMAC-SHA256 of
    timestamp + token with the signing key)."""
    token = hashlib.sha256(raw).hexdigest()[:50]
    signature = hmac.new(
        signing_key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256
    ).hexdigest()
    fields = {
        "body-mime": raw.decode("latin-1"),
        "timestamp": str(timestamp),
        "token": token,
        "signature": signature,
        "recipient": recipient,
    }
    return urllib.parse.urlencode(fields, encoding="latin-1").encode()
