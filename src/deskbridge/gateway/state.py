from __future__ import annotations

import asyncio

from aiohttp import web

from deskbridge.flows import Runtime
from deskbridge.gateway.throttle import FailedAuth

__all__ = ["AUTH_FAILURES", "CSRF", "ROLE", "RUNTIME", "SANDBOX_PAGES", "STOPPING"]

RUNTIME = web.AppKey("runtime", Runtime)
ROLE = web.AppKey("role", str)
"""``run`` (gateway and worker in one process), ``serve`` (gateway) or ``worker``."""
CSRF = web.AppKey("csrf", str)
AUTH_FAILURES = web.AppKey("auth_failures", FailedAuth)
"""Failed authentication per source address (see ``gateway.throttle``)."""
SANDBOX_PAGES = web.AppKey("sandbox_pages", bool)
"""Whether ``/sandbox/`` pages are served (see ``gateway.sandbox``)."""
STOPPING = web.AppKey("stopping", asyncio.Event)
"""Set on SIGTERM: ``/readyz`` answers 503 while requests in flight finish."""
