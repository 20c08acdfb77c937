"""Instagram's entry in the channel registry."""

from __future__ import annotations

from typing import Any

from deskbridge.adapters.instagram.adapter import InstagramAdapter
from deskbridge.adapters.instagram.receiver import InstagramReceiver
from deskbridge.adapters.instagram.simulate import sample_message
from deskbridge.adapters.meta.demo import DEMO_APP, demo_apps, demo_secrets
from deskbridge.adapters.meta.spec import adapter, app_route, signed
from deskbridge.adapters.spec import (
    ChannelSpec,
    DemoChannel,
    DemoContext,
    SimulatedRequest,
    SimulateInput,
)
from deskbridge.config import InstagramConfig
from deskbridge.schemas import Channel

__all__ = ["DEMO_IG_ID", "SPEC"]

DEMO_IG_ID = "17841400000000003"


def _simulate(sim: SimulateInput[InstagramConfig]) -> SimulatedRequest:
    body = sample_message(
        sim.text,
        ig_id=sim.config.ig_id,
        igsid=sim.sender,
        mid=f"aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQxNDAwMDAwMDAwMDAz{int(sim.now * 1e6)}",
        timestamp_ms=int(sim.now * 1000),
    )
    return signed(sim, Channel.INSTAGRAM, body)


def _demo(ctx: DemoContext) -> dict[str, Any]:
    return {
        "type": "instagram",
        "sandbox": True,
        "app": DEMO_APP,
        "ig_id": DEMO_IG_ID,
        # the demo's Meta group predates Instagram: older secrets files reuse the Page's
        "access_token": ctx.secrets["meta"].get(
            "instagram_access_token", ctx.secrets["meta"]["page_access_token"]
        ),
    }


SPEC = ChannelSpec(
    channel=Channel.INSTAGRAM,
    config=InstagramConfig,
    adapter=adapter(InstagramAdapter),
    app_route=app_route(InstagramConfig, InstagramReceiver, lambda c: c.ig_id),
    simulate=_simulate,
    default_sender="1790000000000001",
    demo=DemoChannel(entry=_demo, secrets_group="meta", secrets=demo_secrets, apps=demo_apps),
)
