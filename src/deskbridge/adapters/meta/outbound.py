"""The outbound side Messenger and Instagram share: the Messenger Platform's Send API
(``POST /<id>/messages``: text, then each attachment by URL, one message each), the
24-hour window and the ``HUMAN_AGENT`` tag up to 7 days, Graph send errors, the token
check, profile lookups and CDN downloads.

Docs: https://developers.facebook.com/docs/messenger-platform/reference/send-api,
``send-messages/message-tags`` and, for Instagram,
https://developers.facebook.com/docs/messenger-platform/instagram/features/send-message
"""

from __future__ import annotations

import functools
import re
import time
from abc import abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Generic, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from deskbridge.adapters.base import MediaLinks, Progress, send_parts
from deskbridge.adapters.capabilities import Registered, RegistersAppWebhook, ReportsHealth
from deskbridge.adapters.meta.cdn import download
from deskbridge.adapters.meta.graph import graph_error, raise_for_graph
from deskbridge.adapters.meta.subscribe import AppWebhook, Registrar, Subscription
from deskbridge.adapters.text import split_text
from deskbridge.config.accounts import InstagramConfig, MessengerConfig, MetaAppConfig
from deskbridge.errors import PermanentError
from deskbridge.http import classify, transport_error
from deskbridge.schemas import AgentReply, Attachment, Channel, ChannelAddress, SendReceipt, Upload

# PSIDs and IGSIDs are decimal; anything else would change the URL's path
_SCOPED_ID = re.compile(r"[0-9]{1,32}")

__all__ = ["HUMAN_AGENT_WINDOW", "STANDARD_WINDOW", "MessagingAdapter"]

STANDARD_WINDOW = 24 * 3600.0
HUMAN_AGENT_WINDOW = 7 * 24 * 3600.0

# Graph error codes worth retrying; a value is a wait that does not spend the retry
# budget (4 and 613 are rate limits, which Meta does not give a Retry-After for).
_RETRYABLE: dict[int, float | None] = {1200: None, 2: None, 4: 60.0, 613: 60.0}


class _Sent(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    message_id: str = Field(min_length=1)


C = TypeVar("C", MessengerConfig, InstagramConfig)


class MessagingAdapter(ReportsHealth, RegistersAppWebhook, Generic[C]):
    """One account's inbox on the Messenger Platform. ``send`` posts to the Send API at
    ``api_base`` (default ``config.base_url``) with the token in a header, never in the
    URL; ``fetch`` downloads from Meta's CDN with no credentials; ``channels register``
    sets the app's webhook and the account's subscription to it (``meta.subscribe``).
    Subclasses name the channel, say whom they send as, and set what differs between the
    products below."""

    channel: ClassVar[Channel]
    takes_files: ClassVar[bool] = False
    text_limit: ClassVar[int]
    utf8: ClassVar[bool] = False
    """``text_limit`` counts UTF-8 bytes, else UTF-16 units."""
    business_tags: ClassVar[frozenset[str] | None] = None
    """Tags a proactive business update may carry outside the 24-hour window (inside it
    such an update is an ``UPDATE``); None: the product takes none and a proactive
    message goes as a reply would."""
    inbox: ClassVar[str]
    """What the refusals call the account: ``Page``, ``account``."""
    window_closed: ClassVar[frozenset[tuple[int, int]]]
    """Graph ``(code, subcode)`` pairs a send outside the window is refused with."""
    fallback_types: ClassVar[Mapping[str, str]]
    """The attachment type for a kind when the file has no MIME type."""
    attachment_extras: ClassVar[Mapping[str, Any]] = {}
    """Fields added to every attachment's ``payload`` beside its ``url``."""
    credential: ClassVar[str] = "token"
    """What ``health`` checks, as its errors name it."""
    app_hook: ClassVar[AppWebhook]
    """The product's webhook on the app (``channels register``)."""

    def __init__(
        self,
        account: str,
        config: C,
        client: httpx.AsyncClient,
        links: MediaLinks,
        *,
        api_base: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.account = account
        self._config: C = config
        self._client = client
        self._links = links
        self._clock = clock
        self._graph = f"{(api_base or config.base_url).rstrip('/')}/{config.graph_version}"
        send_as, token = self._sender(config)
        self._send_url = f"{self._graph}/{send_as}/messages"
        self._auth = {"Authorization": f"Bearer {token.get_secret_value()}"}
        app_graph = f"{(api_base or self._app_base(config)).rstrip('/')}/{config.graph_version}"
        self._registrar = Registrar(client, app_graph, self.app_hook)

    @staticmethod
    @abstractmethod
    def _sender(config: C) -> tuple[str, SecretStr]:
        """The id the account sends as (``/<id>/messages``) and its access token."""

    @staticmethod
    def _app_base(config: C) -> str:
        """Where the app's own edges are (``/<app-id>/subscriptions``)."""
        return config.base_url

    @abstractmethod
    def _subscription(self) -> Subscription:
        """The account's subscription to the app (``/<id>/subscribed_apps``)."""

    async def set_app_webhook(self, app: MetaAppConfig, url: str) -> Registered:
        """The app's webhook for this product (``meta.subscribe``)."""
        return await self._registrar.app_webhook(self._config.app, app, url)

    async def subscribe_to_app(self, app: MetaAppConfig) -> Registered:
        """The account's subscription to the app (``meta.subscribe``)."""
        return await self._registrar.subscribe(self._config.app, app, self._subscription())

    async def health(self) -> dict[str, float]:
        """``GET /me?fields=id`` with the token: whether Meta still takes it."""
        what = f"{self.channel.value} check {self.credential}"
        try:
            response = await self._client.get(
                f"{self._graph}/me", params={"fields": "id"}, headers=self._auth
            )
        except httpx.HTTPError as exc:
            raise transport_error(exc, what=what) from None
        classify(response, what=what)
        return {"credentials_valid": 1.0}

    async def send(
        self,
        reply: AgentReply,
        to: ChannelAddress,
        files: Sequence[Upload] = (),
        progress: Progress | None = None,
    ) -> SendReceipt:
        """Send the text (split at ``text_limit``) and then each attachment by URL, one
        message each. Inside 24 hours of the customer's last message it is a RESPONSE; up
        to 7 days a person's reply goes with the HUMAN_AGENT tag. Anything else raises
        ``PermanentError`` before any call. Empty text and no attachments sends nothing.

        Parts: the text chunks, then the attachments; ``progress`` keeps the accepted ones
        and a retry resumes at the first part not accepted. The Send API has no idempotency
        key: a part whose call ended with an unknown outcome is sent again.
        """
        text = reply.text.strip()
        if not text and not reply.attachments:
            return SendReceipt(external_ids=())
        window = self._window(reply, to)
        messages = self._texts(reply, split_text(text, self.text_limit, utf8=self.utf8))
        for attachment in reply.attachments:
            payload = {"url": self._links.url_for(self.account, attachment)}
            kind = self._type(attachment)
            messages.append(
                {"attachment": {"type": kind, "payload": {**payload, **self.attachment_extras}}}
            )
        calls = [
            functools.partial(
                self._post, {"recipient": {"id": to.thread}, **window, "message": message}
            )
            for message in messages
        ]
        return SendReceipt(external_ids=await send_parts(progress, calls))

    def _texts(self, reply: AgentReply, chunks: list[str]) -> list[dict[str, Any]]:
        """The text messages of a reply; a product may dress the last one."""
        return [{"text": c} for c in chunks]

    async def reengage(self, to: ChannelAddress) -> SendReceipt:
        """Always raises: past 7 days there is nothing the account may send, and ``send``
        never raises ``WindowClosed``, so the pipeline never asks."""
        raise PermanentError(f"{self.channel.brand} has no re-engagement message")

    async def fetch(self, attachment: Attachment) -> Upload:
        """Download an inbound attachment from its CDN URL (https only, redirects followed
        only to https), at most ``max_media_bytes``. ``PermanentError`` when over the cap
        or expired (403/404/410); 5xx and timeouts are retryable. Messages never carry the
        URL (it holds a signed token)."""
        name = self.channel.value
        return await download(
            self._client,
            attachment,
            limit=self._config.max_media_bytes,
            what=f"{name} download",
            prefix=name,
        )

    async def _profile(self, user_id: str, fields: str) -> bytes:
        """The User Profile API's answer for ``user_id`` (``GET /<id>?fields=``). Raises
        ``httpx.HTTPError`` or ``DeliveryError`` (``PermanentError`` for an id that is not
        a page- or Instagram-scoped id: digits only, it goes into the URL's path)."""
        if not _SCOPED_ID.fullmatch(user_id):
            raise PermanentError(f"{self.channel.value} profile: not a scoped user id")
        response = await self._client.get(
            f"{self._graph}/{user_id}", params={"fields": fields}, headers=self._auth
        )
        classify(response, what=f"{self.channel.value} profile")
        return response.content

    def _window(self, reply: AgentReply, to: ChannelAddress) -> dict[str, str]:
        brand = self.channel.brand
        if to.last_inbound_at is None:
            raise PermanentError(f"outside {brand}'s 7-day human agent window")
        age = self._clock() - to.last_inbound_at.timestamp()
        tags = self.business_tags
        if age <= STANDARD_WINDOW:
            update = reply.proactive and tags is not None
            return {"messaging_type": "UPDATE" if update else "RESPONSE"}
        if tags is not None and reply.proactive:
            if reply.tag in tags:
                return {"messaging_type": "MESSAGE_TAG", "tag": reply.tag}
            if reply.tag != "HUMAN_AGENT":
                raise PermanentError(
                    f"outside {brand}'s 24-hour window a proactive message needs a message tag"
                )
        if age <= HUMAN_AGENT_WINDOW:
            if reply.automated:
                raise PermanentError(
                    f"outside {brand}'s 24-hour window; automated replies cannot use HUMAN_AGENT"
                )
            if not self._config.human_agent_tag:
                raise PermanentError(
                    f"outside {brand}'s 24-hour window; the HUMAN_AGENT tag is not enabled"
                    f" for this {self.inbox}"
                )
            return {"messaging_type": "MESSAGE_TAG", "tag": "HUMAN_AGENT"}
        raise PermanentError(f"outside {brand}'s 7-day human agent window")

    async def _post(self, payload: dict[str, Any]) -> str:
        what = f"{self.channel.value} send"
        try:
            response = await self._client.post(self._send_url, json=payload, headers=self._auth)
        except httpx.HTTPError as exc:
            raise transport_error(exc, what=what) from None
        if not response.is_success:
            err = graph_error(response)
            if err is not None and (err.code, err.subcode) in self.window_closed:
                raise PermanentError(
                    f"{what}: {self.channel.brand}'s reply window has closed"
                    f" (Graph error {err.code}/{err.subcode})",
                    status=response.status_code,
                )
        raise_for_graph(response, what=what, retryable=_RETRYABLE)
        try:
            return _Sent.model_validate_json(response.content).message_id
        except ValidationError:
            raise PermanentError(f"{what}: no message_id in the response") from None

    def _type(self, attachment: Attachment) -> str:
        """image, audio, video, or file, by MIME type, else by kind."""
        mime = (attachment.mime_type or "").lower()
        if not mime:
            return self.fallback_types.get(attachment.kind, "file")
        major = mime.partition("/")[0]
        return major if major in ("image", "audio", "video") else "file"
