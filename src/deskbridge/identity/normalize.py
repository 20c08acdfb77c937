"""What an identifier is, for the identity graph: its match key, and whether it is
personal enough to merge two contacts on its own. Pure.

- Phones (already E.164 from ``phones.e164``) get a *match key* in which the known
  two-form quirks collapse, so both forms are one node: Argentina's mobile ``9`` after
  +54 (``+54 9 11 ...`` and ``+54 11 ...``), Mexico's legacy mobile ``1`` after +52, and
  Brazil's ninth digit (``+55 11 9xxxx-xxxx`` and the older ``+55 11 xxxx-xxxx``).
- A phone is personal when phonenumbers types it MOBILE, or FIXED_LINE_OR_MOBILE where
  the region cannot tell (the US, Canada...). Fixed lines, toll-free, shared-cost and
  VoIP numbers can be shared by many people: they only ever suggest a merge.
- Emails are lower-cased with the domain IDNA-encoded; nothing provider-specific
  (Gmail dots, plus tags) unless an account asks. Role mailboxes (``info@``,
  ``support@``...) are not personal.
"""

from __future__ import annotations

import re

import phonenumbers
from phonenumbers import PhoneNumberType

__all__ = [
    "ROLE_MAILBOXES",
    "email_key",
    "is_personal_email",
    "is_personal_phone",
    "phone_key",
]

ROLE_MAILBOXES = frozenset(
    {
        "admin",
        "accounts",
        "billing",
        "contact",
        "customerservice",
        "enquiries",
        "finance",
        "hello",
        "help",
        "hr",
        "info",
        "inquiries",
        "mail",
        "marketing",
        "no-reply",
        "noreply",
        "office",
        "orders",
        "postmaster",
        "sales",
        "service",
        "support",
        "team",
        "webmaster",
    }
)
_PERSONAL_TYPES = frozenset({PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE})


def phone_key(e164: str) -> str:
    """The form both spellings of one subscriber share (the key the graph indexes)."""
    digits = e164.lstrip("+")
    if digits.startswith("549") and len(digits) == 13:
        return "+54" + digits[3:]  # Argentina: mobiles dialled internationally add 9
    if digits.startswith("521") and len(digits) == 13:
        return "+52" + digits[3:]  # Mexico: the mobile 1 was dropped in 2019
    if digits.startswith("55") and len(digits) == 12 and digits[4] in "6789":
        return "+55" + digits[2:4] + "9" + digits[4:]  # Brazil: the ninth digit
    return "+" + digits


def _parse(e164: str) -> phonenumbers.PhoneNumber | None:
    try:
        return phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return None


def is_personal_phone(e164: str) -> bool:
    """Whether the number belongs to one person (a mobile), so it may merge contacts."""
    digits = e164.lstrip("+")
    forms = [e164, phone_key(e164)]
    if digits.startswith("54") and not digits.startswith("549"):
        forms.append("+549" + digits[2:])  # Argentina: the mobile form carries the 9
    for form in forms:
        number = _parse(form)
        if number is not None and phonenumbers.number_type(number) in _PERSONAL_TYPES:
            return True
    return False


def email_key(address: str) -> str | None:
    """Lower-cased, the domain in IDNA (punycode); None when it is not an address."""
    address = address.strip()
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain or re.search(r"\s", address):
        return None
    try:
        ascii_domain = domain.lower().encode("idna").decode("ascii")
    except UnicodeError:
        return None
    return f"{local.lower()}@{ascii_domain}"


def is_personal_email(key: str) -> bool:
    local = key.partition("@")[0].split("+", 1)[0]
    return local not in ROLE_MAILBOXES
