"""One account's SIP trunk, inbound: which requests are ours, who sent them, and the
events they become. Pure: parsed requests in, events or a typed refusal out.

Sender identity (RFC 3325 §9.1): a ``P-Asserted-Identity`` is believed only from a
trusted peer, and then it is strong evidence; otherwise the ``From`` header, which
nobody authenticated (RFC 3261 §23), is weak evidence.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar, Literal

from deskbridge.adapters.sip.message import Request
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
from deskbridge.identity.normalize import phone_key
from deskbridge.schemas import CallEvent, Channel, Identity, Message, RawRequest, Sender

__all__ = [
    "Caller",
    "Refused",
    "SipReceiver",
    "raw_request",
]

SOURCE_HEADER = "x-sip-source"
TRANSPORT_HEADER = "x-sip-transport"


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


def raw_request(account: str, data: bytes, source: tuple[str, int], transport: str) -> RawRequest:
    """How a SIP request is stored for re-ingest: its exact bytes and where it came from."""
    return RawRequest(
        method="SIP",
        path=f"sip:{account}",
        headers={SOURCE_HEADER: f"{source[0]}|{source[1]}", TRANSPORT_HEADER: transport},
        body=data,
    )


def _text_body(req: Request, limit: int) -> str:
    """RFC 3428 §7: the body is MIME; we take text/* in its charset (UTF-8 by default)."""
    ctype = (req.headers.get("Content-Type") or "text/plain").strip()
    media, _, params = ctype.partition(";")
    major, _, _minor = media.strip().lower().partition("/")
    accept = [("Accept", "text/plain")]
    if major != "text":
        raise Refused(415, "unsupported content type", extra=accept)
    encoding = (req.headers.get("Content-Encoding") or "identity").strip().lower()
    if encoding != "identity":
        raise Refused(415, "unsupported content encoding", extra=[("Accept-Encoding", "identity")])
    if len(req.body) > limit:
        raise Refused(413, "body too large")
    charset = "utf-8"
    for p in params.split(";"):
        name, _, value = p.partition("=")
        if name.strip().lower() == "charset" and value.strip():
            charset = value.strip().strip('"').lower()
    try:
        # line ends that close the body (sipp, some SMSCs) are not part of the text
        return req.body.decode(charset).rstrip("\r\n")
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

    def trusts(self, ip: str) -> bool:
        try:
            addr = ipaddress.ip_address(ip.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        return any(addr in net for net in self._networks)

    def serves(self, uri: Uri) -> str | None:
        """The served number (or user) ``uri`` addresses, or None when not ours."""
        if isinstance(uri, TelUri):
            number = phone_of(uri, self.config.default_region)
        else:
            if uri.host.lower().strip("[]") not in self._domains:
                return None
            number = phone_of(uri, self.config.default_region)
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
                if phone_of(asserted.uri, self.config.default_region):
                    break
        from_ = req.name_addr("From")
        who = asserted or from_
        if who is None:  # pragma: no cover - the parser requires From
            raise Refused(400, "missing From")
        strength = "strong" if asserted is not None else "weak"
        source = "sip-asserted" if asserted is not None else "sip-from"
        phone = phone_of(who.uri, self.config.default_region)
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
