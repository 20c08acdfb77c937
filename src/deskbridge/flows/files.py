"""Attachments on their way through: an inbound message's files fetched from the channel
(or read back from the stored request), and a reply's files fetched from the desk."""

from __future__ import annotations

from deskbridge.adapters import ChannelAdapter
from deskbridge.adapters.capabilities import FilesFromRequest
from deskbridge.errors import PermanentError, RetryableError
from deskbridge.flows.runtime import Runtime
from deskbridge.schemas import AgentReply, Attachment, Delivery, Message, RawRequest, Upload

__all__ = ["inbound_files", "reply_files"]


async def inbound_files(
    rt: Runtime, d: Delivery, msg: Message, raw_id: str | None
) -> tuple[list[Upload], Message]:
    """Download the message's files, or read them from the stored request for channels
    whose files travel inside it (email). A file that can never be fetched (too large,
    gone) does not hold the message back: the agent sees a note in its place.

    Raises ``RetryableError`` while the delivery's retry budget lasts."""
    adapter = rt.adapter(d.account, msg.channel)
    stored = None
    if msg.attachments and raw_id and isinstance(adapter, FilesFromRequest):
        stored = await rt.deliveries.raw_request(d.account, raw_id)
    files: list[Upload] = []
    missing: list[str] = []
    for att in msg.attachments:
        if adapter is None:
            missing.append(f"{att.kind}: channel not configured")
            continue
        try:
            files.append(await _one(adapter, stored, att))
        except PermanentError as exc:
            missing.append(f"{att.kind} {att.filename or ''}: {exc}".replace("  ", " "))
        except RetryableError as exc:
            if d.attempts + 1 < rt.policy.max_attempts:
                raise  # try the whole delivery again later
            # the budget is spent: deliver the message, saying which file is missing
            missing.append(f"{att.kind} {att.filename or ''}: {exc}".replace("  ", " "))
    if missing:
        note = "; ".join(f"Attachment not available ({m})" for m in missing)
        msg = msg.model_copy(update={"note": f"{msg.note}; {note}" if msg.note else note})
    return files, msg


async def _one(adapter: ChannelAdapter, stored: RawRequest | None, att: Attachment) -> Upload:
    if isinstance(adapter, FilesFromRequest):
        if stored is None:
            raise PermanentError("the stored request has expired")
        return adapter.file_from_request(stored, att)
    return await adapter.fetch(att)


async def reply_files(
    rt: Runtime, d: Delivery, adapter: ChannelAdapter, reply: AgentReply
) -> tuple[list[Upload], list[str]]:
    """The reply's files as bytes for channels that upload them (none for channels that
    send links, ``MediaLinks``), and what was left out: one line per file the desk's
    URL cannot give (refused by the SSRF guard, gone, too large), naming the file and
    why. A refused file never costs the reply its text.

    Raises ``RetryableError`` while the delivery's retry budget lasts."""
    if not adapter.takes_files or not reply.attachments:
        return [], []
    desk = rt.desk(d.account)
    if desk is None:
        raise PermanentError("no desk to fetch the reply's attachments from")
    files: list[Upload] = []
    left_out: list[str] = []
    for att in reply.attachments:
        try:
            files.append(await desk.fetch(att))
        except PermanentError as exc:
            left_out.append(f"{att.filename or att.kind} ({exc})")
        except RetryableError as exc:
            if d.attempts + 1 < rt.policy.max_attempts:
                raise
            left_out.append(f"{att.filename or att.kind} ({exc})")
    return files, left_out
