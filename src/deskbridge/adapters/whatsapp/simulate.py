"""Realistic webhook bodies for ``deskbridge simulate whatsapp`` and tests."""

from __future__ import annotations

import json
from typing import Any

from deskbridge.adapters.whatsapp.parse import OBJECT

__all__ = ["sample_message"]


def sample_message(
    text: str,
    *,
    phone_number_id: str,
    wa_id: str | None,
    bsuid: str | None = None,
    name: str = "Demo Customer",
    message_id: str,
    timestamp: int,
    display_phone_number: str = "15550001111",
    waba_id: str = "100000000000001",
) -> bytes:
    """A ``messages`` webhook with one text message, as Meta would POST it (JSON bytes).

    ``wa_id`` (digits) and/or ``bsuid`` name the customer; a customer who hides their
    number behind a username has only a BSUID. ``timestamp`` is Unix seconds.
    """
    if not wa_id and not bsuid:
        raise ValueError("a sender needs a wa_id, a bsuid or both")
    contact: dict[str, Any] = {"profile": {"name": name}}
    message: dict[str, Any] = {}
    if wa_id:
        contact["wa_id"] = wa_id
        message["from"] = wa_id
    if bsuid:
        contact["user_id"] = bsuid
        message["from_user_id"] = bsuid
    message |= {
        "id": message_id,
        "timestamp": str(timestamp),
        "type": "text",
        "text": {"body": text},
    }
    value = {
        "messaging_product": "whatsapp",
        "metadata": {
            "display_phone_number": display_phone_number,
            "phone_number_id": phone_number_id,
        },
        "contacts": [contact],
        "messages": [message],
    }
    body = {
        "object": OBJECT,
        "entry": [{"id": waba_id, "changes": [{"value": value, "field": "messages"}]}],
    }
    return json.dumps(body, ensure_ascii=False).encode()
