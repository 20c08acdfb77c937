"""Channel, desk and platform names as their owners spell them: the one table every
user-visible text (ticket subjects, notes, pages, CLI output) takes them from. Imports
nothing, so the CLI can use it without loading the models."""

from __future__ import annotations

__all__ = ["BRANDS", "brand"]

BRANDS: dict[str, str] = {
    "telegram": "Telegram",
    "whatsapp": "WhatsApp",
    "messenger": "Messenger",
    "line": "LINE",
    "email": "Email",
    "sip": "SIP",
    "instagram": "Instagram",
    "sandbox": "Sandbox",
    "zendesk": "Zendesk",
    "intercom": "Intercom",
    "udesk": "Udesk",
}
"""Every channel, desk and platform name as its owner spells it, by our lower-case value:
the one table user-visible text (ticket subjects, notes, CLI output) takes names from."""


def brand(value: str) -> str:
    """``value`` (a channel, desk or platform, any case) as its owner spells it; an
    unknown name comes back unchanged."""
    return BRANDS.get(value.lower(), value)
