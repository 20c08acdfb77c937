"""Raw RFC 5322 / MIME mail to a normalized :class:`ParsedMail` (pure: bytes in, no I/O).

The one parser behind the SMTP listener and the raw-MIME webhooks (Mailgun ``mime``
routes, SendGrid raw mode, Postmark). Follows RFC 5322 (headers), RFC 2045-2049 (MIME),
RFC 2047 (encoded words), RFC 2231 (parameters), RFC 3464 (delivery status), RFC 3834
(auto-replies) and RFC 8601 (Authentication-Results); parsing is the stdlib ``email``
package with its modern policy. Mail is parsed as far as it goes: only bytes that are no
mail at all raise :class:`~deskbridge.errors.PayloadInvalid`.

Part references are IMAP-style section numbers (RFC 3501 §6.4.5): the body of a
single-part mail is ``1``; children of a multipart are ``1``, ``2`` ... and their
children ``2.1``; a ``message/rfc822`` part at ``P`` holds its message's parts at
``P.1``, ``P.2`` .... :func:`part_content` resolves a reference against the stored raw mail.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.header import decode_header, make_header
from email.message import Message as MimePart
from email.parser import BytesParser, HeaderParser
from email.utils import parseaddr, parsedate_to_datetime
from typing import Literal

from charset_normalizer import from_bytes
from inscriptis import get_text  # type: ignore[import-untyped]  # ships no py.typed

from deskbridge.adapters.email.auth import authenticate
from deskbridge.adapters.email.quotes import render_quote_strip
from deskbridge.errors import PayloadInvalid
from deskbridge.schemas import Attachment, AttachmentKind, Channel, Identity, Message, Sender

__all__ = [
    "UNKNOWN_SENDER",
    "MailKind",
    "ParsedMail",
    "is_our_message_id",
    "normalize_address",
    "parse_mail",
    "part_content",
]

MailKind = Literal["message", "auto_reply", "bounce", "own"]

FORWARD_MARKER = "---------- Forwarded message ----------"
UNKNOWN_SENDER = "unknown-sender"
"""The prefix of the sender id of a mail whose From names no usable address."""

# Our own outbound Message-IDs (receiver.message_id_for): ``t.<token>.<unique>@<domain>``.
_OUR_ID = re.compile(r"^t\.[A-Za-z0-9]{16,64}\.[A-Za-z0-9]+@(.+)$")
# The modern policy gives up on these (an unquoted boundary holding "=", as Outlook
# Express and JavaMail write it): the compat parser reads the structure instead.
_STRUCTURE_DEFECTS = ("StartBoundaryNotFoundDefect", "MultipartInvariantViolationDefect")

# Labels mail software writes for charsets whose real encoding is a superset (WHATWG
# Encoding Standard practice): decoding with the superset never loses characters.
_CHARSET_ALIASES = {
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "euc-cn": "gb18030",
    "cp936": "gb18030",
    "ks_c_5601-1987": "cp949",
    "ks_c_5601": "cp949",
    "euc-kr": "cp949",
    "shift_jis": "cp932",
    "shift-jis": "cp932",
    "sjis": "cp932",
    "x-sjis": "cp932",
    "iso-2022-jp": "iso2022_jp_ext",
    "big5": "big5hkscs",
    "iso-8859-1": "cp1252",
    "latin1": "cp1252",
    "us-ascii": "utf-8",
    "ascii": "utf-8",
    "unicode-1-1-utf-7": "utf-7",
}

_TOKEN = re.compile(r"[A-Za-z0-9]{16,64}")
_SUBJECT_TOKEN = re.compile(r"\[#([A-Za-z0-9]{16,64})\]")
_MSGID = re.compile(r"<\s*([^<>\s]+)\s*>")
_OOO_SUBJECTS = (
    "out of office",
    "automatic reply",
    "auto reply",
    "auto-reply",
    "autoreply",
    "abwesenheitsnotiz",
    "automatische antwort",
    "réponse automatique",
    "absence du bureau",
    "respuesta automática",
    "fuera de la oficina",
    "自動応答",
    "自動返信",
    "不在",
)
_SURROGATES = re.compile("[\ud800-\udfff]")
_DETECT_MIN = 32


@dataclass(frozen=True, slots=True)
class ParsedMail:
    """A parsed mail. ``message`` is None only for a mail with no header naming a sender
    at all; a From without a usable address gives a message from an unknown sender
    (``sender_known`` False). ``kind`` tells the caller whether to ingest it (``message``)
    or what it is instead."""

    kind: MailKind
    message: Message | None
    subject: str
    message_id: str | None
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    reply_to_token: str | None
    full_text: str
    html: str | None
    authenticated: bool
    auth_detail: str
    bounced_message_id: str | None = None
    bounce_reason: str | None = None
    recipients: tuple[str, ...] = field(default=())
    """Normalized To, Cc and Delivered-To addresses (for routing to an account)."""
    sender_known: bool = True


# --- text helpers ---------------------------------------------------------------------


def _clean(text: str) -> str:
    """Text safe to store: surrogate-escaped raw bytes (8-bit headers) read as UTF-8."""
    if not _SURROGATES.search(text):
        return text
    try:
        return _guess(text.encode("utf-8", "surrogateescape"))
    except UnicodeError:
        return _SURROGATES.sub("\ufffd", text)


def _guess(data: bytes) -> str:
    """Unlabelled (or mislabelled US-ASCII) 8-bit text: UTF-8 when it is, else what
    charset-normalizer finds, else Windows-1252 (what such mail nearly always is)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    # short strings (a header's name) and UTF-16/32 guesses are noise: mail is 8-bit
    results = list(from_bytes(data[:65536])) if len(data) >= _DETECT_MIN else []
    results = [r for r in results if not r.encoding.startswith(("utf_16", "utf_32"))]
    if results:
        best = results[0]
        tied = [r.encoding for r in results if r.chaos <= best.chaos + 0.001]
        # Latin code pages often tie on short text: Windows-1252 is what such mail is
        encoding = "cp1252" if "cp1252" in tied else best.encoding
        try:
            return data.decode(encoding, "replace")
        except (LookupError, ValueError):
            pass
    return data.decode("cp1252", "replace")


def _decode_bytes(data: bytes, charset: str | None) -> str:
    label = (charset or "").strip().strip('"').lower()
    if label in ("", "us-ascii", "ascii") and not data.isascii():
        return _clean(_guess(data))
    label = label or "utf-8"
    codec = _CHARSET_ALIASES.get(label, label)
    try:
        return _clean(data.decode(codec, "replace"))
    except (LookupError, ValueError):
        # Unknown labels: UTF-8 when it is, else Windows-1252 (what unlabelled mail
        # nearly always is); neither can fail with "replace".
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return data.decode("cp1252", "replace")


def _decode_words(value: str) -> str:
    """RFC 2047 words the policy left encoded (inside parameters, or on a parse error)."""
    if "=?" not in value:
        return value
    try:
        return str(make_header(decode_header(value)))
    except (LookupError, ValueError, UnicodeError, AssertionError):
        return value


def _html_text(html: str) -> str:
    try:
        text = get_text(html)
    except Exception:  # lxml raises a zoo of errors on hostile markup
        text = re.sub(r"<[^>]*>", " ", html)
    return str(text).strip()


# --- headers --------------------------------------------------------------------------


def _headers(msg: MimePart, name: str) -> list[str]:
    """Every value of header ``name``, unfolded and decoded; never raises."""
    try:
        values = [str(v) for v in msg.get_all(name, [])]
    except Exception:  # the header parser fails on some malformed values
        values = []
    if not values or any("\ufffd" in v for v in values):
        # unparseable, or raw 8-bit the policy blanked out: read the bytes as written
        raw = [v for k, v in msg.raw_items() if k.lower() == name.lower()]
        values = [_decode_words(str(v)) for v in raw] or values
    return [_clean(re.sub(r"\r?\n[ \t]*", " ", v)).strip() for v in values]


def _header(msg: MimePart, name: str) -> str:
    values = _headers(msg, name)
    return values[0] if values else ""


def _msg_ids(value: str) -> tuple[str, ...]:
    return tuple(_MSGID.findall(value))


def _msg_id(value: str) -> str | None:
    ids = _msg_ids(value)
    if ids:
        return ids[0]
    bare = value.strip()
    return bare if bare and " " not in bare else None


def normalize_address(address: str) -> str | None:
    """Lower-cased ``local@domain`` with an IDNA (punycode) domain, or None if ``address``
    is not one. Local parts are lower-cased too: RFC 5321 lets them be case-sensitive,
    but no mail provider treats them so, and one person must be one identity."""
    local, at, domain = address.strip().strip("<>").rpartition("@")
    if not at or not local or not domain or any(c.isspace() for c in address.strip()):
        return None
    domain = domain.rstrip(".").lower()
    try:
        domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        if not domain.isascii():
            return None
    return f"{local.lower()}@{domain}"


def _addresses(msg: MimePart, name: str) -> list[tuple[str, str, str]]:
    """(display name, normalized address, address as written) of each address in ``name``."""
    found: list[tuple[str, str, str]] = []
    try:
        for value in msg.get_all(name, []):
            for addr in getattr(value, "addresses", ()):
                spec = _clean(str(addr.addr_spec))
                norm = normalize_address(spec)
                if norm:
                    found.append((_clean(str(addr.display_name)), norm, spec))
    except Exception:  # noqa: S110  # fall back to the lenient parser below
        pass
    if not found:
        for raw in _headers(msg, name):
            display, spec = parseaddr(raw)
            norm = normalize_address(spec)
            if norm:
                found.append((display, norm, spec))
    return found


def _date(msg: MimePart, fallback: datetime) -> datetime:
    raw = _header(msg, "Date")
    try:
        parsed = parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError, OverflowError):
        return fallback
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def _domain(address: str) -> str:
    return address.rpartition("@")[2]


def _in_domains(domain: str, domains: frozenset[str]) -> bool:
    domain = domain.lower().rstrip(".")
    return any(domain == d or domain.endswith("." + d) for d in (x.lower() for x in domains))


# --- the body walk --------------------------------------------------------------------


@dataclass(slots=True)
class _Body:
    plain: list[str] = field(default_factory=list)
    html: list[str] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    reports: list[MimePart] = field(default_factory=list)
    original_headers: list[MimePart] = field(default_factory=list)


def _raw_payload(part: MimePart) -> object:
    try:
        return part.get_payload()
    except Exception:  # e.g. a NUL in the charset parameter
        return None


def _children(part: MimePart) -> list[MimePart]:
    payload = _raw_payload(part)
    if isinstance(payload, list):
        return [p for p in payload if isinstance(p, MimePart)]
    return []


def _payload_bytes(part: MimePart) -> bytes:
    try:
        data = part.get_payload(decode=True)
    except Exception:  # broken transfer encodings
        data = None
    if isinstance(data, bytes):
        return data
    raw = _raw_payload(part)
    return raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else b""


def _text_of(part: MimePart) -> str:
    try:
        charset = part.get_content_charset()
    except Exception:  # malformed parameters: decode as unlabelled
        charset = None
    return _decode_bytes(_payload_bytes(part), charset)


def _is_attachment(part: MimePart) -> bool:
    try:
        disposition = part.get_content_disposition() or ""
    except Exception:  # malformed parameters: not marked as an attachment
        disposition = ""
    return disposition.lower() == "attachment"


def _kind(mime_type: str) -> AttachmentKind:
    major = mime_type.partition("/")[0]
    if major in ("image", "audio", "video"):
        return major  # type: ignore[return-value]  # the three majors are AttachmentKinds
    return "document"


def _raw_param(part: MimePart, header: str, param: str) -> str | None:
    """An unquoted, non-RFC 2231 parameter value as written, up to the next ``;``: real
    clients write ``name=This is a test.txt`` and ``name==?utf-8?B?...?=``, which the
    header parsers cut at the first space or ``=``."""
    for key, value in part.raw_items():
        if key.lower() != header:
            continue
        unfolded = re.sub(r"\r?\n[ \t]*", " ", str(value))
        found = re.search(rf"(?:^|;)\s*{param}\s*=\s*([^\";][^;]*)", unfolded, re.I)
        if found:
            return found.group(1).strip() or None
    return None


def _filename(part: MimePart) -> str | None:
    raw = _raw_param(part, "content-disposition", "filename") or _raw_param(
        part, "content-type", "name"
    )
    try:
        name = raw or part.get_filename() or part.get_param("name")
    except Exception:  # malformed RFC 2231 continuations
        name = None
    if isinstance(name, tuple):  # an RFC 2231 value the policy left undecoded
        name = _decode_bytes(str(name[2]).encode("latin-1", "replace"), name[0])
    if not name:
        return None
    return _clean(_decode_words(str(name))).strip() or None


def _attachment(part: MimePart, path: str) -> Attachment:
    data = _payload_bytes(part)
    mime_type = part.get_content_type()
    ref = f"part:{path}"
    cid = _msg_id(_header(part, "Content-ID"))
    if cid:
        ref += f";cid={cid}"
    return Attachment(
        kind=_kind(mime_type),
        ref=ref,
        filename=_filename(part),
        mime_type=mime_type,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )


def _forwarded(inner: MimePart, path: str, body: _Body, depth: int) -> None:
    sub = _Body()
    # A single-part message's body is section P.1, like a multipart's first child.
    _walk(inner, path if _children(inner) else f"{path}.1", sub, depth + 1)
    lines = [FORWARD_MARKER]
    for name in ("From", "Date", "Subject", "To"):
        value = _header(inner, name)
        if value:
            lines.append(f"{name}: {value}")
    text = "\n".join(sub.plain) or "\n".join(_html_text(h) for h in sub.html)
    body.plain.append("\n".join(lines) + "\n\n" + text.strip())
    body.attachments.extend(sub.attachments)
    body.reports.extend(sub.reports)
    body.original_headers.append(inner)


def _walk(part: MimePart, path: str, body: _Body, depth: int) -> None:
    """Collect text, HTML and attachments of ``part`` at section ``path``."""
    if depth > 20:  # hostile nesting; what lies deeper is lost, not crashed on
        return
    ctype = part.get_content_type()
    children = _children(part)
    prefix = f"{path}." if path else ""
    if ctype == "message/rfc822" and children:
        _forwarded(children[0], path, body, depth)
        return
    if not children:
        leaf = path or "1"
        textual = ctype.startswith("multipart/") or ctype in ("text/plain", "text/html")
        if textual and not _is_attachment(part):
            (body.html if ctype == "text/html" else body.plain).append(_text_of(part))
            return
        if ctype in ("message/delivery-status", "message/global-delivery-status"):
            body.reports.append(part)
        if ctype in ("text/rfc822-headers", "message/rfc822-headers"):
            body.original_headers.append(HeaderParser().parsestr(_text_of(part)))
        body.attachments.append(_attachment(part, leaf))
        return
    if ctype in ("message/delivery-status", "message/global-delivery-status"):
        # The stdlib parses each status block as a header-only message.
        body.reports.extend(children)
        return
    if ctype == "multipart/alternative":
        # Text of the plain rendering when there is one; the others only add attachments.
        chosen = next(
            (i for i, c in enumerate(children) if c.get_content_type() == "text/plain"),
            len(children) - 1,
        )
        for i, child in enumerate(children):
            if i == chosen:
                _walk(child, f"{prefix}{i + 1}", body, depth + 1)
            else:
                _attachments_only(child, f"{prefix}{i + 1}", body, depth + 1)
        return
    if ctype == "multipart/related":
        _walk(children[0], f"{prefix}1", body, depth + 1)
        for i, child in enumerate(children[1:], start=2):
            _attachments_only(child, f"{prefix}{i}", body, depth + 1)
        return
    for i, child in enumerate(children, start=1):
        _walk(child, f"{prefix}{i}", body, depth + 1)


def _attachments_only(part: MimePart, path: str, body: _Body, depth: int) -> None:
    sub = _Body()
    _walk(part, path, sub, depth)
    # An HTML rendering's own text is not an attachment; its inline images are.
    body.attachments.extend(sub.attachments)
    if not body.html:
        body.html.extend(sub.html)


# --- classification -------------------------------------------------------------------


def _bounce_details(body: _Body, full_text: str) -> tuple[str | None, str | None]:
    reason = None
    for block in body.reports:
        status = _header(block, "Status")
        diagnostic = _header(block, "Diagnostic-Code")
        if status or diagnostic:
            reason = " ".join(" ".join(x.split()) for x in (status, diagnostic) if x)
            break
    original = None
    for headers in body.original_headers:
        original = _msg_id(_header(headers, "Message-ID"))
        if original:
            break
    if original is None:
        found = re.search(r"^\s*Message-ID:\s*<([^<>\s]+)>", full_text, re.I | re.M)
        original = found.group(1) if found else None
    return original, reason


def is_our_message_id(message_id: str | None, own_domains: frozenset[str]) -> bool:
    """Whether ``message_id`` is exactly one deskbridge writes on a reply (``t.<token>.
    <unique>@<one of our domains>``). A colleague's mail from our domain, or a bounce whose
    own Message-ID sits under it, is not ours."""
    found = _OUR_ID.match(message_id or "")
    if found is None:
        return False
    return found.group(1).lower().rstrip(".") in {d.lower() for d in own_domains}


def _kind_of(
    msg: MimePart,
    subject: str,
    message_id: str | None,
    sender: str | None,
    own_domains: frozenset[str],
) -> MailKind:
    """Delivery reports first (a DSN's own Message-ID may sit under our domain), then the
    loop guard (our own Message-ID exactly), then auto-replies. A null Return-Path also
    marks RFC 3834 auto-replies, so it counts as a bounce only when nothing says
    auto-reply."""
    try:
        ctype = msg.get_content_type()
        report_type = str(msg.get_param("report-type") or "").lower()
    except Exception:  # malformed Content-Type parameters
        ctype, report_type = "text/plain", ""
    if (ctype == "multipart/report" and report_type == "delivery-status") or _header(
        msg, "X-Failed-Recipients"
    ):
        return "bounce"
    if is_our_message_id(message_id, own_domains):
        return "own"
    auto = _header(msg, "Auto-Submitted").split(";")[0].strip().lower()
    precedence = _header(msg, "Precedence").lower()
    lowered = re.sub(r"^(?:(?:re|aw|fw|fwd|wg|tr|rv)\s*[:\uff1a]\s*)+", "", subject.lower().strip())
    if (
        (auto and auto != "no")
        or _headers(msg, "X-Autoreply")
        or _headers(msg, "X-Autorespond")
        or precedence in ("bulk", "junk", "list", "auto_reply")
        or lowered.startswith(_OOO_SUBJECTS)
    ):
        return "auto_reply"
    return_path = _header(msg, "Return-Path")
    if re.fullmatch(r"<\s*>", return_path) or (
        sender and sender.partition("@")[0] in ("mailer-daemon", "postmaster")
    ):
        return "bounce"
    return "message"


def _token(msg: MimePart, subject: str, own_domains: frozenset[str]) -> str | None:
    """A ticket token from a plus address on one of our domains, else from a ``[#token]``
    marker in the subject."""
    if own_domains:
        for name in ("Delivered-To", "X-Original-To", "To", "Cc"):
            for _, address, spec in _addresses(msg, name):
                # The tag as written: tokens are case-sensitive, addresses are not.
                domain = address.rpartition("@")[2]
                tag = spec.rpartition("@")[0].partition("+")[2]
                if tag and _in_domains(domain, own_domains) and _TOKEN.fullmatch(tag):
                    return tag
    found = _SUBJECT_TOKEN.search(subject)
    return found.group(1) if found else None


# --- the entry points -----------------------------------------------------------------


_HEADER_NAME = re.compile(rb"^([\x21-\x39\x3b-\x7e]+)([ \t]*):")


def _repaired(raw: bytes) -> bytes | None:
    """The header block with what stops the parser mended, or None when nothing needed it:
    whitespace before the colon (RFC 5322 §4.5.3 obsolete syntax) is dropped, and a line
    that is no header (a stray word some relays prepend) is left out."""
    found = re.search(rb"\r?\n\r?\n", raw)
    head, rest = (raw[: found.start()], raw[found.start() :]) if found else (raw, b"")
    out: list[bytes] = []
    changed = False
    for line in head.split(b"\n")[:2000]:
        name = _HEADER_NAME.match(line)
        if line[:1] in (b" ", b"\t") or (not out and line.startswith(b"From ")):
            out.append(line)
        elif name and name.group(2):
            out.append(name.group(1) + line[name.end() - 1 :])
            changed = True
        elif name:
            out.append(line)
        else:
            changed = True
    return b"\n".join(out) + rest if changed and out else None


def _parse_raw(raw: bytes) -> tuple[MimePart, bytes]:
    """The parsed mail and the bytes it was parsed from (mended headers, if they were)."""
    if not raw.strip():
        raise PayloadInvalid("empty mail")
    msg = BytesParser(policy=policy.default).parsebytes(raw)
    if not msg.keys() or any(
        type(d).__name__ == "MissingHeaderBodySeparatorDefect" for d in msg.defects
    ):
        fixed = _repaired(raw)
        if fixed is not None:
            mended = BytesParser(policy=policy.default).parsebytes(fixed)
            if len(mended.keys()) > len(msg.keys()):
                msg, raw = mended, fixed
    if not msg.keys():
        raise PayloadInvalid("no mail headers")
    return _rebound(msg, raw), raw


def _parse(raw: bytes) -> MimePart:
    return _parse_raw(raw)[0]


def _tree(msg: MimePart, raw: bytes) -> MimePart:
    tree = _structure(msg, raw)
    return tree if tree is msg else _rebound(tree, raw)


def _broken(msg: MimePart) -> bool:
    for i, part in enumerate(msg.walk()):
        if i > 500:  # hostile part counts: what the first parse read stands
            return False
        if any(type(d).__name__ in _STRUCTURE_DEFECTS for d in part.defects):
            return True
    return False


def _structure(msg: MimePart, raw: bytes) -> MimePart:
    """The part tree to walk: the modern parse, or the compat parser's where the modern
    policy failed to find the parts."""
    try:
        if not _broken(msg):
            return msg
        compat = BytesParser(policy=policy.compat32).parsebytes(raw)
    except Exception:  # best effort; the first parse stands
        return msg
    return compat if not _broken(compat) else msg


def _rebound(msg: MimePart, raw: bytes) -> MimePart:
    """A multipart whose declared boundary never occurs, reparsed with the delimiter the
    body actually uses (a common bug of hand-rolled mailers)."""
    try:
        return _reparse(msg, raw)
    except Exception:  # the repair is best effort; the first parse stands
        return msg


def _reparse(msg: MimePart, raw: bytes) -> MimePart:
    payload = _raw_payload(msg)
    if not msg.get_content_type().startswith("multipart/") or not isinstance(payload, str):
        return msg
    found = re.search(r"^--([0-9A-Za-z'()+_,./:=?-]{1,70})[ \t]*\r?$", payload, re.MULTILINE)
    declared = msg.get_boundary()
    actual = found.group(1).removesuffix("--") if found else ""
    if not actual or actual == declared:
        return msg
    head, sep, body = raw.partition(b"\r\n\r\n") if b"\r\n\r\n" in raw else raw.partition(b"\n\n")
    if not declared or not sep:
        return msg
    fixed = head.replace(declared.encode("utf-8", "surrogateescape"), actual.encode(), 1)
    compat = msg.policy is policy.compat32
    return BytesParser(policy=policy.compat32 if compat else policy.default).parsebytes(
        fixed + sep + body
    )


def parse_mail(
    raw: bytes,
    *,
    account: str,
    received_at: datetime,
    thread: str | None = None,
    trusted_authserv_ids: frozenset[str] = frozenset(),
    own_domains: frozenset[str] = frozenset(),
) -> ParsedMail:
    """Parse one raw mail. ``received_at`` stands in for a missing or unreadable Date;
    ``thread`` is the channel layer's conversation key (default: the sender address).
    Raises PayloadInvalid only for bytes with no header at all; otherwise never raises."""
    msg, raw = _parse_raw(raw)
    subject = _header(msg, "Subject")
    message_id = _msg_id(_header(msg, "Message-ID"))
    in_reply_to = _msg_ids(" ".join(_headers(msg, "In-Reply-To")))
    references = _msg_ids(" ".join(_headers(msg, "References")))

    body = _Body()
    try:
        _walk(_tree(msg, raw), "", body, 0)
    except Exception:
        # A stdlib corner we did not foresee: keep the headers, read the body as text.
        body = _Body(plain=[_decode_bytes(re.split(rb"\r?\n\r?\n", raw, maxsplit=1)[-1], None)])
    html = "\n".join(body.html) if body.html else None
    plain = "\n\n".join(t.strip("\r\n") for t in body.plain).strip()
    # Some mailers send an empty text/plain beside the real HTML.
    full_text = (plain or _html_text(html or "")).replace("\r\n", "\n")
    text = render_quote_strip(full_text)

    display, address = _sender(msg)
    kind = _kind_of(msg, subject, message_id, address, own_domains)
    authenticated, auth_detail = authenticate(
        _headers(msg, "Authentication-Results"),
        _domain(address) if address else None,
        trusted_authserv_ids,
    )
    bounced, reason = _bounce_details(body, full_text) if kind == "bounce" else (None, None)
    recipients = tuple(
        dict.fromkeys(a for n in ("To", "Cc", "Delivered-To") for _, a, _ in _addresses(msg, n))
    )
    # the attachments count only when there are some, so older keys stay what they were
    digest = hashlib.sha256(
        "\n".join(
            (
                address or "",
                _header(msg, "Date"),
                full_text,
                *(a.sha256 or "" for a in body.attachments),
            )
        ).encode("utf-8", "replace")
    ).hexdigest()
    dedup_key = message_id or f"sha256:{digest}"
    sender = _sender_of(address, display, authenticated, dedup_key)
    message = Message(
        account=account,
        channel=Channel.EMAIL,
        dedup_key=dedup_key,
        thread=thread or sender.external_id,
        occurred_at=_date(msg, received_at),
        external_id=dedup_key,
        sender=sender,
        text=text,
        attachments=tuple(body.attachments),
        reply_to=in_reply_to[0] if in_reply_to else None,
        thread_title=subject or None,
    )
    return ParsedMail(
        kind=kind,
        message=message,
        subject=subject,
        message_id=message_id,
        in_reply_to=in_reply_to,
        references=references,
        reply_to_token=_token(msg, subject, own_domains),
        full_text=full_text,
        html=html,
        authenticated=authenticated,
        auth_detail=auth_detail,
        bounced_message_id=bounced,
        bounce_reason=reason,
        recipients=recipients,
        sender_known=address is not None,
    )


def _sender(msg: MimePart) -> tuple[str, str | None]:
    """(display name, normalized address) of who wrote: From, else Sender, Reply-To, the
    mbox envelope line, a non-null Return-Path. The address is None when none is usable
    (``From: "A Name" <>``); the display name is kept then."""
    for name in ("From", "Sender", "Reply-To"):
        found = _addresses(msg, name)
        if found:
            return found[0][0], found[0][1]
    envelope = (msg.get_unixfrom() or "").removeprefix("From ").split()
    for candidate in (envelope[0] if envelope else "", _header(msg, "Return-Path")):
        address = normalize_address(candidate)
        if address:
            return "", address
    written = _header(msg, "From")
    name = parseaddr(written)[0].strip()
    if not name and not any(c in written for c in "<>@"):
        name = written.strip().strip('"').strip()  # ``From: A Name``: no address at all
    return name, None


def _sender_of(address: str | None, display: str, authenticated: bool, key: str) -> Sender:
    if address is None:
        # no address to answer or to match a person by: a sender of this mail alone
        unknown = f"{UNKNOWN_SENDER}:{hashlib.sha256(key.encode()).hexdigest()[:16]}"
        return Sender(external_id=unknown, display_name=display or None)
    identity = Identity(
        kind="email",
        value=address,
        channel=None,
        strength="strong" if authenticated else "weak",
        source="email_dmarc" if authenticated else "email_from",
    )
    return Sender(external_id=address, display_name=display or None, identities=(identity,))


def _find(part: MimePart, path: list[int]) -> MimePart | None:
    if not path:
        return part
    children = _children(part)
    if part.get_content_type() == "message/rfc822" and children:
        return _find(children[0], path)
    if not children:
        return part if path == [1] else None
    index = path[0] - 1
    return _find(children[index], path[1:]) if 0 <= index < len(children) else None


def part_content(raw: bytes, ref: str) -> tuple[bytes, str] | None:
    """(decoded bytes, content type) of the part an :class:`Attachment` ``ref`` names in
    ``raw``, or None when there is no such part. Raises PayloadInvalid like parse_mail."""
    section = ref.removeprefix("part:").partition(";")[0]
    try:
        path = [int(x) for x in section.split(".")]
    except ValueError:
        return None
    msg, raw = _parse_raw(raw)
    found = _find(_tree(msg, raw), path)
    return (_payload_bytes(found), found.get_content_type()) if found is not None else None
