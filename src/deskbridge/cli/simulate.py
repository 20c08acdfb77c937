"""``deskbridge simulate``: what a channel would send, correctly signed, to a running gateway."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
from email.utils import parseaddr
from pathlib import Path

import aiosmtplib
import httpx

from deskbridge.adapters.email.simulate import sample_mail, sample_mailgun_request
from deskbridge.adapters.line import sample_message as line_sample
from deskbridge.adapters.messenger import sample_message as messenger_sample
from deskbridge.adapters.meta import sign as meta_sign
from deskbridge.adapters.sip.simulate import send_sample
from deskbridge.adapters.sip.uri import SipSyntaxError, parse_uri
from deskbridge.adapters.telegram import sample_update
from deskbridge.adapters.whatsapp import sample_message as whatsapp_sample
from deskbridge.config import (
    AccountsFile,
    EmailConfig,
    LineConfig,
    MessengerConfig,
    Settings,
    SipConfig,
    TelegramConfig,
    WhatsAppConfig,
    load_accounts,
)
from deskbridge.config.demo import DEMO_ACCOUNT, demo_accounts
from deskbridge.errors import ConfigError, DeliveryError

__all__ = ["CHANNELS", "simulate"]

CHANNELS = ("telegram", "whatsapp", "messenger", "line", "email", "sip")
DEFAULT_FROM = {
    "telegram": "700000001",
    "whatsapp": "12025550143",
    "messenger": "7000000000000001",
    "line": "U" + "4" * 32,
    "email": "Demo Customer <customer@example.com>",
    "sip": "tel:+16505551234",
}


def _accounts(settings: Settings, account: str, config: Path | None) -> AccountsFile:
    path = config or settings.config
    if path is None:
        if account != DEMO_ACCOUNT:
            raise ConfigError(f"account {account!r} needs --config (only 'demo' runs without one)")
        if not (settings.data_dir / "demo-secrets.json").exists():
            raise ConfigError("no demo secrets yet: start `deskbridge run` without a config first")
        return demo_accounts(
            settings.data_dir,
            smtp_listen=f"127.0.0.1:{settings.demo_smtp_port}",
            sip_listen=f"127.0.0.1:{settings.demo_sip_port}",
        )
    return load_accounts(path)


def _request(
    accounts: AccountsFile, channel: str, account: str, text: str, sender: str, name: str
) -> tuple[str, bytes, dict[str, str]]:
    """The path, body and headers the channel would send."""
    acc = accounts.accounts.get(account)
    ch = acc.channel(channel) if acc else None
    now = time.time()
    match ch:
        case TelegramConfig():
            uid = int(sender)
            body = sample_update(
                text,
                update_id=int(now * 1000) % 2_000_000_000,
                chat_id=uid,
                user_id=uid,
                first_name=name,
            )
            headers = {"X-Telegram-Bot-Api-Secret-Token": ch.secret_token.get_secret_value()}
            return f"/webhooks/telegram/{account}", body, headers
        case WhatsAppConfig():
            body = whatsapp_sample(
                text,
                phone_number_id=ch.phone_number_id,
                wa_id=sender.lstrip("+"),
                name=name,
                message_id=f"wamid.SIMULATED{int(now * 1_000_000)}",
                timestamp=int(now),
            )
            secret = accounts.apps[ch.app].app_secret.get_secret_value()
            # a Meta app posts every number to one URL: the account comes from the payload
            return "/webhooks/whatsapp", body, {"X-Hub-Signature-256": meta_sign(secret, body)}
        case MessengerConfig():
            body = messenger_sample(
                text,
                page_id=ch.page_id,
                psid=sender,
                mid=f"m_SIMULATED{int(now * 1_000_000)}",
                timestamp_ms=int(now * 1000),
            )
            secret = accounts.apps[ch.app].app_secret.get_secret_value()
            return "/webhooks/messenger", body, {"X-Hub-Signature-256": meta_sign(secret, body)}
        case LineConfig():
            ms = int(now * 1000)
            body = line_sample(
                text,
                user_id=sender,
                event_id=f"01SIMULATED{ms:015d}",
                message_id=str(ms),
                timestamp_ms=ms,
                reply_token=f"simulated-{ms}",
            )
            digest = hmac.new(
                ch.channel_secret.get_secret_value().encode(), body, hashlib.sha256
            ).digest()
            return (
                f"/webhooks/line/{account}",
                body,
                {"x-line-signature": base64.b64encode(digest).decode()},
            )
        case EmailConfig():
            if ch.inbound != "mailgun" or ch.mailgun_signing_key is None:
                raise ConfigError("simulate email speaks SMTP and Mailgun's inbound format only")
            raw = sample_mail(
                text, sender=sender, to=ch.address, message_id=f"sim.{int(now * 1e6)}@example.com"
            )
            body = sample_mailgun_request(
                raw,
                signing_key=ch.mailgun_signing_key.get_secret_value(),
                timestamp=int(now),
                recipient=ch.address,
            )
            form = {"Content-Type": "application/x-www-form-urlencoded"}
            return f"/webhooks/email/{account}", body, form
    raise ConfigError(f"account {account!r} has no {channel} channel")


async def _by_smtp(ch: EmailConfig, text: str, sender: str) -> int:
    host, _, port = ch.smtp_listen.rpartition(":")
    raw = sample_mail(
        text, sender=sender, to=ch.address, message_id=f"sim.{time.time_ns()}@example.com"
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
    return 200


async def _by_sip(ch: SipConfig, text: str, sender: str, name: str, call: bool) -> int:
    host, _, port = ch.listen.rpartition(":")
    host = host.strip("[]")
    if host in ("0.0.0.0", "::", ""):  # noqa: S104
        host = "127.0.0.1"
    number = ch.numbers[0] if ch.numbers else "support"
    target = f"sip:{number}@{ch.domains[0]}"
    try:
        parse_uri(sender)
    except SipSyntaxError:
        raise ConfigError(f"--from {sender!r} is not a sip: or tel: URI") from None
    try:
        return await send_sample(
            (host, int(port)), text=text, sender=sender, target=target, name=name, call=call
        )
    except (OSError, TimeoutError) as exc:
        raise DeliveryError(
            f"no answer from the SIP listener at {ch.listen}: {type(exc).__name__}"
        ) from exc


def simulate(
    settings: Settings,
    channel: str,
    account: str,
    text: str,
    *,
    url: str | None,
    sender: str | None,
    name: str,
    config: Path | None,
    call: bool = False,
) -> int:
    """POST one signed webhook (or, for an email address taking mail by SMTP, send one
    mail to the listener); returns the gateway's HTTP status (or the SMTP reply code)."""
    base = (url or f"http://{settings.host}:{settings.port}").rstrip("/")
    accounts = _accounts(settings, account, config)
    acc = accounts.accounts.get(account)
    email = acc.channel("email") if acc else None
    sip = acc.channel("sip") if acc else None
    if channel == "sip":
        if not isinstance(sip, SipConfig):
            raise ConfigError(f"account {account!r} has no sip channel")
        return asyncio.run(_by_sip(sip, text, sender or DEFAULT_FROM["sip"], name, call))
    if channel == "email" and isinstance(email, EmailConfig) and email.inbound == "smtp":
        return asyncio.run(_by_smtp(email, text, sender or DEFAULT_FROM["email"]))
    path, body, headers = _request(
        accounts, channel, account, text, sender or DEFAULT_FROM[channel], name
    )
    try:
        resp = httpx.post(
            base + path,
            content=body,
            headers={"Content-Type": "application/json", **headers},
            timeout=10,
        )
    except httpx.HTTPError as exc:
        raise DeliveryError(f"cannot reach the gateway at {base}: {type(exc).__name__}") from exc
    return resp.status_code
