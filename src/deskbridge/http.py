"""Outbound HTTP: the one client factory and the one response classifier.

Every channel sender and desk connector talks HTTP through an ``httpx.AsyncClient`` made
here (explicit timeouts, no redirects to unexpected hosts) and turns responses and
transport errors into the ``errors`` tree with :func:`classify` / :func:`transport_error`.
"""

from __future__ import annotations

import email.utils
import logging
import time
from collections.abc import Iterable

import httpx

from deskbridge import __version__
from deskbridge.errors import PermanentError, RetryableError

__all__ = ["classify", "make_client", "parse_retry_after", "transport_error"]

USER_AGENT = f"deskbridge/{__version__}"


def make_client(
    *, timeout: float = 10.0, transport: httpx.AsyncBaseTransport | None = None
) -> httpx.AsyncClient:
    """The process-wide outbound client. ``timeout`` is the read/write/pool timeout in seconds."""
    # httpx logs every request URL at INFO, and bot APIs put their token in the URL path.
    for name in ("httpx", "httpcore"):
        logger = logging.getLogger(name)
        logger.setLevel(max(logger.getEffectiveLevel(), logging.WARNING))
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout, connect=min(5.0, timeout)),
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
        headers={"User-Agent": USER_AGENT},
        follow_redirects=False,
        transport=transport,
    )


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
        raise RetryableError(f"{what}: HTTP {status}", status=status)
    raise PermanentError(f"{what}: HTTP {status}", status=status)


def transport_error(exc: httpx.HTTPError, *, what: str) -> RetryableError:
    """Translate a transport failure (timeout, refused connection) into a retryable error."""
    return RetryableError(f"{what}: {type(exc).__name__}")
