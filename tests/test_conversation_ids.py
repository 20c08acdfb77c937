"""Conversation ids: a keyed digest, computed once per chat and process (the ack path)."""

from __future__ import annotations

import os

import pytest
import redis.asyncio as aioredis

from deskbridge.schemas import Channel
from deskbridge.store import conversations
from deskbridge.store.conversations import ConversationStore
from deskbridge.store.crypto import Vault


def _store() -> ConversationStore:
    vault = Vault({"k": os.urandom(32)}, "k", os.urandom(32))
    return ConversationStore(aioredis.Redis(), vault)


def test_ids_are_the_keyed_digest_and_stay_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    store = _store()
    vault = store._vault
    first = store.conversation_id("acme", Channel.TELEGRAM, "42")
    assert first == vault.digest("conversation", "acme", "telegram", "42")
    assert store.conversation_id("acme", Channel.TELEGRAM, "42") == first
    # each part of the key counts
    assert store.conversation_id("acme", Channel.LINE, "42") != first
    assert store.conversation_id("other", Channel.TELEGRAM, "42") != first
    assert store.conversation_id("acme", Channel.TELEGRAM, "43") != first
    # bounded: past the limit the cache starts again, and the ids do not change
    monkeypatch.setattr(conversations, "_IDS_CACHED", 3)
    ids = [store.conversation_id("acme", Channel.TELEGRAM, str(n)) for n in range(10)]
    assert len(store._ids) <= 3
    assert ids == [vault.digest("conversation", "acme", "telegram", str(n)) for n in range(10)]
    # another process with the same lookup key finds the same ids
    again = ConversationStore(aioredis.Redis(), vault)
    assert again.conversation_id("acme", Channel.TELEGRAM, "42") == first
