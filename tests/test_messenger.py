"""Messenger: fixtures through verify/parse, the Send API and CDN downloads under respx."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import respx
from hypothesis import given, settings
from hypothesis import strategies as st

from deskbridge.adapters.messenger import MessengerAdapter, MessengerReceiver, sample_message
from deskbridge.adapters.meta import sign
from deskbridge.config.accounts import MessengerConfig
from deskbridge.errors import (
    ParseFailed,
    PayloadInvalid,
    PermanentError,
    RetryableError,
    SignatureInvalid,
)
from deskbridge.schemas import (
    Attachment,
    Channel,
    ChannelAddress,
    Message,
    RawRequest,
    StatusUpdate,
    Upload,
)

from . import recorded
from .helpers import (
    APP_SECRET,
    META_APP,
    NOW,
    VERIFY_TOKEN,
    FakeLinks,
    agent_reply,
    bodies,
    graph_failed,
    graph_sent,
    last_wrote,
    meta_request,
)

CHANNEL = "messenger"
SCENARIOS = recorded.scenarios(CHANNEL)

PAGE_A = "104510000000001"
PAGE_B = "104510000000002"
PSID = "7100000000000001"
ROUTES = {PAGE_A: "acme", PAGE_B: "globex"}
TOKEN = "EAAGm0PX4ZCpsBAPageTokenForTests"
API = "https://graph.test"
SEND = f"{API}/v23.0/{PAGE_A}/messages"

RECEIVER = MessengerReceiver(
    "meta",
    META_APP,
    ROUTES,
    max_body_bytes=4 * 1024 * 1024,
)


def request(body: bytes, signature: str | None = "sign") -> RawRequest:
    return meta_request(body, "/webhooks/messenger", signature)


def fixture(scenario: str) -> bytes:
    return recorded.fixture(CHANNEL, scenario)


def parsed_dict(body: bytes) -> dict[str, Any]:
    req = request(body)
    RECEIVER.verify(req)
    parsed = RECEIVER.parse(req)
    return {
        "events": [event.model_dump(mode="json") for event in parsed.events],
        "unrouted": parsed.unrouted,
    }


def events(body: bytes) -> list[Any]:
    return RECEIVER.parse(request(body)).events


def only(body: bytes) -> Message:
    (event,) = events(body)
    assert isinstance(event, Message)
    return event


def edited(scenario: str, change: Any) -> bytes:
    """The fixture with ``change(raw)`` applied to its decoded JSON."""
    raw = json.loads(fixture(scenario))
    change(raw)
    return json.dumps(raw).encode()


def first_item(raw: dict[str, Any]) -> dict[str, Any]:
    item: dict[str, Any] = raw["entry"][0]["messaging"][0]
    return item


# --- inbound: recorded-shape fixtures ------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_fixture_parses_to_expected(scenario: str) -> None:
    got = parsed_dict(fixture(scenario))
    recorded.assert_expected(CHANNEL, scenario, got)


def test_every_scenario_of_the_brief_is_recorded() -> None:
    required = {
        "text", "image", "audio", "video", "file", "sticker_as_image", "sticker_new_type",
        "sticker_transition", "location", "quick_reply", "reply_to", "echo", "postback",
        "delivery", "read", "batch_two_pages_two_accounts_plus_unknown_page", "instagram",
    }  # fmt: skip
    assert required <= set(SCENARIOS)


def test_text_message_fields() -> None:
    msg = only(fixture("text"))
    mid = first_item(json.loads(fixture("text")))["message"]["mid"]
    assert (msg.account, msg.channel, msg.dedup_key, msg.external_id) == (
        "acme",
        Channel.MESSENGER,
        mid,
        mid,
    )
    assert (msg.thread, msg.sender.external_id, msg.text) == (
        PSID,
        PSID,
        "Hi, my order #4471 hasn't arrived yet.",
    )
    assert msg.occurred_at == datetime(2025, 6, 15, 15, 6, 40, tzinfo=UTC)
    (ident,) = msg.sender.identities
    assert (ident.kind, ident.channel, ident.value, ident.strength, ident.source) == (
        "channel_user",
        Channel.MESSENGER,
        PSID,
        "strong",
        "messenger",
    )


@pytest.mark.parametrize(
    ("scenario", "kind"),
    [("image", "image"), ("audio", "audio"), ("video", "video"), ("file", "document")],
)
def test_media_is_an_attachment_by_cdn_url(scenario: str, kind: str) -> None:
    msg = only(fixture(scenario))
    (attachment,) = msg.attachments
    url = first_item(json.loads(fixture(scenario)))["message"]["attachments"][0]["payload"]["url"]
    assert (attachment.kind, attachment.ref) == (kind, url)
    assert (msg.text, msg.note) == ("", None)


def test_timestamps_keep_their_milliseconds() -> None:
    body = edited("text", lambda raw: first_item(raw).update(timestamp=1750000000123))
    assert only(body).occurred_at == datetime(2025, 6, 15, 15, 6, 40, 123000, tzinfo=UTC)


@pytest.mark.parametrize("scenario", ["sticker_as_image", "sticker_new_type", "sticker_transition"])
def test_a_sticker_is_one_sticker_attachment(scenario: str) -> None:
    msg = only(fixture(scenario))
    (sticker,) = msg.attachments
    assert sticker.kind == "sticker"
    assert sticker.ref.startswith("https://scontent.xx.fbcdn.net/")
    assert msg.note in ("Sticker", "Sticker (thumbs up)")


def test_the_like_sticker_is_named() -> None:
    assert only(fixture("sticker_as_image")).note == "Sticker (thumbs up)"
    assert only(fixture("sticker_new_type")).note == "Sticker"


def test_transition_pair_in_either_order_and_sticker_without_url() -> None:
    def reverse(raw: dict[str, Any]) -> None:
        first_item(raw)["message"]["attachments"].reverse()

    assert len(only(edited("sticker_transition", reverse)).attachments) == 1

    def drop_sticker_url(raw: dict[str, Any]) -> None:
        del first_item(raw)["message"]["attachments"][1]["payload"]["url"]

    msg = only(edited("sticker_transition", drop_sticker_url))
    (sticker,) = msg.attachments
    assert (sticker.kind, sticker.ref) == (
        "sticker",
        first_item(json.loads(fixture("sticker_transition")))["message"]["attachments"][0][
            "payload"
        ]["url"],
    )


def test_legacy_location() -> None:
    msg = only(fixture("location"))
    assert msg.location is not None
    assert (msg.location.latitude, msg.location.longitude, msg.location.name) == (
        52.520008,
        13.404954,
        "Ann's Location",
    )
    assert (msg.attachments, msg.note) == ((), None)


def test_quick_reply_keeps_the_button_title_and_notes_the_payload() -> None:
    msg = only(fixture("quick_reply"))
    assert (msg.text, msg.note) == ("Track my order", "Quick reply: TRACK_ORDER")


def test_reply_to() -> None:
    msg = only(fixture("reply_to"))
    assert (msg.text, msg.reply_to) == ("Yes, that one", "m_1fTq8oLumEyIp3Q2MR-aY7IfLZDamVrALniheU")


def test_shares_become_notes() -> None:
    msg = only(fixture("fallback_share"))
    assert msg.note == "Shared link: Order #4471 - Example Shop https://shop.example/orders/4471"

    def reel(raw: dict[str, Any]) -> None:
        first_item(raw)["message"] = {
            "mid": "m_1",
            "attachments": [
                {"type": "ig_reel", "payload": {"url": "https://ig.example/r/1", "title": "Fun"}},
                {"type": "fallback", "payload": None},
                {"type": "hologram", "payload": {}},
            ],
        }

    assert only(edited("text", reel)).note == (
        "Shared Instagram reel: Fun https://ig.example/r/1\n"
        "Shared link\n"
        "Unsupported Messenger attachment (hologram)"
    )


def test_a_message_without_content_is_visible() -> None:
    body = edited("text", lambda raw: first_item(raw)["message"].pop("text"))
    msg = only(body)
    assert (msg.text, msg.note) == ("", "Unsupported Messenger message")


def test_postback_is_a_message_with_the_button() -> None:
    msg = only(fixture("postback"))
    mid = first_item(json.loads(fixture("postback")))["postback"]["mid"]
    assert (msg.text, msg.note, msg.dedup_key, msg.external_id) == (
        "Talk to a person",
        "Button: HUMAN_HANDOFF",
        mid,
        mid,
    )


def test_postback_without_mid_is_keyed_by_sender_and_time() -> None:
    msg = only(fixture("postback_get_started"))
    assert msg.dedup_key == f"postback:{PSID}:1750000000000"
    assert (msg.text, msg.note) == ("Get Started", "Button: GET_STARTED")


def test_delivery_is_one_status_per_mid_plus_the_watermark() -> None:
    *per_mid, mark = events(fixture("delivery"))
    mids = first_item(json.loads(fixture("delivery")))["delivery"]["mids"]
    assert [(s.external_id, s.dedup_key) for s in per_mid] == [(m, f"delivered:{m}") for m in mids]
    assert isinstance(mark, StatusUpdate)
    assert (mark.external_id, mark.dedup_key, mark.thread) == (
        None,
        f"delivered:{PSID}:1750000060000",
        PSID,
    )
    assert mark.watermark == datetime(2025, 6, 15, 15, 7, 40, tzinfo=UTC)
    assert all(s.status == "delivered" and s.thread == PSID for s in (*per_mid, mark))


def test_delivery_without_mids_is_only_the_watermark() -> None:
    body = edited("delivery", lambda raw: first_item(raw)["delivery"].pop("mids"))
    (mark,) = events(body)
    assert isinstance(mark, StatusUpdate)
    assert (mark.status, mark.external_id) == ("delivered", None)


def test_read_is_a_watermark() -> None:
    (read,) = events(fixture("read"))
    assert isinstance(read, StatusUpdate)
    assert (read.status, read.external_id, read.dedup_key, read.thread) == (
        "read",
        None,
        f"read:{PSID}:1750000120000",
        PSID,
    )
    assert read.watermark == datetime(2025, 6, 15, 15, 8, 40, tzinfo=UTC)
    assert read.occurred_at == datetime(2025, 6, 15, 15, 8, 40, 500000, tzinfo=UTC)


def test_batch_routes_each_page_to_its_account_and_counts_the_unknown_one() -> None:
    parsed = RECEIVER.parse(request(fixture("batch_two_pages_two_accounts_plus_unknown_page")))
    assert parsed.unrouted == 1
    assert [(e.account, e.thread) for e in parsed.events] == [
        ("acme", PSID),
        ("acme", PSID),
        ("globex", "7100000000000002"),
    ]


@pytest.mark.parametrize("scenario", ["echo", "instagram", "reaction"])
def test_events_we_do_not_file_are_acknowledged_empty(scenario: str) -> None:
    parsed = RECEIVER.parse(request(fixture(scenario)))
    assert (parsed.events, parsed.unrouted) == ([], 0)


@pytest.mark.parametrize(
    "change",
    [
        lambda item: item["message"].pop("is_echo"),  # the Page as sender is ours either way
        lambda item: item.update(sender={"user_ref": "ur-1"}),
    ],
    ids=["page-as-sender", "user-ref-sender"],
)
def test_messages_without_a_customer_psid_are_dropped(change: Any) -> None:
    assert events(edited("echo", lambda raw: change(first_item(raw)))) == []


def test_string_timestamps_and_numeric_ids_are_read() -> None:
    def loosen(raw: dict[str, Any]) -> None:
        raw["entry"][0]["id"] = int(PAGE_A)
        first_item(raw).update(timestamp="1750000000000", sender={"id": int(PSID)})

    msg = only(edited("text", loosen))
    assert (msg.account, msg.thread) == ("acme", PSID)
    assert msg.occurred_at == datetime(2025, 6, 15, 15, 6, 40, tzinfo=UTC)


def test_a_broken_entry_of_an_unknown_page_does_not_fail_the_batch() -> None:
    def break_unknown(raw: dict[str, Any]) -> None:
        raw["entry"][2]["messaging"] = [{"sender": {"id": []}, "message": 7}, 5]

    parsed = RECEIVER.parse(
        request(edited("batch_two_pages_two_accounts_plus_unknown_page", break_unknown))
    )
    assert (len(parsed.events), parsed.unrouted) == (3, 1)


def test_sample_message_round_trips() -> None:
    body = sample_message("héllo", page_id=PAGE_B, psid=PSID, mid="m_sim1", timestamp_ms=1_000)
    msg = only(body)
    assert (msg.account, msg.text, msg.thread, msg.dedup_key) == ("globex", "héllo", PSID, "m_sim1")
    assert msg.occurred_at == datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC)


# --- inbound: signatures, handshake, refusals ------------------------------------------


def test_receiver_shape() -> None:
    assert RECEIVER.channel is Channel.MESSENGER
    assert (RECEIVER.app_name, RECEIVER.max_body_bytes) == ("meta", 4 * 1024 * 1024)


@pytest.mark.parametrize(
    "signature",
    [
        None,
        "",
        "sha256=" + "0" * 64,
        "sha1=0123456789abcdef0123456789abcdef01234567",
        sign("another-secret", fixture("text")),
    ],
    ids=["missing", "empty", "zeros", "sha1-only", "other-secret"],
)
def test_verify_refuses_a_missing_or_wrong_signature(signature: str | None) -> None:
    with pytest.raises(SignatureInvalid):
        RECEIVER.verify(request(fixture("text"), signature=signature))


def test_verify_refuses_a_body_changed_after_signing() -> None:
    req = request(fixture("text"))
    tampered = RawRequest(
        method="POST", path=req.path, headers=req.headers, body=req.body.replace(b"4471", b"4472")
    )
    with pytest.raises(SignatureInvalid):
        RECEIVER.verify(tampered)


def handshake_query(token: str) -> RawRequest:
    query = {"hub.mode": "subscribe", "hub.verify_token": token, "hub.challenge": "1158201444"}
    return RawRequest(method="GET", path="/webhooks/messenger", query=query)


def test_handshake_echoes_the_challenge_for_the_right_token() -> None:
    answer = RECEIVER.handshake(handshake_query(VERIFY_TOKEN))
    assert (answer.status, answer.body) == (200, "1158201444")


@pytest.mark.parametrize("token", ["", "wrong", VERIFY_TOKEN + "x", APP_SECRET])
def test_handshake_refuses_a_wrong_token(token: str) -> None:
    assert RECEIVER.handshake(handshake_query(token)).status == 403


@pytest.mark.parametrize(
    "body",
    [
        fixture("text")[:-20],
        b"[1, 2]",
        b'"page"',
        b"",
        b"\xff\xfe\x00",
        b"NaN",
        b"[" * 100_000,
    ],
    ids=["truncated", "array", "string", "empty", "not-utf8", "nan", "deep"],
)
def test_bodies_that_are_not_json_objects_are_invalid(body: bytes) -> None:
    with pytest.raises(PayloadInvalid):
        RECEIVER.parse(request(body))


def _item(**fields: Any) -> bytes:
    item = {"sender": {"id": PSID}, "recipient": {"id": PAGE_A}, "timestamp": 1} | fields
    return json.dumps({"object": "page", "entry": [{"id": PAGE_A, "messaging": [item]}]}).encode()


@pytest.mark.parametrize(
    "body",
    [
        b"{}",
        b'{"object": "page"}',
        b'{"object": "page", "entry": {"id": "1"}}',
        b'{"object": "page", "entry": [{"time": 1}]}',
        b'{"object": "whatsapp_business_account", "entry": []}',
        b'{"object": 7, "entry": []}',
        json.dumps({"object": "page", "entry": [{"id": PAGE_A, "messaging": {}}]}).encode(),
        json.dumps({"object": "page", "entry": [{"id": PAGE_A, "messaging": [5]}]}).encode(),
        _item(sender={"id": ["x"]}),
        _item(message={"mid": 12, "text": "secret customer text"}),
        _item(message={"mid": "", "text": "secret customer text"}),
        _item(timestamp=1e30),
        _item(timestamp=-1),
        _item(delivery={"mids": ["m_1"]}),
        _item(postback={"title": ["secret customer text"]}),
        _item(recipient={"id": {"x": 1}}),
        # A lone surrogate escape: valid JSON, but no storable text.
        _item(message={"mid": "m_1", "text": "a \ud800"}),
    ],
    ids=[
        "empty-object",
        "no-entry",
        "entry-object",
        "entry-without-id",
        "other-object",
        "object-number",
        "messaging-object",
        "messaging-number",
        "sender-id-list",
        "mid-number",
        "mid-empty",
        "timestamp-huge",
        "timestamp-negative",
        "delivery-without-watermark",
        "postback-title-list",
        "recipient-id-object",
        "lone-surrogate",
    ],
)
def test_objects_that_are_not_readable_page_webhooks_fail_to_parse(body: bytes) -> None:
    """Not a Page webhook at all: ParseFailed. A Page webhook with an entry or event we
    cannot read: that item alone is a failure (no event), never quoting the body."""
    doc = json.loads(body)
    if doc.get("object") != "page" or not isinstance(doc.get("entry"), list):
        with pytest.raises(ParseFailed) as caught:
            RECEIVER.parse(request(body))
        assert caught.value.__cause__ is None
        return
    parsed = RECEIVER.parse(request(body))
    assert parsed.events == []
    (failure,) = parsed.failures
    assert "secret customer text" not in failure.error
    assert failure.app == "meta"
    # the item's own record, which parses to the same failure again
    again = RECEIVER.parse(request(failure.body))
    assert [(f.key, f.account) for f in again.failures] == [(failure.key, failure.account)]


def test_an_event_without_any_time_fails_alone() -> None:
    def untimed(raw: dict[str, Any]) -> None:
        del raw["entry"][0]["time"]
        del first_item(raw)["timestamp"]

    parsed = RECEIVER.parse(request(edited("text", untimed)))
    assert parsed.events == []
    assert [f.account for f in parsed.failures] == ["acme"]


_LEAF = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12)
)
_KEYS = st.sampled_from(
    ["object", "entry", "id", "time", "messaging", "sender", "recipient", "timestamp", "message",
     "mid", "text", "is_echo", "attachments", "type", "payload", "url", "sticker_id",
     "coordinates", "lat", "long", "quick_reply", "reply_to", "postback", "title", "delivery",
     "mids", "watermark", "read", "standby"]
) | st.text(max_size=8)  # fmt: skip
_JSON = st.recursive(
    _LEAF,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEYS, inner, max_size=6),
    max_leaves=25,
)
_TEXT = st.text(max_size=12)
_ATTACHMENT = st.fixed_dictionaries(
    {"type": st.sampled_from(["image", "audio", "video", "file", "sticker", "location",
                              "fallback", "template", "reel"]) | _TEXT},
    optional={
        "payload": st.none()
        | st.fixed_dictionaries(
            {},
            optional={
                "url": _TEXT,
                "title": _TEXT,
                "sticker_id": st.integers() | _TEXT,
                "coordinates": st.fixed_dictionaries(
                    {"lat": st.floats(-100, 100), "long": st.floats(-200, 200)}
                ),
            },
        ),
        "title": _TEXT,
        "url": _TEXT,
    },
)  # fmt: skip
_EVENT = st.one_of(
    st.fixed_dictionaries(
        {"message": st.fixed_dictionaries(
            {"mid": _TEXT},
            optional={
                "text": _TEXT,
                "is_echo": st.booleans(),
                "quick_reply": st.fixed_dictionaries({"payload": _TEXT}),
                "reply_to": st.fixed_dictionaries({"mid": _TEXT}),
                "attachments": st.lists(_ATTACHMENT, max_size=3),
            },
        )}
    ),
    st.fixed_dictionaries(
        {"postback": st.fixed_dictionaries({}, optional={"mid": _TEXT, "title": _TEXT,
                                                         "payload": _TEXT})}
    ),
    st.fixed_dictionaries(
        {"delivery": st.fixed_dictionaries(
            {"watermark": st.integers(min_value=-5, max_value=2**50)},
            optional={"mids": st.lists(_TEXT, max_size=3)},
        )}
    ),
    st.fixed_dictionaries({"read": st.fixed_dictionaries({"watermark": st.integers()})}),
    st.dictionaries(_KEYS, _JSON, max_size=2),
)  # fmt: skip
_ITEM = st.builds(
    lambda psid, ts, event: (
        {"sender": {"id": psid}, "recipient": {"id": PAGE_A}}
        | ({} if ts is None else {"timestamp": ts})
        | event
    ),
    st.sampled_from([PSID, PAGE_A, ""]) | st.integers(),
    st.none() | st.integers(min_value=-5, max_value=2**50) | _TEXT,
    _EVENT,
)
# Junk is _JSON's job; this one reaches event building, with random fields mixed in.
_BODY = st.builds(
    lambda pages, items: {
        "object": "page",
        "entry": [{"id": page, "time": 1, "messaging": items} for page in pages],
    },
    st.lists(st.sampled_from([PAGE_A, PAGE_B, "9"]), min_size=1, max_size=3),
    st.lists(_ITEM, max_size=3),
)


def _parses_or_refuses(body: bytes) -> None:
    try:
        parsed = RECEIVER.parse(request(body))
    except (PayloadInvalid, ParseFailed):
        return
    for event in parsed.events:
        event.model_dump_json()


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_parse_never_crashes_on_bytes(body: bytes) -> None:
    _parses_or_refuses(body)


@settings(max_examples=300, deadline=None)
@given(_JSON | _BODY)
def test_parse_never_crashes_on_json(value: Any) -> None:
    _parses_or_refuses(json.dumps(value).encode())


# --- outbound: the Send API under respx ---------------------------------------------------


def config(**overrides: Any) -> MessengerConfig:
    return MessengerConfig.model_validate(
        {"app": "meta", "page_id": PAGE_A, "page_access_token": TOKEN, "base_url": API} | overrides
    )


def adapter_for(
    client: httpx.AsyncClient, links: FakeLinks | None = None, **overrides: Any
) -> MessengerAdapter:
    return MessengerAdapter(
        "acme", config(**overrides), client, links or FakeLinks(), clock=NOW.timestamp
    )


def to(age: timedelta | None = timedelta(minutes=5)) -> ChannelAddress:
    return last_wrote(Channel.MESSENGER, PSID, age)


def sent(message_id: str) -> httpx.Response:
    return graph_sent(PSID, message_id)


async def test_send_text(client: httpx.AsyncClient, api: respx.MockRouter) -> None:
    route = api.post(SEND).mock(return_value=sent("m_out1"))
    receipt = await adapter_for(client).send(agent_reply("  Hello Ann!\n"), to())
    assert receipt.external_ids == ("m_out1",)
    assert bodies(route) == [
        {"recipient": {"id": PSID}, "messaging_type": "RESPONSE", "message": {"text": "Hello Ann!"}}
    ]
    call = route.calls.last.request
    assert call.headers["authorization"] == f"Bearer {TOKEN}"
    assert TOKEN not in str(call.url)
    assert call.headers["content-type"] == "application/json"


async def test_adapter_shape(client: httpx.AsyncClient) -> None:
    adapter = adapter_for(client)
    assert adapter.channel is Channel.MESSENGER
    assert (adapter.account, adapter.takes_files) == ("acme", False)


@pytest.mark.parametrize(
    ("age", "window"),
    [
        (timedelta(hours=23, minutes=59), {"messaging_type": "RESPONSE"}),
        (timedelta(hours=24, minutes=1), {"messaging_type": "MESSAGE_TAG", "tag": "HUMAN_AGENT"}),
        (timedelta(days=6, hours=23), {"messaging_type": "MESSAGE_TAG", "tag": "HUMAN_AGENT"}),
        (timedelta(seconds=-30), {"messaging_type": "RESPONSE"}),  # clocks disagree a little
    ],
    ids=["23h59m", "24h01m", "6d23h", "future"],
)
async def test_send_picks_the_messaging_type_by_window(
    client: httpx.AsyncClient, api: respx.MockRouter, age: timedelta, window: dict[str, str]
) -> None:
    route = api.post(SEND).mock(return_value=sent("m_out1"))
    await adapter_for(client).send(agent_reply("Sorry for the wait"), to(age))
    assert bodies(route) == [
        {"recipient": {"id": PSID}, **window, "message": {"text": "Sorry for the wait"}}
    ]


@pytest.mark.parametrize(
    ("age", "automated", "overrides", "reason"),
    [
        (timedelta(days=7, minutes=1), False, {}, "7-day human agent window"),
        (None, False, {}, "7-day human agent window"),
        (timedelta(hours=24, minutes=1), True, {}, "automated replies cannot use HUMAN_AGENT"),
        (timedelta(hours=24, minutes=1), False, {"human_agent_tag": False}, "24-hour window"),
        (timedelta(days=30), True, {}, "7-day human agent window"),
    ],
    ids=["7d01m", "never-wrote", "automated-24h01m", "tag-disabled-24h01m", "automated-30d"],
)
async def test_send_outside_the_windows_is_permanent_without_a_call(
    client: httpx.AsyncClient,
    api: respx.MockRouter,
    age: timedelta | None,
    automated: bool,
    overrides: dict[str, Any],
    reason: str,
) -> None:
    route = api.post(SEND).mock(return_value=sent("m_out1"))
    links = FakeLinks()
    reply = agent_reply(
        "Hello?", automated=automated, attachments=(Attachment(kind="image", ref="a"),)
    )
    with pytest.raises(PermanentError, match=reason):
        await adapter_for(client, links, **overrides).send(reply, to(age))
    assert not route.called
    assert links.asked == []


async def test_an_automated_reply_inside_24_hours_is_a_response(
    client: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    route = api.post(SEND).mock(return_value=sent("m_out1"))
    await adapter_for(client).send(agent_reply("Auto: got it", automated=True), to())
    assert bodies(route)[0]["messaging_type"] == "RESPONSE"


async def test_send_long_text_in_chunks_under_2000(
    client: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    route = api.post(SEND).mock(side_effect=[sent("m_1"), sent("m_2"), sent("m_3")])
    text = " ".join(f"w{i % 10}" for i in range(1500))
    assert len(text) == 4499
    receipt = await adapter_for(client).send(agent_reply(text), to())
    assert receipt.external_ids == ("m_1", "m_2", "m_3")
    chunks = [b["message"]["text"] for b in bodies(route)]
    assert len(chunks) == 3
    assert all(len(c) < 2000 for c in chunks)
    assert " ".join(chunks) == text


async def test_send_attachments_by_url_after_the_text(
    client: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    route = api.post(SEND).mock(side_effect=[sent(f"m_{i}") for i in range(1, 6)])
    links = FakeLinks()
    files = (
        Attachment(kind="image", ref="r1", mime_type="image/png"),
        Attachment(kind="document", ref="r2", mime_type="application/pdf"),
        Attachment(kind="voice", ref="r3", mime_type="audio/ogg"),
        Attachment(kind="video", ref="r4"),
    )
    receipt = await adapter_for(client, links).send(
        agent_reply("Here you go", attachments=files), to()
    )
    assert receipt.external_ids == ("m_1", "m_2", "m_3", "m_4", "m_5")
    sent_bodies = bodies(route)
    assert sent_bodies[0]["message"] == {"text": "Here you go"}
    assert sent_bodies[1] == {
        "recipient": {"id": PSID},
        "messaging_type": "RESPONSE",
        "message": {
            "attachment": {
                "type": "image",
                "payload": {"url": "https://bridge.test/media/tok-r1", "is_reusable": False},
            }
        },
    }
    assert [b["message"]["attachment"]["type"] for b in sent_bodies[1:]] == [
        "image",
        "file",
        "audio",
        "video",
    ]
    assert [(account, a.ref) for account, a in links.asked] == [
        ("acme", "r1"),
        ("acme", "r2"),
        ("acme", "r3"),
        ("acme", "r4"),
    ]


async def test_send_attachment_only_outside_24_hours_is_tagged(
    client: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    route = api.post(SEND).mock(return_value=sent("m_1"))
    reply = agent_reply(" ", attachments=(Attachment(kind="document", ref="r9"),))
    await adapter_for(client).send(reply, to(timedelta(days=2)))
    (body,) = bodies(route)
    assert (body["messaging_type"], body["tag"], body["message"]["attachment"]["type"]) == (
        "MESSAGE_TAG",
        "HUMAN_AGENT",
        "file",
    )


async def test_send_nothing(client: httpx.AsyncClient, api: respx.MockRouter) -> None:
    receipt = await adapter_for(client).send(agent_reply(" \n "), to(None))
    assert receipt.external_ids == ()
    assert not api.calls


@pytest.mark.parametrize(
    ("response", "error", "retry_after", "says"),
    [
        (graph_failed(500, 1200), RetryableError, None, "1200"),
        (graph_failed(500, 2), RetryableError, None, "Graph error 2"),
        (graph_failed(400, 613), RetryableError, 60.0, "613"),
        (graph_failed(400, 4), RetryableError, 60.0, "Graph error 4"),
        (graph_failed(400, 10, 2018278), PermanentError, None, "window has closed"),
        (graph_failed(400, 551, 1545041), PermanentError, None, "551"),
        (graph_failed(400, 100, 2018001), PermanentError, None, "100/2018001"),
        (graph_failed(400, 190), PermanentError, None, "190"),
        (graph_failed(403, 10, 2018065), PermanentError, None, "10/2018065"),
        (graph_failed(500, 1), RetryableError, None, "Graph error 1"),
        (httpx.Response(500, text="<html>oops</html>"), RetryableError, None, "HTTP 500"),
        (httpx.Response(502), RetryableError, None, "HTTP 502"),
        (httpx.Response(400, text="nope"), PermanentError, None, "HTTP 400"),
        (httpx.Response(200, json={"recipient_id": PSID}), PermanentError, None, "message_id"),
        (httpx.Response(200, text="not json"), PermanentError, None, "message_id"),
    ],
    ids=[
        "1200",
        "2",
        "613",
        "4",
        "10-2018278",
        "551",
        "100",
        "190",
        "10-other",
        "1-on-500",
        "500-html",
        "502-empty",
        "400-text",
        "200-no-id",
        "200-not-json",
    ],
)
async def test_send_errors_are_classified(
    client: httpx.AsyncClient,
    api: respx.MockRouter,
    response: httpx.Response,
    error: type[Exception],
    retry_after: float | None,
    says: str,
) -> None:
    api.post(SEND).mock(return_value=response)
    with pytest.raises(error) as caught:
        await adapter_for(client).send(agent_reply("hi"), to())
    message = str(caught.value)
    assert message.startswith("messenger send")
    assert says in message
    assert TOKEN not in message
    assert "secret customer text" not in message or "[number]" in message
    assert "202 555 0143" not in message
    if isinstance(caught.value, RetryableError):
        assert caught.value.retry_after == retry_after


async def test_send_timeout_is_retryable_without_the_request(
    client: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    api.post(SEND).mock(side_effect=httpx.ReadTimeout("timed out"))
    with pytest.raises(RetryableError) as caught:
        await adapter_for(client).send(agent_reply("x"), to())
    assert str(caught.value) == "messenger send: ReadTimeout"
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


async def test_a_failure_part_way_raises(client: httpx.AsyncClient, api: respx.MockRouter) -> None:
    api.post(SEND).mock(side_effect=[sent("m_1"), graph_failed(500, 1200)])
    with pytest.raises(RetryableError):
        await adapter_for(client).send(agent_reply("a" * 1990 + "\n\n" + "b" * 10), to())


async def test_api_base_overrides_the_configured_base(
    client: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    route = api.post(f"https://sandbox.test/channel-api/messenger/v23.0/{PAGE_A}/messages").mock(
        return_value=sent("m_s")
    )
    adapter = MessengerAdapter(
        "acme",
        config(base_url="https://graph.example"),
        client,
        FakeLinks(),
        api_base="https://sandbox.test/channel-api/messenger/",
        clock=NOW.timestamp,
    )
    assert (await adapter.send(agent_reply("hi"), to())).external_ids == ("m_s",)
    assert route.called


async def test_reengage_is_permanent(client: httpx.AsyncClient, api: respx.MockRouter) -> None:
    with pytest.raises(PermanentError, match="no re-engagement"):
        await adapter_for(client).reengage(to(timedelta(days=9)))
    assert not api.calls


# --- outbound: CDN downloads --------------------------------------------------------------

CDN = "https://scontent.xx.fbcdn.net/v/t1.15752-9/503214123_1042217741_n.jpg"
PHOTO = Attachment(kind="image", ref=CDN + "?_nc_cat=104&oh=03_Q7cD1&oe=68A12B3C")


async def test_fetch(client: httpx.AsyncClient, api: respx.MockRouter) -> None:
    route = api.get(url__startswith=CDN).mock(
        return_value=httpx.Response(
            200, content=b"\xff\xd8\xff-jpeg", headers={"content-type": "image/jpeg"}
        )
    )
    upload = await adapter_for(client).fetch(PHOTO)
    assert upload == Upload("503214123_1042217741_n.jpg", "image/jpeg", b"\xff\xd8\xff-jpeg")
    assert "authorization" not in route.calls.last.request.headers


@pytest.mark.parametrize(
    ("ref", "content_type", "expected"),
    [
        ("https://cdn.fbsbx.com/v/t59/", "audio/mp4", ("messenger-audio.m4a", "audio/mp4")),
        (
            "https://cdn.fbsbx.com/v/t59/inv%20oice.pdf?x=1",
            "application/octet-stream",
            ("inv_oice.pdf", "application/pdf"),
        ),
        (
            "https://cdn.fbsbx.com/v/t59/clip",
            "video/mp4; charset=binary",
            ("clip.mp4", "video/mp4"),
        ),
        ("https://cdn.fbsbx.com/v/t59/blob", "", ("blob", "application/octet-stream")),
    ],
    ids=["no-name", "octet-stream", "no-extension", "nothing-known"],
)
async def test_fetch_names_and_types(
    client: httpx.AsyncClient,
    api: respx.MockRouter,
    ref: str,
    content_type: str,
    expected: tuple[str, str],
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    api.get(ref).mock(return_value=httpx.Response(200, content=b"data", headers=headers))
    kind = "audio" if "audio" in content_type else "document"
    upload = await adapter_for(client).fetch(Attachment(kind=kind, ref=ref))
    assert (upload.filename, upload.mime_type) == expected


async def test_fetch_follows_https_redirects_only(
    client: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    api.get(url__startswith=CDN).mock(
        return_value=httpx.Response(302, headers={"location": "https://cdn2.test/real/x.png"})
    )
    api.get("https://cdn2.test/real/x.png").mock(
        return_value=httpx.Response(200, content=b"png", headers={"content-type": "image/png"})
    )
    upload = await adapter_for(client).fetch(PHOTO)
    assert upload == Upload("503214123_1042217741_n.jpg", "image/png", b"png")

    api.get("https://cdn2.test/real/x.png").mock(
        return_value=httpx.Response(301, headers={"location": "http://plain.test/x.png"})
    )
    plain = api.get("http://plain.test/x.png")
    with pytest.raises(PermanentError, match="not an https URL"):
        await adapter_for(client).fetch(PHOTO)
    assert not plain.called


async def test_fetch_stops_redirect_loops(client: httpx.AsyncClient, api: respx.MockRouter) -> None:
    api.get(url__startswith=CDN).mock(
        return_value=httpx.Response(302, headers={"location": PHOTO.ref})
    )
    with pytest.raises(PermanentError, match="redirects"):
        await adapter_for(client).fetch(PHOTO)


@pytest.mark.parametrize("ref", ["http://cdn.test/x.jpg", "file:///etc/passwd", "not a url"])
async def test_fetch_refuses_what_is_not_https(
    client: httpx.AsyncClient, api: respx.MockRouter, ref: str
) -> None:
    with pytest.raises(PermanentError):
        await adapter_for(client).fetch(Attachment(kind="image", ref=ref))
    assert not api.calls


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
    api.get(url__startswith=CDN).mock(side_effect=lambda request: download())
    with pytest.raises(PermanentError, match="over the 50-byte limit"):
        await adapter_for(client, max_media_bytes=50).fetch(PHOTO)


async def test_fetch_refuses_a_known_oversize_without_calling(
    client: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    with pytest.raises(PermanentError):
        await adapter_for(client, max_media_bytes=5).fetch(PHOTO.model_copy(update={"size": 6}))
    assert not api.calls


@pytest.mark.parametrize(
    ("response", "error"),
    [
        (httpx.Response(404), PermanentError),
        (httpx.Response(410), PermanentError),
        (httpx.Response(403, text="URL signature expired"), PermanentError),
        (httpx.Response(503), RetryableError),
        (httpx.ConnectTimeout("timed out"), RetryableError),
    ],
    ids=["404", "410", "403-expired", "503", "timeout"],
)
async def test_fetch_errors(
    client: httpx.AsyncClient,
    api: respx.MockRouter,
    response: httpx.Response | Exception,
    error: type[Exception],
) -> None:
    route = api.get(url__startswith=CDN)
    if isinstance(response, Exception):
        route.mock(side_effect=response)
    else:
        route.mock(return_value=response)
    with pytest.raises(error) as caught:
        await adapter_for(client).fetch(PHOTO)
    assert "fbcdn" not in str(caught.value)
    assert str(caught.value).startswith("messenger download")


# --- issue 17: one unreadable field degrades its message, never its siblings ------------


def _only_message(body: bytes) -> Message:
    parsed = RECEIVER.parse(request(body))
    assert parsed.failures == ()
    (event,) = parsed.events
    assert isinstance(event, Message)
    return event


def test_a_location_with_string_coordinates_is_read() -> None:
    location = {
        "type": "location",
        "title": "Home",
        "payload": {"coordinates": {"lat": "52.5", "long": "13.4"}},
    }
    msg = _only_message(_item(message={"mid": "m_1", "attachments": [location]}))
    assert msg.location is not None
    assert (msg.location.latitude, msg.location.longitude, msg.location.name) == (
        52.5,
        13.4,
        "Home",
    )


@pytest.mark.parametrize(
    ("message", "text", "refs", "left_out"),
    [
        ({"mid": "m_1", "text": ["secret customer text"]}, "", [], "message.text"),
        (
            {"mid": "m_1", "text": "hi", "attachments": [
                {"type": "image", "payload": "x"},
                {"type": "image", "payload": {"url": "https://cdn.example/a.jpg"}},
            ]},
            "hi",
            ["https://cdn.example/a.jpg"],
            "message.attachments[0]",
        ),
        (
            {"mid": "m_1", "attachments": [
                {"type": "location", "payload": {"coordinates": {"lat": 95, "long": 0}}}
            ]},
            "",
            [],
            "message.attachments[0]",
        ),
    ],
    ids=["text-list", "payload-string", "latitude-out-of-range"],
)  # fmt: skip
def test_a_field_that_cannot_be_read_is_left_out_and_named(
    message: dict[str, Any], text: str, refs: list[str], left_out: str
) -> None:
    msg = _only_message(_item(message=message))
    assert (msg.external_id, msg.text) == ("m_1", text)
    assert [a.ref for a in msg.attachments] == refs
    assert msg.note is not None and msg.note.endswith(f"Could not read and left out: {left_out}")
    assert "secret customer text" not in msg.note


def test_a_degraded_message_does_not_cost_its_siblings() -> None:
    good = {
        "sender": {"id": PSID},
        "recipient": {"id": PAGE_A},
        "timestamp": 1,
        "message": {"mid": "m_good", "text": "fine"},
    }
    bad = {**good, "message": {"mid": "m_bad", "attachments": [{"type": "image", "payload": 3}]}}
    broken = {**good, "message": {"mid": 7}}
    body = {"object": "page", "entry": [{"id": PAGE_A, "messaging": [bad, broken, good]}]}
    parsed = RECEIVER.parse(request(json.dumps(body).encode()))
    assert [e.external_id for e in parsed.events if isinstance(e, Message)] == ["m_bad", "m_good"]
    assert [f.account for f in parsed.failures] == ["acme"]  # the unreadable mid alone


def test_an_edit_is_filed_as_an_edit_of_the_original_once_per_edit() -> None:
    edit = {"mid": "m_1", "text": "corrected", "num_edit": "2"}
    msg = _only_message(_item(message_edit=edit))
    assert (msg.text, msg.edit_of, msg.dedup_key) == ("corrected", "m_1", "edit:m_1:2")
    again = _only_message(_item(message_edit={**edit, "num_edit": 3}))
    assert again.dedup_key == "edit:m_1:3"


def test_events_not_filed_are_named() -> None:
    def ignored(**fields: Any) -> tuple[str, ...]:
        parsed = RECEIVER.parse(request(_item(**fields)))
        assert parsed.events == [] and parsed.failures == ()
        return tuple(i.reason for i in parsed.skipped)

    assert ignored(reaction={"mid": "m_1", "action": "react", "emoji": "x"}) == ("reaction",)
    assert ignored(message={"mid": "m_1", "is_echo": True, "text": "ours"}) == ("echo",)
    assert ignored(sender={"user_ref": "r"}, optin={"ref": "x"}) == ("no_sender",)
    assert ignored(something_new={"a": 1}) == ("other_event",)


# -- the User Profile API ---------------------------------------------------------------------

PROFILE = f"{API}/v23.0/{PSID}"


async def test_profile_lookup_names_the_person(
    client: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    route = api.get(PROFILE).mock(
        return_value=httpx.Response(
            200,
            json={"first_name": "Ann", "last_name": "Lee", "profile_pic": "https://x", "id": PSID},
        )
    )
    assert await adapter_for(client).display_name(PSID, PSID) == "Ann Lee"
    call = route.calls.last.request
    assert call.url.params["fields"] == "first_name,last_name"
    assert call.headers["authorization"] == f"Bearer {TOKEN}"
    assert TOKEN not in str(call.url)


@pytest.mark.parametrize(
    "answer",
    [
        graph_failed(400, 100),  # no profile access for this person (or a bad PSID)
        graph_failed(401, 190),  # the Page token was revoked
        graph_failed(500, 1),
        httpx.Response(200, json={"id": PSID}),  # nothing to show
        httpx.Response(200, text="<html>"),
        httpx.TimeoutException("timed out"),
        httpx.ConnectError("refused"),
    ],
)
async def test_a_failed_profile_lookup_is_no_name(
    client: httpx.AsyncClient, api: respx.MockRouter, answer: Any
) -> None:
    if isinstance(answer, Exception):
        api.get(PROFILE).mock(side_effect=answer)
    else:
        api.get(PROFILE).mock(return_value=answer)
    assert await adapter_for(client).display_name(PSID, PSID) is None


async def test_only_a_psid_is_looked_up(client: httpx.AsyncClient, api: respx.MockRouter) -> None:
    route = api.get(url__startswith=API).mock(return_value=httpx.Response(200, json={}))
    assert await adapter_for(client).display_name("../me", PSID) is None
    assert not route.called
