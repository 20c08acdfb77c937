"""How a normalized message reads in a desk: one function every desk connector uses."""

from __future__ import annotations

from datetime import UTC

from deskbridge.adapters.registry import CHANNELS
from deskbridge.schemas import Handoff, Message

__all__ = ["handoff_block", "render", "subject"]

_QUOTE_LIMIT = 200


_REASONS = {
    "asked": "the customer asked for a person",
    "max_turns": "the bot's turns ran out",
    "no_answer": "the bot had no answer",
    "responder": "the bot handed over",
    "responder_error": "the bot could not be reached",
    "not_text": "the bot cannot read this message",
}


def handoff_block(handoff: Handoff) -> str:
    """The bot session before a handed-off message, as the agent reads it."""
    why = _REASONS.get(handoff.reason, handoff.reason)
    lines = [f"[Conversation with the bot before this message; handed over: {why}]"]
    for turn in handoff.turns:
        who = "Customer" if turn.role == "customer" else "Bot (automated)"
        when = turn.at.astimezone(UTC).strftime("%H:%M UTC")
        lines.append(f"{who}, {when}: {turn.text}")
    if handoff.collected:
        fields = "; ".join(f"{k}: {v}" for k, v in sorted(handoff.collected.items()))
        lines.append(f"[Collected by the bot: {fields}]")
    lines.append("[The customer's message follows]")
    return "\n".join(lines)


def render(msg: Message) -> str:
    """The plain-text body of ``msg`` as the agent sees it (never empty)."""
    parts: list[str] = []
    if msg.edit_of:
        parts.append(f"[Edited message {msg.edit_of}; the new text follows]")
    if msg.reply_to:
        quote = (msg.reply_quote or "").strip().replace("\n", " ")
        if len(quote) > _QUOTE_LIMIT:
            quote = quote[: _QUOTE_LIMIT - 1] + "…"
        parts.append(f"> {quote}" if quote else f"[In reply to message {msg.reply_to}]")
    if msg.text:
        parts.append(msg.text)
    if msg.note:
        parts.append(f"[{msg.note}]")
    if msg.location:
        loc = msg.location
        label = ", ".join(x for x in (loc.name, loc.address) if x)
        link = f"https://www.openstreetmap.org/?mlat={loc.latitude}&mlon={loc.longitude}"
        parts.append(
            f"[Location{': ' + label if label else ''}] {loc.latitude}, {loc.longitude} {link}"
        )
    if msg.contact:
        c = msg.contact
        who = c.name or "contact"
        number = c.phone or c.raw_phone or "no number"
        own = " (the sender's own number)" if c.is_sender else ""
        parts.append(f"[Shared contact: {who}, {number}{own}]")
    for a in msg.attachments:
        if a.kind == "sticker" and not msg.note:
            parts.append("[Sticker]")
    if not parts:
        parts.append(
            f"[{len(msg.attachments)} attachment(s)]" if msg.attachments else "[Empty message]"
        )
    if msg.handoff is not None and (msg.handoff.turns or msg.handoff.collected):
        # a first message handed over at once has no bot session to show
        parts.insert(0, handoff_block(msg.handoff))
    return "\n\n".join(parts)


def subject(msg: Message, *, limit: int = 80) -> str:
    """A ticket subject: the channel and the message's own subject (a mail's Subject),
    or the first line of the first message."""
    first = (msg.text or msg.note or "").strip().splitlines()
    head = first[0] if first else "New conversation"
    own = CHANNELS[msg.channel].own_subject  # a mail's Subject; elsewhere a group's title
    if own and msg.thread_title and msg.thread_title.strip():
        head = " ".join(msg.thread_title.split())
    if len(head) > limit:
        head = head[: limit - 1] + "…"
    who = f"{msg.sender.display_name}: " if msg.sender.display_name else ""
    return f"{msg.channel.brand}: {who}{head}"
