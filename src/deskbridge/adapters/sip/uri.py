"""SIP and tel URIs, name-addr values, and the telephone number a URI carries.

Only what deskbridge needs: ``sip:``/``sips:`` URIs (RFC 3261 §19.1) with an optional
user part, an IPv4/IPv6/host name host, port, ``;params`` and ``?headers``, and ``tel:``
URIs (RFC 3966 §3) with their visual separators and ``;phone-context``. In name-addr
values (From, To, Contact) any other absolute URI is kept as an ``OtherUri`` (RFC 3261
§20.10 allows them; RFC 4475 §3.3.4 expects them accepted). Pure functions; a value that
is not what the grammar allows raises ``SipSyntaxError``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import unquote

import phonenumbers

__all__ = [
    "NameAddr",
    "OtherUri",
    "SipSyntaxError",
    "SipUri",
    "TelUri",
    "Uri",
    "parse_name_addr",
    "parse_params",
    "parse_uri",
    "phone_of",
    "split_commas",
]


class SipSyntaxError(ValueError):
    """A SIP message or value that the RFC 3261 grammar does not allow."""


_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?::(\d{1,5}))?$")
_USER_OK = re.compile(r"^[A-Za-z0-9\-_.!~*'()&=+$,;?/%#]+$")
# RFC 3966 §3: visual separators inside a telephone number
_VISUAL = re.compile(r"[-.()\s]")


def split_commas(value: str) -> list[str]:
    """Split a header value on the commas between its elements (RFC 3261 §7.3.1), not
    on commas inside quoted strings or ``<...>``."""
    out: list[str] = []
    depth = 0
    quoted = False
    start = 0
    i = 0
    while i < len(value):
        ch = value[i]
        if quoted:
            if ch == "\\":
                i += 1
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch == "<":
            depth += 1
        elif ch == ">":
            depth = max(0, depth - 1)
        elif ch == "," and depth == 0:
            out.append(value[start:i].strip())
            start = i + 1
        i += 1
    if quoted:
        raise SipSyntaxError("unterminated quoted string")
    out.append(value[start:].strip())
    return [p for p in out if p]


def parse_params(text: str) -> dict[str, str]:
    """``;a=1;b;c="x"`` (leading ``;`` optional) as lower-cased names to values; a
    parameter without a value maps to ``""``."""
    params: dict[str, str] = {}
    for part in text.split(";"):
        part = part.strip()
        if not part:
            continue
        name, eq, value = part.partition("=")
        name = name.strip().lower()
        if not name or not re.fullmatch(r"[A-Za-z0-9\-_.!~*'%+`]+", name):
            raise SipSyntaxError(f"bad parameter name {name!r}")
        value = value.strip()
        if eq and len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        params[name] = value
    return params


@dataclass(frozen=True, slots=True)
class SipUri:
    """``sip:user@host:port;params?headers`` (RFC 3261 §19.1.1)."""

    scheme: str
    host: str
    user: str | None = None
    port: int | None = None
    params: dict[str, str] = field(default_factory=dict)
    headers: str = ""
    """The ``?headers`` part as written (without ``?``); a Request-URI must have none."""

    def __str__(self) -> str:
        user = f"{self.user}@" if self.user is not None else ""
        port = f":{self.port}" if self.port is not None else ""
        params = "".join(f";{k}={v}" if v else f";{k}" for k, v in self.params.items())
        return f"{self.scheme}:{user}{self.host}{port}{params}"

    @property
    def address(self) -> str:
        """``scheme:user@host`` without port or parameters: who, not where."""
        user = f"{self.user}@" if self.user is not None else ""
        return f"{self.scheme}:{user}{self.host.lower()}"


@dataclass(frozen=True, slots=True)
class TelUri:
    """``tel:+1-201-555-0123`` or ``tel:7042;phone-context=example.com`` (RFC 3966)."""

    number: str
    """As written, separators included."""
    params: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        params = "".join(f";{k}={v}" if v else f";{k}" for k, v in self.params.items())
        return f"tel:{self.number}{params}"

    @property
    def is_global(self) -> bool:
        return self.number.startswith("+")

    @property
    def address(self) -> str:
        return f"tel:{_VISUAL.sub('', self.number)}"


@dataclass(frozen=True, slots=True)
class OtherUri:
    """An absolute URI of a scheme deskbridge does not route (``isbn:``, ``http:``...),
    accepted where RFC 3261 allows any URI: From, To, Contact. Names nobody we can
    reach, and no telephone number."""

    scheme: str
    text: str

    def __str__(self) -> str:
        return self.text

    @property
    def address(self) -> str:
        return self.text


Uri = SipUri | TelUri | OtherUri

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*$")


def parse_uri(text: str) -> SipUri | TelUri:
    """A ``sip:``, ``sips:`` or ``tel:`` URI. Other schemes raise ``SipSyntaxError``.

    A ``tel:`` URI without ``phone-context`` is a local number (RFC 3966 §5.1.5 requires
    the context, but gateways leave it out): it is accepted, and ``phone_of`` reads it
    in the trunk's region."""
    text = text.strip()
    scheme, colon, rest = text.partition(":")
    scheme = scheme.lower()
    if not colon or not rest:
        raise SipSyntaxError("not a URI")
    if scheme == "tel":
        number, _, params = rest.partition(";")
        digits = _VISUAL.sub("", number)
        if not re.fullmatch(r"\+?[0-9A-Fa-f*#]+", digits):
            raise SipSyntaxError("tel URI without a telephone number")
        return TelUri(number=number, params=parse_params(params))
    if scheme not in ("sip", "sips"):
        raise SipSyntaxError(f"unsupported URI scheme {scheme!r}")
    user: str | None = None
    if "@" in rest:
        # "@" is allowed in neither parameters nor headers (§25.1), so the last one
        # ends the userinfo, whatever "?" or ";" it holds (RFC 4475 §3.1.1.2)
        userinfo, _, rest = rest.rpartition("@")
        user = userinfo.partition(":")[0]  # a password in a URI is ignored (§19.1.1)
        if not user or not _USER_OK.match(user):
            raise SipSyntaxError("bad user part")
        user = unquote(user)
    rest, _, uri_headers = rest.partition("?")
    hostport, _, params = rest.partition(";")
    m = _HOST.match(hostport)
    if not m:
        raise SipSyntaxError("bad host")
    port = int(m.group(2)) if m.group(2) else None
    if port is not None and not 0 < port < 65536:
        raise SipSyntaxError("bad port")
    return SipUri(
        scheme=scheme,
        host=m.group(1),
        user=user,
        port=port,
        params=parse_params(params),
        headers=uri_headers,
    )


def parse_any_uri(text: str) -> Uri:
    """``parse_uri``, or an ``OtherUri`` for another scheme's absolute URI."""
    text = text.strip()
    scheme, colon, rest = text.partition(":")
    if scheme.lower() in ("sip", "sips", "tel"):
        return parse_uri(text)
    if not colon or not rest or not _SCHEME.match(scheme) or re.search(r"[\s<>\"]", rest):
        raise SipSyntaxError("not a URI")
    return OtherUri(scheme=scheme.lower(), text=text)


@dataclass(frozen=True, slots=True)
class NameAddr:
    """A From/To/Contact/P-Asserted-Identity value: display name, URI, header params."""

    uri: Uri
    display: str | None = None
    params: dict[str, str] = field(default_factory=dict)

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")


def parse_name_addr(text: str) -> NameAddr:
    """``"Name" <uri>;tag=x``, ``Name <uri>`` or a bare ``uri;tag=x`` (RFC 3261 §20.10:
    without angle brackets, parameters after the URI belong to the header, and a URI
    holding a comma, question mark or semicolon must be in brackets). A display name is
    a quoted string or tokens (§25.1); no space inside the brackets (RFC 4475
    §3.1.2.14). Control characters a quoted name may escape are dropped."""
    text = text.strip()
    display: str | None = None
    if text.startswith('"'):
        end = _closing_quote(text)
        display = _CONTROL.sub("", re.sub(r"\\(.)", r"\1", text[1:end], flags=re.S)) or None
        rest = text[end + 1 :].lstrip()
        if not rest.startswith("<"):
            raise SipSyntaxError("a quoted display name without <uri>")
    elif "<" in text:
        head, _, tail = text.partition("<")
        words = head.split()
        if not all(_NAME_WORD.match(w) for w in words):
            raise SipSyntaxError("bad display name")
        display = " ".join(words) or None
        rest = "<" + tail
    else:
        uri_text, _, params = text.partition(";")
        if re.search(r"[?,]", uri_text):
            raise SipSyntaxError("a URI with ? or , must be enclosed in <>")
        params = ";" + params if params else ""
        return NameAddr(uri=parse_any_uri(uri_text), params=parse_params(params))
    uri_text, close, params = rest[1:].partition(">")
    if not close:
        raise SipSyntaxError("unclosed <")
    if uri_text != uri_text.strip():
        raise SipSyntaxError("space inside <>")
    params = params.strip()
    if params and not params.startswith(";"):
        raise SipSyntaxError("text after >")
    return NameAddr(uri=parse_any_uri(uri_text), display=display, params=parse_params(params))


# a token (§25.1), leniently with UTF-8 letters (phones send unquoted accented names);
# separators such as "," stay refused (RFC 4475 §3.1.2.15)
_NAME_WORD = re.compile(r"^[^\x00-\x20\x7f\"(),/:;<=>?@\[\\\]{}]+$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _closing_quote(text: str) -> int:
    """The index of the quote closing the quoted string ``text`` starts with."""
    i = 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == '"':
            return i
        i += 1
    raise SipSyntaxError("unterminated quoted string")


def phone_of(uri: Uri, region: str, *, local_region: str | None = None) -> str | None:
    """The E.164 number a URI names, or None.

    ``tel:`` URIs: global; local with a ``phone-context`` that is itself a global number
    prefix; local without any ``phone-context`` (gateways omit it), read in
    ``local_region`` (default ``region``). ``sip:`` URIs whose user part is a telephone
    number, with or without ``user=phone`` (trunks often omit it): ``+`` numbers
    anywhere, national numbers read in ``region`` (the account's default). Visual
    separators are ignored.
    """
    if isinstance(uri, OtherUri):
        return None
    if isinstance(uri, TelUri):
        raw = _VISUAL.sub("", uri.number)
        if not raw.startswith("+"):
            if "phone-context" not in uri.params:
                return _valid(raw, local_region or region)
            context = uri.params["phone-context"]
            if not context.startswith("+"):
                return None  # a private numbering plan: no E.164 form
            raw = _VISUAL.sub("", context) + raw
        return _valid(raw, region)
    if uri.user is None:
        return None
    user = uri.user.partition(";")[0]  # telephone-subscriber params (;isub=, ;ext=)
    raw = _VISUAL.sub("", user)
    if not re.fullmatch(r"\+?\d{3,17}", raw):
        return None
    return _valid(raw, region)


def _valid(raw: str, region: str) -> str | None:
    try:
        number = phonenumbers.parse(raw, None if raw.startswith("+") else region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))
