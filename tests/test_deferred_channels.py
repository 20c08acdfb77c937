"""The deferred parse of WhatsApp and LINE webhooks (issue 19, docs/benchmarks.md): a body
of the common shape (one customer message, one account) is acknowledged after storing
its dedup mark, its sealed raw request, its delivery and its job; the worker parses it
and files it. ``tests/test_deferred.py`` covers the machinery with Telegram; here: peek
and the full parse agree over every fixture and corpus body, the common bodies are
peeked, anything unusual is not, and each channel files end to end."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deskbridge.adapters.base import Parsed, Peeked
from deskbridge.adapters.line import sample_message as line_message
from deskbridge.adapters.line.receiver import LineReceiver
from deskbridge.adapters.meta import sign
from deskbridge.adapters.registry import AnyAppPeeker
from deskbridge.adapters.text import _SURROGATE_ESCAPE, escapes_surrogates
from deskbridge.adapters.whatsapp import sample_message as wa_message
from deskbridge.gateway import create_app
from deskbridge.schemas import Channel, DeliveryState, Direction, Message
from deskbridge.store import keys

from . import test_line, test_whatsapp
from .conftest import META_SECRET, META_YAML, WA_NUMBER, WA_OTHER, drain, redis_of
from .test_corpus_meta import RECEIVERS
from .test_deferred import _full, _request
from .test_e2e_line import line_headers
from .test_e2e_meta import batch, meta_headers, zendesk_routes
from .test_isolation import LINE_SANDBOX_YAML

ROOT = Path(__file__).parent
LINE = LineReceiver(test_line.offline())
ANA = "16505551234"
USER = "U" + "a" * 32


def _bodies(channel: str) -> list[tuple[Any, Path]]:
    """Every fixture and corpus body of ``channel`` with the receiver that reads it."""
    fixtures: Any = test_whatsapp.RECEIVER if channel == "whatsapp" else LINE
    corpus: Any = RECEIVERS["whatsapp"] if channel == "whatsapp" else LINE
    found = [(fixtures, p) for p in sorted((ROOT / "fixtures" / channel).glob("*.json"))]
    found += [(corpus, p) for p in sorted((ROOT / "corpus" / channel).glob("*.json"))]
    return [(r, p) for r, p in found if not p.name.endswith("expected.json")]


ALL = [(ch, r, p) for ch in ("whatsapp", "line") for r, p in _bodies(ch)]


# -- peek and the full parse agree ------------------------------------------------------------


@pytest.mark.parametrize(
    ("channel", "receiver", "path"),
    ALL,
    ids=[f"{p.parent.parent.name}/{ch}/{p.name}" for ch, _, p in ALL],
)
def test_peek_agrees_with_the_full_parse(channel: str, receiver: Any, path: Path) -> None:
    body = path.read_bytes()
    peeked = receiver.peek(_request(body))
    if peeked is None:
        return  # the full path runs, as before
    parsed = _full(receiver, body)
    # a peeked body is its account's alone, one item that reads: never a cut, never a
    # failure, never unrouted, and filed (nothing in the corpus is ignored at the worker)
    assert parsed is not None and parsed.bodies is None, channel
    assert not parsed.failures and not parsed.unrouted and not parsed.skipped
    [event] = parsed.events
    assert (event.account, event.dedup_key, event.thread) == (
        peeked.account,
        peeked.dedup_key,
        peeked.thread,
    )


def _common_whatsapp(doc: dict[str, Any], parsed: Parsed) -> bool:
    """One customer message for one number, from a phone number (``from``; a BSUID
    thread is read from the contacts), in its own body."""
    [entry] = doc["entry"] if len(doc["entry"]) == 1 else [None]
    changes = (entry or {}).get("changes") or []
    value = changes[0]["value"] if len(changes) == 1 else {}
    return (
        len(parsed.events) == 1
        and isinstance(parsed.events[0], Message)
        and "errors" not in value
        and not value.get("statuses")
        and value["messages"][0].get("from")
        and value["messages"][0]["type"] != "system"
    )


def _common_line(doc: dict[str, Any], parsed: Parsed) -> bool:
    """One active message event (not a postback, an edit or a channel event)."""
    return (
        len(doc["events"]) == 1
        and doc["events"][0]["type"] == "message"
        and len(parsed.events) == 1
        and isinstance(parsed.events[0], Message)
    )


COMMON: dict[str, Callable[[dict[str, Any], Parsed], bool]] = {
    "whatsapp": _common_whatsapp,
    "line": _common_line,
}


@pytest.mark.parametrize("channel", ["whatsapp", "line"])
def test_peek_takes_every_common_body_of_the_fixtures_and_corpus(channel: str) -> None:
    """Not a vacuous agreement: every body of the common shape is peeked, and they are
    most of what is filed."""
    common = peeked = filed = 0
    for receiver, path in _bodies(channel):
        body = path.read_bytes()
        parsed = _full(receiver, body)
        if parsed is None or not parsed.events:
            continue
        filed += 1
        got = receiver.peek(_request(body))
        peeked += got is not None
        if COMMON[channel](json.loads(body), parsed):
            common += 1
            assert got is not None, path.name
    assert common >= 40 and peeked == common and peeked >= 0.55 * filed


def test_a_redelivered_line_event_peeks_as_its_first_delivery() -> None:
    first = LINE.peek(_request((ROOT / "fixtures/line/text_user.json").read_bytes()))
    again = (ROOT / "fixtures/line/redelivery.json").read_bytes()
    assert json.loads(again)["events"][0]["deliveryContext"] == {"isRedelivery": True}
    assert first is not None and LINE.peek(_request(again)) == first


# -- odd bodies: the full path ----------------------------------------------------------------

_DROP = object()


def _edit(body: bytes, at: Callable[[dict[str, Any]], dict[str, Any]], **changes: Any) -> bytes:
    doc = json.loads(body)
    node = at(doc)
    for name, value in changes.items():
        if value is _DROP:
            node.pop(name)
        else:
            node[name] = value
    return json.dumps(doc).encode()


def _wa(text: str = "hi", **kw: Any) -> bytes:
    args: dict[str, Any] = {
        "phone_number_id": WA_NUMBER,
        "wa_id": ANA,
        "message_id": "wamid.P1",
        "timestamp": 1_750_000_000,
    }
    return wa_message(text, **(args | kw))


def _value(doc: dict[str, Any]) -> dict[str, Any]:
    value: dict[str, Any] = doc["entry"][0]["changes"][0]["value"]
    return value


def _msg(doc: dict[str, Any]) -> dict[str, Any]:
    msg: dict[str, Any] = _value(doc)["messages"][0]
    return msg


def _twice(key: str) -> Callable[[bytes], bytes]:
    def repeat(body: bytes) -> bytes:
        doc = json.loads(body)
        _value(doc)[key] = _value(doc)[key] * 2
        return json.dumps(doc).encode()

    return repeat


def test_whatsapp_peek_reads_the_wamid_and_the_phone_and_leaves_the_unusual() -> None:
    receiver = test_whatsapp.RECEIVER
    assert receiver.peek(_request(_wa())) == Peeked("acme", "wamid.P1", ANA)
    assert receiver.peek(_request(_wa(phone_number_id=WA_OTHER))) == Peeked(
        "globex", "wamid.P1", ANA
    )
    status = {"id": "wamid.OUT", "status": "read", "timestamp": "1750000000"}
    second_change = json.loads(_wa())
    second_change["entry"][0]["changes"] *= 2
    unusual = [
        _wa(phone_number_id="999"),  # no account of ours
        _wa(wa_id=None, bsuid="US.1"),  # a BSUID thread: the parse reads the contacts
        batch(_wa(), _wa(phone_number_id=WA_OTHER, message_id="wamid.P2")),
        batch(_wa(), _wa(message_id="wamid.P2")),
        json.dumps(second_change).encode(),
        _twice("messages")(_wa()),
        _twice("contacts")(_wa()),
        _edit(_wa(), _value, statuses=[status]),
        _edit(_wa(), _value, statuses=None),
        _edit(_wa(), _value, errors=[{"code": 131000}]),
        _edit(_wa(), _value, metadata={"phone_number_id": int(WA_NUMBER)}),
        _edit(_wa(), _value, contacts=[{"wa_id": ANA, "profile": {"name": 7}}]),
        _edit(_wa(), _value, contacts={}),
        _edit(_wa(), lambda d: d["entry"][0]["changes"][0], field="statuses"),
        _edit(_wa(), lambda d: d["entry"][0], id=1),
        _edit(_wa(), lambda d: d, object="page"),
        _edit(_wa(), _msg, type="system", system={"body": "changed number"}),
        _edit(_wa(), _msg, type=_DROP),
        _edit(_wa(), _msg, timestamp="yesterday"),
        _edit(_wa(), _msg, timestamp=True),
        _edit(_wa(), _msg, id=""),
        _edit(_wa(), _msg, id="w" * 513),
        _edit(_wa(), _msg, id=5),
        _edit(_wa(), _msg, **{"from": 16505551234}),
        _edit(_wa(), _msg, **{"from": " "}),
        _edit(_wa(), _msg, from_user_id=7),
        _wa("\\ud800").replace(b"\\\\ud800", b"\\ud800"),  # a lone surrogate
        b'{"object": "whatsapp_business_account", "entry": {}}',
        b"[1, 2]",
        b"not json",
    ]
    for body in unusual:
        assert receiver.peek(_request(body)) is None, body


def _line(**kw: Any) -> bytes:
    args: dict[str, Any] = {
        "user_id": USER,
        "event_id": "01J0000000000000000000PEEK",
        "message_id": "5001",
        "timestamp_ms": 1_750_000_000_000,
    }
    return line_message("hi", **(args | kw))


def _event(doc: dict[str, Any]) -> dict[str, Any]:
    ev: dict[str, Any] = doc["events"][0]
    return ev


def test_line_peek_reads_the_event_id_and_the_chat_and_leaves_the_unusual() -> None:
    assert LINE.peek(_request(_line())) == Peeked("acme", "01J0000000000000000000PEEK", USER)
    group = _edit(_line(), _event, source={"type": "group", "groupId": "C1", "userId": USER})
    assert LINE.peek(_request(group)) == Peeked("acme", "01J0000000000000000000PEEK", "C1")
    member = _edit(_line(), _event, source={"type": "room", "roomId": "R1"})
    assert LINE.peek(_request(member)) == Peeked("acme", "01J0000000000000000000PEEK", "R1")
    two = json.loads(_line())
    two["events"] *= 2
    unusual = [
        json.dumps(two).encode(),
        _edit(_line(), lambda d: d, events=[]),
        _edit(_line(), lambda d: d, destination=5),
        _edit(_line(), _event, type="follow"),
        _edit(_line(), _event, type="postback", postback={"data": "a=1"}),
        _edit(_line(), _event, type="messageEdited"),
        _edit(_line(), _event, mode="standby"),
        _edit(_line(), _event, mode=None),
        _edit(_line(), _event, webhookEventId=""),
        _edit(_line(), _event, webhookEventId=_DROP),
        _edit(_line(), _event, timestamp="1750000000000"),
        _edit(_line(), _event, timestamp=True),
        _edit(_line(), _event, timestamp=-1),
        _edit(_line(), _event, source={"type": "user"}),
        _edit(_line(), _event, source={"type": "user", "userId": ""}),
        _edit(_line(), _event, source={"type": "group", "userId": USER}),
        _edit(_line(), _event, source={"type": "group", "groupId": "C1", "userId": ""}),
        _edit(_line(), _event, source={"type": "channel", "userId": USER}),
        _edit(_line(), _event, source={"type": ["user"], "userId": USER}),
        _edit(_line(), _event, source=_DROP),
        _edit(_line(), _event, deliveryContext={"isRedelivery": "no"}),
        _edit(_line(), _event, deliveryContext=[]),
        _edit(_line(), _event, replyToken=5),
        _edit(_line(), _event, unsend={"messageId": "1"}),
        _edit(_line(), _event, message=None),
        _edit(_line(), lambda d: d["events"][0]["message"], id=""),
        _edit(_line(), lambda d: d["events"][0]["message"], id=5001),
        _edit(_line(), lambda d: d["events"][0]["message"], type=_DROP),
        _edit(_line(), lambda d: d["events"][0]["message"], text=_DROP),
        _edit(_line(), lambda d: d["events"][0]["message"], quotedMessageId=""),
        _line(user_id="U\\udc00").replace(b"\\\\udc00", b"\\udc00"),  # a lone surrogate
        b'{"events": {}}',
        b"[]",
        b"not json",
    ]
    for body in unusual:
        assert LINE.peek(_request(body)) is None, body


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from([b"\\u", b"\\ud8", b"\\uDB", b"\\u00e9", b"\xed", b"\xed\xa0", b"\x00"])
        | st.binary(max_size=8),
        max_size=12,
    )
)
def test_the_surrogate_check_finds_what_its_pattern_finds(parts: list[bytes]) -> None:
    """Both peeks leave a body that may hold a lone surrogate to the full parse; the
    check skips the pattern's byte-by-byte scan when none of its branches can match."""
    body = b"".join(parts)
    assert escapes_surrogates(body) is (_SURROGATE_ESCAPE.search(body) is not None)


# -- the gateway stores, the worker parses ----------------------------------------------------


async def _deliveries(rt: Any, account: str) -> list[str]:
    return [
        k.decode().rsplit(":", 1)[1]
        async for k in redis_of(rt).scan_iter(match=f"db:{{{account}}}:dlv:*")
        if k.count(b":") == 3
    ]


async def _events(rt: Any, account: str) -> list[bytes]:
    return [k async for k in redis_of(rt).scan_iter(match=f"db:{{{account}}}:evt:*")]


async def _texts(rt: Any, account: str) -> list[str]:
    return [m.text for t in await rt.sandbox.tickets(account) for m in t.messages]


async def test_a_whatsapp_message_is_stored_unparsed_and_filed_by_the_worker(
    make_runtime: Any, aiohttp_client: Any
) -> None:
    rt = make_runtime(META_YAML)
    client = await aiohttp_client(create_app(rt, role="serve"))
    body = _wa("where is my parcel?", phone_number_id=WA_OTHER, timestamp=int(time.time()))
    for _ in range(2):  # Meta redelivers: the second is a duplicate at the ack
        resp = await client.post("/webhooks/whatsapp", data=body, headers=meta_headers(body))
        assert resp.status == 200
    [ident] = await _deliveries(rt, "globex")
    assert await _events(rt, "globex") == []
    redis: Any = redis_of(rt)
    h = await redis.hgetall(keys.delivery("globex", ident))
    assert h[b"item"] == rt.vault.digest("dedup", "whatsapp", "wamid.P1").encode()
    assert h[b"raw_id"] == h[b"event_id"] == ident.encode()
    await drain(rt)
    assert await _texts(rt, "globex") == ["where is my parcel?"]
    record = await rt.deliveries.event("globex", ident)
    [expected] = test_whatsapp.RECEIVER.parse(_request(body)).events
    assert record["event"] == expected.model_dump(mode="json")
    d = await rt.deliveries.get("globex", ident)
    assert d is not None and d.state is DeliveryState.DELIVERED


async def test_a_whatsapp_body_for_two_accounts_is_parsed_at_the_ack(
    make_runtime: Any, aiohttp_client: Any, respx_mock: Any
) -> None:
    rt = make_runtime(META_YAML)
    client = await aiohttp_client(create_app(rt, role="serve"))
    body = batch(_wa(), _wa("hi globex", phone_number_id=WA_OTHER, message_id="wamid.G1"))
    resp = await client.post("/webhooks/whatsapp", data=body, headers=meta_headers(body))
    assert resp.status == 200
    # each account's event record written by the intake, each raw its cut of the body
    assert len(await _events(rt, "acme")) == len(await _events(rt, "globex")) == 1
    create, _ = zendesk_routes(respx_mock)
    await drain(rt)
    assert create.call_count == 1
    assert await _texts(rt, "globex") == ["hi globex"]


OTHER_SECRET = "second-meta-app-secret-for-tests"
TWO_APPS = f"""
apps:
  meta:
    type: meta
    app_secret: "{META_SECRET}"
    verify_token: v1
  other:
    type: meta
    app_secret: "{OTHER_SECRET}"
    verify_token: v2
accounts:
  acme:
    desk: {{type: sandbox}}
    channels:
      - type: whatsapp
        app: meta
        phone_number_id: "{WA_NUMBER}"
        access_token: wa-access-token
        base_url: https://graph.test
  globex:
    desk: {{type: sandbox}}
    channels:
      - type: whatsapp
        app: other
        phone_number_id: "{WA_OTHER}"
        access_token: wa-other-token
        base_url: https://graph.test
"""


async def test_the_url_of_several_apps_peeks_with_the_signing_apps_routes(
    make_runtime: Any, aiohttp_client: Any
) -> None:
    rt = make_runtime(TWO_APPS)
    assert isinstance(rt.receiver("whatsapp", None), AnyAppPeeker)
    client = await aiohttp_client(create_app(rt, role="serve"))
    mine = _wa("to the other app", phone_number_id=WA_OTHER)
    # another app's number, signed by this app: not routed, so not peeked (and unrouted)
    theirs = _wa("not ours", phone_number_id=WA_NUMBER, message_id="wamid.X")
    for body in (mine, theirs):
        headers = {"X-Hub-Signature-256": sign(OTHER_SECRET, body)}
        resp = await client.post("/webhooks/whatsapp", data=body, headers=headers)
        assert resp.status == 200
    assert len(await _deliveries(rt, "globex")) == 1 and await _events(rt, "globex") == []
    assert await _deliveries(rt, "acme") == []
    await drain(rt)
    assert await _texts(rt, "globex") == ["to the other app"]


async def _post_line(client: Any, body: bytes) -> None:
    resp = await client.post("/webhooks/line/acme", data=body, headers=line_headers(body))
    assert resp.status == 200, await resp.text()


async def test_a_line_message_is_filed_by_the_worker_with_its_reply_token(
    make_runtime: Any, aiohttp_client: Any, respx_mock: Any
) -> None:
    """The reply token reaches the conversation when the worker files the message, as it
    did when the intake parsed: from the stored body, timed from the event."""
    rt = make_runtime(LINE_SANDBOX_YAML)
    respx_mock.get(f"https://line.test/v2/bot/profile/{USER}").respond(
        200, json={"userId": USER, "displayName": "Kenji"}
    )
    client = await aiohttp_client(create_app(rt, role="serve"))
    at_ms = int(time.time() * 1000) - 1500
    body = _line(timestamp_ms=at_ms, reply_token="rt-1")
    redelivered = _edit(body, _event, deliveryContext={"isRedelivery": True})
    for one in (body, redelivered):
        await _post_line(client, one)
    [ident] = await _deliveries(rt, "acme")
    assert await _events(rt, "acme") == []
    await drain(rt)
    assert await _texts(rt, "acme") == ["hi"]
    conv_id = rt.conversations.conversation_id("acme", Channel.LINE, USER)
    conv = await rt.conversations.get("acme", conv_id)
    assert conv is not None and conv.reply_token == "rt-1"
    assert conv.reply_token_at == pytest.approx(at_ms / 1000)
    record = await rt.deliveries.event("acme", ident)
    assert record["event"]["reply_token"] == "rt-1"


async def test_a_line_event_the_worker_cannot_read_is_a_dead_letter_and_the_lane_moves_on(
    make_runtime: Any, aiohttp_client: Any, respx_mock: Any
) -> None:
    rt = make_runtime(LINE_SANDBOX_YAML)
    respx_mock.get(f"https://line.test/v2/bot/profile/{USER}").respond(
        200, json={"userId": USER, "displayName": "Kenji"}
    )
    client = await aiohttp_client(create_app(rt, role="serve"))
    # peek reads the event's ids; the image's external provider without its URL is
    # an item failure of the full parse
    image = {"type": "image", "id": "6001", "contentProvider": {"type": "external"}}
    broken = _edit(_line(event_id="01J00000000000000000000BAD"), _event, message=image)
    assert LINE.peek(_request(broken)) is not None
    await _post_line(client, broken)
    await _post_line(client, _line(event_id="01J00000000000000000000OK1", message_id="5002"))
    conv_id = rt.conversations.conversation_id("acme", Channel.LINE, USER)
    first = min(await rt.deliveries.lane_ids("acme", Direction.INBOUND, conv_id, 5))
    await drain(rt)
    d = await rt.deliveries.get("acme", first)
    assert d is not None and d.state is DeliveryState.DEAD and d.reason == "parse_failed"
    assert "external content" in (d.last_error or "")
    assert await redis_of(rt).zscore(keys.unparsed("acme", "line"), first) is not None
    assert await _texts(rt, "acme") == ["hi"]
