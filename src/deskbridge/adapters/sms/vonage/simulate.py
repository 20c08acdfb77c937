"""Realistic Vonage Messages API webhook bodies for ``deskbridge simulate sms`` and tests
(sign them with ``adapters.sms.vonage.signature.sign``)."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime
from typing import Any

__all__ = ["sample_inbound", "sample_status"]


def _uuid(seed: str) -> str:
    return str(uuid.UUID(hashlib.sha256(seed.encode()).hexdigest()[:32]))


def _iso(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def sample_inbound(
    text: str, *, sender: str, to: str, seed: str, now: float, media: tuple[str, ...] = ()
) -> bytes:
    """An inbound SMS as the Messages API (v1) posts it (an MMS with ``media`` image URLs:
    one ``image``, or a ``content`` list for several). Numbers are E.164, with or
    without ``+`` (Vonage sends them without)."""
    doc: dict[str, Any] = {
        "channel": "mms" if media else "sms",
        "message_uuid": _uuid(seed),
        "to": to.lstrip("+"),
        "from": sender.lstrip("+"),
        "timestamp": _iso(now),
    }
    if not media:
        first = text.split(maxsplit=1)[0].upper() if text.strip() else ""
        doc |= {
            "message_type": "text",
            "text": text,
            "sms": {"num_messages": "1", "keyword": first},
            "usage": {"currency": "EUR", "price": "0.0057"},
        }
    elif len(media) == 1:
        doc |= {"message_type": "image", "image": {"url": media[0], "caption": text}}
    else:
        doc |= {"message_type": "content", "content": [{"type": "image", "url": u} for u in media]}
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def sample_status(
    status: str, *, message_uuid: str, sender: str, to: str, now: float, error: str = ""
) -> bytes:
    """A status webhook for a message we sent (``error``: a Messages API code)."""
    doc: dict[str, Any] = {
        "message_uuid": message_uuid,
        "to": to.lstrip("+"),
        "from": sender.lstrip("+"),
        "timestamp": _iso(now),
        "status": status,
        "channel": "sms",
        "usage": {"currency": "EUR", "price": "0.0333"},
        "sms": {"count_total": "1"},
    }
    if error:
        doc["error"] = {
            "type": f"https://developer.vonage.com/api-errors/messages#{error}",
            "title": error,
            "detail": "see the Messages API error list",
            "instance": "bf0ca0bf927b3b52e3cb03217e1a1ddf",
        }
    return json.dumps(doc, separators=(",", ":")).encode()
