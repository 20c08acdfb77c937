"""The outbound side of one Instagram professional account: the messaging API, profile
lookups and attachment downloads."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from deskbridge.adapters.base import MediaLinks, Progress, send_parts
from deskbridge.adapters.capabilities import LooksUpDisplayNames, ReportsHealth
from deskbridge.adapters.meta import graph_error, raise_for_graph
from deskbridge.adapters.meta.cdn import download
from deskbridge.adapters.text import split_text
from deskbridge.config.accounts import InstagramConfig
from deskbridge.errors import DeliveryError, PermanentError
from deskbridge.http import classify, transport_error
from deskbridge.schemas import AgentReply, Attachment, Channel, ChannelAddress, SendReceipt, Upload

__all__ = ["HUMAN_AGENT_WINDOW", "STANDARD_WINDOW", "TEXT_LIMIT_BYTES", "InstagramAdapter"]

TEXT_LIMIT_BYTES = 1000
"""Instagram: "Message text must be UTF-8 and be a 1000 bytes or less"."""
STANDARD_WINDOW = 24 * 3600.0
HUMAN_AGENT_WINDOW = 7 * 24 * 3600.0

_RETRYABLE: dict[int, float | None] = {1200: None, 2: None, 4: 60.0, 613: 60.0}
# [S] 10/2534022 is the error Instagram answers a send outside its window with (reported
# by integrators; Meta's error table lists code 10 as a permission error); 10/2018278 is
# Messenger's, which the Messenger Platform's Instagram send shares.
_WINDOW_CLOSED = frozenset({(10, 2534022), (10, 2018278)})
_FALLBACK_TYPE = {"image": "image", "sticker": "image", "audio": "audio", "voice": "audio"}


class _Sent(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    message_id: str = Field(min_length=1)


class _Profile(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    name: str | None = None
    username: str | None = None


class InstagramAdapter(ReportsHealth, LooksUpDisplayNames):
    """One account's Instagram inbox. ``send`` posts to ``<base>/<version>/<id>/messages``
    (``page_id`` when set, else ``ig_id``) with the token in a header; ``fetch`` downloads
    from Meta's CDN with no credentials; ``display_name`` asks the profile API."""

    channel: ClassVar[Channel] = Channel.INSTAGRAM
    takes_files: ClassVar[bool] = False

    def __init__(
        self,
        account: str,
        config: InstagramConfig,
        client: httpx.AsyncClient,
        links: MediaLinks,
        *,
        api_base: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.account = account
        self._config = config
        self._client = client
        self._links = links
        self._clock = clock
        self._base = f"{(api_base or config.base_url).rstrip('/')}/{config.graph_version}"
        self._send_url = f"{self._base}/{config.page_id or config.ig_id}/messages"
        self._auth = {"Authorization": f"Bearer {config.access_token.get_secret_value()}"}

    async def health(self) -> dict[str, float]:
        """``GET /me?fields=id`` with the token: whether Meta still takes it."""
        what = "instagram check token"
        try:
            response = await self._client.get(
                f"{self._base}/me", params={"fields": "id"}, headers=self._auth
            )
        except httpx.HTTPError as exc:
            raise transport_error(exc, what=what) from None
        classify(response, what=what)
        return {"credentials_valid": 1.0}

    async def display_name(self, user_id: str, thread: str) -> str | None:
        """``name (@username)`` from the user profile API (``GET /<IGSID>?fields=name,
        username``), or whichever of them the person has. Never raises."""
        try:
            response = await self._client.get(
                f"{self._base}/{user_id}",
                params={"fields": "name,username"},
                headers=self._auth,
            )
            classify(response, what="instagram profile")
            profile = _Profile.model_validate_json(response.content)
        except (httpx.HTTPError, DeliveryError, ValidationError):
            return None
        name = (profile.name or "").strip()
        username = (profile.username or "").strip()
        if name and username:
            return f"{name} (@{username})"
        return name or (f"@{username}" if username else None)

    async def send(
        self,
        reply: AgentReply,
        to: ChannelAddress,
        files: Sequence[Upload] = (),
        progress: Progress | None = None,
    ) -> SendReceipt:
        """Send the text (split at 1000 UTF-8 bytes) and then each attachment by URL, one
        message each. Inside 24 hours of the customer's last message it is a RESPONSE; up
        to 7 days a person's reply goes with the HUMAN_AGENT tag; anything else raises
        ``PermanentError`` before any call. Parts resume as Messenger's do; the API has no
        idempotency key."""
        text = reply.text.strip()
        if not text and not reply.attachments:
            return SendReceipt(external_ids=())
        window = self._window(reply, to)
        messages: list[dict[str, Any]] = [
            {"text": c} for c in split_text(text, TEXT_LIMIT_BYTES, utf8=True)
        ]
        for attachment in reply.attachments:
            url = self._links.url_for(self.account, attachment)
            messages.append(
                {"attachment": {"type": _attachment_type(attachment), "payload": {"url": url}}}
            )
        calls = [
            functools.partial(
                self._post, {"recipient": {"id": to.thread}, **window, "message": message}
            )
            for message in messages
        ]
        return SendReceipt(external_ids=await send_parts(progress, calls))

    async def reengage(self, to: ChannelAddress) -> SendReceipt:
        """Always raises: past 7 days Instagram lets a business send nothing."""
        raise PermanentError("Instagram has no re-engagement message")

    async def fetch(self, attachment: Attachment) -> Upload:
        """Download an inbound attachment from its CDN URL; see ``meta.cdn.download``."""
        return await download(
            self._client,
            attachment,
            limit=self._config.max_media_bytes,
            what="instagram download",
            prefix="instagram",
        )

    def _window(self, reply: AgentReply, to: ChannelAddress) -> dict[str, str]:
        if to.last_inbound_at is None:
            raise PermanentError("outside Instagram's 7-day human agent window")
        age = self._clock() - to.last_inbound_at.timestamp()
        if age <= STANDARD_WINDOW:
            return {"messaging_type": "RESPONSE"}
        if age <= HUMAN_AGENT_WINDOW:
            if reply.automated:
                raise PermanentError(
                    "outside Instagram's 24-hour window; automated replies cannot use HUMAN_AGENT"
                )
            if not self._config.human_agent_tag:
                raise PermanentError(
                    "outside Instagram's 24-hour window; the HUMAN_AGENT tag is not enabled"
                    " for this account"
                )
            return {"messaging_type": "MESSAGE_TAG", "tag": "HUMAN_AGENT"}
        raise PermanentError("outside Instagram's 7-day human agent window")

    async def _post(self, payload: dict[str, Any]) -> str:
        what = "instagram send"
        try:
            response = await self._client.post(self._send_url, json=payload, headers=self._auth)
        except httpx.HTTPError as exc:
            raise transport_error(exc, what=what) from None
        if not response.is_success:
            err = graph_error(response)
            if err is not None and (err.code, err.subcode) in _WINDOW_CLOSED:
                raise PermanentError(
                    f"{what}: Instagram's reply window has closed"
                    f" (Graph error {err.code}/{err.subcode})",
                    status=response.status_code,
                )
        raise_for_graph(response, what=what, retryable=_RETRYABLE)
        try:
            return _Sent.model_validate_json(response.content).message_id
        except ValidationError:
            raise PermanentError(f"{what}: no message_id in the response") from None


def _attachment_type(attachment: Attachment) -> str:
    """image (png, jpeg, gif), audio, video, or file (pdf), as Instagram takes them."""
    mime = (attachment.mime_type or "").lower()
    if not mime:
        return _FALLBACK_TYPE.get(attachment.kind, "file")
    major = mime.partition("/")[0]
    return major if major in ("image", "audio", "video") else "file"
