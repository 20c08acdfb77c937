"""The bot front desk (issue 23): before a customer's message is filed, the account's
responders may answer it; when they cannot, or the customer asks for a person, or the
bot's turns run out, the message is filed with the whole bot session before it.

``front_desk`` runs in ``flows.filing.file_event`` for each customer message of an
account with ``responders:``. It returns None when the bot answered (the answer is
queued like any reply: parts, windows, exactly-once; the message waits in the session
for a person), or the message to file (with ``Message.handoff`` when a session ends).
Each message's turn is decided once and kept (``store/bot.py``), so a retried delivery
sends the same answer once and files the same transcript. Nothing is dropped: a
responder that fails or times out hands off.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import httpx

from deskbridge.flows.automated import automated_reply
from deskbridge.flows.ingest import queue_automated
from deskbridge.flows.runtime import Runtime
from deskbridge.routing.enrich import detect_language
from deskbridge.routing.responders import (
    Answer,
    HttpResponderConfig,
    KnowledgeBaseConfig,
    RespondersConfig,
    asks_for_person,
    kb_answer,
    parse_answer,
    sign,
)
from deskbridge.schemas import BotTurn, Delivery, DeskFields, Handoff, Message
from deskbridge.store import ConversationRecord

__all__ = ["agent_replied", "desk_fields", "front_desk"]

log = logging.getLogger(__name__)


async def front_desk(
    rt: Runtime, d: Delivery, msg: Message, conv: ConversationRecord
) -> Message | None:
    """Let the bot answer ``msg``: None when it did, else the message to file."""
    cfg = rt.accounts.accounts[d.account].responders
    if cfg is None:
        return msg
    now = time.time()
    human_until = now + cfg.human_hours * 3600
    session = await rt.bot.session(d.account, conv.id)
    if session is not None and session.state == "human":
        if session.handoff_delivery == d.id:  # a retry of the hand-off itself
            return await _handed_off(rt, d, msg, conv, human_until, counted=True)
        if session.human_until > now:
            await rt.bot.keep_human(d.account, conv.id, human_until)
            return msg
        session = None
    if session is None:
        session = await rt.bot.begin(d.account, conv.id, now)
        _count_session(rt, d, conv, msg, "started")
    turns = await rt.bot.turns(d.account, conv.id)
    turn = next((t for t in turns if t.get("delivery") == d.id), None)
    new = False
    if turn is None:
        language = await _language(rt, d.account, conv, msg)
        answer, reason = await _decide(rt, cfg, d, conv, msg, turns, language)
        turn, new = await rt.bot.record(
            d.account,
            conv.id,
            d.id,
            {
                "delivery": d.id,
                "at": msg.occurred_at.isoformat(),
                "customer": _customer_text(msg),
                "bot": answer.text if answer is not None else None,
                "choices": list(answer.quick_replies) if answer is not None else [],
                "collect": dict(answer.collect) if answer is not None else {},
                "handoff": reason,
                "source": answer.source if answer is not None else "",
                "language": language or "",
            },
        )
    if turn.get("bot"):
        await _answer(rt, d, conv, turn, new=new)
    if turn.get("handoff"):
        return await _handed_off(rt, d, msg, conv, human_until, counted=not new)
    return None


async def agent_replied(rt: Runtime, account: str, conversation_id: str) -> None:
    """A person answered the conversation: the bot stays out of it for ``human_hours``."""
    cfg = rt.accounts.accounts[account].responders
    if cfg is not None:
        await rt.bot.keep_human(account, conversation_id, time.time() + cfg.human_hours * 3600)


def desk_fields(
    rt: Runtime, account: str, msg: Message, fields: DeskFields | None
) -> DeskFields | None:
    """``fields`` with what a hand-off adds: the account's hand-off tags and each
    collected field that ``responders.fields`` maps to a desk field."""
    cfg = rt.accounts.accounts[account].responders
    if cfg is None or msg.handoff is None:
        return fields
    base = fields or DeskFields()
    mapped = {cfg.fields[k]: v for k, v in msg.handoff.collected.items() if k in cfg.fields}
    return base.model_copy(
        update={
            "tags": tuple(dict.fromkeys([*base.tags, *cfg.tags])),
            # the routing rules' values win over what the bot collected
            "custom_fields": {**mapped, **base.custom_fields},
        }
    )


async def _handed_off(
    rt: Runtime,
    d: Delivery,
    msg: Message,
    conv: ConversationRecord,
    human_until: float,
    *,
    counted: bool,
) -> Message:
    """``msg`` with the session before it; people answer from now on."""
    turns = await rt.bot.turns(d.account, conv.id)
    own = next((t for t in turns if t.get("delivery") == d.id), None)
    reason = (own or {}).get("handoff") or "asked"
    lines: list[BotTurn] = []
    collected: dict[str, str] = {}
    for t in turns:
        collected.update(t.get("collect") or {})
        if t.get("delivery") == d.id:
            continue
        at = datetime.fromisoformat(t["at"])
        lines.append(BotTurn(role="customer", text=t["customer"], at=at))
        if t.get("bot"):
            lines.append(BotTurn(role="bot", text=t["bot"], at=at))
    await rt.bot.hand_off(d.account, conv.id, d.id, human_until)
    if not counted:
        session = await rt.bot.session(d.account, conv.id)
        language = (own or {}).get("language") or "unknown"
        channel = conv.channel.value
        rt.metrics.bot_handoffs.labels(d.account, channel, language, reason).inc()
        _count_session(rt, d, conv, msg, "handed_off", language)
        if session is not None and session.started_at:
            waited = max(0.0, time.time() - session.started_at)
            rt.metrics.bot_time_to_handoff.labels(d.account, channel, language).observe(waited)
        log.info("delivery %s: handed off to a person (%s)", d.id, reason)
    return msg.model_copy(
        update={"handoff": Handoff(reason=reason, turns=tuple(lines), collected=collected)}
    )


def _count_session(
    rt: Runtime,
    d: Delivery,
    conv: ConversationRecord,
    msg: Message,
    outcome: str,
    language: str | None = None,
) -> None:
    lang = language or msg.sender.language or "unknown"
    rt.metrics.bot_sessions.labels(d.account, conv.channel.value, lang, outcome).inc()


async def _language(
    rt: Runtime, account: str, conv: ConversationRecord, msg: Message
) -> str | None:
    """The conversation's language: known, else detected among the account's languages."""
    known = await rt.conversations.language(account, conv.id)
    routing = rt.accounts.accounts[account].routing
    if routing is None or not routing.languages or not msg.text:
        return known or msg.sender.language
    return detect_language(msg.text, routing.languages, prior=known).language or known


def _customer_text(msg: Message) -> str:
    if msg.text:
        return msg.text
    if msg.attachments:
        return f"[{len(msg.attachments)} attachment(s)]"
    return f"[{msg.note}]" if msg.note else "[a message without text]"


async def _decide(
    rt: Runtime,
    cfg: RespondersConfig,
    d: Delivery,
    conv: ConversationRecord,
    msg: Message,
    turns: list[dict[str, Any]],
    language: str | None,
) -> tuple[Answer | None, str | None]:
    """The bot's answer and, when a person takes over, why."""
    if not msg.text.strip():
        return None, "not_text"
    routing = rt.accounts.accounts[d.account].routing
    words = cfg.words(routing.languages if routing is not None else [])
    if asks_for_person(msg.text, words):
        return None, "asked"
    if sum(1 for t in turns if t.get("bot")) >= cfg.max_bot_turns:
        return None, "max_turns"
    for responder in cfg.chain:
        if isinstance(responder, KnowledgeBaseConfig):
            answer = kb_answer(responder, msg.text, language)
        else:
            try:
                answer = await _ask(rt, responder, d, conv, msg, turns, language)
            except _Unanswered as exc:
                log.warning("delivery %s: responder failed (%s); handed off", d.id, exc)
                return None, "responder_error"
        if answer is None:
            continue
        if answer.handoff:
            return answer, "responder"
        if answer.text:
            return answer, None
    return None, "no_answer"


class _Unanswered(Exception):
    """The external responder gave no usable answer (a timeout, an error, a bad body).
    The message says which, never what was in it."""


async def _ask(
    rt: Runtime,
    cfg: HttpResponderConfig,
    d: Delivery,
    conv: ConversationRecord,
    msg: Message,
    turns: list[dict[str, Any]],
    language: str | None,
) -> Answer | None:
    """The external responder contract (docs/responders.md): a signed POST with the
    message and the session so far; its JSON answer."""
    history: list[Mapping[str, str]] = []
    for t in turns:
        history.append({"role": "customer", "text": t["customer"], "at": t["at"]})
        if t.get("bot"):
            history.append({"role": "bot", "text": t["bot"], "at": t["at"]})
    collected: dict[str, str] = {}
    for t in turns:
        collected.update(t.get("collect") or {})
    body = json.dumps(
        {
            "version": 1,
            "account": d.account,
            "conversation": conv.id,
            "channel": conv.channel.value,
            "language": language,
            "message": {
                "id": d.id,
                "text": msg.text,
                "occurred_at": msg.occurred_at.isoformat(),
                "sender_name": msg.sender.display_name,
                "attachments": len(msg.attachments),
            },
            "history": history,
            "collected": collected,
            "bot_turns": sum(1 for t in turns if t.get("bot")),
        },
        separators=(",", ":"),
    ).encode()
    stamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "X-Deskbridge-Timestamp": stamp,
        "X-Deskbridge-Signature": sign(cfg.secret.get_secret_value(), stamp, body),
        "X-Deskbridge-Delivery": d.id,
    }
    try:
        resp = await rt.http.post(
            cfg.url, content=body, headers=headers, timeout=cfg.timeout_seconds
        )
    except httpx.TimeoutException:
        raise _Unanswered("timeout") from None
    except httpx.HTTPError as exc:
        raise _Unanswered(type(exc).__name__) from None
    if resp.status_code == 204:
        return None
    if not resp.is_success:
        raise _Unanswered(f"HTTP {resp.status_code}")
    try:
        answer = parse_answer(resp.json())
    except ValueError as exc:
        raise _Unanswered(f"bad answer: {str(exc)[:80]}") from None
    if answer.text is None and not answer.handoff:
        return None
    return answer


async def _answer(
    rt: Runtime, d: Delivery, conv: ConversationRecord, turn: dict[str, Any], *, new: bool
) -> None:
    """Queue the bot's answer through the normal reply path, once per message."""
    reply = automated_reply(
        rt, d.account, dedup_key=f"bot:{d.id}", ticket_id=conv.ticket_id or "", text=turn["bot"]
    ).model_copy(
        update={"bot": True, "author_name": "bot", "choices": tuple(turn.get("choices") or ())}
    )
    queued = await queue_automated(rt, reply, conv.id, conv.channel.value)
    if queued and new:
        language = turn.get("language") or "unknown"
        source = turn.get("source") or "unknown"
        rt.metrics.bot_answers.labels(d.account, conv.channel.value, language, source).inc()
