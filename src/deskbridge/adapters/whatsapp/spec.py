"""WhatsApp's entry in the channel registry."""

from __future__ import annotations

from typing import Any

from deskbridge.adapters.base import ChannelAdapter
from deskbridge.adapters.meta.demo import DEMO_APP, demo_apps, demo_secrets
from deskbridge.adapters.meta.spec import app_route, signed
from deskbridge.adapters.spec import (
    AdapterDeps,
    ChannelSpec,
    DemoChannel,
    DemoContext,
    SimulatedRequest,
    SimulateInput,
)
from deskbridge.adapters.whatsapp.adapter import WhatsAppAdapter
from deskbridge.adapters.whatsapp.receiver import WhatsAppReceiver
from deskbridge.adapters.whatsapp.simulate import sample_message
from deskbridge.config import WhatsAppConfig
from deskbridge.schemas import Channel

__all__ = ["DEMO_PHONE_NUMBER_ID", "DEMO_WABA_ID", "SPEC"]

DEMO_PHONE_NUMBER_ID = "100000000000001"
DEMO_WABA_ID = "100000000000005"


def _adapter(account: str, config: WhatsAppConfig, deps: AdapterDeps) -> ChannelAdapter:
    return WhatsAppAdapter(account, config, deps.client, api_base=deps.api_base)


def _simulate(sim: SimulateInput[WhatsAppConfig]) -> SimulatedRequest:
    body = sample_message(
        sim.text,
        phone_number_id=sim.config.phone_number_id,
        wa_id=sim.sender.lstrip("+"),
        name=sim.name,
        message_id=f"wamid.SIMULATED{int(sim.now * 1_000_000)}",
        timestamp=int(sim.now),
    )
    return signed(sim, Channel.WHATSAPP, body)


def _demo(ctx: DemoContext) -> dict[str, Any]:
    return {
        "type": "whatsapp",
        "sandbox": True,
        "app": DEMO_APP,
        "phone_number_id": DEMO_PHONE_NUMBER_ID,
        "waba_id": DEMO_WABA_ID,
        "access_token": ctx.secrets["meta"]["whatsapp_access_token"],
        # every WhatsApp Business Account starts with this approved template
        "template": {"name": "hello_world", "language": "en_US"},
    }


SPEC = ChannelSpec(
    channel=Channel.WHATSAPP,
    config=WhatsAppConfig,
    adapter=_adapter,
    app_route=app_route(WhatsAppConfig, WhatsAppReceiver, lambda c: c.phone_number_id),
    simulate=_simulate,
    default_sender="12025550143",
    demo=DemoChannel(entry=_demo, secrets_group="meta", secrets=demo_secrets, apps=demo_apps),
)
