"""The outbound side of one account's Facebook Page: the Send API and attachment downloads
(shared with Instagram in ``meta.outbound``), quick replies and the User Profile API."""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, SecretStr

from deskbridge.adapters.capabilities import LooksUpDisplayNames, OffersChoices
from deskbridge.adapters.meta.outbound import HUMAN_AGENT_WINDOW, STANDARD_WINDOW, MessagingAdapter
from deskbridge.adapters.meta.subscribe import AppWebhook, Subscription
from deskbridge.config.accounts import MessengerConfig
from deskbridge.schemas import AgentReply, Channel

__all__ = [
    "HUMAN_AGENT_WINDOW",
    "PROACTIVE_TAGS",
    "STANDARD_WINDOW",
    "TEXT_LIMIT",
    "MessengerAdapter",
]

TEXT_LIMIT = 1999
"""Messenger text must be "shorter than 2000 characters" (counted here in UTF-16 units)."""
PROACTIVE_TAGS = frozenset({"ACCOUNT_UPDATE", "CONFIRMED_EVENT_UPDATE", "POST_PURCHASE_UPDATE"})
"""Message tags a business update may carry outside the 24-hour window (send-messages/
message-tags); ``HUMAN_AGENT`` is a person's reply within 7 days, never a bot's."""
PAGE_FIELDS = (
    "messages",
    "messaging_postbacks",
    "message_deliveries",
    "message_reads",
    "message_edits",
)
"""The Page webhook fields deskbridge reads (messenger-platform/webhooks, "Webhook Events
Reference"), on the app and on each Page: Meta posts only fields subscribed on both."""


log = logging.getLogger(__name__)


class _Profile(BaseModel):
    model_config = ConfigDict(extra="ignore")
    first_name: str = ""
    last_name: str = ""


class MessengerAdapter(MessagingAdapter[MessengerConfig], LooksUpDisplayNames, OffersChoices):
    """One account's Page, through the Send API at ``api_base`` (default
    ``config.base_url``) with the Page token. Text is split under 2000 characters; choices
    ride on the last text as quick replies; business updates may carry
    ``PROACTIVE_TAGS`` outside the 24-hour window."""

    max_choices: ClassVar[int] = 13

    channel: ClassVar[Channel] = Channel.MESSENGER
    text_limit: ClassVar[int] = TEXT_LIMIT
    business_tags: ClassVar[frozenset[str] | None] = PROACTIVE_TAGS
    inbox: ClassVar[str] = "Page"
    window_closed: ClassVar[frozenset[tuple[int, int]]] = frozenset({(10, 2018278)})
    fallback_types: ClassVar[dict[str, str]] = {
        "image": "image",
        "sticker": "image",
        "audio": "audio",
        "voice": "audio",
        "video": "video",
    }
    attachment_extras: ClassVar[dict[str, Any]] = {"is_reusable": False}
    credential: ClassVar[str] = "page token"
    app_hook: ClassVar[AppWebhook] = AppWebhook("page", PAGE_FIELDS, by_api=True, brand="Messenger")

    @staticmethod
    def _sender(config: MessengerConfig) -> tuple[str, SecretStr]:
        # [S] Meta's Messenger pages show `access_token` in the query; the Graph API also
        # takes it as a bearer header (documented for the WhatsApp Cloud API, same host).
        return config.page_id, config.page_access_token

    def _subscription(self) -> Subscription:
        cfg = self._config
        url = f"{self._graph}/{cfg.page_id}/subscribed_apps"
        return Subscription(url, cfg.page_access_token, PAGE_FIELDS, "Page")

    async def display_name(self, user_id: str, thread: str) -> str | None:
        """The person's name from the User Profile API (``GET /{PSID}?fields=first_name,
        last_name`` with the Page token), or None on any failure (a person who has not
        let the Page read their profile, an expired token, a timeout). Never raises: a
        failed lookup must not hold up delivery."""
        try:
            profile = _Profile.model_validate_json(
                await self._profile(user_id, "first_name,last_name")
            )
        except Exception as exc:  # any failure means "no name", by contract
            why = type(exc).__name__
            log.debug("messenger account %s: messenger profile failed (%s)", self.account, why)
            return None
        name = " ".join(x.strip() for x in (profile.first_name, profile.last_name) if x.strip())
        return name or None

    def _texts(self, reply: AgentReply, chunks: list[str]) -> list[dict[str, Any]]:
        messages = super()._texts(reply, chunks)
        if messages and reply.choices:
            messages[-1]["quick_replies"] = [
                {"content_type": "text", "title": c[:20], "payload": f"CHOICE_{i}"}
                for i, c in enumerate(reply.choices[: self.max_choices], 1)
            ]
        return messages
