"""Outbound SMTP against a real SMTP server (aiosmtpd) on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from email import message_from_bytes, policy

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from deskbridge.adapters.email.compose import Thread, compose_reply
from deskbridge.adapters.email.smtp import SmtpServer, send_mail
from deskbridge.errors import PermanentError, RetryableError
from deskbridge.schemas import AgentReply, Desk


class Capture:
    """An SMTP handler that keeps what it receives and can refuse on demand."""

    def __init__(self) -> None:
        self.received: list[Envelope] = []
        self.rcpt_answer = "250 OK"
        self.data_answer = "250 Message accepted"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if not self.rcpt_answer.startswith("250"):
            return self.rcpt_answer
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.data_answer.startswith("250"):
            self.received.append(envelope)
        return self.data_answer


@pytest.fixture
async def smtp_server() -> AsyncIterator[tuple[Capture, int]]:
    handler = Capture()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(handler, hostname="localhost"), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield handler, port
    server.close()
    await server.wait_closed()


def mail():
    reply = AgentReply(
        account="acme",
        desk=Desk.SANDBOX,
        dedup_key="r",
        ticket_id="1",
        external_id="c",
        text="It ships today.",
        occurred_at=datetime.now(UTC),
    )
    thread = Thread(subject="Where is my order?", message_id="parent@example.com")
    return compose_reply(
        reply,
        sender="support@acme.example",
        sender_name="Acme",
        to="ana@example.com",
        thread=thread,
        reply_to="support+tok@acme.example",
        domain="acme.example",
    )


async def test_sends_a_threaded_mail(smtp_server) -> None:
    handler, port = smtp_server
    await send_mail(mail(), SmtpServer(host="127.0.0.1", port=port, security="none"))
    [env] = handler.received
    assert env.mail_from == "support@acme.example" and env.rcpt_tos == ["ana@example.com"]
    got = message_from_bytes(env.original_content, policy=policy.default)
    assert got["In-Reply-To"] == "<parent@example.com>"
    assert got["Subject"] == "Re: Where is my order?"


@pytest.mark.parametrize(
    ("rcpt", "data", "error"),
    [
        ("450 Mailbox busy", "250 OK", RetryableError),
        ("550 No such user", "250 OK", PermanentError),
        ("250 OK", "451 Try again later", RetryableError),
        ("250 OK", "554 Rejected as spam", PermanentError),
    ],
)
async def test_smtp_answers_are_classified(smtp_server, rcpt, data, error) -> None:
    handler, port = smtp_server
    handler.rcpt_answer, handler.data_answer = rcpt, data
    with pytest.raises(error) as exc:
        await send_mail(mail(), SmtpServer(host="127.0.0.1", port=port, security="none"))
    assert "ana@example.com" not in str(exc.value)


async def test_no_server_is_retryable() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(RetryableError):
        await send_mail(mail(), SmtpServer(host="127.0.0.1", port=port, security="none", timeout=2))
