"""Channel adapters, one package per channel, in an explicit registry."""

from __future__ import annotations

from collections.abc import Callable

from deskbridge.adapters.base import ChannelAdapter, Handshake
from deskbridge.adapters.telegram import TelegramAdapter
from deskbridge.schemas import Channel

__all__ = ["ADAPTERS", "ChannelAdapter", "Handshake"]

# Each factory takes (account, channel config, httpx client, *, api_base=override).
ADAPTERS: dict[Channel, Callable[..., ChannelAdapter]] = {
    Channel.TELEGRAM: TelegramAdapter,
}
