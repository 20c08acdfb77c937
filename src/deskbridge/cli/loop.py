"""The event loop the long-running commands run on.

uvloop (libuv) runs the same asyncio programs with a cheaper loop and transports: on the
ack path the loop and its socket transports are a quarter of the gateway's CPU per
request (docs/benchmarks.md). ``DESKBRIDGE_EVENT_LOOP=asyncio`` keeps the standard loop,
for example to compare, or on a platform uvloop does not build for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Literal

from deskbridge.errors import ConfigError

__all__ = ["loop_factory", "runner"]

Choice = Literal["auto", "uvloop", "asyncio"]


def loop_factory(choice: Choice) -> tuple[str, Callable[[], asyncio.AbstractEventLoop]]:
    """The loop's name and its factory. Raises ``ConfigError`` when ``uvloop`` is asked
    for and cannot be imported."""
    if choice != "asyncio":
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                raise ConfigError(
                    "DESKBRIDGE_EVENT_LOOP=uvloop, but uvloop is not installed "
                    "(pip install uvloop, or set DESKBRIDGE_EVENT_LOOP=asyncio)"
                ) from None
        else:
            return "uvloop", uvloop.new_event_loop
    return "asyncio", asyncio.new_event_loop


def runner(choice: Choice) -> asyncio.Runner:
    """An ``asyncio.Runner`` on the chosen loop (raises like :func:`loop_factory`, before
    any coroutine exists, so nothing is left un-awaited)."""
    _, factory = loop_factory(choice)
    return asyncio.Runner(loop_factory=factory)
