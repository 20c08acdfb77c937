"""Udesk Open API v2 request signing (pure)."""

from __future__ import annotations

import hashlib

__all__ = ["SIGN_VERSION", "sign", "signed_query"]

SIGN_VERSION = "v2"


def sign(email: str, token: str, timestamp: int, nonce: str) -> str:
    """``lowercase hex sha256("{email}&{token}&{timestamp}&{nonce}&v2")``."""
    raw = f"{email}&{token}&{timestamp}&{nonce}&{SIGN_VERSION}"
    return hashlib.sha256(raw.encode()).hexdigest()


def signed_query(email: str, token: str, timestamp: int, nonce: str) -> dict[str, str]:
    """The auth parameters every Open API call carries in its query string."""
    return {
        "email": email,
        "timestamp": str(timestamp),
        "nonce": nonce,
        "sign_version": SIGN_VERSION,
        "sign": sign(email, token, timestamp, nonce),
    }
