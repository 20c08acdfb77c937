"""Instructions per acknowledged webhook, counted by callgrind: the ack benchmark that a
busy machine cannot disturb (``make bench-instructions``).

``bench/compare.py`` measures requests/s and CPU seconds, which move with whatever else
the 2 CPUs run (tests, type checks, another benchmark) and with the host's drift. This
script runs each server under ``valgrind --tool=callgrind`` with instrumentation off,
warms it up, switches counting on (``callgrind_control -i on``), sends the same signed
~1 KB Telegram updates (``--channel whatsapp`` or ``line``: text messages of that
channel, signed as the platform signs them) over the same number of keep-alive
connections, and reads the count. Instructions executed are repeatable to well under 1 %
whatever the machine is doing (docs/benchmarks.md). They are not time: a cache miss or a
system call costs more than an instruction, and the kernel's share of socket I/O is not
counted at all (the same kernel work for every system here, since all answer the same
requests). So the ratios are a floor-free view of the Python each system runs per
request, the thing the ack path's design decides; `compare.py` stays the measure of
throughput.

Systems: the bare aiohttp handler, the FastAPI peer, ``deskbridge serve`` (its default
loop: uvloop where installed), ``deskbridge serve`` on asyncio's loop
(``DESKBRIDGE_EVENT_LOOP=asyncio``), the aiohttp + arq peer, and with ``--before SRC``
another deskbridge source tree. Redis (not instrumented) is emptied before each durable
system; its CPU per request is read from ``INFO cpu`` and printed beside the count (that
one is time, so load-dependent).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import compare
import run
from compare import callgrind_control, callgrind_prefix, callgrind_totals
from loadgen import line_message, telegram_update, whatsapp_message
from run import (
    ACCOUNT,
    BODY_SIZE,
    SECRET,
    WA_NUMBER,
    BenchError,
    PrivateRedis,
    Procs,
    deskbridge_env,
    free_port,
    wait_ready,
    write_config,
)

PATHS = {
    "telegram": f"/webhooks/telegram/{ACCOUNT}",
    "whatsapp": "/webhooks/whatsapp",  # a Meta app's one URL, routed on phone_number_id
    "line": f"/webhooks/line/{ACCOUNT}",
}
PEERS = run.BENCH / "peers"
CHATS = 1000
BASE = 5 * 10**12  # update ids of this script; each system and phase takes its own range

LABELS = {
    "bare": "bare aiohttp handler (ceiling)",
    "fastapi": "FastAPI + uvicorn[standard] + BackgroundTasks, nothing stored",
    "deskbridge": "deskbridge serve (default loop: uvloop)",
    "deskbridge-asyncio": "deskbridge serve, `DESKBRIDGE_EVENT_LOOP=asyncio`",
    "before": "deskbridge serve, the `--before` tree",
    "arq": "aiohttp + pydantic + arq `enqueue_job`, awaited",
}
DURABLE = ("deskbridge", "deskbridge-asyncio", "before", "arq")
TELEGRAM_ONLY = ("fastapi", "arq")
"""The peers' handlers read Telegram updates only."""


def signed(channel: str, n: int, date: int) -> tuple[bytes, dict[str, str]]:
    """Update ``n`` of ``channel`` (~1 KB, one of ``CHATS`` chats) and its headers, signed
    as the platform signs: Telegram's secret token, Meta's ``X-Hub-Signature-256`` (hex
    HMAC-SHA256 of the body with the app secret), LINE's ``x-line-signature`` (Base64
    HMAC-SHA256 with the channel secret)."""
    chat = 100000 + n % CHATS
    headers = {"Content-Type": "application/json"}
    if channel == "telegram":
        body = telegram_update(n, chat, f"instr {n} ", size=BODY_SIZE, date=date)
        return body, headers | {"X-Telegram-Bot-Api-Secret-Token": SECRET}
    if channel == "whatsapp":
        wa_id = f"1650555{chat}"
        body = whatsapp_message(
            n, wa_id, f"instr {n} ", phone_number_id=WA_NUMBER, size=BODY_SIZE, date=date
        )
        digest = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        return body, headers | {"X-Hub-Signature-256": "sha256=" + digest}
    user = f"U{chat:032x}"
    body = line_message(n, user, f"instr {n} ", size=BODY_SIZE, date_ms=date * 1000)
    mac = hmac.new(SECRET.encode(), body, hashlib.sha256).digest()
    return body, headers | {"x-line-signature": base64.b64encode(mac).decode()}


def command(system: str, port: int, store: PrivateRedis) -> list[str]:
    py = sys.executable
    if system == "bare":
        return [py, str(run.BENCH / "bare_app.py"), str(port)]
    if system == "fastapi":
        return [py, str(PEERS / "fastapi_app.py"), str(port), SECRET]
    if system == "arq":
        return [py, str(PEERS / "arq_app.py"), str(port), SECRET, store.url]
    return [py, "-m", "deskbridge", "serve"]


def environment(
    system: str, workdir: Path, store: PrivateRedis, key: str, port: int, args: argparse.Namespace
) -> dict[str, str] | None:
    before = args.before
    if system not in ("deskbridge", "deskbridge-asyncio", "before"):
        return None
    config = write_config(workdir / "accounts-instr.yaml", {"type": "sandbox"}, args.channel)
    env = deskbridge_env(workdir, store.url, config, key, port)
    # the tree this script belongs to, not whatever deskbridge the venv has installed
    env["PYTHONPATH"] = str(run.BENCH.parent / "src")
    if system == "deskbridge-asyncio":
        env["DESKBRIDGE_EVENT_LOOP"] = "asyncio"
    if system == "before" and before:
        env["PYTHONPATH"] = before
    return env


async def post_all(port: int, first: int, count: int, connections: int, channel: str) -> int:
    """``count`` signed updates of ``channel`` over ``connections`` keep-alive connections;
    returns the number of 2xx answers (anything else fails the run: an ack that was not
    stored)."""
    date = int(time.time())
    requests = [signed(channel, n, date) for n in range(first, first + count)]
    url = f"http://127.0.0.1:{port}{PATHS[channel]}"
    queue = iter(requests)
    ok = 0

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal ok
        for body, headers in queue:
            async with session.post(url, data=body, headers=headers) as resp:
                await resp.read()
                if resp.status // 100 != 2:
                    raise BenchError(f"port {port}: answer {resp.status} to a signed update")
                ok += 1

    connector = aiohttp.TCPConnector(limit=connections)
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(*(client(session) for _ in range(connections)))
    return ok


def redis_cpu_s(store: PrivateRedis) -> float:
    client = store.client()
    try:
        info: Any = client.info("cpu")
    finally:
        client.close()
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def measure(
    procs: Procs,
    store: PrivateRedis,
    workdir: Path,
    key: str,
    system: str,
    index: int,
    args: argparse.Namespace,
) -> dict[str, Any]:
    port = free_port()
    prefix = workdir / f"cg-{system}"
    argv = [*callgrind_prefix(prefix), *command(system, port, store)]
    if system in DURABLE:
        store.reset()
    env = environment(system, workdir, store, key, port, args)
    proc = procs.spawn(f"instr-{system}", argv, env=env, cwd=workdir)
    try:
        path = "/readyz" if system.startswith(("deskbridge", "before")) else "/healthz"
        wait_ready(procs, f"instr-{system}", proc, port, path, timeout=240)
        base = BASE + index * 10**9
        asyncio.run(post_all(port, base, args.warmup, args.connections, args.channel))
        callgrind_control(proc.pid, "--instr=on")
        callgrind_control(proc.pid, "--zero")
        cpu0 = redis_cpu_s(store)
        acks = asyncio.run(
            post_all(port, base + 10**8, args.requests, args.connections, args.channel)
        )
        redis_us = (redis_cpu_s(store) - cpu0) / acks * 1e6
        callgrind_control(proc.pid, "--dump")
        count = callgrind_totals(prefix, proc.pid)
        if system != "arq" and system in DURABLE:
            # every 2xx a stored event: one pending delivery per update sent
            stored = store.count(f"db:{{{ACCOUNT}}}:pending")
            if stored != args.warmup + acks:
                raise BenchError(f"{system}: {args.warmup + acks} acknowledged, {stored} stored")
    finally:
        procs.stop(proc, timeout=30)
    return {"instructions": count / acks, "acks": acks, "redis_us": redis_us}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=2000, help="counted requests per system")
    ap.add_argument("--warmup", type=int, default=300, help="requests before counting")
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--before", default=None, help="also count this deskbridge source tree")
    ap.add_argument(
        "--only", default=None, help="comma-separated systems (default: all; see LABELS)"
    )
    ap.add_argument("--json", default=None, help="also write the results to this file")
    ap.add_argument(
        "--channel",
        choices=tuple(PATHS),
        default="telegram",
        help="the updates sent: signed ~1 KB text messages of this channel, which the bench "
        "account then has in sandbox mode (the FastAPI and arq peers read Telegram only)",
    )
    ap.add_argument(
        "--drain",
        action="store_true",
        help="count the workers instead: instructions per message filed into the fake "
        "Zendesk, deskbridge worker against the naive arq forwarder (bench/compare.py's drain)",
    )
    ap.add_argument("--messages", type=int, default=600, help="--drain: backlog (600)")
    ap.add_argument("--conversations", type=int, default=60, help="--drain: over (60)")
    args = ap.parse_args()
    systems = [s for s in LABELS if s != "before" or args.before]
    if args.channel != "telegram":
        systems = [s for s in systems if s not in TELEGRAM_ONLY]
    if args.only:
        wanted = args.only.split(",")
        unknown = set(wanted) - set(LABELS)
        if unknown:
            ap.error(f"unknown systems: {', '.join(sorted(unknown))}")
        systems = [s for s in systems if s in wanted]
    if args.before:
        tree = Path(args.before).resolve()
        src = next((d for d in (tree, tree / "src") if (d / "deskbridge").is_dir()), None)
        if src is None:
            ap.error("--before: expected a source tree (src/deskbridge) or its src/")
        args.before = str(src)
    if args.drain:
        return drain(args)
    workdir = Path(tempfile.mkdtemp(prefix="deskbridge-instr-"))
    (workdir / "logs").mkdir()
    procs = Procs(workdir / "logs")
    results: dict[str, dict[str, Any]] = {}
    try:
        store = PrivateRedis(procs, workdir)
        store.start()
        key = os.urandom(32).hex()
        print(
            f"instructions: {args.requests:,} signed ~1 KB {args.channel} updates per system over "
            f"{args.connections} keep-alive connections, after {args.warmup:,} uncounted"
        )
        for i, system in enumerate(systems):
            t0 = time.monotonic()
            results[system] = measure(procs, store, workdir, key, system, i, args)
            r = results[system]
            print(
                f"    {system}: {r['instructions'] / 1e3:,.0f} k instructions per request "
                f"(redis-server {r['redis_us']:.0f} µs CPU per request; "
                f"{time.monotonic() - t0:.0f} s)"
            )
    except BenchError as exc:
        print(f"instructions: FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        procs.stop_all()
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


def drain(args: argparse.Namespace) -> int:
    """Instructions per message of each worker draining the same backlog (queued through
    its own webhook) into one fake Zendesk; counting starts at the first message filed."""
    compare.BEFORE = args.before
    workers = ("arq", "deskbridge", "before") if args.before else ("arq", "deskbridge")
    workdir = Path(tempfile.mkdtemp(prefix="deskbridge-instr-"))
    (workdir / "logs").mkdir()
    procs = Procs(workdir / "logs")
    ns = argparse.Namespace(
        messages=args.messages,
        conversations=args.conversations,
        drain_timeout=3600.0,
        monitor=False,
        profile=0,
        callgrind=workdir,
    )
    results: dict[str, dict[str, Any]] = {}
    try:
        store = PrivateRedis(procs, workdir)
        store.start()
        key = base64.b64encode(os.urandom(32)).decode()
        print(
            f"instructions, drain: {args.messages:,} messages over {args.conversations} "
            "conversations into a fake Zendesk, one worker each, counted from the first "
            "message filed"
        )
        for k, system in enumerate(workers):
            r = asyncio.run(compare.drain_once(procs, store, workdir, key, system, ns, k))
            results[system] = r
            print(
                f"    {system}: {r['instructions'] / 1e6:,.2f} M instructions per message, "
                f"{r['http_per_message']:.2f} HTTP calls and "
                f"{r['redis_commands_per_message']:.1f} Redis commands per message, "
                f"duplicates {r['duplicates']}"
            )
    except BenchError as exc:
        print(f"instructions: FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        procs.stop_all()
    arq = results["arq"]["instructions"]
    print("\n| worker | instructions per message | of the arq forwarder |\n|---|---:|---:|")
    for system, r in results.items():
        print(f"| {system} | {r['instructions'] / 1e6:,.2f} M | {r['instructions'] / arq:.2f}x |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    return 0


def table(results: dict[str, dict[str, Any]]) -> str:
    bare = results.get("bare", {}).get("instructions")
    lines = [
        "",
        "| system | instructions per request | of bare aiohttp | bare / system |",
        "|---|---:|---:|---:|",
    ]
    for system, r in results.items():
        n = r["instructions"]
        of = f"{n / bare:.2f}x" if bare else ""
        inv = f"{bare / n:.2f}" if bare else ""
        lines.append(f"| {LABELS[system]} | {n / 1e3:,.0f} k | {of} | {inv} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
