"""Email: recorded mails through the MIME parser, authentication, quote stripping, and a
property test that no bytes crash it."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deskbridge.adapters.email import (
    ParsedMail,
    normalize_address,
    parse_mail,
    part_content,
    render_quote_strip,
)
from deskbridge.adapters.email.auth import authenticate, org_domain
from deskbridge.errors import PayloadInvalid

from . import recorded

CHANNEL = "email"
FIXTURES = recorded.ROOT / CHANNEL
SCENARIOS = sorted(p.stem for p in FIXTURES.glob("*.eml"))
RECEIVED = datetime(2024, 4, 1, 12, 0, tzinfo=UTC)
TRUSTED = frozenset({"mx.desk.example.net"})
OWN = frozenset({"desk.example.net"})
TOKEN = "Tk7Qm2Xz9Lp4Rw8Vb3Nc"
CORPUS = recorded.ROOT.parent / "corpus" / "email"


def eml(scenario: str) -> bytes:
    return (FIXTURES / f"{scenario}.eml").read_bytes()


def parse(raw: bytes, **overrides: Any) -> ParsedMail:
    options: dict[str, Any] = {
        "account": "acme",
        "received_at": RECEIVED,
        "trusted_authserv_ids": TRUSTED,
        "own_domains": OWN,
    }
    return parse_mail(raw, **{**options, **overrides})


def summary(mail: ParsedMail) -> dict[str, Any]:
    return {
        "kind": mail.kind,
        "subject": mail.subject,
        "message_id": mail.message_id,
        "in_reply_to": list(mail.in_reply_to),
        "references": list(mail.references),
        "reply_to_token": mail.reply_to_token,
        "authenticated": mail.authenticated,
        "auth_detail": mail.auth_detail,
        "bounced_message_id": mail.bounced_message_id,
        "bounce_reason": mail.bounce_reason,
        "recipients": list(mail.recipients),
        "has_html": mail.html is not None,
        "full_text": mail.full_text,
        "message": mail.message.model_dump(mode="json") if mail.message else None,
    }


def test_every_scenario_has_an_expected_file() -> None:
    assert len(SCENARIOS) >= 24
    for scenario in SCENARIOS:
        assert (FIXTURES / f"{scenario}.expected.json").exists() or recorded.REGEN, scenario


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_fixture(scenario: str) -> None:
    recorded.assert_expected(CHANNEL, scenario, summary(parse(eml(scenario))))


# --- specific facts the fixtures show, stated once more so a regen cannot hide them ---


def test_japanese_subject_body_and_rfc2231_filename() -> None:
    mail = parse(eml("japanese_iso2022jp_with_attachment"))
    assert mail.subject == "請求書について"
    assert mail.message is not None
    assert "先月の請求書を添付します。" in mail.message.text
    assert mail.message.sender.display_name == "山田 太郎"
    (pdf,) = mail.message.attachments
    assert (pdf.kind, pdf.filename, pdf.mime_type) == (
        "document",
        "請求書 2024年3月.pdf",
        "application/pdf",
    )
    data, mime_type = part_content(eml("japanese_iso2022jp_with_attachment"), pdf.ref) or (b"", "")
    assert mime_type == "application/pdf"
    assert data.startswith(b"%PDF") and len(data) == pdf.size
    assert hashlib.sha256(data).hexdigest() == pdf.sha256


@pytest.mark.parametrize(
    ("scenario", "needle"),
    [
        ("chinese_gb18030", "我的订单还没有发货"),
        ("korean_euckr", "환불을 요청합니다"),
        ("big5", "我的帳號從昨天開始無法登入"),
        (
            "windows1252_latin",
            "\u201everspätet\u201c \u2013 bitte prüfen Sie das. Kosten: 12 \u20ac.",
        ),
    ],
)
def test_charsets(scenario: str, needle: str) -> None:
    mail = parse(eml(scenario))
    assert mail.message is not None
    assert needle in mail.message.text
    assert "\ufffd" not in mail.full_text + mail.subject


def test_inline_image_keeps_its_content_id() -> None:
    mail = parse(eml("inline_image_cid"))
    assert mail.message is not None
    (image,) = mail.message.attachments
    assert image.ref == "part:2.2;cid=ii_lt1abc0"
    assert image.kind == "image"
    assert part_content(eml("inline_image_cid"), image.ref) is not None


def test_forwarded_message_becomes_text_and_keeps_attachments() -> None:
    mail = parse(eml("forwarded_rfc822"))
    assert mail.message is not None
    assert "---------- Forwarded message ----------" in mail.message.text
    assert "Thank you for your order 5512" in mail.message.text
    (logo,) = mail.message.attachments
    assert logo.ref == "part:2.2" and logo.filename == "logo.png"
    found = part_content(eml("forwarded_rfc822"), logo.ref)
    assert found is not None and found[1] == "image/png"


def test_quoted_history_is_stripped_from_replies() -> None:
    gmail = parse(eml("gmail_reply_with_quoted_history"))
    assert gmail.message is not None
    assert gmail.message.text == "Yes, it is the latest firmware (2.4.1)."
    assert gmail.message.reply_to == "out-777.a1@desk.example.net"
    assert gmail.references == ("CAF1x2y3z4@mail.example.com", "out-777.a1@desk.example.net")
    outlook = parse(eml("outlook_reply_without_in_reply_to"))
    assert outlook.message is not None
    assert outlook.message.text.endswith("You can close the ticket.\n\nDaniel")
    assert outlook.reply_to_token == TOKEN
    assert "restart the router" in outlook.full_text


def test_kinds() -> None:
    assert parse(eml("plain")).kind == "message"
    assert parse(eml("auto_reply_out_of_office")).kind == "auto_reply"
    assert parse(eml("precedence_bulk")).kind == "auto_reply"
    assert parse(eml("own_message")).kind == "own"
    bounce = parse(eml("dsn_bounce"))
    assert bounce.kind == "bounce"
    assert bounce.bounced_message_id == "out-900.c3@desk.example.net"
    assert bounce.bounce_reason is not None and bounce.bounce_reason.startswith("5.1.1 smtp; 550")


@pytest.mark.parametrize(
    ("headers", "kind"),
    [
        ("Auto-Submitted: no\n", "message"),
        ("Auto-Submitted: auto-generated\n", "auto_reply"),
        ("X-Autoreply: yes\n", "auto_reply"),
        ("X-Autorespond: 1\n", "auto_reply"),
        ("Precedence: junk\n", "auto_reply"),
        ("Precedence: list\n", "auto_reply"),
        ("Subject: Automatic reply: hello\n", "auto_reply"),
        ("Subject: Abwesenheitsnotiz: hello\n", "auto_reply"),
        ("Subject: =?utf-8?B?6Ieq5YuV5b+c562UOiBoZWxsbw==?=\n", "auto_reply"),
        ("Subject: Out of Office: hello\n", "auto_reply"),
        ("Return-Path: <>\n", "bounce"),
        ("X-Failed-Recipients: nobody@example.com\n", "bounce"),
        ("X-Deskbridge: acme\n", "message"),  # From is not ours
    ],
)
def test_kind_rules(headers: str, kind: str) -> None:
    raw = f"{headers}From: ana@example.com\nMessage-ID: <k@example.com>\n\nhello\n".encode()
    assert parse(raw).kind == kind


# --- dedup keys and addresses ---------------------------------------------------------


def test_dedup_key_falls_back_to_a_hash_of_from_date_and_body() -> None:
    mail = parse(eml("missing_message_id"))
    assert mail.message is not None and mail.message_id is None
    expected = hashlib.sha256(
        b"ivan@example.com\nWed, 20 Mar 2024 10:00:00 +0000\nThis mail has no Message-ID header."
    ).hexdigest()
    assert mail.message.dedup_key == f"sha256:{expected}"
    assert mail.message.external_id == mail.message.dedup_key
    other = parse(eml("missing_message_id").replace(b"no Message-ID", b"no Message-Id"))
    assert other.message is not None and other.message.dedup_key != mail.message.dedup_key


def test_dedup_key_is_the_message_id() -> None:
    mail = parse(eml("plain"))
    assert mail.message is not None
    assert mail.message.dedup_key == mail.message.external_id == "CAF1x2y3z4@mail.example.com"


def test_bad_date_uses_received_at() -> None:
    mail = parse(eml("bad_date"))
    assert mail.message is not None and mail.message.occurred_at == RECEIVED


def test_thread_defaults_to_the_sender_and_can_be_given() -> None:
    assert parse(eml("plain")).message.thread == "ana@example.com"  # type: ignore[union-attr]
    given_thread = parse(eml("plain"), thread="ticket-9").message
    assert given_thread is not None and given_thread.thread == "ticket-9"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Ana.Souza@EXAMPLE.com", "ana.souza@example.com"),
        ("<ana@example.com>", "ana@example.com"),
        ("jörg@bücher.example", "jörg@xn--bcher-kva.example"),
        ("ana@example.com.", "ana@example.com"),
        ("not an address", None),
        ("@example.com", None),
        ("ana@", None),
    ],
)
def test_normalize_address(raw: str, expected: str | None) -> None:
    assert normalize_address(raw) == expected


def test_plus_token_only_on_own_domains() -> None:
    assert parse(eml("plus_address_token")).reply_to_token == TOKEN
    assert parse(eml("plus_address_token"), own_domains=frozenset()).reply_to_token is None
    short = b"From: a@example.com\nTo: support+abc@desk.example.net\n\nhi\n"
    assert parse(short).reply_to_token is None


# --- authentication -------------------------------------------------------------------


def test_authentication_of_fixtures() -> None:
    trusted = parse(eml("dmarc_pass_trusted"))
    assert trusted.authenticated
    assert trusted.message is not None
    (identity,) = trusted.message.sender.identities
    assert (identity.value, identity.strength, identity.source) == (
        "ana.souza@example.com",
        "strong",
        "email_dmarc",
    )
    assert not parse(eml("dmarc_pass_trusted"), trusted_authserv_ids=frozenset()).authenticated
    assert not parse(eml("dmarc_pass_untrusted_authserv")).authenticated
    assert not parse(eml("dkim_pass_other_domain")).authenticated
    weak = parse(eml("plain")).message
    assert weak is not None and weak.sender.identities[0].strength == "weak"


@pytest.mark.parametrize(
    ("header", "from_domain", "ok"),
    [
        ("mx.t; dmarc=pass header.from=example.com", "example.com", True),
        ("mx.t; dmarc=pass header.from=other.example", "example.com", False),
        ("mx.t; dmarc=fail; dkim=pass header.d=mail.example.com", "example.com", True),
        ("mx.t; dkim=pass header.i=@news.example.com", "example.com", True),
        ("mx.t; dkim=pass header.d=example.org", "example.com", False),
        ("mx.t; dkim=fail header.d=example.com", "example.com", False),
        ("mx.t; spf=pass smtp.mailfrom=bounce@example.com", "example.com", True),
        ("mx.t; spf=pass smtp.mailfrom=bounce@example.net", "example.com", False),
        ("mx.t; dkim=pass header.d=shop.co.uk", "other.co.uk", False),
        ("mx.t; dkim=pass header.d=mail.shop.co.uk", "shop.co.uk", True),
        ("mx.t (comment; dmarc=pass); dmarc=none", "example.com", False),
        ("MX.T 1; dmarc=pass (p=reject) header.from=example.com", "example.com", True),
        ("mx.other; dmarc=pass header.from=example.com", "example.com", False),
        ("", "example.com", False),
        (";;;=", "example.com", False),
    ],
)
def test_authenticate(header: str, from_domain: str, ok: bool) -> None:
    assert authenticate([header], from_domain, frozenset({"mx.t"}))[0] is ok


def test_org_domain() -> None:
    assert org_domain("a.b.example.com") == "example.com"
    assert org_domain("mail.shop.co.uk") == "shop.co.uk"
    assert org_domain("example.co.jp") == "example.co.jp"
    assert org_domain("localhost") == "localhost"


# --- quote stripping ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Thanks!\n\nOn Mon, Jan 1, 2024 at 10:00 AM Ana <a@example.com> wrote:\n> hi", "Thanks!"),
        ("Thanks!\n\nOn Mon, Jan 1, 2024 at 10:00 AM Ana <a@example.com>\nwrote:\n> hi", "Thanks!"),
        ("Ok\n\n> On 1 Jan 2024, at 10:00, Ana <a@example.com> wrote:\n>\n> hi", "Ok"),
        ("Danke\n\nAm 01.01.2024 um 10:00 schrieb Ana <a@example.com>:\n> hallo", "Danke"),
        ("Merci\n\nLe lun. 1 janv. 2024 à 10:00, Ana <a@example.com> a écrit :\n> salut", "Merci"),
        (
            "Gracias\n\nEl lun, 1 ene 2024 a las 10:00, Ana (<a@example.com>) escribió:\n> hola",
            "Gracias",
        ),
        ("了解です\n\n2024/01/01 10:00、Ana <a@example.com>のメール:\n> こんにちは", "了解です"),
        ("了解です\n\n2024年1月1日(月) 10:00 Ana <a@example.com>:\n> こんにちは", "了解です"),
        ("Yes\n\n-----Original Message-----\nFrom: Ana\nSent: Monday\n\nold", "Yes"),
        ("Ja\n\n-----Ursprüngliche Nachricht-----\nVon: Ana\n\nalt", "Ja"),
        ("Yes\n\n________________________________\nFrom: Ana\nSent: Monday\nTo: B\n\nold", "Yes"),
        ("Ja\n\nVon: Ana <a@example.com>\nGesendet: Montag\nAn: B\n\nalt", "Ja"),
        ("Oui\n\nDe : Ana\nEnvoyé : lundi\n\nvieux", "Oui"),
        ("はい\n\n差出人: Ana\n送信日時: 2024年1月1日\n\n古い", "はい"),
        ("New text\n\n> old\n> older\n", "New text"),
    ],
)
def test_quote_strip(text: str, expected: str) -> None:
    assert render_quote_strip(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "> only a quote\n> nothing else",
        "On Mon, Jan 1, 2024 at 10:00 AM Ana <a@example.com> wrote:\n> hi",
        "-----Original Message-----\nFrom: Ana\n",
        "",
        "   \n",
    ],
)
def test_quote_strip_never_leaves_nothing(text: str) -> None:
    assert render_quote_strip(text) == text


def test_quote_strip_keeps_inline_answers_and_forwards() -> None:
    inline = "> question one\nanswer one\n> question two\nanswer two"
    assert render_quote_strip(inline) == inline
    forward = (
        "FYI\n\n---------- Forwarded message ----------\nFrom: Shop <s@example.org>\n"
        "Date: Thu, 14 Mar 2024\nSubject: Order\n\nTotal: 10 EUR"
    )
    assert render_quote_strip(forward) == forward
    wrote_in_text = "I wrote: the On button does not work"
    assert render_quote_strip(wrote_in_text) == wrote_in_text


# --- malformed input ------------------------------------------------------------------


@pytest.mark.parametrize("raw", [b"", b"   \r\n\r\n", b"just some words, not a mail"])
def test_not_mail_at_all_is_payload_invalid(raw: bytes) -> None:
    with pytest.raises(PayloadInvalid):
        parse(raw)


def test_empty_plain_alternative_falls_back_to_html() -> None:
    raw = (
        b"From: a@example.com\nContent-Type: multipart/alternative; boundary=b\n\n"
        b"--b\nContent-Type: text/plain\n\n\n--b\nContent-Type: text/html\n\n"
        b"<p>Real <i>text</i></p>\n--b--\n"
    )
    mail = parse(raw)
    assert mail.full_text == "Real text" and mail.html is not None


def test_headers_only_and_no_from_parse_as_an_unknown_sender() -> None:
    mail = parse(b"Subject: hi\n\n")
    assert mail.message is not None and mail.subject == "hi" and mail.kind == "message"
    assert not mail.sender_known
    assert mail.message.sender.external_id.startswith("unknown-sender:")
    assert mail.message.sender.identities == ()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_never_crash(raw: bytes) -> None:
    try:
        mail = parse(raw)
    except PayloadInvalid:
        return
    if mail.message is not None:
        mail.message.model_dump_json()


_HEADER_LINES = st.sampled_from(
    [
        b"From: =?utf-8?B?w6k=?= <a@example.com>",
        b"From: <>",
        b"From: a@\xff\xfe.example",
        b"Subject: =?iso-2022-jp?B?GyRCJCIbKEI=?=",
        b"Subject: \xe6\x97\xa5\xe6\x9c\xac",
        b"Date: 99 Foo 99999 99:99:99 +9999",
        b"Message-ID: <<<>>>",
        b"References: <a@b> garbage <c@d",
        b"Content-Type: multipart/mixed; boundary=x",
        b"Content-Type: multipart/alternative",
        b"Content-Type: text/plain; charset=x-unknown-charset",
        b"Content-Type: message/rfc822",
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=x",
        b"Content-Transfer-Encoding: base64",
        b"Content-Transfer-Encoding: quoted-printable",
        b"Content-Disposition: attachment; filename*=utf-8''%FF%FE; filename*0=a",
        b"Authentication-Results: mx.desk.example.net; dkim=pass header.d=",
        b"To: support+Tk7Qm2Xz9Lp4Rw8Vb3Nc@desk.example.net",
    ]
)
_BODY_LINES = st.sampled_from(
    [b"--x", b"--x--", b"Content-Type: text/html", b"", b"<p>hi", b"=?=", b"\xff\x00", b"> q"]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_HEADER_LINES, max_size=8), st.lists(_BODY_LINES, max_size=20))
def test_mail_shaped_bytes_never_crash(headers: list[bytes], body: list[bytes]) -> None:
    raw = b"\r\n".join([*headers, b"", *body])
    try:
        mail = parse(raw)
    except PayloadInvalid:
        return
    if mail.message is not None:
        mail.message.model_dump_json()


# --- issue 17: nothing swallowed, real-world MIME ---------------------------------------


def _with_file(data: bytes) -> bytes:
    encoded = base64.b64encode(data).decode()
    return (
        "From: ana@example.com\nSubject: scan\nContent-Type: multipart/mixed; boundary=b\n\n"
        "--b\nContent-Type: text/plain\n\nHere it is.\n--b\nContent-Type: image/png\n"
        f"Content-Disposition: attachment; filename=scan.png\nContent-Transfer-Encoding: base64\n\n"
        f"{encoded}\n--b--\n"
    ).encode()


def test_fallback_dedup_key_includes_the_attachments() -> None:
    # no Message-ID, no Date, the same text: a different file is a different mail
    first, second = parse(_with_file(b"one")), parse(_with_file(b"two"))
    assert first.message is not None and second.message is not None
    assert first.message.dedup_key != second.message.dedup_key
    again = parse(_with_file(b"one"))
    assert again.message is not None and again.message.dedup_key == first.message.dedup_key


@pytest.mark.parametrize(
    "from_header", ['From: "A Name" <>\n', "From: A Name\n", "From: <@>\n", "From: \n", ""]
)
def test_a_mail_without_a_usable_sender_is_filed_from_an_unknown_sender(from_header: str) -> None:
    mail = parse(
        f"{from_header}Subject: help\nMessage-ID: <u1@example.com>\n\nMy order?\n".encode()
    )
    assert mail.kind == "message" and not mail.sender_known
    assert mail.message is not None and mail.message.text == "My order?"
    assert mail.message.sender.external_id.startswith("unknown-sender:")
    if "A Name" in from_header:
        assert mail.message.sender.display_name == "A Name"


def test_the_mbox_envelope_line_names_the_sender_when_no_header_does() -> None:
    mail = parse(b"From bob@example.com Mon Apr  2 10:00:00 2012\nSubject: hi\n\nHello\n")
    assert mail.sender_known and mail.message is not None
    assert mail.message.sender.external_id == "bob@example.com"


@pytest.mark.parametrize(
    ("message_id", "kind"),
    [
        ("t.Tk7Qm2Xz9Lp4Rw8Vb3Nc.a1b2@desk.example.net", "own"),
        ("t.Tk7Qm2Xz9Lp4Rw8Vb3Nc.a1b2@mx.desk.example.net", "message"),  # a subdomain
        ("CAB0b.1234@desk.example.net", "message"),  # a colleague's mail client
        ("t.short.a1b2@desk.example.net", "message"),
    ],
)
def test_own_mail_is_our_message_id_exactly(message_id: str, kind: str) -> None:
    raw = (
        f"From: Bob <bob@desk.example.net>\nX-Deskbridge: reply\nMessage-ID: <{message_id}>\n\nhi\n"
    )
    assert parse(raw.encode()).kind == kind


def test_a_bounce_under_our_domain_is_a_bounce_first() -> None:
    raw = (CORPUS / "deskbridge__dsn_under_support_domain.eml").read_bytes()
    mail = parse(raw, own_domains=frozenset({"support.example"}))
    assert mail.kind == "bounce"
    assert mail.bounced_message_id == "t.Tk7Qm2Xz9Lp4Rw8Vb3Nc.0f1e2d3c@support.example"


def test_outlook_express_boundary_falls_back_to_the_compat_parser() -> None:
    raw = (CORPUS / "deskbridge__outlook_express_unquoted_boundary.eml").read_bytes()
    mail = parse(raw)
    assert mail.message is not None and mail.message.text == "Hello there"
    [attachment] = mail.message.attachments
    assert attachment.filename == "This is a test.txt"
    assert part_content(raw, attachment.ref) == (b"data", "text/plain")


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ("name=This is a test.txt", "This is a test.txt"),
        ('name="quoted; name.txt"', "quoted; name.txt"),
        ("name==?UTF-8?B?6KuL5rGC5pu4LnBkZg==?=", "請求書.pdf"),
        ('name="=?iso-8859-1?Q?Gr=FC=DFe.txt?="', "Grüße.txt"),
        ("name*=utf-8''%E2%82%AC%20rate.txt", "€ rate.txt"),
    ],
)
def test_attachment_names_in_every_form_clients_write(params: str, name: str) -> None:
    raw = (
        "From: a@example.com\nContent-Type: multipart/mixed; boundary=b\n\n--b\n"
        "Content-Type: text/plain\n\nsee file\n--b\n"
        f"Content-Type: text/plain; {params}\nContent-Disposition: attachment\n\nx\n--b--\n"
    ).encode()
    mail = parse(raw)
    assert mail.message is not None
    assert [a.filename for a in mail.message.attachments] == [name]


def test_unlabelled_latin1_is_read_not_replaced() -> None:
    body = "Olá, o pedido número 12 chegou danificado. Podem trocá-lo? Obrigado, João."
    raw = b"From: a@example.com\nSubject: x\n\n" + body.encode("latin-1")
    mail = parse(raw)
    assert mail.message is not None and mail.message.text == body


def test_bottom_posted_reply_keeps_the_new_text_and_the_subject_is_the_ticket_subject() -> None:
    from deskbridge.outbound.render import subject

    raw = (CORPUS / "deskbridge__thunderbird_bottom_post.eml").read_bytes()
    mail = parse(raw)
    assert mail.message is not None
    assert mail.message.text == "Thanks, but the parcel never arrived."
    assert subject(mail.message) == "Email: Ana: Re: Your order"
