"""Realistic webhook bodies for ``deskbridge simulate messenger`` and tests."""

from __future__ import annotations

import json

__all__ = ["sample_message"]


def sample_message(text: str, *, page_id: str, psid: str, mid: str, timestamp_ms: int) -> bytes:
    """A one-entry ``page`` webhook carrying one text message from ``psid`` to the Page,
    as Meta would POST it (JSON bytes; sign it with ``adapters.meta.sign``)."""
    event = {
        "sender": {"id": psid},
        "recipient": {"id": page_id},
        "timestamp": timestamp_ms,
        "message": {"mid": mid, "text": text},
    }
    body = {
        "object": "page",
        "entry": [{"id": page_id, "time": timestamp_ms + 120, "messaging": [event]}],
    }
    return json.dumps(body, ensure_ascii=False).encode()
