"""Sending one non-INVITE request and waiting for its final response: the client
transaction of RFC 3261 §17.1.2, over UDP (with Timer E retransmissions) or a TCP/TLS
connection opened for it.

Timer F (64*T1) bounds the whole wait; ``TimeoutError`` when it fires. The caller builds
the request once the local address is known (``build(host, port, transport)``), since
our Via must name the address responses come back to.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable
from typing import Literal

from deskbridge.adapters.sip.message import Request, Response, SipParseError, frame, parse
from deskbridge.adapters.sip.transaction import Timers

__all__ = ["Builder", "send_request"]

Builder = Callable[[str, int, str], Request]
"""``(local host, local port, transport)`` → the request to send."""

MAX_RESPONSE = 64 * 1024


class _Udp(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.branch = ""
        self.final: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self.provisional = asyncio.Event()

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        try:
            msg = parse(data)
        except SipParseError:
            return
        if not isinstance(msg, Response):
            return
        try:
            if msg.top_via().branch != self.branch:
                return  # a stray response for another transaction
        except (ValueError, IndexError):
            return
        if msg.status < 200:
            self.provisional.set()
        elif not self.final.done():
            self.final.set_result(msg)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable: the next hop is not listening (§17.1.2.2: a transport
        # error ends the transaction like a timeout)
        if not self.final.done():
            self.final.set_exception(ConnectionRefusedError(str(exc)))


async def _udp(build: Builder, dest: tuple[str, int], timers: Timers) -> Response:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(_Udp, remote_addr=dest)
    try:
        host, port = transport.get_extra_info("sockname")[:2]
        req = build(str(host), int(port), "UDP")
        proto.branch = req.top_via().branch
        data = req.encode()
        deadline = loop.time() + timers.timeout
        interval = timers.t1
        while True:
            transport.sendto(data)
            wait = min(interval, deadline - loop.time())
            if wait <= 0:
                raise TimeoutError("no final response before Timer F")
            with contextlib.suppress(TimeoutError):
                return await asyncio.wait_for(asyncio.shield(proto.final), wait)
            # Timer E: doubling up to T2; after a provisional response, every T2
            interval = timers.t2 if proto.provisional.is_set() else min(2 * interval, timers.t2)
    finally:
        transport.close()


async def _stream(
    build: Builder, dest: tuple[str, int], timers: Timers, tls: ssl.SSLContext | None
) -> Response:
    async with asyncio.timeout(timers.timeout):
        reader, writer = await asyncio.open_connection(dest[0], dest[1], ssl=tls)
        try:
            host, port = writer.get_extra_info("sockname")[:2]
            req = build(str(host), int(port), "TLS" if tls else "TCP")
            branch = req.top_via().branch
            writer.write(req.encode())
            await writer.drain()
            buffer = bytearray()
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    raise ConnectionResetError("the peer closed the connection")
                buffer += chunk
                while True:
                    data, used = frame(buffer, MAX_RESPONSE)
                    del buffer[:used]
                    if data is None:
                        break
                    msg = parse(data, stream=True)
                    if (
                        isinstance(msg, Response)
                        and msg.status >= 200
                        and msg.top_via().branch == branch
                    ):
                        return msg
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


async def send_request(
    build: Builder,
    dest: tuple[str, int],
    *,
    transport: Literal["udp", "tcp", "tls"],
    timers: Timers,
    tls: ssl.SSLContext | None = None,
) -> Response:
    """The final response to the request ``build`` makes. Raises ``TimeoutError``
    (Timer F), ``OSError`` (unreachable) or ``SipParseError`` (a garbled stream)."""
    if transport == "udp":
        return await _udp(build, dest, timers)
    return await _stream(build, dest, timers, tls if transport == "tls" else None)
