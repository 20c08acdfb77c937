"""Outbound HTTP: the one client factory and the one response classifier.

Every channel sender and desk connector talks HTTP through an ``httpx.AsyncClient`` made
here (explicit timeouts, no redirects to unexpected hosts) and turns responses and
transport errors into the ``errors`` tree with :func:`classify` / :func:`transport_error`.

URLs that arrive inside payloads (a Messenger attachment URL, a desk attachment link on
another host) are fetched through :class:`Fetcher`, whose guarded client checks the
resolved address of every connection (SSRF guard, see docs/security.md).
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import ipaddress
import logging
import os
import socket
import ssl
import time
from collections.abc import Callable, Iterable
from types import TracebackType

import httpcore
import httpx

from deskbridge import __version__
from deskbridge.errors import Outcome, PermanentError, RetryableError
from deskbridge.http_transport import AiohttpTransport, ProcessClient, proxies_in_env

__all__ = [
    "Fetcher",
    "GuardedTransport",
    "UnsafeAddress",
    "address_allowed",
    "classify",
    "download_https",
    "make_client",
    "parse_retry_after",
    "process_client",
    "read_capped",
    "refuse_page",
    "transport_error",
]

USER_AGENT = f"deskbridge/{__version__}"


def make_client(
    *, timeout: float = 10.0, transport: httpx.AsyncBaseTransport | None = None
) -> httpx.AsyncClient:
    """The process-wide outbound client. ``timeout`` is the read/write/pool timeout in seconds."""
    # httpx logs every request URL at INFO, and bot APIs put their token in the URL path.
    for name in ("httpx", "httpcore"):
        logger = logging.getLogger(name)
        logger.setLevel(max(logger.getEffectiveLevel(), logging.WARNING))
    # a ProcessClient behaves as httpx.AsyncClient unless its transport is aiohttp's
    return ProcessClient(
        timeout=httpx.Timeout(timeout, connect=min(5.0, timeout)),
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
        headers={"User-Agent": USER_AGENT},
        follow_redirects=False,
        transport=transport,
    )


class _NoCookies(httpx.Cookies):
    """A cookie store that keeps nothing. httpx reads every response's ``Set-Cookie``
    into its client's store through urllib's cookie jar (~5 % of the worker's CPU per
    filed message, with or without a cookie), and the process client would then send a
    cookie one account's platform set with every account's calls to that host. Every
    platform API deskbridge calls authenticates each request with its own credential."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


def process_client(*, timeout: float = 10.0) -> httpx.AsyncClient:
    """The client of a ``deskbridge`` process: ``make_client`` sending through aiohttp
    (:class:`~deskbridge.http_transport.AiohttpTransport`, ~45 % less CPU per call),
    unless the environment names a proxy, which only httpx's own transport follows. It
    keeps no cookies (``_NoCookies``)."""
    if proxies_in_env(os.environ):
        client = make_client(timeout=timeout)
    else:
        client = make_client(timeout=timeout, transport=AiohttpTransport(max_connections=100))
    # the store httpx's ``cookies`` property hands out (its setter would copy it into a
    # plain one); tests/test_http_transport.py checks that no cookie is kept
    client._cookies = _NoCookies()
    return client


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date), else None."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def classify(
    response: httpx.Response,
    *,
    what: str,
    retry_after: float | None = None,
    retryable_statuses: Iterable[int] = (),
) -> None:
    """Return if ``response`` is a success, else raise the matching ``DeliveryError``.

    429 and 5xx (and ``retryable_statuses``) raise ``RetryableError``; for 429 the wait is
    ``retry_after`` if the caller found one in the body, else the ``Retry-After`` header.
    Other 4xx raise ``PermanentError``. ``what`` names the call in the message; the message
    never carries the response body (it may echo customer data).
    """
    status = response.status_code
    if 200 <= status < 300:
        return
    if status == 429:
        wait = (
            retry_after
            if retry_after is not None
            else parse_retry_after(response.headers.get("retry-after"))
        )
        raise RetryableError(f"{what}: rate limited (HTTP 429)", status=status, retry_after=wait)
    if status >= 500 or status in set(retryable_statuses) or status == 408:
        # a 5xx may come from a proxy in front of a platform that applied the call
        outcome: Outcome = "unknown" if status >= 500 else "not_applied"
        raise RetryableError(f"{what}: HTTP {status}", status=status, outcome=outcome)
    raise PermanentError(f"{what}: HTTP {status}", status=status)


# Failures before the request left: the platform cannot have applied it.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)


def transport_error(exc: httpx.HTTPError, *, what: str) -> RetryableError:
    """Translate a transport failure into a retryable error: ``not_applied`` when the
    request never left (connect failures, pool timeouts), else ``unknown`` (a read
    timeout or a reset after the request was written may follow a change the platform
    made)."""
    outcome: Outcome = "not_applied" if isinstance(exc, _NOT_SENT) else "unknown"
    return RetryableError(f"{what}: {type(exc).__name__}", outcome=outcome)


# --- untrusted URLs (SSRF guard) ---------------------------------------------------------


class UnsafeAddress(PermanentError):
    """An untrusted URL is not http(s), or its host resolves to an address deskbridge does
    not connect to on a payload's say-so (private, loopback, link-local, ...)."""


def address_allowed(ip: str) -> bool:
    """Whether ``ip`` is a public unicast address. IPv4-mapped, 6to4 and Teredo IPv6
    addresses are judged by the IPv4 address they carry."""
    try:
        addr: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(
            ip.split("%", 1)[0]
        )
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address):
        teredo = addr.teredo
        inner = addr.ipv4_mapped or addr.sixtofour or (teredo[1] if teredo else None)
        if inner is not None:
            addr = inner
        elif addr in _NAT64:
            addr = ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    return addr.is_global and not (
        addr.is_multicast
        or addr.is_private
        or addr.is_loopback
        or addr.is_link_local
        or addr.is_reserved
        or addr.is_unspecified
    )


_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolves the host itself, refuses unless every address is public, and connects to
    the checked address, so a DNS answer cannot change between check and connect."""

    def __init__(self) -> None:
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's backend interface
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        host = host.strip("[]")
        try:
            async with asyncio.timeout(timeout):
                infos = await asyncio.get_running_loop().getaddrinfo(
                    host, port, type=socket.SOCK_STREAM
                )
        except (OSError, TimeoutError) as exc:
            raise httpcore.ConnectError(f"cannot resolve the host: {type(exc).__name__}") from None
        addresses = [str(info[4][0]) for info in infos]
        if not addresses or not all(address_allowed(a) for a in addresses):
            raise UnsafeAddress("untrusted URL: the host resolves to a non-public address")
        return await self._inner.connect_tcp(
            addresses[0], port, timeout, local_address, socket_options
        )

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's backend interface
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise UnsafeAddress("untrusted URL: no unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    return httpx.create_ssl_context()


class GuardedTransport(httpx.AsyncHTTPTransport):
    """An httpx transport for URLs that arrived inside payloads: http(s) only, no proxy
    from the environment, and every connection's resolved address checked by
    :func:`address_allowed`. Raises :class:`UnsafeAddress` (a ``PermanentError``)."""

    def __init__(self) -> None:
        super().__init__(trust_env=False)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=_ssl_context(),
            max_connections=10,
            network_backend=_GuardedBackend(),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.scheme not in ("http", "https"):
            raise UnsafeAddress("untrusted URL: not http(s)")
        return await super().handle_async_request(request)


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return (url.scheme, url.host, url.port)


class Fetcher:
    """Chooses the client for each hop of a download: ``client`` (the process client,
    with credentials) for URLs on a ``trusted`` base URL's origin, a guarded client
    (:class:`GuardedTransport`, made on first need, closed on exit) for every other URL.
    Use as ``async with Fetcher(client, trusted) as f: f.client_for(url)``."""

    def __init__(self, client: httpx.AsyncClient, trusted: Iterable[str | httpx.URL]) -> None:
        self._client = client
        self._trusted = {_origin(httpx.URL(u)) for u in trusted}
        self._guarded: httpx.AsyncClient | None = None

    def trusted(self, url: httpx.URL) -> bool:
        return _origin(url) in self._trusted

    def client_for(self, url: httpx.URL) -> httpx.AsyncClient:
        if self.trusted(url):
            return self._client
        if url.scheme not in ("http", "https") or not url.host:
            raise UnsafeAddress("untrusted URL: not http(s)")
        if self._guarded is None:
            self._guarded = httpx.AsyncClient(
                timeout=self._client.timeout,
                headers={"User-Agent": USER_AGENT},
                follow_redirects=False,
                trust_env=False,
                transport=GuardedTransport(),
            )
        return self._guarded

    async def __aenter__(self) -> Fetcher:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._guarded is not None:
            await self._guarded.aclose()


# a payload's URL answered with a web page is an error or login page, or an intranet probe
_REFUSED_TYPES = ("text/html", "application/xhtml+xml")


def refuse_page(response: httpx.Response, *, what: str) -> None:
    """``PermanentError`` when an untrusted URL answered with a web page instead of a file."""
    ctype = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if ctype in _REFUSED_TYPES:
        raise PermanentError(f"{what}: refused content type {ctype}")


async def read_capped(
    response: httpx.Response, limit: int, *, what: str, untrusted: bool = False
) -> bytes:
    """The body of ``response``, streamed: ``PermanentError`` once it passes ``limit`` bytes,
    and before reading when Content-Length already says so. A missing or garbled
    Content-Length is no error (the cap still holds). With ``untrusted``, web pages are
    refused too. The one capped download: every channel and desk reads files through it."""
    if untrusted:
        refuse_page(response, what=what)
    declared = _declared_length(response)
    if declared is not None and declared > limit:
        raise PermanentError(f"{what}: over the {limit}-byte limit")
    data = bytearray()
    async for chunk in response.aiter_bytes():
        data += chunk
        if len(data) > limit:
            raise PermanentError(f"{what}: over the {limit}-byte limit")
    return bytes(data)


def _declared_length(response: httpx.Response) -> int | None:
    """Content-Length when it is plain ASCII digits, else None (the body is streamed
    with the cap whatever the header said)."""
    # str.isdigit() accepts "²" and other digits int() refuses, and int() refuses more
    # than 4300 digits: either would escape as a ValueError.
    value = response.headers.get("content-length", "").strip()
    if not (value.isascii() and value.isdigit()):
        return None
    try:
        return int(value)
    except ValueError:
        return None


_MAX_REDIRECTS = 5


async def download_https(
    client: httpx.AsyncClient,
    ref: str,
    *,
    limit: int,
    what: str,
    gone: str,
    auth_for: Callable[[httpx.URL], httpx.Auth | None] | None = None,
) -> tuple[bytes, str]:
    """The body and ``Content-Type`` behind a media URL that arrived inside a payload:
    https only, every redirect followed by hand (at most five, https only), at most
    ``limit`` bytes. ``auth_for`` gives credentials for a URL on the provider's own hosts
    (sent through ``client``); every other hop goes through the SSRF-guarded client
    without them. ``PermanentError`` for a bad URL, a redirect loop, the cap, or
    403/404/410 (``gone`` says why: "expired or removed"); 5xx and timeouts are
    retryable. Errors never carry the URL (it often holds a signed token)."""
    try:
        url = httpx.URL(ref)
    except httpx.InvalidURL:
        raise PermanentError(f"{what}: not a URL") from None
    async with Fetcher(client, ()) as fetcher:
        for _ in range(_MAX_REDIRECTS + 1):
            if url.scheme != "https":
                raise PermanentError(f"{what}: not an https URL")
            auth = auth_for(url) if auth_for is not None else None
            try:
                hop = client if auth is not None else fetcher.client_for(url)
                async with hop.stream("GET", url, auth=auth, follow_redirects=False) as response:
                    if response.has_redirect_location:
                        url = response.url.join(response.headers["location"])
                        continue
                    if response.status_code in (403, 404, 410):
                        raise PermanentError(
                            f"{what}: HTTP {response.status_code} ({gone})",
                            status=response.status_code,
                        )
                    classify(response, what=what)
                    data = await read_capped(response, limit, what=what, untrusted=True)
                    return data, response.headers.get("content-type", "")
            except httpx.InvalidURL:
                raise PermanentError(f"{what}: bad redirect location") from None
            except httpx.HTTPError as exc:
                # `from None`: the httpx error carries the request and its URL
                raise transport_error(exc, what=what) from None
    raise PermanentError(f"{what}: more than {_MAX_REDIRECTS} redirects")
