from __future__ import annotations

import hashlib
import hmac

from deskbridge.adapters.base import Handshake
from deskbridge.errors import SignatureInvalid
from deskbridge.schemas import RawRequest

__all__ = ["SIGNATURE_HEADER", "handshake", "sign", "verify"]

SIGNATURE_HEADER = "x-hub-signature-256"


def sign(app_secret: str, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value Meta sends: ``sha256=`` + hex HMAC of the body."""
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def verify(req: RawRequest, app_secret: str) -> None:
    """Raise ``SignatureInvalid`` unless ``X-Hub-Signature-256`` matches the raw body,
    compared in constant time. The legacy SHA-1 header is not accepted."""
    given = req.headers.get(SIGNATURE_HEADER, "")
    if not given.startswith("sha256="):
        raise SignatureInvalid("missing X-Hub-Signature-256")
    expected = sign(app_secret, req.body)
    if not hmac.compare_digest(given.lower().encode(), expected.encode()):
        raise SignatureInvalid("X-Hub-Signature-256 does not match")


def handshake(req: RawRequest, verify_token: str) -> Handshake:
    """Meta's verification GET: echo ``hub.challenge`` when ``hub.mode`` is ``subscribe``
    and ``hub.verify_token`` matches (constant time); 403 otherwise."""
    mode = req.query.get("hub.mode", "")
    token = req.query.get("hub.verify_token", "")
    challenge = req.query.get("hub.challenge", "")
    if (
        mode == "subscribe"
        and challenge
        and hmac.compare_digest(token.encode(), verify_token.encode())
    ):
        return Handshake(status=200, body=challenge)
    return Handshake(status=403, body="verification failed")
