"""A visitor's message frame (JSON, from the widget's socket) → a normalized ``Message``.
Pure: the gateway has checked the visitor's identity and the origin before."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from deskbridge.adapters.webchat.identity import Visitor
from deskbridge.errors import PayloadInvalid
from deskbridge.identity.normalize import email_key
from deskbridge.schemas import Attachment, Channel, Identity, Message, Sender

__all__ = ["CLIENT_ID", "message"]

CLIENT_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")
"""The widget's id for a message: a resend after a reconnect carries the same one."""


def _identities(visitor: Visitor, offline_email: str | None) -> tuple[Identity, ...]:
    out = [Identity(kind="channel_user", value=visitor.id, channel=Channel.WEBCHAT)]
    email = email_key(visitor.email) if visitor.verified and visitor.email else None
    if email and visitor.email_verified:
        # the site signed the email (identity verification): it joins the email contact
        out.append(
            Identity(kind="email", value=email, strength="strong", source="webchat_verified")
        )
    elif email:
        # sent beside a signed user id without its own email_hash: the signature does not
        # cover it, and anyone signed in could name another person's address: a hint only
        out.append(Identity(kind="email", value=email, strength="weak", source="webchat_site"))
    elif offline_email:
        out.append(
            Identity(
                kind="email",
                value=offline_email,
                strength="weak",
                source="webchat_offline_form",
            )
        )
    return tuple(out)


def message(
    account: str,
    visitor: Visitor,
    frame: dict[str, Any],
    *,
    now: datetime,
    max_chars: int,
    files: Sequence[Attachment] = (),
) -> Message:
    """The ``message`` (or ``offline``) frame's ``Message``, carrying ``files`` (the
    uploads its ``files`` ids name, resolved by the caller). Raises ``PayloadInvalid``
    naming what is wrong (an id, an empty or too long text, an email)."""
    cid = frame.get("id")
    text = frame.get("text", "") if files else frame.get("text")
    if not isinstance(cid, str) or not CLIENT_ID.fullmatch(cid):
        raise PayloadInvalid("webchat: the message needs an id of 8-64 [A-Za-z0-9_-]")
    if not isinstance(text, str) or not (text.strip() or files):
        raise PayloadInvalid("webchat: the message has no text")
    if len(text) > max_chars:
        raise PayloadInvalid(f"webchat: the text is longer than {max_chars} characters")
    offline_email = None
    note = None
    if frame.get("type") == "offline":
        email = frame.get("email")
        if not isinstance(email, str):
            raise PayloadInvalid("webchat: the offline form needs an email")
        offline_email = email_key(email) if len(email) <= 254 else None
        if offline_email is None:
            raise PayloadInvalid("webchat: the offline form's email is not valid")
        note = "Left on the website's offline form (outside business hours)"
    return Message(
        account=account,
        channel=Channel.WEBCHAT,
        dedup_key=f"{visitor.id}:{cid}",
        thread=visitor.id,
        occurred_at=now,
        external_id=cid,
        sender=Sender(
            external_id=visitor.id,
            display_name=visitor.name,
            language=visitor.language,
            identities=_identities(visitor, offline_email),
        ),
        text=text,
        attachments=tuple(files),
        note=note,
        context={"email": offline_email} if offline_email else {},
    )
