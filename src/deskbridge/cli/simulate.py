"""``deskbridge simulate``: what a channel would send, correctly signed, to a running gateway."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from deskbridge.adapters.demo import demo_accounts
from deskbridge.adapters.registry import CHANNELS
from deskbridge.adapters.spec import SimulatedRequest, SimulateInput
from deskbridge.cli.demo import demo_info
from deskbridge.config import AccountsFile, Settings, load_accounts
from deskbridge.config.demo import DEMO_ACCOUNT, secrets_path, served_origins
from deskbridge.errors import ConfigError, DeliveryError
from deskbridge.schemas import Channel

__all__ = ["Answer", "simulate"]


@dataclass(frozen=True, slots=True)
class Answer:
    """Who took the sample and what it said: the gateway's HTTP status, or a listener's
    SMTP or SIP reply code."""

    status: int
    by: str
    """``the gateway at http://…`` or ``the email listener (… by SMTP at host:port)``."""
    http: bool


def accounts_for(settings: Settings, account: str, config: Path | None, base: str) -> AccountsFile:
    """The accounts file at ``config`` (or ``DESKBRIDGE_CONFIG``), else the demo's as the
    demo instance at ``base`` has it (``account`` must then be the demo's)."""
    path = config or settings.config
    if path is not None:
        return load_accounts(path)
    if account != DEMO_ACCOUNT:
        raise ConfigError(f"account {account!r} needs --config (only 'demo' runs without one)")
    # the instance at --url names its own data directory and listeners: the caller's
    # folder and DESKBRIDGE_DEMO_*_PORT may belong to another instance
    info = demo_info(base) or {}
    data_dir = Path(info["data_dir"]) if "data_dir" in info else settings.data_dir
    secrets = secrets_path(data_dir)
    if not secrets.exists():
        raise ConfigError(f"no demo secrets at {secrets}: start `deskbridge run` without a config")
    return demo_accounts(
        data_dir,
        smtp_listen=info.get("smtp_listen", f"127.0.0.1:{settings.demo_smtp_port}"),
        sip_listen=info.get("sip_listen", f"127.0.0.1:{settings.demo_sip_port}"),
        web_origins=tuple(info["webchat_origins"].split())
        if "webchat_origins" in info
        else _origins_of(base),
        sms_provider=info.get("sms_provider", settings.demo_sms_provider),
    )


def _origins_of(base: str) -> tuple[str, ...]:
    """The origins of the gateway at ``base``, as its own pages have them."""
    url = httpx.URL(base)
    if url.scheme != "http":
        return (f"{url.scheme}://{url.netloc.decode()}",)
    return served_origins(url.host, url.port or 80)


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
    subject: str | None = None,
) -> Answer:
    """POST one signed webhook to the gateway at ``url`` (or, for an email address taking
    mail by SMTP or a SIP channel, send it to that instance's listener)."""
    base = (url or f"http://{settings.host}:{settings.port}").rstrip("/")
    accounts = accounts_for(settings, account, config, base)
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
        subject,
        base_url=base,
    )
    out = spec.simulate(sim)
    if not isinstance(out, SimulatedRequest):
        # the channel's own transport (an SMTP or SIP listener), not a webhook
        listener = spec.listener(ch) if spec.listener is not None else None
        return Answer(asyncio.run(out), f"the {channel} listener ({listener})", http=False)
    try:
        resp = httpx.post(
            base + out.path,
            content=out.body,
            headers={"Content-Type": "application/json", **out.headers},
            timeout=10,
        )
    except httpx.HTTPError as exc:
        raise DeliveryError(f"cannot reach the gateway at {base}: {type(exc).__name__}") from exc
    return Answer(resp.status_code, f"the gateway at {base}", http=True)
