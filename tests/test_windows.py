"""Reply windows, held replies, channel statuses and media links, with fake channels."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from deskbridge.adapters.base import Progress, send_parts
from deskbridge.errors import PermanentError, WindowClosed
from deskbridge.flows.ingest import accept_replies
from deskbridge.gateway import create_app
from deskbridge.schemas import (
    AgentReply,
    Attachment,
    Channel,
    ChannelAddress,
    DeliveryState,
    Desk,
    Direction,
    Message,
    Sender,
    SendReceipt,
    StatusUpdate,
    Upload,
)
from deskbridge.store import IntakeEvent

from .conftest import drain


class WindowedChannel:
    """A channel with a 24-hour reply window, recording what it sends."""

    channel = Channel.TELEGRAM
    takes_files = True

    def __init__(self, account: str, *, template: bool = True) -> None:
        self.account = account
        self.sent: list[str] = []
        self.invites = 0
        self.template = template
        self.ids = 0

    async def fetch(self, attachment: Attachment) -> Upload:
        raise PermanentError("no files here")

    async def send(
        self,
        reply: AgentReply,
        to: ChannelAddress,
        files: Sequence[Upload],
        progress: Progress | None = None,
    ) -> SendReceipt:
        assert to.last_inbound_at is not None
        if datetime.now(UTC) - to.last_inbound_at > timedelta(hours=24):
            raise WindowClosed("fake: more than 24 hours since the customer wrote")

        async def one() -> str:
            self.sent.append(reply.text)
            self.ids += 1
            return f"out-{self.ids}"

        # a part, as real channels send: a reply held again must be sent again whole
        return SendReceipt(external_ids=await send_parts(progress, [one]))

    async def reengage(self, to: ChannelAddress) -> SendReceipt:
        if not self.template:
            raise PermanentError("no re-engagement template configured")
        self.invites += 1
        return SendReceipt(external_ids=("invite",))


def customer(n: int, *, hours_ago: float) -> Message:
    return Message(
        account="acme",
        channel=Channel.TELEGRAM,
        dedup_key=f"in-{n}",
        thread="42",
        occurred_at=datetime.now(UTC) - timedelta(hours=hours_ago),
        external_id=str(n),
        sender=Sender(external_id="42", display_name="Ann"),
        text=f"customer {n}",
    )


async def inbound(rt, ev) -> None:
    conv = rt.conversations.conversation_id("acme", ev.channel, ev.thread)
    await rt.intake.accept(
        account="acme",
        source="telegram",
        direction=Direction.INBOUND,
        channel="telegram",
        desk="sandbox",
        req=None,
        events=[IntakeEvent(dedup_key=ev.dedup_key, conversation_id=conv, event=ev)],
    )


async def agent(rt, ticket: str, n: int) -> None:
    reply = AgentReply(
        account="acme",
        desk=Desk.SANDBOX,
        dedup_key=f"r{n}",
        ticket_id=ticket,
        external_id=f"agent-{n}",
        text=f"agent {n}",
        occurred_at=datetime.now(UTC),
    )
    assert await accept_replies(rt, "acme", "sandbox", None, [reply]) == 1


async def test_closed_window_holds_replies_until_the_customer_writes(make_runtime, redis) -> None:
    rt = make_runtime()
    channel = WindowedChannel("acme")
    rt.adapters[("acme", Channel.TELEGRAM)] = channel
    await inbound(rt, customer(1, hours_ago=30))
    await drain(rt)
    [ticket] = await rt.sandbox.tickets("acme")

    await agent(rt, ticket.id, 1)
    await agent(rt, ticket.id, 2)
    await drain(rt)
    assert channel.sent == []
    assert channel.invites == 1
    notes = [
        m.text for m in (await rt.sandbox.ticket("acme", ticket.id)).messages if m.author == "note"
    ]
    assert (
        len(notes) == 1
        and "holding this reply" in notes[0]
        and "re-engagement template was sent" in notes[0]
    )
    held = [d for d in await _deliveries(rt, redis) if d.state is DeliveryState.HELD]
    assert len(held) == 1  # the second reply waits behind it in the lane

    await drain(rt)  # nothing new happens while the customer is silent
    assert channel.invites == 1 and channel.sent == []

    await inbound(rt, customer(2, hours_ago=0))
    await drain(rt)
    assert channel.sent == ["agent 1", "agent 2"]
    states = {d.state for d in await _deliveries(rt, redis)}
    assert states == {DeliveryState.DELIVERED}


async def test_without_a_template_the_note_says_the_customer_was_not_invited(make_runtime) -> None:
    rt = make_runtime()
    rt.adapters[("acme", Channel.TELEGRAM)] = WindowedChannel("acme", template=False)
    await inbound(rt, customer(1, hours_ago=25))
    await drain(rt)
    [ticket] = await rt.sandbox.tickets("acme")
    await agent(rt, ticket.id, 1)
    await drain(rt)
    [note] = [
        m.text for m in (await rt.sandbox.ticket("acme", ticket.id)).messages if m.author == "note"
    ]
    assert "not invited" in note and "no re-engagement template" in note


async def _deliveries(rt, redis):
    out = []
    for k in await redis.keys("db:{acme}:dlv:*"):
        if not k.endswith((b":attempts", b":parts")):
            out.append(await rt.deliveries.get("acme", k.decode().rsplit(":", 1)[1]))
    return out


async def test_statuses_update_the_reply_and_failures_become_notes(make_runtime, redis) -> None:
    rt = make_runtime()
    channel = WindowedChannel("acme")
    rt.adapters[("acme", Channel.TELEGRAM)] = channel
    await inbound(rt, customer(1, hours_ago=0))
    await drain(rt)
    [ticket] = await rt.sandbox.tickets("acme")
    await agent(rt, ticket.id, 1)
    await agent(rt, ticket.id, 2)
    await drain(rt)
    replies = sorted(
        (d for d in await _deliveries(rt, redis) if d.direction is Direction.OUTBOUND),
        key=lambda d: d.id,  # ids sort by creation; created_at ties within a millisecond
    )

    def status(n: int, ext: str | None, st: str, **kw) -> StatusUpdate:
        return StatusUpdate(
            account="acme",
            channel=Channel.TELEGRAM,
            dedup_key=f"st-{n}",
            thread="42",
            occurred_at=datetime.now(UTC),
            external_id=ext,
            status=st,
            **kw,
        )

    # out of order: read before delivered must not be downgraded
    for ev in (
        status(1, "out-1", "read"),
        status(2, "out-1", "delivered"),
        status(3, "out-2", "failed", error_code="131026", error="Message undeliverable"),
    ):
        await inbound(rt, ev)
    await drain(rt)
    first = await rt.deliveries.get("acme", replies[0].id)
    second = await rt.deliveries.get("acme", replies[1].id)
    assert first.channel_status == "read"
    assert (
        second.channel_status == "failed" and second.channel_error == "131026 Message undeliverable"
    )
    notes = [
        m.text for m in (await rt.sandbox.ticket("acme", ticket.id)).messages if m.author == "note"
    ]
    assert len(notes) == 1 and "131026 Message undeliverable" in notes[0]

    # a watermark marks every reply sent before it
    await inbound(rt, status(4, None, "read", watermark=datetime.now(UTC) + timedelta(seconds=5)))
    await drain(rt)
    assert (
        await rt.deliveries.get("acme", replies[1].id)
    ).channel_status == "failed"  # failed is final


async def test_media_links_serve_one_attachment_and_expire(make_runtime, aiohttp_client) -> None:
    from deskbridge.store.media import MediaLinkError, MediaLinks

    rt = make_runtime()

    class FakeDesk:
        async def fetch(self, attachment):
            assert attachment.ref == "https://desk.test/files/1"
            return Upload(
                filename="invoice.pdf", mime_type="application/pdf", data=b"%PDF-1.7 data"
            )

    rt.desks["acme"] = FakeDesk()
    client = await aiohttp_client(create_app(rt, role="serve"))
    att = Attachment(kind="document", ref="https://desk.test/files/1", filename="invoice.pdf")
    url = rt.links.url_for("acme", att)
    path = url.removeprefix(rt.settings.base_public_url())
    assert path.startswith("/media/") and path.endswith("/invoice.pdf")
    resp = await client.get(path)
    assert resp.status == 200
    assert await resp.read() == b"%PDF-1.7 data"
    assert resp.headers["Content-Type"] == "application/pdf"

    token = path.split("/")[2]
    forged = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
    assert (await client.get(f"/media/{forged}")).status == 404
    assert (await client.get("/media/not-a-token")).status == 404

    clock = [0.0]
    links = MediaLinks(rt.vault, "https://bridge.test", ttl=60, clock=lambda: clock[0])
    tok = links.url_for("acme", att).split("/")[4]
    assert links.open(tok)[0] == "acme"
    clock[0] = 61
    try:
        links.open(tok)
        raise AssertionError("expired token accepted")
    except MediaLinkError:
        pass


async def test_the_video_preview_is_a_png(make_runtime, aiohttp_client) -> None:
    client = await aiohttp_client(create_app(make_runtime(), role="serve"))
    resp = await client.get("/media/preview/video.png")
    assert resp.status == 200 and resp.headers["Content-Type"] == "image/png"
    body = await resp.read()
    assert body.startswith(b"\x89PNG\r\n\x1a\n") and len(body) < 1024 * 1024  # LINE: <= 1 MB
