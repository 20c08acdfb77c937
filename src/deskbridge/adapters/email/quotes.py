"""Cutting quoted history off the end of an email reply.

Conservative by design: a cut happens only at a recognised reply header (Gmail and Apple
"On ... wrote:" and their German, French, Spanish and Japanese forms, Outlook's
"-----Original Message-----" or "From:/Sent:" block) or before a trailing run of ``>``
lines. Forwarded blocks are kept: what a customer forwards is new content for the desk.
A bottom-posted reply (Thunderbird's default: the attribution line and the ``>`` quote on
top, the new text below) keeps the text below the quote.
"""

from __future__ import annotations

import re

__all__ = ["render_quote_strip"]

_WROTE = re.compile(
    r"""^\s*(?:
        On\s.+(?:\s|>)wrote:                           # Gmail, Apple Mail (English)
      | Am\s.+\sschrieb.*:                              # German
      | Le\s.+\sa\s+[ée]crit\s*:                        # French
      | El\s.+\sescribi[óo]\s*:                         # Spanish
      | .+(?:のメッセージ|のメール|は書きました)\s*[:\uff1a]  # Japanese (Apple Mail, Thunderbird)
      | \d{4}年\d{1,2}月\d{1,2}日.*<[^<>\s]+@[^<>\s]+>\s*[:\uff1a]  # Japanese (Gmail)
    )\s*$""",
    re.IGNORECASE | re.VERBOSE,
)

_ORIGINAL = re.compile(
    r"^\s*-{2,}\s*(?:Original Message|Ursprüngliche Nachricht|Message d'origine"
    r"|Mensaje original|元のメッセージ|Originalnachricht)\s*-{2,}\s*$",
    re.IGNORECASE,
)

# Outlook's header block: a From line followed within three lines by a Sent line. "Date:"
# is left out on purpose: forwarded blocks use it and must survive.
_FROM = re.compile(r"^\s*\*?(?:From|Von|De|差出人)\s*\*?\s*[:\uff1a]", re.IGNORECASE)
_SENT = re.compile(
    r"^\s*\*?(?:Sent|Gesendet|Envoy[ée]|Enviado(?: el)?|送信日時)\s*\*?\s*[:\uff1a]", re.IGNORECASE
)


def _cut_line(lines: list[str]) -> int | None:
    for i, line in enumerate(lines):
        if _WROTE.match(line) or _ORIGINAL.match(line):
            return i
        # Gmail wraps a long header line: "On ... <ana@example.com>" / "wrote:".
        if (
            i + 1 < len(lines)
            and re.match(r"^\s*(?:On|Am|Le|El)\s", line)
            and _WROTE.match(f"{line.rstrip()} {lines[i + 1].strip()}")
        ):
            return i
        if _FROM.match(line) and any(_SENT.match(nxt) for nxt in lines[i + 1 : i + 4]):
            # Outlook draws a rule of underscores above the block; cut that too.
            if i > 0 and re.fullmatch(r"\s*_{8,}\s*", lines[i - 1]):
                return i - 1
            return i
    return None


def _trailing_quote(lines: list[str]) -> int | None:
    end = len(lines)
    while end > 0 and not lines[end - 1].strip():
        end -= 1
    start = end
    while start > 0 and (lines[start - 1].lstrip().startswith(">") or not lines[start - 1].strip()):
        start -= 1
    while start < end and not lines[start].strip():
        start += 1
    return start if start < end else None


def _below_quote(lines: list[str], cut: int) -> list[str]:
    """The lines after the ``>`` block that follows an attribution line at ``cut`` (a
    wrapped attribution may take two lines); none when no ``>`` block follows."""
    start = next(
        (j for j in range(cut + 1, min(cut + 4, len(lines))) if lines[j].lstrip().startswith(">")),
        None,
    )
    if start is None or (not _WROTE.match(lines[cut]) and start > cut + 2):
        return []
    i = start
    while i < len(lines) and (lines[i].lstrip().startswith(">") or not lines[i].strip()):
        i += 1
    return lines[i:]


def render_quote_strip(text: str) -> str:
    """The new text of a reply, quoted history removed. Never empty unless ``text`` is:
    when stripping would leave nothing, ``text`` comes back unchanged."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    cut = _cut_line(lines)
    if cut is not None:
        above = lines[:cut]
        below = [] if _ORIGINAL.match(lines[cut]) else _below_quote(lines, cut)
        if "".join(below).strip():
            # bottom-posted or inline: the new text sits under the quote (Thunderbird)
            parts = ("\n".join(above).strip(), render_quote_strip("\n".join(below)))
            return "\n\n".join(p for p in parts if p)
        lines = above
    quote = _trailing_quote(lines)
    if quote is not None:
        lines = lines[:quote]
    stripped = "\n".join(lines).strip()
    return stripped if stripped else text
