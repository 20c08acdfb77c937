"""The widget's entry in the channel registry."""

from __future__ import annotations

import secrets
from collections.abc import Coroutine
from typing import Any

from deskbridge.adapters.base import ChannelAdapter
from deskbridge.adapters.spec import (
    AdapterDeps,
    ChannelSpec,
    DemoChannel,
    DemoContext,
    SimulateInput,
)
from deskbridge.adapters.webchat.adapter import WebchatAdapter
from deskbridge.adapters.webchat.simulate import send_sample
from deskbridge.config import WebchatConfig
from deskbridge.schemas import Channel

__all__ = ["SPEC"]


def _adapter(account: str, config: WebchatConfig, deps: AdapterDeps) -> ChannelAdapter:
    return WebchatAdapter(account, config, deps.visitor_post, deps.visitor_file)


def _simulate(sim: SimulateInput[WebchatConfig]) -> Coroutine[Any, Any, int]:
    # the widget has no webhook: a visitor's message over its socket
    return send_sample(
        sim.base_url, sim.account, sim.config, text=sim.text, sender=sim.sender, name=sim.name
    )


def _demo_secrets() -> dict[str, Any]:
    return {"secret": secrets.token_hex(16), "identity_secret": secrets.token_hex(16)}


def _demo(ctx: DemoContext) -> dict[str, Any]:
    s = ctx.secrets["webchat"]
    return {
        "type": "webchat",
        "sandbox": True,
        "secret": s["secret"],
        "identity_secret": s["identity_secret"],
        # the demo page at /sandbox/widget, wherever this deskbridge serves it
        "allowed_origins": list(ctx.web_origins),
    }


def _listener(ch: WebchatConfig) -> str:
    return f"the widget's socket, for {', '.join(ch.allowed_origins)}"


SPEC = ChannelSpec(
    channel=Channel.WEBCHAT,
    config=WebchatConfig,
    adapter=_adapter,
    simulate=_simulate,
    default_sender="visitor@example.com",
    demo=DemoChannel(entry=_demo, secrets_group="webchat", secrets=_demo_secrets),
    listener=_listener,
)
