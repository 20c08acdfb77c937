"""Messenger's entry in the channel registry."""

from __future__ import annotations

from typing import Any

from deskbridge.adapters.base import ChannelAdapter
from deskbridge.adapters.messenger.adapter import MessengerAdapter
from deskbridge.adapters.messenger.receiver import MessengerReceiver
from deskbridge.adapters.messenger.simulate import sample_message
from deskbridge.adapters.meta import sign
from deskbridge.adapters.meta.demo import DEMO_APP, demo_apps, demo_secrets
from deskbridge.adapters.spec import (
    AdapterDeps,
    AppRoute,
    ChannelSpec,
    DemoChannel,
    DemoContext,
    SimulatedRequest,
    SimulateInput,
)
from deskbridge.config import MessengerConfig
from deskbridge.schemas import Channel

__all__ = ["DEMO_PAGE_ID", "SPEC"]

DEMO_PAGE_ID = "100000000000002"


def _adapter(account: str, config: MessengerConfig, deps: AdapterDeps) -> ChannelAdapter:
    return MessengerAdapter(account, config, deps.client, deps.links, api_base=deps.api_base)


def _simulate(sim: SimulateInput[MessengerConfig]) -> SimulatedRequest:
    body = sample_message(
        sim.text,
        page_id=sim.config.page_id,
        psid=sim.sender,
        mid=f"m_SIMULATED{int(sim.now * 1_000_000)}",
        timestamp_ms=int(sim.now * 1000),
    )
    secret = sim.accounts.apps[sim.config.app].app_secret.get_secret_value()
    return SimulatedRequest(
        "/webhooks/messenger", body, {"X-Hub-Signature-256": sign(secret, body)}
    )


def _demo(ctx: DemoContext) -> dict[str, Any]:
    return {
        "type": "messenger",
        "sandbox": True,
        "app": DEMO_APP,
        "page_id": DEMO_PAGE_ID,
        "page_access_token": ctx.secrets["meta"]["page_access_token"],
    }


SPEC = ChannelSpec(
    channel=Channel.MESSENGER,
    config=MessengerConfig,
    adapter=_adapter,
    app_route=AppRoute(
        app=lambda c: c.app,
        route_id=lambda c: c.page_id,
        max_body_bytes=lambda c: c.max_body_bytes,
        build=lambda name, app, routes, limit: MessengerReceiver(
            name, app, routes, max_body_bytes=limit
        ),
    ),
    simulate=_simulate,
    default_sender="7000000000000001",
    demo=DemoChannel(entry=_demo, secrets_group="meta", secrets=demo_secrets, apps=demo_apps),
)
