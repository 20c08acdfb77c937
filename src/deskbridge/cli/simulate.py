"""``deskbridge simulate``: what a channel would send, correctly signed, to a running gateway."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx

from deskbridge.adapters.demo import demo_accounts
from deskbridge.adapters.registry import CHANNELS
from deskbridge.adapters.spec import SimulatedRequest, SimulateInput
from deskbridge.config import AccountsFile, Settings, load_accounts
from deskbridge.config.demo import DEMO_ACCOUNT
from deskbridge.errors import ConfigError, DeliveryError
from deskbridge.schemas import Channel

__all__ = ["simulate"]


def _accounts(settings: Settings, account: str, config: Path | None) -> AccountsFile:
    path = config or settings.config
    if path is None:
        if account != DEMO_ACCOUNT:
            raise ConfigError(f"account {account!r} needs --config (only 'demo' runs without one)")
        if not (settings.data_dir / "demo-secrets.json").exists():
            raise ConfigError("no demo secrets yet: start `deskbridge run` without a config first")
        return demo_accounts(
            settings.data_dir,
            smtp_listen=f"127.0.0.1:{settings.demo_smtp_port}",
            sip_listen=f"127.0.0.1:{settings.demo_sip_port}",
        )
    return load_accounts(path)


def simulate(
    settings: Settings,
    channel: str,
    account: str,
    text: str,
    *,
    url: str | None,
    sender: str | None,
    name: str,
    config: Path | None,
    call: bool = False,
) -> int:
    """POST one signed webhook (or, for an email address taking mail by SMTP, send one
    mail to the listener); returns the gateway's HTTP status (or the SMTP reply code)."""
    base = (url or f"http://{settings.host}:{settings.port}").rstrip("/")
    accounts = _accounts(settings, account, config)
    acc = accounts.accounts.get(account)
    ch = acc.channel(channel) if acc else None
    if ch is None:
        raise ConfigError(f"account {account!r} has no {channel} channel")
    spec = CHANNELS[Channel(channel)]
    sim = SimulateInput(
        accounts,
        account,
        ch,
        text,
        sender or spec.default_sender,
        name,
        call,
        time.time(),
        base_url=base,
    )
    out = spec.simulate(sim)
    if not isinstance(out, SimulatedRequest):
        # the channel's own transport (an SMTP or SIP listener), not a webhook
        return asyncio.run(out)
    try:
        resp = httpx.post(
            base + out.path,
            content=out.body,
            headers={"Content-Type": "application/json", **out.headers},
            timeout=10,
        )
    except httpx.HTTPError as exc:
        raise DeliveryError(f"cannot reach the gateway at {base}: {type(exc).__name__}") from exc
    return resp.status_code
