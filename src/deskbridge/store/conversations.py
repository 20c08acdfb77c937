"""Conversations, their tickets, contacts and identity lookups.

Identity values (phone numbers, emails, channel ids) are stored sealed; lookups go through
keyed digests (``Vault.digest``), so no key name and no plaintext value reveals a person.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis

from deskbridge.schemas import Channel, Contact, Identity
from deskbridge.store import keys
from deskbridge.store.connection import guarded, structures
from deskbridge.store.crypto import Vault
from deskbridge.store.graph import IdentityGraph, Observed
from deskbridge.store.ids import new_id
from deskbridge.store.service import queue_waiting

__all__ = ["ConversationRecord", "ConversationStore"]

_OURS_TTL = 30 * 86400


@dataclass(frozen=True, slots=True)
class ConversationRecord:
    id: str
    account: str
    channel: Channel
    thread: str
    contact_id: str
    ticket_id: str | None
    comment_count: int
    create_attempted: bool
    last_inbound_at: float | None
    reengaged_at: float | None = None
    """When the customer was last invited to reopen a closed reply window."""
    reply_token: str | None = None
    """The unused single-use reply token of the customer's last message (LINE)."""
    reply_token_at: float | None = None
    context: dict[str, str] = field(default_factory=dict)
    """The reply context of the customer's last message (``Message.context``)."""


_IDS_CACHED = 50_000


@guarded
class ConversationStore:
    """Conversations, contacts and their desk mappings. Redis failures raise
    ``StoreUnavailable``."""

    def __init__(
        self,
        redis: aioredis.Redis,
        vault: Vault,
        graph: IdentityGraph | None = None,
        *,
        scopes: dict[str, str] | None = None,
    ) -> None:
        self._redis = redis
        self._typed = structures(redis)
        self._vault = vault
        self.graph = graph
        self._scopes = scopes or {}
        # conversation ids by (account, channel, thread): chats repeat, and every ack
        # needs one; a pure function of the lookup key, which a process never changes
        self._ids: dict[tuple[str, Channel, str], str] = {}

    def scope(self, account: str) -> str:
        """The identity graph's merge scope of ``account`` (the account itself unless it
        names a shared ``merge_scope``)."""
        return self._scopes.get(account, account)

    def conversation_id(self, account: str, channel: Channel, thread: str) -> str:
        """Deterministic, so intake knows a conversation's lane without a lookup."""
        known = self._ids.get((account, channel, thread))
        if known is None:
            if len(self._ids) >= _IDS_CACHED:
                self._ids.clear()  # bounded; the busy conversations come back at once
            known = self._ids[account, channel, thread] = self._vault.digest(
                "conversation", account, channel.value, thread
            )
        return known

    def _identity_digest(self, account: str, ident: Identity) -> str:
        scope = ident.channel.value if ident.kind == "channel_user" and ident.channel else ""
        return self._vault.digest("identity", account, ident.kind, scope, ident.value)

    async def get(self, account: str, conversation_id: str) -> ConversationRecord | None:
        key = keys.conversation(account, conversation_id)
        return self._record(account, conversation_id, await self._typed.hgetall(key))

    def _record(
        self, account: str, conversation_id: str, h: dict[bytes, bytes]
    ) -> ConversationRecord | None:
        key = keys.conversation(account, conversation_id)
        if b"thread" not in h:
            return None  # none, or cut short by a crash before ``ensure`` wrote it whole
        d = {k.decode(): v for k, v in h.items()}
        ticket = d.get("ticket_id")
        last = d.get("last_inbound_at")
        reengaged = d.get("reengaged_at")
        token_blob = d.get("reply_token")
        context_blob = d.get("context")
        token_at = d.get("reply_token_at")
        return ConversationRecord(
            id=conversation_id,
            account=account,
            channel=Channel(d["channel"].decode()),
            thread=self._vault.open(d["thread"], key + "#thread").decode(),
            contact_id=d["contact_id"].decode(),
            ticket_id=ticket.decode() if ticket else None,
            comment_count=int(d.get("comment_count", b"0")),
            create_attempted=d.get("create_attempted") == b"1",
            last_inbound_at=float(last) if last else None,
            reengaged_at=float(reengaged) if reengaged else None,
            reply_token=self._vault.open(token_blob, key + "#reply_token").decode()
            if token_blob
            else None,
            reply_token_at=float(token_at) if token_at else None,
            context=json.loads(self._vault.open(context_blob, key + "#context"))
            if context_blob
            else {},
        )

    async def ensure(
        self,
        account: str,
        conversation_id: str,
        channel: Channel,
        thread: str,
        contact_id: str,
        *,
        inbound_at: float | None = None,
    ) -> ConversationRecord:
        """Create the conversation on first sight; later calls only move ``last_inbound_at``.
        One transaction: a worker killed halfway must not leave a record without its thread."""
        rec, _, _ = await self.ensure_seen(
            account, conversation_id, channel, thread, contact_id, inbound_at=inbound_at
        )
        return rec

    async def ensure_seen(
        self,
        account: str,
        conversation_id: str,
        channel: Channel,
        thread: str,
        contact_id: str,
        *,
        inbound_at: float | None = None,
        desk: str | None = None,
    ) -> tuple[ConversationRecord, bool, str | None]:
        """``ensure``, and in the same transaction whether the conversation's outbound
        lane holds a reply (pending or held): with none, no held reply can wait for the
        customer's message, so the caller need not try to release one; and, with ``desk``,
        the contact's ``desk_user`` there."""
        key = keys.conversation(account, conversation_id)
        sealed = self._vault.seal(thread.encode(), key + "#thread")
        pipe = self._redis.pipeline(transaction=True)
        pipe.hsetnx(key, "channel", channel.value)
        pipe.hsetnx(key, "thread", sealed)  # type: ignore[arg-type]  # redis-py takes bytes
        pipe.hsetnx(key, "contact_id", contact_id)
        pipe.hsetnx(key, "created_at", str(int(time.time() * 1000)))
        pipe.sadd(keys.contact_conversations(account, contact_id), conversation_id)
        if inbound_at is not None:
            pipe.hset(key, "last_inbound_at", str(inbound_at))
        pipe.hgetall(key)  # the record as written, in the same round trip
        pipe.llen(keys.lane(account, "outbound", conversation_id))
        if desk is not None:
            pipe.get(keys.desk_user(account, desk, contact_id))
        out = await pipe.execute()
        user = out.pop() if desk is not None else None
        *_, h, replies = out
        rec = self._record(account, conversation_id, h)
        assert rec is not None
        return rec, bool(replies), user.decode() if user is not None else None

    async def set_reply_token(
        self, account: str, conversation_id: str, token: str, at: float
    ) -> None:
        """Keep the newest customer message's reply token (sealed: it is a credential)."""
        key = keys.conversation(account, conversation_id)
        await self._typed.hset(
            key,
            mapping={
                "reply_token": self._vault.seal(token.encode(), key + "#reply_token"),
                "reply_token_at": str(at),
            },
        )

    async def set_context(
        self, account: str, conversation_id: str, context: dict[str, str]
    ) -> None:
        """Keep the reply context of the newest customer message (sealed: it names people)."""
        key = keys.conversation(account, conversation_id)
        blob = self._vault.seal(json.dumps(context).encode(), key + "#context")
        await self._typed.hset(key, mapping={"context": blob})

    async def clear_reply_token(self, account: str, conversation_id: str, token: str) -> None:
        """Forget ``token`` once spent, unless a newer message brought a new one."""
        current = await self.get(account, conversation_id)
        if current is not None and current.reply_token == token:
            await self._typed.hdel(
                keys.conversation(account, conversation_id), "reply_token", "reply_token_at"
            )

    async def set_attributes(self, account: str, contact_id: str, values: dict[str, str]) -> None:
        """Merge ``values`` into the contact's attributes (one write, only when changed)."""
        contact = await self.contact(account, contact_id)
        if contact is None:
            return
        merged = {**contact.attributes, **values}
        if merged != contact.attributes:
            await self._save_contact(contact.model_copy(update={"attributes": merged}))

    async def set_language(self, account: str, conversation_id: str, language: str) -> None:
        """The conversation's language (a label of its service metrics)."""
        await self._typed.hset(keys.conversation(account, conversation_id), "language", language)

    async def language(self, account: str, conversation_id: str) -> str | None:
        """The language enrichment last detected in the conversation, None if none."""
        value = await self._typed.hget(keys.conversation(account, conversation_id), "language")
        return value.decode() if value else None

    async def set_team(self, account: str, conversation_id: str, team: str) -> None:
        """The desk group the routing rules last assigned (a label of the CSAT metrics)."""
        await self._typed.hset(keys.conversation(account, conversation_id), "team", team)

    async def team(self, account: str, conversation_id: str) -> str | None:
        value = await self._typed.hget(keys.conversation(account, conversation_id), "team")
        return value.decode() if value else None

    async def claim_consent(self, account: str, channel: str, contact_id: str) -> bool:
        """True exactly once per contact and channel: the consent notice is theirs to send."""
        flag = keys.consent(account, channel, contact_id)
        return bool(await self._redis.set(flag, str(int(time.time())), nx=True))

    async def set_attribute(self, account: str, contact_id: str, name: str, value: str) -> None:
        contact = await self.contact(account, contact_id)
        if contact is not None and contact.attributes.get(name) != value:
            await self._save_contact(
                contact.model_copy(update={"attributes": {**contact.attributes, name: value}})
            )

    async def display_name(self, account: str, channel: str, user: str) -> str | None:
        key = keys.profile(account, channel, self._vault.digest("profile", account, channel, user))
        blob = await self._redis.get(key)
        return self._vault.open(blob, key).decode() if blob else None

    async def remember_display_name(
        self, account: str, channel: str, user: str, name: str, ttl: int
    ) -> None:
        key = keys.profile(account, channel, self._vault.digest("profile", account, channel, user))
        await self._redis.set(key, self._vault.seal(name.encode(), key), ex=ttl)

    async def mark_reengaged(self, account: str, conversation_id: str, at: float) -> None:
        await self._typed.hset(keys.conversation(account, conversation_id), "reengaged_at", str(at))

    async def mark_create_attempted(self, account: str, conversation_id: str) -> None:
        await self._typed.hset(keys.conversation(account, conversation_id), "create_attempted", "1")

    async def set_ticket(
        self,
        account: str,
        desk: str,
        conversation_id: str,
        ticket_id: str,
        comment_count: int,
        *,
        ours: str | None = None,
        waiting: tuple[str, float] | None = None,
        also: Callable[[Any], None] | None = None,
    ) -> None:
        """The conversation's ticket; ``ours``: a desk message id to mark as ours
        (``is_ours``) in the same round trip; ``waiting`` (channel, since): the service
        store's ``mark_waiting`` in it too; ``also``: queues another store's writes on
        the same transaction."""
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(
            keys.conversation(account, conversation_id),
            mapping={"ticket_id": ticket_id, "comment_count": comment_count, "desk": desk},
        )
        pipe.set(self._ticket_key(account, desk, ticket_id), conversation_id)
        if ours is not None:
            pipe.set(self._ours_key(account, desk, ours), 1, ex=_OURS_TTL)
        if waiting is not None:
            queue_waiting(pipe, account, conversation_id, *waiting)
        if also is not None:
            also(pipe)
        await pipe.execute()

    def _ticket_key(self, account: str, desk: str, ticket_id: str) -> str:
        return keys.ticket(account, desk, self._vault.digest("ticket", desk, ticket_id))

    async def contact_ticket(
        self, account: str, desk: str, contact_id: str
    ) -> tuple[str, int] | None:
        """The contact's ticket in ``conversation_scope: contact`` (and its comments)."""
        if self.graph is not None:
            contact_id = await self.graph.resolve(self.scope(account), contact_id)
        value = await self._redis.get(keys.contact_ticket(account, desk, contact_id))
        if value is None:
            return None
        ticket, _, count = value.decode().partition("|")
        return ticket, int(count or 0)

    async def set_contact_ticket(
        self, account: str, desk: str, contact_id: str, ticket_id: str, comment_count: int
    ) -> None:
        await self._redis.set(
            keys.contact_ticket(account, desk, contact_id), f"{ticket_id}|{comment_count}"
        )

    async def for_ticket(self, account: str, desk: str, ticket_id: str) -> str | None:
        key = self._ticket_key(account, desk, ticket_id)
        value = await self._redis.get(key)
        if value is None:
            # A ticket filed before issue 18 is named by its id until `deskbridge keys
            # digest-ids` renames it: found here, it is renamed on the way.
            legacy = keys.ticket(account, desk, ticket_id)
            value = await self._redis.get(legacy)
            if value is not None and not await self._redis.renamenx(legacy, key):
                await self._redis.delete(legacy)
        return value.decode() if value is not None else None

    async def move_thread(self, account: str, old_id: str, new_id: str, new_thread: str) -> bool:
        """The channel moved a conversation to another thread (a Telegram group that became
        a supergroup): the old conversation now answers on ``new_thread``, and the new
        thread's conversation joins the old one's contact and ticket unless it already has
        a ticket of its own. Idempotent; False when the old conversation is unknown."""
        old_key = keys.conversation(account, old_id)
        h = await self._typed.hgetall(old_key)
        if b"thread" not in h:
            return False
        new_key = keys.conversation(account, new_id)
        d = {k.decode(): v for k, v in h.items()}
        contact_id = d["contact_id"].decode()
        sealed_old = self._vault.seal(new_thread.encode(), old_key + "#thread")
        sealed_new = self._vault.seal(new_thread.encode(), new_key + "#thread")
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(old_key, "thread", sealed_old)  # type: ignore[arg-type]  # redis-py takes bytes
        pipe.hsetnx(new_key, "channel", d["channel"].decode())
        pipe.hsetnx(new_key, "thread", sealed_new)  # type: ignore[arg-type]  # redis-py takes bytes
        pipe.hsetnx(new_key, "contact_id", contact_id)
        pipe.hsetnx(new_key, "created_at", str(int(time.time() * 1000)))
        pipe.sadd(keys.contact_conversations(account, contact_id), new_id)
        # hsetnx: a ticket the new thread already opened (its message won the race) stays
        for name in ("ticket_id", "comment_count", "desk"):
            if name in d:
                pipe.hsetnx(new_key, name, d[name].decode())
        await pipe.execute()
        return True

    # contacts -------------------------------------------------------------------------

    async def contact(
        self, account: str, contact_id: str, *, scope: str | None = None
    ) -> Contact | None:
        """The contact (after merges: the surviving one), with every identifier the
        identity graph holds for it."""
        if self.graph is not None:
            contact_id = await self.graph.resolve(scope or self.scope(account), contact_id)
        key = keys.contact(account, contact_id)
        blob = await self._redis.get(key)
        if blob is None:
            return None
        contact = Contact.model_validate_json(self._vault.open(blob, key))
        if self.graph is not None:
            members = await self.graph.members(scope or self.scope(account), contact_id)
            if members:
                contact = contact.model_copy(update={"identities": tuple(members)})
        return contact

    async def conversations_of(self, account: str, contact_id: str) -> list[str]:
        """The conversations filed under ``contact_id`` (by the id they were filed with)."""
        found = await self._typed.smembers(keys.contact_conversations(account, contact_id))
        return sorted(c.decode() for c in found)

    async def observe_contact(
        self,
        account: str,
        identities: tuple[Identity, ...],
        display_name: str | None,
        *,
        scope: str | None = None,
        shared: frozenset[str] = frozenset(),
        source: str = "channel",
    ) -> tuple[Contact, Observed | None]:
        """The sender's contact through the identity graph (merging contacts when the
        evidence says so). Without identities, a contact of its own."""
        if self.graph is None or not identities:
            return await self.resolve_contact(account, identities, display_name), None
        scope = scope or self.scope(account)
        # the observation, the contact's record and its identifiers in one round trip
        # (the record only where its key carries the graph's hash tag)
        records = keys.contact(account, "") if scope == account else ""
        observed, blob, members = await self.graph.observe_read(
            scope, identities, records, source=source, shared=shared
        )
        key = keys.contact(account, observed.contact_id)
        if not records:
            blob = await self._redis.get(key)
        record = Contact.model_validate_json(self._vault.open(blob, key)) if blob else None
        if record is None:
            record = Contact(
                id=observed.contact_id,
                account=account,
                display_name=display_name,
                created_at=datetime.now(UTC),
            )
        attributes = dict(record.attributes)
        name = display_name or record.display_name
        for _survivor, merged in observed.merges:
            gone = await self._redis.get(keys.contact(account, merged))
            if gone is not None:
                old = Contact.model_validate_json(
                    self._vault.open(gone, keys.contact(account, merged))
                )
                attributes = {**old.attributes, **attributes}
                name = name or old.display_name
            # the merged contact's conversations are now the survivor's too
            for conv in await self.conversations_of(account, merged):
                await self._typed.sadd(
                    keys.contact_conversations(account, observed.contact_id), conv
                )
        if blob is None or name != record.display_name or attributes != record.attributes:
            record = record.model_copy(update={"display_name": name, "attributes": attributes})
            await self._save_contact(record)
        return record.model_copy(update={"identities": tuple(members)}), observed

    async def _save_contact(self, contact: Contact) -> None:
        key = keys.contact(contact.account, contact.id)
        await self._redis.set(key, self._vault.seal(contact.model_dump_json().encode(), key))

    async def resolve_contact(
        self, account: str, identities: tuple[Identity, ...], display_name: str | None
    ) -> Contact:
        """The contact that owns the first known strong identity, else a new one; new
        identities are added to it. Only strong identities are indexed for lookup, and an
        index entry already owned by another contact is never taken over (merging is the
        identity graph's job)."""
        strong = [i for i in identities if i.strength == "strong"]
        owner: str | None = None
        for ident in strong:
            found = await self._redis.get(
                keys.identity(account, self._identity_digest(account, ident))
            )
            if found is not None:
                owner = found.decode()
                break
        contact = await self.contact(account, owner) if owner else None
        if contact is None:
            contact = Contact(
                id=new_id(),
                account=account,
                display_name=display_name,
                created_at=datetime.now(UTC),
            )
        known = {(i.kind, i.channel, i.value) for i in contact.identities}
        added = tuple(i for i in identities if (i.kind, i.channel, i.value) not in known)
        if added or (display_name and display_name != contact.display_name) or owner is None:
            contact = contact.model_copy(
                update={
                    "identities": contact.identities + added,
                    "display_name": display_name or contact.display_name,
                }
            )
            await self._save_contact(contact)
        for ident in strong:
            await self._redis.set(
                keys.identity(account, self._identity_digest(account, ident)), contact.id, nx=True
            )
        return contact

    # desk users and the loop guard ---------------------------------------------------

    async def desk_user(self, account: str, desk: str, contact_id: str) -> str | None:
        value = await self._redis.get(keys.desk_user(account, desk, contact_id))
        return value.decode() if value is not None else None

    async def set_desk_user(self, account: str, desk: str, contact_id: str, user_id: str) -> None:
        await self._redis.set(keys.desk_user(account, desk, contact_id), user_id)

    async def is_ours(self, account: str, desk: str, message_id: str) -> bool:
        # the second name is the one written before issue 18 (expires within _OURS_TTL)
        named = (self._ours_key(account, desk, message_id), keys.ours(account, desk, message_id))
        return bool(await self._redis.exists(*named))

    def _ours_key(self, account: str, desk: str, message_id: str) -> str:
        return keys.ours(account, desk, self._vault.digest("ours", desk, message_id))
