"""Finding the demo instance a command is pointed at: its data directory (the demo
secrets) and its listeners, as the instance itself reports them (``GET
/sandbox/demo.json``), so that commands work from any folder and environment."""

from __future__ import annotations

from pathlib import Path

import httpx

from deskbridge.config import Settings
from deskbridge.errors import DeliveryError

__all__ = ["demo_data_dir", "demo_info"]


def demo_info(base: str) -> dict[str, str] | None:
    """What the instance at ``base`` says of itself; None when it is not a demo with its
    sandbox pages on. Raises ``DeliveryError`` when nothing answers there."""
    try:
        resp = httpx.get(f"{base.rstrip('/')}/sandbox/demo.json", timeout=10)
    except httpx.HTTPError as exc:
        raise DeliveryError(f"cannot reach the gateway at {base}: {type(exc).__name__}") from exc
    if resp.status_code != 200:
        return None
    try:
        info = resp.json()
    except ValueError:
        return None
    return {k: str(v) for k, v in info.items()} if isinstance(info, dict) else None


def demo_data_dir(base: str, settings: Settings) -> Path:
    """The data directory of the demo at ``base``, else of this environment."""
    try:
        info = demo_info(base)
    except DeliveryError:
        info = None
    return Path(info["data_dir"]) if info and "data_dir" in info else settings.data_dir
