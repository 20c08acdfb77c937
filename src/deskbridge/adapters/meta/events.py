"""Normalized events Messenger and Instagram build alike from their messaging webhooks
(see ``meta.inbound``): the customer as sender, their messages with notes, postbacks,
edits and receipts. Each builder takes the channel; notes name it by its brand."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Literal

from deskbridge.adapters.meta.inbound import MessageEdit, Postback, QuickReply
from deskbridge.errors import ParseFailed
from deskbridge.schemas import (
    Attachment,
    Channel,
    Identity,
    Location,
    Message,
    Sender,
    StatusUpdate,
)

__all__ = [
    "clip",
    "edit",
    "keyed",
    "message",
    "of_message",
    "postback",
    "required",
    "sender",
    "shared_note",
    "up_to",
    "when",
]

_NOTE_PART_LIMIT = 200

Receipt = Literal["delivered", "read"]


def when(ms: int) -> datetime:
    """Epoch milliseconds as an aware UTC datetime, to the millisecond."""
    return datetime.fromtimestamp(ms // 1000, UTC) + timedelta(milliseconds=ms % 1000)


def clip(text: str, limit: int = _NOTE_PART_LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def required(channel: Channel, ms: int | None) -> int:
    """``ms``; ``ParseFailed`` when neither the event nor its entry has a timestamp."""
    if ms is None:
        raise ParseFailed(f"{channel.value}: an event has no timestamp")
    return ms


def sender(channel: Channel, user: str) -> Sender:
    """The customer by their page- or account-scoped id: strong, it is the channel's own."""
    return Sender(
        external_id=user,
        identities=(
            Identity(
                kind="channel_user",
                channel=channel,
                value=user,
                strength="strong",
                source=channel.value,
            ),
        ),
    )


def message(
    channel: Channel,
    mid: str,
    user: str,
    ms: int,
    *,
    account: str,
    text: str,
    attachments: Sequence[Attachment],
    notes: list[str],
    quick_reply: QuickReply | None,
    reply_to: str | None,
    dropped: Sequence[str],
    location: Location | None = None,
) -> Message:
    """A customer's message, keyed by its ``mid``. Its note is ``notes`` after the payload
    of a tapped quick reply (the text is the button's title; the payload is ours), then the
    fields that could not be read; a message with nothing to show says it is unsupported."""
    if quick_reply is not None and quick_reply.payload:
        notes.insert(0, f"Quick reply: {clip(quick_reply.payload)}")
    if dropped:
        notes.append("Could not read and left out: " + ", ".join(dropped))
    if not (text or attachments or location or notes):
        notes.append(f"Unsupported {channel.brand} message")
    return keyed(
        channel,
        mid,
        user,
        ms,
        account=account,
        text=text,
        attachments=tuple(attachments),
        reply_to=reply_to,
        location=location,
        note="\n".join(notes) or None,
    )


def keyed(
    channel: Channel,
    key: str,
    user: str,
    ms: int,
    *,
    account: str,
    text: str = "",
    attachments: tuple[Attachment, ...] = (),
    location: Location | None = None,
    note: str | None = None,
    reply_to: str | None = None,
    edit_of: str | None = None,
) -> Message:
    """A message from ``user`` at ``ms`` whose dedup key and id are both ``key`` (the
    channel's ``mid``, or one made up for events that carry none)."""
    return Message(
        account=account,
        channel=channel,
        dedup_key=key,
        thread=user,
        occurred_at=when(ms),
        external_id=key,
        sender=sender(channel, user),
        text=text,
        attachments=attachments,
        reply_to=reply_to,
        edit_of=edit_of,
        location=location,
        note=note,
    )


def shared_note(
    channel: Channel, labels: Mapping[str, str], kind: str, *details: str | None
) -> str:
    """What the agent is told of an attachment they cannot be given: its label (or that
    ``kind`` is unsupported), then its ``details`` that are set, each clipped."""
    label = labels.get(kind) or f"Unsupported {channel.brand} attachment ({clip(kind)})"
    text = " ".join(clip(x) for x in details if x)
    return f"{label}: {text}" if text else label


def postback(channel: Channel, pb: Postback, user: str, ms: int, *, account: str) -> Message:
    """A tapped button: its title as the text, its payload in the note."""
    key = pb.mid or f"postback:{user}:{ms}"
    note = f"Button: {clip(pb.payload)}" if pb.payload else "Button"
    return keyed(channel, key, user, ms, account=account, text=pb.title or "", note=note)


def edit(channel: Channel, e: MessageEdit, user: str, ms: int, *, account: str) -> Message:
    """The new text of message ``e.mid``, filed with ``edit_of``."""
    # one key per edit of a message: each edit is its own note on the ticket
    key = f"edit:{e.mid}:{e.num_edit if e.num_edit is not None else ms}"
    return keyed(
        channel,
        key,
        user,
        ms,
        account=account,
        text=e.text or "",
        edit_of=e.mid,
        note=None if e.text else "Edited a message; the new text is empty",
    )


def of_message(
    channel: Channel, status: Receipt, user: str, mid: str, ms: int, *, account: str
) -> StatusUpdate:
    """A receipt for one of our messages, by its ``mid``."""
    return StatusUpdate(
        account=account,
        channel=channel,
        dedup_key=f"{status}:{mid}",
        thread=user,
        occurred_at=when(ms),
        external_id=mid,
        status=status,
    )


def up_to(
    channel: Channel, status: Receipt, user: str, watermark: int, ms: int | None, *, account: str
) -> StatusUpdate:
    """A receipt for every message up to ``watermark``, at ``ms`` (else the watermark)."""
    return StatusUpdate(
        account=account,
        channel=channel,
        dedup_key=f"{status}:{user}:{watermark}",
        thread=user,
        occurred_at=when(ms if ms is not None else watermark),
        watermark=when(watermark),
        status=status,
    )
