"""Satisfaction surveys on the customer's channel (issue 23, part 2; docs/csat.md).

``ticket_solved``: the desk says a ticket is solved (the sandbox's Solve button today);
the survey is scheduled once per ticket, unless the customer opted out or was surveyed
within the account's period. ``send_due`` (the worker's sweeper) sends the surveys whose
time has come as automated replies with the channel's own controls (``choices``),
inside the channel's window or as the account's approved WhatsApp template.
``capture`` reads a customer's message as the answer to their conversation's open
survey: the score (and a comment after it) goes to the ticket as an internal note, the
customer is thanked, and the message is not filed (a "5" would reopen the ticket). A
text message sent within ``comment_minutes`` of a bare score is that score's comment.
"""

from __future__ import annotations

import logging
import time

from deskbridge.flows.automated import automated_reply
from deskbridge.flows.ingest import queue_automated
from deskbridge.flows.notes import note, note_on
from deskbridge.flows.proactive import opted_out
from deskbridge.flows.runtime import Runtime
from deskbridge.routing.csat import CHOICES, CsatConfig, parse_score
from deskbridge.schemas import Channel, Delivery, Message, Template
from deskbridge.store import ConversationRecord
from deskbridge.store.csat import DueSurvey, OpenSurvey, SurveyLink

__all__ = ["answer_by_link", "capture", "send_due", "ticket_solved"]

log = logging.getLogger(__name__)

_WINDOW_S = 24 * 3600.0
_COMMENT_MAX = 2000


async def ticket_solved(rt: Runtime, account: str, desk: str, ticket_id: str) -> str:
    """Schedule the survey of a solved ticket; returns what was done (``scheduled``,
    ``not_configured``, ``unknown_ticket``, ``already``, ``opted_out``, ``recent``)."""
    cfg = rt.accounts.accounts[account].csat
    if cfg is None:
        return "not_configured"
    conv = await _conversation(rt, account, desk, ticket_id)
    if conv is None:
        return "unknown_ticket"
    outcome = await _skip(rt, account, conv, cfg)
    if outcome is None:
        if not await rt.csat.claim_ticket(account, desk, ticket_id):
            return "already"
        due = time.time() + cfg.delay_minutes * 60
        await rt.csat.schedule(account, DueSurvey(desk, ticket_id, conv.id), due)
        outcome = "scheduled"
    rt.metrics.csat_surveys.labels(account, conv.channel.value, outcome).inc()
    return outcome


async def send_due(rt: Runtime, now: float | None = None) -> int:
    """Send every survey whose time has come; returns how many were sent."""
    now = time.time() if now is None else now
    sent = 0
    for account, acc in rt.accounts.accounts.items():
        if acc.csat is None:
            continue
        for survey in await rt.csat.due(account, now):
            if await rt.csat.take(account, survey):
                sent += await _send(rt, account, acc.csat, survey, now)
    return sent


async def capture(rt: Runtime, d: Delivery, msg: Message, conv: ConversationRecord) -> bool:
    """True when ``msg`` answers the conversation's open survey (recorded, noted on the
    ticket, thanked; not to be filed)."""
    cfg = rt.accounts.accounts[d.account].csat
    if cfg is None:
        return False
    survey = await rt.csat.open_survey(d.account, conv.id)
    if survey is None:
        return False
    if survey.answered_by and survey.answered_by != d.id:
        return await _follow_up(rt, d, msg, conv, cfg, survey)
    read = parse_score(msg.text)
    if read is None:
        return False
    score, comment = read
    if not await rt.csat.answer(
        d.account, conv.id, d.id, score=score, commented=bool(comment), at=time.time()
    ):
        return False
    language = await rt.conversations.language(d.account, conv.id)
    said = f' Comment: "{comment}"' if comment else ""
    await note(
        rt,
        d,
        f"Customer satisfaction: {score}/5 (survey on {conv.channel.value} after ticket "
        f"{survey.ticket_id} was solved).{said}",
        why="csat",
        tags=(f"{cfg.tag_prefix}{score}",) if cfg.tag_prefix else (),
    )
    thanks = automated_reply(
        rt,
        d.account,
        dedup_key=f"csat-thanks:{survey.desk}:{survey.ticket_id}",
        ticket_id=survey.ticket_id,
        text=cfg.thanks_in(language),
    )
    if await queue_automated(rt, thanks, conv.id, conv.channel.value):
        rt.metrics.csat_score.labels(
            d.account, conv.channel.value, language or "unknown", survey.team or "none"
        ).observe(score)
        log.info("delivery %s: survey of ticket %s answered", d.id, survey.ticket_id)
    return True


def _with_links(
    rt: Runtime, account: str, cfg: CsatConfig, survey: DueSurvey, now: float, question: str
) -> str:
    """The email survey: the question and one signed link per score, valid as long as
    the survey may be answered."""
    ttl = cfg.answer_hours * 3600
    lines = [
        f"{choice}: "
        + rt.survey_links.url_for(
            SurveyLink(account, survey.conversation_id, survey.desk, survey.ticket_id, now, score),
            ttl,
        )
        for score, choice in enumerate(CHOICES, 1)
    ]
    return question + "\n\n" + "\n".join(reversed(lines))


async def answer_by_link(rt: Runtime, link: SurveyLink, comment: str) -> str:
    """Record a score given on an email survey's page (and its optional comment), once
    per survey. Returns ``recorded``, ``already`` (this survey was answered before) or
    ``closed`` (the survey is no longer open: answered by message, expired, replaced).
    Raises ``StoreUnavailable``."""
    acc = rt.accounts.accounts.get(link.account)
    cfg = acc.csat if acc is not None else None
    survey = await rt.csat.open_survey(link.account, link.conversation_id)
    if (
        cfg is None
        or survey is None
        or (survey.desk, survey.ticket_id) != (link.desk, link.ticket_id)
        or survey.sent_at != link.sent_at
    ):
        return "closed"
    comment = " ".join(comment.split())[:_COMMENT_MAX]
    holder = f"link:{link.score}"
    if survey.answered_by or not await rt.csat.answer(
        link.account,
        link.conversation_id,
        holder,
        score=link.score,
        commented=bool(comment),
        at=time.time(),
    ):
        return "already"
    said = f' Comment: "{comment}"' if comment else ""
    await note_on(
        rt,
        link.account,
        link.conversation_id,
        f"Customer satisfaction: {link.score}/5 (survey by email after ticket "
        f"{link.ticket_id} was solved, answered on its page).{said}",
        cause=f"csat-link:{link.sent_at}",
        tags=(f"{cfg.tag_prefix}{link.score}",) if cfg.tag_prefix else (),
    )
    language = await rt.conversations.language(link.account, link.conversation_id)
    rt.metrics.csat_score.labels(
        link.account, Channel.EMAIL.value, language or "unknown", survey.team or "none"
    ).observe(link.score)
    log.info("%s: survey of ticket %s answered on its page", link.account, link.ticket_id)
    return "recorded"


async def _follow_up(
    rt: Runtime,
    d: Delivery,
    msg: Message,
    conv: ConversationRecord,
    cfg: CsatConfig,
    survey: OpenSurvey,
) -> bool:
    """A text message soon after a bare score is the score's comment: noted on the
    ticket with it, not filed. Only the first such message; never one with files."""
    if survey.comment_by and survey.comment_by != d.id:
        return False
    text = msg.text.strip()
    if not text or msg.attachments or parse_score(text) is not None:
        return False
    if not survey.comment_by and time.time() - survey.answered_at > cfg.comment_minutes * 60:
        return False
    if not await rt.csat.comment(d.account, conv.id, d.id):
        return False
    said = (
        f"Customer satisfaction comment on the {survey.score}/5 answer (ticket "
        f'{survey.ticket_id}): "{text}"'
    )
    if await note(rt, d, said, why="csat-comment"):
        rt.metrics.csat_surveys.labels(d.account, conv.channel.value, "commented").inc()
    log.info("delivery %s: comment on the survey of ticket %s", d.id, survey.ticket_id)
    return True


async def _conversation(
    rt: Runtime, account: str, desk: str, ticket_id: str
) -> ConversationRecord | None:
    conv_id = await rt.conversations.for_ticket(account, desk, ticket_id)
    return await rt.conversations.get(account, conv_id) if conv_id else None


async def _skip(rt: Runtime, account: str, conv: ConversationRecord, cfg: CsatConfig) -> str | None:
    """Why the customer gets no survey now (None: they may get one)."""
    contact = await rt.conversations.contact(account, conv.contact_id)
    if contact is not None and opted_out(contact, conv.channel):
        return "opted_out"
    if await rt.csat.recently_surveyed(account, conv.contact_id):
        return "recent"
    return None


async def _send(rt: Runtime, account: str, cfg: CsatConfig, survey: DueSurvey, now: float) -> int:
    conv = await rt.conversations.get(account, survey.conversation_id)
    if conv is None:
        return 0
    outcome = await _skip(rt, account, conv, cfg)  # again: a survey may have gone since
    template: Template | None = None
    closed = conv.last_inbound_at is None or now - conv.last_inbound_at > _WINDOW_S
    ref = cfg.whatsapp_template
    if outcome is None and closed and conv.channel == Channel.WHATSAPP:
        # outside WhatsApp's 24 hours only an approved template may go
        if ref is None:
            outcome = "window_closed"
        else:
            template = Template(name=ref.name, language=ref.language)
    if outcome is None and closed and conv.channel == Channel.MESSENGER:
        outcome = "window_closed"  # no message tag covers a survey
    if outcome is not None:
        rt.metrics.csat_surveys.labels(account, conv.channel.value, outcome).inc()
        return 0
    language = await rt.conversations.language(account, conv.id)
    text = cfg.question_in(language)
    choices: tuple[str, ...] = CHOICES
    if conv.channel == Channel.EMAIL:
        # one link per score to deskbridge's own page; replying with a number still works
        text, choices = _with_links(rt, account, cfg, survey, now, text), ()
    reply = automated_reply(
        rt,
        account,
        dedup_key=f"csat:{survey.desk}:{survey.ticket_id}",
        ticket_id=survey.ticket_id,
        text="" if template else text,
    ).model_copy(update={"choices": () if template else choices, "template": template})
    # the survey is open before it can be answered, and the customer counted as surveyed
    await rt.csat.open(
        account,
        conv.id,
        survey.desk,
        survey.ticket_id,
        now,
        int(cfg.answer_hours * 3600),
        team=await rt.conversations.team(account, conv.id) or "",
    )
    await rt.csat.mark_surveyed(account, conv.contact_id, cfg.period_days * 86400)
    if not await queue_automated(rt, reply, conv.id, conv.channel.value):
        return 0
    rt.metrics.csat_surveys.labels(account, conv.channel.value, "sent").inc()
    log.info("%s: survey of ticket %s queued", account, survey.ticket_id)
    return 1
