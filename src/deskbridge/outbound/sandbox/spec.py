"""The sandbox desk's entry in the desk registry."""

from __future__ import annotations

from deskbridge.config import SandboxDeskConfig
from deskbridge.outbound.base import DeskConnector
from deskbridge.outbound.sandbox.connector import SandboxConnector
from deskbridge.outbound.spec import DeskDeps, DeskSpec
from deskbridge.schemas import Desk

__all__ = ["SPEC"]


def _connector(account: str, config: SandboxDeskConfig, deps: DeskDeps) -> DeskConnector:
    return SandboxConnector(account, deps.sandbox)


SPEC = DeskSpec(
    desk=Desk.SANDBOX, config=SandboxDeskConfig, connector=_connector, replies_by_webhook=False
)
