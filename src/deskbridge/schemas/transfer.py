from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from deskbridge.schemas.common import Channel, Frozen

__all__ = ["ChannelAddress", "ConversationRef", "DeskFields", "SendReceipt", "Upload"]


class ChannelAddress(Frozen):
    """Where a reply goes on a channel: the conversation's ``thread`` (e.g. Telegram chat id)."""

    channel: Channel
    account: str
    thread: str
    reply_to: str | None = None
    """The channel message id to answer, where the channel threads replies."""
    last_inbound_at: datetime | None = None
    """When the customer last wrote in this conversation (channels with reply windows)."""
    reply_token: str | None = None
    """An unused single-use reply token of the customer's last message (LINE)."""
    reply_token_at: datetime | None = None
    context: dict[str, str] = {}
    """The reply context of the customer's last message (``Message.context``)."""


class SendReceipt(Frozen):
    """What the channel accepted: its ids for the messages we sent (accepted, not delivered)."""

    external_ids: tuple[str, ...]
    used_reply_token: bool = False
    """The send spent ``ChannelAddress.reply_token`` (or LINE refused it): never reuse it."""
    quota_messages: int = 0
    """Messages that count against the channel plan's monthly quota (LINE push)."""


class DeskFields(Frozen):
    """What the account's routing rules set on the desk ticket (docs/routing.md)."""

    tags: tuple[str, ...] = ()
    priority: str | None = None
    """low, normal, high or urgent."""
    group: str | None = None
    custom_fields: dict[str, str] = {}
    form: str | None = None


class ConversationRef(Frozen):
    """What a desk connector needs to file a message: our conversation and its ticket, if any."""

    id: str
    account: str
    channel: Channel
    ticket_id: str | None = None
    contact_id: str
    subject: str
    comment_count: int = 0
    fields: DeskFields | None = None
    """Routing's ticket fields: set on a new ticket (tags also added to an existing one)."""


@dataclass(frozen=True, slots=True)
class Upload:
    """A file's bytes in flight between a channel and a desk (never stored in Redis)."""

    filename: str
    mime_type: str
    data: bytes
