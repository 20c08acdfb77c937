from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

__all__ = ["BRANDS", "Channel", "Desk", "Frozen", "brand", "utcnow"]


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
    WEBCHAT = "webchat"

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


BRANDS: dict[str, str] = {
    "telegram": "Telegram",
    "whatsapp": "WhatsApp",
    "messenger": "Messenger",
    "line": "LINE",
    "email": "Email",
    "sip": "SIP",
    "instagram": "Instagram",
    "sms": "SMS",
    "webchat": "Web chat",
    "twilio": "Twilio",
    "sandbox": "Sandbox",
    "zendesk": "Zendesk",
    "intercom": "Intercom",
    "udesk": "Udesk",
}
"""Every channel, desk and platform name as its owner spells it, by our lower-case value:
the one table user-visible text (ticket subjects, notes, pages, CLI output) takes names
from. A new channel or desk adds its spelling here, beside its enum member."""


def brand(value: str) -> str:
    """``value`` (a channel, desk or platform, any case) as its owner spells it; an
    unknown name comes back unchanged."""
    return BRANDS.get(value.lower(), value)
