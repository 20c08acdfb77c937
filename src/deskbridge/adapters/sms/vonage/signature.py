"""Vonage's JWTs, both ways.

Webhooks (developer.vonage.com/en/getting-started/concepts/webhooks#decoding-signed-webhooks,
"Signed webhooks" of the Messages API): every inbound-message and status webhook carries
``Authorization: Bearer <JWT>``, HS256 with the account's *signature secret*, claims
``iat`` (seconds), ``jti``, ``iss`` ("Vonage"), ``payload_hash`` (hex SHA-256 of the
body), ``api_key`` and, when an application sent it, ``application_id``. Vonage's tokens
carry no ``exp``; Vonage retries a webhook answered 429 or 5xx for 24 hours (Vonage API
support, "How long does Vonage retry inbound messages for the SMS, Messages and Dispatch
APIs?"), so the age allowed is a setting (``max_token_age_seconds``, 25 hours), and a
replay inside it is a duplicate the dedup window absorbs. The docs add that "in the rare
case of an internal error" a callback may come unsigned and that a 5xx makes Vonage try
again: an unsigned request is ``SignatureDeferred`` (503), never stored.

API calls (developer.vonage.com/en/getting-started/concepts/authentication; the official
SDKs' JWT generators, e.g. vonage-python-sdk ``vonage_jwt/jwt.py``): RS256 with the
application's private key, claims ``application_id``, ``iat``, ``jti`` and ``exp``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Mapping
from typing import Any

from jose import jwt
from jose.exceptions import ExpiredSignatureError, JWTClaimsError, JWTError

from deskbridge.adapters.payload import loads
from deskbridge.errors import SignatureDeferred, SignatureInvalid

__all__ = [
    "HEADER",
    "application_claims",
    "application_token",
    "body_hash",
    "claims",
    "sign",
    "verify",
]

HEADER = "authorization"
_ISSUER = "Vonage"
_CLOCK_SKEW = 300  # seconds a token's iat may lie in our future (clocks drift)
_APP_TOKEN_TTL = 15 * 60  # the official SDKs' default lifetime of an application JWT


def body_hash(body: bytes) -> str:
    """The ``payload_hash`` claim for ``body``: lowercase hex SHA-256."""
    return hashlib.sha256(body).hexdigest()


def claims(token: str, signature_secret: str) -> dict[str, Any]:
    """The claims of an HS256 token signed with ``signature_secret``; ``SignatureInvalid``
    for anything else (another algorithm, ``none``, a bad signature, not a JWT)."""
    try:
        decoded: dict[str, Any] = jwt.decode(
            token, signature_secret, algorithms=["HS256"], options={"verify_aud": False}
        )
    except ExpiredSignatureError:
        raise SignatureInvalid("the webhook's JWT has expired") from None
    except JWTClaimsError:
        raise SignatureInvalid("the webhook's JWT has malformed claims") from None
    except JWTError:
        raise SignatureInvalid("the webhook's JWT is not signed with our secret") from None
    return decoded


def verify(
    signature_secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    api_key: str,
    application_id: str,
    max_age: float,
    now: float,
) -> None:
    """Raise unless Vonage signed this request for this body, this account (``api_key``)
    and this application (when the token names one), ``max_age`` seconds ago at most.
    ``SignatureDeferred`` when there is no token at all."""
    scheme, _, token = headers.get(HEADER, "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise SignatureDeferred("no Bearer JWT: an unsigned Vonage webhook, asked again")
    found = claims(token.strip(), signature_secret)
    given = found.get("payload_hash")
    if not isinstance(given, str) or not _hashes(given.lower(), body):
        raise SignatureInvalid("the body is not the one the JWT's payload_hash names")
    if found.get("api_key") != api_key:
        raise SignatureInvalid("the JWT names another Vonage account (api_key)")
    app = found.get("application_id")
    if app is not None and app != application_id:
        # another application of the account posting here: its messages belong to
        # whoever owns that application, not to this account
        raise SignatureInvalid("the JWT names another Vonage application")
    issued = found.get("iat")
    if not isinstance(issued, int | float) or isinstance(issued, bool):
        raise SignatureInvalid("the JWT has no iat")
    if now - issued > max_age or issued - now > _CLOCK_SKEW:
        raise SignatureInvalid("the JWT's iat is outside the accepted window")


def _hashes(given: str, body: bytes) -> bool:
    """Whether ``given`` is the SHA-256 of ``body``: of its bytes, else of its JSON written
    compact. Vonage describes the hash as that of "the request payload" and its support
    article for the same signed webhooks of the Voice API as that of the payload "converted
    to a JSON string" with no whitespace around the properties; both name this body's
    content, never another's."""
    if hmac.compare_digest(given.encode(), body_hash(body).encode()):
        return True
    try:
        doc = loads(body)
    except (ValueError, RecursionError):
        return False
    compact = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
    return compact != body and hmac.compare_digest(given.encode(), body_hash(compact).encode())


def sign(
    signature_secret: str,
    body: bytes,
    *,
    api_key: str,
    application_id: str | None = None,
    issued_at: float | None = None,
) -> str:
    """The ``Authorization`` value Vonage sends with ``body`` (``deskbridge simulate``,
    the tests)."""
    payload: dict[str, Any] = {
        "iat": int(time.time() if issued_at is None else issued_at),
        "jti": str(uuid.uuid4()),
        "iss": _ISSUER,
        "payload_hash": body_hash(body),
        "api_key": api_key,
    }
    if application_id is not None:
        payload["application_id"] = application_id
    token: str = jwt.encode(payload, signature_secret, algorithm="HS256")
    return "Bearer " + token


def application_token(application_id: str, private_key: str, *, now: float | None = None) -> str:
    """A fresh application JWT (RS256) for one API call or media download."""
    issued = int(time.time() if now is None else now)
    payload = {
        "application_id": application_id,
        "iat": issued,
        "jti": str(uuid.uuid4()),
        "exp": issued + _APP_TOKEN_TTL,
    }
    token: str = jwt.encode(payload, private_key, algorithm="RS256")
    return token


def application_claims(token: str, private_key: str) -> dict[str, Any]:
    """The claims of an application JWT made with ``private_key`` (checked with its public
    half, as Vonage does: the sandbox's stand-in); ``SignatureInvalid`` otherwise."""
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(private_key.encode(), password=None)
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    try:
        decoded: dict[str, Any] = jwt.decode(token, public.decode(), algorithms=["RS256"])
    except JWTError:
        raise SignatureInvalid("not an application JWT of ours") from None
    return decoded
