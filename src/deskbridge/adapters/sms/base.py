"""What the SMS providers' adapters and receivers share; each provider says how a reply
becomes its API's requests (``_payloads``, ``_post``) and how a webhook is verified."""

from __future__ import annotations

import functools
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Generic, TypeVar

import httpx

from deskbridge.adapters.base import Handshake, MediaLinks, Progress, send_parts
from deskbridge.adapters.sms import segments
from deskbridge.adapters.sms.common import MAX_MEDIA
from deskbridge.config.accounts import SmsBaseConfig
from deskbridge.errors import PermanentError
from deskbridge.http import classify, transport_error
from deskbridge.schemas import (
    AgentReply,
    Attachment,
    Channel,
    ChannelAddress,
    RawRequest,
    SendReceipt,
    Upload,
)

__all__ = ["SmsAdapterBase", "SmsReceiverBase"]

C = TypeVar("C", bound=SmsBaseConfig)


class SmsAdapterBase(ABC, Generic[C]):
    """One account's SMS provider: its API base (``api_base`` overrides the configured
    one: sandbox mode), the reply split into messages, the webhook URL guard."""

    channel: ClassVar[Channel] = Channel.SMS
    takes_files: ClassVar[bool] = False

    def __init__(
        self,
        account: str,
        config: C,
        client: httpx.AsyncClient,
        links: MediaLinks,
        *,
        api_base: str | None = None,
    ) -> None:
        self.account = account
        self._config = config
        self._client = client
        self._links = links
        self._base = (api_base or config.base_url).rstrip("/")
        self._api_host = httpx.URL(self._base).host

    async def send(
        self,
        reply: AgentReply,
        to: ChannelAddress,
        files: Sequence[Upload] = (),
        progress: Progress | None = None,
    ) -> SendReceipt:
        """The text in messages of at most ``max_segments`` segments (GSM-7 or UCS-2,
        ``adapters.sms.segments``), the attachments (up to 10) as MMS media by URL. SMS
        has no reply window. Parts resume; neither provider has an idempotency key, so a
        part whose answer was lost is sent again."""
        text = reply.text.strip()
        if not text and not reply.attachments:
            return SendReceipt(external_ids=())
        if len(reply.attachments) > MAX_MEDIA:
            raise PermanentError(f"sms: at most {MAX_MEDIA} attachments per message")
        chunks = segments.split(text, self._config.max_segments)
        media = [(a, self._links.url_for(self.account, a)) for a in reply.attachments]
        payloads = self._payloads(chunks, media, to)
        calls = [functools.partial(self._post, p) for p in payloads]
        return SendReceipt(external_ids=await send_parts(progress, calls))

    @abstractmethod
    def _payloads(
        self, chunks: list[str], media: list[tuple[Attachment, str]], to: ChannelAddress
    ) -> list[dict[str, Any]]:
        """The provider's requests for ``chunks`` of text and ``media`` (each attachment
        with its short-lived URL), in the order they go."""

    @abstractmethod
    async def _post(self, payload: dict[str, Any]) -> str:
        """Send one request; the provider's id of the message it took."""

    async def reengage(self, to: ChannelAddress) -> SendReceipt:
        """Always raises: SMS has no window, so ``send`` never asks for re-engagement."""
        raise PermanentError("SMS has no re-engagement message")

    def _same_url(self, url: str) -> None:
        """``PermanentError`` unless ``url`` is the configured ``webhook_url`` (if any):
        ``channels register`` must not point the provider elsewhere than where its
        webhooks are expected."""
        if self._config.webhook_url and self._config.webhook_url != url:
            raise PermanentError(
                "sms register: webhook_url in the accounts file is another URL; make them match"
            )

    async def _call(
        self, method: str, url: str, what: str, *, auth: httpx.Auth, **kw: Any
    ) -> httpx.Response:
        try:
            response = await self._client.request(method, url, auth=auth, **kw)
        except httpx.HTTPError as exc:
            raise transport_error(exc, what=what) from None
        classify(response, what=what)
        return response


class SmsReceiverBase(Generic[C]):
    """``/webhooks/sms/<account>``: no handshake; ``clock`` dates what the provider does
    not (and checks token ages)."""

    channel: ClassVar[Channel] = Channel.SMS
    secret_query: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, account: str, config: C, *, clock: Callable[[], float] = time.time) -> None:
        self.account = account
        self.max_body_bytes = config.max_body_bytes
        self._config = config
        self._clock = clock

    def handshake(self, req: RawRequest) -> Handshake | None:
        return None
