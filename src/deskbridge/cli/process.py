"""Starting and stopping a deskbridge process: ``run``, ``serve`` and ``worker``."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import shutil
import signal
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

from deskbridge import __version__
from deskbridge.adapters.demo import demo_accounts, demo_secrets
from deskbridge.adapters.registry import CHANNELS, spec_of
from deskbridge.adapters.sip import Listener
from deskbridge.config import AccountsFile, Settings, WebchatConfig, load_accounts
from deskbridge.config.demo import DEMO_ACCOUNT, secrets_path, served_origins
from deskbridge.config.residency import check_region
from deskbridge.errors import ConfigError, bind_failed
from deskbridge.flows import Runtime
from deskbridge.gateway import create_app
from deskbridge.gateway.app import create_metrics_app
from deskbridge.gateway.connections import GuardedRunner
from deskbridge.gateway.state import STOPPING
from deskbridge.http import process_client
from deskbridge.listeners.sip import start_sip_listeners
from deskbridge.listeners.smtp import start_smtp_listeners
from deskbridge.outbound.registry import desk_spec_of
from deskbridge.pipeline import run_worker
from deskbridge.schemas import Desk
from deskbridge.store import PrivateRedis, Vault, check_policy, connect
from deskbridge.store.connection import Connection, disconnect
from deskbridge.store.keyring import load_vault

__all__ = ["Loaded", "load", "serve_forever"]

log = logging.getLogger("deskbridge")

CleanupCtx = Callable[[web.Application], AsyncIterator[None]]


class AccessLogger(AbstractAccessLogger):
    """Logs the route template, never the path or query: paths can carry tokens (the
    sandbox bot API) and queries can carry secrets (Meta's ``hub.verify_token``)."""

    @property
    def enabled(self) -> bool:
        # aiohttp asks once per connection; without this every request was timed and
        # passed to ``log`` even at WARNING, where nothing is written
        return self.logger.isEnabledFor(logging.INFO)

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        match_info = getattr(request, "match_info", None)
        resource = match_info.route.resource if match_info is not None else None
        route = resource.canonical if resource is not None else "-"
        # the request-id middleware has left its context by now: take the echoed header
        rid = response.headers.get("X-Request-Id", "-")
        self.logger.info(
            "%s %s %s %.1fms",
            request.method,
            route,
            response.status,
            time * 1000,
            extra={"request_id": rid},
        )


@dataclass
class Loaded:
    settings: Settings
    accounts: AccountsFile
    vault: Vault
    demo: bool


def load(settings: Settings, config: Path | None) -> Loaded:
    """Accounts from ``config`` (or ``DESKBRIDGE_CONFIG``), else the demo account."""
    path = config or settings.config
    if path is not None and settings.config != path:
        # production mode (Settings.production) follows the accounts file however given
        settings = settings.model_copy(update={"config": path})
    secrets_key = settings.encryption_key.get_secret_value() if settings.encryption_key else None
    lookup = settings.lookup_key.get_secret_value() if settings.lookup_key else None
    vault = load_vault(keys_file=settings.keys_file, encryption_key=secrets_key, lookup_key=lookup)
    if path is not None:
        notes: list[tuple[str, str]] = []
        accounts = load_accounts(path, notes)
        for where, what in notes:
            # a desk webhook secret `channels register` has not written: replies are refused
            log.warning("%s: %s; requests it would verify are refused until then", where, what)
        check_region(accounts, settings.region)
        demo = False
        if vault is None:
            raise ConfigError(
                "DESKBRIDGE_ENCRYPTION_KEY is not set: deskbridge encrypts what it stores. "
                "Generate one with: openssl rand -base64 32 (or give DESKBRIDGE_KEYS_FILE)"
            )
    else:
        accounts = demo_accounts(
            settings.data_dir,
            smtp_listen=f"127.0.0.1:{settings.demo_smtp_port}",
            sip_listen=f"127.0.0.1:{settings.demo_sip_port}",
            web_origins=served_origins(settings.host, settings.port, settings.public_url),
            sms_provider=settings.demo_sms_provider,
        )
        demo = True
        if vault is None:
            demo_key = demo_secrets(settings.data_dir)["encryption_key"]
            vault = load_vault(keys_file=None, encryption_key=demo_key, lookup_key=lookup)
    assert vault is not None
    return Loaded(settings, accounts, vault, demo)


def _banner(loaded: Loaded, role: str) -> None:
    s = loaded.settings
    base = s.base_public_url()
    local = f"http://{s.host}:{s.port}"
    uv = type(asyncio.get_running_loop()).__module__.startswith("uvloop")
    loop = "uvloop" if uv else "asyncio"
    lines = [f"deskbridge {__version__}: {role} on {local} (event loop: {loop})"]
    if role != "worker":
        shared: set[str] = set()
        for name, acc in loaded.accounts.accounts.items():
            for ch in acc.channels:
                spec = spec_of(ch)
                listener = spec.listener(ch) if spec.listener is not None else None
                if listener is not None:
                    lines.append(f"  {ch.type} ({name}): {listener}")
                elif spec.app_route is None:
                    lines.append(f"  {ch.type} webhook ({name}): {base}/webhooks/{ch.type}/{name}")
                elif ch.type not in shared:
                    # a Meta app posts every number and Page to one URL
                    shared.add(ch.type)
                    lines.append(f"  {ch.type} webhook (Meta apps): {base}/webhooks/{ch.type}")
            if desk_spec_of(acc.desk).replies_by_webhook:
                lines.append(
                    f"  {acc.desk.type} agent replies ({name}): {base}/desks/{acc.desk.type}/{name}"
                )
        if any(a.desk.type == Desk.SANDBOX.value for a in loaded.accounts.accounts.values()):
            lines.append(f"  sandbox desk: {local}/sandbox/")
            chats = [c for a in loaded.accounts.accounts.values() for c in a.channels]
            if any(isinstance(c, WebchatConfig) and c.sandbox for c in chats):
                lines.append(f"  website chat widget demo: {local}/sandbox/widget")
        if s.console if s.console is not None else not s.production():
            lines.append(
                f"  operator console: {local}/console/ (a sign-in link: deskbridge console "
                "link --scope deliveries:read)"
            )
    if loaded.demo:
        where = secrets_path(s.data_dir).resolve()
        lines.append(f"  demo account '{DEMO_ACCOUNT}': secrets in {where} (mode 0600)")
        if role != "worker":
            first, *others = CHANNELS
            me = _command_name()
            lines.append(f'  try: {me} simulate {first} --text "hello" --url {local}')
            lines.append(f"       (or {', '.join(others)})")
    print("\n".join(lines), file=sys.stderr, flush=True)


def _command_name() -> str:
    """How the user can call this same deskbridge from here: ``deskbridge`` when that is
    what PATH finds, else the script's path (``.venv/bin/deskbridge`` from the checkout),
    else ``python -m deskbridge`` with this interpreter."""
    script = Path(sys.argv[0])
    if script.name == "__main__.py":
        return f"{_shorter(Path(sys.executable))} -m deskbridge"
    found = shutil.which(script.name)
    if found is not None and Path(found).resolve() == script.resolve():
        return script.name
    return _shorter(script)


def _shorter(path: Path) -> str:
    """``path`` relative to the working directory when it lies below it."""
    absolute = path.absolute()
    try:
        relative = str(absolute.relative_to(Path.cwd()))
    except ValueError:
        return str(absolute)
    return relative if "/" in relative else f"./{relative}"


@contextlib.asynccontextmanager
async def _listeners(rt: Runtime) -> AsyncIterator[None]:
    """The SMTP and SIP listeners, started and closed in that order. One that cannot bind
    raises ``ConfigError`` naming its port: the process does not start without it."""
    smtp_servers = await start_smtp_listeners(rt)
    sip_listeners: list[Listener] = []
    try:
        sip_listeners = await start_sip_listeners(rt)
        yield
    finally:
        for server in smtp_servers:
            server.close()
        for listener in sip_listeners:
            await listener.close()


@contextlib.asynccontextmanager
async def _worker(rt: Runtime, url: str) -> AsyncIterator[asyncio.Task[None]]:
    """The worker loop's task. On the way out it stops taking jobs and lets the running
    ones finish (``DESKBRIDGE_SHUTDOWN_TIMEOUT_SECONDS``, then they go back to the queue);
    it is cancelled only if that stop itself overruns."""
    stopping = asyncio.Event()
    worker = asyncio.create_task(run_worker(rt, url, stopping), name="deskbridge-worker")
    try:
        yield worker
    finally:
        stopping.set()
        # its error, if it ended with one, is already on its way out of serve_forever
        await asyncio.wait([worker], timeout=rt.settings.job_drain_seconds() + 10)
        while not worker.done():
            worker.cancel()
            await asyncio.wait([worker], timeout=1.0)


def _private_redis(private: PrivateRedis) -> CleanupCtx:
    """``deskbridge run`` without ``REDIS_URL``: its own redis-server, for the app's life."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        await private.start()
        try:
            yield
        finally:
            await private.stop()

    return ctx


def _clients(redis: Connection, http: httpx.AsyncClient) -> CleanupCtx:
    """The process's Redis pool (its eviction policy checked first) and HTTP client, both
    opened lazily, closed after the gateway: HTTP client first, then the pool."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        try:
            await check_policy(redis)
            yield
        finally:
            await http.aclose()
            await disconnect(redis)

    return ctx


async def serve_forever(
    loaded: Loaded, role: str, *, reuse_port: bool = False, listeners: bool = True
) -> None:
    """Run ``role`` until SIGINT/SIGTERM, then shut down cleanly. ``reuse_port``: bind
    with ``SO_REUSEPORT`` (a child of ``--processes``); ``listeners``: start the SMTP and
    SIP listeners (in ``run`` and ``serve``).

    The private Redis, the pool and the HTTP client are the app's ``cleanup_ctx``. The
    SMTP and SIP listeners and the worker start only once the HTTP port is bound, so they
    are entered after the site and left in reverse order, before the runner's cleanup.
    A port in use (HTTP, metrics, SMTP or SIP) raises ``ConfigError`` naming it."""
    s = loaded.settings
    private: PrivateRedis | None = None
    url = s.redis_url
    if url is None:
        if role != "run":
            raise ConfigError(
                f"REDIS_URL is not set: `deskbridge {role}` shares a Redis with other processes"
            )
        private = PrivateRedis(s.data_dir, appendfsync=s.appendfsync)
        url = private.url
    redis = connect(url)
    http = process_client(timeout=s.http_timeout_seconds)
    rt = Runtime.build(s, loaded.accounts, redis, loaded.vault, http)
    app = create_app(rt, role=role)
    if private is not None:
        app.cleanup_ctx.append(_private_redis(private))
    app.cleanup_ctx.append(_clients(redis, http))
    runner = GuardedRunner(
        app,
        per_source=s.http_max_connections_per_source,
        head_timeout=s.http_header_timeout_seconds,
        keepalive_timeout=s.http_keepalive_seconds,
        access_log_class=AccessLogger,
        shutdown_timeout=s.request_drain_seconds(),
    )
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(runner.cleanup)
        await runner.setup()
        # the imports leave ~75k long-lived objects; without this every full collection
        # walks them again and stalls requests in flight for 35-55 ms
        gc.collect()
        gc.freeze()
        try:
            await web.TCPSite(runner, s.host, s.port, backlog=1024, reuse_port=reuse_port).start()
        except OSError as exc:
            busy = bind_failed("http", f"{s.host}:{s.port}", exc)
            raise ConfigError(f"{busy} (another port: --port or DESKBRIDGE_PORT)") from exc
        if s.metrics_address is not None:
            await _metrics_listener(stack, rt, s, reuse_port=reuse_port)
        if role in ("run", "serve") and listeners:
            try:
                await stack.enter_async_context(_listeners(rt))
            except ConfigError as exc:
                if not loaded.demo:
                    raise
                raise ConfigError(
                    f"{exc} (the demo's ports: DESKBRIDGE_DEMO_SMTP_PORT, DESKBRIDGE_DEMO_SIP_PORT)"
                ) from exc
        worker = None
        if role in ("run", "worker"):
            worker = await stack.enter_async_context(_worker(rt, url))
        if listeners:  # once per host under --processes
            _banner(loaded, role)
        why = await _until_stopped(worker)
        log.info("shutting down on %s", why)
        await _drain(app, s, role)


async def _metrics_listener(
    stack: contextlib.AsyncExitStack, rt: Runtime, s: Settings, *, reuse_port: bool
) -> None:
    """``/metrics`` alone on ``DESKBRIDGE_METRICS_ADDRESS`` (closed before the gateway);
    shared by the children of ``--processes``, any of which answers for all."""
    assert s.metrics_address is not None
    host, _, port = s.metrics_address.rpartition(":")
    runner = GuardedRunner(
        create_metrics_app(rt),
        per_source=s.http_max_connections_per_source,
        head_timeout=s.http_header_timeout_seconds,
        keepalive_timeout=s.http_keepalive_seconds,
        access_log=None,
    )
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    try:
        where = host.strip("[]") or "127.0.0.1"
        await web.TCPSite(runner, where, int(port), reuse_port=reuse_port).start()
    except OSError as exc:
        busy = bind_failed("metrics", s.metrics_address, exc)
        raise ConfigError(f"{busy} (DESKBRIDGE_METRICS_ADDRESS)") from exc
    log.info("metrics on %s", s.metrics_address)


async def _drain(app: web.Application, s: Settings, role: str) -> None:
    """The first step of a graceful stop: ``/readyz`` turns 503 and, for a gateway, the
    port stays open ``DESKBRIDGE_SHUTDOWN_DRAIN_SECONDS`` so load balancers notice
    first. The exit stack then stops the worker and the listeners, and the runner's
    cleanup closes the port and gives requests in flight
    ``DESKBRIDGE_SHUTDOWN_TIMEOUT_SECONDS`` to finish."""
    app[STOPPING].set()
    drain = s.shutdown_drain_seconds if role != "worker" else 0.0
    log.info(
        "shutting down: /readyz answers 503; draining %gs, then up to %gs for requests "
        "and %gs for jobs in flight",
        drain,
        s.request_drain_seconds() if role != "worker" else 0.0,
        s.job_drain_seconds() if role != "serve" else 0.0,
    )
    if drain:
        await asyncio.sleep(drain)


async def _until_stopped(worker: asyncio.Task[None] | None) -> str:
    """Wait for SIGINT or SIGTERM, or for ``worker`` to end (its error is raised); returns
    the signal's name."""
    stop = asyncio.Event()
    received: list[str] = []
    loop = asyncio.get_running_loop()

    def stopped(sig: signal.Signals) -> None:
        received.append(sig.name)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopped, sig)
    stopping = asyncio.create_task(stop.wait())
    waiters: set[asyncio.Task[Any]] = {stopping}
    if worker is not None:
        waiters.add(worker)  # a worker that dies ends the process
    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if worker is not None and worker.done() and not worker.cancelled():
        exc = worker.exception()
        if exc is not None:
            raise exc
    return received[0] if received else "the worker's end"
