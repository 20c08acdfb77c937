"""Small helpers every desk connector shares."""

from __future__ import annotations

from collections.abc import Iterable

from deskbridge.schemas import Contact

__all__ = ["display_name", "unique"]


def display_name(contact: Contact, *, limit: int | None = None) -> str:
    """The desk user's name: the contact's, else "<Channel> user", else "Customer"."""
    if contact.display_name and contact.display_name.strip():
        name = contact.display_name.strip()
        return name[:limit] if limit else name
    for identity in contact.identities:
        if identity.kind == "channel_user" and identity.channel is not None:
            return f"{identity.channel.value.capitalize()} user"
    return "Customer"


def unique(values: Iterable[str]) -> list[str]:
    """Non-empty values, first occurrence kept, in order."""
    out: list[str] = []
    for v in values:
        if v and v not in out:
            out.append(v)
    return out
