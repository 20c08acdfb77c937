"""The inbound side of one account's Telegram bot: its webhook URL, one Update a request."""

from __future__ import annotations

from deskbridge.adapters.base import AccountReceiver, Parsed, Peeked, Peeks
from deskbridge.adapters.telegram.adapter import TelegramAdapter
from deskbridge.adapters.telegram.parse import parse_items, peek
from deskbridge.schemas import RawRequest

__all__ = ["TelegramReceiver"]


class TelegramReceiver(AccountReceiver, Peeks):
    """Verifies the secret token; an Update read and not filed names its reason."""

    def __init__(self, adapter: TelegramAdapter) -> None:
        super().__init__(adapter)
        self._account = adapter.account

    def parse(self, req: RawRequest) -> Parsed:
        """See :func:`deskbridge.adapters.telegram.parse.parse_items`."""
        return parse_items(req.body, account=self._account)

    def peek(self, req: RawRequest) -> Peeked | None:
        """See :func:`deskbridge.adapters.telegram.parse.peek`."""
        return peek(req.body, account=self._account)
