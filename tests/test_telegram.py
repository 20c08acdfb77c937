"""Telegram: fixtures through verify/parse, the Bot API sender and downloader under respx."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import respx
from hypothesis import given, settings
from hypothesis import strategies as st

from deskbridge.adapters.telegram import TelegramAdapter, sample_update
from deskbridge.adapters.telegram.parse import parse
from deskbridge.adapters.telegram.send import TEXT_LIMIT, split_text, utf16_len
from deskbridge.config.accounts import TelegramConfig
from deskbridge.errors import (
    ParseFailed,
    PayloadInvalid,
    PermanentError,
    RetryableError,
    SignatureInvalid,
)
from deskbridge.identity.phones import e164
from deskbridge.schemas import (
    AgentReply,
    Attachment,
    Channel,
    ChannelAddress,
    Desk,
    Message,
    RawRequest,
    Upload,
)

from . import recorded

CHANNEL = "telegram"
SCENARIOS = recorded.scenarios(CHANNEL)

TOKEN = "123456:TEST-token_abc"
SECRET = "test-secret_1"
API = "https://tg.test"
BOT = f"{API}/bot{TOKEN}"


def config(**overrides: Any) -> TelegramConfig:
    return TelegramConfig.model_validate({"bot_token": TOKEN, "secret_token": SECRET, **overrides})


def request(body: bytes, secret: str | None = SECRET) -> RawRequest:
    headers = {"content-type": "application/json"}
    if secret is not None:
        headers["x-telegram-bot-api-secret-token"] = secret
    return RawRequest(method="POST", path="/webhooks/acme/telegram", headers=headers, body=body)


def _no_network(request: httpx.Request) -> httpx.Response:
    raise AssertionError("verify/parse must not make requests")


_OFFLINE = TelegramAdapter(
    "acme", config(), httpx.AsyncClient(transport=httpx.MockTransport(_no_network)), api_base=API
)


def offline() -> TelegramAdapter:
    """The adapter for the pure half (verify/parse), shared: it holds no state."""
    return _OFFLINE


def parse_dicts(body: bytes) -> list[dict[str, Any]]:
    adapter = offline()
    req = request(body)
    adapter.verify(req)
    return [event.model_dump(mode="json") for event in adapter.parse(req)]


def only(body: bytes) -> Message:
    (event,) = offline().parse(request(body))
    assert isinstance(event, Message)
    return event


def fixture(scenario: str) -> bytes:
    return recorded.fixture(CHANNEL, scenario)


# --- inbound: recorded-shape fixtures ------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_fixture_parses_to_expected(scenario: str) -> None:
    got = parse_dicts(fixture(scenario))
    recorded.assert_expected(CHANNEL, scenario, got)


def test_every_scenario_of_the_brief_is_recorded() -> None:
    required = {
        "text", "photo_with_caption", "document", "voice", "audio", "video", "sticker",
        "location", "venue", "contact_own", "contact_other", "edited_message", "reply",
        "unsupported_poll", "group_text", "callback_query", "channel_post",
    }  # fmt: skip
    assert required <= set(SCENARIOS)


def test_text_message_fields() -> None:
    msg = only(fixture("text"))
    assert (msg.account, msg.channel, msg.dedup_key) == ("acme", Channel.TELEGRAM, "910000001")
    assert (msg.thread, msg.external_id, msg.thread_title) == ("700000001", "101", None)
    assert msg.occurred_at == datetime(2025, 6, 15, 15, 6, 40, tzinfo=UTC)
    assert msg.sender.display_name == "Ann Example"
    assert msg.sender.username == "ann_example"
    assert msg.sender.language == "en"
    (ident,) = msg.sender.identities
    assert (ident.kind, ident.channel, ident.value, ident.strength, ident.source) == (
        "channel_user",
        Channel.TELEGRAM,
        "700000001",
        "strong",
        "telegram",
    )


def test_photo_takes_the_largest_size_and_the_caption() -> None:
    msg = only(fixture("photo_with_caption"))
    (photo,) = msg.attachments
    assert (photo.kind, photo.ref, photo.mime_type) == (
        "image",
        "AgACAgQAAxkBAAIBZmF0-large",
        "image/jpeg",
    )
    assert (photo.width, photo.height, photo.size) == (1280, 960, 98211)
    assert msg.text == "The parcel arrived damaged, see photo"


def test_photo_without_file_sizes_takes_the_largest_area() -> None:
    raw = json.loads(fixture("photo_with_caption"))
    for size in raw["message"]["photo"]:
        del size["file_size"]
    (photo,) = only(json.dumps(raw).encode()).attachments
    assert photo.ref.endswith("-large")


def test_animation_is_one_video_not_also_a_document() -> None:
    (video,) = only(fixture("animation")).attachments
    assert (video.kind, video.mime_type, video.duration) == ("video", "video/mp4", 3)


def test_sticker_has_a_readable_note_and_format_mime() -> None:
    msg = only(fixture("sticker"))
    assert msg.note == "Sticker \U0001f600 (AcmeFaces)"
    assert msg.attachments[0].mime_type == "image/webp"
    raw = json.loads(fixture("sticker"))
    raw["message"]["sticker"]["is_animated"] = True
    assert only(json.dumps(raw).encode()).attachments[0].mime_type == "application/x-tgsticker"
    raw["message"]["sticker"] |= {"is_animated": False, "is_video": True}
    assert only(json.dumps(raw).encode()).attachments[0].mime_type == "video/webm"


def test_own_contact_adds_a_strong_phone_identity() -> None:
    msg = only(fixture("contact_own"))
    assert msg.contact is not None
    assert (msg.contact.phone, msg.contact.raw_phone, msg.contact.is_sender) == (
        "+12025550143",
        "12025550143",
        True,
    )
    phone = msg.sender.identities[1]
    assert (phone.kind, phone.value, phone.strength, phone.source) == (
        "phone",
        "+12025550143",
        "strong",
        "telegram_contact",
    )


def test_someone_elses_contact_is_not_an_identity_of_the_sender() -> None:
    msg = only(fixture("contact_other"))
    assert msg.contact is not None
    assert (msg.contact.phone, msg.contact.is_sender, msg.contact.channel_user_id) == (
        "+61491570156",
        False,
        "700000003",
    )
    assert [i.kind for i in msg.sender.identities] == ["channel_user"]


def test_edit_keeps_the_message_id_and_uses_the_edit_date() -> None:
    msg = only(fixture("edited_message"))
    assert (msg.edit_of, msg.external_id, msg.dedup_key) == ("101", "101", "910000012")
    assert msg.occurred_at == datetime.fromtimestamp(1750000095, UTC)


def test_reply_quotes_the_answered_message() -> None:
    msg = only(fixture("reply"))
    assert msg.reply_to == "112"
    assert msg.reply_quote == "Thanks! Could you tell us the delivery address on the order?"


def test_reply_quote_prefers_the_selected_quote_and_is_capped() -> None:
    raw = json.loads(fixture("reply"))
    raw["message"]["reply_to_message"]["text"] = "x" * 500
    assert only(json.dumps(raw).encode()).reply_quote == "x" * 200
    raw["message"]["quote"] = {"text": "delivery address", "position": 30}
    assert only(json.dumps(raw).encode()).reply_quote == "delivery address"


def test_unsupported_content_is_visible() -> None:
    assert only(fixture("unsupported_poll")).note == "Unsupported Telegram message (poll)"
    raw = json.loads(fixture("text"))
    del raw["message"]["text"]
    raw["message"]["some_future_content"] = {"id": 1}
    assert only(json.dumps(raw).encode()).note == "Unsupported Telegram message"


def test_group_message_has_the_chat_as_thread_and_title() -> None:
    msg = only(fixture("group_text"))
    assert (msg.thread, msg.thread_title, msg.sender.external_id) == (
        "-1001500000001",
        "Acme Support Group",
        "700000002",
    )


@pytest.mark.parametrize("scenario", ["callback_query", "channel_post", "new_chat_members"])
def test_updates_we_do_not_handle_are_acknowledged_empty(scenario: str) -> None:
    assert offline().parse(request(fixture(scenario))) == []


@pytest.mark.parametrize(
    "change",
    [
        {"from": None},
        {"from": {"id": 6000000002, "is_bot": True, "first_name": "Other Bot"}},
        {
            "sender_chat": {
                "id": -1001500000001,
                "title": "Acme Support Group",
                "type": "supergroup",
            }
        },
    ],
    ids=["no-from", "bot", "on-behalf-of-chat"],
)
def test_messages_not_written_by_a_person_are_dropped(change: dict[str, Any]) -> None:
    raw = json.loads(fixture("group_text"))
    raw["message"] |= change
    if change.get("from", 0) is None:
        del raw["message"]["from"]
    assert offline().parse(request(json.dumps(raw).encode())) == []


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("12025550143", "+12025550143"),
        ("+1 (202) 555-0143", "+12025550143"),
        ("+61491570156", "+61491570156"),
        ("447700900123", None),  # Ofcom's drama range: well-formed, never assigned
        ("07700 900123", None),  # national format: no country to read it in
        ("", None),
        ("not a number", None),
        ("9" * 40, None),
    ],
)
def test_e164(raw: str, expected: str | None) -> None:
    assert e164(raw, international=True) == expected


def test_sample_update_round_trips() -> None:
    body = sample_update("/start hello", update_id=5, chat_id=42, user_id=42, username="demo")
    msg = only(body)
    assert (msg.text, msg.thread, msg.dedup_key, msg.sender.username) == (
        "/start hello",
        "42",
        "5",
        "demo",
    )
    assert json.loads(body)["message"]["entities"] == [
        {"offset": 0, "length": 6, "type": "bot_command"}
    ]
    assert (
        json.loads(sample_update("hi", update_id=1, chat_id=2, user_id=2, date=7))["message"][
            "date"
        ]
        == 7
    )


# --- inbound: refusals ------------------------------------------------------------------


def test_adapter_shape() -> None:
    adapter = offline()
    assert adapter.channel is Channel.TELEGRAM
    assert (adapter.account, adapter.max_body_bytes) == ("acme", 1024 * 1024)
    assert adapter.handshake(request(b"{}")) is None


@pytest.mark.parametrize(
    "secret", [None, "", "wrong-secret", SECRET + "x", SECRET[:-1], "tëst-secret_1"]
)
def test_verify_refuses_a_missing_or_wrong_secret(secret: str | None) -> None:
    with pytest.raises(SignatureInvalid):
        offline().verify(request(fixture("text"), secret=secret))


@pytest.mark.parametrize(
    "body",
    [
        b'{"update_id": 1, "message": {',
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


_HEAD = {"message_id": 1, "date": 1, "chat": {"id": 1, "type": "private"}}


@pytest.mark.parametrize(
    "body",
    [
        b'{"update_id": "x"}',
        b"{}",
        json.dumps({"update_id": 1, "message": _HEAD | {"message_id": "1"}}).encode(),
        json.dumps({"update_id": 1, "message": _HEAD | {"date": 1e30}}).encode(),
        b'{"update_id": 1, "message": [1]}',
        # A lone surrogate escape: valid JSON, but no storable text.
        json.dumps(
            {"update_id": 1, "message": _HEAD | {"from": {"id": 2}, "text": "a \ud800"}}
        ).encode(),
    ],
    ids=[
        "update-id-string",
        "no-update-id",
        "message-id-string",
        "date-float",
        "message-array",
        "lone-surrogate",
    ],
)
def test_objects_that_are_not_readable_updates_fail_to_parse(body: bytes) -> None:
    with pytest.raises(ParseFailed):
        offline().parse(request(body))


_LEAF = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12)
)
_KEYS = st.sampled_from(
    ["update_id", "message", "edited_message", "message_id", "from", "chat", "date", "id", "type",
     "text", "caption", "photo", "file_id", "width", "height", "contact", "phone_number", "user_id",
     "location", "latitude", "longitude", "venue", "sticker", "poll", "reply_to_message", "quote"]
) | st.text(max_size=8)  # fmt: skip
_JSON = st.recursive(
    _LEAF,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEYS, inner, max_size=6),
    max_leaves=25,
)
_TEXT = st.text(max_size=12)
_USER = st.fixed_dictionaries(
    {"id": st.integers(), "first_name": _TEXT},
    optional={"is_bot": st.booleans(), "last_name": _TEXT, "username": _TEXT},
)
_FILE = {
    "file_id": _TEXT,
    "width": st.integers(),
    "height": st.integers(),
    "duration": st.integers(),
}
_FIELD = st.one_of(
    st.tuples(st.sampled_from(["text", "caption"]), _TEXT),
    st.tuples(
        st.just("photo"),
        st.lists(st.fixed_dictionaries(_FILE, optional={"file_size": st.integers()})),
    ),
    st.tuples(
        st.sampled_from(
            ["document", "voice", "audio", "video", "video_note", "animation", "sticker"]
        ),
        st.fixed_dictionaries(_FILE, optional={"length": st.integers(), "is_video": st.booleans()}),
    ),
    st.tuples(
        st.just("location"),
        st.fixed_dictionaries(
            {"latitude": st.floats(-100, 100), "longitude": st.floats(-200, 200)}
        ),
    ),
    st.tuples(
        st.just("contact"),
        st.fixed_dictionaries(
            {"phone_number": st.text(max_size=20)}, optional={"user_id": st.integers()}
        ),
    ),
    st.tuples(
        st.just("reply_to_message"),
        st.fixed_dictionaries({"message_id": st.integers()}, optional={"text": _TEXT}),
    ),
    st.tuples(_KEYS, _JSON),
)
_MESSAGE = st.tuples(
    st.fixed_dictionaries(
        {
            "message_id": st.integers(),
            "date": st.integers(min_value=0, max_value=2**34),
            "chat": st.fixed_dictionaries(
                {"id": st.integers(), "type": st.sampled_from(["private", "group"])}
            ),
            "from": _USER,
        }
    ),
    st.lists(_FIELD, max_size=3),
).map(lambda parts: parts[0] | dict(parts[1]))
# Junk is _JSON's job; this one reaches event building, with random fields mixed in.
_UPDATE = st.builds(
    lambda update_id, kind, message: {"update_id": update_id, kind: message},
    st.integers(min_value=0, max_value=2**31),
    st.sampled_from(["message", "edited_message"]),
    _MESSAGE,
)


def _parses_or_refuses(body: bytes) -> None:
    try:
        events = offline().parse(request(body))
    except (PayloadInvalid, ParseFailed):
        return
    assert len(events) <= 1
    for event in events:
        event.model_dump_json()


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_parse_never_crashes_on_bytes(body: bytes) -> None:
    _parses_or_refuses(body)


@settings(max_examples=200, deadline=None)
@given(_JSON | _UPDATE)
def test_parse_never_crashes_on_json(value: Any) -> None:
    _parses_or_refuses(json.dumps(value).encode())


# --- outbound: text splitting -------------------------------------------------------


def test_split_paragraphs_into_three_messages() -> None:
    paragraphs = [f"Paragraph {i}. " + "word " * 298 + "end." for i in range(6)]
    text = "\n\n".join(paragraphs)
    assert len(text) > 9000
    chunks = split_text(text, TEXT_LIMIT)
    assert len(chunks) == 3
    assert all(utf16_len(c) <= 4096 for c in chunks)
    assert "\n\n".join(chunks) == text


def test_split_falls_back_to_sentences_words_and_hard_cuts() -> None:
    assert split_text("One two. Three four.", 12) == ["One two.", "Three four."]
    assert split_text("alpha beta gamma", 11) == ["alpha beta", "gamma"]
    assert split_text("abcdefgh", 3) == ["abc", "def", "gh"]


def test_split_counts_utf16_and_never_cuts_a_surrogate_pair() -> None:
    chunks = split_text("\U0001f600" * 5, 4)
    assert chunks == ["\U0001f600\U0001f600", "\U0001f600\U0001f600", "\U0001f600"]
    assert split_text("   \n\n  ", TEXT_LIMIT) == []


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300), st.integers(min_value=2, max_value=50))
def test_split_property(text: str, limit: int) -> None:
    chunks = split_text(text, limit)
    assert all(c and c == c.strip() and utf16_len(c) <= limit for c in chunks)
    assert "".join("".join(chunks).split()) == "".join(text.split())


# --- outbound: the Bot API under respx --------------------------------------------------


def adapter_for(client: httpx.AsyncClient, **overrides: Any) -> TelegramAdapter:
    return TelegramAdapter("acme", config(**overrides), client, api_base=API)


def agent_reply(text: str) -> AgentReply:
    return AgentReply(
        account="acme",
        desk=Desk.SANDBOX,
        dedup_key="r-1",
        ticket_id="t-1",
        external_id="c-1",
        text=text,
        occurred_at=datetime(2025, 6, 15, tzinfo=UTC),
    )


TO = ChannelAddress(channel=Channel.TELEGRAM, account="acme", thread="700000001")


def sent(message_id: int) -> httpx.Response:
    return httpx.Response(200, json={"ok": True, "result": {"message_id": message_id, "date": 1}})


def failed(status: int, **parameters: Any) -> httpx.Response:
    body: dict[str, Any] = {
        "ok": False,
        "error_code": status,
        "description": "Bad Request: chat not found",
    }
    if parameters:
        body["parameters"] = parameters
    return httpx.Response(status, json=body)


async def test_send_text(client: httpx.AsyncClient, api: respx.MockRouter) -> None:
    route = api.post(f"{BOT}/sendMessage").mock(return_value=sent(501))
    receipt = await adapter_for(client).send(agent_reply("  Hello Ann!\n"), TO, [])
    assert receipt.external_ids == ("501",)
    assert json.loads(route.calls.last.request.content) == {
        "chat_id": 700000001,
        "text": "Hello Ann!",
    }


async def test_send_long_text_in_chunks_replying_with_the_first(
    client: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    route = api.post(f"{BOT}/sendMessage").mock(side_effect=[sent(1), sent(2), sent(3)])
    text = "\n\n".join("x" * 2900 for _ in range(3))
    to = TO.model_copy(update={"reply_to": "101"})
    receipt = await adapter_for(client).send(agent_reply(text), to, [])
    assert receipt.external_ids == ("1", "2", "3")
    bodies = [json.loads(call.request.content) for call in route.calls]
    assert [len(b["text"]) for b in bodies] == [2900, 2900, 2900]
    assert bodies[0]["reply_parameters"] == {"message_id": 101, "allow_sending_without_reply": True}
    assert "reply_parameters" not in bodies[1]


async def test_send_photo_with_the_text_as_caption(
    client: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    message = api.post(f"{BOT}/sendMessage").mock(return_value=sent(1))
    photo = api.post(f"{BOT}/sendPhoto").mock(return_value=sent(601))
    document = api.post(f"{BOT}/sendDocument").mock(return_value=sent(602))
    files = [
        Upload("label.jpg", "image/jpeg", b"\xff\xd8\xff-jpeg-bytes"),
        Upload("manual.pdf", "application/pdf", b"%PDF-1.4 bytes"),
    ]
    receipt = await adapter_for(client).send(agent_reply("Here is your label"), TO, files)
    assert receipt.external_ids == ("601", "602")
    assert not message.called
    first = photo.calls.last.request
    assert first.headers["content-type"].startswith("multipart/form-data")
    assert b'name="chat_id"\r\n\r\n700000001' in first.content
    assert b'name="caption"\r\n\r\nHere is your label' in first.content
    assert b'name="photo"; filename="label.jpg"' in first.content
    assert b"\xff\xd8\xff-jpeg-bytes" in first.content
    second = document.calls.last.request.content
    assert b'name="document"; filename="manual.pdf"' in second
    assert b'name="caption"' not in second


async def test_send_text_too_long_for_a_caption_goes_first(
    client: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    message = api.post(f"{BOT}/sendMessage").mock(return_value=sent(1))
    document = api.post(f"{BOT}/sendDocument").mock(return_value=sent(2))
    gif = Upload("shrug.gif", "image/gif", b"GIF89a")
    receipt = await adapter_for(client).send(agent_reply("y" * 1025), TO, [gif])
    assert receipt.external_ids == ("1", "2")
    assert json.loads(message.calls.last.request.content)["text"] == "y" * 1025
    assert b'name="caption"' not in document.calls.last.request.content


async def test_send_nothing(client: httpx.AsyncClient, api: respx.MockRouter) -> None:
    assert (await adapter_for(client).send(agent_reply(" "), TO, [])).external_ids == ()


@pytest.mark.parametrize(
    ("response", "error", "retry_after"),
    [
        (failed(400), PermanentError, None),
        (failed(403), PermanentError, None),
        (failed(401), PermanentError, None),
        (failed(429, retry_after=17), RetryableError, 17.0),
        (failed(500), RetryableError, None),
        (httpx.Response(502, text="<html>Bad Gateway</html>"), RetryableError, None),
        (
            httpx.Response(200, json={"ok": False, "error_code": 400, "description": "nope"}),
            PermanentError,
            None,
        ),
        (httpx.Response(200, text="not json"), PermanentError, None),
        (httpx.Response(200, json={"ok": True, "result": {"no": "id"}}), PermanentError, None),
    ],
    ids=["400", "403", "401", "429", "500", "502-html", "200-not-ok", "200-not-json", "200-no-id"],
)
async def test_send_errors_are_classified(
    client: httpx.AsyncClient,
    api: respx.MockRouter,
    response: httpx.Response,
    error: type[Exception],
    retry_after: float | None,
) -> None:
    api.post(f"{BOT}/sendMessage").mock(return_value=response)
    with pytest.raises(error) as caught:
        await adapter_for(client).send(agent_reply("hi"), TO, [])
    assert "telegram sendMessage" in str(caught.value)
    assert TOKEN not in str(caught.value)
    assert "chat not found" not in str(caught.value)
    if isinstance(caught.value, RetryableError):
        assert caught.value.retry_after == retry_after


async def test_send_timeout_is_retryable_without_the_url(
    client: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    api.post(f"{BOT}/sendPhoto").mock(side_effect=httpx.ReadTimeout("timed out"))
    with pytest.raises(RetryableError) as caught:
        await adapter_for(client).send(agent_reply("x"), TO, [Upload("a.png", "image/png", b"png")])
    assert str(caught.value) == "telegram sendPhoto: ReadTimeout"
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


async def test_a_failure_part_way_raises(client: httpx.AsyncClient, api: respx.MockRouter) -> None:
    api.post(f"{BOT}/sendMessage").mock(side_effect=[sent(1), failed(500)])
    with pytest.raises(RetryableError):
        await adapter_for(client).send(agent_reply("a" * 4090 + "\n\n" + "b" * 10), TO, [])


# --- outbound: downloads and setup ------------------------------------------------------

VOICE = Attachment(kind="voice", ref="AwACAgQAAxkBAAIBaVoice1", mime_type="audio/ogg", size=12)


def get_file(size: int | None = 12, path: str | None = "voice/file_7.oga") -> httpx.Response:
    result: dict[str, Any] = {"file_id": VOICE.ref, "file_unique_id": "AgADvoice1"}
    if size is not None:
        result["file_size"] = size
    if path is not None:
        result["file_path"] = path
    return httpx.Response(200, json={"ok": True, "result": result})


async def test_fetch(client: httpx.AsyncClient, api: respx.MockRouter) -> None:
    info = api.post(f"{BOT}/getFile").mock(return_value=get_file())
    api.get(f"{API}/file/bot{TOKEN}/voice/file_7.oga").mock(
        return_value=httpx.Response(200, content=b"OggS-payload")
    )
    upload = await adapter_for(client).fetch(VOICE)
    assert upload == Upload("file_7.oga", "audio/ogg", b"OggS-payload")
    assert json.loads(info.calls.last.request.content) == {"file_id": VOICE.ref}


async def test_fetch_keeps_the_senders_filename(
    client: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    api.post(f"{BOT}/getFile").mock(return_value=get_file(size=None, path="documents/file_3"))
    api.get(f"{API}/file/bot{TOKEN}/documents/file_3").mock(
        return_value=httpx.Response(200, content=b"%PDF")
    )
    doc = Attachment(kind="document", ref="BQAC", filename="../invoice.pdf")
    assert await adapter_for(client).fetch(doc) == Upload("invoice.pdf", "application/pdf", b"%PDF")


async def test_fetch_refuses_oversize_by_file_size(
    client: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    api.post(f"{BOT}/getFile").mock(return_value=get_file(size=51))
    download = api.get(url__startswith=f"{API}/file/")
    with pytest.raises(PermanentError):
        await adapter_for(client, max_media_bytes=50).fetch(VOICE.model_copy(update={"size": None}))
    assert not download.called


async def test_fetch_refuses_oversize_by_attachment_size_without_calling(
    client: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    with pytest.raises(PermanentError):
        await adapter_for(client, max_media_bytes=5).fetch(VOICE)
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
async def test_fetch_caps_the_bytes_read_when_the_server_lies(
    client: httpx.AsyncClient, api: respx.MockRouter, download: Any
) -> None:
    api.post(f"{BOT}/getFile").mock(return_value=get_file(size=10))
    api.get(f"{API}/file/bot{TOKEN}/voice/file_7.oga").mock(side_effect=lambda request: download())
    with pytest.raises(PermanentError, match="over the 50-byte limit"):
        await adapter_for(client, max_media_bytes=50).fetch(VOICE.model_copy(update={"size": None}))


@pytest.mark.parametrize(
    ("getfile", "download", "error"),
    [
        (get_file(), httpx.Response(404), PermanentError),
        (get_file(), httpx.Response(503), RetryableError),
        (get_file(path=None), None, PermanentError),
        (failed(400), None, PermanentError),
        (httpx.Response(200, json={"ok": True, "result": {"file_path": 5}}), None, PermanentError),
    ],
    ids=["expired-404", "download-503", "no-file-path", "getfile-400", "getfile-bad-result"],
)
async def test_fetch_errors(
    client: httpx.AsyncClient,
    api: respx.MockRouter,
    getfile: httpx.Response,
    download: httpx.Response | None,
    error: type[Exception],
) -> None:
    api.post(f"{BOT}/getFile").mock(return_value=getfile)
    if download is not None:
        api.get(f"{API}/file/bot{TOKEN}/voice/file_7.oga").mock(return_value=download)
    with pytest.raises(error) as caught:
        await adapter_for(client).fetch(VOICE)
    assert TOKEN not in str(caught.value)


async def test_set_webhook(client: httpx.AsyncClient, api: respx.MockRouter) -> None:
    route = api.post(f"{BOT}/setWebhook").mock(
        return_value=httpx.Response(
            200, json={"ok": True, "result": True, "description": "Webhook was set"}
        )
    )
    await adapter_for(client).set_webhook("https://gw.example/webhooks/acme/telegram")
    assert json.loads(route.calls.last.request.content) == {
        "url": "https://gw.example/webhooks/acme/telegram",
        "secret_token": SECRET,
        "allowed_updates": ["message", "edited_message"],
        "drop_pending_updates": False,
    }


async def test_set_webhook_errors_are_classified(
    client: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    api.post(f"{BOT}/setWebhook").mock(return_value=failed(429, retry_after=3))
    with pytest.raises(RetryableError) as caught:
        await adapter_for(client).set_webhook("https://gw.example/hook")
    assert caught.value.retry_after == 3


async def test_get_me_and_base_url(client: httpx.AsyncClient, api: respx.MockRouter) -> None:
    me = {"id": 6000000001, "is_bot": True, "first_name": "Acme Help", "username": "acme_help_bot"}
    api.post(f"https://api.telegram.example/bot{TOKEN}/getMe").mock(
        return_value=httpx.Response(200, json={"ok": True, "result": me})
    )
    adapter = TelegramAdapter("acme", config(base_url="https://api.telegram.example/"), client)
    assert await adapter.get_me() == me


def test_raw_surrogate_bytes_are_refused_not_stored() -> None:
    """json.loads decodes bytes with surrogatepass: UTF-8-encoded surrogates (not only
    \\u escapes) would reach the stored event and break its serialization."""
    body = (
        b'{"update_id":1,"message":{"message_id":1,"date":1,"chat":{"id":1,"type":"private"},'
        b'"from":{"id":2,"is_bot":false,"first_name":"a"},"text":"\xed\xa0\x80"}}'
    )
    with pytest.raises(ParseFailed):
        parse(body, account="acme")


# --- forwards, shared contacts, supergroup migration ---------------------------------


def test_forwards_keep_their_attribution() -> None:
    assert only(fixture("forwarded_from_user")).note == (
        "Forwarded from Dan Sample (@dan_sample), originally sent 2025-06-15 12:20 UTC"
    )
    assert only(fixture("forwarded_from_channel")).note == (
        "Forwarded from Acme Deals (Eve), originally sent 2025-06-15 12:20 UTC"
    )
    assert only(fixture("forwarded_hidden_user_legacy")).note == (
        "Forwarded from Frank Hidden, originally sent 2025-06-15 12:20 UTC"
    )


def test_a_forwarded_sticker_keeps_both_notes() -> None:
    raw = json.loads(fixture("sticker"))
    raw["message"]["forward_origin"] = {"type": "hidden_user", "date": 0, "sender_user_name": "X"}
    note = only(json.dumps(raw).encode()).note
    assert note is not None
    assert note.startswith("Forwarded from X, originally sent 1970-01-01 00:00 UTC; Sticker")


def test_an_address_book_number_takes_the_vcard_e164() -> None:
    contact = only(fixture("contact_local_with_vcard")).contact
    assert contact is not None
    assert (contact.phone, contact.raw_phone) == ("+61491570156", "0491 570 156")


@pytest.mark.parametrize(
    ("phone", "vcard", "own", "expected"),
    [
        ("79991234567", None, False, "+79991234567"),
        ("88005553535", None, False, None),  # local: no guess at a country
        ("88005553535", "TEL:+7 800 555-35-35", False, "+78005553535"),
        ("11000000000", None, True, "+11000000000"),  # Telegram verified the sender's own
        ("0612345678", "TEL;TYPE=CELL:0612345678", False, None),
    ],
)
def test_shared_contact_phone(
    phone: str, vcard: str | None, own: bool, expected: str | None
) -> None:
    raw = json.loads(fixture("contact_other"))
    contact: dict[str, Any] = {"phone_number": phone, "first_name": "C"}
    if vcard is not None:
        contact["vcard"] = vcard
    if own:
        contact["user_id"] = raw["message"]["from"]["id"]
    raw["message"]["contact"] = contact
    shared = only(json.dumps(raw).encode()).contact
    assert shared is not None and shared.phone == expected


async def test_a_group_that_became_a_supergroup_keeps_its_ticket(
    make_runtime: Any, aiohttp_client: Any, respx_mock: Any
) -> None:
    from deskbridge.gateway import create_app

    from .conftest import TG_SECRET, TG_TOKEN, drain

    rt = make_runtime()
    client = await aiohttp_client(create_app(rt, role="serve"))
    headers = {"X-Telegram-Bot-Api-Secret-Token": TG_SECRET, "Content-Type": "application/json"}
    send = respx_mock.post(f"https://tg.test/bot{TG_TOKEN}/sendMessage").respond(
        200, json={"ok": True, "result": {"message_id": 9, "date": 1, "chat": {"id": 1}}}
    )
    old, new = -400000001, -1001700000001

    async def post(body: bytes) -> None:
        resp = await client.post("/webhooks/telegram/acme", data=body, headers=headers)
        assert resp.status == 200

    await post(
        sample_update("in the old group", update_id=1, chat_id=old, user_id=7, first_name="Bo")
    )
    await drain(rt)
    # Telegram posts both notices; either one moves the conversation, the second finds it done
    await post(fixture("migrate_to_chat").replace(b"910000044", b"2"))
    await post(fixture("migrate_from_chat").replace(b"910000045", b"3"))
    await drain(rt)
    await post(
        sample_update("in the supergroup", update_id=4, chat_id=new, user_id=7, first_name="Bo")
    )
    await drain(rt)

    t = await rt.sandbox.ticket("acme", "1")
    assert [(m.author, m.text) for m in t.messages] == [
        ("customer", "in the old group"),
        ("customer", "in the supergroup"),
    ]
    assert await rt.sandbox.ticket("acme", "2") is None

    page = await (await client.get("/sandbox/acme/tickets/1")).text()
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found is not None
    resp = await client.post(
        "/sandbox/acme/tickets/1/reply",
        data={"csrf": found.group(1), "text": "Hi all"},
        allow_redirects=False,
    )
    assert resp.status == 303
    await drain(rt)
    assert [json.loads(c.request.content)["chat_id"] for c in send.calls] == [new]


async def test_a_move_of_an_unknown_chat_changes_nothing(make_runtime: Any) -> None:
    rt = make_runtime()
    convs = rt.conversations
    ids = [convs.conversation_id("acme", Channel.TELEGRAM, t) for t in ("-1", "-1002")]
    assert await convs.move_thread("acme", ids[0], ids[1], "-1002") is False
    assert await convs.get("acme", ids[1]) is None


@pytest.mark.parametrize(
    ("scenario", "reason"),
    [
        ("channel_post", "channel_post"),
        ("callback_query", "not_a_message"),
        ("new_chat_members", "service_message"),
    ],
)
def test_an_update_not_filed_names_its_reason(scenario: str, reason: str) -> None:
    from deskbridge.adapters.telegram.receiver import TelegramReceiver

    parsed = TelegramReceiver(offline()).parse(request(fixture(scenario)))
    assert (parsed.events, parsed.ignored) == ([], (reason,))
    assert TelegramReceiver(offline()).parse(request(fixture("text"))).ignored == ()


async def test_a_send_to_a_group_that_moved_goes_to_the_supergroup(
    client: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    route = api.post(f"{BOT}/sendMessage").mock(
        side_effect=[failed(400, migrate_to_chat_id=-1001700000001), sent(7), sent(8)]
    )
    to = TO.model_copy(update={"thread": "-400000001"})
    text = "\n\n".join("y" * 3000 for _ in range(2))
    receipt = await adapter_for(client).send(agent_reply(text), to, [])
    assert receipt.external_ids == ("7", "8")
    chats = [json.loads(call.request.content)["chat_id"] for call in route.calls]
    assert chats == [-400000001, -1001700000001, -1001700000001]


async def test_a_group_that_moved_twice_is_a_permanent_failure(
    client: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    api.post(f"{BOT}/sendMessage").mock(
        side_effect=[failed(400, migrate_to_chat_id=-1001), failed(400, migrate_to_chat_id=-1002)]
    )
    with pytest.raises(PermanentError, match="moved to a supergroup"):
        await adapter_for(client).send(agent_reply("hi"), TO, [])


@pytest.mark.parametrize(
    "change",
    [
        {"forward_origin": {"type": "user", "date": "yesterday"}},
        {"forward_origin": "someone"},
        {"forward_date": 1749990000, "forward_from": {"id": "not-a-number"}},
    ],
)
def test_an_unreadable_forward_costs_the_attribution_not_the_message(
    change: dict[str, Any],
) -> None:
    raw = json.loads(fixture("text"))
    raw["message"] |= change
    msg = only(json.dumps(raw).encode())
    assert msg.text and msg.note == "Forwarded (the original sender could not be read)"
