"""Parts are units of progress: every channel's send through fake platforms that fail
part-way, the way platforms do.

Each channel sends a reply of several parts (one for email) to a fake that fails once,
on the call after part ``k`` was accepted: a rate limit with the platform's own retry hint
(nothing kept), the change kept and then the connection dropped, kept and then a timeout,
kept and then a 5xx from a proxy. The send is retried with the same ``Progress`` until
it succeeds (bounded). Then: every part reached the customer; a part recorded as accepted
was never sent again; where the platform reconciles (LINE's retry key) each part arrived
exactly once; elsewhere at most one extra copy, and that copy was counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from deskbridge.adapters.base import MemoryProgress, send_parts
from deskbridge.adapters.email.adapter import EmailAdapter
from deskbridge.adapters.email.smtp import SmtpServer, send_mail
from deskbridge.adapters.sip import SipAdapter
from deskbridge.adapters.sip.message import Request, parse
from deskbridge.adapters.sip.transaction import make_response
from deskbridge.adapters.telegram import TelegramAdapter
from deskbridge.config.accounts import EmailConfig
from deskbridge.errors import RetryableError
from deskbridge.gateway import create_app
from deskbridge.policy import RetryPolicy
from deskbridge.schemas import (
    AgentReply,
    Channel,
    ChannelAddress,
    DeliveryState,
    Desk,
    Direction,
    SendReceipt,
)
from deskbridge.store import keys

from . import test_line as line_tests
from . import test_messenger as messenger_tests
from . import test_telegram as telegram_tests
from . import test_whatsapp as whatsapp_tests
from . import test_windows as window_tests
from .conftest import drain, redis_of
from .test_sip import address as sip_address
from .test_sip import sip_config

MODES = ["rate_limit", "commit_drop", "commit_timeout", "proxy_5xx"]
ATTEMPTS = 6


class Flaky:
    """A platform's store of accepted parts that fails once, on the call after ``after``
    accepted ones: ``rate_limit`` keeps nothing, the other modes keep the part first."""

    def __init__(self, mode: str, after: int = 1) -> None:
        self.mode = mode
        self.after = after
        self.kept: list[str] = []
        self.failed = False

    def take(self, key: str) -> str | None:
        """The failure to play for this call (None: answer normally)."""
        if self.failed or len(self.kept) < self.after:
            self.kept.append(key)
            return None
        self.failed = True
        if self.mode != "rate_limit":
            self.kept.append(key)
        return self.mode


def fail(mode: str, request: httpx.Request, limited: httpx.Response) -> httpx.Response:
    """The platform's answer in failure ``mode`` (the part kept already, but rate_limit)."""
    if mode == "rate_limit":
        return limited
    if mode == "commit_drop":
        raise httpx.RemoteProtocolError("Server disconnected without a response", request=request)
    if mode == "commit_timeout":
        raise httpx.ReadTimeout("The read operation timed out", request=request)
    return httpx.Response(502, text="<html><body>502 Bad Gateway</body></html>")


def play(
    flaky: Flaky,
    request: httpx.Request,
    key: str,
    ok: Callable[[], httpx.Response],
    limited: httpx.Response,
) -> httpx.Response:
    mode = flaky.take(key)
    return ok() if mode is None else fail(mode, request, limited)


def paragraphs(n: int, size: int) -> tuple[str, list[str]]:
    """A text that splits into ``n`` chunks of at most ``size``, and those chunks."""
    chunks = [f"part {i} " + "x" * (size - 20) for i in range(n)]
    return "\n\n".join(chunks), chunks


def reply(text: str) -> AgentReply:
    return AgentReply(
        account="acme",
        desk=Desk.SANDBOX,
        dedup_key="r-parts-1",
        ticket_id="t-1",
        external_id="c-1",
        text=text,
        occurred_at=datetime(2025, 6, 15, tzinfo=UTC),
    )


Send = Callable[[MemoryProgress], Awaitable[SendReceipt]]


async def until_sent(send: Send, progress: MemoryProgress) -> tuple[SendReceipt, list[str]]:
    """Retry ``send`` as the pipeline would (same progress) until it succeeds."""
    failures: list[str] = []
    for _ in range(ATTEMPTS):
        before = dict(progress.parts)
        try:
            receipt = await send(progress)
        except RetryableError as exc:
            failures.append(exc.outcome)
            continue
        finally:
            # a part accepted before this attempt keeps its id: it was not sent again
            assert {p: progress.parts[p] for p in before} == before
        return receipt, failures
    raise AssertionError(f"not sent after {ATTEMPTS} attempts: {failures}")


def check(flaky: Flaky, expected: list[str], progress: MemoryProgress, *, reconciled: bool) -> None:
    assert flaky.failed, "the fake never failed"
    copies = Counter(flaky.kept)
    assert set(copies) == set(expected), "a part was lost"
    extra = sum(copies.values()) - len(expected)
    if reconciled or flaky.mode == "rate_limit":
        assert extra == 0 and progress.resent == []
    else:
        # the part kept before the failure went again, once, and was counted
        assert extra == 1 and progress.resent == [flaky.after]
    assert progress.unknown == set()
    assert sorted(progress.parts) == list(range(len(progress.parts)))


# --- Telegram --------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_telegram(mode: str) -> None:
    text, chunks = paragraphs(3, 4096)
    flaky = Flaky(mode)
    ids = iter(range(100, 200))

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        ok = {"ok": True, "result": {"message_id": next(ids), "chat": {"id": 42}, "date": 0}}
        limited = {
            "ok": False,
            "error_code": 429,
            "description": "Too Many Requests: retry after 7",
            "parameters": {"retry_after": 7},
        }
        return play(
            flaky,
            request,
            body["text"],
            lambda: httpx.Response(200, json=ok),
            httpx.Response(429, json=limited),
        )

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        adapter = TelegramAdapter(
            "acme", telegram_tests.config(), client, api_base=telegram_tests.API
        )
        to = ChannelAddress(channel=Channel.TELEGRAM, account="acme", thread="42")
        progress = MemoryProgress()
        receipt, failures = await until_sent(
            lambda p: adapter.send(reply(text), to, (), p), progress
        )
    check(flaky, chunks, progress, reconciled=False)
    assert len(receipt.external_ids) == 3
    if mode == "rate_limit":
        assert failures == ["not_applied"]


# --- WhatsApp --------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_whatsapp(mode: str) -> None:
    text, chunks = paragraphs(3, 4096)
    flaky = Flaky(mode)
    ids = iter(range(100, 200))

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        ok = {
            "messaging_product": "whatsapp",
            "contacts": [{"input": body["to"], "wa_id": body["to"]}],
            "messages": [{"id": f"wamid.{next(ids)}"}],
        }
        # Cloud API throughput limit: HTTP 400 with Graph code 130429
        limited = {"error": {"message": "Rate limit hit", "type": "OAuthException", "code": 130429}}
        return play(
            flaky,
            request,
            body["text"]["body"],
            lambda: httpx.Response(200, json=ok),
            httpx.Response(400, json=limited),
        )

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        adapter = whatsapp_tests.adapter_for(client)
        progress = MemoryProgress()
        receipt, _ = await until_sent(
            lambda p: adapter.send(reply(text), whatsapp_tests.address(), (), p), progress
        )
    check(flaky, chunks, progress, reconciled=False)
    assert len(receipt.external_ids) == 3


# --- Messenger -------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_messenger(mode: str) -> None:
    text, chunks = paragraphs(3, 1999)
    flaky = Flaky(mode)
    ids = iter(range(100, 200))

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        ok = {"recipient_id": messenger_tests.PSID, "message_id": f"m_{next(ids)}"}
        # the Page's rate limit: Graph code 613
        limited = {
            "error": {"message": "Calls to this api have exceeded the rate limit.", "code": 613}
        }
        return play(
            flaky,
            request,
            body["message"]["text"],
            lambda: httpx.Response(200, json=ok),
            httpx.Response(400, json=limited),
        )

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        adapter = messenger_tests.adapter_for(client)
        progress = MemoryProgress()
        receipt, _ = await until_sent(
            lambda p: adapter.send(reply(text), messenger_tests.to(), (), p), progress
        )
    check(flaky, chunks, progress, reconciled=False)
    assert len(receipt.external_ids) == 3


# --- LINE ------------------------------------------------------------------------------


class LinePlatform:
    """LINE's push API with its retry key: a key seen on an accepted request answers 409
    (naming the accepted request) and sends nothing."""

    def __init__(self, flaky: Flaky) -> None:
        self.flaky = flaky
        self.accepted: dict[str, str] = {}
        self.ids = iter(range(1000, 2000))
        self.reply_tokens: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        batch = "|".join(m["text"] for m in body["messages"])
        if request.url.path.endswith("/reply"):
            self.reply_tokens.append(body["replyToken"])
            if len(self.reply_tokens) > 1:
                return httpx.Response(400, json={"message": "Invalid reply token"})
            self.flaky.kept.append(batch)
            return self.sent(body)
        key = request.headers["x-line-retry-key"]
        if key in self.accepted:
            return httpx.Response(
                409,
                json={"message": "The retry key is already accepted"},
                headers={"x-line-accepted-request-id": self.accepted[key]},
            )
        limited = httpx.Response(
            429, json={"message": "The API rate limit has been exceeded. Try again later."}
        )
        mode = self.flaky.take(batch)
        if mode != "rate_limit":
            self.accepted[key] = f"req-{len(self.accepted)}"
        return self.sent(body) if mode is None else fail(mode, request, limited)

    def sent(self, body: dict[str, Any]) -> httpx.Response:
        ids = [{"id": str(next(self.ids)), "quoteToken": "q"} for _ in body["messages"]]
        return httpx.Response(200, json={"sentMessages": ids})


@pytest.mark.parametrize("mode", MODES)
async def test_line(mode: str) -> None:
    text, chunks = paragraphs(11, 5000)  # three requests: 5 + 5 + 1 messages
    batches = ["|".join(chunks[i : i + 5]) for i in range(0, 11, 5)]
    flaky = Flaky(mode)
    platform = LinePlatform(flaky)
    async with httpx.AsyncClient(transport=httpx.MockTransport(platform)) as client:
        adapter = line_tests.adapter_for(client)
        progress = MemoryProgress()
        receipt, _ = await until_sent(
            lambda p: adapter.send(reply(text), line_tests.TO, (), p), progress
        )
    check(flaky, batches, progress, reconciled=True)
    assert Counter(flaky.kept) == Counter(batches)  # exactly one copy of each
    assert receipt.quota_messages <= 11


async def test_line_retry_after_a_failed_push_never_reuses_the_spent_reply_token() -> None:
    text, chunks = paragraphs(6, 5000)  # reply: 5 messages, then push: 1
    flaky = Flaky("proxy_5xx", after=1)
    platform = LinePlatform(flaky)
    async with httpx.AsyncClient(transport=httpx.MockTransport(platform)) as client:
        adapter = line_tests.adapter_for(client)
        progress = MemoryProgress()
        to = line_tests.with_token(10)
        receipt, failures = await until_sent(
            lambda p: adapter.send(reply(text), to, (), p), progress
        )
    assert failures == ["unknown"]
    assert platform.reply_tokens == [to.reply_token]  # tried once, at the first attempt
    assert Counter(flaky.kept) == Counter(["|".join(chunks[:5]), chunks[5]])
    # the 409 that settled the push names the accepted request, not its messages
    assert progress.parts[1] == "accepted:req-0"
    assert receipt.used_reply_token is False and len(receipt.external_ids) == 5


# --- email -----------------------------------------------------------------------------


class Smtp:
    """An SMTP server that keeps mails and fails once, the way a server does: 421 before
    taking the mail (busy), or the mail kept and then the connection dropped, or kept and
    the answer held back past the client's timeout."""

    def __init__(self, flaky: Flaky) -> None:
        self.flaky = flaky
        self.release = asyncio.Event()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        mid = next(
            line.split(b":", 1)[1].strip().decode()
            for line in raw.splitlines()
            if line.lower().startswith(b"message-id:")
        )
        mode = self.flaky.take(mid)
        if mode == "rate_limit":
            return "421 4.7.0 Too many messages, try again later"
        if mode in ("commit_drop", "proxy_5xx"):
            assert server.transport is not None
            server.transport.close()
        elif mode == "commit_timeout":
            await self.release.wait()  # released when the test ends
        return "250 OK"


@contextlib.asynccontextmanager
async def smtp_server(flaky: Flaky) -> AsyncIterator[int]:
    loop = asyncio.get_running_loop()
    handler = Smtp(flaky)
    server = await loop.create_server(lambda: SMTP(handler, hostname="localhost"), "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        handler.release.set()
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("mode", MODES)
async def test_email(mode: str) -> None:
    flaky = Flaky(mode, after=0)  # one part: the mail
    async with smtp_server(flaky) as port:
        smtp = SmtpServer(host="127.0.0.1", port=port, security="none", timeout=0.3)

        async def deliver(msg: Any) -> None:
            await send_mail(msg, smtp)

        config = EmailConfig.model_validate(
            {
                "address": "support@acme.example",
                "inbound": "smtp",
                "smtp": {"host": "127.0.0.1", "port": port, "security": "none"},
            }
        )
        adapter = EmailAdapter("acme", config, deliver=deliver)
        to = ChannelAddress(
            channel=Channel.EMAIL,
            account="acme",
            thread="T1",
            context={"to": "ann@example.org", "subject": "Parcel"},
        )
        progress = MemoryProgress()
        receipt, _ = await until_sent(
            lambda p: adapter.send(reply("It ships today."), to, (), p), progress
        )
    # every copy is the same mail: the Message-ID does not change between attempts
    assert set(flaky.kept) == {f"<{receipt.external_ids[0]}>"}
    check(flaky, [f"<{receipt.external_ids[0]}>"], progress, reconciled=False)


# --- SIP -------------------------------------------------------------------------------


class SipFarEnd(asyncio.DatagramProtocol):
    """A pooled SBC: takes MESSAGEs on one port and answers from another. Fails once after
    ``flaky.after`` segments: 503 with Retry-After (not kept), or keeps the segment and
    never answers (the answer lost), or keeps it and answers 504 (a proxy gave up)."""

    def __init__(self, flaky: Flaky, answer_from: asyncio.DatagramTransport) -> None:
        self.flaky = flaky
        self.answer_from = answer_from
        self.branches: set[str] = set()
        self.datagrams = 0

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.datagrams += 1
        req = parse(data)
        assert isinstance(req, Request)
        branch = req.top_via().branch
        if branch in self.branches:
            return  # a retransmission of a transaction already decided
        self.branches.add(branch)
        mode = self.flaky.take(req.call_id)
        extra: list[tuple[str, str]] = []
        status = 200
        if mode == "rate_limit":
            status, extra = 503, [("Retry-After", "5")]
        elif mode in ("commit_drop", "commit_timeout"):
            return
        elif mode == "proxy_5xx":
            status = 504
        resp = make_response(req, status, to_tag="sbc", extra=extra)
        self.answer_from.sendto(resp.encode(), addr)


@contextlib.asynccontextmanager
async def sbc(flaky: Flaky) -> AsyncIterator[tuple[SipFarEnd, int]]:
    loop = asyncio.get_running_loop()
    answer_from, _ = await loop.create_datagram_endpoint(
        asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
    )
    listen, far = await loop.create_datagram_endpoint(
        lambda: SipFarEnd(flaky, answer_from), local_addr=("127.0.0.1", 0)
    )
    port = listen.get_extra_info("sockname")[1]
    assert answer_from.get_extra_info("sockname")[1] != port
    try:
        yield far, port
    finally:
        listen.close()
        answer_from.close()


@pytest.mark.parametrize("mode", MODES)
async def test_sip(mode: str) -> None:
    flaky = Flaky(mode)
    async with sbc(flaky) as (_, port):
        adapter = SipAdapter("acme", sip_config(timers={"t1": 0.005, "t2": 0.04}), NoLinks())
        text = "Guten Tag! " * 300  # ~3.3 kB: several MESSAGEs over UDP
        progress = MemoryProgress()
        receipt, _ = await until_sent(
            lambda p: adapter.send(reply(text), sip_address(port), [], p), progress
        )
    assert len(receipt.external_ids) >= 3
    check(flaky, list(receipt.external_ids), progress, reconciled=False)


async def test_sip_answer_from_another_port_ends_the_transaction_without_a_resend() -> None:
    async with sbc(Flaky("none", after=10)) as (far, port):
        # a long T1: a lost answer would show as a retransmission, or as Timer F
        adapter = SipAdapter("acme", sip_config(timers={"t1": 0.5, "t2": 4.0}), NoLinks())
        receipt = await adapter.send(reply("hi"), sip_address(port), [])
    assert len(receipt.external_ids) == 1 and far.datagrams == 1


class NoLinks:
    def url_for(self, account: str, attachment: Any, *, ttl: float | None = None) -> str:
        return "https://gw.example/media/x"

    def video_preview_url(self) -> str:
        return ""


# --- the pipeline: parts kept with the delivery, on a real Redis ------------------------


class TwoParts:
    """A channel whose replies are two parts; ``script`` says how a part's call fails
    (by call number, from 1): ``unknown`` (kept, answer lost) or ``limited`` (429)."""

    channel = Channel.TELEGRAM
    takes_files = False

    def __init__(self, script: dict[int, str] | None = None, *, limited_from: int = 0) -> None:
        self.account = "acme"
        self.script = script or {}
        self.limited_from = limited_from
        self.calls = 0
        self.kept: list[str] = []

    async def fetch(self, attachment: Any) -> Any:
        raise AssertionError("no files here")

    async def send(
        self,
        reply: AgentReply,
        to: ChannelAddress,
        files: Any = (),
        progress: Any = None,
    ) -> SendReceipt:
        async def part(i: int) -> str:
            self.calls += 1
            if self.limited_from and self.calls >= self.limited_from:
                raise RetryableError("fake: rate limited (HTTP 429)", status=429, retry_after=0.02)
            what = self.script.get(self.calls)
            self.kept.append(f"{reply.text}#{i}")
            if what == "unknown":
                raise RetryableError("fake: ReadTimeout", outcome="unknown")
            return f"m{self.calls}"

        calls = [lambda: part(0), lambda: part(1)]
        return SendReceipt(external_ids=await send_parts(progress, calls))

    async def reengage(self, to: ChannelAddress) -> SendReceipt:
        raise AssertionError("no window")


async def replied(rt: Any, channel: TwoParts) -> Any:
    """One customer message filed, one agent reply accepted: the reply's delivery."""
    rt.adapters[("acme", Channel.TELEGRAM)] = channel
    await window_tests.inbound(rt, window_tests.customer(1, hours_ago=0))
    await drain(rt)
    [ticket] = await rt.sandbox.tickets("acme")
    await window_tests.agent(rt, ticket.id, 1)
    [d] = [
        d
        for d in await window_tests._deliveries(rt, redis_of(rt))
        if d.direction is Direction.OUTBOUND
    ]
    return d


async def test_a_retry_resumes_after_the_accepted_part_and_counts_the_resend(
    make_runtime,
) -> None:
    rt = make_runtime()
    channel = TwoParts({2: "unknown"})
    d = await replied(rt, channel)
    await drain(rt)

    # part 0 went once; part 1 was kept, its answer lost, and went again (counted)
    assert channel.kept == ["agent 1#0", "agent 1#1", "agent 1#1"]
    done = await rt.deliveries.get("acme", d.id)
    assert done.state is DeliveryState.DELIVERED
    assert await rt.deliveries.parts("acme", d.id) == {0: "m1", 1: "m3"}
    assert (await rt.deliveries.part_state("acme", d.id))[1] == set()
    resends = rt.metrics.ambiguous_resends.labels(peer="telegram")._value.get()
    assert resends == 1
    log = [a.outcome for a in await rt.deliveries.attempts("acme", d.id)]
    assert log == ["retry", "resent", "delivered"]
    # the parts live as long as the record
    r = redis_of(rt)
    assert 0 < await r.ttl(keys.parts("acme", d.id)) <= await r.ttl(keys.delivery("acme", d.id))
    assert await rt.deliveries.purge(done)
    assert not await r.exists(keys.parts("acme", d.id))


async def test_rate_limits_past_the_total_make_a_dead_letter_and_a_replay_resumes(
    make_runtime,
) -> None:
    rt = make_runtime(max_rate_limit_wait_seconds=0.02, max_rate_limited_seconds=0.05)
    channel = TwoParts(limited_from=2)  # part 1 is rate limited, again and again
    d = await replied(rt, channel)
    await drain(rt)

    dead = await rt.deliveries.get("acme", d.id)
    assert dead.state is DeliveryState.DEAD and dead.reason == "exhausted"
    assert "rate limited for more than 0.05 s in total" in (dead.last_error or "")
    assert dead.attempts == 0  # rate limits spent no budget
    assert channel.kept == ["agent 1#0"]
    outcomes = [a.outcome for a in await rt.deliveries.attempts("acme", d.id)]
    assert outcomes == ["rate_limited", "rate_limited", "exhausted"]

    channel.limited_from = 0
    assert await rt.deliveries.replay(dead, "test") == "replayed"
    assert (await rt.deliveries.get("acme", d.id)).rate_limited_s == 0
    await drain(rt)
    assert (await rt.deliveries.get("acme", d.id)).state is DeliveryState.DELIVERED
    assert channel.kept == ["agent 1#0", "agent 1#1"]  # the replay resumed at part 1


async def test_the_reply_token_is_cleared_at_the_first_accepted_part(make_runtime) -> None:
    rt = make_runtime()
    channel = TwoParts({2: "unknown"})
    d = await replied(rt, channel)
    await rt.conversations.set_reply_token("acme", d.conversation_id, "tok-1", time.time())
    seen: list[str | None] = []
    original = channel.send

    async def send(reply: AgentReply, to: ChannelAddress, files: Any = (), progress: Any = None):
        seen.append(to.reply_token)
        return await original(reply, to, files, progress)

    channel.send = send  # type: ignore[method-assign]
    await drain(rt)
    # the first attempt had the token; its part 0 was accepted, so the retry has none
    assert seen == ["tok-1", None]
    conv = await rt.conversations.get("acme", d.conversation_id)
    assert conv is not None and conv.reply_token is None


def test_policy_bounds_rate_limited_waits_in_total() -> None:
    policy = RetryPolicy(max_rate_limit_wait=60, max_rate_limited=100)
    limited = RetryableError("429", status=429, retry_after=30)
    assert policy.decide(limited, 1, rate_limited=60).action == "retry"
    assert policy.decide(limited, 1, rate_limited=60).wait == 30
    dead = policy.decide(limited, 1, rate_limited=80)
    assert dead.action == "dead" and not dead.spends_budget
    assert dead.why == "rate limited for more than 100 s in total"
    # a wait the peer asks beyond the cap counts as the cap
    assert policy.decide(RetryableError("429", status=429, retry_after=600), 1).wait == 60


async def test_admin_show_lists_the_parts_sent(make_runtime, aiohttp_client) -> None:
    from .test_admin_api import SECRET, get

    rt = make_runtime(admin_jwt_secret=SECRET)
    channel = TwoParts({2: "unknown"})
    d = await replied(rt, channel)
    await drain(rt)
    client = await aiohttp_client(create_app(rt, role="serve"))
    status, body = await get(client, f"/deliveries/{d.id}")
    assert status == 200 and body["parts_sent"] == {"0": "m1", "1": "m3"}
    assert [a["outcome"] for a in body["attempt_log"]] == ["retry", "resent", "delivered"]


async def test_a_part_begun_by_a_worker_that_died_is_resent_and_counted(make_runtime) -> None:
    rt = make_runtime()
    channel = TwoParts()
    d = await replied(rt, channel)
    # a worker marked part 0 as going out, then died before its answer was recorded
    await rt.deliveries.record_unknown_part("acme", d.id, 0)
    await drain(rt)
    assert channel.kept == ["agent 1#0", "agent 1#1"]
    assert rt.metrics.ambiguous_resends.labels(peer="telegram")._value.get() == 1
    log = [a.outcome for a in await rt.deliveries.attempts("acme", d.id)]
    assert log == ["resent", "delivered"]
    assert (await rt.deliveries.part_state("acme", d.id))[1] == set()
