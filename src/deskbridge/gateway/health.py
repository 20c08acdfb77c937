"""``/healthz``, ``/readyz`` and ``/metrics``.

The world learns only whether the process is up and ready (and its region): account
names, desks, channels and their problems are behind the admin API (``GET
/admin/v1/health``, scope ``ops:read``), and ``/metrics`` (per-account labels) is served
on ``DESKBRIDGE_METRICS_ADDRESS``, behind ``DESKBRIDGE_METRICS_TOKEN``, or, in production
mode without either, to loopback callers only (docs/security.md)."""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from deskbridge.errors import StoreUnavailable
from deskbridge.flows import Runtime
from deskbridge.gateway.state import ROLE, RUNTIME, STOPPING
from deskbridge.store.connection import cause

__all__ = ["healthz", "metrics", "metrics_allowed", "metrics_only", "readiness", "readyz"]

# a proxy in front (even on the same host) names the real caller in one of these: such a
# request is not a loopback caller's, whatever its socket says
_PROXY_HEADERS = ("Forwarded", "X-Forwarded-For", "X-Real-IP")


async def healthz(request: web.Request) -> web.Response:
    """The process is up (no dependency is checked; no version, nothing to fingerprint)."""
    return web.json_response({"status": "ok"})


async def readiness(
    rt: Runtime, role: str, sees: Callable[[str], bool] | None = None, *, stopping: bool = False
) -> tuple[bool, dict[str, object]]:
    """Whether the process is ready, and the full report: checks, the Redis primary it
    talks to, and the accounts ``sees`` admits (all when None) with their desk, channels
    and problems. A ``stopping`` process (SIGTERM) is not ready, whatever else holds."""
    checks: dict[str, str] = {}
    ready = not stopping
    if stopping:
        checks["process"] = "stopping"
    try:
        await rt.health.ping(within_s=2)
        checks["redis"] = "ok"
        if role in ("run", "worker"):
            alive = await rt.health.worker_alive()
            checks["worker"] = "ok" if alive else "no heartbeat"
            ready = ready and alive
    except (StoreUnavailable, OSError) as exc:
        checks["redis"] = f"unreachable ({cause(exc)})"
        ready = False
    accounts: dict[str, dict[str, object]] = {
        name: {"desk": acc.desk.type, "channels": [c.type for c in acc.channels]}
        for name, acc in rt.accounts.accounts.items()
        if sees is None or sees(name)
    }
    if checks.get("redis") == "ok":
        # per-account trouble (a rejected token) is reported, never fails readiness
        for name in accounts:
            found = await rt.deliveries.problems(name)
            if found:
                accounts[name]["problems"] = found
    return ready, {
        "status": "ready" if ready else "not ready",
        "role": role,
        "region": rt.settings.region,
        "checks": checks,
        "redis_primary": rt.health.primary(),
        "accounts": accounts,
    }


async def readyz(request: web.Request) -> web.Response:
    """Redis answers; in ``run`` (and ``worker``) a worker heartbeat is fresh too. Says
    only ready or not (and the region): the details are ``GET /admin/v1/health``'s."""
    rt = request.app[RUNTIME]
    stopping = request.app[STOPPING].is_set()
    ready, _ = await readiness(rt, request.app[ROLE], sees=lambda _name: False, stopping=stopping)
    return web.json_response(
        {"status": "ready" if ready else "not ready", "region": rt.settings.region},
        status=200 if ready else 503,
    )


def _loopback(request: web.Request) -> bool:
    if any(h in request.headers for h in _PROXY_HEADERS):
        return False
    try:
        return ipaddress.ip_address(request.remote or "").is_loopback
    except ValueError:
        return False  # a unix socket or an unknown peer


def metrics_allowed(request: web.Request, rt: Runtime, *, own_listener: bool) -> bool:
    """Whether ``request`` may read ``/metrics``: with a token set, only its bearer; on
    the metrics listener of its own, anyone who reaches it; else anyone in the demo and
    loopback callers in production mode."""
    token = rt.settings.metrics_token
    if token is not None:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        expected = token.get_secret_value().encode()
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), expected)
    if own_listener or not rt.settings.production():
        return True
    return _loopback(request)


def _metrics_handler(*, own_listener: bool) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def metrics(request: web.Request) -> web.Response:
        rt = request.app[RUNTIME]
        if not metrics_allowed(request, rt, own_listener=own_listener):
            # the same answer whatever was wrong (no token, a bad one, not loopback)
            return web.json_response(
                {"error": "unauthorized"},
                status=401,
                headers={"WWW-Authenticate": 'Bearer realm="deskbridge-metrics"'},
            )
        # on a Redis outage the gauge keeps its last value; /readyz reports the outage
        with contextlib.suppress(StoreUnavailable, OSError):
            rt.metrics.queue_depth.set(await rt.deliveries.queue_depth())
        resp = web.Response(body=rt.metrics.exposition())
        resp.content_type = CONTENT_TYPE_LATEST.split(";")[0]
        return resp

    return metrics


metrics = _metrics_handler(own_listener=False)
metrics_only = _metrics_handler(own_listener=True)
