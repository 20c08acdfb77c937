"""Realistic webhook bodies for ``deskbridge simulate instagram`` and tests."""

from __future__ import annotations

from deskbridge.adapters.meta import simulate

__all__ = ["sample_message"]


def sample_message(text: str, *, ig_id: str, igsid: str, mid: str, timestamp_ms: int) -> bytes:
    """A one-entry ``instagram`` webhook carrying one text message from ``igsid`` to the
    professional account, as Meta would POST it (JSON bytes; sign it with
    ``adapters.meta.sign``)."""
    return simulate.sample_message(
        text, product="instagram", owner=ig_id, sender=igsid, mid=mid, timestamp_ms=timestamp_ms
    )
