"""The SMTP listener driven by a real SMTP client over loopback."""

from __future__ import annotations

import socket
from email.message import EmailMessage

import aiosmtplib
import pytest

from deskbridge.listeners.smtp import start_smtp_listeners
from deskbridge.store import Intake, connect
from deskbridge.store.listing import RawFilter

from .conftest import drain, redis_of, self_signed_cert


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def yaml_for(port: int, max_bytes: int = 200_000) -> str:
    return f"""
accounts:
  acme:
    desk: {{type: sandbox}}
    channels:
      - type: email
        address: support@acme.example
        inbound: smtp
        smtp_listen: "127.0.0.1:{port}"
        max_body_bytes: {max_bytes}
        sandbox: true
"""


def mail(to: str = "support+abc@acme.example", body: str = "Hello by SMTP") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "Ana <ana@example.com>"
    msg["To"] = to
    msg["Subject"] = "By SMTP"
    msg["Message-ID"] = "<smtp1@example.com>"
    msg["Date"] = "Sun, 22 Nov 2026 09:00:00 +0000"
    msg.set_content(body)
    return msg


@pytest.fixture
async def listener(make_runtime):
    servers = []

    async def start(**kw):
        port = free_port()
        rt = make_runtime(yaml_for(port, **kw))
        servers.extend(await start_smtp_listeners(rt))
        return rt, port

    yield start
    for s in servers:
        s.close()
        await s.wait_closed()


async def test_mail_for_our_address_is_stored_then_accepted(listener) -> None:
    rt, port = await listener()
    errors, response = await aiosmtplib.send(mail(), hostname="127.0.0.1", port=port)
    assert errors == {} and response.startswith("2.0.0 Stored")
    await drain(rt)
    [ticket] = await rt.sandbox.tickets("acme")
    assert [m.text for m in ticket.messages] == ["Hello by SMTP"]


async def test_other_recipients_are_refused(listener) -> None:
    rt, port = await listener()
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as exc:
        await aiosmtplib.send(mail(to="someone@elsewhere.example"), hostname="127.0.0.1", port=port)
    assert exc.value.recipients[0].code == 550
    assert await redis_of(rt).keys("db:*") == []


async def test_too_large_is_refused(listener) -> None:
    _, port = await listener(max_bytes=2000)
    with pytest.raises(aiosmtplib.SMTPResponseException) as exc:
        await aiosmtplib.send(mail(body="x" * 5000), hostname="127.0.0.1", port=port)
    assert exc.value.code == 552


async def test_store_down_is_a_temporary_failure(listener) -> None:
    rt, port = await listener()
    down = connect("redis://127.0.0.1:1/0")
    rt.intake = Intake(down, rt.vault, dedup_ttl=60, raw_ttl=60, job_expiry_ms=1000)
    with pytest.raises(aiosmtplib.SMTPResponseException) as exc:
        await aiosmtplib.send(mail(), hostname="127.0.0.1", port=port)
    assert exc.value.code == 451
    await down.aclose()


async def test_starttls_with_a_configured_certificate(make_runtime, tmp_path) -> None:
    cert, key = self_signed_cert(tmp_path, "localhost")
    port = free_port()
    rt = make_runtime(
        yaml_for(port) + f'        tls_cert_path: "{cert}"\n' + f'        tls_key_path: "{key}"\n'
    )
    servers = await start_smtp_listeners(rt)
    try:
        errors, response = await aiosmtplib.send(
            mail(), hostname="127.0.0.1", port=port, start_tls=True, validate_certs=False
        )
        assert errors == {} and response.startswith("2.0.0")
    finally:
        for s in servers:
            s.close()
            await s.wait_closed()


def _ignored(rt, reason: str) -> float | None:
    return rt.metrics.registry.get_sample_value(
        "deskbridge_events_total", {"source": "email", "outcome": "ignored", "reason": reason}
    )


async def test_long_lines_are_taken_and_the_mail_filed(listener) -> None:
    # a 4 KB header and a 4,464-character base64 line: mainstream MTAs take both
    rt, port = await listener()
    data = "QUJD" * 1116
    raw = (
        "From: Ana <ana@example.com>\r\nTo: support@acme.example\r\nSubject: photo\r\n"
        f"Message-ID: <long@example.com>\r\nX-Long: {'x' * 4096}\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n'
        "Content-Type: text/plain\r\n\r\nThe photo.\r\n--b\r\n"
        'Content-Type: image/jpeg; name="p.jpg"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
        f"{data}\r\n--b--\r\n"
    )
    errors, response = await aiosmtplib.send(
        raw,
        sender="ana@example.com",
        recipients=["support@acme.example"],
        hostname="127.0.0.1",
        port=port,
    )
    assert errors == {} and response.startswith("2.0.0 Stored")
    await drain(rt)
    [ticket] = await rt.sandbox.tickets("acme")
    assert [m.text for m in ticket.messages] == ["The photo."]


async def test_long_lines_still_meet_the_size_limit(listener) -> None:
    _, port = await listener(max_bytes=2000)
    raw = f"From: a@example.com\r\nTo: support@acme.example\r\n\r\n{'x' * 5000}\r\n"
    with pytest.raises(aiosmtplib.SMTPResponseException) as exc:
        await aiosmtplib.send(
            raw,
            sender="a@example.com",
            recipients=["support@acme.example"],
            hostname="127.0.0.1",
            port=port,
        )
    assert exc.value.code == 552


@pytest.mark.parametrize("rcpt", ["postmaster", "Postmaster@acme.example"])
async def test_postmaster_is_accepted(listener, rcpt: str) -> None:
    # RFC 5321 §4.5.1: postmaster, with or without the domain, MUST be accepted
    rt, port = await listener()
    errors, response = await aiosmtplib.send(
        mail(to="postmaster@acme.example"), recipients=[rcpt], hostname="127.0.0.1", port=port
    )
    assert errors == {} and response.startswith("2.0.0 Stored")
    await drain(rt)
    assert len(await rt.sandbox.tickets("acme")) == 1


async def test_own_mail_is_ignored_with_its_reason(listener) -> None:
    rt, port = await listener()
    msg = mail(to="support@acme.example")
    del msg["Message-ID"]
    msg["Message-ID"] = "<t.Tk7Qm2Xz9Lp4Rw8Vb3Nc.a1b2@acme.example>"
    errors, response = await aiosmtplib.send(msg, hostname="127.0.0.1", port=port)
    assert errors == {} and response.startswith("2.0.0")
    assert _ignored(rt, "own_mail") == 1
    assert _ignored(rt, "") is None
    # nothing filed: only the item's record (listed with its reason) and the mail itself
    names = sorted(k.decode().split(":")[2] for k in await redis_of(rt).keys("db:*"))
    assert names == ["ign", "ignz", "raw", "rawz"]
    page = await rt.listing.ignored(["acme"], RawFilter(), limit=10)
    [item] = page.items
    assert (item.source, item.reason, item.account) == ("email", "own_mail", "acme")
    assert item.raw_id is not None and await rt.listing.raw("acme", item.raw_id) is not None


TWO_ACCOUNTS = """
accounts:
{accounts}
"""


def _two(port: int) -> str:
    blocks = []
    for name in ("acme", "beta"):
        blocks.append(
            f"""  {name}:
    desk: {{type: sandbox}}
    channels:
      - type: email
        address: support@{name}.example
        inbound: smtp
        smtp_listen: "127.0.0.1:{port}"
        sandbox: true"""
        )
    return TWO_ACCOUNTS.format(accounts="\n".join(blocks))


async def test_no_5xx_after_one_account_stored_the_mail(make_runtime, monkeypatch) -> None:
    from deskbridge.errors import StoreUnavailable
    from deskbridge.flows import ingest
    from deskbridge.listeners import smtp

    port = free_port()
    rt = make_runtime(_two(port))
    servers = await start_smtp_listeners(rt)
    real = ingest.accept_events
    failing = {"beta"}

    async def flaky(rt_, source, req, events):
        if req.path == "smtp:beta" and "beta" in failing:
            raise StoreUnavailable("beta's write failed")
        return await real(rt_, source, req, events)

    monkeypatch.setattr(smtp, "accept_events", flaky)
    both = mail(to="support@acme.example, support@beta.example")
    try:
        with pytest.raises(aiosmtplib.SMTPResponseException) as exc:
            await aiosmtplib.send(both, hostname="127.0.0.1", port=port)
        assert exc.value.code == 451  # acme has it; the retry must bring beta's copy
        failing.clear()
        errors, response = await aiosmtplib.send(both, hostname="127.0.0.1", port=port)
        assert errors == {} and response.startswith("2.0.0")
        await drain(rt)
        assert len(await rt.sandbox.tickets("acme")) == 1  # the retry deduplicated
        assert len(await rt.sandbox.tickets("beta")) == 1
    finally:
        for s in servers:
            s.close()
            await s.wait_closed()
