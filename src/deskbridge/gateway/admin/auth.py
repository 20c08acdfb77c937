"""Admin API authentication: JWT bearer tokens verified with python-jose.

The algorithm is pinned by configuration, never taken from the token: HS256 with a shared
secret, or RS256/ES256 with a public key (the gateway never holds the private key). A
token must carry ``exp``, ``iat``, ``sub`` and our ``aud`` (``jti`` too, to be revocable
one by one; without it only by subject); ``iat`` may be at most
30 s ahead of our clock and ``exp - iat`` at most ``DESKBRIDGE_ADMIN_JWT_MAX_TTL``,
whatever the signature says. Its ``scope`` claim (space-separated,
as in RFC 8693) lists what it may do. ``alg: none`` and algorithm confusion (an HS256
token "signed" with the public key) fail before any signature check.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jose import jwt
from jose.exceptions import ExpiredSignatureError, JOSEError

from deskbridge.adapters.demo import demo_secrets
from deskbridge.config import AccountsFile, Settings
from deskbridge.config.demo import DEMO_ACCOUNT, secrets_path
from deskbridge.errors import ConfigError, DeskbridgeError

__all__ = [
    "ACCOUNT_SCOPE",
    "APP_SCOPE",
    "DEFAULT_MAX_TTL_S",
    "LEEWAY_S",
    "SCOPES",
    "AdminAuth",
    "Algorithm",
    "Principal",
    "TokenInvalid",
    "admin_auth",
    "demo_admin_secret",
    "mint",
]

Algorithm = Literal["HS256", "RS256", "ES256"]

SCOPES = (
    "deliveries:read",
    "deliveries:write",
    "contacts:read",
    "contacts:write",
    "audit:read",
    "tokens:write",
    "ops:read",
    "messages:write",
)
"""Every scope a route may require (``contacts:*`` are reserved for the contacts routes)."""

_MIN_SECRET_BYTES = 32
_LEEWAY_S = 30
LEEWAY_S = _LEEWAY_S
"""Clock skew allowed on ``exp`` and ``iat``, in seconds."""
DEFAULT_MAX_TTL_S = 30 * 86400


class TokenInvalid(DeskbridgeError):
    """A bearer token we refuse (401). The message is safe to show the caller."""


ACCOUNT_SCOPE = "account:"
APP_SCOPE = "app:"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the token's ``sub`` and the scopes it grants.

    Besides the route scopes, ``account:<name>`` and ``app:<name>`` entries limit what
    the token sees: with none of them it sees every account and every platform app's
    own records; with any, only the accounts and apps it names (an app's records are the
    bodies and items that named no account, kept under ``app:<name>``)."""

    sub: str
    scopes: frozenset[str]
    jti: str = ""
    issued_at: int = 0

    @property
    def limited(self) -> bool:
        """Whether the token names the accounts or apps it may see."""
        return any(s.startswith((ACCOUNT_SCOPE, APP_SCOPE)) for s in self.scopes)

    def sees(self, scope: str) -> bool:
        """Whether the token may read and act on the store scope ``scope``: an account's
        name, or ``app:<name>`` for a platform app's own records."""
        if not self.limited:
            return True
        if scope.startswith(APP_SCOPE):
            return scope in self.scopes
        return ACCOUNT_SCOPE + scope in self.scopes


def _key_algorithm(pem: str) -> Algorithm:
    """RS256 for an RSA public key (2048 bits or more), ES256 for a P-256 one."""
    try:
        key = serialization.load_pem_public_key(pem.encode())
    except ValueError as exc:
        raise ConfigError(
            "DESKBRIDGE_ADMIN_JWT_PUBLIC_KEY is not a PEM public key (give the public key, "
            "never the private one)"
        ) from exc
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise ConfigError("the admin JWT RSA key is shorter than 2048 bits")
        return "RS256"
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return "ES256"
    raise ConfigError("the admin JWT public key must be RSA (RS256) or EC P-256 (ES256)")


class AdminAuth:
    """Verifies admin tokens for one pinned algorithm, key and audience."""

    def __init__(
        self, algorithm: Algorithm, key: str, audience: str, max_ttl: int = DEFAULT_MAX_TTL_S
    ) -> None:
        self.algorithm = algorithm
        self.audience = audience
        self.max_ttl = max_ttl
        self._key = key

    @classmethod
    def from_settings(
        cls, settings: Settings, *, fallback_secret: str | None = None
    ) -> AdminAuth | None:
        """The verifier the environment configures; ``fallback_secret`` (the demo's) when it
        configures none; None when there is neither. Raises ``ConfigError``."""
        secret = settings.admin_jwt_secret.get_secret_value() if settings.admin_jwt_secret else None
        pem = settings.admin_jwt_public_key
        if settings.admin_jwt_public_key_path is not None:
            if pem is not None:
                raise ConfigError(
                    "set DESKBRIDGE_ADMIN_JWT_PUBLIC_KEY or DESKBRIDGE_ADMIN_JWT_PUBLIC_KEY_PATH, "
                    "not both"
                )
            try:
                pem = settings.admin_jwt_public_key_path.read_text()
            except OSError as exc:
                raise ConfigError(
                    f"{settings.admin_jwt_public_key_path}: cannot read the admin JWT public key "
                    f"({exc.strerror})"
                ) from exc
        if secret is not None and pem is not None:
            raise ConfigError(
                "set DESKBRIDGE_ADMIN_JWT_SECRET (HS256) or a public key (RS256/ES256), not both"
            )
        wanted = settings.admin_jwt_algorithm
        if pem is not None:
            algorithm = _key_algorithm(pem)
            if wanted is not None and wanted != algorithm:
                raise ConfigError(
                    f"DESKBRIDGE_ADMIN_JWT_ALGORITHM is {wanted} but the public key is for "
                    f"{algorithm}"
                )
            return cls(algorithm, pem, settings.admin_jwt_audience, settings.admin_jwt_max_ttl)
        secret = secret if secret is not None else fallback_secret
        if secret is None:
            if wanted is not None:
                raise ConfigError(
                    f"DESKBRIDGE_ADMIN_JWT_ALGORITHM is {wanted} but no admin JWT key is set"
                )
            return None
        if wanted not in (None, "HS256"):
            raise ConfigError(
                f"DESKBRIDGE_ADMIN_JWT_ALGORITHM is {wanted}: give a public key, not a secret"
            )
        if len(secret.encode()) < _MIN_SECRET_BYTES:
            raise ConfigError(
                f"DESKBRIDGE_ADMIN_JWT_SECRET must be at least {_MIN_SECRET_BYTES} bytes "
                "(openssl rand -base64 32)"
            )
        return cls("HS256", secret, settings.admin_jwt_audience, settings.admin_jwt_max_ttl)

    def verify(self, token: str, *, now: float | None = None) -> Principal:
        """The caller a token names (not yet checked against the denylist: see
        ``store.Revocations``). Raises ``TokenInvalid``."""
        try:
            header = jwt.get_unverified_header(token)
        except JOSEError:
            raise TokenInvalid("malformed token") from None
        # pinned: a token cannot choose its algorithm (alg none, HS256 with a public key)
        if header.get("alg") != self.algorithm:
            raise TokenInvalid(f"token algorithm must be {self.algorithm}")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._key,
                algorithms=[self.algorithm],
                audience=self.audience,
                options={
                    "require_exp": True,
                    "require_aud": True,
                    "require_sub": True,
                    "leeway": _LEEWAY_S,
                },
            )
        except ExpiredSignatureError:
            raise TokenInvalid("token expired") from None
        except JOSEError:
            raise TokenInvalid("invalid token (signature, audience or required claims)") from None
        return self._principal(claims, time.time() if now is None else now)

    def _principal(self, claims: dict[str, Any], now: float) -> Principal:
        sub, scope, jti = claims.get("sub"), claims.get("scope", ""), claims.get("jti")
        iat, exp = claims.get("iat"), claims.get("exp")
        if not isinstance(sub, str) or not sub or not isinstance(scope, str):
            raise TokenInvalid("invalid token (sub and scope must be strings)")
        if jti is not None and (not isinstance(jti, str) or not 1 <= len(jti) <= 128):
            raise TokenInvalid("invalid token (jti must be a string of 1 to 128 characters)")
        if iat is None:
            raise TokenInvalid("invalid token (no iat)")
        if not isinstance(iat, int | float) or not isinstance(exp, int | float):
            raise TokenInvalid("invalid token (iat and exp must be numbers)")
        if iat > now + _LEEWAY_S:
            raise TokenInvalid("token issued in the future (iat)")
        if exp - iat > self.max_ttl:
            raise TokenInvalid(f"token lifetime exceeds this server's maximum ({self.max_ttl} s)")
        return Principal(
            sub=sub,
            scopes=frozenset(scope.split()),
            jti=jti or "",
            issued_at=int(iat),
        )


def mint(
    key: str,
    *,
    algorithm: Algorithm,
    subject: str,
    scopes: list[str],
    ttl_seconds: int,
    audience: str,
) -> str:
    """A signed admin token: ``key`` is the HS256 secret or the PEM private key."""
    now = int(time.time())
    claims = {
        "sub": subject,
        "aud": audience,
        "iat": now,
        "exp": now + ttl_seconds,
        "jti": secrets.token_urlsafe(12),
        "scope": " ".join(scopes),
    }
    token: str = jwt.encode(claims, key, algorithm=algorithm)
    return token


def demo_admin_secret(data_dir: Path) -> str | None:
    """The demo's admin secret from its 0600 secrets file (None without the file)."""
    if not secrets_path(data_dir).exists():
        return None
    value = demo_secrets(data_dir, create=False).get("admin_jwt_secret")
    return value if isinstance(value, str) else None


def _serves_demo(settings: Settings, accounts: AccountsFile) -> bool:
    """Whether ``accounts`` is the demo account built from the data directory's secrets
    file (so a real accounts file never enables the demo's key)."""
    demo = accounts.accounts.get(DEMO_ACCOUNT)
    if demo is None or not secrets_path(settings.data_dir).exists():
        return False
    stored = demo_secrets(settings.data_dir, create=False).get("telegram", {})
    tokens = [ch.secret_token.get_secret_value() for ch in demo.channels if ch.type == "telegram"]
    expected = stored.get("secret_token") if isinstance(stored, dict) else None
    return bool(tokens) and expected is not None and secrets.compare_digest(tokens[0], expected)


def admin_auth(settings: Settings, accounts: AccountsFile) -> AdminAuth | None:
    """The admin API's verifier: from the environment, else the demo secret when the
    gateway serves the demo account, else None (the admin API answers 503)."""
    fallback = None
    if (
        settings.admin_jwt_secret is None
        and settings.admin_jwt_public_key is None
        and (settings.admin_jwt_public_key_path is None and _serves_demo(settings, accounts))
    ):
        fallback = demo_admin_secret(settings.data_dir)
    return AdminAuth.from_settings(settings, fallback_secret=fallback)
