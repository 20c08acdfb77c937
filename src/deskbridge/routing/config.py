"""The ``routing:`` block of an account in the accounts file.

```yaml
routing:
  languages: [en, es, de]            # detection is restricted to these
  team_language: en                  # what the agents read (translation target)
  keywords:
    - {tag: refund, pattern: "refund|money back|reembolso"}
  vip:
    phones: ["+16505551234"]
    emails: [ceo@bigcustomer.example]
    lookup_url: https://crm.internal.example/vip   # GET ?phone=&email=&contact= → {"vip": true}
  business_hours: {time_zone: Europe/Berlin, weekly: {mon: "09:00-18:00"}, holidays: [2026-12-25]}
  off_hours_ack: "Thanks! We are closed now and will answer from {next_open}."
  sla: {whatsapp: 3600, email: 86400}             # response targets in seconds, per channel
  rules:
    - name: vip first
      when: {vip: true}
      then: {priority: urgent, tags: [vip]}
```
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from deskbridge.routing.enrich import KeywordRule, supported
from deskbridge.routing.hours import BusinessHours
from deskbridge.routing.rules import Rule
from deskbridge.schemas import Channel

__all__ = ["RoutingConfig", "TranslationConfig", "VipConfig"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KeywordConfig(_Model):
    tag: str = Field(min_length=1, max_length=64)
    pattern: str

    @field_validator("pattern")
    @classmethod
    def _regex(cls, v: str) -> str:
        import re

        try:
            re.compile(v)
        except re.error as exc:
            raise ValueError(f"not a valid regex: {exc}") from None
        return v

    def rule(self) -> KeywordRule:
        return KeywordRule(self.tag, self.pattern)


class VipConfig(_Model):
    phones: list[str] = Field(default_factory=list)
    emails: list[str] = Field(default_factory=list)
    contacts: list[str] = Field(default_factory=list)
    lookup_url: str | None = Field(default=None, pattern=r"^https?://")
    """Asked ``GET {lookup_url}?phone=…&email=…&contact=…`` → ``{"vip": true|false}``."""
    lookup_timeout_seconds: float = Field(default=2.0, gt=0, le=10)
    cache_seconds: int = Field(default=3600, ge=0)


class TranslationConfig(_Model):
    """Opt-in: message text goes to this service."""

    provider: str = Field(pattern=r"^(libretranslate|deepl)$")
    base_url: str | None = Field(default=None, pattern=r"^https?://[^/\s]+")
    api_key: SecretStr | None = None
    region: str | None = None
    """Where the service processes text (``check-config`` warns when it differs from
    the account's region)."""

    @model_validator(mode="after")
    def _complete(self) -> TranslationConfig:
        if self.provider == "libretranslate" and not self.base_url:
            raise ValueError("libretranslate needs base_url (your own instance)")
        if self.provider == "deepl" and self.api_key is None:
            raise ValueError("deepl needs api_key")
        return self


class RoutingConfig(_Model):
    languages: list[str] = Field(default_factory=list)
    team_language: str | None = None
    keywords: list[KeywordConfig] = Field(default_factory=list)
    vip: VipConfig = VipConfig()
    business_hours: BusinessHours | None = None
    team_hours: dict[str, BusinessHours] = Field(default_factory=dict)
    """Business hours per language team (``es: {...}``); others use ``business_hours``."""
    off_hours_ack: str | None = Field(default=None, max_length=1000)
    """Sent once per conversation per closed period; ``{next_open}`` is replaced."""
    sla: dict[Channel, int] = Field(default_factory=dict)
    rules: list[Rule] = Field(default_factory=list)
    translation: TranslationConfig | None = None

    @field_validator("languages")
    @classmethod
    def _languages(cls, v: list[str]) -> list[str]:
        bad = [c for c in v if not supported(c)]
        if bad:
            raise ValueError(f"not ISO 639-1 languages the detector knows: {', '.join(bad)}")
        return [c.lower() for c in v]

    def hours_for(self, language: str | None) -> BusinessHours | None:
        """The hours of the team that answers ``language``."""
        if language is not None and language in self.team_hours:
            return self.team_hours[language]
        return self.business_hours

    @model_validator(mode="after")
    def _coherent(self) -> RoutingConfig:
        if self.translation is not None and not self.team_language:
            raise ValueError("translation needs team_language (what the agents read)")
        if self.off_hours_ack and self.business_hours is None and not self.team_hours:
            raise ValueError("off_hours_ack needs business_hours")
        names = [r.name for r in self.rules]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"rule names must be unique: {', '.join(dupes)}")
        uses_hours = any(r.when.business_hours is not None for r in self.rules)
        if uses_hours and self.business_hours is None and not self.team_hours:
            raise ValueError("a rule tests business_hours but none are configured")
        return self
