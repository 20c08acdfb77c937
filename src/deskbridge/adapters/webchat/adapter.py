"""Agent replies to a widget visitor: kept in the visitor's conversation (the history
the widget shows) and announced to whichever gateway process holds their socket.

"Sent" means stored for the visitor: a visitor with no open socket reads it when they
return (docs/channels/webchat.md). A person's reply also says they read the visitor's
messages filed before it, whichever desk they answer from. A visitor's own files were
uploaded to deskbridge (``POST /widget/v1/<account>/attachments``); ``fetch`` reads them
back for the desk. An agent's files are kept in the entry as the desk's attachments: the
gateway signs a link to each (``/media/…``) every time it sends the history, so a
returning visitor's links work as long as the history lasts (``gateway/webchat_files.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from deskbridge.adapters.base import Progress, send_parts
from deskbridge.adapters.spec import VisitorFile, VisitorPost
from deskbridge.config import WebchatConfig
from deskbridge.errors import PermanentError
from deskbridge.schemas import AgentReply, Attachment, Channel, ChannelAddress, SendReceipt, Upload

__all__ = ["WebchatAdapter"]

_DAY = 86400


class WebchatAdapter:
    channel: ClassVar[Channel] = Channel.WEBCHAT
    takes_files: ClassVar[bool] = False

    def __init__(
        self,
        account: str,
        config: WebchatConfig,
        post: VisitorPost | None,
        files: VisitorFile | None = None,
    ) -> None:
        self.account = account
        self.config = config
        self._post = post
        self._files = files

    async def fetch(self, attachment: Attachment) -> Upload:
        """A visitor's upload, kept ``history_days`` once a message named it. Raises
        ``PermanentError`` once it is gone (or without a store in this process)."""
        if self._files is None:
            raise PermanentError("the widget's store is not available in this process")
        upload = await self._files(attachment.ref)
        if upload is None:
            raise PermanentError("the visitor's file is no longer kept")
        return upload

    async def reengage(self, to: ChannelAddress) -> SendReceipt:
        raise PermanentError("the widget has no reply window to reopen")

    async def send(
        self,
        reply: AgentReply,
        to: ChannelAddress,
        files: Sequence[Upload] = (),
        progress: Progress | None = None,
    ) -> SendReceipt:
        """Appends the reply to the visitor's conversation, once per reply (a retry finds
        the entry by the reply's dedup key); a person's reply (not a bot's, a trigger's or
        a proactive message) marks the visitor's messages at the desk read. Raises
        ``PermanentError`` without a store."""
        post = self._post
        if post is None:
            raise PermanentError("the widget's store is not available in this process")
        text = reply.text
        if not text and reply.choices:
            text = "\n".join(f"{i}. {c}" for i, c in enumerate(reply.choices, 1))
        body = {
            "role": "agent",
            "text": text,
            "author": reply.author_name or "",
            "at": reply.occurred_at.isoformat(),
            # sealed with the entry, never sent as is: the gateway signs a link to each
            "files": [
                {"name": a.filename or "file", "desk": a.model_dump(mode="json", exclude_none=True)}
                for a in reply.attachments
            ],
        }
        client_id = f"r:{reply.dedup_key}"

        async def one() -> str:
            seq, _ = await post(
                to.thread,
                body,
                client_id=client_id,
                ttl_s=self.config.history_days * _DAY,
                read=not (reply.automated or reply.proactive),
            )
            return f"{to.thread}#{seq}"

        return SendReceipt(external_ids=await send_parts(progress, [one], keyed=True))
