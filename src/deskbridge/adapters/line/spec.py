"""LINE's entry in the channel registry."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Any

from deskbridge.adapters.base import ChannelAdapter, Receiver
from deskbridge.adapters.line.adapter import LineAdapter
from deskbridge.adapters.line.receiver import LineReceiver
from deskbridge.adapters.line.simulate import sample_message
from deskbridge.adapters.spec import (
    AdapterDeps,
    ChannelSpec,
    DemoChannel,
    DemoContext,
    SimulatedRequest,
    SimulateInput,
)
from deskbridge.config import LineConfig
from deskbridge.schemas import Channel

__all__ = ["DEMO_LINE_CHANNEL_ID", "SPEC"]

DEMO_LINE_CHANNEL_ID = "2000000001"


def _adapter(account: str, config: LineConfig, deps: AdapterDeps) -> ChannelAdapter:
    return LineAdapter(
        account,
        config,
        deps.client,
        deps.links,
        deps.tokens,
        api_base=deps.api_base,
        data_api_base=deps.api_base,
    )


def _receiver(account: str, config: LineConfig, adapter: ChannelAdapter) -> Receiver:
    assert isinstance(adapter, LineAdapter)
    # read event by event: one bad event never costs the others
    return LineReceiver(adapter)


def _simulate(sim: SimulateInput[LineConfig]) -> SimulatedRequest:
    ms = int(sim.now * 1000)
    body = sample_message(
        sim.text,
        user_id=sim.sender,
        event_id=f"01SIMULATED{ms:015d}",
        message_id=str(ms),
        timestamp_ms=ms,
        reply_token=f"simulated-{ms}",
    )
    secret = sim.config.channel_secret.get_secret_value().encode()
    digest = hmac.new(secret, body, hashlib.sha256).digest()
    headers = {"x-line-signature": base64.b64encode(digest).decode()}
    return SimulatedRequest(f"/webhooks/line/{sim.account}", body, headers)


def _demo_secrets() -> dict[str, Any]:
    return {
        "channel_secret": secrets.token_hex(16),
        "access_token": secrets.token_urlsafe(64),
    }


def _demo(ctx: DemoContext) -> dict[str, Any]:
    s = ctx.secrets["line"]
    return {
        "type": "line",
        "sandbox": True,
        "channel_id": DEMO_LINE_CHANNEL_ID,
        "channel_secret": s["channel_secret"],
        "access_token": s["access_token"],
    }


SPEC = ChannelSpec(
    channel=Channel.LINE,
    config=LineConfig,
    adapter=_adapter,
    receiver=_receiver,
    simulate=_simulate,
    default_sender="U" + "4" * 32,
    demo=DemoChannel(entry=_demo, secrets_group="line", secrets=_demo_secrets),
)
