"""Composing an agent's reply as an email that mail clients thread under the customer's
message (RFC 5322 section 3.6.4).

Pure: the reply, the thread's headers and the files in; an ``EmailMessage`` out.
"""

from __future__ import annotations

import html
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import format_datetime, formataddr

from deskbridge.schemas import AgentReply, Upload

__all__ = ["Thread", "compose_reply", "new_message_id", "reply_subject"]

# Reply prefixes of common clients and languages; a subject that has one is kept as is.
_REPLY_PREFIX = re.compile(
    r"^\s*(re|aw|sv|vs|antw|réf|rif|odp|ynt|回复|答复|返信)\s*[:\uff1a]", re.IGNORECASE
)


@dataclass(frozen=True, slots=True)
class Thread:
    """What the customer's last message said about its place in the conversation."""

    subject: str
    message_id: str | None
    """The customer's message's Message-ID, without angle brackets."""
    references: Sequence[str] = field(default_factory=tuple)
    in_reply_to: Sequence[str] = field(default_factory=tuple)


def new_message_id(domain: str) -> str:
    """A unique Message-ID (without angle brackets) in our own domain."""
    return f"{uuid.uuid4().hex}@{domain}"


def reply_subject(subject: str) -> str:
    """``Re: <original>``, without stacking prefixes ("Re: Re: ...")."""
    subject = " ".join(subject.split()) or "Your message"
    return subject if _REPLY_PREFIX.match(subject) else f"Re: {subject}"


def _references(thread: Thread) -> list[str]:
    # RFC 5322 3.6.4: the parent's References (or, lacking them, its single In-Reply-To),
    # followed by the parent's Message-ID
    refs = list(thread.references) or (
        list(thread.in_reply_to) if len(thread.in_reply_to) == 1 else []
    )
    if thread.message_id:
        refs.append(thread.message_id)
    return list(dict.fromkeys(refs))


def compose_reply(
    reply: AgentReply,
    *,
    sender: str,
    sender_name: str | None,
    to: str,
    thread: Thread,
    reply_to: str | None,
    domain: str,
    files: Sequence[Upload] = (),
    message_id: str | None = None,
) -> EmailMessage:
    """The reply as a threaded email: our own Message-ID, In-Reply-To and References from
    the thread, ``Re:`` subject, Reply-To (the plus address carrying the ticket token),
    ``Auto-Submitted: auto-replied`` only for automated replies, a text and an HTML part,
    and the files as attachments."""
    msg = EmailMessage()
    msg["From"] = formataddr((sender_name or "", sender))
    msg["To"] = to
    msg["Subject"] = reply_subject(thread.subject)
    msg["Date"] = format_datetime(reply.occurred_at)
    msg["Message-ID"] = f"<{message_id or new_message_id(domain)}>"
    if thread.message_id:
        msg["In-Reply-To"] = f"<{thread.message_id}>"
    refs = _references(thread)
    if refs:
        msg["References"] = " ".join(f"<{r}>" for r in refs)
    if reply_to:
        msg["Reply-To"] = reply_to
    if reply.automated:
        msg["Auto-Submitted"] = "auto-replied"
    msg["X-Deskbridge"] = "reply"
    text = reply.text or ""
    msg.set_content(text)
    paragraphs = "".join(
        f"<p>{html.escape(p).replace(chr(10), '<br>')}</p>" for p in text.split("\n\n") if p.strip()
    )
    msg.add_alternative(f"<!doctype html><html><body>{paragraphs}</body></html>", subtype="html")
    for f in files:
        maintype, _, subtype = (f.mime_type or "application/octet-stream").partition("/")
        msg.add_attachment(
            f.data,
            maintype=maintype or "application",
            subtype=subtype or "octet-stream",
            filename=f.filename,
        )
    return msg
