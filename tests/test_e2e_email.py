"""Email end to end through the sandbox desk: a Mailgun-forwarded mail opens a ticket,
the agent's answer leaves threaded, and the customer's reply (Outlook-style, without
In-Reply-To) joins the same ticket."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
import urllib.parse
from datetime import UTC, datetime

from deskbridge.flows.ingest import accept_replies
from deskbridge.gateway import create_app
from deskbridge.schemas import AgentReply, Desk

from .conftest import EMAIL_YAML, MAILGUN_KEY, drain


def mail(message_id: str, subject: str, body: str, **headers: str) -> bytes:
    extra = "".join(f"{k.replace('_', '-')}: {v}\r\n" for k, v in headers.items())
    return (
        f"From: Ana Lima <ana@example.com>\r\nTo: support@acme.example\r\n"
        f"Subject: {subject}\r\nDate: Sun, 22 Nov 2026 09:00:00 +0000\r\n"
        f"Message-ID: <{message_id}>\r\n{extra}MIME-Version: 1.0\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    ).encode()


def mailgun(raw: bytes, key: str = MAILGUN_KEY) -> tuple[bytes, dict[str, str]]:
    ts, token = str(int(time.time())), hashlib.sha256(raw).hexdigest()[:50]
    signature = hmac.new(key.encode(), (ts + token).encode(), hashlib.sha256).hexdigest()
    fields = {
        "body-mime": raw.decode("latin-1"),
        "timestamp": ts,
        "token": token,
        "signature": signature,
        "recipient": "support@acme.example",
    }
    body = urllib.parse.urlencode(fields, encoding="latin-1").encode()
    return body, {"Content-Type": "application/x-www-form-urlencoded"}


async def test_email_in_threaded_reply_out_and_reply_joins(make_runtime, aiohttp_client) -> None:
    rt = make_runtime(EMAIL_YAML)
    client = await aiohttp_client(create_app(rt, role="serve"))

    body, headers = mailgun(
        mail("m1@example.com", "Refund please", "I want a refund for order 42.")
    )
    for _ in range(2):  # Mailgun retries with the same token and message
        assert (await client.post("/webhooks/email/acme", data=body, headers=headers)).status == 200
    bad, _ = mailgun(mail("m9@example.com", "x", "y"), key="wrong")
    assert (await client.post("/webhooks/email/acme", data=bad, headers=headers)).status == 401
    # a signed post that carries no mail: Mailgun's "rejected, do not retry"
    ts, token = str(int(time.time())), "t" * 50
    sig = hmac.new(MAILGUN_KEY.encode(), (ts + token).encode(), hashlib.sha256).hexdigest()
    empty = urllib.parse.urlencode({"timestamp": ts, "token": token, "signature": sig}).encode()
    assert (await client.post("/webhooks/email/acme", data=empty, headers=headers)).status == 406
    await drain(rt)
    [ticket] = await rt.sandbox.tickets("acme")
    assert ticket.channel == "email" and [m.text for m in ticket.messages] == [
        "I want a refund for order 42."
    ]

    reply = AgentReply(
        account="acme",
        desk=Desk.SANDBOX,
        dedup_key="r1",
        ticket_id=ticket.id,
        external_id="a1",
        text="Refunded today.",
        occurred_at=datetime.now(UTC),
    )
    await accept_replies(rt, "acme", "sandbox", None, [reply])
    await drain(rt)
    [sent] = await rt.sandbox.sent("acme")
    assert sent["to"] == "ana@example.com"
    text = sent["detail"]  # the headers; "text" is what the customer reads
    assert "In-Reply-To: <m1@example.com>" in text
    found = re.search(r"Reply-To: support\+(\w+)@acme\.example", text)
    assert found is not None
    token = found.group(1)
    assert f"Subject: Re: Refund please [#{token}]" in text
    found = re.search(r"Message-ID: <(t\.\w+\.\w+@acme\.example)>", text)
    assert found is not None
    our_id = found.group(1)
    assert our_id.startswith(f"t.{token}.")

    # the customer answers from Outlook: no In-Reply-To, our id only in References
    answer = mail(
        "m2@example.com",
        "AW: Refund please",
        "Thanks! And order 43?",
        References=f"<m1@example.com> <{our_id}>",
    )
    # an out-of-office notice never reaches the desk
    ooo = mail(
        "m3@example.com",
        "Automatic reply: Refund please",
        "I am away.",
        Auto_Submitted="auto-replied",
    )
    for raw in (answer, ooo):
        body, headers = mailgun(raw)
        # the URL Mailgun needs for raw MIME ends in "mime"
        assert (
            await client.post("/webhooks/email/acme/mime", data=body, headers=headers)
        ).status == 200
    await drain(rt)
    [ticket] = await rt.sandbox.tickets("acme")
    customer = [m.text for m in ticket.messages if m.author == "customer"]
    assert customer == ["I want a refund for order 42.", "Thanks! And order 43?"]


async def test_inbound_attachments_are_read_back_from_the_stored_mail(
    make_runtime, aiohttp_client
) -> None:
    from email.message import EmailMessage

    rt = make_runtime(EMAIL_YAML)
    client = await aiohttp_client(create_app(rt, role="serve"))
    msg = EmailMessage()
    msg["From"] = "ana@example.com"
    msg["To"] = "support@acme.example"
    msg["Subject"] = "Broken item"
    msg["Message-ID"] = "<att1@example.com>"
    msg["Date"] = "Sun, 22 Nov 2026 09:00:00 +0000"
    msg.set_content("Photo attached.")
    msg.add_attachment(
        b"\x89PNG photo bytes", maintype="image", subtype="png", filename="broken.png"
    )
    body, headers = mailgun(msg.as_bytes())
    assert (
        await client.post("/webhooks/email/acme/mime", data=body, headers=headers)
    ).status == 200
    await drain(rt)
    [ticket] = await rt.sandbox.tickets("acme")
    [filed] = ticket.messages
    assert filed.text == "Photo attached."
    assert filed.attachments == ("broken.png (image/png, 16 bytes)",)


async def test_a_bounce_of_our_reply_becomes_a_note(make_runtime, aiohttp_client, redis) -> None:
    rt = make_runtime(EMAIL_YAML)
    client = await aiohttp_client(create_app(rt, role="serve"))
    body, headers = mailgun(mail("b1@example.com", "Order", "Where is it?"))
    await client.post("/webhooks/email/acme", data=body, headers=headers)
    await drain(rt)
    [ticket] = await rt.sandbox.tickets("acme")
    reply = AgentReply(
        account="acme",
        desk=Desk.SANDBOX,
        dedup_key="r1",
        ticket_id=ticket.id,
        external_id="a1",
        text="On its way.",
        occurred_at=datetime.now(UTC),
    )
    await accept_replies(rt, "acme", "sandbox", None, [reply])
    await drain(rt)
    [sent] = await rt.sandbox.sent("acme")
    found = re.search(r"Message-ID: <([^>]+)>", sent["detail"])
    assert found is not None
    our_id = found.group(1)

    dsn = (
        "From: Mail Delivery System <MAILER-DAEMON@mx.example.com>\r\n"
        "To: support@acme.example\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        "Date: Sun, 22 Nov 2026 09:05:00 +0000\r\nMessage-ID: <dsn1@mx.example.com>\r\n"
        "Return-Path: <>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nThe mail could not be delivered.\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.com\r\n\r\nFinal-Recipient: rfc822; ana@example.com\r\n"
        "Action: failed\r\nStatus: 5.1.1\r\nDiagnostic-Code: smtp; 550 5.1.1 no such user\r\n"
        "--B\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"From: support@acme.example\r\nTo: ana@example.com\r\nMessage-ID: <{our_id}>\r\n"
        "Subject: Re: Order\r\n--B--\r\n"
    ).encode()
    body, headers = mailgun(dsn)
    assert (await client.post("/webhooks/email/acme", data=body, headers=headers)).status == 200
    await drain(rt)
    [ticket] = await rt.sandbox.tickets("acme")
    notes = [m.text for m in ticket.messages if m.author == "note"]
    assert len(notes) == 1 and "not delivered" in notes[0]
    assert [m.author for m in ticket.messages].count("customer") == 1  # the bounce opened nothing


async def test_a_replayed_mailgun_token_never_brings_a_second_mail(
    make_runtime, aiohttp_client
) -> None:
    rt = make_runtime(EMAIL_YAML)
    client = await aiohttp_client(create_app(rt, role="serve"))
    ts = str(int(time.time()))
    token = "r" * 50
    sig = hmac.new(MAILGUN_KEY.encode(), (ts + token).encode(), hashlib.sha256).hexdigest()
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    for i, text in enumerate(("The real mail.", "A forged mail under a captured signature.")):
        raw = mail(f"replay{i}@example.com", "Hello", text)
        fields = {
            "body-mime": raw.decode("latin-1"),
            "timestamp": ts,
            "token": token,
            "signature": sig,
        }
        body = urllib.parse.urlencode(fields, encoding="latin-1").encode()
        status = (await client.post("/webhooks/email/acme", data=body, headers=headers)).status
        # the token is bound to the first mail: a second body under it is refused, unstored
        assert status == (200 if i == 0 else 401)
    await drain(rt)
    [ticket] = await rt.sandbox.tickets("acme")
    assert [m.text for m in ticket.messages] == ["The real mail."]


async def test_a_mailgun_redelivery_with_a_new_token_is_one_mail(
    make_runtime, aiohttp_client
) -> None:
    # Mailgun does not document that a retry keeps its token: the Message-ID dedups too
    rt = make_runtime(EMAIL_YAML)
    client = await aiohttp_client(create_app(rt, role="serve"))
    raw = mail("again@example.com", "Hello", "Only once, please.")
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    ts = str(int(time.time()))
    for token in ("a" * 50, "b" * 50, "a" * 50):
        sig = hmac.new(MAILGUN_KEY.encode(), (ts + token).encode(), hashlib.sha256).hexdigest()
        fields = {"body-mime": raw.decode("latin-1"), "timestamp": ts, "token": token}
        fields["signature"] = sig
        body = urllib.parse.urlencode(fields, encoding="latin-1").encode()
        assert (await client.post("/webhooks/email/acme", data=body, headers=headers)).status == 200
    await drain(rt)
    [ticket] = await rt.sandbox.tickets("acme")
    assert [m.text for m in ticket.messages] == ["Only once, please."]


async def test_ignored_mail_is_counted_with_its_reason(make_runtime, aiohttp_client) -> None:
    rt = make_runtime(EMAIL_YAML)
    client = await aiohttp_client(create_app(rt, role="serve"))
    auto = mail(
        "ooo@example.com", "Out of Office: Hello", "I am away.", Auto_Submitted="auto-replied"
    )
    body, headers = mailgun(auto)
    assert (await client.post("/webhooks/email/acme", data=body, headers=headers)).status == 200
    sample = rt.metrics.registry.get_sample_value
    labels = {"source": "email", "outcome": "ignored"}
    assert sample("deskbridge_events_total", {**labels, "reason": "auto_reply"}) == 1
    assert sample("deskbridge_events_total", {**labels, "reason": ""}) is None


async def test_email_through_zendesk(make_runtime, aiohttp_client, respx_mock) -> None:
    from .conftest import ZD_SECRET
    from .test_e2e import zendesk_comment, zendesk_headers
    from .test_e2e_meta import zendesk_routes

    yaml_text = EMAIL_YAML.replace(
        "desk: {type: sandbox}",
        "desk: {type: zendesk, base_url: 'https://acme.zendesk.test', email: bot@acme.test, "
        f"api_token: zd-api-token, webhook_secret: '{ZD_SECRET}'}}",
    )
    rt = make_runtime(yaml_text)
    client = await aiohttp_client(create_app(rt, role="serve"))
    create, _ = zendesk_routes(respx_mock, ticket_id=55)
    body, headers = mailgun(mail("z1@example.com", "Invoice copy", "Could you resend my invoice?"))
    assert (await client.post("/webhooks/email/acme", data=body, headers=headers)).status == 200
    await drain(rt)
    ticket = json.loads(create.calls[0].request.content)["ticket"]
    assert ticket["comment"]["body"] == "Could you resend my invoice?"
    reply = zendesk_comment(55, 4001, "Attached again.")
    assert (
        await client.post("/desks/zendesk/acme", data=reply, headers=zendesk_headers(reply))
    ).status == 200
    await drain(rt)
    [sent] = await rt.sandbox.sent("acme")
    assert sent["to"] == "ana@example.com"
    assert "In-Reply-To: <z1@example.com>" in sent["detail"] and "Attached again." in sent["text"]


async def test_quoted_history_is_stripped_but_the_whole_mail_stays_attached(
    make_runtime, aiohttp_client
) -> None:
    rt = make_runtime(EMAIL_YAML)
    client = await aiohttp_client(create_app(rt, role="serve"))
    text = (
        "Yes, please refund it.\r\n\r\nOn Sun, 22 Nov 2026 at 09:00, Acme Support "
        "<support@acme.example> wrote:\r\n> Do you want a refund?\r\n> Acme"
    )
    body, headers = mailgun(mail("q1@example.com", "Re: Refund", text))
    await client.post("/webhooks/email/acme", data=body, headers=headers)
    await drain(rt)
    [ticket] = await rt.sandbox.tickets("acme")
    [filed] = ticket.messages
    assert filed.text == "Yes, please refund it."
    assert len(filed.attachments) == 1 and filed.attachments[0].startswith(
        "original-message.eml (message/rfc822"
    )


async def test_the_ticket_subject_is_the_mails_subject(
    make_runtime, aiohttp_server, tmp_path
) -> None:
    import asyncio

    from click.testing import CliRunner

    from deskbridge.cli.main import cli

    rt = make_runtime(EMAIL_YAML)
    server = await aiohttp_server(create_app(rt, role="serve"))
    url = str(server.make_url("")).rstrip("/")
    accounts = tmp_path / "accounts.yaml"
    accounts.write_text(EMAIL_YAML)
    args = [
        "simulate", "email", "--account", "acme", "--config", str(accounts), "--url", url,
        "--from", "customer@example.com", "--subject", "Order 42 never arrived",
        "--text", "Hi there,\n\nmy order 42 never arrived.",
    ]  # fmt: skip
    result = await asyncio.to_thread(CliRunner().invoke, cli, args)
    assert result.exit_code == 0, result.output
    await drain(rt)
    [ticket] = await rt.sandbox.tickets("acme")
    # the mail's Subject, not its first line (a greeting)
    assert ticket.subject == "Email: Order 42 never arrived"
    assert ticket.requester == "customer@example.com"  # no name given: was "customer"
    assert [m.text for m in ticket.messages] == ["Hi there,\n\nmy order 42 never arrived."]
