"""Satisfaction surveys on the customer's channel (issue 23, part 2): scheduled once per
solved ticket, never to an opted-out customer nor more often than the period, sent
within the channel's window (or as the approved WhatsApp template) with the channel's
own controls, the answer read and written to the ticket, not filed as a new message."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import respx

from deskbridge.flows import csat
from deskbridge.gateway import create_app
from deskbridge.routing.csat import CHOICES, parse_score
from deskbridge.schemas import Channel
from deskbridge.store import keys
from deskbridge.store.csat import SurveyLinkError, SurveyLinks

from .conftest import drain, redis_of
from .test_proactive import PHONE, WA, YAML, customer_wrote
from .test_responders import RecordingChannel, customer_parts, sample, says


@pytest.fixture
def api() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as router:
        router.post(f"https://graph.test/v23.0/{WA}/messages").mock(
            return_value=httpx.Response(200, json={"messages": [{"id": "wamid.OUT1"}]})
        )
        yield router


CSAT = """    csat:
      delay_minutes: 0
      period_days: 30
"""

TG_YAML = """
accounts:
  acme:
    desk: {type: sandbox}
    channels:
      - type: telegram
        bot_token: "123456:TEST-token_abcdefghijklmnop"
        secret_token: "test-secret_token"
        base_url: https://tg.test
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5", (5, "")),
        ("4 quick and friendly", (4, "quick and friendly")),
        ("3/5 - slow", (3, "slow")),
        ("⭐⭐⭐⭐", (4, "")),
        ("\uff15", (5, "")),  # a full-width digit
        (CHOICES[-1], (5, "")),
        (
            "2 stars, the first agent did not read my message",
            (2, "the first agent did not read my message"),
        ),
        ("5. Thanks a lot", (5, "Thanks a lot")),
        ("4, very good", (4, "very good")),
        ("6", None),
        ("10 out of 10", None),
        ("45 minutes is too long", None),
        ("3.5", None),
        ("hello", None),
        ("", None),
    ],
)
def test_reading_an_answer(text: str, expected: tuple[int, str] | None) -> None:
    assert parse_score(text) == expected


def telegram_runtime(make_runtime: Any, extra: str = CSAT) -> tuple[Any, RecordingChannel]:
    rt = make_runtime(TG_YAML + extra)
    channel = RecordingChannel()
    rt.adapters[("acme", Channel.TELEGRAM)] = channel
    return rt, channel


async def solved_ticket(rt: Any) -> str:
    [ticket] = await rt.sandbox.tickets("acme")
    return str(ticket.id)


async def notes(rt: Any) -> list[str]:
    return [
        m.text for t in await rt.sandbox.tickets("acme") for m in t.messages if m.author == "note"
    ]


async def test_a_solved_ticket_is_surveyed_once_and_the_answer_noted(make_runtime: Any) -> None:
    rt, channel = telegram_runtime(make_runtime)
    await says(rt, 1, "My parcel is late")
    ticket = await solved_ticket(rt)
    assert await csat.ticket_solved(rt, "acme", "sandbox", ticket) == "scheduled"
    assert await csat.ticket_solved(rt, "acme", "sandbox", ticket) == "already"
    assert await csat.send_due(rt) == 1
    assert await csat.send_due(rt) == 0
    await drain(rt)
    [survey] = channel.sent
    assert survey.startswith("How would you rate the help you got?")
    assert survey.endswith("\n\n1. 1 ⭐\n2. 2 ⭐⭐\n3. 3 ⭐⭐⭐\n4. 4 ⭐⭐⭐⭐\n5. 5 ⭐⭐⭐⭐⭐")
    await says(rt, 2, "4 quick and friendly")
    assert channel.sent[-1] == "Thank you for your feedback!"
    assert await customer_parts(rt) == ["My parcel is late"]  # the answer is not filed
    assert any(
        n.startswith("Customer satisfaction: 4/5 (survey on telegram after ticket")
        and 'Comment: "quick and friendly"' in n
        for n in await notes(rt)
    )
    assert sample(rt.metrics.csat_score, channel="telegram") == 1
    assert sample(rt.metrics.csat_surveys, outcome="sent") == 1
    # the survey is answered: a later "5" is a message like any other
    await says(rt, 3, "5")
    assert (await customer_parts(rt))[-1] == "5"
    assert sample(rt.metrics.csat_score, channel="telegram") == 1


@pytest.mark.parametrize(
    ("extra", "tags"), [("", ["Tags: csat_4"]), ("      tag_prefix: ''\n", [])]
)
async def test_the_answer_tags_the_ticket_before_the_note(
    make_runtime: Any, extra: str, tags: list[str]
) -> None:
    rt, _ = telegram_runtime(make_runtime, CSAT + extra)
    await says(rt, 1, "My parcel is late")
    await csat.ticket_solved(rt, "acme", "sandbox", await solved_ticket(rt))
    await csat.send_due(rt)
    await drain(rt)
    await says(rt, 2, "4")
    await drain(rt)
    written = [n for n in await notes(rt) if n.startswith(("Tags", "Customer satisfaction"))]
    assert written[:-1] == tags
    assert written[-1].startswith("Customer satisfaction: 4/5")


async def test_the_score_is_counted_for_the_routings_team(make_runtime: Any) -> None:
    routing = """    routing:
      rules:
        - name: parcels
          when: {text: parcel}
          then: {group: "logistics"}
"""
    rt, _ = telegram_runtime(make_runtime, CSAT + routing)
    await says(rt, 1, "My parcel is late")
    await csat.ticket_solved(rt, "acme", "sandbox", await solved_ticket(rt))
    await csat.send_due(rt)
    await drain(rt)
    await says(rt, 2, "2 too slow")
    assert sample(rt.metrics.csat_score, team="logistics") == 1
    assert sample(rt.metrics.csat_score, team="none") == 0


async def test_a_message_that_is_not_a_score_is_filed(make_runtime: Any) -> None:
    rt, channel = telegram_runtime(make_runtime)
    await says(rt, 1, "My parcel is late")
    await csat.ticket_solved(rt, "acme", "sandbox", await solved_ticket(rt))
    await csat.send_due(rt)
    await drain(rt)
    await says(rt, 2, "It came, but broken")
    assert await customer_parts(rt) == ["My parcel is late", "It came, but broken"]
    assert len(channel.sent) == 1  # the survey, no thanks


async def test_a_message_soon_after_a_bare_score_is_its_comment(make_runtime: Any) -> None:
    rt, channel = telegram_runtime(make_runtime)
    await says(rt, 1, "My parcel is late")
    ticket = await solved_ticket(rt)
    await csat.ticket_solved(rt, "acme", "sandbox", ticket)
    await csat.send_due(rt)
    await drain(rt)
    await says(rt, 2, "5")
    await says(rt, 3, "The agent found it in an hour")
    await drain(rt)
    assert await customer_parts(rt) == ["My parcel is late"]  # neither is filed
    assert (
        f'Customer satisfaction comment on the 5/5 answer (ticket {ticket}): "The agent '
        'found it in an hour"'
    ) in await notes(rt)
    assert sample(rt.metrics.csat_surveys, outcome="commented") == 1
    # one comment only: the next message is the customer's like any other
    await says(rt, 4, "Can I also change my address?")
    assert await customer_parts(rt) == ["My parcel is late", "Can I also change my address?"]
    assert channel.sent[1:] == ["Thank you for your feedback!"]


@pytest.mark.parametrize(
    ("extra", "first"),
    [("      comment_minutes: 0\n", "5"), ("", "5 great"), ("", "4")],
)
async def test_a_follow_up_is_filed_when_no_comment_is_due(
    make_runtime: Any, extra: str, first: str
) -> None:
    rt, _ = telegram_runtime(make_runtime, CSAT + extra)
    await says(rt, 1, "My parcel is late")
    await csat.ticket_solved(rt, "acme", "sandbox", await solved_ticket(rt))
    await csat.send_due(rt)
    await drain(rt)
    await says(rt, 2, first)
    if first == "4":  # a bare score, but the follow-up comes after the window
        conv = rt.conversations.conversation_id("acme", Channel.TELEGRAM, "42")
        r: Any = redis_of(rt)  # redis-py's stubs type hset as sync or async
        await r.hset(keys.csat_open("acme", conv), "answered_at", "1000")
    await says(rt, 3, "Where is my refund?")
    assert await customer_parts(rt) == ["My parcel is late", "Where is my refund?"]
    assert not any(n.startswith("Customer satisfaction comment") for n in await notes(rt))


async def test_no_survey_for_opted_out_or_recently_surveyed_customers(make_runtime: Any) -> None:
    rt, _ = telegram_runtime(make_runtime)
    await says(rt, 1, "Question one")
    ticket = await solved_ticket(rt)
    conv = await rt.conversations.get(
        "acme", rt.conversations.conversation_id("acme", Channel.TELEGRAM, "42")
    )
    await rt.conversations.set_attribute("acme", conv.contact_id, "opt_out", "yes")
    assert await csat.ticket_solved(rt, "acme", "sandbox", ticket) == "opted_out"
    await rt.conversations.set_attribute("acme", conv.contact_id, "opt_out", "no")
    assert await csat.ticket_solved(rt, "acme", "sandbox", ticket) == "scheduled"
    await csat.send_due(rt)
    await drain(rt)
    # another ticket of the same customer within the period: no second survey
    desk = rt.desk("acme")
    other = await rt.sandbox.create_ticket(
        "acme", subject="again", requester="Ann", channel="telegram"
    )
    await rt.conversations.set_ticket("acme", desk.desk.value, conv.id, other, 1)
    assert await csat.ticket_solved(rt, "acme", "sandbox", other) == "recent"
    assert sample(rt.metrics.csat_surveys, outcome="recent") == 1
    assert await csat.ticket_solved(rt, "acme", "sandbox", "no-such-ticket") == "unknown_ticket"


async def test_the_delay_holds_the_survey(make_runtime: Any) -> None:
    rt, _ = telegram_runtime(make_runtime, "    csat: {delay_minutes: 60}\n")
    await says(rt, 1, "Question")
    await csat.ticket_solved(rt, "acme", "sandbox", await solved_ticket(rt))
    assert await csat.send_due(rt) == 0
    assert await csat.send_due(rt, now=time.time() + 3601) == 1


async def test_whatsapp_inside_the_window_sends_a_list(make_runtime: Any, api: Any) -> None:
    rt = make_runtime(YAML + CSAT)
    await customer_wrote(rt, Channel.WHATSAPP, PHONE, hours_ago=2)
    await csat.ticket_solved(rt, "acme", "sandbox", await solved_ticket(rt))
    await csat.send_due(rt)
    await drain(rt)
    [call] = [c for c in api.calls if str(c.request.url).endswith(f"{WA}/messages")]
    body = json.loads(call.request.content)
    assert body["type"] == "interactive"
    rows = body["interactive"]["action"]["sections"][0]["rows"]
    assert [r["title"] for r in rows] == list(CHOICES)


async def test_whatsapp_outside_the_window_skips_without_a_template(
    make_runtime: Any, api: Any
) -> None:
    rt = make_runtime(YAML + CSAT)
    await customer_wrote(rt, Channel.WHATSAPP, PHONE, hours_ago=30)
    await csat.ticket_solved(rt, "acme", "sandbox", await solved_ticket(rt))
    assert await csat.send_due(rt) == 0
    assert sample(rt.metrics.csat_surveys, outcome="window_closed") == 1
    assert not [c for c in api.calls if str(c.request.url).endswith(f"{WA}/messages")]


async def test_whatsapp_outside_the_window_sends_the_approved_template(
    make_runtime: Any, api: Any
) -> None:
    template = CSAT + "      whatsapp_template: {name: csat_survey, language: en_US}\n"
    rt = make_runtime(YAML + template)
    await customer_wrote(rt, Channel.WHATSAPP, PHONE, hours_ago=30)
    await csat.ticket_solved(rt, "acme", "sandbox", await solved_ticket(rt))
    assert await csat.send_due(rt) == 1
    await drain(rt)
    [call] = [c for c in api.calls if str(c.request.url).endswith(f"{WA}/messages")]
    body = json.loads(call.request.content)
    assert body["type"] == "template"
    assert body["template"] == {"name": "csat_survey", "language": {"code": "en_US"}}


async def test_the_sandbox_solve_button(make_runtime: Any, aiohttp_client: Any) -> None:
    rt, channel = telegram_runtime(make_runtime)
    client = await aiohttp_client(create_app(rt, role="serve"))
    await says(rt, 1, "Help please")
    ticket = await solved_ticket(rt)
    page = await (await client.get(f"/sandbox/acme/tickets/{ticket}")).text()
    assert "Solve</button>" in page
    csrf = re.search(r'name="csrf" value="([^"]+)"', page)
    assert csrf is not None
    refused = await client.post(f"/sandbox/acme/tickets/{ticket}/solve", data={"csrf": "x"})
    assert refused.status == 403
    resp = await client.post(
        f"/sandbox/acme/tickets/{ticket}/solve",
        data={"csrf": csrf.group(1)},
        allow_redirects=False,
    )
    assert resp.status == 303
    assert "Solved. The satisfaction survey is scheduled." in await notes(rt)
    assert await csat.send_due(rt) == 1
    await drain(rt)
    assert channel.sent and channel.sent[0].startswith("How would you rate")


# --- the desks say a ticket is solved ------------------------------------------------------

DESK_TAIL = f"""    channels:
      - type: telegram
        bot_token: "123456:TEST-token_abcdefghijklmnop"
        secret_token: "test-secret_token"
        base_url: https://tg.test
{CSAT}"""


async def _ticket_of_a_conversation(rt: Any, desk: str, ticket: str) -> None:
    contact = await rt.conversations.resolve_contact("acme", (), "Ann")
    conv = rt.conversations.conversation_id("acme", Channel.TELEGRAM, "42")
    await rt.conversations.ensure("acme", conv, Channel.TELEGRAM, "42", contact.id)
    await rt.conversations.set_ticket("acme", desk, conv, ticket, 1)


async def test_zendesks_solved_trigger_schedules_the_survey(
    make_runtime: Any, aiohttp_client: Any
) -> None:
    from deskbridge.outbound.zendesk import webhook

    secret = "zendesk-signing-secret"
    rt = make_runtime(
        f"""
accounts:
  acme:
    desk:
      type: zendesk
      base_url: https://acme.zendesk.test
      email: bot@acme.test
      api_token: zd-api-token
      webhook_secret: "{secret}"
"""
        + DESK_TAIL
    )
    await _ticket_of_a_conversation(rt, "zendesk", "4711")
    client = await aiohttp_client(create_app(rt, role="serve"))

    async def post(doc: dict[str, Any]) -> int:
        body = json.dumps(doc).encode()
        stamp = datetime.now(UTC).isoformat()
        headers = {
            webhook.SIGNATURE_HEADER: webhook.sign(secret, stamp, body),
            webhook.TIMESTAMP_HEADER: stamp,
            "Content-Type": "application/json",
        }
        return (await client.post("/desks/zendesk/acme", data=body, headers=headers)).status

    assert await post({"deskbridge": "zendesk-solved/1", "ticket_id": "4711"}) == 200
    assert await post({"deskbridge": "zendesk-solved/1", "ticket_id": "4711"}) == 200
    assert sample(rt.metrics.csat_surveys, outcome="scheduled") == 1
    assert await csat.send_due(rt) == 1
    # a solved body without a ticket is kept for re-ingest, not read as a survey
    assert await post({"deskbridge": "zendesk-solved/1", "ticket_id": ""}) == 200
    assert sample(rt.metrics.csat_surveys, outcome="scheduled") == 1


async def test_intercoms_closed_conversation_schedules_the_survey(
    make_runtime: Any, aiohttp_client: Any
) -> None:
    from pathlib import Path

    from deskbridge.outbound.intercom import webhook

    rt = make_runtime(
        """
accounts:
  acme:
    desk:
      type: intercom
      access_token: tok-8f3a
      client_secret: sec-71be
      base_url: https://api.intercom.test
"""
        + DESK_TAIL
    )
    await _ticket_of_a_conversation(rt, "intercom", "215469358812345")
    client = await aiohttp_client(create_app(rt, role="serve"))
    body = (Path(__file__).parent / "fixtures" / "intercom" / "admin_closed.json").read_bytes()
    headers = {
        "X-Hub-Signature": webhook.sign("sec-71be", body),
        "Content-Type": "application/json",
    }
    resp = await client.post("/desks/intercom/acme", data=body, headers=headers)
    assert resp.status == 200
    assert sample(rt.metrics.csat_surveys, outcome="scheduled") == 1


# --- email: one signed link per score -------------------------------------------------------


class EmailChannel(RecordingChannel):
    channel = Channel.EMAIL


async def email_survey(make_runtime: Any) -> tuple[Any, EmailChannel, str, list[str]]:
    """An email conversation whose solved ticket's survey went out: the runtime, the
    channel, the ticket and the survey's links (5 first)."""
    rt = make_runtime(TG_YAML + CSAT)
    channel = EmailChannel()
    rt.adapters[("acme", Channel.EMAIL)] = channel
    contact = await rt.conversations.resolve_contact("acme", (), "Ann")
    conv = rt.conversations.conversation_id("acme", Channel.EMAIL, "ann@example.test")
    await rt.conversations.ensure("acme", conv, Channel.EMAIL, "ann@example.test", contact.id)
    ticket = await rt.sandbox.create_ticket(
        "acme", subject="Refund", requester="Ann", channel="email"
    )
    await rt.conversations.set_ticket("acme", "sandbox", conv, ticket, 1)
    assert await csat.ticket_solved(rt, "acme", "sandbox", ticket) == "scheduled"
    assert await csat.send_due(rt) == 1
    await drain(rt)
    [survey] = channel.sent
    links = re.findall(r"^\d ⭐+: \S+(/csat/[A-Za-z0-9_-]+)$", survey, re.MULTILINE)
    assert survey.startswith("How would you rate") and len(links) == 5
    return rt, channel, ticket, links


async def test_an_email_survey_is_answered_on_its_page_once(
    make_runtime: Any, aiohttp_client: Any
) -> None:
    rt, _, ticket, links = await email_survey(make_runtime)
    client = await aiohttp_client(create_app(rt, role="serve"))
    # opening a link (as a mail scanner does) shows the choice and records nothing
    page = await client.get(links[1])  # the second line: 4
    assert page.status == 200
    assert "4 ⭐⭐⭐⭐" in await page.text()
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    assert "script-src" not in page.headers["Content-Security-Policy"]
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert page.headers["Cache-Control"] == "no-store"
    assert not await notes(rt)
    answered = await client.post(links[1], data={"comment": "Quick  and\nfriendly"})
    assert "Your answer is recorded" in await answered.text()
    await drain(rt)
    assert await notes(rt) == [
        "Tags: csat_4",
        f"Customer satisfaction: 4/5 (survey by email after ticket {ticket} was solved, "
        'answered on its page). Comment: "Quick and friendly"',
    ]
    assert sample(rt.metrics.csat_score, channel="email") == 1
    # once per survey: the same link again, or another score's, changes nothing
    for again in (links[1], links[0]):
        resp = await client.post(again, data={"comment": "changed my mind"})
        assert "answered already" in await resp.text()
    await drain(rt)
    assert len(await notes(rt)) == 2
    assert sample(rt.metrics.csat_score, channel="email") == 1


async def test_a_forged_or_expired_survey_link_is_refused(
    make_runtime: Any, aiohttp_client: Any
) -> None:
    rt, _, _, links = await email_survey(make_runtime)
    client = await aiohttp_client(create_app(rt, role="serve"))
    token = links[0].rsplit("/", 1)[1]
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    for path in (f"/csat/{forged}", "/csat/not-a-token"):
        assert (await client.get(path)).status == 404
        assert (await client.post(path, data={"comment": "x"})).status == 404
    later = SurveyLinks(rt.vault, "https://x.test", clock=lambda: time.time() + 73 * 3600)
    with pytest.raises(SurveyLinkError):
        later.open(token)  # the survey's 72 answer hours are over
    assert not await notes(rt)


async def test_a_survey_answered_by_message_closes_its_links(
    make_runtime: Any, aiohttp_client: Any
) -> None:
    rt, _, _, links = await email_survey(make_runtime)
    client = await aiohttp_client(create_app(rt, role="serve"))
    conv = rt.conversations.conversation_id("acme", Channel.EMAIL, "ann@example.test")
    await rt.csat.answer("acme", conv, "d-mail", score=2, commented=False, at=time.time())
    resp = await client.post(links[0], data={})
    assert "answered already" in await resp.text()
    await redis_of(rt).delete(keys.csat_open("acme", conv))  # the answer window passed
    resp = await client.post(links[0], data={})
    assert "This survey is closed" in await resp.text()
    assert not await notes(rt)
