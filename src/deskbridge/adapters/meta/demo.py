"""The demo account's Meta app, shared by its WhatsApp number, its Messenger Page and its
Instagram account."""

from __future__ import annotations

import secrets
from typing import Any

from deskbridge.adapters.spec import DemoContext

__all__ = ["DEMO_APP", "DEMO_APP_ID", "demo_apps", "demo_secrets"]

DEMO_APP = "demo-meta"
DEMO_APP_ID = "100000000000004"
"""The sandbox app's id: ``channels register`` reads and sets its webhooks at the
gateway's Graph stand-in."""


def demo_secrets() -> dict[str, Any]:
    """The ``meta`` group of ``demo-secrets.json``: the app's and both channels' secrets."""
    return {
        "app_secret": secrets.token_hex(16),
        "verify_token": secrets.token_urlsafe(24),
        "whatsapp_access_token": "EAA" + secrets.token_urlsafe(48),
        "page_access_token": "EAA" + secrets.token_urlsafe(48),
        "instagram_access_token": "IGAA" + secrets.token_urlsafe(48),
    }


def demo_apps(ctx: DemoContext) -> dict[str, Any]:
    """The accounts file's ``apps:`` entry of the demo's Meta app."""
    meta = ctx.secrets["meta"]
    return {
        DEMO_APP: {
            "type": "meta",
            "app_id": DEMO_APP_ID,
            "app_secret": meta["app_secret"],
            "verify_token": meta["verify_token"],
        }
    }
