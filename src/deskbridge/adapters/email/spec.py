"""Email's entry in the channel registry."""

from __future__ import annotations

import time
from collections.abc import Coroutine
from email.utils import parseaddr
from typing import Any

import aiosmtplib

from deskbridge.adapters.base import ChannelAdapter, Receiver
from deskbridge.adapters.email.adapter import EmailAdapter
from deskbridge.adapters.email.receiver import EmailReceiver
from deskbridge.adapters.email.simulate import sample_mail, sample_mailgun_request
from deskbridge.adapters.spec import (
    AdapterDeps,
    ChannelSpec,
    DemoChannel,
    DemoContext,
    SimulatedRequest,
    SimulateInput,
)
from deskbridge.config import EmailConfig
from deskbridge.errors import ConfigError, DeliveryError
from deskbridge.schemas import Channel

__all__ = ["DEMO_EMAIL", "SPEC"]

DEMO_EMAIL = "support@demo.deskbridge.test"


def _adapter(account: str, config: EmailConfig, deps: AdapterDeps) -> ChannelAdapter:
    return EmailAdapter(account, config, deliver=deps.mail_outbox if config.sandbox else None)


def _receiver(account: str, config: EmailConfig, adapter: ChannelAdapter) -> Receiver:
    return EmailReceiver(account, config)


async def _by_smtp(ch: EmailConfig, text: str, sender: str, subject: str | None) -> int:
    host, _, port = ch.smtp_listen.rpartition(":")
    raw = sample_mail(
        text,
        sender=sender,
        to=ch.address,
        message_id=f"sim.{time.time_ns()}@example.com",
        subject=subject,
    )
    try:
        await aiosmtplib.send(
            raw,
            sender=parseaddr(sender)[1],
            recipients=[ch.address],
            hostname="127.0.0.1" if host in ("0.0.0.0", "") else host,  # noqa: S104
            port=int(port),
            timeout=10,
        )
    except aiosmtplib.SMTPResponseException as exc:
        return exc.code
    except aiosmtplib.SMTPRecipientsRefused as exc:
        return exc.recipients[0].code
    except (aiosmtplib.SMTPException, OSError) as exc:
        raise DeliveryError(
            f"cannot reach the SMTP listener at {ch.smtp_listen}: {type(exc).__name__}"
        ) from exc
    return 250  # aiosmtplib returns only when the end of DATA got 250


def _simulate(sim: SimulateInput[EmailConfig]) -> SimulatedRequest | Coroutine[Any, Any, int]:
    ch = sim.config
    if ch.inbound == "smtp":
        return _by_smtp(ch, sim.text, sim.sender, sim.subject)
    if ch.inbound != "mailgun" or ch.mailgun_signing_key is None:
        raise ConfigError("simulate email speaks SMTP and Mailgun's inbound format only")
    raw = sample_mail(
        sim.text,
        sender=sim.sender,
        to=ch.address,
        message_id=f"sim.{int(sim.now * 1e6)}@example.com",
        subject=sim.subject,
    )
    body = sample_mailgun_request(
        raw,
        signing_key=ch.mailgun_signing_key.get_secret_value(),
        timestamp=int(sim.now),
        recipient=ch.address,
    )
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    return SimulatedRequest(f"/webhooks/email/{sim.account}", body, form)


def _demo(ctx: DemoContext) -> dict[str, Any]:
    return {
        "type": "email",
        "sandbox": True,
        "address": DEMO_EMAIL,
        "inbound": "smtp",
        "smtp_listen": ctx.smtp_listen,
    }


def _listener(ch: EmailConfig) -> str | None:
    return f"{ch.address} by SMTP at {ch.smtp_listen}" if ch.inbound == "smtp" else None


SPEC = ChannelSpec(
    channel=Channel.EMAIL,
    config=EmailConfig,
    adapter=_adapter,
    receiver=_receiver,
    simulate=_simulate,
    default_sender="Demo Customer <customer@example.com>",
    demo=DemoChannel(entry=_demo),
    listener=_listener,
    own_subject=True,
)
