"""Splitting long replies into the chunks a channel accepts.

Lengths are counted in UTF-16 code units: channels document limits in "characters", some
count UTF-16 units (Telegram), others code points; a UTF-16 count is never below the
code-point count, so a chunk this accepts is never too long for either reading.
"""

from __future__ import annotations

import re

__all__ = ["escapes_surrogates", "numbered", "split_text", "utf16_len"]

# How a lone surrogate (text that cannot be stored or serialized) gets into a parsed
# body: a JSON \uD800-\uDFFF escape (pairs use it too, hence "may"), surrogate bytes
# that json.loads decodes with surrogatepass, or a UTF-16/32 body (NUL bytes).
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]|\x00")


def escapes_surrogates(body: bytes) -> bool:
    """Whether a JSON body may hold a lone surrogate. When False (nearly always), the
    events parsed from it serialize, so adapters skip the trial serialization."""
    # the pattern has no literal prefix, so re scans byte by byte (~9 us a KB); each of its
    # branches needs one of these, which `in` finds at memchr speed
    if b"\\u" not in body and b"\xed" not in body and b"\x00" not in body:
        return False
    return _SURROGATE_ESCAPE.search(body) is not None


# Preferred cut points, best first: paragraphs, lines, sentence ends, any whitespace.
_BOUNDARIES = (
    re.compile(r"\n[ \t]*\n\s*"),
    re.compile(r"\n\s*"),
    # CJK full stops are not followed by a space.
    re.compile(r"(?<=[.!?\u2026])\s+|(?<=[\u3002\uff01\uff1f])\s*"),
    re.compile(r"\s+"),
)


def numbered(text: str, choices: tuple[str, ...]) -> str:
    """``text`` with ``choices`` as numbered lines: how a channel without native quick
    replies offers them (the customer answers with the number or the words)."""
    lines = "\n".join(f"{i}. {c}" for i, c in enumerate(choices, 1))
    return f"{text}\n\n{lines}" if text else lines


def utf16_len(text: str) -> int:
    """Length of ``text`` in UTF-16 code units (never below its code-point count)."""
    return len(text) + sum(1 for c in text if ord(c) > 0xFFFF)


def split_text(text: str, limit: int, *, utf8: bool = False) -> list[str]:
    """``text`` in chunks of at most ``limit`` UTF-16 units (``utf8``: UTF-8 bytes, for
    protocols that count octets, like SIP), stripped, never empty.

    Cuts at the last paragraph break that fits, else line break, sentence end, whitespace,
    and only then mid-word; a cut never falls inside a character. The whitespace at a cut
    is dropped (channels strip it anyway). ``limit`` must hold any one character (2
    UTF-16 units, 4 UTF-8 bytes).
    """
    if limit < (4 if utf8 else 2):
        raise ValueError("limit must hold any one character")
    chunks: list[str] = []
    rest = text.strip()
    while rest:
        end = _fit_utf8(rest, limit) if utf8 else _fit(rest, limit)
        if end == len(rest):
            chunks.append(rest)
            break
        head_end, rest_start = _cut(rest, end)
        chunks.append(rest[:head_end].rstrip())
        rest = rest[rest_start:].lstrip()
    return chunks


def _fit(text: str, limit: int) -> int:
    """The largest ``n`` such that ``text[:n]`` is at most ``limit`` UTF-16 units."""
    units = 0
    for i, c in enumerate(text):
        units += 2 if ord(c) > 0xFFFF else 1
        if units > limit:
            return i
    return len(text)


def _fit_utf8(text: str, limit: int) -> int:
    """The largest ``n`` such that ``text[:n]`` is at most ``limit`` UTF-8 bytes."""
    size = 0
    for i, c in enumerate(text):
        o = ord(c)
        size += 1 if o < 0x80 else 2 if o < 0x800 else 3 if o < 0x10000 else 4
        if size > limit:
            return i
    return len(text)


def _cut(text: str, end: int) -> tuple[int, int]:
    # A cut in the first half of the window would make a stub message; only take one
    # there when no boundary of any kind exists further on.
    for earliest in (end // 2, 1):
        for pattern in _BOUNDARIES:
            best = None
            for m in pattern.finditer(text, 0, end + 1):
                if earliest <= m.start() <= end:
                    best = m
            if best is not None:
                return best.start(), best.end()
    return end, end
