"""Telegram ``Update`` bodies to normalized events (pure: bytes in, events or a typed error out).

Models the subset of https://core.telegram.org/bots/api#update we read. Raw models ignore
unknown fields (Telegram adds some every release) and are strict about the types of the
fields they do read, so a string where an id belongs fails instead of being coerced.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import PydanticSerializationError

from deskbridge.adapters.base import Parsed, Peeked
from deskbridge.adapters.payload import load_object
from deskbridge.adapters.text import escapes_surrogates
from deskbridge.errors import ParseFailed, PayloadInvalid
from deskbridge.identity.phones import e164
from deskbridge.schemas import (
    Attachment,
    Channel,
    ChannelEvent,
    Identity,
    InboundEvent,
    Location,
    Message,
    Sender,
    SharedContact,
)

__all__ = ["e164", "parse", "parse_items", "peek"]

_QUOTE_LIMIT = 200

# Bounded so datetime.fromtimestamp cannot overflow on hostile input (max is 9999-12-31).
Timestamp = Annotated[int, Field(ge=0, le=253_402_300_799)]

# Message content we cannot represent: the agent gets a visible note instead of silence.
_UNSUPPORTED = (
    "poll",
    "dice",
    "game",
    "story",
    "invoice",
    "paid_media",
    "giveaway",
    "giveaway_winners",
    "checklist",
    "passport_data",
    "web_app_data",
)

# Service messages (joins, pins, topic changes ...) are chat housekeeping, not something a
# customer wrote, so they are acknowledged and dropped.
_SERVICE = frozenset(
    {
        "new_chat_members",
        "left_chat_member",
        "new_chat_title",
        "new_chat_photo",
        "delete_chat_photo",
        "group_chat_created",
        "supergroup_chat_created",
        "channel_chat_created",
        "message_auto_delete_timer_changed",
        "migrate_to_chat_id",
        "migrate_from_chat_id",
        "pinned_message",
        "successful_payment",
        "refunded_payment",
        "users_shared",
        "chat_shared",
        "gift",
        "unique_gift",
        "connected_website",
        "write_access_allowed",
        "proximity_alert_triggered",
        "boost_added",
        "chat_background_set",
        "checklist_tasks_done",
        "checklist_tasks_added",
        "forum_topic_created",
        "forum_topic_edited",
        "forum_topic_closed",
        "forum_topic_reopened",
        "general_forum_topic_hidden",
        "general_forum_topic_unhidden",
        "giveaway_created",
        "giveaway_completed",
        "video_chat_scheduled",
        "video_chat_started",
        "video_chat_ended",
        "video_chat_participants_invited",
        "paid_message_price_changed",
        "direct_message_price_changed",
    }
)


class _Raw(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)


class User(_Raw):
    id: int
    is_bot: bool = False
    first_name: str = ""
    last_name: str | None = None
    username: str | None = None
    language_code: str | None = None


class Chat(_Raw):
    id: int
    type: str
    title: str | None = None
    username: str | None = None


class PhotoSize(_Raw):
    file_id: str
    width: int
    height: int
    file_size: int | None = None


class Document(_Raw):
    file_id: str
    file_name: str | None = None
    mime_type: str | None = None
    file_size: int | None = None


class Voice(_Raw):
    file_id: str
    duration: int
    mime_type: str | None = None
    file_size: int | None = None


class Audio(_Raw):
    file_id: str
    duration: int
    title: str | None = None
    file_name: str | None = None
    mime_type: str | None = None
    file_size: int | None = None


class Video(_Raw):
    file_id: str
    width: int
    height: int
    duration: int
    file_name: str | None = None
    mime_type: str | None = None
    file_size: int | None = None


class VideoNote(_Raw):
    file_id: str
    length: int
    duration: int
    file_size: int | None = None


class Sticker(_Raw):
    file_id: str
    width: int
    height: int
    is_animated: bool = False
    is_video: bool = False
    emoji: str | None = None
    set_name: str | None = None
    file_size: int | None = None


class GeoPoint(_Raw):
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)


class Venue(_Raw):
    location: GeoPoint
    title: str
    address: str


class Contact(_Raw):
    phone_number: str
    first_name: str = ""
    last_name: str | None = None
    user_id: int | None = None
    vcard: str | None = None


class Origin(_Raw):
    """``forward_origin`` (Bot API 7.0+): MessageOriginUser, MessageOriginHiddenUser,
    MessageOriginChat or MessageOriginChannel, told apart by ``type``."""

    type: str
    date: Timestamp
    sender_user: User | None = None
    sender_user_name: str | None = None
    sender_chat: Chat | None = None
    chat: Chat | None = None
    author_signature: str | None = None


class LegacyForward(_Raw):
    """The ``forward_*`` fields ``forward_origin`` replaced (Bot API 7.0; older Bot API
    servers and recordings still carry them)."""

    forward_from: User | None = None
    forward_from_chat: Chat | None = None
    forward_sender_name: str | None = None
    forward_signature: str | None = None
    forward_date: Timestamp


class TextQuote(_Raw):
    text: str


class RepliedMessage(_Raw):
    """``reply_to_message``: Telegram never nests a further reply inside it."""

    message_id: int
    text: str | None = None
    caption: str | None = None


class TgMessage(_Raw):
    message_id: int
    from_: User | None = Field(default=None, alias="from")
    sender_chat: Chat | None = None
    date: Timestamp
    edit_date: Timestamp | None = None
    chat: Chat
    text: str | None = None
    caption: str | None = None
    photo: list[PhotoSize] | None = None
    document: Document | None = None
    voice: Voice | None = None
    audio: Audio | None = None
    video: Video | None = None
    video_note: VideoNote | None = None
    animation: Video | None = None
    sticker: Sticker | None = None
    location: GeoPoint | None = None
    venue: Venue | None = None
    contact: Contact | None = None
    reply_to_message: RepliedMessage | None = None
    quote: TextQuote | None = None
    # read on their own (``_forwarded``): attribution we cannot read costs a line, not
    # the message
    forward_origin: Any = None
    forward_date: Any = None
    migrate_to_chat_id: int | None = None
    migrate_from_chat_id: int | None = None


class Update(_Raw):
    update_id: int
    message: TgMessage | None = None
    edited_message: TgMessage | None = None


def parse(body: bytes, *, account: str) -> list[InboundEvent]:
    """Events in one Update body: at most one, ``[]`` for update kinds we do not handle.

    Raises ``PayloadInvalid`` when the body is not a JSON object, ``ParseFailed`` when it is
    one but not an Update we can read.
    """
    return parse_items(body, account=account).events


def parse_items(body: bytes, *, account: str) -> Parsed:
    """Like :func:`parse`, with the named reason (``Parsed.ignored``) when the Update is
    read and deliberately not filed: ``not_a_message`` (callback queries, reactions, chat
    member changes, ...), ``channel_post``, ``not_a_person`` (no ``from``, a bot, a post
    on behalf of a chat, an inaccessible message) or ``service_message`` (joins, pins)."""
    raw = load_object(body, what="telegram")
    try:
        update = Update.model_validate(raw)
        events, reason = _events(update, raw, account=account)
        if escapes_surrogates(body):
            for event in events:
                event.model_dump_json()  # a lone surrogate cannot be stored
    except ValidationError as exc:
        # `from None`: a ValidationError repeats the input values, i.e. customer text.
        raise ParseFailed(f"telegram: not a readable Update ({exc.error_count()} errors)") from None
    except PydanticSerializationError:
        raise ParseFailed("telegram: Update text is not valid Unicode") from None
    return Parsed(events=events, ignored=(reason,) if reason else ())


def peek(body: bytes, *, account: str) -> Peeked | None:
    """The common Update (``Peeks``): a ``message`` or ``edited_message`` (not both) from
    a person (``from`` with an int ``id`` and no ``is_bot: true``, no ``sender_chat``) in
    a chat with an int ``id`` and a ``type``, an int ``update_id``, none of the fields of
    a group's move or a service message. Its dedup key and thread are the ones ``_message``
    gives the event; anything else is None (the full parse decides). Only the types of
    the fields read here are checked (as strictly as the models: a bool is no int); the
    rest of the message is validated by the worker's parse."""
    try:
        raw = load_object(body, what="telegram")
    except PayloadInvalid:
        return None
    update_id = raw.get("update_id")
    msg = raw.get("message")
    if msg is None:
        msg = raw.get("edited_message")
    elif raw.get("edited_message") is not None:
        return None
    if type(update_id) is not int or type(msg) is not dict:
        return None
    chat, user = msg.get("chat"), msg.get("from")
    if type(chat) is not dict or type(user) is not dict:
        return None
    chat_id = chat.get("id")
    if type(chat_id) is not int or type(chat.get("type")) is not str:
        return None
    if type(user.get("id")) is not int or user.get("is_bot", False) is not False:
        return None
    if msg.get("sender_chat") is not None or not _UNPEEKED.isdisjoint(msg):
        return None
    return Peeked(account, str(update_id), str(chat_id))


_UNPEEKED = _SERVICE | {"migrate_to_chat_id", "migrate_from_chat_id"}
"""Message fields that make an Update unusual for ``peek``: a group's move (a channel
event) and service messages (usually not filed)."""


def _events(
    update: Update, raw: Mapping[str, Any], *, account: str
) -> tuple[list[InboundEvent], str | None]:
    """The event, or none and the reason it is not filed."""
    for field, edited in (("message", False), ("edited_message", True)):
        msg = getattr(update, field)
        if msg is not None:
            event = _moved(update.update_id, msg, account=account) or _message(
                update.update_id, msg, raw[field], edited=edited, account=account
            )
            if event is None:
                return [], _unfiled(msg)
            return [event], None
    if any(k in raw for k in ("channel_post", "edited_channel_post")):
        return [], "channel_post"
    return [], "not_a_message"


def _unfiled(msg: TgMessage) -> str:
    """Why ``_message`` filed nothing."""
    if msg.from_ is None or msg.from_.is_bot or msg.sender_chat is not None:
        return "not_a_person"
    return "service_message"


def _moved(update_id: int, msg: TgMessage, *, account: str) -> ChannelEvent | None:
    """A group upgraded to a supergroup: Telegram posts ``migrate_to_chat_id`` in the old
    chat and ``migrate_from_chat_id`` in the new one; the old chat id is dead from then on."""
    if msg.migrate_to_chat_id is not None:
        action: Literal["moved_to", "moved_from"] = "moved_to"
        other = msg.migrate_to_chat_id
    elif msg.migrate_from_chat_id is not None:
        action, other = "moved_from", msg.migrate_from_chat_id
    else:
        return None
    return ChannelEvent(
        account=account,
        channel=Channel.TELEGRAM,
        dedup_key=str(update_id),
        thread=str(msg.chat.id),
        occurred_at=datetime.fromtimestamp(msg.date, UTC),
        action=action,
        external_id=str(other),
    )


def _message(
    update_id: int, msg: TgMessage, raw: Mapping[str, Any], *, edited: bool, account: str
) -> Message | None:
    user = msg.from_
    # No person behind it: channel posts, anonymous admins and posts on behalf of a chat
    # (sender_chat), and bots (which also keeps our own bot out if Telegram ever echoes).
    if user is None or user.is_bot or msg.sender_chat is not None:
        return None

    attachments = _attachments(msg)
    location = _location(msg)
    contact = _contact(msg.contact, user)
    text = msg.text or msg.caption or ""
    note = _sticker_note(msg.sticker) if msg.sticker else None
    forwarded = _forwarded(msg, raw)
    unsupported = next((k for k in _UNSUPPORTED if raw.get(k) is not None), None)
    if unsupported:
        note = f"Unsupported Telegram message ({unsupported})"
    elif not (text or attachments or location or contact):
        if _SERVICE.intersection(raw):
            return None
        note = "Unsupported Telegram message"
    if forwarded:
        note = f"{forwarded}; {note}" if note else forwarded

    identities = [
        Identity(
            kind="channel_user",
            channel=Channel.TELEGRAM,
            value=str(user.id),
            strength="strong",
            source="telegram",
        )
    ]
    if contact is not None and contact.is_sender and contact.phone:
        identities.append(
            Identity(
                kind="phone", value=contact.phone, strength="strong", source="telegram_contact"
            )
        )
    sender = Sender(
        external_id=str(user.id),
        display_name=" ".join(n for n in (user.first_name, user.last_name) if n) or None,
        username=user.username,
        language=user.language_code,
        identities=tuple(identities),
    )

    reply = msg.reply_to_message
    quote = None
    if reply is not None:
        quote = (msg.quote.text if msg.quote else None) or reply.text or reply.caption
    when = msg.edit_date if edited and msg.edit_date is not None else msg.date
    return Message(
        account=account,
        channel=Channel.TELEGRAM,
        dedup_key=str(update_id),
        thread=str(msg.chat.id),
        occurred_at=datetime.fromtimestamp(when, UTC),
        external_id=str(msg.message_id),
        sender=sender,
        text=text,
        attachments=attachments,
        reply_to=str(reply.message_id) if reply else None,
        reply_quote=quote[:_QUOTE_LIMIT] if quote else None,
        edit_of=str(msg.message_id) if edited else None,
        location=location,
        contact=contact,
        note=note,
        thread_title=msg.chat.title if msg.chat.type != "private" else None,
    )


def _attachments(msg: TgMessage) -> tuple[Attachment, ...]:
    found: list[Attachment] = []
    if msg.photo:
        # Sizes missing file_size sort by area among themselves.
        best = max(msg.photo, key=lambda p: (p.file_size or 0, p.width * p.height))
        found.append(
            Attachment(
                kind="image",
                ref=best.file_id,
                mime_type="image/jpeg",
                size=best.file_size,
                width=best.width,
                height=best.height,
            )
        )
    # An animation also arrives as `document` for old clients; take the animation only.
    if msg.document and not msg.animation:
        d = msg.document
        found.append(
            Attachment(
                kind="document",
                ref=d.file_id,
                filename=d.file_name,
                mime_type=d.mime_type,
                size=d.file_size,
            )
        )
    if msg.voice:
        v = msg.voice
        found.append(
            Attachment(
                kind="voice",
                ref=v.file_id,
                mime_type=v.mime_type or "audio/ogg",
                size=v.file_size,
                duration=v.duration,
            )
        )
    if msg.audio:
        a = msg.audio
        found.append(
            Attachment(
                kind="audio",
                ref=a.file_id,
                filename=a.file_name or a.title,
                mime_type=a.mime_type,
                size=a.file_size,
                duration=a.duration,
            )
        )
    for video in (msg.video, msg.animation):
        if video:
            found.append(
                Attachment(
                    kind="video",
                    ref=video.file_id,
                    filename=video.file_name,
                    mime_type=video.mime_type or "video/mp4",
                    size=video.file_size,
                    width=video.width,
                    height=video.height,
                    duration=video.duration,
                )
            )
    if msg.video_note:
        n = msg.video_note
        found.append(
            Attachment(
                kind="video",
                ref=n.file_id,
                mime_type="video/mp4",
                size=n.file_size,
                width=n.length,
                height=n.length,
                duration=n.duration,
            )
        )
    if msg.sticker:
        s = msg.sticker
        mime = (
            "video/webm"
            if s.is_video
            else "application/x-tgsticker"
            if s.is_animated
            else "image/webp"
        )
        found.append(
            Attachment(
                kind="sticker",
                ref=s.file_id,
                mime_type=mime,
                size=s.file_size,
                width=s.width,
                height=s.height,
            )
        )
    return tuple(found)


def _sticker_note(sticker: Sticker) -> str:
    note = " ".join(x for x in ("Sticker", sticker.emoji) if x)
    return f"{note} ({sticker.set_name})" if sticker.set_name else note


def _location(msg: TgMessage) -> Location | None:
    # A venue message carries `location` too; the venue has the name and address.
    if msg.venue:
        v = msg.venue
        return Location(
            latitude=v.location.latitude,
            longitude=v.location.longitude,
            name=v.title,
            address=v.address,
        )
    if msg.location:
        return Location(latitude=msg.location.latitude, longitude=msg.location.longitude)
    return None


def _contact(contact: Contact | None, sender: User) -> SharedContact | None:
    if contact is None:
        return None
    own = contact.user_id == sender.id
    return SharedContact(
        phone=_phone(contact, own=own),
        raw_phone=contact.phone_number,
        name=" ".join(n for n in (contact.first_name, contact.last_name) if n) or None,
        channel_user_id=str(contact.user_id) if contact.user_id is not None else None,
        is_sender=own,
    )


def _phone(contact: Contact, *, own: bool) -> str | None:
    """E.164 of a shared contact. The sender's own number is the one Telegram verified
    (international, often without ``+``), so a merely possible number is kept; a number
    from an address book is as the user typed it: the vCard's ``TEL`` lines are tried when
    it is not a valid international number, and no guess is made about a local one."""
    found = e164(contact.phone_number, international=True, trusted=own)
    if found or own:
        return found
    for line in (contact.vcard or "").splitlines():
        name, sep, value = line.partition(":")
        if sep and name.split(";")[0].strip().upper().endswith("TEL"):
            found = e164(value.removeprefix("tel:"))
            if found:
                return found
    return None


def _when(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _chat_name(chat: Chat) -> str:
    name = chat.title or (f"@{chat.username}" if chat.username else None)
    return name or f"chat {chat.id}"


def _user_name(user: User) -> str:
    name = " ".join(n for n in (user.first_name, user.last_name) if n)
    if user.username:
        name = f"{name} (@{user.username})" if name else f"@{user.username}"
    return name or f"user {user.id}"


def _forwarded(msg: TgMessage, raw: Mapping[str, Any]) -> str | None:
    """ "Forwarded from X, originally sent at T" for a forwarded message: from
    ``forward_origin``, or the fields it replaced; "Forwarded" alone when neither reads."""
    if msg.forward_origin is None and msg.forward_date is None:
        return None
    who: str | None = None
    try:
        if msg.forward_origin is not None:
            origin = Origin.model_validate(msg.forward_origin)
            if origin.sender_user is not None:
                who = _user_name(origin.sender_user)
            elif (chat := origin.sender_chat or origin.chat) is not None:
                who = _chat_name(chat)
            else:
                who = origin.sender_user_name
            signature, when = origin.author_signature, origin.date
        else:
            old = LegacyForward.model_validate(raw)
            if old.forward_from is not None:
                who = _user_name(old.forward_from)
            elif old.forward_from_chat is not None:
                who = _chat_name(old.forward_from_chat)
            else:
                who = old.forward_sender_name
            signature, when = old.forward_signature, old.forward_date
    except ValidationError:
        return "Forwarded (the original sender could not be read)"
    who = f"{who} ({signature})" if who and signature else who or signature
    return f"Forwarded from {who or 'an unknown sender'}, originally sent {_when(when)}"
