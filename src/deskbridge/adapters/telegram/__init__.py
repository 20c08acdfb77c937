"""Telegram, per the Bot API docs at https://core.telegram.org/bots/api.

Webhook mode: one ``Update`` per POST, authenticated by the ``X-Telegram-Bot-Api-Secret-Token``
header set with ``setWebhook``; replies and downloads go through the Bot API over HTTPS.
"""

from deskbridge.adapters.telegram.adapter import TelegramAdapter
from deskbridge.adapters.telegram.simulate import sample_update
from deskbridge.adapters.telegram.spec import SPEC

__all__ = ["SPEC", "TelegramAdapter", "sample_update"]
