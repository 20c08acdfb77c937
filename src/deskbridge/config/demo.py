"""The demo account: what ``deskbridge run`` serves when there is no accounts file.

Its secrets (and, unless the environment gives one, the encryption key) are generated
once into ``demo-secrets.json`` in the data directory, mode 0600; the path is printed,
the secrets never are. The account itself is assembled from the channel registry in
``adapters/demo.py``.
"""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from deskbridge.errors import ConfigError

__all__ = ["DEMO_ACCOUNT", "read_secrets", "secrets_path", "served_origins"]

DEMO_ACCOUNT = "demo"

_LOOPBACK = ("127.0.0.1", "localhost", "::1")
_EVERY_INTERFACE = ("0.0.0.0", "::", "")  # noqa: S104 - names, not a bind
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin(scheme: str, host: str, port: int | None) -> str:
    """What a browser sends as ``Origin`` for pages at ``scheme://host:port``."""
    try:
        bracketed = f"[{host}]" if ipaddress.ip_address(host).version == 6 else host
    except ValueError:
        bracketed = host.lower()
    shown = "" if port is None or port == _DEFAULT_PORTS.get(scheme) else f":{port}"
    return f"{scheme}://{bracketed}{shown}"


def served_origins(host: str, port: int, public_url: str | None = None) -> tuple[str, ...]:
    """The origins of pages deskbridge serves when it listens on ``host:port`` (plain
    HTTP): on a loopback address or every interface, each loopback name a browser may
    use (127.0.0.1, localhost, [::1]); then ``public_url``'s, when it is set. For the
    demo widget's ``allowed_origins``: the demo page must be able to open its socket."""
    names = _LOOPBACK if host in _LOOPBACK or host in _EVERY_INTERFACE else (host,)
    found = [_origin("http", name, port) for name in names]
    if public_url:
        url = urlsplit(public_url)
        if url.scheme in _DEFAULT_PORTS and url.hostname:
            found.append(_origin(url.scheme, url.hostname, url.port))
    return tuple(dict.fromkeys(found))


def secrets_path(data_dir: Path) -> Path:
    return data_dir / "demo-secrets.json"


def read_secrets(
    data_dir: Path, makers: Mapping[str, Callable[[], Any]], *, create: bool = True
) -> dict[str, Any]:
    """The demo secrets file's content: each entry of ``makers`` makes one value, written
    on first use; entries added since (a channel's new group) are made and filled in,
    the others never remade. Raises ``ConfigError`` when the file is unreadable, or
    missing and ``create`` is false."""
    path = secrets_path(data_dir)
    if path.exists():
        try:
            stored: dict[str, Any] = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"{path}: unreadable demo secrets ({exc}); delete it to start over"
            ) from exc
        missing = [name for name in makers if name not in stored]
        if not missing:
            return stored
        stored.update({name: makers[name]() for name in missing})
    elif not create:
        raise ConfigError(f"{path} does not exist: start `deskbridge run` without a config first")
    else:
        stored = {name: make() for name, make in makers.items()}
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(stored, f, indent=2)
    os.chmod(path, 0o600)
    return stored
