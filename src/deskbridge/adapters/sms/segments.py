"""SMS length rules: GSM-7 or UCS-2, and how many segments a text costs.

GSM 03.38 (3GPP TS 23.038): a text of only default-alphabet characters is GSM-7, 160
septets in one message or 153 per segment of a concatenated one (the user data header
takes 7); the extension table's characters take two septets (escape + char) and a
segment never splits such a pair. Anything else makes the whole text UCS-2: 70 UTF-16
units alone, 67 per segment, a surrogate pair never split. Twilio counts the same way
(twilio.com/docs/glossary/what-sms-character-limit, .../what-is-gsm-7-character-encoding,
.../what-is-ucs-2-character-encoding).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from deskbridge.adapters.text import split_text

__all__ = ["Segments", "count", "split"]

_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_EXTENSION = frozenset("^{}\\[~]|€\f")


@dataclass(frozen=True, slots=True)
class Segments:
    encoding: Literal["GSM-7", "UCS-2"]
    count: int
    units: int
    """Septets (GSM-7) or UTF-16 code units (UCS-2)."""


def _gsm(text: str) -> bool:
    return all(c in _BASIC or c in _EXTENSION for c in text)


def count(text: str) -> Segments:
    """How ``text`` goes out: its encoding, its segments (0 for empty text) and units."""
    if _gsm(text):
        sizes = [2 if c in _EXTENSION else 1 for c in text]
        single, multi, encoding = 160, 153, "GSM-7"
    else:
        sizes = [2 if ord(c) > 0xFFFF else 1 for c in text]
        single, multi, encoding = 70, 67, "UCS-2"
    units = sum(sizes)
    if units <= single:
        return Segments(encoding, 1 if units else 0, units)  # type: ignore[arg-type]
    segments, used = 1, 0
    for size in sizes:
        if used + size > multi:  # an escape pair or surrogate pair is never split
            segments, used = segments + 1, 0
        used += size
    return Segments(encoding, segments, units)  # type: ignore[arg-type]


def split(text: str, max_segments: int) -> list[str]:
    """``text`` (stripped) in messages of at most ``max_segments`` segments each, cut at
    paragraph, line, sentence or word ends where one fits, never empty."""
    text = text.strip()
    if not text:
        return []
    out: list[str] = []
    for chunk in split_text(text, 153 * max_segments if _gsm(text) else 67 * max_segments):
        out += _fit(chunk, max_segments)
    return out


def _fit(chunk: str, max_segments: int) -> list[str]:
    if count(chunk).count <= max_segments:
        return [chunk]
    # extension characters or a UCS-2 chunk cut by GSM-7 sizes: shrink until each fits
    limit = len(chunk)
    while True:
        limit = max(2, limit * 9 // 10)
        parts = split_text(chunk, limit)
        if all(count(p).count <= max_segments for p in parts):
            return parts
