"""Enrichment in the worker: what the desk gets with each new message.

For an account with a ``routing:`` block: the message's language (the contact's last
one as the prior), the contact's country, region and time zone (from their number) and
email domain, VIP status (lists, then the lookup URL, cached), keyword tags and business
hours feed the account's rules, whose decision becomes the ticket's desk fields. Facts
are kept on the contact. A failed VIP lookup never holds up a message (not VIP).

It also measures the service: messages per channel, first-response and reply times,
customers waiting (see ``count_inbound`` / ``record_reply`` / ``refresh_waiting``).
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

import httpx

from deskbridge.errors import DeliveryError
from deskbridge.flows.runtime import Runtime
from deskbridge.routing.config import RoutingConfig
from deskbridge.routing.enrich import (
    Enrichment,
    detect_language,
    email_domain,
    phone_facts,
    tags_for,
)
from deskbridge.routing.rules import Decision, Facts, evaluate
from deskbridge.routing.translate import DeepL, LibreTranslate, Translator
from deskbridge.schemas import AgentReply, Contact, DeskFields, Message

__all__ = [
    "count_inbound",
    "decide",
    "enrich",
    "off_hours_text",
    "record_reply",
    "refresh_waiting",
    "translate_reply",
    "translation_note",
]

log = logging.getLogger(__name__)


async def _vip(rt: Runtime, account: str, config: RoutingConfig, contact: Contact) -> bool:
    vip = config.vip
    phones = {i.value for i in contact.identities if i.kind == "phone"}
    emails = {i.value.lower() for i in contact.identities if i.kind == "email"}
    if phones & set(vip.phones) or emails & {e.lower() for e in vip.emails}:
        return True
    if contact.id in vip.contacts:
        return True
    if not vip.lookup_url:
        return False
    seed = "|".join(sorted(phones | emails | {contact.id}))
    # keyed digest: a plain hash of a phone number could be confirmed by guessing
    digest = rt.vault.digest("vip", account, seed)
    cached = await rt.enrichment.vip(account, digest)
    if cached is not None:
        return cached
    params = {
        "phone": next(iter(sorted(phones)), ""),
        "email": next(iter(sorted(emails)), ""),
        "contact": contact.id,
    }
    try:
        resp = await rt.http.get(vip.lookup_url, params=params, timeout=vip.lookup_timeout_seconds)
        resp.raise_for_status()
        answer = bool(resp.json().get("vip"))
    except (httpx.HTTPError, ValueError, AttributeError) as exc:
        log.warning("account %s: VIP lookup failed (%s); not VIP", account, type(exc).__name__)
        return False
    if vip.cache_seconds:
        await rt.enrichment.remember_vip(account, digest, answer, vip.cache_seconds)
    return answer


async def enrich(
    rt: Runtime, account: str, config: RoutingConfig, msg: Message, contact: Contact
) -> Enrichment:
    prior = contact.attributes.get("language")
    language = prior
    if msg.text and config.languages:
        language = detect_language(msg.text, config.languages, prior=prior).language
    phone = next((i.value for i in contact.identities if i.kind == "phone"), None)
    facts = phone_facts(phone) if phone else None
    email = next((i.value for i in contact.identities if i.kind == "email"), None)
    return Enrichment(
        language=language,
        country=facts.country if facts else None,
        region=facts.region if facts else None,
        time_zone=facts.time_zone if facts else None,
        email_domain=email_domain(email) if email else None,
        vip=await _vip(rt, account, config, contact),
        tags=tuple(tags_for(msg.text, [k.rule() for k in config.keywords])),
    )


def decide(config: RoutingConfig, msg: Message, found: Enrichment) -> Decision:
    hours = config.hours_for(found.language)
    facts = Facts(
        channel=msg.channel,
        text=msg.text,
        language=found.language,
        country=found.country,
        time_zone=found.time_zone,
        vip=found.vip,
        tags=found.tags + (("vip",) if found.vip else ()),
        open=hours.is_open(msg.occurred_at) if hours else None,
    )
    return evaluate(config.rules, facts, base_tags=found.tags)


def fields_of(decision: Decision) -> DeskFields:
    return DeskFields(
        tags=tuple(decision.tags),
        priority=decision.priority,
        group=decision.group,
        custom_fields=decision.custom_fields,
        form=decision.form,
    )


def off_hours_text(
    config: RoutingConfig, at: datetime, language: str | None = None
) -> tuple[str, str] | None:
    """The acknowledgement for a message at ``at`` outside the hours of the team that
    answers its language, and the id of that closed period (its reopening time), or None
    when open or not configured."""
    hours = config.hours_for(language)
    if not config.off_hours_ack or hours is None or hours.is_open(at):
        return None
    reopen = hours.next_open(at)
    when = reopen.strftime("%A %H:%M %Z") if reopen else "as soon as we can"
    period = reopen.isoformat() if reopen else "never"
    return config.off_hours_ack.replace("{next_open}", when), period


# -- translation for agents (opt-in) -----------------------------------------------------------

TRANSLATE_MARKER = "#translate"
"""An agent reply starting with this is translated into the customer's language first."""


def translator_for(rt: Runtime, config: RoutingConfig) -> Translator | None:
    t = config.translation
    if t is None:
        return None
    key = t.api_key.get_secret_value() if t.api_key else None
    if t.provider == "deepl":
        assert key is not None
        return DeepL(rt.http, key, base_url=t.base_url, region=t.region)
    assert t.base_url is not None
    return LibreTranslate(rt.http, t.base_url, api_key=key, region=t.region)


async def translation_note(
    rt: Runtime, config: RoutingConfig, text: str, language: str | None
) -> str | None:
    """An internal note with the message in the team's language, when it is in another
    one. Best effort: a failed translation only leaves the note out."""
    team = config.team_language
    translator = translator_for(rt, config)
    if translator is None or not team or not language or language == team or not text:
        return None
    try:
        done = await translator.translate(text, team, source=language)
    except DeliveryError as exc:
        log.warning("translation for a note failed: %s", type(exc).__name__)
        return None
    return (
        f"Translation ({language} → {team}, by {translator.name}):\n\n{done.text}\n\n"
        f"Start your reply with {TRANSLATE_MARKER} to have it translated into {language}."
    )


async def translate_reply(
    rt: Runtime, config: RoutingConfig | None, account: str, conv_id: str, reply: AgentReply
) -> AgentReply:
    """A reply marked with ``#translate`` goes out in the customer's language."""
    if not reply.text.lstrip().lower().startswith(TRANSLATE_MARKER):
        return reply
    text = reply.text.lstrip()[len(TRANSLATE_MARKER) :].strip()
    language = await rt.conversations.language(account, conv_id)
    translator = translator_for(rt, config) if config is not None else None
    team = config.team_language if config is not None else None
    if translator is None or language is None or language == team:
        return reply.model_copy(update={"text": text})  # nothing to translate: send as is
    done = await translator.translate(text, language, source=team)
    return reply.model_copy(update={"text": done.text})


# -- service measurements -------------------------------------------------------------------


def count_inbound(rt: Runtime, account: str, msg: Message) -> None:
    """A customer message was filed: counted. (The conversation waits for an answer since
    its oldest unanswered message: filing marks that with the ticket, in one round trip,
    ``ConversationStore.set_ticket(waiting=...)``.)"""
    rt.metrics.messages.labels(account, msg.channel.value, "inbound").inc()


async def record_reply(
    rt: Runtime, account: str, conv_id: str, channel: str, *, automated: bool
) -> None:
    """An agent reply was relayed: observe the reply (and first-response) time."""
    rt.metrics.messages.labels(account, channel, "outbound").inc()
    if automated:
        return  # an automatic acknowledgement answers nobody's question
    was = await rt.service.mark_answered(account, conv_id, channel)
    now = time.time()
    lang = was.language or ""
    if was.awaiting_since is not None:
        rt.metrics.reply_time.labels(account, channel, lang).observe(now - was.awaiting_since)
    if not was.first_replied and was.first_inbound_at is not None:
        rt.metrics.first_response.labels(account, channel, lang).observe(now - was.first_inbound_at)


async def refresh_waiting(rt: Runtime, account: str, sla: dict[str, int]) -> None:
    """The waiting and SLA-breach gauges of ``account`` (the sweeper calls this)."""
    now = datetime.now(UTC).timestamp()
    waiting: dict[str, int] = {}
    breached: dict[str, int] = {}
    for channel, since in await rt.service.waiting(account):
        waiting[channel] = waiting.get(channel, 0) + 1
        target = sla.get(channel)
        if target is not None and now - since > target:
            breached[channel] = breached.get(channel, 0) + 1
    # every configured channel, so a channel's gauge returns to 0 once nobody waits there
    configured = {ch.type for ch in rt.accounts.accounts[account].channels}
    for channel in set(waiting) | set(sla) | configured:
        rt.metrics.awaiting.labels(account, channel).set(waiting.get(channel, 0))
        rt.metrics.sla_breaches.labels(account, channel).set(breached.get(channel, 0))
