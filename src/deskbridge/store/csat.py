"""Satisfaction surveys (issue 23): which solved tickets were surveyed, which customers
recently, the surveys waiting for their time, and the open survey of a conversation.
No message content: ids, times and the score's delivery."""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis.asyncio as aioredis

from deskbridge.store import keys
from deskbridge.store.connection import guarded, structures
from deskbridge.store.crypto import SealBroken, Vault

__all__ = [
    "CsatStore",
    "DueSurvey",
    "OpenSurvey",
    "SurveyLink",
    "SurveyLinkError",
    "SurveyLinks",
]

_LINK_AAD = "deskbridge survey link v1"

_TICKET_TTL_S = 180 * 86400


@dataclass(frozen=True, slots=True)
class DueSurvey:
    desk: str
    ticket_id: str
    conversation_id: str

    def member(self) -> str:
        return f"{self.desk}|{self.ticket_id}|{self.conversation_id}"

    @classmethod
    def of(cls, member: str) -> DueSurvey:
        desk, ticket, conv = member.split("|", 2)
        return cls(desk, ticket, conv)


@dataclass(frozen=True, slots=True)
class OpenSurvey:
    desk: str
    ticket_id: str
    answered_by: str
    """The delivery whose message answered it ('' while open)."""
    score: int = 0
    answered_at: float = 0.0
    comment_by: str = ""
    """The delivery whose message gave the comment: the answer's own, or a follow-up's."""
    team: str = ""
    """The routing's team (desk group) of the ticket when the survey was sent ('' none)."""
    sent_at: float = 0.0


@guarded
class CsatStore:
    """Redis failures raise ``StoreUnavailable``."""

    def __init__(self, redis: aioredis.Redis, vault: Vault) -> None:
        self._redis = redis
        self._vault = vault
        self._typed = structures(redis)

    async def claim_ticket(self, account: str, desk: str, ticket_id: str) -> bool:
        """True the first time a solved ticket's survey is scheduled."""
        key = keys.csat_ticket(account, desk, self._vault.digest("ticket", desk, ticket_id))
        return bool(await self._redis.set(key, "1", nx=True, ex=_TICKET_TTL_S))

    async def ticket_claimed(self, account: str, desk: str, ticket_id: str) -> bool:
        """Whether a solved ticket was handled already (surveyed, or passed over)."""
        key = keys.csat_ticket(account, desk, self._vault.digest("ticket", desk, ticket_id))
        return bool(await self._redis.exists(key))

    async def recently_surveyed(self, account: str, contact_id: str) -> bool:
        return bool(await self._redis.exists(keys.csat_contact(account, contact_id)))

    async def mark_surveyed(self, account: str, contact_id: str, period_s: float) -> None:
        if period_s >= 1:
            await self._redis.set(keys.csat_contact(account, contact_id), "1", ex=int(period_s))

    async def schedule(self, account: str, survey: DueSurvey, due_at: float) -> None:
        await self._redis.zadd(keys.csat_due(account), {survey.member(): due_at}, nx=True)

    async def due(self, account: str, now: float, limit: int = 100) -> list[DueSurvey]:
        found = await self._redis.zrangebyscore(keys.csat_due(account), 0, now, 0, limit)
        return [DueSurvey.of(m.decode()) for m in found]

    async def take(self, account: str, survey: DueSurvey) -> bool:
        """Claim a due survey for sending (one worker wins)."""
        return bool(await self._redis.zrem(keys.csat_due(account), survey.member()))

    async def open(
        self,
        account: str,
        conversation_id: str,
        desk: str,
        ticket_id: str,
        at: float,
        ttl_s: int,
        *,
        team: str = "",
    ) -> None:
        key = keys.csat_open(account, conversation_id)
        pipe = self._redis.pipeline(transaction=True)
        pipe.delete(key)
        fields = {"desk": desk, "ticket_id": ticket_id, "sent_at": str(at), "team": team}
        pipe.hset(key, mapping=fields)
        pipe.expire(key, ttl_s)
        await pipe.execute()

    async def open_survey(self, account: str, conversation_id: str) -> OpenSurvey | None:
        h = await self._typed.hgetall(keys.csat_open(account, conversation_id))
        if b"ticket_id" not in h:
            return None
        return OpenSurvey(
            desk=h[b"desk"].decode(),
            ticket_id=h[b"ticket_id"].decode(),
            answered_by=h.get(b"answered_by", b"").decode(),
            score=int(h.get(b"score", b"0") or 0),
            answered_at=float(h.get(b"answered_at", b"0") or 0),
            comment_by=h.get(b"comment_by", b"").decode(),
            team=h.get(b"team", b"").decode(),
            sent_at=float(h.get(b"sent_at", b"0") or 0),
        )

    async def answer(
        self,
        account: str,
        conversation_id: str,
        delivery_id: str,
        *,
        score: int,
        commented: bool,
        at: float,
    ) -> bool:
        """Whether ``delivery_id``'s message is the survey's answer: the first message
        that claims it (and the same one when its delivery runs again). The first claim
        also keeps the score, when it was given and whether it had a comment."""
        key = keys.csat_open(account, conversation_id)
        pipe = self._redis.pipeline(transaction=True)
        pipe.hsetnx(key, "answered_by", delivery_id)
        pipe.hget(key, "answered_by")
        _, holder = await pipe.execute()
        if holder is None or holder.decode() != delivery_id:
            return False
        pipe = self._redis.pipeline(transaction=True)
        pipe.hsetnx(key, "score", str(score))
        pipe.hsetnx(key, "answered_at", str(at))
        if commented:
            pipe.hsetnx(key, "comment_by", delivery_id)
        await pipe.execute()
        return True

    async def comment(self, account: str, conversation_id: str, delivery_id: str) -> bool:
        """Whether ``delivery_id``'s message is the answered survey's follow-up comment:
        the first message that claims it (and the same one when its delivery runs again)."""
        key = keys.csat_open(account, conversation_id)
        pipe = self._redis.pipeline(transaction=True)
        pipe.exists(key)
        pipe.hsetnx(key, "comment_by", delivery_id)
        pipe.hget(key, "comment_by")
        exists, set_now, holder = await pipe.execute()
        if not exists:
            if set_now:  # the survey expired between the read and the claim
                await self._redis.delete(key)
            return False
        return holder is not None and holder.decode() == delivery_id


class SurveyLinkError(Exception):
    """The survey link is malformed, forged or expired."""


@dataclass(frozen=True, slots=True)
class SurveyLink:
    """What one score's link of an email survey names: the survey (its conversation,
    ticket and when it was sent) and the score."""

    account: str
    conversation_id: str
    desk: str
    ticket_id: str
    sent_at: float
    score: int


class SurveyLinks:
    """Signed, expiring links to answer an email survey with one click: a token is the
    sealed (authenticated, encrypted) ``SurveyLink`` with its expiry, so only deskbridge
    makes one and it reveals no ids."""

    def __init__(
        self, vault: Vault, public_url: str, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._vault = vault
        self._base = public_url.rstrip("/")
        self._clock = clock

    def url_for(self, link: SurveyLink, ttl_s: float) -> str:
        claims = {
            "a": link.account,
            "c": link.conversation_id,
            "d": link.desk,
            "t": link.ticket_id,
            "n": link.sent_at,
            "s": link.score,
            "e": int(self._clock() + ttl_s),
        }
        blob = self._vault.seal(json.dumps(claims, separators=(",", ":")).encode(), _LINK_AAD)
        return f"{self._base}/csat/{base64.urlsafe_b64encode(blob).decode().rstrip('=')}"

    def open(self, token: str) -> SurveyLink:
        """The survey and score behind ``token``. Raises ``SurveyLinkError``."""
        try:
            blob = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            claims = json.loads(self._vault.open(blob, _LINK_AAD))
            link = SurveyLink(
                account=str(claims["a"]),
                conversation_id=str(claims["c"]),
                desk=str(claims["d"]),
                ticket_id=str(claims["t"]),
                sent_at=float(claims["n"]),
                score=int(claims["s"]),
            )
            expires = int(claims["e"])
        except (binascii.Error, ValueError, KeyError, TypeError, SealBroken) as exc:
            raise SurveyLinkError("invalid survey link") from exc
        if expires < self._clock() or not 1 <= link.score <= 5:
            raise SurveyLinkError("survey link expired")
        return link
