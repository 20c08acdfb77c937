from __future__ import annotations

from datetime import datetime

from deskbridge.schemas.common import Desk, Frozen
from deskbridge.schemas.events import Attachment

__all__ = ["AgentReply"]


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
