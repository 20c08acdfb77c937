"""Phone numbers to E.164 with phonenumbers. Pure; adapters use it while parsing."""

from __future__ import annotations

import re

import phonenumbers

__all__ = ["e164", "readable"]

_MIN_DIGITS = 7
_MAX_DIGITS = 17  # E.164 allows 15; a little slack for prefixes people type
_E164_MAX_DIGITS = 15


def e164(raw: str, *, international: bool = False, trusted: bool = False) -> str | None:
    """``raw`` as an E.164 number (``+`` and digits), or None.

    A number without ``+`` or ``00`` has no country to be read in: it is refused unless
    ``international`` (the platform sends international numbers without ``+``, as
    Telegram does). ``trusted`` is for a number the platform verified (a WhatsApp
    ``wa_id``): it may be merely *possible*, since libphonenumber's metadata lags new
    ranges; any other number must be *valid*. Never raises.
    """
    text = raw.strip()
    if not (international or trusted) and not text.startswith(("+", "00")):
        return None
    digits = re.sub(r"\D", "", text.removeprefix("00"))
    # the shortest numbers in use (Saint Helena: +290 and 4 digits) have 7 digits
    if not _MIN_DIGITS <= len(digits) <= _MAX_DIGITS:
        return None
    candidates = ["+" + digits]
    # [U] Mexican wa_ids often keep the old mobile "1" (521 + 10 digits); E.164 dropped it.
    if trusted and len(digits) == 13 and digits.startswith("521"):
        candidates.append("+52" + digits[3:])
    for candidate in candidates:
        try:
            number = phonenumbers.parse(candidate)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(number) or (
            trusted and phonenumbers.is_possible_number(number)
        ):
            formatted = str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))
            # a "possible" number can lose its leading zeros on the way (+98 00000):
            # what is left is too short to name anybody; libphonenumber also calls some
            # 16-digit German numbers possible, which E.164 cannot hold
            if _MIN_DIGITS <= len(formatted) - 1 <= _E164_MAX_DIGITS:
                return formatted
    return None


def readable(number: str) -> str:
    """An E.164 number as an agent reads it: ``+16505551234`` → ``+1 650 555 1234``."""
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return number
    text = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    return str(text).replace("-", " ")
