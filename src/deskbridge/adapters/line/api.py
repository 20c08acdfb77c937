"""Messaging API calls with one channel's token, and what LINE's error answers mean.

Errors (https://developers.line.biz/en/reference/messaging-api/#error-responses): a JSON
``{"message": ..., "details": [...]}``; 429 is either the rate limit or the plan's monthly
message quota, told apart only by the message. Messages we raise name the call, never the
token or the body (which may echo customer text).
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

from deskbridge.adapters.line.tokens import ChannelTokens
from deskbridge.errors import PermanentError, RetryableError
from deskbridge.http import classify, read_capped, transport_error

__all__ = [
    "INVALID_REPLY_TOKEN",
    "QUOTA_MESSAGE",
    "TOKEN_REJECTED",
    "LineApi",
    "OutcomeUnknown",
    "error_message",
    "raise_for_status",
]

log = logging.getLogger(__name__)

QUOTA_MESSAGE = "You have reached your monthly limit."
INVALID_REPLY_TOKEN = "Invalid reply token"  # noqa: S105 - LINE's error message
TOKEN_REJECTED = "line: channel access token rejected (HTTP 401)"  # noqa: S105 - a message

# Failures after which the request may have reached LINE and been accepted.
_MAYBE_SENT = (httpx.ReadTimeout, httpx.WriteTimeout, httpx.RemoteProtocolError)


class OutcomeUnknown(RetryableError):
    """The request may have reached LINE (a read or write timeout, a dropped connection):
    whether it was accepted is unknown."""


class _Error(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    message: str


def error_message(response: httpx.Response) -> str | None:
    """LINE's ``message`` from an error response, for matching only (never re-raised)."""
    try:
        return _Error.model_validate_json(response.content).message
    except ValidationError:
        return None


def raise_for_status(response: httpx.Response, *, what: str) -> None:
    """Return on 2xx, else raise: the monthly quota is permanent (it lasts until the month
    or the plan changes), the rest as :func:`deskbridge.http.classify` says."""
    if response.is_success:
        return
    message = error_message(response) or ""
    if response.status_code == 429 and message.startswith(QUOTA_MESSAGE.rstrip(".")):
        raise PermanentError("line: monthly message quota reached", status=429)
    classify(response, what=what)


class LineApi:
    """``api.line.me`` and ``api-data.line.me`` (or their stand-ins) for one channel."""

    def __init__(
        self,
        account: str,
        client: httpx.AsyncClient,
        tokens: ChannelTokens,
        *,
        base: str,
        data_base: str,
    ) -> None:
        self._account = account
        self._client = client
        self._tokens = tokens
        self._base = base.rstrip("/")
        self._data_base = data_base.rstrip("/")

    async def call(
        self,
        method: str,
        path: str,
        *,
        what: str,
        json: Any = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """The response to ``method path`` whatever its status, except 401 (see
        :meth:`_rejected`). Transport failures raise ``RetryableError``, or
        ``OutcomeUnknown`` when LINE may have acted on the request."""
        token = await self._tokens.get()
        try:
            response = await self._client.request(
                method,
                self._base + path,
                json=json,
                headers={"Authorization": f"Bearer {token}", **(headers or {})},
            )
        except _MAYBE_SENT as exc:
            # `from None` here and below: the httpx error carries the Authorization header.
            raise OutcomeUnknown(f"{what}: {type(exc).__name__}", outcome="unknown") from None
        except httpx.HTTPError as exc:
            raise transport_error(exc, what=what) from None
        if response.status_code == 401:
            await self._rejected(token, what)
        return response

    async def download(self, path: str, *, what: str, limit: int) -> tuple[bytes, str]:
        """The bytes at ``path`` on the data host and their Content-Type. ``RetryableError``
        while LINE still prepares them (202); ``PermanentError`` when gone (404, 410) or
        past ``limit`` bytes, whatever Content-Length claimed."""
        token = await self._tokens.get()
        auth = {"Authorization": f"Bearer {token}"}
        try:
            async with self._client.stream("GET", self._data_base + path, headers=auth) as response:
                status = response.status_code
                if status == 401:
                    await self._rejected(token, what)
                if status in (404, 410):
                    raise PermanentError(
                        f"{what}: HTTP {status} (expired or removed)", status=status
                    )
                if response.is_success and status != 200:
                    # [S] video and audio are transcoded first; until then LINE answers 202
                    # (GET .../content/transcoding reports the progress).
                    raise RetryableError(f"{what}: not ready yet (HTTP {status})", status=status)
                classify(response, what=what)
                data = await read_capped(response, limit, what=what)
                return data, response.headers.get("content-type", "")
        except httpx.HTTPError as exc:
            raise transport_error(exc, what=what) from None

    async def _rejected(self, token: str, what: str) -> None:
        """A 401: LINE refused the channel access token. Retryable only when a cached v2.1
        token was dropped (the next attempt gets a new one); otherwise permanent."""
        log.warning("line account %s: channel access token rejected (HTTP 401)", self._account)
        if await self._tokens.rejected(token):
            raise RetryableError(
                f"{what}: channel access token rejected (HTTP 401), a new one will be issued",
                status=401,
            )
        raise PermanentError(TOKEN_REJECTED, status=401)
