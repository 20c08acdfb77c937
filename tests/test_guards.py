"""Guards that keep the shared helpers shared: the one capped download (every channel and
desk that reads a file goes through ``http.read_capped``), SIP's own Content-Length, the
one JSON body guard (``payload.load_object``), and a clean vulture run over ``src``."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import respx

import deskbridge
from deskbridge.adapters.base import MediaLinks
from deskbridge.adapters.line import parse as line_parse
from deskbridge.adapters.line.api import LineApi
from deskbridge.adapters.line.tokens import ChannelTokens
from deskbridge.adapters.messenger import parse as messenger_parse
from deskbridge.adapters.messenger.adapter import MessengerAdapter
from deskbridge.adapters.payload import MAX_DEPTH, MAX_ITEMS, load_object
from deskbridge.adapters.sip.message import SipParseError, frame
from deskbridge.adapters.sip.message import parse as sip_parse
from deskbridge.adapters.telegram import parse as telegram_parse
from deskbridge.adapters.telegram.send import BotApi
from deskbridge.adapters.whatsapp import parse as whatsapp_parse
from deskbridge.adapters.whatsapp.api import CloudApi
from deskbridge.config.accounts import MessengerConfig
from deskbridge.errors import PayloadInvalid, PermanentError
from deskbridge.http import read_capped
from deskbridge.outbound.common import download
from deskbridge.outbound.intercom import webhook as intercom_webhook
from deskbridge.outbound.udesk import replies as udesk_replies
from deskbridge.outbound.zendesk import webhook as zendesk_webhook
from deskbridge.schemas import Attachment, RawRequest

LIMIT = 50
SMALL = b"x" * 10
BIG = b"x" * 160

# Content-Length values a server (or a forged redirect target) may send that are not a
# plain decimal: each used to escape some of the copies as a ValueError.
SUPERSCRIPT = pytest.param("²", id="superscript")  # str.isdigit() says yes, int() says no
HUGE = pytest.param("9" * 5000, id="5000-digits")  # more digits than int() converts
GARBAGE = [
    SUPERSCRIPT,
    HUGE,
    pytest.param("١٢", id="arabic-indic"),  # int() reads these as 12
    pytest.param("abc", id="letters"),
    pytest.param("1e3", id="float"),
    pytest.param("-5", id="negative"),
    pytest.param("", id="empty"),
]
NONE = pytest.param(None, id="none")


def _header(value: str) -> list[tuple[bytes, bytes]]:
    return [(b"content-length", value.encode())]


async def _chunks(body: bytes) -> AsyncIterator[bytes]:
    for i in range(0, len(body), 16):
        yield body[i : i + 16]


def respond(body: bytes, content_length: str | None) -> httpx.Response:
    """``body`` streamed in chunks; ``content_length`` None sends no Content-Length."""
    headers = [] if content_length is None else _header(content_length)
    return httpx.Response(200, headers=headers, content=_chunks(body))


# --- read_capped ------------------------------------------------------------------------


async def _read(client: httpx.AsyncClient, response: httpx.Response, **kw: Any) -> bytes:
    with respx.mock() as router:
        router.get("https://files.test/f").mock(return_value=response)
        async with client.stream("GET", "https://files.test/f") as r:
            return await read_capped(r, LIMIT, what="test download", **kw)


@pytest.mark.parametrize("content_length", [NONE, str(len(SMALL)), *GARBAGE])
async def test_read_capped_returns_a_body_within_the_cap(
    client: httpx.AsyncClient, content_length: str | None
) -> None:
    assert await _read(client, respond(SMALL, content_length)) == SMALL


@pytest.mark.parametrize("content_length", [NONE, str(len(BIG)), "10", *GARBAGE])
async def test_read_capped_stops_past_the_cap_whatever_content_length_says(
    client: httpx.AsyncClient, content_length: str | None
) -> None:
    with pytest.raises(PermanentError, match=f"test download: over the {LIMIT}-byte limit"):
        await _read(client, respond(BIG, content_length))


async def test_read_capped_refuses_a_declared_oversize_before_reading(
    client: httpx.AsyncClient,
) -> None:
    read = []

    async def body() -> AsyncIterator[bytes]:
        read.append(True)
        yield SMALL

    response = httpx.Response(200, headers=_header(str(LIMIT + 1)), content=body())
    with pytest.raises(PermanentError, match="over the 50-byte limit"):
        await _read(client, response)
    assert read == []


async def test_read_capped_untrusted_refuses_web_pages(client: httpx.AsyncClient) -> None:
    page = httpx.Response(200, headers={"content-type": "text/html; charset=utf-8"}, text="<p>")
    with pytest.raises(PermanentError, match="refused content type text/html"):
        await _read(client, page, untrusted=True)


# --- every caller -----------------------------------------------------------------------


class _Tokens:
    async def get(self) -> str:
        return "line-token"

    async def rejected(self, token: str) -> bool:
        return False


Fetch = Callable[[httpx.AsyncClient], Awaitable[bytes]]


async def _telegram(client: httpx.AsyncClient) -> bytes:
    return await BotApi(client, "https://tg.test", "123:abc").download("f/1.oga", limit=LIMIT)


async def _whatsapp(client: httpx.AsyncClient) -> bytes:
    api = CloudApi(client, "https://graph.test", "1001", "wa-token")
    return await api.download("https://files.test/wa/1", limit=LIMIT)


async def _line(client: httpx.AsyncClient) -> bytes:
    api = LineApi(
        "acme",
        client,
        cast(ChannelTokens, _Tokens()),
        base="https://line.test",
        data_base="https://files.test",
    )
    data, _ = await api.download("/line/1", what="line content download", limit=LIMIT)
    return data


async def _messenger(client: httpx.AsyncClient) -> bytes:
    config = MessengerConfig.model_validate(
        {"app": "meta", "page_id": "1", "page_access_token": "t", "max_media_bytes": LIMIT}
    )
    adapter = MessengerAdapter("acme", config, client, cast(MediaLinks, None))
    upload = await adapter.fetch(Attachment(kind="image", ref="https://files.test/fb/1.jpg"))
    return upload.data


async def _desk(client: httpx.AsyncClient) -> bytes:
    attachment = Attachment(kind="document", ref="https://files.test/desk/1")
    upload = await download(
        client, attachment, trusted="https://files.test", limit=LIMIT, what="desk download"
    )
    return upload.data


CALLERS: dict[str, tuple[Fetch, str]] = {
    "telegram": (_telegram, "https://tg.test/file/bot123:abc/f/1.oga"),
    "whatsapp": (_whatsapp, "https://files.test/wa/1"),
    "line": (_line, "https://files.test/line/1"),
    "messenger": (_messenger, "https://files.test/fb/1.jpg"),
    "desk": (_desk, "https://files.test/desk/1"),
}


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("content_length", [NONE, SUPERSCRIPT, HUGE, "abc"])
async def test_every_download_reads_a_small_file_whatever_content_length_says(
    client: httpx.AsyncClient, api: respx.MockRouter, caller: str, content_length: str | None
) -> None:
    fetch, url = CALLERS[caller]
    api.get(url).mock(side_effect=lambda request: respond(SMALL, content_length))
    assert await fetch(client) == SMALL


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("content_length", [NONE, str(len(BIG)), "10", SUPERSCRIPT, HUGE])
async def test_every_download_is_capped_with_a_permanent_error(
    client: httpx.AsyncClient, api: respx.MockRouter, caller: str, content_length: str | None
) -> None:
    fetch, url = CALLERS[caller]
    api.get(url).mock(side_effect=lambda request: respond(BIG, content_length))
    with pytest.raises(PermanentError, match=f"over the {LIMIT}-byte limit"):
        await fetch(client)


def test_the_capped_download_is_written_once() -> None:
    """Only ``http.read_capped`` streams a response body; every download calls it."""
    src = Path(deskbridge.__file__).parent
    loops = [
        str(path.relative_to(src))
        for path in src.rglob("*.py")
        if path.name != "http.py" and re.search(r"\.aiter_(bytes|raw)\(", path.read_text())
    ]
    assert loops == []


# --- SIP's Content-Length ---------------------------------------------------------------

SIP_OPTIONS = (
    "OPTIONS sip:desk@sip.acme.example SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 198.51.100.7;branch=z9hG4bK1\r\n"
    "From: <sip:ana@example.com>;tag=1\r\n"
    "To: <sip:desk@sip.acme.example>\r\n"
    "Call-ID: c1\r\n"
    "CSeq: 1 OPTIONS\r\n"
    "Max-Forwards: 70\r\n"
    "Content-Length: {}\r\n\r\n"
)


@pytest.mark.parametrize("content_length", [SUPERSCRIPT, HUGE, "abc", "-1"])
def test_sip_refuses_a_garbled_content_length_as_a_parse_error(content_length: str) -> None:
    with pytest.raises(SipParseError, match="bad Content-Length") as info:
        sip_parse(SIP_OPTIONS.format(content_length).encode())
    assert info.value.answerable


def test_sip_stream_framing_refuses_a_huge_content_length() -> None:
    with pytest.raises(SipParseError, match="message too large"):
        frame(bytearray(SIP_OPTIONS.format("9" * 5000).encode()), 65536)


# --- the JSON body guard ----------------------------------------------------------------


def _req(body: bytes) -> RawRequest:
    return RawRequest(method="POST", path="/", body=body)


# Every parser of an untrusted JSON body, with the name its errors carry.
PARSERS: dict[str, tuple[Callable[[bytes], object], str]] = {
    "telegram": (lambda b: telegram_parse.parse(b, account="acme"), "telegram"),
    "whatsapp": (lambda b: whatsapp_parse.parse(b, {}), "whatsapp"),
    "line": (lambda b: line_parse.parse(b, account="acme"), "line"),
    "messenger": (lambda b: messenger_parse.parse(b, routes={}), "messenger"),
    "intercom": (lambda b: intercom_webhook.parse(_req(b), account="acme"), "intercom"),
    "zendesk": (lambda b: zendesk_webhook.parse(_req(b), account="acme", now=0.0), "zendesk"),
    "udesk": (lambda b: udesk_replies.parse_callback(_req(b), account="acme"), "udesk callback"),
}

NOT_JSON = {
    "garbage": b"<xml/>",
    "nan": b'{"a": NaN}',
    "deep": b'{"a":' * (MAX_DEPTH + 1) + b"1" + b"}" * (MAX_DEPTH + 1),
    "deep-fallback": b'["\\ud800",' + b"[" * 5000 + b"]" * 5001,
    "many": b'{"a":[' + b",".join([b"1"] * (MAX_ITEMS + 1)) + b"]}",
}


@pytest.mark.parametrize("parser", PARSERS)
@pytest.mark.parametrize("body", NOT_JSON)
def test_every_parser_refuses_bodies_past_the_guard(parser: str, body: str) -> None:
    parse, what = PARSERS[parser]
    with pytest.raises(PayloadInvalid, match=f"^{what}: body is not JSON$"):
        parse(NOT_JSON[body])


@pytest.mark.parametrize("parser", PARSERS)
@pytest.mark.parametrize("body", [b"[]", b'"text"', b"1", b"null"])
def test_every_parser_refuses_json_that_is_not_an_object(parser: str, body: bytes) -> None:
    parse, what = PARSERS[parser]
    with pytest.raises(PayloadInvalid, match=f"^{what}: body is not a JSON object$"):
        parse(body)


def test_load_object_returns_the_object() -> None:
    assert load_object(b'{"a": [1, {"b": null}]}', what="x") == {"a": [1, {"b": None}]}
    assert load_object('{"a": "\\ud800"}', what="x") == {"a": "\ud800"}


def test_the_json_guard_is_written_once() -> None:
    """Parsers call ``load_object``; none wraps the parser and its errors itself again."""
    src = Path(deskbridge.__file__).parent
    copy = re.compile(r"PayloadInvalid\(f?\"[^\"]*not a JSON object")
    copies = [
        str(path.relative_to(src))
        for path in src.rglob("*.py")
        if path.name != "payload.py" and copy.search(path.read_text())
    ]
    assert copies == []


# --- dead code --------------------------------------------------------------------------


def test_vulture_finds_no_dead_code() -> None:
    """Every name vulture cannot see used is either removed or in the whitelist with the
    reason it is used (a framework hook, a pydantic validator, a click command, ...)."""
    root = Path(__file__).parents[1]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "vulture",
            str(root / "src"),
            str(root / "tests" / "vulture_whitelist.py"),
            "--min-confidence",
            "60",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
