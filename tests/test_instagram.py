"""Instagram Direct: webhooks through verify/parse (the corpus in test_corpus_meta.py covers
every event kind), the messaging API, profiles and CDN downloads under respx, and the
whole path through the gateway and the worker to the sandbox desk and back."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import respx
from hypothesis import given, settings
from hypothesis import strategies as st

from deskbridge.adapters.capabilities import LooksUpDisplayNames, ReportsHealth
from deskbridge.adapters.instagram import InstagramAdapter, InstagramReceiver, sample_message
from deskbridge.adapters.meta import sign
from deskbridge.config.accounts import InstagramConfig
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
    ChannelEvent,
    Message,
    RawRequest,
    Upload,
)

from .helpers import (
    META_APP,
    NOW,
    VERIFY_TOKEN,
    FakeLinks,
    bodies,
    graph_failed,
    graph_sent,
    last_wrote,
    meta_request,
)
from .helpers import agent_reply as reply

IG_A = "17841400000000001"
IG_B = "17841400000000002"
IGSID = "1790000000000001"
TOKEN = "IGAAtokenForTests0123456789"
API = "https://graph-ig.test"
SEND = f"{API}/v23.0/{IG_A}/messages"

RECEIVER = InstagramReceiver(
    "meta",
    META_APP,
    {IG_A: "acme", IG_B: "globex"},
    max_body_bytes=4 * 1024 * 1024,
)


def request(body: bytes, signature: str | None = "sign") -> RawRequest:
    return meta_request(body, "/webhooks/instagram", signature)


def sample(text: str = "hi", ig_id: str = IG_A, mid: str = "aWdfMQ") -> bytes:
    return sample_message(text, ig_id=ig_id, igsid=IGSID, mid=mid, timestamp_ms=1750420800123)


# -- inbound -------------------------------------------------------------------------------


def test_a_text_message_is_filed_for_the_account_that_owns_the_id() -> None:
    req = request(sample("¿Tienen la talla M?"))
    RECEIVER.verify(req)
    [msg] = RECEIVER.parse(req).events
    assert isinstance(msg, Message)
    assert (msg.account, msg.channel, msg.thread, msg.text) == (
        "acme",
        Channel.INSTAGRAM,
        IGSID,
        "¿Tienen la talla M?",
    )
    assert msg.dedup_key == msg.external_id == "aWdfMQ"
    assert msg.occurred_at == datetime(2025, 6, 20, 12, 0, 0, 123000, tzinfo=UTC)
    [identity] = msg.sender.identities
    assert (identity.kind, identity.value, identity.strength) == ("channel_user", IGSID, "strong")


def test_batches_route_each_entry_and_count_the_unknown() -> None:
    a, b = json.loads(sample(ig_id=IG_A)), json.loads(sample(ig_id=IG_B, mid="aWdfMg"))
    other = json.loads(sample(ig_id="17841400000000777", mid="aWdfMw"))
    body = {"object": "instagram", "entry": a["entry"] + b["entry"] + other["entry"]}
    parsed = RECEIVER.parse(request(json.dumps(body).encode()))
    assert [e.account for e in parsed.events] == ["acme", "globex"]
    assert parsed.unrouted == 1


def test_an_unsend_is_a_retraction_of_the_message() -> None:
    body = json.loads(sample())
    body["entry"][0]["messaging"][0]["message"] = {"mid": "aWdfMQ", "is_deleted": True}
    [event] = RECEIVER.parse(request(json.dumps(body).encode())).events
    assert isinstance(event, ChannelEvent)
    assert (event.action, event.external_id, event.dedup_key) == (
        "unsend",
        "aWdfMQ",
        "unsend:aWdfMQ",
    )


def test_echoes_are_ignored_by_name() -> None:
    body = json.loads(sample())
    item = body["entry"][0]["messaging"][0]
    item["sender"], item["recipient"] = {"id": IG_A}, {"id": IGSID}
    item["message"]["is_echo"] = True
    parsed = RECEIVER.parse(request(json.dumps(body).encode()))
    assert parsed.events == [] and [s.reason for s in parsed.skipped] == ["echo"]


def test_a_reaction_and_its_removal_are_two_notes_on_the_message() -> None:
    body = json.loads(sample())
    item = body["entry"][0]["messaging"][0]
    del item["message"]
    item["reaction"] = {"mid": "aWdfMQ", "action": "react", "reaction": "love", "emoji": "❤️"}
    [react] = RECEIVER.parse(request(json.dumps(body).encode())).events
    item["reaction"] = {"mid": "aWdfMQ", "action": "unreact"}
    item["timestamp"] += 1000
    [unreact] = RECEIVER.parse(request(json.dumps(body).encode())).events
    assert isinstance(react, Message) and isinstance(unreact, Message)
    assert react.note == "Reacted ❤️ to message aWdfMQ" and react.reply_to == "aWdfMQ"
    assert unreact.note == "Removed a reaction from message aWdfMQ"
    assert react.dedup_key != unreact.dedup_key


def test_a_story_mention_keeps_the_link_and_downloads_nothing() -> None:
    body = json.loads(sample())
    url = "https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=1&signature=x"
    body["entry"][0]["messaging"][0]["message"] = {
        "mid": "aWdfMQ",
        "attachments": [{"type": "story_mention", "payload": {"url": url}}],
    }
    [msg] = RECEIVER.parse(request(json.dumps(body).encode())).events
    assert isinstance(msg, Message)
    assert msg.attachments == () and msg.note == f"Mentioned you in their story: {url}"


@pytest.mark.parametrize("signature", [None, "sha256=" + "0" * 64, "sha1=abc"])
def test_verify_refuses_a_missing_or_wrong_signature(signature: str | None) -> None:
    with pytest.raises(SignatureInvalid):
        RECEIVER.verify(request(sample(), signature=signature))


def test_handshake_echoes_the_challenge_for_the_right_token_only() -> None:
    ok = RECEIVER.handshake(
        RawRequest(
            method="GET",
            path="/webhooks/instagram",
            query={"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "7"},
        )
    )
    bad = RECEIVER.handshake(
        RawRequest(
            method="GET",
            path="/webhooks/instagram",
            query={"hub.mode": "subscribe", "hub.verify_token": "nope", "hub.challenge": "7"},
        )
    )
    assert (ok.status, ok.body, bad.status) == (200, "7", 403)


def test_a_page_webhook_is_not_an_instagram_one() -> None:
    with pytest.raises(ParseFailed, match="not an Instagram webhook"):
        RECEIVER.parse(request(b'{"object": "page", "entry": []}'))
    with pytest.raises(PayloadInvalid):
        RECEIVER.parse(request(b"[1, 2]"))


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(),
        lambda c: st.lists(c) | st.dictionaries(st.text(), c),
        max_leaves=30,
    )
)
def test_parse_never_crashes_on_json(value: Any) -> None:
    doc = {"object": "instagram", "entry": [{"id": IG_A, "messaging": [value]}]}
    with contextlib.suppress(ParseFailed, PayloadInvalid):
        RECEIVER.parse(request(json.dumps(doc).encode()))


# -- outbound ------------------------------------------------------------------------------


def adapter_for(
    client: httpx.AsyncClient, links: FakeLinks | None = None, **overrides: Any
) -> InstagramAdapter:
    config = InstagramConfig.model_validate(
        {"app": "meta", "ig_id": IG_A, "access_token": TOKEN, "base_url": API} | overrides
    )
    return InstagramAdapter("acme", config, client, links or FakeLinks(), clock=NOW.timestamp)


def to(age: timedelta | None = timedelta(minutes=5)) -> ChannelAddress:
    return last_wrote(Channel.INSTAGRAM, IGSID, age)


def sent(message_id: str) -> httpx.Response:
    return graph_sent(IGSID, message_id)


def test_the_adapter_declares_its_capabilities(client: httpx.AsyncClient) -> None:
    adapter = adapter_for(client)
    assert isinstance(adapter, ReportsHealth) and isinstance(adapter, LooksUpDisplayNames)
    assert adapter.channel is Channel.INSTAGRAM


async def test_send_text_as_a_response_with_the_token_in_a_header(
    client: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    route = api.post(SEND).mock(return_value=sent("aWdfT1VUMQ"))
    receipt = await adapter_for(client).send(reply("  Hello Ann!\n"), to())
    assert receipt.external_ids == ("aWdfT1VUMQ",)
    assert bodies(route) == [
        {
            "recipient": {"id": IGSID},
            "messaging_type": "RESPONSE",
            "message": {"text": "Hello Ann!"},
        }
    ]
    assert route.calls.last.request.headers["authorization"] == f"Bearer {TOKEN}"
    assert TOKEN not in str(route.calls.last.request.url)


async def test_facebook_login_sends_as_the_page(
    client: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    route = api.post(f"{API}/v23.0/104510000000001/messages").mock(return_value=sent("m1"))
    await adapter_for(client, page_id="104510000000001").send(reply("hi"), to())
    assert route.call_count == 1


@pytest.mark.parametrize(
    ("age", "automated", "tagged", "expected"),
    [
        (timedelta(hours=23), False, True, {"messaging_type": "RESPONSE"}),
        (timedelta(hours=25), False, True, {"messaging_type": "MESSAGE_TAG", "tag": "HUMAN_AGENT"}),
        (
            timedelta(days=6, hours=23),
            False,
            True,
            {"messaging_type": "MESSAGE_TAG", "tag": "HUMAN_AGENT"},
        ),
        (timedelta(hours=25), True, True, None),
        (timedelta(hours=25), False, False, None),
        (timedelta(days=7, minutes=1), False, True, None),
        (None, False, True, None),
    ],
    ids=["24h", "human-agent", "day-7", "automated-late", "tag-off", "past-7-days", "never-wrote"],
)
async def test_the_window_and_the_human_agent_tag(
    client: httpx.AsyncClient,
    api: respx.MockRouter,
    age: timedelta | None,
    automated: bool,
    tagged: bool,
    expected: dict[str, str] | None,
) -> None:
    route = api.post(SEND).mock(return_value=sent("m1"))
    adapter = adapter_for(client, human_agent_tag=tagged)
    if expected is None:
        with pytest.raises(PermanentError, match="Instagram's"):
            await adapter.send(reply("hi", automated=automated), to(age))
        assert route.call_count == 0
        return
    await adapter.send(reply("hi", automated=automated), to(age))
    [body] = bodies(route)
    assert {k: v for k, v in body.items() if k in ("messaging_type", "tag")} == expected


async def test_long_text_is_split_at_1000_utf8_bytes(
    client: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    route = api.post(SEND).mock(side_effect=[sent(f"m{i}") for i in range(10)])
    # two 2-byte letters a word: 2399 characters (3 chunks by characters), 3199 bytes
    text = ("ñandú " * 400).strip()
    receipt = await adapter_for(client).send(reply(text), to())
    chunks = [b["message"]["text"] for b in bodies(route)]
    assert all(len(c.encode()) <= 1000 for c in chunks)
    assert " ".join(chunks).split() == text.split()
    assert len(receipt.external_ids) == len(chunks) == 4


async def test_attachments_go_by_url_with_instagrams_types(
    client: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    route = api.post(SEND).mock(side_effect=[sent(f"m{n}") for n in range(5)])
    files = (
        Attachment(kind="image", ref="d1", mime_type="image/png"),
        Attachment(kind="document", ref="d2", mime_type="application/pdf"),
        # no MIME type: by kind (Instagram takes video, audio, image and file)
        Attachment(kind="video", ref="d3"),
        Attachment(kind="voice", ref="d4"),
    )
    await adapter_for(client).send(reply("Your label", attachments=files), to())

    def url(n: int) -> dict[str, str]:
        return {"url": f"https://bridge.test/media/tok-d{n}"}

    assert [b["message"] for b in bodies(route)] == [
        {"text": "Your label"},
        {"attachment": {"type": "image", "payload": url(1)}},
        {"attachment": {"type": "file", "payload": url(2)}},
        {"attachment": {"type": "video", "payload": url(3)}},
        {"attachment": {"type": "audio", "payload": url(4)}},
    ]


@pytest.mark.parametrize(
    ("response", "error", "retry_after"),
    [
        (graph_failed(400, 10, 2534022), PermanentError, None),
        (graph_failed(400, 100), PermanentError, None),
        (graph_failed(400, 4), RetryableError, 60.0),
        (graph_failed(500, 2), RetryableError, None),
        (httpx.Response(502, text="bad gateway"), RetryableError, None),
        (httpx.Response(429, headers={"retry-after": "7"}), RetryableError, 7.0),
        (httpx.Response(200, json={"recipient_id": IGSID}), PermanentError, None),
    ],
    ids=["window-closed", "invalid", "throttled", "transient", "502", "429", "no-message-id"],
)
async def test_send_errors_are_classified(
    client: httpx.AsyncClient,
    api: respx.MockRouter,
    response: httpx.Response,
    error: type[Exception],
    retry_after: float | None,
) -> None:
    api.post(SEND).mock(return_value=response)
    with pytest.raises(error) as caught:
        await adapter_for(client).send(reply("hi"), to())
    assert str(caught.value).startswith("instagram send") and TOKEN not in str(caught.value)
    if isinstance(caught.value, RetryableError):
        assert caught.value.retry_after == retry_after


async def test_a_timeout_is_retryable(client: httpx.AsyncClient, api: respx.MockRouter) -> None:
    api.post(SEND).mock(side_effect=httpx.ReadTimeout("timed out"))
    with pytest.raises(RetryableError, match="instagram send: ReadTimeout"):
        await adapter_for(client).send(reply("x"), to())


@pytest.mark.parametrize(
    ("profile", "expected"),
    [
        ({"name": "Ana Ruiz", "username": "ana.ruiz"}, "Ana Ruiz (@ana.ruiz)"),
        ({"username": "ana.ruiz"}, "@ana.ruiz"),
        ({"name": "Ana Ruiz"}, "Ana Ruiz"),
        ({}, None),
    ],
)
async def test_display_name_from_the_profile_api(
    client: httpx.AsyncClient, api: respx.MockRouter, profile: dict[str, str], expected: str | None
) -> None:
    route = api.get(f"{API}/v23.0/{IGSID}").mock(
        return_value=httpx.Response(200, json={"id": IGSID, **profile})
    )
    assert await adapter_for(client).display_name(IGSID, IGSID) == expected
    assert route.calls.last.request.url.params["fields"] == "name,username"


@pytest.mark.parametrize(
    "response",
    [graph_failed(400, 230), httpx.Response(500), httpx.Response(200, text="not json")],
)
async def test_a_failed_profile_lookup_is_no_name(
    client: httpx.AsyncClient, api: respx.MockRouter, response: httpx.Response
) -> None:
    api.get(f"{API}/v23.0/{IGSID}").mock(return_value=response)
    assert await adapter_for(client).display_name(IGSID, IGSID) is None


async def test_only_a_scoped_id_is_looked_up(
    client: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    # the id goes into the URL's path: "../me" would ask for the business account
    for bad in ("../me", "me", "", "12 34", "1" * 33):
        assert await adapter_for(client).display_name(bad, IGSID) is None
    assert not api.calls


async def test_health_asks_me(client: httpx.AsyncClient, api: respx.MockRouter) -> None:
    api.get(f"{API}/v23.0/me").mock(return_value=httpx.Response(200, json={"id": IG_A}))
    assert await adapter_for(client).health() == {"credentials_valid": 1.0}
    api.get(f"{API}/v23.0/me").mock(return_value=graph_failed(401, 190))
    with pytest.raises(PermanentError):
        await adapter_for(client).health()


async def test_fetch_downloads_from_the_cdn_without_credentials(
    client: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    cdn = "https://lookaside.fbsbx.com/ig_messaging_cdn/"
    route = api.get(url__startswith=cdn).mock(
        return_value=httpx.Response(
            200, content=b"\xff\xd8jpeg", headers={"content-type": "image/jpeg"}
        )
    )
    upload = await adapter_for(client).fetch(Attachment(kind="image", ref=cdn + "?asset_id=1"))
    assert upload == Upload("instagram-image.jpg", "image/jpeg", b"\xff\xd8jpeg")
    assert "authorization" not in route.calls.last.request.headers
    api.get(url__startswith=cdn).mock(return_value=httpx.Response(404))
    with pytest.raises(PermanentError, match="expired or removed"):
        await adapter_for(client).fetch(Attachment(kind="image", ref=cdn + "?asset_id=2"))


# -- through the gateway -------------------------------------------------------------------


def _yaml_with_instagram() -> str:
    from .conftest import META_YAML, ZD_SECRET

    desk = (
        "type: zendesk\n      base_url: https://acme.zendesk.test\n      email: bot@acme.test\n"
        f'      api_token: zd-api-token\n      webhook_secret: "{ZD_SECRET}"'
    )
    assert desk in META_YAML
    channel = (
        "    channels:\n"
        "      - type: instagram\n"
        "        app: meta\n"
        f'        ig_id: "{IG_A}"\n'
        "        access_token: ig-access-token\n"
        f"        base_url: {API}\n"
    )
    yaml_text = META_YAML.replace(desk, "type: sandbox").replace("    channels:\n", channel, 1)
    assert yaml_text.count("type: instagram") == 1
    return yaml_text


@pytest.mark.parametrize("path", ["/webhooks/instagram", "/webhooks/messenger"])
async def test_an_instagram_webhook_is_filed_on_its_own_url_or_the_pages(
    make_runtime: Any, aiohttp_client: Any, respx_mock: Any, path: str
) -> None:
    """Meta lets one app post its Page and Instagram objects to one callback URL."""
    from deskbridge.gateway import create_app

    from .conftest import META_SECRET, drain

    respx_mock.route(host="127.0.0.1").pass_through()
    respx_mock.get(f"{API}/v23.0/{IGSID}").respond(
        200, json={"id": IGSID, "name": "Ana Ruiz", "username": "ana.ruiz"}
    )
    rt = make_runtime(_yaml_with_instagram())
    client = await aiohttp_client(create_app(rt, role="serve"))
    body = sample("¿Tienen la talla M?")
    headers = {"X-Hub-Signature-256": sign(META_SECRET, body), "Content-Type": "application/json"}
    assert (await client.post(path, data=body, headers=headers)).status == 200
    bad = {**headers, "X-Hub-Signature-256": sign("not-the-app-secret", body)}
    assert (await client.post(path, data=body, headers=bad)).status == 401
    await drain(rt)
    [ticket] = await rt.sandbox.tickets("acme")
    assert ticket.channel == "instagram"
