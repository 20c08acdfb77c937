"""Slow and greedy clients on the HTTP listener (docs/security.md, "Slow clients").

aiohttp closes an idle keep-alive connection (``keepalive_timeout``) but has no deadline
for a request's head: a client sending one header line every few seconds keeps its
connection for as long as it likes. ``GuardedRunner`` serves the app through a request
handler that adds one (from the first byte of a request, or the connection's start) and
caps the connections one source address holds. Body reads have their own deadline,
scaled to the route's limit (``gateway.intake.read_raw``)."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

__all__ = ["GuardedRunner", "SourceCap"]

log = logging.getLogger(__name__)


class SourceCap:
    """Open connections per source address, at most ``per_source`` each."""

    def __init__(self, per_source: int) -> None:
        self._per_source = per_source
        self._open: Counter[str] = Counter()
        self.refused = 0

    def admit(self, source: str) -> bool:
        if self._open[source] >= self._per_source:
            self.refused += 1
            return False
        self._open[source] += 1
        return True

    def release(self, source: str) -> None:
        self._open[source] -= 1
        if self._open[source] <= 0:
            del self._open[source]

    def open(self, source: str) -> int:
        return self._open[source]


def _source(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return "local"  # a unix socket


class _Guarded(RequestHandler):
    """aiohttp's request handler with a deadline for each request's head and the
    per-source cap."""

    def __init__(
        self, manager: web.Server, *, cap: SourceCap, head_timeout: float, **kwargs: Any
    ) -> None:
        super().__init__(manager, **kwargs)
        self._cap = cap
        self._head_timeout = head_timeout
        self._head_deadline: asyncio.TimerHandle | None = None
        self._counted: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        source = _source(transport)
        if not self._cap.admit(source):
            log.warning("http: too many connections from one source, closing a new one")
            self.force_close()
            return
        self._counted = source
        self._arm()

    def _arm(self) -> None:
        if self._head_deadline is None:
            loop = asyncio.get_running_loop()
            self._head_deadline = loop.call_later(self._head_timeout, self._head_late)

    def _disarm(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_late(self) -> None:
        self._head_deadline = None
        # a request being handled (its body being read) is the body deadline's business
        if self._current_request is None and not self._messages:
            log.info("http: closing a connection whose request head did not arrive in time")
            self.force_close()

    def data_received(self, data: bytes) -> None:
        idle = self._current_request is None and not self._messages
        stopping = (self._close, self._force_close)
        if any(stopping) and self._current_request is not None and self.transport is not None:
            # a graceful stop marks every connection closing, and aiohttp then drops what
            # arrives: the rest of the body of a request in flight too, which could then
            # never finish (it waits for it until the shutdown timeout)
            self._close = self._force_close = False
            try:
                super().data_received(data)
            finally:
                self._close, self._force_close = stopping
            return
        super().data_received(data)
        if self._messages or self._current_request is not None:
            self._disarm()  # a whole head arrived, or this is a body's bytes
        elif idle and data:
            self._arm()  # the first bytes of a new request: its head has until then

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm()
        if self._counted is not None:
            self._cap.release(self._counted)
            self._counted = None
        super().connection_lost(exc)


class _GuardedServer(web.Server):
    """aiohttp's server, making ``_Guarded`` handlers."""

    def __init__(
        self, app_server: web.Server, *, cap: SourceCap, head_timeout: float, **kwargs: Any
    ) -> None:
        super().__init__(
            app_server.request_handler,
            request_factory=app_server.request_factory,
            handler_cancellation=app_server.handler_cancellation,
            loop=asyncio.get_running_loop(),
            **kwargs,
        )
        self._cap = cap
        self._head_timeout = head_timeout
        self._handler_kwargs = kwargs

    def __call__(self) -> RequestHandler:
        return _Guarded(
            self,
            loop=asyncio.get_running_loop(),
            cap=self._cap,
            head_timeout=self._head_timeout,
            **self._handler_kwargs,
        )


class GuardedRunner(web.AppRunner):
    """``web.AppRunner`` whose connections get a head deadline and a per-source cap
    (``keepalive_timeout`` in ``kwargs`` bounds idle keep-alive connections)."""

    def __init__(
        self,
        app: web.Application,
        *,
        per_source: int,
        head_timeout: float,
        handle_signals: bool = False,
        shutdown_timeout: float = 60.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            app, handle_signals=handle_signals, shutdown_timeout=shutdown_timeout, **kwargs
        )
        self.cap = SourceCap(per_source)
        self._head_timeout = head_timeout
        self._handler_kwargs = kwargs

    async def _make_server(self) -> web.Server:
        # the app's own server runs its startup; ours takes its handler and factory
        app_server = await super()._make_server()
        return _GuardedServer(
            app_server, cap=self.cap, head_timeout=self._head_timeout, **self._handler_kwargs
        )
