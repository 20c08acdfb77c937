from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from deskbridge.errors import PermanentError, RetryableError, WindowClosed
from deskbridge.http import classify

__all__ = ["GraphError", "graph_error", "raise_for_graph", "scrub"]

_DIGITS = re.compile(r"\+?\d[\d\s().-]{5,}\d")
_EMAIL = re.compile(r"[^\s@]+@[^\s@]+")


def scrub(text: str, limit: int = 160) -> str:
    """An error text fit for logs and notes: phone-like digit runs and emails removed."""
    text = _EMAIL.sub("[email]", _DIGITS.sub("[number]", text))
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True, slots=True)
class GraphError:
    code: int | None
    subcode: int | None
    title: str


def graph_error(response: httpx.Response) -> GraphError | None:
    """The ``error`` object of a Graph API response body, if it has one."""
    try:
        body: Any = response.json()
    except ValueError:
        return None
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict):
        return None

    def num(value: Any) -> int | None:
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    title = err.get("error_user_title") or err.get("message") or err.get("type") or ""
    return GraphError(num(err.get("code")), num(err.get("error_subcode")), scrub(str(title)))


def raise_for_graph(
    response: httpx.Response,
    *,
    what: str,
    retryable: Mapping[int, float | None],
    window_closed: frozenset[int] = frozenset(),
) -> None:
    """Return on success, else raise: ``RetryableError`` for 5xx and for error codes in
    ``retryable`` (their value, when not None, is the wait in seconds: a throttle that does
    not spend the retry budget), ``WindowClosed`` for codes in ``window_closed``,
    ``PermanentError`` otherwise. Messages carry the code and a scrubbed title only."""
    if 200 <= response.status_code < 300:
        return
    err = graph_error(response)
    if err is None or err.code is None:
        classify(response, what=what)
        raise PermanentError(f"{what}: HTTP {response.status_code}", status=response.status_code)
    label = f"{what}: Graph error {err.code}"
    if err.subcode is not None:
        label += f"/{err.subcode}"
    label += f" ({err.title})" if err.title else ""
    if err.code in window_closed:
        raise WindowClosed(label, status=response.status_code)
    if err.code in retryable:
        raise RetryableError(label, status=response.status_code, retry_after=retryable[err.code])
    if response.status_code >= 500 or response.status_code == 429:
        classify(response, what=label)
    raise PermanentError(label, status=response.status_code)
