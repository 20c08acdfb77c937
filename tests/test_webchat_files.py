"""The widget's visitor files: what their bytes are, the upload route's refusals (origin,
token, rate, size, type) storing nothing, a file reaching the sandbox desk on its
message, the links to the visitor's and the agents' files in the history (signed when
sent, never past the history), a visitor's file living as long as the history, erasure;
and re-ingest of kept widget frames (duplicates while the marks last, then exactly once,
in order)."""

from __future__ import annotations

import dataclasses
import json
import time
import typing
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import redis.asyncio as aioredis

from deskbridge.adapters.webchat.files import file_ids, kind_of, safe_name, sniff
from deskbridge.adapters.webchat.identity import (
    Visitor,
    check_file_link,
    check_upload_token,
    upload_token,
)
from deskbridge.adapters.webchat.stored import VISITOR_HEADER, StoredWebchat, raw_request
from deskbridge.config import WebchatConfig, WidgetMediaType, parse_accounts
from deskbridge.errors import (
    ConfigError,
    ParseFailed,
    PayloadInvalid,
    RequestRefused,
    SignatureInvalid,
)
from deskbridge.flows.privacy import forget
from deskbridge.flows.reingest import reingest_one
from deskbridge.gateway import create_app
from deskbridge.gateway.webchat_files import with_links
from deskbridge.schemas import Attachment, Channel, ChannelAddress, Identity, Message, RawRequest
from deskbridge.store import Vault, keys
from deskbridge.store.crypto import decode_key
from deskbridge.store.listing import RawFilter
from deskbridge.store.media import MediaLinkError, MediaLinks
from deskbridge.store.webchat import Entry

from .conftest import TEST_KEY, drain
from .test_webchat import ORIGIN, SECRET, _hello, _reply, _until, yaml

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(range(64))
PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n"
KEY = "0123456789abcdef0123456789abcdef"
TERMS = Attachment(kind="document", ref="https://desk.test/att/7", filename="terms.pdf")
KEPT_TERMS = {"name": "terms.pdf", "desk": TERMS.model_dump(mode="json", exclude_none=True)}
OLD_LINK = {"name": "old.pdf", "url": "https://bridge.test/media/old/old.pdf"}
SAMPLES: dict[WidgetMediaType, bytes] = {
    "image/jpeg": b"\xff\xd8\xff\xe0\x00\x10JFIF\x00",
    "image/png": PNG,
    "image/gif": b"GIF89a\x01\x00\x01\x00\x00\x00\x00;",
    "image/webp": b"RIFF\x24\x00\x00\x00WEBPVP8 \x18\x00\x00\x00",
    "application/pdf": PDF,
    "text/plain": "Order 42: ça va\r\n".encode(),
    "audio/wav": b"RIFF\x24\x00\x00\x00WAVEfmt ",
    "video/mp4": b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isommp42",
}


# --- pure parts ---------------------------------------------------------------------------


def test_sniffing_knows_every_type_an_account_may_allow_and_nothing_else() -> None:
    assert set(SAMPLES) == set(typing.get_args(WidgetMediaType))
    for mime, data in SAMPLES.items():
        assert sniff(data) == mime, mime
    for junk in (
        b"",
        b"MZ\x90\x00\x03\x00\x00\x00",  # a Windows program
        b"<!doctype html><script>alert(1)</script>",  # text, but a page: only as text/plain
        b"PK\x03\x04\x14\x00",  # a zip (binary bytes)
        b"\x00\x00\x00\x18ftypqt  \x00\x00\x02\x00qt  ",  # QuickTime, not MP4
        b"\xff\xfe\x00\x00garbage",
    ):
        assert sniff(junk) in (None, "text/plain"), junk
    assert sniff(b"<!doctype html><script>alert(1)</script>") == "text/plain"
    assert sniff(b"MZ\x90\x00\x03\x00") is None
    assert sniff(b"\xc3\x28 not utf-8") is None
    assert [kind_of(m) for m in ("image/png", "audio/wav", "video/mp4", "application/pdf")] == [
        "image",
        "audio",
        "video",
        "document",
    ]


def test_a_file_name_loses_folders_and_controls_and_says_its_real_type() -> None:
    assert safe_name("../../etc/evil.html", "image/png") == "evil.html.png"
    assert safe_name("C:\\Users\\ana\\scan.PDF", "application/pdf") == "scan.PDF"
    assert safe_name("photo\x00\u202e.jpg", "image/jpeg") == "photo__.jpg"
    assert safe_name("", "image/gif") == "file.gif"
    assert safe_name("...", "text/plain") == "file.txt"
    assert len(safe_name("x" * 500, "image/png")) <= 100


def test_upload_tokens_and_file_links_are_signed_scoped_and_expire() -> None:
    now = time.time()
    token = upload_token(SECRET, "acme", KEY, int(now) + 60)
    assert check_upload_token(SECRET, "acme", token, now) == KEY
    for bad, when in [
        (token, now + 120),  # expired
        (token.replace(KEY, "f" + KEY[1:]), now),  # another visitor
        (token[:-1] + ("0" if token[-1] != "0" else "1"), now),  # forged
        ("nonsense", now),
        ("", now),
    ]:
        with pytest.raises(SignatureInvalid):
            check_upload_token(SECRET, "acme", bad, when)
    with pytest.raises(SignatureInvalid):
        check_upload_token(SECRET, "other", token, now)
    with pytest.raises(SignatureInvalid):
        check_file_link(SECRET, "acme", KEY, "f" * 22, str(int(now) + 60), "0" * 64, now)


def test_a_frame_names_at_most_five_uploads_and_the_offline_form_none() -> None:
    fid = "A" * 22
    assert file_ids({"type": "message", "files": [fid, fid]}) == (fid,)
    assert file_ids({"type": "message"}) == ()
    cases: list[tuple[dict[str, Any], str]] = [
        ({"type": "message", "files": "A" * 22}, "list"),
        ({"type": "message", "files": ["../x"]}, "list"),
        ({"type": "message", "files": [f"{i}" * 22 for i in range(6)]}, "at most"),
        ({"type": "offline", "files": [fid]}, "offline"),
    ]
    for frame, why in cases:
        with pytest.raises(PayloadInvalid, match=why):
            file_ids(frame)


def test_the_config_takes_only_types_and_sizes_the_widget_handles() -> None:
    for bad, where in [
        ('media_types: ["application/x-msdownload"]', "media_types"),
        ("max_media_bytes: 30000000", "max_media_bytes"),
    ]:
        with pytest.raises(ConfigError) as caught:
            parse_accounts(yaml(**dict([bad.split(": ", 1)])))
        assert [w for w, _ in caught.value.problems if where in w]
    cfg = parse_accounts(yaml()).accounts["acme"].channel(Channel.WEBCHAT)
    assert isinstance(cfg, WebchatConfig) and cfg.max_media_bytes == 10 * 1024 * 1024


def _media_token(url: str) -> str:
    return url.split("/media/")[1].split("/")[0]


def test_history_links_are_signed_when_sent_and_never_outlive_the_history() -> None:
    cfg = parse_accounts(yaml()).accounts["acme"].channel(Channel.WEBCHAT)
    assert isinstance(cfg, WebchatConfig)
    now = time.time()
    vault = Vault.from_secret(decode_key(TEST_KEY))
    links = MediaLinks(vault, "https://bridge.test")

    def at(dt: float) -> MediaLinks:
        return MediaLinks(vault, "https://bridge.test", clock=lambda: now + dt)

    agent = {
        "role": "agent",
        "text": "Papers",
        "files": [
            KEPT_TERMS,
            OLD_LINK,  # kept before links were signed when sent
            {"name": "evil", "url": "javascript:alert(1)"},
            "nonsense",
        ],
    }
    shown = with_links(cfg, links, "acme", KEY, Entry(1, agent, now + 30 * 86400))
    signed, *rest = shown["files"]
    assert rest == [OLD_LINK]  # the javascript: one and the nonsense left out
    assert set(signed) == {"name", "url"} and signed["url"].startswith("https://bridge.test/media/")
    token = _media_token(signed["url"])
    assert links.open(token) == ("acme", TERMS)  # the desk's attachment, never sent as is
    assert at(86400 - 60).open(token) == ("acme", TERMS)  # about a day
    with pytest.raises(MediaLinkError):
        at(2 * 86400).open(token)
    again = with_links(cfg, links, "acme", KEY, Entry(1, agent, now + 30 * 86400))
    assert _media_token(again["files"][0]["url"]) != token  # signed anew each time

    # a history that ends in ten minutes: no link, the agent's or the visitor's, outlives it
    ending = with_links(cfg, links, "acme", KEY, Entry(1, agent, now + 600))
    token = _media_token(ending["files"][0]["url"])
    assert at(590).open(token) == ("acme", TERMS)
    with pytest.raises(MediaLinkError):
        at(602).open(token)
    mine = {"role": "visitor", "files": [{"id": "A" * 22, "name": "a.png", "type": "image/png"}]}
    [link] = with_links(cfg, links, "acme", KEY, Entry(2, mine, now + 600))["files"]
    assert int(parse_qs(urlsplit(link["url"]).query)["e"][0]) <= now + 600

    # only http(s) is ever a link, whatever the public URL is
    odd = MediaLinks(vault, "ftp://bridge.test")
    assert with_links(cfg, odd, "acme", KEY, Entry(1, agent))["files"] == [OLD_LINK]


async def test_an_agents_files_are_kept_as_the_desks_and_linked_when_sent(
    make_runtime: Any, aiohttp_client: Any, redis: aioredis.Redis
) -> None:
    rt, client, ws, welcome = await _open(make_runtime, aiohttp_client)
    visitor = welcome["visitor"].partition(".")[0]
    adapter = rt.adapter("acme", Channel.WEBCHAT)
    assert adapter is not None
    to = ChannelAddress(channel=Channel.WEBCHAT, account="acme", thread=visitor)
    reply = _reply("t1", "Papers", 1).model_copy(update={"attachments": (TERMS,)})
    await adapter.send(reply, to, [])
    [kept] = await rt.webchat.history("acme", visitor)
    assert kept.body["files"] == [KEPT_TERMS]  # no link kept: none can expire
    live = await _until(ws, "message")
    [link] = live["files"]
    assert set(link) == {"name", "url"} and rt.links.open(_media_token(link["url"]))[1] == TERMS
    await ws.close()

    # back when the history has ten minutes left: a new link, ending with the history
    await redis.expire(keys.webchat_history("acme", rt.webchat.visitor_key("acme", visitor)), 600)
    ws, _ = await _visitor(client, welcome["visitor"])
    [again] = (await _until(ws, "message"))["files"]
    token = _media_token(again["url"])
    assert token != _media_token(link["url"])
    late = MediaLinks(rt.vault, "http://bridge.test", clock=lambda: time.time() + 601)
    with pytest.raises(MediaLinkError):
        late.open(token)
    await ws.close()


# --- the upload route ---------------------------------------------------------------------


async def _visitor(client: Any, token: str | None = None) -> tuple[Any, dict[str, Any]]:
    ws = await client.ws_connect("/widget/v1/acme/socket", origin=ORIGIN)
    return ws, await _hello(ws, visitor=token, after=0)


async def _open(
    make_runtime: Any, aiohttp_client: Any, **config: object
) -> tuple[Any, Any, Any, dict[str, Any]]:
    """A gateway for the account with ``config``, and a visitor's socket after hello:
    (runtime, client, socket, welcome)."""
    rt = make_runtime(yaml(**config))
    client = await aiohttp_client(create_app(rt, role="serve"))
    ws, welcome = await _visitor(client)
    return rt, client, ws, welcome


async def _upload(
    client: Any, grant: dict[str, Any] | None, data: Any, *, name: str = "photo.png", **headers: str
) -> Any:
    sent = {"Origin": ORIGIN, "Content-Type": "application/octet-stream"}
    if grant is not None:
        sent["Authorization"] = f"Bearer {grant['token']}"
    sent.update(headers)
    return await client.post(
        "/widget/v1/acme/attachments", params={"name": name}, data=data, headers=sent
    )


async def _file_keys(redis: aioredis.Redis) -> list[bytes]:
    return list(await redis.keys(keys.webchat_file("acme", "*", "*")))


async def test_refused_uploads_say_why_and_store_nothing(
    make_runtime: Any, aiohttp_client: Any, redis: aioredis.Redis
) -> None:
    _rt, client, ws, welcome = await _open(
        make_runtime, aiohttp_client, max_media_bytes=1000, media_types='["image/png"]'
    )
    grant = welcome["upload"]
    assert grant["max_bytes"] == 1000 and grant["types"] == ["image/png"]

    pre = await client.options(
        "/widget/v1/acme/attachments",
        headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"},
    )
    assert pre.status == 204
    assert pre.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "authorization" in pre.headers["Access-Control-Allow-Headers"]
    evil = {"Origin": "https://evil.test", "Access-Control-Request-Method": "POST"}
    assert (await client.options("/widget/v1/acme/attachments", headers=evil)).status == 403

    async def chunked() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield PNG  # no Content-Length: refused while streaming

    cases: list[tuple[Any, int, str | None]] = [
        (await _upload(client, grant, PNG, Origin="https://evil.test"), 403, None),
        (await _upload(client, None, PNG), 401, "token"),
        (await _upload(client, {"token": grant["token"] + "0"}, PNG), 401, "token"),
        (await _upload(client, grant, PNG * 20), 413, "too_large"),
        (await _upload(client, grant, chunked()), 413, "too_large"),
        (await _upload(client, grant, PDF), 415, "type"),
        (await _upload(client, grant, b"<html><script>x</script>"), 415, "type"),
        (await _upload(client, grant, b""), 400, "empty"),
    ]
    for resp, status, code in cases:
        assert resp.status == status, (status, await resp.text())
        if code is not None:
            assert (await resp.json())["error"] == code
            assert resp.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert await _file_keys(redis) == []
    assert await redis.keys(keys.webchat_files("acme", "*")) == []
    await ws.close()


async def test_uploads_past_the_rate_are_refused(
    make_runtime: Any, aiohttp_client: Any, redis: aioredis.Redis
) -> None:
    _rt, client, ws, welcome = await _open(make_runtime, aiohttp_client, uploads_per_minute=2)
    if int(time.time()) % 60 > 57:  # the window could turn between uploads
        pytest.skip("at a minute's edge")
    statuses = [(await _upload(client, welcome["upload"], PNG)).status for _ in range(3)]
    assert statuses == [201, 201, 429]
    refused = await _upload(client, welcome["upload"], PNG)
    assert refused.status == 429 and 0 < int(refused.headers["Retry-After"]) <= 60
    assert len(await _file_keys(redis)) == 2
    await ws.close()


async def test_a_visitors_file_reaches_the_desk_and_their_history(
    make_runtime: Any, aiohttp_client: Any, redis: aioredis.Redis
) -> None:
    rt, client, ws, welcome = await _open(make_runtime, aiohttp_client)
    token = welcome["visitor"]
    resp = await _upload(client, welcome["upload"], PNG, name="../../invoice.html")
    assert resp.status == 201
    up = await resp.json()
    assert (up["name"], up["type"], up["size"]) == ("invoice.html.png", "image/png", len(PNG))
    [file_key] = await _file_keys(redis)
    assert 0 < await redis.ttl(file_key) <= 3600  # until a message names it

    # a file nobody uploaded is refused
    await ws.send_json({"type": "message", "id": "client-msg-0", "text": "", "files": ["B" * 22]})
    assert (await _until(ws, "error"))["detail"].endswith("attach it again")
    await ws.send_json({"type": "message", "id": "client-msg-1", "text": "", "files": [up["id"]]})
    assert (await _until(ws, "ack"))["seq"] == 1
    assert await redis.ttl(file_key) > 29 * 86400  # kept as long as the history
    echo = await _until(ws, "message")
    [shown] = echo["files"]
    assert (shown["name"], shown["type"]) == ("invoice.html.png", "image/png")
    await ws.close()

    await drain(rt)
    [ticket] = await rt.sandbox.tickets("acme")
    [filed] = [m for m in ticket.messages if m.attachments]
    assert filed.attachments == (f"invoice.html.png (image/png, {len(PNG)} bytes)",)

    # the visitor returns: the file in the history, behind a signed link of this gateway
    ws, _ = await _visitor(client, token)
    entry = await _until(ws, "message")
    [again] = entry["files"]
    assert again["url"].startswith("/widget/v1/acme/files/")
    got = await client.get(again["url"])
    assert got.status == 200 and await got.read() == PNG
    assert got.content_type == "image/png"
    assert got.headers["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in got.headers["Content-Security-Policy"]
    assert got.headers["Content-Disposition"].startswith("inline;")
    path, _, query = again["url"].partition("?")
    flipped = query[:-1] + ("1" if query.endswith("0") else "0")  # a signature one char off
    for bad in (f"{path}?{flipped}", path, path.replace(up["id"], "C" * 22) + "?" + query):
        assert (await client.get(bad)).status == 404
    await ws.close()


async def test_a_visitors_files_live_as_long_as_their_history(
    make_runtime: Any, aiohttp_client: Any, redis: aioredis.Redis
) -> None:
    rt, client, ws, welcome = await _open(make_runtime, aiohttp_client)
    visitor = welcome["visitor"].partition(".")[0]
    v = rt.webchat.visitor_key("acme", visitor)
    sent, waiting, lost = [
        (await (await _upload(client, welcome["upload"], PNG)).json())["id"] for _ in range(3)
    ]
    history = keys.webchat_history("acme", v)
    index = keys.webchat_files("acme", v)
    file = {i: keys.webchat_file("acme", v, i) for i in (sent, waiting, lost)}

    # a message naming a file that is gone changes nothing, not even the one still kept
    await redis.delete(file[lost])
    frame = {"type": "message", "id": "client-msg-0", "text": "", "files": [waiting, lost]}
    await ws.send_json(frame)
    assert (await _until(ws, "error"))["code"] == "invalid"
    assert await redis.ttl(file[waiting]) <= 3600
    # redis-py types async results as `Awaitable[T] | T`, which mypy calls [misc]
    assert not await redis.hexists(file[waiting], "kept")  # type: ignore[misc]

    await ws.send_json({"type": "message", "id": "client-msg-1", "text": "", "files": [sent]})
    await _until(ws, "ack")
    await ws.close()

    # weeks on, the history and the file have ten minutes left; the agent answers: the
    # history lives another history_days, and so does the file it names
    for name in (history, file[sent]):
        await redis.expire(name, 600)
    await redis.expire(index, 60)
    adapter = rt.adapter("acme", Channel.WEBCHAT)
    assert adapter is not None
    to = ChannelAddress(channel=Channel.WEBCHAT, account="acme", thread=visitor)
    await adapter.send(_reply("t1", "Thanks, got it", 1), to, [])
    left = await redis.ttl(history)
    assert left > 29 * 86400 and abs(await redis.ttl(file[sent]) - left) <= 1
    assert await redis.ttl(file[waiting]) <= 3600  # no message names it: an hour, as said
    assert await redis.ttl(index) >= left  # erasure still finds every file
    members = await redis.smembers(index)  # type: ignore[misc]
    assert {m.decode() for m in members} == {sent, waiting}  # the gone one left the index

    # the returning visitor's link to it works
    ws, _ = await _visitor(client, welcome["visitor"])
    [shown] = (await _until(ws, "message"))["files"]
    got = await client.get(shown["url"])
    assert got.status == 200 and await got.read() == PNG
    await ws.close()


async def test_a_file_gone_before_filing_becomes_a_note_and_erasure_removes_files(
    make_runtime: Any, aiohttp_client: Any, redis: aioredis.Redis
) -> None:
    rt, client, ws, welcome = await _open(make_runtime, aiohttp_client)
    visitor = welcome["visitor"].partition(".")[0]
    ids = [(await (await _upload(client, welcome["upload"], PNG)).json())["id"] for _ in range(2)]
    await ws.send_json({"type": "message", "id": "client-msg-1", "text": "Both", "files": ids})
    await _until(ws, "ack")
    await ws.close()
    await redis.delete(keys.webchat_file("acme", rt.webchat.visitor_key("acme", visitor), ids[1]))
    await drain(rt)
    [ticket] = await rt.sandbox.tickets("acme")
    [filed] = [m for m in ticket.messages if "Both" in m.text]
    assert len(filed.attachments) == 1 and "Attachment not available" in filed.text

    contact, _ = await rt.conversations.observe_contact(
        "acme", (Identity(kind="channel_user", value=visitor, channel=Channel.WEBCHAT),), None
    )
    report = await forget(rt, "acme", contact.id, at_desk=False, who="test")
    assert report["removed"]["webchat_files"] == 1
    assert await _file_keys(redis) == []


# --- re-ingest ----------------------------------------------------------------------------


async def _reingest(rt: Any) -> list[dict[str, Any]]:
    page = await rt.listing.raws({"acme": ["webchat"]}, RawFilter(), limit=10)
    entries = sorted(page.items, key=lambda e: (e.received_at, e.id))
    outcomes = [
        await reingest_one(rt, e, who="test", dry_run=False, allow_duplicates=False)
        for e in entries
    ]
    assert [o.error for o in outcomes] == [None] * len(outcomes)
    return [ev for o in outcomes for ev in o.events]


async def test_kept_frames_are_reingested_once_in_order_with_their_files(
    make_runtime: Any, aiohttp_client: Any, redis: aioredis.Redis
) -> None:
    rt, client, ws, welcome = await _open(make_runtime, aiohttp_client)
    up = await (await _upload(client, welcome["upload"], PDF, name="order.pdf")).json()
    frames: list[dict[str, Any]] = [
        {"type": "message", "id": "client-msg-1", "text": "First"},
        {
            "type": "message",
            "id": "client-msg-2",
            "text": "Second, with the order",
            "files": [up["id"]],
        },
        {"type": "message", "id": "client-msg-3", "text": "Third"},
    ]
    for frame in frames:
        await ws.send_json(frame)
        await _until(ws, "ack")
    await ws.close()
    await drain(rt)

    # while the dedup marks last, every kept frame is a duplicate of what was filed
    assert [(e["kind"], e["status"]) for e in await _reingest(rt)] == [("message", "duplicate")] * 3

    # a parser fix long after: the marks are gone, the frames are filed again, once
    for key in await redis.keys(keys.dedup("acme", "webchat", "*")):
        await redis.delete(key)
    assert {e["status"] for e in await _reingest(rt)} == {"new"}
    assert {e["status"] for e in await _reingest(rt)} == {"duplicate"}
    await drain(rt)
    texts = [m.text for t in await rt.sandbox.tickets("acme") for m in t.messages]
    firsts = [t for t in texts if t.startswith(("First", "Second", "Third"))]
    assert firsts == ["First", "Second, with the order", "Third"] * 2
    files = [
        m.attachments for t in await rt.sandbox.tickets("acme") for m in t.messages if m.attachments
    ]
    assert files == [(f"order.pdf (application/pdf, {len(PDF)} bytes)",)] * 2


def test_a_kept_frame_parses_as_the_socket_took_it_and_old_records_are_refused() -> None:
    when = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
    carol = Visitor(
        "u:carol@example.com",
        verified=True,
        email="carol@example.com",
        name="Carol",
        email_verified=True,
        language="es",
    )
    frame = b'{"type":"message","id":"client-msg-9","text":"Hola"}'
    stored = StoredWebchat("acme")
    [msg] = stored.parse(raw_request("acme", carol, frame, when)).events
    assert isinstance(msg, Message)
    assert (msg.thread, msg.text, msg.occurred_at, msg.sender.language) == (
        "u:carol@example.com",
        "Hola",
        when,
        "es",
    )
    assert [i.strength for i in msg.sender.identities if i.kind == "email"] == ["strong"]
    # kept before the email's own verification was recorded: signed as the subject
    # (no user id) it is verified; beside a user id, a hint
    for user_id, strength in ((None, "strong"), ("42", "weak")):
        earlier = dataclasses.asdict(dataclasses.replace(carol, user_id=user_id))
        del earlier["email_verified"]
        req = raw_request("acme", carol, frame, when)
        headers = {**req.headers, VISITOR_HEADER: json.dumps(earlier)}
        [msg] = stored.parse(dataclasses.replace(req, headers=headers)).events
        assert isinstance(msg, Message)
        assert [i.strength for i in msg.sender.identities if i.kind == "email"] == [strength]
    old = RawRequest(method="WS", path="/widget/v1/acme/socket", body=frame)
    with pytest.raises(RequestRefused):
        stored.parse(old)
    with pytest.raises(ParseFailed):
        stored.parse(raw_request("acme", carol, b"[1]", when))
    with pytest.raises(ParseFailed):
        stored.parse(raw_request("acme", carol, b'{"type":"message","id":"x","text":"a"}', when))
    with pytest.raises(SignatureInvalid):
        stored.verify(raw_request("acme", carol, frame, when))
