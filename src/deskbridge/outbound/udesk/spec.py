"""Udesk's entry in the desk registry."""

from __future__ import annotations

import contextlib
from contextlib import AbstractAsyncContextManager

from deskbridge.config import UdeskDeskConfig
from deskbridge.outbound.base import DeskConnector
from deskbridge.outbound.spec import DeskDeps, DeskSpec
from deskbridge.outbound.udesk.connector import UdeskConnector
from deskbridge.outbound.udesk.state import MemoryUdeskState
from deskbridge.schemas import Desk

__all__ = ["SPEC"]


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


def _connector(account: str, config: UdeskDeskConfig, deps: DeskDeps) -> DeskConnector:
    return UdeskConnector(
        account,
        config,
        deps.client,
        tokens=deps.tokens if deps.tokens is not None else _MemoryTokens(),
        state=deps.udesk_state if deps.udesk_state is not None else MemoryUdeskState(),
        metrics=deps.metrics,
    )


SPEC = DeskSpec(desk=Desk.UDESK, config=UdeskDeskConfig, connector=_connector)
