"""Per-ticket update budgets (Zendesk: 30 updates per ticket per 10 minutes): when the
budget left cannot give each waiting message its own update, the waiting messages are
merged into the next update the budget allows, so none is stranded behind the window."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from deskbridge.errors import RetryableError
from deskbridge.flows import deferred
from deskbridge.flows.files import inbound_files
from deskbridge.flows.runtime import Runtime
from deskbridge.outbound.render import render
from deskbridge.schemas import Attempt, Delivery, DeliveryState, Direction, Message, Upload

__all__ = ["Merge", "Prepare", "finish_merged", "wait_for_budget", "within_update_budget"]

log = logging.getLogger(__name__)

# On the last update a window allows, every waiting message goes with it (up to this
# many): the next update may be a whole window away.
_LAST_UPDATE_SCAN = 500
# A merged comment stays under this many characters (Zendesk takes about 65,000 per
# comment, [U] a Zendesk answer in its community forum); what does not fit waits for the
# next update.
_MAX_MERGED_CHARS = 60_000
# Kinds a merge looks past: they wait in the same lane but never update the ticket.
_NO_UPDATE = frozenset({"status"})


@dataclass(frozen=True, slots=True)
class Merge:
    """What ``within_update_budget`` decided: the message to file, the waiting deliveries
    merged into it and their files; ``marked``: the desk write's in-flight mark is
    written already (``DeliveryStore.filing_budget``), and the write is not in doubt."""

    msg: Message
    merged: list[Delivery]
    files: list[Upload]
    marked: bool = False


Prepare = Callable[[Delivery, Message], Awaitable[Message]]
"""What the filing flow does for each message merged into another's update before it is
rendered (its sender's name and contact): the steps the message would have taken alone."""


async def within_update_budget(
    rt: Runtime,
    d: Delivery,
    limit: tuple[int, float],
    ticket: tuple[str, str],
    msg: Message,
    prepare: Prepare,
    head_files: Sequence[Upload] = (),
    *,
    mark_ttl_s: int,
) -> Merge:
    """Keep a ticket under its desk's update ``limit`` (at most this many per so many
    seconds) on ``ticket`` (desk, ticket id). Returns the message to file, the waiting
    deliveries merged into it and their files (attached to the same update); each merged
    message goes through ``prepare`` first; ``head_files`` are the files of ``msg``.
    When the write goes alone and no earlier one exists, the same round trip writes its
    in-flight mark (``mark_ttl_s``; ``Merge.marked``).

    When the budget left cannot give each waiting message of this conversation its own
    update, the head and the messages right behind it (any sender, files included) go
    as one update, a line per message: ``[time] author: text`` and the names of its
    files. Up to ``coalesce_max_messages`` per update; on the last update the window
    allows, every waiting message that fits in one comment. With no budget at all,
    raises ``RetryableError`` with the window's wait (a wait the desk would otherwise
    enforce with 429s; it spends no retries).

    An earlier write of ``d`` that may be at the desk fixes the merge: exactly the
    messages it carried go again (those still pending), however much budget is left and
    whatever else waits in the lane now (with none left, it waits as above), so that the
    desk's reconciliation (it finds that update, or it does not and this one is written)
    settles all of them and only them. A merge chosen afresh could leave some of them
    pending, to be filed twice, or finish messages that update never held."""
    most, _ = limit
    desk, ticket_id = ticket
    cap = rt.settings.coalesce_max_messages
    # the budget, the lane's first messages, any earlier write's merge and, when the
    # write goes alone, its in-flight mark (``Merge.marked``), in one round trip
    used, wait, lane, carried, marked = await rt.deliveries.filing_budget(
        d, desk, ticket_id, limit, cap, mark_ttl_s
    )
    if used >= most:
        raise _no_budget(desk, limit, wait)
    if carried is not None:
        merged = await _still_pending(rt, d, carried)
        return await _merge(rt, d, desk, (msg, head_files), merged, prepare, fixed=True)
    left = most - used
    if left <= 1:  # the last update the window allows: every message that fits
        cap = _LAST_UPDATE_SCAN
        lane = await rt.deliveries.lane_ids(d.account, Direction.INBOUND, d.conversation_id, cap)
    waiting = [i for i in lane if i != d.id]
    # FILING_BUDGET (store/scripts.py) marks the write by this same rule: keep them alike
    if not waiting or left > len(waiting):
        return Merge(msg, [], [], marked=marked)
    merged = await _mergeable(rt, d, waiting, cap - 1)
    return await _merge(rt, d, desk, (msg, head_files), merged, prepare, fixed=False)


async def _merge(
    rt: Runtime,
    d: Delivery,
    desk: str,
    head: tuple[Message, Sequence[Upload]],
    merged: list[Merged],
    prepare: Prepare,
    *,
    fixed: bool,
) -> Merge:
    """``head`` (the message and its files) with the ``merged`` messages, as one update.
    A merge chosen afresh ends before a message that would take the comment past its
    size or whose file cannot be fetched yet; a ``fixed`` one (an earlier write's) keeps
    every message, and a file that cannot be fetched retries the head."""
    msg, head_files = head
    files: list[Upload] = []
    lines = [_line(msg, head_files)]
    size = len(lines[0])
    for n, (other, m, raw_id) in enumerate(merged):
        m = await prepare(other, m)
        if not fixed and size + len(_line(m, [])) > _MAX_MERGED_CHARS:
            merged = merged[:n]
            break
        try:
            their_files, m = await inbound_files(rt, other, m, raw_id)
        except RetryableError:
            if fixed:
                raise
            # its file cannot be fetched now: it goes on its own, with its own retries,
            # rather than spending the head's
            merged = merged[:n]
            break
        files += their_files
        lines.append(_line(m, their_files))
        size += len(lines[-1]) + 2
    if not merged:
        return Merge(msg, [], [])
    last = merged[-1][1]
    if last.context:
        await rt.conversations.set_context(d.account, d.conversation_id, last.context)
    combined = msg.model_copy(
        update={
            "text": "\n\n".join(lines),
            "note": None,
            "reply_to": None,
            "reply_quote": None,
            "edit_of": None,
            "location": None,
            "contact": None,
            "attachments": (*msg.attachments, *(a for _, m, _ in merged for a in m.attachments)),
        }
    )
    log.info(
        "delivery %s: %d waiting messages filed with it (%s update budget%s)",
        d.id,
        len(merged),
        desk,
        ", as its earlier update" if fixed else "",
    )
    return Merge(combined, [o for o, _, _ in merged], files)


def _line(msg: Message, files: Sequence[Upload]) -> str:
    """One message of a merged update: its time, its author, its text and its files."""
    who = msg.sender.display_name or msg.sender.username or msg.sender.external_id
    line = f"[{msg.occurred_at.astimezone(UTC):%H:%M:%S}] {who}: {render(msg)}"
    names = [f.filename for f in files if f.filename]
    return line + (f"\n[attached: {', '.join(names)}]" if names else "")


async def wait_for_budget(
    rt: Runtime, d: Delivery, limit: tuple[int, float], desk: str, ticket_id: str
) -> int:
    """The updates the ticket had within its window; with none left, raises
    ``RetryableError`` with the window's wait (it spends no retries)."""
    used, wait = await rt.deliveries.ticket_updates(d.account, desk, ticket_id, limit[1])
    if used >= limit[0]:
        raise _no_budget(desk, limit, wait)
    return used


def _no_budget(desk: str, limit: tuple[int, float], wait: float) -> RetryableError:
    most, window = limit
    return RetryableError(
        f"{desk} allows {most} updates per ticket per {window:g}s", retry_after=wait + 0.5
    )


Merged = tuple[Delivery, Message, str | None]
"""A message merged into the head's update: its delivery, the message, its stored
request's id (for files that travel inside it)."""


async def _mergeable(rt: Runtime, d: Delivery, waiting: list[str], most: int) -> list[Merged]:
    """The pending messages right behind the head (at most ``most``). Statuses are looked
    past (they never update the ticket); anything else that updates it (a note, a call)
    ends the run, so it keeps its place after the messages before it."""
    merged: list[Merged] = []
    for other_id in waiting:
        other, record = await _pending(rt, d, other_id)
        if other is None or record is None:
            break  # finished, or it files nothing: its own turn ends it
        if other.attempts:
            # it was a head before (an operator replayed one in front of it): a write of
            # its own may be at the desk, which only its own turn reconciles
            break
        kind = record["event"].get("kind")
        if kind in _NO_UPDATE:
            continue
        if kind != "message":
            break
        merged.append((other, Message.model_validate(record["event"]), record.get("raw_id")))
        if len(merged) >= most:
            break
    return merged


async def _still_pending(rt: Runtime, d: Delivery, ids: Sequence[str]) -> list[Merged]:
    """The deliveries of ``ids`` (an earlier write's merge) that are still pending
    messages, in that order. One finished since (by that write's record, or an operator)
    is left out: it needs nothing more."""
    merged: list[Merged] = []
    for other_id in ids:
        other, record = await _pending(rt, d, other_id)
        if other is not None and record is not None and record["event"].get("kind") == "message":
            merged.append((other, Message.model_validate(record["event"]), record.get("raw_id")))
    return merged


async def _pending(
    rt: Runtime, d: Delivery, other_id: str
) -> tuple[Delivery | None, dict[str, Any] | None]:
    """A delivery of ``d``'s account while it is pending, with its event record (None
    when it files nothing); (None, None) once it is gone or finished. A message whose
    parse was deferred is parsed (and its record written) here."""
    other = await rt.deliveries.get(d.account, other_id)
    if other is None or other.state is not DeliveryState.PENDING:
        return None, None
    return other, await deferred.record_of(rt, other)


async def finish_merged(rt: Runtime, d: Delivery, merged: list[Delivery], desk: str) -> None:
    """The deliveries filed inside ``d``'s update are done, and out of the lane."""
    for other in merged:
        await rt.deliveries.record_attempt(
            d.account,
            other.id,
            Attempt(at=datetime.now(UTC), outcome="delivered", error=f"coalesced into {d.id}"),
            spends_budget=True,
        )
        await rt.deliveries.finish(
            other,
            DeliveryState.DELIVERED,
            reason="coalesced",
            retention_s=rt.retention(d.account).delivered_s,
        )
    if merged:
        rt.metrics.event("desk", "coalesced", desk, n=len(merged))
