"""deskbridge gateway benchmarks: ``make bench`` (``.venv/bin/python bench/run.py``).

Everything runs on this machine, on 127.0.0.1, in one process tree:

1. baseline: a bare aiohttp app (``bench/bare_app.py``) that reads a 1 KB POST body and
   answers 200, loaded by wrk (64 connections, 2 threads): peak requests/s;
2. gateway: ``deskbridge serve`` on a private redis-server (unix socket, AOF everysec,
   noeviction) in a temporary directory, loaded by wrk with ``bench/telegram.lua``
   (signed ~1 KB Telegram webhooks, a unique update_id each): peak acks/s (2xx only), and
   the ratio gateway / bare;
3. ack latency at a fixed rate of half the gateway's peak, with the open-loop generator
   of ``bench/loadgen.py`` (latency measured from each request's due time);
4. idle end-to-end latency: ``deskbridge serve`` + ``deskbridge worker`` filing into a fake
   Zendesk (``bench/fakedesk.py``), one webhook at a time, POST sent -> ticket at the desk;
5. a summary table, ``.bench/results.json`` and the results block of ``docs/benchmarks.md``.

``--profile`` adds one more wrk run against the gateway with py-spy attached, and prints
(and documents) where the gateway's time goes. Targets are printed as PASS/MISS and never
fail the run; the exit code is non-zero only when something could not run.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import http.client
import io
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import redis
from fakedesk import FakeZendesk
from loadgen import OpenLoopResult, http_post, open_loop, percentile, telegram_update

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
OUT = ROOT / ".bench"
DOCS = ROOT / "docs" / "benchmarks.md"

SECRET = "benchsecret"  # noqa: S105 - the bench account's, on loopback only
BOT_TOKEN = "123456:ABCdef"  # noqa: S105 - never used to call Telegram
ACCOUNT = "bench"
WA_NUMBER = "100000000000001"  # the bench account's WhatsApp number (phone_number_id)
BODY_SIZE = 1024
CHATS = 1000
E2E_CHATS = 10
E2E_WARMUP = 3
E2E_TIMEOUT_S = 5.0
E2E_GAP_S = 0.05

TARGET_RATIO = 0.40
TARGET_P99_MS = 25.0
TARGET_E2E_MS = 100.0

# update_id ranges, one per load, so no id repeats within a run; a wrk run adds
# thread * 10^8 + counter, a repeated measurement ATTEMPT more
BASE_BARE, BASE_WARM, BASE_PEAK, BASE_FIXED, BASE_PROFILE, BASE_E2E = (
    k * 10_000_000_000 for k in range(1, 7)
)
ATTEMPT = 1_000_000_000

RESULTS_BEGIN = "<!-- bench:results:begin -->"
RESULTS_END = "<!-- bench:results:end -->"
PROFILE_BEGIN = "<!-- bench:profile:begin -->"
PROFILE_END = "<!-- bench:profile:end -->"


T = TypeVar("T")


class BenchError(Exception):
    """Something could not run: the benchmark has no number to give."""


# -- processes -----------------------------------------------------------------------------


class Procs:
    """Every child this bench starts, each in its own process group, so stopping one
    stops whatever it started too. ``stop_all`` runs on every exit path."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self._procs: dict[int, subprocess.Popen[bytes]] = {}

    def spawn(
        self,
        name: str,
        args: list[str],
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        capture: bool = False,
    ) -> subprocess.Popen[bytes]:
        out: Any = subprocess.PIPE if capture else (self.logs / f"{name}.log").open("wb")
        try:
            proc = subprocess.Popen(  # noqa: S603 - argv built here, no shell
                args,
                env=env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            raise BenchError(f"cannot start {name} ({args[0]}): {exc}") from exc
        finally:
            if not capture:
                out.close()
        self._procs[proc.pid] = proc
        return proc

    def log_tail(self, name: str, lines: int = 15) -> str:
        path = self.logs / f"{name}.log"
        try:
            text = path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return ""
        return "\n".join(f"    {line}" for line in text)

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
        self._procs.pop(proc.pid, None)
        if proc.poll() is None:
            # not reaped yet, so its pid (= its group id) is still ours
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()

    def stop_all(self) -> None:
        for proc in reversed(list(self._procs.values())):
            with contextlib.suppress(Exception):
                self.stop(proc)


OTHER_LOAD_WARN = 0.25


def disturbed(cpu: dict[str, float]) -> str:
    other = cpu.get("other", 0.0)
    return (
        f" **Disturbed: other processes used {other:.2f} cores.**"
        if other > OTHER_LOAD_WARN
        else ""
    )


def warn_other_load(cpu: dict[str, float]) -> None:
    if cpu.get("other", 0.0) > OTHER_LOAD_WARN:
        print(
            f"    WARNING: other processes kept {cpu['other']:.2f} of {os.cpu_count()} cores "
            "busy during this measurement: its numbers are disturbed"
        )


def least_disturbed(
    measure: Callable[[int], T], cpu: Callable[[T], dict[str, float]], retries: int
) -> T:
    """``measure(attempt)``, repeated up to ``retries`` times while other processes kept
    more than ``OTHER_LOAD_WARN`` cores busy; the least disturbed result."""
    results: list[T] = []
    for attempt in range(retries + 1):
        results.append(measure(attempt))
        if cpu(results[-1]).get("other", 0.0) <= OTHER_LOAD_WARN:
            break
        if attempt < retries:
            print("    (measuring again)")
    return min(results, key=lambda x: cpu(x).get("other", 0.0))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_status(port: int, path: str) -> int | None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    except OSError:
        return None
    finally:
        conn.close()


def wait_ready(
    procs: Procs,
    name: str,
    proc: subprocess.Popen[bytes],
    port: int,
    path: str,
    timeout: float = 20.0,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"{name} exited with code {proc.returncode}:\n{procs.log_tail(name)}")
        if http_status(port, path) == 200:
            return
        time.sleep(0.05)
    raise BenchError(
        f"{name} not ready on :{port}{path} within {timeout:.0f}s:\n{procs.log_tail(name)}"
    )


async def wait_ready_async(
    procs: Procs,
    name: str,
    proc: subprocess.Popen[bytes],
    port: int,
    path: str,
    within_s: float = 20.0,
) -> None:
    deadline = time.monotonic() + within_s
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise BenchError(
                    f"{name} exited with code {proc.returncode}:\n{procs.log_tail(name)}"
                )
            with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                async with session.get(f"http://127.0.0.1:{port}{path}") as resp:
                    if resp.status == 200:
                        return
            await asyncio.sleep(0.05)
    raise BenchError(
        f"{name} not ready on :{port}{path} within {within_s:.0f}s:\n{procs.log_tail(name)}"
    )


def tool(name: str) -> str:
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    if found is None:
        raise BenchError(f"{name} is not installed (make bench installs wrk and redis-server)")
    return found


# -- the private redis-server --------------------------------------------------------------


class PrivateRedis:
    def __init__(self, procs: Procs, workdir: Path) -> None:
        self.procs = procs
        self.dir = workdir / "redis"
        self.socket = self.dir / "redis.sock"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def client(self) -> redis.Redis:
        return redis.Redis(unix_socket_path=str(self.socket), socket_timeout=10)

    def start(self) -> None:
        self.dir.mkdir(parents=True, mode=0o700)
        args = [
            tool("redis-server"),
            "--port", "0",
            "--unixsocket", str(self.socket),
            "--unixsocketperm", "700",
            "--dir", str(self.dir),
            "--save", "",
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--maxmemory-policy", "noeviction",
            # as `deskbridge run` configures its private Redis (store/connection.py)
            "--auto-aof-rewrite-min-size", "256mb",
            "--daemonize", "no",
        ]  # fmt: skip
        self.proc = self.procs.spawn("redis-server", args)
        deadline = time.monotonic() + 10
        client = self.client()
        try:
            while True:
                if self.proc.poll() is not None:
                    raise BenchError(f"redis-server exited:\n{self.procs.log_tail('redis-server')}")
                with contextlib.suppress(redis.RedisError, OSError):
                    if client.ping():
                        return
                if time.monotonic() > deadline:
                    raise BenchError("redis-server did not answer within 10s")
                time.sleep(0.05)
        finally:
            client.close()

    def count(self, key: str) -> int:
        client = self.client()
        try:
            return int(client.zcard(key))  # type: ignore[arg-type]
        finally:
            client.close()

    def persistence(self) -> dict[str, Any]:
        client = self.client()
        try:
            return dict(client.info("persistence"))  # type: ignore[arg-type]
        finally:
            client.close()

    def reset(self) -> None:
        """Empty the store and compact its append-only file, so that the next load starts
        clean: no AOF rewrite left over from earlier loads lands in its window."""
        client = self.client()
        try:
            # requests still in flight when wrk stopped are being stored: let them land
            deadline, last, still_since = time.monotonic() + 10, -1, time.monotonic()
            while time.monotonic() < deadline:
                size = int(client.dbsize())  # type: ignore[arg-type]
                if size != last:
                    last, still_since = size, time.monotonic()
                elif time.monotonic() - still_since > 0.3:
                    break
                time.sleep(0.05)
            self._wait_rewrite(client)
            client.flushall()
            client.bgrewriteaof()  # type: ignore[no-untyped-call]
            time.sleep(0.1)
            self._wait_rewrite(client)
        finally:
            client.close()

    @staticmethod
    def _wait_rewrite(client: redis.Redis) -> None:
        deadline = time.monotonic() + 30
        while True:
            info: Any = client.info("persistence")
            if not info.get("aof_rewrite_in_progress") and not info.get("aof_rewrite_scheduled"):
                return
            if time.monotonic() > deadline:
                raise BenchError("redis-server: AOF rewrite still running after 30s")
            time.sleep(0.05)


# -- deskbridge ----------------------------------------------------------------------------


def base_env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("DESKBRIDGE_") and k not in ("REDIS_URL",) and "proxy" not in k.lower()
    }
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


def deskbridge_env(
    workdir: Path, redis_url: str, config: Path, key: str, port: int
) -> dict[str, str]:
    env = base_env()
    env.update(
        REDIS_URL=redis_url,
        DESKBRIDGE_CONFIG=str(config),
        DESKBRIDGE_ENCRYPTION_KEY=key,
        DESKBRIDGE_HOST="127.0.0.1",
        DESKBRIDGE_PORT=str(port),
        DESKBRIDGE_LOG_LEVEL="WARNING",
        DESKBRIDGE_DATA_DIR=str(workdir / "data"),
    )
    return env


def write_config(path: Path, desk: dict[str, Any], channel: str = "telegram") -> Path:
    """The bench account with ``desk`` and one ``channel`` (telegram, whatsapp or line) in
    sandbox mode, signed with ``SECRET`` (a Meta app's secret for WhatsApp)."""
    channels: dict[str, dict[str, Any]] = {
        "telegram": {"type": "telegram", "bot_token": BOT_TOKEN, "secret_token": SECRET},
        "whatsapp": {
            "type": "whatsapp",
            "app": "bench",
            "phone_number_id": WA_NUMBER,
            "access_token": BOT_TOKEN,
        },
        "line": {
            "type": "line",
            "channel_id": "2000000001",
            "channel_secret": SECRET,
            "access_token": BOT_TOKEN,
        },
    }
    doc: dict[str, Any] = {
        "accounts": {ACCOUNT: {"desk": desk, "channels": [channels[channel] | {"sandbox": True}]}}
    }
    if channel == "whatsapp":
        doc["apps"] = {"bench": {"type": "meta", "app_secret": SECRET, "verify_token": SECRET}}
    path.write_text(json.dumps(doc, indent=2))  # JSON is YAML
    return path


# -- CPU accounting ------------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int | str) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` after the command name (state first)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _proc_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by the process ``pid`` and its children,
    those it reaped and those still running (redis-server's AOF rewrite, say). For this
    process itself, only its own time (its children are measured apart)."""
    rest = _stat(pid)
    if rest is None:
        return float("nan")
    if pid == os.getpid():
        return sum(int(x) for x in rest[11:13]) / _TICK
    ticks = sum(int(x) for x in rest[11:15])
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (child := _stat(entry.name)) and child[1] == str(pid):
            ticks += sum(int(x) for x in child[11:15])
    return ticks / _TICK


def _machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU ticks of the whole machine so far."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    except (OSError, ValueError, IndexError):
        return float("nan"), float("nan")
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def _own_cpu_s() -> tuple[float, float]:
    """CPU seconds of this process, and of its children already waited for (wrk)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime


class CpuMeter:
    """Cores used over a window by some processes, by this one ("bench") and the children
    it reaped meanwhile ("wrk"), by the whole machine ("machine_cores", and "machine" as
    a share), and by everything else ("other": other people's work on the machine, plus
    kernel time charged to no process)."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self._t0 = time.monotonic()
        self._cpu0 = {name: _proc_cpu_s(pid) for name, pid in pids.items()}
        self._own0 = _own_cpu_s()
        self._machine0 = _machine_cpu()

    def stop(self) -> dict[str, float]:
        wall = time.monotonic() - self._t0
        out = {
            name: (_proc_cpu_s(pid) - self._cpu0[name]) / wall for name, pid in self.pids.items()
        }
        own = _own_cpu_s()
        if "loadgen" not in out:
            out["bench"] = (own[0] - self._own0[0]) / wall
        out["wrk"] = (own[1] - self._own0[1]) / wall
        busy, total = _machine_cpu()
        share = (busy - self._machine0[0]) / (total - self._machine0[1] or 1)
        cores = share * (os.cpu_count() or 1)
        out["machine"] = share
        out["machine_cores"] = cores
        out["other"] = max(
            0.0, cores - sum(v for k, v in out.items() if not k.startswith("machine"))
        )
        return out


# -- wrk -----------------------------------------------------------------------------------


@dataclass
class WrkResult:
    requests: int
    duration_s: float
    non2xx: int
    generated: int
    """Requests wrk built; those still in flight when it stopped are stored but uncounted."""
    socket_errors: dict[str, int]
    p50_ms: float
    p99_ms: float
    max_ms: float
    cpu: dict[str, float] = field(default_factory=dict)
    """Cores each watched process used during the run; "machine": the busy share of all."""

    def cpu_us_per_request(self, name: str) -> float:
        cores = self.cpu.get(name, float("nan"))
        return cores * 1e6 / self.ok_rate if self.ok_rate else float("nan")

    @property
    def ok_rate(self) -> float:
        return (self.requests - self.non2xx) / self.duration_s if self.duration_s else 0.0

    @property
    def acks(self) -> int:
        return self.requests - self.non2xx


def run_wrk(
    procs: Procs,
    port: int,
    path: str,
    *,
    seconds: float,
    base: int,
    connections: int,
    threads: int,
    watch: dict[str, int] | None = None,
) -> WrkResult:
    args = [
        tool("wrk"),
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout", "5s",
        "-s", str(BENCH / "telegram.lua"),
        f"http://127.0.0.1:{port}{path}",
        "--", str(base), str(CHATS), str(BODY_SIZE), str(int(time.time())), SECRET,
    ]  # fmt: skip
    meter = CpuMeter(watch or {})
    proc = procs.spawn("wrk", args, capture=True)
    try:
        out, _ = proc.communicate(timeout=seconds + 30)
        cpu = meter.stop()
    except subprocess.TimeoutExpired as exc:
        raise BenchError("wrk did not finish in time") from exc
    finally:
        procs.stop(proc)
    text = out.decode(errors="replace")
    values: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("BENCH "):
            _, key, value = line.split(" ", 2)
            values[key] = value
    if proc.returncode != 0 or "requests" not in values:
        raise BenchError(f"wrk failed (exit {proc.returncode}):\n{text}")
    result = WrkResult(
        requests=int(values["requests"]),
        duration_s=int(values["duration_us"]) / 1e6,
        non2xx=int(values["non2xx"]),
        generated=int(values["generated"]),
        socket_errors={
            k.removeprefix("errors_"): int(v)
            for k, v in values.items()
            if k.startswith("errors_") and k != "errors_status" and int(v)
        },
        p50_ms=int(values["latency_p50_us"]) / 1000,
        p99_ms=int(values["latency_p99_us"]) / 1000,
        max_ms=int(values["latency_max_us"]) / 1000,
        cpu=cpu,
    )
    if result.non2xx:
        raise BenchError(
            f"{result.non2xx} of {result.requests} answers were not 2xx "
            f"(first: {values.get('first_bad', '?')})"
        )
    if result.requests == 0:
        raise BenchError(f"wrk completed no request:\n{text}")
    if result.socket_errors:
        print(f"    note: wrk socket errors {result.socket_errors}")
    if watch:
        warn_other_load(cpu)
    return result


# -- measurements --------------------------------------------------------------------------


@dataclass
class Results:
    bare: WrkResult | None = None
    gateway: WrkResult | None = None
    fixed: dict[str, Any] = field(default_factory=dict)
    e2e: dict[str, Any] = field(default_factory=dict)
    profile: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        if not self.bare or not self.gateway:
            return float("nan")
        return self.gateway.ok_rate / self.bare.ok_rate


def combine(runs: list[WrkResult]) -> WrkResult:
    """Several wrk runs as one: totals, time-weighted CPU, the mean p50 and worst p99."""
    duration = sum(w.duration_s for w in runs)
    errors: Counter[str] = Counter()
    for w in runs:
        errors.update(w.socket_errors)
    return WrkResult(
        requests=sum(w.requests for w in runs),
        duration_s=duration,
        non2xx=sum(w.non2xx for w in runs),
        generated=sum(w.generated for w in runs),
        socket_errors=dict(errors),
        p50_ms=sum(w.p50_ms for w in runs) / len(runs),
        p99_ms=max(w.p99_ms for w in runs),
        max_ms=max(w.max_ms for w in runs),
        cpu={
            k: sum(w.cpu.get(k, 0.0) * w.duration_s for w in runs) / duration for k in runs[0].cpu
        },
    )


def measure_peaks(
    procs: Procs, store: PrivateRedis, gw: subprocess.Popen[bytes], gw_port: int,
    args: argparse.Namespace,
) -> tuple[WrkResult, WrkResult, list[WrkResult]]:  # fmt: skip
    """Peak of the bare app and of the gateway, measured in alternating rounds so that a
    drift in the machine's speed hits both alike. A round that other processes disturbed
    is run again (up to ``--retries`` extra rounds); the least disturbed rounds count.
    Returns (bare, gateway, every gateway run, for the stored-count check)."""
    path = f"/webhooks/telegram/{ACCOUNT}"
    port = free_port()
    bare = procs.spawn("bare-aiohttp", [sys.executable, str(BENCH / "bare_app.py"), str(port)])
    try:
        wait_ready(procs, "bare-aiohttp", bare, port, "/healthz")
        load = {"connections": args.connections, "threads": 2}
        run_wrk(procs, port, path, seconds=args.warmup, base=BASE_BARE, **load)
        gw_runs = [run_wrk(procs, gw_port, path, seconds=args.warmup, base=BASE_WARM, **load)]
        seconds = max(1.0, args.duration / args.rounds)
        pairs: list[tuple[WrkResult, WrkResult]] = []
        while len(pairs) < args.rounds + args.retries:
            k = len(pairs)
            b = run_wrk(
                procs, port, path, seconds=seconds, base=BASE_BARE + ATTEMPT * (k + 1),
                watch={"app": bare.pid}, **load,
            )  # fmt: skip
            g = run_wrk(
                procs, gw_port, path, seconds=seconds, base=BASE_PEAK + ATTEMPT * k,
                watch={"app": gw.pid, "redis": store.pid}, **load,
            )  # fmt: skip
            gw_runs.append(g)
            pairs.append((b, g))
            print(
                f"    round {k + 1}: bare {b.ok_rate:,.0f} req/s, gateway {g.ok_rate:,.0f} acks/s "
                f"({g.ok_rate / b.ok_rate:.2f})"
            )
            clean = [p for p in pairs if not disturbed(p[0].cpu) and not disturbed(p[1].cpu)]
            if len(pairs) >= args.rounds and len(clean) >= args.rounds:
                break
            if args.rounds <= len(pairs) < args.rounds + args.retries:
                print("    (a round was disturbed: one more)")
        pairs.sort(key=lambda p: max(p[0].cpu.get("other", 0.0), p[1].cpu.get("other", 0.0)))
        chosen = pairs[: args.rounds]
        return combine([b for b, _ in chosen]), combine([g for _, g in chosen]), gw_runs
    finally:
        procs.stop(bare)


def cpu_note(w: WrkResult, name: str) -> str:
    app, redis_cores = w.cpu.get("app", float("nan")), w.cpu.get("redis")
    note = f"{name} {app:.2f} cores ({w.cpu_us_per_request('app'):.0f} us/req)"
    if redis_cores is not None:
        us = w.cpu_us_per_request("redis")
        note += f", redis-server {redis_cores:.2f} cores ({us:.0f} us/req)"
    note += f", wrk {w.cpu.get('wrk', float('nan')):.2f} cores"
    return note + f", other load {w.cpu.get('other', float('nan')):.2f} cores"


def slow_windows(res: OpenLoopResult, over_s: float, width_s: float = 0.25) -> list[dict[str, Any]]:
    """The 250 ms windows of the timetable (by due time) holding an answer slower than
    ``over_s``: stalls show up as a few bad windows, overload as many."""
    windows: dict[int, list[float]] = {}
    for due, latency in zip(res.due_s, res.latencies, strict=True):
        windows.setdefault(int(due / width_s), []).append(latency)
    return [
        {
            "at_s": round(k * width_s, 2),
            "max_ms": max(v) * 1000,
            "n_over": sum(x > over_s for x in v),
        }
        for k, v in sorted(windows.items())
        if max(v) > over_s
    ]


def check_stored(store: PrivateRedis, acked: int, sent: int, what: str) -> None:
    """Every 2xx must be a stored event (the pending set holds one delivery per webhook),
    and nothing but what was sent may be stored: ``acked <= stored <= sent``. (wrk does
    not count the answers still in flight when it stops.)"""
    stored = store.count(f"db:{{{ACCOUNT}}}:pending")
    if not acked <= stored <= sent:
        raise BenchError(f"{what}: {acked} webhooks acknowledged, {sent} sent, but {stored} stored")
    print(f"    check: {acked:,} acknowledged <= {stored:,} stored <= {sent:,} sent")


def fixed_rate_requests(port: int, count: int) -> list[bytes]:
    """The open-loop load, built before the clock starts (same shape as telegram.lua's)."""
    path = f"/webhooks/telegram/{ACCOUNT}"
    headers = {"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": SECRET}
    date = int(time.time())
    requests = []
    for i in range(count):
        update_id = BASE_FIXED + i
        text = f"bench message {update_id} "
        body = telegram_update(
            update_id, 100000 + update_id % CHATS, text, size=BODY_SIZE, date=date
        )
        requests.append(http_post("127.0.0.1", port, path, body, headers))
    return requests


def profile_gateway(
    procs: Procs, pid: int, redis_pid: int, port: int, args: argparse.Namespace, results: Results
) -> None:
    spy = tool("py-spy")
    raw = OUT / "profile-gateway.txt"
    raw.unlink(missing_ok=True)
    seconds = args.duration
    spy_args = [
        spy, "record", "--pid", str(pid), "--duration", str(int(seconds) + 1),
        "--rate", "200", "--function", "--idle", "--format", "raw",
        "-o", str(raw),
    ]  # fmt: skip
    proc = procs.spawn("py-spy", spy_args)
    try:
        time.sleep(0.5)
        wrk = run_wrk(
            procs, port, f"/webhooks/telegram/{ACCOUNT}", seconds=seconds, base=BASE_PROFILE,
            connections=args.connections, threads=2,
            watch={"app": pid, "redis": redis_pid, "py-spy": proc.pid},
        )  # fmt: skip
        try:
            proc.wait(seconds + 15)
        except subprocess.TimeoutExpired as exc:
            raise BenchError("py-spy did not finish") from exc
    finally:
        procs.stop(proc)
    if not raw.exists():
        raise BenchError(f"py-spy wrote no profile:\n{procs.log_tail('py-spy')}")
    results.profile = summarize_profile(raw, wrk)
    results.profile["acks"] = wrk.acks


# -- end to end ----------------------------------------------------------------------------


async def end_to_end(
    procs: Procs, store: PrivateRedis, workdir: Path, key: str, n: int
) -> dict[str, Any]:
    desk = FakeZendesk()
    desk_port = await desk.start()
    config = write_config(
        workdir / "accounts-e2e.yaml",
        {
            "type": "zendesk",
            "base_url": f"http://127.0.0.1:{desk_port}",
            "email": "bench@example.com",
            "api_token": "x",
            "webhook_secret": "y",
        },
    )
    gw_port, wk_port = free_port(), free_port()
    started: list[subprocess.Popen[bytes]] = []
    try:
        gw = procs.spawn(
            "e2e-serve",
            [tool("deskbridge"), "serve"],
            env=deskbridge_env(workdir, store.url, config, key, gw_port),
            cwd=workdir,
        )
        started.append(gw)
        wk = procs.spawn(
            "e2e-worker",
            [tool("deskbridge"), "worker"],
            env=deskbridge_env(workdir, store.url, config, key, wk_port),
            cwd=workdir,
        )
        started.append(wk)
        await wait_ready_async(procs, "e2e-serve", gw, gw_port, "/readyz")
        await wait_ready_async(procs, "e2e-worker", wk, wk_port, "/readyz")
        url = f"http://127.0.0.1:{gw_port}/webhooks/telegram/{ACCOUNT}"
        headers = {"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": SECRET}
        date = int(time.time())
        samples: list[dict[str, Any]] = []
        timeout = aiohttp.ClientTimeout(total=E2E_TIMEOUT_S)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            for k in range(E2E_WARMUP + n):
                update_id = BASE_E2E + k
                chat = 200000 + k % E2E_CHATS
                body = telegram_update(
                    update_id, chat, f"bench e2e-{k} ", size=BODY_SIZE, date=date
                )
                filed = desk.expect(k)
                t0 = time.monotonic()
                async with session.post(url, data=body, headers=headers) as resp:
                    await resp.read()
                    status = resp.status
                acked = time.monotonic()
                if not 200 <= status < 300:
                    raise BenchError(f"end to end: webhook {k} answered HTTP {status}")
                try:
                    at, kind = await asyncio.wait_for(filed, E2E_TIMEOUT_S)
                except TimeoutError:
                    raise BenchError(
                        f"end to end: message {k} not at the desk after {E2E_TIMEOUT_S:.0f}s "
                        f"(desk calls: {dict(desk.calls)}):\n{procs.log_tail('e2e-worker')}"
                    ) from None
                if k >= E2E_WARMUP:
                    samples.append({"e2e": at - t0, "ack": acked - t0, "kind": kind})
                await asyncio.sleep(E2E_GAP_S)
    finally:
        for proc in started:
            procs.stop(proc)
        await desk.stop()

    def stats(values: list[float]) -> dict[str, float]:
        return {
            "n": len(values),
            "p50_ms": percentile(values, 50) * 1000,
            "p99_ms": percentile(values, 99) * 1000,
            "max_ms": max(values) * 1000 if values else float("nan"),
        }

    out: dict[str, Any] = stats([s["e2e"] for s in samples])
    out["ack"] = stats([s["ack"] for s in samples])
    out["by_kind"] = {
        kind: stats([s["e2e"] for s in samples if s["kind"] == kind])
        for kind in sorted({s["kind"] for s in samples})
    }
    out["desk_calls"] = dict(desk.calls)
    return out


# -- profile summary -----------------------------------------------------------------------

_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def _short(frame: str) -> str:
    m = _FRAME.match(frame)
    if not m:
        return frame
    path = m.group("file")
    for marker in ("site-packages/", "/src/", "python3.11/", "lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{m.group('func')} ({path})"


def _package(frame: str) -> str:
    m = _FRAME.match(frame)
    path = m.group("file") if m else frame
    for name in (
        "deskbridge", "aiohttp", "multidict", "yarl", "redis", "pydantic", "cryptography",
        "prometheus_client", "asyncio", "json",
    ):  # fmt: skip
        if f"{name}/" in path or path.startswith(name):
            return name
    return "other (stdlib, builtins)"


# Stages of a request, by the deepest frame of a sample that names one (function prefixes).
_STAGES = (
    ("Vault.seal", "encrypt records (Vault.seal)"),
    ("raw_record", "raw request record"),
    ("Coalescer.", "Redis pipeline (pack, send, read replies)"),
    ("Multiplexer.", "Redis pipeline (pack, send, read replies)"),
    ("_Link.", "Redis pipeline (pack, send, read replies)"),
    ("Redis.", "Redis pipeline (pack, send, read replies)"),
    ("Pipeline.", "Redis pipeline (pack, send, read replies)"),
    ("new_id", "intake: records and ids"),
    ("Intake.accept", "intake: records and ids"),
    ("BaseModel.model_dump", "event model_dump"),
    ("ConversationStore.conversation_id", "conversation id"),
    ("TelegramAdapter.parse", "Telegram parse (json + pydantic)"),
    ("TelegramAdapter.verify", "secret-token check"),
    ("read_raw", "read body, copy headers and query"),
    ("MetricWrapperBase.", "prometheus metrics"),
    ("Counter.inc", "prometheus metrics"),
    ("channel_webhook", "handler (rest)"),
    ("_count", "middleware (rest)"),
    ("RequestHandler._handle_request", "aiohttp: request, response"),
    ("RequestHandler.start", "aiohttp: request, response"),
    ("RequestHandler.data_received", "aiohttp: HTTP parsing"),
)


def _func(frame: str) -> str:
    return frame.split(" (", 1)[0]


def _stage(frames: list[str]) -> str:
    for frame in reversed(frames):
        func = _func(frame)
        for prefix, stage in _STAGES:
            if func.startswith(prefix):
                return stage
    return "event loop, transports (asyncio)"


def _is_idle(frame: str) -> bool:
    return "selectors" in frame and _func(frame).rsplit(".", 1)[-1] in ("select", "poll")


def summarize_profile(path: Path, wrk: WrkResult, top: int = 10) -> dict[str, Any]:
    """Top functions by own (self) time, deskbridge functions by inclusive time, own time
    per package and per stage of a request, as shares of the busy samples and as CPU
    microseconds per ack (the gateway's measured CPU time spread by those shares).
    Samples of the loop waiting in epoll are idle and counted apart."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    stages: Counter[str] = Counter()
    samples = idle = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        frames = [f for f in stack.split(";") if f and not f.startswith(("process ", "thread "))]
        samples += n
        if not frames or _is_idle(frames[-1]):
            idle += n
            continue
        leaf = frames[-1]
        own[_short(leaf)] += n
        packages[_package(leaf)] += n
        stages[_stage(frames)] += n
        for f in {_short(f) for f in frames}:
            if "deskbridge/" in f and "deskbridge/cli/" not in f:
                inclusive[f] += n
    busy = samples - idle
    cpu_us = wrk.cpu_us_per_request("app")

    def rows(counter: Counter[str], k: int) -> list[dict[str, Any]]:
        return [
            {"function": f, "share": c / busy, "us_per_request": c / busy * cpu_us}
            for f, c in counter.most_common(k)
        ]

    return {
        "samples": samples,
        "busy_share": busy / samples if samples else 0.0,
        "cores": wrk.cpu.get("app", float("nan")),
        "us_per_request": cpu_us,
        "rate": wrk.ok_rate,
        "self": rows(own, top),
        "inclusive": rows(inclusive, top),
        "packages": rows(packages, 12),
        "stages": rows(stages, 20),
        "raw": str(path.relative_to(ROOT)),
    }


# -- reporting -----------------------------------------------------------------------------


def sh(*cmd: str) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)  # noqa: S603
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return (out.stdout or out.stderr).strip() or "?"


def machine() -> dict[str, str]:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    redis_version = sh("redis-server", "--version")
    m = re.search(r"v=(\S+)", redis_version)
    wrk_version = sh("wrk", "--version").splitlines()[0]
    return {
        "date": sh("date", "-u"),
        "nproc": sh("nproc"),
        "cpu": cpu,
        "memory": mem,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
        "redis-py": redis.__version__,
        "redis-server": m.group(1) if m else redis_version,
        "wrk": wrk_version.split(" [")[0],
    }


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def summary_rows(r: Results) -> list[tuple[str, str, str, str]]:
    assert r.bare is not None
    assert r.gateway is not None
    f, e = r.fixed, r.e2e
    return [
        ("bare aiohttp peak", f"{r.bare.ok_rate:,.0f} req/s", "", ""),
        ("gateway peak (2xx acks)", f"{r.gateway.ok_rate:,.0f} acks/s", "", ""),
        (
            "gateway / bare",
            f"{r.ratio:.2f}",
            f">= {TARGET_RATIO:.2f}",
            verdict(r.ratio >= TARGET_RATIO),
        ),
        (
            "fixed rate: target / achieved",
            f"{f['target_rate']:,.0f} / {f['achieved_rate']:,.0f} req/s",
            "",
            "",
        ),
        (
            "  ack latency p50 / p99",
            f"{f['p50_ms']:.1f} / {f['p99_ms']:.1f} ms",
            f"p99 <= {TARGET_P99_MS:.0f} ms",
            verdict(f["p99_ms"] <= TARGET_P99_MS),
        ),
        (
            "idle inbound->desk p50 / p99 / max",
            f"{e['p50_ms']:.1f} / {e['p99_ms']:.1f} / {e['max_ms']:.1f} ms",
            f"p99 < {TARGET_E2E_MS:.0f} ms",
            verdict(e["p99_ms"] < TARGET_E2E_MS),
        ),
    ]


def print_table(rows: list[tuple[str, str, str, str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    print()
    for row in rows:
        print("  " + "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
    print()


def profile_lines(p: dict[str, Any]) -> list[str]:
    lines = [
        f"py-spy (200 Hz, {p['samples']} samples) on `deskbridge serve` during one wrk run at "
        f"{p['rate']:,.0f} acks/s: the gateway used {p['cores']:.2f} cores = "
        f"{p['us_per_request']:.0f} us CPU per ack; its loop was busy in {p['busy_share']:.0%} "
        f"of the samples (the rest: waiting in epoll). Shares below are of the busy samples; "
        f"us/ack spreads the measured CPU time by those shares. py-spy over-weights functions "
        f"that make system calls (socket writes, `os.urandom` in `new_id` and `Vault.seal`): "
        f"a guide, not a measurement. Raw stacks (collapsed, per function): `{p['raw']}`.",
        "",
        "Top functions by own time (C code is counted in the Python function that called it):",
        "",
        "| # | function | share | us/ack |",
        "|---:|---|---:|---:|",
    ]
    lines += [
        f"| {i} | `{row['function']}` | {row['share']:.1%} | {row['us_per_request']:.1f} |"
        for i, row in enumerate(p["self"], 1)
    ]
    sections = (
        (
            "Where a request's time goes (each sample to the deepest stage it is in):",
            "stage",
            "stages",
        ),
        ("deskbridge functions by inclusive time:", "function", "inclusive"),
        ("Own time by package:", "package", "packages"),
    )
    for title, what, key in sections:
        lines += ["", title, "", f"| {what} | share | us/ack |", "|---|---:|---:|"]
        code = key == "inclusive"
        lines += [
            f"| {'`' if code else ''}{row['function']}{'`' if code else ''} | {row['share']:.1%} "
            f"| {row['us_per_request']:.1f} |"
            for row in p[key]
        ]
    return lines


def results_block(r: Results, m: dict[str, str], args: argparse.Namespace) -> str:
    assert r.bare is not None
    assert r.gateway is not None
    f, e = r.fixed, r.e2e
    kinds = ", ".join(
        f"{kind}: p50 {s['p50_ms']:.1f} / p99 {s['p99_ms']:.1f} ms (n={s['n']})"
        for kind, s in e["by_kind"].items()
    )
    lines = [
        RESULTS_BEGIN,
        f"## Latest run: {m['date']}",
        "",
        f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory']} RAM, Linux {m['kernel']}. "
        f"Python {m['python']}, aiohttp {m['aiohttp']}, redis-py {m['redis-py']}, "
        f"redis-server {m['redis-server']}, {m['wrk']}.",
        f"Load: {args.connections} connections, 2 wrk threads; peaks in {args.rounds} "
        f"alternating bare/gateway rounds of {args.duration / args.rounds:.0f} s after a "
        f"{args.warmup:.0f} s warm-up each; fixed rate {args.duration:.0f} s after 1 s; "
        f"{BODY_SIZE}-byte bodies; {CHATS} chats.",
        "",
        "| measurement | result | target | |",
        "|---|---|---|---|",
    ]
    lines += [f"| {a.strip()} | {b} | {c} | {d} |" for a, b, c, d in summary_rows(r)]
    lines += [
        "",
        f"- bare aiohttp: {r.bare.acks:,} requests in {r.bare.duration_s:.1f} s; wrk latency "
        f"p50 {r.bare.p50_ms:.2f} ms, p99 {r.bare.p99_ms:.2f} ms. CPU: "
        f"{cpu_note(r.bare, 'the app')}.{disturbed(r.bare.cpu)}",
        f"- gateway: {r.gateway.acks:,} acks in {r.gateway.duration_s:.1f} s, all stored "
        f"(pending deliveries counted in Redis); wrk latency p50 {r.gateway.p50_ms:.2f} ms, "
        f"p99 {r.gateway.p99_ms:.2f} ms (closed loop, {args.connections} in flight). CPU: "
        f"{cpu_note(r.gateway, 'deskbridge serve')}.{disturbed(r.gateway.cpu)}",
        f"- fixed rate (on an emptied, AOF-compacted Redis): {f['measured']:,} requests due in "
        f"{f['window_s']:.0f} s at {f['target_rate']:,.0f}/s (sent at {f['sent_rate']:,.0f}/s, "
        f"answered at {f['achieved_rate']:,.0f}/s); p90 {f['p90_ms']:.1f} ms, max "
        f"{f['max_ms']:.1f} ms; {len(f['slow_windows'])} of {int(f['window_s'] / 0.25)} "
        f"250 ms windows held an answer over {TARGET_P99_MS:.0f} ms; AOF rewrites in the "
        f"window: {f['aof_rewrites']}; generator send lag p99 {f['send_lag_p99_ms']:.2f} ms. "
        f"CPU: deskbridge serve {f['cpu']['app']:.2f} cores, redis-server "
        f"{f['cpu']['redis']:.2f}, load generator {f['cpu']['loadgen']:.2f}, other load "
        f"{f['cpu']['other']:.2f}.{disturbed(f['cpu'])}",
        f"- idle end to end ({e['n']} messages over {E2E_CHATS} chats, one at a time): {kinds}. "
        f"Ack latency of the same webhooks p50 {e['ack']['p50_ms']:.1f} ms, "
        f"p99 {e['ack']['p99_ms']:.1f} ms.",
        RESULTS_END,
    ]
    return "\n".join(lines)


DOC_TEMPLATE = f"""# Benchmarks

`make bench` runs `bench/run.py`. See the docstring of `bench/run.py` for the method.

{RESULTS_BEGIN}
{RESULTS_END}

## Profile

Run `make bench ARGS=--profile` to fill this section.

{PROFILE_BEGIN}
{PROFILE_END}
"""


def replace_block(text: str, begin: str, end: str, block: str) -> str:
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        return head + block + tail
    return text.rstrip("\n") + "\n\n" + block + "\n"


def write_docs(r: Results, m: dict[str, str], args: argparse.Namespace) -> None:
    text = DOCS.read_text() if DOCS.exists() else DOC_TEMPLATE
    text = replace_block(text, RESULTS_BEGIN, RESULTS_END, results_block(r, m, args))
    if r.profile:
        block = "\n".join(
            [PROFILE_BEGIN, f"Profiled: {m['date']}.", "", *profile_lines(r.profile), PROFILE_END]
        )
        text = replace_block(text, PROFILE_BEGIN, PROFILE_END, block)
    DOCS.parent.mkdir(exist_ok=True)
    DOCS.write_text(text)


# -- main ----------------------------------------------------------------------------------


def bench(procs: Procs, workdir: Path, args: argparse.Namespace) -> Results:
    r = Results()
    store = PrivateRedis(procs, workdir)
    store.start()
    key = base64.b64encode(os.urandom(32)).decode()
    config = write_config(workdir / "accounts.yaml", {"type": "sandbox"})
    port = free_port()
    gw = procs.spawn(
        "gateway",
        [tool("deskbridge"), "serve"],
        env=deskbridge_env(workdir, store.url, config, key, port),
        cwd=workdir,
    )
    wait_ready(procs, "gateway", gw, port, "/readyz")
    print(
        f"bench: 1-2/4 peak of a bare aiohttp app and of deskbridge serve (signed Telegram "
        f"webhooks), {args.connections} connections, {args.rounds} alternating rounds of "
        f"{args.duration / args.rounds:.0f} s each"
    )
    r.bare, r.gateway, runs = measure_peaks(procs, store, gw, port, args)
    print(
        f"    bare {r.bare.ok_rate:,.0f} req/s; gateway {r.gateway.ok_rate:,.0f} acks/s, "
        f"{r.ratio:.2f} of bare"
    )
    print(f"    CPU: {cpu_note(r.bare, 'bare app')}; {cpu_note(r.gateway, 'gateway')}")
    check_stored(store, sum(w.acks for w in runs), sum(w.generated for w in runs), "peak")

    rate = max(10.0, round(r.gateway.ok_rate / 2))
    print(
        f"bench: 3/4 fixed rate {rate:,.0f} req/s (half the peak), "
        f"open loop ({args.duration:.0f} s)"
    )
    r.fixed = least_disturbed(
        lambda _: measure_fixed(store, gw.pid, port, rate, args), lambda f: f["cpu"], args.retries
    )

    if args.profile:
        print(f"bench: profile: py-spy on the gateway under wrk ({args.duration:.0f} s)")
        profile_gateway(procs, gw.pid, store.pid, port, args, r)
    procs.stop(gw)

    print(f"bench: 4/4 idle end to end, {args.e2e} messages, serve + worker -> fake Zendesk")
    store.reset()
    r.e2e = asyncio.run(end_to_end(procs, store, workdir, key, args.e2e))
    print(
        f"    p50 {r.e2e['p50_ms']:.1f} ms, p99 {r.e2e['p99_ms']:.1f} ms, "
        f"max {r.e2e['max_ms']:.1f} ms"
    )
    return r


def measure_fixed(
    store: PrivateRedis, pid: int, port: int, rate: float, args: argparse.Namespace
) -> dict[str, Any]:
    # The peak run leaves ~100 MB of AOF behind, whose rewrite would land here: start clean.
    store.reset()
    rewrites = store.persistence().get("aof_rewrites", 0)
    fixed_sent = int(rate * (1.0 + args.duration))  # 1 s warm-up, not measured
    requests = fixed_rate_requests(port, fixed_sent)
    meter = CpuMeter({"app": pid, "redis": store.pid, "loadgen": os.getpid()})
    res = asyncio.run(
        open_loop("127.0.0.1", port, requests, rate, warmup_s=1.0, connections=args.connections)
    )
    fixed_cpu = meter.stop()
    rewrites = store.persistence().get("aof_rewrites", 0) - rewrites
    if res.unanswered or res.non2xx:
        raise BenchError(
            f"fixed rate: {res.unanswered} unanswered, {res.non2xx} non-2xx "
            f"(statuses {res.statuses})"
        )
    fixed: dict[str, Any] = {
        "target_rate": rate,
        "achieved_rate": res.achieved_rate,
        "sent_rate": res.sent_rate,
        "measured": res.scheduled,
        "window_s": res.duration_s,
        "p50_ms": percentile(res.latencies, 50) * 1000,
        "p90_ms": percentile(res.latencies, 90) * 1000,
        "p99_ms": percentile(res.latencies, 99) * 1000,
        "max_ms": max(res.latencies) * 1000,
        "send_lag_p99_ms": percentile(res.send_lag, 99) * 1000,
        "cpu": fixed_cpu,
        "aof_rewrites": rewrites,
        "window_start_utc": time.strftime("%H:%M:%S", time.gmtime(res.window_start_unix))
        + f".{int(res.window_start_unix * 1000) % 1000:03d}",
        "slow_windows": slow_windows(res, TARGET_P99_MS / 1000),
    }
    print(
        f"    sent {res.sent_rate:,.0f}/s, answered {res.achieved_rate:,.0f}/s; "
        f"p50 {fixed['p50_ms']:.1f} ms, p99 {fixed['p99_ms']:.1f} ms, "
        f"max {fixed['max_ms']:.1f} ms"
    )
    print(
        f"    CPU: gateway {fixed_cpu['app']:.2f} cores, redis-server {fixed_cpu['redis']:.2f}, "
        f"load generator {fixed_cpu['loadgen']:.2f}, other load {fixed_cpu['other']:.2f}"
    )
    warn_other_load(fixed_cpu)
    slow = fixed["slow_windows"]
    if slow:
        print(
            f"    {len(slow)} of {int(res.duration_s / 0.25)} 250 ms windows had an answer over "
            f"{TARGET_P99_MS:.0f} ms (worst {max(w['max_ms'] for w in slow):.0f} ms)"
        )
    if rewrites:
        print(
            f"    note: redis-server rewrote its AOF {rewrites}x during the window (started "
            f"{fixed['window_start_utc']} UTC; times in .bench/logs/redis-server.log)"
        )
    if res.sent_rate < 0.95 * rate or res.achieved_rate < 0.95 * rate:
        print("    WARNING: the fixed rate was not sustained; latencies include the shortfall")
    # the warm-up second is stored too, and every request was answered
    check_stored(store, fixed_sent, fixed_sent, "fixed rate")
    return fixed


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument(
        "--duration", type=float, default=10.0, help="seconds per measurement (default 10)"
    )
    p.add_argument("--warmup", type=float, default=2.0, help="wrk warm-up seconds (default 2)")
    p.add_argument("--connections", type=int, default=64, help="connections (default 64)")
    p.add_argument("--e2e", type=int, default=50, help="end-to-end messages (default 50)")
    p.add_argument(
        "--rounds", type=int, default=2, help="alternating bare/gateway rounds (default 2)"
    )
    p.add_argument(
        "--retries",
        type=int,
        default=1,
        help="measure again when other processes disturbed a measurement (default 1)",
    )
    p.add_argument("--profile", action="store_true", help="also profile the gateway with py-spy")
    p.add_argument("--no-docs", action="store_true", help="do not update docs/benchmarks.md")
    args = p.parse_args()
    if not (
        1 <= args.duration <= 60
        and 1 <= args.warmup <= 30
        and 1 <= args.e2e <= 1000
        and 0 <= args.retries <= 3
        and 1 <= args.rounds <= 5
    ):
        p.error("--duration 1..60, --warmup 1..30, --e2e 1..1000, --retries 0..3, --rounds 1..5")
    return args


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    args = parse_args()
    sys.stdout = _Forgiving(sys.stdout)
    sys.stderr = _Forgiving(sys.stderr)
    # Ctrl-C stops the run and its children even when started with SIGINT ignored (`cmd &`)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    OUT.mkdir(exist_ok=True)
    logs = OUT / "logs"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir()
    workdir = Path(tempfile.mkdtemp(prefix="deskbridge-bench-"))
    procs = Procs(logs)
    started = time.monotonic()
    try:
        if args.profile:
            tool("py-spy")  # fail before measuring anything
        results = bench(procs, workdir, args)
    except BenchError as exc:
        print(f"bench: FAILED: {exc}", file=sys.stderr)
        print(f"bench: logs in {logs.relative_to(ROOT)}/", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nbench: interrupted", file=sys.stderr)
        return 130
    finally:
        procs.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)

    # results first: a reader that stops reading (`| head`) must not cost them
    m = machine()
    (OUT / "results.json").write_text(
        json.dumps(
            {
                "machine": m,
                "bare": asdict(results.bare) if results.bare else None,
                "gateway": asdict(results.gateway) if results.gateway else None,
                "ratio": results.ratio,
                "fixed": results.fixed,
                "e2e": results.e2e,
                "profile": results.profile,
            },
            indent=2,
        )
    )
    if not args.no_docs:
        write_docs(results, m, args)
    print_table([("measurement", "result", "target", ""), *summary_rows(results)])
    noisy = [
        name
        for name, cpu in (
            ("bare", results.bare.cpu if results.bare else {}),
            ("gateway peak", results.gateway.cpu if results.gateway else {}),
            ("fixed rate", results.fixed.get("cpu", {})),
        )
        if disturbed(cpu)
    ]
    if noisy:
        print(f"  note: disturbed by other processes on this machine: {', '.join(noisy)}\n")
    if results.profile:
        print("\n".join(profile_lines(results.profile)))
        print()
    if not args.no_docs:
        print(f"bench: wrote {DOCS.relative_to(ROOT)}")
    print(
        f"bench: done in {time.monotonic() - started:.0f} s (benchmarks report; misses do not fail)"
    )
    return 0


class _Forgiving(io.TextIOBase):
    """stdout/stderr that keep the run going when the reader went away (`| head`): the
    bench must still stop its children and write its results."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self.closed_pipe = False

    def write(self, text: str) -> int:
        if not self.closed_pipe:
            try:
                self._stream.write(text)
                self._stream.flush()
            except BrokenPipeError:
                self.closed_pipe = True
        return len(text)

    def flush(self) -> None:
        if not self.closed_pipe:
            with contextlib.suppress(BrokenPipeError):
                self._stream.flush()


if __name__ == "__main__":
    sys.exit(main())
