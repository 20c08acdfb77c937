"""``deskbridge channels register``: set up webhooks at the platforms that have an API for it."""

from __future__ import annotations

import functools
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import yaml
from rich.console import Console
from rich.markup import escape

from deskbridge.adapters.capabilities import Registered, RegistersAppWebhook, RegistersWebhook
from deskbridge.config import (
    AccountsFile,
    ChannelConfig,
    InstagramConfig,
    MessengerConfig,
    MetaAppConfig,
    Settings,
    WhatsAppConfig,
    load_accounts,
)
from deskbridge.errors import DeliveryError, RetryableError
from deskbridge.http import make_client
from deskbridge.outbound.capabilities import RegistersDeskWebhook
from deskbridge.schemas import Attachment

__all__ = ["register"]

out = Console(highlight=False)


class _MemoryTokens:
    """A token cache for this one command (registration needs one token, briefly)."""

    def __init__(self) -> None:
        self._tokens: dict[str, str] = {}

    async def get(self, name: str) -> str | None:
        return self._tokens.get(name)

    async def put(self, name: str, token: str, ttl: float) -> None:
        self._tokens[name] = token

    @asynccontextmanager
    async def lock(self, name: str) -> AsyncIterator[None]:
        yield


class _NoLinks:
    def url_for(self, account: str, attachment: Attachment, *, ttl: float | None = None) -> str:
        raise RuntimeError("registration sends no files")

    def video_preview_url(self) -> str:
        return "https://bridge.test/media/preview/video.png"


class _NoTickets:
    """The sandbox desk's backend for this command, which files nothing."""

    async def create_ticket(
        self,
        account: str,
        *,
        subject: str,
        requester: str,
        channel: str,
        idempotency_key: str | None = None,
    ) -> str:
        raise RuntimeError("registration files no tickets")

    async def exists(self, account: str, ticket_id: str) -> bool:
        raise RuntimeError("registration files no tickets")

    async def add_message(
        self,
        account: str,
        ticket_id: str,
        *,
        author: str,
        text: str,
        attachments: tuple[str, ...] = (),
        idempotency_key: str | None = None,
    ) -> tuple[str, int]:
        raise RuntimeError("registration files no tickets")


def _secret_files(config: Path) -> dict[str, Path]:
    """Each account's ``desk.webhook_secret_file`` as the accounts file names it (a file
    that does not exist yet is fine: this command writes it)."""
    doc = yaml.safe_load(config.read_text())
    accounts = doc.get("accounts") if isinstance(doc, dict) else None
    found: dict[str, Path] = {}
    for name, acc in accounts.items() if isinstance(accounts, dict) else ():
        desk = acc.get("desk") if isinstance(acc, dict) else None
        value = desk.get("webhook_secret_file") if isinstance(desk, dict) else None
        if isinstance(value, str) and "${" not in value:
            path = Path(value)
            found[name] = path if path.is_absolute() else config.parent / path
    return found


def _failed(label: str, exc: DeliveryError) -> None:
    said = str(exc)
    if isinstance(exc, RetryableError) and exc.retry_after:
        said += f" (the platform asks to wait {exc.retry_after:.0f} s)"
    out.print(f"[red]{escape(label)}: failed: {escape(said)}[/]")


class _Channels:
    """What registering the channels of one run shares: the client, and the Meta apps
    whose webhook for a product this run has set already."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.tokens = _MemoryTokens()
        self.links = _NoLinks()
        self.apps_done: set[tuple[str, str]] = set()

    def first(self, app: str, channel: str) -> bool:
        """Whether this is the run's first channel of ``app`` for ``channel``'s product."""
        new = (app, channel) not in self.apps_done
        self.apps_done.add((app, channel))
        return new


async def _channel(
    run: _Channels, accounts: AccountsFile, name: str, ch: ChannelConfig, base: str
) -> bool:
    """Registers one channel and says how it went; False when it failed."""
    from deskbridge.adapters.registry import build_adapter

    label = f"{name}/{ch.type}"
    meta = (WhatsAppConfig, MessengerConfig, InstagramConfig)
    if ch.sandbox and not isinstance(ch, meta):
        out.print(f"{label}: sandbox mode, nothing to register")
        return True
    # a Meta channel in sandbox mode registers with the gateway's Graph stand-in
    sandboxed = f"{base}/sandbox/channel-api/{name}/{ch.type}" if ch.sandbox else None
    adapter = build_adapter(name, ch, run.client, run.links, run.tokens, api_base=sandboxed)
    if isinstance(ch, meta) and isinstance(adapter, RegistersAppWebhook):
        # a sandboxed channel's app registers with the stand-in: it does not set the real one
        once = run.first(f"{ch.app}:{'sandbox' if ch.sandbox else 'live'}", ch.type)
        shared = f"{base}/webhooks/{ch.type}" if once else None
        return await _meta_channel(label, adapter, accounts.apps[ch.app], shared)
    if not isinstance(adapter, RegistersWebhook):
        out.print(f"{label}: no platform webhook, nothing to register")
        return True
    target = f"{base}/webhooks/{ch.type}/{name}"
    try:
        await adapter.set_webhook(target)
    except DeliveryError as exc:
        _failed(label, exc)
        return False
    out.print(f"{label}: webhook set to {target}")
    return True


async def _meta_channel(
    label: str,
    adapter: RegistersAppWebhook,
    app: MetaAppConfig,
    shared_url: str | None,
) -> bool:
    """The app's webhook for the channel's product (``shared_url``: None when this run
    has done it for the app already), then the account's subscription to the app."""
    steps: list[Callable[[], Awaitable[Registered]]] = []
    if shared_url is not None:
        steps.append(functools.partial(adapter.set_app_webhook, app, shared_url))
    steps.append(functools.partial(adapter.subscribe_to_app, app))
    for step in steps:
        try:
            done = await step()
        except DeliveryError as exc:
            _failed(label, exc)
            return False
        colour = "yellow" if done.manual else "default"
        out.print(f"[{colour}]{escape(label)}: {escape(done.said)}[/]")
    return True


def _write_secret(path: Path, value: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    return path


async def register(
    settings: Settings,
    config: Path | AccountsFile,
    public_url: str,
    only: str | None,
    secrets_dir: Path,
) -> bool:
    """Registers what the accounts file at ``config`` (or the demo's accounts) names.
    Returns False when any registration failed (each is reported)."""
    from deskbridge.outbound import build_desk

    if isinstance(config, AccountsFile):
        accounts, secret_files = config, {}
    else:
        accounts, secret_files = load_accounts(config), _secret_files(config)
    base = public_url.rstrip("/")
    ok = True
    async with make_client(timeout=settings.http_timeout_seconds) as client:
        channels = _Channels(client)
        for name, acc in accounts.accounts.items():
            if only and name != only:
                continue
            for ch in acc.channels:
                ok = await _channel(channels, accounts, name, ch, base) and ok
            desk = build_desk(name, acc.desk, client, _NoTickets())
            if isinstance(desk, RegistersDeskWebhook):
                kind = desk.desk.value
                target = f"{base}/desks/{kind}/{name}"
                try:
                    secret = await desk.register_webhook(target, name=f"deskbridge {name}")
                except DeliveryError as exc:
                    ok = False
                    out.print(f"[red]{name}/{kind}: failed: {escape(str(exc))}[/]")
                    continue
                named = secret_files.get(name)
                path = named or secrets_dir / f"{kind}-webhook-secret-{name}"
                try:
                    _write_secret(path, secret)
                except OSError as exc:
                    ok = False
                    out.print(f"{name}/{kind}: cannot write {path}: {exc.strerror}", markup=False)
                    continue
                where = f"its signing secret is in {path} (mode 0600)"
                if named is None:
                    where += f": set `webhook_secret_file: {path}` on the account's desk"
                out.print(f"{name}/{kind}: webhook posts to {target}; {where}", markup=False)
    return ok
