"""Scaling measurements: ``make bench ARGS=--scale`` (``.venv/bin/python bench/scale.py``).

Everything on 127.0.0.1, against a private append-only redis-server (as ``bench/run.py``):

1. **gateway processes**: the same bounded load (wrk, ``--connections`` keep-alive
   connections for ``--duration`` seconds of signed ~1 KB Telegram webhooks) against
   ``deskbridge serve`` with 1 and then 2 processes (``--processes 2``), no worker
   running: acks/s, latency, CPU, and the factor 2 / 1. Rounds alternate 1, 2, 1, 2 so
   that other load on a shared machine falls on both;
2. **workers**: the same backlog (``--messages`` webhooks over ``--chats``
   conversations, acked with no worker running), then 1 or 2 ``deskbridge worker``
   filing it into a fake Zendesk that answers every call after ``--desk-latency``
   seconds: messages/s at the desk in the steady part of the drain (10 %..90 % of
   arrivals, so worker start-up is not counted), and the factor 2 / 1;
3. **Redis per message**: commands (``INFO`` ``total_commands_processed``) on the ack path
   and in the worker, append-only file bytes, and memory by key kind with each kind's
   TTL, from which docs/deployment.md's capacity plan is computed.

Prints a table, writes ``.bench/scale.json`` and, with ``--write-docs``, the block
between the markers in docs/deployment.md. The exit code is non-zero only when something
could not run.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from fakedesk import FakeZendesk
from loadgen import http_post, open_loop, telegram_update
from run import (
    ACCOUNT,
    BODY_SIZE,
    SECRET,
    BenchError,
    CpuMeter,
    PrivateRedis,
    Procs,
    deskbridge_env,
    free_port,
    run_wrk,
    tool,
    wait_ready,
    write_config,
)

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / ".bench"
DOCS = ROOT / "docs" / "deployment.md"
BEGIN = "<!-- scale:results:begin -->"
END = "<!-- scale:results:end -->"

BASE_GATEWAY = 70_000_000_000
BASE_BACKLOG = 80_000_000_000
ROUND = 1_000_000_000
_KIND = re.compile(r"^db:\{[^}]*\}:([a-z]+)")


def redis_info(store: PrivateRedis) -> dict[str, Any]:
    client = store.client()
    try:
        info: dict[str, Any] = {}
        for section in ("stats", "memory", "persistence"):
            info.update(client.info(section))  # type: ignore[arg-type]
        commands: Any = client.info("commandstats")
        info["calls"] = {k.removeprefix("cmdstat_"): v["calls"] for k, v in commands.items()}
        return info
    finally:
        client.close()


def key_census(store: PrivateRedis) -> dict[str, dict[str, float]]:
    """Every key by kind (``db:{a}:<kind>:...``; others by their first segment): count,
    bytes (``MEMORY USAGE``) and the median TTL in days (-1: none)."""
    client = store.client()
    kinds: dict[str, dict[str, Any]] = {}
    try:
        for key in client.scan_iter(count=1000):
            name = key.decode()
            m = _KIND.match(name)
            kind = m.group(1) if m else name.split(":", 1)[0]
            usage = client.memory_usage(key) or 0
            ttl = client.ttl(key)
            entry = kinds.setdefault(kind, {"keys": 0, "bytes": 0, "ttls": []})
            entry["keys"] += 1
            entry["bytes"] += int(usage)  # type: ignore[arg-type]
            entry["ttls"].append(int(ttl))  # type: ignore[arg-type]
    finally:
        client.close()
    out: dict[str, dict[str, float]] = {}
    for kind, e in sorted(kinds.items()):
        ttls = sorted(e["ttls"])
        median = ttls[len(ttls) // 2]
        out[kind] = {
            "keys": e["keys"],
            "bytes": e["bytes"],
            "ttl_days": round(median / 86400, 1) if median > 0 else -1,
        }
    return out


def listening_children(parent: int, port: int) -> set[int]:
    """The children of ``parent`` holding a socket that listens on TCP ``port``."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{fields[9]}]")
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if stat[1] != str(parent):
                continue
            if any(os.readlink(fd) in inodes for fd in (entry / "fd").iterdir()):
                found.add(int(entry.name))
        except OSError:
            continue
    return found


def start_gateway(
    procs: Procs, workdir: Path, store: PrivateRedis, config: Path, key: str, processes: int
) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    args = [tool("deskbridge"), "serve"]
    if processes > 1:
        args += ["--processes", str(processes)]
    name = f"serve-{processes}"
    proc = procs.spawn(name, args, env=deskbridge_env(workdir, store.url, config, key, port))
    wait_ready(procs, name, proc, port, "/readyz", timeout=90)
    if processes > 1:  # every child listening, not only the first to answer
        deadline = time.monotonic() + 90
        while len(listening_children(proc.pid, port)) < processes:
            if time.monotonic() > deadline:
                raise BenchError(f"{name}: not every process listens:\n{procs.log_tail(name)}")
            time.sleep(0.2)
    return proc, port


def gateway_round(
    procs: Procs,
    workdir: Path,
    store: PrivateRedis,
    config: Path,
    key: str,
    processes: int,
    base: int,
    args: argparse.Namespace,
) -> dict[str, Any]:
    proc, port = start_gateway(procs, workdir, store, config, key, processes)
    path = f"/webhooks/telegram/{ACCOUNT}"
    try:
        # warm-up: connections, caches, the first AOF growth
        run_wrk(procs, port, path, seconds=2, base=base, connections=args.connections, threads=1)
        store.reset()
        before = redis_info(store)
        wrk = run_wrk(
            procs, port, path, seconds=args.duration, base=base + ROUND // 2,
            connections=args.connections, threads=1,
            watch={"gateway": proc.pid, "redis": store.pid},
        )  # fmt: skip
        time.sleep(1.5)  # the last appends reach the file (appendfsync everysec)
        after = redis_info(store)
        stored = store.count(f"db:{{{ACCOUNT}}}:pending")
    finally:
        procs.stop(proc, timeout=70)
    acks = wrk.requests - wrk.non2xx
    rate = acks / wrk.duration_s
    return {
        "processes": processes,
        "acks_per_s": rate,
        "gateway_cpu_ms_per_ack": wrk.cpu["gateway"] / rate * 1000,
        "redis_cpu_ms_per_ack": wrk.cpu["redis"] / rate * 1000,
        "p50_ms": wrk.p50_ms,
        "p99_ms": wrk.p99_ms,
        "cpu": wrk.cpu,
        "acks": acks,
        "stored": stored,
        "commands_per_ack": (after["total_commands_processed"] - before["total_commands_processed"])
        / max(1, acks),
        "aof_bytes_per_ack": (after["aof_current_size"] - before["aof_current_size"])
        / max(1, acks),
        "memory_per_ack": (after["used_memory"] - before["used_memory"]) / max(1, acks),
    }


async def fill_backlog(port: int, n: int, chats: int, base: int) -> int:
    """``n`` webhooks over ``chats`` conversations at a gentle fixed rate; the acks."""
    path = f"/webhooks/telegram/{ACCOUNT}"
    headers = {"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": SECRET}
    date = int(time.time())
    requests = [
        http_post(
            "127.0.0.1",
            port,
            path,
            telegram_update(
                base + k, 300000 + k % chats, f"scale e2e-{k} ", size=BODY_SIZE, date=date
            ),
            headers,
        )
        for k in range(n)
    ]
    res = await open_loop(
        "127.0.0.1", port, requests, rate=300, warmup_s=0, connections=16, drain_timeout_s=30
    )
    ok = sum(c for s, c in res.statuses.items() if 200 <= s < 300)
    if ok != n:
        raise BenchError(f"backlog: {ok} of {n} acked ({res.statuses})")
    return ok


async def worker_round(
    procs: Procs,
    workdir: Path,
    store: PrivateRedis,
    key: str,
    workers: int,
    base: int,
    args: argparse.Namespace,
) -> dict[str, Any]:
    desk = FakeZendesk(latency_s=args.desk_latency)
    desk_port = await desk.start()
    config = write_config(
        workdir / "accounts-desk.yaml",
        {
            "type": "zendesk",
            "base_url": f"http://127.0.0.1:{desk_port}",
            "email": "bench@example.com",
            "api_token": "x",
            "webhook_secret": "y",
        },
    )
    started: list[subprocess.Popen[bytes]] = []
    try:
        store.reset()
        gw, gw_port = start_gateway(procs, workdir, store, config, key, 1)
        started.append(gw)
        await fill_backlog(gw_port, args.messages, args.chats, base)
        procs.stop(gw, timeout=70)
        started.remove(gw)
        before = redis_info(store)
        env_extra = {"DESKBRIDGE_MAX_JOBS": str(args.max_jobs)}
        pids = {}
        for w in range(workers):
            port = free_port()
            env = {**deskbridge_env(workdir, store.url, config, key, port), **env_extra}
            proc = procs.spawn(f"worker-{w}", [tool("deskbridge"), "worker"], env=env)
            started.append(proc)
            pids[f"worker-{w}"] = proc.pid
        deadline = time.monotonic() + args.drain_timeout
        meter: CpuMeter | None = None
        while len(desk.arrivals) < args.messages:
            if meter is None and desk.arrivals:  # CPU from the first filing on: no start-up
                meter, first = CpuMeter({**pids, "redis": store.pid}), len(desk.arrivals)
                metered_from, before = time.monotonic(), redis_info(store)
            if time.monotonic() > deadline:
                raise BenchError(
                    f"workers={workers}: {len(desk.arrivals)} of {args.messages} at the desk "
                    f"after {args.drain_timeout:.0f}s:\n{procs.log_tail('worker-0')}"
                )
            for w, proc in enumerate(started):
                if proc.poll() is not None:
                    raise BenchError(f"worker-{w} exited:\n{procs.log_tail(f'worker-{w}')}")
            await asyncio.sleep(0.05)
        if meter is None:
            raise BenchError("the backlog was filed before a worker was seen starting")
        window = time.monotonic() - metered_from
        cpu = meter.stop()
        after = redis_info(store)
        # the same workers with nothing to do: what polling and heartbeats cost per second
        idle_meter, idle_before = CpuMeter({**pids, "redis": store.pid}), redis_info(store)
        await asyncio.sleep(args.idle)
        idle_cpu = idle_meter.stop()
        idle_after = redis_info(store)
        census = key_census(store)
    finally:
        for proc in started:
            procs.stop(proc, timeout=70)
        await desk.stop()
    times = sorted(at for at, _ in desk.arrivals.values())
    lo, hi = int(len(times) * 0.1), int(len(times) * 0.9)
    rate = (hi - 1 - lo) / (times[hi - 1] - times[lo])
    metered = args.messages - first
    worker_cores = sum(v for k, v in cpu.items() if k.startswith("worker-"))
    idle_worker_cores = sum(v for k, v in idle_cpu.items() if k.startswith("worker-"))
    commands = after["total_commands_processed"] - before["total_commands_processed"]
    idle_commands = idle_after["total_commands_processed"] - idle_before["total_commands_processed"]
    idle_per_s = idle_commands / args.idle
    calls = {
        k: (v - before["calls"].get(k, 0)) / metered
        for k, v in after["calls"].items()
        if v - before["calls"].get(k, 0) > 0
    }
    return {
        "workers": workers,
        "messages_per_s": rate,
        "cpu": cpu,
        "worker_cpu_ms_per_message": worker_cores * window / metered * 1000,
        "redis_cpu_ms_per_message": cpu["redis"] * window / metered * 1000,
        "desk_calls_per_message": sum(desk.calls.values()) / args.messages,
        "commands_per_message": commands / metered,
        "idle_commands_per_s": idle_per_s,
        "idle_worker_cores": idle_worker_cores,
        "idle_redis_cores": idle_cpu["redis"],
        "net_commands_per_message": (commands - idle_per_s * window) / metered,
        "net_worker_cpu_ms_per_message": (worker_cores - idle_worker_cores)
        * window
        / metered
        * 1000,
        "net_redis_cpu_ms_per_message": (cpu["redis"] - idle_cpu["redis"])
        * window
        / metered
        * 1000,
        "top_commands": dict(sorted(calls.items(), key=lambda kv: -kv[1])[:10]),
        "aof_bytes_per_message": (after["aof_current_size"] - before["aof_current_size"])
        / args.messages,
        "census": census,
    }


def factor(rows: list[dict[str, Any]], field: str, what: str, one: int, two: int) -> float:
    a = [r[field] for r in rows if r[what] == one]
    b = [r[field] for r in rows if r[what] == two]
    return (sum(b) / len(b)) / (sum(a) / len(a))


def mean(rows: list[dict[str, Any]], field: str, what: str, n: int) -> float:
    values = [r[field] for r in rows if r[what] == n]
    return sum(values) / len(values)


def machine() -> str:
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    load = os.getloadavg()
    return (
        f"{os.cpu_count()} cores, {model}, {platform.system()} {platform.release()}; "
        f"load average at the end {load[0]:.1f}"
    )


def table(results: dict[str, Any], args: argparse.Namespace) -> str:
    g, w = results["gateway"], results["worker"]
    lines = [
        f"Measured {time.strftime('%Y-%m-%d')} by `bench/scale.py` on {results['machine']} "
        "(a shared machine: other processes kept "
        f"{results['other_cores']:.2f} of its 2 cores busy on average during the measurements).",
        "",
        "| load | 1 | 2 | factor |",
        "|---|---|---|---|",
        f"| gateway processes, acks/s (wrk, {args.connections} connections, "
        f"{args.duration:.0f} s x {args.rounds}) "
        f"| {mean(g, 'acks_per_s', 'processes', 1):,.0f} "
        f"| {mean(g, 'acks_per_s', 'processes', 2):,.0f} "
        f"| **{results['gateway_factor']:.2f}x** |",
        f"| gateway p99 latency, ms | {mean(g, 'p99_ms', 'processes', 1):.1f} "
        f"| {mean(g, 'p99_ms', 'processes', 2):.1f} | |",
        f"| workers, messages/s at a desk answering in {args.desk_latency * 1000:.0f} ms "
        f"({args.messages:,} messages, {args.chats} conversations, max_jobs {args.max_jobs}) "
        f"| {mean(w, 'messages_per_s', 'workers', 1):,.1f} "
        f"| {mean(w, 'messages_per_s', 'workers', 2):,.1f} "
        f"| **{results['worker_factor']:.2f}x** |",
        "",
        "| per message | value |",
        "|---|---|",
        f"| gateway CPU per ack, ms | {mean(g, 'gateway_cpu_ms_per_ack', 'processes', 1):.2f} |",
        f"| Redis CPU per ack, ms | {mean(g, 'redis_cpu_ms_per_ack', 'processes', 1):.2f} |",
        f"| worker CPU per message filed, ms "
        f"| {mean(w, 'worker_cpu_ms_per_message', 'workers', 1):.2f} |",
        f"| Redis CPU per message filed, ms "
        f"| {mean(w, 'redis_cpu_ms_per_message', 'workers', 1):.2f} |",
        f"| of which per message, less an idle worker's polling: worker CPU, Redis CPU, ms "
        f"| {mean(w, 'net_worker_cpu_ms_per_message', 'workers', 1):.2f}, "
        f"{mean(w, 'net_redis_cpu_ms_per_message', 'workers', 1):.2f} |",
        f"| an idle worker: Redis commands/s, worker cores, Redis cores "
        f"| {mean(w, 'idle_commands_per_s', 'workers', 1):,.0f}, "
        f"{mean(w, 'idle_worker_cores', 'workers', 1):.3f}, "
        f"{mean(w, 'idle_redis_cores', 'workers', 1):.3f} |",
        f"| Redis commands, ack path | {results['commands_per_ack']:.1f} |",
        f"| Redis commands, worker (filing; less idle polling) "
        f"| {results['commands_per_message']:.1f} "
        f"({mean(w, 'net_commands_per_message', 'workers', 1):.1f}) |",
        f"| desk API calls | {results['desk_calls_per_message']:.2f} |",
        f"| append-only file bytes, ack + filing | {results['aof_bytes_per_message']:,.0f} |",
        "",
        "| key kind | bytes per message | TTL (days; -1 none) |",
        "|---|---|---|",
    ]
    census = results["census"]
    for kind, c in sorted(census.items(), key=lambda kv: -kv[1]["bytes"]):
        if c["bytes"] / args.messages >= 1:
            lines.append(f"| `{kind}` | {c['bytes'] / args.messages:,.0f} | {c['ttl_days']} |")
    lines.append(
        f"| **held in steady state per message a day** | "
        f"**{results['retained_bytes_per_daily_message'] / 1024:,.0f} KiB** | |"
    )
    lines += ["", *sizing(results, args)]
    return "\n".join(lines)


PEAK_FACTOR = 4.0  # the busiest hour's rate over the day's average
UTILISATION = 0.6  # plan every process and the Redis primary at 60 % of a core
CELL_REDIS_GIB = 64.0  # the largest dataset we plan on one primary (fork, resync, restart)
SHORT_RETENTION_DAYS = 7.0


def sizing(results: dict[str, Any], args: argparse.Namespace) -> list[str]:
    """The capacity plan's table, computed from the measurements."""
    g, w = results["gateway"], results["worker"]
    gw_cap = UTILISATION * 1000 / mean(g, "gateway_cpu_ms_per_ack", "processes", 1)
    idle_worker = mean(w, "idle_worker_cores", "workers", 1)
    idle_redis = mean(w, "idle_redis_cores", "workers", 1)
    wk_cpu_cap = (
        (UTILISATION - idle_worker) * 1000 / mean(w, "net_worker_cpu_ms_per_message", "workers", 1)
    )
    wk_io_cap = args.max_jobs / (results["desk_calls_per_message"] * args.desk_latency)
    wk_cap = min(wk_cpu_cap, wk_io_cap)
    redis_ms = mean(g, "redis_cpu_ms_per_ack", "processes", 1) + mean(
        w, "net_redis_cpu_ms_per_message", "workers", 1
    )
    redis_cap = UTILISATION * 1000 / redis_ms
    census, n = results["census"], args.messages
    keep = retained(census, n, 90.0)
    short = retained(census, n, SHORT_RETENTION_DAYS, cap_days=SHORT_RETENTION_DAYS)
    results["plan"] = {
        "gateway_process_msgs_per_s": gw_cap,
        "worker_msgs_per_s": wk_cap,
        "worker_cpu_bound_msgs_per_s": wk_cpu_cap,
        "worker_io_bound_msgs_per_s": wk_io_cap,
        "redis_primary_msgs_per_s": redis_cap,
        "redis_cpu_ms_per_message": redis_ms,
        "retained_bytes_default": keep,
        "retained_bytes_7d": short,
    }
    lines = [
        f"Planning figures (each at {UTILISATION:.0%} of a core): a gateway process "
        f"**{gw_cap:,.0f} messages/s**; a worker **{wk_cap:,.0f} messages/s** (CPU allows "
        f"{wk_cpu_cap:,.0f}, {args.max_jobs} jobs in flight at {args.desk_latency * 1000:.0f} ms "
        f"a desk call allow {wk_io_cap:,.0f}); a Redis primary **{redis_cap:,.0f} "
        f"messages/s** ({redis_ms:.2f} ms of Redis CPU per message, ack and filing, plus "
        f"{idle_redis:.3f} cores per worker for its polling). "
        f"Memory held per message a day: {keep / 1024:,.0f} KiB with the default retention "
        f"(events and deliveries 90 days, raw requests 30), {short / 1024:,.0f} KiB with "
        f"{SHORT_RETENTION_DAYS:.0f}-day retention.",
        "",
        f"| messages/day | average / peak msg/s (x{PEAK_FACTOR:.0f}) | gateway processes "
        f"(all cells) | workers (all cells) | Redis CPU at peak | Redis memory, default retention "
        f"| Redis memory, {SHORT_RETENTION_DAYS:.0f}-day retention | AOF written/day "
        f"| cells (default / {SHORT_RETENTION_DAYS:.0f}-day) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    gib = 1024**3
    for per_day in (1_000_000, 10_000_000, 100_000_000):
        avg = per_day / 86400
        peak = avg * PEAK_FACTOR
        gateways = max(2, -(-peak // gw_cap))
        workers = max(2, -(-peak // wk_cap))
        redis_cores = peak * redis_ms / 1000 + workers * idle_redis
        mem_keep, mem_short = per_day * keep / gib, per_day * short / gib
        aof = per_day * results["aof_bytes_per_message"] / gib

        def cells(mem: float, cores: float = redis_cores) -> int:
            return int(max(-(-mem // CELL_REDIS_GIB), -(-cores // UTILISATION), 1))

        lines.append(
            f"| {per_day / 1e6:,.0f}M | {avg:,.0f} / {peak:,.0f} | {gateways:,.0f} "
            f"| {workers:,.0f} | {redis_cores:.2f} cores | {mem_keep:,.0f} GiB "
            f"| {mem_short:,.0f} GiB | {aof:,.1f} GiB | {cells(mem_keep)} / {cells(mem_short)} |"
        )
    return lines


def retained(
    census: dict[str, dict[str, float]],
    messages: int,
    keep_days: float,
    cap_days: float | None = None,
) -> float:
    """Bytes held in steady state per message a day: each kind's bytes x its TTL in days
    (a kind without TTL is counted for ``keep_days``), TTLs capped at ``cap_days``."""
    total = 0.0
    for c in census.values():
        days = c["ttl_days"] if c["ttl_days"] > 0 else keep_days
        if cap_days is not None:
            days = min(days, cap_days)
        total += c["bytes"] / messages * days
    return total


def write_docs(block: str) -> None:
    text = DOCS.read_text()
    if BEGIN not in text or END not in text:
        raise BenchError(f"{DOCS}: the markers {BEGIN} / {END} are missing")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    DOCS.write_text(f"{head}{BEGIN}\n{block}\n{END}{tail}")


async def measure(procs: Procs, workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    store = PrivateRedis(procs, workdir)
    store.start()
    key = base64.b64encode(os.urandom(32)).decode()
    config = write_config(workdir / "accounts.yaml", {"type": "sandbox"})
    gateway: list[dict[str, Any]] = []
    for r in range(args.rounds):
        for n in (1, 2):
            row = gateway_round(
                procs, workdir, store, config, key, n, BASE_GATEWAY + (2 * r + n) * ROUND, args
            )
            print(
                f"gateway processes={n} round {r + 1}: {row['acks_per_s']:,.0f} acks/s, "
                f"p99 {row['p99_ms']:.1f} ms, cpu {row['cpu']}",
                flush=True,
            )
            gateway.append(row)
    worker: list[dict[str, Any]] = []
    for r in range(args.rounds):
        for n in (1, 2):
            row = await worker_round(
                procs, workdir, store, key, n, BASE_BACKLOG + (2 * r + n) * ROUND, args
            )
            print(
                f"workers={n} round {r + 1}: {row['messages_per_s']:,.1f} messages/s, "
                f"cpu {row['cpu']}",
                flush=True,
            )
            worker.append(row)
    census = worker[0]["census"]
    keep_days = 90.0
    return {
        "machine": machine(),
        "args": vars(args),
        "gateway": gateway,
        "worker": [{k: v for k, v in w.items() if k != "census"} for w in worker],
        "gateway_factor": factor(gateway, "acks_per_s", "processes", 1, 2),
        "worker_factor": factor(worker, "messages_per_s", "workers", 1, 2),
        "commands_per_ack": mean(gateway, "commands_per_ack", "processes", 1),
        "commands_per_message": mean(worker, "commands_per_message", "workers", 1),
        "desk_calls_per_message": mean(worker, "desk_calls_per_message", "workers", 1),
        "aof_bytes_per_message": mean(gateway, "aof_bytes_per_ack", "processes", 1)
        + mean(worker, "aof_bytes_per_message", "workers", 1),
        "census": census,
        "other_cores": sum(r["cpu"].get("other", 0.0) for r in gateway + worker)
        / len(gateway + worker),
        "retained_bytes_per_daily_message": retained(census, args.messages, keep_days),
    }


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--duration", type=float, default=10.0, help="seconds of wrk per gateway run")
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--rounds", type=int, default=2, help="alternations of 1 and 2")
    p.add_argument("--messages", type=int, default=2000, help="the workers' backlog")
    p.add_argument("--chats", type=int, default=500, help="conversations in the backlog")
    p.add_argument("--desk-latency", type=float, default=0.150, help="seconds per desk call")
    p.add_argument("--max-jobs", type=int, default=50, help="DESKBRIDGE_MAX_JOBS per worker")
    p.add_argument("--drain-timeout", type=float, default=600.0)
    p.add_argument("--idle", type=float, default=5.0, help="seconds of idle workers measured")
    p.add_argument("--write-docs", action="store_true", help="update docs/deployment.md")
    p.add_argument(
        "--from-json", type=Path, default=None, help="report a saved .bench/scale.json again"
    )
    return p.parse_args()


def main() -> int:
    args = parse_args()
    OUT.mkdir(exist_ok=True)
    if args.from_json is not None:  # the tables again, from a saved run
        results = json.loads(args.from_json.read_text())
        saved = argparse.Namespace(**{**results["args"], "write_docs": args.write_docs})
        return report(results, saved)
    with tempfile.TemporaryDirectory(prefix="deskbridge-scale-") as tmp:
        workdir = Path(tmp)
        (workdir / "logs").mkdir()
        procs = Procs(workdir / "logs")
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(2))
        try:
            results = asyncio.run(measure(procs, workdir, args))
        except BenchError as exc:
            print(f"scale: could not measure: {exc}", file=sys.stderr)
            return 2
        finally:
            procs.stop_all()
    (OUT / "scale.json").write_text(json.dumps(results, indent=2, default=str))
    return report(results, args)


def report(results: dict[str, Any], args: argparse.Namespace) -> int:
    block = table(results, args)
    print()
    print(block)
    if args.write_docs:
        write_docs(block)
        print(f"\nwritten to {DOCS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
