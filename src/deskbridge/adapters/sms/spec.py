"""SMS's entry in the channel registry: one channel, a provider per account (Twilio or
Vonage, the config's ``provider``)."""

from __future__ import annotations

import secrets
import uuid
from typing import Any
from urllib.parse import parse_qsl

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from deskbridge.adapters.base import ChannelAdapter, Receiver
from deskbridge.adapters.sms import vonage
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
from deskbridge.config import SmsBaseConfig, SmsConfig, VonageSmsConfig
from deskbridge.schemas import Channel

__all__ = ["DEMO_NUMBER", "SPEC"]

DEMO_NUMBER = "+15005550006"  # Twilio's documented magic test "From" number


def _adapter(account: str, config: SmsBaseConfig, deps: AdapterDeps) -> ChannelAdapter:
    if isinstance(config, VonageSmsConfig):
        return vonage.VonageSmsAdapter(
            account, config, deps.client, deps.links, api_base=deps.api_base
        )
    assert isinstance(config, SmsConfig)
    return SmsAdapter(account, config, deps.client, deps.links, api_base=deps.api_base)


def _receiver(account: str, config: SmsBaseConfig, adapter: ChannelAdapter) -> Receiver:
    if isinstance(config, VonageSmsConfig):
        return vonage.VonageSmsReceiver(account, config)
    assert isinstance(config, SmsConfig)
    return SmsReceiver(account, config)


def _simulate(sim: SimulateInput[SmsBaseConfig]) -> SimulatedRequest:
    path = f"/webhooks/sms/{sim.account}"
    seed = f"{sim.sender}:{sim.now}"
    config = sim.config
    if isinstance(config, VonageSmsConfig):
        body = vonage.sample_inbound(
            sim.text, sender=sim.sender, to=config.default_sender, seed=seed, now=sim.now
        )
        authorization = vonage.sign(
            config.signature_secret.get_secret_value(),
            body,
            api_key=config.api_key,
            application_id=config.application_id,
            issued_at=sim.now,
        )
        headers = {"Content-Type": "application/json", "Authorization": authorization}
        return SimulatedRequest(path, body, headers)
    assert isinstance(config, SmsConfig)
    body = sample_message(
        sim.text,
        account_sid=config.account_sid,
        sender=sim.sender,
        to=config.default_sender,
        seed=seed,
    )
    # what Twilio signs is the URL it posts to: the configured one, else the gateway's
    url = config.webhook_url or sim.base_url.rstrip("/") + path
    token = config.auth_token.get_secret_value()
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


def _demo_vonage_secrets() -> dict[str, Any]:
    # the sandbox's stand-in checks the application's JWTs with this key's public half
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return {
        "api_key": secrets.token_hex(4),
        "api_secret": secrets.token_hex(16),
        "signature_secret": secrets.token_hex(16),
        "application_id": str(uuid.uuid4()),
        "private_key": pem.decode(),
    }


def _demo(ctx: DemoContext) -> dict[str, Any]:
    if ctx.providers.get(Channel.SMS.value) == "vonage":
        return {
            "type": "sms",
            "provider": "vonage",
            "sandbox": True,
            **ctx.secrets["sms-vonage"],
            "default_sender": DEMO_NUMBER,
        }
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
    config=SmsBaseConfig,
    adapter=_adapter,
    receiver=_receiver,
    simulate=_simulate,
    default_sender="+14155550142",
    demo=DemoChannel(
        entry=_demo,
        secrets_group="sms",
        secrets=_demo_secrets,
        more_secrets={"sms-vonage": _demo_vonage_secrets},
    ),
)
