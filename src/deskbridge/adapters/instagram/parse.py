"""Instagram webhook bodies to normalized events (pure: bytes in, events or a typed error
out).

Models the subset of Instagram messaging webhooks we read (``messages`` with echoes,
unsends, story replies and mentions, shares; ``message_reactions``; ``messaging_seen``;
``messaging_postbacks``; ``message_edit``):
https://developers.facebook.com/docs/instagram-platform/webhooks/examples and
https://developers.facebook.com/docs/messenger-platform/instagram/features/webhook

What Instagram shares with Messenger (the envelope, routing entries by Instagram
professional account id before their events are validated, postbacks, edits, the
message's note) is in ``meta.inbound`` and ``meta.events``; this module reads what is
Instagram's own. Comment and mention ``changes`` are not messages and file nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pydantic import Field

from deskbridge.adapters.base import Parsed, Skip
from deskbridge.adapters.meta import events as build
from deskbridge.adapters.meta import inbound
from deskbridge.adapters.meta.inbound import Entry, Id, Millis, Raw
from deskbridge.errors import ParseFailed
from deskbridge.schemas import (
    Attachment,
    AttachmentKind,
    Channel,
    ChannelEvent,
    InboundEvent,
    Message,
)

__all__ = ["parse"]

_CHANNEL = Channel.INSTAGRAM
# Story CDN URLs carry a long signed query; a note keeps them whole up to this.
_URL_LIMIT = 2000

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


class Payload(inbound.Payload):
    # ig_reel/ig_post shares name the media
    reel_video_id: Id | None = None
    ig_post_media_id: Id | None = None


class RawAttachment(inbound.RawAttachment):
    payload: Payload | None = None


class Story(Raw):
    url: str | None = None
    id: Id | None = None


class ReplyTo(Raw):
    """``mid`` of the answered message, or the ``story`` the customer replied to."""

    mid: str | None = None
    story: Story | None = None


class RawMessage(inbound.RawMessage):
    is_deleted: bool = False
    is_unsupported: bool = False
    reply_to: ReplyTo | None = None
    attachments: list[RawAttachment] | None = None


class Reaction(Raw):
    """``message_reactions``: ``action`` is ``react`` or ``unreact``; ``emoji`` and the
    ``reaction`` name are absent on an unreact."""

    mid: str = Field(min_length=1)
    action: str
    reaction: str | None = None
    emoji: str | None = None


class Read(Raw):
    """``messaging_seen``: the last message the customer saw, by ``mid``."""

    mid: str | None = None
    watermark: Millis | None = None


class Messaging(inbound.Messaging):
    message: RawMessage | None = None
    reaction: Reaction | None = None
    read: Read | None = None


def parse(body: bytes, *, routes: Mapping[str, str]) -> Parsed:
    """Events in one webhook body, each for the account ``routes`` maps its Instagram
    account id to. Raises ``PayloadInvalid`` when the body is not a JSON object,
    ``ParseFailed`` when it is not an Instagram webhook at all; inside it every
    ``messaging[]`` event is read on its own, as for Messenger."""
    return inbound.parse(body, routes, _PRODUCT)


def _events(
    entry: Entry, item: Messaging, account: str, dropped: Sequence[str]
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
            return [_unsend(msg.mid, igsid, build.required(_CHANNEL, ms), account=account)]
        return [_message(msg, igsid, build.required(_CHANNEL, ms), account, dropped)]
    if item.reaction is not None:
        ms = build.required(_CHANNEL, ms)
        return [_reaction(item.reaction, igsid, ms, account=account)]
    if item.postback is not None:
        ms = build.required(_CHANNEL, ms)
        return [build.postback(_CHANNEL, item.postback, igsid, ms, account=account)]
    if item.message_edit is not None:
        ms = build.required(_CHANNEL, ms)
        return [build.edit(_CHANNEL, item.message_edit, igsid, ms, account=account)]
    if item.read is not None:
        return _seen(item.read, igsid, ms, account=account)
    return []


def _message(msg: RawMessage, igsid: str, ms: int, account: str, dropped: Sequence[str]) -> Message:
    attachments, notes = _content(msg.attachments or [])
    reply_to = None
    if msg.reply_to is not None:
        reply_to = msg.reply_to.mid
        story = msg.reply_to.story
        if story is not None:
            # the story expires within 24 hours: the agent gets its link, not a copy
            detail = f" {story.id}" if story.id else ""
            link = f": {build.clip(story.url, _URL_LIMIT)}" if story.url else ""
            notes.insert(0, f"Replied to your story{detail}{link}")
    if msg.is_unsupported:
        notes.append("Unsupported Instagram message (the API does not deliver this content)")
    return build.message(
        _CHANNEL,
        msg.mid,
        igsid,
        ms,
        account=account,
        text=msg.text or "",
        attachments=attachments,
        notes=notes,
        quick_reply=msg.quick_reply,
        reply_to=reply_to,
        dropped=dropped,
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
            link = f": {build.clip(url, _URL_LIMIT)}" if url else ""
            notes.append(f"Mentioned you in their story{link}")
        else:
            p = a.payload
            media = (p.reel_video_id or p.ig_post_media_id) if p else None
            title = p.title if p else None
            media_note = f"(media {media})" if media else None
            notes.append(build.shared_note(_CHANNEL, _SHARED, a.type, title, url, media_note))
    return attachments, notes


def _unsend(mid: str, igsid: str, ms: int, *, account: str) -> ChannelEvent:
    return ChannelEvent(
        account=account,
        channel=_CHANNEL,
        dedup_key=f"unsend:{mid}",
        thread=igsid,
        occurred_at=build.when(ms),
        action="unsend",
        sender=build.sender(_CHANNEL, igsid),
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
    return build.keyed(_CHANNEL, key, igsid, ms, account=account, reply_to=r.mid, note=note)


def _seen(read: Read, igsid: str, ms: int | None, *, account: str) -> list[InboundEvent]:
    at = ms if ms is not None else read.watermark
    if at is None:
        raise ParseFailed("instagram: a read receipt has no timestamp")
    if read.mid:
        return [build.of_message(_CHANNEL, "read", igsid, read.mid, at, account=account)]
    if read.watermark is None:
        return []
    return [build.up_to(_CHANNEL, "read", igsid, read.watermark, at, account=account)]


_PRODUCT = inbound.Product(
    channel=_CHANNEL,
    object="instagram",
    kind="Instagram",
    model=Messaging,
    events=_events,
    core=frozenset({"mid", "is_echo", "is_deleted"}),
    unfiled=frozenset({"referral", "optin", "pass_thread_control", "take_thread_control"}),
    # comment and mention `changes`, handover `standby`
    quiet=("standby", "changes"),
)
