"""Proactive messages: the business writes to the customer first (``POST
/admin/v1/messages``, ``deskbridge send``).

``queue_message`` picks the contact's conversation (the channel asked for, else the
contact's preferred one, else the one they used last), checks the channel's rules before
anything is written (WhatsApp's window or an approved template, Messenger's window or a
message tag, LINE's monthly push quota, the customer's opt-out), then queues the message
as an outbound delivery in the conversation's lane: sent by ``flows.replies.send_reply``
with the same parts, retries, dead letters and replays as an agent's reply, once per
caller's key. ``file_sent`` puts what went out on the contact's ticket once the channel
accepted it (an internal note, opening the ticket when there is none yet).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from deskbridge.adapters.capabilities import ReportsHealth
from deskbridge.adapters.messenger.adapter import PROACTIVE_TAGS
from deskbridge.config import MessengerConfig
from deskbridge.errors import DeliveryError, DeskbridgeError
from deskbridge.flows.contacts import desk_user
from deskbridge.flows.notes import file_note, note, ref
from deskbridge.flows.runtime import Runtime
from deskbridge.schemas import (
    AgentReply,
    Channel,
    Contact,
    Delivery,
    DeliveryState,
    Desk,
    DeskNote,
    Direction,
    Message,
    Sender,
    Template,
)
from deskbridge.store import ConversationRecord, IntakeEvent

__all__ = [
    "OPT_OUT",
    "SOURCE",
    "Outgoing",
    "ProactiveRefused",
    "Queued",
    "file_on_ticket",
    "file_sent",
    "is_proactive_note",
    "opted_out",
    "queue_message",
]

log = logging.getLogger(__name__)

SOURCE = "proactive"
"""The intake source (and dedup scope) of proactive messages."""
OPT_OUT = "opt_out"
"""The contact attribute that says the customer wants no messages they did not ask for."""
_WINDOW_S = 24 * 3600.0
_HUMAN_AGENT_S = 7 * 24 * 3600.0


class ProactiveRefused(DeskbridgeError):
    """The message may not go (409): ``code`` names the rule, the message says what to
    change. Nothing was written."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Outgoing:
    """What a caller asks to send. ``key``: the caller's idempotency key (the same key
    sends once, for as long as the intake's dedup marks live)."""

    account: str
    contact_id: str
    key: str
    text: str = ""
    template: Template | None = None
    channel: Channel | None = None
    tag: str | None = None
    human: bool = False
    """A person wrote it (may use Messenger's HUMAN_AGENT tag); else it is automated."""
    author: str = ""


@dataclass(frozen=True, slots=True)
class Queued:
    delivery_id: str
    conversation_id: str
    channel: Channel
    duplicate: bool


async def queue_message(rt: Runtime, out: Outgoing) -> Queued:
    """Queue ``out`` for its contact, or return the delivery an earlier call with the same
    key queued. Raises ``ProactiveRefused`` (a rule forbids it; nothing written),
    ``StoreUnavailable``."""
    earlier = await rt.listing.dedup_mark(out.account, SOURCE, _dedup_key(out))
    if earlier is not None:
        return await _earlier(rt, out, earlier.decode())
    contact = await rt.conversations.contact(out.account, out.contact_id)
    if contact is None:
        raise ProactiveRefused("no_contact", f"no contact {out.contact_id}")
    if opted_out(contact, out.channel):
        raise ProactiveRefused(
            "opted_out", "the customer opted out of messages they did not ask for"
        )
    conv = await _conversation(rt, out, contact)
    _check_rules(rt, out, conv)
    await _check_quota(rt, out, conv)
    await rt.conversations.ensure(out.account, conv.id, conv.channel, conv.thread, contact.id)
    reply = AgentReply(
        account=out.account,
        desk=Desk(rt.accounts.accounts[out.account].desk.type),
        dedup_key=_dedup_key(out),
        ticket_id=conv.ticket_id or "",
        external_id=f"proactive:{out.key}",
        text=out.text,
        author_name=out.author or None,
        automated=not out.human,
        proactive=True,
        template=out.template,
        tag=out.tag,
        occurred_at=datetime.now(UTC),
    )
    [new] = await rt.intake.accept(
        account=out.account,
        source=SOURCE,
        direction=Direction.OUTBOUND,
        channel=conv.channel.value,
        desk=reply.desk.value,
        req=None,
        events=[IntakeEvent(dedup_key=reply.dedup_key, conversation_id=conv.id, event=reply)],
    )
    found = await rt.listing.dedup_mark(out.account, SOURCE, _dedup_key(out))
    if found is None:  # pragma: no cover - the intake script wrote it
        raise ProactiveRefused("lost", "the message was not stored; try again")
    rt.metrics.event(SOURCE, "queued" if new else "duplicate", conv.channel.value)
    log.info("%s: proactive message %s queued on %s", out.account, found.decode(), conv.channel)
    return Queued(found.decode(), conv.id, conv.channel, duplicate=not new)


def opted_out(contact: Contact, channel: Channel | None) -> bool:
    """Whether the customer said no to unsolicited messages (the ``opt_out`` attribute),
    or blocked the channel's account (LINE's unfollow)."""
    if contact.attributes.get(OPT_OUT, "").lower() in ("1", "true", "yes"):
        return True
    if channel is None:
        return False
    return contact.attributes.get(f"{channel.value}_follow", "").startswith("unfollowed")


def _dedup_key(out: Outgoing) -> str:
    return f"{SOURCE}:{out.key}"


async def _earlier(rt: Runtime, out: Outgoing, delivery_id: str) -> Queued:
    """The delivery an earlier call with this key queued; a different message under the
    same key is refused, as a payment API refuses a reused key."""
    d = await rt.deliveries.get(out.account, delivery_id)
    if d is None:
        raise ProactiveRefused("key_reused", f"key {out.key!r} was used for a message now gone")
    record = await rt.deliveries.event(out.account, d.event_id)
    sent = AgentReply.model_validate(record["event"])
    conv = await rt.conversations.get(out.account, d.conversation_id)
    # the contact as it is now (a merge since may have given it another id)
    now = await rt.conversations.contact(out.account, conv.contact_id) if conv else None
    same = (sent.text, sent.template, sent.tag) == (out.text, out.template, out.tag)
    if now is None or now.id != out.contact_id or not same:
        raise ProactiveRefused("key_reused", f"key {out.key!r} was used for another message")
    return Queued(d.id, d.conversation_id, Channel(d.channel), duplicate=True)


async def _conversation(rt: Runtime, out: Outgoing, contact: Contact) -> ConversationRecord:
    """The contact's conversation on ``out.channel``, else on their preferred channel,
    else the one they wrote on last. A contact with a phone number but no WhatsApp
    conversation yet gets one (an approved template can open it): returned unsaved."""
    convs = [
        c
        for c in [
            await rt.conversations.get(out.account, cid)
            for cid in await rt.conversations.conversations_of(out.account, contact.id)
        ]
        if c is not None and rt.adapter(out.account, c.channel) is not None
    ]
    wanted = out.channel
    if wanted is None and contact.attributes.get("preferred_channel") in {c.value for c in Channel}:
        wanted = Channel(contact.attributes["preferred_channel"])
    pool = [c for c in convs if wanted is None or c.channel == wanted]
    if pool:
        return max(pool, key=lambda c: c.last_inbound_at or 0.0)
    if wanted in (None, Channel.WHATSAPP) and rt.adapter(out.account, Channel.WHATSAPP):
        phone = next((i.value for i in contact.identities if i.kind == "phone"), None)
        if phone is not None:
            thread = phone.lstrip("+")
            cid = rt.conversations.conversation_id(out.account, Channel.WHATSAPP, thread)
            # written only once the rules let the message go (``queue_message``)
            return ConversationRecord(
                id=cid,
                account=out.account,
                channel=Channel.WHATSAPP,
                thread=thread,
                contact_id=contact.id,
                ticket_id=None,
                comment_count=0,
                create_attempted=False,
                last_inbound_at=None,
            )
    where = f"on {wanted.value}" if wanted else "on any configured channel"
    raise ProactiveRefused(
        "no_conversation",
        f"the customer has no conversation {where} to write to (they must write first there)",
    )


def _check_rules(rt: Runtime, out: Outgoing, conv: ConversationRecord) -> None:
    """Each channel's rules for a message the customer did not ask for."""
    age = time.time() - conv.last_inbound_at if conv.last_inbound_at else None
    if out.template is not None and conv.channel != Channel.WHATSAPP:
        raise ProactiveRefused("template_unsupported", "only WhatsApp sends templates")
    if out.tag is not None and conv.channel != Channel.MESSENGER:
        raise ProactiveRefused("tag_unsupported", "only Messenger messages carry tags")
    if bool(out.text.strip()) == (out.template is not None):
        raise ProactiveRefused("text_or_template", "give a text or a template (not both)")
    closed = age is None or age > _WINDOW_S
    if conv.channel == Channel.WHATSAPP and out.template is None and closed:
        raise ProactiveRefused(
            "template_required",
            "the customer's 24-hour WhatsApp window is closed: send an approved template",
        )
    if conv.channel == Channel.MESSENGER:
        _messenger_rules(rt, out, age)


def _messenger_rules(rt: Runtime, out: Outgoing, age: float | None) -> None:
    if out.tag is not None and out.tag not in PROACTIVE_TAGS | {"HUMAN_AGENT"}:
        allowed = ", ".join(sorted(PROACTIVE_TAGS | {"HUMAN_AGENT"}))
        raise ProactiveRefused("bad_tag", f"tag: one of {allowed}")
    if age is None:
        raise ProactiveRefused("no_window", "Messenger: the customer never wrote to this Page")
    if age <= _WINDOW_S:
        return
    if out.tag is None:
        raise ProactiveRefused(
            "tag_required", "outside Messenger's 24-hour window: give a message tag"
        )
    if out.tag == "HUMAN_AGENT":
        cfg = rt.accounts.accounts[out.account].channel(Channel.MESSENGER)
        enabled = isinstance(cfg, MessengerConfig) and cfg.human_agent_tag
        if not out.human or age > _HUMAN_AGENT_S or not enabled:
            raise ProactiveRefused(
                "tag_refused",
                "HUMAN_AGENT: only a person's message, within 7 days, where the Page has it",
            )


async def _check_quota(rt: Runtime, out: Outgoing, conv: ConversationRecord) -> None:
    """LINE pushes count against the plan's monthly quota: refused once it is used up.
    A quota that cannot be read does not stop the message (LINE refuses it then)."""
    if conv.channel != Channel.LINE:
        return
    adapter = rt.adapter(out.account, Channel.LINE)
    if not isinstance(adapter, ReportsHealth):
        return
    try:
        report = await adapter.health()
    except DeliveryError as exc:
        log.info("%s: LINE quota unreadable (%s); queued anyway", out.account, type(exc).__name__)
        return
    if report.get("quota_used_ratio", 0.0) >= 1.0:
        raise ProactiveRefused("quota_exhausted", "LINE: this month's push quota is used up")


async def file_on_ticket(rt: Runtime, d: Delivery, n: DeskNote) -> DeliveryState:
    """File the note of a sent proactive message. A conversation without a ticket yet
    (the business wrote first) has one opened with it, under the customer's desk user,
    in contact scope the contact's ticket takes it; otherwise it is an ordinary note."""
    conv = await rt.conversations.get(d.account, d.conversation_id)
    if conv is None:
        return DeliveryState.SKIPPED
    if conv.ticket_id is not None:
        return await file_note(rt, d, n)
    desk = rt.desk(d.account)
    contact = await rt.conversations.contact(d.account, conv.contact_id)
    if desk is None or contact is None:
        return DeliveryState.SKIPPED
    per_contact = rt.accounts.accounts[d.account].conversation_scope == "contact"
    name = desk.desk.value
    shared = (
        await rt.conversations.contact_ticket(d.account, name, contact.id) if per_contact else None
    )
    if shared is not None:
        where = ref(conv, d.account).model_copy(
            update={"ticket_id": shared[0], "comment_count": shared[1]}
        )
        await desk.add_note(where, n.text)
        return DeliveryState.DELIVERED
    user_id = await desk_user(rt, desk, contact)
    msg = Message(
        account=d.account,
        channel=conv.channel,
        dedup_key=n.dedup_key,
        thread=conv.thread,
        occurred_at=n.occurred_at,
        external_id=n.dedup_key,
        sender=Sender(external_id=conv.thread, display_name=contact.display_name),
        text=n.text,
    )
    filed = await desk.append(
        ref(conv, d.account),
        user_id,
        msg,
        [],
        idempotency_key=f"deskbridge-{d.id}",
        retried=d.attempts > 0,
        in_doubt=d.attempts > 0,
    )
    count = filed.comment_count if filed.comment_count is not None else 1
    await rt.conversations.set_ticket(
        d.account, name, conv.id, filed.ticket_id, count, ours=filed.message_id
    )
    if per_contact:
        await rt.conversations.set_contact_ticket(
            d.account, name, contact.id, filed.ticket_id, count
        )
    return DeliveryState.DELIVERED


def is_proactive_note(n: DeskNote) -> bool:
    """Whether ``n`` is the ticket's record of a sent proactive message."""
    return n.cause.endswith(":" + SOURCE)


async def file_sent(rt: Runtime, d: Delivery, reply: AgentReply, channel: Channel) -> None:
    """What the channel accepted, on the contact's ticket, as the agent's outbound
    message (an internal note: a public comment would make some desks send it again by
    email). Once per delivery."""
    by = f" by {reply.author_name}" if reply.author_name else ""
    what = reply.text
    if reply.template is not None:
        params = ", ".join(reply.template.params)
        what = f"template {reply.template.name} ({reply.template.language})" + (
            f": {params}" if params else ""
        )
    await note(
        rt,
        d,
        f"Outbound message sent to the customer on {channel.value}{by} "
        f"(deskbridge delivery {d.id}):\n\n{what}",
        why=SOURCE,
    )
