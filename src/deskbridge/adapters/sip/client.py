"""Sending one non-INVITE request and waiting for its final response: the client
transaction of RFC 3261 §17.1.2, over UDP (with Timer E retransmissions) or a TCP/TLS
connection opened for it.

Timer F (64*T1) bounds the whole wait; ``TimeoutError`` when it fires. The caller builds
the request once the local address is known (``build(host, port, transport)``), since
our Via must name the address responses come back to. Requests that belong together (a
challenged request and its retry with credentials, the parts of one long text) can share
one socket or connection opened with ``open_endpoint``. A UDP socket is not connected:
responses are matched by transaction (Via branch and CSeq method), whatever address they
come from.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Callable
from typing import Any, Literal

from deskbridge.adapters.sip.message import Request, Response, SipParseError, frame, parse
from deskbridge.adapters.sip.transaction import Timers

__all__ = ["Builder", "Endpoint", "StreamEndpoint", "UdpEndpoint", "open_endpoint", "send_request"]

Builder = Callable[[str, int, str], Request]
"""``(local host, local port, transport)`` → the request to send."""

MAX_RESPONSE = 64 * 1024


class _Udp(asyncio.DatagramProtocol):
    """An unconnected socket: responses are matched to the client transaction by its Via
    branch and CSeq method (RFC 3261 §17.1.3), whatever address or port they come from
    (pooled SBCs answer from another one; a connected socket would drop those)."""

    def __init__(self) -> None:
        self.branch = ""
        self.method = ""
        self.final: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self.provisional = asyncio.Event()

    def expect(self, branch: str, method: str) -> None:
        """A new client transaction on this socket: only its responses count now."""
        self.branch = branch
        self.method = method
        self.final = asyncio.get_running_loop().create_future()
        self.provisional = asyncio.Event()

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        try:
            msg = parse(data)
        except SipParseError:
            return
        if not isinstance(msg, Response):
            return
        try:
            if msg.top_via().branch != self.branch or msg.cseq[1] != self.method:
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


class UdpEndpoint:
    """One local UDP socket towards one next hop, for requests sent one after another.

    RFC 3261 §18.1.1 lets a client send each request from any port, but peers that
    remember where a call came from (sipp does: it answers our retry at the address of
    the challenged request), NATs and port-based trunk ACLs expect the retry of a
    challenged request from the address the challenge went to."""

    def __init__(
        self,
        transport: asyncio.DatagramTransport,
        protocol: _Udp,
        dest: tuple[str, int],
        addr: tuple[str, int],
    ) -> None:
        self.transport = transport
        self.protocol = protocol
        self.dest = dest
        self.addr = addr
        """``dest`` resolved: where requests are sent (responses may come from anywhere)."""

    async def aclose(self) -> None:
        self.transport.close()


class StreamEndpoint:
    """One TCP/TLS connection to one next hop, for requests sent one after another: the
    retry of a challenged request goes over the connection the challenge came on
    (RFC 3261 §18.1.1 keeps connections open for reuse; a peer may tie a call, or its
    authentication, to the connection)."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        dest: tuple[str, int],
        name: str,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.dest = dest
        self.name = name
        self.buffer = bytearray()

    async def aclose(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


Endpoint = UdpEndpoint | StreamEndpoint


async def open_endpoint(
    dest: tuple[str, int],
    transport: Literal["udp", "tcp", "tls"],
    *,
    timers: Timers,
    tls: ssl.SSLContext | None = None,
) -> Endpoint:
    """A socket (UDP) or connection (TCP/TLS, opened within Timer F) to ``dest`` for
    ``send_request(..., endpoint=...)``; the caller closes it (``aclose``). Raises
    ``OSError`` or ``TimeoutError``."""
    loop = asyncio.get_running_loop()
    if transport == "udp":
        infos = await loop.getaddrinfo(dest[0], dest[1], type=socket.SOCK_DGRAM)
        if not infos:
            raise OSError(f"cannot resolve the SIP next hop {dest[0]}")
        family, _, _, _, addr = infos[0]
        sock, proto = await loop.create_datagram_endpoint(
            _Udp, local_addr=(_source_ip(family, addr), 0), family=family
        )
        return UdpEndpoint(sock, proto, dest, (str(addr[0]), int(addr[1])))
    async with asyncio.timeout(timers.timeout):
        reader, writer = await asyncio.open_connection(
            dest[0], dest[1], ssl=tls if transport == "tls" else None
        )
    return StreamEndpoint(reader, writer, dest, "TLS" if transport == "tls" else "TCP")


def _source_ip(family: int, addr: tuple[Any, ...]) -> str:
    # the local address the kernel routes towards `addr`, for our Via: connecting a UDP
    # socket sends nothing; the socket that sends stays unconnected
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.connect(addr)
        return str(probe.getsockname()[0])


async def _udp(build: Builder, timers: Timers, ep: UdpEndpoint) -> Response:
    loop = asyncio.get_running_loop()
    transport, proto = ep.transport, ep.protocol
    host, port = transport.get_extra_info("sockname")[:2]
    req = build(str(host), int(port), "UDP")
    proto.expect(req.top_via().branch, req.method)
    data = req.encode()
    deadline = loop.time() + timers.timeout
    interval = timers.t1
    while True:
        transport.sendto(data, ep.addr)
        wait = min(interval, deadline - loop.time())
        if wait <= 0:
            raise TimeoutError("no final response before Timer F")
        with contextlib.suppress(TimeoutError):
            return await asyncio.wait_for(asyncio.shield(proto.final), wait)
        # Timer E: doubling up to T2; after a provisional response, every T2
        interval = timers.t2 if proto.provisional.is_set() else min(2 * interval, timers.t2)


async def _stream(build: Builder, timers: Timers, ep: StreamEndpoint) -> Response:
    async with asyncio.timeout(timers.timeout):
        host, port = ep.writer.get_extra_info("sockname")[:2]
        req = build(str(host), int(port), ep.name)
        branch = req.top_via().branch
        ep.writer.write(req.encode())
        await ep.writer.drain()
        while True:
            while True:
                data, used = frame(ep.buffer, MAX_RESPONSE)
                del ep.buffer[:used]
                if data is None:
                    break
                msg = parse(data, stream=True)
                if (
                    isinstance(msg, Response)
                    and msg.status >= 200
                    and msg.top_via().branch == branch
                ):
                    return msg
            chunk = await ep.reader.read(65536)
            if not chunk:
                raise ConnectionResetError("the peer closed the connection")
            ep.buffer += chunk


async def send_request(
    build: Builder,
    dest: tuple[str, int],
    *,
    transport: Literal["udp", "tcp", "tls"],
    timers: Timers,
    tls: ssl.SSLContext | None = None,
    endpoint: Endpoint | None = None,
) -> Response:
    """The final response to the request ``build`` makes. Raises ``TimeoutError``
    (Timer F), ``OSError`` (unreachable) or ``SipParseError`` (a garbled stream). Sent
    over ``endpoint`` when given (from ``open_endpoint`` with the same ``dest`` and
    ``transport``), else over a socket or connection of its own."""
    own = endpoint is None
    ep = (
        endpoint
        if endpoint is not None
        else await open_endpoint(dest, transport, timers=timers, tls=tls)
    )
    if ep.dest != dest or isinstance(ep, UdpEndpoint) != (transport == "udp"):
        raise ValueError("the endpoint goes to another next hop")
    try:
        if isinstance(ep, UdpEndpoint):
            return await _udp(build, timers, ep)
        return await _stream(build, timers, ep)
    finally:
        if own:
            await ep.aclose()
