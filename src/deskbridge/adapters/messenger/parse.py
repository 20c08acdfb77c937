"""Page webhook bodies to normalized events (pure: bytes in, events or a typed error out).

Models the subset of the Messenger Platform's webhook events we read (``messages``,
``message_echoes``, ``messaging_postbacks``, ``message_deliveries``, ``message_reads``):
https://developers.facebook.com/documentation/business-messaging/messenger-platform/webhooks/webhook-events

Raw models ignore unknown fields (Meta adds some every version) and are strict about the
types of the fields they read. Entries are routed by Page id before their events are
validated, so an odd event for a Page nobody here owns cannot fail the rest of the batch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from deskbridge.adapters.base import Parsed, Skip
from deskbridge.adapters.meta.ignoring import NamingBatch
from deskbridge.adapters.meta.lenient import Loc, leniently, numeric
from deskbridge.adapters.payload import dump, item_key, load_object
from deskbridge.adapters.text import escapes_surrogates
from deskbridge.errors import ParseFailed
from deskbridge.schemas import (
    Attachment,
    AttachmentKind,
    Channel,
    Identity,
    InboundEvent,
    Location,
    Message,
    Sender,
    StatusUpdate,
)

__all__ = ["parse"]

_NOTE_PART_LIMIT = 200
# The last millisecond datetime can represent (9999-12-31T23:59:59.999Z).
_MAX_MS = 253_402_300_799_999

_MEDIA: dict[str, AttachmentKind] = {
    "image": "image",
    "audio": "audio",
    "video": "video",
    "file": "document",
}

# Shares and other content the agent can only be told about.
_SHARED = {
    "fallback": "Shared link",
    "template": "Shared content",
    "reel": "Shared reel",
    "ig_reel": "Shared Instagram reel",
    "post": "Shared post",
    "ig_post": "Shared Instagram post",
    "appointment_booking": "Appointment booking",
}

# [S] Messenger's "like" button sends this sticker in three sizes (widely reported by
# bot frameworks; not in Meta's reference).
_THUMBS_UP = frozenset({"369239263222822", "369239343222814", "369239383222810"})


def _ms(value: Any) -> Any:
    # Meta's samples for the dashboard's test events show timestamps as strings.
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 16:
        return int(value)
    return value


def _id(value: Any) -> Any:
    # Ids are strings in deliveries; sticker ids and some samples use numbers.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


Millis = Annotated[int, BeforeValidator(_ms), Field(ge=0, le=_MAX_MS)]
Id = Annotated[str, BeforeValidator(_id), Field(min_length=1, max_length=256)]


class _Raw(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)


class Party(_Raw):
    """``sender``/``recipient``: a PSID or Page id (``user_ref`` senders have no id)."""

    id: Id | None = None


class Coordinates(_Raw):
    # Strings in some deliveries and SDK samples; the SDKs read them as numbers.
    lat: Annotated[float, BeforeValidator(numeric), Field(ge=-90, le=90)]
    long: Annotated[float, BeforeValidator(numeric), Field(ge=-180, le=180)]


class Payload(_Raw):
    url: str | None = None
    title: str | None = None
    sticker_id: Id | None = None
    coordinates: Coordinates | None = None


class RawAttachment(_Raw):
    type: str
    payload: Payload | None = None
    # Fallback and legacy location attachments carry these beside the payload.
    title: str | None = None
    url: str | None = None


class QuickReply(_Raw):
    payload: str | None = None


class ReplyTo(_Raw):
    mid: str | None = None


class RawMessage(_Raw):
    mid: str = Field(min_length=1)
    text: str | None = None
    # Older deliveries name the sticker on the message rather than in its image payload.
    sticker_id: Id | None = None
    is_echo: bool = False
    quick_reply: QuickReply | None = None
    reply_to: ReplyTo | None = None
    attachments: list[RawAttachment] | None = None


class Postback(_Raw):
    mid: str | None = None
    title: str | None = None
    payload: str | None = None


class MessageEdit(_Raw):
    """``message_edits`` (webhook-events/message-edits): the new text of an earlier message;
    the reference shows ``num_edit`` as an integer and, in its sample, a string."""

    mid: str = Field(min_length=1)
    text: str | None = None
    num_edit: Id | None = None


class Delivery(_Raw):
    mids: list[Annotated[str, Field(min_length=1)]] | None = None
    watermark: Millis


class Read(_Raw):
    watermark: Millis


class Messaging(_Raw):
    """One ``entry[].messaging[]`` item: exactly one of the event fields is set."""

    sender: Party = Party()
    recipient: Party = Party()
    timestamp: Millis | None = None
    message: RawMessage | None = None
    postback: Postback | None = None
    message_edit: MessageEdit | None = None
    delivery: Delivery | None = None
    read: Read | None = None


class Entry(_Raw):
    id: Id
    time: Millis | None = None
    # Validated per item once the entry is routed; `standby` (a conversation another app
    # owns under the handover protocol) and `changes` (feed events) are not read.
    messaging: list[Any] | None = None


class Envelope(_Raw):
    object: str
    entry: list[dict[str, Any]]


def parse(body: bytes, *, routes: Mapping[str, str]) -> Parsed:
    """Events in one webhook body, each for the account ``routes`` maps its Page id to.

    Entries of Pages not in ``routes`` are skipped and counted in ``unrouted``; Instagram
    bodies and events we do not handle parse to nothing. Raises ``PayloadInvalid`` when
    the body is not a JSON object, ``ParseFailed`` when it is not a Page webhook at all
    (the message never quotes the body). Inside it every ``messaging[]`` event is read on
    its own: one that cannot be read is an item failure of the Page's account (of nobody
    when the entry names no Page we can read), and its siblings are parsed as usual.
    """
    raw = load_object(body, what="messenger")
    if raw.get("object") == "instagram":
        return Parsed([], ignored=("instagram",))
    try:
        envelope = Envelope.model_validate(raw)
    except ValidationError as exc:
        # `from None`: a ValidationError repeats the input values, i.e. customer text.
        raise ParseFailed(
            f"messenger: not a readable Page webhook ({exc.error_count()} errors)"
        ) from None
    if envelope.object != "page":
        raise ParseFailed("messenger: not a Page webhook (object is not 'page')")
    batch = NamingBatch("messenger", surrogates=escapes_surrogates(body))
    for raw_entry in envelope.entry:
        _entry(batch, routes, raw_entry)
    return batch.parsed(lambda account: dump({"object": "page", "entry": batch.owned[account]}))


def _page(raw: dict[str, Any], routes: Mapping[str, str]) -> str | None:
    """The account owning an entry that did not read, when its Page id still does ("" for
    a Page no account here owns), else None."""
    page = raw.get("id")
    if isinstance(page, int) and not isinstance(page, bool):
        page = str(page)
    return routes.get(page, "") if isinstance(page, str) and page else None


def _entry(batch: NamingBatch, routes: Mapping[str, str], raw: dict[str, Any]) -> None:
    try:
        entry = Entry.model_validate(raw)
    except ValidationError as exc:
        owner = _page(raw, routes)
        if owner == "":
            batch.unrouted += 1
            batch.mixed = True
        else:
            error = f"messenger: an entry is not readable ({exc.error_count()} errors)"
            batch.fail(owner, item_key(raw), dump({"object": "page", "entry": [raw]}), error)
        return
    account = routes.get(entry.id)
    if account is None:
        batch.unrouted += 1
        batch.mixed = True
        return
    batch.own(account, raw)
    head = {k: v for k, v in raw.items() if k != "messaging"}

    def record(item: Any) -> bytes:
        return dump({"object": "page", "entry": [{**head, "messaging": [item]}]})

    def read(item: Any) -> list[InboundEvent]:
        event, dropped = leniently(Messaging, item, _leave_out)
        events = _events(entry, event, account=account, dropped=dropped)
        if not events:
            batch.ignore(_why(entry, event, item))
        return events

    for item in entry.messaging or ():
        batch.item(account, item, record, read)
    if not entry.messaging:
        # handover `standby` events (another app owns the thread) and Page feed `changes`
        batch.ignore("standby" if raw.get("standby") else "no_messaging", account)


def _leave_out(loc: Loc) -> Loc | None:
    """What of a message event may be left out when it does not read: an attachment, or
    another field of the message but its ``mid``. Anything else fails the event."""
    if len(loc) >= 3 and loc[:2] == ("message", "attachments") and isinstance(loc[2], int):
        return loc[:3]
    if len(loc) >= 2 and loc[0] == "message" and loc[1] not in ("mid", "is_echo"):
        return loc[:2]
    return None


# Events a Page may be subscribed to that file nothing: each is its own named reason.
_UNFILED = frozenset(
    {
        "reaction",
        "referral",
        "optin",
        "account_linking",
        "pass_thread_control",
        "take_thread_control",
        "request_thread_control",
        "app_roles",
        "policy_enforcement",
        "game_play",
        "payment",
        "checkout_update",
        "pre_checkout",
    }
)


def _why(entry: Entry, event: Messaging, raw: Any) -> str:
    """The reason a readable event files nothing."""
    if event.sender.id is None:
        return "no_psid"  # a `user_ref` sender (checkbox plugin) has nobody to answer
    if event.sender.id == entry.id or (event.message is not None and event.message.is_echo):
        return "echo"
    keys = raw.keys() if isinstance(raw, dict) else ()
    return next((k for k in keys if k in _UNFILED), "other_event")


def _when(ms: int) -> datetime:
    return datetime.fromtimestamp(ms // 1000, UTC) + timedelta(milliseconds=ms % 1000)


def _clip(text: str) -> str:
    return text if len(text) <= _NOTE_PART_LIMIT else text[: _NOTE_PART_LIMIT - 1] + "…"


def _events(
    entry: Entry, item: Messaging, *, account: str, dropped: Sequence[str] = ()
) -> list[InboundEvent]:
    psid = item.sender.id
    # The Page itself as sender is an echo of what we (or another app) sent; `user_ref`
    # senders (the checkbox plugin) have no PSID to answer.
    if psid is None or psid == entry.id:
        raise Skip("echo" if psid is not None else "no_sender")
    ms = item.timestamp if item.timestamp is not None else entry.time
    if item.message is not None:
        if item.message.is_echo:
            raise Skip("echo", item.message.mid or "")
        return [_message(item.message, psid, _required(ms), account=account, dropped=dropped)]
    if item.postback is not None:
        return [_postback(item.postback, psid, _required(ms), account=account)]
    if item.message_edit is not None:
        return [_edit(item.message_edit, psid, _required(ms), account=account)]
    if item.delivery is not None:
        return _delivered(item.delivery, psid, ms, account=account)
    if item.read is not None:
        read = item.read
        return [
            StatusUpdate(
                account=account,
                channel=Channel.MESSENGER,
                dedup_key=f"read:{psid}:{read.watermark}",
                thread=psid,
                occurred_at=_when(ms if ms is not None else read.watermark),
                watermark=_when(read.watermark),
                status="read",
            )
        ]
    # Reactions, referrals, opt-ins, handovers ...: acknowledged, each ignored by name.
    return []


def _required(ms: int | None) -> int:
    if ms is None:
        raise ParseFailed("messenger: an event has no timestamp")
    return ms


def _sender(psid: str) -> Sender:
    return Sender(
        external_id=psid,
        identities=(
            Identity(
                kind="channel_user",
                channel=Channel.MESSENGER,
                value=psid,
                strength="strong",
                source="messenger",
            ),
        ),
    )


def _message(
    msg: RawMessage, psid: str, ms: int, *, account: str, dropped: Sequence[str] = ()
) -> Message:
    attachments, location, notes = _content(msg.attachments or [], msg.sticker_id)
    text = msg.text or ""
    if msg.quick_reply is not None and msg.quick_reply.payload:
        # `text` is the title of the button the customer tapped; the payload is ours.
        notes.insert(0, f"Quick reply: {_clip(msg.quick_reply.payload)}")
    if dropped:
        notes.append("Could not read and left out: " + ", ".join(dropped))
    if not (text or attachments or location or notes):
        notes.append("Unsupported Messenger message")
    return Message(
        account=account,
        channel=Channel.MESSENGER,
        dedup_key=msg.mid,
        thread=psid,
        occurred_at=_when(ms),
        external_id=msg.mid,
        sender=_sender(psid),
        text=text,
        attachments=tuple(attachments),
        reply_to=msg.reply_to.mid if msg.reply_to else None,
        location=location,
        note="\n".join(notes) or None,
    )


def _content(
    raw: list[RawAttachment], sticker_id: str | None = None
) -> tuple[list[Attachment], Location | None, list[str]]:
    attachments: list[Attachment] = []
    location: Location | None = None
    notes: list[str] = []
    # Until 2026-08-30 Meta sends a sticker twice: as the new `sticker` type and as the
    # old `image` with `payload.sticker_id`. With a `sticker` present the images that
    # carry a sticker_id are its duplicates; without one they are the sticker.
    if sticker_id is not None:
        # older deliveries name the sticker on the message: its images are the sticker
        raw = [_as_legacy_sticker(a, sticker_id) for a in raw]
    has_sticker_type = any(a.type == "sticker" for a in raw)
    legacy_url = next(
        (a.payload.url for a in raw if _is_legacy_sticker(a) and a.payload and a.payload.url),
        None,
    )
    for a in raw:
        p = a.payload
        if a.type == "sticker" or _is_legacy_sticker(a):
            if a.type == "image" and has_sticker_type:
                continue
            url = (p.url if p else None) or legacy_url
            if url:
                attachments.append(Attachment(kind="sticker", ref=url))
            notes.append(_sticker_note(p.sticker_id if p else None))
        elif a.type in _MEDIA:
            if p is not None and p.url:
                attachments.append(Attachment(kind=_MEDIA[a.type], ref=p.url))
            else:
                notes.append(f"Messenger {a.type} without a URL")
        elif a.type == "location" and p is not None and p.coordinates is not None:
            # Only in older API versions; current ones send shared places as `fallback`.
            location = Location(
                latitude=p.coordinates.lat,
                longitude=p.coordinates.long,
                name=a.title or p.title,
            )
        else:
            notes.append(_shared_note(a))
    return attachments, location, notes


def _as_legacy_sticker(a: RawAttachment, sticker_id: str) -> RawAttachment:
    if a.type != "image" or a.payload is None or a.payload.sticker_id is not None:
        return a
    payload = a.payload.model_copy(update={"sticker_id": sticker_id})
    return a.model_copy(update={"payload": payload})


def _is_legacy_sticker(a: RawAttachment) -> bool:
    return a.type == "image" and a.payload is not None and a.payload.sticker_id is not None


def _sticker_note(sticker_id: str | None) -> str:
    return "Sticker (thumbs up)" if sticker_id in _THUMBS_UP else "Sticker"


def _shared_note(a: RawAttachment) -> str:
    label = _SHARED.get(a.type) or f"Unsupported Messenger attachment ({_clip(a.type)})"
    p = a.payload
    title = a.title or (p.title if p else None)
    url = a.url or (p.url if p else None)
    details = " ".join(_clip(x) for x in (title, url) if x)
    return f"{label}: {details}" if details else label


def _postback(pb: Postback, psid: str, ms: int, *, account: str) -> Message:
    key = pb.mid or f"postback:{psid}:{ms}"
    return Message(
        account=account,
        channel=Channel.MESSENGER,
        dedup_key=key,
        thread=psid,
        occurred_at=_when(ms),
        external_id=key,
        sender=_sender(psid),
        text=pb.title or "",
        note=f"Button: {_clip(pb.payload)}" if pb.payload else "Button",
    )


def _edit(edit: MessageEdit, psid: str, ms: int, *, account: str) -> Message:
    # one key per edit of a message: each edit is its own note on the ticket
    key = f"edit:{edit.mid}:{edit.num_edit if edit.num_edit is not None else ms}"
    return Message(
        account=account,
        channel=Channel.MESSENGER,
        dedup_key=key,
        thread=psid,
        occurred_at=_when(ms),
        external_id=key,
        sender=_sender(psid),
        text=edit.text or "",
        edit_of=edit.mid,
        note=None if edit.text else "Edited a message; the new text is empty",
    )


def _delivered(d: Delivery, psid: str, ms: int | None, *, account: str) -> list[InboundEvent]:
    # The docs' delivery example has no timestamp: the entry's time, else the watermark.
    when = _when(ms if ms is not None else d.watermark)
    common: dict[str, Any] = {
        "account": account,
        "channel": Channel.MESSENGER,
        "thread": psid,
        "occurred_at": when,
        "status": "delivered",
    }
    # `mids` is absent for older clients; `watermark` is always there.
    out: list[InboundEvent] = [
        StatusUpdate(dedup_key=f"delivered:{mid}", external_id=mid, **common)
        for mid in dict.fromkeys(d.mids or ())
    ]
    out.append(
        StatusUpdate(
            dedup_key=f"delivered:{psid}:{d.watermark}", watermark=_when(d.watermark), **common
        )
    )
    return out
