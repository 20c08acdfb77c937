"""Zendesk desk connector: API calls against respx, webhook verify/parse from fixtures."""

from __future__ import annotations

import base64
import hmac
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

from deskbridge.config.accounts import ZendeskDeskConfig
from deskbridge.errors import (
    ParseFailed,
    PayloadInvalid,
    PermanentError,
    RequestRefused,
    RetryableError,
    SignatureInvalid,
)
from deskbridge.http import make_client
from deskbridge.outbound.base import DeskConnector, Filed
from deskbridge.outbound.render import render, subject
from deskbridge.outbound.zendesk import MAX_ATTACHMENT_BYTES, ZendeskConnector
from deskbridge.outbound.zendesk.webhook import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    parse,
    sign,
)
from deskbridge.schemas import (
    AgentReply,
    Attachment,
    Channel,
    Contact,
    ConversationRef,
    Desk,
    Identity,
    Message,
    RawRequest,
    Sender,
    Upload,
)

FIXTURES = Path(__file__).parent / "fixtures" / "zendesk"
BASE = "https://acme.zendesk.test"
API = f"{BASE}/api/v2"
SECRET = "dGhpc19zZWNyZXRfaXNfZm9yX3Rlc3Rpbmdfb25seQ=="
STAMP = "2025-01-08T14:25:31Z"
NOW = datetime(2025, 1, 8, 14, 25, 31, tzinfo=UTC).timestamp()
USER_ID = "8447388011111"
BASIC = "Basic " + base64.b64encode(b"agent@acme.example/token:zd-api-token").decode()


def config(**overrides: Any) -> ZendeskDeskConfig:
    values: dict[str, Any] = {
        "base_url": BASE,
        "email": "agent@acme.example",
        "api_token": SecretStr("zd-api-token"),
        "webhook_secret": SecretStr(SECRET),
    }
    values.update(overrides)
    return ZendeskDeskConfig(**values)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with make_client() as c:
        yield c


@pytest.fixture
def zd(client: httpx.AsyncClient) -> ZendeskConnector:
    return ZendeskConnector("acme", config(), client, clock=lambda: NOW)


@pytest.fixture
def api() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False, assert_all_mocked=True) as router:
        yield router


def sent(route: respx.Route, index: int = -1) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(route.calls[index].request.content)
    return body


def message(text: str = "Hello, my order 1042 has not arrived") -> Message:
    return Message(
        account="acme",
        channel=Channel.TELEGRAM,
        dedup_key="telegram:acme:1001",
        thread="100200300",
        occurred_at=datetime(2025, 1, 8, 10, 12, 7, tzinfo=UTC),
        external_id="1001",
        sender=Sender(external_id="100200300", display_name="Ana"),
        text=text,
    )


def conversation(ticket_id: str | None = None, comment_count: int = 0) -> ConversationRef:
    return ConversationRef(
        id="conv-01HZX3",
        account="acme",
        channel=Channel.TELEGRAM,
        ticket_id=ticket_id,
        contact_id="contact-1",
        subject="Telegram: Ana",
        comment_count=comment_count,
    )


def contact(*identities: Identity, name: str | None = None) -> Contact:
    return Contact(
        id="contact-1",
        account="acme",
        display_name=name,
        identities=identities,
        created_at=datetime(2025, 1, 1, tzinfo=UTC),
    )


TELEGRAM_ID = Identity(kind="channel_user", value="100200300", channel=Channel.TELEGRAM)
PHONE_1 = Identity(kind="phone", value="+15550001111", strength="strong")
PHONE_2 = Identity(kind="phone", value="+15550002222")
EMAIL = Identity(kind="email", value="Ana@Example.com")


def created(ticket_id: int = 5158, comment_id: int | None = 9876543200) -> dict[str, Any]:
    events = [{"id": 1, "type": "Create", "field_name": "status", "value": "new"}]
    if comment_id is not None:
        events.insert(0, {"id": comment_id, "type": "Comment", "public": True, "body": "..."})
    return {"ticket": {"id": ticket_id, "status": "new"}, "audit": {"id": 77, "events": events}}


def updated(ticket_id: int, comment_id: int) -> dict[str, Any]:
    return {
        "ticket": {"id": ticket_id, "status": "open"},
        "audit": {"id": 78, "events": [{"id": comment_id, "type": "Comment", "public": True}]},
    }


CLOSED_422 = {
    "error": "RecordInvalid",
    "description": "Record validation errors",
    "details": {"status": [{"description": "Status: closed prevents ticket update"}]},
}


def test_satisfies_the_desk_connector_protocol(zd: ZendeskConnector) -> None:
    connector: DeskConnector = zd  # checked by mypy when run over tests/
    assert connector.desk is Desk.ZENDESK
    assert connector.account == "acme"


# -- users -------------------------------------------------------------------------------


async def test_ensure_user_sends_end_user_and_adds_missing_identities(
    zd: ZendeskConnector, api: respx.MockRouter
) -> None:
    upsert = api.post(f"{API}/users/create_or_update").respond(
        201, json={"user": {"id": int(USER_ID), "role": "end-user"}}
    )
    listed = api.get(f"{API}/users/{USER_ID}/identities").respond(
        200,
        json={
            "identities": [
                {"id": 1, "type": "phone_number", "value": "+1 555 000 1111"},
                {"id": 2, "type": "email", "value": "ana@example.com"},
            ]
        },
    )
    added = api.post(f"{API}/users/{USER_ID}/identities").respond(
        201, json={"identity": {"id": 3, "type": "phone_number", "value": "+15550002222"}}
    )

    user_id = await zd.ensure_user(contact(TELEGRAM_ID, PHONE_1, EMAIL, PHONE_2))

    assert user_id == USER_ID
    assert sent(upsert) == {
        "user": {
            "name": "Telegram user",
            "external_id": "contact-1",
            "skip_verify_email": True,
            "email": "ana@example.com",
            "phone": "+15550001111",
        }
    }
    assert upsert.calls.last.request.headers["authorization"] == BASIC
    assert listed.called
    assert added.call_count == 1
    assert sent(added) == {"identity": {"type": "phone_number", "value": "+15550002222"}}


async def test_ensure_user_with_one_phone_makes_one_call(
    zd: ZendeskConnector, api: respx.MockRouter
) -> None:
    upsert = api.post(f"{API}/users/create_or_update").respond(200, json={"user": {"id": 42}})

    assert await zd.ensure_user(contact(TELEGRAM_ID, PHONE_1, name="Ana")) == "42"
    assert sent(upsert)["user"]["name"] == "Ana"
    assert len(api.calls) == 1


async def test_identity_of_another_user_does_not_fail_and_is_not_logged(
    zd: ZendeskConnector, api: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    api.post(f"{API}/users/create_or_update").respond(201, json={"user": {"id": 42}})
    api.get(f"{API}/users/42/identities").respond(
        200, json={"identities": [{"type": "phone_number", "value": "+15550001111"}]}
    )
    added = api.post(f"{API}/users/42/identities").mock(
        side_effect=[
            httpx.Response(422, json={"error": "RecordInvalid", "details": {"value": []}}),
            httpx.Response(201, json={"identity": {"id": 9}}),
        ]
    )
    caplog.set_level(logging.DEBUG, logger="deskbridge")

    assert await zd.ensure_user(contact(PHONE_1, EMAIL, PHONE_2)) == "42"

    assert [sent(added, i)["identity"]["type"] for i in range(2)] == ["email", "phone_number"]
    assert sent(added, 0)["identity"]["skip_verify_email"] is True
    assert "not added" in caplog.text
    for secret in ("555000", "ana@", "zd-api-token"):
        assert secret not in caplog.text


async def test_phone_refused_on_create_is_retried_without_it(
    zd: ZendeskConnector, api: respx.MockRouter
) -> None:
    upsert = api.post(f"{API}/users/create_or_update").mock(
        side_effect=[
            httpx.Response(422, json={"error": "RecordInvalid", "details": {"phone": []}}),
            httpx.Response(201, json={"user": {"id": 42}}),
        ]
    )
    api.get(f"{API}/users/42/identities").respond(200, json={"identities": []})
    added = api.post(f"{API}/users/42/identities").respond(422, json={"error": "RecordInvalid"})

    assert await zd.ensure_user(contact(PHONE_1)) == "42"
    assert "phone" in sent(upsert, 0)["user"]
    assert "phone" not in sent(upsert, 1)["user"]
    assert sent(added)["identity"] == {"type": "phone_number", "value": "+15550001111"}


async def test_oauth_token_is_sent_as_bearer(
    client: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    zd = ZendeskConnector(
        "acme", config(email=None, api_token=None, oauth_token=SecretStr("oauth-1")), client
    )
    upsert = api.post(f"{API}/users/create_or_update").respond(200, json={"user": {"id": 42}})
    await zd.ensure_user(contact())
    assert upsert.calls.last.request.headers["authorization"] == "Bearer oauth-1"


# -- creating tickets --------------------------------------------------------------------


async def test_create_ticket_uploads_then_files_as_the_end_user(
    zd: ZendeskConnector, api: respx.MockRouter
) -> None:
    upload = api.post(f"{API}/uploads").mock(
        side_effect=[
            httpx.Response(201, json={"upload": {"token": "tok-1", "attachment": {"id": 1}}}),
            httpx.Response(201, json={"upload": {"token": "tok-2", "attachment": {"id": 2}}}),
        ]
    )
    create = api.post(f"{API}/tickets").respond(201, json=created())
    files = [
        Upload(filename="photo.jpg", mime_type="image/jpeg", data=b"\xff\xd8jpeg-bytes"),
        Upload(filename="invoice.pdf", mime_type="application/pdf", data=b"%PDF-1.7"),
    ]
    msg = message()

    filed = await zd.append(
        conversation(), USER_ID, msg, files, idempotency_key="dlv-1", retried=False
    )

    assert filed == Filed(ticket_id="5158", message_id="9876543200", comment_count=1)
    first = upload.calls[0].request
    assert first.url.params["filename"] == "photo.jpg"
    assert first.headers["content-type"] == "image/jpeg"
    assert first.content == b"\xff\xd8jpeg-bytes"
    assert upload.calls[1].request.url.params["filename"] == "invoice.pdf"
    request = create.calls.last.request
    assert request.headers["idempotency-key"] == "dlv-1"
    ticket = sent(create)["ticket"]
    assert ticket == {
        "subject": subject(msg),
        "comment": {
            "body": render(msg),
            "public": True,
            "author_id": int(USER_ID),
            "uploads": ["tok-1", "tok-2"],
        },
        "requester_id": int(USER_ID),
        "submitter_id": int(USER_ID),
        "external_id": "conv-01HZX3",
        "tags": ["deskbridge", "deskbridge_telegram"],
    }
    assert ticket["requester_id"] == ticket["submitter_id"] == ticket["comment"]["author_id"]


async def test_create_without_comment_in_audit_uses_the_ticket_id(
    zd: ZendeskConnector, api: respx.MockRouter
) -> None:
    api.post(f"{API}/tickets").respond(201, json=created(comment_id=None))
    filed = await zd.append(
        conversation(), USER_ID, message(), [], idempotency_key="dlv-1", retried=False
    )
    assert filed.message_id == "ticket:5158"


async def test_retried_create_finds_the_ticket_by_external_id_and_does_not_post(
    zd: ZendeskConnector, api: respx.MockRouter
) -> None:
    msg = message()
    lookup = api.get(f"{API}/tickets", params={"external_id": "conv-01HZX3"}).respond(
        200,
        json={
            "tickets": [
                {"id": 4001, "status": "closed", "description": render(msg)},
                {"id": 5158, "status": "new", "description": render(msg) + "\n"},
            ]
        },
    )
    create = api.post(f"{API}/tickets")

    filed = await zd.append(conversation(), USER_ID, msg, [], idempotency_key="dlv-1", retried=True)

    assert lookup.called
    assert not create.called
    assert filed == Filed(ticket_id="5158", message_id="ticket:5158", comment_count=None)


async def test_retried_create_appends_to_a_found_ticket_holding_another_message(
    zd: ZendeskConnector, api: respx.MockRouter
) -> None:
    api.get(f"{API}/tickets").respond(
        200, json={"tickets": [{"id": 5158, "status": "open", "description": "earlier"}]}
    )
    update = api.put(f"{API}/tickets/5158").respond(200, json=updated(5158, 9876543201))

    filed = await zd.append(
        conversation(), USER_ID, message(), [], idempotency_key="dlv-2", retried=True
    )

    assert sent(update)["ticket"]["comment"]["author_id"] == int(USER_ID)
    assert filed == Filed(ticket_id="5158", message_id="9876543201", comment_count=None)


async def test_retried_create_without_a_ticket_creates_one(
    zd: ZendeskConnector, api: respx.MockRouter
) -> None:
    api.get(f"{API}/tickets").respond(
        200, json={"tickets": [{"id": 4001, "status": "closed", "description": "old"}]}
    )
    create = api.post(f"{API}/tickets").respond(201, json=created())

    filed = await zd.append(
        conversation(), USER_ID, message(), [], idempotency_key="dlv-1", retried=True
    )

    assert create.called
    assert filed.ticket_id == "5158"


async def test_key_reused_with_other_uploads_falls_back_to_a_body_bound_key(
    zd: ZendeskConnector, api: respx.MockRouter
) -> None:
    api.post(f"{API}/uploads").respond(201, json={"upload": {"token": "tok-new"}})
    create = api.post(f"{API}/tickets").mock(
        side_effect=[
            httpx.Response(400, json={"error": "IdempotentRequestError", "description": "..."}),
            httpx.Response(201, json=created()),
        ]
    )
    api.get(f"{API}/tickets").respond(200, json={"tickets": []})
    files = [Upload(filename="a.png", mime_type="image/png", data=b"png")]

    filed = await zd.append(
        conversation(), USER_ID, message(), files, idempotency_key="dlv-1", retried=False
    )

    keys = [c.request.headers["idempotency-key"] for c in create.calls]
    assert keys[0] == "dlv-1"
    assert keys[1].startswith("dlv-1:")
    assert len(keys[1]) > len("dlv-1:")
    assert filed.ticket_id == "5158"


# -- appending ---------------------------------------------------------------------------


async def test_append_puts_a_public_comment_by_the_end_user(
    zd: ZendeskConnector, api: respx.MockRouter
) -> None:
    update = api.put(f"{API}/tickets/5158").respond(200, json=updated(5158, 9876543202))
    msg = message("Any news?")

    filed = await zd.append(
        conversation("5158", comment_count=3),
        USER_ID,
        msg,
        [],
        idempotency_key="dlv-3",
        retried=False,
    )

    assert sent(update) == {
        "ticket": {
            "comment": {"body": "Any news?", "public": True, "author_id": int(USER_ID)},
            # the delivery's key, kept on the update's audit: found again after a lost answer
            "metadata": {"deskbridge_delivery": "dlv-3"},
        }
    }
    assert filed == Filed(ticket_id="5158", message_id="9876543202", comment_count=4)


def audits(*marks: str | None, has_more: bool = False) -> dict[str, Any]:
    """A page of ``GET /tickets/{id}/audits``: one comment audit per mark."""
    return {
        "audits": [
            {
                "id": 7000 + i,
                "ticket_id": 5158,
                "metadata": {"system": {}, "custom": {"deskbridge_delivery": m} if m else {}},
                "events": [{"id": 9876543300 + i, "type": "Comment", "public": True}],
            }
            for i, m in enumerate(marks)
        ],
        "meta": {"has_more": has_more, "after_cursor": "next" if has_more else None},
    }


async def test_append_in_doubt_finds_the_comment_in_the_audits_and_does_not_add_it(
    zd: ZendeskConnector, api: respx.MockRouter
) -> None:
    listing = api.get(f"{API}/tickets/5158/audits").mock(
        side_effect=[
            httpx.Response(200, json=audits(None, "dlv-2", has_more=True)),
            httpx.Response(200, json=audits(None, "dlv-3")),
        ]
    )
    update = api.put(f"{API}/tickets/5158").respond(200, json=updated(5158, 1))

    filed = await zd.append(
        conversation("5158", comment_count=3),
        USER_ID,
        message("Any news?"),
        [],
        idempotency_key="dlv-3",
        retried=True,
        in_doubt=True,
    )

    assert update.call_count == 0
    assert listing.call_count == 2
    assert listing.calls.last.request.url.params["page[after]"] == "next"
    assert filed == Filed(ticket_id="5158", message_id="9876543301", comment_count=4)


async def test_append_in_doubt_without_the_audit_adds_the_comment_once(
    zd: ZendeskConnector, api: respx.MockRouter
) -> None:
    api.get(f"{API}/tickets/5158/audits").respond(200, json=audits("dlv-2", None))
    update = api.put(f"{API}/tickets/5158").respond(200, json=updated(5158, 9876543202))

    filed = await zd.append(
        conversation("5158", comment_count=3),
        USER_ID,
        message("Any news?"),
        [],
        idempotency_key="dlv-3",
        retried=True,
        in_doubt=True,
    )

    assert update.call_count == 1
    assert filed == Filed(ticket_id="5158", message_id="9876543202", comment_count=4)


async def test_append_in_doubt_with_audits_refused_adds_the_comment_and_says_so(
    zd: ZendeskConnector, api: respx.MockRouter
) -> None:
    api.get(f"{API}/tickets/5158/audits").respond(403, json={"error": "Forbidden"})
    update = api.put(f"{API}/tickets/5158").respond(200, json=updated(5158, 9876543202))

    filed = await zd.append(
        conversation("5158", comment_count=3),
        USER_ID,
        message("Any news?"),
        [],
        idempotency_key="dlv-3",
        retried=True,
        in_doubt=True,
    )

    # the message is not held back by a read it may not make; the blind resend is counted
    assert update.call_count == 1
    assert filed.resent == "zendesk update ticket"


async def test_append_not_in_doubt_reads_no_audits(
    zd: ZendeskConnector, api: respx.MockRouter
) -> None:
    listing = api.get(f"{API}/tickets/5158/audits").respond(200, json=audits("dlv-3"))
    api.put(f"{API}/tickets/5158").respond(200, json=updated(5158, 9876543202))

    await zd.append(
        conversation("5158", comment_count=3),
        USER_ID,
        message("Any news?"),
        [],
        idempotency_key="dlv-3",
        retried=True,
    )

    assert listing.call_count == 0  # a retry after a refusal: nothing to reconcile


async def test_closed_ticket_gets_a_follow_up(zd: ZendeskConnector, api: respx.MockRouter) -> None:
    api.put(f"{API}/tickets/5158").respond(422, json=CLOSED_422)
    create = api.post(f"{API}/tickets").respond(201, json=created(ticket_id=6001))

    filed = await zd.append(
        conversation("5158", comment_count=12),
        USER_ID,
        message(),
        [],
        idempotency_key="dlv-4",
        retried=False,
    )

    ticket = sent(create)["ticket"]
    assert ticket["via_followup_source_id"] == 5158
    assert ticket["requester_id"] == ticket["submitter_id"] == int(USER_ID)
    assert ticket["external_id"] == "conv-01HZX3"
    assert create.calls.last.request.headers["idempotency-key"] == "dlv-4:followup"
    assert filed == Filed(ticket_id="6001", message_id="9876543200", comment_count=1)


async def test_full_ticket_gets_a_follow_up_without_trying_it(
    client: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    zd = ZendeskConnector("acme", config(max_comments_per_ticket=10), client)
    update = api.put(f"{API}/tickets/5158")
    create = api.post(f"{API}/tickets").respond(201, json=created(ticket_id=6002))

    filed = await zd.append(
        conversation("5158", comment_count=10),
        USER_ID,
        message(),
        [],
        idempotency_key="dlv-5",
        retried=False,
    )

    assert not update.called
    assert sent(create)["ticket"]["via_followup_source_id"] == 5158
    assert create.calls.last.request.headers["idempotency-key"] == "dlv-5:followup"
    assert filed.ticket_id == "6002"


async def test_other_422_on_update_is_permanent(
    zd: ZendeskConnector, api: respx.MockRouter
) -> None:
    api.put(f"{API}/tickets/5158").respond(
        422, json={"error": "RecordInvalid", "details": {"base": [{"description": "Invalid"}]}}
    )
    with pytest.raises(PermanentError) as info:
        await zd.append(
            conversation("5158"), USER_ID, message(), [], idempotency_key="k", retried=False
        )
    assert info.value.status == 422


# -- error classification ----------------------------------------------------------------


@pytest.mark.parametrize("ticket_id", [None, "5158"])
async def test_400_is_permanent(
    zd: ZendeskConnector, api: respx.MockRouter, ticket_id: str | None
) -> None:
    api.route(url__startswith=f"{API}/tickets").respond(400, json={"error": "InvalidValue"})
    with pytest.raises(PermanentError) as info:
        await zd.append(
            conversation(ticket_id), USER_ID, message(), [], idempotency_key="k", retried=False
        )
    assert info.value.status == 400


@pytest.mark.parametrize("ticket_id", [None, "5158"])
async def test_429_waits_as_long_as_retry_after_says(
    zd: ZendeskConnector, api: respx.MockRouter, ticket_id: str | None
) -> None:
    api.route(url__startswith=f"{API}/tickets").respond(429, headers={"Retry-After": "30"})
    with pytest.raises(RetryableError) as info:
        await zd.append(
            conversation(ticket_id), USER_ID, message(), [], idempotency_key="k", retried=False
        )
    assert info.value.retry_after == 30
    assert info.value.status == 429


async def test_503_is_retryable(zd: ZendeskConnector, api: respx.MockRouter) -> None:
    api.post(f"{API}/users/create_or_update").respond(503)
    with pytest.raises(RetryableError) as info:
        await zd.ensure_user(contact())
    assert info.value.status == 503
    assert info.value.retry_after is None


async def test_timeout_is_retryable(zd: ZendeskConnector, api: respx.MockRouter) -> None:
    api.post(f"{API}/uploads").mock(side_effect=httpx.ConnectTimeout("timed out"))
    files = [Upload(filename="a.png", mime_type="image/png", data=b"png")]
    with pytest.raises(RetryableError):
        await zd.append(
            conversation(), USER_ID, message(), files, idempotency_key="k", retried=False
        )


async def test_errors_carry_no_secrets_or_bodies(
    zd: ZendeskConnector, api: respx.MockRouter
) -> None:
    api.post(f"{API}/users/create_or_update").respond(
        403, json={"error": "Forbidden", "description": "ana@example.com +15550001111"}
    )
    with pytest.raises(PermanentError) as info:
        await zd.ensure_user(contact(PHONE_1, EMAIL))
    text = str(info.value)
    for secret in ("ana@", "555000", "zd-api-token", "Basic"):
        assert secret not in text


# -- notes -------------------------------------------------------------------------------


async def test_add_note_is_private(zd: ZendeskConnector, api: respx.MockRouter) -> None:
    update = api.put(f"{API}/tickets/5158").respond(200, json=updated(5158, 1))
    await zd.add_note(conversation("5158"), "Reply not delivered: the 24-hour window closed.")
    assert sent(update) == {
        "ticket": {
            "comment": {"body": "Reply not delivered: the 24-hour window closed.", "public": False}
        }
    }


async def test_add_note_without_ticket_is_permanent(
    zd: ZendeskConnector, api: respx.MockRouter
) -> None:
    with pytest.raises(PermanentError, match="no ticket"):
        await zd.add_note(conversation(None), "note")
    assert not api.calls


async def test_add_tags_keeps_the_tickets_other_tags(
    zd: ZendeskConnector, api: respx.MockRouter
) -> None:
    update = api.put(f"{API}/tickets/5158").respond(200, json=updated(5158, 1))
    await zd.add_tags(conversation("5158"), ["csat_4"])
    assert sent(update) == {"ticket": {"additional_tags": ["csat_4"]}}
    with pytest.raises(PermanentError, match="no ticket"):
        await zd.add_tags(conversation(None), ["csat_4"])


async def test_add_tags_to_a_closed_ticket_is_skipped(
    zd: ZendeskConnector, api: respx.MockRouter
) -> None:
    api.put(f"{API}/tickets/5158").respond(
        422,
        json={
            "error": "RecordInvalid",
            "details": {"status": [{"description": "Status: closed prevents ticket update"}]},
        },
    )
    await zd.add_tags(conversation("5158"), ["csat_4"])  # no error: nothing to tag
    assert len(api.calls) == 1


# -- attachments -------------------------------------------------------------------------


async def test_fetch_follows_a_redirect_off_zendesk_without_the_credentials(
    zd: ZendeskConnector, api: respx.MockRouter
) -> None:
    content = f"{BASE}/attachments/token/kPgFVVxSa6uIvrYg801uJkm7S/?name=label.png"
    file_host = "https://files.zdusercontent.test/attachments/label.png?sig=abc"
    first = api.get(content).respond(302, headers={"Location": file_host})
    second = api.get(file_host).respond(
        200, content=b"\x89PNG-bytes", headers={"Content-Type": "image/png"}
    )

    upload = await zd.fetch(Attachment(kind="image", ref=content))

    assert upload == Upload(filename="label.png", mime_type="image/png", data=b"\x89PNG-bytes")
    assert first.calls.last.request.headers["authorization"] == BASIC
    assert "authorization" not in second.calls.last.request.headers


async def test_fetch_keeps_credentials_on_a_redirect_within_zendesk(
    zd: ZendeskConnector, api: respx.MockRouter
) -> None:
    first = api.get(f"{BASE}/attachments/token/a/").respond(
        301, headers={"Location": "/attachments/token/b/"}
    )
    second = api.get(f"{BASE}/attachments/token/b/").respond(200, content=b"pdf")

    upload = await zd.fetch(
        Attachment(kind="document", ref=f"{BASE}/attachments/token/a/", filename="x.pdf")
    )

    assert first.called
    assert second.calls.last.request.headers["authorization"] == BASIC
    assert upload.mime_type == "application/pdf"


async def test_fetch_never_sends_credentials_to_another_host(
    zd: ZendeskConnector, api: respx.MockRouter
) -> None:
    route = api.get("https://evil.test/a.png").respond(200, content=b"png")
    await zd.fetch(Attachment(kind="image", ref="https://evil.test/a.png"))
    assert "authorization" not in route.calls.last.request.headers


async def test_fetch_refuses_files_over_the_cap(
    zd: ZendeskConnector, api: respx.MockRouter
) -> None:
    api.get(f"{BASE}/attachments/token/big/").respond(
        200, content=b"x" * (MAX_ATTACHMENT_BYTES + 1)
    )
    with pytest.raises(PermanentError, match=f"over the {MAX_ATTACHMENT_BYTES}-byte limit"):
        await zd.fetch(Attachment(kind="document", ref=f"{BASE}/attachments/token/big/"))


async def test_fetch_404_is_permanent(zd: ZendeskConnector, api: respx.MockRouter) -> None:
    api.get(f"{BASE}/attachments/token/gone/").respond(404)
    with pytest.raises(PermanentError):
        await zd.fetch(Attachment(kind="document", ref=f"{BASE}/attachments/token/gone/"))


# -- registering the webhook -------------------------------------------------------------


async def test_register_webhook_creates_an_event_webhook_and_returns_its_secret(
    zd: ZendeskConnector, api: respx.MockRouter
) -> None:
    listing = api.get(f"{API}/webhooks").respond(
        200,
        json={
            "webhooks": [
                {
                    "id": "01TRIGGERHOOK",
                    "name": "deskbridge acme",
                    "endpoint": "https://bridge.example/desks/zendesk/acme",
                    "status": "active",
                    "subscriptions": ["conditional_ticket_events"],
                }
            ],
            "meta": {"has_more": False},
        },
    )
    create = api.post(f"{API}/webhooks").respond(
        201, json={"webhook": {"id": "01HNEWHOOK", "name": "deskbridge acme"}}
    )
    secret = api.get(f"{API}/webhooks/01HNEWHOOK/signing_secret").respond(
        200, json={"signing_secret": {"algorithm": "SHA256", "secret": "s3cr3t"}}
    )

    got = await zd.register_webhook(
        "https://bridge.example/desks/zendesk/acme", name="deskbridge acme"
    )

    assert got == "s3cr3t"
    assert listing.called
    assert secret.called
    assert sent(create) == {
        "webhook": {
            "name": "deskbridge acme",
            "description": "deskbridge: agent replies for account acme",
            "endpoint": "https://bridge.example/desks/zendesk/acme",
            "http_method": "POST",
            "request_format": "json",
            "status": "active",
            "subscriptions": ["zen:event-type:ticket.comment_added"],
        }
    }


async def test_register_webhook_reuses_one_with_the_endpoint(
    zd: ZendeskConnector, api: respx.MockRouter
) -> None:
    url = "https://bridge.example/desks/zendesk/acme"
    hook = {
        "id": "01HOLD",
        "name": "renamed by an admin",
        "endpoint": url,
        "status": "active",
        "subscriptions": ["zen:event-type:ticket.comment_added"],
    }
    # respx tries routes in order: the second page's route goes first.
    api.get(f"{API}/webhooks", params={"page[after]": "c2"}).respond(
        200, json={"webhooks": [hook], "meta": {"has_more": False}}
    )
    api.get(f"{API}/webhooks", params={"page[size]": "100"}).respond(
        200, json={"webhooks": [], "meta": {"has_more": True, "after_cursor": "c2"}}
    )
    create = api.post(f"{API}/webhooks")
    api.get(f"{API}/webhooks/01HOLD/signing_secret").respond(
        200, json={"signing_secret": {"algorithm": "SHA256", "secret": "old-secret"}}
    )

    assert await zd.register_webhook(url, name="deskbridge acme") == "old-secret"
    assert not create.called


async def test_register_webhook_points_a_named_one_at_the_new_url(
    zd: ZendeskConnector, api: respx.MockRouter
) -> None:
    hook = {
        "id": "01HOLD",
        "name": "deskbridge acme",
        "endpoint": "https://old.example/desks/zendesk/acme",
        "status": "inactive",
        "subscriptions": ["zen:event-type:ticket.comment_added"],
    }
    api.get(f"{API}/webhooks").respond(200, json={"webhooks": [hook], "meta": {}})
    patch = api.patch(f"{API}/webhooks/01HOLD").respond(204)
    api.get(f"{API}/webhooks/01HOLD/signing_secret").respond(
        200, json={"signing_secret": {"secret": "s"}}
    )

    await zd.register_webhook("https://new.example/desks/zendesk/acme", name="deskbridge acme")

    assert sent(patch) == {
        "webhook": {"endpoint": "https://new.example/desks/zendesk/acme", "status": "active"}
    }


# -- webhook: verify ---------------------------------------------------------------------


def signed(body: bytes, *, stamp: str = STAMP, secret: str = SECRET) -> RawRequest:
    return RawRequest(
        method="POST",
        path="/desks/zendesk/acme",
        headers={
            "content-type": "application/json",
            "x-zendesk-webhook-id": "01F1KRFQ6BG29CNWFR60NK5FNY",
            SIGNATURE_HEADER: sign(secret, stamp, body),
            TIMESTAMP_HEADER: stamp,
        },
        body=body,
    )


def fixture(name: str) -> bytes:
    return (FIXTURES / f"{name}.json").read_bytes()


def test_good_signature_verifies(zd: ZendeskConnector) -> None:
    zd.verify_webhook(signed(fixture("comment_added_agent_public")))


def test_signature_matches_zendesk_formula(zd: ZendeskConnector) -> None:
    body = b'{"a":1}'
    expected = base64.b64encode(
        hmac.new(SECRET.encode(), STAMP.encode() + body, "sha256").digest()
    ).decode()
    assert sign(SECRET, STAMP, body) == expected


def test_tampered_body_is_refused(zd: ZendeskConnector) -> None:
    req = signed(fixture("comment_added_agent_public"))
    forged = RawRequest(
        req.method, req.path, req.query, req.headers, req.body.replace(b"Sam", b"Eve")
    )
    with pytest.raises(SignatureInvalid):
        zd.verify_webhook(forged)


@pytest.mark.parametrize("stamp", ["2025-01-08T14:19:00Z", "2025-01-08T14:31:45Z"])
def test_timestamp_outside_five_minutes_is_refused(zd: ZendeskConnector, stamp: str) -> None:
    with pytest.raises(SignatureInvalid, match="window"):
        zd.verify_webhook(signed(fixture("comment_added_agent_public"), stamp=stamp))


def test_unix_seconds_timestamp_is_accepted(zd: ZendeskConnector) -> None:
    zd.verify_webhook(signed(b"{}", stamp=str(int(NOW) - 60)))


@pytest.mark.parametrize("header", [SIGNATURE_HEADER, TIMESTAMP_HEADER])
def test_missing_header_is_refused(zd: ZendeskConnector, header: str) -> None:
    req = signed(b"{}")
    headers = {k: v for k, v in req.headers.items() if k != header}
    with pytest.raises(SignatureInvalid):
        zd.verify_webhook(RawRequest(req.method, req.path, req.query, headers, req.body))


def test_wrong_secret_is_refused(zd: ZendeskConnector) -> None:
    with pytest.raises(SignatureInvalid):
        zd.verify_webhook(signed(b"{}", secret="another-secret"))


def test_no_configured_secret_refuses_everything(client: httpx.AsyncClient) -> None:
    zd = ZendeskConnector("acme", config(webhook_secret=None), client, clock=lambda: NOW)
    with pytest.raises(SignatureInvalid, match="webhook_secret"):
        zd.verify_webhook(signed(b"{}"))


# -- webhook: parse ----------------------------------------------------------------------


def expected(name: str) -> list[AgentReply]:
    raw = json.loads((FIXTURES / f"{name}.expected.json").read_text())
    return [AgentReply.model_validate(item) for item in raw]


@pytest.mark.parametrize("name", ["comment_added_agent_public", "trigger_agent_reply"])
def test_agent_public_comment_becomes_one_reply(zd: ZendeskConnector, name: str) -> None:
    req = signed(fixture(name))
    zd.verify_webhook(req)
    assert zd.parse_webhook(req) == expected(name)


def test_agent_reply_fields(zd: ZendeskConnector) -> None:
    [reply] = zd.parse_webhook(signed(fixture("comment_added_agent_public")))
    assert reply.account == "acme"
    assert reply.desk is Desk.ZENDESK
    assert reply.dedup_key == "comment:9876543210"
    assert reply.ticket_id == "5158"
    assert reply.external_id == "9876543210"
    assert reply.text.startswith("Hi Ana")
    assert reply.author_name == "Sam Agent"
    assert reply.occurred_at == datetime(2025, 1, 8, 14, 25, 30, 123456, tzinfo=UTC)


@pytest.mark.parametrize(
    "name",
    [
        "comment_added_end_user",
        "comment_added_private_note",
        "ticket_status_changed",
        "trigger_customer_message",
        "trigger_end_user_cc",
    ],
)
def test_not_an_agent_public_comment_gives_nothing(zd: ZendeskConnector, name: str) -> None:
    req = signed(fixture(name))
    zd.verify_webhook(req)
    assert zd.parse_webhook(req) == []


def test_event_attachments_are_kept_when_present(zd: ZendeskConnector) -> None:
    doc = json.loads(fixture("comment_added_agent_public"))
    doc["event"]["comment"]["attachments"] = [
        {
            "content_type": "application/pdf",
            "content_url": "https://acme.zendesk.com/attachments/token/x/?name=invoice.pdf",
            "file_name": "invoice.pdf",
            "size": 2048,
        }
    ]
    [reply] = zd.parse_webhook(signed(json.dumps(doc).encode()))
    assert reply.attachments == (
        Attachment(
            kind="document",
            ref="https://acme.zendesk.com/attachments/token/x/?name=invoice.pdf",
            filename="invoice.pdf",
            mime_type="application/pdf",
            size=2048,
        ),
    )


def test_trigger_without_time_uses_the_signed_timestamp(zd: ZendeskConnector) -> None:
    doc = json.loads(fixture("trigger_agent_reply"))
    doc["occurred_at"] = ""
    [reply] = zd.parse_webhook(signed(json.dumps(doc).encode()))
    assert reply.occurred_at == datetime(2025, 1, 8, 14, 25, 31, tzinfo=UTC)


@pytest.mark.parametrize("body", [b"not json", b"\xff\xfe", b"[1, 2]", b'"text"', b""])
def test_not_a_json_object_is_payload_invalid(zd: ZendeskConnector, body: bytes) -> None:
    with pytest.raises(PayloadInvalid):
        zd.parse_webhook(signed(body))


@pytest.mark.parametrize(
    "body",
    [
        {"hello": "from the webhook builder"},
        {"type": "zen:event-type:ticket.comment_added", "event": {"comment": {"body": "x"}}},
        {"deskbridge": "zendesk-trigger/1", "ticket_id": "5158", "comment_id": ""},
    ],
)
def test_unusable_zendesk_shapes_are_parse_failed(
    zd: ZendeskConnector, body: dict[str, Any]
) -> None:
    with pytest.raises(ParseFailed):
        zd.parse_webhook(signed(json.dumps(body).encode()))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=200),
        json_values.map(lambda v: json.dumps(v).encode()),
        st.fixed_dictionaries(
            {
                "type": st.sampled_from(["zen:event-type:ticket.comment_added", "x"]),
                "detail": json_values,
                "event": st.fixed_dictionaries({"comment": json_values}),
            }
        ).map(lambda v: json.dumps(v).encode()),
    )
)
def test_no_body_crashes_the_parser(body: bytes) -> None:
    req = RawRequest(method="POST", path="/desks/zendesk/acme", headers={}, body=body)
    try:
        replies = parse(req, account="acme", now=NOW)
    except (RequestRefused, ParseFailed):
        return
    assert all(isinstance(r, AgentReply) for r in replies)
