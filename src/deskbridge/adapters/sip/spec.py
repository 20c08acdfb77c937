"""SIP's entry in the channel registry."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

from deskbridge.adapters.base import ChannelAdapter
from deskbridge.adapters.sip.adapter import SipAdapter
from deskbridge.adapters.sip.simulate import send_sample
from deskbridge.adapters.sip.uri import SipSyntaxError, parse_uri
from deskbridge.adapters.spec import (
    AdapterDeps,
    ChannelSpec,
    DemoChannel,
    DemoContext,
    SimulateInput,
)
from deskbridge.config import SipConfig
from deskbridge.errors import ConfigError, DeliveryError
from deskbridge.schemas import Channel

__all__ = ["DEMO_SIP_DOMAIN", "DEMO_SIP_NUMBER", "SPEC"]

DEMO_SIP_NUMBER = "+14155550100"
"""The demo trunk's served number (a fictional 555-01xx number)."""
DEMO_SIP_DOMAIN = "demo.deskbridge.test"


def _adapter(account: str, config: SipConfig, deps: AdapterDeps) -> ChannelAdapter:
    return SipAdapter(account, config, deps.links, outbox=deps.outbox)


async def _by_sip(ch: SipConfig, text: str, sender: str, name: str, call: bool) -> int:
    host, _, port = ch.listen.rpartition(":")
    host = host.strip("[]")
    if host in ("0.0.0.0", "::", ""):  # noqa: S104
        host = "127.0.0.1"
    number = ch.numbers[0] if ch.numbers else "support"
    target = f"sip:{number}@{ch.domains[0]}"
    try:
        parse_uri(sender)
    except SipSyntaxError:
        raise ConfigError(f"--from {sender!r} is not a sip: or tel: URI") from None
    try:
        return await send_sample(
            (host, int(port)), text=text, sender=sender, target=target, name=name, call=call
        )
    except (OSError, TimeoutError) as exc:
        raise DeliveryError(
            f"no answer from the SIP listener at {ch.listen}: {type(exc).__name__}"
        ) from exc


def _simulate(sim: SimulateInput[SipConfig]) -> Coroutine[Any, Any, int]:
    # a real SIP MESSAGE (or INVITE) to the account's listener: SIP has no webhook
    return _by_sip(sim.config, sim.text, sim.sender, sim.name, sim.call)


def _demo(ctx: DemoContext) -> dict[str, Any]:
    return {
        "type": "sip",
        "sandbox": True,
        "listen": ctx.sip_listen,
        "domains": ["127.0.0.1", "localhost", DEMO_SIP_DOMAIN],
        "numbers": [DEMO_SIP_NUMBER],
        # only this machine may send; P-Asserted-Identity is believed
        "trusted_peers": ["127.0.0.0/8", "::1"],
        "calls": {"action": "reject", "reject_status": 480},
    }


def _listener(ch: SipConfig) -> str:
    over = "/".join(t.upper() for t in ch.transports)
    tls = f", TLS at {ch.tls_listen}" if ch.tls_listen else ""
    return f"{over} at {ch.listen}{tls}"


SPEC = ChannelSpec(
    channel=Channel.SIP,
    config=SipConfig,
    adapter=_adapter,
    simulate=_simulate,
    default_sender="tel:+16505551234",
    demo=DemoChannel(entry=_demo),
    listener=_listener,
    own_subject=True,
)
