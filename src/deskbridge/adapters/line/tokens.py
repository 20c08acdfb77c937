"""Channel access tokens: the configured long-lived one, or channel access tokens v2.1
issued from a JWT assertion signed with the channel's private key.

https://developers.line.biz/en/docs/messaging-api/generate-json-web-token/ and line/line-openapi
``channel-access-token.yml`` (``POST /oauth2/v2.1/token``). LINE allows 30 live v2.1 tokens
per channel, so an issued token is shared by every process through the ``TokenCache`` and
only renewed, under its lock, shortly before it expires.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any

import httpx
from jose import jwk, jwt
from jose.exceptions import JOSEError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from deskbridge.adapters.base import TokenCache
from deskbridge.config.accounts import LineConfig
from deskbridge.errors import ConfigError, PermanentError
from deskbridge.http import classify, transport_error

__all__ = ["ASSERTION_LIFETIME", "AUDIENCE", "ChannelTokens", "cache_ttl"]

AUDIENCE = "https://api.line.me/"
ASSERTION_LIFETIME = 25 * 60
"""Seconds an assertion is valid: LINE takes at most 30 minutes; the rest absorbs clock skew."""
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
REISSUE_COOLDOWN = 600.0
"""A token this process issued less than this long ago is not dropped on a 401: something
other than the token is wrong, and issuing more would only use up the 30 live tokens."""


class _Issued(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    access_token: Annotated[str, Field(min_length=1)]
    expires_in: Annotated[int, Field(gt=0)]


def cache_ttl(expires_in: float) -> float:
    """How long to use a token that lives ``expires_in`` seconds: it is renewed a tenth of
    its life before it expires (at least an hour before, but never past half its life)."""
    margin = min(max(expires_in * 0.1, 3600.0), expires_in / 2)
    return expires_in - margin


class ChannelTokens:
    """The bearer token for one channel's API calls. ``get`` never logs or raises with a
    token or assertion in the message."""

    def __init__(
        self,
        account: str,
        config: LineConfig,
        client: httpx.AsyncClient,
        cache: TokenCache,
        *,
        api_base: str,
        clock: Callable[[], float],
    ) -> None:
        self.name = f"line:{config.channel_id}"
        self._config = config
        self._client = client
        self._cache = cache
        self._url = f"{api_base.rstrip('/')}/oauth2/v2.1/token"
        self._clock = clock
        self._static = config.access_token.get_secret_value() if config.access_token else None
        self._key: Any = None
        self._kid = ""
        if self._static is None and config.private_jwk is not None:
            self._key, self._kid = _signing_key(account, config.private_jwk.get_secret_value())
        self._issued: tuple[str, float] | None = None

    async def get(self) -> str:
        """The long-lived token, else the cached v2.1 token, else a new one (issued by one
        process while the others wait on the lock, then read it from the cache)."""
        if self._static is not None:
            return self._static
        token = await self._cache.get(self.name)
        if token:
            return token
        async with self._cache.lock(self.name):
            token = await self._cache.get(self.name)
            if token:
                return token
            token, lifetime = await self._issue()
            await self._cache.put(self.name, token, ttl=cache_ttl(lifetime))
            self._issued = (token, self._clock())
            return token

    async def rejected(self, token: str) -> bool:
        """LINE answered 401 to ``token``. True when it was a cached v2.1 token that is now
        dropped (revoked or expired early), so the next ``get`` issues a new one."""
        if self._static is not None:
            return False
        issued = self._issued
        if (
            issued is not None
            and issued[0] == token
            and self._clock() - issued[1] < REISSUE_COOLDOWN
        ):
            return False
        async with self._cache.lock(self.name):
            # Only drop it if no other process has replaced it meanwhile. The cache has
            # no delete: an empty token reads as none and lapses in a second.
            if await self._cache.get(self.name) == token:
                await self._cache.put(self.name, "", ttl=1.0)
        return True

    def assertion(self) -> str:
        """A signed JWT asking for a token that lives ``token_lifetime_seconds``."""
        now = int(self._clock())
        claims = {
            "iss": self._config.channel_id,
            "sub": self._config.channel_id,
            "aud": AUDIENCE,
            "exp": now + ASSERTION_LIFETIME,
            "token_exp": self._config.token_lifetime_seconds,
        }
        try:
            signed = jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self._kid})
        except JOSEError:
            raise PermanentError("line token issue: cannot sign the assertion") from None
        return str(signed)

    async def _issue(self) -> tuple[str, int]:
        what = "line token issue"
        form = {
            "grant_type": "client_credentials",
            "client_assertion_type": CLIENT_ASSERTION_TYPE,
            "client_assertion": self.assertion(),
        }
        try:
            response = await self._client.post(self._url, data=form)
        except httpx.HTTPError as exc:
            # `from None`: the request carries the assertion.
            raise transport_error(exc, what=what) from None
        classify(response, what=what)
        try:
            issued = _Issued.model_validate_json(response.content)
        except ValidationError:
            raise PermanentError(
                f"{what}: unexpected response", status=response.status_code
            ) from None
        return issued.access_token, issued.expires_in


def _signing_key(account: str, text: str) -> tuple[Any, str]:
    """The RS256 private key and its ``kid`` from the JWK's JSON; ``ConfigError`` (never
    quoting the key) when it is not one."""
    where = f"accounts.{account}: line private_jwk"
    try:
        data = json.loads(text)
    except ValueError:
        raise ConfigError(f"{where} is not JSON", [(where, "is not JSON")]) from None
    if not isinstance(data, dict) or not isinstance(data.get("kid"), str) or not data["kid"]:
        problem = "needs the kid the LINE console gave when the public key was registered"
        raise ConfigError(f"{where}: {problem}", [(where, problem)])
    try:
        key = jwk.construct(data, "RS256")
    except (JOSEError, ValueError, TypeError, KeyError):
        raise ConfigError(f"{where} is not an RSA key", [(where, "is not an RSA key")]) from None
    if key.is_public():
        problem = "is the public key; the private one signs"
        raise ConfigError(f"{where} {problem}", [(where, problem)])
    return key, data["kid"]
