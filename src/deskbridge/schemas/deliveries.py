from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from deskbridge.schemas.common import Frozen

__all__ = ["Attempt", "AttemptOutcome", "Delivery", "DeliveryState", "Direction"]


class Direction(StrEnum):
    INBOUND = "inbound"
    """Channel → desk (``deliver_to_desk``)."""
    OUTBOUND = "outbound"
    """Desk → channel (``deliver_to_channel``)."""


class DeliveryState(StrEnum):
    PENDING = "pending"
    HELD = "held"
    """Waiting for the customer to write again (a channel's reply window is closed)."""
    DELIVERED = "delivered"
    SKIPPED = "skipped"
    """Nothing to deliver (an event kind the desk does not take); kept for the record."""
    DEAD = "dead"
    DISCARDED = "discarded"


AttemptOutcome = Literal[
    "delivered", "skipped", "held", "retry", "rate_limited", "permanent", "exhausted", "resent"
]
"""``resent``: a line of its own, not an attempt's end: a call (a desk write, a part of a
send) went out again after an unknown outcome where the peer offers no idempotency key and
no read-back (it may have arrived twice)."""


class Attempt(Frozen):
    at: datetime
    outcome: AttemptOutcome
    error: str | None = None
    http_status: int | None = None
    wait: float | None = None
    ambiguous: bool | None = None
    """The failed call may have been applied (timeout or reset after the request was
    written, a 5xx from a proxy): the next attempt reconciles before writing again."""
    resent: str | None = None
    """On a successful attempt: the call sent again after an unknown outcome without a
    way to check (the platform has no idempotency key or read-back), e.g. ``udesk create
    ticket``. It may have reached the peer twice (``deskbridge_ambiguous_resends_total``)."""


class Delivery(Frozen):
    """One piece of work in one direction. The record, not the arq job, is the truth."""

    id: str
    account: str
    direction: Direction
    channel: str
    desk: str
    conversation_id: str
    event_id: str
    state: DeliveryState
    attempts: int = 0
    """Attempts that spent the retry budget (rate-limit waits do not)."""
    created_at: datetime
    updated_at: datetime
    last_error: str | None = None
    last_status: int | None = None
    reason: str | None = None
    """Why it is dead: ``exhausted``, ``permanent`` or ``parse_failed``."""
    channel_status: str | None = None
    """For a reply: what the channel last said of it (sent, delivered, read, failed)."""
    channel_error: str | None = None
    raw_id: str | None = None
    """For a ``parse_failed`` dead letter: its kept raw request (re-ingest it)."""
    replays: int = 0
    """How many times an operator replayed it."""
    replayed_at: datetime | None = None
    replayed_by: str | None = None
    discarded_at: datetime | None = None
    discarded_by: str | None = None
    """Who discarded it (the admin token's ``sub``), when and why."""
    discard_reason: str | None = None
    rate_limited_s: float = 0.0
    """The rate-limited waits (429) so far, in seconds: they spend no retry budget but are
    bounded in total (``max_rate_limited_seconds``)."""
    kind: str | None = None
    """``note`` for an internal note deskbridge writes on the ticket; None for the
    channel's or the desk's own events."""
