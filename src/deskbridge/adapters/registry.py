"""Which adapter and receiver serve each configured channel: explicit branches, no discovery."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable
from email.message import EmailMessage
from typing import Any

import httpx

from deskbridge.adapters.base import (
    AccountReceiver,
    ChannelAdapter,
    Handshake,
    MediaLinks,
    Parsed,
    Receiver,
    TokenCache,
)
from deskbridge.adapters.email.adapter import EmailAdapter
from deskbridge.adapters.email.receiver import EmailReceiver
from deskbridge.adapters.line import LineAdapter
from deskbridge.adapters.line.receiver import LineReceiver
from deskbridge.adapters.messenger import MessengerAdapter, MessengerReceiver
from deskbridge.adapters.sip import SipAdapter
from deskbridge.adapters.telegram import TelegramAdapter
from deskbridge.adapters.whatsapp import WhatsAppAdapter, WhatsAppReceiver
from deskbridge.config import (
    AccountsFile,
    ChannelConfig,
    EmailConfig,
    LineConfig,
    MessengerConfig,
    SipConfig,
    TelegramConfig,
    WhatsAppConfig,
)
from deskbridge.errors import SignatureInvalid
from deskbridge.schemas import Channel, RawRequest

__all__ = ["AnyAppReceiver", "build_adapter", "build_receivers"]


def build_adapter(
    account: str,
    config: ChannelConfig,
    client: httpx.AsyncClient,
    links: MediaLinks,
    tokens: TokenCache,
    *,
    api_base: str | None = None,
    mail_outbox: Callable[[EmailMessage], Awaitable[None]] | None = None,
    outbox: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
) -> ChannelAdapter:
    """The outbound adapter of one account's channel. ``api_base`` overrides the
    configured base URLs (sandbox mode); sandboxed email and SIP keep what they would
    send in ``mail_outbox``/``outbox``."""
    match config:
        case TelegramConfig():
            return TelegramAdapter(account, config, client, api_base=api_base)
        case WhatsAppConfig():
            return WhatsAppAdapter(account, config, client, api_base=api_base)
        case MessengerConfig():
            return MessengerAdapter(account, config, client, links, api_base=api_base)
        case LineConfig():
            return LineAdapter(
                account, config, client, links, tokens, api_base=api_base, data_api_base=api_base
            )
        case EmailConfig():
            return EmailAdapter(account, config, deliver=mail_outbox if config.sandbox else None)
        case SipConfig():
            return SipAdapter(account, config, links, outbox=outbox)
    raise TypeError(f"no adapter for channel {config.type!r}")  # pragma: no cover


class AnyAppReceiver:
    """``/webhooks/{channel}`` with no account: the app whose secret signs the request
    receives it. Trying each configured app's HMAC costs microseconds."""

    def __init__(self, channel: Channel, receivers: list[Receiver]) -> None:
        self.channel = channel
        self.max_body_bytes = max(r.max_body_bytes for r in receivers)
        self.secret_headers = frozenset().union(*(r.secret_headers for r in receivers))
        self.secret_query = frozenset().union(*(r.secret_query for r in receivers))
        self._receivers = receivers

    def _signed_by(self, req: RawRequest) -> Receiver:
        for receiver in self._receivers:
            try:
                receiver.verify(req)
            except SignatureInvalid:
                continue
            return receiver
        raise SignatureInvalid("no configured app signed this request")

    def handshake(self, req: RawRequest) -> Handshake | None:
        answers = [r.handshake(req) for r in self._receivers]
        ok = [a for a in answers if a is not None and a.status == 200]
        return ok[0] if ok else next((a for a in answers if a is not None), None)

    def verify(self, req: RawRequest) -> None:
        self._signed_by(req)

    def parse(self, req: RawRequest) -> Parsed:
        return self._signed_by(req).parse(req)


def build_receivers(
    accounts: AccountsFile, adapters: dict[tuple[str, Channel], ChannelAdapter]
) -> dict[tuple[Channel, str | None], Receiver]:
    """Every webhook URL's receiver: ``(channel, account)`` for per-account URLs (for Meta
    channels, the receiver of the account's app) and ``(channel, None)`` for the shared
    URL of Meta apps."""
    out: dict[tuple[Channel, str | None], Receiver] = {}
    meta_routes: dict[tuple[Channel, str], dict[str, str]] = defaultdict(dict)
    meta_body: dict[tuple[Channel, str], int] = defaultdict(int)
    meta_accounts: dict[tuple[Channel, str], list[str]] = defaultdict(list)
    for name, acc in accounts.accounts.items():
        for ch in acc.channels:
            match ch:
                case TelegramConfig():
                    adapter = adapters[(name, Channel.TELEGRAM)]
                    assert isinstance(adapter, TelegramAdapter)
                    out[(Channel.TELEGRAM, name)] = AccountReceiver(adapter)
                case LineConfig():
                    line = adapters[(name, Channel.LINE)]
                    assert isinstance(line, LineAdapter)
                    out[(Channel.LINE, name)] = LineReceiver(line)
                case EmailConfig():
                    out[(Channel.EMAIL, name)] = AccountReceiver(EmailReceiver(name, ch))
                case WhatsAppConfig():
                    key = (Channel.WHATSAPP, ch.app)
                    meta_routes[key][ch.phone_number_id] = name
                    meta_body[key] = max(meta_body[key], ch.max_body_bytes)
                    meta_accounts[key].append(name)
                case MessengerConfig():
                    key = (Channel.MESSENGER, ch.app)
                    meta_routes[key][ch.page_id] = name
                    meta_body[key] = max(meta_body[key], ch.max_body_bytes)
                    meta_accounts[key].append(name)
    shared: dict[Channel, list[Receiver]] = defaultdict(list)
    for (channel, app_name), routes in meta_routes.items():
        app = accounts.apps[app_name]
        receiver: Receiver
        if channel is Channel.WHATSAPP:
            receiver = WhatsAppReceiver(
                app_name, app, routes, max_body_bytes=meta_body[(channel, app_name)]
            )
        else:
            receiver = MessengerReceiver(
                app_name, app, routes, max_body_bytes=meta_body[(channel, app_name)]
            )
        shared[channel].append(receiver)
        for name in meta_accounts[(channel, app_name)]:
            out[(channel, name)] = receiver
    for channel, receivers in shared.items():
        out[(channel, None)] = (
            receivers[0] if len(receivers) == 1 else AnyAppReceiver(channel, receivers)
        )
    return out
