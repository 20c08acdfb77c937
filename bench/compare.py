"""deskbridge against its peers (issue 19): the second half of ``make bench``.

Everything on 127.0.0.1, in one process tree, on one private redis-server (AOF everysec):

1. acks: wrk (-t1 -c64, signed ~1 KB Telegram updates) against a bare aiohttp handler,
   the FastAPI + uvicorn[standard] + BackgroundTasks peer (``bench/peers/fastapi_app.py``),
   ``deskbridge serve`` (sandbox desk) and the aiohttp + arq ``enqueue_job`` peer
   (``bench/peers/arq_app.py``), in alternating rounds; medians; then deskbridge's ack
   latency at a fixed rate of half its peak (open loop);
2. drain: a backlog of messages over many conversations, queued through each system's
   own webhook, then drained into one fake Zendesk (``bench/fakedesk.py``) by one
   ``deskbridge worker`` and by the naive arq forwarder (``bench/peers/arq_worker.py``),
   alternately; messages/s and worker CPU per message;
3. memory: ``INFO memory`` and AOF size deltas over N queued deskbridge events, and what
   each kind of key costs.

Every ratio of the issue is printed with PASS/MISS (never a failure), and written to
``.bench/peers.json`` and the "Peers" block of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import run
from fakedesk import FakeZendesk
from loadgen import telegram_update
from run import (
    ACCOUNT,
    BODY_SIZE,
    SECRET,
    BenchError,
    CpuMeter,
    PrivateRedis,
    Procs,
    WrkResult,
    deskbridge_env,
    free_port,
    run_wrk,
    tool,
    wait_ready,
    write_config,
)

PEERS = run.BENCH / "peers"
PEERS_BEGIN = "<!-- bench:peers:begin -->"
PEERS_END = "<!-- bench:peers:end -->"
PATH = f"/webhooks/telegram/{ACCOUNT}"
HEADERS = {"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": SECRET}
SYSTEMS = ("bare", "fastapi", "deskbridge", "arq")
DURABLE = ("deskbridge", "before", "arq")
BEFORE: str | None = None
"""``--before SRC``: a deskbridge source tree measured beside this one (system "before")."""


def systems() -> tuple[str, ...]:
    return (*SYSTEMS[:3], "before", SYSTEMS[3]) if BEFORE else SYSTEMS


def deskbridge_of(system: str, env: dict[str, str]) -> dict[str, str]:
    """``env`` for a deskbridge process of ``system`` ("before": the ``--before`` tree)."""
    if system == "before" and BEFORE:
        env = {**env, "PYTHONPATH": BEFORE}
    return env


LABELS = {
    "bare": "bare aiohttp handler (ceiling)",
    "fastapi": "FastAPI + uvicorn[standard] + BackgroundTasks, nothing stored",
    "deskbridge": "**deskbridge serve** (sandbox desk, Telegram)",
    "before": "deskbridge serve before these changes (`--before`)",
    "arq": "aiohttp + pydantic + arq `enqueue_job` (dedup job id), awaited",
}
BASE_ACK, BASE_DRAIN, BASE_MEM = (k * 10_000_000_000 for k in range(7, 10))


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


# -- acks ----------------------------------------------------------------------------------


def start_ack_servers(
    procs: Procs, store: PrivateRedis, workdir: Path, key: str
) -> dict[str, tuple[subprocess.Popen[bytes], int]]:
    py = sys.executable
    config = write_config(workdir / "accounts-peers.yaml", {"type": "sandbox"})
    ports = {name: free_port() for name in systems()}
    servers = {
        "bare": procs.spawn("peer-bare", [py, str(run.BENCH / "bare_app.py"), str(ports["bare"])]),
        "fastapi": procs.spawn(
            "peer-fastapi", [py, str(PEERS / "fastapi_app.py"), str(ports["fastapi"]), SECRET]
        ),
        "deskbridge": procs.spawn(
            "peer-deskbridge",
            [tool("deskbridge"), "serve"],
            env=deskbridge_env(workdir, store.url, config, key, ports["deskbridge"]),
            cwd=workdir,
        ),
        "arq": procs.spawn(
            "peer-arq", [py, str(PEERS / "arq_app.py"), str(ports["arq"]), SECRET, store.url]
        ),
    }
    if BEFORE:
        env = deskbridge_env(workdir, store.url, config, key, ports["before"])
        servers["before"] = procs.spawn(
            "peer-before",
            [tool("deskbridge"), "serve"],
            env=deskbridge_of("before", env),
            cwd=workdir,
        )
    for name, proc in servers.items():
        path = "/readyz" if name in ("deskbridge", "before") else "/healthz"
        wait_ready(procs, f"peer-{name}", proc, ports[name], path)
    return {name: (servers[name], ports[name]) for name in systems()}


def measure_acks(
    procs: Procs,
    store: PrivateRedis,
    servers: dict[str, tuple[subprocess.Popen[bytes], int]],
    args: argparse.Namespace,
) -> dict[str, list[WrkResult]]:
    load = {"connections": 64, "threads": 1}
    for i, (_, port) in enumerate(servers.values()):
        run_wrk(procs, port, PATH, seconds=args.warmup, base=BASE_ACK + i * 10**8, **load)
    out: dict[str, list[WrkResult]] = {name: [] for name in systems()}
    for k in range(args.rounds):
        order = systems() if k % 2 == 0 else tuple(reversed(systems()))
        line = []
        for name in order:
            proc, port = servers[name]
            if name in DURABLE:
                store.reset()  # each durable peer starts on an empty, compacted store
            watch = {"app": proc.pid, "redis": store.pid}
            base = BASE_ACK + run.ATTEMPT * (k + 1) + systems().index(name) * 10**8
            w = run_wrk(procs, port, PATH, seconds=args.duration, base=base, watch=watch, **load)
            out[name].append(w)
            line.append(f"{name} {w.ok_rate:,.0f}")
        print(f"    round {k + 1}: " + ", ".join(line) + " (requests/s)")
    return out


def ack_summary(runs: dict[str, list[WrkResult]]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for name, ws in runs.items():
        out[name] = {
            "rate": statistics.median(w.ok_rate for w in ws),
            "p99_ms": statistics.median(w.p99_ms for w in ws),
            "cpu_us": statistics.median(w.cpu_us_per_request("app") for w in ws),
            "redis_us": statistics.median(w.cpu_us_per_request("redis") for w in ws),
            "other": max(w.cpu.get("other", 0.0) for w in ws),
        }
    bare = out["bare"]["rate"]
    for row in out.values():
        row["of_bare"] = row["rate"] / bare if bare else float("nan")
    return out


# -- backlogs ------------------------------------------------------------------------------


async def post_all(port: int, bodies: list[bytes], concurrency: int = 32) -> None:
    """POST every body (signed Telegram updates) and require a 2xx for each."""
    url = f"http://127.0.0.1:{port}{PATH}"
    todo = iter(bodies)
    bad: Counter[int] = Counter()

    async def one(session: aiohttp.ClientSession) -> None:
        for body in todo:
            async with session.post(url, data=body, headers=HEADERS) as resp:
                await resp.read()
                if not 200 <= resp.status < 300:
                    bad[resp.status] += 1

    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        await asyncio.gather(*(one(session) for _ in range(concurrency)))
    if bad:
        raise BenchError(f"backlog: answers not 2xx: {dict(bad)}")


def backlog(base: int, messages: int, chats: int) -> list[bytes]:
    date = int(time.time())
    return [
        telegram_update(base + k, 300000 + k % chats, f"bench e2e-{k} ", size=BODY_SIZE, date=date)
        for k in range(messages)
    ]


# -- drain ---------------------------------------------------------------------------------


async def drain_once(
    procs: Procs, store: PrivateRedis, workdir: Path, key: str, system: str,
    args: argparse.Namespace, attempt: int,
) -> dict[str, Any]:  # fmt: skip
    """Queue the backlog through ``system``'s webhook, then time one worker draining it."""
    desk = FakeZendesk()
    desk_port = await desk.start()
    desk_url = f"http://127.0.0.1:{desk_port}"
    store.reset()
    bodies = backlog(BASE_DRAIN + attempt * run.ATTEMPT, args.messages, args.conversations)
    port = free_port()
    started: list[subprocess.Popen[bytes]] = []
    try:
        if system in ("deskbridge", "before"):
            config = write_config(
                workdir / "accounts-drain.yaml",
                {"type": "zendesk", "base_url": desk_url, "email": "bench@example.com",
                 "api_token": "x", "webhook_secret": "y"},
            )  # fmt: skip
            env = deskbridge_of(system, deskbridge_env(workdir, store.url, config, key, port))
            app = procs.spawn("drain-serve", [tool("deskbridge"), "serve"], env=env, cwd=workdir)
            wait_ready(procs, "drain-serve", app, port, "/readyz")
            await post_all(port, bodies)
            procs.stop(app)
            env = deskbridge_of(
                system, deskbridge_env(workdir, store.url, config, key, free_port())
            )
            worker_args = [tool("deskbridge"), "worker"]
        else:
            py = sys.executable
            app_args = [py, str(PEERS / "arq_app.py"), str(port), SECRET, store.url]
            app = procs.spawn("drain-arq-app", app_args)
            wait_ready(procs, "drain-arq-app", app, port, "/healthz")
            await post_all(port, bodies)
            procs.stop(app)
            env = run.base_env()
            worker_args = [py, str(PEERS / "arq_worker.py"), store.url, desk_url]
        commands0 = command_count(store)
        stats0 = command_stats(store)
        if args.monitor:
            mon = [tool("redis-cli"), "-s", str(store.socket), "monitor"]
            started.append(procs.spawn(f"monitor-{system}", mon))
        counted = getattr(args, "callgrind", None)  # bench/instructions.py --drain
        if counted is not None:
            worker_args = [*callgrind_prefix(counted / f"cg-drain-{system}"), *worker_args]
        worker = procs.spawn(f"drain-{system}-worker", worker_args, env=env, cwd=workdir)
        started.append(worker)
        n = args.messages
        deadline = time.monotonic() + args.drain_timeout
        while not desk.arrivals:
            if worker.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"drain ({system}): nothing reached the desk")
            await asyncio.sleep(0.005)
        if counted is not None:  # from the first message at the desk: start-up not counted
            callgrind_control(worker.pid, "--instr=on")
            callgrind_control(worker.pid, "--zero")
            counted_from = len(desk.arrivals)
        t0 = min(at for at, _ in desk.arrivals.values())
        meter = CpuMeter({"worker": worker.pid, "redis": store.pid})
        if args.profile and system == "deskbridge":
            # --nonblocking: sampled without stopping it, so its rate barely changes
            spy = [tool("py-spy"), "record", "--nonblocking", "--pid", str(worker.pid),
                   "-r", "250", "-f", "raw", "-d", str(args.profile),
                   "-o", str(run.OUT / "profile-worker.txt")]  # fmt: skip
            started.append(procs.spawn("py-spy-worker", spy))
        while len(desk.arrivals) < n:
            if worker.poll() is not None or time.monotonic() > deadline:
                raise BenchError(
                    f"drain ({system}): {len(desk.arrivals)} of {n} at the desk "
                    f"(calls {dict(desk.calls)}):\n{procs.log_tail(f'drain-{system}-worker')}"
                )
            await asyncio.sleep(0.01)
        t1 = max(at for at, _ in desk.arrivals.values())
        cpu = meter.stop()
        instructions = None
        if counted is not None:
            callgrind_control(worker.pid, "--dump")
            total = callgrind_totals(counted / f"cg-drain-{system}", worker.pid)
            instructions = total / (n - counted_from)
        await asyncio.sleep(0.3)  # a duplicate still in flight would show in the counts
        commands = command_count(store) - commands0
        stats1 = command_stats(store)
    finally:
        for proc in started:
            procs.stop(proc)
        await desk.stop()
    wall = t1 - t0
    filed = desk.calls["create ticket"] + desk.calls["update ticket"]
    calls = sum(desk.calls.values())
    rate = (n - 1) / wall if wall > 0 else float("nan")
    return {
        "system": system,
        "messages": n,
        "seconds": wall,
        "rate": rate,
        "cpu_us": cpu["worker"] * 1e6 / rate,
        "redis_us": cpu["redis"] * 1e6 / rate,
        "other": cpu["other"],
        "desk_calls": dict(desk.calls),
        "http_per_message": calls / n,
        "redis_commands_per_message": commands / n,
        "duplicates": filed - n,
        "instructions": instructions,
        "commands": {
            c: (v - stats0.get(c, 0)) / n
            for c, v in sorted(stats1.items(), key=lambda kv: -(kv[1] - stats0.get(kv[0], 0)))
            if v - stats0.get(c, 0)
        },
    }


def command_count(store: PrivateRedis) -> int:
    client = store.client()
    try:
        stats: Any = client.info("stats")
        return int(stats["total_commands_processed"])
    finally:
        client.close()


def command_stats(store: PrivateRedis) -> dict[str, int]:
    """Calls so far per Redis command (``INFO commandstats``)."""
    client = store.client()
    try:
        stats: Any = client.info("commandstats")
        return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}
    finally:
        client.close()


def measure_drain(
    procs: Procs, store: PrivateRedis, workdir: Path, key: str, args: argparse.Namespace
) -> dict[str, list[dict[str, Any]]]:
    workers = ("arq", "deskbridge", "before") if BEFORE else ("arq", "deskbridge")
    out: dict[str, list[dict[str, Any]]] = {w: [] for w in workers}
    for k in range(args.drain_rounds):
        order = workers if k % 2 == 0 else tuple(reversed(workers))
        for system in order:
            r = asyncio.run(drain_once(procs, store, workdir, key, system, args, k))
            out[system].append(r)
            print(
                f"    {system}: {r['rate']:,.0f} messages/s, worker {r['cpu_us']:,.0f} µs CPU "
                f"per message, {r['http_per_message']:.2f} HTTP calls and "
                f"{r['redis_commands_per_message']:.1f} Redis commands per message, "
                f"duplicates {r['duplicates']}"
            )
            top = ", ".join(f"{c} {v:.1f}" for c, v in list(r["commands"].items())[:12])
            print(f"      Redis commands per message: {top}")
            if r["duplicates"]:
                print(f"    WARNING: {system} filed {r['duplicates']} messages twice")
    return out


# -- instruction counts (bench/instructions.py) --------------------------------------------


def callgrind_prefix(out: Path) -> list[str]:
    """Run a command under callgrind, counting nothing until told (``--instr=on``)."""
    return [tool("valgrind"), "--tool=callgrind", "--instr-atstart=no",
            f"--callgrind-out-file={out}.%p"]  # fmt: skip


def callgrind_control(pid: int, *args: str) -> None:
    subprocess.run(  # noqa: S603 - argv built here, no shell
        [tool("callgrind_control"), *args, str(pid)],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=60,
    )


def callgrind_totals(out: Path, pid: int) -> int:
    """The instruction count of the last dump of ``pid``."""
    dumps = sorted(
        out.parent.glob(f"{out.name}.{pid}.*"), key=lambda p: int(p.name.rsplit(".", 1)[1])
    )
    if not dumps:
        raise BenchError(f"callgrind wrote no dump for pid {pid}")
    for line in dumps[-1].read_text().splitlines():
        if line.startswith(("totals:", "summary:")):
            return int(line.split()[1])
    raise BenchError(f"no totals in {dumps[-1]}")


# -- memory --------------------------------------------------------------------------------

_ID_SEGMENT = re.compile(r"[0-9a-f]{8,}|[A-Za-z0-9_-]{16,}|\d{3,}")


def key_shape(key: str) -> str:
    return ":".join("*" if _ID_SEGMENT.fullmatch(p) else p for p in key.split(":"))


async def measure_memory(
    procs: Procs, store: PrivateRedis, workdir: Path, key: str, args: argparse.Namespace,
    system: str = "deskbridge",
) -> dict[str, Any]:  # fmt: skip
    store.reset()
    config = write_config(workdir / "accounts-mem.yaml", {"type": "sandbox"})
    port = free_port()
    env = deskbridge_of(system, deskbridge_env(workdir, store.url, config, key, port))
    app = procs.spawn("mem-serve", [tool("deskbridge"), "serve"], env=env, cwd=workdir)
    client = store.client()
    try:
        wait_ready(procs, "mem-serve", app, port, "/readyz")
        await post_all(port, backlog(BASE_MEM, 20, 20))  # scripts loaded, first keys made
        mem0: Any = client.info("memory")
        aof0 = int(store.persistence()["aof_current_size"])
        keys0 = int(client.dbsize())  # type: ignore[arg-type]
        n = args.events
        await post_all(port, backlog(BASE_MEM + 1000, n, 1000))
        await asyncio.sleep(1.2)  # everysec: the last second reaches the file
        mem1: Any = client.info("memory")
        aof1 = int(store.persistence()["aof_current_size"])
        keys1 = int(client.dbsize())  # type: ignore[arg-type]
        shapes: Counter[str] = Counter()
        sample: dict[str, list[int]] = {}
        for k in client.scan_iter(count=1000):
            shape = key_shape(k.decode())
            shapes[shape] += 1
            got = sample.setdefault(shape, [])
            if len(got) < 50:
                got.append(int(client.memory_usage(k, samples=0) or 0))
    finally:
        client.close()
        procs.stop(app)
    per_key = {
        shape: {
            "keys": count,
            "per_event": count / n,
            "bytes_each": statistics.mean(sample[shape]),
            "bytes_per_event": statistics.mean(sample[shape]) * count / n,
        }
        for shape, count in shapes.most_common()
    }
    used = (int(mem1["used_memory"]) - int(mem0["used_memory"])) / n
    return {
        "events": n,
        "payload": BODY_SIZE,
        "memory_per_event": used,
        "aof_per_event": (aof1 - aof0) / n,
        "keys_per_event": (keys1 - keys0) / n,
        "keys": per_key,
    }


# -- report --------------------------------------------------------------------------------


def summary(res: dict[str, Any]) -> tuple[list[str], list[tuple[str, str, str, str]]]:
    acks, fixed, drain, mem = res["acks"], res["fixed"], res["drain"], res["memory"]
    lines = [
        "| system | acks/s | of bare aiohttp | p99 (closed loop) | CPU per request |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in acks:
        a = acks[name]
        redis_part = f" (+{a['redis_us']:.0f} µs Redis)" if name in DURABLE else ""
        lines.append(
            f"| {LABELS[name]} | {a['rate']:,.0f} | {a['of_bare']:.2f} | {a['p99_ms']:.1f} ms "
            f"| {a['cpu_us']:.0f} µs{redis_part} |"
        )
    lines += [
        "",
        "| worker | messages/s | worker CPU per message | HTTP calls per message "
        "| Redis commands per message |",
        "|---|---:|---:|---:|---:|",
    ]
    d = {s: drain_median(drain[s]) for s in drain}
    for s, label in (
        ("deskbridge", "deskbridge worker (Zendesk connector)"),
        ("before", "deskbridge worker before these changes"),
        ("arq", "arq worker, one httpx POST per message"),
    ):
        if s not in d:
            continue
        lines.append(
            f"| {label} | {d[s]['rate']:,.0f} | {d[s]['cpu_us']:,.0f} µs "
            f"| {d[s]['http_per_message']:.2f} | {d[s]['redis_commands_per_message']:.1f} |"
        )
    db = acks["deskbridge"]
    limit = mem["payload"] + 2048
    rows = [
        ("acks: deskbridge / bare aiohttp", f"{db['of_bare']:.2f}", ">= 0.40",
         verdict(db["of_bare"] >= 0.40)),
        ("acks: deskbridge / FastAPI peer", f"{db['rate'] / acks['fastapi']['rate']:.2f}",
         ">= 1.0", verdict(db["rate"] >= acks["fastapi"]["rate"])),
        ("acks: deskbridge / arq enqueue peer", f"{db['rate'] / acks['arq']['rate']:.2f}",
         "", ""),
        (f"ack p99 at half the peak ({fixed['target_rate']:,.0f}/s)",
         f"{fixed['p99_ms']:.1f} ms", "<= 25 ms", verdict(fixed["p99_ms"] <= 25)),
        ("drain: deskbridge / arq forwarder", f"{d['deskbridge']['rate'] / d['arq']['rate']:.2f}",
         ">= 1.0", verdict(d["deskbridge"]["rate"] >= d["arq"]["rate"])),
        ("drain: duplicates at the desk", str(d["deskbridge"]["duplicates"]), "0",
         verdict(d["deskbridge"]["duplicates"] == 0)),
        ("Redis memory per queued event", f"{mem['memory_per_event']:,.0f} B",
         f"<= {limit:,} B", verdict(mem["memory_per_event"] <= limit)),
        ("AOF per ack", f"{mem['aof_per_event']:,.0f} B", "<= 3,072 B",
         verdict(mem["aof_per_event"] <= 3072)),
    ]  # fmt: skip
    if "before" in acks and "before" in d and "memory_before" in res:
        lines += ["", *before_after(acks, d, res["memory_before"], mem)]
    return lines, rows


def before_after(
    acks: dict[str, dict[str, float]],
    d: dict[str, dict[str, Any]],
    mem0: dict[str, Any],
    mem1: dict[str, Any],
) -> list[str]:
    """The same run's numbers for the ``--before`` tree and this one."""
    a0, a1, d0, d1 = acks["before"], acks["deskbridge"], d["before"], d["deskbridge"]
    fa, arq = acks["fastapi"]["rate"], d["arq"]["rate"]
    rows = [
        ("acks/s", f"{a0['rate']:,.0f}", f"{a1['rate']:,.0f}"),
        ("acks: of bare aiohttp", f"{a0['of_bare']:.2f}", f"{a1['of_bare']:.2f}"),
        ("acks: of the FastAPI peer", f"{a0['rate'] / fa:.2f}", f"{a1['rate'] / fa:.2f}"),
        ("gateway CPU per ack", f"{a0['cpu_us']:.0f} µs", f"{a1['cpu_us']:.0f} µs"),
        ("Redis CPU per ack", f"{a0['redis_us']:.0f} µs", f"{a1['redis_us']:.0f} µs"),
        ("drain: messages/s", f"{d0['rate']:,.0f}", f"{d1['rate']:,.0f}"),
        ("drain: of the arq forwarder", f"{d0['rate'] / arq:.2f}", f"{d1['rate'] / arq:.2f}"),
        ("drain: worker CPU per message", f"{d0['cpu_us']:,.0f} µs", f"{d1['cpu_us']:,.0f} µs"),
        ("drain: Redis CPU per message", f"{d0['redis_us']:,.0f} µs", f"{d1['redis_us']:,.0f} µs"),
        ("drain: Redis commands per message (in scripts too)",
         f"{d0['redis_commands_per_message']:.1f}", f"{d1['redis_commands_per_message']:.1f}"),
        ("Redis memory per queued event", f"{mem0['memory_per_event']:,.0f} B",
         f"{mem1['memory_per_event']:,.0f} B"),
        ("AOF per ack", f"{mem0['aof_per_event']:,.0f} B", f"{mem1['aof_per_event']:,.0f} B"),
    ]  # fmt: skip
    return [
        "| same run | before | after |",
        "|---|---:|---:|",
        *(f"| {a} | {b} | {c} |" for a, b, c in rows),
    ]


def drain_median(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    ordered = sorted(rounds, key=lambda r: r["rate"])
    return ordered[len(ordered) // 2]


def markdown(res: dict[str, Any], m: dict[str, str], args: argparse.Namespace) -> str:
    lines, rows = summary(res)
    mem = res["memory"]
    out = [
        PEERS_BEGIN,
        f"## Peers: {time.strftime('%a %b %d %H:%M:%S UTC %Y', time.gmtime())}",
        "",
        f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory']}, Linux {m['kernel']}, "
        f"Python {m['python']}, redis-server {m['redis-server']}.",
        f"Load: wrk -t1 -c64, {BODY_SIZE}-byte signed Telegram updates, {args.rounds} "
        f"alternating rounds of {args.duration:.0f} s per system after a {args.warmup:.0f} s "
        f"warm-up, medians; drain: {args.messages:,} messages over {args.conversations} "
        f"conversations, {args.drain_rounds} alternating round(s) per worker, medians; "
        f"memory over {mem['events']:,} queued events. Other load (cores, worst round): "
        + ", ".join(f"{s} {res['acks'][s]['other']:.2f}" for s in res["acks"])
        + ".",
        "",
        "| goal | result | target | |",
        "|---|---|---|---|",
        *(f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows),
        "",
        *lines,
        "",
        f"Memory: {mem['memory_per_event']:,.0f} B of `used_memory` and "
        f"{mem['aof_per_event']:,.0f} B of AOF per queued event, {mem['keys_per_event']:.2f} "
        "keys per event. Per key (`MEMORY USAGE`, mean of up to 50 keys each):",
        "",
        "| key | keys per event | bytes each | bytes per event |",
        "|---|---:|---:|---:|",
        *(
            f"| `{shape}` | {k['per_event']:.3f} | {k['bytes_each']:,.0f} "
            f"| {k['bytes_per_event']:,.0f} |"
            for shape, k in mem["keys"].items()
            if k["per_event"] >= 0.001
        ),
        PEERS_END,
    ]
    return "\n".join(out)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--duration", type=float, default=5.0, help="seconds per round (default 5)")
    p.add_argument("--warmup", type=float, default=2.0, help="wrk warm-up seconds (default 2)")
    p.add_argument("--rounds", type=int, default=3, help="alternating ack rounds (default 3)")
    p.add_argument("--messages", type=int, default=3000, help="drain backlog (default 3000)")
    p.add_argument("--conversations", type=int, default=300, help="its conversations (300)")
    p.add_argument("--drain-rounds", type=int, default=1, help="per worker (default 1)")
    p.add_argument("--drain-timeout", type=float, default=120.0, help="seconds (default 120)")
    p.add_argument("--events", type=int, default=10_000, help="memory: events (default 10000)")
    p.add_argument("--profile", type=int, default=0, help="py-spy the deskbridge worker N s")
    p.add_argument("--monitor", action="store_true", help="log Redis MONITOR during drains")
    p.add_argument("--before", metavar="SRC", help="also measure deskbridge from this src/")
    p.add_argument("--only", choices=("acks", "drain", "memory"), help="one part, no docs")
    p.add_argument("--no-docs", action="store_true", help="do not update docs/benchmarks.md")
    args = p.parse_args()
    if not (
        1 <= args.duration <= 30
        and 1 <= args.rounds <= 7
        and 10 <= args.messages <= 50_000
        and 1 <= args.conversations <= args.messages
        and 1 <= args.drain_rounds <= 5
        and 1000 <= args.events <= 100_000
    ):
        p.error("out of range: see --help")
    return args


def main() -> int:
    global BEFORE
    args = parse_args()
    BEFORE = str(Path(args.before).resolve()) if args.before else None
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, run._terminate)
    run.OUT.mkdir(exist_ok=True)
    logs = run.OUT / "logs-peers"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir()
    workdir = Path(tempfile.mkdtemp(prefix="deskbridge-peers-"))
    procs = Procs(logs)
    started = time.monotonic()
    key = base64.b64encode(os.urandom(32)).decode()
    res: dict[str, Any] = {}
    try:
        store = PrivateRedis(procs, workdir)
        store.start()
        if args.only in (None, "acks"):
            print(f"peers: 1/3 acks, wrk -t1 -c64, {args.rounds} alternating rounds of "
                  f"{args.duration:.0f} s: {', '.join(systems())}")  # fmt: skip
            servers = start_ack_servers(procs, store, workdir, key)
            res["acks"] = ack_summary(measure_acks(procs, store, servers, args))
            gw, gw_port = servers["deskbridge"]
            for name, (proc, _) in servers.items():
                if name != "deskbridge":
                    procs.stop(proc)
            rate = max(10.0, round(res["acks"]["deskbridge"]["rate"] / 2))
            print(f"    deskbridge at a fixed {rate:,.0f} acks/s (half its peak), open loop")
            res["fixed"] = run.measure_fixed(
                store, gw.pid, gw_port, rate, argparse.Namespace(duration=10.0, connections=64)
            )
            procs.stop(gw)
        if args.only in (None, "drain"):
            print(f"peers: 2/3 drain, {args.messages:,} messages over {args.conversations} "
                  "conversations into a fake Zendesk, one worker each")  # fmt: skip
            res["drain"] = measure_drain(procs, store, workdir, key, args)
        if args.only in (None, "memory"):
            print(f"peers: 3/3 memory, {args.events:,} queued deskbridge events")
            for system in ("deskbridge", "before") if BEFORE else ("deskbridge",):
                mem = asyncio.run(measure_memory(procs, store, workdir, key, args, system))
                res["memory" if system == "deskbridge" else "memory_before"] = mem
                print(
                    f"    {system}: {mem['memory_per_event']:,.0f} B of Redis memory, "
                    f"{mem['aof_per_event']:,.0f} B of AOF, {mem['keys_per_event']:.2f} keys "
                    "per event"
                )
    except BenchError as exc:
        print(f"peers: FAILED: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\npeers: interrupted", file=sys.stderr)
        return 130
    finally:
        procs.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)
    name = "peers.json" if args.only is None else f"peers-{args.only}.json"
    (run.OUT / name).write_text(json.dumps(res, indent=2, default=str))
    if args.only is None:
        m = run.machine()
        block = markdown(res, m, args)
        print("\n" + block.split("\n", 2)[2].rsplit("\n", 1)[0])
        if not args.no_docs:
            text = run.DOCS.read_text()
            if PEERS_BEGIN not in text:
                text = text.replace(run.RESULTS_BEGIN, block + "\n\n" + run.RESULTS_BEGIN)
            else:
                text = run.replace_block(text, PEERS_BEGIN, PEERS_END, block)
            run.DOCS.write_text(text)
            print(f"peers: wrote {run.DOCS.relative_to(run.ROOT)}")
    print(f"peers: done in {time.monotonic() - started:.0f} s (misses do not fail)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
