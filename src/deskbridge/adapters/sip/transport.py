"""SIP over UDP, TCP and TLS listeners (RFC 3261 §18): bytes in, ``SipService`` on top.

A datagram is one message. A stream is cut into messages by Content-Length (§18.3,
wherever that header is and however it is spelled); a stream that cannot be framed gets
a 400 (413 when too large) when its head is a readable request, and is closed, since
where the next message starts is unknown.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import ssl
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass
from typing import cast

from deskbridge.adapters.sip.message import SipParseError, frame
from deskbridge.adapters.sip.server import SipService

__all__ = ["Listener", "StreamLimits", "split_hostport", "start_listener"]

log = logging.getLogger(__name__)

IDLE_SECONDS = 300.0
"""A stream with no complete message for this long is closed."""


@dataclass(frozen=True)
class StreamLimits:
    """Slow and greedy stream (TCP, TLS) clients: a connection with no complete message
    for ``idle`` seconds is closed, so is one whose message is not complete ``message``
    seconds after its first byte; one source holds at most ``per_source`` connections."""

    idle: float = IDLE_SECONDS
    message: float = 10.0
    per_source: int = 32


class _UdpFlow:
    transport = "UDP"
    reliable = False

    def __init__(self, sock: asyncio.DatagramTransport, peer: tuple[str, int]) -> None:
        self._sock = sock
        self.peer = peer

    def send(self, data: bytes, addr: tuple[str, int]) -> None:
        self._sock.sendto(data, addr)


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, service: SipService) -> None:
        self._service = service
        self._sock: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (CPython 3.11's selector datagram transport does not subclass DatagramTransport)
        self._sock = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        assert self._sock is not None
        peer = (str(addr[0]), int(addr[1]))
        self._service.received(data, peer, _UdpFlow(self._sock, peer))

    def error_received(self, exc: Exception) -> None:
        log.debug("sip udp: %s", exc)


class _StreamFlow:
    reliable = True

    def __init__(self, transport: asyncio.Transport, peer: tuple[str, int], name: str) -> None:
        self._transport = transport
        self.peer = peer
        self.transport = name

    def send(self, data: bytes, addr: tuple[str, int]) -> None:
        if not self._transport.is_closing():
            self._transport.write(data)


class _Stream(asyncio.Protocol):
    def __init__(
        self,
        service: SipService,
        name: str,
        max_size: int,
        limits: StreamLimits,
        open_per_source: Counter[str],
    ) -> None:
        self._service = service
        self._name = name
        self._max = max_size
        self._limits = limits
        self._open = open_per_source
        self._source: str | None = None
        self._buffer = bytearray()
        self._flow: _StreamFlow | None = None
        self._transport: asyncio.Transport | None = None
        self._idle: asyncio.TimerHandle | None = None
        self._partial: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        peer = transport.get_extra_info("peername")
        self._flow = _StreamFlow(transport, (str(peer[0]), int(peer[1])), self._name)
        source = str(peer[0])
        if self._open[source] >= self._limits.per_source:
            log.warning("sip %s: too many connections from one source, closing", self._name)
            transport.close()
            return
        self._open[source] += 1
        self._source = source
        self._touch()

    def _touch(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
        loop = asyncio.get_running_loop()
        self._idle = loop.call_later(self._limits.idle, self._close)

    def _close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def _too_slow(self) -> None:
        log.info("sip %s: closing a stream whose message did not arrive in time", self._name)
        self._close()

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self._idle, self._partial):
            if timer is not None:
                timer.cancel()
        if self._source is not None:
            self._open[self._source] -= 1
            if self._open[self._source] <= 0:
                del self._open[self._source]
            self._source = None

    def data_received(self, data: bytes) -> None:
        assert self._flow is not None
        if self._source is None:
            return  # refused (over the per-source cap), closing
        self._buffer += data
        self._framed()
        # what is left is the start of a message: it has until then to be complete
        if not self._buffer.strip(b"\r\n"):
            if self._partial is not None:
                self._partial.cancel()
                self._partial = None
        elif self._partial is None:
            loop = asyncio.get_running_loop()
            self._partial = loop.call_later(self._limits.message, self._too_slow)

    def _framed(self) -> None:
        assert self._flow is not None
        while True:
            try:
                message, used = frame(self._buffer, self._max)
            except SipParseError as exc:
                log.debug("sip %s: closing an unframeable stream (%s)", self._name, exc)
                end = self._buffer.find(b"\r\n\r\n")
                if end >= 0:  # the peer learns why before the connection goes
                    head = bytes(self._buffer[: end + 4]).lstrip(b"\r\n")
                    self._service.unframeable(head, exc.status, self._flow.peer, self._flow)
                self._close()
                return
            del self._buffer[:used]
            if message is None:
                return
            if self._partial is not None:  # a message completed: the next one's clock
                self._partial.cancel()
                self._partial = None
            self._touch()
            self._service.received(message, self._flow.peer, self._flow)


@dataclass
class Listener:
    """The sockets of one listen address; ``close()`` stops them."""

    udp: asyncio.DatagramTransport | None
    servers: list[tuple[str, asyncio.Server]]
    service: SipService

    def addresses(self) -> dict[str, tuple[str, int]]:
        out: dict[str, tuple[str, int]] = {}
        if self.udp is not None:
            host, port = self.udp.get_extra_info("sockname")[:2]
            out["udp"] = (str(host), int(port))
        for name, s in self.servers:
            host, port = s.sockets[0].getsockname()[:2]
            out[name] = (str(host), int(port))
        return out

    async def close(self) -> None:
        if self.udp is not None:
            self.udp.close()
        for _, s in self.servers:
            s.close()
        await self.service.close()
        for _, s in self.servers:
            await s.wait_closed()


def split_hostport(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host.strip("[]"), int(port)


async def start_listener(
    service: SipService,
    listen: str,
    *,
    transports: Collection[str],
    tls_listen: str | None = None,
    tls: ssl.SSLContext | None = None,
    max_message_bytes: int = 64 * 1024,
    limits: StreamLimits | None = None,
) -> Listener:
    """Bind ``listen`` for UDP and/or TCP (same port), and ``tls_listen`` for TLS.
    Port 0 binds UDP first and gives TCP the same port number; when that number is taken
    for TCP (another socket's ephemeral port), it tries again with a new one."""
    host, port = split_hostport(listen)
    attempts = 20 if port == 0 and {"udp", "tcp"} <= set(transports) else 1
    for attempt in range(attempts):
        try:
            return await _bind(
                service,
                host,
                port,
                transports=transports,
                tls_listen=tls_listen,
                tls=tls,
                max_message_bytes=max_message_bytes,
                limits=limits or StreamLimits(),
            )
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE or attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


async def _bind(
    service: SipService,
    host: str,
    port: int,
    *,
    transports: Collection[str],
    tls_listen: str | None,
    tls: ssl.SSLContext | None,
    max_message_bytes: int,
    limits: StreamLimits,
) -> Listener:
    loop = asyncio.get_running_loop()
    opened: Counter[str] = Counter()  # stream connections per source, TCP and TLS together
    udp: asyncio.DatagramTransport | None = None
    servers: list[tuple[str, asyncio.Server]] = []
    try:
        if "udp" in transports:
            udp, _ = await loop.create_datagram_endpoint(
                lambda: _Udp(service), local_addr=(host, port)
            )
            port = int(udp.get_extra_info("sockname")[1])
        if "tcp" in transports:
            tcp = await loop.create_server(
                lambda: _Stream(service, "TCP", max_message_bytes, limits, opened), host, port
            )
            servers.append(("tcp", tcp))
        if tls_listen and tls is not None:
            thost, tport = split_hostport(tls_listen)
            secure = await loop.create_server(
                lambda: _Stream(service, "TLS", max_message_bytes, limits, opened),
                thost,
                tport,
                ssl=tls,
            )
            servers.append(("tls", secure))
    except OSError:
        if udp is not None:
            udp.close()
        for _, s in servers:
            s.close()
        raise
    return Listener(udp=udp, servers=servers, service=service)
