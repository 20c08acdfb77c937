"""The keyring: which keys seal and open records, and which one computes lookup digests.

Either one key (``DESKBRIDGE_ENCRYPTION_KEY``, a one-key keyring whose lookup key is
derived from it unless ``DESKBRIDGE_LOOKUP_KEY`` is set) or a keys file
(``DESKBRIDGE_KEYS_FILE``, YAML or JSON; format in docs/security-keys.md)::

    keys:
      - id: k2026a            # optional: default "k" + 8 hex digits of the key's SHA-256
        key: "<base64>"       # or key_file: /run/secrets/k2026a (relative to this file)
        active: true          # exactly one: it seals new records; every listed key opens
      - key: "<the old DESKBRIDGE_ENCRYPTION_KEY>"
    lookup_key_from: k1a2b3c4d  # or lookup_key / lookup_key_file (or DESKBRIDGE_LOOKUP_KEY)

Errors name the place in the file and never echo key material.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from deskbridge.errors import ConfigError
from deskbridge.store.crypto import Vault, decode_key, derive_lookup_key, key_id

__all__ = ["load_vault", "parse_keys_file"]

_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str | None = Field(default=None, pattern=_ID)
    key: str | None = Field(default=None, repr=False)
    key_file: str | None = None
    active: bool = False

    @model_validator(mode="after")
    def _one_source(self) -> _Entry:
        if (self.key is None) == (self.key_file is None):
            raise ValueError("give either key or key_file")
        return self


class _KeysFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    keys: list[_Entry] = Field(min_length=1)
    lookup_key: str | None = Field(default=None, repr=False)
    lookup_key_file: str | None = None
    lookup_key_from: str | None = Field(default=None, pattern=_ID)

    @model_validator(mode="after")
    def _one_active(self) -> _KeysFile:
        active = [e for e in self.keys if e.active]
        if len(active) != 1:
            raise ValueError(f"exactly one key must be marked active: true ({len(active)} are)")
        given = [self.lookup_key, self.lookup_key_file, self.lookup_key_from]
        if sum(x is not None for x in given) > 1:
            raise ValueError("give at most one of lookup_key, lookup_key_file, lookup_key_from")
        return self


def _read_secret(path_text: str, base: Path, where: str) -> str:
    path = Path(path_text)
    path = path if path.is_absolute() else base / path
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise ConfigError(
            "the keys file is invalid", [(where, f"cannot read {path}: {exc.strerror}")]
        ) from exc


def _decode(text: str, where: str) -> bytes:
    try:
        return decode_key(text)
    except ConfigError:
        raise ConfigError(
            "the keys file is invalid",
            [(where, "not a 256-bit key (32 random bytes as base64 or 64 hex digits)")],
        ) from None


def parse_keys_file(path: Path, *, lookup_key: str | None = None) -> Vault:
    """The vault a keys file describes (``lookup_key``: ``DESKBRIDGE_LOOKUP_KEY``, used when
    the file names no lookup key). Raises ``ConfigError`` naming each problem's place."""
    source = str(path)
    try:
        doc: Any = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(
            f"{source}: cannot read the keys file", [("(file)", exc.strerror or str(exc))]
        ) from exc
    except yaml.YAMLError:
        raise ConfigError(f"{source}: the keys file is not YAML or JSON") from None
    try:
        spec = _KeysFile.model_validate(doc)
    except ValidationError as exc:
        problems = [
            (".".join(str(p) for p in e["loc"]) or "(top)", e["msg"].removeprefix("Value error, "))
            for e in exc.errors(include_input=False, include_url=False)
        ]
        raise ConfigError(f"{source}: the keys file is invalid", problems) from None
    base = path.parent
    keys: dict[str, bytes] = {}
    active = ""
    for n, entry in enumerate(spec.keys):
        where = f"keys[{n}]"
        text = (
            entry.key if entry.key is not None else _read_secret(entry.key_file or "", base, where)
        )
        key = _decode(text, where)
        kid = entry.id or key_id(key)
        if kid in keys:
            raise ConfigError(f"{source}: the keys file is invalid", [(where, f"id {kid} twice")])
        if key in keys.values():
            raise ConfigError(
                f"{source}: the keys file is invalid", [(where, "the same key is listed twice")]
            )
        keys[kid] = key
        if entry.active:
            active = kid
    if spec.lookup_key is not None:
        lookup = _decode(spec.lookup_key, "lookup_key")
    elif spec.lookup_key_file is not None:
        lookup = _decode(
            _read_secret(spec.lookup_key_file, base, "lookup_key_file"), "lookup_key_file"
        )
    elif spec.lookup_key_from is not None:
        if spec.lookup_key_from not in keys:
            raise ConfigError(
                f"{source}: the keys file is invalid",
                [("lookup_key_from", f"no key has the id {spec.lookup_key_from}")],
            )
        lookup = derive_lookup_key(keys[spec.lookup_key_from])
    elif lookup_key is not None:
        lookup = decode_key(lookup_key)
    else:
        raise ConfigError(
            f"{source}: the keys file names no lookup key",
            [
                (
                    "lookup_key_from",
                    "an existing deployment: the id of the key it started with (its lookups "
                    "were derived from it; keep that key listed); a new one: lookup_key, "
                    "lookup_key_file or DESKBRIDGE_LOOKUP_KEY",
                )
            ],
        )
    if lookup in keys.values():
        raise ConfigError(
            f"{source}: the keys file is invalid",
            [("lookup_key", "must differ from every encryption key")],
        )
    return Vault(keys, active, lookup)


def load_vault(
    *, keys_file: Path | None, encryption_key: str | None, lookup_key: str | None
) -> Vault | None:
    """The vault of the process settings; None when neither a keys file nor a key is set.
    Raises ``ConfigError`` when both are set (which one would seal is then a guess)."""
    if keys_file is not None and encryption_key is not None:
        raise ConfigError(
            "both DESKBRIDGE_KEYS_FILE and DESKBRIDGE_ENCRYPTION_KEY are set",
            [("DESKBRIDGE_ENCRYPTION_KEY", "list that key in the keys file and unset it")],
        )
    if keys_file is not None:
        return parse_keys_file(keys_file, lookup_key=lookup_key)
    if encryption_key is None:
        return None
    lookup = decode_key(lookup_key) if lookup_key is not None else None
    return Vault.from_secret(decode_key(encryption_key), lookup)
