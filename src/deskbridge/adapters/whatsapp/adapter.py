"""The WhatsApp channel of one account: agent replies out through the Cloud API, and the
customer's files in."""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import mimetypes
import re
import time
from collections.abc import Callable, Sequence
from pathlib import PurePosixPath
from typing import Any, ClassVar

import httpx

from deskbridge.adapters.base import MemoryProgress, Progress, send_parts
from deskbridge.adapters.capabilities import (
    OffersChoices,
    Registered,
    RegistersAppWebhook,
    ReportsHealth,
)
from deskbridge.adapters.meta.subscribe import AppWebhook, Registrar, Subscription
from deskbridge.adapters.text import numbered, split_text, utf16_len
from deskbridge.adapters.whatsapp.api import CloudApi
from deskbridge.config.accounts import MetaAppConfig, WhatsAppConfig
from deskbridge.errors import PermanentError, RetryableError, WindowClosed
from deskbridge.schemas import (
    AgentReply,
    Attachment,
    Channel,
    ChannelAddress,
    SendReceipt,
    Template,
    Upload,
)

__all__ = ["CAPTION_LIMIT", "MEDIA_LIMITS", "TEXT_LIMIT", "WINDOW_SECONDS", "WhatsAppAdapter"]

WINDOW_SECONDS = 24 * 3600
LIST_BODY_LIMIT = 1024
"""An interactive message's body text (longer text goes as text, choices as lines)."""
TEXT_LIMIT = 4096
CAPTION_LIMIT = 1024

_MB = 1024 * 1024
# business-phone-numbers/media, "Supported media types". A type WhatsApp would refuse as
# image/audio/video, or a file over that kind's limit, goes as a document: the customer
# gets the file intact instead of the reply failing.
MEDIA_LIMITS = {"image": 5 * _MB, "audio": 16 * _MB, "video": 16 * _MB, "document": 100 * _MB}
_TYPES = {
    "image": frozenset({"image/jpeg", "image/png"}),
    "audio": frozenset({"audio/aac", "audio/amr", "audio/mpeg", "audio/mp4", "audio/ogg"}),
    "video": frozenset({"video/mp4", "video/3gpp"}),
}
_MEDIA_ID = re.compile(r"[A-Za-z0-9_-]{1,256}")  # webhook media ids are digits
# Meta's API does not set the app's WhatsApp webhook: only read (meta.subscribe)
APP_HOOK = AppWebhook("whatsapp_business_account", ("messages",), by_api=False, brand="WhatsApp")


class WhatsAppAdapter(ReportsHealth, OffersChoices, RegistersAppWebhook):
    max_choices: ClassVar[int] = 10
    """One account's business phone number. ``send`` and ``reengage`` post to
    ``<api_base or config.base_url>/<graph_version>/<phone_number_id>/messages``; ``clock``
    (Unix seconds) decides whether the 24-hour window is open."""

    channel: ClassVar[Channel] = Channel.WHATSAPP
    takes_files: ClassVar[bool] = True
    app_hook: ClassVar[AppWebhook] = APP_HOOK

    def __init__(
        self,
        account: str,
        config: WhatsAppConfig,
        client: httpx.AsyncClient,
        *,
        api_base: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.account = account
        self._config = config
        self._clock = clock
        base = f"{(api_base or config.base_url).rstrip('/')}/{config.graph_version}"
        self._api = CloudApi(
            client, base, config.phone_number_id, config.access_token.get_secret_value()
        )
        self._graph = base
        self._registrar = Registrar(client, base, self.app_hook)

    async def set_app_webhook(self, app: MetaAppConfig, url: str) -> Registered:
        """The app's WhatsApp webhook: read only, Meta's API does not set it."""
        return await self._registrar.app_webhook(self._config.app, app, url)

    async def subscribe_to_app(self, app: MetaAppConfig) -> Registered:
        """``POST /<waba_id>/subscribed_apps`` with the number's token, unless the app is
        already subscribed; without ``waba_id`` says where to do it by hand."""
        cfg = self._config
        if cfg.waba_id is None:
            return Registered(
                "no waba_id: subscribe the app to the number's WhatsApp Business Account in"
                " the Meta app dashboard, or set waba_id and run register again",
                manual=True,
            )
        url = f"{self._graph}/{cfg.waba_id}/subscribed_apps"
        sub = Subscription(url, cfg.access_token, (), "WhatsApp Business Account")
        return await self._registrar.subscribe(cfg.app, app, sub)

    async def health(self) -> dict[str, float]:
        """Whether Meta still takes the access token for this number."""
        await self._api.check()
        return {"credentials_valid": 1.0}

    async def send(
        self,
        reply: AgentReply,
        to: ChannelAddress,
        files: Sequence[Upload] = (),
        progress: Progress | None = None,
    ) -> SendReceipt:
        """Send text (split at 4096) and files; the text rides as the first file's caption
        when it fits in 1024 and that file takes one (audio does not). ``to.reply_to``
        quotes the customer's message on the first message sent.

        A reply with a ``template`` sends that approved template alone, in or out of the
        window (one part). Otherwise raises ``WindowClosed`` before any call when the
        customer last wrote more than 24 hours ago (or never), ``PermanentError`` for a
        file over 100 MB before uploading.
        Parts: the text chunks, then the files; ``progress`` keeps the accepted ones and a
        retry resumes at the first part not accepted. Every file not yet sent is uploaded
        before anything is sent. The Cloud API has no idempotency key: a part whose call
        ended with an unknown outcome is sent again.
        """
        if reply.template is not None:
            # an approved template is what WhatsApp delivers outside the window
            body = self._template_body(reply.template, to)
            return SendReceipt(
                external_ids=await send_parts(progress, [functools.partial(self._post, body)])
            )
        self._check_window(to)
        progress = progress if progress is not None else MemoryProgress()
        recipient = _recipient(to.thread)
        text = reply.text.strip()
        kinds = [_kind(file) for file in files]
        caption = (
            text
            if files and text and kinds[0] != "audio" and utf16_len(text) <= CAPTION_LIMIT
            else None
        )
        choices = reply.choices
        if choices and (files or utf16_len(text) > LIST_BODY_LIMIT):
            text, choices = numbered(text, choices), ()  # no room for a list message
        chunks = split_text(text, TEXT_LIMIT) if text and caption is None else []
        media_ids = {
            i: await self._api.upload(file)
            for i, file in enumerate(files)
            if progress.accepted(len(chunks) + i) is None
        }

        def envelope(kind: str, first: bool) -> dict[str, Any]:
            body: dict[str, Any] = {
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
                **recipient,
                "type": kind,
            }
            if to.reply_to and first:
                body["context"] = {"message_id": to.reply_to}
            return body

        bodies: list[dict[str, Any] | None] = [
            envelope("interactive", True) | {"interactive": _list(chunk, choices)}
            if choices
            else envelope("text", not n) | {"text": {"body": chunk, "preview_url": False}}
            for n, chunk in enumerate(chunks)
        ]
        for i, (file, kind) in enumerate(zip(files, kinds, strict=True)):
            if i not in media_ids:
                bodies.append(None)  # sent by an earlier attempt
                continue
            media: dict[str, Any] = {"id": media_ids[i]}
            if i == 0 and caption is not None:
                media["caption"] = caption
            if kind == "document":
                media["filename"] = file.filename
            bodies.append(envelope(kind, not bodies) | {kind: media})
        calls = [functools.partial(self._post, body) for body in bodies]
        return SendReceipt(external_ids=await send_parts(progress, calls))

    async def _post(self, body: dict[str, Any] | None) -> str:
        if body is None:
            raise PermanentError("whatsapp: a part sent earlier has no record")
        return await self._api.send(body)

    @staticmethod
    def _template_body(template: Template, to: ChannelAddress) -> dict[str, Any]:
        """A template message; its parameters fill the body's ``{{1}}``, ``{{2}}``..."""
        spec: dict[str, Any] = {"name": template.name, "language": {"code": template.language}}
        if template.params:
            spec["components"] = [
                {
                    "type": "body",
                    "parameters": [{"type": "text", "text": p} for p in template.params],
                }
            ]
        return {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            **_recipient(to.thread),
            "type": "template",
            "template": spec,
        }

    async def reengage(self, to: ChannelAddress) -> SendReceipt:
        """Send the account's approved template, which WhatsApp delivers outside the
        window, inviting the customer to write again. It has no parameters: the agent's
        text never goes into a template. ``PermanentError`` when none is configured."""
        template = self._config.template
        if template is None:
            raise PermanentError("no re-engagement template configured for WhatsApp")
        body = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            **_recipient(to.thread),
            "type": "template",
            "template": {"name": template.name, "language": {"code": template.language}},
        }
        return SendReceipt(external_ids=(await self._api.send(body),))

    async def fetch(self, attachment: Attachment) -> Upload:
        """Download a webhook media id's bytes (resolve, then download at once: the URL
        lives 5 minutes). ``PermanentError`` over ``max_media_bytes``; ``RetryableError``
        when the bytes do not match the webhook's SHA-256."""
        limit = self._config.max_media_bytes
        if attachment.size is not None and attachment.size > limit:
            raise PermanentError(f"whatsapp media: over the {limit}-byte limit")
        if not _MEDIA_ID.fullmatch(attachment.ref):
            raise PermanentError("whatsapp media: not a media id")
        info = await self._api.media(attachment.ref)
        if info.file_size is not None and info.file_size > limit:
            raise PermanentError(f"whatsapp media: over the {limit}-byte limit")
        data = await self._api.download(info.url, limit=limit)
        # The webhook's hash travelled with the message; the resolve call's is the fallback.
        # Either may be base64 (as documented for webhooks) or hex: compare digests.
        expected = _digest(attachment.sha256) or _digest(info.sha256)
        if expected is not None and hashlib.sha256(data).digest() != expected:
            # A truncated or corrupted transfer, not a bad file: a fresh URL on the next
            # attempt usually serves it whole. If it never does, the retry budget ends and
            # the message reaches the desk with a note that the file is missing.
            raise RetryableError("whatsapp media download: SHA-256 mismatch (corrupt download)")
        mime = info.mime_type or attachment.mime_type or "application/octet-stream"
        return Upload(filename=_filename(attachment, mime), mime_type=mime, data=data)

    def _check_window(self, to: ChannelAddress) -> None:
        last = to.last_inbound_at
        if last is None or self._clock() - last.timestamp() > WINDOW_SECONDS:
            raise WindowClosed("whatsapp: the 24-hour customer service window is closed")


def _list(body: str, choices: tuple[str, ...]) -> dict[str, Any]:
    """An interactive list message: a tap comes back as a ``list_reply`` whose title is
    the choice (the parser files it as the message text)."""
    rows = [
        {"id": f"choice-{i}", "title": c[:24]}
        for i, c in enumerate(choices[: WhatsAppAdapter.max_choices], 1)
    ]
    return {
        "type": "list",
        "body": {"text": body},
        "action": {"button": "Choose", "sections": [{"title": "Options", "rows": rows}]},
    }


def _recipient(thread: str) -> dict[str, str]:
    """A phone thread (wa_id digits) goes in ``to`` with its ``+``; a BSUID thread in
    ``recipient`` (business-scoped-user-ids, "Send message requests")."""
    if not thread:
        raise PermanentError("whatsapp: the conversation has no recipient")
    if thread.isdigit():
        return {"to": "+" + thread}
    return {"recipient": thread}


def _base_mime(mime: str) -> str:
    return mime.split(";", 1)[0].strip().lower()


def _kind(file: Upload) -> str:
    mime, size = _base_mime(file.mime_type), len(file.data)
    for kind, types in _TYPES.items():
        if mime in types and size <= MEDIA_LIMITS[kind]:
            return kind
    if size > MEDIA_LIMITS["document"]:
        raise PermanentError(
            f"whatsapp: {file.filename!r} is over WhatsApp's {MEDIA_LIMITS['document']}-byte limit"
        )
    return "document"


def _digest(value: str | None) -> bytes | None:
    """The 32-byte digest in a hex or base64 (standard or URL-safe) SHA-256 string."""
    value = (value or "").strip()
    if re.fullmatch(r"[0-9A-Fa-f]{64}", value):
        return bytes.fromhex(value)
    text = value.rstrip("=").translate(str.maketrans("-_", "+/"))
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == 32 else None


def _filename(attachment: Attachment, mime: str) -> str:
    name = PurePosixPath((attachment.filename or "").replace("\\", "/")).name
    if name not in ("", ".", ".."):
        return name
    ext = mimetypes.guess_extension(_base_mime(mime)) or ".bin"
    return f"whatsapp-{attachment.ref}{ext}"
