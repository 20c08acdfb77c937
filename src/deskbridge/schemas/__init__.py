"""The normalized world every channel and desk is translated to and from."""

from deskbridge.schemas.common import BRANDS, Channel, Desk, brand, utcnow
from deskbridge.schemas.contacts import Contact, Identity, IdentityKind, Strength
from deskbridge.schemas.deliveries import (
    Attempt,
    AttemptOutcome,
    Delivery,
    DeliveryState,
    Direction,
)
from deskbridge.schemas.events import (
    Attachment,
    AttachmentKind,
    BotTurn,
    CallEvent,
    ChannelEvent,
    DeskNote,
    Handoff,
    InboundEvent,
    Location,
    Message,
    Sender,
    SharedContact,
    StatusUpdate,
)
from deskbridge.schemas.raw import RawRequest
from deskbridge.schemas.replies import AgentReply, Template
from deskbridge.schemas.transfer import (
    ChannelAddress,
    ConversationRef,
    DeskFields,
    SendReceipt,
    Upload,
)

__all__ = [
    "BRANDS",
    "AgentReply",
    "Attachment",
    "AttachmentKind",
    "Attempt",
    "AttemptOutcome",
    "BotTurn",
    "CallEvent",
    "Channel",
    "ChannelAddress",
    "ChannelEvent",
    "Contact",
    "ConversationRef",
    "Delivery",
    "DeliveryState",
    "Desk",
    "DeskFields",
    "DeskNote",
    "Direction",
    "Handoff",
    "Identity",
    "IdentityKind",
    "InboundEvent",
    "Location",
    "Message",
    "RawRequest",
    "SendReceipt",
    "Sender",
    "SharedContact",
    "StatusUpdate",
    "Strength",
    "Template",
    "Upload",
    "brand",
    "utcnow",
]
