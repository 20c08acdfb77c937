"""``deskbridge channels register``: set up webhooks at the platforms that have an API for it."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import yaml
from rich.console import Console
from rich.markup import escape

from deskbridge.adapters.capabilities import RegistersWebhook
from deskbridge.config import Settings, load_accounts
from deskbridge.errors import DeliveryError
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


def _write_secret(path: Path, value: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    return path


async def register(
    settings: Settings, config: Path, public_url: str, only: str | None, secrets_dir: Path
) -> bool:
    """Returns False when any registration failed (each is reported)."""
    from deskbridge.adapters.registry import build_adapter
    from deskbridge.outbound import build_desk

    accounts = load_accounts(config)
    secret_files = _secret_files(config)
    base = public_url.rstrip("/")
    ok = True
    tokens, links = _MemoryTokens(), _NoLinks()
    async with make_client(timeout=settings.http_timeout_seconds) as client:
        for name, acc in accounts.accounts.items():
            if only and name != only:
                continue
            for ch in acc.channels:
                target = f"{base}/webhooks/{ch.type}/{name}"
                if ch.sandbox:
                    out.print(f"{name}/{ch.type}: sandbox mode, nothing to register")
                    continue
                adapter = build_adapter(name, ch, client, links, tokens)
                if not isinstance(adapter, RegistersWebhook):
                    # Meta apps: the callback URL is set in the app's dashboard
                    out.print(f"{name}/{ch.type}: set {base}/webhooks/{ch.type} in the Meta app")
                    continue
                try:
                    await adapter.set_webhook(target)
                    out.print(f"{name}/{ch.type}: webhook set to {target}")
                except DeliveryError as exc:
                    ok = False
                    out.print(f"[red]{name}/{ch.type}: failed: {escape(str(exc))}[/]")
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
