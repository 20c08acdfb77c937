"""The ``responders:`` block of an account: a bot front desk before the human one.

```yaml
responders:
  max_bot_turns: 3                 # then a person takes over, whatever the bot says
  handoff_words: {en: [agent, human]}   # added to the built-in words of each language
  human_hours: 24                  # after a hand-off, people answer for this long
  fields: {order_number: "360001234"}   # collected field → desk custom field id
  chain:
    - type: knowledge_base
      threshold: 80                # 0-100, rapidfuzz token-set score
      file: kb.yaml                # or entries: [...] inline
    - type: http
      url: https://bot.example/deskbridge
      secret: ${BOT_SECRET}
      timeout_seconds: 5
```

Pure parts only: the configuration, the knowledge base's matching, the hand-off words,
the external responder's request signature and answer. ``flows/responders.py`` asks
them and keeps the conversation's bot session.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from rapidfuzz import fuzz, process, utils

__all__ = [
    "HANDOFF_WORDS",
    "Answer",
    "HttpResponderConfig",
    "KbEntry",
    "KnowledgeBaseConfig",
    "ResponderConfig",
    "RespondersConfig",
    "asks_for_person",
    "kb_answer",
    "parse_answer",
    "sign",
]

HANDOFF_WORDS: dict[str, tuple[str, ...]] = {
    "en": ("agent", "human", "person", "someone", "representative", "operator", "real person"),
    "de": ("mitarbeiter", "mensch", "agent", "berater", "person"),
    "es": ("agente", "humano", "persona", "asesor", "operador"),
    "fr": ("agent", "humain", "conseiller", "personne", "opérateur"),
    "it": ("operatore", "umano", "persona", "agente"),
    "pt": ("atendente", "humano", "pessoa", "agente"),
    "nl": ("medewerker", "mens", "agent"),
    "ja": ("オペレーター", "人間", "担当者"),
    "zh": ("人工", "客服", "真人"),
    "ko": ("상담원", "사람"),
    "th": ("พนักงาน", "เจ้าหน้าที่"),
}
"""Words that always reach a person, per language (matched as whole words, or as a
substring in scripts written without spaces)."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KbEntry(_Model):
    """One answer and the questions it answers, in one language."""

    language: str = Field(default="en", pattern=r"^[a-z]{2}$")
    questions: list[str] = Field(min_length=1)
    answer: str = Field(min_length=1, max_length=4000)


class KnowledgeBaseConfig(_Model):
    type: Literal["knowledge_base"]
    threshold: float = Field(default=80.0, ge=50, le=100)
    """The lowest match score (0-100) that answers; below it the next responder, or a
    person."""
    file: Path | None = None
    """A YAML list of entries (``language``, ``questions``, ``answer``)."""
    entries: list[KbEntry] = Field(default_factory=list)

    @model_validator(mode="after")
    def _load(self) -> KnowledgeBaseConfig:
        if self.file is not None:
            try:
                loaded = yaml.safe_load(self.file.read_text(encoding="utf-8")) or []
                found = [KbEntry.model_validate(e) for e in loaded]
            except (OSError, yaml.YAMLError, ValidationError, TypeError) as exc:
                raise ValueError(f"knowledge base {self.file}: {exc}") from None
            object.__setattr__(self, "entries", [*self.entries, *found])
        if not self.entries:
            raise ValueError("a knowledge base needs entries (inline or in file)")
        return self


class HttpResponderConfig(_Model):
    type: Literal["http"]
    url: str = Field(pattern=r"^https?://")
    secret: SecretStr
    """Signs each request: ``X-Deskbridge-Signature: sha256=<hex HMAC-SHA256(secret,
    timestamp + "." + body)>`` with ``X-Deskbridge-Timestamp``."""
    timeout_seconds: float = Field(default=5.0, gt=0, le=30)

    @field_validator("secret")
    @classmethod
    def _long_enough(cls, v: SecretStr) -> SecretStr:
        if len(v.get_secret_value()) < 16:
            raise ValueError("at least 16 characters")
        return v


ResponderConfig = Annotated[KnowledgeBaseConfig | HttpResponderConfig, Field(discriminator="type")]


class RespondersConfig(_Model):
    chain: list[ResponderConfig] = Field(min_length=1)
    max_bot_turns: int = Field(default=3, ge=1, le=20)
    """Bot answers in one session before a person takes over."""
    handoff_words: dict[str, list[str]] = Field(default_factory=dict)
    human_hours: float = Field(default=24.0, gt=0, le=24 * 30)
    """After a hand-off the conversation stays with people until the customer has been
    silent this long; then the bot greets the next question again."""
    fields: dict[str, str] = Field(default_factory=dict)
    """Collected field name → the desk's custom field id it fills on hand-off."""
    tags: list[str] = Field(default_factory=lambda: ["bot-handoff"])
    """Tags a handed-off ticket gets."""

    def words(self, languages: list[str]) -> tuple[str, ...]:
        """The hand-off words of ``languages`` (all built-in ones when none is given)."""
        langs = languages or sorted(HANDOFF_WORDS)
        found: list[str] = []
        for lang in langs:
            found += HANDOFF_WORDS.get(lang, ())
            found += self.handoff_words.get(lang, [])
        if not languages:
            for extra in self.handoff_words.values():
                found += extra
        return tuple(dict.fromkeys(w.lower() for w in found))


_NO_SPACES = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\u0e00-\u0e7f\uac00-\ud7af]")
"""Scripts matched within words: Japanese, Chinese and Thai (no spaces), Korean
(particles attach to the word)."""


def _plain(text: str) -> str:
    return unicodedata.normalize("NFKC", text).lower()


def asks_for_person(text: str, words: tuple[str, ...]) -> bool:
    """Whether ``text`` asks for a person: one of ``words`` as a whole word (or within
    the text for scripts written without spaces)."""
    plain = _plain(text)
    for word in words:
        if _NO_SPACES.search(word):
            if word in plain:
                return True
        elif re.search(r"(?<!\w)" + re.escape(word) + r"(?!\w)", plain):
            return True
    return False


class Answer(_Model):
    """What a responder says to one customer message. ``text`` None and ``handoff``
    False: no answer (the next responder, else a person)."""

    text: str | None = Field(default=None, max_length=4000)
    quick_replies: list[str] = Field(default_factory=list, max_length=13)
    collect: dict[str, str] = Field(default_factory=dict)
    handoff: bool = False
    source: str = ""
    """Which responder answered (``knowledge_base``, ``http``)."""

    @field_validator("collect")
    @classmethod
    def _small(cls, v: dict[str, str]) -> dict[str, str]:
        if len(v) > 20 or any(len(k) > 64 or len(x) > 500 for k, x in v.items()):
            raise ValueError("at most 20 fields, names ≤ 64 and values ≤ 500 characters")
        return v


def kb_answer(config: KnowledgeBaseConfig, text: str, language: str | None) -> Answer | None:
    """The best entry's answer when it scores at least the threshold. Entries of the
    message's language first; with no language, every entry."""
    entries = [e for e in config.entries if language is None or e.language == language]
    if not entries or not text.strip():
        return None
    choices = [(i, q) for i, e in enumerate(entries) for q in e.questions]
    best = process.extractOne(
        text,
        [q for _, q in choices],
        scorer=fuzz.token_set_ratio,
        processor=utils.default_process,
        score_cutoff=config.threshold,
    )
    if best is None:
        return None
    entry = entries[choices[best[2]][0]]
    return Answer(text=entry.answer, source="knowledge_base")


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The external responder's request signature header value."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def parse_answer(doc: Any) -> Answer:
    """An external responder's JSON answer (``reply``, ``quick_replies``, ``collect``,
    ``handoff``). Raises ``ValueError`` for anything else."""
    if not isinstance(doc, dict):
        raise ValueError("the answer is not a JSON object")
    reply = doc.get("reply")
    if reply is not None and not isinstance(reply, str):
        raise ValueError("reply: not a string")
    try:
        return Answer(
            text=reply or None,
            quick_replies=doc.get("quick_replies") or [],
            collect=doc.get("collect") or {},
            handoff=bool(doc.get("handoff", False)),
            source="http",
        )
    except ValidationError as exc:
        raise ValueError(str(exc.errors()[0]["msg"])) from None
