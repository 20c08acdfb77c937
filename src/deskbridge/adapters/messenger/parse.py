"""Page webhook bodies to normalized events (pure: bytes in, events or a typed error out).

Models the subset of the Messenger Platform's webhook events we read (``messages``,
``message_echoes``, ``messaging_postbacks``, ``message_deliveries``, ``message_reads``):
https://developers.facebook.com/documentation/business-messaging/messenger-platform/webhooks/webhook-events

What Messenger shares with Instagram (the envelope, routing entries by Page id before
their events are validated, postbacks, edits, the message's note) is in ``meta.inbound``
and ``meta.events``; this module reads what is Messenger's own: stickers, locations,
shared content, deliveries and reads by watermark.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated

from pydantic import BeforeValidator, Field

from deskbridge.adapters.base import Parsed, Skip
from deskbridge.adapters.meta import events as build
from deskbridge.adapters.meta import inbound
from deskbridge.adapters.meta.inbound import Entry, Id, Millis, Raw
from deskbridge.adapters.meta.lenient import numeric
from deskbridge.schemas import Attachment, AttachmentKind, Channel, InboundEvent, Location, Message

__all__ = ["parse"]

_CHANNEL = Channel.MESSENGER

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


class Coordinates(Raw):
    # Strings in some deliveries and SDK samples; the SDKs read them as numbers.
    lat: Annotated[float, BeforeValidator(numeric), Field(ge=-90, le=90)]
    long: Annotated[float, BeforeValidator(numeric), Field(ge=-180, le=180)]


class Payload(inbound.Payload):
    sticker_id: Id | None = None
    coordinates: Coordinates | None = None


class RawAttachment(inbound.RawAttachment):
    payload: Payload | None = None
    # Fallback and legacy location attachments carry these beside the payload.
    title: str | None = None
    url: str | None = None


class ReplyTo(Raw):
    mid: str | None = None


class RawMessage(inbound.RawMessage):
    # Older deliveries name the sticker on the message rather than in its image payload.
    sticker_id: Id | None = None
    reply_to: ReplyTo | None = None
    attachments: list[RawAttachment] | None = None


class Delivery(Raw):
    mids: list[Annotated[str, Field(min_length=1)]] | None = None
    watermark: Millis


class Read(Raw):
    watermark: Millis


class Messaging(inbound.Messaging):
    message: RawMessage | None = None
    delivery: Delivery | None = None
    read: Read | None = None


def parse(body: bytes, *, routes: Mapping[str, str]) -> Parsed:
    """Events in one webhook body, each for the account ``routes`` maps its Page id to.

    Entries of Pages not in ``routes`` are skipped and counted in ``unrouted``; Instagram
    bodies and events we do not handle parse to nothing. Raises ``PayloadInvalid`` when
    the body is not a JSON object, ``ParseFailed`` when it is not a Page webhook at all
    (the message never quotes the body). Inside it every ``messaging[]`` event is read on
    its own: one that cannot be read is an item failure of the Page's account (of nobody
    when the entry names no Page we can read), and its siblings are parsed as usual.
    """
    return inbound.parse(body, routes, _PRODUCT)


def _events(
    entry: Entry, item: Messaging, account: str, dropped: Sequence[str]
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
        return [_message(item.message, psid, build.required(_CHANNEL, ms), account, dropped)]
    if item.postback is not None:
        ms = build.required(_CHANNEL, ms)
        return [build.postback(_CHANNEL, item.postback, psid, ms, account=account)]
    if item.message_edit is not None:
        ms = build.required(_CHANNEL, ms)
        return [build.edit(_CHANNEL, item.message_edit, psid, ms, account=account)]
    if item.delivery is not None:
        return _delivered(item.delivery, psid, ms, account=account)
    if item.read is not None:
        watermark = item.read.watermark
        return [build.up_to(_CHANNEL, "read", psid, watermark, ms, account=account)]
    # Reactions, referrals, opt-ins, handovers ...: acknowledged, each ignored by name.
    return []


def _message(msg: RawMessage, psid: str, ms: int, account: str, dropped: Sequence[str]) -> Message:
    attachments, location, notes = _content(msg.attachments or [], msg.sticker_id)
    return build.message(
        _CHANNEL,
        msg.mid,
        psid,
        ms,
        account=account,
        text=msg.text or "",
        attachments=attachments,
        notes=notes,
        quick_reply=msg.quick_reply,
        reply_to=msg.reply_to.mid if msg.reply_to else None,
        dropped=dropped,
        location=location,
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
            title = a.title or (p.title if p else None)
            url = a.url or (p.url if p else None)
            notes.append(build.shared_note(_CHANNEL, _SHARED, a.type, title, url))
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


def _delivered(d: Delivery, psid: str, ms: int | None, *, account: str) -> list[InboundEvent]:
    # The docs' delivery example has no timestamp: the entry's time, else the watermark.
    at = ms if ms is not None else d.watermark
    # `mids` is absent for older clients; `watermark` is always there.
    out: list[InboundEvent] = [
        build.of_message(_CHANNEL, "delivered", psid, mid, at, account=account)
        for mid in dict.fromkeys(d.mids or ())
    ]
    out.append(build.up_to(_CHANNEL, "delivered", psid, d.watermark, ms, account=account))
    return out


_PRODUCT = inbound.Product(
    channel=_CHANNEL,
    object="page",
    kind="Page",
    model=Messaging,
    events=_events,
    core=frozenset({"mid", "is_echo"}),
    # Events a Page may be subscribed to that file nothing: each is its own named reason.
    unfiled=frozenset(
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
    ),
    foreign=frozenset({"instagram"}),
)
