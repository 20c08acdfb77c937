"""Instagram webhook bodies to normalized events (pure: bytes in, events or a typed error
out).

Models the subset of Instagram messaging webhooks we read (``messages`` with echoes,
unsends, story replies and mentions, shares; ``message_reactions``; ``messaging_seen``;
``messaging_postbacks``; ``message_edit``):
https://developers.facebook.com/docs/instagram-platform/webhooks/examples and
https://developers.facebook.com/docs/messenger-platform/instagram/features/webhook

Entries are routed by Instagram professional account id (``entry[].id``) before their
events are validated, so an odd event for an account nobody here owns cannot fail the
rest of the batch. Comment and mention ``changes`` are not messages and file nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from deskbridge.adapters.base import Parsed, Skip
from deskbridge.adapters.meta.ignoring import NamingBatch
from deskbridge.adapters.meta.lenient import Loc, leniently
from deskbridge.adapters.payload import dump, item_key, load_object
from deskbridge.adapters.text import escapes_surrogates
from deskbridge.errors import ParseFailed
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

__all__ = ["parse"]

_NOTE_PART_LIMIT = 200
# Story CDN URLs carry a long signed query; a note keeps them whole up to this.
_URL_LIMIT = 2000
_MAX_MS = 253_402_300_799_999

_MEDIA: dict[str, AttachmentKind] = {
    "image": "image",
    "animated_image": "image",
    "audio": "audio",
    "video": "video",
    "file": "document",
}

# Shares the agent can only be told about (the Instagram app shows them as cards).
_SHARED = {
    "share": "Shared a post",
    "ig_reel": "Shared a reel",
    "reel": "Shared a reel",
    "ig_post": "Shared a post",
    "ig_story": "Shared a story",
    "fallback": "Shared a link",
}


def _ms(value: Any) -> Any:
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 16:
        return int(value)
    return value


def _id(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


Millis = Annotated[int, BeforeValidator(_ms), Field(ge=0, le=_MAX_MS)]
Id = Annotated[str, BeforeValidator(_id), Field(min_length=1, max_length=256)]


class _Raw(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)


class Party(_Raw):
    id: Id | None = None


class Payload(_Raw):
    url: str | None = None
    title: str | None = None
    # ig_reel/ig_post shares name the media
    reel_video_id: Id | None = None
    ig_post_media_id: Id | None = None


class RawAttachment(_Raw):
    type: str
    payload: Payload | None = None


class Story(_Raw):
    url: str | None = None
    id: Id | None = None


class ReplyTo(_Raw):
    """``mid`` of the answered message, or the ``story`` the customer replied to."""

    mid: str | None = None
    story: Story | None = None


class QuickReply(_Raw):
    payload: str | None = None


class RawMessage(_Raw):
    mid: str = Field(min_length=1)
    text: str | None = None
    is_echo: bool = False
    is_deleted: bool = False
    is_unsupported: bool = False
    quick_reply: QuickReply | None = None
    reply_to: ReplyTo | None = None
    attachments: list[RawAttachment] | None = None


class Reaction(_Raw):
    """``message_reactions``: ``action`` is ``react`` or ``unreact``; ``emoji`` and the
    ``reaction`` name are absent on an unreact."""

    mid: str = Field(min_length=1)
    action: str
    reaction: str | None = None
    emoji: str | None = None


class Postback(_Raw):
    mid: str | None = None
    title: str | None = None
    payload: str | None = None


class MessageEdit(_Raw):
    mid: str = Field(min_length=1)
    text: str | None = None
    num_edit: Id | None = None


class Read(_Raw):
    """``messaging_seen``: the last message the customer saw, by ``mid``."""

    mid: str | None = None
    watermark: Millis | None = None


class Messaging(_Raw):
    sender: Party = Party()
    recipient: Party = Party()
    timestamp: Millis | None = None
    message: RawMessage | None = None
    reaction: Reaction | None = None
    postback: Postback | None = None
    message_edit: MessageEdit | None = None
    read: Read | None = None


class Entry(_Raw):
    id: Id
    time: Millis | None = None
    messaging: list[Any] | None = None


class Envelope(_Raw):
    object: str
    entry: list[dict[str, Any]]


def parse(body: bytes, *, routes: Mapping[str, str]) -> Parsed:
    """Events in one webhook body, each for the account ``routes`` maps its Instagram
    account id to. Raises ``PayloadInvalid`` when the body is not a JSON object,
    ``ParseFailed`` when it is not an Instagram webhook at all; inside it every
    ``messaging[]`` event is read on its own, as for Messenger."""
    raw = load_object(body, what="instagram")
    try:
        envelope = Envelope.model_validate(raw)
    except ValidationError as exc:
        raise ParseFailed(
            f"instagram: not a readable Instagram webhook ({exc.error_count()} errors)"
        ) from None
    if envelope.object != "instagram":
        raise ParseFailed("instagram: not an Instagram webhook (object is not 'instagram')")
    batch = NamingBatch("instagram", surrogates=escapes_surrogates(body))
    for raw_entry in envelope.entry:
        _entry(batch, routes, raw_entry)
    return batch.parsed(
        lambda account: dump({"object": "instagram", "entry": batch.owned[account]})
    )


def _owner(raw: dict[str, Any], routes: Mapping[str, str]) -> str | None:
    ig = _id(raw.get("id"))
    return routes.get(ig, "") if isinstance(ig, str) and ig else None


def _entry(batch: NamingBatch, routes: Mapping[str, str], raw: dict[str, Any]) -> None:
    try:
        entry = Entry.model_validate(raw)
    except ValidationError as exc:
        owner = _owner(raw, routes)
        if owner == "":
            batch.unrouted += 1
            batch.mixed = True
        else:
            error = f"instagram: an entry is not readable ({exc.error_count()} errors)"
            batch.fail(owner, item_key(raw), dump({"object": "instagram", "entry": [raw]}), error)
        return
    account = routes.get(entry.id)
    if account is None:
        batch.unrouted += 1
        batch.mixed = True
        return
    batch.own(account, raw)
    head = {k: v for k, v in raw.items() if k != "messaging"}

    def record(item: Any) -> bytes:
        return dump({"object": "instagram", "entry": [{**head, "messaging": [item]}]})

    def read(item: Any) -> list[InboundEvent]:
        event, dropped = leniently(Messaging, item, _leave_out)
        events = _events(entry, event, account=account, dropped=dropped)
        if not events:
            batch.ignore(_why(item))
        return events

    for item in entry.messaging or ():
        batch.item(account, item, record, read)
    if not entry.messaging:
        # comment and mention `changes`, handover `standby`
        reason = "standby" if raw.get("standby") else "changes" if raw.get("changes") else None
        batch.ignore(reason or "no_messaging", account)


def _leave_out(loc: Loc) -> Loc | None:
    if len(loc) >= 3 and loc[:2] == ("message", "attachments") and isinstance(loc[2], int):
        return loc[:3]
    if len(loc) >= 2 and loc[0] == "message" and loc[1] not in ("mid", "is_echo", "is_deleted"):
        return loc[:2]
    return None


_UNFILED = ("referral", "optin", "pass_thread_control", "take_thread_control")


def _why(raw: Any) -> str:
    keys = raw.keys() if isinstance(raw, dict) else ()
    return next((k for k in keys if k in _UNFILED), "other_event")


def _when(ms: int) -> datetime:
    return datetime.fromtimestamp(ms // 1000, UTC) + timedelta(milliseconds=ms % 1000)


def _clip(text: str, limit: int = _NOTE_PART_LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _required(ms: int | None) -> int:
    if ms is None:
        raise ParseFailed("instagram: an event has no timestamp")
    return ms


def _events(
    entry: Entry, item: Messaging, *, account: str, dropped: Sequence[str] = ()
) -> list[InboundEvent]:
    igsid = item.sender.id
    if igsid is None:
        raise Skip("no_sender")
    msg = item.message
    # What the account sent (from this app, another app or the Instagram app) comes
    # back as an echo: the sender is the account itself.
    if igsid == entry.id or (msg is not None and msg.is_echo):
        raise Skip("echo", msg.mid if msg is not None else "")
    ms = item.timestamp if item.timestamp is not None else entry.time
    if msg is not None:
        if msg.is_deleted:
            return [_unsend(msg.mid, igsid, _required(ms), account=account)]
        return [_message(msg, igsid, _required(ms), account=account, dropped=dropped)]
    if item.reaction is not None:
        return [_reaction(item.reaction, igsid, _required(ms), account=account)]
    if item.postback is not None:
        return [_postback(item.postback, igsid, _required(ms), account=account)]
    if item.message_edit is not None:
        return [_edit(item.message_edit, igsid, _required(ms), account=account)]
    if item.read is not None:
        return _seen(item.read, igsid, ms, account=account)
    return []


def _sender(igsid: str) -> Sender:
    return Sender(
        external_id=igsid,
        identities=(
            Identity(
                kind="channel_user",
                channel=Channel.INSTAGRAM,
                value=igsid,
                strength="strong",
                source="instagram",
            ),
        ),
    )


def _message(
    msg: RawMessage, igsid: str, ms: int, *, account: str, dropped: Sequence[str] = ()
) -> Message:
    attachments, notes = _content(msg.attachments or [])
    reply_to = None
    if msg.reply_to is not None:
        reply_to = msg.reply_to.mid
        story = msg.reply_to.story
        if story is not None:
            # the story expires within 24 hours: the agent gets its link, not a copy
            detail = f" {story.id}" if story.id else ""
            link = f": {_clip(story.url, _URL_LIMIT)}" if story.url else ""
            notes.insert(0, f"Replied to your story{detail}{link}")
    if msg.quick_reply is not None and msg.quick_reply.payload:
        notes.insert(0, f"Quick reply: {_clip(msg.quick_reply.payload)}")
    if msg.is_unsupported:
        notes.append("Unsupported Instagram message (the API does not deliver this content)")
    if dropped:
        notes.append("Could not read and left out: " + ", ".join(dropped))
    text = msg.text or ""
    if not (text or attachments or notes):
        notes.append("Unsupported Instagram message")
    return Message(
        account=account,
        channel=Channel.INSTAGRAM,
        dedup_key=msg.mid,
        thread=igsid,
        occurred_at=_when(ms),
        external_id=msg.mid,
        sender=_sender(igsid),
        text=text,
        attachments=tuple(attachments),
        reply_to=reply_to,
        note="\n".join(notes) or None,
    )


def _content(raw: list[RawAttachment]) -> tuple[list[Attachment], list[str]]:
    attachments: list[Attachment] = []
    notes: list[str] = []
    for a in raw:
        url = a.payload.url if a.payload else None
        if a.type in _MEDIA:
            if url:
                attachments.append(Attachment(kind=_MEDIA[a.type], ref=url))
            else:
                notes.append(f"Instagram {a.type} without a URL")
        elif a.type == "story_mention":
            # Meta: the story's media must not be stored, only its CDN URL
            link = f": {_clip(url, _URL_LIMIT)}" if url else ""
            notes.append(f"Mentioned you in their story{link}")
        else:
            label = _SHARED.get(a.type) or f"Unsupported Instagram attachment ({_clip(a.type)})"
            p = a.payload
            media = (p.reel_video_id or p.ig_post_media_id) if p else None
            title = p.title if p else None
            media_note = f"(media {media})" if media else None
            details = " ".join(_clip(x) for x in (title, url, media_note) if x)
            notes.append(f"{label}: {details}" if details else label)
    return attachments, notes


def _unsend(mid: str, igsid: str, ms: int, *, account: str) -> ChannelEvent:
    return ChannelEvent(
        account=account,
        channel=Channel.INSTAGRAM,
        dedup_key=f"unsend:{mid}",
        thread=igsid,
        occurred_at=_when(ms),
        action="unsend",
        sender=_sender(igsid),
        external_id=mid,
    )


def _reaction(r: Reaction, igsid: str, ms: int, *, account: str) -> Message:
    # one key per reaction change: reacting, unreacting and reacting again are three notes
    key = f"reaction:{r.mid}:{igsid}:{r.action}:{ms}"
    if r.action == "unreact":
        note = f"Removed a reaction from message {r.mid}"
    else:
        what = r.emoji or r.reaction or "a reaction"
        note = f"Reacted {what} to message {r.mid}"
    return Message(
        account=account,
        channel=Channel.INSTAGRAM,
        dedup_key=key,
        thread=igsid,
        occurred_at=_when(ms),
        external_id=key,
        sender=_sender(igsid),
        reply_to=r.mid,
        note=note,
    )


def _postback(pb: Postback, igsid: str, ms: int, *, account: str) -> Message:
    key = pb.mid or f"postback:{igsid}:{ms}"
    return Message(
        account=account,
        channel=Channel.INSTAGRAM,
        dedup_key=key,
        thread=igsid,
        occurred_at=_when(ms),
        external_id=key,
        sender=_sender(igsid),
        text=pb.title or "",
        note=f"Button: {_clip(pb.payload)}" if pb.payload else "Button",
    )


def _edit(edit: MessageEdit, igsid: str, ms: int, *, account: str) -> Message:
    key = f"edit:{edit.mid}:{edit.num_edit if edit.num_edit is not None else ms}"
    return Message(
        account=account,
        channel=Channel.INSTAGRAM,
        dedup_key=key,
        thread=igsid,
        occurred_at=_when(ms),
        external_id=key,
        sender=_sender(igsid),
        text=edit.text or "",
        edit_of=edit.mid,
        note=None if edit.text else "Edited a message; the new text is empty",
    )


def _seen(read: Read, igsid: str, ms: int | None, *, account: str) -> list[InboundEvent]:
    when = ms if ms is not None else read.watermark
    if when is None:
        raise ParseFailed("instagram: a read receipt has no timestamp")
    if read.mid:
        return [
            StatusUpdate(
                account=account,
                channel=Channel.INSTAGRAM,
                dedup_key=f"read:{read.mid}",
                thread=igsid,
                occurred_at=_when(when),
                external_id=read.mid,
                status="read",
            )
        ]
    if read.watermark is None:
        return []
    return [
        StatusUpdate(
            account=account,
            channel=Channel.INSTAGRAM,
            dedup_key=f"read:{igsid}:{read.watermark}",
            thread=igsid,
            occurred_at=_when(when),
            watermark=_when(read.watermark),
            status="read",
        )
    ]
