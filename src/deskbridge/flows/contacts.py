"""Who wrote: the sender's name and authentication, their contact in the identity graph,
and their user at the desk."""

from __future__ import annotations

import hashlib

from deskbridge.adapters.capabilities import LooksUpDisplayNames, authenticates_sender
from deskbridge.flows import privacy
from deskbridge.flows.notes import note
from deskbridge.flows.runtime import Runtime
from deskbridge.outbound import DeskConnector
from deskbridge.schemas import Contact, Delivery, Message, brand
from deskbridge.store.graph import Observed

__all__ = ["authenticated", "desk_user", "desk_user_from", "sender_contact", "with_display_name"]


_PROFILE_TTL = 86400


async def with_display_name(rt: Runtime, d: Delivery, msg: Message) -> Message:
    """Channels that send no name (LINE) are asked once a day per person. A failed lookup
    never holds up the message."""
    if msg.sender.display_name:
        return msg
    adapter = rt.adapter(d.account, msg.channel)
    if not isinstance(adapter, LooksUpDisplayNames):
        return msg
    user = msg.sender.external_id
    name = await rt.conversations.display_name(d.account, msg.channel.value, user)
    if name is None:
        name = await adapter.display_name(user, msg.thread)
        if not name:
            return msg
        await rt.conversations.remember_display_name(
            d.account, msg.channel.value, user, name, _PROFILE_TTL
        )
    return msg.model_copy(update={"sender": msg.sender.model_copy(update={"display_name": name})})


async def authenticated(rt: Runtime, d: Delivery, msg: Message, raw_id: str | None) -> Message:
    """Channels that can authenticate a sender only with network lookups (email's own
    DKIM check) do it here, in the worker, never on the ack path."""
    adapter = rt.adapter(d.account, msg.channel)
    if not raw_id or not authenticates_sender(adapter):
        return msg
    req = await rt.deliveries.raw_request(d.account, raw_id)
    return await adapter.authenticate_sender(req, msg) if req is not None else msg


async def sender_contact(rt: Runtime, d: Delivery, msg: Message) -> Contact:
    """The sender's contact. A sender the channel does not identify (a LINE group member
    who is not named) is filed as the conversation's contact rather than as a stranger
    per message."""
    if not any(i.strength == "strong" for i in msg.sender.identities):
        conv = await rt.conversations.get(d.account, d.conversation_id)
        known = await rt.conversations.contact(d.account, conv.contact_id) if conv else None
        if known is not None:
            return known
    acc = rt.accounts.accounts[d.account]
    contact, observed = await rt.conversations.observe_contact(
        d.account,
        msg.sender.identities,
        msg.sender.display_name,
        shared=acc.shared_keys,
        source=msg.channel.value,
    )
    if observed is not None:
        await _after_observation(rt, d, observed)
        if observed.created:
            await privacy.consent_notice(rt, d, msg, contact.id)
    return contact


async def _after_observation(rt: Runtime, d: Delivery, observed: Observed) -> None:
    """Count what the graph did; tell agents on the tickets of a contact that was merged
    into another (the desk users stay apart until an operator merges them there)."""
    if observed.created:
        rt.metrics.event("identity", "contact_created", "")
    rt.metrics.event("identity", "merge", "automatic", n=len(observed.merges))
    rt.metrics.event("identity", "suggestion", "", n=len(observed.suggestions))
    if rt.desk(d.account) is None:
        return
    for survivor, merged in observed.merges:
        for conv_id in await rt.conversations.conversations_of(d.account, merged):
            conv = await rt.conversations.get(d.account, conv_id)
            if conv is None or conv.ticket_id is None or conv_id == d.conversation_id:
                continue
            on = brand(d.channel)
            text = (
                f"deskbridge recognised this customer as the same person as contact {survivor} "
                f"(strong evidence on {on}); contact {merged} was merged into it, and "
                "new tickets go to that contact's desk user. Merge the desk users if you agree."
            )
            await note(rt, d, text, why=f"merged-{merged}", conversation_id=conv_id)


def _fingerprint(contact: Contact) -> str:
    parts = sorted(f"{i.kind}:{i.channel}:{i.value}" for i in contact.identities)
    return hashlib.sha256("\n".join([contact.display_name or "", *parts]).encode()).hexdigest()[:16]


async def desk_user(rt: Runtime, desk: DeskConnector, contact: Contact) -> str:
    """The desk user of ``contact``; the desk is asked again only when identities change."""
    cached = await rt.conversations.desk_user(contact.account, desk.desk.value, contact.id)
    return await desk_user_from(rt, desk, contact, cached)


async def desk_user_from(
    rt: Runtime, desk: DeskConnector, contact: Contact, cached: str | None
) -> str:
    """``desk_user`` with the stored mapping already read (``cached``)."""
    fp = _fingerprint(contact)
    if cached is not None:
        user_id, _, cached_fp = cached.partition("|")
        if cached_fp == fp:
            return user_id
    user_id = await desk.ensure_user(contact)
    await rt.conversations.set_desk_user(
        contact.account, desk.desk.value, contact.id, f"{user_id}|{fp}"
    )
    return user_id
