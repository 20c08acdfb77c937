"""What a website chat visitor sees of the desk's side: the receipts of their messages
(delivered once filed at the desk, read once an agent read them) and the agent typing.

The desks differ in what they report (docs/channels/webchat.md): an agent's reply says
they read what came before it on every desk (``WebchatAdapter.send``); the sandbox desk
also reports an agent opening the ticket and typing in its reply box. Zendesk tickets,
Intercom and Udesk report neither, so nothing here pretends they do.
"""

from __future__ import annotations

from collections.abc import Iterable

from deskbridge.config import WebchatConfig
from deskbridge.flows.runtime import Runtime
from deskbridge.schemas import Channel, Delivery, Message

__all__ = ["TYPING_SECONDS", "filed", "filed_merged", "seen", "typing"]

TYPING_SECONDS = 5.0
"""How long "agent is typing" lasts unless the desk says it again (the sandbox's reply
box says it every two seconds while the agent types)."""
_DAY = 86400


def _config(rt: Runtime, account: str) -> WebchatConfig | None:
    acc = rt.accounts.accounts.get(account)
    ch = acc.channel(Channel.WEBCHAT) if acc is not None else None
    return ch if isinstance(ch, WebchatConfig) else None


async def filed(rt: Runtime, account: str, messages: Iterable[Message]) -> None:
    """The widget visitors' messages among ``messages`` reached the desk: delivered."""
    cfg = _config(rt, account)
    if cfg is None:
        return
    by_visitor: dict[str, list[str]] = {}
    for m in messages:
        if m.channel is Channel.WEBCHAT and m.external_id:
            by_visitor.setdefault(m.thread, []).append(m.external_id)
    for visitor, ids in by_visitor.items():
        await rt.webchat.delivered(account, visitor, ids, ttl_s=cfg.history_days * _DAY)


async def filed_merged(rt: Runtime, account: str, merged: Iterable[Delivery]) -> None:
    """The deliveries filed inside another's desk update (``flows.budget``): the widget
    visitors' messages among them are delivered too."""
    messages = []
    for d in merged:
        if d.channel == Channel.WEBCHAT.value:
            try:
                record = await rt.deliveries.event(account, d.event_id)
            except KeyError:  # erased meanwhile: nothing to mark for the visitor
                continue
            if record["event"].get("kind") == "message":
                messages.append(Message.model_validate(record["event"]))
    await filed(rt, account, messages)


async def _visitor(rt: Runtime, account: str, desk: str, ticket_id: str) -> str | None:
    """The widget visitor whose conversation the ticket answers, None for a ticket of
    another channel (or of no conversation deskbridge knows)."""
    conv_id = await rt.conversations.for_ticket(account, desk, ticket_id)
    conv = await rt.conversations.get(account, conv_id) if conv_id else None
    return conv.thread if conv is not None and conv.channel is Channel.WEBCHAT else None


async def seen(rt: Runtime, account: str, desk: str, ticket_id: str) -> int:
    """An agent has the ticket in front of them: the visitor's messages filed on it are
    read. Returns how many became read (0 for a ticket of another channel)."""
    cfg = _config(rt, account)
    visitor = await _visitor(rt, account, desk, ticket_id) if cfg is not None else None
    if cfg is None or visitor is None:
        return 0
    return await rt.webchat.read(account, visitor, ttl_s=cfg.history_days * _DAY)


async def typing(rt: Runtime, account: str, desk: str, ticket_id: str) -> bool:
    """An agent is typing a reply on the ticket: the visitor sees it for
    ``TYPING_SECONDS`` unless said again. False for a ticket of another channel."""
    visitor = await _visitor(rt, account, desk, ticket_id)
    if visitor is None:
        return False
    await rt.webchat.typing(account, visitor, seconds=TYPING_SECONDS)
    return True
