"""Desk connectors, one package per helpdesk."""

from __future__ import annotations

import httpx

from deskbridge.config import DeskConfig, SandboxDeskConfig, ZendeskDeskConfig
from deskbridge.outbound.base import DeskConnector, Filed
from deskbridge.outbound.sandbox import SandboxBackend, SandboxConnector
from deskbridge.outbound.zendesk import ZendeskConnector

__all__ = ["DeskConnector", "Filed", "build_desk"]


def build_desk(
    account: str, config: DeskConfig, client: httpx.AsyncClient, sandbox: SandboxBackend
) -> DeskConnector:
    """The connector for ``config`` (an explicit registry: one branch per desk)."""
    match config:
        case SandboxDeskConfig():
            return SandboxConnector(account, sandbox)
        case ZendeskDeskConfig():
            return ZendeskConnector(account, config, client)
    raise TypeError(f"no connector for desk {config.type!r}")  # pragma: no cover
