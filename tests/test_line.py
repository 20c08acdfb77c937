"""LINE: fixtures through verify/parse, the Messaging API sender, downloads and tokens under
respx (no Redis: the token cache is an in-memory fake)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
import respx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given, settings
from hypothesis import strategies as st
from jose import jwk, jwt

from deskbridge.adapters.line import LineAdapter, sample_message
from deskbridge.adapters.line.adapter import retry_key
from deskbridge.adapters.line.parse import parse
from deskbridge.adapters.line.tokens import ASSERTION_LIFETIME, cache_ttl
from deskbridge.config.accounts import LineConfig
from deskbridge.errors import (
    ConfigError,
    ParseFailed,
    PayloadInvalid,
    PermanentError,
    RetryableError,
    SignatureInvalid,
)
from deskbridge.outbound.render import render
from deskbridge.schemas import (
    AgentReply,
    Attachment,
    Channel,
    ChannelAddress,
    ChannelEvent,
    Desk,
    Message,
    RawRequest,
    Upload,
)

from . import recorded

CHANNEL = "line"
SCENARIOS = recorded.scenarios(CHANNEL)

SECRET = "line-test-channel-secret"
TOKEN = "line-long-lived-token-abc"
CHANNEL_ID = "1650000001"
API = "https://line.test"
DATA = "https://line-data.test"
ANN = "U4af4980629a1b2c3d4e5f60718293a4b"
GROUP = "Ca56f94637c2b3d4e5f60718293a4b5c6"
ROOM = "Rb2c3d4e5f60718293a4b5c6d7e8f9a0b"
NOW = 1_750_000_100.0


def config(**overrides: Any) -> LineConfig:
    values: dict[str, Any] = {
        "channel_id": CHANNEL_ID,
        "channel_secret": SECRET,
        "access_token": TOKEN,
    }
    values.update(overrides)
    return LineConfig.model_validate({k: v for k, v in values.items() if v is not None})


def sign(body: bytes, secret: str = SECRET) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def request(body: bytes, signature: str | None = "auto") -> RawRequest:
    headers = {"content-type": "application/json; charset=utf-8"}
    if signature == "auto":
        signature = sign(body)
    if signature is not None:
        headers["x-line-signature"] = signature
    return RawRequest(method="POST", path="/webhooks/acme/line", headers=headers, body=body)


class FakeLinks:
    def url_for(self, account: str, attachment: Attachment, *, ttl: float | None = None) -> str:
        return f"https://gw.test/media/{account}/{attachment.ref}"

    def video_preview_url(self) -> str:
        return "https://bridge.test/media/preview/video.png"


class FakeTokens:
    """An in-memory ``TokenCache`` that records what it was asked."""

    def __init__(self, **tokens: str) -> None:
        self.tokens: dict[str, str] = dict(tokens)
        self.ttls: dict[str, float] = {}
        self.locks = 0
        self.on_lock: Any = None

    async def get(self, name: str) -> str | None:
        return self.tokens.get(name) or None

    async def put(self, name: str, token: str, ttl: float) -> None:
        self.tokens[name] = token
        self.ttls[name] = ttl

    @asynccontextmanager
    async def lock(self, name: str) -> AsyncIterator[None]:
        self.locks += 1
        if self.on_lock is not None:
            self.on_lock(self)
        yield


def _no_network(request: httpx.Request) -> httpx.Response:
    raise AssertionError("verify/parse must not make requests")


_OFFLINE = LineAdapter(
    "acme",
    config(),
    httpx.AsyncClient(transport=httpx.MockTransport(_no_network)),
    FakeLinks(),
    FakeTokens(),
    api_base=API,
    data_api_base=DATA,
)


def offline() -> LineAdapter:
    """The adapter for the pure half (verify/parse), shared: it holds no state."""
    return _OFFLINE


def fixture(scenario: str) -> bytes:
    return recorded.fixture(CHANNEL, scenario)


def parse_dicts(body: bytes) -> list[dict[str, Any]]:
    adapter = offline()
    req = request(body)
    adapter.verify(req)
    return [event.model_dump(mode="json") for event in adapter.parse(req)]


def only(body: bytes) -> Message:
    (event,) = offline().parse(request(body))
    assert isinstance(event, Message)
    return event


def only_event(body: bytes) -> ChannelEvent:
    (event,) = offline().parse(request(body))
    assert isinstance(event, ChannelEvent)
    return event


def edited(scenario: str, **changes: Any) -> bytes:
    """The scenario's body with fields of its first event's message replaced."""
    raw = json.loads(fixture(scenario))
    raw["events"][0]["message"].update(changes)
    return json.dumps(raw).encode()


# --- inbound: recorded-shape fixtures ------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_fixture_parses_to_expected(scenario: str) -> None:
    got = parse_dicts(fixture(scenario))
    recorded.assert_expected(CHANNEL, scenario, got)


def test_every_scenario_of_the_brief_is_recorded() -> None:
    required = {
        "text_user", "text_with_emoji_and_mention", "image_line_provider",
        "image_external_provider", "video", "audio", "file", "location", "sticker",
        "group_text", "room_text", "group_member_without_userid", "follow", "unfollow",
        "join", "leave", "unsend", "postback", "redelivery", "verify_console",
        "standby_mode", "several_events_in_one_body",
    }  # fmt: skip
    assert required <= set(SCENARIOS)


def test_text_message_fields() -> None:
    msg = only(fixture("text_user"))
    assert (msg.account, msg.channel, msg.dedup_key) == (
        "acme",
        Channel.LINE,
        "01JXQ000000000000000000001",
    )
    assert (msg.thread, msg.external_id, msg.thread_title) == (ANN, "500000000000000001", None)
    assert msg.occurred_at == datetime(2025, 6, 15, 15, 6, 41, 123000, tzinfo=UTC)
    assert msg.text == "Hi, my order #4417 has not arrived yet."
    assert msg.reply_token == "nHuyWiB7yP5Zw52FIkcQobQuGDXCTA0001"
    assert (msg.sender.external_id, msg.sender.display_name) == (ANN, None)
    (ident,) = msg.sender.identities
    assert (ident.kind, ident.channel, ident.value, ident.strength, ident.source) == (
        "channel_user",
        Channel.LINE,
        ANN,
        "strong",
        "line",
    )


def test_emoji_and_mention_stay_in_the_text() -> None:
    msg = only(fixture("text_with_emoji_and_mention"))
    assert msg.text == "@Acme Help $ thanks, and @Ben too"
    assert (msg.thread, msg.sender.external_id) == (GROUP, ANN)


def test_a_quote_is_the_message_answered() -> None:
    assert only(fixture("text_quote")).reply_to == "500000000000000001"


def test_image_hosted_by_line_is_fetched_by_message_id() -> None:
    msg = only(fixture("image_line_provider"))
    (image,) = msg.attachments
    assert (image.kind, image.ref, msg.note, msg.text) == ("image", "500000000000000004", None, "")


def test_external_image_keeps_its_url_and_says_so() -> None:
    msg = only(fixture("image_external_provider"))
    (image,) = msg.attachments
    assert image.ref == "https://photos.example.com/p/8841.jpg"
    assert msg.note == (
        "Image from an external provider, kept as a link: https://photos.example.com/p/8841.jpg"
    )


def test_external_content_without_its_url_fails() -> None:
    body = edited("image_external_provider", contentProvider={"type": "external"})
    with pytest.raises(ParseFailed):
        offline().parse(request(body))


def test_video_and_audio_durations_are_seconds() -> None:
    (video,) = only(fixture("video")).attachments
    assert (video.kind, video.ref, video.duration) == ("video", "500000000000000006", 8.25)
    (audio,) = only(fixture("audio")).attachments
    assert (audio.kind, audio.duration) == ("audio", 60.0)


def test_file_is_a_document_with_name_and_size() -> None:
    (doc,) = only(fixture("file")).attachments
    assert (doc.kind, doc.ref, doc.filename, doc.size) == (
        "document",
        "500000000000000008",
        "invoice-4417.pdf",
        48213,
    )


def test_location() -> None:
    loc = only(fixture("location")).location
    assert loc is not None
    assert (loc.latitude, loc.longitude, loc.name, loc.address) == (
        35.661971,
        139.700523,
        "Acme Shibuya store",
        "1-2-3 Jinnan, Shibuya-ku, Tokyo",
    )
    assert only(edited("location", latitude=35, longitude=139)).location is not None


def test_sticker_is_a_readable_note() -> None:
    msg = only(fixture("sticker"))
    assert msg.note == "Sticker 11537/52002734 (Thanks, Bow, Grateful)"
    assert (msg.attachments, msg.text) == ((), "")
    bare = only(edited("sticker", keywords=None, text="See you!"))
    assert (bare.note, bare.text) == ("Sticker 11537/52002734", "See you!")


def test_a_group_or_room_is_its_own_conversation() -> None:
    group = only(fixture("group_text"))
    assert (group.thread, group.sender.external_id) == (GROUP, "U0c229f96c4d5e6f708192a3b4c5d6e7f")
    assert group.sender.identities[0].value == "U0c229f96c4d5e6f708192a3b4c5d6e7f"
    room = only(fixture("room_text"))
    assert (room.thread, room.sender.external_id) == (ROOM, ANN)


def test_an_unnamed_group_member_is_a_placeholder_without_identities() -> None:
    msg = only(fixture("group_member_without_userid"))
    assert (msg.thread, msg.sender.external_id, msg.sender.identities) == (
        GROUP,
        "group-member",
        (),
    )
    raw = json.loads(fixture("room_text"))
    del raw["events"][0]["source"]["userId"]
    assert only(json.dumps(raw).encode()).sender.external_id == "room-member"


def test_follow_unfollow_join_leave_unsend() -> None:
    follow = only_event(fixture("follow"))
    assert (follow.action, follow.thread, follow.sender and follow.sender.external_id) == (
        "follow",
        ANN,
        ANN,
    )
    assert only_event(fixture("unfollow")).action == "unfollow"
    for scenario in ("join", "leave"):
        event = only_event(fixture(scenario))
        assert (event.action, event.thread, event.sender) == (scenario, GROUP, None)
    unsend = only_event(fixture("unsend"))
    assert (unsend.action, unsend.external_id, unsend.thread) == (
        "unsend",
        "500000000000000001",
        ANN,
    )


def test_postback_is_a_note_and_keeps_the_reply_token() -> None:
    msg = only(fixture("postback"))
    assert msg.text == ""
    assert msg.note == "Postback: action=reschedule&order=4417 (datetime=2025-06-20T10:00)"
    assert msg.reply_token == "nHuyWiB7yP5Zw52FIkcQobQuGDXCTA0019"
    assert msg.external_id == msg.dedup_key == "01JXQ000000000000000000019"


def test_a_redelivery_has_the_same_dedup_key() -> None:
    first, again = only(fixture("text_user")), only(fixture("redelivery"))
    assert again.dedup_key == first.dedup_key
    assert again.model_dump() == first.model_dump()


@pytest.mark.parametrize("scenario", ["verify_console", "standby_mode", "member_joined", "beacon"])
def test_events_we_do_not_handle_are_acknowledged_empty(scenario: str) -> None:
    assert offline().parse(request(fixture(scenario))) == []


def test_several_events_in_one_body_keep_their_order() -> None:
    events = offline().parse(request(fixture("several_events_in_one_body")))
    assert [e.kind for e in events] == ["message", "message", "channel_event"]
    assert [e.dedup_key[-2:] for e in events] == ["23", "24", "26"]


def test_unsupported_message_type_is_visible() -> None:
    msg = only(edited("text_user", type="hologram"))
    assert msg.note == "Unsupported LINE message (hologram)"


def test_sample_message_round_trips() -> None:
    body = sample_message(
        "hello", user_id=ANN, event_id="01JXQSIM", message_id="77", timestamp_ms=1_750_000_000_000
    )
    msg = only(body)
    assert (msg.text, msg.thread, msg.dedup_key, msg.external_id, msg.reply_token) == (
        "hello",
        ANN,
        "01JXQSIM",
        "77",
        "simulated-reply-token",
    )
    assert json.loads(body)["destination"] == "U" + "0" * 32


# --- inbound: refusals ------------------------------------------------------------------


def test_adapter_shape() -> None:
    adapter = offline()
    assert (adapter.channel, adapter.takes_files) == (Channel.LINE, False)
    assert (adapter.account, adapter.max_body_bytes) == ("acme", 1024 * 1024)
    assert adapter.handshake(request(b"{}")) is None


@pytest.mark.parametrize(
    "signature",
    [
        None,
        "",
        sign(b"other body"),
        sign(fixture("text_user"), "other-secret"),
        sign(fixture("text_user"))[:-2],
        "not base64 at all ✓",
    ],
    ids=["missing", "empty", "other-body", "other-secret", "truncated", "junk"],
)
def test_verify_refuses_a_missing_or_wrong_signature(signature: str | None) -> None:
    with pytest.raises(SignatureInvalid):
        offline().verify(request(fixture("text_user"), signature=signature))


def test_verify_signs_the_raw_bytes() -> None:
    body = fixture("text_user")
    offline().verify(request(body))
    reserialized = json.dumps(json.loads(body)).encode()
    with pytest.raises(SignatureInvalid):
        offline().verify(request(reserialized, signature=sign(body)))


@pytest.mark.parametrize(
    "body",
    [
        fixture("text_user")[:40],
        b"[1, 2]",
        b'"text"',
        b"",
        b"\xff\xfe\x00",
        b"NaN",
        b"[" * 100_000,
    ],
    ids=["truncated", "array", "string", "empty", "not-utf8", "nan", "deep"],
)
def test_bodies_that_are_not_json_objects_are_invalid(body: bytes) -> None:
    with pytest.raises(PayloadInvalid):
        offline().parse(request(body))


def _with_event(**changes: Any) -> bytes:
    raw = json.loads(fixture("text_user"))
    event = raw["events"][0]
    for key, value in changes.items():
        if value is None:
            event.pop(key, None)
        else:
            event[key] = value
    return json.dumps(raw).encode()


@pytest.mark.parametrize(
    "body",
    [
        b"{}",
        b'{"destination": "U0", "events": {}}',
        b'{"destination": "U0", "events": [1]}',
        _with_event(webhookEventId=None),
        _with_event(timestamp="1750000000000"),
        _with_event(timestamp=10**16),
        _with_event(source=None),
        _with_event(source={"type": "user"}),
        _with_event(source={"type": "group", "userId": ANN}),
        _with_event(message=None),
        _with_event(message={"type": "text", "text": "no id"}),
        _with_event(message={"id": "1", "type": "text", "text": 5}),
        _with_event(message={"id": "1", "type": 5}),
        _with_event(message={"id": "1", "type": "location", "latitude": 100, "longitude": 0}),
        _with_event(type="postback", message=None),
        _with_event(type="unsend", message=None),
        _with_event(replyToken=7),
        # A lone surrogate escape: valid JSON, but no storable text.
        _with_event(message={"id": "1", "type": "text", "text": "a \ud800"}),
        fixture("text_user").replace(b"Hi, my", b"\xed\xa0\x80 my"),
    ],
    ids=[
        "no-events",
        "events-object",
        "event-number",
        "no-event-id",
        "timestamp-string",
        "timestamp-huge",
        "no-source",
        "user-without-id",
        "group-without-id",
        "no-message",
        "message-without-id",
        "text-number",
        "type-number",
        "latitude-out-of-range",
        "postback-without-data",
        "unsend-without-id",
        "reply-token-number",
        "lone-surrogate",
        "raw-surrogate-bytes",
    ],
)
def test_objects_that_are_not_readable_bodies_fail_to_parse(body: bytes) -> None:
    with pytest.raises(ParseFailed):
        parse(body, account="acme")


def test_an_unknown_source_type_is_ignored() -> None:
    assert parse(_with_event(source={"type": "channel", "channelId": "x"}), account="acme") == []


_LEAF = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12)
)
_KEYS = st.sampled_from(
    ["destination", "events", "type", "mode", "timestamp", "webhookEventId", "source", "userId",
     "groupId", "roomId", "replyToken", "message", "id", "text", "contentProvider", "duration",
     "fileName", "fileSize", "latitude", "longitude", "packageId", "stickerId", "keywords",
     "postback", "data", "params", "unsend", "messageId", "deliveryContext", "isRedelivery"]
) | st.text(max_size=8)  # fmt: skip
_JSON = st.recursive(
    _LEAF,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEYS, inner, max_size=6),
    max_leaves=25,
)
_TEXT = st.text(max_size=12)
_SOURCE = st.fixed_dictionaries(
    {"type": st.sampled_from(["user", "group", "room", "other"])},
    optional={"userId": _TEXT, "groupId": _TEXT, "roomId": _TEXT},
)
_MESSAGE = st.fixed_dictionaries(
    {
        "id": _TEXT,
        "type": st.sampled_from(["text", "image", "video", "audio", "file", "location", "sticker"]),
    },
    optional={
        "text": _TEXT,
        "contentProvider": st.fixed_dictionaries(
            {"type": st.sampled_from(["line", "external"])},
            optional={"originalContentUrl": _TEXT},
        ),
        "duration": st.integers(),
        "fileName": _TEXT,
        "fileSize": st.integers(),
        "latitude": st.floats(-100, 100),
        "longitude": st.floats(-200, 200),
        "packageId": _TEXT,
        "stickerId": _TEXT,
        "keywords": st.lists(_TEXT, max_size=3),
        "quotedMessageId": _TEXT,
    },
)
# Junk is _JSON's job; this one reaches event building, with random fields mixed in.
_EVENT = st.fixed_dictionaries(
    {
        "type": st.sampled_from(
            ["message", "postback", "unsend", "follow", "unfollow", "join", "leave", "beacon"]
        ),
        "timestamp": st.integers(min_value=-1, max_value=2**50),
        "webhookEventId": _TEXT,
        "source": _SOURCE,
    },
    optional={
        "mode": st.sampled_from(["active", "standby"]),
        "replyToken": _TEXT,
        "message": _MESSAGE,
        "postback": st.fixed_dictionaries(
            {"data": _TEXT}, optional={"params": st.dictionaries(_TEXT, _TEXT, max_size=2)}
        ),
        "unsend": st.fixed_dictionaries({"messageId": _TEXT}),
        "extra": _JSON,
    },
)
_BODY = st.builds(
    lambda events: {"destination": "U" + "0" * 32, "events": events},
    st.lists(_EVENT, max_size=3),
)


def _parses_or_refuses(body: bytes) -> None:
    try:
        events = parse(body, account="acme")
    except (PayloadInvalid, ParseFailed):
        return
    for event in events:
        event.model_dump_json()


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_parse_never_crashes_on_bytes(body: bytes) -> None:
    _parses_or_refuses(body)


@settings(max_examples=200, deadline=None)
@given(_JSON | _BODY)
def test_parse_never_crashes_on_json(value: Any) -> None:
    _parses_or_refuses(json.dumps(value).encode())


# --- outbound: the Messaging API under respx --------------------------------------------


def adapter_for(
    client: httpx.AsyncClient,
    tokens: FakeTokens | None = None,
    *,
    now: list[float] | None = None,
    **overrides: Any,
) -> LineAdapter:
    clock = now if now is not None else [NOW]
    return LineAdapter(
        "acme",
        config(**overrides),
        client,
        FakeLinks(),
        tokens if tokens is not None else FakeTokens(),
        api_base=API,
        data_api_base=DATA,
        clock=lambda: clock[0],
    )


def agent_reply(text: str, *attachments: Attachment, dedup_key: str = "zd-comment-1") -> AgentReply:
    return AgentReply(
        account="acme",
        desk=Desk.SANDBOX,
        dedup_key=dedup_key,
        ticket_id="t-1",
        external_id="c-1",
        text=text,
        attachments=attachments,
        occurred_at=datetime(2025, 6, 15, tzinfo=UTC),
    )


TO = ChannelAddress(channel=Channel.LINE, account="acme", thread=ANN)


def with_token(age: float) -> ChannelAddress:
    return TO.model_copy(
        update={
            "reply_token": "nHuyWiB7yP5Zw52FIkcQobQuGDXCTA0001",
            "reply_token_at": datetime.fromtimestamp(NOW - age, UTC),
        }
    )


def sent(*ids: str) -> httpx.Response:
    return httpx.Response(
        200, json={"sentMessages": [{"id": i, "quoteToken": f"q-{i}"} for i in ids]}
    )


def failed(status: int, message: str, **headers: str) -> httpx.Response:
    body = {"message": message, "details": [{"message": "customer said hello", "property": "x"}]}
    return httpx.Response(status, json=body, headers=headers)


def bodies(route: respx.Route) -> list[Any]:
    return [json.loads(call.request.content) for call in route.calls]


def reply_route(api: respx.MockRouter) -> respx.Route:
    return api.post(f"{API}/v2/bot/message/reply")


def push_route(api: respx.MockRouter) -> respx.Route:
    return api.post(f"{API}/v2/bot/message/push")


async def test_reply_within_the_window(client: httpx.AsyncClient, api: respx.MockRouter) -> None:
    reply = reply_route(api).mock(return_value=sent("461230966842064897"))
    push = push_route(api)
    adapter = adapter_for(client)
    receipt = await adapter.send(agent_reply("  Hello Ann!\n"), with_token(50), [])
    assert (receipt.external_ids, receipt.used_reply_token, receipt.quota_messages) == (
        ("461230966842064897",),
        True,
        0,
    )
    assert bodies(reply) == [
        {
            "replyToken": "nHuyWiB7yP5Zw52FIkcQobQuGDXCTA0001",
            "messages": [{"type": "text", "text": "Hello Ann!"}],
        }
    ]
    headers = reply.calls.last.request.headers
    assert headers["authorization"] == f"Bearer {TOKEN}"
    assert "x-line-retry-key" not in headers  # the reply API refuses it with a 400
    assert not push.called
    assert adapter.push_count == 0


async def test_past_the_window_it_pushes(client: httpx.AsyncClient, api: respx.MockRouter) -> None:
    reply = reply_route(api)
    push = push_route(api).mock(return_value=sent("461230966842064898"))
    adapter = adapter_for(client)
    receipt = await adapter.send(agent_reply("Hello Ann!"), with_token(51), [])
    assert (receipt.external_ids, receipt.used_reply_token, receipt.quota_messages) == (
        ("461230966842064898",),
        False,
        1,
    )
    assert not reply.called
    assert bodies(push) == [{"to": ANN, "messages": [{"type": "text", "text": "Hello Ann!"}]}]
    key = push.calls.last.request.headers["x-line-retry-key"]
    assert uuid.UUID(key).version == 5
    assert adapter.push_count == 1


async def test_no_token_or_no_token_time_pushes(
    client: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    reply = reply_route(api)
    push_route(api).mock(return_value=sent("1"))
    no_time = TO.model_copy(update={"reply_token": "tok"})
    for to in (TO, no_time):
        assert not (await adapter_for(client).send(agent_reply("hi"), to, [])).used_reply_token
    assert not reply.called


@pytest.mark.parametrize("message", ["Invalid reply token", "Invalid reply token."])
async def test_a_refused_reply_token_falls_back_to_push(
    client: httpx.AsyncClient, api: respx.MockRouter, message: str
) -> None:
    reply_route(api).mock(return_value=failed(400, message))
    push = push_route(api).mock(side_effect=[sent("1", "2", "3", "4", "5"), sent("6")])
    attachments = [Attachment(kind="document", ref=f"f{i}", filename=f"{i}.pdf") for i in range(5)]
    reply = agent_reply("See the files", *attachments)
    receipt = await adapter_for(client).send(reply, with_token(10), [])
    assert (receipt.external_ids, receipt.used_reply_token, receipt.quota_messages) == (
        ("1", "2", "3", "4", "5", "6"),
        True,
        6,
    )
    assert [len(b["messages"]) for b in bodies(push)] == [5, 1]


async def test_a_reply_timeout_falls_back_to_push(
    client: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    reply_route(api).mock(side_effect=httpx.ReadTimeout("timed out"))
    push = push_route(api).mock(return_value=sent("9"))
    receipt = await adapter_for(client).send(agent_reply("hi"), with_token(5), [])
    assert (receipt.external_ids, receipt.used_reply_token) == (("9",), True)
    assert push.call_count == 1


async def test_a_reply_that_never_left_is_retryable_and_keeps_the_token(
    client: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    reply_route(api).mock(side_effect=httpx.ConnectError("refused"))
    push = push_route(api)
    with pytest.raises(RetryableError):
        await adapter_for(client).send(agent_reply("hi"), with_token(5), [])
    assert not push.called


@pytest.mark.parametrize(
    ("response", "error"),
    [
        (failed(400, "The request body has 1 error(s)"), PermanentError),
        (failed(500, "Internal server error"), RetryableError),
        (failed(429, "The API rate limit has been exceeded. Try again later."), RetryableError),
    ],
    ids=["400", "500", "429"],
)
async def test_other_reply_errors_raise(
    client: httpx.AsyncClient,
    api: respx.MockRouter,
    response: httpx.Response,
    error: type[Exception],
) -> None:
    reply_route(api).mock(return_value=response)
    push = push_route(api)
    with pytest.raises(error) as caught:
        await adapter_for(client).send(agent_reply("hi"), with_token(5), [])
    assert "line reply" in str(caught.value)
    assert not push.called


async def test_six_messages_go_in_two_requests(
    client: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    reply = reply_route(api).mock(return_value=sent("1", "2", "3", "4", "5"))
    push = push_route(api).mock(return_value=sent("6"))
    attachments = [Attachment(kind="document", ref=f"f{i}", filename=f"{i}.pdf") for i in range(5)]
    receipt = await adapter_for(client).send(
        agent_reply("See the files", *attachments), with_token(1)
    )
    assert receipt.external_ids == ("1", "2", "3", "4", "5", "6")
    assert receipt.quota_messages == 1
    assert [len(b["messages"]) for b in bodies(reply)] == [5]
    assert bodies(push)[0]["messages"] == [
        {"type": "text", "text": "4.pdf: https://gw.test/media/acme/f4"}
    ]
    # the pushed batch is batch 1 of this reply, whichever way batch 0 went
    assert push.calls.last.request.headers["x-line-retry-key"] == retry_key(
        "acme", "zd-comment-1", 1
    )


async def test_long_text_is_split_at_5000(client: httpx.AsyncClient, api: respx.MockRouter) -> None:
    push = push_route(api).mock(return_value=sent("1", "2", "3"))
    text = "\n\n".join(["a" * 4000, "b" * 4000, "c" * 3990])
    assert len(text) > 12000 - 10
    await adapter_for(client).send(agent_reply(text), TO, [])
    (body,) = bodies(push)
    assert [len(m["text"]) for m in body["messages"]] == [4000, 4000, 3990]
    assert all(m["type"] == "text" for m in body["messages"])


async def test_the_retry_key_is_stable_per_reply(
    client: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    push = push_route(api).mock(return_value=sent("1"))
    adapter = adapter_for(client)
    await adapter.send(agent_reply("hi"), TO, [])
    await adapter.send(agent_reply("hi"), TO, [])
    await adapter.send(agent_reply("hi", dedup_key="zd-comment-2"), TO, [])
    keys = [call.request.headers["x-line-retry-key"] for call in push.calls]
    assert keys[0] == keys[1] != keys[2]
    assert keys[0] == retry_key("acme", "zd-comment-1", 0)
    assert retry_key("other", "zd-comment-1", 0) != keys[0]


async def test_a_repeated_retry_key_is_success(
    client: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    push_route(api).mock(return_value=failed(409, "The retry key is already accepted"))
    adapter = adapter_for(client)
    receipt = await adapter.send(agent_reply("hi"), TO, [])
    assert (receipt.external_ids, receipt.quota_messages, adapter.push_count) == ((), 0, 0)


@pytest.mark.parametrize(
    ("response", "error", "message", "retry_after"),
    [
        (
            failed(
                429,
                "The API rate limit has been exceeded. Try again later.",
                **{"Retry-After": "7"},
            ),
            RetryableError,
            "line push: rate limited (HTTP 429)",
            7.0,
        ),
        (
            failed(429, "You have reached your monthly limit."),
            PermanentError,
            "line: monthly message quota reached",
            None,
        ),
        (failed(500, "Internal server error"), RetryableError, "line push: HTTP 500", None),
        (httpx.Response(502, text="<html>bad</html>"), RetryableError, "line push: HTTP 502", None),
        (
            failed(400, "The request body has 2 error(s)"),
            PermanentError,
            "line push: HTTP 400",
            None,
        ),
        (
            failed(403, "Access to this API is not available for your account"),
            PermanentError,
            "line push: HTTP 403",
            None,
        ),
    ],
    ids=["429-rate", "429-quota", "500", "502-html", "400", "403"],
)
async def test_push_errors_are_classified(
    client: httpx.AsyncClient,
    api: respx.MockRouter,
    response: httpx.Response,
    error: type[Exception],
    message: str,
    retry_after: float | None,
) -> None:
    push_route(api).mock(return_value=response)
    with pytest.raises(error) as caught:
        await adapter_for(client).send(agent_reply("hi"), TO, [])
    assert str(caught.value) == message
    if isinstance(caught.value, RetryableError):
        assert caught.value.retry_after == retry_after


@pytest.mark.parametrize(
    "exc", [httpx.ReadTimeout("slow"), httpx.ConnectError("refused")], ids=["timeout", "connect"]
)
async def test_push_transport_failures_are_retryable_without_the_token(
    client: httpx.AsyncClient, api: respx.MockRouter, exc: Exception
) -> None:
    push_route(api).mock(side_effect=exc)
    with pytest.raises(RetryableError) as caught:
        await adapter_for(client).send(agent_reply("hi"), TO, [])
    assert str(caught.value) == f"line push: {type(exc).__name__}"
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


async def test_a_rejected_token_is_permanent_and_logged(
    client: httpx.AsyncClient, api: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    push_route(api).mock(return_value=failed(401, "Authentication failed. Confirm token."))
    with caplog.at_level(logging.WARNING), pytest.raises(PermanentError) as caught:
        await adapter_for(client).send(agent_reply("hi"), TO, [])
    assert str(caught.value) == "line: channel access token rejected (HTTP 401)"
    assert caught.value.status == 401
    assert "line account acme" in caplog.text
    assert TOKEN not in caplog.text


async def test_attachments_go_by_media_link(
    client: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    push = push_route(api).mock(return_value=sent("1"))
    attachments = [
        Attachment(kind="image", ref="a1", mime_type="image/jpeg", size=1000),
        Attachment(kind="image", ref="a2", filename="label.png"),
        Attachment(kind="image", ref="a3", mime_type="image/gif", filename="shrug.gif"),
        Attachment(kind="video", ref="a4", mime_type="video/mp4", filename="howto.mp4"),
        Attachment(kind="audio", ref="a5", mime_type="audio/x-m4a", duration=12.5),
        Attachment(kind="voice", ref="a6", mime_type="audio/mp4"),
        Attachment(kind="audio", ref="a7", mime_type="audio/ogg"),
        Attachment(kind="document", ref="a8", filename="../manual.pdf"),
        Attachment(kind="image", ref="a9", mime_type="image/jpeg", size=11 * 1024 * 1024),
    ]
    await adapter_for(client).send(agent_reply("", *attachments), TO, [])
    messages = [m for b in bodies(push) for m in b["messages"]]

    def link(ref: str) -> str:
        return f"https://gw.test/media/acme/{ref}"

    assert messages == [
        {"type": "image", "originalContentUrl": link("a1"), "previewImageUrl": link("a1")},
        {"type": "image", "originalContentUrl": link("a2"), "previewImageUrl": link("a2")},
        {"type": "text", "text": f"shrug.gif: {link('a3')}"},
        {
            "type": "video",
            "originalContentUrl": link("a4"),
            "previewImageUrl": "https://bridge.test/media/preview/video.png",
        },
        {"type": "audio", "originalContentUrl": link("a5"), "duration": 12500},
        {"type": "audio", "originalContentUrl": link("a6"), "duration": 60000},
        {"type": "text", "text": f"Audio: {link('a7')}"},
        {"type": "text", "text": f"manual.pdf: {link('a8')}"},
        {"type": "text", "text": f"Image: {link('a9')}"},
    ]


async def test_send_nothing(client: httpx.AsyncClient, api: respx.MockRouter) -> None:
    receipt = await adapter_for(client).send(agent_reply(" \n "), with_token(1), [])
    assert (receipt.external_ids, receipt.used_reply_token) == ((), False)
    assert not api.calls


async def test_an_unexpected_success_body_is_still_a_success(
    client: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    push_route(api).mock(return_value=httpx.Response(200, json={}))
    receipt = await adapter_for(client).send(agent_reply("hi"), TO, [])
    assert (receipt.external_ids, receipt.quota_messages) == ((), 1)


async def test_reengage_is_never_needed(client: httpx.AsyncClient) -> None:
    with pytest.raises(PermanentError, match="LINE has no reply window"):
        await adapter_for(client).reengage(TO)


# --- outbound: content downloads and profiles -------------------------------------------

CONTENT = f"{DATA}/v2/bot/message/500000000000000004/content"
IMAGE = Attachment(kind="image", ref="500000000000000004")


async def test_fetch(client: httpx.AsyncClient, api: respx.MockRouter) -> None:
    route = api.get(CONTENT).mock(
        return_value=httpx.Response(
            200, content=b"\xff\xd8jpeg", headers={"content-type": "image/jpeg"}
        )
    )
    upload = await adapter_for(client).fetch(IMAGE)
    assert upload == Upload("line-500000000000000004.jpg", "image/jpeg", b"\xff\xd8jpeg")
    assert route.calls.last.request.headers["authorization"] == f"Bearer {TOKEN}"


async def test_fetch_keeps_the_file_name(client: httpx.AsyncClient, api: respx.MockRouter) -> None:
    api.get(f"{DATA}/v2/bot/message/500000000000000008/content").mock(
        return_value=httpx.Response(
            200, content=b"%PDF", headers={"content-type": "application/pdf"}
        )
    )
    doc = Attachment(kind="document", ref="500000000000000008", filename="..\\請求書.pdf")
    assert await adapter_for(client).fetch(doc) == Upload("請求書.pdf", "application/pdf", b"%PDF")


async def _chunks() -> AsyncIterator[bytes]:
    for _ in range(10):
        yield b"x" * 16


@pytest.mark.parametrize(
    "download",
    [
        lambda: httpx.Response(200, content=_chunks()),  # no Content-Length: only counting stops it
        lambda: httpx.Response(200, content=b"x" * 160),
    ],
    ids=["streamed", "content-length"],
)
async def test_fetch_caps_the_bytes_read(
    client: httpx.AsyncClient, api: respx.MockRouter, download: Any
) -> None:
    api.get(CONTENT).mock(side_effect=lambda request: download())
    with pytest.raises(PermanentError, match="over the 50-byte limit"):
        await adapter_for(client, max_media_bytes=50).fetch(IMAGE)


@pytest.mark.parametrize(
    ("response", "error", "message"),
    [
        (
            httpx.Response(404),
            PermanentError,
            "line content download: HTTP 404 (expired or removed)",
        ),
        (
            httpx.Response(410),
            PermanentError,
            "line content download: HTTP 410 (expired or removed)",
        ),
        (httpx.Response(202), RetryableError, "line content download: not ready yet (HTTP 202)"),
        (httpx.Response(503), RetryableError, "line content download: HTTP 503"),
        (httpx.Response(401), PermanentError, "line: channel access token rejected (HTTP 401)"),
    ],
    ids=["404", "410", "202", "503", "401"],
)
async def test_fetch_errors(
    client: httpx.AsyncClient,
    api: respx.MockRouter,
    response: httpx.Response,
    error: type[Exception],
    message: str,
) -> None:
    api.get(CONTENT).mock(return_value=response)
    with pytest.raises(error) as caught:
        await adapter_for(client).fetch(IMAGE)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("attachment", "message"),
    [
        (
            Attachment(kind="image", ref="https://photos.example.com/p/8841.jpg"),
            "line: external content is kept as a link",
        ),
        (Attachment(kind="image", ref="../../v2/bot/info"), "not a LINE message id"),
        (Attachment(kind="image", ref="500000000000000004", size=51), "over the 50-byte limit"),
    ],
    ids=["external", "not-an-id", "declared-too-large"],
)
async def test_fetch_refuses_without_calling(
    client: httpx.AsyncClient, api: respx.MockRouter, attachment: Attachment, message: str
) -> None:
    with pytest.raises(PermanentError, match=message):
        await adapter_for(client, max_media_bytes=50).fetch(attachment)
    assert not api.calls


def profile_body(name: str) -> httpx.Response:
    return httpx.Response(200, json={"displayName": name, "userId": ANN, "pictureUrl": "https://x"})


async def test_profile(client: httpx.AsyncClient, api: respx.MockRouter) -> None:
    api.get(f"{API}/v2/bot/profile/{ANN}").mock(return_value=profile_body("Ann"))
    api.get(f"{API}/v2/bot/group/{GROUP}/member/{ANN}").mock(return_value=profile_body("Ann G"))
    api.get(f"{API}/v2/bot/room/{ROOM}/member/{ANN}").mock(return_value=profile_body("Ann R"))
    adapter = adapter_for(client)
    assert await adapter.profile(ANN) == "Ann"
    assert await adapter.profile(ANN, group_id=GROUP) == "Ann G"
    assert await adapter.profile(ANN, room_id=ROOM) == "Ann R"
    assert await adapter.display_name(ANN, GROUP) == "Ann G"
    assert await adapter.display_name(ANN, ROOM) == "Ann R"
    assert await adapter.display_name(ANN, ANN) == "Ann"
    assert await adapter.display_name("group-member", GROUP) is None
    assert api.calls.call_count == 6


@pytest.mark.parametrize(
    "outcome",
    [
        httpx.Response(404, json={"message": "Not found"}),
        httpx.Response(401, json={"message": "Authentication failed"}),
        httpx.Response(200, json={"userId": ANN}),
        httpx.ReadTimeout("slow"),
        httpx.ConnectError("refused"),
    ],
    ids=["404", "401", "no-name", "timeout", "connect"],
)
async def test_a_failed_profile_lookup_is_none(
    client: httpx.AsyncClient, api: respx.MockRouter, outcome: Any
) -> None:
    api.get(f"{API}/v2/bot/profile/{ANN}").mock(side_effect=[outcome])
    assert await adapter_for(client).profile(ANN) is None


async def test_profile_ids_never_reach_the_path_unchecked(
    client: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    adapter = adapter_for(client)
    assert await adapter.profile("../info") is None
    assert await adapter.profile(ANN, group_id="C1/../x") is None
    assert not api.calls


async def test_set_webhook(client: httpx.AsyncClient, api: respx.MockRouter) -> None:
    route = api.put(f"{API}/v2/bot/channel/webhook/endpoint").mock(
        return_value=httpx.Response(200, json={})
    )
    await adapter_for(client).set_webhook("https://gw.example/webhooks/acme/line")
    assert bodies(route) == [{"endpoint": "https://gw.example/webhooks/acme/line"}]
    assert route.calls.last.request.headers["authorization"] == f"Bearer {TOKEN}"


async def test_set_webhook_errors_are_classified(
    client: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    api.put(f"{API}/v2/bot/channel/webhook/endpoint").mock(
        return_value=failed(400, "Invalid webhook endpoint URL")
    )
    with pytest.raises(PermanentError, match="line set webhook: HTTP 400"):
        await adapter_for(client).set_webhook("http://not-https.example")


async def test_check_token(client: httpx.AsyncClient, api: respx.MockRouter) -> None:
    info = {
        "userId": "U" + "a1" * 16,
        "basicId": "@216ru",
        "displayName": "Acme",
        "chatMode": "chat",
    }
    api.get(f"{API}/v2/bot/info").mock(
        side_effect=[httpx.Response(200, json=info), failed(401, "Authentication failed")]
    )
    adapter = adapter_for(client)
    await adapter.check_token()
    with pytest.raises(PermanentError, match=r"rejected \(HTTP 401\)"):
        await adapter.check_token()


# --- channel access tokens v2.1 ---------------------------------------------------------

_PRIVATE = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PRIVATE_JWK = jwk.construct(
    _PRIVATE.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ),
    "RS256",
).to_dict() | {"kid": "sDTOzw5wIfWxxxxzcmeQA", "use": "sig"}
PUBLIC_JWK = jwk.construct(
    _PRIVATE.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ),
    "RS256",
).to_dict()
CACHE_NAME = f"line:{CHANNEL_ID}"
TOKEN_URL = f"{API}/oauth2/v2.1/token"


def v21(**overrides: Any) -> dict[str, Any]:
    return {"access_token": None, "private_jwk": json.dumps(PRIVATE_JWK), **overrides}


def issued(token: str, expires_in: int = 2592000) -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": expires_in,
            "key_id": "sDTOzw5wIfxxxxPEzcmeQA",
        },
    )


async def test_a_v21_token_is_issued_once_and_shared(
    client: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    issue = api.post(TOKEN_URL).mock(return_value=issued("v21-token-1"))
    push = push_route(api).mock(return_value=sent("1"))
    cache = FakeTokens()
    adapter = adapter_for(client, cache, **v21(token_lifetime_seconds=86400))
    await adapter.send(agent_reply("one"), TO, [])
    await adapter.send(agent_reply("two"), TO, [])

    assert issue.call_count == 1
    assert cache.locks == 1
    assert cache.tokens == {CACHE_NAME: "v21-token-1"}
    assert cache.ttls[CACHE_NAME] == cache_ttl(2592000) == 2592000 - 259200
    assert [c.request.headers["authorization"] for c in push.calls] == ["Bearer v21-token-1"] * 2

    request = issue.calls.last.request
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    form = {k: v for k, (v,) in parse_qs(request.content.decode()).items()}
    assert form.keys() == {"grant_type", "client_assertion_type", "client_assertion"}
    assert form["grant_type"] == "client_credentials"
    assert form["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    assertion = form["client_assertion"]
    assert jwt.get_unverified_header(assertion) == {
        "alg": "RS256",
        "typ": "JWT",
        "kid": "sDTOzw5wIfWxxxxzcmeQA",
    }
    # the clock is pinned in the past, so the expiry is checked here, not by jose
    claims = jwt.decode(
        assertion,
        PUBLIC_JWK,
        algorithms=["RS256"],
        audience="https://api.line.me/",
        options={"verify_exp": False},
    )
    assert claims == {
        "iss": CHANNEL_ID,
        "sub": CHANNEL_ID,
        "aud": "https://api.line.me/",
        "exp": int(NOW) + ASSERTION_LIFETIME,
        "token_exp": 86400,
    }
    assert ASSERTION_LIFETIME <= 30 * 60


async def test_a_cached_v21_token_is_used_without_the_lock(
    client: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    issue = api.post(TOKEN_URL)
    push = push_route(api).mock(return_value=sent("1"))
    cache = FakeTokens(**{CACHE_NAME: "from-another-process"})
    await adapter_for(client, cache, **v21()).send(agent_reply("hi"), TO, [])
    assert (issue.called, cache.locks) == (False, 0)
    assert push.calls.last.request.headers["authorization"] == "Bearer from-another-process"


async def test_a_token_issued_while_waiting_for_the_lock_is_used(
    client: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    issue = api.post(TOKEN_URL)
    push = push_route(api).mock(return_value=sent("1"))
    cache = FakeTokens()
    cache.on_lock = lambda c: c.tokens.setdefault(CACHE_NAME, "won-the-race")
    await adapter_for(client, cache, **v21()).send(agent_reply("hi"), TO, [])
    assert not issue.called
    assert push.calls.last.request.headers["authorization"] == "Bearer won-the-race"


@pytest.mark.parametrize(
    ("response", "error"),
    [
        (
            httpx.Response(400, json={"error": "invalid_client", "error_description": "bad"}),
            PermanentError,
        ),
        (httpx.Response(200, json={"token_type": "Bearer"}), PermanentError),
        (httpx.Response(503), RetryableError),
    ],
    ids=["400", "no-token", "503"],
)
async def test_token_issue_errors(
    client: httpx.AsyncClient,
    api: respx.MockRouter,
    response: httpx.Response,
    error: type[Exception],
) -> None:
    api.post(TOKEN_URL).mock(return_value=response)
    push = push_route(api)
    cache = FakeTokens()
    with pytest.raises(error) as caught:
        await adapter_for(client, cache, **v21()).send(agent_reply("hi"), TO, [])
    assert "line token issue" in str(caught.value)
    assert "eyJ" not in str(caught.value)  # no assertion in the message
    assert not push.called
    assert cache.tokens == {}


async def test_a_rejected_cached_v21_token_is_dropped_and_renewed(
    client: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    api.post(TOKEN_URL).mock(return_value=issued("fresh-token"))
    push = push_route(api).mock(side_effect=[failed(401, "Authentication failed"), sent("1")])
    cache = FakeTokens(**{CACHE_NAME: "revoked-token"})
    adapter = adapter_for(client, cache, **v21())
    with pytest.raises(RetryableError) as caught:
        await adapter.send(agent_reply("hi"), TO, [])
    assert caught.value.status == 401
    assert await cache.get(CACHE_NAME) is None
    receipt = await adapter.send(agent_reply("hi"), TO, [])
    assert receipt.external_ids == ("1",)
    assert push.calls.last.request.headers["authorization"] == "Bearer fresh-token"


async def test_a_rejected_fresh_v21_token_is_permanent_and_kept(
    client: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    issue = api.post(TOKEN_URL).mock(return_value=issued("fresh-token"))
    push_route(api).mock(return_value=failed(401, "Authentication failed"))
    cache = FakeTokens()
    adapter = adapter_for(client, cache, **v21())
    for _ in range(2):
        with pytest.raises(PermanentError, match=r"rejected \(HTTP 401\)"):
            await adapter.send(agent_reply("hi"), TO, [])
    assert issue.call_count == 1  # no token storm against LINE's 30-token limit
    assert cache.tokens == {CACHE_NAME: "fresh-token"}


async def test_another_processs_token_is_not_dropped(
    client: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    push_route(api).mock(return_value=failed(401, "Authentication failed"))
    cache = FakeTokens(**{CACHE_NAME: "old-token"})
    adapter = adapter_for(client, cache, **v21())

    async def replaced(name: str) -> str | None:
        # another process renews between our 401 and our drop
        cache.tokens[name] = "renewed-elsewhere" if cache.locks else cache.tokens[name]
        return cache.tokens[name]

    cache.get = replaced  # type: ignore[method-assign]
    with pytest.raises(RetryableError):
        await adapter.send(agent_reply("hi"), TO, [])
    assert cache.tokens[CACHE_NAME] == "renewed-elsewhere"


async def test_check_token_renews_a_dropped_v21_token(
    client: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    api.post(TOKEN_URL).mock(return_value=issued("fresh-token"))
    info = api.get(f"{API}/v2/bot/info").mock(
        side_effect=[failed(401, "Authentication failed"), httpx.Response(200, json={})]
    )
    cache = FakeTokens(**{CACHE_NAME: "revoked-token"})
    await adapter_for(client, cache, **v21()).check_token()
    assert info.calls.last.request.headers["authorization"] == "Bearer fresh-token"


async def test_a_long_lived_token_never_touches_the_cache(
    client: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    push_route(api).mock(return_value=sent("1"))
    cache = FakeTokens()
    await adapter_for(client, cache).send(agent_reply("hi"), TO, [])
    assert (cache.tokens, cache.locks) == ({}, 0)


def test_cache_ttl_renews_before_expiry() -> None:
    assert cache_ttl(30 * 86400) == 27 * 86400
    assert cache_ttl(86400) == 86400 - 8640
    assert cache_ttl(7200) == 3600  # at least an hour early
    assert cache_ttl(600) == 300  # but never past half its life


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        json.dumps(["a"]),
        json.dumps({k: v for k, v in PRIVATE_JWK.items() if k != "kid"}),
        json.dumps({"kty": "oct", "k": "AAAA", "kid": "x"}),
        json.dumps(PUBLIC_JWK | {"kid": "x"}),
    ],
    ids=["not-json", "not-object", "no-kid", "not-rsa", "public-key"],
)
def test_a_bad_private_jwk_is_a_config_error(text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        LineAdapter(
            "acme",
            config(access_token=None, private_jwk=text),
            httpx.AsyncClient(),
            FakeLinks(),
            FakeTokens(),
        )
    assert "AAAA" not in str(caught.value) and PRIVATE_JWK["d"] not in str(caught.value)


def test_real_clock_assertion_is_valid_for_jose() -> None:
    adapter = LineAdapter(
        "acme",
        config(**v21()),
        httpx.AsyncClient(),
        FakeLinks(),
        FakeTokens(),
    )
    assertion = adapter._tokens.assertion()
    claims = jwt.decode(
        assertion, PUBLIC_JWK, algorithms=["RS256"], audience="https://api.line.me/"
    )
    assert 0 < claims["exp"] - time.time() <= 30 * 60


def test_an_edited_message_is_filed_as_an_edit_of_the_same_message() -> None:
    msg = only(fixture("message_edited"))
    assert (msg.edit_of, msg.external_id) == ("500000000000000011", "500000000000000011")
    assert msg.text == "Is the shop open on Sunday morning?"
    assert msg.thread == "Ca56f94637c2b3d4e5f60718293a4b5c6"
    assert render(msg).startswith("[Edited message 500000000000000011; the new text follows]")
