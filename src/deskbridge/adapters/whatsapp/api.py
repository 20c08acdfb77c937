"""Cloud API calls of one business phone number: send a message, upload and resolve media,
download a media URL (messages/send-messages, business-phone-numbers/media)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from deskbridge.adapters.meta import graph_error, raise_for_graph
from deskbridge.errors import PermanentError, RetryableError
from deskbridge.http import classify, read_capped, transport_error
from deskbridge.schemas import Upload

__all__ = ["BSUID_NOT_SUPPORTED", "RETRYABLE", "WINDOW_CLOSED", "CloudApi", "MediaInfo"]

# Graph error codes worth another try, with the wait (seconds) when it is a throttle:
# 130429 throughput, 131056 the 1-per-6-seconds pair limit, 80007 WABA and 4 app rate
# limits; 1, 2 and 131016 are Meta-side outages. [S] error-codes page via reproductions.
RETRYABLE: Mapping[int, float | None] = {
    130429: 1.0,
    131056: 6.0,
    80007: 60.0,
    4: 60.0,
    1: None,
    2: None,
    131016: None,
}
WINDOW_CLOSED = frozenset({131047})  # "Re-engagement message": outside the 24 hours
# business-scoped-user-ids, "Error codes": "Business-scoped User ID (BSUID) recipients
# are not supported for this message."
BSUID_NOT_SUPPORTED = 131062

_MAX_REDIRECTS = 3


class MediaInfo(BaseModel):
    """``GET /<MEDIA_ID>``: where to download a file for the next 5 minutes."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    url: str
    mime_type: str | None = None
    sha256: str | None = None
    file_size: int | None = Field(default=None, ge=0)


class _MessageId(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    id: str = Field(min_length=1)


class _Sent(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    messages: list[_MessageId] = Field(min_length=1)


class _Uploaded(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    id: str = Field(min_length=1)


class CloudApi:
    """``base`` is ``<graph host>/<version>``. Methods raise ``RetryableError``,
    ``PermanentError`` or ``WindowClosed``; messages carry a Graph error code and a
    scrubbed title, never the token or a body we sent."""

    def __init__(
        self, client: httpx.AsyncClient, base: str, phone_number_id: str, token: str
    ) -> None:
        self._client = client
        self._base = base.rstrip("/")
        self._number = phone_number_id
        self._auth = {"Authorization": f"Bearer {token}"}

    async def check(self) -> None:
        """``GET /{phone_number_id}?fields=id``: raises like a send when the token or the
        number is refused."""
        what = "whatsapp check number"
        try:
            response = await self._client.get(
                f"{self._base}/{self._number}", params={"fields": "id"}, headers=self._auth
            )
        except httpx.HTTPError as exc:
            raise transport_error(exc, what=what) from None
        classify(response, what=what)

    async def send(self, payload: Mapping[str, Any]) -> str:
        """POST one message; its wamid (accepted, not yet delivered)."""
        what = "whatsapp messages"
        try:
            response = await self._client.post(
                f"{self._base}/{self._number}/messages", json=dict(payload), headers=self._auth
            )
        except httpx.HTTPError as exc:
            raise transport_error(exc, what=what) from None
        _check(response, what)
        try:
            return _Sent.model_validate_json(response.content).messages[0].id
        except ValidationError:
            raise PermanentError(f"{what}: unexpected response (no message id)") from None

    async def upload(self, file: Upload) -> str:
        """Upload ``file`` for sending; its media id (valid 30 days)."""
        what = "whatsapp media upload"
        try:
            response = await self._client.post(
                f"{self._base}/{self._number}/media",
                data={"messaging_product": "whatsapp", "type": file.mime_type},
                files={"file": (file.filename, file.data, file.mime_type)},
                headers=self._auth,
            )
        except httpx.HTTPError as exc:
            raise transport_error(exc, what=what) from None
        _check(response, what)
        try:
            return _Uploaded.model_validate_json(response.content).id
        except ValidationError:
            raise PermanentError(f"{what}: unexpected response (no media id)") from None

    async def media(self, media_id: str) -> MediaInfo:
        """Resolve a media id (from a webhook: valid 7 days) to a short-lived URL."""
        what = "whatsapp media"
        try:
            response = await self._client.get(f"{self._base}/{media_id}", headers=self._auth)
        except httpx.HTTPError as exc:
            raise transport_error(exc, what=what) from None
        _check(response, what)
        try:
            return MediaInfo.model_validate_json(response.content)
        except ValidationError:
            raise PermanentError(f"{what}: unexpected response (no usable url)") from None

    async def download(self, url: str, *, limit: int) -> bytes:
        """The bytes at a media URL, read with the token (Meta refuses it without).

        Follows up to 3 redirects, only to https, and sends the token to the URL's own
        host only. ``RetryableError`` on 404 (the URL expired: the caller's retry resolves
        a fresh one); ``PermanentError`` past ``limit`` bytes, whatever the headers say.
        """
        what = "whatsapp media download"
        try:
            target = httpx.URL(url)
            origin = target.host
            for _ in range(_MAX_REDIRECTS + 1):
                if target.scheme != "https":
                    raise PermanentError(f"{what}: refusing a non-https URL")
                headers = self._auth if target.host == origin else {}
                async with self._client.stream(
                    "GET", target, headers=headers, follow_redirects=False
                ) as response:
                    if response.is_redirect and "location" in response.headers:
                        target = target.join(response.headers["location"])
                        continue
                    if response.status_code == 404:
                        raise RetryableError(f"{what}: HTTP 404 (URL expired)", status=404)
                    classify(response, what=what)
                    return await read_capped(response, limit, what=what)
        except httpx.InvalidURL:
            raise PermanentError(f"{what}: not a valid URL") from None
        except httpx.HTTPError as exc:
            raise transport_error(exc, what=what) from None
        raise PermanentError(f"{what}: too many redirects")


def _check(response: httpx.Response, what: str) -> None:
    if response.is_success:
        return
    err = graph_error(response)
    if err is not None and err.code == BSUID_NOT_SUPPORTED:
        raise PermanentError(
            f"{what}: WhatsApp does not accept this kind of message for a customer known only "
            f"by their business-scoped user ID (no phone number), so it was not sent "
            f"(Graph error {BSUID_NOT_SUPPORTED})",
            status=response.status_code,
        )
    raise_for_graph(response, what=what, retryable=RETRYABLE, window_closed=WINDOW_CLOSED)
