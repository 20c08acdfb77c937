"""Realistic webhook bodies for ``deskbridge simulate messenger`` and tests."""

from __future__ import annotations

from deskbridge.adapters.meta import simulate

__all__ = ["sample_message"]


def sample_message(text: str, *, page_id: str, psid: str, mid: str, timestamp_ms: int) -> bytes:
    """A one-entry ``page`` webhook carrying one text message from ``psid`` to the Page,
    as Meta would POST it (JSON bytes; sign it with ``adapters.meta.sign``)."""
    return simulate.sample_message(
        text, product="page", owner=page_id, sender=psid, mid=mid, timestamp_ms=timestamp_ms
    )
