"""Routing rules: an account's ordered list of conditions → desk fields.

Every rule whose conditions all hold fires, in order: tags accumulate; a scalar field
(priority, group, form) and each custom field take the value of the *first* rule that
sets it, so earlier rules win; ``stop: true`` ends the evaluation. ``explain`` tells for
each rule which condition held or failed (``deskbridge route --explain``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from deskbridge.schemas import Channel

__all__ = ["Actions", "Conditions", "Decision", "Facts", "Rule", "evaluate"]

Priority = Literal["low", "normal", "high", "urgent"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Conditions(_Model):
    """All given conditions must hold; a list holds when any of its values matches."""

    channel: list[Channel] | None = None
    language: list[str] | None = None
    country: list[str] | None = None
    time_zone: list[str] | None = None
    vip: bool | None = None
    tags: list[str] | None = None
    """Any of these tags (from keyword rules or VIP)."""
    text: str | None = None
    """A regex searched in the message text, case-insensitive."""
    business_hours: Literal["open", "closed"] | None = None

    @field_validator("text")
    @classmethod
    def _regex(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as exc:
                raise ValueError(f"not a valid regex: {exc}") from None
        return v

    @field_validator("language", "country")
    @classmethod
    def _codes(cls, v: list[str] | None) -> list[str] | None:
        return [c.lower() for c in v] if v is not None else None


class Actions(_Model):
    tags: list[str] = Field(default_factory=list)
    priority: Priority | None = None
    group: str | None = None
    """The desk's group (Zendesk group id, Intercom team id, Udesk agent group name)."""
    custom_fields: dict[str, str] = Field(default_factory=dict)
    form: str | None = None
    """Zendesk ticket form id."""
    stop: bool = False


class Rule(_Model):
    name: str = Field(min_length=1, max_length=100)
    when: Conditions = Conditions()
    then: Actions


@dataclass(frozen=True, slots=True)
class Facts:
    """What the rules look at, from one message and its enrichment."""

    channel: Channel
    text: str = ""
    language: str | None = None
    country: str | None = None
    time_zone: str | None = None
    vip: bool = False
    tags: tuple[str, ...] = ()
    open: bool | None = None
    """Within business hours (None: the account has none)."""


@dataclass
class Decision:
    tags: list[str] = field(default_factory=list)
    priority: Priority | None = None
    group: str | None = None
    custom_fields: dict[str, str] = field(default_factory=dict)
    form: str | None = None
    fired: list[str] = field(default_factory=list)
    trace: list[tuple[str, bool, list[str]]] = field(default_factory=list)
    """Per rule: its name, whether it fired, and why (each condition's verdict)."""

    def explain(self) -> str:
        lines = []
        for name, fired, why in self.trace:
            lines.append(f"{'FIRED' if fired else 'skipped'}  {name}: {'; '.join(why) or 'always'}")
        return "\n".join(lines)


def _check(cond: Conditions, facts: Facts) -> tuple[bool, list[str]]:
    why: list[str] = []
    ok = True

    def test(name: str, holds: bool, shown: object) -> None:
        nonlocal ok
        why.append(f"{name} {'=' if holds else '!='} {shown}")
        ok = ok and holds

    if cond.channel is not None:
        test("channel", facts.channel in cond.channel, [c.value for c in cond.channel])
    if cond.language is not None:
        test("language", (facts.language or "") in cond.language, cond.language)
    if cond.country is not None:
        test("country", (facts.country or "").lower() in cond.country, cond.country)
    if cond.time_zone is not None:
        test("time_zone", (facts.time_zone or "") in cond.time_zone, cond.time_zone)
    if cond.vip is not None:
        test("vip", facts.vip is cond.vip, cond.vip)
    if cond.tags is not None:
        test("tags", bool(set(cond.tags) & set(facts.tags)), cond.tags)
    if cond.text is not None:
        test("text", re.search(cond.text, facts.text, re.IGNORECASE) is not None, cond.text)
    if cond.business_hours is not None:
        state = None if facts.open is None else ("open" if facts.open else "closed")
        test("business_hours", state == cond.business_hours, cond.business_hours)
    return ok, why


def evaluate(rules: list[Rule], facts: Facts, *, base_tags: tuple[str, ...] = ()) -> Decision:
    decision = Decision(tags=list(base_tags))
    for rule in rules:
        fired, why = _check(rule.when, facts)
        decision.trace.append((rule.name, fired, why))
        if not fired:
            continue
        decision.fired.append(rule.name)
        act = rule.then
        decision.tags += [t for t in act.tags if t not in decision.tags]
        decision.priority = decision.priority or act.priority
        decision.group = decision.group or act.group
        decision.form = decision.form or act.form
        for k, v in act.custom_fields.items():
            decision.custom_fields.setdefault(k, v)
        if act.stop:
            break
    return decision
