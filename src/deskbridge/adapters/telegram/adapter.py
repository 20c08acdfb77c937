"""The Telegram channel of one account: webhook in, Bot API out."""

from __future__ import annotations

import functools
import hmac
import json
import mimetypes
import time
from collections.abc import Sequence
from pathlib import PurePosixPath
from typing import Any, ClassVar

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

from deskbridge.adapters.base import Handshake, Part, Progress, send_parts
from deskbridge.adapters.capabilities import OffersChoices, RegistersWebhook, ReportsHealth
from deskbridge.adapters.telegram.parse import parse
from deskbridge.adapters.telegram.send import (
    CAPTION_LIMIT,
    TEXT_LIMIT,
    BotApi,
    ChatMigrated,
    split_text,
    utf16_len,
)
from deskbridge.config.accounts import TelegramConfig
from deskbridge.errors import PermanentError, SignatureInvalid
from deskbridge.schemas import (
    AgentReply,
    Attachment,
    Channel,
    ChannelAddress,
    InboundEvent,
    RawRequest,
    SendReceipt,
    Upload,
)

__all__ = ["TelegramAdapter"]

SECRET_HEADER = "x-telegram-bot-api-secret-token"  # noqa: S105 - a header name, not a secret
ALLOWED_UPDATES = ("message", "edited_message")

# sendPhoto recompresses to a still JPEG (a GIF would lose its animation) and refuses
# photos over 10 MB; everything else goes as a document, which keeps the bytes intact.
_PHOTO_TYPES = frozenset({"image/jpeg", "image/png", "image/webp"})
_PHOTO_MAX_BYTES = 10 * 1024 * 1024


class _File(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    file_path: str | None = None
    file_size: int | None = None


class _Sent(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    message_id: int


class TelegramAdapter(ReportsHealth, RegistersWebhook, OffersChoices):
    """One account's Telegram bot. ``verify``/``parse`` are pure; ``fetch``, ``send`` and
    ``set_webhook`` call the Bot API at ``api_base`` (default ``config.base_url``)."""

    max_choices: ClassVar[int] = 12

    channel: ClassVar[Channel] = Channel.TELEGRAM
    takes_files: ClassVar[bool] = True
    secret_headers: ClassVar[frozenset[str]] = frozenset({SECRET_HEADER})
    secret_query: ClassVar[frozenset[str]] = frozenset()

    def __init__(
        self,
        account: str,
        config: TelegramConfig,
        client: httpx.AsyncClient,
        *,
        api_base: str | None = None,
    ) -> None:
        self.account = account
        self.max_body_bytes = config.max_body_bytes
        self._config = config
        self._api = BotApi(client, api_base or config.base_url, config.bot_token.get_secret_value())

    def handshake(self, req: RawRequest) -> Handshake | None:
        """Telegram has no verification request."""
        return None

    def verify(self, req: RawRequest) -> None:
        """Raise ``SignatureInvalid`` unless the secret-token header matches, compared in
        constant time."""
        given = req.headers.get(SECRET_HEADER)
        if given is None:
            raise SignatureInvalid("telegram: no secret token header")
        expected = self._config.secret_token.get_secret_value().encode()
        if not hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected):
            raise SignatureInvalid("telegram: secret token mismatch")

    def parse(self, req: RawRequest) -> list[InboundEvent]:
        """The one event in the Update (or ``[]``); see :func:`parse.parse` for errors."""
        return parse(req.body, account=self.account)

    async def fetch(self, attachment: Attachment) -> Upload:
        """Download a file by its ``file_id`` via getFile; ``PermanentError`` over
        ``max_media_bytes`` or when Telegram will not serve it (expired, over 20 MB)."""
        limit = self._config.max_media_bytes
        if attachment.size is not None and attachment.size > limit:
            raise PermanentError(f"telegram getFile: over the {limit}-byte limit")
        result = await self._api.call("getFile", {"file_id": attachment.ref})
        try:
            info = _File.model_validate(result)
        except ValidationError:
            raise PermanentError("telegram getFile: unexpected result") from None
        if info.file_size is not None and info.file_size > limit:
            raise PermanentError(f"telegram getFile: over the {limit}-byte limit")
        if not info.file_path:
            raise PermanentError("telegram getFile: no file_path (not downloadable)")
        data = await self._api.download(info.file_path, limit=limit)
        name = PurePosixPath(attachment.filename or "").name or PurePosixPath(info.file_path).name
        name = name or "file"
        mime = attachment.mime_type or mimetypes.guess_type(name)[0] or "application/octet-stream"
        return Upload(filename=name, mime_type=mime, data=data)

    async def send(
        self,
        reply: AgentReply,
        to: ChannelAddress,
        files: Sequence[Upload] = (),
        progress: Progress | None = None,
    ) -> SendReceipt:
        """Send text (split at 4096 UTF-16 units) and files; the text rides as the first
        file's caption when it fits in 1024. Empty text and no files sends nothing.

        Parts: the text chunks, then the files, one message each; ``progress`` keeps the
        accepted ones, so a retry resumes at the first part not accepted. The Bot API has
        no idempotency key: a part whose call ended with an unknown outcome is sent again.
        """
        target: list[int | str] = [_chat_id(to.thread)]
        text = reply.text.strip()
        reply_parameters = _reply_parameters(to.reply_to)
        caption = text if files and text and utf16_len(text) <= CAPTION_LIMIT else None
        calls: list[Part] = []

        async def message(chunk: str, first: bool, last: bool = False) -> str:
            payload: dict[str, Any] = {"chat_id": target[0], "text": chunk}
            if reply_parameters and first:
                payload["reply_parameters"] = reply_parameters
            if last and reply.choices:
                # a reply keyboard: a tap sends the choice back as the customer's message
                payload["reply_markup"] = {
                    "keyboard": [[{"text": c}] for c in reply.choices],
                    "one_time_keyboard": True,
                    "resize_keyboard": True,
                }
            return _message_id(await self._api.call("sendMessage", payload), "sendMessage")

        async def upload(i: int, file: Upload, first: bool) -> str:
            photo = file.mime_type in _PHOTO_TYPES and len(file.data) <= _PHOTO_MAX_BYTES
            method, field = ("sendPhoto", "photo") if photo else ("sendDocument", "document")
            fields = {"chat_id": str(target[0])}
            if caption and i == 0:
                fields["caption"] = caption
            if reply_parameters and first:
                fields["reply_parameters"] = json.dumps(reply_parameters)
            return _message_id(await self._api.upload(method, fields, field, file), method)

        async def followed(call: Part) -> str:
            # the group became a supergroup before its move notice re-pointed the
            # conversation: the same part goes to the new chat (a 400 applied nothing)
            try:
                return await call()
            except ChatMigrated as exc:
                target[0] = exc.new_chat_id
                return await call()

        if text and caption is None:
            chunks = split_text(text, TEXT_LIMIT)
            for n, chunk in enumerate(chunks):
                last = n == len(chunks) - 1
                calls.append(functools.partial(message, chunk, not calls, last))
        for i, file in enumerate(files):
            calls.append(functools.partial(upload, i, file, not calls))
        calls = [functools.partial(followed, call) for call in calls]
        return SendReceipt(external_ids=await send_parts(progress, calls))

    async def reengage(self, to: ChannelAddress) -> SendReceipt:
        """Telegram has no reply window, so nothing ever needs re-engaging."""
        raise PermanentError("telegram has no reply window to re-open")

    async def set_webhook(self, url: str) -> None:
        """Point the bot's webhook at ``url`` with our secret token. Idempotent."""
        await self._api.call(
            "setWebhook",
            {
                "url": url,
                "secret_token": self._config.secret_token.get_secret_value(),
                "allowed_updates": list(ALLOWED_UPDATES),
                "drop_pending_updates": False,
            },
        )

    async def health(self) -> dict[str, float]:
        """``getWebhookInfo``: updates Telegram holds for us, and how long ago its last
        delivery to our webhook failed (absent when it never did)."""
        info = await self._api.call("getWebhookInfo", {})
        if not isinstance(info, dict):
            raise PermanentError("telegram getWebhookInfo: unexpected result")
        out = {
            "credentials_valid": 1.0,
            "webhook_pending": float(info.get("pending_update_count", 0)),
        }
        last = info.get("last_error_date")
        if isinstance(last, int) and last > 0:
            out["webhook_error_age_seconds"] = max(0.0, time.time() - last)
        return out

    async def get_me(self) -> dict[str, Any]:
        """The bot's own User object (a cheap check that the token works)."""
        result = await self._api.call("getMe", {})
        if not isinstance(result, dict):
            raise PermanentError("telegram getMe: unexpected result")
        return result


def _chat_id(thread: str) -> int | str:
    # Chat ids are integers (negative for groups); anything else is an @username.
    try:
        return int(thread)
    except ValueError:
        return thread


def _reply_parameters(reply_to: str | None) -> dict[str, Any] | None:
    if reply_to is None or not reply_to.isdigit():
        return None
    return {"message_id": int(reply_to), "allow_sending_without_reply": True}


def _message_id(result: Any, method: str) -> str:
    try:
        return str(_Sent.model_validate(result).message_id)
    except ValidationError:
        raise PermanentError(f"telegram {method}: unexpected result") from None
