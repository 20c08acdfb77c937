"""A rate limit on failed authentication per source address.

Only refusals for a bad or missing signature (and unknown accounts, answered the same)
spend a source's budget; a request that verifies is never throttled, whatever its
source has failed before: Meta, Telegram and the desks send from few addresses, and
Meta unsubscribes a Page whose webhook keeps failing. In memory, per process.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

__all__ = ["FailedAuth"]


class FailedAuth:
    """A token bucket per source: ``burst`` failures at once, then ``per_minute``.

    :meth:`failed` records one failure and says whether the source is now over its limit
    (the caller answers 429 instead of 401). At most ``max_sources`` buckets are kept;
    the least recently failing source is forgotten first.
    """

    def __init__(
        self,
        *,
        burst: int = 30,
        per_minute: float = 30.0,
        max_sources: int = 65_536,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.burst = burst
        self._rate = per_minute / 60.0
        self._max = max_sources
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def failed(self, source: str) -> bool:
        """Record a failed authentication from ``source``; True when over the limit."""
        now = self._clock()
        tokens, at = self._buckets.pop(source, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self._rate)
        over = tokens < 1.0
        self._buckets[source] = (tokens if over else tokens - 1.0, now)
        if len(self._buckets) > self._max:
            self._buckets.popitem(last=False)
        return over

    def retry_after(self) -> int:
        """Seconds until a throttled source has one attempt again."""
        return max(1, int(1 / self._rate + 0.999)) if self._rate > 0 else 60
