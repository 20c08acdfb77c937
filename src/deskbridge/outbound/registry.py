"""The desk registry: every helpdesk's spec, one explicit dict, no discovery.

Every list of desks in deskbridge (CLI choices, OpenAPI enums, the banner) derives from
``DESKS``; ``docs/extending.md`` lists what else a new desk edits.
"""

from __future__ import annotations

from typing import Any

from deskbridge.config import DeskConfig
from deskbridge.outbound import intercom, sandbox, udesk, zendesk
from deskbridge.outbound.spec import DeskSpec
from deskbridge.schemas import Desk

__all__ = ["DESKS", "desk_spec_of"]

DESKS: dict[Desk, DeskSpec[Any]] = {
    Desk.SANDBOX: sandbox.SPEC,
    Desk.ZENDESK: zendesk.SPEC,
    Desk.INTERCOM: intercom.SPEC,
    Desk.UDESK: udesk.SPEC,
}
"""Every desk's spec, in the order desks are listed to people."""


def desk_spec_of(config: DeskConfig) -> DeskSpec[Any]:
    """The spec of the desk ``config`` configures."""
    return DESKS[Desk(config.type)]
