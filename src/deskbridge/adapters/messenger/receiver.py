"""The inbound side of one Meta app's Messenger webhook: every Page it serves posts here."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from deskbridge.adapters.base import Handshake, Parsed
from deskbridge.adapters.messenger.parse import parse
from deskbridge.adapters.meta import handshake, verify
from deskbridge.config.accounts import MetaAppConfig
from deskbridge.schemas import Channel, RawRequest

__all__ = ["MessengerReceiver"]


class MessengerReceiver:
    """One Meta app's Page webhook. ``routes`` maps Page ids to account names; pure and
    stateless, so one instance serves every request."""

    channel: ClassVar[Channel] = Channel.MESSENGER

    def __init__(
        self,
        app_name: str,
        app: MetaAppConfig,
        routes: Mapping[str, str],
        *,
        max_body_bytes: int,
    ) -> None:
        self.app_name = app_name
        self.max_body_bytes = max_body_bytes
        self._app = app
        self._routes = dict(routes)

    def handshake(self, req: RawRequest) -> Handshake:
        """Meta's ``hub.challenge`` GET: echoed when ``hub.verify_token`` matches, else 403."""
        return handshake(req, self._app.verify_token.get_secret_value())

    def verify(self, req: RawRequest) -> None:
        """Raise ``SignatureInvalid`` unless ``X-Hub-Signature-256`` signs the body with the
        app secret."""
        verify(req, self._app.app_secret.get_secret_value())

    def parse(self, req: RawRequest) -> Parsed:
        """The events of every routed entry; see :func:`parse.parse` for errors."""
        return parse(req.body, routes=self._routes)
