"""Bot API calls (https://core.telegram.org/bots/api#making-requests) and Telegram's text limits.

Lengths are counted in UTF-16 code units. Telegram documents its limits as "characters
after entity parsing" and measures entity offsets in UTF-16 units; since we send plain
text (no ``parse_mode``) and a UTF-16 count is never below the code-point count, this is
the conservative reading: a chunk we accept is never rejected for length.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import httpx

from deskbridge.adapters.text import split_text, utf16_len
from deskbridge.errors import PermanentError
from deskbridge.http import classify, read_capped, transport_error
from deskbridge.schemas import Upload

__all__ = ["CAPTION_LIMIT", "TEXT_LIMIT", "BotApi", "ChatMigrated", "split_text", "utf16_len"]

TEXT_LIMIT = 4096
CAPTION_LIMIT = 1024


class ChatMigrated(PermanentError):
    """The group became a supergroup (``parameters.migrate_to_chat_id`` on a 400): the
    old chat id is dead, the same call to ``new_chat_id`` is what Telegram asks for."""

    def __init__(self, message: str, new_chat_id: int) -> None:
        super().__init__(message, status=400)
        self.new_chat_id = new_chat_id


class BotApi:
    """One bot's Bot API endpoint. Methods raise ``RetryableError``/``PermanentError``;
    messages name the Bot API method and never carry the URL (it holds the token)."""

    def __init__(self, client: httpx.AsyncClient, base: str, token: str) -> None:
        self._client = client
        self._base = base.rstrip("/")
        self._token = token

    async def call(self, method: str, payload: Mapping[str, Any]) -> Any:
        """POST ``payload`` as JSON to ``method`` and return its ``result``."""
        what = f"telegram {method}"
        try:
            response = await self._client.post(self._url(method), json=dict(payload))
        except httpx.HTTPError as exc:
            # `from None`: the httpx error carries the request, whose URL holds the token.
            raise transport_error(exc, what=what) from None
        return _result(response, what)

    async def upload(self, method: str, fields: Mapping[str, str], name: str, file: Upload) -> Any:
        """POST ``fields`` and ``file`` (as form field ``name``) multipart to ``method``."""
        what = f"telegram {method}"
        files = {name: (file.filename, file.data, file.mime_type)}
        try:
            response = await self._client.post(self._url(method), data=dict(fields), files=files)
        except httpx.HTTPError as exc:
            raise transport_error(exc, what=what) from None
        return _result(response, what)

    async def download(self, file_path: str, *, limit: int) -> bytes:
        """The bytes at ``file_path`` (from getFile); ``PermanentError`` past ``limit`` bytes,
        whatever Content-Length claimed."""
        what = "telegram file download"
        url = f"{self._base}/file/bot{self._token}/{file_path}"
        try:
            async with self._client.stream("GET", url) as response:
                classify(response, what=what)
                return await read_capped(response, limit, what=what)
        except httpx.HTTPError as exc:
            raise transport_error(exc, what=what) from None

    def _url(self, method: str) -> str:
        return f"{self._base}/bot{self._token}/{method}"


def _result(response: httpx.Response, what: str) -> Any:
    body = _json(response)
    moved = _param(body, "migrate_to_chat_id")
    if response.status_code == 400 and isinstance(moved, int) and not isinstance(moved, bool):
        raise ChatMigrated(f"{what}: the group moved to a supergroup", moved)
    if not response.is_success:
        classify(response, what=what, retry_after=_retry_after(body))
    if not isinstance(body, dict) or body.get("ok") is not True or "result" not in body:
        code = body.get("error_code") if isinstance(body, dict) else None
        raise PermanentError(
            f"{what}: not ok (error_code {code if isinstance(code, int) else 'none'})",
            status=response.status_code,
        )
    return body["result"]


def _json(response: httpx.Response) -> Any:
    try:
        return json.loads(response.content)
    except (ValueError, RecursionError):
        return None


def _param(body: Any, name: str) -> Any:
    params = body.get("parameters") if isinstance(body, dict) else None
    return params.get(name) if isinstance(params, dict) else None


def _retry_after(body: Any) -> float | None:
    value = _param(body, "retry_after")
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    return None
