"""What the registry entries of the Meta channels share: one app's receiver takes every
account of the channel on one URL, routed by an id of the account's config, and
``simulate`` signs its body with the app's secret, as Meta does."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from deskbridge.adapters.base import ChannelAdapter
from deskbridge.adapters.meta.outbound import MessagingAdapter
from deskbridge.adapters.meta.receiver import MetaReceiver
from deskbridge.adapters.meta.webhook import sign
from deskbridge.adapters.spec import AdapterDeps, AppRoute, SimulatedRequest, SimulateInput
from deskbridge.config import InstagramConfig, MessengerConfig, MetaAppConfig, WhatsAppConfig
from deskbridge.schemas import Channel

__all__ = ["adapter", "app_route", "signed"]


# the configs of the channels a Meta app serves, and of those on the Messenger Platform
A = TypeVar("A", WhatsAppConfig, MessengerConfig, InstagramConfig)
M = TypeVar("M", MessengerConfig, InstagramConfig)


def adapter(cls: type[MessagingAdapter[M]]) -> Callable[[str, M, AdapterDeps], ChannelAdapter]:
    """The registry's builder of a Messenger Platform adapter: on the process's client and
    media links, at the sandbox's API base when there is one."""

    def build(account: str, config: M, deps: AdapterDeps) -> ChannelAdapter:
        return cls(account, config, deps.client, deps.links, api_base=deps.api_base)

    return build


def app_route(
    config: type[A], receiver: type[MetaReceiver], route_id: Callable[[A], str]
) -> AppRoute[A]:
    """Accounts of one Meta app share one ``receiver``, which routes each entry to the
    account whose config's ``route_id`` it names (``config``, the config class, only
    tells the type checker what ``route_id`` reads)."""

    def build(name: str, app: MetaAppConfig, routes: dict[str, str], limit: int) -> MetaReceiver:
        return receiver(name, app, routes, max_body_bytes=limit)

    return AppRoute(
        app=lambda c: c.app,
        route_id=route_id,
        max_body_bytes=lambda c: c.max_body_bytes,
        build=build,
    )


def signed(sim: SimulateInput[A], channel: Channel, body: bytes) -> SimulatedRequest:
    """``body`` as the account's Meta app would POST it: to the channel's one URL (the
    account comes from the payload), signed with the app's secret."""
    secret = sim.accounts.apps[sim.config.app].app_secret.get_secret_value()
    return SimulatedRequest(
        f"/webhooks/{channel.value}", body, {"X-Hub-Signature-256": sign(secret, body)}
    )
