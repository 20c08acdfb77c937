from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import replace
from typing import ClassVar

from deskbridge.adapters.base import Handshake, Parsed
from deskbridge.adapters.meta.webhook import handshake, verify
from deskbridge.config.accounts import MetaAppConfig
from deskbridge.errors import ParseFailed
from deskbridge.schemas import Channel, RawRequest

__all__ = ["MetaReceiver"]


class MetaReceiver(ABC):
    """What one Meta app posts for one product (WhatsApp numbers or Pages) to its one URL.
    ``routes`` maps each number or Page id to the account that owns it. Pure: no I/O.
    Subclasses name the channel and parse."""

    channel: ClassVar[Channel]
    # X-Hub-Signature-256 is an HMAC over the body; the verify token of the GET
    # handshake is ours
    secret_headers: ClassVar[frozenset[str]] = frozenset()
    secret_query: ClassVar[frozenset[str]] = frozenset({"hub.verify_token"})

    def __init__(
        self, app_name: str, app: MetaAppConfig, routes: Mapping[str, str], *, max_body_bytes: int
    ) -> None:
        self.app_name = app_name
        self.max_body_bytes = max_body_bytes
        self._app = app
        self._routes = dict(routes)

    def handshake(self, req: RawRequest) -> Handshake:
        """Meta's ``hub.challenge`` GET: echoed when ``hub.verify_token`` matches, else 403."""
        return handshake(req, self._app.verify_token.get_secret_value())

    def verify(self, req: RawRequest) -> None:
        """Raise ``SignatureInvalid`` unless ``X-Hub-Signature-256`` signs the raw body."""
        verify(req, self._app.app_secret.get_secret_value())

    def parse(self, req: RawRequest) -> Parsed:
        """The events of every routed entry. Item failures and a ``ParseFailed`` name
        this app, so what names no owner is kept under the app."""
        try:
            parsed = self._parse(req)
        except ParseFailed as exc:
            raise ParseFailed(str(exc), app=self.app_name) from None
        skipped = tuple(replace(i, app=self.app_name) for i in parsed.skipped)
        if not parsed.failures:
            return replace(parsed, skipped=skipped)
        failures = tuple(replace(f, app=self.app_name) for f in parsed.failures)
        return replace(parsed, failures=failures, skipped=skipped)

    @abstractmethod
    def _parse(self, req: RawRequest) -> Parsed:
        """Each product parses its own payload."""
