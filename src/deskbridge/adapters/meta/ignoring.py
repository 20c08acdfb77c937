"""A batch that also names what it read and deliberately did not file (DESIGN invariant
10): each such item adds one reason, counted by the gateway."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from deskbridge.adapters.base import Parsed
from deskbridge.adapters.batch import Batch

__all__ = ["NamingBatch"]


class NamingBatch(Batch):
    """:class:`Batch` plus ``ignored``: one named reason per item not filed."""

    def __init__(self, channel: str, *, surrogates: bool) -> None:
        super().__init__(channel, surrogates=surrogates)
        self.ignored: list[str] = []

    def ignore(self, reason: str) -> None:
        self.ignored.append(reason)

    def parsed(self, cut: Callable[[str], bytes]) -> Parsed:
        return replace(super().parsed(cut), ignored=tuple(self.ignored))
