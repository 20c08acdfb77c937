"""The channel registry: every channel's spec, one explicit dict, no discovery.

Every list of channels in deskbridge (CLI choices, OpenAPI enums, the banner, the demo
account, ``simulate``) derives from ``CHANNELS``; ``docs/extending.md`` lists what else a
new channel edits.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable
from email.message import EmailMessage
from typing import Any, cast

import httpx

from deskbridge.adapters import (
    email,
    instagram,
    line,
    messenger,
    sip,
    sms,
    telegram,
    webchat,
    whatsapp,
)
from deskbridge.adapters.base import (
    ChannelAdapter,
    Handshake,
    MediaLinks,
    Parsed,
    Peeked,
    Peeks,
    Receiver,
    TokenCache,
)
from deskbridge.adapters.payload import load_object
from deskbridge.adapters.spec import AdapterDeps, ChannelSpec, VisitorFile, VisitorPost
from deskbridge.config import AccountsFile, ChannelConfig
from deskbridge.errors import SignatureInvalid
from deskbridge.schemas import Channel, RawRequest

__all__ = [
    "CHANNELS",
    "AnyAppPeeker",
    "AnyAppReceiver",
    "PageAndInstagram",
    "build_adapter",
    "build_receivers",
    "spec_of",
]

CHANNELS: dict[Channel, ChannelSpec[Any]] = {
    Channel.TELEGRAM: telegram.SPEC,
    Channel.WHATSAPP: whatsapp.SPEC,
    Channel.MESSENGER: messenger.SPEC,
    Channel.INSTAGRAM: instagram.SPEC,
    Channel.LINE: line.SPEC,
    Channel.EMAIL: email.SPEC,
    Channel.SIP: sip.SPEC,
    Channel.SMS: sms.SPEC,
    Channel.WEBCHAT: webchat.SPEC,
}
"""Every channel's spec, in the order channels are listed to people."""


def spec_of(config: ChannelConfig) -> ChannelSpec[Any]:
    """The spec of the channel ``config`` configures."""
    return CHANNELS[Channel(config.type)]


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
    visitor_post: VisitorPost | None = None,
    visitor_file: VisitorFile | None = None,
) -> ChannelAdapter:
    """The outbound adapter of one account's channel. ``api_base`` overrides the
    configured base URLs (sandbox mode); sandboxed email and SIP keep what they would
    send in ``mail_outbox``/``outbox``; ``visitor_post`` keeps a widget visitor's reply,
    ``visitor_file`` reads a widget visitor's upload."""
    deps = AdapterDeps(
        client, links, tokens, api_base, mail_outbox, outbox, visitor_post, visitor_file
    )
    return spec_of(config).adapter(account, config, deps)


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


class AnyAppPeeker(AnyAppReceiver, Peeks):
    """:class:`AnyAppReceiver` of apps whose receivers all peek (WhatsApp's): the signing
    app's receiver reads the common shape (the deferred parse, ``Peeks``)."""

    def peek(self, req: RawRequest) -> Peeked | None:
        return cast(Peeks, self._signed_by(req)).peek(req)


class PageAndInstagram:
    """The Messenger URL of an app that also serves Instagram accounts: Meta may post the
    app's ``object: instagram`` webhooks to the same callback URL as its Page ones, so
    those go to the app's Instagram receiver (same app secret), the rest to Messenger's."""

    def __init__(self, page: Receiver, instagram: Receiver) -> None:
        self.channel = page.channel
        self.max_body_bytes = max(page.max_body_bytes, instagram.max_body_bytes)
        self.secret_headers = page.secret_headers | instagram.secret_headers
        self.secret_query = page.secret_query | instagram.secret_query
        self._page = page
        self._instagram = instagram

    def handshake(self, req: RawRequest) -> Handshake | None:
        return self._page.handshake(req)

    def verify(self, req: RawRequest) -> None:
        self._page.verify(req)

    def parse(self, req: RawRequest) -> Parsed:
        """Instagram's receiver for an ``instagram`` body, else Messenger's; errors as
        theirs (``PayloadInvalid`` for a body that is not a JSON object)."""
        doc = load_object(req.body, what="messenger")
        target = self._instagram if doc.get("object") == "instagram" else self._page
        return target.parse(req)


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
            spec = spec_of(ch)
            if spec.receiver is not None:
                adapter = adapters[(name, spec.channel)]
                out[(spec.channel, name)] = spec.receiver(name, ch, adapter)
            elif spec.app_route is not None:
                key = (spec.channel, spec.app_route.app(ch))
                meta_routes[key][spec.app_route.route_id(ch)] = name
                meta_body[key] = max(meta_body[key], spec.app_route.max_body_bytes(ch))
                meta_accounts[key].append(name)
    built: dict[tuple[Channel, str], Receiver] = {}
    for (channel, app_name), routes in meta_routes.items():
        route = CHANNELS[channel].app_route
        assert route is not None
        app = accounts.apps[app_name]
        built[(channel, app_name)] = route.build(
            app_name, app, routes, meta_body[(channel, app_name)]
        )
    for (channel, app_name), receiver in list(built.items()):
        instagram = built.get((Channel.INSTAGRAM, app_name))
        if channel is Channel.MESSENGER and instagram is not None:
            built[(channel, app_name)] = PageAndInstagram(receiver, instagram)
    shared: dict[Channel, list[Receiver]] = defaultdict(list)
    for (channel, app_name), receiver in built.items():
        shared[channel].append(receiver)
        for name in meta_accounts[(channel, app_name)]:
            out[(channel, name)] = receiver
    for channel, receivers in shared.items():
        if len(receivers) == 1:
            out[(channel, None)] = receivers[0]
        elif all(isinstance(r, Peeks) for r in receivers):
            out[(channel, None)] = AnyAppPeeker(channel, receivers)
        else:
            out[(channel, None)] = AnyAppReceiver(channel, receivers)
    return out
