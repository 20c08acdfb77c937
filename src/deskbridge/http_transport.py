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
  reordered beyond aiohttp's framing), the response body undecoded (httpx decodes it by
  its ``Content-Encoding``, as it does for its own transport), no redirects followed.
- TLS: verified with the context httpx itself would use (``httpx.create_ssl_context``).

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

import aiohttp
import httpx
from multidict import CIMultiDict

__all__ = ["AiohttpTransport", "proxies_in_env"]

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
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
        connect, pool = timeouts.get("connect"), timeouts.get("pool")
        read, write = timeouts.get("read"), timeouts.get("write")
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=_sum(pool, connect),
            sock_connect=connect,
            sock_read=read,
        )
        body = await request.aread()
        headers = CIMultiDict(
            (k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw
        )
        session = self._open()
        head_deadline = _sum(connect, pool, write, read)
        with _mapped(request):
            async with asyncio.timeout(head_deadline):
                response = await session.request(
                    request.method,
                    str(request.url),
                    headers=headers,
                    data=body or None,
                    allow_redirects=False,
                    timeout=timeout,
                )
        return httpx.Response(
            status_code=response.status,
            headers=list(response.raw_headers),
            stream=_Body(response, request),
            extensions={
                "http_version": b"HTTP/1.1",
                "reason_phrase": (response.reason or "").encode("latin-1", "replace"),
            },
            request=request,
        )

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


@contextlib.contextmanager
def _mapped(request: httpx.Request) -> Iterator[None]:
    """aiohttp's and asyncio's errors as httpx's: connect failures (the request never
    left) apart from everything after (it may have been applied)."""
    try:
        yield
    except httpx.HTTPError:
        raise
    except aiohttp.ConnectionTimeoutError as exc:
        raise httpx.ConnectTimeout(str(exc) or "connect timed out", request=request) from exc
    except aiohttp.ClientConnectorError as exc:
        raise httpx.ConnectError(str(exc), request=request) from exc
    except aiohttp.SocketTimeoutError as exc:
        raise httpx.ReadTimeout(str(exc) or "read timed out", request=request) from exc
    except TimeoutError as exc:
        raise httpx.ReadTimeout("no answer in time", request=request) from exc
    except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError) as exc:
        raise httpx.RemoteProtocolError(str(exc), request=request) from exc
    except aiohttp.ClientResponseError as exc:  # an answer that is not HTTP
        raise httpx.RemoteProtocolError(str(exc), request=request) from exc
    except (aiohttp.ClientOSError, ConnectionError) as exc:
        raise httpx.ReadError(str(exc), request=request) from exc
    except aiohttp.InvalidURL as exc:
        raise httpx.UnsupportedProtocol(str(exc), request=request) from exc
    except aiohttp.ClientError as exc:
        raise httpx.RemoteProtocolError(str(exc), request=request) from exc
