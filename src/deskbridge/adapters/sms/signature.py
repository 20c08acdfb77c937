"""``X-Twilio-Signature``, as Twilio documents it (twilio.com/docs/usage/webhooks/webhooks-security)
and its SDKs' request validators compute it:

- form posts: base64 of HMAC-SHA1 (key: the auth token) over the full URL Twilio
  requested, followed by every POST parameter's name and value, sorted by name (a name
  with several values: each value, sorted), with no separators;
- JSON bodies: the URL carries ``bodySHA256`` (hex SHA-256 of the raw body), and the
  signature is over the URL alone;
- a parameter given several times signs each distinct value once, sorted;
- the URL may be signed with or without its port (Twilio drops or keeps it depending on
  how the webhook was configured): as given, without the port, or with the scheme's
  default port are all accepted, as twilio-python's and twilio-php's validators do.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Sequence
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from deskbridge.errors import SignatureInvalid

__all__ = ["HEADER", "form", "sign", "url_variants", "verify"]

HEADER = "x-twilio-signature"
_DEFAULT_PORT = {"https": 443, "http": 80}


def sign(auth_token: str, url: str, params: Iterable[tuple[str, str]] = ()) -> str:
    """The signature Twilio sends for a request to ``url`` with form ``params``."""
    data = url
    by_name: dict[str, list[str]] = {}
    for name, value in params:
        by_name.setdefault(name, []).append(value)
    for name in sorted(by_name):
        # a repeated parameter: each distinct value once, sorted (as Twilio's SDKs do)
        for value in sorted(set(by_name[name])):
            data += name + value
    digest = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def url_variants(url: str) -> list[str]:
    """``url`` as given, without its port, and with its scheme's default port: the forms
    Twilio's validators accept (userinfo and the host's case kept)."""
    parts = urlsplit(url)
    default = _DEFAULT_PORT.get(parts.scheme)
    if default is None:
        return [url]
    userinfo, at, hostport = parts.netloc.rpartition("@")
    host = (
        hostport if hostport.endswith("]") or ":" not in hostport else hostport.rpartition(":")[0]
    )
    prefix = userinfo + at
    bare = urlunsplit(parts._replace(netloc=prefix + host))
    ported = urlunsplit(parts._replace(netloc=f"{prefix}{host}:{default}"))
    return list(dict.fromkeys([url, bare, ported]))


def verify(
    auth_token: str, urls: Sequence[str], body: bytes, content_type: str, given: str
) -> list[tuple[str, str]]:
    """The form parameters of a request Twilio signed (empty for a JSON body), or
    ``SignatureInvalid``. ``urls``: what the request's URL may have been. Compared in
    constant time; the JSON variant also needs the body's ``bodySHA256`` to match."""
    if not given:
        raise SignatureInvalid("missing X-Twilio-Signature")
    media = content_type.partition(";")[0].strip().lower()
    params: list[tuple[str, str]] = []
    if media == "application/x-www-form-urlencoded" or not media:
        try:
            params = form(body)
        except UnicodeDecodeError:
            raise SignatureInvalid("the form body is not UTF-8") from None
    for url in urls:
        for candidate in url_variants(url):
            if media == "application/json":
                if not _body_hash_matches(candidate, body):
                    continue
                expected = sign(auth_token, candidate)
            else:
                expected = sign(auth_token, candidate, params)
            if hmac.compare_digest(expected.encode(), given.encode()):
                return params
    raise SignatureInvalid("X-Twilio-Signature does not match")


def form(body: bytes) -> list[tuple[str, str]]:
    """The parameters of a form body, in order, blanks kept. ``UnicodeDecodeError`` when
    it is not UTF-8."""
    return parse_qsl(body.decode(), keep_blank_values=True)


def _body_hash_matches(url: str, body: bytes) -> bool:
    query = dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))
    claimed = query.get("bodySHA256", "")
    actual = hashlib.sha256(body).hexdigest()
    return bool(claimed) and hmac.compare_digest(claimed.lower().encode(), actual.encode())
