"""Intercom desk connector: API calls against respx, webhook verify/parse from fixtures,
and end to end through the runtime against the fake Intercom."""

from __future__ import annotations

import base64
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from deskbridge.adapters.telegram import sample_update
from deskbridge.config import parse_accounts
from deskbridge.config.accounts import IntercomDeskConfig
from deskbridge.errors import (
    ConfigError,
    ParseFailed,
    PayloadInvalid,
    PermanentError,
    RequestRefused,
    RetryableError,
    SignatureInvalid,
)
from deskbridge.gateway import create_app
from deskbridge.http import make_client
from deskbridge.outbound import build_desk
from deskbridge.outbound.base import DeskConnector
from deskbridge.outbound.capabilities import TicketUpdateBudget
from deskbridge.outbound.intercom import MAX_ATTACHMENT_BYTES, IntercomConnector, Throttle
from deskbridge.outbound.intercom.webhook import html_to_text, parse, sign, verify
from deskbridge.schemas import (
    Attachment,
    Channel,
    Contact,
    ConversationRef,
    DeliveryState,
    Desk,
    Direction,
    Identity,
    Message,
    RawRequest,
    Sender,
    Upload,
)

from .conftest import TG_SECRET, TG_TOKEN, drain, redis_of
from .desks.fake_intercom import CLIENT_SECRET, FakeIntercom

FIXTURES = Path(__file__).parent / "fixtures" / "intercom"
API = "https://api.intercom.test"
TOKEN = "ic-test-access-token"
SECRET = "ic-test-client-secret"
NOW = 1_736_201_500.0
CONTACT_ID = "677c55186abd011ad17ff4a3"
TG = f"https://tg.test/bot{TG_TOKEN}"


def config(**overrides: Any) -> IntercomDeskConfig:
    values: dict[str, Any] = {
        "base_url": API,
        "access_token": SecretStr(TOKEN),
        "client_secret": SecretStr(SECRET),
    }
    values.update(overrides)
    return IntercomDeskConfig(**values)


class Clock:
    def __init__(self) -> None:
        self.now = NOW
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with make_client() as c:
        yield c


@pytest.fixture
def ic(client: httpx.AsyncClient, clock: Clock) -> IntercomConnector:
    throttle = Throttle(clock=clock, sleep=clock.sleep)
    return IntercomConnector("acme", config(), client, clock=clock, throttle=throttle)


@pytest.fixture
def api() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=API, assert_all_called=False, assert_all_mocked=True) as router:
        yield router


def sent(route: respx.Route, index: int = -1) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(route.calls[index].request.content)
    return body


def limits(remaining: int = 9000, reset: float = NOW + 10) -> dict[str, str]:
    return {
        "X-RateLimit-Limit": "10000",
        "X-RateLimit-Remaining": str(remaining),
        "X-RateLimit-Reset": str(int(reset)),
    }


def message(text: str = "Where is my order 1042?") -> Message:
    return Message(
        account="acme",
        channel=Channel.TELEGRAM,
        dedup_key="telegram:acme:1001",
        thread="100200300",
        occurred_at=datetime(2025, 1, 6, 22, 11, 0, tzinfo=UTC),
        external_id="1001",
        sender=Sender(external_id="100200300", display_name="Ana"),
        text=text,
    )


def conversation(ticket_id: str | None = None) -> ConversationRef:
    return ConversationRef(
        id="conv-01HZX3",
        account="acme",
        channel=Channel.TELEGRAM,
        ticket_id=ticket_id,
        contact_id="c-01HZX3",
        subject="",
    )


def contact(*identities: Identity, name: str | None = "Ana") -> Contact:
    return Contact(
        id="c-01HZX3",
        account="acme",
        display_name=name,
        identities=identities,
        created_at=datetime(2025, 1, 1, tzinfo=UTC),
    )


PHONE_1 = Identity(kind="phone", value="+15550001111", strength="strong")
PHONE_2 = Identity(kind="phone", value="+15550002222")
EMAIL_1 = Identity(kind="email", value="Ana@Example.com")
EMAIL_2 = Identity(kind="email", value="ana.work@example.org")


def files(n: int) -> list[Upload]:
    return [Upload(f"f{i}.png", "image/png", b"\x89PNG" + bytes([i])) for i in range(n)]


def conversation_json(part_id: str = "25099", author: str = CONTACT_ID) -> dict[str, Any]:
    return {
        "type": "conversation",
        "id": "215469358812345",
        "conversation_parts": {
            "type": "conversation_part.list",
            "conversation_parts": [
                {
                    "type": "conversation_part",
                    "id": "25000",
                    "author": {"type": "admin", "id": "9"},
                },
                {
                    "type": "conversation_part",
                    "id": part_id,
                    "author": {"type": "user", "id": author},
                },
            ],
            "total_count": 2,
        },
    }


def raw(body: bytes, signature: str | None = None) -> RawRequest:
    headers = {"content-type": "application/json"}
    if signature is not None:
        headers["x-hub-signature"] = signature
    return RawRequest(method="POST", path="/desks/intercom/acme", headers=headers, body=body)


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def test_satisfies_the_desk_connector_protocol(ic: IntercomConnector) -> None:
    connector: DeskConnector = ic
    assert connector.desk is Desk.INTERCOM
    assert not isinstance(connector, TicketUpdateBudget)


# -- config -------------------------------------------------------------------------------


def test_accounts_file_takes_an_intercom_desk_and_builds_its_connector(
    client: httpx.AsyncClient,
) -> None:
    accounts = parse_accounts(
        """
accounts:
  acme:
    desk:
      type: intercom
      access_token: tok-8f3a
      client_secret: sec-71be
      base_url: https://api.eu.intercom.io
      contact_role: lead
      admin_id: "991267459"
"""
    )
    desk = accounts.accounts["acme"].desk
    assert isinstance(desk, IntercomDeskConfig)
    assert desk.api_version == "2.14" and desk.contact_role == "lead"
    assert isinstance(build_desk("acme", desk, client, None), IntercomConnector)  # type: ignore[arg-type]
    assert "tok-8f3a" not in repr(desk) and "sec-71be" not in repr(desk)


@pytest.mark.parametrize(
    ("extra", "where"),
    [
        ("api_version: latest", "accounts.acme.desk.api_version"),
        ("contact_role: visitor", "accounts.acme.desk.contact_role"),
        ("admin_id: abc", "accounts.acme.desk.admin_id"),
    ],
)
def test_bad_intercom_config_names_the_field(extra: str, where: str) -> None:
    text = f"""
accounts:
  acme:
    desk:
      type: intercom
      access_token: tok
      client_secret: sec
      {extra}
"""
    with pytest.raises(ConfigError) as info:
        parse_accounts(text)
    assert [p[0] for p in info.value.problems] == [where]


def test_client_secret_is_required() -> None:
    with pytest.raises(ConfigError) as info:
        parse_accounts("accounts:\n  acme:\n    desk: {type: intercom, access_token: t}\n")
    assert [p[0] for p in info.value.problems] == ["accounts.acme.desk.client_secret"]


# -- contacts -----------------------------------------------------------------------------


async def test_new_contact_is_created_with_one_email_one_phone_and_the_rest_as_attributes(
    ic: IntercomConnector, api: respx.MockRouter
) -> None:
    find = api.get("/contacts/find_by_external_id/c-01HZX3").respond(
        404, json={"type": "error.list", "errors": [{"code": "not_found"}]}
    )
    create = api.post("/contacts").respond(200, json={"type": "contact", "id": CONTACT_ID})

    user_id = await ic.ensure_user(contact(PHONE_1, EMAIL_1, PHONE_2, EMAIL_2))

    assert user_id == CONTACT_ID
    assert sent(create) == {
        "role": "user",
        "external_id": "c-01HZX3",
        "name": "Ana",
        "email": "ana@example.com",
        "phone": "+15550001111",
        "custom_attributes": {
            "deskbridge_emails": "ana@example.com, ana.work@example.org",
            "deskbridge_phones": "+15550001111, +15550002222",
        },
    }
    for call in (find.calls.last, create.calls.last):
        assert call.request.headers["Authorization"] == f"Bearer {TOKEN}"
        assert call.request.headers["Intercom-Version"] == "2.14"
    assert len(api.calls) == 2


async def test_existing_contact_gets_only_what_it_lacks(
    ic: IntercomConnector, api: respx.MockRouter
) -> None:
    api.get("/contacts/find_by_external_id/c-01HZX3").respond(
        200,
        json={
            "type": "contact",
            "id": CONTACT_ID,
            "external_id": "c-01HZX3",
            "name": "Ana (edited by an agent)",
            "email": "ana@example.com",
            "phone": None,
            "custom_attributes": {},
        },
    )
    update = api.put(f"/contacts/{CONTACT_ID}").respond(200, json={"id": CONTACT_ID})

    assert await ic.ensure_user(contact(EMAIL_1, EMAIL_2, PHONE_1)) == CONTACT_ID
    assert sent(update) == {
        "phone": "+15550001111",
        "custom_attributes": {"deskbridge_emails": "ana@example.com, ana.work@example.org"},
    }


async def test_unchanged_contact_is_not_written(
    ic: IntercomConnector, api: respx.MockRouter
) -> None:
    api.get("/contacts/find_by_external_id/c-01HZX3").respond(
        200, json={"id": CONTACT_ID, "name": "Ana", "email": "ana@example.com"}
    )
    assert await ic.ensure_user(contact(EMAIL_1)) == CONTACT_ID
    assert len(api.calls) == 1


async def test_undefined_custom_attributes_are_dropped_not_fatal(
    ic: IntercomConnector, api: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="deskbridge")
    api.get("/contacts/find_by_external_id/c-01HZX3").respond(404, json={})
    create = api.post("/contacts").mock(
        side_effect=[
            httpx.Response(
                400,
                json={
                    "type": "error.list",
                    "errors": [
                        {
                            "code": "parameter_not_found",
                            "message": "Custom attribute 'deskbridge_phones' does not exist",
                        }
                    ],
                },
            ),
            httpx.Response(200, json={"id": CONTACT_ID}),
        ]
    )

    assert await ic.ensure_user(contact(PHONE_1, PHONE_2)) == CONTACT_ID
    assert "custom_attributes" in sent(create, 0)
    assert "custom_attributes" not in sent(create, 1)
    assert "deskbridge_phones" in caplog.text
    assert "555000" not in caplog.text and TOKEN not in caplog.text


async def test_a_contact_created_meanwhile_is_adopted_on_409(
    ic: IntercomConnector, api: respx.MockRouter
) -> None:
    api.get("/contacts/find_by_external_id/c-01HZX3").respond(404, json={})
    api.post("/contacts").respond(
        409,
        json={
            "type": "error.list",
            "errors": [
                {
                    "code": "conflict",
                    "message": f"A contact matching those details already exists with "
                    f"id={CONTACT_ID}",
                }
            ],
        },
    )
    api.get(f"/contacts/{CONTACT_ID}").respond(
        200, json={"id": CONTACT_ID, "external_id": "c-01HZX3", "name": "Ana"}
    )

    assert await ic.ensure_user(contact()) == CONTACT_ID


async def test_an_email_held_by_another_contact_is_left_out(
    ic: IntercomConnector, api: respx.MockRouter
) -> None:
    api.get("/contacts/find_by_external_id/c-01HZX3").respond(404, json={})
    other = "5ba682d23d7cf92bef87bfd4"
    create = api.post("/contacts").mock(
        side_effect=[
            httpx.Response(
                409,
                json={
                    "errors": [
                        {"code": "conflict", "message": f"... already exists with id={other}"}
                    ]
                },
            ),
            httpx.Response(200, json={"id": CONTACT_ID}),
        ]
    )
    api.get(f"/contacts/{other}").respond(200, json={"id": other, "external_id": "someone-else"})

    assert await ic.ensure_user(contact(EMAIL_1)) == CONTACT_ID
    assert sent(create, 0)["email"] == "ana@example.com"
    assert "email" not in sent(create, 1)


async def test_merged_contact_410_follows_the_link(
    ic: IntercomConnector, api: respx.MockRouter
) -> None:
    survivor = "6a0000000000000000000001"
    api.get("/contacts/find_by_external_id/c-01HZX3").respond(
        410, json={}, headers={"Link": f'<{API}/contacts/{survivor}>; rel="canonical"'}
    )
    api.get(f"/contacts/{survivor}").respond(200, json={"id": survivor, "name": "Ana"})
    assert await ic.ensure_user(contact()) == survivor


async def test_leads_are_searched_not_looked_up(
    client: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    ic = IntercomConnector("acme", config(contact_role="lead"), client, throttle=Throttle())
    search = api.post("/contacts/search").respond(200, json={"type": "list", "data": []})
    create = api.post("/contacts").respond(200, json={"id": CONTACT_ID})

    assert await ic.ensure_user(contact()) == CONTACT_ID
    assert sent(search)["query"]["value"][0] == {
        "field": "external_id",
        "operator": "=",
        "value": "c-01HZX3",
    }
    assert sent(create)["role"] == "lead"


# -- conversations ------------------------------------------------------------------------


async def test_first_message_opens_a_conversation_from_the_contact(
    ic: IntercomConnector, api: respx.MockRouter
) -> None:
    create = api.post("/conversations").respond(
        200,
        json={"type": "user_message", "id": "2213489431", "conversation_id": "215469358812345"},
    )

    filed = await ic.append(
        conversation(), CONTACT_ID, message(), [], idempotency_key="k", retried=False
    )

    assert (filed.ticket_id, filed.message_id) == ("215469358812345", "2213489431")
    assert sent(create) == {
        "from": {"type": "user", "id": CONTACT_ID},
        "body": "Where is my order 1042?",
    }


def parts_json(*parts: tuple[str, str, str, int]) -> dict[str, Any]:
    """A retrieved conversation holding (id, author id, body, created_at) comment parts."""
    return {
        "type": "conversation",
        "id": "215469358812345",
        "conversation_parts": {
            "type": "conversation_part.list",
            "conversation_parts": [
                {
                    "type": "conversation_part",
                    "id": part_id,
                    "part_type": "comment",
                    "body": body,
                    "created_at": created,
                    "author": {"type": "admin" if author == "9" else "user", "id": author},
                }
                for part_id, author, body, created in parts
            ],
            "total_count": len(parts),
        },
    }


MESSAGE_AT = int(datetime(2025, 1, 6, 22, 11, 0, tzinfo=UTC).timestamp())


@pytest.mark.parametrize(
    ("parts", "posted"),
    [
        # the earlier attempt's part is the contact's newest: taken, not posted again
        ([("25090", CONTACT_ID, "<p>It was due Monday.</p>", MESSAGE_AT + 2)], False),
        # an agent answered since: still the contact's newest part
        (
            [
                ("25090", CONTACT_ID, "<p>It was due Monday.</p>", MESSAGE_AT + 2),
                ("25091", "9", "<p>Checking</p>", MESSAGE_AT + 3),
            ],
            False,
        ),
        # the same words, but an older message's (before this one arrived): posted
        ([("25080", CONTACT_ID, "<p>It was due Monday.</p>", MESSAGE_AT - 600)], True),
        # the contact's newest part says something else: posted
        (
            [
                ("25090", CONTACT_ID, "<p>It was due Monday.</p>", MESSAGE_AT + 2),
                ("25092", CONTACT_ID, "<p>Hello?</p>", MESSAGE_AT + 5),
            ],
            True,
        ),
    ],
)
async def test_a_reply_in_doubt_is_looked_for_among_the_conversations_parts(
    parts: list[tuple[str, str, str, int]],
    posted: bool,
    ic: IntercomConnector,
    api: respx.MockRouter,
) -> None:
    read = api.get("/conversations/215469358812345").respond(200, json=parts_json(*parts))
    reply = api.post("/conversations/215469358812345/reply").respond(
        200, json=conversation_json("25099")
    )

    filed = await ic.append(
        conversation("215469358812345"),
        CONTACT_ID,
        message("It was due Monday."),
        [],
        idempotency_key="k",
        retried=True,
        in_doubt=True,
    )

    assert read.call_count == 1
    assert reply.call_count == (1 if posted else 0)
    assert filed.message_id == ("25099" if posted else "25090")


async def test_later_messages_reply_as_the_contact_and_return_the_part_id(
    ic: IntercomConnector, api: respx.MockRouter
) -> None:
    reply = api.post("/conversations/215469358812345/reply").respond(
        200, json=conversation_json("25077")
    )

    filed = await ic.append(
        conversation("215469358812345"),
        CONTACT_ID,
        message("It was due Monday."),
        [],
        idempotency_key="k",
        retried=False,
    )

    assert filed.message_id == "25077"
    assert sent(reply) == {
        "message_type": "comment",
        "type": "user",
        "intercom_user_id": CONTACT_ID,
        "body": "It was due Monday.",
    }


async def test_more_than_ten_files_are_split_into_parts(
    ic: IntercomConnector, api: respx.MockRouter
) -> None:
    reply = api.post("/conversations/215469358812345/reply").mock(
        side_effect=[
            httpx.Response(200, json=conversation_json("25001")),
            httpx.Response(200, json=conversation_json("25002")),
            httpx.Response(200, json=conversation_json("25003")),
        ]
    )

    filed = await ic.append(
        conversation("215469358812345"),
        CONTACT_ID,
        message("photos"),
        files(23),
        idempotency_key="k",
        retried=False,
    )

    assert [len(sent(reply, i)["attachment_files"]) for i in range(3)] == [10, 10, 3]
    assert sent(reply, 0)["body"] == "photos"
    assert sent(reply, 2)["body"] == "[Attachments: f20.png, f21.png, f22.png]"
    first = sent(reply, 0)["attachment_files"][0]
    assert first == {
        "content_type": "image/png",
        "data": base64.b64encode(b"\x89PNG\x00").decode(),
        "name": "f0.png",
    }
    assert filed.message_id == "25003"


async def test_first_message_with_files_opens_then_adds_the_files(
    ic: IntercomConnector, api: respx.MockRouter
) -> None:
    api.post("/conversations").respond(
        200, json={"id": "2213489431", "conversation_id": "215469358812345"}
    )
    reply = api.post("/conversations/215469358812345/reply").respond(
        200, json=conversation_json("25001")
    )

    filed = await ic.append(
        conversation(), CONTACT_ID, message("look"), files(2), idempotency_key="k", retried=False
    )

    assert filed.ticket_id == "215469358812345"
    assert len(sent(reply)["attachment_files"]) == 2


async def test_retried_first_message_finds_the_conversation_an_earlier_attempt_opened(
    ic: IntercomConnector, api: respx.MockRouter
) -> None:
    search = api.post("/conversations/search").respond(
        200,
        json={
            "type": "conversation.list",
            "conversations": [
                {"id": "111", "created_at": 1, "source": {"id": "1", "body": "<p>other</p>"}},
                {
                    "id": "215469358812345",
                    "created_at": 1736201400,
                    "source": {"id": "2213489431", "body": "<p>Where is my order 1042?</p>"},
                },
            ],
        },
    )
    create = api.post("/conversations").respond(500)

    filed = await ic.append(
        conversation(), CONTACT_ID, message(), [], idempotency_key="k", retried=True
    )

    assert (filed.ticket_id, filed.message_id) == ("215469358812345", "2213489431")
    assert not create.called
    query = sent(search)["query"]["value"]
    assert {"field": "source.author.id", "operator": "=", "value": CONTACT_ID} in query


async def test_retried_first_message_opens_one_when_none_is_found(
    ic: IntercomConnector, api: respx.MockRouter
) -> None:
    api.post("/conversations/search").respond(200, json={"conversations": []})
    create = api.post("/conversations").respond(200, json={"id": "9", "conversation_id": "8"})
    filed = await ic.append(
        conversation(), CONTACT_ID, message(), [], idempotency_key="k", retried=True
    )
    assert filed.ticket_id == "8" and create.call_count == 1


async def test_a_deleted_conversation_is_replaced(
    ic: IntercomConnector, api: respx.MockRouter
) -> None:
    api.post("/conversations/404404/reply").respond(404, json={"errors": [{"code": "not_found"}]})
    api.post("/conversations").respond(200, json={"id": "9", "conversation_id": "8"})
    filed = await ic.append(
        conversation("404404"), CONTACT_ID, message(), [], idempotency_key="k", retried=False
    )
    assert filed.ticket_id == "8"


async def test_note_is_written_as_the_tokens_admin_with_escaped_html(
    ic: IntercomConnector, api: respx.MockRouter
) -> None:
    me = api.get("/me").respond(200, json={"type": "admin", "id": "991267459"})
    reply = api.post("/conversations/77/reply").respond(200, json=conversation_json())

    for _ in range(2):
        await ic.add_note(conversation("77"), "Could not deliver <this>.\n\nDelivery d1 kept.")

    assert me.call_count == 1  # remembered
    assert sent(reply) == {
        "message_type": "note",
        "type": "admin",
        "admin_id": "991267459",
        "body": "<p>Could not deliver &lt;this&gt;.</p><p>Delivery d1 kept.</p>",
    }


async def test_add_tags_finds_each_tags_id_and_attaches_it_as_the_admin(
    client: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    """Intercom tags a conversation by the tag's id and an admin's id, never by name."""
    ic = IntercomConnector("acme", config(admin_id="42"), client, throttle=Throttle())
    create = api.post("/tags").respond(200, json={"type": "tag", "id": "86", "name": "csat_5"})
    attach = api.post("/conversations/77/tags").respond(
        200, json={"type": "tag", "id": "86", "name": "csat_5"}
    )
    await ic.add_tags(conversation("77"), ["csat_5"])
    assert sent(create) == {"name": "csat_5"}
    assert sent(attach) == {"id": "86", "admin_id": "42"}
    api.post("/tags").respond(200, json={"type": "tag"})
    with pytest.raises(PermanentError, match="without the tag's id"):
        await ic.add_tags(conversation("77"), ["csat_5"])
    with pytest.raises(PermanentError):
        await ic.add_tags(conversation(None), ["csat_5"])


async def test_note_uses_the_configured_admin(
    client: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    ic = IntercomConnector("acme", config(admin_id="42"), client, throttle=Throttle())
    reply = api.post("/conversations/77/reply").respond(200, json=conversation_json())
    await ic.add_note(conversation("77"), "hi")
    assert sent(reply)["admin_id"] == "42" and len(api.calls) == 1
    with pytest.raises(PermanentError):
        await ic.add_note(conversation(None), "hi")


# -- errors and rate limits ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error"),
    [(400, PermanentError), (401, PermanentError), (422, PermanentError), (500, RetryableError)],
)
async def test_errors_are_classified(
    ic: IntercomConnector, api: respx.MockRouter, status: int, error: type[Exception]
) -> None:
    api.post("/conversations").respond(status, json={"type": "error.list", "errors": []})
    with pytest.raises(error):
        await ic.append(
            conversation(), CONTACT_ID, message(), [], idempotency_key="k", retried=False
        )


async def test_timeout_is_retryable(ic: IntercomConnector, api: respx.MockRouter) -> None:
    api.post("/conversations").mock(side_effect=httpx.ReadTimeout("slow"))
    with pytest.raises(RetryableError):
        await ic.append(
            conversation(), CONTACT_ID, message(), [], idempotency_key="k", retried=False
        )


async def test_429_waits_until_the_reset(
    ic: IntercomConnector, api: respx.MockRouter, clock: Clock
) -> None:
    api.post("/conversations").respond(
        429, json={"errors": [{"code": "rate_limit_exceeded"}]}, headers=limits(0, NOW + 7)
    )
    with pytest.raises(RetryableError) as info:
        await ic.append(
            conversation(), CONTACT_ID, message(), [], idempotency_key="k", retried=False
        )
    assert info.value.status == 429 and info.value.retry_after == pytest.approx(7)
    # the next call does not hit Intercom before the reset: it defers the delivery
    with pytest.raises(RetryableError) as info:
        await ic.append(
            conversation(), CONTACT_ID, message(), [], idempotency_key="k", retried=False
        )
    assert info.value.retry_after == pytest.approx(7) and len(api.calls) == 1


async def test_a_nearly_spent_window_slows_down(
    ic: IntercomConnector, api: respx.MockRouter, clock: Clock
) -> None:
    reply = api.post("/conversations/77/reply").respond(
        200, json=conversation_json(), headers=limits(remaining=3, reset=NOW + 2)
    )
    for _ in range(2):
        await ic.append(
            conversation("77"), CONTACT_ID, message(), [], idempotency_key="k", retried=False
        )
    assert reply.call_count == 2
    assert clock.slept == [pytest.approx(2)]  # short waits happen inline


async def test_a_long_pause_defers_instead_of_holding_the_worker() -> None:
    clock = Clock()
    throttle = Throttle(clock=clock, sleep=clock.sleep)
    assert throttle.observe(limits(remaining=0, reset=NOW + 9), 200) is None
    with pytest.raises(RetryableError) as info:
        await throttle.admit(may_defer=True, what="x")
    assert info.value.retry_after == pytest.approx(9)
    await throttle.admit(may_defer=False, what="x")  # mid-operation: sleep it through
    assert clock.slept == [pytest.approx(9)]
    await throttle.admit(may_defer=True, what="x")


def test_a_429_without_headers_waits_one_window() -> None:
    throttle = Throttle(clock=lambda: NOW)
    assert throttle.observe({}, 429) == pytest.approx(10)


# -- attachments from agents --------------------------------------------------------------


async def test_fetch_downloads_without_the_token_off_the_api_host(
    ic: IntercomConnector, api: respx.MockRouter
) -> None:
    url = "https://downloads.intercomcdn.com/i/o/1/label.pdf?expires=1&signature=s"
    route = api.get(url).respond(200, content=b"%PDF", headers={"Content-Type": "application/pdf"})
    upload = await ic.fetch(Attachment(kind="document", ref=url, filename="label.pdf"))
    assert (upload.filename, upload.mime_type, upload.data) == (
        "label.pdf",
        "application/pdf",
        b"%PDF",
    )
    assert "authorization" not in route.calls.last.request.headers


async def test_fetch_refuses_oversized_and_non_http(
    ic: IntercomConnector, api: respx.MockRouter
) -> None:
    url = "https://downloads.intercomcdn.com/big.bin"
    api.get(url).respond(200, headers={"Content-Length": str(MAX_ATTACHMENT_BYTES + 1)})
    with pytest.raises(PermanentError):
        await ic.fetch(Attachment(kind="document", ref=url))
    with pytest.raises(PermanentError):
        await ic.fetch(Attachment(kind="document", ref="file:///etc/passwd"))


# -- the webhook --------------------------------------------------------------------------


def test_signature_is_hmac_sha1_of_the_raw_body() -> None:
    body = fixture("admin_replied_comment.json")
    good = sign(SECRET, body)
    assert good.startswith("sha1=") and len(good) == 45
    verify(raw(body, good), SECRET)
    verify(raw(body, good.upper().replace("SHA1=", "sha1=")), SECRET)
    for bad in (
        None,
        "",
        "sha1=" + "0" * 40,
        good[:-1],
        sign("other", body),
        good.removeprefix("sha1="),
    ):
        with pytest.raises(SignatureInvalid):
            verify(raw(body, bad), SECRET)
    with pytest.raises(SignatureInvalid):
        verify(raw(body + b" ", good), SECRET)
    with pytest.raises(SignatureInvalid):
        verify(raw(body, good), None)


def test_admin_reply_matches_its_expected_output() -> None:
    replies = parse(raw(fixture("admin_replied_comment.json")), account="acme")
    expected = json.loads(fixture("admin_replied_comment.expected.json"))
    assert [r.model_dump(mode="json") for r in replies] == expected


def test_bot_replies_are_marked_automated() -> None:
    [reply] = parse(raw(fixture("admin_replied_bot.json")), account="acme")
    assert reply.automated is True and reply.text == "Our bot says hi"


@pytest.mark.parametrize(
    "name",
    [
        "admin_replied_user_part.json",
        "user_replied.json",
        "admin_noted.json",
        "admin_replied_note_part.json",
        "admin_closed.json",
        "ping.json",
    ],
)
def test_nothing_else_is_a_reply(name: str) -> None:
    assert parse(raw(fixture(name)), account="acme") == []


def test_a_close_is_recorded_in_the_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="deskbridge")
    parse(raw(fixture("admin_closed.json")), account="acme")
    assert "conversation 215469358812345 closed" in caplog.text


def test_bodies_that_are_not_notifications_are_refused() -> None:
    with pytest.raises(PayloadInvalid):
        parse(raw(b"not json"), account="acme")
    with pytest.raises(PayloadInvalid):
        parse(raw(b"[1]"), account="acme")
    with pytest.raises(ParseFailed):
        parse(raw(b'{"type": "something"}'), account="acme")
    bad = json.loads(fixture("admin_replied_comment.json"))
    del bad["data"]["item"]["id"]
    with pytest.raises(ParseFailed):
        parse(raw(json.dumps(bad).encode()), account="acme")


@pytest.mark.parametrize(
    ("body", "text"),
    [
        ("<p>Hello</p><p>World</p>", "Hello\n\nWorld"),
        ("<p>a<br>b</p>", "a\nb"),
        ('<p><a href="https://x.io/a">https://x.io/a</a></p>', "https://x.io/a"),
        ('<p>mail <a href="mailto:a@b.c">us</a></p>', "mail us (a@b.c)"),
        ("<p>Tom &amp; Jerry &lt;3 &#128512;</p>", "Tom & Jerry <3 \U0001f600"),
        ("plain &amp; simple", "plain & simple"),
        ("", ""),
        ("<p></p>", ""),
    ],
)
def test_html_to_text(body: str, text: str) -> None:
    assert html_to_text(body) == text


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_html_to_text_never_crashes(body: str) -> None:
    assert isinstance(html_to_text(body), str)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_parse_never_crashes_on_arbitrary_bytes(body: bytes) -> None:
    with contextlib.suppress(RequestRefused, ParseFailed):
        parse(raw(body), account="acme")


# -- end to end through the runtime, against the fake Intercom ----------------------------


@pytest.fixture
async def fake() -> AsyncIterator[FakeIntercom]:
    desk = FakeIntercom()
    await desk.start()
    try:
        yield desk
    finally:
        await desk.stop()


def yaml_for(fake: FakeIntercom) -> str:
    return f"""
accounts:
  acme:
    desk: {fake.desk_yaml()}
    channels:
      - type: telegram
        bot_token: "{TG_TOKEN}"
        secret_token: "{TG_SECRET}"
        base_url: https://tg.test
"""


async def test_telegram_to_intercom_and_back(
    fake: FakeIntercom,
    make_runtime: Any,
    aiohttp_client: Any,
    respx_mock: respx.MockRouter,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    respx_mock.route(host="127.0.0.1").pass_through()
    send = respx_mock.post(f"{TG}/sendMessage").respond(
        200, json={"ok": True, "result": {"message_id": 555, "date": 1, "chat": {"id": 42}}}
    )
    rt = make_runtime(yaml_for(fake))
    client = await aiohttp_client(create_app(rt, role="serve"))
    headers = {"X-Telegram-Bot-Api-Secret-Token": TG_SECRET, "Content-Type": "application/json"}

    # 1. two customer messages (the first one twice: Telegram retried)
    first = sample_update(
        "Where is my order?", update_id=9101, chat_id=42, user_id=42, first_name="Ana"
    )
    second = sample_update(
        "It was due Monday.", update_id=9102, chat_id=42, user_id=42, first_name="Ana"
    )
    for body in (first, first, second):
        assert (
            await client.post("/webhooks/telegram/acme", data=body, headers=headers)
        ).status == 200
    await drain(rt)

    [user] = fake.users()
    assert user.name == "Ana" and user.external_id
    [ticket] = fake.tickets()
    assert [(p.author, p.text) for p in ticket.parts] == [
        ("user", "Where is my order?"),
        ("user", "It was due Monday."),
    ]
    assert all(
        path != "/contacts/search" for _, path, _ in fake.calls()
    )  # no search on the hot path

    # 2. the agent answers in Intercom; the signed notification arrives (twice)
    await fake.agent_reply(client, rt, ticket.id, "It ships today, Ana.")
    body = fake.last_notification
    resp = await client.post(
        "/desks/intercom/acme",
        data=body,
        headers={"X-Hub-Signature": sign(CLIENT_SECRET, body), "Content-Type": "application/json"},
    )
    assert resp.status == 200
    await drain(rt)
    assert send.call_count == 1
    assert json.loads(send.calls.last.request.content)["text"] == "It ships today, Ana."

    # 3. the customer's own part is never echoed back
    await fake.notify_customer_part(client, rt, ticket.id)
    await drain(rt)
    assert send.call_count == 1

    # 4. a bad signature is refused and stores nothing
    resp = await client.post(
        "/desks/intercom/acme", data=body, headers={"X-Hub-Signature": "sha1=" + "0" * 40}
    )
    assert resp.status == 401

    # 5. an undeliverable reply becomes an internal note written as the token's admin
    send.respond(
        403,
        json={
            "ok": False,
            "error_code": 403,
            "description": "Forbidden: bot was blocked by the user",
        },
    )
    await fake.agent_reply(client, rt, ticket.id, "Are you still there?")
    await drain(rt)
    [ticket] = fake.tickets()
    notes = [p for p in ticket.parts if p.author == "note"]
    assert len(notes) == 1 and "could not deliver" in notes[0].text
    assert ("GET", "/me", 200) in fake.calls()

    outbound = [d for d in await _deliveries(rt) if d.direction is Direction.OUTBOUND]
    assert sorted(d.state for d in outbound) == sorted(
        [DeliveryState.DELIVERED, DeliveryState.DEAD]
    )
    for secret in ("ic-conformance-token", CLIENT_SECRET, "Where is my order", "It ships today"):
        assert secret not in caplog.text


async def test_a_workspace_without_the_custom_attributes_still_files(
    make_runtime: Any, aiohttp_client: Any, respx_mock: respx.MockRouter
) -> None:
    fake = FakeIntercom(data_attributes=frozenset())
    await fake.start()
    try:
        respx_mock.route(host="127.0.0.1").pass_through()
        rt = make_runtime(yaml_for(fake))
        desk = rt.desk("acme")
        assert desk is not None
        who = contact(PHONE_1, PHONE_2, EMAIL_1)
        user_id = await desk.ensure_user(who)
        [stored] = fake.contacts()
        assert stored["id"] == user_id and stored["phone"] == "+15550001111"
        assert stored["custom_attributes"] == {}
        # the same contact again: found by external_id, nothing created
        assert await desk.ensure_user(who) == user_id
        assert len(fake.contacts()) == 1
        assert [c for c in fake.calls() if c[2] == 400]  # the refused attributes
    finally:
        await fake.stop()


async def _deliveries(rt: Any) -> list[Any]:
    out = []
    for key in await redis_of(rt).keys("db:{acme}:dlv:*"):
        name = key.decode()
        if name.endswith(":attempts"):
            continue
        d = await rt.deliveries.get("acme", name.rsplit(":", 1)[1])
        if d is not None:
            out.append(d)
    return out


async def test_a_429_seen_by_one_worker_pauses_the_others(redis) -> None:
    import time as _time

    from deskbridge.errors import RetryableError as _Retryable
    from deskbridge.outbound.intercom.throttle import Throttle
    from deskbridge.store import Vault
    from deskbridge.store.tokens import RedisTokenCache

    cache = RedisTokenCache(redis, Vault.from_secret(bytes(range(32))))
    first = Throttle(shared=cache, name="intercom-pause:ws")
    second = Throttle(shared=cache, name="intercom-pause:ws")  # another process
    reset = str(int(_time.time()) + 30)
    wait = first.observe({"X-RateLimit-Reset": reset}, 429)
    assert wait is not None and wait > 20
    await first.push()
    with pytest.raises(_Retryable) as info:
        await second.admit(may_defer=True, what="intercom reply")
    assert info.value.retry_after is not None and info.value.retry_after > 20
