"""The one webhook URL of a Meta app for every WhatsApp number it serves."""

from __future__ import annotations

from typing import ClassVar

from deskbridge.adapters.base import Parsed, Peeked, Peeks
from deskbridge.adapters.meta.receiver import MetaReceiver
from deskbridge.adapters.whatsapp.parse import parse, peek
from deskbridge.schemas import Channel, RawRequest

__all__ = ["WhatsAppReceiver"]


class WhatsAppReceiver(MetaReceiver, Peeks):
    """``routes`` maps each ``phone_number_id`` to the account that owns it."""

    channel: ClassVar[Channel] = Channel.WHATSAPP

    def _parse(self, req: RawRequest) -> Parsed:
        """See :func:`deskbridge.adapters.whatsapp.parse.parse`."""
        return parse(req.body, self._routes)

    def peek(self, req: RawRequest) -> Peeked | None:
        """See :func:`deskbridge.adapters.whatsapp.parse.peek`."""
        return peek(req.body, self._routes)
