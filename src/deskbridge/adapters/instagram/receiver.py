"""The inbound side of one Meta app's Instagram webhook: every professional account it
serves posts here."""

from __future__ import annotations

from typing import ClassVar

from deskbridge.adapters.base import Parsed
from deskbridge.adapters.instagram.parse import parse
from deskbridge.adapters.meta.receiver import MetaReceiver
from deskbridge.schemas import Channel, RawRequest

__all__ = ["InstagramReceiver"]


class InstagramReceiver(MetaReceiver):
    """``routes`` maps Instagram professional account ids to the accounts that own them."""

    channel: ClassVar[Channel] = Channel.INSTAGRAM

    def _parse(self, req: RawRequest) -> Parsed:
        """The events of every routed entry; see :func:`parse.parse` for errors."""
        return parse(req.body, routes=self._routes)
