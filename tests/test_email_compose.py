"""Outbound email: the reply threads under the customer's message (RFC 5322 3.6.4)."""

from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_bytes, policy

import pytest

from deskbridge.adapters.email.compose import Thread, compose_reply, reply_subject
from deskbridge.schemas import AgentReply, Desk, Upload


def reply(text: str = "Hello Ana,\n\nIt ships today.", *, automated: bool = False) -> AgentReply:
    return AgentReply(
        account="acme",
        desk=Desk.SANDBOX,
        dedup_key="r1",
        ticket_id="7",
        external_id="c1",
        text=text,
        automated=automated,
        occurred_at=datetime(2026, 11, 22, 9, 30, tzinfo=UTC),
    )


def compose(**kw):
    thread = kw.pop(
        "thread",
        Thread(
            subject="Where is my order?",
            message_id="CAF=abc@mail.gmail.com",
            references=("first@example.com", "second@example.com"),
        ),
    )
    return compose_reply(
        kw.pop("r", reply()),
        sender="support@acme.example",
        sender_name="Acme Support",
        to="ana@example.com",
        thread=thread,
        reply_to="support+TOKEN1234567890abcd@acme.example",
        domain="acme.example",
        message_id="our-1@acme.example",
        **kw,
    )


def test_threading_headers_follow_rfc_5322() -> None:
    msg = compose()
    assert msg["Message-ID"] == "<our-1@acme.example>"
    assert msg["In-Reply-To"] == "<CAF=abc@mail.gmail.com>"
    assert msg["References"] == "<first@example.com> <second@example.com> <CAF=abc@mail.gmail.com>"
    assert msg["Subject"] == "Re: Where is my order?"
    assert msg["Reply-To"] == "support+TOKEN1234567890abcd@acme.example"
    assert msg["Auto-Submitted"] is None  # a person wrote it
    assert msg["From"] == "Acme Support <support@acme.example>"


def test_references_fall_back_to_a_single_in_reply_to() -> None:
    msg = compose(thread=Thread(subject="Re: Order", message_id="p@x", in_reply_to=("gp@x",)))
    assert msg["References"] == "<gp@x> <p@x>"
    assert msg["Subject"] == "Re: Order"


def test_first_message_without_a_parent_id_still_has_our_id() -> None:
    msg = compose(thread=Thread(subject="", message_id=None))
    assert msg["In-Reply-To"] is None and msg["References"] is None
    assert msg["Message-ID"] == "<our-1@acme.example>"
    assert msg["Subject"] == "Re: Your message"


@pytest.mark.parametrize(
    ("original", "expected"),
    [
        ("Re: a", "Re: a"),
        ("AW: Bestellung", "AW: Bestellung"),
        ("SV:x", "SV:x"),
        ("Order  #5", "Re: Order #5"),
        ("返信\uff1a注文", "返信\uff1a注文"),
    ],
)
def test_reply_prefixes_do_not_stack(original: str, expected: str) -> None:
    assert reply_subject(original) == expected


def test_automated_replies_say_so_and_parts_round_trip() -> None:
    msg = compose(
        r=reply("<b>not html</b>\n\nline two", automated=True),
        files=[Upload(filename="label.pdf", mime_type="application/pdf", data=b"%PDF-1.7")],
    )
    assert msg["Auto-Submitted"] == "auto-replied"
    parsed = message_from_bytes(msg.as_bytes(), policy=policy.default)
    plain, html = parsed.get_body(("plain",)), parsed.get_body(("html",))
    assert plain is not None and html is not None
    assert plain.get_content().strip() == "<b>not html</b>\n\nline two"
    html_part = html.get_content()
    assert "&lt;b&gt;not html&lt;/b&gt;" in html_part
    [attachment] = list(parsed.iter_attachments())
    assert attachment.get_filename() == "label.pdf"
    assert attachment.get_content() == b"%PDF-1.7"
