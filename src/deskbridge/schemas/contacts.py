from __future__ import annotations

from datetime import datetime
from typing import Literal

from deskbridge.schemas.common import Channel, Frozen

__all__ = ["Contact", "Identity", "IdentityKind", "Strength"]

IdentityKind = Literal["channel_user", "phone", "email"]
Strength = Literal["strong", "weak"]


class Identity(Frozen):
    """One way to recognise a person.

    ``channel_user``: a per-channel id (``channel`` set). ``phone``: E.164. ``email``:
    lower-cased address. ``strength`` says whether it may merge contacts on its own.
    """

    kind: IdentityKind
    value: str
    channel: Channel | None = None
    strength: Strength = "weak"
    source: str = ""


class Contact(Frozen):
    id: str
    account: str
    display_name: str | None = None
    identities: tuple[Identity, ...] = ()
    attributes: dict[str, str] = {}
    """What channels told us about the person besides ids: e.g. ``line_follow``."""
    created_at: datetime
