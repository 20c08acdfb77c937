"""The accounts file: who the tenants are, which desk each files into, which channels it has.

```yaml
accounts:
  acme:
    desk:
      type: zendesk
      subdomain: acme
      email: agent@acme.example
      api_token: ${ZENDESK_API_TOKEN}
      webhook_secret_file: /run/secrets/zendesk_webhook
    channels:
      - type: telegram
        bot_token: ${TELEGRAM_BOT_TOKEN}
        secret_token: ${TELEGRAM_SECRET_TOKEN}
```

Any string may be ``${ENV_VAR}`` (``${ENV_VAR:-default}`` too); any key ending in ``_file``
is replaced by the key without the suffix holding the file's content (trailing newline
stripped). Errors name the file, the path in the document and what is wrong.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    SecretStr,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from deskbridge.errors import ConfigError
from deskbridge.routing.config import RoutingConfig
from deskbridge.routing.csat import CsatConfig
from deskbridge.routing.responders import RespondersConfig
from deskbridge.schemas import Channel

__all__ = [
    "GRAPH_API_BASE",
    "GRAPH_API_VERSION",
    "INSTAGRAM_API_BASE",
    "INTERCOM_API_BASE",
    "INTERCOM_API_VERSION",
    "SMS_PROVIDERS",
    "WIDGET_MAX_MEDIA_BYTES",
    "AccountConfig",
    "AccountsFile",
    "AppConfig",
    "ChannelConfig",
    "ConsentNotice",
    "DeskConfig",
    "EmailConfig",
    "InstagramConfig",
    "IntercomDeskConfig",
    "LineConfig",
    "MessengerConfig",
    "MetaAppConfig",
    "RetentionConfig",
    "SandboxDeskConfig",
    "SipCallsConfig",
    "SipConfig",
    "SipTimersConfig",
    "SmsBaseConfig",
    "SmsChannelConfig",
    "SmsConfig",
    "SmsProvider",
    "SmtpConfig",
    "TelegramConfig",
    "UdeskDeskConfig",
    "VonageSmsConfig",
    "WebchatConfig",
    "WhatsAppConfig",
    "WhatsAppTemplate",
    "WidgetMediaType",
    "ZendeskDeskConfig",
    "load_accounts",
    "parse_accounts",
    "sms_provider",
]

_NAME = r"^[a-z0-9][a-z0-9_-]{0,62}$"
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _http_url(value: str) -> str:
    if not re.match(r"https?://[^/\s]+", value):
        raise ValueError(f"{value!r} is not an http:// or https:// URL")
    return value


BaseUrl = Annotated[str, AfterValidator(_http_url)]
"""An API's base URL: ``http://`` or ``https://`` and a host."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TelegramConfig(_Model):
    type: Literal["telegram"] = "telegram"
    bot_token: SecretStr
    secret_token: SecretStr
    """The ``X-Telegram-Bot-Api-Secret-Token`` Telegram sends (1-256 of A-Z a-z 0-9 _ -)."""
    base_url: BaseUrl = "https://api.telegram.org"
    sandbox: bool = False
    """Send to the gateway's own ``/sandbox/channel-api/`` instead of ``base_url``."""
    max_media_bytes: int = Field(default=20 * 1024 * 1024, gt=0)
    max_body_bytes: int = Field(default=1024 * 1024, gt=0)

    @field_validator("secret_token")
    @classmethod
    def _secret_shape(cls, v: SecretStr) -> SecretStr:
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", v.get_secret_value()):
            raise ValueError("must be 1-256 characters of A-Z, a-z, 0-9, _ and -")
        return v

    @field_validator("bot_token")
    @classmethod
    def _token_shape(cls, v: SecretStr) -> SecretStr:
        if not re.fullmatch(r"\d+:[A-Za-z0-9_-]+", v.get_secret_value()):
            raise ValueError("is not a bot token of the form 123456:ABC-DEF...")
        return v


GRAPH_API_BASE = "https://graph.facebook.com"
GRAPH_API_VERSION = "v23.0"


class MetaAppConfig(_Model):
    """A Meta app: one callback URL and one secret for every number and Page it serves."""

    type: Literal["meta"] = "meta"
    app_id: str | None = Field(default=None, pattern=r"^\d{1,32}$")
    """App settings → Basic: what ``channels register`` needs to read and set the app's
    webhook subscriptions (with the app access token ``<app_id>|<app_secret>``)."""
    app_secret: SecretStr
    """Signs every webhook (``X-Hub-Signature-256``)."""
    verify_token: SecretStr
    """What Meta's verification GET must present (``hub.verify_token``)."""


AppConfig = Annotated[MetaAppConfig, Field(discriminator="type")]


class WhatsAppTemplate(_Model):
    """An approved template sent to re-open a closed 24-hour window. It takes no
    parameters: the agent's free text never goes into a template."""

    name: str = Field(pattern=r"^[a-z0-9_]{1,512}$")
    language: str = Field(default="en_US", pattern=r"^[a-z]{2,3}(_[A-Z]{2})?$")


class WhatsAppConfig(_Model):
    type: Literal["whatsapp"] = "whatsapp"
    app: str
    """The name of the Meta app (under ``apps:``) whose webhook carries this number."""
    phone_number_id: str = Field(pattern=r"^\d{1,32}$")
    access_token: SecretStr
    """A system-user (or business) token with whatsapp_business_messaging."""
    waba_id: str | None = Field(default=None, pattern=r"^\d{1,32}$")
    """The WhatsApp Business Account of the number: ``channels register`` subscribes the
    app to it (``POST /<waba_id>/subscribed_apps`` with ``access_token``)."""
    base_url: BaseUrl = GRAPH_API_BASE
    graph_version: str = Field(default=GRAPH_API_VERSION, pattern=r"^v\d+\.\d+$")
    template: WhatsAppTemplate | None = None
    sandbox: bool = False
    max_media_bytes: int = Field(default=100 * 1024 * 1024, gt=0)
    max_body_bytes: int = Field(default=4 * 1024 * 1024, gt=0)
    """Meta's payloads are at most 3 MB."""


class MessengerConfig(_Model):
    type: Literal["messenger"] = "messenger"
    app: str
    page_id: str = Field(pattern=r"^\d{1,32}$")
    page_access_token: SecretStr
    base_url: BaseUrl = GRAPH_API_BASE
    graph_version: str = Field(default=GRAPH_API_VERSION, pattern=r"^v\d+\.\d+$")
    human_agent_tag: bool = True
    """Send human agents' replies between 24 hours and 7 days with the HUMAN_AGENT tag
    (needs the Human Agent permission from Meta's app review)."""
    sandbox: bool = False
    max_media_bytes: int = Field(default=25 * 1024 * 1024, gt=0)
    max_body_bytes: int = Field(default=4 * 1024 * 1024, gt=0)


INSTAGRAM_API_BASE = "https://graph.instagram.com"


class InstagramConfig(_Model):
    """An Instagram professional account's Direct messages, through the account's Meta app.
    With Instagram Login (the default) replies go to ``graph.instagram.com/<ig_id>/messages``
    with an Instagram user access token; with Facebook Login set ``page_id`` (the linked
    Page) and ``base_url: https://graph.facebook.com`` and give the Page access token."""

    type: Literal["instagram"] = "instagram"
    app: str
    ig_id: str = Field(pattern=r"^\d{1,32}$")
    """The professional account's id: ``entry[].id`` of its webhooks, the routing key."""
    access_token: SecretStr
    page_id: str | None = Field(default=None, pattern=r"^\d{1,32}$")
    base_url: BaseUrl = INSTAGRAM_API_BASE
    graph_version: str = Field(default=GRAPH_API_VERSION, pattern=r"^v\d+\.\d+$")
    human_agent_tag: bool = True
    """Send human agents' replies between 24 hours and 7 days with the HUMAN_AGENT tag
    (needs Meta's Human Agent permission for the app)."""
    sandbox: bool = False
    max_media_bytes: int = Field(default=25 * 1024 * 1024, gt=0)
    max_body_bytes: int = Field(default=4 * 1024 * 1024, gt=0)


_TWILIO_SENDER = r"^(\+[1-9]\d{6,14}|MG[0-9a-f]{32}|[A-Za-z0-9 ]{1,11})$"
_VONAGE_SENDER = r"^(\+[1-9]\d{6,14}|[A-Za-z0-9 ]{1,11})$"

SmsProvider = Literal["twilio", "vonage"]
"""The providers behind the ``sms`` channel (``provider:``; unset means ``twilio``)."""
SMS_PROVIDERS: tuple[str, ...] = get_args(SmsProvider)


class SmsBaseConfig(_Model):
    """What every SMS provider's channel has: the senders, the segment cap, the limits.
    Inbound messages and status callbacks arrive at ``/webhooks/sms/<account>``."""

    type: Literal["sms"] = "sms"
    webhook_url: str | None = None
    senders: dict[Annotated[str, Field(pattern=r"^[A-Z]{2}$")], str] = Field(default_factory=dict)
    """Country (ISO 3166 alpha-2 of the customer's number) → a sender: a number (E.164)
    or an alphanumeric sender ID (Twilio also takes a Messaging Service SID, ``MG…``)."""
    default_sender: str
    max_segments: int = Field(default=10, ge=1, le=10)
    """Split a reply into messages of at most this many segments."""
    base_url: str
    sandbox: bool = False
    max_media_bytes: int = Field(default=5 * 1024 * 1024, gt=0)
    max_body_bytes: int = Field(default=256 * 1024, gt=0)


def _senders_match(senders: dict[str, str], pattern: str, what: str) -> dict[str, str]:
    for country, sender in senders.items():
        if not re.fullmatch(pattern, sender):
            raise ValueError(f"{country}: {sender!r} is not {what}")
    return senders


class SmsConfig(SmsBaseConfig):
    """SMS and MMS through Twilio Programmable Messaging: inbound messages and status
    callbacks at ``/webhooks/sms/<account>``, signed with ``X-Twilio-Signature``."""

    provider: Literal["twilio"] = "twilio"
    account_sid: str = Field(pattern=r"^AC[0-9a-f]{32}$")
    auth_token: SecretStr
    """Signs Twilio's webhooks, authenticates our API calls and media downloads."""
    webhook_url: str | None = None
    """The exact URL configured at Twilio for this account (scheme, host, port, path and
    query): what signatures are computed over, and the status callback of every send.
    Without it the URL is rebuilt from the request (``X-Forwarded-Proto``, ``Host``)."""
    default_sender: str = Field(pattern=_TWILIO_SENDER)
    """A number (E.164), a Messaging Service SID (``MG…``) or an alphanumeric sender ID."""
    max_segments: int = Field(default=10, ge=1, le=10)
    """Split a reply into messages of at most this many segments (Twilio: 1600 chars)."""
    base_url: BaseUrl = "https://api.twilio.com"

    @field_validator("senders")
    @classmethod
    def _sender_shape(cls, v: dict[str, str]) -> dict[str, str]:
        return _senders_match(v, _TWILIO_SENDER, "a number, MG SID or sender ID")


class VonageSmsConfig(SmsBaseConfig):
    """SMS and MMS through the Vonage Messages API (``provider: vonage``): inbound
    messages and status webhooks of a Vonage application at ``/webhooks/sms/<account>``,
    signed with a JWT (HS256, the account's signature secret); replies sent with the
    application's JWT (RS256, its private key). See docs/channels/sms.md."""

    provider: Literal["vonage"]
    api_key: str = Field(pattern=r"^[A-Za-z0-9]{4,32}$")
    """The account's API key: the ``api_key`` claim of every signed webhook."""
    api_secret: SecretStr
    """With the API key, authenticates the Applications API (health, ``channels register``)."""
    signature_secret: SecretStr = Field(min_length=4)
    """The account's signature secret (Dashboard → API settings): the HS256 key of the
    webhooks' JWTs."""
    application_id: str = Field(
        pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
    )
    """The Vonage application the sender numbers are linked to (its webhooks post here)."""
    private_key: SecretStr
    """The application's private key (PEM): signs the JWT of every API call and media
    download (``private_key_file:`` reads it from a file)."""
    webhook_url: str | None = None
    """The URL set as the application's inbound and status URL (``channels register``
    refuses another); also sent as the status URL of every message."""
    default_sender: str = Field(pattern=_VONAGE_SENDER)
    """A number (E.164) or an alphanumeric sender ID."""
    max_segments: int = Field(default=10, ge=1, le=20)
    """Split a reply into messages of at most this many segments (Vonage: 3200 chars)."""
    base_url: BaseUrl = "https://api.nexmo.com"
    """The Messages and Applications API host (regional: ``https://api-eu.vonage.com``)."""
    max_token_age_seconds: int = Field(default=25 * 3600, ge=60, le=7 * 86400)
    """How old a webhook's JWT (its ``iat``) may be. Vonage retries a webhook for 24
    hours and its tokens carry no expiry; a replay within this window is a duplicate
    the dedup window (7 days) absorbs."""

    @field_validator("private_key")
    @classmethod
    def _a_private_key(cls, v: SecretStr) -> SecretStr:
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        try:
            key = load_pem_private_key(v.get_secret_value().encode(), password=None)
        except (ValueError, TypeError):
            raise ValueError("is not an unencrypted PEM private key") from None
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError("must be the application's RSA private key")
        return v

    @field_validator("senders")
    @classmethod
    def _sender_shape(cls, v: dict[str, str]) -> dict[str, str]:
        return _senders_match(v, _VONAGE_SENDER, "a number (E.164) or a sender ID")


def sms_provider(value: Any) -> str:
    """The provider an ``sms`` channel entry names (a mapping or a config); ``twilio``
    when it names none."""
    if isinstance(value, VonageSmsConfig):
        return "vonage"
    found = value.get("provider") if isinstance(value, Mapping) else None
    return "twilio" if found is None else str(found)


SmsChannelConfig = Annotated[
    Annotated[SmsConfig, Tag("twilio")] | Annotated[VonageSmsConfig, Tag("vonage")],
    Discriminator(
        sms_provider,
        custom_error_type="sms_provider",
        custom_error_message=f"provider must be one of {', '.join(SMS_PROVIDERS)}",
    ),
]
"""An ``sms`` channel entry: Twilio or Vonage, by its ``provider``."""


WidgetMediaType = Literal[
    "image/jpeg",
    "image/png",
    "image/gif",
    "image/webp",
    "application/pdf",
    "text/plain",
    "audio/wav",
    "video/mp4",
]
"""The types of file the widget recognises by their first bytes (the MIME Sniffing
Standard's signatures, ``adapters/webchat/files.py``)."""
WIDGET_MAX_MEDIA_BYTES = 20 * 1024 * 1024
"""The widget's largest file: what every desk connector takes, held in memory once by
the gateway and once by the worker."""


class WebchatConfig(_Model):
    """The website chat widget (docs/channels/webchat.md): the script at
    ``/widget/v1/deskbridge-chat.js``, one WebSocket per visitor at
    ``/widget/v1/<account>/socket``."""

    type: Literal["webchat"] = "webchat"
    secret: SecretStr = Field(min_length=16)
    """Signs anonymous visitors' ids (kept in the browser's local storage)."""
    identity_secret: SecretStr | None = Field(default=None, min_length=16)
    """The site's identity verification secret: its backend sends
    ``HMAC-SHA256(identity_secret, user id or email)`` in hex as ``user_hash``. None:
    every visitor is anonymous."""
    allowed_origins: tuple[Annotated[str, Field(pattern=r"^https?://[^/\s]+$")], ...] = Field(
        min_length=1
    )
    """The sites (scheme://host[:port]) whose pages may open the widget's socket."""
    messages_per_minute: int = Field(default=20, gt=0)
    """Per visitor; more are refused (not acknowledged) until the minute is over."""
    connections_per_minute: int = Field(default=30, gt=0)
    """Per IP address: sockets opened and messages sent."""
    max_text_chars: int = Field(default=4000, gt=0, le=20000)
    history_days: int = Field(default=30, gt=0, le=365)
    """How long a visitor's conversation is kept for when they return."""
    languages: tuple[Annotated[str, Field(pattern=r"^[a-z]{2}$")], ...] = Field(
        default=("en",), min_length=1
    )
    """The languages the widget speaks to visitors (ISO 639-1; the script has en, es, de,
    fr, pt): the visitor's browser language when listed, else the first."""
    media_types: tuple[WidgetMediaType, ...] = (
        "image/jpeg",
        "image/png",
        "image/gif",
        "image/webp",
        "application/pdf",
    )
    """The files a visitor may attach, by the type their bytes show (never the name or
    the browser's word); empty: no attachments."""
    max_media_bytes: int = Field(default=10 * 1024 * 1024, gt=0, le=WIDGET_MAX_MEDIA_BYTES)
    """A visitor's file, at most (the channel's own limit is 20 MB)."""
    uploads_per_minute: int = Field(default=5, gt=0)
    """Files per visitor, and per IP address, per minute."""
    sandbox: bool = False


class LineConfig(_Model):
    """A LINE Messaging API channel. Tokens: a long-lived channel access token, or a
    private JWK from which channel access tokens v2.1 are issued (and cached, shared by
    every process, renewed before they expire)."""

    type: Literal["line"] = "line"
    channel_id: str = Field(pattern=r"^\d{1,32}$")
    channel_secret: SecretStr
    """Signs every webhook (``x-line-signature``)."""
    access_token: SecretStr | None = None
    private_jwk: SecretStr | None = None
    """The JSON of the RS256 private key (with its ``kid``) registered for v2.1 tokens."""
    token_lifetime_seconds: int = Field(default=30 * 86400, ge=60, le=30 * 86400)
    base_url: BaseUrl = "https://api.line.me"
    data_base_url: BaseUrl = "https://api-data.line.me"
    """Content (media) downloads live on their own host."""
    reply_window_seconds: float = Field(default=50.0, gt=0, le=60)
    """Use the free reply API within this long of the customer's message (LINE: 1 min)."""
    sandbox: bool = False
    max_media_bytes: int = Field(default=200 * 1024 * 1024, gt=0)
    max_body_bytes: int = Field(default=1024 * 1024, gt=0)

    @model_validator(mode="after")
    def _one_token_source(self) -> LineConfig:
        if (self.access_token is None) == (self.private_jwk is None):
            raise ValueError("needs exactly one of access_token or private_jwk")
        return self


class SmtpConfig(_Model):
    """Where replies are handed over (a provider's SMTP relay)."""

    host: str
    port: int = Field(default=587, gt=0, lt=65536)
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None
    password: SecretStr | None = None


class EmailConfig(_Model):
    """A support address. Mail arrives through an inbound-parse provider's webhook and
    replies leave through ``smtp`` (or the sandbox)."""

    type: Literal["email"] = "email"
    address: str = Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    """The support address; its plus forms (``local+token@domain``) carry ticket tokens."""
    from_name: str | None = None
    own_domains: list[str] = Field(default_factory=list)
    """Domains our mail comes from (default: the address's domain)."""
    inbound: Literal["smtp", "mailgun", "sendgrid", "postmark"]
    smtp_listen: str = Field(default="127.0.0.1:2525", pattern=r"^[^:\s]+:\d{1,5}$")
    """``host:port`` of the SMTP listener, for ``inbound: smtp``."""
    tls_cert_path: str | None = None
    """Certificate and key (PEM files) for STARTTLS on the listener (``_path``, not
    ``_file``: a ``*_file`` key would be read as a secret's value)."""
    tls_key_path: str | None = None
    mailgun_signing_key: SecretStr | None = None
    basic_auth_user: str | None = None
    basic_auth_password: SecretStr | None = None
    trusted_authserv_ids: list[str] = Field(default_factory=list)
    """authserv-ids of MTAs whose Authentication-Results deskbridge may believe."""
    verify_dkim: bool = False
    """Check DKIM signatures ourselves (DNS lookups, in the worker) when no trusted MTA
    says: an aligned pass makes the sender's address strong evidence."""
    smtp: SmtpConfig | None = None
    sandbox: bool = False
    max_media_bytes: int = Field(default=25 * 1024 * 1024, gt=0)
    max_body_bytes: int = Field(default=40 * 1024 * 1024, gt=0)
    sendgrid_public_key: str | None = None
    """SendGrid Inbound Parse security policy, signature: the policy's ``public_key``
    (base64 DER, as SendGrid's API returns it, or PEM). Every request must then carry a
    valid ECDSA signature."""
    sendgrid_oauth_key: SecretStr | None = None
    """SendGrid security policy, OAuth: the key that checks the bearer JWT your OAuth
    server issues to SendGrid (an HS256 secret or an RS256/ES256 public key in PEM)."""

    @model_validator(mode="after")
    def _complete(self) -> EmailConfig:
        if self.inbound == "mailgun" and self.mailgun_signing_key is None:
            raise ValueError("inbound mailgun needs mailgun_signing_key")
        sendgrid_policy = self.sendgrid_public_key or self.sendgrid_oauth_key
        if (
            self.inbound in ("sendgrid", "postmark")
            and not (self.inbound == "sendgrid" and sendgrid_policy)
            and (not self.basic_auth_user or self.basic_auth_password is None)
        ):
            raise ValueError(
                f"inbound {self.inbound} needs basic_auth_user and basic_auth_password"
                + (
                    " (or sendgrid_public_key / sendgrid_oauth_key)"
                    if self.inbound == "sendgrid"
                    else ""
                )
            )
        if self.smtp is None and not self.sandbox:
            raise ValueError("needs smtp: to send replies (or sandbox: true)")
        return self

    def domains(self) -> frozenset[str]:
        return frozenset(d.lower() for d in self.own_domains) or frozenset(
            {self.address.rsplit("@", 1)[1].lower()}
        )


class SipTimersConfig(_Model):
    """RFC 3261 Table 4. Shorter values make tests fast; leave them alone in production."""

    t1: float = Field(default=0.5, gt=0, le=10)
    t2: float = Field(default=4.0, gt=0, le=60)
    t4: float = Field(default=5.0, ge=0, le=60)


class SipCallsConfig(_Model):
    """What happens to a call: deskbridge carries no media. ``redirect`` answers 302
    with ``redirect_to`` as the Contact (the caller's side then calls the call centre);
    ``reject`` answers ``reject_status`` and the agent sees a missed call with a
    callback request. Either way the call is filed on the caller's ticket."""

    action: Literal["redirect", "reject"] = "reject"
    redirect_to: str | None = None
    """A ``sip:`` or ``tel:`` URI (the call centre's number or queue)."""
    reject_status: Literal[480, 486, 603] = 480
    ring_seconds: float = Field(default=0.0, ge=0, le=60)
    """Ring (180) this long before answering, so a caller may still hang up (CANCEL)."""

    @model_validator(mode="after")
    def _target(self) -> SipCallsConfig:
        if self.action == "redirect":
            if not self.redirect_to:
                raise ValueError("action redirect needs redirect_to")
            if not re.match(r"^(sips?|tel):\S+$", self.redirect_to):
                raise ValueError("redirect_to must be a sip:, sips: or tel: URI")
        return self


class SipConfig(_Model):
    """A SIP trunk: SIP MESSAGE texts in and out, calls logged on the ticket."""

    type: Literal["sip"] = "sip"
    listen: str = Field(default="0.0.0.0:5060", pattern=r"^(\[[0-9A-Fa-f:.]+\]|[^:\s]+):\d{1,5}$")
    """``host:port`` for UDP and TCP (both, unless ``transports`` says otherwise)."""
    transports: list[Literal["udp", "tcp"]] = Field(default=["udp", "tcp"], min_length=1)
    tls_listen: str | None = Field(default=None, pattern=r"^(\[[0-9A-Fa-f:.]+\]|[^:\s]+):\d{1,5}$")
    """``host:port`` for SIP over TLS; needs ``tls_cert_path`` and ``tls_key_path``."""
    tls_cert_path: str | None = None
    tls_key_path: str | None = None
    domains: list[str] = Field(min_length=1)
    """Hosts of the Request-URIs we serve (our domain names and the listen IPs)."""
    numbers: list[str] = Field(default_factory=list)
    """The served numbers (E.164). Empty: every numeric user at ``domains``."""
    trusted_peers: list[str] = Field(min_length=1)
    """IPs or CIDRs of the carrier's trunk. Anything else gets 403 (rate limited)."""
    default_region: str = Field(default="US", pattern=r"^[A-Z]{2}$")
    """Region for national numbers without a country code (ISO 3166 alpha-2)."""
    outbound_proxy: str | None = Field(
        default=None, pattern=r"^(\[[0-9A-Fa-f:.]+\]|[^:\s]+)(:\d{1,5})?$"
    )
    """``host[:port]`` every outbound MESSAGE is sent to (default: the customer URI's
    host, i.e. the carrier that sent their last message)."""
    outbound_transport: Literal["udp", "tcp", "tls"] = "udp"
    trunk_domain: str | None = None
    """The host of the customer URIs we send to (default: the host their messages came
    from)."""
    username: str | None = None
    password: SecretStr | None = None
    """Digest credentials for challenges (401/407) to our MESSAGEs."""
    calls: SipCallsConfig = SipCallsConfig()
    timers: SipTimersConfig = SipTimersConfig()
    refused_per_minute: int = Field(default=30, ge=1)
    """403 answers per minute to one untrusted source; past that it is ignored."""
    sandbox: bool = False
    """Keep outbound MESSAGEs in the sandbox outbox instead of sending them."""
    max_body_bytes: int = Field(default=8 * 1024, gt=0, le=60_000)
    """The largest MESSAGE body accepted (413 beyond)."""
    local_region: str | None = Field(default=None, pattern=r"^[A-Z]{2}$")
    """The trunk's country (ISO 3166 alpha-2): a ``tel:`` URI without ``phone-context``
    (gateways send ``<tel:12345>``) is a local number of it. Default: the country of the
    first of ``numbers``, else ``default_region``."""

    @field_validator("trusted_peers")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        for peer in v:
            try:
                ipaddress.ip_network(peer, strict=False)
            except ValueError:
                raise ValueError(f"{peer!r} is not an IP address or CIDR") from None
        return v

    @field_validator("numbers")
    @classmethod
    def _e164(cls, v: list[str]) -> list[str]:
        for n in v:
            if not re.fullmatch(r"\+[1-9]\d{6,14}", n):
                raise ValueError(f"{n!r} is not an E.164 number (+ and digits)")
        return v

    @model_validator(mode="after")
    def _complete(self) -> SipConfig:
        if self.tls_listen and not (self.tls_cert_path and self.tls_key_path):
            raise ValueError("tls_listen needs tls_cert_path and tls_key_path")
        if (self.username is None) != (self.password is None):
            raise ValueError("give both username and password, or neither")
        return self


ChannelConfig = Annotated[
    TelegramConfig
    | WhatsAppConfig
    | MessengerConfig
    | InstagramConfig
    | LineConfig
    | EmailConfig
    | SipConfig
    | SmsChannelConfig
    | WebchatConfig,
    Field(discriminator="type"),
]


class SandboxDeskConfig(_Model):
    type: Literal["sandbox"] = "sandbox"


class ZendeskDeskConfig(_Model):
    type: Literal["zendesk"] = "zendesk"
    subdomain: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9-]*$")
    base_url: BaseUrl | None = None
    """Overrides ``https://{subdomain}.zendesk.com`` (tests, proxies)."""
    email: str | None = None
    api_token: SecretStr | None = None
    oauth_token: SecretStr | None = None
    webhook_secret: SecretStr | None = None
    """The signing secret of the Zendesk webhook that posts agent replies."""
    max_comments_per_ticket: int = Field(default=4990, ge=1, le=5000)

    def api_base(self) -> str:
        if self.base_url:
            return self.base_url.rstrip("/")
        return f"https://{self.subdomain}.zendesk.com"

    @model_validator(mode="after")
    def _complete(self) -> ZendeskDeskConfig:
        if not self.subdomain and not self.base_url:
            raise ValueError("needs subdomain or base_url")
        if self.oauth_token is None and (self.api_token is None or not self.email):
            raise ValueError("needs email and api_token, or oauth_token")
        return self


INTERCOM_API_BASE = "https://api.intercom.io"
INTERCOM_API_VERSION = "2.14"


class IntercomDeskConfig(_Model):
    """An Intercom workspace. Regional workspaces use ``https://api.eu.intercom.io`` or
    ``https://api.au.intercom.io`` as ``base_url``."""

    type: Literal["intercom"] = "intercom"
    access_token: SecretStr
    """The app's access token (Developer Hub → Authentication), sent as a Bearer token."""
    client_secret: SecretStr
    """The app's client secret (Developer Hub → Basic information): signs webhooks."""
    base_url: BaseUrl = INTERCOM_API_BASE
    api_version: str = Field(default=INTERCOM_API_VERSION, pattern=r"^(\d+\.\d+|Unstable)$")
    """Sent as ``Intercom-Version`` on every call, so workspace defaults never apply."""
    contact_role: Literal["user", "lead"] = "user"
    admin_id: str | None = Field(default=None, pattern=r"^\d{1,32}$")
    """The admin who writes internal notes (undeliverable replies). Default: the admin
    the access token belongs to (``GET /me``)."""
    identity_attributes: bool = True
    """Keep identities beyond the one email and one phone in the contact's custom
    attributes ``deskbridge_emails`` and ``deskbridge_phones`` (create them first)."""

    def api_base(self) -> str:
        return self.base_url.rstrip("/")


class UdeskDeskConfig(_Model):
    """A Udesk tenant, through Open API v2 (``/open_api_v1`` paths, SHA-256 ``sign``).

    Calls are signed with ``open_api_token``, or with the token ``log_in`` issues for
    ``email`` + ``password`` (shared by every process, renewed when Udesk refuses it).
    """

    type: Literal["udesk"] = "udesk"
    subdomain: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9.-]*$")
    region: Literal["cn", "global"] = "cn"
    """``cn``: ``https://{subdomain}.udesk.cn``; ``global``: ``https://{subdomain}.udeskglobal.com``."""
    base_url: BaseUrl | None = None
    """Overrides the host built from ``subdomain`` (tests, proxies)."""
    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")
    """The super administrator's email: it signs every call."""
    password: SecretStr | None = None
    open_api_token: SecretStr | None = None
    callback_secret: SecretStr | None = None
    """What a Udesk trigger's callback URL carries as ``?secret=``; unset: callbacks get 401."""
    requests_per_minute: int = Field(default=60, ge=1, le=100_000)
    """Udesk's per-API budget; one bucket in Redis keeps every worker under it."""
    burst: int | None = Field(default=None, ge=1)
    """Calls that may go at once (default a sixth of the budget); the rest refill evenly,
    so no 60-second window ever holds more than ``requests_per_minute``."""
    max_wait_seconds: float = Field(default=20.0, ge=0, le=600)
    """How long a delivery waits for its turn before it is deferred (without spending
    its retry budget)."""
    poll_interval_seconds: float = Field(default=20.0, gt=0, le=3600)
    active_window_seconds: float = Field(default=3 * 86400, gt=0)
    """Tickets deskbridge filed a message on within this long are polled for replies."""
    poll_share: float = Field(default=0.5, gt=0, le=1)
    """The share of the burst the poller may use; it never takes the rest, which is
    left to deliveries."""
    auth_error_codes: list[int] = Field(default_factory=lambda: [2001, 2002, 2003])
    """Response ``code`` values that mean the signature or token was refused (not in
    Udesk's published pages we could read: see docs/desks/udesk.md)."""
    rate_limit_codes: list[int] = Field(default_factory=lambda: [429])
    customer_replies: Literal["author", "marked"] = "author"
    """``author``: later messages are replies authored by the customer; ``marked``: replies
    by the API user whose first line names the customer (if Udesk refuses ``author``)."""
    max_attachment_bytes: int = Field(default=20 * 1024 * 1024, gt=0)

    def api_base(self) -> str:
        if self.base_url:
            return self.base_url.rstrip("/")
        host = "udeskglobal.com" if self.region == "global" else "udesk.cn"
        return f"https://{self.subdomain}.{host}"

    @model_validator(mode="after")
    def _complete(self) -> UdeskDeskConfig:
        if not self.subdomain and not self.base_url:
            raise ValueError("needs subdomain or base_url")
        if (self.password is None) == (self.open_api_token is None):
            raise ValueError("needs exactly one of password or open_api_token")
        if self.burst is not None and self.burst >= self.requests_per_minute:
            raise ValueError("burst must be less than requests_per_minute")
        return self


DeskConfig = Annotated[
    SandboxDeskConfig | ZendeskDeskConfig | IntercomDeskConfig | UdeskDeskConfig,
    Field(discriminator="type"),
]


class RetentionConfig(_Model):
    """How long an account's data is kept (days). TTLs enforce it where data is written;
    the worker's sweeper does the rest (docs/privacy.md)."""

    raw_events_days: int = Field(default=30, ge=1, le=3650)
    """Raw webhook requests (bodies as received, for re-ingest)."""
    delivered_days: int = Field(default=90, ge=1, le=3650)
    """Finished delivery records, their attempts and their events (message bodies)."""
    dead_letters_days: int = Field(default=180, ge=1, le=3650)
    """Dead letters (with their events and raw bodies), from the time they died."""
    audit_days: int = Field(default=730, ge=1, le=36500)
    """The identity graph's audit trail; the admin audit log keeps the longest of the
    accounts' values."""

    def seconds(self, days: int) -> int:
        return days * 86400


class ConsentNotice(_Model):
    """Sent once, as an automated message, on a new contact's first message."""

    text: str = Field(min_length=1, max_length=1000)
    link: str | None = Field(default=None, pattern=r"^https?://\S+$")

    def message(self) -> str:
        return f"{self.text}\n{self.link}" if self.link else self.text


class AccountConfig(_Model):
    desk: DeskConfig
    region: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9-]{0,31}$")
    """Where the account's data must live (``eu``, ``us``, ``sg``): only a deployment whose
    ``DESKBRIDGE_REGION`` is the same loads it (docs/deployment.md)."""
    channels: list[ChannelConfig] = Field(default_factory=list)
    merge_scope: str | None = Field(default=None, pattern=_NAME)
    """Accounts naming the same merge scope (one tenant's accounts) recognise one
    customer across all of them. Default: contacts never cross this account."""
    shared: list[str] = Field(default_factory=list)
    """Numbers (E.164) and addresses several people use (a company's main line, a family
    landline, a team mailbox): they never merge contacts, only suggest."""
    routing: RoutingConfig | None = None
    """Enrichment and routing rules (docs/routing.md)."""
    responders: RespondersConfig | None = None
    """The bot front desk before the human one (docs/responders.md)."""
    csat: CsatConfig | None = None
    """A satisfaction survey on the customer's channel after a ticket is solved
    (docs/csat.md)."""
    conversation_scope: Literal["channel", "contact"] = "channel"
    """``channel``: one ticket per channel conversation, all under one desk user.
    ``contact``: one ticket per contact; the agent's reply goes out on the channel the
    customer wrote on last."""
    retention: RetentionConfig = RetentionConfig()
    consent_notice: dict[str, ConsentNotice] = Field(default_factory=dict)
    """By channel (``telegram``, ``whatsapp``, ...), or ``"*"`` for every channel."""

    @field_validator("consent_notice")
    @classmethod
    def _notice_channels(cls, v: dict[str, ConsentNotice]) -> dict[str, ConsentNotice]:
        known = {c.value for c in Channel}
        for name in v:
            if name != "*" and name not in known:
                raise ValueError(f"{name!r} is not a channel ({', '.join(sorted(known))} or *)")
        return v

    def notice_for(self, channel: Channel | str) -> ConsentNotice | None:
        name = channel.value if isinstance(channel, Channel) else channel
        return self.consent_notice.get(name) or self.consent_notice.get("*")

    @field_validator("shared")
    @classmethod
    def _shared_shape(cls, v: list[str]) -> list[str]:
        for item in v:
            if not (re.fullmatch(r"\+[1-9]\d{6,14}", item) or "@" in item):
                raise ValueError(f"{item!r} is neither an E.164 number nor an email address")
        return v

    @functools.cached_property
    def shared_keys(self) -> frozenset[str]:
        """``shared`` as the identity graph keys them (worked out once: every filed
        message asks)."""
        from deskbridge.identity.normalize import email_key, phone_key

        return frozenset(
            phone_key(x) if x.startswith("+") else (email_key(x) or x.lower()) for x in self.shared
        )

    @field_validator("channels")
    @classmethod
    def _one_per_type(cls, v: list[ChannelConfig]) -> list[ChannelConfig]:
        seen: set[str] = set()
        for ch in v:
            if ch.type in seen:
                raise ValueError(f"channel {ch.type!r} is configured twice")
            seen.add(ch.type)
        return v

    def channel(self, channel: Channel | str) -> ChannelConfig | None:
        for ch in self.channels:
            if ch.type == channel:
                return ch
        return None


def _route_id(ch: WhatsAppConfig | MessengerConfig | InstagramConfig) -> str:
    if isinstance(ch, WhatsAppConfig):
        return ch.phone_number_id
    return ch.page_id if isinstance(ch, MessengerConfig) else ch.ig_id


class AccountsFile(_Model):
    apps: dict[Annotated[str, Field(pattern=_NAME)], AppConfig] = Field(default_factory=dict)
    accounts: dict[Annotated[str, Field(pattern=_NAME)], AccountConfig]

    @model_validator(mode="after")
    def _apps_exist_and_ids_are_unique(self) -> AccountsFile:
        owners: dict[tuple[str, str], str] = {}
        for name, acc in self.accounts.items():
            for ch in acc.channels:
                if isinstance(ch, WhatsAppConfig | MessengerConfig | InstagramConfig):
                    if ch.app not in self.apps:
                        raise ValueError(
                            f"accounts.{name}: {ch.type} names app {ch.app!r}, not under apps:"
                        )
                    ident = _route_id(ch)
                    key = (ch.type, ident)
                    if key in owners:
                        raise ValueError(
                            f"accounts.{name}: {ch.type} {ident} also belongs to {owners[key]!r}"
                        )
                    owners[key] = name
        return self

    @model_validator(mode="after")
    def _one_account_per_support_address(self) -> AccountsFile:
        # a listener files a mail under the account owning its recipient: two owners of
        # one address (addresses compare without case) would make that a coin toss
        owners: dict[tuple[str, str], str] = {}
        for name, acc in self.accounts.items():
            ch = acc.channel(Channel.EMAIL)
            if not isinstance(ch, EmailConfig) or ch.inbound != "smtp":
                continue
            key = (ch.smtp_listen, ch.address.lower())
            if key in owners:
                raise ValueError(
                    f"accounts.{name}: email address {ch.address} is also {owners[key]!r}'s "
                    f"on the SMTP listener {ch.smtp_listen}"
                )
            owners[key] = name
        return self

    def identity_scopes(self) -> dict[str, str]:
        """Each account's identity-graph scope: ``grp.<merge_scope>`` or the account."""
        return {
            name: f"grp.{acc.merge_scope}" if acc.merge_scope else name
            for name, acc in self.accounts.items()
        }


# secrets deskbridge writes itself (`channels register`): a file not there yet is a note
_WRITTEN_LATER = {"webhook_secret_file"}


def _resolve(
    node: Any,
    path: str,
    base: Path,
    problems: list[tuple[str, str]],
    notes: list[tuple[str, str]],
) -> Any:
    """Expand ``${ENV}`` and ``*_file`` keys, collecting problems with their document path."""
    if isinstance(node, Mapping):
        out: dict[str, Any] = {}
        for key, value in node.items():
            here = f"{path}.{key}" if path else str(key)
            if isinstance(key, str) and key.endswith("_file") and isinstance(value, str):
                target = key.removesuffix("_file")
                if target in node:
                    problems.append((here, f"give either {target} or {key}, not both"))
                    continue
                file = Path(_resolve(value, here, base, problems, notes))
                file = file if file.is_absolute() else base / file
                try:
                    out[target] = file.read_text().rstrip("\r\n")
                except FileNotFoundError:
                    if key in _WRITTEN_LATER:
                        notes.append((here, f"{file} is not written yet (`channels register`)"))
                    else:
                        problems.append((here, f"cannot read {file}: No such file or directory"))
                except OSError as exc:
                    problems.append((here, f"cannot read {file}: {exc.strerror}"))
                continue
            out[str(key)] = _resolve(value, here, base, problems, notes)
        return out
    if isinstance(node, list):
        return [_resolve(v, f"{path}[{i}]", base, problems, notes) for i, v in enumerate(node)]
    if isinstance(node, str):

        def sub(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            value = os.environ.get(name)
            if value is None:
                if default is not None:
                    return default
                problems.append((path, f"environment variable {name} is not set"))
                return ""
            return value

        return _ENV.sub(sub, node)
    return node


def _loc(parts: tuple[int | str, ...], doc: Any) -> str:
    """A pydantic error location as a path in the document: the tags pydantic adds for
    a discriminated union (``desk.zendesk.email``, ``apps.meta-main.meta.colour``, an
    SMS channel's ``sms.vonage.api_key``) are dropped where the document has no such key
    but that ``type`` (or SMS ``provider``)."""
    out = ""
    node = doc
    for p in parts:
        if p == "[key]":
            out += " (the name)"
            continue
        if isinstance(node, Mapping) and p not in node and p in _tags(node):
            continue
        if isinstance(p, int):
            out += f"[{p}]"
            node = node[p] if isinstance(node, list) and 0 <= p < len(node) else None
        else:
            out += f".{p}" if out else str(p)
            node = node.get(p) if isinstance(node, Mapping) else None
    return out


def _tags(node: Mapping[str, Any]) -> tuple[Any, ...]:
    if node.get("type") == "sms":
        return ("sms", sms_provider(node))
    return (node.get("type"),)


def _app_problems(doc: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Channels naming an app that is not under ``apps:``, read from the document so they
    are reported with every other problem (the model checks them only once all is valid)."""
    apps = doc.get("apps")
    known = set(apps) if isinstance(apps, Mapping) else set()
    accounts = doc.get("accounts")
    found: list[tuple[str, str]] = []
    for name, acc in accounts.items() if isinstance(accounts, Mapping) else ():
        channels = acc.get("channels") if isinstance(acc, Mapping) else None
        for i, ch in enumerate(channels if isinstance(channels, list) else ()):
            app = ch.get("app") if isinstance(ch, Mapping) else None
            if isinstance(app, str) and app not in known:
                found.append((f"accounts.{name}.channels[{i}].app", f"{app!r} is not under apps:"))
    return found


def parse_accounts(
    text: str,
    *,
    source: str = "<string>",
    base: Path | None = None,
    notes: list[tuple[str, str]] | None = None,
) -> AccountsFile:
    """Parse and validate an accounts document. Raises ``ConfigError`` listing every
    problem: unset variables and unreadable files together with the schema's findings.
    ``notes`` collects what is fine for now (a webhook secret not written yet)."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "?"
        raise ConfigError(
            f"{source}: not valid YAML", [(where, str(getattr(exc, "problem", exc)))]
        ) from exc
    if not isinstance(doc, Mapping):
        raise ConfigError(
            f"{source}: invalid", [("(top)", "the document must be a mapping with 'accounts:'")]
        )
    problems: list[tuple[str, str]] = []
    resolved = _resolve(doc, "", base or Path.cwd(), problems, [] if notes is None else notes)
    # a value that could not be resolved is reported once, as unresolved, not again as
    # whatever the schema says of the hole it left
    unresolved = {where.removesuffix("_file") for where, _ in problems}
    try:
        accounts = AccountsFile.model_validate(resolved)
    except ValidationError as exc:
        apps = _app_problems(resolved)
        for err in exc.errors():
            where = _loc(tuple(err["loc"]), resolved) or "(top)"
            if where in unresolved or (apps and "not under apps:" in err["msg"]):
                continue
            problems.append((where, err["msg"].removeprefix("Value error, ")))
        problems.extend(apps)
    else:
        if not problems:
            return accounts
    raise ConfigError(f"{source}: invalid", problems) from None


def load_accounts(path: Path, notes: list[tuple[str, str]] | None = None) -> AccountsFile:
    """Read and validate the accounts file at ``path`` (``notes``: see ``parse_accounts``)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read", [("(file)", exc.strerror or str(exc))]) from exc
    return parse_accounts(text, source=str(path), base=path.parent, notes=notes)
