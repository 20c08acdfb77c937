"""Sending mail over SMTP (aiosmtplib), with failures classified like every other send:
4xx replies and connection trouble are retryable, 5xx replies permanent."""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage
from typing import Literal

import aiosmtplib

from deskbridge.errors import PermanentError, RetryableError

__all__ = ["SmtpServer", "send_mail"]


@dataclass(frozen=True, slots=True)
class SmtpServer:
    host: str
    port: int = 587
    security: Literal["starttls", "tls", "none"] = "starttls"
    """``tls``: implicit TLS (port 465); ``starttls``: upgrade after connecting (587)."""
    username: str | None = None
    password: str | None = None
    timeout: float = 30.0


# failures before a session existed: the mail cannot have been taken
_NOT_SENT = (
    aiosmtplib.SMTPConnectError,
    aiosmtplib.SMTPConnectTimeoutError,
    ConnectionRefusedError,
)


def _classify(code: int, what: str) -> RetryableError | PermanentError:
    # the server's text can quote addresses: keep only the code
    if 400 <= code < 500:
        return RetryableError(f"{what}: SMTP {code}", status=code)
    return PermanentError(f"{what}: SMTP {code}", status=code)


async def send_mail(msg: EmailMessage, server: SmtpServer) -> None:
    """Hand ``msg`` to ``server`` (envelope from its From and To/Cc). Raises
    ``RetryableError`` for 4xx replies, timeouts and refused or dropped connections,
    ``PermanentError`` for 5xx replies (a recipient refused, a message rejected)."""
    what = "smtp send"
    try:
        await aiosmtplib.send(
            msg,
            hostname=server.host,
            port=server.port,
            username=server.username,
            password=server.password,
            use_tls=server.security == "tls",
            start_tls=server.security == "starttls",
            timeout=server.timeout,
        )
    except aiosmtplib.SMTPRecipientsRefused as exc:
        codes = [err.code for err in exc.recipients]
        raise _classify(max(codes) if all(400 <= c < 500 for c in codes) else 550, what) from None
    except aiosmtplib.SMTPResponseException as exc:
        raise _classify(exc.code, what) from None
    except _NOT_SENT as exc:
        raise RetryableError(f"{what}: {type(exc).__name__}") from None
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        # dropped or timed out once connected: the server may have taken the mail
        raise RetryableError(f"{what}: {type(exc).__name__}", outcome="unknown") from None
