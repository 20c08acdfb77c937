"""The worker's half of the deferred parse (docs/benchmarks.md, issue 19).

The gateway acknowledges a body of a channel's common shape after storing only its
dedup mark, its sealed raw request, a delivery record that names both, and the lane's
job (``Intake.accept_deferred``): the receiver's ``peek`` read the dedup key and the
thread, nothing more. Before a worker files such a delivery, the receiver's full
``parse`` runs here on the stored request (verified at the ack, stored scrubbed), and
its event record is written as the intake would have written it, so replay, listings,
exports, erasure and key rotation find what they always found. What the full parse
decides instead ends the delivery the way the gateway would have ended the item:

- no event (a kind the parser ignores): the ignored item is recorded with its reason,
  the delivery is ``skipped``, its raw request keeps the rest of its retention;
- ``ParseFailed``, an item failure of a batch parser (the item did not read), or no
  event with the item's dedup key (which the ``Peeks`` contract rules out): the
  ``parse_failed`` dead letter of the body, kept for re-ingest.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from deskbridge.errors import DeliveryError, ParseFailed, RequestRefused, RetryableError
from deskbridge.flows.ingest import body_key
from deskbridge.flows.runtime import Runtime
from deskbridge.schemas import Attempt, Delivery, DeliveryState
from deskbridge.store import IgnoredItem, Unparsed

__all__ = ["PARSED", "WRITING", "NotFiled", "Unreadable", "parse_stored", "record_of", "settle"]

log = logging.getLogger(__name__)

WRITING = "_writing"
"""The key of a record ``parse_stored(behind=True)`` returns that holds its write's
future (never stored)."""

PARSED = "_parsed"
"""The key of a record ``parse_stored`` returns that holds the event as the parse made it
(a model, never stored): the filing uses it rather than validating the record's JSON form
of the same event a second time."""


@dataclass(frozen=True, slots=True)
class NotFiled:
    """The full parse read the item and files nothing (``reason``: the parser's)."""

    reason: str


@dataclass(frozen=True, slots=True)
class Unreadable:
    """The full parse refused the stored request (``error`` holds no body text)."""

    error: str


async def parse_stored(
    rt: Runtime, d: Delivery, unparsed: Unparsed, *, write: bool = True, behind: bool = False
) -> dict[str, Any] | NotFiled | Unreadable:
    """Parse ``d``'s stored request with today's receiver and pick the event of its item;
    with ``write``, store its event record (``DeliveryStore.materialize``). Returns the
    record as the claim would have read it, or what ended the item instead. Raises
    ``RetryableError`` when the channel has no receiver any more (a configuration
    change: the delivery waits with retries, then dies replayable). ``behind``: the write
    is started, not awaited: the record holds its future under ``WRITING`` (the worker
    awaits it before it finishes the delivery), and the flow's next command shares its
    round trip."""
    receiver = rt.receiver(d.channel, d.account)
    if receiver is None:
        raise RetryableError(f"channel {d.channel} is not configured: its request waits")
    try:
        parsed = receiver.parse(unparsed.raw)
    except (ParseFailed, RequestRefused) as exc:
        return Unreadable(str(exc) or type(exc).__name__)
    event = rt.deliveries.pick(d.channel, unparsed.item, parsed.events)
    if event is None and parsed.failures:
        # a batch parser (WhatsApp, LINE) read the body and not its one item: the field
        # that failed is one peek leaves to the parse, and the item its dead letter
        return Unreadable(parsed.failures[0].error)
    if event is None and parsed.events:
        # peek and parse disagree on the item: kept whole for re-ingest, never dropped
        return Unreadable(f"{d.channel}: the stored request holds no event of its item")
    if event is None:
        reasons = parsed.ignored or tuple(i.reason for i in parsed.skipped)
        return NotFiled(reasons[0] if reasons else "unhandled")
    if not write:
        record: dict[str, Any] = {
            "raw_id": unparsed.raw_id,
            "received_at": unparsed.received_at,
            "event_id": d.event_id,
            "delivery_id": d.event_id,
            "event": event.model_dump(mode="json"),
        }
    elif behind:
        record, writing = rt.deliveries.materialize_behind(
            d, unparsed, event, rt.retention(d.account).raw_s
        )
        record[WRITING] = writing
    else:
        record = await rt.deliveries.materialize(d, unparsed, event, rt.retention(d.account).raw_s)
    record[PARSED] = event
    return record


async def settle(
    rt: Runtime, d: Delivery, unparsed: Unparsed, ended: NotFiled | Unreadable, token: str
) -> None:
    """End a claimed deferred delivery whose item files nothing (``parse_stored``), and
    release its lane lock (``token``)."""
    source = d.channel
    if isinstance(ended, Unreadable):
        made = await rt.deliveries.unparseable(
            d,
            unparsed,
            ended.error,
            body_key(unparsed.raw.body),
            rt.settings.dedup_ttl_seconds,
            token,
        )
        if made:
            rt.metrics.event(source, "parse_failed", "parse")
            log.warning("%s: a stored request did not parse; kept as a dead letter", source)
        return
    # the delivery's id: a retry after a failed ``complete`` rewrites the same record
    await rt.intake.ignore(
        account=d.account,
        source=source,
        req=None,
        items=[IgnoredItem(ended.reason, id=d.id)],
        kept_raw=unparsed.raw_id,
    )
    await rt.deliveries.settle_raw(d, unparsed, rt.retention(d.account).raw_s)
    rt.metrics.event(source, "ignored", ended.reason)
    attempt = Attempt(at=datetime.now(UTC), outcome="skipped", error=f"ignored: {ended.reason}")
    await rt.deliveries.complete(
        d, DeliveryState.SKIPPED, attempt, token, retention_s=rt.retention(d.account).delivered_s
    )


async def record_of(rt: Runtime, d: Delivery, *, write: bool = True) -> dict[str, Any] | None:
    """``d``'s event record, parsed from its stored request first when its parse was
    deferred (with ``write``, stored; a reader that must not write passes False). None
    when the item files nothing, or when neither the record nor the request is kept."""
    try:
        found = await rt.deliveries.event_or_unparsed(d)
    except KeyError:
        return None
    if isinstance(found, Unparsed):
        try:
            parsed = await parse_stored(rt, d, found, write=write)
        except DeliveryError:
            if write:
                raise
            # a reader (the export) does not depend on today's configuration: the
            # channel's receiver is gone, and the stored request is still exported
            return None
        return parsed if isinstance(parsed, dict) else None
    return found
