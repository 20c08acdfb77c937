"""SMS through Twilio: the signature (against the vectors of Twilio's own SDK tests), the
webhook forms, consent, segments, the Messages resource and media under respx, and the
whole path through the gateway, the worker and the sandbox desk."""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import parse_qs, parse_qsl

import httpx
import pytest
import respx

from deskbridge.adapters.sms import SmsAdapter, SmsReceiver, sample_message, sample_status, segments
from deskbridge.adapters.sms.signature import sign, url_variants, verify
from deskbridge.config.accounts import SmsConfig
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
    DeliveryState,
    Direction,
    Message,
    RawRequest,
    StatusUpdate,
    Upload,
)

from .conftest import drain
from .helpers import FakeLinks, agent_says, deliveries
from .helpers import agent_reply as reply

SID = "AC" + "0123456789abcdef" * 2
TOKEN = "twilio-auth-token-for-tests"
URL = "https://bridge.example.com/webhooks/sms/acme"
OURS = "+14155550100"
CUSTOMER = "+14155550142"
API = "https://twilio.test"
MESSAGES = f"{API}/2010-04-01/Accounts/{SID}/Messages.json"


def config(**overrides: Any) -> SmsConfig:
    return SmsConfig.model_validate(
        {
            "account_sid": SID,
            "auth_token": TOKEN,
            "webhook_url": URL,
            "default_sender": OURS,
            "base_url": API,
        }
        | overrides
    )


RECEIVER = SmsReceiver("acme", config(), clock=lambda: 1750420800.0)


def request(
    body: bytes, *, url: str = URL, signature: str | None = "sign", **headers: str
) -> RawRequest:
    h = {"content-type": "application/x-www-form-urlencoded", **headers}
    if signature == "sign":
        h["x-twilio-signature"] = sign(TOKEN, url, parse_qsl(body.decode()))
    elif signature is not None:
        h["x-twilio-signature"] = signature
    return RawRequest(method="POST", path="/webhooks/sms/acme", headers=h, body=body)


def inbound(text: str, seed: str = "1", **kw: Any) -> bytes:
    return sample_message(text, account_sid=SID, sender=CUSTOMER, to=OURS, seed=seed, **kw)


# -- the signature: the vectors of twilio-php's RequestValidatorTest ------------------------

VECTOR_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
VECTOR_PARAMS = [
    ("CallSid", "CA1234567890ABCDE"),
    ("Caller", "+14158675309"),
    ("Digits", "1234"),
    ("From", "+14158675309"),
    ("To", "+18005551212"),
]


def test_the_documented_vector() -> None:
    assert sign("12345", VECTOR_URL, VECTOR_PARAMS) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    assert sign("12345", VECTOR_URL, reversed(VECTOR_PARAMS)) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="


def test_a_repeated_parameter_signs_each_distinct_value_sorted() -> None:
    params = [("Sid", "CA123"), ("SidAccount", "AC123")]
    params += [("Digits", "5678"), ("Digits", "1234"), ("Digits", "1234")]
    assert sign("12345", VECTOR_URL, params) == "IK+Dwps556ElfBT0I3Rgjkr1wJU="


@pytest.mark.parametrize(
    ("url", "given"),
    [
        ("https://mycompany.com:1234/myapp.php?foo=1&bar=2", "RSOYDt4T1cUTdK1PDd93/VVr8B8="),
        ("http://mycompany.com:1234/myapp.php?foo=1&bar=2", "Zmvh+3yNM1Phv2jhDCwEM3q5ebU="),
        (VECTOR_URL, "kvajT1Ptam85bY51eRf/AJRuM3w="),
        ("http://mycompany.com/myapp.php?foo=1&bar=2", "0ZXoZLH/DfblKGATFgpif+LLRf4="),
        ("https://user:pass@mycompany.com/myapp.php?foo=1&bar=2", "ZQFR1PTIZXF2MXB8ZnKCvnnA+rI="),
    ],
    ids=["drops-port-https", "keeps-port-http", "adds-443", "adds-80", "userinfo-adds-443"],
)
def test_the_url_with_or_without_its_port(url: str, given: str) -> None:
    body = "&".join(f"{k}={v}" for k, v in VECTOR_PARAMS).replace("+", "%2B").encode()
    ct = "application/x-www-form-urlencoded"
    assert verify("12345", [url], body, ct, given) == VECTOR_PARAMS


def test_the_json_body_variant_needs_the_body_hash() -> None:
    body = b'{"property": "value", "boolean": true}'
    digest = "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620"
    url = f"{VECTOR_URL}&bodySHA256={digest}"
    assert verify("12345", [url], body, "application/json", "a9nBmqA0ju/hNViExpshrM61xv4=") == []
    with pytest.raises(SignatureInvalid):
        verify("12345", [url], body + b" ", "application/json", "a9nBmqA0ju/hNViExpshrM61xv4=")
    with pytest.raises(SignatureInvalid):
        verify("12345", [VECTOR_URL], body, "application/json", "RSOYDt4T1cUTdK1PDd93/VVr8B8=")


def test_url_variants_keep_a_non_default_port_as_given_too() -> None:
    assert url_variants("https://h.example:8443/p") == [
        "https://h.example:8443/p",
        "https://h.example/p",
        "https://h.example:443/p",
    ]
    assert url_variants("ftp://h/p") == ["ftp://h/p"]


@pytest.mark.parametrize("signature", [None, "", "RSOYDt4T1cUTdK1PDd93/VVr8B8=", "x"])
def test_a_missing_or_wrong_signature_is_refused(signature: str | None) -> None:
    with pytest.raises(SignatureInvalid):
        RECEIVER.verify(request(inbound("hi"), signature=signature))


def test_a_body_changed_after_signing_is_refused() -> None:
    req = request(inbound("hi"))
    changed = RawRequest(req.method, req.path, req.query, req.headers, req.body + b"&Body=x")
    with pytest.raises(SignatureInvalid):
        RECEIVER.verify(changed)


def test_without_a_configured_url_the_request_names_it() -> None:
    receiver = SmsReceiver("acme", config(webhook_url=None))
    body = inbound("hi")
    behind = "https://bridge.example.com/webhooks/sms/acme"
    receiver.verify(
        request(body, url=behind, host="bridge.example.com", **{"x-forwarded-proto": "https"})
    )
    direct = "http://127.0.0.1:8080/webhooks/sms/acme"
    receiver.verify(request(body, url=direct, host="127.0.0.1:8080"))
    with pytest.raises(SignatureInvalid):
        receiver.verify(request(body, url=direct, host="evil.example"))


# -- inbound ---------------------------------------------------------------------------------


def test_an_sms_is_a_message_from_a_strong_phone() -> None:
    parsed = RECEIVER.parse(request(inbound("¿Dónde está mi pedido?")))
    [msg] = parsed.events
    assert isinstance(msg, Message)
    assert (msg.account, msg.channel, msg.thread, msg.text) == (
        "acme",
        Channel.SMS,
        CUSTOMER,
        "¿Dónde está mi pedido?",
    )
    assert msg.dedup_key.startswith("SM") and msg.context == {"to": OURS, "from": CUSTOMER}
    kinds = {(i.kind, i.value, i.strength) for i in msg.sender.identities}
    assert kinds == {("phone", CUSTOMER, "strong"), ("channel_user", CUSTOMER, "strong")}


def test_mms_media_are_attachments() -> None:
    media = (f"{API}/2010-04-01/Accounts/{SID}/Messages/MM1/Media/ME1",)
    [msg] = RECEIVER.parse(request(inbound("photo", media=media))).events
    assert isinstance(msg, Message)
    assert [(a.kind, a.ref, a.mime_type) for a in msg.attachments] == [
        ("image", media[0], "image/jpeg")
    ]


@pytest.mark.parametrize(
    ("text", "extra", "action"),
    [
        ("STOP", {}, "opt_out"),
        (" unsubscribe ", {}, "opt_out"),
        ("Quit.", {}, "opt_out"),
        ("Start", {}, "opt_in"),
        ("UNSTOP", {}, "opt_in"),
        ("Arrêt", {"OptOutType": "STOP"}, "opt_out"),
        ("please stop the texts", {}, None),
        ("HELP", {}, None),
    ],
)
def test_opt_out_and_in_keywords_are_consent_events(
    text: str, extra: dict[str, str], action: str | None
) -> None:
    body = inbound(text)
    if extra:
        body += b"&" + "&".join(f"{k}={v}" for k, v in extra.items()).encode()
    events = RECEIVER.parse(request(body)).events
    assert isinstance(events[0], Message) and events[0].text == text  # the agent sees it
    consent = [e for e in events if isinstance(e, ChannelEvent)]
    assert [e.action for e in consent] == ([action] if action else [])


@pytest.mark.parametrize(
    ("status", "error", "expected"),
    [("delivered", "", "delivered"), ("sent", "", "sent"), ("undelivered", "30007", "failed")],
)
def test_status_callbacks_are_statuses(status: str, error: str, expected: str) -> None:
    sid = "SM" + "f" * 32
    body = sample_status(
        status, account_sid=SID, message_sid=sid, sender=OURS, to=CUSTOMER, error=error
    )
    [st] = RECEIVER.parse(request(body)).events
    assert isinstance(st, StatusUpdate)
    assert (st.status, st.external_id, st.thread) == (expected, sid, CUSTOMER)
    assert st.error_code == (error or None)


def test_interim_statuses_are_ignored_by_name() -> None:
    body = sample_status(
        "queued", account_sid=SID, message_sid="SM" + "e" * 32, sender=OURS, to=CUSTOMER
    )
    parsed = RECEIVER.parse(request(body))
    assert parsed.events == [] and parsed.ignored == ("status_queued",)


def test_what_is_not_this_accounts_twilio_webhook_fails_to_parse() -> None:
    other = sample_message("x", account_sid="AC" + "9" * 32, sender=CUSTOMER, to=OURS, seed="x")
    with pytest.raises(ParseFailed, match="another Twilio account"):
        RECEIVER.parse(request(other))
    with pytest.raises(ParseFailed, match="MessageSid"):
        RECEIVER.parse(request(b"Body=hi&From=%2B14155550142"))
    with pytest.raises(PayloadInvalid):
        RECEIVER.parse(request(b"{}", **{"content-type": "application/json"}))


# -- segments ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "encoding", "count"),
    [
        ("a" * 160, "GSM-7", 1),
        ("a" * 161, "GSM-7", 2),
        ("a" * 306, "GSM-7", 2),
        ("a" * 307, "GSM-7", 3),
        ("€" * 80, "GSM-7", 1),  # two septets each
        ("€" * 81, "GSM-7", 2),
        ("a" * 152 + "€" + "a" * 10, "GSM-7", 2),  # the pair is not split: 152 + (2+10)
        ("é" * 160, "GSM-7", 1),  # é is in the default alphabet
        ("ç" * 70, "UCS-2", 1),  # ç is not (only Ç is)
        ("ç" * 71, "UCS-2", 2),
        ("😀" * 35, "UCS-2", 1),  # surrogate pairs: 70 units
        ("😀" * 34 + "a" * 3, "UCS-2", 2),  # 71 units, the last pair not split
        ("", "GSM-7", 0),
    ],
)
def test_segments(text: str, encoding: str, count: int) -> None:
    got = segments.count(text)
    assert (got.encoding, got.count) == (encoding, count)


def test_split_keeps_each_message_within_max_segments() -> None:
    text = ("Ihr Paket ist unterwegs. " * 60).strip()
    parts = segments.split(text, 2)
    assert all(segments.count(p).count <= 2 for p in parts) and len(parts) > 1
    assert " ".join(parts).split() == text.split()
    euros = ("€ " * 400).strip()
    assert all(segments.count(p).count <= 1 for p in segments.split(euros, 1))


# -- outbound ------------------------------------------------------------------------------


def to(number: str = CUSTOMER, **context: str) -> ChannelAddress:
    return ChannelAddress(channel=Channel.SMS, account="acme", thread=number, context=context)


def created(sid: str) -> httpx.Response:
    return httpx.Response(201, json={"sid": sid, "status": "queued"})


def form(route: respx.Route) -> list[dict[str, list[str]]]:
    return [parse_qs(c.request.content.decode()) for c in route.calls]


async def test_send_posts_the_form_with_basic_auth(
    client: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    route = api.post(MESSAGES).mock(return_value=created("SM1"))
    adapter = SmsAdapter("acme", config(), client, FakeLinks())
    receipt = await adapter.send(
        reply("Your parcel ships today."), to(to=OURS, **{"from": CUSTOMER})
    )
    assert receipt.external_ids == ("SM1",)
    assert form(route) == [
        {
            "To": [CUSTOMER],
            "From": [OURS],
            "Body": ["Your parcel ships today."],
            "StatusCallback": [URL],
        }
    ]
    auth = route.calls.last.request.headers["authorization"]
    assert base64.b64decode(auth.removeprefix("Basic ")).decode() == f"{SID}:{TOKEN}"


@pytest.mark.parametrize(
    ("number", "context", "expected"),
    [
        ("+447400123456", {"to": "+15005550006"}, ("From", "+15005550006")),
        ("+447400123456", {}, ("MessagingServiceSid", "MG" + "a" * 32)),
        ("+4915123456789", {}, ("From", "DeskBridge")),
        ("+33612345678", {}, ("From", OURS)),
    ],
    ids=["number-written-to", "country-service", "country-alphanumeric", "default"],
)
async def test_sender_selection(
    client: httpx.AsyncClient,
    api: respx.MockRouter,
    number: str,
    context: dict[str, str],
    expected: tuple[str, str],
) -> None:
    route = api.post(MESSAGES).mock(return_value=created("SM1"))
    senders = {"GB": "MG" + "a" * 32, "DE": "DeskBridge"}
    adapter = SmsAdapter("acme", config(senders=senders), client, FakeLinks())
    await adapter.send(reply("hi"), to(number, **context))
    [sent] = form(route)
    key, value = expected
    other = "From" if key == "MessagingServiceSid" else "MessagingServiceSid"
    assert sent[key] == [value] and other not in sent


async def test_a_long_reply_goes_in_messages_of_max_segments(
    client: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    route = api.post(MESSAGES).mock(side_effect=[created(f"SM{i}") for i in range(20)])
    text = ("Grüße aus Berlin. " * 120).strip()  # GSM-7: ü and ß are in the alphabet
    adapter = SmsAdapter("acme", config(max_segments=3), client, FakeLinks())
    receipt = await adapter.send(reply(text), to())
    bodies = [f["Body"][0] for f in form(route)]
    assert all(segments.count(b).count <= 3 for b in bodies)
    assert len(receipt.external_ids) == len(bodies) > 1


async def test_attachments_are_mms_media_on_the_last_message(
    client: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    route = api.post(MESSAGES).mock(return_value=created("MM1"))
    files = (Attachment(kind="image", ref="d1"), Attachment(kind="document", ref="d2"))
    await SmsAdapter("acme", config(), client, FakeLinks()).send(
        reply("Your label", attachments=files), to()
    )
    [sent] = form(route)
    assert sent["MediaUrl"] == [
        "https://bridge.test/media/tok-d1",
        "https://bridge.test/media/tok-d2",
    ]


@pytest.mark.parametrize(
    ("response", "error", "says"),
    [
        (
            httpx.Response(400, json={"code": 21610, "message": "unsubscribed"}),
            PermanentError,
            "opted out",
        ),
        (httpx.Response(400, json={"code": 21211, "message": "invalid"}), PermanentError, "21211"),
        (httpx.Response(401, json={"code": 20003}), PermanentError, "401"),
        (httpx.Response(429, headers={"retry-after": "3"}), RetryableError, "429"),
        (httpx.Response(503), RetryableError, "503"),
        (httpx.Response(201, json={"status": "queued"}), PermanentError, "no sid"),
    ],
    ids=["stopped", "invalid-number", "auth", "429", "503", "no-sid"],
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
        await SmsAdapter("acme", config(), client, FakeLinks()).send(reply("hi"), to())
    assert says in str(caught.value) and TOKEN not in str(caught.value)
    assert CUSTOMER not in str(caught.value)


async def test_a_timeout_is_retryable(client: httpx.AsyncClient, api: respx.MockRouter) -> None:
    api.post(MESSAGES).mock(side_effect=httpx.ConnectTimeout("slow"))
    with pytest.raises(RetryableError):
        await SmsAdapter("acme", config(), client, FakeLinks()).send(reply("hi"), to())


async def test_media_downloads_authenticate_to_twilio_only(
    client: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    ref = f"{API}/2010-04-01/Accounts/{SID}/Messages/MM1/Media/ME1"
    first = api.get(ref).mock(
        return_value=httpx.Response(307, headers={"location": "https://media.cdn.test/abc"})
    )
    cdn = api.get("https://media.cdn.test/abc").mock(
        return_value=httpx.Response(200, content=b"jpeg", headers={"content-type": "image/jpeg"})
    )
    upload = await SmsAdapter("acme", config(), client, FakeLinks()).fetch(
        Attachment(kind="image", ref=ref, mime_type="image/jpeg")
    )
    assert upload == Upload("ME1.jpg", "image/jpeg", b"jpeg")
    assert first.calls.last.request.headers["authorization"].startswith("Basic ")
    assert "authorization" not in cdn.calls.last.request.headers


async def test_health_reads_the_account(client: httpx.AsyncClient, api: respx.MockRouter) -> None:
    api.get(f"{API}/2010-04-01/Accounts/{SID}.json").mock(return_value=httpx.Response(200, json={}))
    assert await SmsAdapter("acme", config(), client, FakeLinks()).health() == {
        "credentials_valid": 1.0
    }


# -- end to end: gateway, worker, sandbox desk ---------------------------------------------

YAML = f"""
accounts:
  acme:
    desk: {{type: sandbox}}
    channels:
      - type: sms
        account_sid: "{SID}"
        auth_token: "{TOKEN}"
        webhook_url: "{URL}"
        default_sender: "{OURS}"
        base_url: "{API}"
"""


async def _post(client: Any, body: bytes) -> int:
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": sign(TOKEN, URL, parse_qsl(body.decode())),
    }
    resp = await client.post("/webhooks/sms/acme", data=body, headers=headers)
    if resp.status == 200:
        # Twilio reads the answer as TwiML: empty, so nothing is sent back and no
        # warning 12300 (a JSON answer's content type) lands in the account's debugger
        assert resp.content_type == "text/xml"
        assert await resp.read() == (b'<?xml version="1.0" encoding="UTF-8"?><Response></Response>')
    return int(resp.status)


async def test_sms_in_reply_out_stop_honoured_start_resumes_and_statuses_apply(
    make_runtime: Any, aiohttp_client: Any, respx_mock: Any
) -> None:
    from deskbridge.gateway import create_app

    respx_mock.route(host="127.0.0.1").pass_through()
    send = respx_mock.post(MESSAGES).mock(
        side_effect=[created("SM" + "1" * 32), created("SM" + "2" * 32)]
    )
    rt = make_runtime(YAML)
    client = await aiohttp_client(create_app(rt, role="serve"))
    body = inbound("Where is my order?", seed="a")
    assert await _post(client, body) == 200
    assert await _post(client, body) == 200  # a redelivery files once
    bad = await client.post("/webhooks/sms/acme", data=body, headers={"X-Twilio-Signature": "x"})
    assert bad.status == 401
    assert bad.content_type == "application/json"  # refusals are not TwiML
    await drain(rt)
    [ticket] = await rt.sandbox.tickets("acme")
    assert ticket.channel == "sms"

    await agent_says(rt, ticket.id, "It ships today.", 1)
    assert send.call_count == 1
    assert parse_qs(send.calls[0].request.content.decode())["From"] == [OURS]

    # the status callback for that reply marks its delivery
    status = sample_status(
        "delivered", account_sid=SID, message_sid="SM" + "1" * 32, sender=OURS, to=CUSTOMER
    )
    assert await _post(client, status) == 200
    await drain(rt)

    assert await _post(client, inbound("STOP", seed="b")) == 200
    await drain(rt)
    [first, *_] = await deliveries(rt, Direction.INBOUND)
    conv = await rt.conversations.get("acme", first.conversation_id)
    contact = await rt.conversations.contact("acme", conv.contact_id)
    assert contact.attributes["sms_consent"].startswith("opted_out since ")
    await agent_says(rt, ticket.id, "Are you there?", 2)
    assert send.call_count == 1  # nothing goes out after STOP

    assert await _post(client, inbound("START", seed="c")) == 200
    await drain(rt)
    await agent_says(rt, ticket.id, "Welcome back.", 3)
    assert send.call_count == 2

    replies = await deliveries(rt, Direction.OUTBOUND)
    states = sorted((d.state, d.reason or "") for d in replies)
    # delivered (its status callback applied), refused after STOP, delivered after START
    assert [st for st, _ in states].count(DeliveryState.DELIVERED) == 2
    [refused] = [d for d in replies if d.state is not DeliveryState.DELIVERED]
    assert refused.state is DeliveryState.DEAD
    sent = await rt.deliveries.get("acme", min(replies, key=lambda d: d.id).id)
    assert sent is not None


async def test_register_points_each_sender_number_at_the_url(
    client: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    numbers = api.get(f"{API}/2010-04-01/Accounts/{SID}/IncomingPhoneNumbers.json").mock(
        return_value=httpx.Response(
            200, json={"incoming_phone_numbers": [{"sid": "PN" + "1" * 32}]}
        )
    )
    update = api.post(
        f"{API}/2010-04-01/Accounts/{SID}/IncomingPhoneNumbers/PN{'1' * 32}.json"
    ).mock(return_value=httpx.Response(200, json={"sid": "PN" + "1" * 32}))
    senders = {"GB": "MG" + "a" * 32, "US": OURS, "CA": "+16135550100"}
    await SmsAdapter("acme", config(senders=senders), client, FakeLinks()).set_webhook(URL)
    asked = [c.request.url.params["PhoneNumber"] for c in numbers.calls]
    assert asked == [OURS, "+16135550100"]  # numbers only, each once
    assert form(update) == [{"SmsUrl": [URL], "SmsMethod": ["POST"]}] * 2


async def test_register_refuses_a_url_other_than_the_signed_one(
    client: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    with pytest.raises(PermanentError, match="webhook_url"):
        await SmsAdapter("acme", config(), client, FakeLinks()).set_webhook(
            "https://other.example/webhooks/sms/acme"
        )
    assert not api.calls
    api.get(f"{API}/2010-04-01/Accounts/{SID}/IncomingPhoneNumbers.json").mock(
        return_value=httpx.Response(200, json={"incoming_phone_numbers": []})
    )
    with pytest.raises(PermanentError, match="not in this account"):
        await SmsAdapter("acme", config(), client, FakeLinks()).set_webhook(URL)
