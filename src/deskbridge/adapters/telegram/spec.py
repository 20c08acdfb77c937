"""Telegram's entry in the channel registry."""

from __future__ import annotations

import secrets
from typing import Any

from deskbridge.adapters.base import ChannelAdapter, Receiver
from deskbridge.adapters.spec import (
    AdapterDeps,
    ChannelSpec,
    DemoChannel,
    DemoContext,
    SimulatedRequest,
    SimulateInput,
)
from deskbridge.adapters.telegram.adapter import TelegramAdapter
from deskbridge.adapters.telegram.receiver import TelegramReceiver
from deskbridge.adapters.telegram.simulate import sample_update
from deskbridge.config import TelegramConfig
from deskbridge.schemas import Channel

__all__ = ["SPEC"]


def _adapter(account: str, config: TelegramConfig, deps: AdapterDeps) -> ChannelAdapter:
    return TelegramAdapter(account, config, deps.client, api_base=deps.api_base)


def _receiver(account: str, config: TelegramConfig, adapter: ChannelAdapter) -> Receiver:
    assert isinstance(adapter, TelegramAdapter)
    return TelegramReceiver(adapter)


def _simulate(sim: SimulateInput[TelegramConfig]) -> SimulatedRequest:
    uid = int(sim.sender)
    body = sample_update(
        sim.text,
        update_id=int(sim.now * 1000) % 2_000_000_000,
        chat_id=uid,
        user_id=uid,
        first_name=sim.name,
    )
    headers = {"X-Telegram-Bot-Api-Secret-Token": sim.config.secret_token.get_secret_value()}
    return SimulatedRequest(f"/webhooks/telegram/{sim.account}", body, headers)


def _demo_secrets() -> dict[str, Any]:
    return {
        "bot_token": f"{secrets.randbelow(9 * 10**9) + 10**9}:{secrets.token_urlsafe(26)}",
        "secret_token": secrets.token_urlsafe(32),
    }


def _demo(ctx: DemoContext) -> dict[str, Any]:
    s = ctx.secrets["telegram"]
    return {
        "type": "telegram",
        "sandbox": True,
        "bot_token": s["bot_token"],
        "secret_token": s["secret_token"],
    }


SPEC = ChannelSpec(
    channel=Channel.TELEGRAM,
    config=TelegramConfig,
    adapter=_adapter,
    receiver=_receiver,
    simulate=_simulate,
    default_sender="700000001",
    demo=DemoChannel(entry=_demo, secrets_group="telegram", secrets=_demo_secrets),
)
