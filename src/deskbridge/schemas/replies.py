from __future__ import annotations

from datetime import datetime

from deskbridge.schemas.common import Desk, Frozen
from deskbridge.schemas.events import Attachment

__all__ = ["AgentReply", "Template"]


class Template(Frozen):
    """An approved message template (WhatsApp): what may open a conversation outside the
    channel's reply window. ``params`` fill the body's ``{{1}}``, ``{{2}}``... in order."""

    name: str
    language: str
    params: tuple[str, ...] = ()


class AgentReply(Frozen):
    """A public reply an agent wrote in the desk, to be sent on the customer's channel."""

    account: str
    desk: Desk
    dedup_key: str
    ticket_id: str
    external_id: str
    text: str = ""
    attachments: tuple[Attachment, ...] = ()
    author_name: str | None = None
    automated: bool = False
    """Written by a bot or a trigger, not a person (Messenger's HUMAN_AGENT tag is only
    for people)."""
    occurred_at: datetime
    files_at_desk: bool = False
    """The desk's webhook did not carry the comment's attachments (Zendesk's
    ``comment_added``): they are read from the desk's API before the reply is sent."""
    proactive: bool = False
    """A message the business sends first (``POST /admin/v1/messages``), not an answer:
    it never spends a reply token, goes as an update rather than a response where the
    channel tells them apart, and is filed on the ticket once the channel accepts it."""
    template: Template | None = None
    """Send this approved template instead of ``text`` (WhatsApp, outside its window)."""
    tag: str | None = None
    """Messenger's message tag for a proactive message outside its 24-hour window."""
    choices: tuple[str, ...] = ()
    """Short answers the customer can tap (a survey's scores, a bot's quick replies):
    native controls where the channel has them (``OffersChoices``), else numbered lines."""
    bot: bool = False
    """A responder's answer to the customer's message (issue 23): unlike other automated
    messages it may spend the message's reply token (LINE's free reply)."""
