"""The one exception tree of deskbridge.

    DeskbridgeError
    ├── ConfigError                 the accounts file or the environment is wrong
    ├── RequestRefused              an inbound request we answer with a 4xx
    │   ├── SignatureInvalid        401: missing/bad signature or secret, unknown account
    │   │   └── SignatureDeferred   503: unsigned, where the platform says that is its own
    │   │                           fault and retries on 5xx (Vonage's signed webhooks)
    │   ├── PayloadInvalid          400: not what the platform sends at all
    │   └── PayloadTooLarge         413: over the route's size limit
    ├── ParseFailed                 verified, but our parser cannot handle it (a dead letter)
    ├── DeliveryError               an outbound call (channel send or desk call) failed
    │   ├── RetryableError          timeouts, 5xx, 429 (``retry_after`` set when the peer said)
    │   ├── PermanentError          4xx that will not change by retrying
    │   └── WindowClosed            the channel's reply window is closed: hold until the
    │                               customer writes again
    └── StoreUnavailable            Redis unreachable or a write failed (gateway answers 503)

Adapters and desk connectors never decide whether to retry: they raise a ``DeliveryError``
subclass through :func:`deskbridge.http.classify`, and ``deskbridge.policy`` decides what
happens next.
"""

from __future__ import annotations

import os
from typing import Literal

__all__ = [
    "ConfigError",
    "DeliveryError",
    "DeskbridgeError",
    "Outcome",
    "ParseFailed",
    "PayloadInvalid",
    "PayloadTooLarge",
    "PermanentError",
    "RequestRefused",
    "RetryableError",
    "SignatureDeferred",
    "SignatureInvalid",
    "StoreUnavailable",
    "WindowClosed",
    "bind_failed",
]


class DeskbridgeError(Exception):
    """Root of every error deskbridge raises on purpose."""


class ConfigError(DeskbridgeError):
    """The configuration is wrong. ``problems`` lists (location, message) pairs."""

    def __init__(self, message: str, problems: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


class RequestRefused(DeskbridgeError):
    """An inbound request we refuse; ``status`` is the HTTP status to answer with."""

    status: int = 400
    reason: str = "refused"


class SignatureInvalid(RequestRefused):
    status = 401
    reason = "signature"


class SignatureDeferred(SignatureInvalid):
    """No signature at all on a route whose platform documents sending one unsigned on an
    internal error of its own, and resending it on a 5xx (Vonage): answered 503 so the
    message comes again signed, never stored. Counted with the failed authentications."""

    status = 503
    reason = "unsigned"


class PayloadInvalid(RequestRefused):
    status = 400
    reason = "malformed"


class PayloadTooLarge(RequestRefused):
    status = 413
    reason = "too_large"


class ParseFailed(DeskbridgeError):
    """A verified body our parser could not turn into events (kept raw for re-ingest).
    ``app``: the platform app whose secret signed it (a Meta app), when the receiver is
    shared by several accounts, so a body that names no owner is kept under that app."""

    def __init__(self, message: str = "", *, app: str | None = None) -> None:
        super().__init__(message)
        self.app = app


Outcome = Literal["not_applied", "unknown"]
"""Whether a failed call may have changed the platform's state: ``not_applied`` (refused
before the request was written, or a 4xx/429 the platform documents as a rejection) or
``unknown`` (a timeout or reset after the request was written, a 5xx from a proxy). A
call that was applied is not a failure."""


class DeliveryError(DeskbridgeError):
    """An outbound call failed. ``status`` is the HTTP status when there was a response;
    ``outcome`` says whether the platform may have applied it anyway."""

    def __init__(
        self, message: str, *, status: int | None = None, outcome: Outcome = "not_applied"
    ) -> None:
        super().__init__(message)
        self.status = status
        self.outcome: Outcome = outcome


class RetryableError(DeliveryError):
    """Worth trying again. ``retry_after`` (seconds) is set when the peer asked for a wait;
    such waits (429) do not spend the retry budget."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        outcome: Outcome = "not_applied",
    ) -> None:
        super().__init__(message, status=status, outcome=outcome)
        self.retry_after = retry_after


class PermanentError(DeliveryError):
    """Retrying will not help: the delivery goes to the dead letters at once."""


class WindowClosed(DeliveryError):
    """The customer's reply window is closed (WhatsApp's 24 hours). The reply is held and
    sent when the customer writes again; the adapter's ``reengage`` may invite them to."""


class StoreUnavailable(DeskbridgeError):
    """Redis could not be reached or refused a write."""


class BodyTooSlow(RequestRefused):
    """The body did not arrive within the route's read deadline (408, connection closed)."""

    status = 408
    reason = "slow_body"


class ClientGone(RequestRefused):
    """The client closed the connection before its body arrived: nobody to answer (the
    answer is logged as 400, never as a server error)."""

    status = 400
    reason = "client_gone"


def bind_failed(what: str, address: str, exc: OSError) -> ConfigError:
    """A listening socket that could not be opened, as one line: ``"<what> port
    <address>: Address already in use"`` (asyncio words the same errno differently, and
    uvloop keeps it only on the error's cause)."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, OSError) and cause.errno:
            return ConfigError(f"{what} port {address}: {os.strerror(cause.errno)}")
        cause = cause.__cause__
    return ConfigError(f"{what} port {address}: {exc}")
