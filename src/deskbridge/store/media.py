"""Signed, short-lived URLs for desk attachments a channel must fetch by URL.

A token is the sealed ``{account, attachment, expires}``: only deskbridge can make one,
and it names one desk attachment, so ``/media/{token}`` is never an open proxy.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Callable

from deskbridge.schemas import Attachment
from deskbridge.store.crypto import SealBroken, Vault

__all__ = ["MediaLinkError", "MediaLinks"]

_AAD = "deskbridge media link v1"


class MediaLinkError(Exception):
    """The token is malformed, forged or expired."""


class MediaLinks:
    def __init__(
        self,
        vault: Vault,
        public_url: str,
        *,
        ttl: float = 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._vault = vault
        self._base = public_url.rstrip("/")
        self._ttl = ttl
        self._clock = clock

    def url_for(self, account: str, attachment: Attachment, *, ttl: float | None = None) -> str:
        """A URL that serves ``attachment`` for ``ttl`` seconds (default: the store's)."""
        claims = {
            "a": account,
            "x": attachment.model_dump(mode="json", exclude_none=True),
            "e": int(self._clock() + (self._ttl if ttl is None else ttl)),
        }
        blob = self._vault.seal(json.dumps(claims, separators=(",", ":")).encode(), _AAD)
        token = base64.urlsafe_b64encode(blob).decode().rstrip("=")
        name = attachment.filename or "file"
        return f"{self._base}/media/{token}/{_safe(name)}"

    def video_preview_url(self) -> str:
        return f"{self._base}/media/preview/video.png"

    def open(self, token: str) -> tuple[str, Attachment]:
        """The account and attachment behind ``token``. Raises ``MediaLinkError``."""
        try:
            blob = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            claims = json.loads(self._vault.open(blob, _AAD))
        except (binascii.Error, ValueError, SealBroken) as exc:
            raise MediaLinkError("invalid media token") from exc
        if int(claims["e"]) < self._clock():
            raise MediaLinkError("media token expired")
        return str(claims["a"]), Attachment.model_validate(claims["x"])


def _safe(name: str) -> str:
    keep = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)
    return keep[:80] or "file"
