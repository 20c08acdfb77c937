"""The inbound side of one account's LINE channel: its webhook URL, read event by event."""

from __future__ import annotations

from deskbridge.adapters.base import AccountReceiver, Parsed, Peeked, Peeks
from deskbridge.adapters.line.adapter import LineAdapter
from deskbridge.adapters.line.parse import parse_items, peek
from deskbridge.schemas import RawRequest

__all__ = ["LineReceiver"]


class LineReceiver(AccountReceiver, Peeks):
    """Verifies with the channel secret; one event LINE sent that we cannot read is an
    item failure of this account and never costs the other events of the body."""

    def __init__(self, adapter: LineAdapter) -> None:
        super().__init__(adapter)
        self._account = adapter.account

    def parse(self, req: RawRequest) -> Parsed:
        """See :func:`deskbridge.adapters.line.parse.parse_items`."""
        return parse_items(req.body, account=self._account)

    def peek(self, req: RawRequest) -> Peeked | None:
        """See :func:`deskbridge.adapters.line.parse.peek`."""
        return peek(req.body, account=self._account)
