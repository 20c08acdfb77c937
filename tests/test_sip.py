"""The SIP stack without a peer: parser corpus and property, URIs and E.164, digest,
transactions and the UAS core over real loopback sockets, the outbound adapter."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deskbridge.adapters.sip.client import send_request
from deskbridge.adapters.sip.digest import authorization, parse_challenge
from deskbridge.adapters.sip.message import (
    Headers,
    Request,
    Response,
    SipParseError,
    frame,
    parse,
)
from deskbridge.adapters.sip.receiver import SipReceiver
from deskbridge.adapters.sip.server import RefusalLimiter, SipService, stateless_response
from deskbridge.adapters.sip.simulate import sample_request
from deskbridge.adapters.sip.transaction import Timers, make_response
from deskbridge.adapters.sip.transport import Listener, start_listener
from deskbridge.adapters.sip.uri import (
    SipSyntaxError,
    SipUri,
    TelUri,
    parse_name_addr,
    parse_uri,
    phone_of,
)
from deskbridge.adapters.text import split_text
from deskbridge.config import SipConfig
from deskbridge.errors import DeliveryError, StoreUnavailable
from deskbridge.flows.filing import call_message
from deskbridge.schemas import CallEvent, Message, RawRequest

FAST = Timers(t1=0.02, t2=0.16, t4=0.1)

MESSAGE = (
    b"MESSAGE sip:+14155550100@sip.acme.example SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK776asdhds\r\n"
    b"Max-Forwards: 70\r\n"
    b'From: "Ana" <sip:+16505551234@carrier.example;user=phone>;tag=49583\r\n'
    b"To: <sip:+14155550100@sip.acme.example>\r\n"
    b"Call-ID: asd88asd77a@198.51.100.7\r\n"
    b"CSeq: 1 MESSAGE\r\n"
    b"Content-Type: text/plain;charset=UTF-8\r\n"
    b"Content-Length: 13\r\n"
    b"\r\n"
    b"Hello, world!"
)


# -- parser corpus ----------------------------------------------------------------------


def test_parses_a_message_request() -> None:
    msg = parse(MESSAGE)
    assert isinstance(msg, Request)
    assert (msg.method, msg.uri) == ("MESSAGE", "sip:+14155550100@sip.acme.example")
    assert msg.cseq == (1, "MESSAGE")
    assert msg.call_id == "asd88asd77a@198.51.100.7"
    assert msg.top_via().branch == "z9hG4bK776asdhds"
    assert msg.body == b"Hello, world!"
    sender = msg.name_addr("From")
    assert sender is not None and sender.display == "Ana" and sender.tag == "49583"


def test_compact_headers_and_folded_lines() -> None:
    raw = (
        b"MESSAGE sip:support@sip.acme.example SIP/2.0\r\n"
        b"v: SIP/2.0/UDP 198.51.100.7;branch=z9hG4bKa\r\n"
        b"Max-Forwards: 70\r\n"
        b"f: <sip:ana@example.com>\r\n"
        b"  ;tag=1\r\n"
        b"t: <sip:support@sip.acme.example>\r\n"
        b"i: c1\r\n"
        b"CSeq: 7 MESSAGE\r\n"
        b"c: text/plain\r\n"
        b"l: 2\r\n\r\nhi"
    )
    msg = parse(raw)
    assert isinstance(msg, Request)
    assert msg.headers.get("Call-ID") == "c1"
    assert msg.headers.get("content-type") == "text/plain"
    assert msg.name_addr("From") is not None
    assert msg.name_addr("From").tag == "1"  # type: ignore[union-attr]
    assert msg.body == b"hi"


def test_multiple_via_in_one_and_several_headers() -> None:
    raw = MESSAGE.replace(
        b"Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK776asdhds\r\n",
        b"Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK1, "
        b"SIP/2.0/TCP p1.example;branch=z9hG4bK2\r\n"
        b"v: SIP/2.0/UDP [2001:db8::9]:5070;branch=z9hG4bK3;received=2001:db8::9\r\n",
    )
    msg = parse(raw)
    vias = msg.vias()
    assert [v.branch for v in vias] == ["z9hG4bK1", "z9hG4bK2", "z9hG4bK3"]
    assert (vias[2].host, vias[2].port) == ("[2001:db8::9]", 5070)
    resp = make_response(msg, 200, to_tag="x")  # type: ignore[arg-type]
    assert resp.headers.get_all("Via") == msg.headers.get_all("Via")
    assert resp.headers.get("To").endswith(";tag=x")  # type: ignore[union-attr]


def test_ipv6_request_uri_and_tel_uris() -> None:
    uri = parse_uri("sip:+16505551234@[2001:db8::1]:5060;user=phone")
    assert isinstance(uri, SipUri)
    assert (uri.host, uri.port, uri.params) == ("[2001:db8::1]", 5060, {"user": "phone"})
    tel = parse_uri("tel:+1-650-555-1234")
    assert isinstance(tel, TelUri) and tel.is_global
    assert phone_of(tel, "US") == "+16505551234"
    assert phone_of(parse_uri("tel:555-1234;phone-context=+1-650"), "US") == "+16505551234"
    assert phone_of(parse_uri("tel:7042;phone-context=example.com"), "US") is None
    # RFC 3966 §5.1.5 wants phone-context on a local number; gateways omit it, so it is
    # read in the trunk's country
    local = parse_uri("tel:0612345678")
    assert isinstance(local, TelUri) and not local.is_global
    assert phone_of(local, "US", local_region="FR") == "+33612345678"
    assert phone_of(parse_uri("tel:12345"), "US") is None  # an extension: no E.164 form
    with pytest.raises(SipSyntaxError):
        parse_uri("http://example.com")
    with pytest.raises(SipSyntaxError):
        parse_uri("tel:not-a-number")


@pytest.mark.parametrize(
    ("uri", "region", "expected"),
    [
        ("sip:+16505551234@carrier.example;user=phone", "US", "+16505551234"),
        ("sip:16505551234@carrier.example", "US", "+16505551234"),
        ("sip:6505551234@carrier.example", "US", "+16505551234"),
        ("sip:+44-20-7946-0000@carrier.example;user=phone", "US", "+442079460000"),
        ("sip:020 7946 0000@carrier.example", "GB", None),  # a space is not a user char
        ("sip:02079460000@carrier.example", "GB", "+442079460000"),
        ("sip:alice@example.com", "US", None),
        ("sip:123@example.com", "US", None),
    ],
)
def test_phone_of_sip_uris(uri: str, region: str, expected: str | None) -> None:
    try:
        parsed = parse_uri(uri)
    except SipSyntaxError:
        assert expected is None
        return
    assert phone_of(parsed, region) == expected


def test_name_addr_forms() -> None:
    a = parse_name_addr('"Ana \\"A\\" B" <sip:ana@example.com>;tag=9')
    assert a.display == 'Ana "A" B' and a.tag == "9"
    b = parse_name_addr("sip:ana@example.com;tag=9")  # params belong to the header
    assert isinstance(b.uri, SipUri) and b.uri.params == {} and b.tag == "9"
    c = parse_name_addr("<tel:+16505551234>")
    assert isinstance(c.uri, TelUri)


@pytest.mark.parametrize(
    ("mutate", "answerable"),
    [
        (lambda r: r.replace(b"Max-Forwards: 70\r\n", b"Max-Forwards: seventy\r\n"), True),
        (lambda r: r.replace(b"CSeq: 1 MESSAGE", b"CSeq: 1 INVITE"), True),
        (lambda r: r.replace(b"Content-Length: 13", b"Content-Length: 99"), True),
        (lambda r: r.replace(b"SIP/2.0\r\n", b"SIP/3.0\r\n", 1), True),
        # RFC 4475 §3.3.1: a request missing headers still gets its 400 when it has a
        # Via to answer along (an unreadable one: to the source address)
        (lambda r: r.replace(b"To: <sip:+14155550100@sip.acme.example>\r\n", b""), True),
        (lambda r: r.replace(b"Call-ID: asd88asd77a@198.51.100.7\r\n", b""), True),
        (lambda r: r.replace(b"Via: SIP/2.0/UDP", b"Via: HTTP/1.1"), True),
        (
            lambda r: r.replace(
                b"Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK776asdhds\r\n", b""
            ),
            False,
        ),
        (lambda r: r.replace(b"MESSAGE sip", b"ACK sip", 1), False),
        (lambda r: b"\x00\xff garbage", False),
        (lambda r: b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", False),
    ],
)
def test_malformed_requests(mutate: Any, answerable: bool) -> None:
    with pytest.raises(SipParseError) as info:
        parse(mutate(MESSAGE))
    assert info.value.answerable is answerable


def test_content_length_trims_a_datagram_and_frames_a_stream() -> None:
    msg = parse(MESSAGE + b"trailing junk")
    assert msg.body == b"Hello, world!"
    buffer = bytearray(b"\r\n\r\n" + MESSAGE + MESSAGE[:40])
    one, used = frame(buffer, 65536)
    assert one is not None and parse(one, stream=True).body == b"Hello, world!"
    del buffer[:used]
    assert frame(buffer, 65536) == (None, 0)  # the second one is incomplete
    with pytest.raises(SipParseError):
        frame(bytearray(MESSAGE.replace(b"Content-Length: 13\r\n", b"")), 65536)
    # §7.3.1: any case, compact form, LWS before the colon, a folded value, any position
    for spelled in (b"content-length: 13", b"l:13", b"L  :  13", b"Content-Length:\r\n 13"):
        head, _, body = MESSAGE.partition(b"\r\n\r\n")
        first, rest = head.split(b"\r\n", 1)
        rest = rest.replace(b"Content-Length: 13", b"X-Moved: 1")
        moved = first + b"\r\n" + spelled + b"\r\n" + rest + b"\r\n\r\n" + body
        one, used = frame(bytearray(moved + b"OPTIONS"), 65536)
        assert one == moved and used == len(moved), spelled


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600))
def test_no_bytes_crash_the_parser(data: bytes) -> None:
    try:
        parse(data)
        parse(data, stream=True)
    except SipParseError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(MESSAGE.split(b"\r\n")), max_size=14), st.binary(max_size=30))
def test_no_shuffled_header_lines_crash_the_parser(lines: list[bytes], tail: bytes) -> None:
    try:
        msg = parse(b"\r\n".join(lines) + b"\r\n\r\n" + tail)
    except SipParseError:
        return
    if isinstance(msg, Request):
        make_response(msg, 400, to_tag="t").encode()


_BAD_VALUES = [
    b'"unclosed <sip:a@b>',
    b"< sip:a@b >",
    b"isbn:2983792873",
    b"Bell, Alexander <sip:a@b>",
    b"sip:a@b?x=1",
    b"SIP/7.0/UDP host",
    b"99999999999999999999 MESSAGE",
    b"",
    b";;,;,,",
    b"\x00",
]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([b"Via", b"From", b"To", b"Call-ID", b"CSeq", b"v", b"t", b"f"]),
            st.sampled_from(_BAD_VALUES),
        ),
        min_size=1,
        max_size=4,
    ),
    st.sampled_from([b"SIP/2.0", b"SIP/3.0", b"SIP/2.0 ", b"HTTP/1.1"]),
)
def test_every_answerable_error_is_answered_from_what_was_read(
    bad: list[tuple[bytes, bytes]], version: bytes
) -> None:
    """Item 1 of issue 17 as a property: whatever header is broken, building the answer
    never parses it again, so it never raises."""
    raw = MESSAGE.replace(b"SIP/2.0\r\n", version + b"\r\n", 1)
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n") + [name + b": " + value for name, value in bad]
    failure: SipParseError | None = None
    try:
        parse(b"\r\n".join(lines) + b"\r\n\r\n" + body)
    except SipParseError as caught:
        failure = caught
    if failure is None:
        return  # e.g. an empty extra Via line, which reads as no Via value at all
    if b"\x00" in b"".join(v for _, v in bad):
        return  # a bare NUL: not SIP, dropped
    # the request line and the first Via survive, so the answer can always be routed
    assert failure.answerable and failure.partial is not None, str(failure)
    assert failure.status == (505 if version == b"SIP/3.0" else 400)
    resp = stateless_response(failure.partial, failure.status)
    assert resp.encode().startswith(b"SIP/2.0 %d " % failure.status)
    assert resp.headers.get("Via") is not None


# -- digest -----------------------------------------------------------------------------


def test_digest_md5_matches_rfc_2617() -> None:
    c = parse_challenge(
        'Digest realm="testrealm@host.com", qop="auth,auth-int", '
        'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
    )
    value = authorization(
        c,
        method="GET",
        uri="/dir/index.html",
        username="Mufasa",
        password="Circle Of Life",
        cnonce="0a4f113b",
    )
    assert 'response="6629fae49393a05397450978507c4ef1"' in value
    assert "qop=auth" in value and "nc=00000001" in value and 'opaque="5ccc' in value


def test_digest_sha256_matches_rfc_7616() -> None:
    c = parse_challenge(
        'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=SHA-256, '
        'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", '
        'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
    )
    value = authorization(
        c,
        method="GET",
        uri="/dir/index.html",
        username="Mufasa",
        password="Circle of Life",
        cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
    )
    assert 'response="753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"' in value
    assert "algorithm=SHA-256" in value


def test_digest_refuses_what_it_cannot_answer() -> None:
    with pytest.raises(SipSyntaxError):
        parse_challenge('Basic realm="x"')
    c = parse_challenge('Digest realm="r", nonce="n", qop="auth-int"')
    with pytest.raises(SipSyntaxError):
        authorization(c, method="MESSAGE", uri="sip:x@y", username="u", password="p")
    c = parse_challenge('Digest realm="r", nonce="n", algorithm=SHA-512-256')
    with pytest.raises(SipSyntaxError):
        authorization(c, method="MESSAGE", uri="sip:x@y", username="u", password="p")


# -- the UAS core over loopback ---------------------------------------------------------


def sip_config(**over: Any) -> SipConfig:
    doc: dict[str, Any] = {
        "listen": "127.0.0.1:0",
        "domains": ["sip.acme.example", "127.0.0.1"],
        "numbers": ["+14155550100"],
        "trusted_peers": ["127.0.0.1"],
        "timers": {"t1": FAST.t1, "t2": FAST.t2, "t4": FAST.t4},
    }
    doc.update(over)
    return SipConfig.model_validate(doc)


class Stored:
    def __init__(self) -> None:
        self.calls: list[tuple[str, RawRequest, list[Message | CallEvent]]] = []
        self.fail = False
        self.delay = 0.0

    async def __call__(self, account: str, raw: RawRequest, events: list[Any]) -> None:
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail:
            raise StoreUnavailable("redis is down")
        self.calls.append((account, raw, events))


@contextlib.asynccontextmanager
async def listening(
    config: SipConfig, stored: Stored, transports: tuple[str, ...] = ("udp", "tcp")
) -> AsyncIterator[tuple[Listener, tuple[str, int]]]:
    service = SipService([SipReceiver("acme", config)], stored, timers=FAST)
    listener = await start_listener(service, "127.0.0.1:0", transports=transports)
    try:
        yield listener, listener.addresses()[transports[0]]
    finally:
        await listener.close()


class Peer(asyncio.DatagramProtocol):
    """A bare UDP peer that records every datagram it receives."""

    def __init__(self) -> None:
        self.got: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.got.put_nowait(data)


@contextlib.asynccontextmanager
async def peer(dest: tuple[str, int]) -> AsyncIterator[tuple[asyncio.DatagramTransport, Peer]]:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(Peer, remote_addr=dest)
    try:
        yield transport, proto
    finally:
        transport.close()


def request(
    method: str, port: int, *, text: str = "hi", sender: str = "tel:+16505551234", **kw: Any
) -> Request:
    return sample_request(
        method,
        text=text,
        sender=sender,
        target="sip:+14155550100@sip.acme.example",
        host="127.0.0.1",
        port=port,
        **kw,
    )


async def answer(proto: Peer) -> Response:
    msg = parse(await asyncio.wait_for(proto.got.get(), 2.0))
    assert isinstance(msg, Response)
    return msg


async def test_message_is_stored_before_200_and_retransmissions_are_absorbed() -> None:
    stored = Stored()
    stored.delay = 0.05
    async with listening(sip_config(), stored) as (_, dest), peer(dest) as (sock, proto):
        port = sock.get_extra_info("sockname")[1]
        req = request("MESSAGE", port, text="Ich möchte zurückgeben", branch="z9hG4bKone")
        data = req.encode()
        sock.sendto(data)
        sock.sendto(data)  # retransmitted while it is being stored: no answer yet
        first = await answer(proto)
        assert first.status == 200 and len(stored.calls) == 1
        sock.sendto(data)  # retransmitted after the answer: the same answer again
        again = await answer(proto)
        assert again.encode() == first.encode()
        assert proto.got.empty() and len(stored.calls) == 1
    account, raw, events = stored.calls[0]
    msg = events[0]
    assert isinstance(msg, Message)
    assert (account, msg.text, msg.thread) == ("acme", "Ich möchte zurückgeben", "+16505551234")
    assert msg.dedup_key == f"sip:{req.call_id}:1"
    strong = {(i.kind, i.value, i.strength) for i in msg.sender.identities}
    assert ("phone", "+16505551234", "strong") in strong  # asserted by a trusted peer
    assert raw.body == data and raw.headers["x-sip-transport"] == "UDP"
    assert msg.context["served"] == "+14155550100"
    assert msg.context["next_hop"] == f"127.0.0.1|{port}"


async def test_a_bare_from_is_weak_and_read_in_the_default_region() -> None:
    stored = Stored()
    config = sip_config(default_region="US")
    async with listening(config, stored) as (_, dest), peer(dest) as (sock, proto):
        port = sock.get_extra_info("sockname")[1]
        sock.sendto(request("MESSAGE", port, sender="sip:6505551234@carrier.example").encode())
        assert (await answer(proto)).status == 200
    msg = stored.calls[0][2][0]
    assert isinstance(msg, Message)
    assert {(i.kind, i.value, i.strength) for i in msg.sender.identities} == {
        ("phone", "+16505551234", "weak"),
        ("channel_user", "sip:6505551234@carrier.example", "weak"),
    }


@pytest.mark.parametrize(
    ("change", "status", "header"),
    [
        ({"Content-Type": "application/vnd.gsma.rcs-ft-http+xml"}, 415, "Accept"),
        ({"Content-Type": "text/plain;charset=x-unknown"}, 415, "Accept"),
        ({"Content-Encoding": "gzip"}, 415, "Accept-Encoding"),
        (
            {
                "To": "<sip:+14155550199@sip.acme.example>",
                "uri": "sip:+14155550199@sip.acme.example",
            },
            404,
            None,
        ),
        ({"uri": "sip:+14155550100@elsewhere.example"}, 404, None),
        ({"uri": "mailto:x@example.com"}, 416, None),
        ({"big": "x" * 9000}, 413, None),
    ],
)
async def test_messages_we_do_not_take(
    change: dict[str, str], status: int, header: str | None
) -> None:
    stored = Stored()
    async with listening(sip_config(), stored) as (_, dest), peer(dest) as (sock, proto):
        port = sock.get_extra_info("sockname")[1]
        req = request("MESSAGE", port, text=change.pop("big", "hi"))
        if "uri" in change:
            req.uri = change.pop("uri")
        for name, value in change.items():
            req.headers.set(name, value)
        sock.sendto(req.encode())
        resp = await answer(proto)
    assert resp.status == status
    if header:
        assert resp.headers.get(header)
    assert stored.calls == []


async def test_store_failure_answers_500_with_retry_after_then_a_retry_succeeds() -> None:
    stored = Stored()
    stored.fail = True
    async with listening(sip_config(), stored) as (_, dest), peer(dest) as (sock, proto):
        port = sock.get_extra_info("sockname")[1]
        sock.sendto(request("MESSAGE", port, call_id="c-1").encode())
        resp = await answer(proto)
        assert (resp.status, resp.headers.get("Retry-After")) == (500, "5")
        stored.fail = False
        sock.sendto(request("MESSAGE", port, call_id="c-1", cseq=2).encode())
        assert (await answer(proto)).status == 200
    assert len(stored.calls) == 1


async def test_options_register_bye_and_unknown_methods() -> None:
    stored = Stored()
    async with listening(sip_config(), stored) as (_, dest), peer(dest) as (sock, proto):
        port = sock.get_extra_info("sockname")[1]
        got = {}
        for method in ("OPTIONS", "REGISTER", "BYE", "SUBSCRIBE"):
            sock.sendto(request(method, port).encode().replace(b"INVITE", method.encode()))
            got[method] = await answer(proto)
    assert got["OPTIONS"].status == 200 and "MESSAGE" in (got["OPTIONS"].headers.get("Allow") or "")
    assert got["REGISTER"].status == 403
    assert got["BYE"].status == 481
    assert got["SUBSCRIBE"].status == 405 and got["SUBSCRIBE"].headers.get("Allow")
    for resp in got.values():
        to = resp.headers.get("To") or ""
        assert ";tag=" in to


async def test_malformed_requests_get_400_or_nothing_and_the_listener_survives() -> None:
    stored = Stored()
    async with listening(sip_config(), stored) as (_, dest), peer(dest) as (sock, proto):
        port = sock.get_extra_info("sockname")[1]
        bad = (
            request("MESSAGE", port)
            .encode()
            .replace(b"Max-Forwards: 70\r\n", b"Max-Forwards: x\r\n")
        )
        sock.sendto(bad)
        assert (await answer(proto)).status == 400
        sock.sendto(b"\x16\x03\x01 not sip at all")
        sock.sendto(request("OPTIONS", port).encode())
        assert (await answer(proto)).status == 200  # the garbage got nothing


async def test_untrusted_sources_get_403_then_silence() -> None:
    stored = Stored()
    config = sip_config(trusted_peers=["10.0.0.0/8"], refused_per_minute=3)
    async with listening(config, stored) as (_, dest), peer(dest) as (sock, proto):
        port = sock.get_extra_info("sockname")[1]
        for i in range(6):
            sock.sendto(request("MESSAGE", port, call_id=f"scan-{i}").encode())
        answers = [await answer(proto) for _ in range(3)]
        await asyncio.sleep(0.1)
        assert proto.got.empty()  # past the limit: ignored without an answer
    assert [a.status for a in answers] == [403, 403, 403]
    assert stored.calls == []


def test_refusal_limiter_refills() -> None:
    now = [0.0]
    limiter = RefusalLimiter(60, clock=lambda: now[0])
    assert sum(limiter.allow("203.0.113.9") for _ in range(100)) == 60
    now[0] += 2.0
    assert sum(limiter.allow("203.0.113.9") for _ in range(10)) == 2
    assert limiter.allow("203.0.113.10")


async def test_tcp_carries_several_messages_on_one_connection() -> None:
    stored = Stored()
    async with listening(sip_config(), stored, transports=("tcp",)) as (_, dest):
        reader, writer = await asyncio.open_connection(*dest)
        port = writer.get_extra_info("sockname")[1]
        one = request("MESSAGE", port, text="one", transport="TCP").encode()
        two = request("MESSAGE", port, text="two", transport="TCP").encode()
        writer.write(b"\r\n\r\n" + one + two[:30])  # a keepalive, then one and a half
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(two[30:])
        buffer = bytearray()
        statuses: list[int] = []
        while len(statuses) < 2:
            buffer += await asyncio.wait_for(reader.read(4096), 2)
            while (got := frame(buffer, 65536))[0] is not None:
                del buffer[: got[1]]
                resp = parse(got[0], stream=True)
                assert isinstance(resp, Response)
                statuses.append(resp.status)
        writer.close()
    assert statuses == [200, 200]
    assert [e[2][0].text for e in stored.calls] == ["one", "two"]  # type: ignore[union-attr]


def _length_first(raw: bytes, spelling: bytes) -> bytes:
    """``raw`` with its Content-Length moved right after the request line, respelled."""
    head, _, body = raw.partition(b"\r\n\r\n")
    first, *lines = head.split(b"\r\n")
    length = next(x for x in lines if x.startswith(b"Content-Length:"))
    rest = [x for x in lines if x is not length]
    moved = spelling + b" :" + length.partition(b":")[2]
    return b"\r\n".join([first, moved, *rest]) + b"\r\n\r\n" + body


async def _stream_answers(
    reader: asyncio.StreamReader, count: int, buffer: bytearray
) -> list[Response]:
    got: list[Response] = []
    while len(got) < count:
        data = await asyncio.wait_for(reader.read(4096), 2)
        if not data:
            break
        buffer += data
        while (one := frame(buffer, 65536))[0] is not None:
            del buffer[: one[1]]
            resp = parse(one[0] or b"", stream=True)
            assert isinstance(resp, Response)
            got.append(resp)
    return got


async def test_tcp_frames_content_length_in_any_position_and_spelling() -> None:
    """§18.3 / §7.3.1: the issue's bug was a Content-Length that is not the last line
    (the framer's "$" did not match before "\\r"): the connection closed silently."""
    stored = Stored()
    async with listening(sip_config(), stored, transports=("tcp",)) as (_, dest):
        reader, writer = await asyncio.open_connection(*dest)
        port = writer.get_extra_info("sockname")[1]
        one = request("MESSAGE", port, text="one", transport="TCP").encode()
        two = request("MESSAGE", port, text="two", transport="TCP").encode()
        three = request("OPTIONS", port, text="", transport="TCP").encode()
        writer.write(
            _length_first(one, b"content-LENGTH")
            + _length_first(two, b"l")
            + _length_first(three, b"L")
        )
        await writer.drain()
        answers = await _stream_answers(reader, 3, bytearray())
        # no Content-Length at all: told so, then the connection closes (§18.3)
        bare = request("OPTIONS", port, text="", transport="TCP").encode()
        writer.write(bare.replace(b"Content-Length: 0\r\n", b""))
        await writer.drain()
        refused = await _stream_answers(reader, 1, bytearray())
        assert await asyncio.wait_for(reader.read(), 2) == b""
        writer.close()
    assert [a.status for a in answers] == [200, 200, 200]
    assert [e[2][0].text for e in stored.calls] == ["one", "two"]  # type: ignore[union-attr]
    assert [a.status for a in refused] == [400]


def _as_sent(data: bytes) -> Response:
    """A response read without judging it: answers copy the bad header they refuse."""
    head = data.partition(b"\r\n\r\n")[0].decode()
    start, *lines = head.split("\r\n")
    _, status, reason = start.split(" ", 2)
    return Response(int(status), reason, Headers(x.partition(": ")[::2] for x in lines))


async def test_unreadable_requests_are_answered_from_what_was_read(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The issue's first bug: a 400 for a bad To re-parsed To and raised (no answer, an
    ERROR per datagram, the peer retransmitting for 32 s)."""
    stored = Stored()
    good = "<sip:+14155550100@sip.acme.example>"
    cases = [
        (f"To: {good}", 'To: "Mr. J. User <sip:+14155550100@sip.acme.example>', 400),
        (f"To: {good}", "To: sip:a@b?c", 400),
        ("SIP/2.0\r\n", "SIP/3.0\r\n", 505),
        ("Max-Forwards: 70", "Max-Forwards: 70\r\nRequire: 100rel, timer", 420),
        (f"To: {good}", "To: isbn:2983792873", 200),  # another scheme is a valid To
        ("Max-Forwards: 70\r\n", "", 200),  # RFC 4475 §3.4.1: no Max-Forwards is fine
        # a MESSAGE's Contact is never used, so a bad one does not cost the text
        ("Max-Forwards: 70", "Max-Forwards: 70\r\nContact: sip:x@y?z", 200),
    ]
    async with listening(sip_config(), stored) as (_, dest), peer(dest) as (sock, proto):
        port = sock.get_extra_info("sockname")[1]
        got = []
        for old, new, _ in cases:
            raw = request("MESSAGE", port).encode()
            assert old.encode() in raw
            sock.sendto(raw.replace(old.encode(), new.encode(), 1))
            got.append(_as_sent(await asyncio.wait_for(proto.got.get(), 2)))
    assert [r.status for r in got] == [status for _, _, status in cases]
    assert got[3].headers.get("Unsupported") == "100rel, timer"
    assert all(";tag=" in (r.headers.get("To") or "") for r in got)
    assert len(stored.calls) == 3
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]


async def test_invite_is_rejected_as_a_missed_call_and_the_final_answer_repeats_until_ack() -> None:
    stored = Stored()
    async with listening(sip_config(), stored) as (_, dest), peer(dest) as (sock, proto):
        port = sock.get_extra_info("sockname")[1]
        invite = request("INVITE", port, branch="z9hG4bKcall1")
        sock.sendto(invite.encode())
        assert (await answer(proto)).status == 100
        final = await answer(proto)
        assert final.status == 480
        again = await answer(proto)  # Timer G: sent again while no ACK comes
        assert again.encode() == final.encode()
        ack = Request("ACK", invite.uri, Headers())
        for name in ("Via", "From", "Call-ID", "Max-Forwards"):
            ack.headers.add(name, invite.headers.get(name) or "")
        ack.headers.add("To", final.headers.get("To") or "")
        ack.headers.add("CSeq", "1 ACK")
        sock.sendto(ack.encode())
        await asyncio.sleep(FAST.t2 * 3)
        while not proto.got.empty():  # at most one was in flight as the ACK went
            assert (await answer(proto)).status == 480
            await asyncio.sleep(FAST.t2 * 2)
        assert proto.got.empty()
    event = stored.calls[0][2][0]
    assert isinstance(event, CallEvent)
    assert (event.state, event.callback_requested, event.callee) == (
        "missed",
        True,
        "+14155550100",
    )


async def test_invite_redirected_with_302_to_the_call_centre() -> None:
    stored = Stored()
    calls = {"action": "redirect", "redirect_to": "sip:+14155550199@callcentre.example"}
    config = sip_config(calls=calls)
    async with listening(config, stored) as (_, dest), peer(dest) as (sock, proto):
        port = sock.get_extra_info("sockname")[1]
        sock.sendto(request("INVITE", port).encode())
        assert (await answer(proto)).status == 100
        final = await answer(proto)
    assert final.status == 302
    assert final.headers.get("Contact") == "<sip:+14155550199@callcentre.example>"
    event = stored.calls[0][2][0]
    assert isinstance(event, CallEvent) and event.state == "redirected"


async def test_cancel_while_ringing_gets_200_and_the_invite_487() -> None:
    stored = Stored()
    config = sip_config(calls={"action": "reject", "ring_seconds": 5})
    async with listening(config, stored) as (_, dest), peer(dest) as (sock, proto):
        port = sock.get_extra_info("sockname")[1]
        invite = request("INVITE", port, branch="z9hG4bKring")
        sock.sendto(invite.encode())
        assert [(await answer(proto)).status for _ in range(2)] == [100, 180]
        cancel = Request("CANCEL", invite.uri, Headers())
        for name in ("Via", "From", "To", "Call-ID", "Max-Forwards"):
            cancel.headers.add(name, invite.headers.get(name) or "")
        cancel.headers.add("CSeq", "1 CANCEL")
        sock.sendto(cancel.encode())
        got = {(r.status, r.cseq[1]) for r in [await answer(proto), await answer(proto)]}
        assert got == {(200, "CANCEL"), (487, "INVITE")}
        # a CANCEL for nothing we know (487 retransmissions may still arrive: no ACK)
        cancel.headers.set("Via", f"SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKnothing;rport")
        sock.sendto(cancel.encode())
        while (late := await answer(proto)).status == 487:
            pass
        assert late.status == 481
        for _ in range(20):
            if stored.calls:
                break
            await asyncio.sleep(0.02)
    event = stored.calls[0][2][0]
    assert isinstance(event, CallEvent) and event.hung_up and event.state == "missed"


def test_call_events_read_as_messages_on_the_ticket() -> None:
    base: dict[str, Any] = {
        "account": "acme",
        "channel": "sip",
        "dedup_key": "sip-call:c",
        "thread": "+16505551234",
        "occurred_at": datetime(2026, 11, 22, 14, 5, tzinfo=UTC),
        "call_id": "c",
        "sender": {"external_id": "+16505551234"},
        "callee": "+14155550100",
    }
    missed = call_message(
        CallEvent.model_validate({**base, "state": "missed", "callback_requested": True})
    )
    assert missed.text == (
        "Missed call from +1 650 555 1234 to +1 415 555 0100 at 14:05 UTC on 2026-11-22"
        " (callback requested)."
    )
    hung = call_message(
        CallEvent.model_validate({**base, "state": "missed", "hung_up": True, "duration": 7.2})
    )
    assert "the caller hung up after 7 s" in hung.text
    moved = call_message(
        CallEvent.model_validate(
            {**base, "state": "redirected", "redirected_to": "sip:queue@cc.example"}
        )
    )
    assert (
        moved.text.startswith("Call from +1 650 555 1234") and "sip:queue@cc.example" in moved.text
    )


# -- outbound ---------------------------------------------------------------------------


def test_utf8_split_never_cuts_a_character() -> None:
    text = "ü" * 700 + " " + "漢" * 500
    parts = split_text(text, 300, utf8=True)
    assert all(len(p.encode()) <= 300 for p in parts)
    assert "".join(parts).replace(" ", "") == text.replace(" ", "")


class FarEnd(asyncio.DatagramProtocol):
    """A UAS answering MESSAGE: first with ``first`` (and a challenge), then 200."""

    def __init__(self, first: int | None, challenge: str = "") -> None:
        self.first = first
        self.challenge = challenge
        self.requests: list[Request] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        req = parse(data)
        assert isinstance(req, Request)
        self.requests.append(req)
        status = self.first if self.first and len(self.requests) == 1 else 200
        extra = []
        if status in (401, 407):
            name = "WWW-Authenticate" if status == 401 else "Proxy-Authenticate"
            extra.append((name, self.challenge))
        if status == 503:
            extra.append(("Retry-After", "30"))
        resp = make_response(req, status, to_tag="far", extra=extra)
        assert self.transport is not None
        self.transport.sendto(resp.encode(), addr)


@contextlib.asynccontextmanager
async def far_end(first: int | None, challenge: str = "") -> AsyncIterator[tuple[FarEnd, int]]:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(
        lambda: FarEnd(first, challenge), local_addr=("127.0.0.1", 0)
    )
    try:
        yield proto, transport.get_extra_info("sockname")[1]
    finally:
        transport.close()


def reply(text: str, key: str = "r1") -> Any:
    from deskbridge.schemas import AgentReply

    return AgentReply(
        account="acme",
        desk="sandbox",
        dedup_key=key,
        ticket_id="1",
        external_id="c1",
        text=text,
        occurred_at=datetime(2026, 11, 22, tzinfo=UTC),
    )


def address(port: int) -> Any:
    from deskbridge.schemas import ChannelAddress

    return ChannelAddress(
        channel="sip",
        account="acme",
        thread="+16505551234",
        context={
            "reply_uri": "sip:+16505551234@carrier.example;user=phone",
            "served": "+14155550100",
            "next_hop": f"127.0.0.1|{port}",
            "transport": "udp",
        },
    )


class NoLinks:
    def url_for(self, account: str, attachment: Any, *, ttl: float | None = None) -> str:
        return "https://gw.example/media/x"

    def video_preview_url(self) -> str:
        return ""


async def test_outbound_answers_a_sha256_challenge_and_splits_long_texts() -> None:
    from deskbridge.adapters.sip import SipAdapter

    config = sip_config(username="acme", password="s3cret")
    challenge = 'Digest realm="carrier", nonce="abc", algorithm=SHA-256, qop="auth"'
    async with far_end(401, challenge) as (far, port):
        adapter = SipAdapter("acme", config, NoLinks())
        text = "Guten Tag! " * 300  # ~3.3 kB: several MESSAGEs over UDP
        receipt = await adapter.send(reply(text), address(port), [])
    sent = far.requests
    assert len(receipt.external_ids) >= 3
    assert sent[0].headers.get("Authorization") is None
    auth = sent[1].headers.get("Authorization") or ""
    assert "algorithm=SHA-256" in auth and 'username="acme"' in auth
    assert sent[1].call_id == sent[0].call_id and sent[1].cseq == (2, "MESSAGE")
    assert all(len(r.encode()) <= 1300 for r in sent)
    assert sent[1].uri == "sip:+16505551234@carrier.example;user=phone"
    assert (sent[1].headers.get("From") or "").startswith("<sip:+14155550100@sip.acme.example")
    assert b"".join(r.body for r in sent[1:]).decode().replace(" ", "") == text.replace(" ", "")


@pytest.mark.parametrize(
    ("status", "error", "retry_after"),
    [(503, "RetryableError", 30.0), (480, "RetryableError", None), (404, "PermanentError", None)],
)
async def test_outbound_failures_are_classified(
    status: int, error: str, retry_after: float | None
) -> None:
    from deskbridge.adapters.sip import SipAdapter

    async with far_end(status) as (_, port):
        adapter = SipAdapter("acme", sip_config(), NoLinks())
        with pytest.raises(DeliveryError) as info:
            await adapter.send(reply("hi"), address(port), [])
    assert type(info.value).__name__ == error
    assert getattr(info.value, "retry_after", None) == retry_after


async def test_outbound_timer_f_is_retryable() -> None:
    from deskbridge.adapters.sip import SipAdapter
    from deskbridge.errors import RetryableError

    loop = asyncio.get_running_loop()
    silent, _ = await loop.create_datagram_endpoint(
        asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
    )
    port = silent.get_extra_info("sockname")[1]
    try:
        adapter = SipAdapter("acme", sip_config(timers={"t1": 0.005, "t2": 0.04}), NoLinks())
        with pytest.raises(RetryableError, match="Timer F"):
            await adapter.send(reply("hi"), address(port), [])
    finally:
        silent.close()


async def test_the_same_reply_resends_the_same_call_id() -> None:
    from deskbridge.adapters.sip import SipAdapter

    async with far_end(None) as (far, port):
        adapter = SipAdapter("acme", sip_config(), NoLinks())
        a = await adapter.send(reply("hi", key="same"), address(port), [])
        b = await adapter.send(reply("hi", key="same"), address(port), [])
    assert a.external_ids == b.external_ids
    assert {r.call_id for r in far.requests} == set(a.external_ids)


async def test_client_over_tcp_gets_its_answer() -> None:
    stored = Stored()
    async with listening(sip_config(), stored, transports=("tcp",)) as (_, dest):

        def build(host: str, port: int, transport: str) -> Request:
            return request("MESSAGE", port, transport=transport)

        resp = await send_request(build, dest, transport="tcp", timers=FAST)
    assert resp.status == 200 and len(stored.calls) == 1


def test_config_refuses_what_cannot_work() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="not an IP address"):
        sip_config(trusted_peers=["carrier.example"])
    with pytest.raises(ValidationError, match=r"E\.164"):
        sip_config(numbers=["4155550100"])
    with pytest.raises(ValidationError, match="redirect_to"):
        sip_config(calls={"action": "redirect"})
    with pytest.raises(ValidationError, match="tls_cert_path"):
        sip_config(tls_listen="127.0.0.1:5061")
    with pytest.raises(ValidationError, match="username and password"):
        sip_config(username="only")


async def test_a_subject_header_is_the_tickets_subject() -> None:
    from deskbridge.outbound.render import subject

    stored = Stored()
    async with listening(sip_config(), stored) as (_, dest), peer(dest) as (sock, proto):
        port = sock.get_extra_info("sockname")[1]
        req = request("MESSAGE", port, text="Hi, it is about my bill")
        req.headers.add("s", "Billing question")  # the compact form of Subject
        sock.sendto(req.encode())
        assert (await answer(proto)).status == 200
        sock.sendto(request("MESSAGE", port, text="no subject here").encode())
        assert (await answer(proto)).status == 200
    with_subject, without = (call[2][0] for call in stored.calls)
    assert isinstance(with_subject, Message) and isinstance(without, Message)
    assert subject(with_subject) == "SIP: Billing question"  # was the first line
    assert subject(without) == "SIP: no subject here"
