"""The inbound side of one Meta app's Messenger webhook: every Page it serves posts here."""

from __future__ import annotations

from typing import ClassVar

from deskbridge.adapters.base import Parsed
from deskbridge.adapters.messenger.parse import parse
from deskbridge.adapters.meta.receiver import MetaReceiver
from deskbridge.schemas import Channel, RawRequest

__all__ = ["MessengerReceiver"]


class MessengerReceiver(MetaReceiver):
    """``routes`` maps Page ids to the accounts that own them."""

    channel: ClassVar[Channel] = Channel.MESSENGER

    def _parse(self, req: RawRequest) -> Parsed:
        """The events of every routed entry; see :func:`parse.parse` for errors."""
        return parse(req.body, routes=self._routes)
