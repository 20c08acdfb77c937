from __future__ import annotations

import contextlib

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from deskbridge import __version__
from deskbridge.errors import StoreUnavailable
from deskbridge.gateway.state import ROLE, RUNTIME
from deskbridge.store.connection import cause

__all__ = ["healthz", "metrics", "readyz"]


async def healthz(request: web.Request) -> web.Response:
    """The process is up (no dependency is checked)."""
    return web.json_response({"status": "ok", "version": __version__})


async def readyz(request: web.Request) -> web.Response:
    """Redis answers; in ``run`` (and ``worker``) a worker heartbeat is fresh too.
    Per-account details never fail readiness."""
    rt = request.app[RUNTIME]
    role = request.app[ROLE]
    checks: dict[str, str] = {}
    ready = True
    try:
        await rt.health.ping(within_s=2)
        checks["redis"] = "ok"
        if role in ("run", "worker"):
            alive = await rt.health.worker_alive()
            checks["worker"] = "ok" if alive else "no heartbeat"
            ready = alive
    except (StoreUnavailable, OSError) as exc:
        checks["redis"] = f"unreachable ({cause(exc)})"
        ready = False
    accounts: dict[str, dict[str, object]] = {
        name: {"desk": acc.desk.type, "channels": [c.type for c in acc.channels]}
        for name, acc in rt.accounts.accounts.items()
    }
    if checks.get("redis") == "ok":
        # per-account trouble (a rejected token) is reported, never fails readiness
        for name in accounts:
            found = await rt.deliveries.problems(name)
            if found:
                accounts[name]["problems"] = found
    return web.json_response(
        {
            "status": "ready" if ready else "not ready",
            "role": role,
            "region": rt.settings.region,
            "checks": checks,
            "accounts": accounts,
        },
        status=200 if ready else 503,
    )


async def metrics(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    # on a Redis outage the gauge keeps its last value; /readyz reports the outage
    with contextlib.suppress(StoreUnavailable, OSError):
        rt.metrics.queue_depth.set(await rt.deliveries.queue_depth())
    resp = web.Response(body=generate_latest(rt.metrics.registry))
    resp.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    return resp
