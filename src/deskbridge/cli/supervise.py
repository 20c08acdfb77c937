"""``serve``/``run --processes N``: N gateway processes on one port, supervised.

Each child is a fresh ``deskbridge serve`` (or ``run``) interpreter that binds the port
with ``SO_REUSEPORT``, so the kernel spreads incoming connections over them; no process
hands sockets to another. This one, the supervisor, serves nothing: it checks the port
is free (so a second deskbridge cannot silently join the group), starts the children,
restarts one that dies (with backoff, logged), and on SIGTERM/SIGINT passes the signal on
and waits for them. Child 0 alone runs the SMTP and SIP listeners.

Metrics use prometheus-client's multiprocess mode: every child writes its samples to
memory-mapped files in one directory (``PROMETHEUS_MULTIPROC_DIR``) and any child's
``/metrics`` reads them all, so one scrape of the shared port sees the whole host, and a
dead child's counters stay in the sum (docs/deployment.md, "Processes").
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from deskbridge.errors import ConfigError
from deskbridge.store import PrivateRedis

__all__ = ["Supervisor", "available_cpus", "bind_as_child", "parse_processes"]

log = logging.getLogger("deskbridge")

# a child that lived this long had started fine: its backoff starts over
_HEALTHY_AFTER_S = 30.0
_BACKOFF_FIRST_S = 0.5
_BACKOFF_MAX_S = 30.0
# how long children get to stop after SIGTERM before they are killed
STOP_TIMEOUT_S = 60.0
_PR_SET_PDEATHSIG = 1


def available_cpus() -> int:
    """The CPUs this process may use: its affinity mask, capped by a cgroup v2 CPU quota
    (a container limited to 2 CPUs on a 64-core node gets 2)."""
    count = len(os.sched_getaffinity(0))
    with contextlib.suppress(OSError, ValueError):
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            count = min(count, max(1, -(-int(quota) // int(period))))
    return max(1, count)


def parse_processes(value: str) -> int:
    """``--processes``: a count from 1, or ``auto`` (the usable CPUs)."""
    if value == "auto":
        return available_cpus()
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise ConfigError(f"--processes: expected a number from 1 or 'auto', got {value!r}")
    return n


def _check_port_free(host: str, port: int) -> None:
    """Bind without ``SO_REUSEPORT`` and let go: fails if anything (another deskbridge
    group included) listens there, which ``SO_REUSEPORT`` alone would let us join."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc


def bind_as_child(parent: int) -> None:
    """In a child: die with the supervisor (``PR_SET_PDEATHSIG``), so a supervisor killed
    with SIGKILL leaves no gateway serving the port on its own."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the supervisor was gone before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


@dataclass
class _Child:
    index: int
    proc: asyncio.subprocess.Process | None = None
    started: float = 0.0
    backoff: float = _BACKOFF_FIRST_S
    restarts: int = 0


@dataclass
class Supervisor:
    """Runs ``count`` children of ``role`` on ``host:port`` until stopped."""

    role: str
    count: int
    host: str
    port: int
    config: Path | None
    redis_url: str | None
    data_dir: Path
    appendfsync: str = "everysec"
    metrics_address: str | None = None
    _children: list[_Child] = field(default_factory=list)
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)
    _metrics_dir: Path | None = None

    def _command(self, index: int) -> list[str]:
        cmd = [sys.executable, "-m", "deskbridge", self.role, "--host", self.host]
        cmd += ["--port", str(self.port), "--child-of", str(os.getpid())]
        cmd += ["--child-index", str(index)]
        if self.config is not None:
            cmd += ["--config", str(self.config)]
        return cmd

    def _env(self, redis_url: str) -> dict[str, str]:
        assert self._metrics_dir is not None
        env = dict(os.environ)
        env["REDIS_URL"] = redis_url
        env["PROMETHEUS_MULTIPROC_DIR"] = str(self._metrics_dir)
        return env

    async def run(self) -> None:
        _check_port_free(self.host, self.port)
        if self.metrics_address is not None:
            where, _, port = self.metrics_address.rpartition(":")
            _check_port_free(where.strip("[]") or "127.0.0.1", int(port))
        private: PrivateRedis | None = None
        url = self.redis_url
        if url is None:
            if self.role != "run":
                raise ConfigError(
                    f"REDIS_URL is not set: `deskbridge {self.role}` shares a Redis with "
                    "other processes"
                )
            private = PrivateRedis(self.data_dir, appendfsync=self.appendfsync)
            url = private.url
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._stopping.set)
        self._metrics_dir = Path(tempfile.mkdtemp(prefix="deskbridge-metrics-"))
        try:
            if private is not None:
                await private.start()
            env = self._env(url)
            self._children = [_Child(i) for i in range(self.count)]
            log.info(
                "starting %d %s processes on %s:%d", self.count, self.role, self.host, self.port
            )
            await asyncio.gather(*(self._supervise(c, env) for c in self._children))
        finally:
            await self._stop_all()
            if private is not None:
                await private.stop()
            shutil.rmtree(self._metrics_dir, ignore_errors=True)

    async def _supervise(self, child: _Child, env: dict[str, str]) -> None:
        """Keep one child running until the supervisor stops."""
        while not self._stopping.is_set():
            child.proc = await asyncio.create_subprocess_exec(
                *self._command(child.index), env=env, stdin=asyncio.subprocess.DEVNULL
            )
            child.started = time.monotonic()
            log.info("%s process %d started (pid %d)", self.role, child.index, child.proc.pid)
            stop = asyncio.create_task(self._stopping.wait())
            exited = asyncio.create_task(child.proc.wait())
            await asyncio.wait({stop, exited}, return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            if self._stopping.is_set():
                exited.cancel()
                return
            self._forget(child.proc.pid)
            lived = time.monotonic() - child.started
            if lived >= _HEALTHY_AFTER_S:
                child.backoff = _BACKOFF_FIRST_S
            code = child.proc.returncode
            how = f"signal {-code}" if code is not None and code < 0 else f"code {code}"
            child.restarts += 1
            log.warning(
                "%s process %d (pid %d) exited with %s after %.1fs; restart %d in %.1fs",
                self.role,
                child.index,
                child.proc.pid,
                how,
                lived,
                child.restarts,
                child.backoff,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), child.backoff)
            child.backoff = min(child.backoff * 2, _BACKOFF_MAX_S)

    def _forget(self, pid: int) -> None:
        """Drop a dead child's live gauges (its counters stay in the sums)."""
        from prometheus_client import multiprocess

        assert self._metrics_dir is not None
        multiprocess.mark_process_dead(pid, str(self._metrics_dir))  # type: ignore[no-untyped-call]

    async def _stop_all(self) -> None:
        running = [
            c.proc for c in self._children if c.proc is not None and c.proc.returncode is None
        ]
        for proc in running:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        if not running:
            return
        _, late = await asyncio.wait(
            [asyncio.create_task(p.wait()) for p in running], timeout=STOP_TIMEOUT_S
        )
        for proc in running:
            if proc.returncode is None:
                log.warning(
                    "process pid %d did not stop in %.0fs; killing it", proc.pid, STOP_TIMEOUT_S
                )
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
        for task in late:
            await task
        log.info("all %s processes stopped", self.role)
