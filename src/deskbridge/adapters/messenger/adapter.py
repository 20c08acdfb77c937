"""The outbound side of one account's Facebook Page: the Send API and attachment downloads."""

from __future__ import annotations

import functools
import logging
import re
import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from deskbridge.adapters.base import MediaLinks, Progress, send_parts
from deskbridge.adapters.capabilities import LooksUpDisplayNames, OffersChoices, ReportsHealth
from deskbridge.adapters.meta import graph_error, raise_for_graph
from deskbridge.adapters.meta.cdn import download
from deskbridge.adapters.text import split_text
from deskbridge.config.accounts import MessengerConfig
from deskbridge.errors import PermanentError
from deskbridge.http import classify, transport_error
from deskbridge.schemas import AgentReply, Attachment, Channel, ChannelAddress, SendReceipt, Upload

__all__ = [
    "HUMAN_AGENT_WINDOW",
    "PROACTIVE_TAGS",
    "STANDARD_WINDOW",
    "TEXT_LIMIT",
    "MessengerAdapter",
]

TEXT_LIMIT = 1999
"""Messenger text must be "shorter than 2000 characters" (counted here in UTF-16 units)."""
STANDARD_WINDOW = 24 * 3600.0
HUMAN_AGENT_WINDOW = 7 * 24 * 3600.0
PROACTIVE_TAGS = frozenset({"ACCOUNT_UPDATE", "CONFIRMED_EVENT_UPDATE", "POST_PURCHASE_UPDATE"})
"""Message tags a business update may carry outside the 24-hour window (send-messages/
message-tags); ``HUMAN_AGENT`` is a person's reply within 7 days, never a bot's."""

# Graph error codes worth retrying; a value is a wait that does not spend the retry
# budget (4 and 613 are rate limits, which Meta does not give a Retry-After for).
_RETRYABLE: dict[int, float | None] = {1200: None, 2: None, 4: 60.0, 613: 60.0}
_WINDOW_CLOSED = (10, 2018278)
_PSID = re.compile(r"[0-9]{1,32}")
_FALLBACK_TYPE = {
    "image": "image",
    "sticker": "image",
    "audio": "audio",
    "voice": "audio",
    "video": "video",
}


log = logging.getLogger(__name__)


class _Profile(BaseModel):
    model_config = ConfigDict(extra="ignore")
    first_name: str = ""
    last_name: str = ""


class _Sent(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    message_id: str = Field(min_length=1)


class MessengerAdapter(LooksUpDisplayNames, ReportsHealth, OffersChoices):
    """One account's Page. ``send`` posts to the Send API at ``api_base`` (default
    ``config.base_url``) with the Page token in a header, never in the URL; ``fetch``
    downloads from Meta's CDN with no credentials."""

    max_choices: ClassVar[int] = 13

    channel: ClassVar[Channel] = Channel.MESSENGER
    takes_files: ClassVar[bool] = False

    def __init__(
        self,
        account: str,
        config: MessengerConfig,
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
        base = (api_base or config.base_url).rstrip("/")
        self._graph = f"{base}/{config.graph_version}"
        self._send_url = f"{self._graph}/{config.page_id}/messages"
        # [S] Meta's Messenger pages show `access_token` in the query; the Graph API also
        # takes it as a bearer header (documented for the WhatsApp Cloud API, same host).
        token = config.page_access_token.get_secret_value()
        self._auth = {"Authorization": f"Bearer {token}"}

    async def health(self) -> dict[str, float]:
        """``GET /me?fields=id`` with the Page token: whether Meta still takes it."""
        what = "messenger check page token"
        url = self._send_url.rsplit("/", 2)[0] + "/me"
        try:
            response = await self._client.get(url, params={"fields": "id"}, headers=self._auth)
        except httpx.HTTPError as exc:
            raise transport_error(exc, what=what) from None
        classify(response, what=what)
        return {"credentials_valid": 1.0}

    async def display_name(self, user_id: str, thread: str) -> str | None:
        """The person's name from the User Profile API (``GET /{PSID}?fields=first_name,
        last_name`` with the Page token), or None on any failure (a person who has not
        let the Page read their profile, an expired token, a timeout). Never raises: a
        failed lookup must not hold up delivery."""
        if not _PSID.fullmatch(user_id):
            return None
        what = "messenger profile"
        try:
            response = await self._client.get(
                f"{self._graph}/{user_id}",
                params={"fields": "first_name,last_name"},
                headers=self._auth,
            )
            classify(response, what=what)
            profile = _Profile.model_validate_json(response.content)
        except Exception as exc:  # any failure means "no name", by contract
            why = type(exc).__name__
            log.debug("messenger account %s: %s failed (%s)", self.account, what, why)
            return None
        name = " ".join(x.strip() for x in (profile.first_name, profile.last_name) if x.strip())
        return name or None

    async def send(
        self,
        reply: AgentReply,
        to: ChannelAddress,
        files: Sequence[Upload] = (),
        progress: Progress | None = None,
    ) -> SendReceipt:
        """Send the text (split under 2000 characters) and then each attachment by URL,
        one message each. Inside 24 hours of the customer's last message it is a
        RESPONSE; up to 7 days a person's reply goes with the HUMAN_AGENT tag. Anything
        else raises ``PermanentError`` before any call. Empty text and no attachments
        sends nothing.

        Parts: the text chunks, then the attachments; ``progress`` keeps the accepted ones
        and a retry resumes at the first part not accepted. The Send API has no idempotency
        key: a part whose call ended with an unknown outcome is sent again.
        """
        text = reply.text.strip()
        if not text and not reply.attachments:
            return SendReceipt(external_ids=())
        window = self._window(reply, to)
        messages: list[dict[str, Any]] = [{"text": c} for c in split_text(text, TEXT_LIMIT)]
        if messages and reply.choices:
            messages[-1]["quick_replies"] = [
                {"content_type": "text", "title": c[:20], "payload": f"CHOICE_{i}"}
                for i, c in enumerate(reply.choices[: self.max_choices], 1)
            ]
        for attachment in reply.attachments:
            url = self._links.url_for(self.account, attachment)
            messages.append(
                {
                    "attachment": {
                        "type": _attachment_type(attachment),
                        "payload": {"url": url, "is_reusable": False},
                    }
                }
            )
        calls = [
            functools.partial(
                self._post, {"recipient": {"id": to.thread}, **window, "message": message}
            )
            for message in messages
        ]
        return SendReceipt(external_ids=await send_parts(progress, calls))

    async def reengage(self, to: ChannelAddress) -> SendReceipt:
        """Always raises: past 7 days there is nothing a Page may send, and ``send`` never
        raises ``WindowClosed``, so the pipeline never asks."""
        raise PermanentError("Messenger has no re-engagement message")

    async def fetch(self, attachment: Attachment) -> Upload:
        """Download an inbound attachment from its CDN URL (https only, redirects followed
        only to https), at most ``max_media_bytes``. ``PermanentError`` when over the cap
        or expired (403/404/410); 5xx and timeouts are retryable. Messages never carry the
        URL (it holds a signed token)."""
        return await download(
            self._client,
            attachment,
            limit=self._config.max_media_bytes,
            what="messenger download",
            prefix="messenger",
        )

    def _window(self, reply: AgentReply, to: ChannelAddress) -> dict[str, str]:
        if to.last_inbound_at is None:
            raise PermanentError("outside Messenger's 7-day human agent window")
        age = self._clock() - to.last_inbound_at.timestamp()
        if age <= STANDARD_WINDOW:
            return {"messaging_type": "UPDATE" if reply.proactive else "RESPONSE"}
        if reply.proactive and reply.tag in PROACTIVE_TAGS:
            return {"messaging_type": "MESSAGE_TAG", "tag": reply.tag}
        if reply.proactive and reply.tag != "HUMAN_AGENT":
            raise PermanentError(
                "outside Messenger's 24-hour window a proactive message needs a message tag"
            )
        if age <= HUMAN_AGENT_WINDOW:
            if reply.automated:
                raise PermanentError(
                    "outside Messenger's 24-hour window; automated replies cannot use HUMAN_AGENT"
                )
            if not self._config.human_agent_tag:
                raise PermanentError(
                    "outside Messenger's 24-hour window; the HUMAN_AGENT tag is not enabled"
                    " for this Page"
                )
            return {"messaging_type": "MESSAGE_TAG", "tag": "HUMAN_AGENT"}
        raise PermanentError("outside Messenger's 7-day human agent window")

    async def _post(self, payload: dict[str, Any]) -> str:
        what = "messenger send"
        try:
            response = await self._client.post(self._send_url, json=payload, headers=self._auth)
        except httpx.HTTPError as exc:
            raise transport_error(exc, what=what) from None
        if not response.is_success:
            err = graph_error(response)
            if err is not None and (err.code, err.subcode) == _WINDOW_CLOSED:
                raise PermanentError(
                    f"{what}: Messenger's reply window has closed (Graph error 10/2018278)",
                    status=response.status_code,
                )
        raise_for_graph(response, what=what, retryable=_RETRYABLE)
        try:
            return _Sent.model_validate_json(response.content).message_id
        except ValidationError:
            raise PermanentError(f"{what}: no message_id in the response") from None


def _attachment_type(attachment: Attachment) -> str:
    mime = (attachment.mime_type or "").lower()
    if not mime:
        return _FALLBACK_TYPE.get(attachment.kind, "file")
    major = mime.partition("/")[0]
    return major if major in ("image", "audio", "video") else "file"
