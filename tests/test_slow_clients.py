"""Slow and greedy clients are cut off on loopback (docs/security.md, "Slow clients"):
the HTTP listener (a request head that never ends, a slow body, an idle keep-alive
connection, too many connections from one address), the SMTP listener (idle session,
DATA that never ends) and the SIP TCP listener (idle connection, a message that never
ends). Each is closed while normal traffic keeps being answered. The waits below are
bounds for a broken build, never latency assertions."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import httpx
import pytest
from aiohttp import web

from deskbridge.adapters.sip import SipReceiver, SipService
from deskbridge.adapters.sip.transport import StreamLimits, start_listener
from deskbridge.flows import Runtime
from deskbridge.gateway import create_app
from deskbridge.gateway.connections import GuardedRunner
from deskbridge.listeners.smtp import SessionLimits, start_smtp_listeners

from .test_email_listener import free_port, yaml_for
from .test_gateway import URL, signed, update
from .test_sip import FAST, Stored, sip_config

BOUND = 20.0  # seconds: only a broken build waits this long

# short limits, so each slow client is cut off in well under a second
FASTCUT = {
    "http_header_timeout_seconds": 0.3,
    "http_keepalive_seconds": 0.3,
    "http_body_timeout_seconds": 0.3,
    "http_body_min_bytes_per_second": 1 << 30,
    "http_max_connections_per_source": 6,
}


@contextlib.asynccontextmanager
async def serving(rt: Runtime) -> AsyncIterator[tuple[int, GuardedRunner]]:
    s = rt.settings
    runner = GuardedRunner(
        create_app(rt, role="serve"),
        per_source=s.http_max_connections_per_source,
        head_timeout=s.http_header_timeout_seconds,
        keepalive_timeout=s.http_keepalive_seconds,
    )
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert isinstance(server, asyncio.Server)
    port = int(server.sockets[0].getsockname()[1])
    try:
        yield port, runner
    finally:
        await runner.cleanup()


async def closed(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection. A close that finds
    bytes the server never read (a slow client's trickle) reaches us as a reset: closed
    all the same."""
    got = b""
    async with asyncio.timeout(BOUND):
        try:
            while chunk := await reader.read(65536):
                got += chunk
        except ConnectionResetError:
            pass
    return got


async def shut(*writers: asyncio.StreamWriter) -> None:
    for w in writers:
        w.close()
        with contextlib.suppress(ConnectionError):
            await w.wait_closed()


async def answered(port: int) -> None:
    """Normal traffic is answered (a fresh connection, a signed webhook)."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        assert (await client.get("/healthz")).status_code == 200
        resp = await client.post(URL, content=update(), headers=signed())
        assert resp.status_code == 200


async def test_slowloris_slow_body_and_idle_keepalive_are_cut_off(make_runtime) -> None:
    rt = make_runtime(**FASTCUT)
    async with serving(rt) as (port, _):
        # a request head that never ends: one header line now and then
        r1, w1 = await asyncio.open_connection("127.0.0.1", port)
        w1.write(b"POST /webhooks/telegram/acme HTTP/1.1\r\nHost: x\r\n")
        await w1.drain()

        async def trickle() -> None:
            for i in range(1000):
                await asyncio.sleep(0.05)
                if w1.is_closing():
                    return
                w1.write(f"X-Slow-{i}: 1\r\n".encode())
                with contextlib.suppress(ConnectionError):
                    await w1.drain()

        trickling = asyncio.create_task(trickle())
        # a body that never ends
        r2, w2 = await asyncio.open_connection("127.0.0.1", port)
        w2.write(b"POST /webhooks/telegram/acme HTTP/1.1\r\nHost: x\r\n")
        w2.write(b"Content-Type: application/json\r\nContent-Length: 5000\r\n\r\n{")
        await w2.drain()
        # a keep-alive connection left idle after its answer
        r3, w3 = await asyncio.open_connection("127.0.0.1", port)
        w3.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        await w3.drain()
        # a connection that never sends a byte
        r4, w4 = await asyncio.open_connection("127.0.0.1", port)

        await answered(port)  # while they hang on
        assert await closed(r1) == b""  # closed: no answer owed to a partial head
        trickling.cancel()
        slow_body = await closed(r2)
        assert slow_body.startswith(b"HTTP/1.1 408")
        idle = await closed(r3)
        assert idle.startswith(b"HTTP/1.1 200") and idle.count(b"HTTP/1.1") == 1
        assert await closed(r4) == b""
        await answered(port)  # and after
        await shut(w1, w2, w3, w4)
    metrics = rt.metrics.registry.get_sample_value(
        "deskbridge_events_total",
        {"source": "telegram", "outcome": "rejected", "reason": "slow_body"},
    )
    assert metrics == 1.0


async def test_one_source_holds_a_bounded_number_of_connections(make_runtime) -> None:
    rt = make_runtime(**{**FASTCUT, "http_header_timeout_seconds": 60})
    async with serving(rt) as (port, runner):
        held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(6)]
        # the seventh is closed at once, without an answer
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        with contextlib.suppress(ConnectionError):
            await w.drain()
        with contextlib.suppress(ConnectionError):
            assert await closed(r) == b""
        assert runner.cap.refused >= 1
        await shut(w, *(hw for _, hw in held))
        # freed: the same source is served again (a bounded wait for the server to see
        # the closes)
        async with asyncio.timeout(BOUND):
            while True:
                if runner.cap.open("127.0.0.1") == 0:
                    break
                await asyncio.sleep(0.01)
        await answered(port)


async def test_an_abandoned_body_is_not_a_server_error(make_runtime, caplog) -> None:
    rt = make_runtime(**{**FASTCUT, "http_body_timeout_seconds": 60})
    caplog.set_level(logging.DEBUG)
    async with serving(rt) as (port, _):
        _, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(b"POST /webhooks/telegram/acme HTTP/1.1\r\nHost: x\r\n")
        w.write(b"Content-Type: application/json\r\nContent-Length: 5000\r\n\r\n{")
        await w.drain()
        await asyncio.sleep(0)  # the handler starts reading the body
        await shut(w)
        # the request ends (counted) once the server sees the client gone
        route = "/webhooks/{channel}/{account}"
        async with asyncio.timeout(BOUND):
            while True:
                counts = {
                    s.labels["status"]: s.value
                    for m in rt.metrics.registry.collect()
                    if m.name == "deskbridge_http_requests"
                    for s in m.samples
                    if s.name.endswith("_total") and s.labels.get("route") == route
                }
                if counts:
                    break
                await asyncio.sleep(0.01)
        await answered(port)
    assert counts == {"400": 1.0}, counts  # client_gone, never a 500
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_idle_and_endless_smtp_sessions_are_closed(make_runtime) -> None:
    port = free_port()
    rt = make_runtime(yaml_for(port))
    limits = SessionLimits(idle=0.3, data=0.3, session=5.0, per_source=3)
    servers = await start_smtp_listeners(rt, limits)
    try:
        # idle after the greeting
        r1, w1 = await asyncio.open_connection("127.0.0.1", port)
        assert (await r1.readline()).startswith(b"220")
        # a DATA that never ends
        r2, w2 = await asyncio.open_connection("127.0.0.1", port)
        assert (await r2.readline()).startswith(b"220")
        for line in (b"HELO x", b"MAIL FROM:<a@example.com>", b"RCPT TO:<support@acme.example>"):
            w2.write(line + b"\r\n")
            assert (await r2.readline()).startswith(b"250")
        w2.write(b"DATA\r\n")
        assert (await r2.readline()).startswith(b"354")
        w2.write(b"Subject: never ends\r\n")
        # over the per-source cap: closed after its greeting
        _, w3 = await asyncio.open_connection("127.0.0.1", port)
        r4, w4 = await asyncio.open_connection("127.0.0.1", port)
        await closed(r4)
        await shut(w3)
        await closed(r1)
        await closed(r2)
        # a normal session is still served
        r5, w5 = await asyncio.open_connection("127.0.0.1", port)
        assert (await r5.readline()).startswith(b"220")
        w5.write(b"NOOP\r\n")
        assert (await r5.readline()).startswith(b"250")
        await shut(w1, w2, w3, w4, w5)
    finally:
        for s in servers:
            s.close()
            await s.wait_closed()


async def test_idle_and_endless_sip_streams_are_closed() -> None:
    stored = Stored()
    service = SipService([SipReceiver("acme", sip_config())], stored, timers=FAST)
    limits = StreamLimits(idle=0.3, message=0.3, per_source=3)
    listener = await start_listener(service, "127.0.0.1:0", transports=("tcp",), limits=limits)
    host, port = listener.addresses()["tcp"]
    try:
        r1, w1 = await asyncio.open_connection(host, port)  # idle
        r2, w2 = await asyncio.open_connection(host, port)  # a message that never ends
        w2.write(b"MESSAGE sip:+14155550100@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP x\r\n")
        _, w3 = await asyncio.open_connection(host, port)
        r4, w4 = await asyncio.open_connection(host, port)  # over the cap
        assert await closed(r4) == b""
        assert await closed(r1) == b""
        assert await closed(r2) == b""
        await shut(w3)
        # a keep-alive ping answers nothing and a new connection is still taken
        r5, w5 = await asyncio.open_connection(host, port)
        w5.write(b"\r\n\r\n")
        await w5.drain()
        assert await closed(r5) == b""  # then idle: closed too
        await shut(w1, w2, w3, w4, w5)
    finally:
        await listener.close()


@pytest.mark.parametrize("limit", [1024, 64 * 1024 * 1024])
def test_the_body_deadline_scales_with_the_limit(make_runtime, limit: int) -> None:
    s = make_runtime().settings
    assert s.body_timeout(limit) == pytest.approx(
        s.http_body_timeout_seconds + limit / s.http_body_min_bytes_per_second
    )
    assert s.body_timeout(limit) >= s.http_body_timeout_seconds
