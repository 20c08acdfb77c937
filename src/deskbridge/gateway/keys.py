from __future__ import annotations

from aiohttp import web

from deskbridge.pipeline import Runtime

__all__ = ["CSRF", "ROLE", "RUNTIME"]

RUNTIME = web.AppKey("runtime", Runtime)
ROLE = web.AppKey("role", str)
"""``run`` (gateway and worker in one process), ``serve`` (gateway) or ``worker``."""
CSRF = web.AppKey("csrf", str)
