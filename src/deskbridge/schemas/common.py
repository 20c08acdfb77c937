from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

__all__ = ["Channel", "Desk", "Frozen", "utcnow"]


class Channel(StrEnum):
    """A customer channel. The value is also the adapter folder, URL segment and key segment."""

    TELEGRAM = "telegram"
    WHATSAPP = "whatsapp"
    MESSENGER = "messenger"
    INSTAGRAM = "instagram"
    LINE = "line"
    EMAIL = "email"
    SIP = "sip"
    SMS = "sms"


class Desk(StrEnum):
    """A helpdesk. The value is also the connector folder and the `/desks/{desk}` segment."""

    SANDBOX = "sandbox"
    ZENDESK = "zendesk"
    INTERCOM = "intercom"
    UDESK = "udesk"


class Frozen(BaseModel):
    """Base of the normalized models: immutable, strict about unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def utcnow() -> datetime:
    return datetime.now(UTC)
