"""One account's SIP trunk, inbound: which requests are ours, who sent them, and the
events they become. Pure: parsed requests in, events or a typed refusal out.

Sender identity (RFC 3325 §9.1): a ``P-Asserted-Identity`` is believed only from a
trusted peer, and then it is strong evidence; otherwise the ``From`` header, which
nobody authenticated (RFC 3261 §23), is weak evidence.
"""

from __future__ import annotations

import contextlib
import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime
from email.parser import BytesParser
from email.policy import compat32
from typing import ClassVar, Literal

import phonenumbers

from deskbridge.adapters.base import Handshake, Parsed
from deskbridge.adapters.sip.message import Request, SipParseError, parse
from deskbridge.adapters.sip.uri import (
    NameAddr,
    SipSyntaxError,
    SipUri,
    TelUri,
    Uri,
    parse_name_addr,
    parse_uri,
    phone_of,
)
from deskbridge.config.accounts import SipConfig
from deskbridge.errors import ParseFailed, RequestRefused, SignatureInvalid
from deskbridge.identity.normalize import phone_key
from deskbridge.schemas import CallEvent, Channel, Identity, Message, RawRequest, Sender

__all__ = [
    "Caller",
    "Refused",
    "SipReceiver",
    "StoredSip",
    "raw_request",
]

SOURCE_HEADER = "x-sip-source"
TRANSPORT_HEADER = "x-sip-transport"
RECEIVED_HEADER = "x-sip-received-at"


class Refused(Exception):
    """A request we answer with ``status`` (and ``extra`` headers) without storing it."""

    def __init__(
        self, status: int, why: str, *, extra: list[tuple[str, str]] | None = None
    ) -> None:
        super().__init__(why)
        self.status = status
        self.extra = extra or []


@dataclass(frozen=True, slots=True)
class Caller:
    """Who sent a request, and how a reply reaches them."""

    thread: str
    """The conversation key: the E.164 number, else the URI's ``scheme:user@host``."""
    sender: Sender
    phone: str | None
    uri: Uri
    asserted: bool


def raw_request(
    account: str,
    data: bytes,
    source: tuple[str, int],
    transport: str,
    received_at: datetime | None = None,
) -> RawRequest:
    """How a SIP request is stored for re-ingest: its exact bytes, where it came from
    and when (``StoredSip`` reads it back)."""
    headers = {SOURCE_HEADER: f"{source[0]}|{source[1]}", TRANSPORT_HEADER: transport}
    if received_at is not None:
        headers[RECEIVED_HEADER] = received_at.isoformat()
    return RawRequest(method="SIP", path=f"sip:{account}", headers=headers, body=data)


def _local_region(config: SipConfig) -> str:
    """``local_region``, else the country of the first served number, else the
    account's default region."""
    if config.local_region:
        return config.local_region
    for number in config.numbers:
        with contextlib.suppress(phonenumbers.NumberParseException):
            region = phonenumbers.region_code_for_number(phonenumbers.parse(number))
            if region and region != "ZZ":
                return str(region)
    return config.default_region


def _text_part(ctype: str, body: bytes) -> tuple[str, bytes] | None:
    """The first text part of a multipart body (a signed MESSAGE: text/plain and its
    signature, RFC 4475 §3.1.1.11), as (its Content-Type, its bytes)."""
    mime = BytesParser(policy=compat32).parsebytes(
        b"Content-Type: " + ctype.encode("utf-8", "replace") + b"\r\n\r\n" + body
    )
    for part in mime.walk():
        if part.get_content_maintype() == "text" and not part.is_multipart():
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                return str(part.get("Content-Type", "text/plain")), payload
    return None


def _text_body(req: Request, limit: int) -> str:
    """RFC 3428 §7: the body is MIME; we take text/* in its charset (UTF-8 by default),
    or the first text part of a multipart body."""
    ctype = (req.headers.get("Content-Type") or "text/plain").strip()
    accept = [("Accept", "text/plain")]
    encoding = (req.headers.get("Content-Encoding") or "identity").strip().lower()
    if encoding != "identity":
        raise Refused(415, "unsupported content encoding", extra=[("Accept-Encoding", "identity")])
    if len(req.body) > limit:
        raise Refused(413, "body too large")
    body = req.body
    if ctype.lower().startswith("multipart/"):
        found = _text_part(ctype, body)
        if found is None:
            raise Refused(415, "no text part", extra=accept)
        ctype, body = found
    media, _, params = ctype.partition(";")
    major, _, _minor = media.strip().lower().partition("/")
    if major != "text":
        raise Refused(415, "unsupported content type", extra=accept)
    charset = "utf-8"
    for p in params.split(";"):
        name, _, value = p.partition("=")
        if name.strip().lower() == "charset" and value.strip():
            charset = value.strip().strip('"').lower()
    try:
        # line ends that close the body (sipp, some SMSCs) are not part of the text
        return body.decode(charset).rstrip("\r\n")
    except LookupError:
        raise Refused(
            415, "unknown charset", extra=[("Accept", "text/plain;charset=utf-8")]
        ) from None
    except UnicodeDecodeError:
        raise Refused(400, "body is not valid in its charset") from None


class SipReceiver:
    """The inbound side of one account's ``sip`` channel."""

    channel = Channel.SIP
    # Not HTTP: a SIP request is stored as its exact bytes; a digest Authorization in
    # them is a one-time hash bound to our nonce, not the password
    secret_headers: ClassVar[frozenset[str]] = frozenset()
    secret_query: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, account: str, config: SipConfig) -> None:
        self.account = account
        self.config = config
        self._networks = [ipaddress.ip_network(p, strict=False) for p in config.trusted_peers]
        self._domains = frozenset(d.lower().strip("[]") for d in config.domains)
        self._numbers = frozenset(config.numbers)
        self.local_region = _local_region(config)

    def trusts(self, ip: str) -> bool:
        try:
            addr = ipaddress.ip_address(ip.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        return any(addr in net for net in self._networks)

    def phone(self, uri: Uri) -> str | None:
        """The E.164 number of ``uri``, local numbers read in the trunk's country."""
        return phone_of(uri, self.config.default_region, local_region=self.local_region)

    def serves(self, uri: Uri) -> str | None:
        """The served number (or user) ``uri`` addresses, or None when not ours."""
        if isinstance(uri, TelUri):
            number = self.phone(uri)
        elif not isinstance(uri, SipUri):
            return None
        else:
            if uri.host.lower().strip("[]") not in self._domains:
                return None
            number = self.phone(uri)
            if number is None and not self._numbers and uri.user:
                return uri.user  # a named service user (sip:support@domain)
        if number is None:
            return None
        if self._numbers and number not in self._numbers:
            return None
        return number

    def caller(self, req: Request, source_ip: str) -> Caller:
        """The sender: P-Asserted-Identity from a trusted peer, else From."""
        asserted: NameAddr | None = None
        if self.trusts(source_ip):
            for value in req.headers.get_all("P-Asserted-Identity"):
                try:
                    asserted = parse_name_addr(value)
                except SipSyntaxError:
                    continue
                # RFC 3325 §9.1: at most one sip/sips and one tel value; prefer the
                # one that carries a telephone number
                if self.phone(asserted.uri):
                    break
        from_ = req.name_addr("From")
        who = asserted or from_
        if who is None:  # pragma: no cover - the parser requires From
            raise Refused(400, "missing From")
        strength = "strong" if asserted is not None else "weak"
        source = "sip-asserted" if asserted is not None else "sip-from"
        phone = self.phone(who.uri)
        address = who.uri.address
        identities = [
            Identity(
                kind="channel_user",
                channel=Channel.SIP,
                value=address,
                strength=strength,
                source=source,
            )
        ]
        if phone:
            identities.insert(
                0, Identity(kind="phone", value=phone, strength=strength, source=source)
            )
        name = (asserted.display if asserted else None) or (from_.display if from_ else None)
        return Caller(
            # both spellings of one number are one conversation (Argentina's +54 9 and
            # +54 forms); replies go to the From URI kept in the context, not the thread
            thread=phone_key(phone) if phone else address,
            sender=Sender(
                external_id=phone or address,
                display_name=name,
                # what the desk shows when no display name came: the number or URI user
                username=phone or _uri_user(who.uri) or address,
                identities=tuple(identities),
            ),
            phone=phone,
            uri=who.uri,
            asserted=asserted is not None,
        )

    def _context(
        self, req: Request, caller: Caller, served: str, source: tuple[str, int], transport: str
    ) -> dict[str, str]:
        """Where replies go: the trunk that sent this (its Via port, §18.2.2) unless an
        outbound proxy is configured, to the customer's URI, from the number they wrote
        to."""
        via = req.top_via()
        hop_port = via.port or (5061 if transport == "TLS" else 5060)
        from_ = req.name_addr("From")
        reply_uri = (
            str(from_.uri)
            if from_ is not None and isinstance(from_.uri, SipUri)
            else str(caller.uri)
        )
        return {
            "reply_uri": reply_uri,
            "served": served,
            "next_hop": f"{source[0]}|{hop_port}",
            "transport": transport.lower(),
        }

    def message(
        self, req: Request, source: tuple[str, int], transport: str, received_at: datetime
    ) -> Message:
        """A MESSAGE (RFC 3428) as an inbound message. Raises ``Refused``."""
        served = self._served(req)
        text = _text_body(req, self.config.max_body_bytes)
        caller = self.caller(req, source[0])
        number, _ = req.cseq
        return Message(
            account=self.account,
            channel=Channel.SIP,
            # §8: a new request with the same Call-ID and CSeq is the same message
            dedup_key=f"sip:{req.call_id}:{number}",
            thread=caller.thread,
            occurred_at=received_at,
            external_id=f"{req.call_id}:{number}",
            sender=caller.sender,
            text=text,
            thread_title=(req.headers.get("Subject") or "").strip() or None,
            context=self._context(req, caller, served, source, transport),
        )

    def call(
        self,
        req: Request,
        source: tuple[str, int],
        transport: str,
        received_at: datetime,
        *,
        state: Literal["missed", "redirected"],
        redirected_to: str | None = None,
        callback_requested: bool = False,
        hung_up: bool = False,
        duration: float | None = None,
    ) -> CallEvent:
        served = self._served(req)
        caller = self.caller(req, source[0])
        return CallEvent(
            account=self.account,
            channel=Channel.SIP,
            dedup_key=f"sip-call:{req.call_id}",
            thread=caller.thread,
            occurred_at=received_at,
            call_id=req.call_id,
            sender=caller.sender,
            state=state,
            callee=served,
            redirected_to=redirected_to,
            callback_requested=callback_requested,
            hung_up=hung_up,
            duration=duration,
            context=self._context(req, caller, served, source, transport),
        )

    def _served(self, req: Request) -> str:
        try:
            uri = parse_uri(req.uri)
        except SipSyntaxError:
            raise Refused(416, "unsupported Request-URI") from None
        served = self.serves(uri)
        if served is None:
            raise Refused(404, "not a served number")
        return served


class StoredSip:
    """Re-ingest's receiver for SIP, which has no webhook URL and so no entry in the
    receivers' registry: a stored request (``raw_request``) is parsed again as the
    listener would take it. Never reachable over HTTP: ``verify`` refuses everything."""

    channel = Channel.SIP
    max_body_bytes = 64 * 1024
    secret_headers: ClassVar[frozenset[str]] = frozenset()
    secret_query: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, receiver: SipReceiver) -> None:
        self._receiver = receiver

    def handshake(self, req: RawRequest) -> Handshake | None:
        return None

    def verify(self, req: RawRequest) -> None:
        raise SignatureInvalid("SIP requests arrive on the SIP listener only")

    def parse(self, req: RawRequest) -> Parsed:
        """A MESSAGE as its message; an INVITE as the call the account's call settings
        record (redirected, else missed with a callback asked for). Raises
        ``ParseFailed`` for bytes that are not such a request, ``RequestRefused`` for a
        request today's receiver refuses (not a served number, a body we do not take)."""
        host, _, port = req.headers.get(SOURCE_HEADER, "|0").partition("|")
        source = (host, int(port) if port.isdigit() else 0)
        transport = req.headers.get(TRANSPORT_HEADER, "UDP")
        try:
            received_at = datetime.fromisoformat(req.headers[RECEIVED_HEADER])
        except (KeyError, ValueError):
            received_at = datetime.now(UTC)  # kept before the time was
        try:
            msg = parse(req.body, stream=transport != "UDP")
        except SipParseError as exc:
            raise ParseFailed(f"not a SIP request we read: {exc}") from None
        if not isinstance(msg, Request) or msg.method not in ("MESSAGE", "INVITE"):
            raise ParseFailed("not a SIP MESSAGE or INVITE")
        r = self._receiver
        try:
            if msg.method == "MESSAGE":
                return Parsed([r.message(msg, source, transport, received_at)])
            calls = r.config.calls
            if calls.action == "redirect" and calls.redirect_to:
                event = r.call(
                    msg,
                    source,
                    transport,
                    received_at,
                    state="redirected",
                    redirected_to=calls.redirect_to,
                )
            else:
                event = r.call(
                    msg, source, transport, received_at, state="missed", callback_requested=True
                )
        except Refused as exc:
            raise RequestRefused(f"{exc.status} {exc}") from None
        return Parsed([event])


def _uri_user(uri: object) -> str | None:
    """The user part a person is known by: ``alice`` of ``sip:alice@host``, the number
    of ``tel:``; None for a URI with neither."""
    if isinstance(uri, SipUri):
        return uri.user or None
    if isinstance(uri, TelUri):
        return uri.number
    return None
