"""The inbound side of one account's Twilio webhook: messages and status callbacks."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import ClassVar
from urllib.parse import urlencode

from deskbridge.adapters.base import AnswersWebhooks, Parsed
from deskbridge.adapters.sms import signature
from deskbridge.adapters.sms.base import SmsReceiverBase
from deskbridge.adapters.sms.parse import parse
from deskbridge.config.accounts import SmsConfig
from deskbridge.errors import PayloadInvalid
from deskbridge.schemas import RawRequest

__all__ = ["SmsReceiver"]


# Twilio reads the answer to its webhook as TwiML: an empty <Response> sends nothing
# back to the customer (the agent answers later, through the API); a JSON answer works
# too but logs warning 12300 ("Invalid Content-Type") in the account's debugger for
# every message.
_EMPTY_TWIML = b'<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


class SmsReceiver(SmsReceiverBase[SmsConfig], AnswersWebhooks):
    """``/webhooks/sms/<account>``: verifies ``X-Twilio-Signature`` over the URL Twilio
    requested (``config.webhook_url``, else the request's own) and the form parameters."""

    # X-Twilio-Signature is an HMAC over URL and body: nothing of ours to drop
    secret_headers: ClassVar[frozenset[str]] = frozenset()

    def answer(self) -> tuple[bytes, str]:
        return _EMPTY_TWIML, "text/xml"

    def verify(self, req: RawRequest) -> None:
        """Raise ``SignatureInvalid`` unless Twilio signed this request with our token."""
        signature.verify(
            self._config.auth_token.get_secret_value(),
            self._urls(req),
            req.body,
            req.headers.get("content-type", ""),
            req.headers.get(signature.HEADER, ""),
        )

    def parse(self, req: RawRequest) -> Parsed:
        """The message (and its consent change) or the status update; ``PayloadInvalid``
        for a body that is not a form, ``ParseFailed`` for one that is not Twilio's."""
        media = req.headers.get("content-type", "").partition(";")[0].strip().lower()
        if media not in ("application/x-www-form-urlencoded", ""):
            raise PayloadInvalid("sms: the body is not a form")
        try:
            params = signature.form(req.body)
        except UnicodeDecodeError:
            raise PayloadInvalid("sms: the form is not UTF-8") from None
        now = datetime.fromtimestamp(self._clock(), UTC)
        return parse(params, account=self.account, account_sid=self._config.account_sid, now=now)

    def _urls(self, req: RawRequest) -> list[str]:
        if self._config.webhook_url:
            return [self._config.webhook_url]
        # behind a proxy its X-Forwarded-* say what Twilio requested; straight to us, the
        # scheme is not in the request: either (the HMAC still needs our token)
        forwarded = req.headers.get("x-forwarded-proto", "").split(",")[0].strip()
        host = (req.headers.get("x-forwarded-host") or req.headers.get("host", "")).split(",")[0]
        query = urlencode(list(req.query.items()))
        tail = f"{host.strip()}{req.path}" + (f"?{query}" if query else "")
        return [f"{proto}://{tail}" for proto in ([forwarded] if forwarded else ["https", "http"])]
