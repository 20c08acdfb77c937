"""The one webhook URL of a Meta app for every WhatsApp number it serves."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from deskbridge.adapters import meta
from deskbridge.adapters.base import Handshake, Parsed
from deskbridge.adapters.whatsapp.parse import parse
from deskbridge.config.accounts import MetaAppConfig
from deskbridge.schemas import Channel, RawRequest

__all__ = ["WhatsAppReceiver"]


class WhatsAppReceiver:
    """Verifies and parses what Meta app ``app_name`` posts for WhatsApp. ``routes`` maps
    each ``phone_number_id`` to the account that owns it. Pure: no I/O."""

    channel: ClassVar[Channel] = Channel.WHATSAPP

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
        """200 echoing ``hub.challenge`` for the right verify token, else 403."""
        return meta.handshake(req, self._app.verify_token.get_secret_value())

    def verify(self, req: RawRequest) -> None:
        """Raise ``SignatureInvalid`` unless ``X-Hub-Signature-256`` signs the raw body."""
        meta.verify(req, self._app.app_secret.get_secret_value())

    def parse(self, req: RawRequest) -> Parsed:
        """See :func:`deskbridge.adapters.whatsapp.parse.parse`."""
        return parse(req.body, self._routes)
