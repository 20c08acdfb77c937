"""The outbound side of one account's Vonage application: the Messages API, sender
selection, segments, MMS media downloads, and the Applications API for the webhooks.

- Sending: ``POST /v1/messages`` (developer.vonage.com/en/api/messages), JSON, with the
  application's JWT: ``{"message_type": "text", "channel": "sms", "to", "from", "text",
  "webhook_url"}`` (numbers as E.164 digits without ``+``; ``text`` up to 3200
  characters), answered 202 ``{"message_uuid"}``; errors are RFC 7807 documents whose
  ``type`` ends in the Messages API code (``#1120``); 429 carries ``Retry-After``.
- MMS: ``{"message_type": "content", "channel": "mms", "content": [{"type", "url"}]}``.
- Media: ``https://api-<region>.nexmo.com/v3/media/<id>``, valid 48 hours; with "Secure
  Inbound Media" on, downloads need the application's JWT (messages/concepts/
  secure-inbound-media), which goes to Vonage's hosts only.
- Webhooks: ``PUT /v2/applications/<id>`` with the account's API key and secret (Basic),
  ``capabilities.messages.webhooks.inbound_url`` / ``status_url``.
"""

from __future__ import annotations

import re
from collections.abc import Generator
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from deskbridge.adapters.base import MediaLinks
from deskbridge.adapters.capabilities import RegistersWebhook, ReportsHealth
from deskbridge.adapters.sms.base import SmsAdapterBase
from deskbridge.adapters.sms.common import choose_sender, customer_number, download
from deskbridge.adapters.sms.vonage.codes import describe
from deskbridge.adapters.sms.vonage.signature import application_token
from deskbridge.config.accounts import VonageSmsConfig
from deskbridge.errors import PermanentError
from deskbridge.http import classify, transport_error
from deskbridge.schemas import Attachment, ChannelAddress, Upload

__all__ = ["VonageSmsAdapter"]

# where Vonage serves its APIs and inbound media (api.nexmo.com, api-eu.vonage.com, ...)
_VONAGE_HOST = re.compile(r"^api(-[a-z0-9]+)?\.(nexmo|vonage)\.com$")
_MMS_TYPE = {"image": "image", "audio": "audio", "video": "video", "document": "file"}


class _Accepted(BaseModel):
    model_config = ConfigDict(extra="ignore")
    message_uuid: str = Field(min_length=1)


class _Problem(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: str = ""


class _Bearer(httpx.Auth):
    """``Authorization: Bearer`` with a token made per request (never logged)."""

    def __init__(self, token: str) -> None:
        self._token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._token}"
        yield request


class VonageSmsAdapter(SmsAdapterBase[VonageSmsConfig], ReportsHealth, RegistersWebhook):
    """One account's Vonage application: ``send`` posts to ``/v1/messages`` with the
    application's JWT (RS256, ``private_key``); ``fetch`` downloads MMS media with it from
    Vonage's hosts only; ``set_webhook`` and ``health`` use the API key and secret."""

    def __init__(
        self,
        account: str,
        config: VonageSmsConfig,
        client: httpx.AsyncClient,
        links: MediaLinks,
        *,
        api_base: str | None = None,
    ) -> None:
        super().__init__(account, config, client, links, api_base=api_base)
        self._messages_url = f"{self._base}/v1/messages"
        self._application_url = f"{self._base}/v2/applications/{config.application_id}"
        self._basic = httpx.BasicAuth(config.api_key, config.api_secret.get_secret_value())

    def _jwt(self) -> _Bearer:
        return _Bearer(
            application_token(
                self._config.application_id, self._config.private_key.get_secret_value()
            )
        )

    async def health(self) -> dict[str, float]:
        """``GET /v2/applications/<id>``: whether Vonage still takes the key and secret and
        the application exists."""
        await self._call("GET", self._application_url, "sms check credentials", auth=self._basic)
        return {"credentials_valid": 1.0}

    async def set_webhook(self, url: str) -> None:
        """Make ``url`` the application's inbound and status URL (POST), keeping the rest
        of the application as Vonage has it (read, then written back whole: the
        Applications API replaces what a PUT omits). ``PermanentError`` when
        ``webhook_url`` names another URL. Idempotent."""
        what = "sms register"
        self._same_url(url)
        response = await self._call("GET", self._application_url, what, auth=self._basic)
        try:
            app = response.json()
        except ValueError:
            raise PermanentError(f"{what}: unreadable application") from None
        if not isinstance(app, dict) or not isinstance(app.get("name"), str):
            raise PermanentError(f"{what}: unreadable application")
        capabilities = _object(app.get("capabilities"))
        messages = _object(capabilities.get("messages"))
        hook = {"address": url, "http_method": "POST"}
        webhooks = _object(messages.get("webhooks")) | {"inbound_url": hook, "status_url": hook}
        capabilities["messages"] = messages | {"webhooks": webhooks, "version": "v1"}
        body: dict[str, Any] = {"name": app["name"], "capabilities": capabilities}
        for kept in ("keys", "privacy"):
            if isinstance(app.get(kept), dict):
                body[kept] = app[kept]
        await self._call("PUT", self._application_url, what, auth=self._basic, json=body)

    def sender(self, to: ChannelAddress) -> str:
        """``from``: the number the customer wrote to, else the sender configured for the
        customer's country, else ``default_sender`` (numbers without ``+``)."""
        return choose_sender(to, self._config.senders, self._config.default_sender).lstrip("+")

    def _payloads(
        self, chunks: list[str], media: list[tuple[Attachment, str]], to: ChannelAddress
    ) -> list[dict[str, Any]]:
        """An SMS per chunk, then the attachments as one MMS (``content``, by URL)."""
        common: dict[str, Any] = {"to": customer_number(to).lstrip("+"), "from": self.sender(to)}
        if self._config.webhook_url:
            common["webhook_url"] = self._config.webhook_url
        payloads = [{"message_type": "text", "channel": "sms", "text": c} | common for c in chunks]
        if media:
            content = [{"type": _MMS_TYPE.get(a.kind, "file"), "url": url} for a, url in media]
            payloads.append(
                {"message_type": "content", "channel": "mms", "content": content} | common
            )
        return payloads

    async def fetch(self, attachment: Attachment) -> Upload:
        """Download an MMS media file; the application's JWT goes to Vonage's hosts only."""
        return await download(
            self._client,
            attachment,
            limit=self._config.max_media_bytes,
            auth_for=lambda url: self._jwt() if self._vonage(url) else None,
        )

    def _vonage(self, url: httpx.URL) -> bool:
        return url.host == self._api_host or bool(_VONAGE_HOST.fullmatch(url.host))

    async def _post(self, payload: dict[str, Any]) -> str:
        what = "sms send"
        try:
            response = await self._client.post(self._messages_url, json=payload, auth=self._jwt())
        except httpx.HTTPError as exc:
            raise transport_error(exc, what=what) from None
        if response.status_code in (400, 402, 422):
            raise PermanentError(_refusal(response, what), status=response.status_code)
        classify(response, what=what)
        try:
            return _Accepted.model_validate_json(response.content).message_uuid
        except ValidationError:
            raise PermanentError(f"{what}: no message_uuid in the response") from None


def _object(value: Any) -> dict[str, Any]:
    """A copy of ``value`` when it is a JSON object, else an empty one."""
    return dict(value) if isinstance(value, dict) else {}


def _refusal(response: httpx.Response, what: str) -> str:
    """A refused send in words: the Messages API code of its ``type`` (never the body's
    ``detail``, which may quote the number or text)."""
    if response.status_code == 402:
        return f"{what}: HTTP 402 (the Vonage account's balance is too low)"
    try:
        kind = _Problem.model_validate_json(response.content).type
    except ValidationError:
        kind = ""
    code = kind.rpartition("#")[2]
    if code.isdigit():
        return f"{what}: Vonage error {code} ({describe(code)})"
    return f"{what}: HTTP {response.status_code}"
