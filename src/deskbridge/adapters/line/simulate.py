"""Realistic webhook bodies for ``deskbridge simulate line`` and tests."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["sample_message"]


def sample_message(
    text: str,
    *,
    user_id: str,
    event_id: str,
    message_id: str,
    timestamp_ms: int,
    reply_token: str = "simulated-reply-token",  # noqa: S107 - a sample, not a secret
    destination: str = "U" + "0" * 32,
) -> bytes:
    """A one-to-one text message event as LINE would POST it (JSON bytes, unsigned).

    ``event_id`` is the ``webhookEventId`` (a ULID at LINE), ``timestamp_ms`` the event
    time in milliseconds.
    """
    event: dict[str, Any] = {
        "type": "message",
        "message": {
            "type": "text",
            "id": message_id,
            "quoteToken": f"q-{message_id}",
            "text": text,
        },
        "webhookEventId": event_id,
        "deliveryContext": {"isRedelivery": False},
        "timestamp": timestamp_ms,
        "source": {"type": "user", "userId": user_id},
        "replyToken": reply_token,
        "mode": "active",
    }
    body = {"destination": destination, "events": [event]}
    return json.dumps(body, ensure_ascii=False).encode()
