"""Graceful shutdown under load: a rolling deploy of one gateway and one worker.

Two gateways and two workers on one append-only redis-server (``harness.py``), customers
writing at a bounded rate through both gateways (a refused connection moves a chat to
the other gateway, as a load balancer would). One gateway and one worker get SIGTERM
while a request is in flight on that gateway (its body half sent) and jobs run on that
worker (the desk answers slowly). Asserted: ``/readyz`` turns 503 while the gateway
still serves, the request in flight is answered 200 after the port has closed, both
processes exit by themselves (code 0) once their work is done, the stopping worker
finishes its running jobs and takes no other, and nothing acknowledged is lost or
filed twice.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import aiohttp
import pytest

from deskbridge.adapters.telegram import sample_update

from .harness import TG_SECRET, Harness, _Child, _entry, free_port
from .load import converse, text, update_id
from .scenarios import SHORT, settle

pytestmark = [pytest.mark.slow, pytest.mark.asyncio, pytest.mark.timeout(180)]

DRAIN_S = 1.5
BOUND_S = 8.0
SLOW_CHAT = 7000


class RollingHarness(Harness):
    """The harness with a second gateway and worker, every process with a drain."""

    def _env(self, config: Path) -> dict[str, str]:
        env = super()._env(config)
        env["DESKBRIDGE_SHUTDOWN_DRAIN_SECONDS"] = str(DRAIN_S)
        env["DESKBRIDGE_SHUTDOWN_TIMEOUT_SECONDS"] = str(BOUND_S)
        return env

    async def __aenter__(self) -> RollingHarness:
        await super().__aenter__()
        return self

    async def start(self) -> None:
        await super().start()
        assert self.gateway is not None and self.worker is not None
        self.gateway_b_port, self.worker_b_port = free_port(), free_port()
        logs = self.dir / "logs"
        self.gateway_b = _Child(
            "gateway-b",
            [*_entry(), "serve", "--port", str(self.gateway_b_port)],
            self.gateway.env,
            logs / "gateway-b.log",
        )
        self.worker_b = _Child(
            "worker-b",
            [*_entry(), "worker", "--port", str(self.worker_b_port)],
            self.worker.env,
            logs / "worker-b.log",
        )
        self.gateway_b.spawn()
        self.worker_b.spawn()
        await self._wait_http(self.gateway_b, self.gateway_b_port, "/readyz")
        await self._wait_http(self.worker_b, self.worker_b_port, "/readyz")

    async def stop(self) -> None:
        for child in (getattr(self, "worker_b", None), getattr(self, "gateway_b", None)):
            if child is not None:
                await child.stop(5)
        await super().stop()


async def _status(session: aiohttp.ClientSession, url: str) -> int:
    try:
        async with session.get(url) as resp:
            return resp.status
    except (aiohttp.ClientError, OSError):
        return 0


async def _until_status(session: aiohttp.ClientSession, url: str, wanted: int, limit: float) -> int:
    """GET ``url`` until it answers ``wanted`` (the signal is handled asynchronously) or
    ``limit`` seconds pass; the last status."""
    deadline = time.monotonic() + limit
    status = await _status(session, url)
    while status != wanted and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
        status = await _status(session, url)
    return status


async def _refused(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return True
    writer.close()
    return False


async def _exit_code(child: _Child, limit: float) -> int | None:
    """The child's exit code once it has exited by itself, None if still running."""
    assert child.proc is not None
    deadline = time.monotonic() + limit
    while child.proc.poll() is None and time.monotonic() < deadline:  # noqa: ASYNC110 - a child process has no event to await
        await asyncio.sleep(0.05)
    return child.proc.poll()


async def test_sigterm_drains_gateway_and_worker_under_load() -> None:
    account = "rolling"
    async with RollingHarness([account], SHORT.timing) as h:
        assert h.session is not None and h.gateway is not None and h.worker is not None
        desk = h.desk.account(account)
        desk.latency = 0.5  # jobs are running when the worker is told to stop
        stop = asyncio.Event()
        gateways = [h.gateway_url, f"http://127.0.0.1:{h.gateway_b_port}"]
        chats = list(range(6000, 6012))
        load_task = asyncio.create_task(
            converse(h.session, gateways, account, chats, 100_000, interval=0.1, stop=stop)
        )
        try:
            await asyncio.sleep(1.5)
            n = SLOW_CHAT
            body = sample_update(
                text(account, n, 0), update_id=update_id(n, 0), chat_id=n, user_id=n
            )
            reader, writer = await asyncio.open_connection("127.0.0.1", h.gateway_port)
            head = (
                f"POST /webhooks/telegram/{account} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Content-Type: application/json\r\nX-Telegram-Bot-Api-Secret-Token: "
                f"{TG_SECRET}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + body[: len(body) // 2])
            await writer.drain()
            await asyncio.sleep(0.2)  # the gateway has the request's head: it is in flight

            h.gateway.proc.terminate()  # type: ignore[union-attr]
            h.worker.proc.terminate()  # type: ignore[union-attr]
            ready = await _until_status(h.session, f"{h.gateway_url}/readyz", 503, DRAIN_S)
            healthy = await _status(h.session, f"{h.gateway_url}/healthz")
            deadline = time.monotonic() + DRAIN_S + 5
            while not await _refused(h.gateway_port) and time.monotonic() < deadline:  # noqa: ASYNC110 - a closing port has no event to await
                await asyncio.sleep(0.05)
            closed = await _refused(h.gateway_port)
            writer.write(body[len(body) // 2 :])
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(), 10)
            writer.close()
            gateway_code = await _exit_code(h.gateway, DRAIN_S + BOUND_S + 10)
            worker_code = await _exit_code(h.worker, BOUND_S + 10)
            await asyncio.sleep(1.0)  # the other gateway and worker carry the load alone
        finally:
            stop.set()
            load = await load_task
        assert ready == 503 and healthy == 200, "stopping: not ready, still alive"
        assert closed, "the port closed after the drain"
        assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
        assert gateway_code == 0, h.gateway.tail()
        assert worker_code == 0, h.worker.tail()
        worker_log = h.worker.tail(200)
        running = re.search(r"worker stopping: (\d+) job\(s\) running", worker_log)
        assert running is not None, worker_log
        assert "handed back" not in worker_log
        load.acked.setdefault(SLOW_CHAT, []).append(0)  # its 200 was read above
        desk.latency = 0.0
        o = await settle(h, account, load, 40)
        print(
            f"\nrolling stop: {o.row()}; {running.group(1)} job(s) finished by the stopping "
            f"worker; answers {dict(load.statuses())}"
        )
        assert o.drained, f"not drained: {o.pending} pending"
        assert o.acked > 0 and o.lost == [], f"lost {o.lost}"
        assert o.dup_appends == 0 and o.dup_tickets == 0 and o.out_of_order == 0
        assert set(load.statuses()) <= {200, 503, 0}
