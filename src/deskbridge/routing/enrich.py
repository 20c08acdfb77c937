"""Enrichment of inbound messages: language, facts from the phone number and email, VIP
status and keyword tags. Pure except for the optional VIP lookup URL (``VipLookup``).

Language detection is offline (lingua), restricted to the account's languages so only
those models load, with a confidence threshold: a short or ambiguous text ("ok")
keeps the contact's previous language rather than guessing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache

import phonenumbers
from lingua import IsoCode639_1, Language, LanguageDetector, LanguageDetectorBuilder

__all__ = [
    "Enrichment",
    "KeywordRule",
    "LanguageGuess",
    "detect_language",
    "email_domain",
    "phone_facts",
    "tags_for",
]


@dataclass(frozen=True, slots=True)
class LanguageGuess:
    language: str | None
    """ISO 639-1, or None when nothing is known."""
    confidence: float
    from_prior: bool = False


@lru_cache(maxsize=32)
def _detector(languages: tuple[str, ...]) -> LanguageDetector:
    """One detector per set of languages, built once (models load lazily, per language)."""
    chosen = [Language.from_iso_code_639_1(getattr(IsoCode639_1, c.upper())) for c in languages]
    return LanguageDetectorBuilder.from_languages(*chosen).build()


def supported(code: str) -> bool:
    return hasattr(IsoCode639_1, code.upper())


def detect_language(
    text: str,
    languages: Iterable[str],
    *,
    prior: str | None = None,
    threshold: float = 0.6,
) -> LanguageGuess:
    """The language of ``text`` among ``languages`` (ISO 639-1). Below ``threshold``
    (short texts, mixed scripts) the contact's ``prior`` language is kept."""
    langs = tuple(sorted({c.lower() for c in languages if supported(c)}))
    words = re.sub(r"https?://\S+|\S+@\S+|[\d\W_]+", " ", text).strip()
    if len(langs) == 1:
        return LanguageGuess(langs[0], 1.0)
    if not langs or not words:
        return LanguageGuess(prior, 0.0, from_prior=prior is not None)
    values = _detector(langs).compute_language_confidence_values(words)
    if not values:
        return LanguageGuess(prior, 0.0, from_prior=prior is not None)
    best = values[0]
    code = best.language.iso_code_639_1.name.lower()
    if best.value < threshold:
        if prior is not None:
            return LanguageGuess(prior, best.value, from_prior=True)
        return LanguageGuess(None, best.value)
    return LanguageGuess(code, best.value)


@dataclass(frozen=True, slots=True)
class PhoneFacts:
    country: str | None
    """ISO 3166 alpha-2."""
    region: str | None
    """phonenumbers' geographic description (a city or state), in English."""
    time_zone: str | None


def phone_facts(e164: str) -> PhoneFacts:
    """Country, region and time zone of an E.164 number (None where unknown)."""
    # geodata is 0.4 s of imports: paid by the first message that asks, not by every CLI call
    from phonenumbers import geocoder, timezone

    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return PhoneFacts(None, None, None)
    country = phonenumbers.region_code_for_number(number)
    region = geocoder.description_for_number(number, "en") or None
    zones = [z for z in timezone.time_zones_for_number(number) if z != "Etc/Unknown"]
    return PhoneFacts(country or None, region, zones[0] if len(zones) == 1 else None)


def email_domain(address: str) -> str | None:
    local, at, domain = address.strip().rpartition("@")
    return domain.lower() if at and local and domain else None


@dataclass(frozen=True, slots=True)
class KeywordRule:
    """A tag for texts matching ``pattern`` (a regex, case-insensitive)."""

    tag: str
    pattern: str

    def matches(self, text: str) -> bool:
        return re.search(self.pattern, text, re.IGNORECASE) is not None


def tags_for(text: str, rules: Iterable[KeywordRule]) -> list[str]:
    seen: list[str] = []
    for rule in rules:
        if rule.tag not in seen and rule.matches(text):
            seen.append(rule.tag)
    return seen


@dataclass(frozen=True, slots=True)
class Enrichment:
    """What the gateway learnt about one message and its sender."""

    language: str | None = None
    country: str | None = None
    region: str | None = None
    time_zone: str | None = None
    email_domain: str | None = None
    vip: bool = False
    tags: tuple[str, ...] = ()
    extra: dict[str, str] = field(default_factory=dict)

    def as_attributes(self) -> dict[str, str]:
        """For the contact's attributes (what a later message may reuse as a prior)."""
        out = {
            "language": self.language,
            "country": self.country,
            "region": self.region,
            "time_zone": self.time_zone,
            "email_domain": self.email_domain,
        }
        return {k: v for k, v in out.items() if v}


Clock = Callable[[], float]
