"""``deskbridge simulate webchat``: a visitor's message over the widget's own socket,
exactly as the script sends it (hello, message, the server's ack)."""

from __future__ import annotations

import secrets
from typing import Any

import aiohttp

from deskbridge.adapters.webchat.identity import user_hash
from deskbridge.config import WebchatConfig
from deskbridge.errors import DeliveryError

__all__ = ["send_sample"]

_CODES = {"rate_limited": 429, "invalid": 400, "identity": 401}


def hello(config: WebchatConfig, sender: str, name: str) -> dict[str, Any]:
    """The hello frame of a visitor ``sender``: verified by the site when the account
    has an identity secret (an address is the user's email, else their user id)."""
    if config.identity_secret is None:
        return {"type": "hello", "visitor": None, "after": 0}
    secret = config.identity_secret.get_secret_value()
    user: dict[str, str] = {"hash": user_hash(secret, sender), "name": name}
    user["email" if "@" in sender else "user_id"] = sender
    return {"type": "hello", "visitor": None, "user": user, "after": 0}


async def send_sample(
    base_url: str, account: str, config: WebchatConfig, *, text: str, sender: str, name: str
) -> int:
    """Sends one message; returns 200 once the gateway acknowledged it, else the HTTP
    status its refusal stands for. Raises ``DeliveryError`` when no gateway answers."""
    url = base_url.rstrip("/") + f"/widget/v1/{account}/socket"
    origin = config.allowed_origins[0]
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(
                url, origin=origin, timeout=aiohttp.ClientWSTimeout(ws_receive=10.0)
            ) as ws,
        ):
            await ws.send_json(hello(config, sender, name))
            cid = secrets.token_urlsafe(12)
            await ws.send_json({"type": "message", "id": cid, "text": text})
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                frame = msg.json()
                if frame.get("type") == "ack" and frame.get("id") == cid:
                    return 200
                if frame.get("type") == "error":
                    return _CODES.get(str(frame.get("code")), 400)
            return 503
    except aiohttp.WSServerHandshakeError as exc:
        return exc.status
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise DeliveryError(f"no answer from the widget's socket: {type(exc).__name__}") from exc
