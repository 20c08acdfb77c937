"""deskbridge under faults, long versions: ``make faults`` (``.venv/bin/python bench/faults.py``).

Runs the scenarios of ``tests/faults/scenarios.py`` with the ``LONG`` settings (100
``kill -9`` of the worker under load, Redis restarted 5 times under load, a 60 s desk
outage, 429s with Retry-After, a 10,000-message backlog, 50 kills between the parts of
2-part replies; ``kill -9`` of the Redis primary behind three Sentinels, with one and
with two replicas: ``--only failover,failover2`` writes those rows into their own
section), each in a fresh harness of real
processes on 127.0.0.1 (its own append-only redis-server in a temporary directory, never
the shared Redis), prints a markdown table and writes it into docs/reliability.md between
its markers. ``--mode short`` runs what ``make test`` runs; ``--only kill,backlog`` picks
scenarios. The exit code is 1 when a guarantee did not hold, 2 when something could not run.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
import re
import signal
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.faults import scenarios as s  # noqa: E402
from tests.faults.harness import Harness, HarnessError, Timing  # noqa: E402
from tests.faults.sentinel import FailoverHarness, failover  # noqa: E402

DOCS = ROOT / "docs" / "reliability.md"
BEGIN = "<!-- faults:results:begin -->"
END = "<!-- faults:results:end -->"

Row = dict[str, str]


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores (nproc), {model}, {platform.system()} {platform.release()}"


def _common(o: s.Outcome) -> Row:
    return {
        "acked": str(o.acked),
        "delivered": str(o.delivered),
        "lost": str(len(o.lost)),
        "dead letters": str(o.dead_letters),
        "dup. tickets": str(o.dup_tickets),
        "out of order": str(o.out_of_order),
    }


def _ok(o: s.Outcome, dead: int = 0) -> list[str]:
    """What did not hold. Every count comes from the store's own delivery states: a
    message is lost only when the store calls it delivered and the desk does not hold it,
    or when the gateway acknowledged it and the store holds no delivery for it."""
    bad = []
    if not o.drained or o.store_pending:
        bad.append(f"not drained ({o.pending} pending, {o.store_pending} acknowledged)")
    if o.lost:
        vanished = len(o.lost) - o.unrecorded
        bad.append(
            f"lost {len(o.lost)} ({vanished} delivered by the store but not at the desk, "
            f"{o.unrecorded} acknowledged without a delivery)"
        )
    if o.dead_letters != dead or o.store_dead != dead:
        bad.append(f"dead {o.dead_letters} (expected {dead})")
    unexplained = len(o.missing) - o.store_dead - o.store_pending
    if unexplained > 0 and not o.lost:
        bad.append(f"{unexplained} not at the desk, neither dead nor pending")
    if o.dup_tickets:
        bad.append(f"{o.dup_tickets} duplicate tickets")
    if o.out_of_order:
        bad.append(f"{o.out_of_order} out of order")
    return bad


async def run_kill(mode: s.Mode) -> tuple[Row, list[str]]:
    async with Harness(["kill"], mode.timing, log_level="WARNING") as h:
        r = await s.kill_worker(h, mode)
    o = r.outcome
    row = {
        "scenario": f"`kill -9` of the worker, {r.kills}x under load",
        "faults": f"{r.targeted - r.in_creation} kills right after a comment was filed, "
        f"{r.in_creation} right after a ticket was created; idempotency keys expired "
        f"after {r.keys_expired}",
        **_common(o),
        "dup. appends": f"{o.dup_appends} (window: {r.in_flight} in flight)",
        "measured": f"{r.seconds:.0f} s in all",
    }
    bad = _ok(o)
    if o.dup_appends > r.in_flight:
        bad.append("duplicate appends beyond the window")
    return row, bad


async def run_restart(mode: s.Mode) -> tuple[Row, list[str]]:
    async with Harness(["restart"], mode.timing, log_level="WARNING") as h:
        r = await s.restart_redis(h, mode)
    o = r.outcome
    down = ", ".join(f"{k or 'no answer'}: {v}" for k, v in sorted(r.answers_while_down.items()))
    row = {
        "scenario": f"Redis restarted {r.restarts}x under load (AOF everysec)",
        "faults": f"{r.down_seconds:.0f} s down in all",
        **_common(o),
        "dup. appends": f"{o.dup_appends} (window: {r.in_flight} in flight)",
        "measured": f"answers while down: {down or 'none'}; {r.refused} 503s retried",
    }
    bad = _ok(o)
    if not r.answers_while_down.get(503) or set(r.answers_while_down) - {503}:
        bad.append(f"answers while Redis was down: {r.answers_while_down}")
    if o.dup_appends > r.in_flight:
        bad.append("duplicate appends beyond the window")
    return row, bad


async def run_outage(mode: s.Mode) -> tuple[Row, list[str]]:
    async with Harness(["outage"], mode.outage_timing, log_level="WARNING") as h:
        r = await s.desk_outage(h, mode)
    o = r.outcome
    t = mode.outage_timing
    row = {
        "scenario": f"desk answers 5xx for {r.outage_s:.0f} s, then recovers",
        "faults": f"backoff {t.retry_base_seconds:g}-{t.retry_cap_seconds:g} s, "
        f"budget {t.max_attempts}; 1 message always 500",
        **_common(o),
        "dup. appends": str(o.dup_appends),
        "measured": f"{r.failed_attempts} failed attempts over {r.lanes} lanes "
        f"({r.failed_attempts / max(r.outage_s, 1e-9):.1f}/s), at most {r.max_per_delivery} "
        f"per delivery (backoff allows {r.bound_per_delivery}); dead letter after "
        f"{r.poison_attempts} attempts ({r.poison_reason})",
    }
    bad = _ok(o, dead=1)
    if r.max_per_delivery > r.bound_per_delivery:
        bad.append("a delivery retried faster than its backoff")
    if r.poison_attempts != t.max_attempts or r.poison_reason != "exhausted":
        bad.append(f"dead letter after {r.poison_attempts} attempts ({r.poison_reason})")
    return row, bad


async def run_rate_limit(mode: s.Mode) -> tuple[Row, list[str]]:
    async with Harness(["ratelimit"], mode.timing, log_level="WARNING") as h:
        r = await s.rate_limit(h, mode)
    o = r.outcome
    gaps = sorted(r.gaps)
    measured = (
        f"wait after 429: min {gaps[0]:.3f} s, median {statistics.median(gaps):.3f} s, "
        f"max {gaps[-1]:.3f} s; budget spent per delivery: {sorted(set(r.budget_spent))}"
        if gaps
        else "no 429 answered"
    )
    row = {
        "scenario": f"desk answers 429, Retry-After {r.retry_after:g} s",
        "faults": f"{r.answered_429} answers 429",
        **_common(o),
        "dup. appends": str(o.dup_appends),
        "measured": measured,
    }
    bad = _ok(o)
    if not gaps or gaps[0] < r.retry_after - 0.001:
        bad.append("a retry came before Retry-After")
    if set(r.budget_spent) != {1}:
        bad.append(f"429 waits spent budget: {r.budget_spent}")
    return row, bad


async def run_backlog(mode: s.Mode) -> tuple[Row, list[str]]:
    async with Harness(["backlog"], mode.timing, log_level="WARNING") as h:
        r = await s.backlog(h, mode)
    o = r.outcome
    row = {
        "scenario": f"drain a {r.messages:,}-message backlog ({r.chats} conversations)",
        "faults": f"worker stopped while they came in ({r.intake_seconds:.1f} s)",
        **_common(o),
        "dup. appends": str(o.dup_appends),
        "measured": f"drained in {r.drain_seconds:.1f} s from the worker's start "
        f"({r.rate:.0f} messages/s; {r.first_to_last:.1f} s first to last)",
    }
    return row, _ok(o)


async def run_parts(mode: s.Mode) -> tuple[Row, list[str]]:
    async with Harness(["parts"], mode.timing, log_level="WARNING") as h:
        r = await s.kill_between_parts(h, mode)
    row = {
        "scenario": f"`kill -9` of the worker between the parts of 2-part replies, "
        f"{r.kills}x under load",
        "faults": f"{r.between} kills while a reply had its first part at Telegram "
        "and not its second",
        "acked": str(r.replies),
        "delivered": str(r.delivered),
        "lost": f"{r.lost} parts",
        "measured": f"{r.parts} parts; parts sent twice: {r.sent_twice} (Telegram has no "
        f"idempotency key; counted as ambiguous resends: {r.counted}); "
        f"{r.seconds:.0f} s in all",
    }
    bad = []
    if not r.drained or r.delivered != r.replies:
        bad.append(f"not drained ({r.delivered} of {r.replies} replies delivered)")
    if r.lost:
        bad.append(f"{r.lost} parts lost")
    if r.sent_twice > r.counted:
        bad.append(f"{r.sent_twice - r.counted} parts sent twice without being counted")
    return row, bad


async def _failover(mode: s.Mode, replicas: int) -> tuple[Row, list[str]]:
    long = mode.name == "long"
    # a chat writes every 2 s (as the kill runs do): faster, one conversation would spend
    # the desk's 30 updates per ticket per 10 minutes and wait on it, not on Redis
    chats, interval = (100, 2.0) if long else (16, 0.2)
    async with FailoverHarness(
        ["failover"], mode.timing, replicas=replicas, log_level="WARNING"
    ) as h:
        r = await failover(
            h,
            account="failover",
            chats=chats,
            interval=interval,
            before_s=10.0 if long else 2.0,
            after_s=10.0 if long else 1.5,
            restart_delay_s=2.0 if long else 0.5,
            drain_timeout=mode.drain_timeout,
        )
    o = r.outcome
    refused = ", ".join(
        f"{k or 'no answer'}: {v}" for k, v in sorted(r.statuses.items()) if k != 200
    )
    row = {
        "scenario": f"`kill -9` of the Redis primary under load ({chats / interval:.0f} msg/s), "
        f"2 gateways, 2 workers, {replicas} replica(s), 3 Sentinels, WAIT 1",
        "faults": f"{r.killed} killed; {r.promoted} primary after {r.switch_s:.1f} s; "
        f"{r.killed} restarted as a replica {r.rejoin_s:.1f} s after the kill",
        **_common(o),
        "dup. appends": f"{o.dup_appends} (window: {r.in_flight} in flight)",
        "measured": f"not acknowledged for {r.refused_s:.1f} s ({refused or 'none'}, each "
        f"retried); first ack {r.first_ack_s:.1f} s after the kill; /readyz after: "
        f"{r.ready_after}",
    }
    bad = _ok(o)
    if o.dup_appends > r.in_flight:
        bad.append("duplicate appends beyond the window")
    if set(r.statuses) - {200, 503, 0}:
        bad.append(f"answers other than 200/503/none: {r.statuses}")
    if any(code != 200 for code in r.ready_after):
        bad.append(f"not ready again by itself: {r.ready_after}")
    return row, bad


async def run_failover(mode: s.Mode) -> tuple[Row, list[str]]:
    """One replica: with WAIT 1, nothing is acknowledged until a replica is back."""
    return await _failover(mode, replicas=1)


async def run_failover2(mode: s.Mode) -> tuple[Row, list[str]]:
    """Two replicas: the one left is a replica of the new primary at once."""
    return await _failover(mode, replicas=2)


SCENARIOS: dict[str, Callable[[s.Mode], Awaitable[tuple[Row, list[str]]]]] = {
    "kill": run_kill,
    "restart": run_restart,
    "outage": run_outage,
    "ratelimit": run_rate_limit,
    "backlog": run_backlog,
    "parts": run_parts,
    "failover": run_failover,
    "failover2": run_failover2,
}
FAILOVER = ("failover", "failover2")
"""Written between their own markers (``FAILOVER_BEGIN``), with or without ``--only``."""
FAILOVER_BEGIN = "<!-- faults:failover:begin -->"
FAILOVER_END = "<!-- faults:failover:end -->"

COLUMNS = [
    "scenario",
    "faults",
    "acked",
    "delivered",
    "lost",
    "dead letters",
    "dup. tickets",
    "dup. appends",
    "out of order",
    "measured",
]


def table(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(r.get(c, "") for c in COLUMNS) + " |" for r in rows]
    return "\n".join(lines)


def timing_line(t: Timing) -> str:
    return (
        f"job timeout {t.job_timeout_seconds:g} s + grace {t.job_grace_seconds:g} s, "
        f"retry {t.retry_base_seconds:g}-{t.retry_cap_seconds:g} s, budget {t.max_attempts}, "
        f"sweeper every {t.sweep_interval_seconds:g} s"
    )


def write_docs(block: str, begin: str = BEGIN, end: str = END) -> None:
    text = DOCS.read_text()
    pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
    if not pattern.search(text):
        raise SystemExit(f"faults: {DOCS} has no {begin} ... {end} markers")
    DOCS.write_text(pattern.sub(lambda _: f"{begin}\n{block}\n{end}", text))


async def main(args: argparse.Namespace) -> int:
    # SIGTERM (and SIGINT, which a background job ignores) stops the run cleanly: every
    # harness on the way out stops its processes
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    mode = s.LONG if args.mode == "long" else s.SHORT
    names = args.only.split(",") if args.only else list(SCENARIOS)
    rows: list[Row] = []
    failures: list[str] = []
    started = time.monotonic()
    for name in names:
        print(f"faults: {name} ({mode.name}) ...", file=sys.stderr, flush=True)
        t0 = time.monotonic()
        row, bad = await SCENARIOS[name](mode)
        print(f"faults: {name} done in {time.monotonic() - t0:.0f} s", file=sys.stderr)
        rows.append(row)
        failures += [f"{name}: {b}" for b in bad]
    today = datetime.date.today().isoformat()
    block = "\n".join(
        [
            f"Run of {today} (`make faults`, mode {mode.name}, "
            f"{time.monotonic() - started:.0f} s) on {machine()}.",
            "",
            f"Worker settings: {timing_line(mode.timing)}; the outage run: "
            f"{timing_line(mode.outage_timing)}.",
            "",
            table(rows),
            "",
            "Guarantees: " + ("all held." if not failures else "NOT HELD: " + "; ".join(failures)),
        ]
    )
    print(block)
    if args.docs and not args.only:
        write_docs(block)
        print(f"faults: wrote the results into {DOCS.relative_to(ROOT)}", file=sys.stderr)
    elif args.docs and set(names) == set(FAILOVER):
        write_docs(block, FAILOVER_BEGIN, FAILOVER_END)
        print(f"faults: wrote the failover results into {DOCS.relative_to(ROOT)}", file=sys.stderr)
    return 1 if failures else 0


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--mode", choices=["long", "short"], default="long")
    parser.add_argument("--only", default="", help="comma-separated: " + ",".join(SCENARIOS))
    parser.add_argument("--no-docs", dest="docs", action="store_false")
    args = parser.parse_args(argv)
    unknown = set(filter(None, args.only.split(","))) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    try:
        return asyncio.run(main(args))
    except HarnessError as exc:
        print(f"faults: could not run: {exc}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("faults: stopped", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(cli())
