"""The widget's socket under load, in one process against a real Redis: N visitors each
send M messages (one at a time, waiting for the ack), then an agent's reply to each is
posted by another runtime (as a worker would) and timed until it reaches the socket
through pub/sub. Prints acks per second and the p50/p95 of both latencies.

    REDIS_URL=redis://127.0.0.1:6379/7 python bench/webchat.py [VISITORS] [MESSAGES]

The database is flushed first: give it one of its own.
"""

from __future__ import annotations

import asyncio
import base64
import os
import statistics
import sys
import time
from datetime import UTC, datetime

import aiohttp
import httpx
from aiohttp import web

from deskbridge.config import Settings, parse_accounts
from deskbridge.flows import Runtime
from deskbridge.gateway import create_app
from deskbridge.schemas import AgentReply, Channel, ChannelAddress, Desk
from deskbridge.store import Vault, connect
from deskbridge.store.crypto import decode_key

ORIGIN = "https://shop.example.com"
ACCOUNTS = f"""
accounts:
  acme:
    desk: {{type: sandbox}}
    channels:
      - type: webchat
        secret: bench-visitor-secret-0123456789
        allowed_origins: ["{ORIGIN}"]
        messages_per_minute: 100000
        connections_per_minute: 100000
"""


def _runtime(url: str, key: str) -> Runtime:
    settings = Settings(redis_url=url, encryption_key=key)  # type: ignore[call-arg]
    vault = Vault.from_secret(decode_key(key))
    return Runtime.build(
        settings, parse_accounts(ACCOUNTS), connect(url), vault, httpx.AsyncClient()
    )


def _pct(xs: list[float], q: float) -> float:
    return sorted(xs)[min(len(xs) - 1, int(q * len(xs)))] * 1000


async def main(visitors: int, messages: int) -> None:
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/7")
    key = base64.b64encode(bytes(range(32))).decode()
    flush = connect(url)
    await flush.flushdb()
    await flush.aclose()
    gw, worker = _runtime(url, key), _runtime(url, key)
    runner = web.AppRunner(create_app(gw, role="serve"), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    acks: list[float] = []
    replies: list[float] = []
    async with aiohttp.ClientSession() as session:
        sockets = []
        for _ in range(visitors):
            ws = await session.ws_connect(
                f"http://127.0.0.1:{port}/widget/v1/acme/socket", origin=ORIGIN
            )
            await ws.send_json({"type": "hello", "visitor": None, "after": 0})
            sockets.append((ws, (await ws.receive_json())["visitor"].partition(".")[0]))

        async def chat(ws: aiohttp.ClientWebSocketResponse, n: int) -> None:
            for i in range(messages):
                t = time.perf_counter()
                await ws.send_json({"type": "message", "id": f"bench-{n}-{i:06d}", "text": "hello"})
                while (await ws.receive_json())["type"] != "ack":
                    pass
                acks.append(time.perf_counter() - t)

        start = time.perf_counter()
        await asyncio.gather(*(chat(ws, n) for n, (ws, _) in enumerate(sockets)))
        elapsed = time.perf_counter() - start
        adapter = worker.adapter("acme", Channel.WEBCHAT)
        assert adapter is not None
        for n, (ws, visitor) in enumerate(sockets):
            reply = AgentReply(
                account="acme",
                desk=Desk.SANDBOX,
                dedup_key=f"bench-r{n}",
                ticket_id="t",
                external_id=f"a{n}",
                text="answer",
                occurred_at=datetime.now(UTC),
            )
            t = time.perf_counter()
            to = ChannelAddress(channel=Channel.WEBCHAT, account="acme", thread=visitor)
            await adapter.send(reply, to, [])
            while (await ws.receive_json()).get("role") != "agent":
                pass
            replies.append(time.perf_counter() - t)
        for ws, _ in sockets:
            await ws.close()
    await runner.cleanup()
    for rt in (gw, worker):
        await rt.http.aclose()
    total = visitors * messages
    print(f"{visitors} visitors x {messages} messages: {total / elapsed:.0f} acks/s")
    mean = statistics.mean(acks) * 1000
    print(f"ack latency ms: p50 {_pct(acks, 0.5):.2f}  p95 {_pct(acks, 0.95):.2f}  mean {mean:.2f}")
    print(f"reply to socket ms: p50 {_pct(replies, 0.5):.2f}  p95 {_pct(replies, 0.95):.2f}")


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:3]]
    asyncio.run(main(*(args or [50, 20])))
