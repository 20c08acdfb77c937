"""The deferred parse (issue 19, docs/benchmarks.md): a Telegram update of the common shape
is acknowledged after storing its dedup mark, its sealed raw request, its delivery and
its job, without parsing it; the worker parses it, writes the event record the intake
would have written, and files it. What the full parse decides instead (nothing to file,
an unreadable body) ends the delivery as the gateway would have ended the item."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from deskbridge.adapters.base import Parsed, Peeked
from deskbridge.adapters.telegram import sample_update
from deskbridge.errors import ParseFailed, PayloadInvalid
from deskbridge.flows import Runtime, deferred
from deskbridge.flows.reingest import reingest_one
from deskbridge.gateway import create_app
from deskbridge.schemas import Channel, DeliveryState, Direction, RawRequest
from deskbridge.store import Unparsed, keys, new_id
from deskbridge.store.intake import IgnoredItem
from deskbridge.store.listing import RawFilter
from deskbridge.store.packing import unpack

from . import test_telegram
from .conftest import TG_SECRET, drain, redis_of
from .test_admin_api import SECRET, auth, token

ROOT = Path(__file__).parent
URL = "/webhooks/telegram/acme"
HEADERS = {"X-Telegram-Bot-Api-Secret-Token": TG_SECRET, "Content-Type": "application/json"}


def _bodies() -> list[Path]:
    found = sorted((ROOT / "fixtures" / "telegram").glob("*.json"))
    found += sorted((ROOT / "corpus" / "telegram").glob("*.json"))
    return [p for p in found if not p.name.endswith("expected.json")]


def _receiver() -> Any:
    from deskbridge.adapters.telegram.receiver import TelegramReceiver

    return TelegramReceiver(test_telegram.offline())


def _request(body: bytes) -> RawRequest:
    return RawRequest(method="POST", path=URL, query={}, headers={}, body=body)


def _full(receiver: Any, body: bytes) -> Parsed | None:
    try:
        parsed: Parsed = receiver.parse(_request(body))
    except (ParseFailed, PayloadInvalid):
        return None
    return parsed


# -- peek and the full parse agree ------------------------------------------------------------


@pytest.mark.parametrize("path", _bodies(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_peek_agrees_with_the_full_parse(path: Path) -> None:
    receiver = _receiver()
    body = path.read_bytes()
    peeked = receiver.peek(_request(body))
    parsed = _full(receiver, body)
    if peeked is None or parsed is None or not parsed.events:
        return  # the full path runs (None), or the worker ends the item (see below)
    [event] = parsed.events
    assert (event.account, event.dedup_key, event.thread) == (
        peeked.account,
        peeked.dedup_key,
        peeked.thread,
    )


def test_peek_takes_the_common_shapes_of_the_fixtures() -> None:
    """Not a vacuous agreement: most filed updates of the fixtures are peeked, and every
    peeked one that the full parse reads is filed (none is ignored at the worker)."""
    receiver = _receiver()
    peeked = filed = 0
    for path in _bodies():
        body = path.read_bytes()
        parsed = _full(receiver, body)
        got = receiver.peek(_request(body))
        if parsed is not None and parsed.events:
            filed += 1
            peeked += got is not None
        if got is not None and parsed is not None:
            assert parsed.events, path.name
    assert filed >= 40 and peeked >= 0.75 * filed


def _update(**changes: Any) -> bytes:
    doc = json.loads(sample_update("hi", update_id=7, chat_id=-100, user_id=42))
    for path, value in changes.items():
        node = doc
        *parents, leaf = path.split("__")
        for name in parents:
            node = node[name]
        if value is _DROP:
            node.pop(leaf)
        else:
            node[leaf] = value
    return json.dumps(doc).encode()


_DROP = object()


def test_peek_reads_ids_and_thread_and_leaves_anything_unusual_to_the_parse() -> None:
    receiver = _receiver()
    assert receiver.peek(_request(_update())) == Peeked("acme", "7", "-100")
    edited = json.loads(_update())
    edited["edited_message"] = edited.pop("message")
    assert receiver.peek(_request(json.dumps(edited).encode())) == Peeked("acme", "7", "-100")
    both = json.loads(_update())
    both["edited_message"] = both["message"]
    unusual = [
        json.dumps(both).encode(),
        _update(update_id=True),
        _update(update_id="7"),
        _update(message__chat__id=1.5),
        _update(message__chat__id=True),
        _update(message__chat__type=_DROP),
        _update(message__from=_DROP),
        _update(message__from__is_bot=True),
        _update(message__from__is_bot="no"),
        _update(message__from__id="42"),
        _update(message__sender_chat={"id": -1, "type": "channel"}),
        _update(message__migrate_to_chat_id=-1002),
        _update(message__new_chat_title="x"),
        _update(message=None),
        b'{"update_id": 1, "callback_query": {"id": "1"}}',
        b"[1, 2]",
        b"not json",
    ]
    for body in unusual:
        assert receiver.peek(_request(body)) is None, body


# -- the gateway stores, the worker parses ----------------------------------------------------


async def _post(client: Any, body: bytes) -> None:
    resp = await client.post(URL, data=body, headers=HEADERS)
    assert resp.status == 200, await resp.text()


def _body(text: str, update_id: int, user: int = 4242) -> bytes:
    return sample_update(text, update_id=update_id, chat_id=user, user_id=user, first_name="Ana")


def _redis(rt: Runtime) -> Any:
    return redis_of(rt)


async def _only_delivery(rt: Runtime) -> str:
    [ident] = [
        k.decode().rsplit(":", 1)[1]
        async for k in _redis(rt).scan_iter(match="db:{acme}:dlv:*")
        if k.count(b":") == 3
    ]
    return ident


async def _texts(rt: Runtime) -> list[str]:
    return [m.text for t in await rt.sandbox.tickets("acme") for m in t.messages]


async def test_the_ack_stores_no_event_and_the_worker_writes_the_intakes_record(
    make_runtime: Any, aiohttp_client: Any
) -> None:
    rt = make_runtime()
    redis: Any = redis_of(rt)
    client = await aiohttp_client(create_app(rt, role="serve"))
    body = _body("where is my order?", 31)
    await _post(client, body)
    ident = await _only_delivery(rt)
    assert not [k async for k in redis.scan_iter(match="db:{acme}:evt:*")]
    h = await redis.hgetall(keys.delivery("acme", ident))
    assert h[b"state"] == b"pending" and h[b"raw_id"] == h[b"event_id"] == ident.encode()
    assert h[b"item"] == rt.vault.digest("dedup", "telegram", "31").encode()
    assert await redis.ttl(keys.raw("acme", ident)) == -1  # the event's only copy
    assert await redis.zscore(keys.raws("acme", "telegram"), ident) is not None

    await drain(rt)
    assert await _texts(rt) == ["where is my order?"]
    d = await rt.deliveries.get("acme", ident)
    assert d is not None and d.state is DeliveryState.DELIVERED
    record = await rt.deliveries.event("acme", ident)
    [expected] = _receiver().parse(_request(body)).events
    assert record["event"] == expected.model_dump(mode="json")
    assert record["raw_id"] == record["event_id"] == record["delivery_id"] == ident
    raw = await redis.get(keys.raw("acme", ident))
    meta = json.loads(unpack(rt.vault.open(raw, keys.raw("acme", ident))).partition(b"\n")[0])
    assert record["received_at"] == meta["received_at"]
    retention = rt.retention("acme").raw_s
    assert retention - 60 < await redis.ttl(keys.raw("acme", ident)) <= retention


async def test_a_redelivered_update_is_a_duplicate_at_the_ack(
    make_runtime: Any, aiohttp_client: Any
) -> None:
    rt = make_runtime()
    client = await aiohttp_client(create_app(rt, role="serve"))
    for _ in range(2):
        await _post(client, _body("once", 5))
    await _only_delivery(rt)
    ignored = await rt.listing.ignored(["acme"], RawFilter(), limit=10)
    assert [(i.reason, i.provider_id) for i in ignored.items] == [("duplicate", "5")]
    await drain(rt)
    await _post(client, _body("once", 5))
    await drain(rt)
    assert await _texts(rt) == ["once"]


@dataclass
class _Swapped:
    """The account's receiver as a later release might parse: ``parse`` answers with
    ``answer`` (a ``Parsed`` or an exception to raise); ``peek`` is the real one."""

    inner: Any
    answer: Parsed | Exception

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def parse(self, req: RawRequest) -> Parsed:
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def _swap(rt: Runtime, answer: Parsed | Exception) -> None:
    key = (Channel.TELEGRAM, "acme")
    rt.receivers[key] = _Swapped(rt.receivers[key], answer)


async def test_an_item_the_full_parse_ignores_is_recorded_and_skipped(
    make_runtime: Any, aiohttp_client: Any
) -> None:
    gateway = make_runtime()
    client = await aiohttp_client(create_app(gateway, role="serve"))
    await _post(client, _body("read later", 8))
    await _post(client, _body("and this one", 9))
    lane = await gateway.deliveries.lane_ids("acme", Direction.INBOUND, _conv(gateway), 5)
    first = min(lane)
    worker = make_runtime()
    _swap(worker, Parsed(events=[], ignored=("not_a_message",)))
    await drain(worker)
    d = await worker.deliveries.get("acme", first)
    assert d is not None and d.state is DeliveryState.SKIPPED
    [attempt] = await worker.deliveries.attempts("acme", first)
    assert attempt.outcome == "skipped" and attempt.error == "ignored: not_a_message"
    ignored = await worker.listing.ignored(["acme"], RawFilter(), limit=10)
    assert sorted((i.reason, i.raw_id) for i in ignored.items)[0] == ("not_a_message", first)
    # the record is the delivery's: a retry (a ``complete`` that failed) rewrites it,
    # it does not list the item twice
    assert first in {i.id for i in ignored.items}
    again = IgnoredItem("not_a_message", id=first)
    await worker.intake.ignore(
        account="acme", source="telegram", req=None, items=[again], kept_raw=first
    )
    assert len((await worker.listing.ignored(["acme"], RawFilter(), limit=10)).items) == len(
        ignored.items
    )
    redis: Any = redis_of(worker)
    assert not await redis.exists(keys.event("acme", first))
    retention = worker.retention("acme").raw_s
    assert retention - 60 < await redis.ttl(keys.raw("acme", first)) <= retention
    assert await _texts(worker) == []  # the second one went the same way, nothing filed
    assert await redis.llen(keys.lane("acme", "inbound", _conv(worker))) == 0


def _conv(rt: Runtime, user: int = 4242) -> str:
    return rt.conversations.conversation_id("acme", Channel.TELEGRAM, str(user))


async def test_a_body_the_full_parse_refuses_becomes_the_same_dead_letter_and_reingests(
    make_runtime: Any, aiohttp_client: Any
) -> None:
    rt = make_runtime(admin_jwt_secret=SECRET)
    client = await aiohttp_client(create_app(rt, role="serve"))
    redis: Any = redis_of(rt)
    # the types peek reads are right; one it does not read is not: the worker refuses it
    broken = json.loads(_body("date as text", 11))
    broken["message"]["date"] = "yesterday"
    body = json.dumps(broken).encode()
    await _post(client, body)
    await _post(client, _body("behind it", 12))
    ident = min(await rt.deliveries.lane_ids("acme", Direction.INBOUND, _conv(rt), 5))
    await drain(rt)
    d = await rt.deliveries.get("acme", ident)
    assert d is not None and d.state is DeliveryState.DEAD and d.reason == "parse_failed"
    assert "yesterday" not in (d.last_error or "") and "telegram" in (d.last_error or "")
    assert await _texts(rt) == ["behind it"]  # the lane moved on
    assert await redis.ttl(keys.raw("acme", ident)) == -1  # kept, as a dead letter is
    assert await redis.zscore(keys.unparsed("acme", "telegram"), ident) is not None
    assert await redis.zscore(keys.raws("acme", "telegram"), ident) is None
    item = rt.vault.digest("dedup", "telegram", "11")
    assert not await redis.exists(keys.dedup("acme", "telegram", item))
    # the same body again (the item's mark made way) is stored and ends as a second dead
    # letter of the same body, where the gateway's body mark would have taken it for a
    # duplicate: nothing is lost either way
    again = await client.post(URL, data=body, headers=HEADERS)
    assert again.status == 200
    await drain(rt)
    dead = await rt.deliveries.dead("acme")
    assert ident in dead
    # listed as a parse failure (like the gateway's), refused by replay, re-ingested
    # after a fix: the item is new, the dead letter is discarded
    page = await rt.listing.raws({"acme": ["telegram"]}, RawFilter(), limit=10)
    [entry] = [e for e in page.items if e.delivery_id == ident]
    assert entry.id == ident
    assert await rt.deliveries.replay(d, "op") == "parse_failed"
    fixed = json.loads(body)
    fixed["message"]["date"] = 1_750_000_000
    _swap(rt, _receiver().parse(_request(json.dumps(fixed).encode())))
    out = await reingest_one(rt, entry, who="op", dry_run=False, allow_duplicates=False)
    assert out.error is None and [e["status"] for e in out.events] == ["new"]
    gone = await rt.deliveries.get("acme", ident)
    assert gone is not None and gone.state is DeliveryState.DISCARDED
    await drain(rt)
    assert sorted(await _texts(rt)) == ["behind it", "date as text"]


async def test_a_parse_that_names_another_item_is_kept_not_dropped(
    make_runtime: Any, aiohttp_client: Any
) -> None:
    rt = make_runtime()
    client = await aiohttp_client(create_app(rt, role="serve"))
    await _post(client, _body("mine", 21))
    ident = await _only_delivery(rt)
    _swap(rt, _receiver().parse(_request(_body("another", 22))))
    await drain(rt)
    d = await rt.deliveries.get("acme", ident)
    assert d is not None and d.state is DeliveryState.DEAD and d.reason == "parse_failed"
    assert await _texts(rt) == []


async def test_erasure_deletes_a_queued_unparsed_update(
    make_runtime: Any, aiohttp_client: Any
) -> None:
    rt = make_runtime(admin_jwt_secret=SECRET)
    client = await aiohttp_client(create_app(rt, role="serve"))
    redis: Any = redis_of(rt)
    await _post(client, _body("first, filed", 41))
    await drain(rt)
    await _post(client, _body("my card is 4111 1111", 42))  # queued, not parsed yet
    queued = [k async for k in redis.scan_iter(match="db:{acme}:raw:*") if await redis.ttl(k) == -1]
    assert len(queued) == 1
    resp = await client.post(
        "/admin/v1/contacts/telegram:4242/forget",
        json={},
        headers=auth(token("contacts:write")),
    )
    assert resp.status == 200, await resp.text()
    assert not await redis.exists(*queued)
    for key in [k async for k in redis.scan_iter(match="db:{acme}:*")]:
        if await redis.type(key) == b"string":
            blob = await redis.get(key)
            for aad in (key.decode(),):
                try:
                    plain = unpack(rt.vault.open(blob, aad))
                except Exception:  # noqa: S112 - not sealed under its own name
                    continue
                assert b"4111" not in plain, key
    assert await redis.llen(keys.lane("acme", "inbound", _conv(rt))) == 0
    await drain(rt)
    assert all("4111" not in t for t in await _texts(rt))


async def test_a_crash_between_ack_and_claim_delivers_once(
    make_runtime: Any, aiohttp_client: Any
) -> None:
    """The gateway acknowledged; the worker that took the job died after parsing and
    writing the record and before filing. A new worker process files it, once."""
    rt = make_runtime()
    client = await aiohttp_client(create_app(rt, role="serve"))
    await _post(client, _body("survives crashes", 51))
    ident = await _only_delivery(rt)
    dying = make_runtime()  # the process that dies: it claims and parses, nothing more
    d, head, locked, record = await dying.deliveries.claim(
        "acme", ident, Direction.INBOUND, new_id(), 60_000
    )
    assert d is not None and head == ident and locked and isinstance(record, Unparsed)
    written = await deferred.parse_stored(dying, d, record)
    assert isinstance(written, dict)
    redis: Any = redis_of(rt)
    blob = await redis.get(keys.event("acme", ident))
    # its lane lock outlives it until it expires
    await redis.delete(keys.lane_lock("acme", "inbound", d.conversation_id))
    fresh = make_runtime()
    await drain(fresh)
    await drain(fresh)
    assert await _texts(fresh) == ["survives crashes"]
    assert await redis.get(keys.event("acme", ident)) == blob  # written once
    got = await fresh.deliveries.get("acme", ident)
    assert got is not None and got.state is DeliveryState.DELIVERED


async def test_the_export_shows_a_queued_event_without_writing_it(
    make_runtime: Any, aiohttp_client: Any
) -> None:
    rt = make_runtime(admin_jwt_secret=SECRET)
    client = await aiohttp_client(create_app(rt, role="serve"))
    await _post(client, _body("known", 61))
    await drain(rt)
    await _post(client, _body("still queued", 62))
    resp = await client.get(
        "/admin/v1/contacts/telegram:4242/export", headers=auth(token("contacts:read"))
    )
    assert resp.status == 200
    [acc] = (await resp.json())["accounts"]
    [conv] = acc["conversations"]
    texts = {d["event"]["text"] for d in conv["deliveries"] if d["event"]}
    assert texts == {"known", "still queued"}
    assert len([k async for k in _redis(rt).scan_iter(match="db:{acme}:evt:*")]) == 1
    # the operator removed the channel meanwhile: the export still answers (the queued
    # delivery without its event, its raw request still exported), it does not fail
    rt.receivers.pop((Channel.TELEGRAM, "acme"))
    resp = await client.get(
        "/admin/v1/contacts/telegram:4242/export", headers=auth(token("contacts:read"))
    )
    assert resp.status == 200
    [acc] = (await resp.json())["accounts"]
    [conv] = acc["conversations"]
    assert {d["event"]["text"] for d in conv["deliveries"] if d["event"]} == {"known"}
    assert len(conv["deliveries"]) == 2


async def test_a_record_write_that_fails_behind_the_filing_retries_and_files_once(
    make_runtime: Any, aiohttp_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker's write of the event record goes with the filing's next command, not
    awaited (``parse_stored(behind=True)``). When it fails, the attempt fails as Redis
    being away does (a retry, never a delivered message without its record), and the
    retry files the message once."""
    from deskbridge.errors import StoreUnavailable

    rt = make_runtime()
    client = await aiohttp_client(create_app(rt, role="serve"))
    await _post(client, _body("written behind", 61))
    ident = await _only_delivery(rt)
    real = rt.deliveries.write_materialized
    failed = 0

    async def fails_once(*args: Any, **kwargs: Any) -> None:
        nonlocal failed
        if not failed:
            failed += 1
            raise StoreUnavailable("write_materialized: ConnectionError")
        await real(*args, **kwargs)

    monkeypatch.setattr(rt.deliveries, "write_materialized", fails_once)
    await drain(rt)
    assert failed == 1
    d = await rt.deliveries.get("acme", ident)
    assert d is not None and d.state is DeliveryState.DELIVERED
    attempts = await rt.deliveries.attempts("acme", ident)
    assert attempts[0].outcome == "retry"  # the failed write; then it was delivered
    assert await _texts(rt) == ["written behind"]  # filed once, though filed in the try
    record = await rt.deliveries.event("acme", ident)
    assert record["event"]["text"] == "written behind"
