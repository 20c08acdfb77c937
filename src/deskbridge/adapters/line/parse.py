"""LINE webhook bodies to normalized events (pure: bytes in, events or a typed error out).

Models the subset of the webhook event objects we read
(https://developers.line.biz/en/reference/messaging-api/#webhook-event-objects, and
line/line-openapi ``webhook.yml``). Raw models ignore unknown fields and are strict about
the types of the fields they read.

Senders: LINE gives a user id and nothing else (the display name comes from the profile
API, never from the webhook). In a group or multi-person chat ``source.userId`` is only
sent for iOS and Android users; a message from anyone else gets the placeholder sender
``group-member`` / ``room-member`` with no identities: a strong identity shared by
different people would merge them into one contact.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from deskbridge.adapters.base import Parsed, Peeked, Skip
from deskbridge.adapters.batch import Batch
from deskbridge.adapters.payload import dump, load_object
from deskbridge.adapters.text import escapes_surrogates
from deskbridge.errors import ParseFailed, PayloadInvalid
from deskbridge.schemas import (
    Attachment,
    AttachmentKind,
    Channel,
    ChannelEvent,
    Identity,
    InboundEvent,
    Location,
    Message,
    Sender,
)

__all__ = ["UNKNOWN_MEMBER", "parse", "parse_items", "peek"]

UNKNOWN_MEMBER = {"group": "group-member", "room": "room-member"}
"""``Sender.external_id`` of a group or room member LINE did not name."""

# The last millisecond datetime can represent (9999-12-31T23:59:59.999Z).
_MAX_MS = 253_402_300_799_999
# Postback data is at most 300 characters (LINE's postback action); params are short.
_POSTBACK_LIMIT = 300

_MEDIA: dict[str, AttachmentKind] = {"image": "image", "video": "video", "audio": "audio"}
_Action = Literal["follow", "unfollow", "join", "leave"]
_CHANNEL_EVENTS: dict[str, _Action] = {
    "follow": "follow",
    "unfollow": "unfollow",
    "join": "join",
    "leave": "leave",
}

NonEmpty = Annotated[str, Field(min_length=1)]
TimestampMs = Annotated[int, Field(ge=0, le=_MAX_MS)]


class _Raw(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, strict=True, alias_generator=to_camel)


class Source(_Raw):
    type: str
    user_id: NonEmpty | None = None
    group_id: NonEmpty | None = None
    room_id: NonEmpty | None = None


class DeliveryContext(_Raw):
    is_redelivery: bool = False


class Unsend(_Raw):
    message_id: NonEmpty


class Postback(_Raw):
    data: str
    params: dict[str, str] | None = None


class Event(_Raw):
    type: str
    mode: str = "active"
    timestamp: TimestampMs
    webhook_event_id: NonEmpty
    """A ULID, the same on a redelivery (``deliveryContext.isRedelivery``): the dedup key."""
    source: Source | None = None
    delivery_context: DeliveryContext | None = None
    reply_token: str | None = None
    message: dict[str, Any] | None = None
    unsend: Unsend | None = None
    postback: Postback | None = None


class Body(_Raw):
    # LINE sends it today; bodies recorded before it did (still in SDK test suites) verify
    # and read the same without it, and nothing here depends on it
    destination: str | None = None
    events: list[dict[str, Any]]


class Content(_Raw):
    id: NonEmpty
    type: str
    quoted_message_id: NonEmpty | None = None


class TextContent(Content):
    text: str


class ContentProvider(_Raw):
    type: str = "line"
    original_content_url: NonEmpty | None = None


class MediaContent(Content):
    content_provider: ContentProvider = ContentProvider()
    duration: Annotated[int, Field(ge=0)] | None = None
    """Milliseconds (video and audio)."""


class FileContent(Content):
    file_name: str
    file_size: Annotated[int, Field(ge=0)]


class LocationContent(Content):
    title: str | None = None
    address: str | None = None
    latitude: Annotated[float, Field(ge=-90, le=90)]
    longitude: Annotated[float, Field(ge=-180, le=180)]


class StickerContent(Content):
    package_id: str
    sticker_id: str
    keywords: list[str] | None = None
    text: str | None = None
    """What the user typed on a message sticker."""


def parse(body: bytes, *, account: str) -> list[InboundEvent]:
    """Events in one webhook body, in order; ``[]`` for the console's Verify (no events)
    and for event types and modes we do not handle.

    Raises ``PayloadInvalid`` when the body is not a JSON object, ``ParseFailed`` when it
    is one but not a webhook body we can read, or when any event in it cannot be read
    (:func:`parse_items` keeps the others).
    """
    parsed = parse_items(body, account=account)
    if parsed.failures:
        raise ParseFailed(parsed.failures[0].error)
    return parsed.events


def parse_items(body: bytes, *, account: str) -> Parsed:
    """Like :func:`parse`, but each event is read on its own: one that cannot be read is
    an item failure (kept with just that event, under ``account``) and its siblings are
    parsed as usual. Raises ``ParseFailed`` only when the body is not a LINE webhook
    body at all (no ``destination`` and ``events``).
    """
    raw = load_object(body, what="line")
    try:
        envelope = Body.model_validate(raw)
    except ValidationError as exc:
        # `from None`: a ValidationError repeats the input values, i.e. customer text.
        raise ParseFailed(
            f"line: not a readable webhook body ({exc.error_count()} errors)"
        ) from None
    batch = Batch("line", surrogates=escapes_surrogates(body))
    ignored: list[str] = []

    def record(item: Any) -> bytes:
        if envelope.destination is None:
            return dump({"events": [item]})
        return dump({"destination": envelope.destination, "events": [item]})

    def read(item: Any) -> list[InboundEvent]:
        return _event(Event.model_validate(item), account=account, ignored=ignored)

    for item in envelope.events:
        batch.item(account, item, record, read)
    if not envelope.events:
        ignored.append("verify")  # the console's Verify button
    # one URL per account: the whole body is the account's, nothing to cut
    return Parsed(
        events=batch.events,
        failures=tuple(batch.failures),
        ignored=tuple(ignored),
        skipped=tuple(batch.skipped),
    )


def peek(body: bytes, *, account: str) -> Peeked | None:
    """The common webhook body (``Peeks``): one active ``message`` event from a user, a
    group or a room (``_thread`` keys each conversation on its own id, so all three read
    alike), with a ``webhookEventId`` and a ``message`` with an ``id`` and a ``type``. Its
    dedup key (the ``webhookEventId``, the same on a redelivery: ``isRedelivery`` changes
    nothing in the parse either) and thread are the ones ``_message`` gives the event;
    anything else is None (the full parse decides). The fields of the event ``Event``
    reads are checked as strictly as the model checks them, and a text message's text;
    the rest of the message is validated by the worker's parse."""
    try:
        raw = load_object(body, what="line")
    except PayloadInvalid:
        return None
    events = raw.get("events")
    if type(events) is not list or len(events) != 1 or not _maybe_str(raw.get("destination")):
        return None
    ev = events[0]
    if type(ev) is not dict or ev.get("type") != "message" or ev.get("mode", "active") != "active":
        return None
    key, timestamp = ev.get("webhookEventId"), ev.get("timestamp")
    if (
        type(key) is not str
        or not key
        or type(timestamp) is not int
        or not 0 <= timestamp <= _MAX_MS
    ):
        return None
    thread = _peek_thread(ev.get("source"))
    if thread is None or not _peek_rest(ev) or escapes_surrogates(body):
        return None
    return Peeked(account, key, thread)


def _maybe_str(value: Any) -> bool:
    return value is None or type(value) is str


def _maybe_id(value: Any) -> bool:
    return value is None or (type(value) is str and value != "")


def _peek_thread(source: Any) -> str | None:
    """The thread ``_thread`` gives a user, group or room ``source`` whose ids read."""
    if type(source) is not dict or type(kind := source.get("type")) is not str:
        return None
    ids = {
        "user": source.get("userId"),
        "group": source.get("groupId"),
        "room": source.get("roomId"),
    }
    if not all(_maybe_id(i) for i in ids.values()):
        return None
    thread = ids.get(kind)
    return thread if type(thread) is str else None


def _peek_rest(ev: dict[str, Any]) -> bool:
    """Whether the other fields of a message ``Event`` reads have its types, and its
    ``message`` an id, a type and (for text) its text."""
    context, msg = ev.get("deliveryContext"), ev.get("message")
    if context is not None and (
        type(context) is not dict or type(context.get("isRedelivery", False)) is not bool
    ):
        return False
    if not _maybe_str(ev.get("replyToken")) or type(msg) is not dict:
        return False
    if ev.get("unsend") is not None or ev.get("postback") is not None:
        return False
    kind, ident = msg.get("type"), msg.get("id")
    if type(kind) is not str or type(ident) is not str or not ident:
        return False
    if not _maybe_id(msg.get("quotedMessageId")):
        return False
    return kind != "text" or type(msg.get("text")) is str


def _event(ev: Event, *, account: str, ignored: list[str]) -> list[InboundEvent]:
    """The event, or none and its reason added to ``ignored``."""
    # Standby: another channel (a module) has the chat; it answers, we only listen.
    if ev.mode != "active":
        raise Skip("standby", ev.webhook_event_id)
    handler = _HANDLERS.get(ev.type)
    if handler is None:
        # memberJoined, memberLeft, beacon, accountLink, things, ...
        raise Skip(f"event_{ev.type}"[:64], ev.webhook_event_id)
    if ev.source is None:
        raise ParseFailed(f"line: {ev.type} event without a source")
    thread = _thread(ev.source)
    if thread is None:
        ignored.append("unknown_source")  # a source type that is not a user, group or room
        return []
    return [handler(ev, ev.source, thread, account)]


def _thread(source: Source) -> str | None:
    """A user's chat is theirs; a group or room is one conversation for all its members."""
    match source.type:
        case "user":
            key = source.user_id
        case "group":
            key = source.group_id
        case "room":
            key = source.room_id
        case _:
            return None
    if key is None:
        raise ParseFailed(f"line: {source.type} source without its id")
    return key


def _occurred_at(ev: Event) -> datetime:
    return datetime.fromtimestamp(ev.timestamp // 1000, UTC) + timedelta(
        milliseconds=ev.timestamp % 1000
    )


def _sender(source: Source) -> Sender | None:
    if source.user_id is None:
        return None
    identity = Identity(
        kind="channel_user",
        channel=Channel.LINE,
        value=source.user_id,
        strength="strong",
        source="line",
    )
    return Sender(external_id=source.user_id, identities=(identity,))


def _author(source: Source) -> Sender:
    """Who wrote a message: the user, or the placeholder of an unnamed group member."""
    return _sender(source) or Sender(external_id=UNKNOWN_MEMBER.get(source.type, "member"))


def _message(ev: Event, source: Source, thread: str, account: str) -> Message:
    if ev.message is None:
        raise ParseFailed("line: message event without a message")
    kind = ev.message.get("type")
    text = ""
    note: str | None = None
    attachments: tuple[Attachment, ...] = ()
    location: Location | None = None
    content: Content
    if kind == "text":
        content = TextContent.model_validate(ev.message)
        text = content.text  # LINE emoji and mentions arrive as their text
    elif isinstance(kind, str) and kind in _MEDIA:
        content = MediaContent.model_validate(ev.message)
        attachment, note = _media(content, _MEDIA[kind])
        attachments = (attachment,)
    elif kind == "file":
        content = FileContent.model_validate(ev.message)
        attachments = (
            Attachment(
                kind="document",
                ref=content.id,
                filename=content.file_name or None,
                size=content.file_size,
            ),
        )
    elif kind == "location":
        content = LocationContent.model_validate(ev.message)
        location = Location(
            latitude=content.latitude,
            longitude=content.longitude,
            name=content.title or None,
            address=content.address or None,
        )
    elif kind == "sticker":
        content = StickerContent.model_validate(ev.message)
        text = content.text or ""
        note = _sticker_note(content)
    else:
        content = Content.model_validate(ev.message)
        note = f"Unsupported LINE message ({content.type})"
    return Message(
        account=account,
        channel=Channel.LINE,
        dedup_key=ev.webhook_event_id,
        thread=thread,
        occurred_at=_occurred_at(ev),
        external_id=content.id,
        sender=_author(source),
        text=text,
        attachments=attachments,
        reply_to=content.quoted_message_id,
        location=location,
        note=note,
        reply_token=ev.reply_token or None,
    )


def _edited(ev: Event, source: Source, thread: str, account: str) -> Message:
    """``messageEdited``: the new content of a message already received (same message
    id), filed as an edit of it like Telegram's. Edits may arrive out of order; each is
    filed with its own time, and the latest time is the message as it now reads."""
    msg = _message(ev, source, thread, account)
    return msg.model_copy(update={"edit_of": msg.external_id})


def _media(content: MediaContent, kind: AttachmentKind) -> tuple[Attachment, str | None]:
    """Content LINE hosts is fetched by message id. An external provider's (a LINE app
    integration) is only a URL we keep: the agent gets it as a link."""
    seconds = content.duration / 1000 if content.duration is not None else None
    provider = content.content_provider
    if provider.type != "external":
        return Attachment(kind=kind, ref=content.id, duration=seconds), None
    url = provider.original_content_url
    if url is None:
        raise ParseFailed("line: external content without its URL")
    note = f"{kind.capitalize()} from an external provider, kept as a link: {url}"
    return Attachment(kind=kind, ref=url, duration=seconds), note


def _sticker_note(sticker: StickerContent) -> str:
    note = f"Sticker {sticker.package_id}/{sticker.sticker_id}"
    words = [w for w in sticker.keywords or () if w]
    return f"{note} ({', '.join(words)})" if words else note


def _postback(ev: Event, source: Source, thread: str, account: str) -> Message:
    """A button the customer tapped: its data is the app's own, shown as a note."""
    if ev.postback is None:
        raise ParseFailed("line: postback event without postback data")
    note = f"Postback: {ev.postback.data[:_POSTBACK_LIMIT]}"
    if ev.postback.params:
        params = ", ".join(f"{k}={v}" for k, v in sorted(ev.postback.params.items()))
        note += f" ({params[:_POSTBACK_LIMIT]})"
    return Message(
        account=account,
        channel=Channel.LINE,
        dedup_key=ev.webhook_event_id,
        thread=thread,
        occurred_at=_occurred_at(ev),
        external_id=ev.webhook_event_id,  # a postback has no message id
        sender=_author(source),
        note=note,
        reply_token=ev.reply_token or None,
    )


def _unsend(ev: Event, source: Source, thread: str, account: str) -> ChannelEvent:
    if ev.unsend is None:
        raise ParseFailed("line: unsend event without the message id")
    return ChannelEvent(
        account=account,
        channel=Channel.LINE,
        dedup_key=ev.webhook_event_id,
        thread=thread,
        occurred_at=_occurred_at(ev),
        action="unsend",
        sender=_sender(source),
        external_id=ev.unsend.message_id,
    )


def _channel_event(ev: Event, source: Source, thread: str, account: str) -> ChannelEvent:
    action = _CHANNEL_EVENTS[ev.type]
    return ChannelEvent(
        account=account,
        channel=Channel.LINE,
        dedup_key=ev.webhook_event_id,
        thread=thread,
        occurred_at=_occurred_at(ev),
        action=action,
        # join and leave are the bot's own; whoever added or removed it is not named
        sender=_sender(source) if action in ("follow", "unfollow") else None,
    )


_HANDLERS: Mapping[str, Callable[[Event, Source, str, str], InboundEvent]] = {
    "message": _message,
    "messageEdited": _edited,
    "postback": _postback,
    "unsend": _unsend,
    **dict.fromkeys(_CHANNEL_EVENTS, _channel_event),
}
