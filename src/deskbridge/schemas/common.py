from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from deskbridge.brands import BRANDS, brand

__all__ = ["BRANDS", "Channel", "Desk", "Frozen", "brand", "utcnow"]


class Channel(StrEnum):
    """A customer channel. The value is also the adapter folder, URL segment and key segment."""

    TELEGRAM = "telegram"
    WHATSAPP = "whatsapp"
    MESSENGER = "messenger"
    LINE = "line"
    EMAIL = "email"
    SIP = "sip"

    @property
    def brand(self) -> str:
        """The channel's name as its owner spells it (``WhatsApp``, ``LINE``, ``SIP``)."""
        return BRANDS[self.value]


class Desk(StrEnum):
    """A helpdesk. The value is also the connector folder and the `/desks/{desk}` segment."""

    SANDBOX = "sandbox"
    ZENDESK = "zendesk"
    INTERCOM = "intercom"
    UDESK = "udesk"

    @property
    def brand(self) -> str:
        """The desk's name as its owner spells it (``Zendesk``, ``Udesk``)."""
        return BRANDS[self.value]


class Frozen(BaseModel):
    """Base of the normalized models: immutable, strict about unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def utcnow() -> datetime:
    return datetime.now(UTC)
