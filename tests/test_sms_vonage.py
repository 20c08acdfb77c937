"""SMS through Vonage (``provider: vonage`` behind the same ``sms`` channel): the signed
webhooks' JWT (against the HS256 vector of Vonage's own SDK tests), the Messages API
webhook bodies, consent, the Messages and Applications APIs and media under respx, the
config, the demo's sandbox stand-in, and the whole path through the gateway, the worker
and the sandbox desk."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from jose import jwt

from deskbridge.adapters.sms import segments
from deskbridge.adapters.sms.vonage import (
    VonageSmsAdapter,
    VonageSmsReceiver,
    sample_inbound,
    sample_status,
    sign,
)
from deskbridge.adapters.sms.vonage.signature import application_claims, body_hash, claims
from deskbridge.config import VonageSmsConfig, parse_accounts
from deskbridge.errors import (
    ConfigError,
    ParseFailed,
    PayloadInvalid,
    PermanentError,
    RetryableError,
    SignatureDeferred,
    SignatureInvalid,
)
from deskbridge.schemas import (
    Attachment,
    Channel,
    ChannelAddress,
    ChannelEvent,
    DeliveryState,
    Direction,
    Message,
    RawRequest,
    StatusUpdate,
    Upload,
)

from .conftest import drain, redis_of
from .helpers import FakeLinks, agent_says, deliveries, rsa_private_key
from .helpers import agent_reply as reply

API_KEY = "a1b2c3d4"
API_SECRET = "vonage-api-secret-for-tests"
SECRET = "vonage-signature-secret-for-tests"
APP = "aaaaaaaa-bbbb-4ccc-8ddd-0123456789ab"
OURS = "+447400123456"
CUSTOMER = "+447400654321"
API = "https://vonage.test"
MESSAGES = f"{API}/v1/messages"
APPLICATION = f"{API}/v2/applications/{APP}"
URL = "https://bridge.example.com/webhooks/sms/acme"
NOW = 1750420800.0
PEM = rsa_private_key()


ENTRY: dict[str, Any] = {
    "provider": "vonage",
    "api_key": API_KEY,
    "api_secret": API_SECRET,
    "signature_secret": SECRET,
    "application_id": APP,
    "private_key": PEM,
    "default_sender": OURS,
}


def config(**overrides: Any) -> VonageSmsConfig:
    return VonageSmsConfig.model_validate(ENTRY | {"webhook_url": URL, "base_url": API} | overrides)


RECEIVER = VonageSmsReceiver("acme", config(), clock=lambda: NOW)


def request(body: bytes, authorization: str | None = "sign", **headers: str) -> RawRequest:
    h = {"content-type": "application/json", **headers}
    if authorization == "sign":
        h["authorization"] = sign(SECRET, body, api_key=API_KEY, application_id=APP, issued_at=NOW)
    elif authorization is not None:
        h["authorization"] = authorization
    return RawRequest(method="POST", path="/webhooks/sms/acme", headers=h, body=body)


def inbound(text: str, seed: str = "1", **kw: Any) -> bytes:
    return sample_inbound(text, sender=CUSTOMER, to=OURS, seed=seed, now=NOW, **kw)


def events(body: bytes) -> list[Any]:
    req = request(body)
    RECEIVER.verify(req)
    return RECEIVER.parse(req).events


# -- the signature -------------------------------------------------------------------------

# vonage-python-sdk jwt/tests/test_verify_jwt.py: an HS256 token and the secret it verifies
# with (and one it does not)
SDK_TOKEN = (
    "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJPbmxpbmUgSldUIEJ1aWxkZXIiLCJpYXQiOjE2OTc2"
    "MzQ2ODAsImV4cCI6MzMyNTQ1NDA4MjgsImF1ZCI6IiIsInN1YiI6IiJ9.88vJc3I2HhuqEDixHXVhc9R30tA6U_H"
    "QHZTC29y6CGM"
)


def test_the_sdk_vector_verifies_with_its_secret_only() -> None:
    assert claims(SDK_TOKEN, "qwertyuiopasdfghjklzxcvbnm123456")["iat"] == 1697634680
    with pytest.raises(SignatureInvalid):
        claims(SDK_TOKEN, "asdf")


def test_the_documented_claims_are_what_sign_makes() -> None:
    body = inbound("hi")
    token = sign(SECRET, body, api_key=API_KEY, application_id=APP, issued_at=NOW)
    assert token.startswith("Bearer ")
    assert jwt.get_unverified_header(token.removeprefix("Bearer ")) == {
        "alg": "HS256",
        "typ": "JWT",
    }
    got = claims(token.removeprefix("Bearer "), SECRET)
    assert got["iss"] == "Vonage" and got["iat"] == int(NOW) and got["jti"]
    assert got["payload_hash"] == body_hash(body) and len(body_hash(body)) == 64
    assert (got["api_key"], got["application_id"]) == (API_KEY, APP)


def test_a_signed_webhook_verifies() -> None:
    RECEIVER.verify(request(inbound("hi")))


def _signed(body: bytes, **kw: Any) -> str:
    args: dict[str, Any] = {"api_key": API_KEY, "application_id": APP, "issued_at": NOW} | kw
    secret = args.pop("secret", SECRET)
    return sign(secret, body, **args)


@pytest.mark.parametrize(
    ("authorization", "says"),
    [
        (lambda b: _signed(b, secret="another-secret"), "not signed with our secret"),
        (lambda b: _signed(b + b" "), "payload_hash"),
        (lambda b: _signed(b, api_key="e5f6a7b8"), "another Vonage account"),
        (lambda b: _signed(b, application_id="bbbbbbbb-bbbb-4ccc-8ddd-0123456789ab"), "another"),
        (lambda b: _signed(b, issued_at=NOW - 25 * 3600 - 1), "iat"),
        (lambda b: _signed(b, issued_at=NOW + 301), "iat"),
        (lambda b: "Bearer " + jwt.encode({"iat": int(NOW)}, SECRET), "payload_hash"),
        (
            lambda b: (
                "Bearer "
                + jwt.encode(
                    {"payload_hash": body_hash(b), "api_key": API_KEY, "iat": NOW}, PEM, "RS256"
                )
            ),
            "not signed with our secret",
        ),
        (lambda b: "Bearer not-a-jwt", "not signed with our secret"),
    ],
    ids=[
        "wrong-secret",
        "tampered-body",
        "other-account",
        "other-application",
        "older-than-max-age",
        "from-the-future",
        "no-payload-hash",
        "rs256-not-hs256",
        "garbage",
    ],
)
def test_what_vonage_did_not_sign_for_us_is_refused(authorization: Any, says: str) -> None:
    body = inbound("hi")
    with pytest.raises(SignatureInvalid, match=says) as caught:
        RECEIVER.verify(request(body, authorization=authorization(body)))
    assert type(caught.value) is SignatureInvalid and caught.value.status == 401


def test_a_body_sent_spaced_verifies_against_the_hash_of_its_compact_json() -> None:
    # Vonage hashes the payload as compact JSON (its support article on signed webhooks):
    # a body on the wire with other whitespace still names the same content
    compact = inbound("hi")
    spaced = json.dumps(json.loads(compact), indent=2, ensure_ascii=False).encode()
    RECEIVER.verify(request(spaced, authorization=_signed(compact)))
    other = json.dumps(json.loads(compact) | {"text": "hello"}, indent=2).encode()
    with pytest.raises(SignatureInvalid, match="payload_hash"):
        RECEIVER.verify(request(other, authorization=_signed(compact)))


def test_a_token_within_the_window_and_one_without_an_application_verify() -> None:
    body = inbound("hi")
    RECEIVER.verify(request(body, authorization=_signed(body, issued_at=NOW - 24 * 3600)))
    RECEIVER.verify(request(body, authorization=_signed(body, application_id=None)))


@pytest.mark.parametrize("authorization", [None, "", "Basic eDp5", "Bearer "])
def test_an_unsigned_webhook_is_asked_again(authorization: str | None) -> None:
    # Vonage: an internal error may send a callback unsigned; a 5xx makes it try again
    with pytest.raises(SignatureDeferred) as caught:
        RECEIVER.verify(request(inbound("hi"), authorization=authorization))
    assert caught.value.status == 503


# -- inbound -------------------------------------------------------------------------------


def test_an_sms_is_a_message_from_a_strong_phone() -> None:
    [msg] = events(inbound("Where is my order?"))
    assert isinstance(msg, Message)
    assert (msg.channel, msg.thread, msg.text) == (Channel.SMS, CUSTOMER, "Where is my order?")
    assert {(i.kind, i.value, i.strength) for i in msg.sender.identities} == {
        ("phone", CUSTOMER, "strong"),
        ("channel_user", CUSTOMER, "strong"),
    }
    assert msg.context == {"to": OURS, "from": CUSTOMER}
    assert msg.occurred_at == datetime.fromtimestamp(NOW, UTC)
    assert msg.dedup_key == msg.external_id and len(msg.external_id) == 36


def test_an_mms_image_with_its_caption() -> None:
    [msg] = events(inbound("the crack", media=("https://api-eu.nexmo.com/v3/media/abc",)))
    assert isinstance(msg, Message)
    assert msg.text == "the crack"
    assert msg.attachments == (
        Attachment(kind="image", ref="https://api-eu.nexmo.com/v3/media/abc"),
    )


def test_an_mms_of_several_files_and_one_not_https() -> None:
    body = json.dumps(
        {
            "channel": "mms",
            "message_uuid": "aaaaaaaa-bbbb-4ccc-8ddd-0123456789ab",
            "to": OURS[1:],
            "from": CUSTOMER[1:],
            "timestamp": "2025-06-20T12:00:00Z",
            "message_type": "content",
            "content": [
                {"type": "image", "url": "https://api-us.nexmo.com/v3/media/1"},
                {"type": "vcard", "url": "https://api-us.nexmo.com/v3/media/2", "name": "a.vcf"},
                {"type": "video", "url": "http://example.com/3.mp4"},
            ],
        }
    ).encode()
    [msg] = events(body)
    assert isinstance(msg, Message)
    assert [(a.kind, a.mime_type, a.filename) for a in msg.attachments] == [
        ("image", None, None),
        ("document", "text/vcard", "a.vcf"),
    ]
    assert msg.note == "MMS media 2 without an https URL"


@pytest.mark.parametrize(
    ("text", "action"),
    [("STOP", "opt_out"), ("stop.", "opt_out"), ("Unsubscribe", "opt_out"), ("START", "opt_in")],
)
def test_opt_out_and_in_keywords_are_consent_events(text: str, action: str) -> None:
    msg, consent = events(inbound(text))
    assert isinstance(msg, Message) and isinstance(consent, ChannelEvent)
    assert (consent.action, consent.thread) == (action, CUSTOMER)
    assert consent.dedup_key == f"{action}:{msg.external_id}"


def test_help_and_a_sentence_with_stop_are_messages_only() -> None:
    [helped] = events(inbound("HELP", seed="h"))
    assert isinstance(helped, Message) and helped.note == "Asked for HELP (the carrier's keyword)"
    [sentence] = events(inbound("Please stop the second parcel", seed="s"))
    assert isinstance(sentence, Message) and sentence.note is None


@pytest.mark.parametrize(
    ("status", "error", "expected", "says"),
    [
        ("submitted", "", "sent", None),
        ("delivered", "", "delivered", None),
        ("read", "", "read", None),
        ("rejected", "1240", "failed", "Vonage error 1240 (the customer opted out (STOP))"),
        ("undeliverable", "1260", "failed", "Vonage error 1260 (the number is unreachable)"),
        ("rejected", "", "failed", "Vonage gave no reason"),
    ],
)
def test_status_webhooks_are_statuses(
    status: str, error: str, expected: str, says: str | None
) -> None:
    uuid = "bbbbbbbb-bbbb-4ccc-8ddd-0123456789ab"
    body = sample_status(status, message_uuid=uuid, sender=OURS, to=CUSTOMER, now=NOW, error=error)
    [st] = events(body)
    assert isinstance(st, StatusUpdate)
    assert (st.status, st.external_id, st.thread) == (expected, uuid, CUSTOMER)
    assert st.dedup_key == f"{status}:{uuid}"
    assert st.error == says and st.error_code == (error or None)


def test_what_is_not_filed_is_named() -> None:
    uuid = "cccccccc-bbbb-4ccc-8ddd-0123456789ab"
    odd = sample_status("accepted", message_uuid=uuid, sender=OURS, to=CUSTOMER, now=NOW)
    whatsapp = json.dumps({"channel": "whatsapp", "message_uuid": uuid, "text": "hi"}).encode()
    short_code = sample_inbound("hi", sender="12345", to=OURS, seed="x", now=NOW)
    for body, reason in [(odd, "status_other"), (whatsapp, "other_channel")]:
        req = request(body)
        assert RECEIVER.parse(req).ignored == (reason,)
    assert RECEIVER.parse(request(short_code)).ignored == ("no_phone_sender",)


def test_bodies_that_are_not_a_vonage_message() -> None:
    with pytest.raises(ParseFailed, match="message_uuid"):
        RECEIVER.parse(request(b'{"channel": "sms", "text": "hi"}'))
    with pytest.raises(PayloadInvalid):
        RECEIVER.parse(request(b"[1, 2]"))
    with pytest.raises(PayloadInvalid):
        RECEIVER.parse(request(b"text=hi", **{"content-type": "application/x-www-form-urlencoded"}))


# -- outbound ------------------------------------------------------------------------------


def to(number: str = CUSTOMER, **context: str) -> ChannelAddress:
    return ChannelAddress(channel=Channel.SMS, account="acme", thread=number, context=context)


def accepted(uuid: str) -> httpx.Response:
    return httpx.Response(202, json={"message_uuid": uuid})


def sent(route: respx.Route) -> list[dict[str, Any]]:
    return [json.loads(c.request.content) for c in route.calls]


def adapter(client: httpx.AsyncClient, **overrides: Any) -> VonageSmsAdapter:
    return VonageSmsAdapter("acme", config(**overrides), client, FakeLinks())


async def test_send_posts_json_with_the_applications_jwt(
    client: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    route = api.post(MESSAGES).mock(return_value=accepted("m-1"))
    receipt = await adapter(client).send(
        reply("Your parcel ships today."), to(to=OURS, **{"from": CUSTOMER})
    )
    assert receipt.external_ids == ("m-1",)
    assert sent(route) == [
        {
            "message_type": "text",
            "channel": "sms",
            "text": "Your parcel ships today.",
            "to": CUSTOMER[1:],
            "from": OURS[1:],
            "webhook_url": URL,
        }
    ]
    token = route.calls.last.request.headers["authorization"].removeprefix("Bearer ")
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    made = application_claims(token, PEM)
    assert made["application_id"] == APP and made["exp"] - made["iat"] == 900


@pytest.mark.parametrize(
    ("number", "context", "expected"),
    [
        ("+4915123456789", {"to": "+447700900099"}, "447700900099"),
        ("+4915123456789", {}, "DeskBridge"),
        ("+33612345678", {}, OURS[1:]),
    ],
    ids=["number-written-to", "country", "default"],
)
async def test_sender_selection(
    client: httpx.AsyncClient,
    api: respx.MockRouter,
    number: str,
    context: dict[str, str],
    expected: str,
) -> None:
    route = api.post(MESSAGES).mock(return_value=accepted("m-1"))
    await adapter(client, senders={"DE": "DeskBridge"}).send(reply("hi"), to(number, **context))
    [body] = sent(route)
    assert body["from"] == expected and body["to"] == number[1:]


async def test_a_long_reply_goes_in_messages_of_max_segments(
    client: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    route = api.post(MESSAGES).mock(side_effect=[accepted(f"m-{i}") for i in range(40)])
    text = ("Привет из Берлина. " * 60).strip()  # Cyrillic: UCS-2, 67 units a segment
    receipt = await adapter(client, max_segments=2).send(reply(text), to())
    texts = [b["text"] for b in sent(route)]
    assert all(segments.count(t).count <= 2 for t in texts)
    assert len(receipt.external_ids) == len(texts) > 1
    assert " ".join(texts).split() == text.split()


async def test_attachments_are_one_mms_after_the_text(
    client: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    route = api.post(MESSAGES).mock(side_effect=[accepted("m-1"), accepted("m-2")])
    files = (Attachment(kind="image", ref="d1"), Attachment(kind="document", ref="d2"))
    receipt = await adapter(client).send(reply("Your label", attachments=files), to())
    text, mms = sent(route)
    assert text["channel"] == "sms"
    assert (mms["channel"], mms["message_type"]) == ("mms", "content")
    assert mms["content"] == [
        {"type": "image", "url": "https://bridge.test/media/tok-d1"},
        {"type": "file", "url": "https://bridge.test/media/tok-d2"},
    ]
    assert receipt.external_ids == ("m-1", "m-2")


def _problem(status: int, code: str, **headers: str) -> httpx.Response:
    return httpx.Response(
        status,
        json={
            "type": f"https://developer.vonage.com/api-errors/messages#{code}",
            "title": "Invalid params",
            "detail": f"The number {CUSTOMER[1:]} cannot receive: Where is it",
            "instance": "bf0ca0bf927b3b52e3cb03217e1a1ddf",
        },
        headers=headers,
    )


@pytest.mark.parametrize(
    ("response", "error", "says"),
    [
        (_problem(422, "1240"), PermanentError, "opted out"),
        (_problem(422, "1120"), PermanentError, "Vonage error 1120 (the sender is not accepted"),
        (_problem(402, ""), PermanentError, "balance"),
        (_problem(401, ""), PermanentError, "401"),
        (_problem(429, "", **{"retry-after": "3"}), RetryableError, "429"),
        (_problem(500, ""), RetryableError, "500"),
        (httpx.Response(202, json={"status": "ok"}), PermanentError, "no message_uuid"),
    ],
    ids=["opted-out", "illegal-sender", "low-balance", "auth", "429", "500", "no-uuid"],
)
async def test_send_errors_are_classified(
    client: httpx.AsyncClient,
    api: respx.MockRouter,
    response: httpx.Response,
    error: type[Exception],
    says: str,
) -> None:
    api.post(MESSAGES).mock(return_value=response)
    with pytest.raises(error) as caught:
        await adapter(client).send(reply("Where is it"), to())
    message = str(caught.value)
    assert says in message
    for secret in (API_SECRET, SECRET, CUSTOMER[1:], "Where is it"):
        assert secret not in message
    if response.status_code == 429:
        assert isinstance(caught.value, RetryableError) and caught.value.retry_after == 3.0


@pytest.mark.parametrize(
    ("fault", "outcome"),
    [(httpx.ConnectTimeout("slow"), "not_applied"), (httpx.ReadTimeout("slow"), "unknown")],
    ids=["never-left", "applied-but-answer-lost"],
)
async def test_a_timeout_is_retryable_and_says_whether_it_may_have_gone(
    client: httpx.AsyncClient, api: respx.MockRouter, fault: Exception, outcome: str
) -> None:
    api.post(MESSAGES).mock(side_effect=fault)
    with pytest.raises(RetryableError) as caught:
        await adapter(client).send(reply("hi"), to())
    assert caught.value.outcome == outcome


async def test_a_later_part_resumes_after_the_parts_vonage_took(
    client: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    from deskbridge.adapters.base import MemoryProgress

    route = api.post(MESSAGES).mock(
        side_effect=[accepted("m-1"), httpx.Response(503), accepted("m-2")]
    )
    progress = MemoryProgress()
    text = ("Ihr Paket ist unterwegs. " * 20).strip()
    with pytest.raises(RetryableError):
        await adapter(client, max_segments=2).send(reply(text), to(), progress=progress)
    receipt = await adapter(client, max_segments=2).send(reply(text), to(), progress=progress)
    assert receipt.external_ids == ("m-1", "m-2") and route.call_count == 3


async def test_media_downloads_send_the_jwt_to_vonage_only(
    client: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    ref = "https://api-eu.nexmo.com/v3/media/6882bbe2-fe14-4e2f-910f-652beee058d4"
    first = api.get(ref).mock(
        return_value=httpx.Response(302, headers={"location": "https://media.cdn.test/abc"})
    )
    cdn = api.get("https://media.cdn.test/abc").mock(
        return_value=httpx.Response(200, content=b"jpeg", headers={"content-type": "image/jpeg"})
    )
    upload = await adapter(client).fetch(Attachment(kind="image", ref=ref, filename="crack.jpg"))
    assert upload == Upload("crack.jpg", "image/jpeg", b"jpeg")
    token = first.calls.last.request.headers["authorization"].removeprefix("Bearer ")
    assert application_claims(token, PEM)["application_id"] == APP
    assert "authorization" not in cdn.calls.last.request.headers


async def test_media_elsewhere_is_fetched_without_credentials(
    client: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    route = api.get("https://files.example.org/a.png").mock(
        return_value=httpx.Response(200, content=b"png", headers={"content-type": "image/png"})
    )
    await adapter(client).fetch(Attachment(kind="image", ref="https://files.example.org/a.png"))
    assert "authorization" not in route.calls.last.request.headers


async def test_health_reads_the_application(
    client: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    route = api.get(APPLICATION).mock(return_value=httpx.Response(200, json={"id": APP}))
    assert await adapter(client).health() == {"credentials_valid": 1.0}
    auth = route.calls.last.request.headers["authorization"].removeprefix("Basic ")
    assert base64.b64decode(auth).decode() == f"{API_KEY}:{API_SECRET}"
    api.get(APPLICATION).mock(return_value=httpx.Response(401, json={"title": "Unauthorized"}))
    with pytest.raises(PermanentError):
        await adapter(client).health()


async def test_register_sets_inbound_and_status_url_and_keeps_the_rest(
    client: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    current = {
        "id": APP,
        "name": "Shop",
        "keys": {"public_key": "-----BEGIN PUBLIC KEY-----\nabc\n-----END PUBLIC KEY-----\n"},
        "capabilities": {
            "voice": {"webhooks": {"answer_url": {"address": "https://x/a", "http_method": "GET"}}},
            "messages": {
                "webhooks": {"inbound_url": {"address": "https://old/in", "http_method": "POST"}},
                "authenticate_inbound_media": True,
            },
        },
        "_links": {"self": {"href": f"/v2/applications/{APP}"}},
    }
    api.get(APPLICATION).mock(return_value=httpx.Response(200, json=current))
    put = api.put(APPLICATION).mock(return_value=httpx.Response(200, json=current))
    await adapter(client).set_webhook(URL)
    [body] = [json.loads(c.request.content) for c in put.calls]
    hook = {"address": URL, "http_method": "POST"}
    assert body == {
        "name": "Shop",
        "keys": current["keys"],
        "capabilities": {
            "voice": current["capabilities"]["voice"],  # type: ignore[index]
            "messages": {
                "webhooks": {"inbound_url": hook, "status_url": hook},
                "authenticate_inbound_media": True,
                "version": "v1",
            },
        },
    }


async def test_register_refuses_a_url_other_than_the_configured_one(
    client: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    with pytest.raises(PermanentError, match="webhook_url"):
        await adapter(client).set_webhook("https://other.example/webhooks/sms/acme")
    assert not api.calls


# -- the config ----------------------------------------------------------------------------

BASE = "accounts:\n  acme:\n    desk: {type: sandbox}\n    channels:\n"


def _vonage_yaml(**fields: Any) -> str:
    return BASE + "      - " + json.dumps({"type": "sms"} | ENTRY | fields) + "\n"


def test_the_config_picks_the_provider() -> None:
    acc = parse_accounts(_vonage_yaml()).accounts["acme"]
    assert isinstance(acc.channel(Channel.SMS), VonageSmsConfig)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            BASE + "      - {type: sms, provider: plivo}\n",
            ("accounts.acme.channels[0]", "provider must be one of twilio, vonage"),
        ),
        (
            _vonage_yaml(private_key="not a key"),
            ("accounts.acme.channels[0].private_key", "is not an unencrypted PEM private key"),
        ),
        (
            _vonage_yaml(senders={"GB": "MG" + "0" * 32}),
            ("accounts.acme.channels[0].senders", f"GB: 'MG{'0' * 32}' is not a number"),
        ),
        (
            BASE + "      - {type: sms, provider: vonage, default_sender: '+447700900000'}\n",
            ("accounts.acme.channels[0].api_key", "Field required"),
        ),
        (
            # the application's JWT and the API secret go to this host: a URL or nothing
            _vonage_yaml(base_url="api.nexmo.com"),
            ("accounts.acme.channels[0].base_url", "'api.nexmo.com' is not an http:// or https://"),
        ),
    ],
    ids=["unknown-provider", "bad-key", "messaging-service-sid", "missing-credentials", "base"],
)
def test_a_wrong_sms_entry_is_named_clearly(text: str, problem: tuple[str, str]) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_accounts(text)
    where, what = problem
    assert any(w == where and m.startswith(what) for w, m in caught.value.problems), (
        caught.value.problems
    )


def test_check_config_reports_a_vonage_entry(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from deskbridge.cli.main import cli

    file = tmp_path / "accounts.yaml"
    file.write_text(_vonage_yaml(max_segments=30))
    result = CliRunner().invoke(cli, ["check-config", str(file)])
    assert result.exit_code != 0
    assert "accounts.acme.channels[0].max_segments" in result.output
    assert PEM.splitlines()[1] not in result.output


# -- end to end: gateway, worker, sandbox desk ---------------------------------------------

YAML = _vonage_yaml(webhook_url=URL, base_url=API)


async def _post(client: Any, body: bytes, authorization: str | None = "sign") -> int:
    import time

    headers = {"Content-Type": "application/json"}
    if authorization == "sign":
        headers["Authorization"] = sign(
            SECRET, body, api_key=API_KEY, application_id=APP, issued_at=time.time()
        )
    elif authorization is not None:
        headers["Authorization"] = authorization
    resp = await client.post("/webhooks/sms/acme", data=body, headers=headers)
    return int(resp.status)


async def test_sms_in_reply_out_stop_honoured_start_resumes_and_statuses_apply(
    make_runtime: Any, aiohttp_client: Any, respx_mock: Any
) -> None:
    import time

    from deskbridge.gateway import create_app

    respx_mock.route(host="127.0.0.1").pass_through()
    first, second = "dddddddd-bbbb-4ccc-8ddd-000000000001", "dddddddd-bbbb-4ccc-8ddd-000000000002"
    send = respx_mock.post(MESSAGES).mock(side_effect=[accepted(first), accepted(second)])
    rt = make_runtime(YAML)
    client = await aiohttp_client(create_app(rt, role="serve"))
    now = time.time()
    body = sample_inbound("Where is my order?", sender=CUSTOMER, to=OURS, seed="a", now=now)
    assert await _post(client, body) == 200
    assert await _post(client, body) == 200  # a redelivery files once
    stored = sorted(await redis_of(rt).keys("*"))
    other = sample_inbound("Hello?", sender=CUSTOMER, to=OURS, seed="z", now=now)
    assert await _post(client, other, authorization="Bearer x.y.z") == 401
    assert await _post(client, other, authorization=None) == 503  # unsigned: asked again
    assert sorted(await redis_of(rt).keys("*")) == stored  # neither changed a thing
    await drain(rt)
    [ticket] = await rt.sandbox.tickets("acme")
    assert ticket.channel == "sms"
    assert len(await deliveries(rt, Direction.INBOUND)) == 1

    await agent_says(rt, ticket.id, "It ships today.", 1)
    assert send.call_count == 1
    assert json.loads(send.calls[0].request.content)["from"] == OURS[1:]

    status = sample_status("delivered", message_uuid=first, sender=OURS, to=CUSTOMER, now=now)
    assert await _post(client, status) == 200
    await drain(rt)
    [out] = await deliveries(rt, Direction.OUTBOUND)
    assert out.state is DeliveryState.DELIVERED

    stop = sample_inbound("STOP", sender=CUSTOMER, to=OURS, seed="b", now=now)
    assert await _post(client, stop) == 200
    await drain(rt)
    [inbound_first, *_] = await deliveries(rt, Direction.INBOUND)
    conv = await rt.conversations.get("acme", inbound_first.conversation_id)
    contact = await rt.conversations.contact("acme", conv.contact_id)
    assert contact.attributes["sms_consent"].startswith("opted_out since ")
    await agent_says(rt, ticket.id, "Are you there?", 2)
    assert send.call_count == 1  # nothing goes out after STOP

    start = sample_inbound("START", sender=CUSTOMER, to=OURS, seed="c", now=now)
    assert await _post(client, start) == 200
    await drain(rt)
    await agent_says(rt, ticket.id, "Welcome back.", 3)
    assert send.call_count == 2
    replies = await deliveries(rt, Direction.OUTBOUND)
    states = [d.state for d in replies]
    assert states.count(DeliveryState.DELIVERED) == 2 and DeliveryState.DEAD in states


async def test_the_demo_stands_in_for_vonage(
    tmp_path: Path, make_runtime: Any, aiohttp_client: Any
) -> None:
    import time

    from deskbridge.adapters.demo import demo_accounts, demo_secrets
    from deskbridge.adapters.registry import CHANNELS
    from deskbridge.adapters.sms.vonage.signature import application_token
    from deskbridge.adapters.spec import SimulatedRequest, SimulateInput
    from deskbridge.gateway import create_app

    accounts = demo_accounts(tmp_path, sms_provider="vonage")
    sms = accounts.accounts["demo"].channel(Channel.SMS)
    assert isinstance(sms, VonageSmsConfig) and sms.sandbox
    twilio = demo_accounts(tmp_path).accounts["demo"].channel(Channel.SMS)
    assert twilio is not None and not isinstance(twilio, VonageSmsConfig)  # the default

    # the demo account's SMS channel as the demo writes it, on its own
    entry = {"type": "sms", "provider": "vonage", "sandbox": True}
    entry |= demo_secrets(tmp_path)["sms-vonage"] | {"default_sender": sms.default_sender}
    rt = make_runtime(
        "accounts:\n  demo:\n    desk: {type: sandbox}\n    channels:\n      - "
        + json.dumps(entry)
        + "\n"
    )
    client = await aiohttp_client(create_app(rt, role="serve"))

    # `deskbridge simulate sms` against the demo: a signed inbound webhook, filed
    sim = SimulateInput(
        accounts, "demo", sms, "Where is my order?", "+14155550142", "", False, time.time()
    )
    out = CHANNELS[Channel.SMS].simulate(sim)
    assert isinstance(out, SimulatedRequest)
    resp = await client.post(out.path, data=out.body, headers=dict(out.headers))
    assert resp.status == 200
    await drain(rt)
    [ticket] = await rt.sandbox.tickets("demo")
    assert ticket.channel == "sms"

    # the Messages API stand-in: the application's JWT, else 401
    api = "/sandbox/channel-api/demo/sms/v1/messages"
    message = {"message_type": "text", "channel": "sms", "to": "14155550142", "text": "Hi"}
    token = application_token(sms.application_id, sms.private_key.get_secret_value())
    ok = await client.post(
        api, json=message | {"from": "15005550006"}, headers={"Authorization": f"Bearer {token}"}
    )
    assert ok.status == 202 and (await ok.json())["message_uuid"]
    forged = application_token(sms.application_id, PEM)
    bad = await client.post(api, json=message, headers={"Authorization": f"Bearer {forged}"})
    assert bad.status == 401
    basic = base64.b64encode(f"{sms.api_key}:{sms.api_secret.get_secret_value()}".encode())
    app = await client.get(
        f"/sandbox/channel-api/demo/sms/v2/applications/{sms.application_id}",
        headers={"Authorization": f"Basic {basic.decode()}"},
    )
    assert app.status == 200
