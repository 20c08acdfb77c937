"""The one webhook URL of a Meta app for every WhatsApp number it serves."""

from __future__ import annotations

from typing import ClassVar

from deskbridge.adapters.base import Parsed
from deskbridge.adapters.meta.receiver import MetaReceiver
from deskbridge.adapters.whatsapp.parse import parse
from deskbridge.schemas import Channel, RawRequest

__all__ = ["WhatsAppReceiver"]


class WhatsAppReceiver(MetaReceiver):
    """``routes`` maps each ``phone_number_id`` to the account that owns it."""

    channel: ClassVar[Channel] = Channel.WHATSAPP

    def _parse(self, req: RawRequest) -> Parsed:
        """See :func:`deskbridge.adapters.whatsapp.parse.parse`."""
        return parse(req.body, self._routes)
