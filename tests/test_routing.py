"""Enrichment and routing rules, pure: languages, phone facts, keyword tags, rule order,
business hours across DST, midnight and holidays."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from pydantic import ValidationError

from deskbridge.routing.enrich import (
    KeywordRule,
    detect_language,
    email_domain,
    phone_facts,
    tags_for,
)
from deskbridge.routing.hours import BusinessHours
from deskbridge.routing.rules import Facts, Rule, evaluate
from deskbridge.schemas import Channel

LANGS = ["en", "es", "de", "ja", "th"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hola, ¿dónde está mi pedido? Lo compré la semana pasada.", "es"),
        ("Where is my parcel? I ordered it last week.", "en"),
        ("Wo bleibt meine Bestellung? Ich warte seit Tagen.", "de"),
        ("注文した商品がまだ届きません", "ja"),
        ("สินค้าของฉันอยู่ที่ไหน", "th"),
    ],
)
def test_languages_among_the_accounts_own(text: str, expected: str) -> None:
    guess = detect_language(text, LANGS)
    assert guess.language == expected and not guess.from_prior


def test_short_texts_keep_the_contacts_previous_language() -> None:
    guess = detect_language("ok", LANGS, prior="de")
    assert guess.language == "de" and guess.from_prior
    assert detect_language("ok 👍", LANGS).language is None
    assert detect_language("https://x.example 12345", LANGS, prior="es").language == "es"
    assert detect_language("anything", ["en"]).language == "en"  # one language: no guessing


def test_phone_and_email_facts() -> None:
    ar = phone_facts("+5491123456789")
    assert (ar.country, ar.time_zone) == ("AR", "America/Buenos_Aires")
    us = phone_facts("+16505551234")
    assert us.country == "US" and us.time_zone == "America/Los_Angeles"
    assert phone_facts("not a number").country is None
    assert email_domain("Ana@Example.COM") == "example.com"
    assert email_domain("nobody") is None


def test_keyword_tags() -> None:
    rules = [
        KeywordRule("refund", r"\b(refund|money back|reembolso)\b"),
        KeywordRule("hacked", r"\bhack(ed)?\b|\bsomeone logged in\b"),
        KeywordRule("refund", r"\bchargeback\b"),
    ]
    assert tags_for("I want a REFUND, my account was hacked", rules) == ["refund", "hacked"]
    assert tags_for("thanks", rules) == []


def rules() -> list[Rule]:
    return [
        Rule.model_validate(
            {
                "name": "vip first",
                "when": {"vip": True},
                "then": {"priority": "urgent", "tags": ["vip"], "group": "vip-desk"},
            }
        ),
        Rule.model_validate(
            {
                "name": "spanish team",
                "when": {"language": ["es"], "channel": ["whatsapp", "telegram"]},
                "then": {"group": "es-team", "tags": ["es"], "custom_fields": {"360001": "latam"}},
            }
        ),
        Rule.model_validate(
            {
                "name": "refunds",
                "when": {"tags": ["refund"]},
                "then": {"priority": "high", "tags": ["billing"], "stop": True},
            }
        ),
        Rule.model_validate(
            {"name": "after refunds", "when": {}, "then": {"tags": ["never-reached-on-refund"]}}
        ),
    ]


def test_rules_fire_in_order_earlier_ones_win() -> None:
    facts = Facts(channel=Channel.WHATSAPP, language="es", vip=True, tags=("refund",))
    d = evaluate(rules(), facts, base_tags=("refund",))
    assert d.fired == ["vip first", "spanish team", "refunds"]
    assert d.priority == "urgent" and d.group == "vip-desk"
    assert d.tags == ["refund", "vip", "es", "billing"]
    assert d.custom_fields == {"360001": "latam"}
    assert "skipped  after refunds" not in d.explain()  # stop ended the evaluation
    plain = evaluate(rules(), Facts(channel=Channel.EMAIL, language="es"))
    assert plain.fired == ["after refunds"]
    assert "language = ['es']" in plain.explain() and "channel != " in plain.explain()


def test_rules_refuse_bad_config() -> None:
    with pytest.raises(ValidationError, match="regex"):
        Rule.model_validate({"name": "x", "when": {"text": "("}, "then": {}})
    with pytest.raises(ValidationError):
        Rule.model_validate({"name": "x", "when": {"channel": ["fax"]}, "then": {}})
    with pytest.raises(ValidationError):
        Rule.model_validate({"name": "x", "then": {"priority": "asap"}})


def test_business_hours_with_dst_midnight_and_holidays() -> None:
    hours = BusinessHours.model_validate(
        {
            "time_zone": "Europe/Berlin",
            "weekly": {"mon": "09:00-12:00, 13:00-18:00", "fri": "22:00-02:00"},
            "holidays": ["2026-12-28"],
        }
    )
    # Monday 2026-11-23, 08:30 UTC = 09:30 in Berlin (winter time, UTC+1)
    assert hours.is_open(datetime(2026, 11, 23, 8, 30, tzinfo=UTC))
    assert not hours.is_open(datetime(2026, 11, 23, 11, 30, tzinfo=UTC))  # lunch
    # summer time (UTC+2): 07:30 UTC is 09:30 local on Monday 2026-06-01
    assert hours.is_open(datetime(2026, 6, 1, 7, 30, tzinfo=UTC))
    # Friday night range crosses midnight into Saturday
    assert hours.is_open(datetime(2026, 11, 28, 0, 30, tzinfo=UTC))  # Sat 01:30 local
    # a holiday Monday is closed; the next opening is the Friday night
    assert not hours.is_open(datetime(2026, 12, 28, 9, 0, tzinfo=UTC))
    nxt = hours.next_open(datetime(2026, 12, 28, 9, 0, tzinfo=UTC))
    assert nxt is not None and nxt.date() == date(2027, 1, 1) and nxt.hour == 22
    with pytest.raises(ValidationError):
        BusinessHours.model_validate({"time_zone": "Mars/Olympus"})
    with pytest.raises(ValidationError):
        BusinessHours.model_validate({"time_zone": "UTC", "weekly": {"mon": "9-5"}})
