"""The store against a real Redis: dedup, one-round-trip intake, sealing, arq's job format."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import pytest
from arq.jobs import deserialize_job

from deskbridge.schemas import Channel, Direction, Message, RawRequest, Sender
from deskbridge.store import IntakeEvent, Vault, keys
from deskbridge.store.crypto import SealBroken, decode_key, generate_key
from deskbridge.store.raw import read_raw_record

from .conftest import TEST_KEY


def message(n: int, thread: str = "42") -> Message:
    return Message(
        account="acme",
        channel=Channel.TELEGRAM,
        dedup_key=str(1000 + n),
        thread=thread,
        occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
        external_id=str(n),
        sender=Sender(external_id=thread, display_name="Ann"),
        text=f"message {n}",
    )


def intake_event(rt, msg: Message) -> IntakeEvent:
    return IntakeEvent(
        dedup_key=msg.dedup_key,
        conversation_id=rt.conversations.conversation_id("acme", msg.channel, msg.thread),
        event=msg,
    )


async def accept(rt, msgs: list[Message], body: bytes = b"{}") -> list[bool]:
    return await rt.intake.accept(
        account="acme",
        source="telegram",
        direction=Direction.INBOUND,
        channel="telegram",
        desk="sandbox",
        req=RawRequest(method="POST", path="/webhooks/telegram/acme", body=body),
        events=[intake_event(rt, m) for m in msgs],
    )


def test_vault_round_trip_and_binding() -> None:
    vault = Vault.from_secret(decode_key(TEST_KEY))
    blob = vault.seal(b"secret body", "db:{acme}:evt:1")
    assert b"secret body" not in blob
    assert vault.open(blob, "db:{acme}:evt:1") == b"secret body"
    with pytest.raises(SealBroken):
        vault.open(blob, "db:{acme}:evt:2")  # moved under another key
    tampered = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(SealBroken):
        vault.open(tampered, "db:{acme}:evt:1")
    other = Vault.from_secret(decode_key(generate_key()))
    with pytest.raises(SealBroken):
        other.open(blob, "db:{acme}:evt:1")
    assert vault.digest("a", "b") == vault.digest("a", "b") != vault.digest("ab")


async def test_intake_dedups_per_account_and_key(make_runtime, redis) -> None:
    rt = make_runtime()
    assert await accept(rt, [message(1), message(2)]) == [True, True]
    assert await accept(rt, [message(1), message(3)]) == [False, True]
    assert await redis.zcard(keys.pending("acme")) == 3
    mark = keys.dedup("acme", "telegram", rt.vault.digest("dedup", "telegram", "1001"))
    ttl = await redis.ttl(mark)
    assert 7 * 86400 - 5 <= ttl <= 7 * 86400
    # the key carries a keyed digest of the provider's id, never the id (compared by
    # whole segment: a random record id may contain the same digits)
    assert not [k for k in await redis.keys("db:*") if b"1001" in k.split(b":")]
    assert [k for k in await redis.keys("db:*") if b":dedup:" in k] != []


async def test_intake_stores_sealed_event_delivery_and_arq_job(make_runtime, redis) -> None:
    rt = make_runtime()
    await accept(rt, [message(1)], body=b'{"secret":"customer words"}')
    [delivery_id] = [d.decode() for d in await redis.zrange(keys.pending("acme"), 0, -1)]
    d = await rt.deliveries.get("acme", delivery_id)
    assert d is not None and d.state.value == "pending" and d.direction is Direction.INBOUND
    # nothing readable at rest
    for key in await redis.keys("db:*"):
        if await redis.type(key) == b"string":
            assert b"customer words" not in await redis.get(key)
            assert b"message 1" not in await redis.get(key)
    record = await rt.deliveries.event("acme", d.event_id)
    assert record["event"]["text"] == "message 1"
    assert record["delivery_id"] == delivery_id
    # the job is in arq's own format, readable by arq's deserializer
    raw_job = await redis.get(keys.arq_job(delivery_id))
    job = deserialize_job(raw_job, deserializer=json.loads)
    assert job.function == "deliver_to_desk"
    assert list(job.args) == ["acme", delivery_id]
    assert await redis.zscore(keys.ARQ_QUEUE, delivery_id) is not None
    assert await redis.pttl(keys.arq_job(delivery_id)) > 86400 * 1000


async def test_only_the_lane_head_gets_a_job(make_runtime, redis) -> None:
    rt = make_runtime()
    await accept(rt, [message(1), message(2), message(3, thread="other")])
    assert await redis.zcard(keys.ARQ_QUEUE) == 2  # head of each conversation
    conv = rt.conversations.conversation_id("acme", Channel.TELEGRAM, "42")
    assert await redis.llen(keys.lane("acme", "inbound", conv)) == 2


async def test_concurrent_intakes_share_round_trips(make_runtime) -> None:
    rt = make_runtime()
    results = await asyncio.gather(*(accept(rt, [message(n)]) for n in range(200)))
    assert all(r == [True] for r in results)
    c = rt.intake.coalescer
    assert c.calls == 200
    assert c.flushes < 20, f"{c.flushes} pipelines for 200 concurrent requests"


async def test_duplicate_within_one_batch_is_stored_once(make_runtime, redis) -> None:
    rt = make_runtime()
    results = await asyncio.gather(*(accept(rt, [message(7)]) for _ in range(20)))
    assert sorted(r[0] for r in results).count(True) == 1
    assert await redis.zcard(keys.pending("acme")) == 1


async def test_parse_failed_is_kept_once_as_dead_letter(make_runtime, redis) -> None:
    rt = make_runtime()
    req = RawRequest(method="POST", path="/webhooks/telegram/acme", body=b'{"update_id": "x"}')
    kw = dict(
        account="acme",
        source="telegram",
        direction=Direction.INBOUND,
        channel="telegram",
        desk="sandbox",
        req=req,
        error="bad update",
        dedup_key="body-1",
    )
    assert await rt.intake.accept_parse_failed(**kw) is True
    assert await rt.intake.accept_parse_failed(**kw) is False
    [dead] = [d.decode() for d in await redis.zrange(keys.dead("acme"), 0, -1)]
    d = await rt.deliveries.get("acme", dead)
    assert d.state.value == "dead" and d.reason == "parse_failed"
    raw = await redis.get(keys.raw("acme", dead))
    meta, body = read_raw_record(rt.vault.open(raw, keys.raw("acme", dead)))
    assert meta["path"] == "/webhooks/telegram/acme"
    assert body == b'{"update_id": "x"}'


async def test_secret_headers_are_not_stored(make_runtime, redis) -> None:
    from deskbridge.adapters.telegram import TelegramAdapter

    rt = make_runtime()
    req = RawRequest(
        method="POST",
        path="/p",
        body=b"{}",
        headers={
            "x-telegram-bot-api-secret-token": "s3cret",
            "authorization": "Basic dTpw",
            "cookie": "s=1",
            "content-type": "application/json",
        },
    )
    # the store drops the generic credentials; the ingest flow drops the channel's own
    await rt.intake.accept(
        account="acme",
        source="telegram",
        direction=Direction.INBOUND,
        channel="telegram",
        desk="sandbox",
        req=req.scrubbed(TelegramAdapter.secret_headers, TelegramAdapter.secret_query),
        events=[intake_event(rt, message(1))],
    )
    [raw_key] = await redis.keys("db:{acme}:raw:*")
    meta, body = read_raw_record(rt.vault.open(await redis.get(raw_key), raw_key.decode()))
    assert meta["headers"] == {"content-type": "application/json"}
    assert body == b"{}"


async def test_store_unavailable_when_redis_is_down(make_runtime) -> None:
    from deskbridge.errors import StoreUnavailable
    from deskbridge.store import Intake, connect

    rt = make_runtime()
    dead = connect("redis://127.0.0.1:1/0")
    intake = Intake(dead, rt.vault, dedup_ttl=60, raw_ttl=60, job_expiry_ms=1000)
    with pytest.raises(StoreUnavailable):
        await intake.accept(
            account="acme",
            source="telegram",
            direction=Direction.INBOUND,
            channel="telegram",
            desk="sandbox",
            req=None,
            events=[intake_event(rt, message(1))],
        )
    await dead.aclose()


async def test_wait_for_replicas_refuses_to_ack_unreplicated_writes(make_runtime) -> None:
    from deskbridge.errors import StoreUnavailable

    rt = make_runtime(wait_replicas=1, wait_timeout_ms=50)  # the test Redis has no replica
    with pytest.raises(StoreUnavailable, match="replica"):
        await accept(rt, [message(1)])


async def test_intake_survives_a_script_cache_flush(make_runtime, redis) -> None:
    rt = make_runtime()
    assert await accept(rt, [message(1)]) == [True]
    await redis.script_flush()  # what a Redis restart does to the script cache
    assert await accept(rt, [message(2)]) == [True]
    assert await accept(rt, [message(2)]) == [False]


async def test_an_idle_intake_is_one_round_trip(make_runtime, redis) -> None:
    async def calls() -> dict[str, int]:
        stats = await redis.info("commandstats")
        return {
            k: v["calls"] for k, v in stats.items() if k in ("cmdstat_evalsha", "cmdstat_script")
        }

    rt = make_runtime()
    await accept(rt, [message(1)])  # scripts loaded
    before = await calls()
    await accept(rt, [message(2)])
    after = await calls()
    # one EVALSHA; no SCRIPT EXISTS before it (redis-py's pipelined Script objects add one)
    assert after.get("cmdstat_evalsha", 0) - before.get("cmdstat_evalsha", 0) == 1
    assert after.get("cmdstat_script", 0) == before.get("cmdstat_script", 0)


async def test_a_deep_data_directory_gets_its_redis_socket_in_a_private_temp_folder(
    tmp_path,
) -> None:
    """A unix socket path holds at most 107 bytes: `deskbridge run` from a deep folder
    must still start its private Redis (it once refused to, naming the path)."""
    import os
    import stat

    import redis.asyncio as aioredis

    from deskbridge.store import PrivateRedis

    deep = tmp_path / ("d" * 60) / ("e" * 60)
    private = PrivateRedis(deep)
    assert private.socket.parent != private.dir and len(str(private.socket)) <= 100
    await private.start()
    try:
        client = aioredis.Redis(unix_socket_path=str(private.socket))
        assert await client.ping()
        await client.aclose()
        folder = private.socket.parent.lstat()
        assert stat.S_IMODE(folder.st_mode) == 0o700 and folder.st_uid == os.getuid()
        assert (private.dir / "appendonlydir").exists()  # the data stays in the data dir
    finally:
        await private.stop()
        private.socket.unlink(missing_ok=True)
        private.socket.parent.rmdir()


async def test_a_shared_socket_folder_is_refused(tmp_path) -> None:
    from deskbridge.errors import ConfigError
    from deskbridge.store import PrivateRedis

    private = PrivateRedis(tmp_path / ("x" * 60) / ("y" * 60))
    private.socket.parent.mkdir(mode=0o755)
    private.socket.parent.chmod(0o755)
    try:
        with pytest.raises(ConfigError, match="not a private folder"):
            await private.start()
    finally:
        private.socket.parent.rmdir()


async def test_claim_reads_the_event_only_with_the_lane_lock(make_runtime, redis) -> None:
    """The worker's claim is one round trip: the record, the lane's head, the lock and,
    once locked, the event record the attempt files (as ``event`` reads it)."""
    rt = make_runtime()
    await accept(rt, [message(1), message(2)])
    first, second = (d.decode() for d in await redis.zrange(keys.pending("acme"), 0, -1))
    d, head, locked, record = await rt.deliveries.claim(
        "acme", first, Direction.INBOUND, "token-1", 60_000
    )
    assert d is not None and head == first and locked
    assert record == await rt.deliveries.event("acme", d.event_id)
    assert record is not None and record["event"]["text"] == "message 1"
    # the lane is locked now: a second claim of the head gets no lock and no event
    d2, _, locked2, record2 = await rt.deliveries.claim(
        "acme", first, Direction.INBOUND, "token-2", 60_000
    )
    assert d2 is not None and not locked2 and record2 is None
    # not the head: no lock, no event
    d3, head3, locked3, record3 = await rt.deliveries.claim(
        "acme", second, Direction.INBOUND, "token-3", 60_000
    )
    assert d3 is not None and head3 == first and not locked3 and record3 is None


async def test_ensure_seen_reads_replies_in_the_lane_and_the_desk_user(make_runtime, redis) -> None:
    rt = make_runtime()
    conv, replies, user = await rt.conversations.ensure_seen(
        "acme", "c1", Channel.TELEGRAM, "42", "contact-1", inbound_at=1.5, desk="zendesk"
    )
    assert conv.last_inbound_at == 1.5 and conv.contact_id == "contact-1"
    assert not replies and user is None
    await redis.rpush(keys.lane("acme", "outbound", "c1"), "d1")
    await rt.conversations.set_desk_user("acme", "zendesk", "contact-1", "u1|fp")
    conv, replies, user = await rt.conversations.ensure_seen(
        "acme", "c1", Channel.TELEGRAM, "42", "contact-1", inbound_at=2.5, desk="zendesk"
    )
    assert replies and conv.contact_id == "contact-1" and conv.last_inbound_at == 2.5
    assert user == await rt.conversations.desk_user("acme", "zendesk", "contact-1") == "u1|fp"
    # the first contact stays the conversation's; no desk asked, no desk user read
    conv, _, user = await rt.conversations.ensure_seen(
        "acme", "c1", Channel.TELEGRAM, "42", "contact-2", inbound_at=3.5
    )
    assert conv.contact_id == "contact-1" and user is None
