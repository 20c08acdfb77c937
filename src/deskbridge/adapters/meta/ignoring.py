"""A batch that also names what it read and deliberately did not file (DESIGN invariant
10): each such item adds one reason, counted by the gateway."""

from __future__ import annotations

from deskbridge.adapters.batch import Batch

__all__ = ["NamingBatch"]


class NamingBatch(Batch):
    """:class:`Batch` whose readers name each item they do not file: the reason is
    listed as that item's (``Parsed.skipped``), never also as ``unhandled``."""

    def ignore(self, reason: str, account: str | None = None) -> None:
        self.name(reason, account)
