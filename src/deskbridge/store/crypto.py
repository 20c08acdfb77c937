"""Encryption at rest (AES-256-GCM, a key id per record) and keyed lookup digests.

A sealed record is ``b"\\x01" + len(kid) + kid + nonce(12) + ciphertext+tag``. The Redis
key name is the associated data, so a record copied under another key does not open.
Nonces are 96 random bits per record, the standard construction for AES-GCM (a
counter-based one was tried and measured no faster in the gateway).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from deskbridge.errors import ConfigError, DeskbridgeError

__all__ = ["SealBroken", "Vault", "decode_key", "derive_lookup_key", "generate_key", "key_id"]

_VERSION = 1


class SealBroken(DeskbridgeError):
    """A stored record does not open: wrong key, unknown key id, or tampered bytes."""


def generate_key() -> str:
    """A new random 256-bit key, base64url-encoded (what ``DESKBRIDGE_ENCRYPTION_KEY`` holds)."""
    return base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")


def decode_key(text: str) -> bytes:
    """Decode a 256-bit key given as 64 hex digits or base64 (standard or url-safe, padding
    optional). Raises ``ConfigError`` for anything else."""
    text = text.strip()
    padded = text + "=" * (-len(text) % 4)
    decoders = (
        bytes.fromhex,
        lambda t: base64.urlsafe_b64decode(padded),
        lambda t: base64.b64decode(padded, validate=True),
    )
    for decode in decoders:
        try:
            key = decode(text)
        except (binascii.Error, ValueError):
            continue
        if len(key) == 32:
            return key
    raise ConfigError(
        "DESKBRIDGE_ENCRYPTION_KEY is not a 256-bit key",
        [("DESKBRIDGE_ENCRYPTION_KEY", "give 32 random bytes as base64 or 64 hex digits")],
    )


def key_id(key: bytes) -> str:
    """The id a key gets when none is given (what ``DESKBRIDGE_ENCRYPTION_KEY`` records carry)."""
    return "k" + hashlib.sha256(key).hexdigest()[:8]


def derive_lookup_key(key: bytes) -> bytes:
    """The lookup key derived from an encryption key (HKDF-SHA256), used when no lookup key
    is configured explicitly."""
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"deskbridge lookup v1"
    ).derive(key)


class Vault:
    """Seals and opens records, and computes lookup digests.

    ``keys`` maps key id → 32-byte key; ``active`` seals new records, every key opens.
    The lookup key is separate: rotating encryption keys must not orphan lookups.
    """

    def __init__(self, keys: dict[str, bytes], active: str, lookup_key: bytes) -> None:
        if active not in keys:
            raise ConfigError("the active encryption key id is not among the keys")
        self._aead = {kid: AESGCM(key) for kid, key in keys.items()}
        self._active = active
        self._sealer = self._aead[active]
        self._header = bytes((_VERSION, len(active.encode()))) + active.encode()
        # keyed once: each digest copies it (hmac.digest looked the hash up by name and
        # keyed it again on every call, ~35 % slower on the ack path's dedup digest)
        self._lookup = lookup_key
        self._mac = hmac.new(lookup_key, digestmod=hashlib.sha256)

    @classmethod
    def from_secret(cls, key: bytes, lookup_key: bytes | None = None) -> Vault:
        """One key; the key id is derived from it. Without ``lookup_key`` one is derived
        from ``key`` with HKDF (set it explicitly before you ever rotate ``key``)."""
        kid = key_id(key)
        if lookup_key is None:
            lookup_key = derive_lookup_key(key)
        return cls({kid: key}, kid, lookup_key)

    @property
    def active_id(self) -> str:
        """The id of the key new records are sealed with."""
        return self._active

    @property
    def key_ids(self) -> tuple[str, ...]:
        """Every key id this vault opens, in configuration order."""
        return tuple(self._aead)

    @staticmethod
    def record_key_id(blob: bytes) -> str | None:
        """The key id a sealed record names (None when ``blob`` is not a sealed record).
        Reads the header only: it says nothing about whether the record authenticates."""
        if len(blob) < 15 or blob[0] != _VERSION or len(blob) < 14 + blob[1]:
            return None
        try:
            return blob[2 : 2 + blob[1]].decode()
        except UnicodeDecodeError:
            return None

    def reseal(self, blob: bytes, aad: str) -> bytes:
        """``blob`` sealed again under the active key (same plaintext, same associated data).
        Raises ``SealBroken`` when it does not open."""
        return self.seal(self.open(blob, aad), aad)

    def seal(self, plaintext: bytes, aad: str) -> bytes:
        nonce = os.urandom(12)
        return self._header + nonce + self._sealer.encrypt(nonce, plaintext, aad.encode())

    def open(self, blob: bytes, aad: str) -> bytes:
        """Raises ``SealBroken`` when the record cannot be authenticated."""
        if len(blob) < 2 or blob[0] != _VERSION:
            raise SealBroken("unknown record format")
        n = blob[1]
        kid = blob[2 : 2 + n].decode(errors="replace")
        aead = self._aead.get(kid)
        if aead is None:
            raise SealBroken(f"record sealed with unknown key id {kid}")
        nonce = blob[2 + n : 14 + n]
        try:
            return aead.decrypt(nonce, blob[14 + n :], aad.encode())
        except Exception as exc:  # cryptography raises InvalidTag
            raise SealBroken("record does not authenticate") from exc

    def digest(self, *parts: str) -> str:
        """A keyed digest for lookups by identity (hex, 128 bits). Deterministic."""
        mac = self._mac.copy()
        mac.update("\x1f".join(parts).encode())
        return mac.digest()[:16].hex()
