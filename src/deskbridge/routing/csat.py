"""The ``csat:`` block of an account: a satisfaction survey on the customer's channel
after the desk reports a ticket solved (docs/csat.md), and reading the answer.

```yaml
csat:
  delay_minutes: 1440              # after the ticket is solved (default 24 h)
  period_days: 30                  # at most one survey per customer in this period
  answer_hours: 72                 # how long an answer to a survey counts
  comment_minutes: 10              # a message this soon after a bare score is its comment
  tag_prefix: csat_                # the answer tags the ticket csat_4 ("" for no tag)
  question: {en: "How did we do? 1 (bad) to 5 (great)"}   # per language, else built in
  thanks: {en: "Thank you!"}
  whatsapp_template: {name: csat_survey, language: en_US}   # outside the 24 h window
```
"""

from __future__ import annotations

import re
import unicodedata

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["CHOICES", "CsatConfig", "TemplateRef", "parse_score"]

CHOICES = ("1 ⭐", "2 ⭐⭐", "3 ⭐⭐⭐", "4 ⭐⭐⭐⭐", "5 ⭐⭐⭐⭐⭐")
"""The survey's answers: each starts with its score, so a tap (whose text comes back as
the customer's message) reads as that score, and where they are numbered lines (email,
SIP) each line's number is its score."""

_QUESTION = {
    "en": "How would you rate the help you got? Tap or reply with a number from 1 (bad) to 5 "
    "(great); add a comment after it if you like.",
    "es": "¿Cómo valoras la ayuda recibida? Responde con un número del 1 (mala) al 5 "
    "(excelente); puedes añadir un comentario.",
    "de": "Wie zufrieden sind Sie mit unserer Hilfe? Antworten Sie mit einer Zahl von 1 "
    "(schlecht) bis 5 (sehr gut), gern mit einem Kommentar.",
    "fr": "Comment évaluez-vous l'aide reçue ? Répondez par un chiffre de 1 (mauvaise) à 5 "
    "(excellente), suivi d'un commentaire si vous le souhaitez.",
    "ja": "今回のサポートはいかがでしたか。1 (悪い) から 5 (とても良い) の数字でお答えください。",
}
_THANKS = {
    "en": "Thank you for your feedback!",
    "es": "¡Gracias por tu opinión!",
    "de": "Vielen Dank für Ihr Feedback!",
    "fr": "Merci pour votre retour !",
    "ja": "ご回答ありがとうございました。",
}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TemplateRef(_Model):
    """An approved WhatsApp template whose body is the survey (its quick-reply buttons
    send the score back as text)."""

    name: str = Field(pattern=r"^[a-z0-9_]{1,512}$")
    language: str = Field(default="en_US", pattern=r"^[a-z]{2,3}(_[A-Z]{2})?$")


class CsatConfig(_Model):
    delay_minutes: float = Field(default=24 * 60, ge=0, le=14 * 24 * 60)
    period_days: float = Field(default=30, ge=0, le=365)
    """At most one survey per customer in this period (0: one per solved ticket)."""
    answer_hours: float = Field(default=72, gt=0, le=24 * 14)
    comment_minutes: float = Field(default=10, ge=0, le=24 * 60)
    """A text message this soon after a score given without a comment is that score's
    comment (0: never); later, or with files, it is filed as usual."""
    tag_prefix: str = Field(default="csat_", pattern=r"^[a-z0-9_\-]{0,40}$")
    """The answer tags the ticket ``<prefix><score>`` where the desk has tags ('' none)."""
    question: dict[str, str] = Field(default_factory=dict)
    thanks: dict[str, str] = Field(default_factory=dict)
    whatsapp_template: TemplateRef | None = None

    def question_in(self, language: str | None) -> str:
        return _pick(self.question, language) or _pick(_QUESTION, language) or _QUESTION["en"]

    def thanks_in(self, language: str | None) -> str:
        return _pick(self.thanks, language) or _pick(_THANKS, language) or _THANKS["en"]


def _pick(texts: dict[str, str], language: str | None) -> str | None:
    if language and language in texts:
        return texts[language]
    return texts.get("en")


_STARS = re.compile(r"^\s*([⭐★]{1,5})\s*(.*)$", re.DOTALL)
_NUMBER = re.compile(
    r"^\s*([1-5])(?!\d|[.,]\d)(?:\s*(?:/\s*5|out of 5|points?|stars?|⭐+))?(.*)$", re.DOTALL
)


def parse_score(text: str) -> tuple[int, str] | None:
    """A survey answer: a score 1-5 at the start (``4``, ``4/5``, ``⭐⭐⭐⭐``, a tapped
    choice, a full-width digit) and the rest as the comment; None for anything else."""
    plain = unicodedata.normalize("NFKC", text).strip()
    found = _STARS.match(plain)
    if found is not None:
        return len(found.group(1)), _comment(found.group(2))
    found = _NUMBER.match(plain)
    if found is None:
        return None
    return int(found.group(1)), _comment(found.group(2))


def _comment(rest: str) -> str:
    return rest.lstrip(" ⭐★-\u2013\u2014:,.;!").strip()
