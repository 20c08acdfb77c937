"""Who a widget visitor is: an anonymous id the gateway signs (kept in the browser's
local storage), or a user the site vouches for with an HMAC its backend computes
(Intercom's identity verification: ``HMAC-SHA256(secret, user id or email)``, hex)."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from deskbridge.errors import SignatureInvalid

__all__ = [
    "Visitor",
    "anonymous",
    "check_file_link",
    "check_token",
    "check_upload_token",
    "file_link",
    "new_token",
    "upload_token",
    "user_hash",
    "verified",
]

_ANON = re.compile(r"v_[A-Za-z0-9_-]{22}")
_KEY = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True, slots=True)
class Visitor:
    """``id`` is the conversation's thread: ``v_…`` (anonymous) or ``u:<user id>``."""

    id: str
    verified: bool = False
    user_id: str | None = None
    email: str | None = None
    name: str | None = None
    email_verified: bool = False
    """The site signed the email itself: it was the hashed subject (no user id), or its
    own ``email_hash`` came with the user id's."""
    language: str | None = None
    """The browser's language (ISO 639-1), for routing by language."""


# Unix seconds, ASCII digits only (str.isdigit also takes "²", which int() refuses)
_EXPIRES = re.compile(r"[0-9]{1,12}")


def _sign(secret: str, value: str) -> str:
    return hmac.new(secret.encode(), value.encode(), hashlib.sha256).hexdigest()


def new_token(secret: str) -> str:
    """A fresh anonymous visitor's token: ``<id>.<signature>``."""
    vid = "v_" + secrets.token_urlsafe(16)
    return f"{vid}.{_sign(secret, vid)}"


def check_token(secret: str, token: str) -> str:
    """The visitor id a token carries. Raises ``SignatureInvalid`` for any other string."""
    vid, _, sig = token.partition(".")
    if not _ANON.fullmatch(vid) or not hmac.compare_digest(sig, _sign(secret, vid)):
        raise SignatureInvalid("webchat visitor token")
    return vid


def anonymous(secret: str, token: str | None) -> tuple[Visitor, str]:
    """The visitor of ``token`` (a new one when absent); returns it and its token.
    Raises ``SignatureInvalid`` for a forged or altered token."""
    token = token or new_token(secret)
    return Visitor(check_token(secret, token)), token


def user_hash(secret: str, user: str) -> str:
    """What the site's backend computes for ``user`` (its user id, else the email)."""
    return _sign(secret, user)


def verified(
    secret: str,
    *,
    user_hash_given: str,
    user_id: str | None,
    email: str | None,
    name: str | None,
    email_hash_given: str | None = None,
) -> Visitor:
    """A visitor the site vouches for: ``user_hash_given`` must be the HMAC of
    ``user_id`` (or of ``email`` when there is no user id). With a user id, the email is
    verified only by its own ``email_hash_given`` (the HMAC of the email): the user id's
    signature does not cover it. Raises ``SignatureInvalid``."""
    subject = user_id or email
    if not subject or len(subject) > 256:
        raise SignatureInvalid("webchat identity: no user id or email")
    if not _matches(user_hash_given, user_hash(secret, subject)):
        raise SignatureInvalid("webchat identity: user_hash")
    email_verified = user_id is None
    if user_id is not None and email and email_hash_given is not None:
        if len(email) > 256 or not _matches(email_hash_given, user_hash(secret, email)):
            raise SignatureInvalid("webchat identity: email_hash")
        email_verified = True
    return Visitor(
        id=f"u:{subject}",
        verified=True,
        user_id=user_id,
        email=email,
        name=name,
        email_verified=email_verified,
    )


def _matches(given: str, want: str) -> bool:
    """``given`` is ``want`` (lower-case hex), compared in constant time; anything that is
    not ASCII is simply no match (``compare_digest`` raises on it)."""
    return given.isascii() and hmac.compare_digest(given.lower(), want)


def _claim(*parts: str) -> str:
    # a purpose first, so no signature of one kind is valid as another
    return "\x1f".join(parts)


def upload_token(secret: str, account: str, visitor_key: str, expires: int) -> str:
    """What the socket's ``welcome`` gives the widget for its uploads: the visitor's key
    (the store's digest of their id, never the id), an expiry (Unix seconds) and their
    signature, ``<key>.<expires>.<hex>``."""
    sig = _sign(secret, _claim("upload", account, visitor_key, str(expires)))
    return f"{visitor_key}.{expires}.{sig}"


def check_upload_token(secret: str, account: str, token: str, now: float) -> str:
    """The visitor key an upload token carries. Raises ``SignatureInvalid`` for a token
    that is forged, of another account, or expired."""
    key, _, rest = token.partition(".")
    expires, _, sig = rest.partition(".")
    if not _KEY.fullmatch(key) or not _EXPIRES.fullmatch(expires):
        raise SignatureInvalid("webchat upload token")
    want = _sign(secret, _claim("upload", account, key, expires))
    if not _matches(sig, want) or int(expires) < now:
        raise SignatureInvalid("webchat upload token")
    return key


def file_link(secret: str, account: str, visitor_key: str, file_id: str, expires: int) -> str:
    """The signature of a link to a visitor's own file, valid until ``expires``."""
    return _sign(secret, _claim("file", account, visitor_key, file_id, str(expires)))


def check_file_link(
    secret: str, account: str, visitor_key: str, file_id: str, expires: str, sig: str, now: float
) -> None:
    """Raises ``SignatureInvalid`` unless ``sig`` signs this file until ``expires``,
    which has not passed."""
    if not _EXPIRES.fullmatch(expires) or int(expires) < now:
        raise SignatureInvalid("webchat file link")
    if not _matches(sig, file_link(secret, account, visitor_key, file_id, int(expires))):
        raise SignatureInvalid("webchat file link")
