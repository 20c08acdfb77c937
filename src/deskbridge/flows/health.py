"""Per-channel health, polled by the worker: what the platforms say about our side.

Telegram's ``getWebhookInfo`` (updates it holds for us, its last delivery error), Meta's
view of our tokens (WhatsApp number, Messenger Page), LINE's push quota use. Exported as
``deskbridge_channel_health{account,channel,check}``; a refused credential shows as
``credentials_valid 0`` (and on /readyz through the usual problem report when a delivery
meets it). Sandbox-mode channels are skipped.
"""

from __future__ import annotations

import asyncio
import logging

from deskbridge.adapters.capabilities import ReportsHealth
from deskbridge.errors import DeliveryError, PermanentError
from deskbridge.flows.runtime import Runtime

__all__ = ["health_loop", "poll_channel_health"]

log = logging.getLogger(__name__)


async def poll_channel_health(rt: Runtime) -> int:
    """One round over every configured channel; returns how many were checked."""
    checked = 0
    for (account, channel), adapter in list(rt.adapters.items()):
        config = rt.accounts.accounts[account].channel(channel)
        if not isinstance(adapter, ReportsHealth) or config is None or config.sandbox:
            continue
        try:
            values = await adapter.health()
        except PermanentError as exc:
            if exc.status not in (400, 401, 403):
                # the error's text names the call and the status, never a token
                log.info("health of %s/%s: %s", account, channel.value, exc)
                continue
            values = {"credentials_valid": 0.0}
        except DeliveryError as exc:
            log.info("health of %s/%s unknown: %s", account, channel.value, exc)
            continue
        checked += 1
        for name, value in values.items():
            rt.metrics.channel_health.labels(account, channel.value, name).set(value)
    return checked


async def health_loop(rt: Runtime) -> None:
    interval = rt.settings.channel_health_interval_seconds
    if interval <= 0:
        return
    while True:
        try:
            await poll_channel_health(rt)
        except Exception:  # never let a bug end the worker's background work
            log.exception("channel health round failed")
        await asyncio.sleep(interval)
