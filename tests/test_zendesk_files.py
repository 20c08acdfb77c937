"""Agent replies whose files Zendesk's ``comment_added`` event leaves out: read from List
Comments (``GET /api/v2/tickets/{id}/comments``) before the reply is sent."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import respx

from deskbridge.config.accounts import ZendeskDeskConfig
from deskbridge.errors import RetryableError
from deskbridge.outbound.zendesk import ZendeskConnector
from deskbridge.schemas import DeliveryState, Direction

from .conftest import drain
from .desks.fake_zendesk import FakeZendesk
from .helpers import deliveries
from .test_desk_conformance import TG, customer_says, gateway, telegram

ZD = "https://acme.zendesk.test/api/v2"


@pytest.fixture
async def fake() -> Any:
    desk = FakeZendesk()
    await desk.start()
    try:
        yield desk
    finally:
        await desk.stop()


async def test_a_file_only_agent_reply_reaches_the_customer(
    fake: FakeZendesk, make_runtime: Any, aiohttp_client: Any, respx_mock: Any
) -> None:
    send = telegram(respx_mock)
    doc = respx_mock.post(f"{TG}/sendDocument").respond(
        200, json={"ok": True, "result": {"message_id": 556, "date": 1, "chat": {"id": 42}}}
    )
    async with gateway(fake, make_runtime, aiohttp_client) as (rt, client):
        await customer_says(client, "Can I have the invoice?", 7701)
        await drain(rt)
        [ticket] = fake.tickets()
        # the agent answers with only a file; the event Zendesk posts carries no files
        await fake.agent_reply(
            client, rt, ticket.id, "", ("invoice.pdf", b"%PDF-1.4 invoice", "application/pdf")
        )
        await drain(rt)
        [reply] = await deliveries(rt, Direction.OUTBOUND)
    assert reply.state is DeliveryState.DELIVERED
    assert send.call_count == 0 and doc.call_count == 1
    assert b"invoice.pdf" in doc.calls[0].request.content
    assert b"%PDF-1.4 invoice" in doc.calls[0].request.content
    listed = [c for c in fake.calls() if c[1].endswith(f"/tickets/{ticket.id}/comments")]
    assert listed == [("GET", f"/api/v2/tickets/{ticket.id}/comments", 200)]


async def test_a_reply_whose_comment_has_no_files_is_skipped_when_empty(
    fake: FakeZendesk, make_runtime: Any, aiohttp_client: Any, respx_mock: Any
) -> None:
    send = telegram(respx_mock)
    async with gateway(fake, make_runtime, aiohttp_client) as (rt, client):
        await customer_says(client, "Hello", 7702)
        await drain(rt)
        [ticket] = fake.tickets()
        await fake.agent_reply(client, rt, ticket.id, "")
        await drain(rt)
        [reply] = await deliveries(rt, Direction.OUTBOUND)
    assert reply.state is DeliveryState.SKIPPED
    assert send.call_count == 0


def _connector(client: httpx.AsyncClient) -> ZendeskConnector:
    config = ZendeskDeskConfig.model_validate(
        {
            "type": "zendesk",
            "subdomain": "acme",
            "base_url": "https://acme.zendesk.test",
            "email": "bot@acme.test",
            "api_token": "t",
        }
    )
    return ZendeskConnector("acme", config, client)


def _page(comments: list[dict[str, Any]], after: str | None) -> dict[str, Any]:
    return {"comments": comments, "meta": {"has_more": after is not None, "after_cursor": after}}


async def test_comment_files_walks_the_cursor_pages() -> None:
    file = {
        "id": 9,
        "file_name": "label.pdf",
        "content_url": "https://acme.zendesk.test/attachments/token/x/?name=label.pdf",
        "content_type": "application/pdf",
        "size": 12,
    }
    async with httpx.AsyncClient() as client:
        with respx.mock(assert_all_called=True) as router:
            route = router.get(f"{ZD}/tickets/5/comments").mock(
                side_effect=[
                    httpx.Response(200, json=_page([{"id": 30, "attachments": []}], "c1")),
                    httpx.Response(200, json=_page([{"id": 20, "attachments": [file]}], None)),
                ]
            )
            [att] = await _connector(client).comment_files("5", "20")
    assert att.filename == "label.pdf" and att.mime_type == "application/pdf"
    assert att.ref == file["content_url"] and att.kind == "document"
    assert route.calls[1].request.url.params["page[after]"] == "c1"


async def test_comment_files_not_found_is_no_files() -> None:
    async with httpx.AsyncClient() as client:
        with respx.mock() as router:
            router.get(f"{ZD}/tickets/5/comments").respond(200, json=_page([], None))
            assert await _connector(client).comment_files("5", "20") == ()


async def test_comment_files_429_is_retryable_with_its_delay() -> None:
    async with httpx.AsyncClient() as client:
        with respx.mock() as router:
            router.get(f"{ZD}/tickets/5/comments").respond(429, headers={"Retry-After": "7"})
            with pytest.raises(RetryableError) as caught:
                await _connector(client).comment_files("5", "20")
    assert caught.value.retry_after == 7
