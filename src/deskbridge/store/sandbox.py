"""Storage of the sandbox desk (tickets and messages) and of the sandbox channel API's
outbox (what a channel in sandbox mode was asked to send). Everything is sealed."""

from __future__ import annotations

import json
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import redis.asyncio as aioredis

from deskbridge.store import keys
from deskbridge.store.connection import guarded, structures
from deskbridge.store.crypto import Vault

__all__ = ["SandboxMessage", "SandboxStore", "SandboxTicket"]

_OUTBOX_LIMIT = 200
_SENT = "sent:"
"""Prefix of a ticket hash's fields naming the platform ids its replies went out as."""
_IDEM_TTL = 7 * 86400


@dataclass(frozen=True, slots=True)
class SandboxMessage:
    id: str
    author: str
    """``customer``, ``agent`` or ``note``."""
    text: str
    at: float
    attachments: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SandboxTicket:
    id: str
    account: str
    subject: str
    requester: str
    channel: str
    updated_at: float
    messages: list[SandboxMessage] = field(default_factory=list)
    sent_ids: frozenset[str] = frozenset()
    """The platform ids of what replies on this ticket were sent as (``link_sent``)."""


@guarded
class SandboxStore:
    def __init__(self, redis: aioredis.Redis, vault: Vault) -> None:
        self._redis = redis
        self._typed = structures(redis)
        self._vault = vault

    async def _remembered(self, account: str, idempotency_key: str | None) -> str | None:
        if idempotency_key is None:
            return None
        value = await self._redis.get(keys.sandbox_idempotency(account, idempotency_key))
        return value.decode() if value is not None else None

    async def _remember(self, account: str, idempotency_key: str | None, result: str) -> None:
        if idempotency_key is not None:
            await self._redis.set(
                keys.sandbox_idempotency(account, idempotency_key), result, ex=_IDEM_TTL
            )

    async def create_ticket(
        self,
        account: str,
        *,
        subject: str,
        requester: str,
        channel: str,
        idempotency_key: str | None = None,
    ) -> str:
        """A new ticket's id; with ``idempotency_key``, the same id for the same key."""
        done = await self._remembered(account, idempotency_key)
        if done is not None:
            return done
        ticket_id = str(await self._redis.incr(keys.sandbox_seq(account)))
        key = keys.sandbox_ticket(account, ticket_id)
        now = time.time()
        meta = json.dumps({"subject": subject, "requester": requester}).encode()
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(
            key,
            mapping={
                "meta": self._vault.seal(meta, key),
                "channel": channel,
                "updated_at": str(now),
            },
        )
        pipe.zadd(keys.sandbox_tickets(account), {ticket_id: now})
        await pipe.execute()
        await self._remember(account, idempotency_key, ticket_id)
        return ticket_id

    async def exists(self, account: str, ticket_id: str) -> bool:
        return bool(await self._redis.exists(keys.sandbox_ticket(account, ticket_id)))

    async def add_message(
        self,
        account: str,
        ticket_id: str,
        *,
        author: str,
        text: str,
        attachments: tuple[str, ...] = (),
        idempotency_key: str | None = None,
    ) -> tuple[str, int]:
        """Append a message; returns its id and the ticket's message count. With
        ``idempotency_key``, a second call with the same key adds nothing."""
        key = keys.sandbox_messages(account, ticket_id)
        done = await self._remembered(account, idempotency_key)
        if done is not None:
            return done, int(await self._typed.llen(key))
        now = time.time()
        count = await self._typed.llen(key)
        msg_id = f"{ticket_id}-{count + 1}"
        body = json.dumps(
            {
                "id": msg_id,
                "author": author,
                "text": text,
                "at": now,
                "attachments": list(attachments),
            }
        ).encode()
        pipe = self._redis.pipeline(transaction=True)
        pipe.rpush(key, self._vault.seal(body, key))
        pipe.hset(keys.sandbox_ticket(account, ticket_id), "updated_at", str(now))
        pipe.zadd(keys.sandbox_tickets(account), {ticket_id: now})
        n, _, _ = await pipe.execute()
        await self._remember(account, idempotency_key, msg_id)
        return msg_id, int(n)

    async def tickets(self, account: str, limit: int = 50) -> list[SandboxTicket]:
        ids = await self._redis.zrevrange(keys.sandbox_tickets(account), 0, limit - 1)
        out = []
        for raw_id in ids:
            t = await self.ticket(account, raw_id.decode())
            if t is not None:
                out.append(t)
        return out

    async def ticket(self, account: str, ticket_id: str) -> SandboxTicket | None:
        key = keys.sandbox_ticket(account, ticket_id)
        h = await self._typed.hgetall(key)
        if not h:
            return None
        meta = json.loads(self._vault.open(h[b"meta"], key))
        mkey = keys.sandbox_messages(account, ticket_id)
        rows = await self._typed.lrange(mkey, 0, -1)
        messages = []
        for row in rows:
            m = json.loads(self._vault.open(row, mkey))
            messages.append(
                SandboxMessage(
                    id=m["id"],
                    author=m["author"],
                    text=m["text"],
                    at=m["at"],
                    attachments=tuple(m.get("attachments", ())),
                )
            )
        return SandboxTicket(
            id=ticket_id,
            account=account,
            subject=meta["subject"],
            requester=meta["requester"],
            channel=h[b"channel"].decode(),
            updated_at=float(h[b"updated_at"]),
            messages=messages,
            sent_ids=frozenset(
                f.decode().removeprefix(_SENT) for f in h if f.startswith(_SENT.encode())
            ),
        )

    async def link_sent(self, account: str, ticket_id: str, platform_ids: Sequence[str]) -> None:
        """Note that a reply on ``ticket_id`` went out as ``platform_ids`` (what the sandbox
        channel API answered, kept in its outbox entries), so the ticket's page lists
        only its own channel calls. Idempotent; a ticket erased meanwhile stays erased."""
        key = keys.sandbox_ticket(account, ticket_id)
        if platform_ids and await self._redis.exists(key):
            await self._typed.hset(key, mapping={f"{_SENT}{i}": "1" for i in platform_ids})

    async def record_sent(self, account: str, entry: dict[str, Any]) -> None:
        """Keep what a sandbox-mode channel was asked to send (newest first, bounded):
        ``channel``, ``method``, ``to``, ``text`` (what the customer would read), ``id``
        (the platform id answered) and optionally ``subject`` and ``detail`` (the wire
        form: headers, a SIP request)."""
        key = keys.sandbox_outbox(account)
        entry = {**entry, "at": time.time()}
        pipe = self._redis.pipeline(transaction=True)
        pipe.lpush(key, self._vault.seal(json.dumps(entry).encode(), key))
        pipe.ltrim(key, 0, _OUTBOX_LIMIT - 1)
        await pipe.execute()

    async def record_mail(self, account: str, msg: EmailMessage) -> None:
        """Keep a mail a sandbox-mode email channel was asked to send: its text and
        Subject to read, its threading headers as the detail."""
        body = msg.get_body(("plain",))
        text = body.get_content() if body is not None else ""
        headers = ("From", "To", "Subject", "Message-ID", "In-Reply-To", "References", "Reply-To")
        entry = {
            "channel": "email",
            "method": "mail",
            "to": str(msg["To"]),
            "subject": str(msg["Subject"] or ""),
            "text": text.rstrip("\n"),
            "id": str(msg["Message-ID"] or "").strip().strip("<>"),
            "detail": "\n".join(f"{h}: {msg[h]}" for h in headers if msg[h]),
        }
        await self.record_sent(account, entry)

    async def sent(self, account: str, limit: int = 50) -> list[dict[str, Any]]:
        key = keys.sandbox_outbox(account)
        rows = await self._typed.lrange(key, 0, limit - 1)
        return [json.loads(self._vault.open(r, key)) for r in rows]

    async def sent_as(self, account: str, platform_ids: Collection[str]) -> list[dict[str, Any]]:
        """The kept calls (newest first, the whole bounded outbox) whose platform id is
        one of ``platform_ids``: one ticket's, with its ``sent_ids``."""
        if not platform_ids:
            return []
        key = keys.sandbox_outbox(account)
        rows = [json.loads(self._vault.open(r, key)) for r in await self._typed.lrange(key, 0, -1)]
        return [e for e in rows if str(e.get("id", "")) in platform_ids]
