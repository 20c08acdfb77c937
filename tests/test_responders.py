"""The bot front desk (issue 23, part 1): the knowledge base's matching, the hand-off
words, the external responder contract (signed; timeouts and errors hand off, never
drop), hand-off rules, the transcript and collected fields on the ticket, metrics.

The desk is the sandbox; the channel a recording fake; the external responder a local
HTTP server on port 0 (real sockets, real timeouts)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from pydantic import ValidationError

from deskbridge.adapters.base import Progress, send_parts
from deskbridge.config import parse_accounts
from deskbridge.errors import ConfigError, PermanentError
from deskbridge.flows import responders
from deskbridge.flows.ingest import accept_replies
from deskbridge.routing.responders import (
    KnowledgeBaseConfig,
    RespondersConfig,
    asks_for_person,
    kb_answer,
    parse_answer,
    sign,
)
from deskbridge.schemas import (
    AgentReply,
    Attachment,
    Channel,
    ChannelAddress,
    Desk,
    DeskFields,
    Direction,
    Handoff,
    Message,
    Sender,
    SendReceipt,
    Upload,
)
from deskbridge.store import IntakeEvent

from .conftest import TG_SECRET, TG_TOKEN, drain

BOT_SECRET = "bot-secret-0123456789abcdef"

KB = """
        - type: knowledge_base
          threshold: 80
          entries:
            - language: en
              questions: [when are you open, what are your opening hours]
              answer: We are open Monday to Friday, 9:00 to 18:00.
            - language: en
              questions: [how do I return an item, returns policy]
              answer: You can return anything within 30 days.
            - language: es
              questions: [cuándo abren, horario de atención]
              answer: Abrimos de lunes a viernes, de 9 a 18.
"""


def yaml_with(chain: str, extra: str = "") -> str:
    return f"""
accounts:
  acme:
    desk: {{type: sandbox}}
    channels:
      - type: telegram
        bot_token: "{TG_TOKEN}"
        secret_token: "{TG_SECRET}"
        base_url: https://tg.test
    responders:
      max_bot_turns: 3
      fields: {{order_number: "360001"}}
{extra}      chain:
{chain}"""


class RecordingChannel:
    """A Telegram stand-in recording what it sends."""

    channel = Channel.TELEGRAM
    takes_files = True

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def fetch(self, attachment: Attachment) -> Upload:
        raise PermanentError("no files here")

    async def send(
        self,
        reply: AgentReply,
        to: ChannelAddress,
        files: Sequence[Upload],
        progress: Progress | None = None,
    ) -> SendReceipt:
        async def one() -> str:
            self.sent.append(reply.text)
            return f"out-{len(self.sent)}"

        return SendReceipt(external_ids=await send_parts(progress, [one]))

    async def reengage(self, to: ChannelAddress) -> SendReceipt:
        raise PermanentError("none")


def runtime(make_runtime: Any, chain: str = KB, extra: str = "") -> tuple[Any, RecordingChannel]:
    rt = make_runtime(yaml_with(chain, extra))
    channel = RecordingChannel()
    rt.adapters[("acme", Channel.TELEGRAM)] = channel
    return rt, channel


async def says(rt: Any, n: int, text: str, **extra: Any) -> None:
    msg = Message(
        account="acme",
        channel=Channel.TELEGRAM,
        dedup_key=f"in-{n}",
        thread="42",
        occurred_at=datetime.now(UTC) - timedelta(seconds=100 - n),
        external_id=str(n),
        sender=Sender(external_id="42", display_name="Ann"),
        text=text,
        **extra,
    )
    conv = rt.conversations.conversation_id("acme", Channel.TELEGRAM, "42")
    await rt.intake.accept(
        account="acme",
        source="telegram",
        direction=Direction.INBOUND,
        channel="telegram",
        desk="sandbox",
        req=None,
        events=[IntakeEvent(dedup_key=msg.dedup_key, conversation_id=conv, event=msg)],
    )
    await drain(rt)


async def customer_parts(rt: Any) -> list[str]:
    tickets = await rt.sandbox.tickets("acme")
    return [m.text for t in tickets for m in t.messages if m.author == "customer"]


def sample(metric: Any, **labels: str) -> float:
    total = 0.0
    for family in metric.collect():
        for s in family.samples:
            if s.name.endswith(("_total", "_count")) and all(
                s.labels.get(k) == v for k, v in labels.items()
            ):
                total += s.value
    return total


# --- pure parts ---------------------------------------------------------------------------


def kb() -> KnowledgeBaseConfig:
    entries = [
        {"questions": ["when are you open", "what are your opening hours"], "answer": "9-18"},
        {"questions": ["how do I return an item"], "answer": "30 days", "language": "en"},
        {"questions": ["cuándo abren"], "answer": "9 a 18", "language": "es"},
    ]
    return KnowledgeBaseConfig.model_validate({"type": "knowledge_base", "entries": entries})


@pytest.mark.parametrize(
    ("text", "language", "expected"),
    [
        ("When are you open?", "en", "9-18"),
        ("opening hours?", "en", "9-18"),
        ("HOW DO I RETURN AN ITEM", None, "30 days"),
        ("¿Cuándo abren?", "es", "9 a 18"),
        ("¿Cuándo abren?", "en", None),  # other languages' entries are not asked
        ("I need an invoice for my company", "en", None),
        ("", "en", None),
    ],
)
def test_the_knowledge_base_answers_above_its_threshold(
    text: str, language: str | None, expected: str | None
) -> None:
    answer = kb_answer(kb(), text, language)
    assert (answer.text if answer else None) == expected


def test_a_knowledge_base_file_is_read_and_checked(tmp_path: Any) -> None:
    good = tmp_path / "kb.yaml"
    good.write_text("- questions: [where is my parcel]\n  answer: Track it at example.com\n")
    cfg = KnowledgeBaseConfig.model_validate({"type": "knowledge_base", "file": str(good)})
    assert kb_answer(cfg, "where is my parcel?", "en") is not None
    bad = tmp_path / "bad.yaml"
    bad.write_text("- answer: no questions\n")
    with pytest.raises(ValidationError, match="knowledge base"):
        KnowledgeBaseConfig.model_validate({"type": "knowledge_base", "file": str(bad)})
    with pytest.raises(ValidationError, match="needs entries"):
        KnowledgeBaseConfig.model_validate({"type": "knowledge_base"})


def test_check_config_refuses_a_short_responder_secret() -> None:
    chain = "        - {type: http, url: 'https://bot.test/a', secret: short}\n"
    with pytest.raises(ConfigError) as exc:
        parse_accounts(yaml_with(chain))
    assert "16 characters" in str(exc.value.problems)


@pytest.mark.parametrize(
    ("text", "languages", "asked"),
    [
        ("Can I talk to a human?", ["en"], True),
        ("AGENT", ["en"], True),
        ("agents of change", ["en"], False),  # whole words only
        ("Quiero hablar con un agente", ["es"], True),
        ("Ich möchte einen Mitarbeiter sprechen", ["de"], True),
        ("オペレーターと話したい", ["ja"], True),
        ("转人工", ["zh"], True),
        ("상담원이랑 연결해 주세요", ["ko"], True),
        ("When are you open?", ["en"], False),
        ("Quiero hablar con un agente", [], True),  # no languages: every language's words
    ],
)
def test_asking_for_a_person(text: str, languages: list[str], asked: bool) -> None:
    cfg = RespondersConfig.model_validate({"chain": [kb().model_dump()]})
    assert asks_for_person(text, cfg.words(languages)) is asked


def test_the_account_adds_its_own_hand_off_words() -> None:
    cfg = RespondersConfig.model_validate(
        {"chain": [kb().model_dump()], "handoff_words": {"en": ["supervisor"]}}
    )
    assert asks_for_person("get me a supervisor", cfg.words(["en"]))


def test_the_signature_and_the_answer_shape() -> None:
    assert sign("k", "1700000000", b"{}") == (
        "sha256=" + __import__("hmac").new(b"k", b"1700000000.{}", "sha256").hexdigest()
    )
    answer = parse_answer({"reply": "Which order?", "collect": {"issue": "late"}})
    assert (answer.text, answer.collect, answer.handoff) == (
        "Which order?",
        {"issue": "late"},
        False,
    )
    bad: list[Any] = [[], {"reply": 3}, {"collect": {"x": 1}}, {"quick_replies": "no"}]
    for doc in bad:
        with pytest.raises(ValueError, match=r"."):
            parse_answer(doc)


def test_hand_off_fields_map_collected_values_and_tag_the_ticket(make_runtime: Any) -> None:
    rt, _ = runtime(make_runtime)
    msg = Message(
        account="acme",
        channel=Channel.TELEGRAM,
        dedup_key="x",
        thread="42",
        occurred_at=datetime.now(UTC),
        external_id="x",
        sender=Sender(external_id="42"),
        text="hi",
        handoff=Handoff(reason="asked", collected={"order_number": "4711", "mood": "calm"}),
    )
    routed = DeskFields(tags=("vip",), custom_fields={"999": "routing"})
    fields = responders.desk_fields(rt, "acme", msg, routed)
    assert fields is not None
    assert fields.tags == ("vip", "bot-handoff")
    assert fields.custom_fields == {"360001": "4711", "999": "routing"}
    plain = msg.model_copy(update={"handoff": None})
    assert responders.desk_fields(rt, "acme", plain, routed) is routed


# --- the knowledge base in the flow -------------------------------------------------------


async def test_the_bot_answers_then_hands_off_with_the_whole_session(make_runtime: Any) -> None:
    rt, channel = runtime(make_runtime)
    await says(rt, 1, "When are you open?")
    assert channel.sent == ["We are open Monday to Friday, 9:00 to 18:00."]
    assert await rt.sandbox.tickets("acme") == []  # nothing for a person yet
    await says(rt, 2, "And how do I return an item?")
    assert channel.sent[-1] == "You can return anything within 30 days."
    await says(rt, 3, "My parcel from order 4711 never arrived")  # no answer: a person
    assert len(channel.sent) == 2
    [first] = await customer_parts(rt)
    assert "handed over: the bot had no answer" in first
    for line in (
        "When are you open?",
        "Bot (automated), ",
        "We are open Monday to Friday",
        "And how do I return an item?",
        "You can return anything within 30 days.",
    ):
        assert line in first
    assert first.endswith("My parcel from order 4711 never arrived")
    # handed off: people answer; the next message goes straight to the ticket
    await says(rt, 4, "When are you open?")
    assert len(channel.sent) == 2
    assert (await customer_parts(rt))[-1] == "When are you open?"
    m = rt.metrics
    assert sample(m.bot_sessions, outcome="started") == 1
    assert sample(m.bot_sessions, outcome="handed_off") == 1
    assert sample(m.bot_answers, source="knowledge_base") == 2
    assert sample(m.bot_handoffs, reason="no_answer", channel="telegram") == 1
    assert sample(m.bot_time_to_handoff, channel="telegram") == 1


async def test_asking_for_a_person_hands_off_at_once(make_runtime: Any) -> None:
    rt, channel = runtime(make_runtime)
    await says(rt, 1, "I want to speak to a human")
    assert channel.sent == []
    # nothing of the bot's to show: the message as it came, the ticket tagged
    assert await customer_parts(rt) == ["I want to speak to a human"]
    notes = [m.text for t in await rt.sandbox.tickets("acme") for m in t.messages]
    assert "Routing: tags: bot-handoff" in notes
    assert sample(rt.metrics.bot_handoffs, reason="asked") == 1


async def test_the_bot_turns_run_out(make_runtime: Any) -> None:
    rt, channel = runtime(make_runtime)  # max_bot_turns: 3
    for n in (1, 2, 3, 4):
        await says(rt, n, "When are you open?")
    assert len(channel.sent) == 3
    [first] = await customer_parts(rt)
    assert "handed over: the bot's turns ran out" in first


async def test_a_message_without_text_goes_to_a_person(make_runtime: Any) -> None:
    rt, channel = runtime(make_runtime)
    photo = Attachment(kind="image", ref="file-1")
    rt.adapters[("acme", Channel.TELEGRAM)] = channel
    await says(rt, 1, "", attachments=(photo,))
    assert channel.sent == []
    [first] = await customer_parts(rt)
    assert "the bot cannot read this message" not in first  # nothing before it to show
    assert sample(rt.metrics.bot_handoffs, reason="not_text") == 1
    notes = [m.text for t in await rt.sandbox.tickets("acme") for m in t.messages]
    assert "Routing: tags: bot-handoff" in notes  # the sandbox shows the desk fields


async def test_an_agent_reply_keeps_the_bot_out(make_runtime: Any) -> None:
    rt, channel = runtime(make_runtime)
    await says(rt, 1, "I want a human")
    [ticket] = await rt.sandbox.tickets("acme")
    reply = AgentReply(
        account="acme",
        desk=Desk.SANDBOX,
        dedup_key="r1",
        ticket_id=ticket.id,
        external_id="agent-1",
        text="Hello, Bo here.",
        occurred_at=datetime.now(UTC),
    )
    assert await accept_replies(rt, "acme", "sandbox", None, [reply]) == 1
    await drain(rt)
    conv = rt.conversations.conversation_id("acme", Channel.TELEGRAM, "42")
    # even once the hand-off's hours are over, a person's reply starts them again
    session = await rt.bot.session("acme", conv)
    assert session is not None and session.state == "human"
    await says(rt, 2, "When are you open?")
    assert channel.sent == ["Hello, Bo here."]


# --- the external responder ---------------------------------------------------------------


class BotServer:
    """A team's bot on a local port: checks the signature, answers as scripted."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.answers: list[Any] = []
        self.bad_signatures = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        stamp = request.headers["X-Deskbridge-Timestamp"]
        if request.headers["X-Deskbridge-Signature"] != sign(BOT_SECRET, stamp, body):
            self.bad_signatures += 1
            return web.Response(status=401)
        self.requests.append(json.loads(body))
        answer = self.answers.pop(0)
        if answer == "slow":
            await asyncio.sleep(5)
            return web.json_response({"reply": "too late"})
        if isinstance(answer, int):
            return web.Response(status=answer)
        if answer == "garbage":
            return web.Response(text="<html>oops</html>", content_type="text/html")
        return web.json_response(answer)


@pytest.fixture
async def bot_server() -> AsyncIterator[tuple[BotServer, str]]:
    server = BotServer()
    app = web.Application()
    app.router.add_post("/answer", server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield server, f"http://127.0.0.1:{port}/answer"
    finally:
        await runner.cleanup()


def http_chain(url: str, timeout: float = 5) -> str:
    return (
        f"        - {{type: http, url: '{url}', secret: '{BOT_SECRET}',"
        f" timeout_seconds: {timeout}}}\n"
    )


async def test_the_external_responder_collects_and_hands_off(
    make_runtime: Any, bot_server: tuple[BotServer, str]
) -> None:
    server, url = bot_server
    rt, channel = runtime(make_runtime, KB + http_chain(url))
    server.answers = [
        {"reply": "Which order is it?", "quick_replies": ["Late", "Damaged"]},
        {"reply": "Thanks, noted.", "collect": {"order_number": "4711", "issue": "late"}},
        {"handoff": True, "reply": "A colleague will take over."},
    ]
    await says(rt, 1, "Something is wrong with my order")  # not in the knowledge base
    await says(rt, 2, "Order 4711, it is late")
    assert channel.sent == ["Which order is it?\n\n1. Late\n2. Damaged", "Thanks, noted."]
    second = server.requests[1]
    assert second["message"]["text"] == "Order 4711, it is late"
    assert [h["role"] for h in second["history"]] == ["customer", "bot"]
    assert second["channel"] == "telegram" and second["bot_turns"] == 1
    await says(rt, 3, "ok")
    assert channel.sent[-1] == "A colleague will take over."
    assert server.requests[2]["collected"] == {"order_number": "4711", "issue": "late"}
    assert server.bad_signatures == 0
    [first] = await customer_parts(rt)
    assert "handed over: the bot handed over" in first
    assert "[Collected by the bot: issue: late; order_number: 4711]" in first
    assert "Bot (automated), " in first and "Thanks, noted." in first


@pytest.mark.parametrize("failure", ["slow", 500, 404, "garbage"])
async def test_a_failing_responder_hands_off_and_drops_nothing(
    make_runtime: Any, bot_server: tuple[BotServer, str], failure: Any
) -> None:
    server, url = bot_server
    rt, channel = runtime(make_runtime, http_chain(url, timeout=0.5))
    server.answers = [failure]
    await says(rt, 1, "Hello?")
    assert channel.sent == []
    assert await customer_parts(rt) == ["Hello?"]
    assert sample(rt.metrics.bot_handoffs, reason="responder_error") == 1


async def test_an_unreachable_responder_hands_off(make_runtime: Any) -> None:
    rt, channel = runtime(make_runtime, http_chain("http://127.0.0.1:9/answer", timeout=1))
    await says(rt, 1, "Hello?")
    assert channel.sent == []
    assert (await customer_parts(rt))[0].endswith("Hello?")


async def test_a_retried_hand_off_files_the_same_session_once(make_runtime: Any) -> None:
    """The desk fails the hand-off's filing once: the retry files the same transcript,
    and the bot's earlier answer is not sent again."""
    rt, channel = runtime(make_runtime)
    await says(rt, 1, "When are you open?")
    desk = rt.desk("acme")
    real = desk.append
    calls = 0

    async def flaky(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            from deskbridge.errors import RetryableError

            raise RetryableError("desk hiccup", status=503)
        return await real(*args, **kwargs)

    desk.append = flaky
    await says(rt, 2, "human please")
    assert calls == 2
    [first] = await customer_parts(rt)
    assert "We are open Monday to Friday" in first and first.endswith("human please")
    assert channel.sent == ["We are open Monday to Friday, 9:00 to 18:00."]
    assert sample(rt.metrics.bot_handoffs, reason="asked") == 1


async def test_off_hours_only_a_hand_off_gets_the_acknowledgement(make_runtime: Any) -> None:
    """The bot answers at night without promising a person; a hand-off off hours is
    told when people are back (the business hours decide)."""
    today = datetime.now(UTC).date().isoformat()
    days = ", ".join(
        f"{d}: '00:00-23:59'" for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    )
    routing = f"""    routing:
      languages: [en, es]
      business_hours: {{time_zone: UTC, weekly: {{{days}}}, holidays: [{today}]}}
      off_hours_ack: "We are closed; a person answers from {{next_open}}."
"""
    rt = make_runtime(yaml_with(KB) + routing)
    channel = RecordingChannel()
    rt.adapters[("acme", Channel.TELEGRAM)] = channel
    await says(rt, 1, "When are you open?")
    assert channel.sent == ["We are open Monday to Friday, 9:00 to 18:00."]
    await says(rt, 2, "¿Puedo hablar con un agente?")  # Spanish: the account's languages
    assert len(channel.sent) == 2
    assert channel.sent[1].startswith("We are closed; a person answers from")
    assert sample(rt.metrics.bot_handoffs, reason="asked") == 1


def test_the_demo_account_has_a_small_knowledge_base(tmp_path: Any) -> None:
    from deskbridge.adapters.demo import demo_accounts

    cfg = demo_accounts(tmp_path).accounts["demo"].responders
    assert cfg is not None
    [kb_cfg] = cfg.chain
    assert isinstance(kb_cfg, KnowledgeBaseConfig)
    answer = kb_answer(kb_cfg, "When are you open?", "en")
    assert answer is not None and "Monday to Friday" in (answer.text or "")
    assert kb_answer(kb_cfg, "hello from the smoke test via telegram", "en") is None
