"""Inbound-parse webhooks of Mailgun, SendGrid and Postmark to :class:`ParsedMail`
(pure: a :class:`RawRequest` in, no I/O).

Every provider ends in the one MIME parser, :func:`parse_mail`:

- Mailgun Routes ``forward()`` to a URL ending in ``mime`` posts the raw mail in
  ``body-mime`` (documentation.mailgun.com …/receive-forward-store/receive-http), signed
  with ``timestamp``, ``token`` and ``signature`` (…/webhooks/securing-webhooks).
- SendGrid Inbound Parse in raw mode posts it in ``email``
  (twilio.com/docs/sendgrid/for-developers/parsing-email/setting-up-the-inbound-parse-webhook).
- Postmark posts JSON with no raw mail (postmarkapp.com/developer/webhooks/inbound-webhook);
  we rebuild a MIME message from its fields.

Postmark signs nothing: its URL carries basic auth and/or a secret path segment
(:func:`verify_basic_auth`, :func:`verify_path_secret`). SendGrid takes basic auth in the
URL too, or a security policy (twilio.com/docs/sendgrid/for-developers/parsing-email/
securing-your-parse-webhooks): an ECDSA signature over the timestamp and the raw body in
HTTP headers, checked with the policy's public key (:func:`verify_sendgrid_signature`),
and/or an OAuth bearer token SendGrid fetched from your OAuth server
(:func:`verify_bearer_jwt`). See ``/work/shared/PROTOCOLS.md`` §5 for the answer codes
and retry schedules.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from email import policy
from email.message import EmailMessage
from email.parser import HeaderParser
from email.utils import collapse_rfc2231_value, format_datetime, formataddr, parsedate_to_datetime
from typing import Final
from urllib.parse import parse_qsl

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jose import JWTError, jwt
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from deskbridge.adapters.email.mime import ParsedMail, normalize_address, parse_mail
from deskbridge.adapters.payload import loads
from deskbridge.errors import ParseFailed, PayloadInvalid, PayloadTooLarge, SignatureInvalid
from deskbridge.schemas import RawRequest

__all__ = [
    "MAILGUN_MAX_AGE",
    "MAILGUN_REJECT_STATUS",
    "MAX_BODY_BYTES",
    "POSTMARK_STOP_STATUS",
    "SENDGRID_STOP_STATUS",
    "Form",
    "FormField",
    "mailgun_raw",
    "parse_form",
    "parse_mailgun",
    "parse_postmark",
    "parse_sendgrid",
    "postmark_raw",
    "sendgrid_raw",
    "verify_basic_auth",
    "verify_bearer_jwt",
    "verify_mailgun",
    "verify_path_secret",
    "verify_sendgrid_signature",
]

MAILGUN_REJECT_STATUS: Final = 406
"""Mailgun: the answer that rejects a Route POST without retry. Any other non-200 code is
retried for 8 hours (10 min, 15 min, 30 min, 1 h, 2 h, 4 h)."""

POSTMARK_STOP_STATUS: Final = 403
"""Postmark: the answer that stops retries. Others are retried 10 times over ~10.5 h."""

SENDGRID_STOP_STATUS: Final[int | None] = None
"""SendGrid: no answer stops retries; a non-2xx is retried for up to 3 days, then the
mail is dropped. Answer 2xx to anything we will never accept."""

MAILGUN_MAX_AGE: Final = 12 * 3600.0
"""Seconds a Mailgun timestamp stays acceptable. Retries reuse the original timestamp and
token for 8 hours, so this must exceed 8 h; replays are caught by deduplicating tokens."""

MAX_BODY_BYTES: Final = 40 * 1024 * 1024
"""Bodies larger than this raise PayloadTooLarge (Mailgun and SendGrid accept mails of
about 25-30 MB, Postmark 35 MB of JSON; not verified per provider)."""

_MAX_FIELDS = 1000
_FUTURE_SKEW = 300.0
_HEADER_NAME = re.compile(r"[!-9;-~]{1,76}")
# Headers rebuilt from Postmark's structured fields or by EmailMessage itself.
_REBUILT = frozenset(
    {
        "from",
        "to",
        "cc",
        "bcc",
        "subject",
        "date",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
        "content-disposition",
    }
)


# --- form bodies ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FormField:
    """One form field; ``filename`` and ``content_type`` are set for file parts."""

    name: str
    value: bytes
    filename: str | None = None
    content_type: str | None = None


@dataclass(frozen=True, slots=True)
class Form:
    """The fields of a form body, in order (names may repeat)."""

    fields: tuple[FormField, ...]

    def get(self, name: str) -> bytes | None:
        """The first value of ``name``, or None."""
        return next((f.value for f in self.fields if f.name == name), None)

    def text(self, name: str) -> str | None:
        """The first value of ``name`` as text (UTF-8, undecodable bytes replaced)."""
        value = self.get(name)
        return None if value is None else value.decode("utf-8", "replace")

    def texts(self) -> dict[str, str]:
        """First value of each field, as text."""
        found: dict[str, str] = {}
        for f in self.fields:
            found.setdefault(f.name, f.value.decode("utf-8", "replace"))
        return found


def _content_type(headers: Mapping[str, str]) -> tuple[str, dict[str, str]]:
    parser = HeaderParser()
    msg = parser.parsestr(f"Content-Type: {headers.get('content-type', '')}\n\n")
    params: dict[str, str] = {}
    for key, value in msg.get_params(failobj=[])[1:]:
        params[key.lower()] = collapse_rfc2231_value(value)
    return msg.get_content_type(), params


def _urlencoded(body: bytes) -> Form:
    try:
        # latin-1 maps every percent-decoded byte to one code point: raw bytes survive.
        pairs = parse_qsl(
            body.decode("ascii"),
            keep_blank_values=True,
            encoding="latin-1",
            max_num_fields=_MAX_FIELDS,
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise PayloadInvalid("undecodable urlencoded form") from exc
    return Form(tuple(FormField(k, v.encode("latin-1")) for k, v in pairs))


def _part(raw: bytes) -> FormField:
    if raw.startswith(b"\r\n"):
        head, data = b"", raw[2:]
    else:
        head, sep, data = raw.partition(b"\r\n\r\n")
        if not sep:
            raise PayloadInvalid("form part without a header end")
    msg = HeaderParser().parsestr(head.decode("utf-8", "replace") + "\r\n\r\n")
    name = msg.get_param("name", header="content-disposition")
    if name is None:
        raise PayloadInvalid("form part without a name")
    filename = msg.get_param("filename", header="content-disposition")
    return FormField(
        name=collapse_rfc2231_value(name),
        value=data,
        filename=None if filename is None else collapse_rfc2231_value(filename),
        content_type=msg.get("content-type"),
    )


def _multipart(body: bytes, boundary: str) -> Form:
    if not boundary or len(boundary) > 200:
        raise PayloadInvalid("multipart form without a usable boundary")
    delimiter = b"--" + boundary.encode("latin-1", "replace")
    if body.startswith(delimiter):
        pos = 0
    else:
        pos = body.find(b"\r\n" + delimiter)
        if pos < 0:
            raise PayloadInvalid("multipart form without its boundary")
        pos += 2
    fields: list[FormField] = []
    while True:
        pos += len(delimiter)
        if body.startswith(b"--", pos):
            return Form(tuple(fields))
        line_end = body.find(b"\r\n", pos)
        if line_end < 0 or body[pos:line_end].strip(b" \t"):
            raise PayloadInvalid("malformed multipart delimiter line")
        start = line_end + 2
        end = body.find(b"\r\n" + delimiter, start)
        if end < 0:
            raise PayloadInvalid("multipart form not closed")
        if len(fields) >= _MAX_FIELDS:
            raise PayloadInvalid("too many form fields")
        fields.append(_part(body[start:end]))
        pos = end + 2


def parse_form(req: RawRequest) -> Form:
    """The fields of a ``multipart/form-data`` or ``application/x-www-form-urlencoded``
    body, byte-exact. Raises PayloadInvalid for any other or malformed body and
    PayloadTooLarge over :data:`MAX_BODY_BYTES`; never anything else."""
    if len(req.body) > MAX_BODY_BYTES:
        raise PayloadTooLarge("form body over the size limit")
    try:
        mime_type, params = _content_type(req.headers)
    except Exception as exc:  # the stdlib header parser on hostile input
        raise PayloadInvalid("unreadable Content-Type") from exc
    if mime_type == "application/x-www-form-urlencoded":
        return _urlencoded(req.body)
    if mime_type == "multipart/form-data":
        return _multipart(req.body, params.get("boundary", ""))
    raise PayloadInvalid(f"not a form body: {mime_type}")


# --- authentication -------------------------------------------------------------------


def verify_mailgun(
    fields: Mapping[str, str],
    signing_key: str,
    *,
    now: float,
    max_age: float = MAILGUN_MAX_AGE,
) -> str:
    """Check a Mailgun signature: hex HMAC-SHA256(signing key, timestamp + token), with
    the timestamp at most ``max_age`` seconds old. Returns the token, which the caller
    must deduplicate (replays within ``max_age``). Raises SignatureInvalid."""
    timestamp = fields.get("timestamp", "")
    token = fields.get("token", "")
    signature = fields.get("signature", "")
    if not (signing_key and timestamp and token and signature):
        raise SignatureInvalid("mailgun signature fields missing")
    expected = hmac.new(
        signing_key.encode(), (timestamp + token).encode(), hashlib.sha256
    ).hexdigest()
    if not hmac.compare_digest(expected.encode(), signature.strip().lower().encode()):
        raise SignatureInvalid("mailgun signature mismatch")
    try:
        sent = float(timestamp)
    except ValueError as exc:
        raise SignatureInvalid("mailgun timestamp unreadable") from exc
    if not (now - max_age <= sent <= now + _FUTURE_SKEW):
        raise SignatureInvalid("mailgun timestamp stale")
    return token


def verify_basic_auth(headers: Mapping[str, str], user: str, password: str) -> None:
    """Check HTTP basic auth (the credentials in a SendGrid or Postmark webhook URL) in
    constant time. Raises SignatureInvalid when missing, malformed or wrong, and when no
    credentials are configured."""
    if not user or not password:
        raise SignatureInvalid("basic auth not configured")
    scheme, _, encoded = headers.get("authorization", "").strip().partition(" ")
    if scheme.lower() != "basic":
        raise SignatureInvalid("basic auth missing")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SignatureInvalid("basic auth malformed") from exc
    got_user, sep, got_password = decoded.partition(b":")
    # Both compared, always: no early exit tells which half was wrong.
    user_ok = hmac.compare_digest(got_user, user.encode())
    password_ok = hmac.compare_digest(got_password, password.encode())
    if not (sep and user_ok and password_ok):
        raise SignatureInvalid("basic auth wrong")


SENDGRID_SIGNATURE_HEADER: Final = "x-twilio-email-event-webhook-signature"
SENDGRID_TIMESTAMP_HEADER: Final = "x-twilio-email-event-webhook-timestamp"


def _public_key(text: str) -> ec.EllipticCurvePublicKey:
    text = text.strip()
    key = (
        serialization.load_pem_public_key(text.encode())
        if text.startswith("-----BEGIN")
        else serialization.load_der_public_key(base64.b64decode(text))
    )
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ValueError("not an elliptic-curve public key")
    return key


def verify_sendgrid_signature(headers: Mapping[str, str], body: bytes, public_key: str) -> None:
    """SendGrid's signed webhook: the base64 ECDSA (SHA-256) signature in
    ``X-Twilio-Email-Event-Webhook-Signature`` over the ``-Timestamp`` header's value
    followed by the raw body. Raises SignatureInvalid."""
    signature = headers.get(SENDGRID_SIGNATURE_HEADER, "").strip()
    timestamp = headers.get(SENDGRID_TIMESTAMP_HEADER, "").strip()
    if not signature or not timestamp:
        raise SignatureInvalid("sendgrid signature missing")
    try:
        key = _public_key(public_key)
        key.verify(
            base64.b64decode(signature, validate=True),
            timestamp.encode() + body,
            ec.ECDSA(hashes.SHA256()),
        )
    except (InvalidSignature, binascii.Error, ValueError, TypeError) as exc:
        raise SignatureInvalid("sendgrid signature wrong") from exc


def verify_bearer_jwt(headers: Mapping[str, str], key: str) -> None:
    """An OAuth bearer token (a JWT from the OAuth server named in the security policy)
    checked with ``key``: signature and expiry. Raises SignatureInvalid."""
    scheme, _, token = headers.get("authorization", "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise SignatureInvalid("bearer token missing")
    algorithms = ["RS256", "ES256"] if key.lstrip().startswith("-----BEGIN") else ["HS256"]
    try:
        jwt.decode(token.strip(), key, algorithms=algorithms, options={"verify_aud": False})
    except JWTError as exc:
        raise SignatureInvalid("bearer token invalid") from exc


def verify_path_secret(path: str, secret: str) -> None:
    """Check that the last segment of the webhook URL path is ``secret`` (constant time).
    Raises SignatureInvalid."""
    segment = path.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    if not secret or not hmac.compare_digest(segment.encode(), secret.encode()):
        raise SignatureInvalid("path secret wrong")


# --- providers ------------------------------------------------------------------------


def _with_recipients(mail: ParsedMail, envelope: Sequence[str]) -> ParsedMail:
    """Add the SMTP envelope recipients (Bcc'd and alias addresses are only there)."""
    extra = [a for a in (normalize_address(r) for r in envelope) if a]
    if not extra:
        return mail
    return replace(mail, recipients=tuple(dict.fromkeys((*mail.recipients, *extra))))


def _parse(
    raw: bytes,
    account: str,
    received_at: datetime,
    own_domains: frozenset[str],
    trusted_authserv_ids: frozenset[str],
) -> ParsedMail:
    return parse_mail(
        raw,
        account=account,
        received_at=received_at,
        own_domains=own_domains,
        trusted_authserv_ids=trusted_authserv_ids,
    )


def mailgun_raw(req: RawRequest) -> tuple[Form, bytes]:
    """The form and the raw mail (``body-mime``) of a Mailgun ``mime`` route POST.
    Raises PayloadInvalid when there is no ``body-mime`` (a route URL not ending in
    ``mime`` posts Mailgun's parsed fields instead)."""
    form = parse_form(req)
    raw = form.get("body-mime")
    if not raw or not raw.strip():
        raise PayloadInvalid("mailgun post without body-mime")
    return form, raw


def parse_mailgun(
    req: RawRequest,
    *,
    account: str,
    received_at: datetime,
    own_domains: frozenset[str] = frozenset(),
    trusted_authserv_ids: frozenset[str] = frozenset(),
) -> tuple[str, ParsedMail]:
    """(token, mail) of a Mailgun ``mime`` route POST; verify it first with
    :func:`verify_mailgun`. Raises PayloadInvalid."""
    form, raw = mailgun_raw(req)
    token = form.text("token")
    if not token:
        raise PayloadInvalid("mailgun post without token")
    mail = _parse(
        raw,
        account,
        received_at,
        own_domains=own_domains,
        trusted_authserv_ids=trusted_authserv_ids,
    )
    recipient = form.text("recipient") or ""
    return token, _with_recipients(mail, recipient.split(","))


def sendgrid_raw(req: RawRequest) -> tuple[Form, bytes]:
    """The form and the raw mail (``email``) of a SendGrid Inbound Parse POST in raw
    mode. Raises PayloadInvalid, or ParseFailed for the parsed (non-raw) mode."""
    form = parse_form(req)
    raw = form.get("email")
    if raw is None and form.get("headers") is not None:
        raise ParseFailed("sendgrid parsed mode: enable 'POST the raw, full MIME message'")
    if not raw or not raw.strip():
        raise PayloadInvalid("sendgrid post without email")
    return form, raw


def _envelope_to(form: Form) -> list[str]:
    text = form.text("envelope")
    if not text:
        return []
    try:
        envelope = loads(text)
    except (ValueError, RecursionError) as exc:
        raise PayloadInvalid("sendgrid envelope is not JSON") from exc
    to = envelope.get("to") if isinstance(envelope, dict) else None
    return [r for r in to if isinstance(r, str)] if isinstance(to, list) else []


def parse_sendgrid(
    req: RawRequest,
    *,
    account: str,
    received_at: datetime,
    own_domains: frozenset[str] = frozenset(),
    trusted_authserv_ids: frozenset[str] = frozenset(),
) -> ParsedMail:
    """The mail of a SendGrid Inbound Parse POST (raw mode); authenticate it first with
    :func:`verify_basic_auth` or :func:`verify_path_secret`. SendGrid sends no id, so
    deduplication is ``mail.message_id`` (or parse_mail's hash). Raises PayloadInvalid,
    ParseFailed for the parsed mode."""
    form, raw = sendgrid_raw(req)
    mail = _parse(
        raw,
        account,
        received_at,
        own_domains=own_domains,
        trusted_authserv_ids=trusted_authserv_ids,
    )
    return _with_recipients(mail, _envelope_to(form))


class _PostmarkAddress(BaseModel):
    model_config = ConfigDict(extra="ignore")

    email: str = Field(default="", alias="Email")
    name: str = Field(default="", alias="Name")


class _PostmarkHeader(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str = Field(alias="Name")
    value: str = Field(default="", alias="Value")


class _PostmarkAttachment(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str = Field(default="", alias="Name")
    content: str = Field(default="", alias="Content")
    content_type: str = Field(default="application/octet-stream", alias="ContentType")
    content_id: str | None = Field(default=None, alias="ContentID")


class _PostmarkInbound(BaseModel):
    model_config = ConfigDict(extra="ignore")

    message_id: str = Field(alias="MessageID", min_length=1)
    from_full: _PostmarkAddress | None = Field(default=None, alias="FromFull")
    from_: str = Field(default="", alias="From")
    to_full: list[_PostmarkAddress] | None = Field(default=None, alias="ToFull")
    cc_full: list[_PostmarkAddress] | None = Field(default=None, alias="CcFull")
    subject: str | None = Field(default=None, alias="Subject")
    date: str | None = Field(default=None, alias="Date")
    text_body: str | None = Field(default=None, alias="TextBody")
    html_body: str | None = Field(default=None, alias="HtmlBody")
    headers: list[_PostmarkHeader] | None = Field(default=None, alias="Headers")
    attachments: list[_PostmarkAttachment] | None = Field(default=None, alias="Attachments")
    original_recipient: str | None = Field(default=None, alias="OriginalRecipient")


def _oneline(value: str) -> str:
    return " ".join(value.split())


def _address_list(addresses: Sequence[_PostmarkAddress]) -> str:
    return ", ".join(
        formataddr((_oneline(a.name), _oneline(a.email))) for a in addresses if a.email
    )


def _date(value: str) -> str | None:
    # Postmark writes offsets with a colon ("-04:00"), which RFC 5322 does not allow.
    fixed = re.sub(r"([+-]\d\d):(\d\d)\s*$", r"\1\2", value.strip())
    try:
        return format_datetime(parsedate_to_datetime(fixed))
    except (TypeError, ValueError, IndexError):
        return None


def _mime_type(value: str) -> tuple[str, str]:
    maintype, _, subtype = value.split(";", 1)[0].strip().lower().partition("/")
    if not re.fullmatch(r"[a-z0-9!#$&^_.+-]+", maintype) or not re.fullmatch(
        r"[a-z0-9!#$&^_.+-]+", subtype
    ):
        return "application", "octet-stream"
    if maintype in ("multipart", "message"):
        # EmailMessage would try to treat them as structure, not as opaque files.
        return "application", "octet-stream"
    return maintype, subtype


def _build_postmark(inbound: _PostmarkInbound) -> bytes:
    msg = EmailMessage(policy=policy.SMTP)
    sender = inbound.from_full
    if sender is not None and sender.email:
        msg["From"] = formataddr((_oneline(sender.name), _oneline(sender.email)))
    elif inbound.from_:
        msg["From"] = _oneline(inbound.from_)
    if inbound.to_full and (to := _address_list(inbound.to_full)):
        msg["To"] = to
    if inbound.cc_full and (cc := _address_list(inbound.cc_full)):
        msg["Cc"] = cc
    if inbound.subject is not None:
        msg["Subject"] = _oneline(inbound.subject)
    if inbound.date and (date := _date(inbound.date)):
        msg["Date"] = date
    for header in inbound.headers or ():
        if header.name.lower() in _REBUILT or not _HEADER_NAME.fullmatch(header.name):
            continue
        msg[header.name] = _oneline(header.value)
    if inbound.original_recipient and "delivered-to" not in msg:
        msg["Delivered-To"] = _oneline(inbound.original_recipient)

    text, html = inbound.text_body or "", inbound.html_body or ""
    if html:
        if text:
            msg.set_content(text)
            msg.add_alternative(html, subtype="html")
        else:
            msg.set_content(html, subtype="html")
    else:
        msg.set_content(text)
    html_part = msg.get_body(("html",)) if html else None
    for attachment in inbound.attachments or ():
        try:
            data = base64.b64decode(attachment.content, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise PayloadInvalid("postmark attachment is not base64") from exc
        maintype, subtype = _mime_type(attachment.content_type)
        cid = (attachment.content_id or "").strip().strip("<>")
        filename = _oneline(attachment.name) or "attachment"
        content_id = f"<{_oneline(cid)}>" if cid else None
        if cid and html_part is not None:
            html_part.add_related(
                data, maintype, subtype, disposition="inline", filename=filename, cid=content_id
            )
        else:
            msg.add_attachment(data, maintype, subtype, filename=filename, cid=content_id)
    return msg.as_bytes()


def postmark_raw(req: RawRequest) -> tuple[str, bytes]:
    """(Postmark ``MessageID``, a MIME mail rebuilt from the JSON): original headers from
    ``Headers``, text and HTML as alternatives, inline attachments (with ``ContentID``)
    related to the HTML, others attached. Raises PayloadInvalid, ParseFailed when the
    fields cannot be written as MIME."""
    if len(req.body) > MAX_BODY_BYTES:
        raise PayloadTooLarge("postmark body over the size limit")
    try:
        inbound = _PostmarkInbound.model_validate_json(req.body)
    except ValidationError as exc:
        raise PayloadInvalid("not a postmark inbound payload") from exc
    try:
        raw = _build_postmark(inbound)
    except PayloadInvalid:
        raise
    except Exception as exc:  # header values EmailMessage refuses to fold or serialize
        raise ParseFailed("postmark fields not writable as MIME") from exc
    return inbound.message_id, raw


def parse_postmark(
    req: RawRequest,
    *,
    account: str,
    received_at: datetime,
    own_domains: frozenset[str] = frozenset(),
    trusted_authserv_ids: frozenset[str] = frozenset(),
) -> tuple[str, ParsedMail]:
    """(Postmark ``MessageID``, mail) of a Postmark inbound POST; the id is the dedup key
    for Postmark's retries. Authenticate first with :func:`verify_basic_auth`. Raises
    PayloadInvalid, ParseFailed."""
    message_id, raw = postmark_raw(req)
    mail = _parse(
        raw,
        account,
        received_at,
        own_domains=own_domains,
        trusted_authserv_ids=trusted_authserv_ids,
    )
    return message_id, mail
