"""Zendesk's entry in the desk registry."""

from __future__ import annotations

from deskbridge.config import ZendeskDeskConfig
from deskbridge.outbound.base import DeskConnector
from deskbridge.outbound.spec import DeskDeps, DeskSpec
from deskbridge.outbound.zendesk.connector import ZendeskConnector
from deskbridge.schemas import Desk

__all__ = ["SPEC"]


def _connector(account: str, config: ZendeskDeskConfig, deps: DeskDeps) -> DeskConnector:
    return ZendeskConnector(account, config, deps.client)


SPEC = DeskSpec(desk=Desk.ZENDESK, config=ZendeskDeskConfig, connector=_connector)
