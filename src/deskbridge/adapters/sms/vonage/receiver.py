"""The inbound side of one account's Vonage application: messages and status webhooks."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import ClassVar

from deskbridge.adapters.base import Parsed
from deskbridge.adapters.payload import load_object
from deskbridge.adapters.sms.base import SmsReceiverBase
from deskbridge.adapters.sms.vonage import signature
from deskbridge.adapters.sms.vonage.parse import parse
from deskbridge.config.accounts import VonageSmsConfig
from deskbridge.errors import PayloadInvalid
from deskbridge.schemas import RawRequest

__all__ = ["VonageSmsReceiver"]


class VonageSmsReceiver(SmsReceiverBase[VonageSmsConfig]):
    """``/webhooks/sms/<account>`` for ``provider: vonage``: the application's inbound and
    status URL. Verifies the Bearer JWT (``adapters.sms.vonage.signature``) and that it
    names this body before the body is read as a message."""

    # the JWT is not a credential of ours, but it is what proves the request: not kept
    secret_headers: ClassVar[frozenset[str]] = frozenset({signature.HEADER})

    def verify(self, req: RawRequest) -> None:
        """Raise ``SignatureInvalid`` unless Vonage signed this body for this account and
        application; ``SignatureDeferred`` (503) when the request carries no JWT."""
        signature.verify(
            self._config.signature_secret.get_secret_value(),
            req.headers,
            req.body,
            api_key=self._config.api_key,
            application_id=self._config.application_id,
            max_age=self._config.max_token_age_seconds,
            now=self._clock(),
        )

    def parse(self, req: RawRequest) -> Parsed:
        """The message (and its consent change) or the status; ``PayloadInvalid`` for a
        body that is not a JSON object, ``ParseFailed`` for one that names no message."""
        media = req.headers.get("content-type", "").partition(";")[0].strip().lower()
        if media not in ("application/json", ""):
            raise PayloadInvalid("sms: a Vonage webhook is JSON")
        doc = load_object(req.body, what="sms")
        now = datetime.fromtimestamp(self._clock(), UTC)
        return parse(doc, account=self.account, now=now)
