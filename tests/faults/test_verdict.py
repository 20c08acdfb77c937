"""The fault runs' verdict tells the truth (no processes): the fake desk counts every
message a merged comment carries, and "lost" rests on the store's own delivery states."""

from __future__ import annotations

import sys
from pathlib import Path

from .fakezendesk import Comment, DeskAccount, _markers
from .load import Load
from .scenarios import outcome

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench import faults as bench


def _desk(*comments: tuple[tuple[int, int], ...]) -> DeskAccount:
    desk = DeskAccount()
    desk.tickets[1] = {"external_id": "conv", "comments": len(comments)}
    for i, found in enumerate(comments):
        desk.comments.append(Comment(1, "conv", found[0] if found else None, float(i), found))
    return desk


def test_a_merged_comment_carries_every_message_it_merges() -> None:
    body = {
        "ticket": {
            "comment": {
                "body": "Customer 7, 10:00: fault acme c7 m1\n\nCustomer 7, 10:01: fault acme c7 m2"
                "\n\n10:02: fault acme c7 m3 (with c7 m1 quoted again)"
            }
        }
    }
    assert _markers(body) == ((7, 1), (7, 2), (7, 3))
    desk = _desk(((7, 0),), _markers(body))
    assert desk.markers() == {(7, 0): 1, (7, 1): 1, (7, 2): 1, (7, 3): 1}
    assert desk.order(7) == [0, 1, 2, 3]


def test_merged_messages_held_by_the_store_are_not_lost() -> None:
    load = Load(acked={7: [0, 1, 2]})
    desk = _desk(((7, 0),), ((7, 1), (7, 2)))
    states: dict[tuple[int, int], str | None] = {m: "delivered" for m in load.markers()}
    o = outcome(desk, load, states, pending=0, dead=0, drained=True)
    assert (o.acked, o.delivered, o.at_desk, o.lost, o.dup_appends) == (3, 3, 3, [], 0)
    assert bench._ok(o) == []


def test_lost_means_delivered_by_the_store_but_not_at_the_desk_or_never_recorded() -> None:
    load = Load(acked={7: [0, 1, 2, 3]})
    desk = _desk(((7, 0),))
    states: dict[tuple[int, int], str | None] = {
        (7, 0): "delivered",
        (7, 1): "delivered",  # the store says delivered, the desk has nothing: lost
        (7, 2): "dead",  # held as a dead letter: not lost
        (7, 3): None,  # acknowledged, no delivery at all: lost
    }
    o = outcome(desk, load, states, pending=0, dead=1, drained=True)
    assert o.lost == [(7, 1), (7, 3)] and o.unrecorded == 1
    assert o.missing == [(7, 1), (7, 2), (7, 3)] and o.store_dead == 1
    verdict = bench._ok(o, dead=1)
    assert verdict == [
        "lost 2 (1 delivered by the store but not at the desk, 1 acknowledged without a delivery)"
    ]


def test_a_dead_letter_is_held_not_lost() -> None:
    load = Load(acked={7: [0, 1]})
    desk = _desk(((7, 0),))
    states: dict[tuple[int, int], str | None] = {(7, 0): "delivered", (7, 1): "dead"}
    o = outcome(desk, load, states, pending=0, dead=1, drained=True)
    assert o.lost == [] and bench._ok(o, dead=1) == []
    assert bench._ok(o, dead=0) == ["dead 1 (expected 0)"]
