"""Intercom's entry in the desk registry."""

from __future__ import annotations

from deskbridge.config import IntercomDeskConfig
from deskbridge.outbound.base import DeskConnector
from deskbridge.outbound.intercom.connector import IntercomConnector
from deskbridge.outbound.spec import DeskDeps, DeskSpec
from deskbridge.schemas import Desk

__all__ = ["SPEC"]


def _connector(account: str, config: IntercomDeskConfig, deps: DeskDeps) -> DeskConnector:
    return IntercomConnector(account, config, deps.client, shared=deps.tokens)


SPEC = DeskSpec(desk=Desk.INTERCOM, config=IntercomDeskConfig, connector=_connector)
