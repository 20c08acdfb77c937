"""The process client's transport (http_transport.AiohttpTransport) against a real local
HTTP server: the same requests on the wire, the same responses and the same httpx errors
as httpx's own transport, so every connector's classification holds unchanged."""

from __future__ import annotations

import asyncio
import gzip
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiohttp import web

from deskbridge.http import make_client, process_client, read_capped, transport_error
from deskbridge.http_transport import AiohttpTransport, proxies_in_env

from .conftest import self_signed_cert

BIG = bytes(range(256)) * 800  # 200 KB


async def _serve(app: web.Application, ssl_context: Any = None) -> tuple[web.AppRunner, int]:
    """``app`` on a free loopback port: its runner (clean it up) and the port."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]


class _Server:
    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.peers: set[int] = set()
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def _record(self, request: web.Request) -> None:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        if peer:
            self.peers.add(peer[1])
        self.seen.append(
            {
                "method": request.method,
                "path": request.path_qs,
                "headers": list(request.raw_headers),
                "body": await request.read(),
            }
        )

    async def echo(self, request: web.Request) -> web.Response:
        await self._record(request)
        return web.json_response({"ok": True}, status=201, headers={"X-Seen": "yes"})

    async def gzipped(self, request: web.Request) -> web.Response:
        await self._record(request)
        body = gzip.compress(b'{"zipped": true}')
        return web.Response(
            body=body, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"}
        )

    async def big(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        await resp.prepare(request)
        for i in range(0, len(BIG), 10_000):
            await resp.write(BIG[i : i + 10_000])
        await resp.write_eof()
        return resp

    async def slow(self, request: web.Request) -> web.Response:
        await self._record(request)
        await asyncio.sleep(1)  # past the client's 0.3 s
        return web.json_response({})

    async def redirect(self, request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": "https://elsewhere.invalid/"})

    async def drop(self, request: web.Request) -> web.Response:
        await self._record(request)
        assert request.transport is not None
        request.transport.abort()  # the request arrived; no answer ever comes
        await asyncio.sleep(0.1)
        return web.Response()

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/echo", self.echo)
        app.router.add_get("/gzip", self.gzipped)
        app.router.add_get("/big", self.big)
        app.router.add_post("/slow", self.slow)
        app.router.add_get("/redirect", self.redirect)
        app.router.add_post("/drop", self.drop)
        self.runner, port = await _serve(app)
        self.url = f"http://127.0.0.1:{port}"


@pytest.fixture
async def server() -> AsyncIterator[_Server]:
    s = _Server()
    await s.start()
    yield s
    assert s.runner is not None
    await s.runner.cleanup()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(timeout=2.0, transport=AiohttpTransport()) as c:
        yield c


def _header(seen: dict[str, Any], name: str) -> list[bytes]:
    return [v for k, v in seen["headers"] if k.lower() == name.lower().encode()]


async def test_a_post_goes_out_as_httpx_built_it_and_its_answer_comes_back(
    server: _Server, client: httpx.AsyncClient
) -> None:
    resp = await client.post(
        server.url + "/echo?x=1", json={"text": "héllo"}, auth=("bot@acme.test/token", "t")
    )
    assert resp.status_code == 201
    assert resp.json() == {"ok": True}
    assert resp.headers["x-seen"] == "yes"
    assert resp.reason_phrase == "Created"
    [seen] = server.seen
    assert seen["method"] == "POST" and seen["path"] == "/echo?x=1"
    assert seen["body"] == resp.request.content == '{"text":"héllo"}'.encode()
    # each header once, as httpx wrote it: nothing added or doubled by aiohttp
    for name in ("Host", "User-Agent", "Content-Type", "Content-Length", "Authorization"):
        assert len(_header(seen, name)) == 1, name
    assert _header(seen, "User-Agent")[0].startswith(b"deskbridge/")
    assert _header(seen, "Content-Type") == [b"application/json"]
    assert _header(seen, "Authorization")[0].startswith(b"Basic ")


async def test_connections_are_kept_alive_between_requests(
    server: _Server, client: httpx.AsyncClient
) -> None:
    for _ in range(5):
        assert (await client.post(server.url + "/echo", content=b"x")).status_code == 201
    assert len(server.peers) == 1


async def test_a_compressed_answer_is_decoded_once(
    server: _Server, client: httpx.AsyncClient
) -> None:
    resp = await client.get(server.url + "/gzip")
    assert resp.json() == {"zipped": True}
    assert resp.headers["content-encoding"] == "gzip"


async def test_a_download_streams_and_the_cap_holds(
    server: _Server, client: httpx.AsyncClient
) -> None:
    async with client.stream("GET", server.url + "/big") as resp:
        assert await read_capped(resp, len(BIG), what="file") == BIG
    async with client.stream("GET", server.url + "/big") as resp:
        with pytest.raises(Exception, match="limit"):
            await read_capped(resp, 50_000, what="file")


async def test_redirects_are_answers_not_followed(
    server: _Server, client: httpx.AsyncClient
) -> None:
    resp = await client.get(server.url + "/redirect")
    assert resp.status_code == 302
    assert resp.headers["location"] == "https://elsewhere.invalid/"


async def test_a_refused_connection_is_a_request_that_never_left(
    client: httpx.AsyncClient,
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens on it
    with pytest.raises(httpx.ConnectError) as info:
        await client.post(f"http://127.0.0.1:{port}/echo", content=b"x")
    assert transport_error(info.value, what="desk").outcome == "not_applied"


async def test_no_answer_in_time_is_a_read_timeout_that_may_have_been_applied(
    server: _Server,
) -> None:
    async with make_client(timeout=0.3, transport=AiohttpTransport()) as c:
        with pytest.raises(httpx.ReadTimeout) as info:
            await c.post(server.url + "/slow", content=b"x")
    assert len(server.seen) == 1  # it did arrive
    assert transport_error(info.value, what="desk").outcome == "unknown"


async def test_a_dropped_connection_after_the_request_is_an_unknown_outcome(
    server: _Server, client: httpx.AsyncClient
) -> None:
    with pytest.raises(httpx.RemoteProtocolError) as info:
        await client.post(server.url + "/drop", content=b"x")
    assert len(server.seen) == 1
    assert transport_error(info.value, what="desk").outcome == "unknown"


async def test_only_http_and_https_are_sent(client: httpx.AsyncClient) -> None:
    with pytest.raises(httpx.UnsupportedProtocol):
        await client.get("ftp://127.0.0.1/file")


def test_a_proxy_in_the_environment_keeps_httpx_s_own_transport() -> None:
    assert proxies_in_env({"HTTPS_PROXY": "http://proxy:3128"})
    assert proxies_in_env({"all_proxy": "socks5://proxy:1080"})
    assert not proxies_in_env({"NO_PROXY": "localhost", "HTTPS_PROXY": ""})
    assert not proxies_in_env({"PATH": "/usr/bin"})


async def test_the_process_client_uses_aiohttp_unless_a_proxy_is_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    async with process_client() as c:
        assert isinstance(c._transport, AiohttpTransport)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    async with process_client() as c:
        assert isinstance(c._transport, httpx.AsyncHTTPTransport)


async def test_the_process_client_keeps_no_cookies(server: _Server) -> None:
    """A cookie a platform sets is neither kept nor sent back: one client serves every
    account, and every platform API authenticates each call by itself."""
    app_cookie = web.Application()

    async def set_cookie(request: web.Request) -> web.Response:
        server.seen.append({"headers": list(request.raw_headers)})
        resp = web.json_response({})
        resp.set_cookie("session", "account-a", path="/")
        return resp

    app_cookie.router.add_get("/c", set_cookie)
    runner, port = await _serve(app_cookie)
    try:
        async with process_client(timeout=2.0) as c:
            first = await c.get(f"http://127.0.0.1:{port}/c")
            assert first.cookies.get("session") == "account-a"  # the answer shows it
            await c.get(f"http://127.0.0.1:{port}/c")
            assert len(c.cookies) == 0
    finally:
        await runner.cleanup()
    assert [_header(s, "Cookie") for s in server.seen] == [[], []]


async def test_tls_is_verified_as_httpx_verifies_it(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An untrusted certificate fails before anything is sent (not applied); the same
    server, trusted through ``SSL_CERT_FILE`` as httpx reads it, answers."""
    import ssl

    cert, key = self_signed_cert(tmp_path, "deskbridge test desk", ip="127.0.0.1")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    app = web.Application()

    async def hello(request: web.Request) -> web.Response:
        return web.json_response({"tls": True})

    app.router.add_get("/hello", hello)
    runner, port = await _serve(app, context)
    url = f"https://127.0.0.1:{port}/hello"
    try:
        monkeypatch.delenv("SSL_CERT_DIR", raising=False)
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
        async with make_client(timeout=2.0, transport=AiohttpTransport()) as c:
            with pytest.raises(httpx.ConnectError) as info:
                await c.get(url)
        assert "certificate" in str(info.value).lower()
        assert transport_error(info.value, what="desk").outcome == "not_applied"
        monkeypatch.setenv("SSL_CERT_FILE", cert)
        async with make_client(timeout=2.0, transport=AiohttpTransport()) as c:
            assert (await c.get(url)).json() == {"tls": True}
    finally:
        await runner.cleanup()


async def test_the_quick_path_sends_what_httpx_s_path_sends(
    server: _Server, client: httpx.AsyncClient
) -> None:
    """A plain call skips httpx's request machinery (ProcessClient.request), and the
    peer cannot tell: the same method, path, query, body and headers as the same call
    through httpx's path (forced here by an ``extensions`` argument)."""
    call: dict[str, Any] = {
        "params": {"q": "a b&c", "n": "1"},
        "json": {"ticket": {"comment": {"body": "héllo ✓", "public": True}}},
        "headers": {"Authorization": "Basic abc", "user-agent": "custom/1", b"X-Raw": b"raw"},
    }
    quick = await client.post(server.url + "/echo", **call)
    slow = await client.post(server.url + "/echo", **call, extensions={})
    assert isinstance(client._transport, AiohttpTransport)
    assert type(quick) is not type(slow)  # the first took the quick path
    assert quick.status_code == slow.status_code == 201
    assert quick.json() == slow.json() == {"ok": True}
    assert quick.headers["x-seen"] == "yes" and quick.reason_phrase == "Created"
    a, b = server.seen
    assert (a["method"], a["path"], a["body"]) == (b["method"], b["path"], b["body"])
    assert a["body"] == '{"ticket":{"comment":{"body":"héllo ✓","public":true}}}'.encode()

    def normal(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        return sorted((k.lower(), v) for k, v in headers)

    assert normal(a["headers"]) == normal(b["headers"])
    assert _header(a, "User-Agent") == [b"custom/1"]  # the call's header replaced the client's
    assert _header(a, "X-Raw") == [b"raw"]  # given as bytes, as httpx takes them
    # the request is there when something asks (built from what was sent)
    assert quick.request.method == "POST"
    assert quick.url == slow.url


async def test_the_quick_path_keeps_httpx_s_status_errors_and_decoding(
    server: _Server, client: httpx.AsyncClient
) -> None:
    missing = await client.get(server.url + "/nowhere")
    assert missing.status_code == 404
    with pytest.raises(httpx.HTTPStatusError) as info:
        missing.raise_for_status()
    assert str(info.value.request.url) == server.url + "/nowhere"
    zipped = await client.get(server.url + "/gzip")
    assert zipped.json() == {"zipped": True}  # decoded once, by Content-Encoding


async def test_event_hooks_and_other_options_take_httpx_s_path(server: _Server) -> None:
    seen: list[str] = []

    async def hook(request: httpx.Request) -> None:
        seen.append(request.method)

    async with make_client(timeout=2.0, transport=AiohttpTransport()) as c:
        c.event_hooks["request"] = [hook]
        resp = await c.post(server.url + "/echo", json={})
        assert resp.status_code == 201 and seen == ["POST"]
        c.event_hooks["request"] = []
        form = await c.post(server.url + "/echo", data={"a": "1"})
        assert form.status_code == 201
    assert server.seen[-1]["body"] == b"a=1"
