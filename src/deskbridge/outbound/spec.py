"""What a desk package declares about itself: one ``DeskSpec`` per helpdesk.

``outbound/registry.py`` maps each ``Desk`` to its spec; every list of desks derives
from it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

import httpx
from pydantic import BaseModel

from deskbridge.adapters.base import TokenCache
from deskbridge.metrics import Metrics
from deskbridge.outbound.base import DeskConnector
from deskbridge.schemas import Desk

if TYPE_CHECKING:
    # the desk packages import this module for their specs
    from deskbridge.outbound.sandbox.connector import SandboxBackend
    from deskbridge.outbound.udesk.state import UdeskState

__all__ = ["DeskDeps", "DeskSpec"]

C = TypeVar("C", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class DeskDeps:
    """What every connector builder may take. ``tokens`` and ``udesk_state`` are shared by
    every process (Redis); None keeps them to one process."""

    client: httpx.AsyncClient
    sandbox: SandboxBackend
    tokens: TokenCache | None = None
    udesk_state: UdeskState | None = None
    metrics: Metrics | None = None


@dataclass(frozen=True, slots=True)
class DeskSpec(Generic[C]):
    """One helpdesk as the rest of deskbridge sees it. ``replies_by_webhook``: agents'
    replies arrive at ``/desks/{desk}/{account}`` (the built-in sandbox takes them on its
    own pages)."""

    desk: Desk
    config: type[C]
    connector: Callable[[str, C, DeskDeps], DeskConnector]
    replies_by_webhook: bool = True
