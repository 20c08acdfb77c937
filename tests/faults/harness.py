"""The fault harness: real processes on loopback, each of them ours to kill.

One ``Harness`` owns a temporary directory holding a private ``redis-server`` (TCP on a
free 127.0.0.1 port, append-only file on, ``noeviction``; never the shared Redis), the
accounts file, and the logs of ``deskbridge serve`` and ``deskbridge worker``, which run as
subprocesses against it. The fake Zendesk (``fakezendesk.py``) and the load generator
(``load.py``) run in the caller's event loop. Every account of the harness files into its
own desk of the fake Zendesk and takes Telegram webhooks signed with the secret header.

Worker timing comes from the real settings (``DESKBRIDGE_*`` in the children's
environment), never from patches: see ``Timing``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ctypes
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from deskbridge.store import keys
from deskbridge.store.keyring import load_vault

from .faketelegram import FakeTelegram
from .fakezendesk import FakeZendesk

__all__ = ["BOT_TOKEN", "TG_SECRET", "Harness", "HarnessError", "Timing", "free_port"]

TG_SECRET = "fault-harness-secret"  # loopback only
BOT_TOKEN = "123456:fault-harness-bot"  # never used to call Telegram
ZD_EMAIL = "bot@faults.test"
ZD_TOKEN = "fault-harness-zendesk-token"  # the fake desk's

ARQ_IN_PROGRESS_EXTRA_S = 10.0
"""arq keeps a job's in-progress mark its job timeout plus this long."""

DESKBRIDGE = [sys.executable, "-c", "from deskbridge.cli.main import main; main()"]


class HarnessError(Exception):
    """A process of the harness could not start or stop in time."""


@dataclass(frozen=True, slots=True)
class Timing:
    """The worker settings a run uses, passed as ``DESKBRIDGE_*`` environment variables."""

    job_timeout_seconds: float = 2.0
    job_grace_seconds: float = 1.0
    retry_base_seconds: float = 0.2
    retry_cap_seconds: float = 1.0
    max_attempts: int = 10
    max_rate_limit_wait_seconds: float = 60.0
    sweep_interval_seconds: float = 2.0
    sweep_grace_seconds: float = 5.0
    http_timeout_seconds: float = 5.0
    max_jobs: int = 50

    def env(self) -> dict[str, str]:
        return {f"DESKBRIDGE_{k.upper()}": str(v) for k, v in asdict(self).items()}


def free_port() -> int:
    """A port free now, below Linux's ephemeral range (32768-60999): the harness binds
    its ports seconds after choosing them, and an ephemeral port may meanwhile become
    the local end of any outgoing connection on the machine (a busy test run makes
    thousands). Both UDP and TCP are checked (a SIP listener takes both)."""
    for _ in range(200):
        port = random.randrange(20000, 32768)
        try:
            for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                with socket.socket(socket.AF_INET, kind) as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _entry() -> list[str]:
    """``deskbridge``: the venv's console script when there is one, else the module."""
    script = Path(sys.executable).with_name("deskbridge")
    return [str(script)] if script.exists() else DESKBRIDGE


class _Child:
    """A child process in its own session, logging to a file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.name, self.argv, self.env, self.log = name, argv, env, log
        self.proc: subprocess.Popen[bytes] | None = None

    def spawn(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        if self.alive:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(5)

    async def stop(self, grace: float = 10.0) -> None:
        """SIGTERM (a clean stop), SIGKILL after ``grace`` seconds."""
        if not self.alive:
            return
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        while self.proc.poll() is None and time.monotonic() < deadline:  # noqa: ASYNC110 - a child process has no event to await
            await asyncio.sleep(0.02)
        if self.proc.poll() is None:
            self.kill9()

    def tail(self, lines: int = 25) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])


class Harness:
    """Start with ``async with Harness(accounts, timing) as h``; everything stops on exit."""

    def __init__(
        self,
        accounts: Iterable[str],
        timing: Timing,
        *,
        appendfsync: str = "everysec",
        log_level: str = "INFO",
        workdir: Path | None = None,
    ) -> None:
        self.accounts = list(accounts)
        self.timing = timing
        self.appendfsync = appendfsync
        self.log_level = log_level
        self._own_dir = workdir is None
        self.dir = Path(workdir or tempfile.mkdtemp(prefix="deskbridge-faults-"))
        self.desk = FakeZendesk(ZD_EMAIL, ZD_TOKEN)
        self.telegram = FakeTelegram(BOT_TOKEN)
        self.encryption_key = base64.b64encode(secrets.token_bytes(32)).decode()
        self.redis_port = free_port()
        self.gateway_port = free_port()
        self.worker_port = free_port()
        self.redis_server: _Child | None = None
        self.gateway: _Child | None = None
        self.worker: _Child | None = None
        self.session: aiohttp.ClientSession | None = None
        self._worker_started = 0.0
        self._redis: aioredis.Redis | None = None

    # -- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> Harness:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        (self.dir / "logs").mkdir(parents=True, exist_ok=True)
        (self.dir / "redis").mkdir(exist_ok=True)
        await self.desk.start()
        await self.telegram.start()
        config = self.dir / "accounts.yaml"
        config.write_text(json.dumps(self._accounts_doc(), indent=2))  # JSON is YAML
        env = self._env(config)
        self.redis_server = _Child(
            "redis-server", self._redis_argv(), _base_env(), self.dir / "logs" / "redis.log"
        )
        await self.start_redis()
        self.gateway = _Child(
            "gateway",
            [*_entry(), "serve", "--port", str(self.gateway_port)],
            env,
            self.dir / "logs" / "gateway.log",
        )
        self.worker = _Child(
            "worker",
            [*_entry(), "worker", "--port", str(self.worker_port)],
            env,
            self.dir / "logs" / "worker.log",
        )
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=256), timeout=aiohttp.ClientTimeout(total=30)
        )
        self.gateway.spawn()
        self._worker_started = time.monotonic()
        self.worker.spawn()
        await self._wait_http(self.gateway, self.gateway_port, "/readyz")
        await self._wait_http(self.worker, self.worker_port, "/healthz")

    async def stop(self) -> None:
        for child in (self.worker, self.gateway):
            if child is not None:
                await child.stop(5)
        if self.session is not None:
            await self.session.close()
        if self._redis is not None:
            await self._redis.aclose()
        if self.redis_server is not None:
            await self.redis_server.stop(10)
        await self.desk.stop()
        await self.telegram.stop()
        if self._own_dir and not os.environ.get("DESKBRIDGE_FAULTS_KEEP"):
            shutil.rmtree(self.dir, ignore_errors=True)

    # -- the processes -----------------------------------------------------------------

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    def redis(self) -> aioredis.Redis:
        if self._redis is None:
            self._redis = aioredis.Redis.from_url(
                self.redis_url, socket_connect_timeout=2, socket_timeout=10
            )
        return self._redis

    async def start_redis(self) -> None:
        assert self.redis_server is not None
        self.redis_server.spawn()
        client = aioredis.Redis.from_url(self.redis_url, socket_connect_timeout=1)
        deadline = time.monotonic() + 20
        try:
            while True:
                if not self.redis_server.alive:
                    raise HarnessError(f"redis-server exited:\n{self.redis_server.tail()}")
                with contextlib.suppress(Exception):
                    if await client.ping():
                        return
                if time.monotonic() > deadline:
                    raise HarnessError("redis-server did not answer within 20s")
                await asyncio.sleep(0.02)
        finally:
            await client.aclose()

    async def stop_redis(self) -> None:
        """SIGTERM: redis-server writes its append-only file out and exits."""
        assert self.redis_server is not None
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None
        await self.redis_server.stop(20)

    async def kill_worker(self) -> int:
        """SIGKILL the worker; returns how many jobs it had in progress."""
        assert self.worker is not None
        self.worker.kill9()
        return await self.in_progress(since=self._worker_started)

    async def in_progress(self, since: float = 0.0) -> int:
        """Jobs marked in progress (arq's marks) since ``since`` (``time.monotonic()``).
        A mark outlives a killed worker; its age is its lifetime minus its remaining TTL."""
        t = self.timing
        lifetime_ms = (t.job_timeout_seconds + t.job_grace_seconds + ARQ_IN_PROGRESS_EXTRA_S) * 1000
        oldest_ms = (time.monotonic() - since) * 1000 if since else float("inf")
        r = self.redis()
        count = 0
        async for key in r.scan_iter(match="arq:in-progress:*", count=1000):
            ttl = await r.pttl(key)
            if ttl > 0 and lifetime_ms - ttl <= oldest_ms:
                count += 1
        return count

    async def start_worker(self) -> None:
        assert self.worker is not None
        self._worker_started = time.monotonic()
        self.worker.spawn()
        await self._wait_http(self.worker, self.worker_port, "/healthz")

    async def stop_worker(self) -> None:
        assert self.worker is not None
        await self.worker.stop()

    async def _wait_http(self, child: _Child, port: int, path: str, limit: float = 30) -> None:
        deadline = time.monotonic() + limit
        async with aiohttp.ClientSession() as session:
            while True:
                if not child.alive:
                    raise HarnessError(f"{child.name} exited:\n{child.tail()}")
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with session.get(f"http://127.0.0.1:{port}{path}") as resp:
                        if resp.status == 200:
                            return
                if time.monotonic() > deadline:
                    raise HarnessError(f"{child.name} not ready within {limit:g}s:\n{child.tail()}")
                await asyncio.sleep(0.05)

    # -- what Redis holds --------------------------------------------------------------

    async def counts(self, account: str) -> tuple[int, int]:
        """(pending, dead) deliveries of ``account``."""
        r = self.redis()
        return int(await r.zcard(keys.pending(account))), int(await r.zcard(keys.dead(account)))

    async def deliveries(self, account: str) -> list[dict[str, Any]]:
        """Every delivery record of ``account``, with its attempts (decoded)."""
        r = self.redis()
        out: list[dict[str, Any]] = []
        async for key in r.scan_iter(match=keys.delivery(account, "*"), count=1000):
            if key.endswith((b":attempts", b":parts")):
                continue
            # redis-py types async results as `Awaitable[T] | T`, which mypy calls [misc]
            h = {k.decode(): v.decode() for k, v in (await r.hgetall(key)).items()}  # type: ignore[misc]
            rows = await r.lrange(key + b":attempts", 0, -1)  # type: ignore[misc]
            h["attempt_log"] = [json.loads(x) for x in rows]
            out.append(h)
        return out

    async def states(self, account: str, dedup_keys: dict[Any, str]) -> dict[Any, str | None]:
        """The store's own word on acknowledged events: for each item of ``dedup_keys``
        (anything -> the event's Telegram dedup key), the state of the delivery its
        dedup mark points to (``delivered``, ``dead``, ``pending`` ...), None when the
        store holds no delivery for it (an acknowledged event without one is lost)."""
        r = self.redis()
        vault = load_vault(keys_file=None, encryption_key=self.encryption_key, lookup_key=None)
        assert vault is not None
        items = list(dedup_keys.items())
        out: dict[Any, str | None] = {}
        for start in range(0, len(items), 1000):
            chunk = items[start : start + 1000]
            pipe = r.pipeline(transaction=False)
            for _, key in chunk:
                # dedup marks are named by the keyed digest of the id (issue 18)
                pipe.get(keys.dedup(account, "telegram", vault.digest("dedup", "telegram", key)))
            marks = await pipe.execute()
            pipe = r.pipeline(transaction=False)
            for mark in marks:
                pipe.hget(keys.delivery(account, mark.decode() if mark else "-"), "state")
            found = await pipe.execute()
            for (item, _), mark, state in zip(chunk, marks, found, strict=True):
                out[item] = state.decode() if mark is not None and state is not None else None
        return out

    # -- configuration -----------------------------------------------------------------

    def accounts_doc(self) -> dict[str, Any]:
        """The accounts file the processes run with (for a runtime of the test's own)."""
        return self._accounts_doc()

    def _accounts_doc(self) -> dict[str, Any]:
        accounts: dict[str, Any] = {}
        for name in self.accounts:
            accounts[name] = {
                "desk": {
                    "type": "zendesk",
                    "base_url": self.desk.base_url(name),
                    "email": ZD_EMAIL,
                    "api_token": ZD_TOKEN,
                },
                "channels": [
                    {
                        "type": "telegram",
                        "bot_token": BOT_TOKEN,
                        "secret_token": TG_SECRET,
                        # the agents' replies go to the fake Bot API
                        "base_url": self.telegram.base_url(),
                    }
                ],
            }
        return {"accounts": accounts}

    def _env(self, config: Path) -> dict[str, str]:
        env = _base_env()
        env.update(self.timing.env())
        env.update(
            REDIS_URL=self.redis_url,
            DESKBRIDGE_CONFIG=str(config),
            DESKBRIDGE_ENCRYPTION_KEY=self.encryption_key,
            DESKBRIDGE_HOST="127.0.0.1",
            DESKBRIDGE_DATA_DIR=str(self.dir / "data"),
            DESKBRIDGE_LOG_LEVEL=self.log_level,
        )
        return env

    def _redis_argv(self) -> list[str]:
        binary = shutil.which("redis-server")
        if binary is None:
            raise HarnessError("redis-server is not installed (make test installs it)")
        return [
            binary,
            "--bind", "127.0.0.1",
            "--port", str(self.redis_port),
            "--dir", str(self.dir / "redis"),
            "--appendonly", "yes",
            "--appendfsync", self.appendfsync,
            "--save", "",
            "--maxmemory-policy", "noeviction",
            "--daemonize", "no",
        ]  # fmt: skip


def _die_with_parent() -> None:
    """Linux: the child gets SIGTERM when the process that started it dies, so no run
    leaves a worker or a redis-server behind, even when it is killed itself."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


_PR_SET_PDEATHSIG = 1


def _base_env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("DESKBRIDGE_") and k != "REDIS_URL" and "proxy" not in k.lower()
    }
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env
