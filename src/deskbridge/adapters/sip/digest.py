"""Answering a digest challenge (RFC 3261 §22.2 and §22.4 on RFC 2617; SHA-256 per
RFC 8760 and RFC 7616 §3.4.1).

A 401 carries ``WWW-Authenticate`` and is answered with ``Authorization``; a 407 carries
``Proxy-Authenticate`` and is answered with ``Proxy-Authorization``. ``qop=auth`` uses a
fresh client nonce and ``nc=00000001`` (each challenge is answered once); ``auth-int``
and unknown algorithms are refused, since answering them wrongly only earns another
challenge.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from deskbridge.adapters.sip.uri import SipSyntaxError, split_commas

__all__ = ["Challenge", "authorization", "parse_challenge"]

_HASHES = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}


@dataclass(frozen=True, slots=True)
class Challenge:
    realm: str
    nonce: str
    algorithm: str = "MD5"
    """``MD5``, ``SHA-256``, or either with ``-sess``."""
    qop: tuple[str, ...] = ()
    opaque: str | None = None
    stale: bool = False


def parse_challenge(value: str) -> Challenge:
    """``Digest realm="x", nonce="y", qop="auth", algorithm=SHA-256``."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "digest":
        raise SipSyntaxError(f"unsupported authentication scheme {scheme!r}")
    fields: dict[str, str] = {}
    for part in split_commas(rest):
        name, eq, v = part.partition("=")
        if not eq:
            continue
        v = v.strip()
        if len(v) >= 2 and v[0] == v[-1] == '"':
            v = v[1:-1]
        fields[name.strip().lower()] = v
    if "realm" not in fields or "nonce" not in fields:
        raise SipSyntaxError("digest challenge without realm or nonce")
    return Challenge(
        realm=fields["realm"],
        nonce=fields["nonce"],
        algorithm=fields.get("algorithm", "MD5").upper(),
        qop=tuple(q.strip().lower() for q in fields.get("qop", "").split(",") if q.strip()),
        opaque=fields.get("opaque"),
        stale=fields.get("stale", "").lower() == "true",
    )


def _quote(v: str) -> str:
    return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'


def authorization(
    challenge: Challenge,
    *,
    method: str,
    uri: str,
    username: str,
    password: str,
    cnonce: str | None = None,
) -> str:
    """The ``Authorization``/``Proxy-Authorization`` value answering ``challenge``.
    Raises ``SipSyntaxError`` for what cannot be answered."""
    algorithm = challenge.algorithm
    base = algorithm.removesuffix("-SESS")
    if base not in _HASHES:
        raise SipSyntaxError(f"unsupported digest algorithm {algorithm}")
    if challenge.qop and "auth" not in challenge.qop:
        raise SipSyntaxError("digest challenge offers only qop=auth-int")
    new = _HASHES[base]

    def h(text: str) -> str:
        return new(text.encode()).hexdigest()

    qop = "auth" if challenge.qop else None
    nc = "00000001"
    cnonce = cnonce or secrets.token_hex(8)
    ha1 = h(f"{username}:{challenge.realm}:{password}")
    if algorithm.endswith("-SESS"):
        ha1 = h(f"{ha1}:{challenge.nonce}:{cnonce}")
    ha2 = h(f"{method}:{uri}")
    if qop:
        response = h(f"{ha1}:{challenge.nonce}:{nc}:{cnonce}:{qop}:{ha2}")
    else:
        response = h(f"{ha1}:{challenge.nonce}:{ha2}")
    parts = [
        f"username={_quote(username)}",
        f"realm={_quote(challenge.realm)}",
        f"nonce={_quote(challenge.nonce)}",
        f"uri={_quote(uri)}",
        f"response={_quote(response)}",
        f"algorithm={algorithm}",
    ]
    if challenge.opaque is not None:
        parts.append(f"opaque={_quote(challenge.opaque)}")
    if qop:
        parts += [f"qop={qop}", f"nc={nc}", f"cnonce={_quote(cnonce)}"]
    return "Digest " + ", ".join(parts)
