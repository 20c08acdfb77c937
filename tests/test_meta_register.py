"""``deskbridge channels register`` for the Meta channels: the app's webhook (Messenger's
set through ``/<app-id>/subscriptions``, Instagram's and WhatsApp's only read) and each
account's subscription to the app (``/<id>/subscribed_apps``)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
import respx
from rich.console import Console

from deskbridge.cli import register as register_module
from deskbridge.config import Settings, parse_accounts

APP_ID = "555000000000001"
SECRET = "meta-app-secret-for-register"
VERIFY = "meta-verify-token-for-register"
PAGE = "300000000000001"
IG = "17841400000000001"
WABA = "400000000000001"
GRAPH = "https://graph.test/v23.0"
IG_GRAPH = "https://graph.instagram.test/v23.0"
BRIDGE = "https://bridge.example.com"
PAGE_FIELDS = [
    "messages",
    "messaging_postbacks",
    "message_deliveries",
    "message_reads",
    "message_edits",
]
IG_FIELDS = [
    "messages",
    "message_reactions",
    "messaging_seen",
    "messaging_postbacks",
    "message_edit",
]


def accounts_yaml(*, app_id: str | None = APP_ID, channels: str = "", more: str = "") -> str:
    app_line = f'app_id: "{app_id}"' if app_id else ""
    return f"""
apps:
  meta:
    type: meta
    {app_line}
    app_secret: "{SECRET}"
    verify_token: "{VERIFY}"
accounts:
  acme:
    desk: {{type: sandbox}}
    channels:
{channels}
{more}
"""


MESSENGER = f"""      - type: messenger
        app: meta
        page_id: "{PAGE}"
        page_access_token: page-access-token
        base_url: https://graph.test
"""

INSTAGRAM = f"""      - type: instagram
        app: meta
        ig_id: "{IG}"
        access_token: ig-access-token
        base_url: https://graph.instagram.test
"""

WHATSAPP = f"""      - type: whatsapp
        app: meta
        phone_number_id: "200000000000002"
        access_token: wa-access-token
        base_url: https://graph.test
        waba_id: "{WABA}"
"""


@pytest.fixture
def said(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    """What the command prints, unwrapped."""
    text = io.StringIO()
    console = Console(file=text, width=1000, highlight=False, color_system=None)
    monkeypatch.setattr(register_module, "out", console)
    return text


async def run(tmp_path: Path, yaml_text: str) -> bool:
    cfg = tmp_path / "accounts.yaml"
    cfg.write_text(yaml_text)
    return await register_module.register(Settings(), cfg, BRIDGE + "/", None, tmp_path / "secrets")


def form(call: respx.models.Call) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(call.request.content.decode()).items()}


def app_subscriptions(entries: list[dict[str, object]]) -> httpx.Response:
    return httpx.Response(200, json={"data": entries})


async def test_messenger_sets_the_app_webhook_and_subscribes_the_page(
    tmp_path: Path, said: io.StringIO
) -> None:
    with respx.mock(assert_all_called=True) as api:
        read_app = api.get(f"{GRAPH}/{APP_ID}/subscriptions").mock(
            return_value=app_subscriptions([])
        )
        set_app = api.post(f"{GRAPH}/{APP_ID}/subscriptions").respond(200, json={"success": True})
        read_page = api.get(f"{GRAPH}/{PAGE}/subscribed_apps").respond(
            200, json={"data": [{"id": "999", "name": "another app", "subscribed_fields": []}]}
        )
        set_page = api.post(f"{GRAPH}/{PAGE}/subscribed_apps").respond(200, json={"success": True})
        assert await run(tmp_path, accounts_yaml(channels=MESSENGER))

    app_token = f"Bearer {APP_ID}|{SECRET}"
    assert read_app.calls[0].request.headers["Authorization"] == app_token
    assert set_app.calls[0].request.headers["Authorization"] == app_token
    assert form(set_app.calls[0]) == {
        "object": "page",
        "callback_url": f"{BRIDGE}/webhooks/messenger",
        "verify_token": VERIFY,
        "fields": ",".join(PAGE_FIELDS),
    }
    for call in (read_page.calls[0], set_page.calls[0]):
        assert call.request.headers["Authorization"] == "Bearer page-access-token"
        assert "access_token" not in str(call.request.url)  # tokens never in URLs
    assert form(set_page.calls[0]) == {"subscribed_fields": ",".join(sorted(PAGE_FIELDS))}
    out = said.getvalue()
    assert f"acme/messenger: the app's Messenger webhook set to {BRIDGE}/webhooks/messenger" in out
    assert "acme/messenger: the Page subscribed to the app (messages, " in out
    assert SECRET not in out and "page-access-token" not in out


async def test_messenger_already_set_changes_nothing(tmp_path: Path, said: io.StringIO) -> None:
    fields = [{"name": f, "version": "v23.0"} for f in PAGE_FIELDS]
    current = {
        "object": "page",
        "callback_url": f"{BRIDGE}/webhooks/messenger",
        "active": True,
        "fields": fields,
    }
    with respx.mock(assert_all_called=True) as api:
        api.get(f"{GRAPH}/{APP_ID}/subscriptions").mock(return_value=app_subscriptions([current]))
        api.get(f"{GRAPH}/{PAGE}/subscribed_apps").respond(
            200, json={"data": [{"id": APP_ID, "subscribed_fields": [*PAGE_FIELDS, "feed"]}]}
        )
        assert await run(tmp_path, accounts_yaml(channels=MESSENGER))
        assert all(call.request.method == "GET" for call in api.calls)
    out = said.getvalue()
    assert "the app's Messenger webhook already posts messages, messaging_postbacks" in out
    assert "acme/messenger: the Page is already subscribed to the app" in out


async def test_another_callback_is_replaced_and_page_fields_are_kept(
    tmp_path: Path, said: io.StringIO
) -> None:
    elsewhere = {
        "object": "page",
        "callback_url": "https://old.example.com/hook",
        "active": True,
        "fields": [{"name": "messages", "version": "v23.0"}],
    }
    with respx.mock(assert_all_called=True) as api:
        api.get(f"{GRAPH}/{APP_ID}/subscriptions").mock(return_value=app_subscriptions([elsewhere]))
        set_app = api.post(f"{GRAPH}/{APP_ID}/subscriptions").respond(200, json={"success": "true"})
        api.get(f"{GRAPH}/{PAGE}/subscribed_apps").respond(
            200, json={"data": [{"id": APP_ID, "subscribed_fields": ["feed", "messages"]}]}
        )
        set_page = api.post(f"{GRAPH}/{PAGE}/subscribed_apps").respond(200, json={"success": True})
        assert await run(tmp_path, accounts_yaml(channels=MESSENGER))
    assert form(set_app.calls[0])["callback_url"] == f"{BRIDGE}/webhooks/messenger"
    # a POST to subscribed_apps sets the list: the Page's own fields stay in it
    assert form(set_page.calls[0])["subscribed_fields"] == ",".join(sorted([*PAGE_FIELDS, "feed"]))


async def test_a_missing_app_id_is_a_clear_error_before_any_call(
    tmp_path: Path, said: io.StringIO
) -> None:
    with respx.mock(assert_all_called=False) as api:
        assert not await run(tmp_path, accounts_yaml(app_id=None, channels=MESSENGER))
        assert not api.calls
    out = said.getvalue()
    assert "acme/messenger: failed: apps.meta has no app_id (App settings → Basic)" in out


@pytest.mark.parametrize(
    ("status", "error", "reason"),
    [
        (
            403,
            {"code": 200, "message": "(#200) Requires pages_manage_metadata permission"},
            "the token lacks a permission this needs (Graph error 200: (#200) Requires"
            " pages_manage_metadata permission)",
        ),
        (
            400,
            {"code": 190, "message": "Error validating access token: page-access-token"},
            "the token is invalid or has expired (Graph error 190)",
        ),
    ],
)
async def test_a_refused_token_is_one_line_without_the_token(
    tmp_path: Path, said: io.StringIO, status: int, error: dict[str, object], reason: str
) -> None:
    with respx.mock(assert_all_called=True) as api:
        api.get(f"{GRAPH}/{APP_ID}/subscriptions").mock(return_value=app_subscriptions([]))
        api.post(f"{GRAPH}/{APP_ID}/subscriptions").respond(200, json={"success": True})
        api.get(f"{GRAPH}/{PAGE}/subscribed_apps").respond(status, json={"error": error})
        assert not await run(tmp_path, accounts_yaml(channels=MESSENGER))
    out = said.getvalue()
    failed = [line for line in out.splitlines() if "failed" in line]
    assert failed == [
        f"acme/messenger: failed: reading the Page's subscription to the app: {reason}"
    ]
    assert "page-access-token" not in out


async def test_the_callback_meta_cannot_verify_is_named(tmp_path: Path, said: io.StringIO) -> None:
    with respx.mock(assert_all_called=False) as api:
        api.get(f"{GRAPH}/{APP_ID}/subscriptions").mock(return_value=app_subscriptions([]))
        api.post(f"{GRAPH}/{APP_ID}/subscriptions").respond(
            400,
            json={"error": {"code": 2200, "message": "(#2200) Callback verification failed"}},
        )
        page = api.get(f"{GRAPH}/{PAGE}/subscribed_apps")
        assert not await run(tmp_path, accounts_yaml(channels=MESSENGER))
        assert not page.called  # the account step waits for the app's webhook
    assert (
        "failed: setting the app's Messenger webhook: Meta could not verify the callback URL"
        " (Graph error 2200): the gateway must be reachable there" in said.getvalue()
    )


@pytest.mark.parametrize(
    ("response", "hint"),
    [
        (
            httpx.Response(429, headers={"Retry-After": "120"}, json={}),
            "Meta's rate limit (HTTP 429); run it again later (the platform asks to wait 120 s)",
        ),
        (
            httpx.Response(
                400, json={"error": {"code": 4, "message": "Application request limit"}}
            ),
            "Meta's rate limit (Graph error 4); run it again later",
        ),
        (
            httpx.Response(503, text="upstream down"),
            "Meta is unavailable (HTTP 503); run it again later",
        ),
    ],
)
async def test_throttles_and_outages_say_to_run_it_again(
    tmp_path: Path, said: io.StringIO, response: httpx.Response, hint: str
) -> None:
    with respx.mock(assert_all_called=True) as api:
        api.get(f"{GRAPH}/{APP_ID}/subscriptions").mock(return_value=response)
        assert not await run(tmp_path, accounts_yaml(channels=MESSENGER))
    assert f"acme/messenger: failed: reading the app's Messenger webhook: {hint}" in (
        said.getvalue()
    )


async def test_instagram_login_reads_the_app_webhook_and_subscribes_the_account(
    tmp_path: Path, said: io.StringIO
) -> None:
    # the app's edges are on graph.facebook.com, the account's on graph.instagram.com
    with respx.mock(assert_all_called=True) as api:
        api.get(f"https://graph.facebook.com/v23.0/{APP_ID}/subscriptions").mock(
            return_value=app_subscriptions([])
        )
        api.get(f"{IG_GRAPH}/{IG}/subscribed_apps").respond(200, json={"data": []})
        set_ig = api.post(f"{IG_GRAPH}/{IG}/subscribed_apps").respond(200, json={"success": True})
        assert await run(tmp_path, accounts_yaml(channels=INSTAGRAM))
    assert set_ig.calls[0].request.headers["Authorization"] == "Bearer ig-access-token"
    assert form(set_ig.calls[0]) == {"subscribed_fields": ",".join(sorted(IG_FIELDS))}
    out = said.getvalue()
    assert (
        f"acme/instagram: set the app's Instagram webhook to {BRIDGE}/webhooks/instagram"
        " (verify token of apps.meta; fields messages, message_reactions, messaging_seen,"
        " messaging_postbacks, message_edit) in the Meta app dashboard: Meta's API does not"
        " set Instagram webhooks" in out
    )
    assert "acme/instagram: the Instagram account subscribed to the app (messages, " in out


async def test_instagram_through_a_page_subscribes_the_page(
    tmp_path: Path, said: io.StringIO
) -> None:
    channel = f"""      - type: instagram
        app: meta
        ig_id: "{IG}"
        page_id: "{PAGE}"
        access_token: page-token-for-ig
        base_url: https://graph.test
"""
    current = {
        "object": "instagram",
        "callback_url": f"{BRIDGE}/webhooks/instagram",
        "active": True,
        "fields": [{"name": f, "version": "v23.0"} for f in IG_FIELDS],
    }
    with respx.mock(assert_all_called=True) as api:
        api.get(f"{GRAPH}/{APP_ID}/subscriptions").mock(return_value=app_subscriptions([current]))
        api.get(f"{GRAPH}/{PAGE}/subscribed_apps").respond(200, json={"data": []})
        set_page = api.post(f"{GRAPH}/{PAGE}/subscribed_apps").respond(200, json={"success": True})
        assert await run(tmp_path, accounts_yaml(channels=channel))
    assert set_page.calls[0].request.headers["Authorization"] == "Bearer page-token-for-ig"
    assert form(set_page.calls[0]) == {"subscribed_fields": "messages"}
    out = said.getvalue()
    assert "the app's Instagram webhook already posts messages, message_reactions" in out
    assert "acme/instagram: the linked Page subscribed to the app (messages)" in out


async def test_whatsapp_subscribes_the_waba_and_the_app_step_once_per_app(
    tmp_path: Path, said: io.StringIO
) -> None:
    other = """  globex:
    desk: {type: sandbox}
    channels:
      - type: whatsapp
        app: meta
        phone_number_id: "200000000000003"
        access_token: wa-other-token
        base_url: https://graph.test
"""
    with respx.mock(assert_all_called=True) as api:
        read_app = api.get(f"{GRAPH}/{APP_ID}/subscriptions").mock(
            return_value=app_subscriptions([])
        )
        api.get(f"{GRAPH}/{WABA}/subscribed_apps").respond(
            200, json={"data": [{"whatsapp_business_api_data": {"id": APP_ID, "name": "x"}}]}
        )
        assert await run(tmp_path, accounts_yaml(channels=WHATSAPP, more=other))
        assert read_app.call_count == 1
        assert all(call.request.method == "GET" for call in api.calls)
    out = said.getvalue()
    assert "acme/whatsapp: set the app's WhatsApp webhook to" in out
    assert "acme/whatsapp: the WhatsApp Business Account is already subscribed to the app" in out
    assert "globex/whatsapp: no waba_id: subscribe the app to the number's WhatsApp" in out


async def test_whatsapp_posts_to_the_waba_without_fields(tmp_path: Path, said: io.StringIO) -> None:
    with respx.mock(assert_all_called=True) as api:
        api.get(f"{GRAPH}/{APP_ID}/subscriptions").mock(return_value=app_subscriptions([]))
        api.get(f"{GRAPH}/{WABA}/subscribed_apps").respond(200, json={"data": []})
        subscribe = api.post(f"{GRAPH}/{WABA}/subscribed_apps").respond(200, json={"success": True})
        assert await run(tmp_path, accounts_yaml(channels=WHATSAPP))
    assert subscribe.calls[0].request.content == b""
    assert subscribe.calls[0].request.headers["Authorization"] == "Bearer wa-access-token"
    assert "the WhatsApp Business Account subscribed to the app" in said.getvalue()


async def test_an_unconfirmed_subscription_fails(tmp_path: Path, said: io.StringIO) -> None:
    with respx.mock(assert_all_called=True) as api:
        api.get(f"{GRAPH}/{APP_ID}/subscriptions").mock(return_value=app_subscriptions([]))
        api.get(f"{GRAPH}/{WABA}/subscribed_apps").respond(200, json={"data": []})
        api.post(f"{GRAPH}/{WABA}/subscribed_apps").respond(200, json={"success": False})
        assert not await run(tmp_path, accounts_yaml(channels=WHATSAPP))
    assert "failed: Meta did not confirm the subscription" in said.getvalue()


async def test_the_demo_registers_with_the_sandbox_graph(
    tmp_path: Path, said: io.StringIO, make_runtime, aiohttp_client
) -> None:
    """The demo's Meta channels register at the gateway's Graph stand-in: the app's token
    and each channel's token are checked, as Meta would."""
    from deskbridge.adapters.meta.demo import demo_apps, demo_secrets
    from deskbridge.adapters.registry import CHANNELS
    from deskbridge.adapters.spec import DemoContext
    from deskbridge.gateway import create_app
    from deskbridge.schemas import Channel

    ctx = DemoContext(
        secrets={"meta": demo_secrets()}, smtp_listen="", sip_listen="", web_origins=()
    )
    entries = []
    for channel in (Channel.WHATSAPP, Channel.MESSENGER, Channel.INSTAGRAM):
        demo = CHANNELS[channel].demo
        assert demo is not None
        entries.append(demo.entry(ctx))
    doc: dict[str, Any] = {
        "apps": demo_apps(ctx),
        "accounts": {"demo": {"desk": {"type": "sandbox"}, "channels": entries}},
    }
    text = json.dumps(doc)
    rt = make_runtime(text)
    client = await aiohttp_client(create_app(rt, role="serve"))
    base = str(client.make_url("")).rstrip("/")
    # the demo's accounts as `channels register` without --config builds them
    ok = await register_module.register(Settings(), parse_accounts(text), base, None, tmp_path)
    out = said.getvalue()
    assert ok, out
    assert f"demo/messenger: the app's Messenger webhook set to {base}/webhooks/messenger" in out
    assert "demo/messenger: the Page is already subscribed to the app" in out
    assert "demo/instagram: the Instagram account is already subscribed to the app" in out
    assert "demo/whatsapp: the WhatsApp Business Account is already subscribed to the app" in out

    # a wrong app secret is refused as Meta refuses it
    doc["apps"]["demo-meta"]["app_secret"] = "not-the-secret"
    cfg = tmp_path / "accounts.yaml"
    cfg.write_text(json.dumps(doc))
    said.truncate(0)
    assert not await register_module.register(Settings(), cfg, base, "demo", tmp_path / "s")
    assert "the token is invalid or has expired (Graph error 190)" in said.getvalue()


def test_without_an_accounts_file_it_needs_a_demo_at_the_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from deskbridge.cli.main import cli

    monkeypatch.delenv("DESKBRIDGE_CONFIG", raising=False)
    monkeypatch.setenv("DESKBRIDGE_DATA_DIR", str(tmp_path))
    result = CliRunner().invoke(cli, ["channels", "register", "--public-url", "http://127.0.0.1:1"])
    assert result.exit_code == 1
    assert "cannot reach the gateway at http://127.0.0.1:1" in result.output
