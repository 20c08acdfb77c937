"""Realistic webhook bodies for ``deskbridge simulate instagram`` and tests."""

from __future__ import annotations

import json

__all__ = ["sample_message"]


def sample_message(text: str, *, ig_id: str, igsid: str, mid: str, timestamp_ms: int) -> bytes:
    """A one-entry ``instagram`` webhook carrying one text message from ``igsid`` to the
    professional account, as Meta would POST it (JSON bytes; sign it with
    ``adapters.meta.sign``)."""
    event = {
        "sender": {"id": igsid},
        "recipient": {"id": ig_id},
        "timestamp": timestamp_ms,
        "message": {"mid": mid, "text": text},
    }
    body = {
        "object": "instagram",
        "entry": [{"id": ig_id, "time": timestamp_ms + 120, "messaging": [event]}],
    }
    return json.dumps(body, ensure_ascii=False).encode()
