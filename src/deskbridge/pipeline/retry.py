"""The only place that asks arq to run a job again (``Retry``); the decisions themselves
are ``deskbridge.policy``'s."""

from __future__ import annotations

from typing import NoReturn

from arq import Retry

__all__ = ["busy", "retry_later"]


def retry_later(wait: float) -> NoReturn:
    """Ask arq to run the current job again after ``wait`` seconds."""
    raise Retry(defer=max(0.0, wait))


def busy() -> NoReturn:
    """Another worker holds the conversation's lane: try again shortly."""
    raise Retry(defer=0.2)
