"""The website chat widget's conversations: each visitor's history (both sides, sealed,
numbered), dedup of resent messages, the receipts of the visitor's messages (delivered,
read) and whether an agent is typing, the visitor's uploaded files (sealed), the wake-up
every gateway process listens to, and the rate windows.

A visitor is named in keys by the vault's keyed digest of their id (a verified visitor's
id holds the site's user id or email). Posting an entry is one script (``WEBCHAT_POST``):
the number, the entry, the client id's mark and the ``PUBLISH`` happen together, so a
socket that reads the history after a notification never misses an entry. Receipts are
kept as long as the history; typing lasts a few seconds unless renewed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import redis.asyncio as aioredis

from deskbridge.schemas import Upload
from deskbridge.store import keys
from deskbridge.store.connection import guarded, honour_cancel, structures
from deskbridge.store.crypto import SealBroken, Vault
from deskbridge.store.scripts import (
    WEBCHAT_DELIVERED,
    WEBCHAT_KEEP_FILES,
    WEBCHAT_POST,
    WEBCHAT_READ,
)

__all__ = ["Entry", "Receipt", "View", "WebchatStore", "WidgetFile", "history_aad"]

_CAP = 500
"""Entries kept per visitor (the oldest go first)."""
_PAGE = 200
_INDEX_TTL = 366 * 86400
"""The file index's life: past the longest ``history_days``; refreshed by each upload."""


def history_aad(account: str, visitor_key: str) -> str:
    """What a history entry is sealed with (key rotation re-seals entries with it)."""
    return f"webchat:{account}:{visitor_key}"


@dataclass(frozen=True, slots=True)
class Entry:
    """One line of a visitor's conversation, numbered by the server."""

    seq: int
    body: dict[str, Any]
    until: float | None = None
    """When the history it was read from expires (Unix time; None: not known)."""


Receipt = Literal["delivered", "read"]
"""How far a visitor's message got beyond being stored: filed at the desk, read by an agent."""


@dataclass(frozen=True, slots=True)
class View:
    """What a visitor's socket shows, read in one round trip: the entries above a number,
    the receipts of the visitor's messages (by their ids), and for how many more seconds
    an agent is typing (0: not typing)."""

    entries: list[Entry]
    receipts: dict[str, Receipt]
    typing_s: float
    unreadable: dict[int, str] = field(default_factory=dict)
    """Entries read that did not open (sealed with a key no longer held, damaged, not an
    object), by number: why, never what. Skipped, so one never stalls the rest."""

    @property
    def last(self) -> int:
        """The highest number read, readable or not (0: none)."""
        return max(max((e.seq for e in self.entries), default=0), max(self.unreadable, default=0))

    @property
    def full(self) -> bool:
        """A whole page was read: more may be waiting above ``last``."""
        return len(self.entries) + len(self.unreadable) >= _PAGE


@dataclass(frozen=True, slots=True)
class WidgetFile:
    """What is known of a visitor's uploaded file besides its bytes."""

    id: str
    name: str
    mime_type: str
    size: int
    sha256: str


@guarded
class WebchatStore:
    """Redis failures raise ``StoreUnavailable``."""

    def __init__(self, redis: aioredis.Redis, vault: Vault) -> None:
        self._redis = redis
        self._typed = structures(redis)
        self._vault = vault
        self._post = redis.register_script(WEBCHAT_POST)
        self._keep_files = redis.register_script(WEBCHAT_KEEP_FILES)
        self._delivered = redis.register_script(WEBCHAT_DELIVERED)
        self._read = redis.register_script(WEBCHAT_READ)

    def visitor_key(self, account: str, visitor: str) -> str:
        """The digest that names ``visitor``'s keys and notifications."""
        return self._vault.digest("webchat", account, visitor)

    async def post(
        self,
        account: str,
        visitor: str,
        body: dict[str, Any],
        *,
        client_id: str,
        ttl_s: int,
        read: bool = False,
    ) -> tuple[int, bool]:
        """Append ``body`` to the visitor's history and wake the process holding their
        socket. Idempotent per ``client_id`` (when given): returns (sequence number, new).
        ``read``: an agent wrote it, so the visitor's messages at the desk are read and
        the agent no longer types (in the same step)."""
        v = self.visitor_key(account, visitor)
        aad = history_aad(account, v)
        blob = self._vault.seal(json.dumps(body, separators=(",", ":")).encode(), aad)
        seq, new = await self._post(
            keys=[
                keys.webchat_seq(account, v),
                keys.webchat_history(account, v),
                keys.webchat_ids(account, v),
                keys.webchat_receipts(account, v),
                keys.webchat_typing(account, v),
                keys.webchat_files(account, v),
            ],
            args=[
                client_id,
                blob,
                ttl_s,
                _CAP,
                keys.WEBCHAT_NOTIFY,
                f"{account} {v}",
                "1" if read else "0",
                keys.webchat_file(account, v, ""),
            ],
        )
        return int(seq), bool(new)

    async def history(self, account: str, visitor: str, after: int = 0) -> list[Entry]:
        """The visitor's entries numbered above ``after``, oldest first (at most 200), each
        with the history's expiry (links served with an entry must not outlive it)."""
        return (await self.view(account, visitor, after)).entries

    async def view(self, account: str, visitor: str, after: int = 0) -> View:
        """The visitor's entries above ``after`` (at most 200, each with the history's
        expiry: links served with an entry must not outlive it), their messages' receipts
        and the agent's typing, in one round trip."""
        v = self.visitor_key(account, visitor)
        history = keys.webchat_history(account, v)
        pipe = self._redis.pipeline(transaction=False)
        pipe.zrangebyscore(history, f"({after}", "+inf", 0, _PAGE, withscores=True)
        pipe.pttl(history)
        pipe.hgetall(keys.webchat_receipts(account, v))
        pipe.pttl(keys.webchat_typing(account, v))
        rows, history_ms, receipts, typing_ms = await pipe.execute()
        until = time.time() + history_ms / 1000 if history_ms > 0 else None
        aad = history_aad(account, v)
        entries: list[Entry] = []
        unreadable: dict[int, str] = {}
        for blob, score in rows:
            try:
                entries.append(Entry(int(score), self._body(blob, aad), until))
            except SealBroken as exc:
                unreadable[int(score)] = str(exc)  # the key id at most, never content
            except ValueError:
                unreadable[int(score)] = "not a JSON object"
        return View(
            entries=entries,
            receipts={
                k.decode(): "read" if s == b"read" else "delivered" for k, s in receipts.items()
            },
            typing_s=max(0, int(typing_ms)) / 1000,
            unreadable=unreadable,
        )

    def _body(self, blob: bytes, aad: str) -> dict[str, Any]:
        """An entry's body; ``SealBroken`` or ``ValueError`` when it is not one."""
        body = json.loads(self._vault.open(blob, aad))
        if not isinstance(body, dict):
            raise ValueError("not a JSON object")
        return body

    async def delivered(
        self, account: str, visitor: str, client_ids: Sequence[str], *, ttl_s: int
    ) -> int:
        """The visitor's messages ``client_ids`` are filed at the desk (one already read
        stays read); the socket is woken when any changed. Returns how many changed."""
        if not client_ids:
            return 0
        v = self.visitor_key(account, visitor)
        changed = await self._delivered(
            keys=[keys.webchat_receipts(account, v)],
            args=[ttl_s, keys.WEBCHAT_NOTIFY, f"{account} {v}", *client_ids],
        )
        return int(changed)

    async def read(self, account: str, visitor: str, *, ttl_s: int) -> int:
        """An agent read the visitor's conversation: every message at the desk is read
        (one still on its way stays as it is). Returns how many changed (the socket is
        woken when any did)."""
        v = self.visitor_key(account, visitor)
        changed = await self._read(
            keys=[keys.webchat_receipts(account, v)],
            args=[ttl_s, keys.WEBCHAT_NOTIFY, f"{account} {v}"],
        )
        return int(changed)

    async def typing(self, account: str, visitor: str, *, seconds: float) -> None:
        """An agent is typing to the visitor: for ``seconds`` unless said again."""
        v = self.visitor_key(account, visitor)
        pipe = self._redis.pipeline(transaction=True)
        pipe.set(keys.webchat_typing(account, v), b"1", px=max(1, int(seconds * 1000)))
        pipe.publish(keys.WEBCHAT_NOTIFY, f"{account} {v} 0")
        await pipe.execute()

    async def put_file(
        self, account: str, visitor_key: str, file: WidgetFile, data: bytes, *, ttl_s: int
    ) -> None:
        """Keep an uploaded file of the visitor ``visitor_key`` for ``ttl_s`` seconds (until
        a message names it: ``keep_files``)."""
        key = keys.webchat_file(account, visitor_key, file.id)
        meta = json.dumps(dataclasses.asdict(file), separators=(",", ":")).encode()
        index = keys.webchat_files(account, visitor_key)
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(
            key,
            mapping={
                "meta": self._vault.seal(meta, f"{key}#meta"),
                "data": self._vault.seal(data, f"{key}#data"),
            },
        )
        pipe.expire(key, ttl_s)
        pipe.sadd(index, file.id)
        # the index outlives every file it names (erasure reads it)
        pipe.expire(index, _INDEX_TTL)
        await pipe.execute()

    async def files(self, account: str, visitor_key: str, ids: Sequence[str]) -> list[WidgetFile]:
        """The visitor's files of ``ids`` that are still kept, in the order of ``ids``."""
        pipe = self._redis.pipeline(transaction=False)
        names = [keys.webchat_file(account, visitor_key, i) for i in ids]
        for name in names:
            pipe.hget(name, "meta")
        found = []
        for name, blob in zip(names, await pipe.execute(), strict=True):
            if blob is not None:
                meta = json.loads(self._vault.open(blob, f"{name}#meta"))
                found.append(WidgetFile(**meta))
        return found

    async def keep_files(
        self, account: str, visitor_key: str, ids: Sequence[str], *, ttl_s: int
    ) -> bool:
        """Keep the visitor's files of ``ids`` as long as their history: ``ttl_s`` seconds
        from now, and again each time a post renews the history. False, changing
        nothing, when one is gone."""
        names = [keys.webchat_file(account, visitor_key, i) for i in ids]
        return bool(await self._keep_files(keys=names, args=[ttl_s]))

    async def read_file(
        self, account: str, visitor_key: str, file_id: str
    ) -> tuple[WidgetFile, bytes] | None:
        """A visitor's file and its bytes, None when it is not (or no longer) kept."""
        key = keys.webchat_file(account, visitor_key, file_id)
        fields = await self._typed.hgetall(key)
        meta, data = fields.get(b"meta"), fields.get(b"data")
        if meta is None or data is None:
            return None
        try:
            file = WidgetFile(**json.loads(self._vault.open(meta, f"{key}#meta")))
            return file, self._vault.open(data, f"{key}#data")
        except SealBroken:
            return None

    async def upload(self, account: str, ref: str) -> Upload | None:
        """The file of an ``Attachment.ref`` (``<visitor key>/<file id>``) as bytes to
        file at the desk; None when it is no longer kept."""
        visitor_key, _, file_id = ref.partition("/")
        if not visitor_key or not file_id or "/" in file_id or ":" in ref:
            return None
        found = await self.read_file(account, visitor_key, file_id)
        if found is None:
            return None
        file, data = found
        return Upload(filename=file.name, mime_type=file.mime_type, data=data)

    async def allow(self, account: str, scope: str, who: str, limit: int) -> bool:
        """Counts one more message or connection of ``who`` (a visitor or an IP address)
        in this minute's window; False when it exceeds ``limit``."""
        window = int(time.time() // 60)
        key = keys.webchat_rate(account, scope, self._vault.digest("rate", who), window)
        pipe = self._redis.pipeline(transaction=True)
        pipe.incr(key)
        pipe.expire(key, 120)
        count, _ = await pipe.execute()
        return int(count) <= limit

    async def listen(
        self, wake: Callable[[str, str, int], None], ready: asyncio.Event | None = None
    ) -> None:
        """Calls ``wake(account, visitor digest, seq)`` for every posted entry (``seq`` 0
        for a receipt or the agent's typing), until cancelled; ``ready`` is set once
        subscribed. Raises ``StoreUnavailable`` when the subscription is lost (the caller
        subscribes again and re-reads its visitors)."""
        pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(keys.WEBCHAT_NOTIFY)
            if ready is not None:
                ready.set()
            while True:
                honour_cancel()
                msg = await pubsub.get_message(timeout=5.0)
                if msg is None or msg.get("type") != "message":
                    continue
                account, v, seq = bytes(msg["data"]).decode().split(" ")
                wake(account, v, int(seq))
        finally:
            await pubsub.aclose()  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
