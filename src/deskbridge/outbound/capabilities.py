"""Optional desk capabilities (placeholder until the declared set lands)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["TicketUpdateBudget"]


@runtime_checkable
class TicketUpdateBudget(Protocol):
    ticket_update_limit: tuple[int, float]
