"""Messenger's entry in the channel registry."""

from __future__ import annotations

from typing import Any

from deskbridge.adapters.messenger.adapter import MessengerAdapter
from deskbridge.adapters.messenger.receiver import MessengerReceiver
from deskbridge.adapters.messenger.simulate import sample_message
from deskbridge.adapters.meta.demo import DEMO_APP, demo_apps, demo_secrets
from deskbridge.adapters.meta.spec import adapter, app_route, signed
from deskbridge.adapters.spec import (
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


def _simulate(sim: SimulateInput[MessengerConfig]) -> SimulatedRequest:
    body = sample_message(
        sim.text,
        page_id=sim.config.page_id,
        psid=sim.sender,
        mid=f"m_SIMULATED{int(sim.now * 1_000_000)}",
        timestamp_ms=int(sim.now * 1000),
    )
    return signed(sim, Channel.MESSENGER, body)


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
    adapter=adapter(MessengerAdapter),
    app_route=app_route(MessengerConfig, MessengerReceiver, lambda c: c.page_id),
    simulate=_simulate,
    default_sender="7000000000000001",
    demo=DemoChannel(entry=_demo, secrets_group="meta", secrets=demo_secrets, apps=demo_apps),
)
