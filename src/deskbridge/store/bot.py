"""A conversation's bot session (issue 23): whether the bot or people answer it, and the
turns of the bot's part, kept until a person has them on the ticket.

The session hash holds no message content (state and times); each turn (the customer's
text, the bot's answer, fields collected) is sealed in the log under the id of the
delivery that brought the customer's message, written once (``HSETNX``): a retried
delivery finds its turn as it was decided. Both keys expire ``_TTL_S`` after their last
write, and an erasure deletes them with the conversation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from deskbridge.store import keys
from deskbridge.store.connection import guarded, structures
from deskbridge.store.crypto import Vault

__all__ = ["BotSession", "BotStore"]

_TTL_S = 30 * 86400


@dataclass(frozen=True, slots=True)
class BotSession:
    state: str
    """``bot`` (the bot answers) or ``human`` (handed off: people answer)."""
    started_at: float
    human_until: float = 0.0
    handoff_delivery: str = ""
    """The delivery whose message was handed off (a retry files it with the same turns)."""


@guarded
class BotStore:
    """Redis failures raise ``StoreUnavailable``."""

    def __init__(self, redis: aioredis.Redis, vault: Vault) -> None:
        self._redis = redis
        self._typed = structures(redis)
        self._vault = vault

    async def session(self, account: str, conversation_id: str) -> BotSession | None:
        h = await self._typed.hgetall(keys.bot_session(account, conversation_id))
        if b"state" not in h:
            return None
        return BotSession(
            state=h[b"state"].decode(),
            started_at=float(h.get(b"started_at", b"0")),
            human_until=float(h.get(b"human_until", b"0")),
            handoff_delivery=h.get(b"handoff_delivery", b"").decode(),
        )

    async def begin(self, account: str, conversation_id: str, now: float) -> BotSession:
        """A new bot session (the previous one's turns are dropped)."""
        session_key = keys.bot_session(account, conversation_id)
        pipe = self._redis.pipeline(transaction=True)
        pipe.delete(session_key, keys.bot_log(account, conversation_id))
        pipe.hset(session_key, mapping={"state": "bot", "started_at": str(now)})
        pipe.expire(session_key, _TTL_S)
        await pipe.execute()
        return BotSession(state="bot", started_at=now)

    async def turns(self, account: str, conversation_id: str) -> list[dict[str, Any]]:
        """The session's turns in the order of the customer's messages."""
        key = keys.bot_log(account, conversation_id)
        found = await self._typed.hgetall(key)
        out = [
            json.loads(self._vault.open(blob, f"{key}#{name.decode()}"))
            for name, blob in found.items()
        ]
        return sorted(out, key=lambda t: (t.get("at", ""), t.get("delivery", "")))

    async def record(
        self, account: str, conversation_id: str, delivery_id: str, turn: dict[str, Any]
    ) -> tuple[dict[str, Any], bool]:
        """Keep ``turn`` for ``delivery_id`` unless one is kept already: the kept turn,
        and whether it is this one."""
        key = keys.bot_log(account, conversation_id)
        sealed = self._vault.seal(json.dumps(turn).encode(), f"{key}#{delivery_id}")
        pipe = self._redis.pipeline(transaction=True)
        pipe.hsetnx(key, delivery_id, sealed)  # type: ignore[arg-type]  # redis-py takes bytes
        pipe.hget(key, delivery_id)
        pipe.expire(key, _TTL_S)
        pipe.expire(keys.bot_session(account, conversation_id), _TTL_S)
        new, blob, _, _ = await pipe.execute()
        return json.loads(self._vault.open(blob, f"{key}#{delivery_id}")), bool(new)

    async def hand_off(
        self, account: str, conversation_id: str, delivery_id: str, until: float
    ) -> None:
        """People answer from now until ``until`` (moved on by ``keep_human``)."""
        key = keys.bot_session(account, conversation_id)
        mapping = {"state": "human", "human_until": str(until), "handoff_delivery": delivery_id}
        pipe = self._redis.pipeline(transaction=True)
        pipe.hsetnx(key, "started_at", str(until))
        pipe.hset(key, mapping=mapping)
        pipe.expire(key, _TTL_S)
        await pipe.execute()

    async def keep_human(self, account: str, conversation_id: str, until: float) -> None:
        """People go on answering until ``until`` (a customer message or an agent reply
        while handed off). Starts a human session where there is none."""
        key = keys.bot_session(account, conversation_id)
        pipe = self._redis.pipeline(transaction=True)
        pipe.hsetnx(key, "started_at", str(until))
        pipe.hset(key, mapping={"state": "human", "human_until": str(until)})
        pipe.expire(key, _TTL_S)
        await pipe.execute()
