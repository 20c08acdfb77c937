"""The outbound side of one Instagram professional account: the messaging API and
attachment downloads (shared with Messenger in ``meta.outbound``) and profile lookups."""

from __future__ import annotations

from typing import ClassVar

import httpx
from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError

from deskbridge.adapters.capabilities import LooksUpDisplayNames
from deskbridge.adapters.meta.outbound import HUMAN_AGENT_WINDOW, STANDARD_WINDOW, MessagingAdapter
from deskbridge.adapters.meta.subscribe import AppWebhook, Subscription
from deskbridge.config.accounts import GRAPH_API_BASE, InstagramConfig
from deskbridge.errors import DeliveryError
from deskbridge.schemas import Channel

__all__ = ["HUMAN_AGENT_WINDOW", "STANDARD_WINDOW", "TEXT_LIMIT_BYTES", "InstagramAdapter"]

TEXT_LIMIT_BYTES = 1000
"""Instagram: "Message text must be UTF-8 and be a 1000 bytes or less"."""
FIELDS = ("messages", "message_reactions", "messaging_seen", "messaging_postbacks", "message_edit")
"""The Instagram webhook fields deskbridge reads (instagram-platform/webhooks/fields)."""


class _Profile(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    name: str | None = None
    username: str | None = None


class InstagramAdapter(MessagingAdapter[InstagramConfig], LooksUpDisplayNames):
    """One account's Instagram inbox. ``send`` posts to ``<base>/<version>/<id>/messages``
    (``page_id`` when set, else ``ig_id``), its text split at 1000 UTF-8 bytes, image,
    audio, video and file (pdf) attachments by URL; ``display_name`` asks the profile
    API."""

    channel: ClassVar[Channel] = Channel.INSTAGRAM
    text_limit: ClassVar[int] = TEXT_LIMIT_BYTES
    utf8: ClassVar[bool] = True
    inbox: ClassVar[str] = "account"
    # [S] 10/2534022 is the error Instagram answers a send outside its window with
    # (reported by integrators; Meta's error table lists code 10 as a permission error);
    # 10/2018278 is Messenger's, which the Messenger Platform's Instagram send shares.
    window_closed: ClassVar[frozenset[tuple[int, int]]] = frozenset({(10, 2534022), (10, 2018278)})
    fallback_types: ClassVar[dict[str, str]] = {
        "image": "image",
        "sticker": "image",
        "audio": "audio",
        "voice": "audio",
        # Meta's attachment upload for Instagram: image, video, audio or file (pdf)
        "video": "video",
    }
    # Meta's API does not set the app's Instagram webhook: only read (meta.subscribe)
    app_hook: ClassVar[AppWebhook] = AppWebhook(
        "instagram", FIELDS, by_api=False, brand="Instagram"
    )

    @staticmethod
    def _sender(config: InstagramConfig) -> tuple[str, SecretStr]:
        return config.page_id or config.ig_id, config.access_token

    @staticmethod
    def _app_base(config: InstagramConfig) -> str:
        # the app's edges are on graph.facebook.com, whichever host the account sends on
        return config.base_url if config.page_id else GRAPH_API_BASE

    def _subscription(self) -> Subscription:
        """Instagram Login: the account itself subscribes to the app's Instagram fields.
        Facebook Login: the linked Page does, to any Page field (messenger-platform/
        instagram/features/webhook, "Enable Page Subscriptions")."""
        cfg = self._config
        if cfg.page_id:
            url = f"{self._graph}/{cfg.page_id}/subscribed_apps"
            return Subscription(url, cfg.access_token, ("messages",), "linked Page")
        url = f"{self._graph}/{cfg.ig_id}/subscribed_apps"
        return Subscription(url, cfg.access_token, FIELDS, "Instagram account")

    async def display_name(self, user_id: str, thread: str) -> str | None:
        """``name (@username)`` from the user profile API (``GET /<IGSID>?fields=name,
        username``), or whichever of them the person has. Never raises."""
        try:
            profile = _Profile.model_validate_json(await self._profile(user_id, "name,username"))
        except (httpx.HTTPError, DeliveryError, ValidationError):
            return None
        name = (profile.name or "").strip()
        username = (profile.username or "").strip()
        if name and username:
            return f"{name} (@{username})"
        return name or (f"@{username}" if username else None)
