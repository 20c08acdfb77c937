from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["RawRequest"]


@dataclass(frozen=True, slots=True)
class RawRequest:
    """An inbound HTTP request as adapters see it (they never see aiohttp).

    ``headers`` is looked up by lower-case name (the gateway passes aiohttp's
    case-insensitive view; tests pass dicts with lower-case keys). ``body`` is the exact
    bytes received, which is what signatures are computed over.
    """

    method: str
    path: str
    query: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
