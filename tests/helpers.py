"""Helpers the channel tests share: media links, agent replies (made, or filed through a
runtime) and the bodies respx saw, Meta's signed webhook requests and Graph answers, the
deliveries a runtime recorded, and an RSA key made per test process (never committed).
The HTTP client and respx fixtures (``client``, ``api``) are in conftest.py."""

from __future__ import annotations

import asyncio
import functools
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import respx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from deskbridge.adapters.meta import sign
from deskbridge.config.accounts import MetaAppConfig
from deskbridge.schemas import (
    AgentReply,
    Attachment,
    Channel,
    ChannelAddress,
    Desk,
    Direction,
    RawRequest,
)

from .conftest import drain, redis_of

NOW = datetime(2025, 6, 20, 12, 0, tzinfo=UTC)

# One Meta app's secrets, for the Messenger and Instagram tests.
APP_SECRET = "meta-app-secret-0123456789abcdef"
VERIFY_TOKEN = "meta-verify-token_42"
META_APP = MetaAppConfig(app_secret=APP_SECRET, verify_token=VERIFY_TOKEN)


class FakeLinks:
    """``MediaLinks`` that hands out one URL per attachment and keeps what it was asked."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, Attachment]] = []

    def url_for(self, account: str, attachment: Attachment, *, ttl: float | None = None) -> str:
        self.asked.append((account, attachment))
        return f"https://bridge.test/media/tok-{attachment.ref}"

    def video_preview_url(self) -> str:
        return "https://bridge.test/media/preview/video.png"


def agent_reply(text: str, **fields: Any) -> AgentReply:
    """An agent's reply on the sandbox desk to account ``acme``; ``fields`` override."""
    values: dict[str, Any] = {
        "account": "acme",
        "desk": Desk.SANDBOX,
        "dedup_key": "r-1",
        "ticket_id": "t-1",
        "external_id": "c-1",
        "text": text,
        "occurred_at": NOW,
    }
    return AgentReply(**(values | fields))


def last_wrote(channel: Channel, thread: str, age: timedelta | None) -> ChannelAddress:
    """Account ``acme``'s ``thread`` whose customer last wrote ``age`` before ``NOW`` (None:
    never)."""
    return ChannelAddress(
        channel=channel,
        account="acme",
        thread=thread,
        last_inbound_at=None if age is None else NOW - age,
    )


def bodies(route: respx.Route) -> list[dict[str, Any]]:
    """The JSON bodies of every call ``route`` answered, in order."""
    return [json.loads(call.request.content) for call in route.calls]


def meta_request(
    body: bytes, path: str, signature: str | None = "sign", secret: str = APP_SECRET
) -> RawRequest:
    """A webhook POST to ``path`` as Meta sends it: ``signature`` ``"sign"`` signs the
    body with ``secret``, None sends no signature, anything else is sent as it is."""
    headers = {"content-type": "application/json"}
    if signature == "sign":
        headers["x-hub-signature-256"] = sign(secret, body)
    elif signature is not None:
        headers["x-hub-signature-256"] = signature
    return RawRequest(method="POST", path=path, headers=headers, body=body)


def graph_sent(recipient: str, message_id: str) -> httpx.Response:
    """The Send API's answer to an accepted message."""
    return httpx.Response(200, json={"recipient_id": recipient, "message_id": message_id})


def graph_failed(status: int, code: int, subcode: int | None = None) -> httpx.Response:
    """A Graph error body whose message quotes a phone number and customer text, as
    Meta's sometimes do (what we keep of it must be scrubbed)."""
    error: dict[str, Any] = {
        "message": f"(#{code}) Customer +1 202 555 0143 said: secret customer text",
        "type": "OAuthException",
        "code": code,
        "fbtrace_id": "AbCdEfGh123",
    }
    if subcode is not None:
        error["error_subcode"] = subcode
    return httpx.Response(status, json={"error": error})


async def deliveries(rt: Any, direction: Direction) -> list[Any]:
    """Account ``acme``'s delivery records of one direction, oldest first."""
    out = []
    for raw in await redis_of(rt).keys("db:{acme}:dlv:*"):
        name = raw.decode()
        if name.endswith(":attempts"):
            continue
        d = await rt.deliveries.get("acme", name.rsplit(":", 1)[1])
        if d is not None and d.direction is direction:
            out.append(d)
    return sorted(out, key=lambda d: d.id)


async def agent_says(rt: Any, ticket_id: str, text: str, n: int) -> None:
    """The sandbox desk's agent answers ticket ``ticket_id`` of account ``acme`` (the
    ``n``-th reply of the test), and the worker runs until the queue is empty."""
    from deskbridge.flows.ingest import accept_replies

    answer = agent_reply(
        text,
        dedup_key=f"r{n}",
        ticket_id=ticket_id,
        external_id=f"a{n}",
        occurred_at=datetime.now(UTC),
    )
    await accept_replies(rt, "acme", "sandbox", None, [answer])
    await drain(rt)


@functools.cache
def rsa_private_key() -> str:
    """An unencrypted PKCS#8 PEM RSA key (2048 bits), as the Vonage Dashboard hands out an
    application's key: made once per test process."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return pem.decode()


async def kill_worker_when(rt: Any, reached: asyncio.Event, limit: float = 10) -> None:
    """Run a worker until ``reached`` is set, then kill it there (cancelled mid-job) and
    do what arq's in-progress expiry and the lane lock's TTL do in time, so that the next
    worker runs its job again."""
    task = asyncio.create_task(drain(rt))
    await asyncio.wait_for(reached.wait(), limit)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    redis = redis_of(rt)
    for name in await redis.keys("arq:in-progress:*"):
        await redis.delete(name)
    for name in await redis.keys("db:{acme}:lock:*"):
        await redis.delete(name)
