"""The outbound side of one account's Twilio Messaging: the Messages resource, sender
selection, segment rules, and MMS media downloads."""

from __future__ import annotations

from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from deskbridge.adapters.base import MediaLinks
from deskbridge.adapters.capabilities import RegistersWebhook, ReportsHealth
from deskbridge.adapters.sms.base import SmsAdapterBase
from deskbridge.adapters.sms.common import choose_sender, customer_number, download
from deskbridge.config.accounts import SmsConfig
from deskbridge.errors import PermanentError
from deskbridge.http import classify, transport_error
from deskbridge.schemas import Attachment, ChannelAddress, Upload

__all__ = ["SmsAdapter"]

# Twilio error codes (twilio.com/docs/api/errors) a retry will not change: 21610 the
# recipient replied STOP; 21211/21614 not a valid (mobile) number; 21408 region not
# enabled; 21612 the From cannot reach the To.
_PERMANENT = {
    21610: "the customer has opted out (STOP) at Twilio",
    21211: "not a valid phone number",
    21614: "not a mobile number",
    21408: "sending to this region is not enabled",
    21612: "this sender cannot reach the number",
}


class _Sent(BaseModel):
    model_config = ConfigDict(extra="ignore")
    sid: str = Field(min_length=1)


class _Number(BaseModel):
    model_config = ConfigDict(extra="ignore")
    sid: str = Field(pattern=r"^PN[0-9a-f]{32}$")


class _Numbers(BaseModel):
    model_config = ConfigDict(extra="ignore")
    incoming_phone_numbers: list[_Number]


class _Error(BaseModel):
    model_config = ConfigDict(extra="ignore")
    code: int | None = None


class SmsAdapter(SmsAdapterBase[SmsConfig], ReportsHealth, RegistersWebhook):
    """One account's Twilio: ``send`` posts to ``/2010-04-01/Accounts/<sid>/Messages.json``
    with HTTP basic auth (account SID, auth token); ``fetch`` downloads MMS media with the
    same credentials from Twilio's API host only."""

    def __init__(
        self,
        account: str,
        config: SmsConfig,
        client: httpx.AsyncClient,
        links: MediaLinks,
        *,
        api_base: str | None = None,
    ) -> None:
        super().__init__(account, config, client, links, api_base=api_base)
        self._account_url = f"{self._base}/2010-04-01/Accounts/{config.account_sid}"
        self._auth = httpx.BasicAuth(config.account_sid, config.auth_token.get_secret_value())

    async def health(self) -> dict[str, float]:
        """``GET /Accounts/<sid>.json``: whether Twilio still takes the token."""
        await self._call(
            "GET", f"{self._account_url}.json", "sms check credentials", auth=self._auth
        )
        return {"credentials_valid": 1.0}

    async def set_webhook(self, url: str) -> None:
        """Point the inbound SMS webhook (``SmsUrl``, POST) of every number this account
        sends from (``default_sender`` and ``senders`` that are numbers) at ``url``, via the
        IncomingPhoneNumbers resource. Messaging Services and sender IDs are left as they
        are. ``PermanentError`` when ``webhook_url`` is set to another URL (signatures are
        checked against it) or a number is not in this Twilio account. Idempotent."""
        self._same_url(url)
        numbers = dict.fromkeys(
            n
            for n in (self._config.default_sender, *self._config.senders.values())
            if n.startswith("+")
        )
        for number in numbers:
            sid = await self._number_sid(number)
            await self._call(
                "POST",
                f"{self._account_url}/IncomingPhoneNumbers/{sid}.json",
                "sms register",
                auth=self._auth,
                data={"SmsUrl": url, "SmsMethod": "POST"},
            )

    async def _number_sid(self, number: str) -> str:
        what = "sms register"
        response = await self._call(
            "GET",
            f"{self._account_url}/IncomingPhoneNumbers.json",
            what,
            auth=self._auth,
            params={"PhoneNumber": number},
        )
        try:
            found = _Numbers.model_validate_json(response.content).incoming_phone_numbers
        except ValidationError:
            raise PermanentError(f"{what}: unreadable IncomingPhoneNumbers answer") from None
        if not found:
            raise PermanentError(f"{what}: a configured sender number is not in this account")
        return found[0].sid

    def sender(self, to: ChannelAddress) -> dict[str, str]:
        """``From`` or ``MessagingServiceSid``: the number the customer wrote to, else the
        sender configured for the customer's country, else ``default_sender``."""
        chosen = choose_sender(to, self._config.senders, self._config.default_sender)
        if chosen.startswith("MG"):
            return {"MessagingServiceSid": chosen}
        return {"From": chosen}

    def _payloads(
        self, chunks: list[str], media: list[tuple[Attachment, str]], to: ChannelAddress
    ) -> list[dict[str, Any]]:
        """A ``Messages.json`` form per chunk; the media (``MediaUrl``) on the last one,
        or on one of their own."""
        common: dict[str, Any] = {"To": customer_number(to), **self.sender(to)}
        if self._config.webhook_url:
            common["StatusCallback"] = self._config.webhook_url
        payloads: list[dict[str, Any]] = [{**common, "Body": c} for c in chunks or [""]]
        if media:
            payloads[-1]["MediaUrl"] = [url for _, url in media]
        return payloads

    async def fetch(self, attachment: Attachment) -> Upload:
        """Download an MMS media file. Credentials go to Twilio's API host only; its
        redirect to the media CDN is followed without them (https only)."""
        return await download(
            self._client,
            attachment,
            limit=self._config.max_media_bytes,
            auth_for=lambda url: self._auth if url.host == self._api_host else None,
        )

    async def _post(self, payload: dict[str, Any]) -> str:
        what = "sms send"
        try:
            response = await self._client.post(
                f"{self._account_url}/Messages.json", data=payload, auth=self._auth
            )
        except httpx.HTTPError as exc:
            raise transport_error(exc, what=what) from None
        if response.status_code == 400:
            code = _code(response)
            reason = _PERMANENT.get(code or 0)
            label = f"{what}: Twilio error {code}" if code else f"{what}: HTTP 400"
            raise PermanentError(f"{label} ({reason})" if reason else label, status=400)
        classify(response, what=what)
        try:
            return _Sent.model_validate_json(response.content).sid
        except ValidationError:
            raise PermanentError(f"{what}: no sid in the response") from None


def _code(response: httpx.Response) -> int | None:
    try:
        return _Error.model_validate_json(response.content).code
    except ValidationError:
        return None
