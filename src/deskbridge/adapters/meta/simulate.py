"""Realistic Messenger Platform webhook bodies for ``deskbridge simulate messenger`` and
``instagram``, and for tests."""

from __future__ import annotations

import json

__all__ = ["sample_message"]


def sample_message(
    text: str, *, product: str, owner: str, sender: str, mid: str, timestamp_ms: int
) -> bytes:
    """A one-entry webhook of ``product`` (its ``object``: ``page``, ``instagram``)
    carrying one text message from ``sender`` to ``owner`` (the Page or professional
    account), as Meta would POST it (JSON bytes; sign it with ``adapters.meta.sign``)."""
    event = {
        "sender": {"id": sender},
        "recipient": {"id": owner},
        "timestamp": timestamp_ms,
        "message": {"mid": mid, "text": text},
    }
    body = {
        "object": product,
        "entry": [{"id": owner, "time": timestamp_ms + 120, "messaging": [event]}],
    }
    return json.dumps(body, ensure_ascii=False).encode()
