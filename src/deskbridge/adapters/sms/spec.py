"""SMS's entry in the channel registry."""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import parse_qsl

from deskbridge.adapters.base import ChannelAdapter, Receiver
from deskbridge.adapters.sms.adapter import SmsAdapter
from deskbridge.adapters.sms.receiver import SmsReceiver
from deskbridge.adapters.sms.signature import sign
from deskbridge.adapters.sms.simulate import sample_message
from deskbridge.adapters.spec import (
    AdapterDeps,
    ChannelSpec,
    DemoChannel,
    DemoContext,
    SimulatedRequest,
    SimulateInput,
)
from deskbridge.config import SmsConfig
from deskbridge.schemas import Channel

__all__ = ["DEMO_NUMBER", "SPEC"]

DEMO_NUMBER = "+15005550006"  # Twilio's documented magic test "From" number


def _adapter(account: str, config: SmsConfig, deps: AdapterDeps) -> ChannelAdapter:
    return SmsAdapter(account, config, deps.client, deps.links, api_base=deps.api_base)


def _receiver(account: str, config: SmsConfig, adapter: ChannelAdapter) -> Receiver:
    return SmsReceiver(account, config)


def _simulate(sim: SimulateInput[SmsConfig]) -> SimulatedRequest:
    path = f"/webhooks/sms/{sim.account}"
    body = sample_message(
        sim.text,
        account_sid=sim.config.account_sid,
        sender=sim.sender,
        to=sim.config.default_sender,
        seed=f"{sim.sender}:{sim.now}",
    )
    # what Twilio signs is the URL it posts to: the configured one, else the gateway's
    url = sim.config.webhook_url or sim.base_url.rstrip("/") + path
    token = sim.config.auth_token.get_secret_value()
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": sign(token, url, parse_qsl(body.decode())),
    }
    return SimulatedRequest(path, body, headers)


def _demo_secrets() -> dict[str, Any]:
    return {
        "account_sid": "AC" + secrets.token_hex(16),
        "auth_token": secrets.token_hex(16),
    }


def _demo(ctx: DemoContext) -> dict[str, Any]:
    s = ctx.secrets["sms"]
    return {
        "type": "sms",
        "sandbox": True,
        "account_sid": s["account_sid"],
        "auth_token": s["auth_token"],
        "default_sender": DEMO_NUMBER,
    }


SPEC = ChannelSpec(
    channel=Channel.SMS,
    config=SmsConfig,
    adapter=_adapter,
    receiver=_receiver,
    simulate=_simulate,
    default_sender="+14155550142",
    demo=DemoChannel(entry=_demo, secrets_group="sms", secrets=_demo_secrets),
)
