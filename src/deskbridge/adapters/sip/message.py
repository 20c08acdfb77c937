"""SIP messages: a strict parser and a serializer (RFC 3261 §7, §18.3, §20).

``parse`` takes the bytes of one message (a UDP datagram, or one message cut from a TCP
stream by ``frame``) and returns a ``Request`` or a ``Response``, or raises
``SipParseError``. The error carries what could be read (``partial``) and says whether
that is enough to answer (a request line and a Via to answer along, §8.2.6.2) and with
which status (400, or 505 for another SIP version); the answer copies what was read and
never parses the bad header again. Otherwise the listener drops it. RFC 4475's torture
messages are held to the outcome that RFC expects (tests/corpus/sip). Nothing here
raises anything else on any input (a hypothesis test feeds it arbitrary bytes).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from deskbridge.adapters.sip.uri import (
    NameAddr,
    SipSyntaxError,
    SipUri,
    parse_name_addr,
    parse_params,
    parse_uri,
    split_commas,
)

__all__ = [
    "MAGIC_COOKIE",
    "Headers",
    "Request",
    "Response",
    "SipParseError",
    "Via",
    "frame",
    "parse",
    "reason_phrase",
]

MAGIC_COOKIE = "z9hG4bK"
"""Branches starting with it are unique per transaction (RFC 3261 §8.1.1.7)."""

# RFC 3261 §7.3.3 and the IANA registry: compact forms of header names
_COMPACT = {
    "i": "Call-ID",
    "m": "Contact",
    "e": "Content-Encoding",
    "l": "Content-Length",
    "c": "Content-Type",
    "f": "From",
    "s": "Subject",
    "k": "Supported",
    "t": "To",
    "v": "Via",
    "o": "Event",
    "r": "Refer-To",
    "u": "Allow-Events",
    "x": "Session-Expires",
    "a": "Accept-Contact",
    "b": "Referred-By",
    "j": "Reject-Contact",
    "d": "Request-Disposition",
    "y": "Identity",
}
_CANONICAL = {
    n.lower(): n
    for n in (
        *_COMPACT.values(),
        "CSeq",
        "Max-Forwards",
        "Accept",
        "Allow",
        "Authorization",
        "Proxy-Authorization",
        "WWW-Authenticate",
        "Proxy-Authenticate",
        "P-Asserted-Identity",
        "Retry-After",
        "User-Agent",
        "Server",
        "Date",
        "Route",
        "Record-Route",
        "Expires",
        "Require",
        "Unsupported",
    )
}
# header fields whose values may be comma-separated lists (§7.3.1); others never split
_LISTS = frozenset(
    {"via", "contact", "route", "record-route", "p-asserted-identity", "allow", "supported"}
)
_TOKEN = re.compile(r"^[A-Za-z0-9\-.!%*_+`'~]+$")
_REASONS = {
    100: "Trying",
    180: "Ringing",
    200: "OK",
    202: "Accepted",
    302: "Moved Temporarily",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    413: "Request Entity Too Large",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    486: "Busy Here",
    487: "Request Terminated",
    500: "Server Internal Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    505: "Version Not Supported",
    603: "Decline",
}
MAX_HEADERS = 128
MAX_HEADER_BYTES = 16 * 1024


def reason_phrase(status: int) -> str:
    return _REASONS.get(status, "Unknown")


class SipParseError(ValueError):
    """Unreadable input. ``answerable``: a ``status`` answer (400, or 505) can be built
    from ``partial`` and routed back."""

    def __init__(
        self,
        message: str,
        *,
        answerable: bool = False,
        partial: Request | None = None,
        status: int = 400,
    ):
        super().__init__(message)
        self.answerable = answerable
        self.partial = partial
        self.status = status


def canonical(name: str) -> str:
    low = name.lower()
    if low in _COMPACT:
        return _COMPACT[low]
    return _CANONICAL.get(low, name)


class Headers:
    """Header fields in order, looked up by name case-insensitively, compact forms
    expanded. A list-valued field (Via, Contact, Route...) split over several lines or
    comma-separated reads the same."""

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str]] = [(canonical(n), v) for n, v in items]

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def get(self, name: str) -> str | None:
        low = canonical(name).lower()
        for n, v in self._items:
            if n.lower() == low:
                return v
        return None

    def count(self, name: str) -> int:
        """How many header lines carry ``name`` (comma lists count once)."""
        low = canonical(name).lower()
        return sum(1 for n, _ in self._items if n.lower() == low)

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name``, comma lists split (for list-valued fields)."""
        low = canonical(name).lower()
        out: list[str] = []
        for n, v in self._items:
            if n.lower() == low:
                out.extend(split_commas(v) if low in _LISTS else [v])
        return out

    def add(self, name: str, value: str) -> None:
        self._items.append((canonical(name), value))

    def set(self, name: str, value: str) -> None:
        self.remove(name)
        self.add(name, value)

    def remove(self, name: str) -> None:
        low = canonical(name).lower()
        self._items = [(n, v) for n, v in self._items if n.lower() != low]


@dataclass(frozen=True, slots=True)
class Via:
    """One Via value: ``SIP/2.0/UDP host:port;branch=z9hG4bK...;rport`` (§20.42)."""

    transport: str
    host: str
    port: int | None
    params: dict[str, str] = field(default_factory=dict)

    @property
    def branch(self) -> str:
        return self.params.get("branch", "")

    @classmethod
    def parse(cls, text: str) -> Via:
        m = re.match(r"^SIP\s*/\s*2\.0\s*/\s*([A-Za-z]+)\s+(\S+?)\s*(;.*)?$", text.strip())
        if not m:
            raise SipSyntaxError("bad Via")
        hostport = m.group(2)
        hm = re.match(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?::(\d{1,5}))?$", hostport)
        if not hm:
            raise SipSyntaxError("bad Via sent-by")
        port = int(hm.group(2)) if hm.group(2) else None
        return cls(
            transport=m.group(1).upper(),
            host=hm.group(1),
            port=port,
            params=parse_params(m.group(3) or ""),
        )

    def __str__(self) -> str:
        port = f":{self.port}" if self.port is not None else ""
        params = "".join(f";{k}={v}" if v else f";{k}" for k, v in self.params.items())
        return f"SIP/2.0/{self.transport} {self.host}{port}{params}"


class _Message(ABC):
    """What requests and responses share; each states its own start line."""

    __slots__ = ("body", "headers")

    def __init__(self, headers: Headers, body: bytes = b"") -> None:
        self.headers = headers
        self.body = body

    @abstractmethod
    def _head(self) -> str:
        """The start line (request line or status line)."""

    def encode(self) -> bytes:
        """The wire form, with Content-Length set to the body's length."""
        self.headers.set("Content-Length", str(len(self.body)))
        lines = [self._head(), *(f"{n}: {v}" for n, v in self.headers)]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + self.body

    @property
    def call_id(self) -> str:
        return self.headers.get("Call-ID") or ""

    @property
    def cseq(self) -> tuple[int, str]:
        number, _, method = (self.headers.get("CSeq") or "").strip().partition(" ")
        return int(number), method.strip().upper()

    def vias(self) -> list[Via]:
        return [Via.parse(v) for v in self.headers.get_all("Via")]

    def top_via(self) -> Via:
        return Via.parse(self.headers.get_all("Via")[0])

    def name_addr(self, name: str) -> NameAddr | None:
        value = self.headers.get(name)
        return parse_name_addr(value) if value is not None else None


class Request(_Message):
    __slots__ = ("method", "uri")

    def __init__(self, method: str, uri: str, headers: Headers, body: bytes = b"") -> None:
        super().__init__(headers, body)
        self.method = method
        self.uri = uri

    def _head(self) -> str:
        return f"{self.method} {self.uri} SIP/2.0"


class Response(_Message):
    __slots__ = ("reason", "status")

    def __init__(self, status: int, reason: str, headers: Headers, body: bytes = b"") -> None:
        super().__init__(headers, body)
        self.status = status
        self.reason = reason

    def _head(self) -> str:
        return f"SIP/2.0 {self.status} {self.reason}"


# §8.1.1 also names Max-Forwards, but RFC 4475 §3.4.1 expects a request without it
# (RFC 2543 style, real gateways) to be accepted
_MANDATORY = ("To", "From", "CSeq", "Call-ID", "Via")
_ROUTING = ("Via", "From", "To", "Call-ID", "CSeq")
# §7.3.1 / §20: at most one of each (RFC 4475 §3.3.8, §3.3.9)
_SINGLE = ("To", "From", "Call-ID", "CSeq", "Max-Forwards", "Content-Length", "Content-Type")
_REQUEST_LINE = re.compile(r"^([^ ]+) ([^ ]+) ([^ ]+)$")
_URI_START = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")


def _split_head(data: bytes) -> tuple[bytes, bytes]:
    for sep in (b"\r\n\r\n", b"\n\n"):
        idx = data.find(sep)
        if idx >= 0:
            return data[:idx], data[idx + len(sep) :]
    return data, b""


def _unfold(head: str) -> list[str]:
    """Lines with folded continuations (§7.3.1: leading whitespace) joined by a space."""
    lines: list[str] = []
    for line in re.split(r"\r?\n", head):
        if line[:1] in (" ", "\t") and lines:
            lines[-1] = lines[-1].rstrip() + " " + line.strip()
        else:
            lines.append(line)
    return lines


def parse(data: bytes, *, stream: bool = False) -> Request | Response:
    """One SIP message. ``stream``: it came over TCP/TLS, where Content-Length is
    mandatory (§18.3); over UDP a missing one means "the rest of the datagram"."""
    start, header_lines, body = _read_head(data)
    headers, bad_header = _headers(header_lines)
    msg = _start_line(start, headers)
    msg.body = _framed_body(msg, body, stream=stream)
    if bad_header:
        raise _fail(msg, bad_header)
    if isinstance(msg, Request):
        _check_request(msg)
    else:
        _check_routing(msg, partial=None)
    return msg


def _read_head(data: bytes) -> tuple[str, list[str], bytes]:
    """(start line, unfolded header lines, the bytes after the blank line)."""
    data = data.lstrip(b"\r\n")  # keepalive CRLFs before a message (RFC 5626 §3.5.1)
    if not data:
        raise SipParseError("empty message")
    raw_head, body = _split_head(data)
    if len(raw_head) > MAX_HEADER_BYTES:
        raise SipParseError("header section too large")
    try:
        head = raw_head.decode("utf-8")
    except UnicodeDecodeError:
        raise SipParseError("header section is not UTF-8") from None
    # a quoted string may escape a NUL (RFC 4475 §3.1.1.2); a bare one is garbage
    if re.search("(?<!\\\\)\x00", head):
        raise SipParseError("NUL in header section")
    lines = _unfold(head)
    if len(lines) - 1 > MAX_HEADERS:
        raise SipParseError("too many header fields")
    return lines[0], lines[1:], body


def _headers(lines: list[str]) -> tuple[Headers, str | None]:
    """The well-formed header fields, and why a line was not one (None if all were):
    the message is still built, so the error can be answered."""
    items: list[tuple[str, str]] = []
    bad_header: str | None = None
    for line in lines:
        if not line:
            continue  # a datagram that ends without its blank line
        name, colon, value = line.partition(":")
        name = name.strip()
        if not colon or not _TOKEN.match(name):
            bad_header = bad_header or "malformed header line"
            continue
        items.append((name, value.strip()))
    return Headers(items), bad_header


def _start_line(start: str, headers: Headers) -> Request | Response:
    """The start line, exactly: single spaces, nothing trailing (RFC 4475 §3.1.2.7-10)."""
    if start.startswith("SIP/"):
        parts = start.strip().split(" ", 2)
        if len(parts) < 2 or parts[0] != "SIP/2.0" or not re.fullmatch(r"[1-6]\d\d", parts[1]):
            raise SipParseError("bad status line")
        return Response(int(parts[1]), parts[2] if len(parts) > 2 else "", headers)
    m = _REQUEST_LINE.match(start)
    first = start.split(" ", 1)[0]
    if not _TOKEN.match(first):
        raise SipParseError("bad request line")
    if m is None:
        partial = Request(first, start[len(first) :].strip(), headers)
        raise _fail(partial, "bad request line")
    method, uri, version = m.groups()
    msg = Request(method.upper() if method.isascii() else method, uri, headers)
    if version != "SIP/2.0":
        if re.fullmatch(r"SIP/\d+\.\d+", version):
            raise _fail(msg, "unsupported SIP version", status=505)
        raise _fail(msg, "bad SIP version")
    if not _URI_START.match(uri):
        raise _fail(msg, "bad Request-URI")
    return msg


def _framed_body(msg: Request | Response, body: bytes, *, stream: bool) -> bytes:
    length_text = msg.headers.get("Content-Length")
    if length_text is None:
        # nothing can follow an unframed message on a stream
        return b"" if stream else body
    try:
        # str.isdigit() also accepts digits int() refuses ("²"), and int() refuses more
        # than 4300 digits
        if not (length_text.isascii() and length_text.isdigit()):
            raise ValueError
        length = int(length_text)
    except ValueError:
        raise _fail(msg, "bad Content-Length") from None
    if length > len(body):
        raise _fail(msg, "body shorter than Content-Length")
    return body[:length]  # §18.3: bytes beyond Content-Length are discarded


def _answerable(headers: Headers) -> bool:
    """An answer can be routed: there is a Via to copy (its address may still be
    unreadable: the answer then goes to the source address)."""
    return bool((headers.get("Via") or "").strip())


def _fail(msg: Request | Response, why: str, *, status: int = 400) -> SipParseError:
    if isinstance(msg, Response):
        return SipParseError(why)
    answerable = msg.method != "ACK" and _answerable(msg.headers)
    return SipParseError(why, answerable=answerable, partial=msg, status=status)


def _check_routing(msg: Request | Response, partial: Request | None) -> None:
    answerable = partial is not None and partial.method != "ACK" and _answerable(msg.headers)
    for name in _ROUTING:
        if msg.headers.get(name) is None:
            raise SipParseError(f"missing {name}", answerable=answerable, partial=partial)
    try:
        if not msg.vias():
            raise SipSyntaxError("empty Via")
        number, method = msg.cseq
        if not method or not 0 <= number < 2**31:
            raise ValueError
        for name in ("From", "To"):
            msg.name_addr(name)
    except (SipSyntaxError, ValueError) as exc:
        raise SipParseError(
            f"malformed routing header ({exc or 'CSeq'})", answerable=answerable, partial=partial
        ) from None


def _check_request(req: Request) -> None:
    """§8.1.1's mandatory headers (one of each), a CSeq matching the method, readable
    Contacts (but a MESSAGE's) and a Request-URI without headers (§19.1.5). A
    Request-URI of a scheme we do not route is for the UAS core to refuse (416)."""
    _check_routing(req, partial=req)
    for name in _MANDATORY:
        if req.headers.get(name) is None:
            raise _fail(req, f"missing {name}")
    for name in _SINGLE:
        if req.headers.count(name) > 1:
            raise _fail(req, f"more than one {name}")
    mf = req.headers.get("Max-Forwards")
    if mf is not None and not (mf.strip().isascii() and mf.strip().isdigit()):
        raise _fail(req, "bad Max-Forwards")
    if req.cseq[1] != req.method:
        raise _fail(req, "CSeq method does not match")
    try:
        # a MESSAGE's Contact is never used (RFC 3428 §4): it must not cost the text
        for contact in req.headers.get_all("Contact") if req.method != "MESSAGE" else []:
            if contact != "*":
                parse_name_addr(contact)
        if req.uri.partition(":")[0].lower() in ("sip", "sips", "tel"):
            uri = parse_uri(req.uri)
            if isinstance(uri, SipUri) and uri.headers:
                raise SipSyntaxError("headers in the Request-URI")
    except SipSyntaxError as exc:
        raise _fail(req, f"malformed {exc}") from None


def frame(buffer: bytearray, max_size: int) -> tuple[bytes | None, int]:
    """Cut one message off the front of a stream buffer (§18.3: by Content-Length).

    Returns ``(message, consumed)``; ``(None, 0)`` when more bytes are needed. Raises
    ``SipParseError`` when the stream cannot be framed (no Content-Length, oversized): the
    connection must then be closed, since where the next message starts is unknown.
    """
    stripped = len(buffer) - len(bytes(buffer).lstrip(b"\r\n"))
    if stripped == len(buffer):
        return None, stripped  # only keepalive CRLFs so far
    start = stripped
    end = buffer.find(b"\r\n\r\n", start)
    if end < 0:
        if len(buffer) - start > MAX_HEADER_BYTES:
            raise SipParseError("header section too large")
        return None, 0
    head = bytes(buffer[start:end])
    # §7.3.1/§18.3: any position, any case, compact "l", LWS around the colon (a folded
    # value too); every line but the last ends in \r, which "$" does not skip
    m = re.search(rb"(?im)^(?:content-length|l)[ \t]*:[ \t]*(?:\r?\n[ \t]+)?(\d+)[ \t]*\r?$", head)
    if m is None:
        raise SipParseError("message without Content-Length on a stream", status=400)
    digits = m.group(1)
    # past 18 digits no length fits, and past 4300 int() would refuse to convert it
    total = end + 4 + (int(digits) if len(digits) <= 18 else max_size + 1)
    if total - start > max_size:
        raise SipParseError("message too large", status=413)
    if len(buffer) < total:
        return None, 0
    return bytes(buffer[start:total]), total
