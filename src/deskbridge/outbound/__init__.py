"""Desk connectors, one package per helpdesk."""

from __future__ import annotations

import httpx

from deskbridge.adapters.base import TokenCache
from deskbridge.config import DeskConfig
from deskbridge.metrics import Metrics
from deskbridge.outbound.base import DeskConnector, Filed
from deskbridge.outbound.registry import desk_spec_of
from deskbridge.outbound.sandbox import SandboxBackend
from deskbridge.outbound.spec import DeskDeps
from deskbridge.outbound.udesk import UdeskState

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
    """The connector for ``config``, built by its desk's spec (``outbound/registry.py``).
    ``tokens`` and ``udesk_state`` are shared by every process (Redis); without them a
    Udesk connector keeps its token and rate budget to itself."""
    deps = DeskDeps(client, sandbox, tokens, udesk_state, metrics)
    return desk_spec_of(config).connector(account, config, deps)
