"""The LINE channel of one account: webhook in, Messaging API out."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import logging
import mimetypes
import re
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import PurePosixPath
from typing import Any, ClassVar

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from deskbridge.adapters.base import (
    Handshake,
    MediaLinks,
    MemoryProgress,
    Progress,
    TokenCache,
    send_part,
)
from deskbridge.adapters.capabilities import (
    LooksUpDisplayNames,
    OffersChoices,
    RegistersWebhook,
    ReportsHealth,
)
from deskbridge.adapters.line.api import (
    INVALID_REPLY_TOKEN,
    LineApi,
    OutcomeUnknown,
    error_message,
    raise_for_status,
)
from deskbridge.adapters.line.parse import parse
from deskbridge.adapters.line.tokens import ChannelTokens
from deskbridge.adapters.text import split_text
from deskbridge.config.accounts import LineConfig
from deskbridge.errors import PermanentError, RetryableError, SignatureInvalid
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

__all__ = ["MAX_MESSAGES", "SIGNATURE_HEADER", "TEXT_LIMIT", "LineAdapter", "retry_key"]

_LINK_TTL = 30 * 86400.0
_ACCEPTED = "accepted:"
"""Stands for a batch LINE accepted without naming its messages (a 409 to a repeated
retry key names only the request that was accepted)."""
_VIDEO_MAX_BYTES = 200 * 1024 * 1024

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "x-line-signature"
TEXT_LIMIT = 5000
"""Characters in a text message object (counted here in UTF-16 units, never more)."""
MAX_MESSAGES = 5
"""Message objects in one reply or push request."""

_RETRY_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://deskbridge.invalid/line/retry-key")
# Image messages: JPEG or PNG, at most 10 MB (the preview at most 1 MB). Audio: m4a.
_IMAGE_TYPES = frozenset({"image/jpeg", "image/png"})
_IMAGE_MAX_BYTES = 10 * 1024 * 1024
_AUDIO_TYPES = frozenset({"audio/mp4", "audio/m4a", "audio/x-m4a"})
_DEFAULT_AUDIO_MS = 60_000
_MESSAGE_ID = re.compile(r"[0-9]{1,32}")
_PATH_ID = re.compile(r"[A-Za-z0-9]{1,64}")
_USER_ID = re.compile(r"U[0-9a-f]{32}")
_UNSAFE_NAME = re.compile(r"[^\w.()\[\] -]+")


class _SentMessage(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    id: str = Field(min_length=1)


class _Sent(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    sent_messages: list[_SentMessage] = Field(alias="sentMessages")


class _Profile(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    display_name: str = Field(alias="displayName")


class _InvalidReplyToken(Exception):
    """LINE refused the reply token: used already, or expired."""


def retry_key(account: str, dedup_key: str, batch: int) -> str:
    """The ``X-Line-Retry-Key`` of one push request: the same for every attempt at the same
    batch of the same reply, so LINE accepts it once (a repeat gets 409)."""
    return str(uuid.uuid5(_RETRY_NAMESPACE, f"{account}:{dedup_key}:{batch}"))


class LineAdapter(LooksUpDisplayNames, ReportsHealth, RegistersWebhook, OffersChoices):
    """One account's LINE Official Account channel. ``verify``/``parse`` are pure; the rest
    call the Messaging API at ``api_base`` (default ``config.base_url``) and content
    downloads at ``data_api_base`` (default ``config.data_base_url``).

    ``push_count`` counts the message objects this instance sent by push (they count
    against the plan's monthly quota; replies do not). Each receipt also carries its own
    count as ``SendReceipt.quota_messages``.
    """

    max_choices: ClassVar[int] = 13

    channel: ClassVar[Channel] = Channel.LINE
    takes_files: ClassVar[bool] = False
    # x-line-signature is an HMAC over the body, not a secret: nothing to drop
    secret_headers: ClassVar[frozenset[str]] = frozenset()
    secret_query: ClassVar[frozenset[str]] = frozenset()

    def __init__(
        self,
        account: str,
        config: LineConfig,
        client: httpx.AsyncClient,
        links: MediaLinks,
        tokens: TokenCache,
        *,
        api_base: str | None = None,
        data_api_base: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.account = account
        self.max_body_bytes = config.max_body_bytes
        self.push_count = 0
        self._config = config
        self._links = links
        self._clock = clock
        base = api_base or config.base_url
        self._tokens = ChannelTokens(account, config, client, tokens, api_base=base, clock=clock)
        self._api = LineApi(
            account,
            client,
            self._tokens,
            base=base,
            data_base=data_api_base or config.data_base_url,
        )

    # --- inbound ------------------------------------------------------------------------

    def handshake(self, req: RawRequest) -> Handshake | None:
        """LINE has no verification request (the console's Verify is a signed POST)."""
        return None

    def verify(self, req: RawRequest) -> None:
        """Raise ``SignatureInvalid`` unless ``x-line-signature`` is the Base64 HMAC-SHA256
        of the raw body under the channel secret, compared in constant time."""
        given = req.headers.get(SIGNATURE_HEADER)
        if not given:
            raise SignatureInvalid("line: no signature header")
        secret = self._config.channel_secret.get_secret_value().encode()
        expected = base64.b64encode(hmac.new(secret, req.body, hashlib.sha256).digest())
        if not hmac.compare_digest(given.strip().encode("utf-8", "surrogatepass"), expected):
            raise SignatureInvalid("line: signature mismatch")

    def parse(self, req: RawRequest) -> list[InboundEvent]:
        """The body's events; see :func:`parse.parse` for the errors."""
        return parse(req.body, account=self.account)

    # --- outbound -----------------------------------------------------------------------

    async def send(
        self,
        reply: AgentReply,
        to: ChannelAddress,
        files: Sequence[Upload] = (),
        progress: Progress | None = None,
    ) -> SendReceipt:
        """Send the text (split at 5000 characters) and the attachments (images and m4a
        audio as media by URL, anything else as a link) in requests of at most five
        message objects. The first request goes free through the reply API when
        ``to.reply_token`` is at most ``reply_window_seconds`` old; the rest, and
        everything when LINE refuses the token, by push with a stable retry key.

        Parts are the requests (batches of up to five messages); ``progress`` keeps the
        accepted ones and a retry resumes at the first batch not accepted. A push is
        repeated with the same ``X-Line-Retry-Key``, and LINE's 409 to a repeated key
        counts as accepted: pushed batches never reach the customer twice. A reply whose
        outcome is unknown (timeout, dropped connection, 5xx) has no such key: its batch
        then goes by push, and that possible second copy is counted (``resending``).

        ``used_reply_token`` is True whenever the token was tried: spent, refused, or
        unknown after a timeout.
        """
        messages = self._messages(reply)
        if not messages:
            return SendReceipt(external_ids=())
        progress = progress if progress is not None else MemoryProgress()
        batches = [messages[i : i + MAX_MESSAGES] for i in range(0, len(messages), MAX_MESSAGES)]
        used_token = False
        if to.reply_token and self._reply_open(to) and progress.accepted(0) is None:
            used_token = True
            await self._try_reply(progress, to.reply_token, batches[0])
        pushed: list[int] = []

        async def push(index: int) -> str:
            key = retry_key(self.account, reply.dedup_key, index)
            sent, count = await self._push(to.thread, batches[index], key)
            pushed.append(count)
            return sent

        for index in range(len(batches)):
            await send_part(progress, index, functools.partial(push, index), keyed=True)
        ids = [
            i
            for index in range(len(batches))
            for i in (progress.accepted(index) or "").split()
            if not i.startswith(_ACCEPTED)
        ]
        return SendReceipt(
            external_ids=tuple(ids), used_reply_token=used_token, quota_messages=sum(pushed)
        )

    async def _try_reply(self, progress: Progress, token: str, batch: list[dict[str, Any]]) -> None:
        """Send batch 0 by reply. A refused token, or a timeout or dropped connection,
        leaves the batch to push; after an unknown outcome (now, or a 5xx in an earlier
        attempt) that push may be a second copy, and is counted. Other failures raise."""
        call = functools.partial(self._reply, token, batch)
        earlier = progress.uncertain(0)
        try:
            await send_part(progress, 0, call, keyed=True)
        except _InvalidReplyToken:
            log.info("line account %s: reply token refused, pushing instead", self.account)
            await progress.not_applied(0)
            if earlier:
                await progress.resending(0)
        except OutcomeUnknown as exc:
            log.info("line account %s: %s, pushing instead", self.account, exc)
            await progress.resending(0)

    async def reengage(self, to: ChannelAddress) -> SendReceipt:
        """Always raises: push reaches a follower at any time, so nothing is ever held."""
        raise PermanentError("LINE has no reply window")

    async def fetch(self, attachment: Attachment) -> Upload:
        """Download what a customer sent by its message id, at most ``max_media_bytes``.
        ``RetryableError`` while LINE still prepares a video or audio; ``PermanentError``
        when expired (404/410), too large, or hosted by an external provider (its URL is
        kept as a link in the message's note, not fetched)."""
        what = "line content download"
        ref = attachment.ref
        if ref.startswith(("https://", "http://")):
            raise PermanentError("line: external content is kept as a link")
        if not _MESSAGE_ID.fullmatch(ref):
            raise PermanentError(f"{what}: not a LINE message id")
        limit = self._config.max_media_bytes
        if attachment.size is not None and attachment.size > limit:
            raise PermanentError(f"{what}: over the {limit}-byte limit")
        data, content_type = await self._api.download(
            f"/v2/bot/message/{ref}/content", what=what, limit=limit
        )
        mime = _mime(content_type, attachment.mime_type)
        name = _safe_name(attachment.filename)
        if name is None:
            ext = mimetypes.guess_extension(mime) if mime != "application/octet-stream" else None
            name = f"line-{ref}{ext or ''}"
        return Upload(filename=name, mime_type=mime, data=data)

    # --- account and profiles -----------------------------------------------------------

    async def profile(
        self, user_id: str, *, group_id: str | None = None, room_id: str | None = None
    ) -> str | None:
        """The display name of a user (as a member of ``group_id`` or ``room_id`` when
        given: LINE only shows those to the group's bot), or None on any failure. Never
        raises: a failed lookup must not hold up delivery."""
        ids = [i for i in (user_id, group_id, room_id) if i is not None]
        if not all(_PATH_ID.fullmatch(i) for i in ids):
            return None
        if group_id is not None:
            path = f"/v2/bot/group/{group_id}/member/{user_id}"
        elif room_id is not None:
            path = f"/v2/bot/room/{room_id}/member/{user_id}"
        else:
            path = f"/v2/bot/profile/{user_id}"
        what = "line profile"
        try:
            response = await self._api.call("GET", path, what=what)
            raise_for_status(response, what=what)
            return _Profile.model_validate_json(response.content).display_name or None
        except Exception as exc:  # any failure means "no name", by contract
            log.debug("line account %s: %s failed (%s)", self.account, what, type(exc).__name__)
            return None

    async def display_name(self, user_id: str, thread: str) -> str | None:
        """``profile`` for a message's sender in its conversation (a user, group ``C…`` or
        room ``R…`` id); None for the placeholder of an unnamed group member."""
        if not _USER_ID.fullmatch(user_id):
            return None
        if thread.startswith("C"):
            return await self.profile(user_id, group_id=thread)
        if thread.startswith("R"):
            return await self.profile(user_id, room_id=thread)
        return await self.profile(user_id)

    async def set_webhook(self, url: str) -> None:
        """Point the channel's webhook at ``url``. Idempotent."""
        what = "line set webhook"
        path = "/v2/bot/channel/webhook/endpoint"
        response = await self._api.call("PUT", path, what=what, json={"endpoint": url})
        raise_for_status(response, what=what)

    async def health(self) -> dict[str, float]:
        """The month's push quota (``/v2/bot/message/quota`` and its ``/consumption``):
        how much is used, and which share of a limited plan."""
        out = {"credentials_valid": 1.0}
        quota = await self._api.call("GET", "/v2/bot/message/quota", what="line quota")
        raise_for_status(quota, what="line quota")
        used = await self._api.call(
            "GET", "/v2/bot/message/quota/consumption", what="line quota consumption"
        )
        raise_for_status(used, what="line quota consumption")
        total = float(used.json().get("totalUsage", 0))
        out["quota_used"] = total
        limit = quota.json()
        if limit.get("type") == "limited" and limit.get("value"):
            out["quota_used_ratio"] = total / float(limit["value"])
        return out

    async def check_token(self) -> None:
        """A cheap authenticated call (bot info) for readiness: ``PermanentError`` when LINE
        rejects the token (after one fresh v2.1 token, if a cached one was dropped)."""
        what = "line bot info"
        for attempt in (1, 2):
            try:
                response = await self._api.call("GET", "/v2/bot/info", what=what)
            except RetryableError as exc:
                if exc.status == 401 and attempt == 1:
                    continue
                raise
            raise_for_status(response, what=what)
            return

    # --- helpers ------------------------------------------------------------------------

    def _reply_open(self, to: ChannelAddress) -> bool:
        if to.reply_token_at is None:
            return False
        age = self._clock() - to.reply_token_at.timestamp()
        return age <= self._config.reply_window_seconds

    def _messages(self, reply: AgentReply) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = [
            {"type": "text", "text": chunk} for chunk in split_text(reply.text, TEXT_LIMIT)
        ]
        if messages and reply.choices:
            # a tap sends the choice's text as the customer's message
            messages[-1]["quickReply"] = {
                "items": [
                    {"type": "action", "action": {"type": "message", "label": c[:20], "text": c}}
                    for c in reply.choices[: self.max_choices]
                ]
            }
        for attachment in reply.attachments:
            # LINE apps load media when the chat is opened, maybe weeks later: a one-hour
            # link would show a broken image, so LINE's links live as long as LINE keeps them
            url = self._links.url_for(self.account, attachment, ttl=_LINK_TTL)
            messages.append(_media_message(attachment, url, self._links.video_preview_url()))
        return messages

    async def _reply(self, token: str, batch: list[dict[str, Any]]) -> str:
        what = "line reply"
        response = await self._api.call(
            "POST",
            "/v2/bot/message/reply",
            what=what,
            json={"replyToken": token, "messages": batch},
        )
        if response.status_code == 400:
            message = (error_message(response) or "").strip().rstrip(".")
            if message.lower() == INVALID_REPLY_TOKEN.lower():
                raise _InvalidReplyToken
        raise_for_status(response, what=what)
        return " ".join(_sent_ids(response)) or _ACCEPTED

    async def _push(self, thread: str, batch: list[dict[str, Any]], key: str) -> tuple[str, int]:
        """The ids LINE gave the batch's messages (space-separated) and how many count
        against the quota. A 409 means an earlier request with this retry key was
        accepted: the batch is sent, and LINE names that request in
        ``x-line-accepted-request-id``."""
        what = "line push"
        response = await self._api.call(
            "POST",
            "/v2/bot/message/push",
            what=what,
            json={"to": thread, "messages": batch},
            headers={"X-Line-Retry-Key": key},
        )
        if response.status_code == 409:
            accepted = response.headers.get("x-line-accepted-request-id", "")
            return " ".join(_sent_ids(response)) or f"{_ACCEPTED}{accepted}", 0
        raise_for_status(response, what=what)
        self.push_count += len(batch)
        return " ".join(_sent_ids(response)) or _ACCEPTED, len(batch)


def _media_message(attachment: Attachment, url: str, preview: str) -> dict[str, Any]:
    """An image, video or audio message when LINE can show it, else a text message with
    the link. A video's preview is deskbridge's generic frame (``preview``): LINE needs a
    JPEG or PNG of at most 1 MB, and the desk gives none."""
    mime = (
        attachment.mime_type or mimetypes.guess_type(attachment.filename or "")[0] or ""
    ).lower()
    small = attachment.size is None or attachment.size <= _IMAGE_MAX_BYTES
    if mime in _IMAGE_TYPES and small:
        # [U] the preview is the full image: LINE documents at most 1 MB for previews, and
        # whether clients scale a larger one down or show none is not documented.
        return {"type": "image", "originalContentUrl": url, "previewImageUrl": url}
    if mime == "video/mp4" and (attachment.size is None or attachment.size <= _VIDEO_MAX_BYTES):
        return {"type": "video", "originalContentUrl": url, "previewImageUrl": preview}
    if mime in _AUDIO_TYPES:
        ms = round(attachment.duration * 1000) if attachment.duration else _DEFAULT_AUDIO_MS
        return {"type": "audio", "originalContentUrl": url, "duration": ms}
    label = _safe_name(attachment.filename) or attachment.kind.capitalize()
    return {"type": "text", "text": f"{label}: {url}"}


def _sent_ids(response: httpx.Response) -> list[str]:
    # A 2xx is what counts; an unexpected body must not turn a sent reply into a failure.
    try:
        return [m.id for m in _Sent.model_validate_json(response.content).sent_messages]
    except ValidationError:
        return []


def _mime(content_type: str, known: str | None) -> str:
    header = content_type.partition(";")[0].strip().lower()
    if header and header != "application/octet-stream":
        return header
    return known or header or "application/octet-stream"


def _safe_name(filename: str | None) -> str | None:
    if not filename:
        return None
    name = _UNSAFE_NAME.sub("_", PurePosixPath(filename.replace("\\", "/")).name).strip(" ._")
    return name[-128:] or None
