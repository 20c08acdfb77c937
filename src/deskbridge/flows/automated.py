"""Messages deskbridge itself sends the customer, queued like an agent's reply so they
keep the conversation's order and go through the same retries and dead letters."""

from __future__ import annotations

from datetime import UTC, datetime

from deskbridge.flows import enrichment
from deskbridge.flows.ingest import queue_automated
from deskbridge.flows.runtime import Runtime
from deskbridge.routing.config import RoutingConfig
from deskbridge.schemas import AgentReply, Channel, Desk

__all__ = ["automated_reply", "off_hours_ack"]


def automated_reply(
    rt: Runtime, account: str, *, dedup_key: str, ticket_id: str, text: str
) -> AgentReply:
    """A reply written by deskbridge (``automated``: no HUMAN_AGENT tag on Messenger,
    ``Auto-Submitted`` on email). ``dedup_key`` makes it once."""
    return AgentReply(
        account=account,
        desk=Desk(rt.accounts.accounts[account].desk.type),
        dedup_key=dedup_key,
        ticket_id=ticket_id,
        external_id=dedup_key,
        text=text,
        author_name="deskbridge",
        automated=True,
        occurred_at=datetime.now(UTC),
    )


async def off_hours_ack(
    rt: Runtime,
    account: str,
    conversation_id: str,
    channel: Channel,
    routing: RoutingConfig,
    received_at: datetime,
    ticket_id: str,
) -> None:
    """Outside business hours, the customer hears when to expect an answer: once per
    conversation per closed period (the intake's dedup mark keeps it to one)."""
    language = await rt.conversations.language(account, conversation_id)
    ack = enrichment.off_hours_text(routing, received_at, language)
    if ack is None:
        return
    text, period = ack
    key = f"offhours:{conversation_id}:{period}"
    reply = automated_reply(rt, account, dedup_key=key, ticket_id=ticket_id, text=text)
    if await queue_automated(rt, reply, conversation_id, channel.value):
        rt.metrics.off_hours_acks.labels(account, channel.value).inc()
