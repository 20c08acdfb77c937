"""The retry policy: what a failed delivery attempt leads to.

Retryable failures back off exponentially with jitter and spend the retry budget; a 429
waits as long as the peer asked (capped) without spending it, up to a total per delivery;
permanent failures, retryable ones past the budget, and rate limits past that total are
dead letters. Pure: ``pipeline/retry.py`` turns a
decision into arq's ``Retry``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from deskbridge.errors import DeliveryError, PermanentError, RetryableError
from deskbridge.schemas import AttemptOutcome

__all__ = ["Decision", "RetryPolicy"]


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do after a failed attempt: ``retry`` after ``wait`` seconds, or ``dead``."""

    action: str
    """``retry`` or ``dead``."""
    outcome: AttemptOutcome
    """The attempt's outcome: ``retry``, ``rate_limited``, ``permanent`` or ``exhausted``."""
    spends_budget: bool
    wait: float = 0.0
    why: str = ""
    """For a dead letter the error alone does not explain: what ran out."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 10
    base: float = 30.0
    cap: float = 3600.0
    max_rate_limit_wait: float = 3600.0
    max_rate_limited: float = 86400.0
    """Seconds of rate-limited waits one delivery may spend in total."""

    def backoff(self, attempt: int) -> float:
        """Seconds before retry number ``attempt`` (1-based): exponential, equal jitter."""
        delay = min(self.cap, self.base * 2.0 ** max(0, attempt - 1))
        return delay / 2 + random.uniform(0, delay / 2)  # noqa: S311 - jitter, not crypto

    def horizon(self) -> float:
        """The longest time from the first attempt to the last, in seconds (rate-limited
        waits included)."""
        backoffs = sum(
            min(self.cap, self.base * 2.0 ** (n - 1)) for n in range(1, self.max_attempts)
        )
        return backoffs + self.max_rate_limited

    def decide(
        self, exc: DeliveryError, attempts_spent: int, rate_limited: float = 0.0
    ) -> Decision:
        """``attempts_spent`` counts this failed attempt if it spends the budget;
        ``rate_limited``: the seconds the delivery already waited on rate limits. A rate
        limit whose wait would take that total past ``max_rate_limited`` is a dead letter."""
        if isinstance(exc, PermanentError) or not isinstance(exc, RetryableError):
            return Decision("dead", "permanent", spends_budget=True)
        if exc.status == 429 or exc.retry_after is not None:
            wait = exc.retry_after if exc.retry_after is not None else self.backoff(1)
            wait = min(max(wait, 0.0), self.max_rate_limit_wait)
            if rate_limited + wait > self.max_rate_limited:
                why = f"rate limited for more than {self.max_rate_limited:g} s in total"
                return Decision("dead", "exhausted", spends_budget=False, why=why)
            return Decision("retry", "rate_limited", spends_budget=False, wait=wait)
        if attempts_spent >= self.max_attempts:
            return Decision("dead", "exhausted", spends_budget=True)
        return Decision("retry", "retry", spends_budget=True, wait=self.backoff(attempts_spent))
