"""Channel adapters, one package per channel. ``registry`` builds them from the config."""

from deskbridge.adapters.base import (
    AccountReceiver,
    ChannelAdapter,
    Handshake,
    MediaLinks,
    Parsed,
    Receiver,
)

__all__ = ["AccountReceiver", "ChannelAdapter", "Handshake", "MediaLinks", "Parsed", "Receiver"]
