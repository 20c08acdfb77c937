"""An httpx transport that sends through aiohttp's client: the process client's wire.

httpx stays the one API every channel sender and desk connector uses (``deskbridge.http``:
its requests, responses, errors; respx mocks it in tests). Below that API, httpcore over
anyio cost ~660 us of CPU per request on a loopback POST to a fake desk, against ~230 us
for aiohttp's client on the same event loop (``make bench``'s drain files every message
with one such call: docs/benchmarks.md, issue 19). So ``deskbridge serve``/``worker``/
``run`` hand the process client this transport; tests that build their own client keep
httpx's default one, which is what respx patches.

What it keeps of httpx's transport, because callers depend on it:

- Errors: a failure before the request could have left is ``httpx.ConnectError`` /
  ``ConnectTimeout`` (``transport_error`` calls it ``not_applied``); anything after is a
  read/write timeout, ``ReadError`` or ``RemoteProtocolError`` (``unknown``: the peer may
  have applied it). A scheme other than http(s) is ``UnsupportedProtocol``.
- Timeouts: httpx's per-request ``connect``/``read``/``write``/``pool`` (the request's
  ``timeout`` extension): pool + connect bound getting a connection, ``read`` each read of
  the socket, and connect + write + read the whole exchange up to the response head.
- The bytes: the request's headers as httpx built them (nothing added, nothing
  reordered beyond aiohttp's framing; a header value beyond ASCII goes out UTF-8
  encoded, where httpx's own transport sends its latin-1 bytes: no platform API
  deskbridge calls takes one), the response body undecoded (httpx decodes it by
  its ``Content-Encoding``, as it does for its own transport), no redirects followed.
- TLS: verified with the context httpx itself would use (``httpx.create_ssl_context``).

Its ``ProcessClient`` goes one step further for plain calls (a method, an absolute URL,
``json``/``content``, ``params``, ``headers``): they skip httpx's request and response
objects on the way out, and the transport reads the whole answer into an
``httpx.Response`` whose request is built only when something asks for it. The peer sees
the same bytes (tests/test_http_transport.py compares both paths on the wire).

One thing it does not do: proxies. httpx reads ``HTTP(S)_PROXY``/``ALL_PROXY`` only for
its own transports, and aiohttp's reading of them (``trust_env``) looks up the
environment and ``.netrc`` in a thread on every request (two thread hops, more than the
transport saves). So where the environment names a proxy (:func:`proxies_in_env`), the
process client keeps httpx's own transport, proxies and all.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator, Mapping
from json import dumps as json_dumps
from typing import Any

import aiohttp
import httpx
from multidict import CIMultiDict

__all__ = ["AiohttpTransport", "ProcessClient", "proxies_in_env"]

_PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy")


def proxies_in_env(environ: Mapping[str, str]) -> bool:
    """Whether ``environ`` names an outbound proxy (any case, as httpx reads them)."""
    return any(v and k.lower() in _PROXY_VARS for k, v in environ.items())


_CHUNK = 64 * 1024


class _Body(httpx.AsyncByteStream):
    """A response body read from aiohttp as httpx's caller iterates it."""

    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _mapped(self._request):
            async for chunk in self._response.content.iter_chunked(_CHUNK):
                yield chunk

    async def aclose(self) -> None:
        self._response.release()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """See the module docstring. ``max_connections``/``max_keepalive`` as httpx's
    ``Limits``; ``keepalive_expiry`` seconds an idle connection is kept."""

    def __init__(
        self,
        *,
        max_connections: int = 100,
        keepalive_expiry: float = 5.0,
    ) -> None:
        self._limit = max_connections
        self._keepalive = keepalive_expiry
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        # made in the running loop on first use (a session belongs to its loop)
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._limit,
                limit_per_host=0,
                keepalive_timeout=self._keepalive,
                ssl=httpx.create_ssl_context(),
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=False,  # httpx decodes by Content-Encoding
                trust_env=False,  # see proxies_in_env; True cost two thread hops a request
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
                cookie_jar=aiohttp.DummyCookieJar(),  # httpx keeps the client's cookies
                # h11 (httpx's parser) takes heads of up to 16 KB; aiohttp's lines stop at 8 KB
                max_line_size=16384,
                max_field_size=16384,
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(
                f"Request URL has an unsupported protocol '{request.url.scheme}://'.",
                request=request,
            )
        body = await request.aread()
        headers = CIMultiDict(
            (k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw
        )
        with _mapped(request):
            response = await self._exchange(
                request.method,
                str(request.url),
                headers,
                body,
                request.extensions.get("timeout", {}),
            )
        return httpx.Response(
            status_code=response.status,
            headers=list(response.raw_headers),
            stream=_Body(response, request),
            extensions=_extensions(response),
            request=request,
        )

    async def _exchange(
        self,
        method: str,
        url: str,
        headers: CIMultiDict[str],
        body: bytes,
        timeouts: Mapping[str, float | None],
    ) -> aiohttp.ClientResponse:
        """Send, and wait for the response head (the caller reads the body)."""
        connect, pool = timeouts.get("connect"), timeouts.get("pool")
        read, write = timeouts.get("read"), timeouts.get("write")
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=_sum(pool, connect),
            sock_connect=connect,
            sock_read=read,
        )
        session = self._open()
        async with asyncio.timeout(_sum(connect, pool, write, read)):
            return await session.request(
                method,
                url,
                headers=headers,
                data=body or None,
                allow_redirects=False,
                timeout=timeout,
            )

    async def quick(
        self,
        method: str,
        url: str,
        headers: CIMultiDict[str],
        body: bytes,
        timeouts: Mapping[str, float | None],
    ) -> httpx.Response:
        """``ProcessClient``'s path: the exchange and the whole body, read into a
        response whose request is built only when something asks for it."""
        if not url.startswith(("http://", "https://")):
            raise httpx.UnsupportedProtocol(
                "Request URL has an unsupported protocol.", request=httpx.Request(method, url)
            )
        try:
            response = await self._exchange(method, url, headers, body, timeouts)
            try:
                content = await response.read()
            finally:
                response.release()
        except Exception as exc:
            translated = _translated(exc, _request(method, url, headers))
            if translated is exc:
                raise
            raise translated from exc
        try:
            answer = _Answered(
                status_code=response.status,
                headers=list(response.raw_headers),
                content=content,  # decoded here by its Content-Encoding, as httpx does
                extensions=_extensions(response),
            )
        except httpx.HTTPError as exc:  # a body its encoding cannot decode
            exc.request = _request(method, url, headers)
            raise
        answer._asked = (method, url, headers)
        return answer

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _sum(*parts: float | None) -> float | None:
    """None (no limit) when any part is unlimited, else their sum."""
    total = 0.0
    for part in parts:
        if part is None:
            return None
        total += part
    return total


def _extensions(response: aiohttp.ClientResponse) -> dict[str, Any]:
    return {
        "http_version": b"HTTP/1.1",
        "reason_phrase": (response.reason or "").encode("latin-1", "replace"),
    }


def _request(method: str, url: str, headers: CIMultiDict[str]) -> httpx.Request:
    return httpx.Request(method, url, headers=list(headers.items()))


class _Answered(httpx.Response):
    """A response of ``AiohttpTransport.quick``: its ``request`` (what ``raise_for_status``
    and ``url`` read) is built on first use, from what was sent."""

    _asked: tuple[str, str, CIMultiDict[str]]

    @property
    def request(self) -> httpx.Request:
        if self._request is None:
            self._request = _request(*self._asked)
        return self._request

    @request.setter
    def request(self, value: httpx.Request) -> None:
        self._request = value

    def raise_for_status(self) -> httpx.Response:
        _ = self.request  # httpx reads the attribute, not the property
        return super().raise_for_status()


@contextlib.contextmanager
def _mapped(request: httpx.Request) -> Iterator[None]:
    """aiohttp's and asyncio's errors as httpx's (``_translated``)."""
    try:
        yield
    except Exception as exc:
        translated = _translated(exc, request)
        if translated is exc:
            raise
        raise translated from exc


def _translated(exc: Exception, request: httpx.Request) -> Exception:
    """aiohttp's and asyncio's errors as httpx's: connect failures (the request never
    left) apart from everything after (it may have been applied); anything else as it
    is."""
    if isinstance(exc, httpx.HTTPError):
        return exc
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(str(exc) or "connect timed out", request=request)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return httpx.ConnectError(str(exc), request=request)
    if isinstance(exc, aiohttp.SocketTimeoutError):
        return httpx.ReadTimeout(str(exc) or "read timed out", request=request)
    if isinstance(exc, TimeoutError):
        return httpx.ReadTimeout("no answer in time", request=request)
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        return httpx.RemoteProtocolError(str(exc), request=request)
    if isinstance(exc, aiohttp.ClientResponseError):  # an answer that is not HTTP
        return httpx.RemoteProtocolError(str(exc), request=request)
    if isinstance(exc, aiohttp.ClientOSError | ConnectionError):
        return httpx.ReadError(str(exc), request=request)
    if isinstance(exc, aiohttp.InvalidURL):
        return httpx.UnsupportedProtocol(str(exc), request=request)
    if isinstance(exc, aiohttp.ClientError):
        return httpx.RemoteProtocolError(str(exc), request=request)
    return exc


_NOT_PLAIN: dict[str, Any] = {
    "data": lambda v: v is not None,
    "files": lambda v: v is not None,
    "cookies": lambda v: v is not None,
    "extensions": lambda v: v is not None,
    "auth": lambda v: v is not httpx.USE_CLIENT_DEFAULT,
    "follow_redirects": lambda v: v is not httpx.USE_CLIENT_DEFAULT and bool(v),
}
"""``request``'s other arguments (as ``get``/``post``/... pass them), each with the test
of a value that needs httpx's own path (an argument not named here always does)."""


def _always(_: object) -> bool:
    return True


class ProcessClient(httpx.AsyncClient):
    """httpx's client whose plain requests skip httpx's request and response machinery
    when its transport is an ``AiohttpTransport``.

    ``request`` (and ``get``/``post``/...) with at most ``content`` or ``json``,
    ``params`` and ``headers``, on an absolute URL, goes straight to the transport's
    ``quick``: the same headers (the client's, then the call's), the same JSON bytes and
    timeouts as httpx's own path, the body read whole, httpx's errors; httpx's URL
    parsing, its auth and redirect layers and its response stream are what it saves
    (~250 µs of CPU per call on this VM: docs/benchmarks.md). Anything else (form data,
    files, cookies, auth, redirects, event hooks, streams, a base URL, a mounted or
    mocked transport) takes httpx's path unchanged."""

    async def request(
        self,
        method: str,
        url: httpx.URL | str,
        *,
        content: Any = None,
        json: Any = None,
        params: Any = None,
        headers: Any = None,
        timeout: Any = httpx.USE_CLIENT_DEFAULT,  # noqa: ASYNC109 - httpx's signature
        **kwargs: Any,
    ) -> httpx.Response:
        transport = self._transport
        if (
            any(_NOT_PLAIN.get(k, _always)(v) for k, v in kwargs.items())
            or not isinstance(transport, AiohttpTransport)
            or not isinstance(url, str)
            or self._mounts
            or self.auth is not None
            or self.follow_redirects
            or str(self.base_url)
            or self.event_hooks["request"]
            or self.event_hooks["response"]
            or (content is not None and not isinstance(content, bytes))
        ):
            return await super().request(
                method,
                url,
                content=content,
                json=json,
                params=params,
                headers=headers,
                timeout=timeout,
                **kwargs,
            )
        if params:
            url = str(httpx.URL(url, params=params))
        sent: CIMultiDict[str] = CIMultiDict(
            (k.decode("latin-1"), v.decode("latin-1")) for k, v in self.headers.raw
        )
        body = b""
        if content is not None:
            body = content
        elif json is not None:
            # httpx's own encoding of ``json=`` (httpx/_content.py, encode_json)
            text = json_dumps(json, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
            body = text.encode()
            sent["Content-Type"] = "application/json"
        if headers:
            # the call's headers replace the client's of the same name, as httpx merges
            items = [
                (_text(k), _text(v))
                for k, v in (headers.items() if isinstance(headers, Mapping) else headers)
            ]
            for k, _ in items:
                sent.popall(k, None)
            for k, v in items:
                sent.add(k, v)
        if timeout is httpx.USE_CLIENT_DEFAULT:
            timeouts = self.timeout.as_dict()
        else:
            timeouts = httpx.Timeout(timeout).as_dict()
        return await transport.quick(method, url, sent, body, timeouts)


def _text(value: str | bytes) -> str:
    """A header name or value as aiohttp takes it (httpx also takes bytes: latin-1)."""
    return value.decode("latin-1") if isinstance(value, bytes) else value
