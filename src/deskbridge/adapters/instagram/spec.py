"""Instagram's entry in the channel registry."""

from __future__ import annotations

from typing import Any

from deskbridge.adapters.base import ChannelAdapter
from deskbridge.adapters.instagram.adapter import InstagramAdapter
from deskbridge.adapters.instagram.receiver import InstagramReceiver
from deskbridge.adapters.instagram.simulate import sample_message
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
from deskbridge.config import InstagramConfig
from deskbridge.schemas import Channel

__all__ = ["DEMO_IG_ID", "SPEC"]

DEMO_IG_ID = "17841400000000003"


def _adapter(account: str, config: InstagramConfig, deps: AdapterDeps) -> ChannelAdapter:
    return InstagramAdapter(account, config, deps.client, deps.links, api_base=deps.api_base)


def _simulate(sim: SimulateInput[InstagramConfig]) -> SimulatedRequest:
    body = sample_message(
        sim.text,
        ig_id=sim.config.ig_id,
        igsid=sim.sender,
        mid=f"aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQxNDAwMDAwMDAwMDAz{int(sim.now * 1e6)}",
        timestamp_ms=int(sim.now * 1000),
    )
    secret = sim.accounts.apps[sim.config.app].app_secret.get_secret_value()
    return SimulatedRequest(
        "/webhooks/instagram", body, {"X-Hub-Signature-256": sign(secret, body)}
    )


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
    adapter=_adapter,
    app_route=AppRoute(
        app=lambda c: c.app,
        route_id=lambda c: c.ig_id,
        max_body_bytes=lambda c: c.max_body_bytes,
        build=lambda name, app, routes, limit: InstagramReceiver(
            name, app, routes, max_body_bytes=limit
        ),
    ),
    simulate=_simulate,
    default_sender="1790000000000001",
    demo=DemoChannel(entry=_demo, secrets_group="meta", secrets=demo_secrets, apps=demo_apps),
)
