"""Backpressure from Intercom's rate-limit headers, per workspace and per process.

Intercom answers every call with ``X-RateLimit-Limit``, ``X-RateLimit-Remaining`` and
``X-RateLimit-Reset`` (unix seconds, windows of about 10 seconds) and refuses calls over
the limit with 429. A :class:`Throttle` remembers the latest window of one workspace:
when it is nearly spent (or a 429 came back), calls wait for the reset instead of
spending what other workers' calls need.

A pause (a 429, or a window nearly spent) is shared with every process of the
deployment through the Redis token cache, so one worker's 429 holds back the others
too; the counts in the headers are the workspace's anyway. A 429 is still possible, and
then the delivery waits out the reset without spending its retry budget.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from deskbridge.adapters.base import TokenCache
from deskbridge.errors import RetryableError

__all__ = ["Throttle", "for_workspace"]

# Keep this share of a window for other callers before pausing until its reset.
_RESERVE = 0.05
_MIN_RESERVE = 2
# A 429 or a spent window without a usable Reset header: Intercom's window length.
_DEFAULT_WAIT = 10.0
_MAX_WAIT = 120.0


@dataclass
class Throttle:
    """One workspace's rate-limit window as the last response described it."""

    clock: Callable[[], float] = time.time
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    inline_wait: float = 2.0
    """Waits up to this long happen inside the call; longer ones defer the delivery."""
    paused_until: float = field(default=0.0)
    shared: TokenCache | None = None
    """Where every process of the deployment sees the workspace's pause (Redis)."""
    name: str = ""
    _published: float = field(default=0.0)

    async def pull(self) -> None:
        """Take a pause another process saw (a 429 or a spent window) into account."""
        if self.shared is None:
            return
        value = await self.shared.get(self.name)
        if value:
            with contextlib.suppress(ValueError):
                self.paused_until = max(self.paused_until, float(value))

    async def push(self) -> None:
        """Tell the other processes about a pause this one saw."""
        if self.shared is None or self.paused_until <= self._published:
            return
        wait = self.paused_until - self.clock()
        if wait > 0:
            await self.shared.put(self.name, f"{self.paused_until:.3f}", wait)
            self._published = self.paused_until

    def observe(self, headers: Mapping[str, str], status: int) -> float | None:
        """Read a response's rate-limit headers. Returns the wait (seconds) a 429 asks for."""
        now = self.clock()
        named = {k.lower(): v for k, v in headers.items() if k.lower().startswith("x-ratelimit")}
        reset = _number(named.get("x-ratelimit-reset"))
        remaining = _number(named.get("x-ratelimit-remaining"))
        limit = _number(named.get("x-ratelimit-limit"))
        until = reset if reset is not None and now < reset <= now + _MAX_WAIT else None
        if status == 429:
            self.paused_until = max(self.paused_until, until or now + _DEFAULT_WAIT)
            return max(1.0, self.paused_until - now)
        if remaining is not None:
            reserve = max(_MIN_RESERVE, (limit or 0) * _RESERVE)
            if remaining <= reserve:
                self.paused_until = max(self.paused_until, until or now + _DEFAULT_WAIT)
        return None

    async def admit(self, *, may_defer: bool, what: str) -> None:
        """Wait until the workspace may be called again. A long wait raises
        ``RetryableError`` (with ``retry_after``) when ``may_defer``, so a worker is not
        held; otherwise (the middle of a multi-call operation) it is slept through."""
        await self.pull()
        wait = self.paused_until - self.clock()
        if wait <= 0:
            return
        if may_defer and wait > self.inline_wait:
            raise RetryableError(f"{what}: Intercom rate limit nearly spent", retry_after=wait)
        await self.sleep(min(wait, _MAX_WAIT))


_THROTTLES: dict[str, Throttle] = {}


def for_workspace(base_url: str, token: str, shared: TokenCache | None = None) -> Throttle:
    """The process's throttle for the workspace behind ``token`` at ``base_url`` (several
    accounts may file into one workspace); with ``shared``, pauses are seen by every
    process of the deployment."""
    digest = hashlib.sha256(token.encode()).hexdigest()[:16]
    key = base_url + "|" + digest
    throttle = _THROTTLES.get(key)
    if throttle is None:
        throttle = _THROTTLES[key] = Throttle(shared=shared, name=f"intercom-pause:{digest}")
    elif shared is not None and throttle.shared is None:
        throttle.shared = shared
        throttle.name = f"intercom-pause:{digest}"
    return throttle


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value.strip())
    except ValueError:
        return None
