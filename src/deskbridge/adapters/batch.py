"""Parsing a batched webhook item by item: one item we cannot read never costs its
siblings, and what is kept of it belongs to the account that owns it (DESIGN invariant 9).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import ValidationError
from pydantic_core import PydanticSerializationError

from deskbridge.adapters.base import Ignored, ItemFailure, Parsed, Skip
from deskbridge.adapters.payload import item_key
from deskbridge.errors import ParseFailed
from deskbridge.schemas import InboundEvent

__all__ = ["Batch"]


class Batch:
    """The events, item failures and per-account body cuts of one webhook body.

    ``owned`` maps each account to the parts of the body it owns (the parser decides what
    a part is: a Meta change, a Page entry); ``mixed`` is set when the body also holds
    parts of no account of ours (other owners, unrouted numbers, parts nobody could be
    named for), so even a one-account body is then cut before it is kept."""

    def __init__(self, channel: str, *, surrogates: bool) -> None:
        self.channel = channel
        self.events: list[InboundEvent] = []
        self.failures: list[ItemFailure] = []
        self.skipped: list[Ignored] = []
        self.unrouted = 0
        self.mixed = False
        self.owned: dict[str, list[Any]] = {}
        self._surrogates = surrogates
        self._account: str | None = None
        self._named = False

    def name(self, reason: str, account: str | None = None) -> None:
        """Name an item read and deliberately not filed. Inside ``item`` it is that
        item's (and ``unhandled`` is not added for it); elsewhere ``account``'s."""
        owner = account if account is not None else self._account
        self.skipped.append(Ignored(reason, owner))
        self._named = True

    def own(self, account: str, part: Any) -> None:
        self.owned.setdefault(account, []).append(part)

    def fail(self, account: str | None, key: str, body: bytes, error: str) -> None:
        """Keep ``body`` (the item's own record) as a failure of ``account``."""
        self.failures.append(ItemFailure(account=account, key=key, error=error, body=body))
        if account is None:
            self.mixed = True

    def item(
        self,
        account: str | None,
        item: Any,
        record: Callable[[Any], bytes],
        read: Callable[[Any], list[InboundEvent]],
    ) -> None:
        """Read one ``item`` with ``read``; when it cannot be read, keep ``record(item)``
        as its failure, keyed by :func:`item_key`. Error texts never quote the item
        (pydantic's would)."""
        self._account, self._named = account, False
        try:
            events = read(item)
            if not events and not self._named:
                # a valid item we do not file: counted and listed under a name
                self.skipped.append(Ignored("unhandled", account))
            if self._surrogates:
                for event in events:
                    event.model_dump_json()  # a lone surrogate cannot be stored
        except ValidationError as exc:
            error = f"{self.channel}: an item is not readable ({exc.error_count()} errors)"
        except ParseFailed as exc:
            error = str(exc)
        except Skip as skip:
            self.skipped.append(Ignored(skip.reason, account, skip.provider_id))
            return
        except PydanticSerializationError:
            error = f"{self.channel}: an item's text is not valid Unicode"
        else:
            self.events.extend(events)
            return
        self.fail(account, item_key(item), record(item), error)

    def parsed(self, cut: Callable[[str], bytes]) -> Parsed:
        """The result; ``cut(account)`` writes that account's part of the body, called
        only when the body is not one account's alone."""
        whole = not self.owned or (not self.mixed and len(self.owned) <= 1)
        bodies = None if whole else {a: cut(a) for a in self.owned}
        return Parsed(
            events=self.events,
            unrouted=self.unrouted,
            failures=tuple(self.failures),
            bodies=bodies,
            skipped=(*self.skipped, *[Ignored("unrouted")] * self.unrouted),
        )
