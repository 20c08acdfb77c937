"""The fault scenarios, each run against a started ``Harness`` and reporting counts.

``SHORT`` is what ``make test`` runs (tests/faults/test_faults.py: a few kills, second-
scale timeouts and outages); ``LONG`` is what ``make faults`` runs (bench/faults.py: 100
kills, a 60 s desk outage, a 10,000-message backlog). The scenarios measure; the callers
decide what must hold. Every wait is bounded by a deadline.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .fakezendesk import IDEMPOTENCY_TTL_S, DeskAccount, Request
from .harness import Harness, Timing
from .load import Load, converse

__all__ = [
    "LONG",
    "POISON_CHAT",
    "SHORT",
    "Backlog",
    "DeskOutage",
    "Kills",
    "Mode",
    "Outcome",
    "PartKills",
    "RateLimit",
    "RedisRestarts",
    "attempts_within",
    "backlog",
    "desk_outage",
    "kill_between_parts",
    "kill_worker",
    "rate_limit",
    "restart_redis",
]


@dataclass(frozen=True, slots=True)
class Mode:
    name: str
    timing: Timing
    outage_timing: Timing
    """The 5xx outage needs a retry budget that outlasts it."""
    kills: int
    kill_chats: int
    kill_interval: float
    targeted_every: int
    """In every n kills, one lands in the duplicate window on purpose (the desk took a
    comment, deskbridge never heard back) and one in a ticket creation."""
    restarts: int
    redis_down_s: float
    restart_chats: int
    restart_interval: float
    outage_s: float
    outage_chats: int
    outage_messages: int
    outage_interval: float
    rate_limited_calls: int
    retry_after: float
    rate_chats: int
    rate_messages: int
    backlog: int
    backlog_chats: int
    drain_timeout: float
    part_kills: int = 3
    """Kills between the parts of 2-part replies (``kill_between_parts``)."""
    part_chats: int = 6


SHORT = Mode(
    name="short",
    timing=Timing(job_timeout_seconds=1.0, job_grace_seconds=0.5),
    outage_timing=Timing(job_timeout_seconds=1.0, job_grace_seconds=0.5),
    kills=3,
    kill_chats=40,
    kill_interval=0.8,
    targeted_every=3,
    restarts=1,
    redis_down_s=1.0,
    restart_chats=10,
    restart_interval=0.1,
    outage_s=3.0,
    outage_chats=8,
    outage_messages=8,
    outage_interval=0.25,
    rate_limited_calls=6,
    retry_after=1.0,
    rate_chats=4,
    rate_messages=4,
    backlog=300,
    backlog_chats=30,
    drain_timeout=40.0,
)

LONG = Mode(
    name="long",
    timing=Timing(job_timeout_seconds=2.0, job_grace_seconds=1.0),
    # 10 attempts, 1 s doubling to 30 s with equal jitter: at least 75 s of retries
    outage_timing=Timing(
        job_timeout_seconds=2.0,
        job_grace_seconds=1.0,
        retry_base_seconds=1.0,
        retry_cap_seconds=30.0,
    ),
    kills=100,
    kill_chats=100,
    kill_interval=2.0,
    targeted_every=10,
    restarts=5,
    redis_down_s=3.0,
    restart_chats=25,
    restart_interval=0.2,
    outage_s=60.0,
    outage_chats=50,
    outage_messages=40,
    outage_interval=1.5,
    rate_limited_calls=40,
    retry_after=5.0,
    rate_chats=20,
    rate_messages=10,
    backlog=10_000,
    backlog_chats=500,
    drain_timeout=600.0,
    part_kills=50,
    part_chats=20,
)


# -- what the desk got ---------------------------------------------------------------------


@dataclass
class Outcome:
    """What reached the desk of one account, against what the gateway acknowledged."""

    acked: int = 0
    delivered: int = 0
    lost: list[tuple[int, int]] = field(default_factory=list)
    dead_letters: int = 0
    pending: int = 0
    dup_tickets: int = 0
    dup_appends: int = 0
    out_of_order: int = 0
    drained: bool = False

    def row(self) -> dict[str, Any]:
        return {
            "acked": self.acked,
            "delivered": self.delivered,
            "lost": len(self.lost),
            "dead letters": self.dead_letters,
            "duplicate tickets": self.dup_tickets,
            "duplicate appends": self.dup_appends,
            "out of order": self.out_of_order,
        }


def outcome(desk: DeskAccount, load: Load, pending: int, dead: int, drained: bool) -> Outcome:
    acked = load.markers()
    filed = desk.markers()
    out_of_order = 0
    for chat in load.acked:
        order = desk.order(chat)
        out_of_order += sum(1 for a, b in itertools.pairwise(order) if b < a)
    return Outcome(
        acked=len(acked),
        delivered=len(acked & set(filed)),
        lost=sorted(acked - set(filed)),
        dead_letters=dead,
        pending=pending,
        dup_tickets=sum(n - 1 for n in desk.tickets_by_conv().values() if n > 1),
        dup_appends=sum(n - 1 for n in filed.values() if n > 1),
        out_of_order=out_of_order,
        drained=drained,
    )


async def settle(
    h: Harness, account: str, load: Load, limit: float, *, dead_ok: int = 0
) -> Outcome:
    """Wait (up to ``limit`` s) until nothing is pending and every acknowledged message
    is at the desk or dead (``dead_ok`` of them may be), then count."""
    desk = h.desk.account(account)
    expected = load.markers()
    deadline = time.monotonic() + limit
    drained = False
    while time.monotonic() < deadline:
        pending, dead = await h.counts(account)
        missing = len(expected - set(desk.markers()))
        if pending == 0 and missing <= dead <= dead_ok:
            drained = True
            break
        await asyncio.sleep(0.1)
    pending, dead = await h.counts(account)
    return outcome(desk, load, pending, dead, drained)


def attempts_within(window: float, t: Timing) -> int:
    """The most attempts one delivery can make in ``window`` seconds: equal jitter waits at
    least half of min(cap, base * 2^(n-1)) after failure n."""
    n, spent = 1, 0.0
    while n < t.max_attempts:
        spent += min(t.retry_cap_seconds, t.retry_base_seconds * 2 ** (n - 1)) / 2
        if spent > window:
            break
        n += 1
    return n


# -- 1. kill -9 of the worker --------------------------------------------------------------


@dataclass
class Kills:
    kills: int = 0
    targeted: int = 0
    """Kills aimed into a window: right after the desk took a comment or made a ticket."""
    in_creation: int = 0
    """Of those, kills while a ticket was being created."""
    in_flight: int = 0
    """Jobs the killed workers had in progress, summed over the kills: the most duplicate
    appends there can be."""
    keys_expired: int = 0
    """Kills after which the desk forgot every Idempotency-Key (the 2-hour window passed)."""
    seconds: float = 0.0
    outcome: Outcome = field(default_factory=Outcome)


async def kill_worker(h: Harness, mode: Mode, account: str = "kill") -> Kills:
    desk = h.desk.account(account)
    desk.latency = 0.01  # keeps deliveries in flight when the kill comes
    assert h.session is not None
    rng = random.Random(7)
    stop = asyncio.Event()
    chats = list(range(1000, 1000 + mode.kill_chats))
    started = time.monotonic()
    load_task = asyncio.create_task(
        converse(
            h.session,
            h.gateway_url,
            account,
            chats,
            100_000,
            interval=mode.kill_interval,
            stop=stop,
            deadline=mode.kills * 30.0,
        )
    )
    result = Kills()
    newcomers: list[asyncio.Task[Load]] = []
    try:
        await asyncio.sleep(mode.kill_interval)  # every chat has started writing
        for i in range(mode.kills):
            kind = _kill_kind(i, mode.targeted_every)
            if kind == "tickets/create":
                # a customer writes for the first time: the kill lands in ticket creation
                newcomers.append(
                    asyncio.create_task(
                        converse(h.session, h.gateway_url, account, [1900 + i], 1, deadline=60)
                    )
                )
            if kind:
                result.in_flight += await _kill_in_window(h, desk, kind)
                result.targeted += 1
                result.in_creation += kind == "tickets/create"
            else:
                await _until_busy(desk, limit=20)
                await asyncio.sleep(rng.uniform(0, 0.05))
                result.in_flight += await h.kill_worker()
            result.kills += 1
            if kind == "tickets/create" or i % 2 == 1:
                # past Zendesk's 2 hours: only the external_id lookup stands between a
                # repeated create and a second ticket
                h.desk.advance(IDEMPOTENCY_TTL_S + 60)
                result.keys_expired += 1
            await h.start_worker()
    finally:
        stop.set()
        load = await load_task
        for extra in await asyncio.gather(*newcomers):
            load.acked.update(extra.acked)
            load.responses += extra.responses
    desk.latency = 0.0
    result.outcome = await settle(h, account, load, mode.drain_timeout)
    result.seconds = time.monotonic() - started
    return result


async def _until_busy(desk: DeskAccount, limit: float) -> None:
    """Until the (new) worker has made a few desk calls."""
    seen = len(desk.requests)
    deadline = time.monotonic() + limit
    while len(desk.requests) < seen + 3 and time.monotonic() < deadline:  # noqa: ASYNC110 - counts another process's calls
        await asyncio.sleep(0.01)


def _kill_kind(i: int, every: int) -> str:
    """Which kill ``i`` is: random (""), or aimed at the answer to a comment or a new
    ticket (one of each in every ``every`` kills)."""
    if every < 2:
        return ""
    if i % every == every - 1:
        return "tickets/create"
    return "tickets/update" if i % every == every // 2 else ""


async def _kill_in_window(h: Harness, desk: DeskAccount, route: str, limit: float = 20) -> int:
    """Kill the worker the moment the desk has taken a comment (or created a ticket), before
    it answers: the answer is lost, the one case in which a comment can be filed twice."""
    killed: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def hook(answered: str) -> None:
        if answered == route and desk.before_answer is not None:
            desk.before_answer = None  # concurrent calls: only the first one kills
            killed.set_result(await h.kill_worker())

    desk.before_answer = hook
    try:
        return await asyncio.wait_for(killed, limit)
    except TimeoutError:
        return await h.kill_worker()
    finally:
        desk.before_answer = None


# -- 2. Redis restarted --------------------------------------------------------------------


@dataclass
class RedisRestarts:
    restarts: int = 0
    down_seconds: float = 0.0
    answers_while_down: dict[int, int] = field(default_factory=dict)
    """HTTP statuses of requests sent and answered while Redis was down (0 = no answer)."""
    refused: int = 0
    """503s in all (each retried by the load generator, as Telegram would)."""
    in_flight: int = 0
    """Jobs in progress when Redis stopped (their marks come back with the append-only
    file): the most duplicate appends there can be."""
    seconds: float = 0.0
    outcome: Outcome = field(default_factory=Outcome)


async def restart_redis(h: Harness, mode: Mode, account: str = "restart") -> RedisRestarts:
    assert h.session is not None
    h.desk.account(account).latency = 0.005
    stop = asyncio.Event()
    chats = list(range(2000, 2000 + mode.restart_chats))
    started = time.monotonic()
    load_task = asyncio.create_task(
        converse(
            h.session,
            h.gateway_url,
            account,
            chats,
            100_000,
            interval=mode.restart_interval,
            stop=stop,
            deadline=mode.restarts * (mode.redis_down_s + 30) + 30,
        )
    )
    result = RedisRestarts()
    windows: list[tuple[float, float]] = []
    try:
        for _ in range(mode.restarts):
            await asyncio.sleep(1.0)
            await h.stop_redis()
            down = time.monotonic()
            await asyncio.sleep(mode.redis_down_s)
            up = time.monotonic()
            windows.append((down, up))
            await h.start_redis()
            result.in_flight += await h.in_progress()
            result.restarts += 1
            result.down_seconds += up - down
        await asyncio.sleep(1.0)
    finally:
        stop.set()
        load = await load_task
    h.desk.account(account).latency = 0.0
    while_down: dict[int, int] = {}
    for start, end in windows:
        for status, n in load.between(start, end).items():
            while_down[status] = while_down.get(status, 0) + n
    result.answers_while_down = while_down
    result.refused = load.statuses()[503]
    result.outcome = await settle(h, account, load, mode.drain_timeout)
    result.seconds = time.monotonic() - started
    return result


# -- 3. the desk answers 5xx for a while ---------------------------------------------------

POISON_CHAT = 3999
"""The chat whose message the desk always refuses with a 500."""


@dataclass
class DeskOutage:
    outage_s: float = 0.0
    lanes: int = 0
    failed_attempts: int = 0
    """Delivery attempts that failed during the outage (from the delivery records)."""
    max_per_delivery: int = 0
    bound_per_delivery: int = 0
    """``attempts_within(outage)``: the most the backoff allows one delivery."""
    desk_calls_failed: int = 0
    poison_attempts: int = 0
    poison_reason: str = ""
    seconds: float = 0.0
    outcome: Outcome = field(default_factory=Outcome)


async def desk_outage(
    h: Harness, mode: Mode, account: str = "outage", timing: Timing | None = None
) -> DeskOutage:
    """5xx for ``outage_s`` while customers keep writing; one extra message always gets a
    500 (a poison message), so it must become a dead letter after exactly the budget."""
    assert h.session is not None
    timing = timing or h.timing
    desk = h.desk.account(account)
    desk.poison = f"c{POISON_CHAT} m0"
    chats = list(range(3000, 3000 + mode.outage_chats))
    started = time.monotonic()
    load_task = asyncio.create_task(
        converse(
            h.session,
            h.gateway_url,
            account,
            [*chats, POISON_CHAT],
            mode.outage_messages,
            interval=mode.outage_interval,
            deadline=mode.outage_s + 60,
        )
    )
    await asyncio.sleep(0.5)
    wall_start = time.time()
    h.desk.fail_for(account, mode.outage_s)
    await asyncio.sleep(mode.outage_s)
    wall_end = time.time()
    load = await load_task
    result = DeskOutage(outage_s=wall_end - wall_start)
    result.outcome = await settle(h, account, load, mode.drain_timeout, dead_ok=1)
    result.desk_calls_failed = sum(1 for r in desk.requests if r.status >= 500 and not _poison(r))
    result.bound_per_delivery = attempts_within(result.outage_s + 0.5, timing)
    lanes: set[str] = set()
    for d in await h.deliveries(account):
        during = [
            a
            for a in d["attempt_log"]
            if a["outcome"] == "retry" and wall_start <= _epoch(a["at"]) <= wall_end + 0.5
        ]
        if d.get("state") == "dead":
            result.poison_attempts = int(d["attempts"])
            result.poison_reason = d.get("reason", "")
            continue
        if during:
            lanes.add(d["conversation_id"])
        result.failed_attempts += len(during)
        result.max_per_delivery = max(result.max_per_delivery, len(during))
    result.lanes = len(lanes)
    result.seconds = time.monotonic() - started
    desk.poison = None
    return result


def _poison(r: Request) -> bool:
    return r.marker is not None and r.marker[0] == POISON_CHAT


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


# -- 4. 429 with Retry-After ---------------------------------------------------------------


@dataclass
class RateLimit:
    retry_after: float = 0.0
    answered_429: int = 0
    gaps: list[float] = field(default_factory=list)
    """Seconds from each 429 to the next call for the same conversation."""
    budget_spent: list[int] = field(default_factory=list)
    """Budget attempts of the deliveries that were rate limited (1 = only the success)."""
    seconds: float = 0.0
    outcome: Outcome = field(default_factory=Outcome)


async def rate_limit(h: Harness, mode: Mode, account: str = "ratelimit") -> RateLimit:
    assert h.session is not None
    desk = h.desk.account(account)
    h.desk.rate_limit(account, mode.rate_limited_calls, mode.retry_after)
    chats = list(range(4000, 4000 + mode.rate_chats))
    started = time.monotonic()
    load = await converse(h.session, h.gateway_url, account, chats, mode.rate_messages, deadline=60)
    result = RateLimit(retry_after=mode.retry_after)
    result.outcome = await settle(h, account, load, mode.drain_timeout)
    by_conv: dict[str, list[Request]] = {}
    for r in desk.requests:
        if r.conv is not None:
            by_conv.setdefault(r.conv, []).append(r)
    for calls in by_conv.values():
        calls.sort(key=lambda r: r.at)
        for a, b in itertools.pairwise(calls):
            if a.status == 429:
                result.gaps.append(b.at - a.at)
    result.answered_429 = sum(1 for r in desk.requests if r.status == 429)
    for d in await h.deliveries(account):
        if any(a["outcome"] == "rate_limited" for a in d["attempt_log"]):
            result.budget_spent.append(int(d["attempts"]))
    result.seconds = time.monotonic() - started
    return result


# -- 5. draining a backlog -----------------------------------------------------------------


@dataclass
class Backlog:
    messages: int = 0
    chats: int = 0
    intake_seconds: float = 0.0
    drain_seconds: float = 0.0
    """From the worker's start to the last message at the desk."""
    first_to_last: float = 0.0
    """From the first message at the desk to the last."""
    outcome: Outcome = field(default_factory=Outcome)

    @property
    def rate(self) -> float:
        return self.messages / self.drain_seconds if self.drain_seconds else 0.0


async def backlog(h: Harness, mode: Mode, account: str = "backlog") -> Backlog:
    """The worker is down (an outage, a deploy) while ``backlog`` messages come in; then it
    starts and the backlog drains."""
    assert h.session is not None
    desk = h.desk.account(account)
    await h.stop_worker()
    per_chat = max(1, mode.backlog // mode.backlog_chats)
    chats = list(range(10_000, 10_000 + mode.backlog_chats))
    t0 = time.monotonic()
    load = await converse(h.session, h.gateway_url, account, chats, per_chat, deadline=600)
    result = Backlog(messages=load.acked_count, chats=len(chats))
    result.intake_seconds = time.monotonic() - t0
    start = time.monotonic()
    await h.start_worker()
    result.outcome = await settle(h, account, load, mode.drain_timeout)
    if desk.comments:
        result.drain_seconds = desk.comments[-1].at - start
        result.first_to_last = desk.comments[-1].at - desk.comments[0].at
    return result


# -- 6. kill -9 between the parts of 2-part replies ------------------------------------------


@dataclass
class PartKills:
    kills: int = 0
    between: int = 0
    """Kills that came while a reply had its first part at Telegram and not its second."""
    replies: int = 0
    parts: int = 0
    delivered: int = 0
    """Replies whose delivery the store holds as delivered."""
    lost: int = 0
    """Parts Telegram never got."""
    sent_twice: int = 0
    """Extra copies of parts at Telegram (it has no idempotency key)."""
    counted: int = 0
    """Resends after an unknown outcome, as the attempt logs count them."""
    drained: bool = False
    seconds: float = 0.0


def _two_parts(tag: str) -> tuple[str, tuple[str, str]]:
    # two paragraphs that each fill most of a Telegram message (4096 UTF-16 units)
    first, second = (f"{tag} part {p} " + "x" * 3900 for p in (1, 2))
    return f"{first}\n\n{second}", (first, second)


async def kill_between_parts(h: Harness, mode: Mode, account: str = "parts") -> PartKills:
    """Agents answer ``part_chats`` customers with 2-part replies, round after round; in
    each round the worker is killed (``kill -9``) once a reply has its first part at the
    fake Telegram and not yet its second. Counts what Telegram got against the store."""
    import httpx

    from deskbridge.config import Settings, parse_accounts
    from deskbridge.flows import Runtime
    from deskbridge.flows.ingest import accept_replies
    from deskbridge.schemas import AgentReply, Desk
    from deskbridge.store import Vault, connect
    from deskbridge.store.crypto import decode_key

    assert h.session is not None
    started = time.monotonic()
    result = PartKills()
    chats = list(range(5000, 5000 + mode.part_chats))
    load = await converse(h.session, h.gateway_url, account, chats, 1, deadline=60)
    await settle(h, account, load, mode.drain_timeout)
    desk = h.desk.account(account)
    tickets = list(desk.tickets)
    settings = Settings.model_validate(
        {"redis_url": h.redis_url, "encryption_key": h.encryption_key}
    )
    client = connect(h.redis_url)
    vault = Vault.from_secret(decode_key(h.encryption_key))
    accounts = parse_accounts(json.dumps(h.accounts_doc()))
    async with httpx.AsyncClient() as http:
        rt = Runtime.build(settings, accounts, client, vault, http)
        expected: dict[str, tuple[str, str]] = {}
        h.telegram.latency = 0.02  # answers are in flight when the kill comes
        try:
            for k in range(mode.part_kills):
                replies = []
                for tid in tickets:
                    tag = f"r{k}-t{tid}"
                    text, parts = _two_parts(tag)
                    expected[tag] = parts
                    replies.append(
                        AgentReply(
                            account=account,
                            desk=Desk.ZENDESK,
                            dedup_key=f"parts-{tag}",
                            ticket_id=str(tid),
                            external_id=f"agent-{tag}",
                            text=text,
                            occurred_at=datetime.now().astimezone(),
                        )
                    )
                await accept_replies(rt, account, "zendesk", None, replies)
                result.replies += len(replies)
                result.between += await _kill_between(h, list(expected.items()), limit=20)
                result.kills += 1
                await h.start_worker()
        finally:
            h.telegram.latency = 0.0
            await client.aclose()
    deadline = time.monotonic() + mode.drain_timeout
    while time.monotonic() < deadline:
        pending, _ = await h.counts(account)
        if pending == 0:
            result.drained = True
            break
        await asyncio.sleep(0.1)
    copies = h.telegram.copies()
    texts = Counter(text for (_, text), n in copies.items() for _ in range(n))
    for first, second in expected.values():
        for part in (first, second):
            result.parts += 1
            n = texts.get(part, 0)
            result.lost += n == 0
            result.sent_twice += max(0, n - 1)
    records = [d for d in await h.deliveries(account) if d.get("direction") == "outbound"]
    result.delivered = sum(1 for d in records if d.get("state") == "delivered")
    result.counted = sum(
        1 for d in records for a in d["attempt_log"] if a.get("outcome") == "resent"
    )
    result.seconds = time.monotonic() - started
    return result


async def _kill_between(
    h: Harness, replies: list[tuple[str, tuple[str, str]]], limit: float
) -> int:
    """Kill the worker once some reply has its first part at Telegram and not its second
    (or after ``limit`` seconds); 1 when the kill came between parts."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        got = {text for _, text in h.telegram.sent}
        if any(first in got and second not in got for _, (first, second) in replies):
            await h.kill_worker()
            return 1
        await asyncio.sleep(0.002)
    await h.kill_worker()
    return 0
