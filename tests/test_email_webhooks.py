"""Email inbound-parse webhooks (Mailgun ``mime`` routes, SendGrid raw mode, Postmark):
recorded-shape requests through verification and the shared MIME parser, and a property
test that the form parser raises nothing but PayloadInvalid."""

from __future__ import annotations

import base64
import contextlib
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deskbridge.adapters.email import ParsedMail, part_content
from deskbridge.adapters.email.webhooks import (
    MAILGUN_REJECT_STATUS,
    POSTMARK_STOP_STATUS,
    SENDGRID_STOP_STATUS,
    parse_form,
    parse_mailgun,
    parse_postmark,
    parse_sendgrid,
    postmark_raw,
    verify_basic_auth,
    verify_mailgun,
    verify_path_secret,
)
from deskbridge.errors import ParseFailed, PayloadInvalid, PayloadTooLarge, SignatureInvalid
from deskbridge.schemas import RawRequest

from . import recorded

FIXTURES = recorded.ROOT / "email_webhooks"
RECEIVED = datetime(2024, 4, 1, 12, 0, tzinfo=UTC)
SIGNING_KEY = "test-signing-key"
SIGNED_AT = 1711972800.0  # the timestamp inside the Mailgun fixtures
HOUR = 3600.0
OPTIONS: dict[str, Any] = {
    "account": "acme",
    "received_at": RECEIVED,
    "own_domains": frozenset({"desk.example.net"}),
    "trusted_authserv_ids": frozenset({"mx.desk.example.net"}),
}
MAILGUN_BOUNDARY = "------------------------a8d1f2e3c4b5a697"


def request(body: bytes, content_type: str, **headers: str) -> RawRequest:
    return RawRequest(
        method="POST",
        path="/email/acme",
        headers={"content-type": content_type, **headers},
        body=body,
    )


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def mailgun_urlencoded() -> RawRequest:
    return request(fixture("mailgun_mime_urlencoded.body"), "application/x-www-form-urlencoded")


def mailgun_multipart() -> RawRequest:
    return request(
        fixture("mailgun_mime_multipart.body"),
        f'multipart/form-data; boundary="{MAILGUN_BOUNDARY}"',
    )


def sendgrid() -> RawRequest:
    return request(fixture("sendgrid_raw.body"), "multipart/form-data; boundary=xYzZY")


def postmark() -> RawRequest:
    return request(fixture("postmark_inbound.json"), "application/json")


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def attachment_names(mail: ParsedMail) -> list[str | None]:
    assert mail.message is not None
    return [a.filename for a in mail.message.attachments]


# --- answer codes ---------------------------------------------------------------------


def test_answer_codes() -> None:
    assert MAILGUN_REJECT_STATUS == 406
    assert POSTMARK_STOP_STATUS == 403
    assert SENDGRID_STOP_STATUS is None


# --- Mailgun --------------------------------------------------------------------------


@pytest.mark.parametrize("req", [mailgun_urlencoded(), mailgun_multipart()], ids=["form", "mp"])
def test_mailgun_signature_good(req: RawRequest) -> None:
    fields = parse_form(req).texts()
    token = verify_mailgun(fields, SIGNING_KEY, now=SIGNED_AT + 60)
    assert token == fields["token"] and len(token) == 50


def test_mailgun_parse_urlencoded() -> None:
    token, mail = parse_mailgun(mailgun_urlencoded(), **OPTIONS)
    assert token == "a3f1c9e07b2d4e6f8a1b3c5d7e9f0a2b4c6d8e0f1a3b5c7d9e"
    assert mail.kind == "message"
    assert mail.subject == "Order #4417 arrived damaged"
    assert mail.message_id == "CAF9x7=order4417@mail.example.org"
    assert mail.authenticated
    assert mail.message is not None
    assert mail.message.sender.external_id == "zoe@example.org"
    assert mail.message.sender.display_name == "Zoë Martin"
    assert "vase in order #4417 arrived broken" in mail.message.text
    assert attachment_names(mail) == ["broken vase.jpg"]


def test_mailgun_parse_multipart_adds_envelope_recipients() -> None:
    token, mail = parse_mailgun(mailgun_multipart(), **OPTIONS)
    assert token.startswith("0b9e8d7c")
    assert mail.subject == "Order #4418 arrived damaged"
    assert mail.message_id == "CAF9x7=order4418@mail.example.org"
    assert "billing@desk.example.net" in mail.recipients
    assert attachment_names(mail) == ["broken vase.jpg"]


def test_mailgun_raw_is_byte_exact_in_multipart() -> None:
    form = parse_form(mailgun_multipart())
    raw = form.get("body-mime")
    assert raw is not None and raw.startswith(b"Received: ") and raw.endswith(b"--\r\n")
    _, mail = parse_mailgun(mailgun_multipart(), **OPTIONS)
    assert mail.message is not None
    ref = mail.message.attachments[0].ref
    content = part_content(raw, ref)
    assert content is not None and content[1] == "image/jpeg"
    assert content[0].startswith(b"\xff\xd8\xff\xe0")


def test_mailgun_bad_signature() -> None:
    fields = parse_form(mailgun_urlencoded()).texts()
    with pytest.raises(SignatureInvalid):
        verify_mailgun(fields, "another-key", now=SIGNED_AT)
    tampered = {**fields, "token": fields["token"][::-1]}
    with pytest.raises(SignatureInvalid):
        verify_mailgun(tampered, SIGNING_KEY, now=SIGNED_AT)


@pytest.mark.parametrize("missing", ["timestamp", "token", "signature"])
def test_mailgun_missing_field(missing: str) -> None:
    fields = parse_form(mailgun_urlencoded()).texts()
    del fields[missing]
    with pytest.raises(SignatureInvalid):
        verify_mailgun(fields, SIGNING_KEY, now=SIGNED_AT)


def test_mailgun_empty_key_refuses() -> None:
    fields = parse_form(mailgun_urlencoded()).texts()
    with pytest.raises(SignatureInvalid):
        verify_mailgun(fields, "", now=SIGNED_AT)


def test_mailgun_retry_after_9_hours_still_accepted() -> None:
    fields = parse_form(mailgun_urlencoded()).texts()
    assert verify_mailgun(fields, SIGNING_KEY, now=SIGNED_AT + 9 * HOUR, max_age=12 * HOUR)


def test_mailgun_13_hours_refused() -> None:
    fields = parse_form(mailgun_urlencoded()).texts()
    with pytest.raises(SignatureInvalid):
        verify_mailgun(fields, SIGNING_KEY, now=SIGNED_AT + 13 * HOUR)


def test_mailgun_far_future_refused() -> None:
    fields = parse_form(mailgun_urlencoded()).texts()
    with pytest.raises(SignatureInvalid):
        verify_mailgun(fields, SIGNING_KEY, now=SIGNED_AT - HOUR)


def test_mailgun_parsed_route_is_not_mime() -> None:
    body = b"recipient=a%40b.example&subject=Hi&body-plain=hello&token=t&timestamp=1&signature=s"
    with pytest.raises(PayloadInvalid):
        parse_mailgun(request(body, "application/x-www-form-urlencoded"), **OPTIONS)


# --- SendGrid -------------------------------------------------------------------------


def test_sendgrid_parse() -> None:
    mail = parse_sendgrid(sendgrid(), **OPTIONS)
    assert mail.subject == "Re: Invoice 2024-031"
    assert mail.message_id == "0100018e9a7b.kenji.reply@example.com"
    assert mail.in_reply_to == ("ticket-8812@desk.example.net",)
    assert mail.authenticated
    assert mail.message is not None
    assert mail.message.sender.external_id == "kenji@example.com"
    assert attachment_names(mail) == ["invoice-2024-031.pdf"]
    assert "archive@desk.example.net" in mail.recipients


def test_sendgrid_parsed_mode_is_a_dead_letter() -> None:
    body = (
        b'--b\r\nContent-Disposition: form-data; name="headers"\r\n\r\nFrom: a@b.example\r\n'
        b'--b\r\nContent-Disposition: form-data; name="text"\r\n\r\nhi\r\n--b--\r\n'
    )
    with pytest.raises(ParseFailed):
        parse_sendgrid(request(body, "multipart/form-data; boundary=b"), **OPTIONS)


def test_sendgrid_bad_envelope() -> None:
    body = fixture("sendgrid_raw.body").replace(b'{"to": [', b'{"to" [')
    with pytest.raises(PayloadInvalid):
        parse_sendgrid(request(body, "multipart/form-data; boundary=xYzZY"), **OPTIONS)


# --- basic auth and path secret -------------------------------------------------------


def test_basic_auth_good() -> None:
    verify_basic_auth({"authorization": basic("parse", "s3cr:et")}, "parse", "s3cr:et")


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"authorization": basic("parse", "wrong")},
        {"authorization": basic("other", "s3cret")},
        {"authorization": "Bearer abc"},
        {"authorization": "Basic !!!not-base64"},
        {"authorization": "Basic " + base64.b64encode(b"nocolon").decode()},
    ],
    ids=["missing", "password", "user", "scheme", "garbage", "no-colon"],
)
def test_basic_auth_refused(headers: dict[str, str]) -> None:
    with pytest.raises(SignatureInvalid):
        verify_basic_auth(headers, "parse", "s3cret")


def test_basic_auth_unconfigured_refuses() -> None:
    with pytest.raises(SignatureInvalid):
        verify_basic_auth({"authorization": basic("", "")}, "", "")


def test_path_secret() -> None:
    verify_path_secret("/email/acme/sendgrid/Qm9xZXMh", "Qm9xZXMh")
    with pytest.raises(SignatureInvalid):
        verify_path_secret("/email/acme/sendgrid/guess", "Qm9xZXMh")
    with pytest.raises(SignatureInvalid):
        verify_path_secret("/email/acme/sendgrid/", "")


# --- Postmark -------------------------------------------------------------------------


def test_postmark_parse() -> None:
    message_id, mail = parse_postmark(postmark(), **OPTIONS)
    assert message_id == "73e6d360-66eb-11e1-8e72-a8904824019b"
    assert mail.subject == "Re: Pedido 9921 — nota fiscal"
    assert mail.message_id == "CAKx9q2v=pedido9921@mail.example.com.br"
    assert mail.in_reply_to == ("ticket-9921@desk.example.net",)
    assert mail.references == ("ticket-9900@desk.example.net", "ticket-9921@desk.example.net")
    assert mail.authenticated
    assert mail.html is not None and "cid:etiqueta.png" in mail.html
    assert mail.message is not None
    assert mail.message.sender.external_id == "ana@example.com.br"
    assert mail.message.sender.display_name == "Ana Lima"
    assert mail.message.occurred_at == datetime(2024, 4, 1, 11, 57, 40, tzinfo=UTC)
    assert mail.message.text.startswith("Segue a nota fiscal")
    assert sorted(n or "" for n in attachment_names(mail)) == [
        "etiqueta.png",
        "nota-fiscal-9921.pdf",
    ]
    assert "carlos@example.com.br" in mail.recipients


def test_postmark_rebuilt_mime_keeps_inline_image_and_bytes() -> None:
    _, raw = postmark_raw(postmark())
    payload = json.loads(fixture("postmark_inbound.json"))
    _, mail = parse_postmark(postmark(), **OPTIONS)
    assert mail.message is not None
    by_name = {a.filename: a for a in mail.message.attachments}
    inline = by_name["etiqueta.png"]
    assert inline.ref.endswith(";cid=etiqueta.png@01DA83F2.4C1B2E30")
    for source in payload["Attachments"]:
        content = part_content(raw, by_name[source["Name"]].ref)
        assert content is not None
        assert content == (base64.b64decode(source["Content"]), source["ContentType"])
    assert b"multipart/related" in raw and b"multipart/alternative" in raw


def test_postmark_minimal_payload() -> None:
    body = json.dumps({"MessageID": "m-1", "From": "x@example.org", "TextBody": "hi"})
    message_id, mail = parse_postmark(request(body.encode(), "application/json"), **OPTIONS)
    assert message_id == "m-1"
    assert mail.message is not None and mail.message.text == "hi"


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[]",
        b'{"Subject": "no MessageID"}',
        b'{"MessageID": "m", "Attachments": [{"Name": "a", "Content": "***"}]}',
        b'{"MessageID": "m", "Headers": "nope"}',
    ],
)
def test_postmark_garbage(body: bytes) -> None:
    with pytest.raises(PayloadInvalid):
        parse_postmark(request(body, "application/json"), **OPTIONS)


def test_postmark_hostile_header_values_are_flattened() -> None:
    body = json.dumps(
        {
            "MessageID": "m-2",
            "FromFull": {"Email": "x@example.org", "Name": "X\r\nBcc: evil@example.org"},
            "Headers": [
                {"Name": "X-Inject", "Value": "a\r\nBcc: evil@example.org"},
                {"Name": "Bad Name:", "Value": "skipped"},
            ],
            "TextBody": "hi",
        }
    )
    _, raw = postmark_raw(request(body.encode(), "application/json"))
    assert b"\r\nBcc:" not in raw and b"Bad Name" not in raw


# --- form parser ----------------------------------------------------------------------


def test_form_binary_file_part_is_byte_exact() -> None:
    data = bytes(range(256)) + b"\r\n--notboundary\r\n\r\n" + bytes(range(255, -1, -1))
    body = (
        b"--BOUNDARY\r\n"
        b'Content-Disposition: form-data; name="attachment-1"; filename="r\xc3\xa9sum\xc3\xa9.bin"'
        b"\r\nContent-Type: application/octet-stream\r\n\r\n" + data + b"\r\n--BOUNDARY--\r\n"
    )
    form = parse_form(request(body, "multipart/form-data; boundary=BOUNDARY"))
    (field,) = form.fields
    assert field.name == "attachment-1"
    assert field.filename == "résumé.bin"
    assert field.content_type == "application/octet-stream"
    assert field.value == data


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"{}", "application/json"),
        (b"x", ""),
        (b"no boundary here", "multipart/form-data"),
        (
            b"--b\r\nContent-Disposition: form-data\r\n\r\nv\r\n--b--",
            "multipart/form-data; boundary=b",
        ),
        (
            b"--b\r\nContent-Disposition: form-data; name=a\r\n\r\nunclosed",
            "multipart/form-data; boundary=b",
        ),
        (b"--b junk\r\n\r\nx\r\n--b--", "multipart/form-data; boundary=b"),
        (b"a=\xff", "application/x-www-form-urlencoded"),
    ],
)
def test_form_garbage(body: bytes, content_type: str) -> None:
    with pytest.raises(PayloadInvalid):
        parse_form(request(body, content_type))


def test_form_too_large() -> None:
    huge = RawRequest(method="POST", path="/", headers={}, body=b"x" * (40 * 1024 * 1024 + 1))
    with pytest.raises(PayloadTooLarge):
        parse_form(huge)


def test_mailgun_garbage_bodies() -> None:
    with pytest.raises(PayloadInvalid):
        parse_mailgun(request(b"\x00\x01", "application/octet-stream"), **OPTIONS)
    with pytest.raises(PayloadInvalid):
        parse_sendgrid(request(b"--x--", "multipart/form-data; boundary=y"), **OPTIONS)


_CONTENT_TYPES = st.sampled_from(
    [
        "multipart/form-data; boundary=b",
        'multipart/form-data; boundary="a b"',
        "multipart/form-data",
        "application/x-www-form-urlencoded",
        "text/plain",
    ]
)
_PIECES = st.sampled_from(
    [
        b"--b",
        b"--b--",
        b"\r\n",
        b"\r\n\r\n",
        b'Content-Disposition: form-data; name="a"',
        b"; filename*=utf-8''%E2%82%AC",
        b"=",
        b"&",
        b"%zz",
        b"\xff",
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    content_type=st.one_of(_CONTENT_TYPES, st.text(max_size=60)),
    body=st.one_of(st.binary(max_size=300), st.lists(_PIECES, max_size=24).map(b"".join)),
)
def test_form_parser_raises_only_payload_invalid(content_type: str, body: bytes) -> None:
    with contextlib.suppress(PayloadInvalid):
        parse_form(request(body, content_type))


# --- SendGrid security policy: signature and OAuth ---------------------------------------


def _sendgrid_receiver(**options: Any) -> Any:
    from deskbridge.adapters.email.receiver import EmailReceiver
    from deskbridge.config import EmailConfig

    config = EmailConfig(
        address="support@desk.example.net", inbound="sendgrid", sandbox=True, **options
    )
    return EmailReceiver("acme", config, clock=lambda: SIGNED_AT)


def _ec_pair() -> tuple[Any, str]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    # the policy's public_key, as SendGrid's API returns it: base64 of the DER key
    return key, base64.b64encode(der).decode()


def _signed(key: Any, body: bytes, timestamp: str = "1711972800") -> dict[str, str]:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    signature = key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {
        "x-twilio-email-event-webhook-signature": base64.b64encode(signature).decode(),
        "x-twilio-email-event-webhook-timestamp": timestamp,
    }


def test_sendgrid_signed_policy_accepts_a_good_signature() -> None:
    key, public = _ec_pair()
    receiver = _sendgrid_receiver(sendgrid_public_key=public)
    body = fixture("sendgrid_raw.body")
    req = request(body, "multipart/form-data; boundary=xYzZY", **_signed(key, body))
    receiver.verify(req)
    assert receiver.parse(req).events


def test_sendgrid_signed_policy_takes_a_pem_key() -> None:
    from cryptography.hazmat.primitives import serialization

    key, _ = _ec_pair()
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    receiver = _sendgrid_receiver(sendgrid_public_key=pem.decode())
    body = fixture("sendgrid_raw.body")
    receiver.verify(request(body, "multipart/form-data; boundary=xYzZY", **_signed(key, body)))


@pytest.mark.parametrize("tamper", ["body", "timestamp", "missing", "garbage", "other key"])
def test_sendgrid_signed_policy_refuses(tamper: str) -> None:
    key, public = _ec_pair()
    receiver = _sendgrid_receiver(sendgrid_public_key=public)
    body = fixture("sendgrid_raw.body")
    headers = _signed(key, body)
    if tamper == "body":
        body = body[:-3] + b"X" + body[-2:]
    elif tamper == "timestamp":
        headers["x-twilio-email-event-webhook-timestamp"] = "1711972801"
    elif tamper == "missing":
        headers = {}
    elif tamper == "garbage":
        headers["x-twilio-email-event-webhook-signature"] = "not base64 !"
    else:
        headers = _signed(_ec_pair()[0], body)
    with pytest.raises(SignatureInvalid):
        receiver.verify(request(body, "multipart/form-data; boundary=xYzZY", **headers))


def _jwt(secret: str, expires_in: float) -> str:
    from jose import jwt

    return str(jwt.encode({"sub": "sendgrid", "exp": int(SIGNED_AT + expires_in)}, secret))


def test_sendgrid_oauth_policy() -> None:
    import time

    receiver = _sendgrid_receiver(sendgrid_oauth_key="oauth-shared-secret")
    body = fixture("sendgrid_raw.body")
    ctype = "multipart/form-data; boundary=xYzZY"
    good = _jwt("oauth-shared-secret", time.time() - SIGNED_AT + 600)
    receiver.verify(request(body, ctype, authorization=f"Bearer {good}"))
    expired = _jwt("oauth-shared-secret", -SIGNED_AT + time.time() - 600)
    forged = _jwt("another-secret", time.time() - SIGNED_AT + 600)
    for header in (f"Bearer {expired}", f"Bearer {forged}", "Bearer", basic("u", "p"), ""):
        with pytest.raises(SignatureInvalid):
            receiver.verify(request(body, ctype, authorization=header))


def test_sendgrid_hybrid_policy_needs_both() -> None:
    import time

    key, public = _ec_pair()
    receiver = _sendgrid_receiver(sendgrid_public_key=public, sendgrid_oauth_key="s3cret")
    body = fixture("sendgrid_raw.body")
    ctype = "multipart/form-data; boundary=xYzZY"
    token = _jwt("s3cret", time.time() - SIGNED_AT + 600)
    receiver.verify(request(body, ctype, authorization=f"Bearer {token}", **_signed(key, body)))
    with pytest.raises(SignatureInvalid):
        receiver.verify(request(body, ctype, **_signed(key, body)))
    with pytest.raises(SignatureInvalid):
        receiver.verify(request(body, ctype, authorization=f"Bearer {token}"))


def test_sendgrid_without_a_policy_or_basic_auth_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="sendgrid_public_key"):
        _sendgrid_receiver()
