"""The load generator of the fault runs: customers writing on Telegram.

Each chat is one customer sending numbered messages (``c<chat> m<n>``) one after the
other, as Telegram does: the next update goes out once the previous one was answered 200.
A 503 or a refused connection is retried with the same body after a pause (Telegram
retries too); any other answer ends that chat's run and is counted. Every request is
signed with the webhook's secret token and sent over loopback.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field

import aiohttp

from deskbridge.adapters.telegram import sample_update

from .harness import TG_SECRET

__all__ = ["Load", "Response", "converse", "update_id"]


@dataclass(frozen=True, slots=True)
class Response:
    sent: float
    answered: float
    status: int
    """HTTP status; 0 when the connection failed."""


@dataclass
class Load:
    acked: dict[int, list[int]] = field(default_factory=dict)
    """Per chat, the message numbers the gateway acknowledged, in order."""
    responses: list[Response] = field(default_factory=list)
    gave_up: int = 0

    @property
    def acked_count(self) -> int:
        return sum(len(v) for v in self.acked.values())

    def markers(self) -> set[tuple[int, int]]:
        return {(chat, n) for chat, ns in self.acked.items() for n in ns}

    def statuses(self) -> Counter[int]:
        return Counter(r.status for r in self.responses)

    def between(self, start: float, end: float) -> Counter[int]:
        """Statuses of requests sent after ``start`` and answered before ``end``."""
        return Counter(r.status for r in self.responses if r.sent >= start and r.answered <= end)


def update_id(chat: int, n: int) -> int:
    """The Telegram ``update_id`` (deskbridge's dedup key) of message ``n`` of ``chat``."""
    return chat * 1_000_000 + n + 1


def text(account: str, chat: int, n: int) -> str:
    return f"fault {account} c{chat} m{n}"


async def converse(
    session: aiohttp.ClientSession,
    gateway: str | list[str],
    account: str,
    chats: list[int],
    messages: int,
    *,
    interval: float = 0.0,
    stop: asyncio.Event | None = None,
    deadline: float = 120.0,
    retry_delay: float = 0.2,
) -> Load:
    """Each chat sends up to ``messages`` messages, ``interval`` seconds apart, until
    ``stop`` is set or ``deadline`` seconds have passed. Given several gateways, a chat
    starts on one of them and moves to the next after an answer that is not 200 (as a
    load balancer passes a refused connection to another backend)."""
    load = Load()
    gateways = [gateway] if isinstance(gateway, str) else gateway
    urls = [f"{g}/webhooks/telegram/{account}" for g in gateways]
    headers = {"X-Telegram-Bot-Api-Secret-Token": TG_SECRET, "Content-Type": "application/json"}
    until = time.monotonic() + deadline

    async def chat_run(i: int, chat: int) -> None:
        acked = load.acked.setdefault(chat, [])
        turn = i
        if interval:
            await asyncio.sleep(interval * i / len(chats))  # chats spread over the interval
        for n in range(messages):
            if (stop is not None and stop.is_set()) or time.monotonic() > until:
                return
            body = sample_update(
                text(account, chat, n),
                update_id=update_id(chat, n),
                chat_id=chat,
                user_id=chat,
                first_name=f"Customer {chat}",
            )
            while True:
                sent = time.monotonic()
                url = urls[turn % len(urls)]
                try:
                    async with session.post(url, data=body, headers=headers) as resp:
                        await resp.read()
                        status = resp.status
                except (TimeoutError, aiohttp.ClientError, OSError):
                    status = 0
                load.responses.append(Response(sent, time.monotonic(), status))
                if status == 200:
                    acked.append(n)
                    break
                if status not in (0, 503) or time.monotonic() > until:
                    load.gave_up += 1
                    return
                turn += 1
                await asyncio.sleep(retry_delay)
            if interval:
                await asyncio.sleep(interval)

    await asyncio.gather(*(chat_run(i, c) for i, c in enumerate(chats)))
    return load
