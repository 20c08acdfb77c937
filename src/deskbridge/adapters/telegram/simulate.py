"""Realistic Updates for ``deskbridge simulate telegram`` and tests."""

from __future__ import annotations

import json
import time
from typing import Any

from deskbridge.adapters.telegram.send import utf16_len

__all__ = ["sample_update"]


def sample_update(
    text: str,
    *,
    update_id: int,
    chat_id: int,
    user_id: int,
    first_name: str = "Demo",
    username: str | None = None,
    date: int | None = None,
) -> bytes:
    """A private-chat text ``message`` Update as Telegram would POST it (JSON bytes).

    ``message_id`` equals ``update_id``; ``date`` defaults to now (Unix seconds).
    """
    handle: dict[str, Any] = {} if username is None else {"username": username}
    user = {
        "id": user_id,
        "is_bot": False,
        "first_name": first_name,
        **handle,
        "language_code": "en",
    }
    chat = {"id": chat_id, "first_name": first_name, **handle, "type": "private"}
    message: dict[str, Any] = {
        "message_id": update_id,
        "from": user,
        "chat": chat,
        "date": int(time.time()) if date is None else date,
        "text": text,
    }
    if text.startswith("/"):
        command = text.split(maxsplit=1)[0]
        message["entities"] = [{"offset": 0, "length": utf16_len(command), "type": "bot_command"}]
    return json.dumps({"update_id": update_id, "message": message}, ensure_ascii=False).encode()
