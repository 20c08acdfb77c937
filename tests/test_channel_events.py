"""Reply tokens, display names, follows, retractions and credential problems, with a
fake channel."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from deskbridge.adapters.base import Progress
from deskbridge.adapters.capabilities import LooksUpDisplayNames
from deskbridge.errors import PermanentError
from deskbridge.flows.ingest import accept_replies
from deskbridge.gateway import create_app
from deskbridge.gateway.admin import mint
from deskbridge.schemas import (
    AgentReply,
    Attachment,
    Channel,
    ChannelAddress,
    ChannelEvent,
    Desk,
    Identity,
    Message,
    Sender,
    SendReceipt,
    Upload,
)

from .conftest import drain
from .test_windows import inbound

ANN = Sender(
    external_id="U1",
    identities=(
        Identity(kind="channel_user", channel=Channel.TELEGRAM, value="U1", strength="strong"),
    ),
)


class TokenChannel(LooksUpDisplayNames):
    channel = Channel.TELEGRAM
    takes_files = True

    def __init__(self, account: str) -> None:
        self.account = account
        self.addresses: list[ChannelAddress] = []
        self.lookups = 0
        self.fail_with: Exception | None = None

    async def fetch(self, attachment: Attachment) -> Upload:
        raise PermanentError("none")

    async def send(
        self,
        reply: AgentReply,
        to: ChannelAddress,
        files: Sequence[Upload],
        progress: Progress | None = None,
    ) -> SendReceipt:
        if self.fail_with:
            raise self.fail_with
        self.addresses.append(to)
        return SendReceipt(
            external_ids=("x",), used_reply_token=to.reply_token is not None, quota_messages=1
        )

    async def reengage(self, to: ChannelAddress) -> SendReceipt:
        raise PermanentError("no window")

    async def display_name(self, user_id: str, thread: str) -> str | None:
        self.lookups += 1
        return "Ann from the profile API"


def said(n: int, token: str | None = None) -> Message:
    return Message(
        account="acme",
        channel=Channel.TELEGRAM,
        dedup_key=f"m{n}",
        thread="U1",
        occurred_at=datetime.now(UTC),
        external_id=str(n),
        sender=ANN,
        text=f"hello {n}",
        reply_token=token,
    )


async def reply(rt, ticket: str, n: int, *, automated: bool = False) -> None:
    r = AgentReply(
        account="acme",
        desk=Desk.SANDBOX,
        dedup_key=f"r{n}",
        ticket_id=ticket,
        external_id=f"a{n}",
        text=f"answer {n}",
        automated=automated,
        occurred_at=datetime.now(UTC),
    )
    await accept_replies(rt, "acme", "sandbox", None, [r])


async def test_reply_tokens_are_spent_once_and_never_by_automated_messages(make_runtime) -> None:
    rt = make_runtime()
    channel = TokenChannel("acme")
    rt.adapters[("acme", Channel.TELEGRAM)] = channel
    await inbound(rt, said(1, token="tok-1"))
    await drain(rt)
    [ticket] = await rt.sandbox.tickets("acme")
    await reply(rt, ticket.id, 1, automated=True)
    await reply(rt, ticket.id, 2)
    await reply(rt, ticket.id, 3)
    await drain(rt)
    assert [a.reply_token for a in channel.addresses] == [None, "tok-1", None]
    assert channel.addresses[1].reply_token_at is not None
    metrics = await rt.deliveries.counts("acme")
    assert metrics["pending"] == 0


async def test_display_names_are_looked_up_once_and_cached(make_runtime) -> None:
    rt = make_runtime()
    channel = TokenChannel("acme")
    rt.adapters[("acme", Channel.TELEGRAM)] = channel
    await inbound(rt, said(1))
    await inbound(rt, said(2))
    await drain(rt)
    [ticket] = await rt.sandbox.tickets("acme")
    assert ticket.requester == "Ann from the profile API"
    assert channel.lookups == 1


async def test_follows_are_kept_on_the_contact_and_retractions_noted(make_runtime) -> None:
    rt = make_runtime()
    rt.adapters[("acme", Channel.TELEGRAM)] = TokenChannel("acme")

    def event(n: int, action: str, ext: str | None = None) -> ChannelEvent:
        return ChannelEvent(
            account="acme",
            channel=Channel.TELEGRAM,
            dedup_key=f"e{n}",
            thread="U1",
            occurred_at=datetime.now(UTC) - timedelta(seconds=10 - n),
            action=action,
            sender=ANN,
            external_id=ext,
        )

    await inbound(rt, event(1, "follow"))
    await drain(rt)
    assert await rt.sandbox.tickets("acme") == []  # a follow opens no ticket
    contact_id = (await rt.conversations.resolve_contact("acme", ANN.identities, None)).id
    contact = await rt.conversations.contact("acme", contact_id)
    assert contact.attributes["telegram_follow"].startswith("following since")

    await inbound(rt, said(1))
    await inbound(rt, event(2, "unsend", ext="1"))
    await inbound(rt, event(3, "unfollow"))
    await drain(rt)
    [ticket] = await rt.sandbox.tickets("acme")
    notes = [m.text for m in ticket.messages if m.author == "note"]
    assert len(notes) == 1 and "retracted a message" in notes[0] and "message 1" in notes[0]
    contact = await rt.conversations.contact("acme", contact_id)
    assert contact.attributes["telegram_follow"].startswith("unfollowed since")


async def test_a_rejected_credential_shows_in_readyz_until_it_works_again(
    make_runtime, aiohttp_client
) -> None:
    secret = "admin-secret-for-tests-0123456789abcdef"
    rt = make_runtime(admin_jwt_secret=secret)
    channel = TokenChannel("acme")
    rt.adapters[("acme", Channel.TELEGRAM)] = channel
    client = await aiohttp_client(create_app(rt, role="serve"))
    ops = mint(
        secret,
        algorithm="HS256",
        subject="ops@test",
        scopes=["ops:read"],
        ttl_seconds=600,
        audience="deskbridge-admin",
    )
    # /readyz says only ready; the per-account problems are the admin health report's
    health = {"Authorization": f"Bearer {ops}"}
    await inbound(rt, said(1))
    await drain(rt)
    [ticket] = await rt.sandbox.tickets("acme")
    channel.fail_with = PermanentError("telegram sendMessage: HTTP 401", status=401)
    await reply(rt, ticket.id, 1)
    await drain(rt)
    body = await (await client.get("/admin/v1/health", headers=health)).json()
    assert (await client.get("/readyz")).status == 200  # never fails readiness
    assert "HTTP 401" not in await (await client.get("/readyz")).text()
    problem = body["accounts"]["acme"]["problems"]["channel telegram"]
    # the text first, then when it began, as a time (never a raw epoch)
    assert re.fullmatch(
        r"telegram sendMessage: HTTP 401 \(since \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ\)", problem
    )
    channel.fail_with = None
    await reply(rt, ticket.id, 2)
    await drain(rt)
    body = await (await client.get("/admin/v1/health", headers=health)).json()
    assert "problems" not in body["accounts"]["acme"]
