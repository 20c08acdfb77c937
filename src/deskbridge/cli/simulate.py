"""``deskbridge simulate``: what a channel would send, correctly signed, to a running gateway."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from deskbridge.adapters.telegram import sample_update
from deskbridge.config import Settings, TelegramConfig, load_accounts
from deskbridge.config.demo import demo_secrets
from deskbridge.errors import ConfigError, DeliveryError

__all__ = ["simulate"]


def _telegram_secret(settings: Settings, account: str, config: Path | None) -> str:
    path = config or settings.config
    if path is None:
        if account != "demo":
            raise ConfigError(f"account {account!r} needs --config (only 'demo' runs without one)")
        return str(demo_secrets(settings.data_dir, create=False)["telegram"]["secret_token"])
    accounts = load_accounts(path)
    acc = accounts.accounts.get(account)
    ch = acc.channel("telegram") if acc else None
    if not isinstance(ch, TelegramConfig):
        raise ConfigError(f"account {account!r} has no telegram channel in {path}")
    return ch.secret_token.get_secret_value()


def simulate(
    settings: Settings,
    channel: str,
    account: str,
    text: str,
    *,
    url: str | None,
    user_id: int | None,
    name: str,
    config: Path | None,
) -> int:
    """POST one signed update; returns the gateway's HTTP status."""
    base = (url or f"http://{settings.host}:{settings.port}").rstrip("/")
    secret = _telegram_secret(settings, account, config)
    uid = user_id if user_id is not None else 700_000_001
    body = sample_update(
        text,
        update_id=int(time.time() * 1000) % 2_000_000_000,
        chat_id=uid,
        user_id=uid,
        first_name=name,
    )
    try:
        resp = httpx.post(
            f"{base}/webhooks/{channel}/{account}",
            content=body,
            headers={"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": secret},
            timeout=10,
        )
    except httpx.HTTPError as exc:
        raise DeliveryError(f"cannot reach the gateway at {base}: {type(exc).__name__}") from exc
    return resp.status_code
