from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field

from deskbridge.schemas.common import Channel, Frozen
from deskbridge.schemas.contacts import Identity

__all__ = [
    "Attachment",
    "AttachmentKind",
    "BotTurn",
    "CallEvent",
    "ChannelEvent",
    "DeskNote",
    "Handoff",
    "InboundEvent",
    "Location",
    "Message",
    "Sender",
    "SharedContact",
    "StatusUpdate",
]

AttachmentKind = Literal["image", "audio", "voice", "video", "document", "sticker"]


class Attachment(Frozen):
    """A file on a message. ``ref`` is how its origin fetches it (a channel file id, or a
    desk's content URL); the bytes themselves are never stored in the event."""

    kind: AttachmentKind
    ref: str
    filename: str | None = None
    mime_type: str | None = None
    size: int | None = None
    sha256: str | None = None
    width: int | None = None
    height: int | None = None
    duration: float | None = None


class Location(Frozen):
    latitude: float
    longitude: float
    name: str | None = None
    address: str | None = None


class SharedContact(Frozen):
    """A contact card the customer sent. ``phone`` is E.164 when it could be normalized."""

    phone: str | None = None
    raw_phone: str | None = None
    name: str | None = None
    channel_user_id: str | None = None
    is_sender: bool = False


class Sender(Frozen):
    """Who wrote: the channel's id for the person plus everything the channel says about them."""

    external_id: str
    display_name: str | None = None
    username: str | None = None
    language: str | None = None
    identities: tuple[Identity, ...] = ()


class _Event(Frozen):
    account: str
    channel: Channel
    dedup_key: str
    thread: str
    """The channel's conversation key (Telegram chat id, WhatsApp wa_id, LINE group id ...)."""
    occurred_at: datetime


class BotTurn(Frozen):
    """One line of a bot session: what the customer wrote or what the bot answered."""

    role: Literal["customer", "bot"]
    text: str
    at: datetime


class Handoff(Frozen):
    """What a person needs from the bot session a message ends (issue 23): the whole
    exchange before it (the bot's lines marked as automated), the fields the bot
    collected, and why a person takes over."""

    reason: str
    turns: tuple[BotTurn, ...] = ()
    collected: dict[str, str] = {}


class Message(_Event):
    kind: Literal["message"] = "message"
    external_id: str
    sender: Sender
    text: str = ""
    attachments: tuple[Attachment, ...] = ()
    reply_to: str | None = None
    """The channel id of the message this one answers."""
    reply_quote: str | None = None
    """The start of the answered message's text, when the channel includes it."""
    edit_of: str | None = None
    """Set on an edit: the channel id of the message that was edited."""
    location: Location | None = None
    contact: SharedContact | None = None
    note: str | None = None
    """A readable description of content that has no text (a sticker, an unsupported type)."""
    thread_title: str | None = None
    reply_token: str | None = None
    """A single-use token for answering this message for free (LINE's replyToken)."""
    context: dict[str, str] = {}
    """What a reply to this message needs beyond the thread (email: the customer's
    address, subject, Message-ID and References)."""
    handoff: Handoff | None = Field(default=None, exclude=True)
    """Set at filing when this message ends a bot session: filed with the session before
    it. Never stored with the event (a retry rebuilds it from the session)."""


class StatusUpdate(_Event):
    """What the channel says became of a message we sent: by its channel id, or for every
    message up to ``watermark`` (Messenger's delivery and read receipts)."""

    kind: Literal["status"] = "status"
    external_id: str | None = None
    watermark: datetime | None = None
    status: Literal["sent", "delivered", "read", "failed"]
    error_code: str | None = None
    error: str | None = None
    """The platform's error title (never message content)."""
    window_closed: bool = False
    """A ``failed`` status because the customer's reply window was closed when the
    message went out (WhatsApp 131047): the reply is held again, as when the send itself
    is refused for it."""


class CallEvent(_Event):
    """A call the customer made (SIP INVITE). deskbridge carries no media: the call is
    redirected to the call centre or missed, and either way filed on the ticket."""

    kind: Literal["call"] = "call"
    call_id: str
    sender: Sender
    state: Literal["ringing", "answered", "ended", "missed", "rejected", "redirected"]
    duration: float | None = None
    callee: str | None = None
    """The number called (E.164 when it is one)."""
    redirected_to: str | None = None
    callback_requested: bool = False
    hung_up: bool = False
    """The caller gave up while it rang (CANCEL)."""
    context: dict[str, str] = {}
    """Where a reply goes, as on ``Message.context``."""


class ChannelEvent(_Event):
    """Something the customer did that is not a message: followed or unfollowed (blocked)
    the account, the bot joined or left a group, a message was retracted, or the customer
    withdrew or gave their consent to messages on the channel (SMS STOP/START)."""

    kind: Literal["channel_event"] = "channel_event"
    action: Literal[
        "follow",
        "unfollow",
        "join",
        "leave",
        "unsend",
        "moved_to",
        "moved_from",
        "opt_out",
        "opt_in",
    ]
    sender: Sender | None = None
    external_id: str | None = None
    """For ``unsend``: the channel id of the retracted message. For ``moved_to`` and
    ``moved_from`` (a chat the channel replaced, as Telegram does when a group becomes a
    supergroup): the other chat's id, the new one and the old one respectively."""


class DeskNote(_Event):
    """An internal note deskbridge writes on a conversation's ticket for the agent (a held
    reply, a failed one, a translation, a merged contact). Queued as an inbound delivery of
    its own in the conversation's lane, so it is retried and dead-lettered like a message
    and lands after the message it concerns. Never parsed from a channel's request."""

    kind: Literal["note"] = "note"
    text: str
    cause: str
    """What the note is about (``<delivery id>:<why>``); its dedup key derives from it."""
    tags: tuple[str, ...] = ()
    """Tags added to the ticket with the note, where the desk has tags (``TagsTickets``)."""


InboundEvent = Annotated[
    Message | StatusUpdate | CallEvent | ChannelEvent, Field(discriminator="kind")
]
