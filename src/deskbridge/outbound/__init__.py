"""Desk connectors, one package per helpdesk."""

from __future__ import annotations

import contextlib
from contextlib import AbstractAsyncContextManager

import httpx

from deskbridge.adapters.base import TokenCache
from deskbridge.config import (
    DeskConfig,
    IntercomDeskConfig,
    SandboxDeskConfig,
    UdeskDeskConfig,
    ZendeskDeskConfig,
)
from deskbridge.metrics import Metrics
from deskbridge.outbound.base import DeskConnector, Filed
from deskbridge.outbound.intercom import IntercomConnector
from deskbridge.outbound.sandbox import SandboxBackend, SandboxConnector
from deskbridge.outbound.udesk import MemoryUdeskState, UdeskConnector, UdeskState
from deskbridge.outbound.zendesk import ZendeskConnector

__all__ = ["DeskConnector", "Filed", "build_desk"]


def build_desk(
    account: str,
    config: DeskConfig,
    client: httpx.AsyncClient,
    sandbox: SandboxBackend,
    *,
    tokens: TokenCache | None = None,
    udesk_state: UdeskState | None = None,
    metrics: Metrics | None = None,
) -> DeskConnector:
    """The connector for ``config`` (an explicit registry: one branch per desk).
    ``tokens`` and ``udesk_state`` are shared by every process (Redis); without them a
    Udesk connector keeps its token and rate budget to itself."""
    match config:
        case SandboxDeskConfig():
            return SandboxConnector(account, sandbox)
        case ZendeskDeskConfig():
            return ZendeskConnector(account, config, client)
        case IntercomDeskConfig():
            return IntercomConnector(account, config, client, shared=tokens)
        case UdeskDeskConfig():
            return UdeskConnector(
                account,
                config,
                client,
                tokens=tokens if tokens is not None else _MemoryTokens(),
                state=udesk_state if udesk_state is not None else MemoryUdeskState(),
                metrics=metrics,
            )
    raise TypeError(f"no connector for desk {config.type!r}")  # pragma: no cover


class _MemoryTokens:
    """A one-process ``TokenCache`` (tools and tests that build a desk without Redis)."""

    def __init__(self) -> None:
        self._tokens: dict[str, str] = {}

    async def get(self, name: str) -> str | None:
        return self._tokens.get(name)

    async def put(self, name: str, token: str, ttl: float) -> None:
        self._tokens[name] = token

    def lock(self, name: str) -> AbstractAsyncContextManager[None]:
        return contextlib.nullcontext()
