"""Declared capabilities and secrets: each adapter and desk declares what it implements
(optional features as ``adapters.capabilities`` / ``outbound.capabilities`` protocols,
the secret headers and query parameters of its webhook), nothing probes with ``getattr``,
and raw records never hold a declared secret."""

from __future__ import annotations

import ast
import inspect
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from multidict import CIMultiDict, CIMultiDictProxy, MultiDict, MultiDictProxy

from deskbridge.adapters import capabilities as channel_caps
from deskbridge.adapters.base import Parsed
from deskbridge.adapters.email.adapter import EmailAdapter
from deskbridge.adapters.email.receiver import EmailReceiver
from deskbridge.adapters.instagram import InstagramAdapter, InstagramReceiver
from deskbridge.adapters.line import LineAdapter
from deskbridge.adapters.messenger import MessengerAdapter, MessengerReceiver
from deskbridge.adapters.registry import AnyAppReceiver
from deskbridge.adapters.sip import SipAdapter
from deskbridge.adapters.sip.receiver import SipReceiver
from deskbridge.adapters.sms import SmsAdapter, SmsReceiver
from deskbridge.adapters.sms.vonage import VonageSmsAdapter, VonageSmsReceiver
from deskbridge.adapters.telegram import TelegramAdapter, sample_update
from deskbridge.adapters.webchat import WebchatAdapter
from deskbridge.adapters.whatsapp import WhatsAppAdapter, WhatsAppReceiver
from deskbridge.gateway import create_app
from deskbridge.outbound import capabilities as desk_caps
from deskbridge.outbound.intercom import IntercomConnector
from deskbridge.outbound.sandbox import SandboxConnector
from deskbridge.outbound.udesk import UdeskConnector
from deskbridge.outbound.zendesk import ZendeskConnector
from deskbridge.schemas import AgentReply, Channel, Desk, Direction, RawRequest
from deskbridge.store import IntakeEvent
from deskbridge.store.packing import unpack
from deskbridge.store.raw import read_raw_record

from .conftest import DEMO_YAML, EMAIL_YAML, LINE_YAML, META_YAML, TG_SECRET

ROOT = Path(__file__).resolve().parents[1]

# -- optional features ----------------------------------------------------------------------

CHANNEL_CAPABILITIES: dict[type[Any], set[type]] = {
    TelegramAdapter: {
        channel_caps.ReportsHealth,
        channel_caps.RegistersWebhook,
        channel_caps.OffersChoices,
    },
    WhatsAppAdapter: {
        channel_caps.ReportsHealth,
        channel_caps.OffersChoices,
        channel_caps.RegistersAppWebhook,
    },
    MessengerAdapter: {
        channel_caps.ReportsHealth,
        channel_caps.LooksUpDisplayNames,
        channel_caps.OffersChoices,
        channel_caps.RegistersAppWebhook,
    },
    InstagramAdapter: {
        channel_caps.ReportsHealth,
        channel_caps.LooksUpDisplayNames,
        channel_caps.RegistersAppWebhook,
    },
    LineAdapter: {
        channel_caps.ReportsHealth,
        channel_caps.RegistersWebhook,
        channel_caps.LooksUpDisplayNames,
        channel_caps.OffersChoices,
    },
    EmailAdapter: {channel_caps.AuthenticatesSender, channel_caps.FilesFromRequest},
    SipAdapter: set(),
    SmsAdapter: {channel_caps.ReportsHealth, channel_caps.RegistersWebhook},
    VonageSmsAdapter: {channel_caps.ReportsHealth, channel_caps.RegistersWebhook},
    WebchatAdapter: set(),
}

DESK_CAPABILITIES: dict[type[Any], set[type]] = {
    ZendeskConnector: {
        desk_caps.MergesUsers,
        desk_caps.TicketUpdateBudget,
        desk_caps.RegistersDeskWebhook,
        desk_caps.ReadsCommentFiles,
        desk_caps.ReportsSolved,
        desk_caps.TagsTickets,
    },
    IntercomConnector: {desk_caps.ReportsSolved, desk_caps.TagsTickets},
    UdeskConnector: {desk_caps.PollsReplies, desk_caps.PollsSolved},
    SandboxConnector: {desk_caps.TagsTickets},
}


def _protocols(module: Any) -> list[type]:
    return [
        obj
        for name in module.__all__
        if inspect.isclass(obj := vars(module)[name]) and vars(obj).get("_is_protocol", False)
    ]


def _marks(protocol: type) -> set[str]:
    """The members that give an implementation away: its methods, else its attributes."""
    methods = {n for n, v in vars(protocol).items() if not n.startswith("_") and callable(v)}
    return methods or set(vars(protocol).get("__annotations__", {}))


def test_the_tables_cover_every_channel_and_desk() -> None:
    assert {cls.channel for cls in CHANNEL_CAPABILITIES} == set(Channel)
    assert {cls.desk for cls in DESK_CAPABILITIES} == set(Desk)


@pytest.mark.parametrize(
    ("cls", "protocols", "expected"),
    [(c, _protocols(channel_caps), e) for c, e in CHANNEL_CAPABILITIES.items()]
    + [(c, _protocols(desk_caps), e) for c, e in DESK_CAPABILITIES.items()],
    ids=lambda v: v.__name__ if inspect.isclass(v) else "",
)
def test_each_class_declares_exactly_what_it_implements(
    cls: type, protocols: list[type], expected: set[type]
) -> None:
    declared = {p for p in protocols if p in cls.__mro__}
    assert declared == expected
    # a method of a capability without the declaration would be silently skipped
    undeclared = {p for p in protocols if p not in declared and _marks(p) & set(dir(cls))}
    assert undeclared == set()


def test_capability_modules_hold_only_runtime_checkable_protocols() -> None:
    for proto in _protocols(channel_caps) + _protocols(desk_caps):
        assert vars(proto).get("_is_runtime_protocol", False), proto.__name__
    assert len(_protocols(channel_caps)) == 7
    assert {p.__name__ for p in _protocols(desk_caps)} == {
        "MergesUsers",
        "TicketUpdateBudget",
        "PollsReplies",
        "RegistersDeskWebhook",
        "ReadsCommentFiles",
        "ReportsSolved",
        "PollsSolved",
        "TagsTickets",
    }


def test_a_desk_without_a_budget_has_no_ticket_update_limit() -> None:
    assert ZendeskConnector.ticket_update_limit == (30, 600.0)
    for cls in (IntercomConnector, UdeskConnector, SandboxConnector):
        assert "ticket_update_limit" not in dir(cls)


# -- secret headers and query parameters -----------------------------------------------------

SECRETS: dict[type[Any], tuple[set[str], set[str]]] = {
    # receivers (and the per-account parsers AccountReceiver wraps)
    TelegramAdapter: ({"x-telegram-bot-api-secret-token"}, set()),
    LineAdapter: (set(), set()),
    WhatsAppReceiver: (set(), {"hub.verify_token"}),
    MessengerReceiver: (set(), {"hub.verify_token"}),
    InstagramReceiver: (set(), {"hub.verify_token"}),
    EmailReceiver: ({"authorization"}, set()),
    SipReceiver: (set(), set()),
    SmsReceiver: (set(), set()),
    VonageSmsReceiver: ({"authorization"}, set()),
    # desk connectors
    ZendeskConnector: (set(), set()),
    IntercomConnector: (set(), set()),
    UdeskConnector: (set(), {"secret"}),
    SandboxConnector: (set(), set()),
}


@pytest.mark.parametrize("cls", list(SECRETS), ids=lambda c: c.__name__)
def test_every_receiver_and_desk_declares_its_own_secrets(cls: type[Any]) -> None:
    headers, query = SECRETS[cls]
    assert cls.secret_headers == frozenset(headers)
    assert cls.secret_query == frozenset(query)
    assert all(h == h.lower() for h in headers)


@pytest.mark.parametrize(
    ("yaml_text", "channel", "parser"),
    [
        (DEMO_YAML, "telegram", TelegramAdapter),
        (LINE_YAML, "line", LineAdapter),
        (EMAIL_YAML, "email", EmailReceiver),
        (META_YAML, "whatsapp", WhatsAppReceiver),
    ],
)
async def test_the_runtime_receivers_carry_the_declared_secrets(
    make_runtime: Any, yaml_text: str, channel: str, parser: type[Any]
) -> None:
    receiver = make_runtime(yaml_text).receiver(channel, "acme")
    assert receiver is not None
    assert receiver.secret_headers == parser.secret_headers
    assert receiver.secret_query == parser.secret_query


def test_a_shared_meta_url_drops_what_any_of_its_apps_declares() -> None:
    class _App:
        max_body_bytes = 1024
        secret_headers = frozenset({"x-a"})
        secret_query = frozenset({"hub.verify_token"})

    class _Other(_App):
        secret_headers = frozenset({"x-b"})

    shared = AnyAppReceiver(Channel.WHATSAPP, [_App(), _Other()])  # type: ignore[list-item]
    assert shared.secret_headers == {"x-a", "x-b"}
    assert shared.secret_query == {"hub.verify_token"}


# -- RawRequest.scrubbed ---------------------------------------------------------------------


def test_scrubbed_drops_named_headers_in_any_case_and_stays_case_insensitive() -> None:
    headers = CIMultiDictProxy(
        CIMultiDict(
            [
                ("X-Telegram-Bot-Api-Secret-Token", "s3cret"),
                ("Content-Type", "application/json"),
                ("X-Forwarded-For", "10.0.0.1"),
                ("X-Forwarded-For", "10.0.0.2"),
            ]
        )
    )
    req = RawRequest(method="POST", path="/p", headers=headers, body=b"{}")
    out = req.scrubbed(frozenset({"x-telegram-bot-api-secret-token"}), frozenset())
    assert "x-telegram-bot-api-secret-token" not in out.headers
    assert out.headers.get("content-type") == out.headers.get("Content-Type") == "application/json"
    assert isinstance(out.headers, CIMultiDictProxy)  # read-only, as aiohttp gives it
    assert out.headers.getall("x-forwarded-for") == ["10.0.0.1", "10.0.0.2"]
    assert (out.method, out.path, out.body, out.query) == (
        req.method,
        req.path,
        req.body,
        req.query,
    )
    assert req.headers["X-Telegram-Bot-Api-Secret-Token"] == "s3cret"  # the original is kept


def test_scrubbed_takes_plain_dicts_too() -> None:
    req = RawRequest(
        method="POST", path="/p", headers={"authorization": "Basic x", "content-type": "text/plain"}
    )
    out = req.scrubbed(frozenset({"authorization"}), frozenset())
    assert dict(out.headers) == {"content-type": "text/plain"}
    assert out.headers.get("Content-Type") == "text/plain"


def test_scrubbed_drops_every_value_of_named_query_parameters_only() -> None:
    query = MultiDictProxy(MultiDict([("secret", "a"), ("page", "2"), ("secret", "b")]))
    req = RawRequest(method="POST", path="/desks/udesk/acme", query=query)
    out = req.scrubbed(frozenset(), frozenset({"secret"}))
    assert dict(out.query) == {"page": "2"}
    assert req.query.getall("secret") == ["a", "b"]  # type: ignore[attr-defined]
    # query names are case-sensitive: only the exact name is ours
    other = RawRequest(method="POST", path="/p", query={"Secret": "x"})
    assert other.scrubbed(frozenset(), frozenset({"secret"})) is other


def test_scrubbed_is_the_same_request_when_there_is_nothing_to_drop() -> None:
    req = RawRequest(method="POST", path="/p", headers={"content-type": "x"}, query={"a": "1"})
    assert req.scrubbed(frozenset({"authorization"}), frozenset({"secret"})) is req
    assert req.scrubbed(frozenset(), frozenset()) is req


# -- raw records -----------------------------------------------------------------------------

UDESK_SECRET = "udesk-callback-secret-for-tests"


async def test_a_udesk_callback_raw_record_holds_no_secret(make_runtime: Any, redis: Any) -> None:
    rt = make_runtime()
    req = RawRequest(
        method="POST",
        path="/desks/udesk/acme",
        query={"secret": UDESK_SECRET},
        headers={"content-type": "application/json"},
        body=b'{"ticket_id": "77", "reply_id": "901"}',
    )
    reply = AgentReply(
        account="acme",
        desk=Desk.UDESK,
        dedup_key="reply:77:901",
        ticket_id="77",
        external_id="901",
        text="It ships today.",
        occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    # what the ingest flow does with a desk callback before it reaches the store
    stored = req.scrubbed(UdeskConnector.secret_headers, UdeskConnector.secret_query)
    new = await rt.intake.accept(
        account="acme",
        source="udesk",
        direction=Direction.OUTBOUND,
        channel="telegram",
        desk="udesk",
        req=stored,
        events=[IntakeEvent(dedup_key=reply.dedup_key, conversation_id="c1", event=reply)],
    )
    assert new == [True]
    [raw_key] = await redis.keys("db:{acme}:raw:*")
    blob = unpack(rt.vault.open(await redis.get(raw_key), raw_key.decode()))
    meta, body = read_raw_record(blob)
    assert meta["query"] == {}
    assert meta["path"] == "/desks/udesk/acme"
    assert body == req.body
    assert UDESK_SECRET.encode() not in blob


async def test_a_webhook_raw_record_holds_no_channel_secret(
    make_runtime: Any, aiohttp_client: Any, redis: Any
) -> None:
    rt = make_runtime()
    client = await aiohttp_client(create_app(rt, role="serve"))
    resp = await client.post(
        "/webhooks/telegram/acme",
        data=sample_update("hello", update_id=7001, chat_id=42, user_id=42),
        headers={"X-Telegram-Bot-Api-Secret-Token": TG_SECRET, "Content-Type": "application/json"},
    )
    assert resp.status == 200
    [raw_key] = await redis.keys("db:{acme}:raw:*")
    blob = unpack(rt.vault.open(await redis.get(raw_key), raw_key.decode()))
    assert TG_SECRET.encode() not in blob


async def test_reingest_keeps_no_declared_secret_of_an_old_record(
    make_runtime: Any, aiohttp_client: Any, redis: Any, monkeypatch: Any
) -> None:
    from .test_admin_api import SECRET, post
    from .test_store import message

    rt = make_runtime(admin_jwt_secret=SECRET)
    client = await aiohttp_client(create_app(rt, role="serve"))
    old = RawRequest(
        method="POST",
        path="/webhooks/telegram/acme",
        headers={"x-telegram-bot-api-secret-token": TG_SECRET},
        body=b'{"update_id": "not-a-number"}',
    )
    # a dead letter kept before the channel's secret header was declared
    assert await rt.intake.accept_parse_failed(
        account="acme",
        source="telegram",
        direction=Direction.INBOUND,
        channel="telegram",
        desk="sandbox",
        req=old,
        error="bad update",
        dedup_key="body-1",
    )
    before = set(await redis.keys("db:{acme}:raw:*"))
    receiver = rt.receiver("telegram", "acme")
    monkeypatch.setattr(receiver, "parse", lambda req: Parsed([message(77)]))
    status, done = await post(client, "/events/reingest", {"since": "2000-01-01T00:00:00Z"})
    assert status == 200 and done["totals"]["new"] == 1
    [raw_key] = set(await redis.keys("db:{acme}:raw:*")) - before
    blob = unpack(rt.vault.open(await redis.get(raw_key), raw_key.decode()))
    assert read_raw_record(blob)[0]["headers"] == {}
    assert TG_SECRET.encode() not in blob


# -- no getattr probing ----------------------------------------------------------------------

ALLOWED_GETATTR: dict[str, tuple[int, str]] = {
    "src/deskbridge/logs.py": (2, "log records carry extra attributes only when a caller set them"),
    "src/deskbridge/config/accounts.py": (
        2,
        "only yaml's MarkedYAMLError has problem_mark/problem; other YAMLErrors do not",
    ),
    "src/deskbridge/routing/enrich.py": (2, "lingua's IsoCode639_1 enum members looked up by code"),
    "src/deskbridge/adapters/telegram/parse.py": (
        1,
        "an Update carries its message under one of several field names",
    ),
    "src/deskbridge/adapters/whatsapp/parse.py": (
        1,
        "a WhatsApp message's media object is the field named by its type",
    ),
    "src/deskbridge/adapters/email/mime.py": (
        1,
        "only address headers of email.headerregistry have .addresses",
    ),
    "src/deskbridge/gateway/admin/routes.py": (1, "a dataclass's fields copied by name"),
    "src/deskbridge/store/rotation.py": (1, "a dataclass's counters copied by name"),
    "src/deskbridge/cli/process.py": (
        1,
        "aiohttp's access logger may get a request with no match_info",
    ),
    "src/deskbridge/cli/main.py": (1, "a command imported when it runs, by its COMMANDS name"),
}


def _getattr_calls(path: Path) -> list[int]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in ("getattr", "hasattr")
    ]


def test_no_getattr_probing_in_src_or_the_desk_fakes() -> None:
    files = sorted((ROOT / "src").rglob("*.py")) + sorted((ROOT / "tests" / "desks").glob("*.py"))
    found = {str(p.relative_to(ROOT)): lines for p in files if (lines := _getattr_calls(p))}
    unexpected = {
        path: lines
        for path, lines in found.items()
        if len(lines) != ALLOWED_GETATTR.get(path, (0, ""))[0]
    }
    assert unexpected == {}, (
        "getattr/hasattr outside the allow-list: declare a capability protocol "
        "(adapters/capabilities.py, outbound/capabilities.py) and check it with isinstance, "
        "or add a non-probe use to ALLOWED_GETATTR with its reason"
    )
    stale = set(ALLOWED_GETATTR) - set(found)
    assert stale == set(), "allow-list entries with no getattr left: remove them"
