"""WhatsApp: fixtures through the app receiver's verify/parse, the Cloud API sender and
media downloader under respx."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import respx
from hypothesis import given, settings
from hypothesis import strategies as st

from deskbridge.adapters.base import Parsed
from deskbridge.adapters.meta import sign
from deskbridge.adapters.whatsapp import WhatsAppAdapter, WhatsAppReceiver, sample_message
from deskbridge.config.accounts import MetaAppConfig, WhatsAppConfig
from deskbridge.errors import (
    ParseFailed,
    PayloadInvalid,
    PermanentError,
    RetryableError,
    SignatureInvalid,
    WindowClosed,
)
from deskbridge.identity.phones import e164
from deskbridge.schemas import (
    AgentReply,
    Attachment,
    Channel,
    ChannelAddress,
    Desk,
    Message,
    RawRequest,
    StatusUpdate,
    Upload,
)

from . import recorded
from .helpers import bodies, meta_request

CHANNEL = "whatsapp"
SCENARIOS = recorded.scenarios(CHANNEL)

APP_SECRET = "test-app-secret-0123456789abcdef"
VERIFY_TOKEN = "test-verify-token"
ACME_NUMBER = "200000000000002"
GLOBEX_NUMBER = "200000000000003"
ROUTES = {ACME_NUMBER: "acme", GLOBEX_NUMBER: "globex"}
BSUID = "US.13491208655302741918"
ANN = "16505551234"
OURS = "wamid.HBgLMTY1MDU1NTEyMzQVAgARGBI3MEM2RUJFNkI0RENGQTVDRjUA"

APP = MetaAppConfig.model_validate({"app_secret": APP_SECRET, "verify_token": VERIFY_TOKEN})
RECEIVER = WhatsAppReceiver("main", APP, ROUTES, max_body_bytes=4 * 1024 * 1024)


def request(body: bytes, signature: str | None = "sign") -> RawRequest:
    return meta_request(body, "/webhooks/whatsapp", signature, secret=APP_SECRET)


def parse(body: bytes) -> Parsed:
    req = request(body)
    RECEIVER.verify(req)
    return RECEIVER.parse(req)


def as_dict(parsed: Parsed) -> dict[str, Any]:
    return {
        "events": [event.model_dump(mode="json") for event in parsed.events],
        "unrouted": parsed.unrouted,
    }


def fixture(scenario: str) -> bytes:
    return recorded.fixture(CHANNEL, scenario)


def raw(scenario: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(fixture(scenario))
    return doc


def first_message(doc: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = doc["entry"][0]["changes"][0]["value"]["messages"][0]
    return found


def only(body: bytes | dict[str, Any]) -> Message:
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    (event,) = parse(data).events
    assert isinstance(event, Message)
    return event


# --- inbound: recorded-shape fixtures ------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_fixture_parses_to_expected(scenario: str) -> None:
    got = as_dict(parse(fixture(scenario)))
    recorded.assert_expected(CHANNEL, scenario, got)


def test_every_scenario_of_the_brief_is_recorded() -> None:
    required = {
        "text", "image_with_caption", "audio", "voice", "video", "document", "sticker",
        "location", "contacts", "reaction", "interactive_button_reply",
        "interactive_list_reply", "button", "reply_context", "unsupported",
        "statuses_sent_delivered_read", "status_failed", "batch_two_accounts",
        "bsuid_only_sender", "bsuid_and_phone", "duplicate_ids", "non_messages_field",
    }  # fmt: skip
    assert required <= set(SCENARIOS)


def test_text_message_fields() -> None:
    msg = only(fixture("text"))
    assert (msg.account, msg.channel, msg.thread) == ("acme", Channel.WHATSAPP, ANN)
    assert msg.dedup_key == msg.external_id == first_message(raw("text"))["id"]
    assert msg.occurred_at == datetime(2025, 6, 15, 15, 6, 40, tzinfo=UTC)
    assert msg.text == "Hi, my order #1042 has not arrived yet. Can you check?"
    assert (msg.sender.external_id, msg.sender.display_name) == (ANN, "Ann Example")
    user, phone = msg.sender.identities
    assert (user.kind, user.channel, user.value, user.strength, user.source) == (
        "channel_user",
        Channel.WHATSAPP,
        ANN,
        "strong",
        "whatsapp",
    )
    assert (phone.kind, phone.value, phone.strength, phone.source) == (
        "phone",
        "+16505551234",
        "strong",
        "whatsapp",
    )


def test_image_keeps_the_webhook_hash_as_given_and_the_caption() -> None:
    msg = only(fixture("image_with_caption"))
    (image,) = msg.attachments
    assert (image.kind, image.ref, image.mime_type, image.filename) == (
        "image",
        "1003383421387256",
        "image/jpeg",
        None,
    )
    assert image.sha256 == "SfInY0gGKTsJlUWbwxC1k+FAD0FZHvzwfpvO0zX0GUI="
    assert msg.text == "The parcel arrived damaged, see photo"


def test_voice_notes_are_voice_and_audio_files_are_audio() -> None:
    (voice,) = only(fixture("voice")).attachments
    assert (voice.kind, voice.mime_type) == ("voice", "audio/ogg; codecs=opus")
    (audio,) = only(fixture("audio")).attachments
    assert (audio.kind, audio.mime_type) == ("audio", "audio/mpeg")


def test_document_has_its_filename_and_caption() -> None:
    msg = only(fixture("document"))
    (doc,) = msg.attachments
    assert (doc.kind, doc.filename, doc.ref) == ("document", "receipt-1042.pdf", "622684793477189")
    assert msg.text == "my receipt"


def test_video_and_sticker() -> None:
    video = only(fixture("video"))
    assert (video.attachments[0].kind, video.text) == (
        "video",
        "This is what happens when I switch it on",
    )
    sticker = only(fixture("sticker"))
    assert (sticker.attachments[0].kind, sticker.note, sticker.text) == (
        "sticker",
        "Animated sticker",
        "",
    )


def test_location() -> None:
    loc = only(fixture("location")).location
    assert loc is not None
    assert (loc.latitude, loc.longitude, loc.name, loc.address) == (
        37.44221496582,
        -122.16165924072,
        "Philz Coffee",
        "101 Forest Ave, Palo Alto, CA 94301",
    )


def test_several_contacts_first_as_contact_rest_in_the_note() -> None:
    msg = only(fixture("contacts"))
    assert msg.contact is not None
    assert (msg.contact.name, msg.contact.phone, msg.contact.raw_phone) == (
        "Barbara J. Johnson",
        "+14155552671",
        "+1 (415) 555-2671",
    )
    assert (msg.contact.channel_user_id, msg.contact.is_sender) == ("14155552671", False)
    assert msg.note == (
        "Shared 3 contacts: Barbara J. Johnson — +14155552671 (mobile), 650 555 1234 (work); "
        "Jonas Weber — +4915123456789 (cell), jonas.weber@example.de; "
        "Front desk — 0612345678 (home)"
    )
    assert [i.kind for i in msg.sender.identities] == ["channel_user", "phone"]


def test_the_customers_own_card_adds_a_phone_to_a_bsuid_only_sender() -> None:
    doc = raw("bsuid_only_sender")
    message = first_message(doc)
    message.pop("text")
    message |= {
        "type": "contacts",
        "contacts": [
            {
                "name": {"formatted_name": "Sheena Nelson"},
                "origin": "contact_request",
                "phones": [{"phone": "+1 650-555-1234", "wa_id": ANN, "type": "MOBILE"}],
            }
        ],
    }
    msg = only(doc)
    assert msg.contact is not None and msg.contact.is_sender
    assert msg.note is None
    kinds = [(i.kind, i.value, i.source) for i in msg.sender.identities]
    assert kinds == [
        ("channel_user", BSUID, "whatsapp"),
        ("phone", "+16505551234", "whatsapp_contact"),
    ]
    assert msg.thread == BSUID  # the thread does not move under a running conversation


def test_reaction_is_a_note_replying_to_the_reacted_message() -> None:
    msg = only(fixture("reaction"))
    assert (msg.text, msg.reply_to) == ("", OURS)
    assert msg.note == f"Reacted \U0001f44d to message {OURS}"
    doc = raw("reaction")
    del first_message(doc)["reaction"]["emoji"]
    assert only(doc).note == f"Removed a reaction from message {OURS}"


def test_interactive_replies_and_template_buttons_are_their_titles() -> None:
    button = only(fixture("interactive_button_reply"))
    assert (button.text, button.reply_to) == ("Cancel order", OURS)
    assert button.note == "Chose reply button “Cancel order” (id cancel-button)"
    row = only(fixture("interactive_list_reply"))
    assert row.text == "Priority Mail Express"
    assert row.note == (
        "Chose list row “Priority Mail Express” (id priority_express): Next Day to 2 Days"
    )
    quick = only(fixture("button"))
    assert (quick.text, quick.reply_to) == ("Stop promotions", OURS)
    assert quick.note == "Tapped a quick-reply button of a template message"


def test_reply_context_becomes_reply_to() -> None:
    msg = only(fixture("reply_context"))
    assert (msg.reply_to, msg.text, msg.note) == (OURS, "Yes, that is the right address.", None)


def test_forwarded_messages_say_so() -> None:
    doc = raw("text")
    first_message(doc)["context"] = {"forwarded": True}
    msg = only(doc)
    assert (msg.note, msg.reply_to) == ("Forwarded", None)


def test_unsupported_content_is_visible_with_the_error_title() -> None:
    assert only(fixture("unsupported")).note == (
        "Unsupported WhatsApp message (edit); WhatsApp: Message type unknown (131051)"
    )


@pytest.mark.parametrize(
    ("change", "note"),
    [
        ({"type": "order", "order": {"catalog_id": "1"}}, "Unsupported WhatsApp message (order)"),
        ({"type": "request_welcome"}, "Unsupported WhatsApp message (request_welcome)"),
        ({"type": "image"}, "Unsupported WhatsApp message (image)"),
        (
            {"type": "interactive", "interactive": {"type": "nfm_reply", "nfm_reply": {}}},
            "Unsupported WhatsApp message (interactive nfm_reply)",
        ),
        (
            {"type": "system", "system": {"type": "user_changed_user_id", "body": "User changed"}},
            "WhatsApp notice (user_changed_user_id): User changed",
        ),
    ],
    ids=["order", "welcome", "image-without-image", "flow-reply", "system"],
)
def test_types_we_cannot_show_still_arrive_as_a_note(change: dict[str, Any], note: str) -> None:
    doc = raw("text")
    message = first_message(doc)
    del message["text"]
    message |= change
    msg = only(doc)
    assert (msg.note, msg.text, msg.attachments) == (note, "", ())


def test_statuses() -> None:
    events = parse(fixture("statuses_sent_delivered_read")).events
    assert all(isinstance(e, StatusUpdate) for e in events)
    read = events[2]
    assert isinstance(read, StatusUpdate)
    assert [(e.kind, getattr(e, "status", None), e.dedup_key) for e in events] == [
        ("status", "sent", f"{OURS}:sent"),
        ("status", "delivered", f"{OURS}:delivered"),
        ("status", "read", f"{OURS}:read"),
    ]
    assert (read.external_id, read.thread, read.account, read.error) == (OURS, ANN, "acme", None)


def test_failed_status_carries_the_code_and_title() -> None:
    (failed,) = parse(fixture("status_failed")).events
    assert isinstance(failed, StatusUpdate)
    assert (failed.status, failed.error_code, failed.error) == (
        "failed",
        "131026",
        "Message undeliverable",
    )


def test_a_window_failure_by_status_is_marked_and_others_are_not() -> None:
    (closed,) = parse(fixture("status_failed_window_closed")).events
    assert isinstance(closed, StatusUpdate)
    assert (closed.status, closed.error_code, closed.window_closed) == ("failed", "131047", True)
    (undeliverable,) = parse(fixture("status_failed")).events
    assert isinstance(undeliverable, StatusUpdate) and not undeliverable.window_closed


def test_status_to_a_bsuid_and_statuses_we_do_not_record() -> None:
    doc = raw("statuses_sent_delivered_read")
    statuses = doc["entry"][0]["changes"][0]["value"]["statuses"]
    del statuses[0]["recipient_id"]
    statuses[1]["status"] = "played"
    statuses[2]["status"] = "deleted"
    (sent,) = parse(json.dumps(doc).encode()).events
    assert sent.thread == BSUID


def test_batch_routes_each_change_and_counts_unrouted_changes() -> None:
    parsed = parse(fixture("batch_two_accounts"))
    assert [(e.account, e.thread) for e in parsed.events] == [
        ("acme", ANN),
        ("globex", "4915123456789"),
    ]
    assert parsed.unrouted == 1  # one change with two messages for an unknown number


def test_bsuid_only_sender() -> None:
    msg = only(fixture("bsuid_only_sender"))
    assert (msg.thread, msg.sender.external_id, msg.sender.username) == (
        BSUID,
        BSUID,
        "@realsheenanelson",
    )
    (user,) = msg.sender.identities
    assert (user.kind, user.value, user.channel) == ("channel_user", BSUID, Channel.WHATSAPP)


def test_bsuid_and_phone_keys_the_user_on_bsuid_and_the_thread_on_the_phone() -> None:
    msg = only(fixture("bsuid_and_phone"))
    assert (msg.thread, msg.sender.external_id) == (ANN, BSUID)
    assert [(i.kind, i.value) for i in msg.sender.identities] == [
        ("channel_user", BSUID),
        ("phone", "+16505551234"),
    ]


def test_the_sender_is_matched_to_their_own_contact_entry() -> None:
    doc = raw("batch_two_accounts")
    value = doc["entry"][0]["changes"][0]["value"]
    value["contacts"] = [
        {"profile": {"name": "Someone Else"}, "wa_id": "14155552671"},
        {"profile": {"name": "Ann Example"}, "wa_id": ANN},
    ]
    first = parse(json.dumps(doc).encode()).events[0]
    assert isinstance(first, Message)
    assert first.sender.display_name == "Ann Example"


def test_duplicates_in_one_batch_are_both_returned_for_intake_to_dedup() -> None:
    first, second = parse(fixture("duplicate_ids")).events
    assert first.dedup_key == second.dedup_key


def test_changes_of_other_fields_are_ignored() -> None:
    parsed = parse(fixture("non_messages_field"))
    assert (parsed.events, parsed.unrouted, parsed.failures) == ([], 0, ())
    # named, listed under the app: the change names no number we route
    assert [(i.reason, i.account) for i in parsed.skipped] == [("other_field", None)] * 2


@pytest.mark.parametrize(
    ("raw_number", "trusted", "expected"),
    [
        ("+1 (415) 555-2671", False, "+14155552671"),
        ("0049 151 23456789", False, "+4915123456789"),
        ("650 555 1234", False, None),  # no country to read it in
        ("16505551234", True, "+16505551234"),
        ("15550002222", True, "+15550002222"),  # fictional range: possible, WhatsApp-verified
        ("15550002222", False, None),
        ("5215512345678", True, "+525512345678"),
        ("", True, None),
        ("9" * 40, True, None),
        ("not a number", False, None),
    ],
)
def test_e164(raw_number: str, trusted: bool, expected: str | None) -> None:
    assert e164(raw_number, trusted=trusted) == expected


def test_sample_message_round_trips() -> None:
    body = sample_message(
        "hello", phone_number_id=ACME_NUMBER, wa_id=ANN, message_id="wamid.S1", timestamp=7
    )
    msg = only(body)
    assert (msg.text, msg.thread, msg.dedup_key, msg.sender.display_name) == (
        "hello",
        ANN,
        "wamid.S1",
        "Demo Customer",
    )
    assert msg.occurred_at == datetime.fromtimestamp(7, UTC)
    bsuid_only = only(
        sample_message(
            "hi",
            phone_number_id=GLOBEX_NUMBER,
            wa_id=None,
            bsuid=BSUID,
            message_id="m",
            timestamp=1,
        )
    )
    assert (bsuid_only.account, bsuid_only.thread) == ("globex", BSUID)
    with pytest.raises(ValueError, match="wa_id"):
        sample_message("x", phone_number_id="1", wa_id=None, message_id="m", timestamp=1)


# --- inbound: handshake and refusals ---------------------------------------------------


def handshake_request(**query: str) -> RawRequest:
    return RawRequest(method="GET", path="/webhooks/whatsapp", query=query)


def test_receiver_shape() -> None:
    assert RECEIVER.channel is Channel.WHATSAPP
    assert (RECEIVER.app_name, RECEIVER.max_body_bytes) == ("main", 4 * 1024 * 1024)


def test_handshake_echoes_the_challenge_for_the_right_token() -> None:
    answer = RECEIVER.handshake(
        handshake_request(
            **{"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1158"}
        )
    )
    assert (answer.status, answer.body) == (200, "1158")


@pytest.mark.parametrize(
    "query",
    [
        {"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1158"},
        {"hub.mode": "unsubscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1158"},
        {"hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1158"},
    ],
    ids=["wrong-token", "wrong-mode", "no-mode"],
)
def test_handshake_refuses(query: dict[str, str]) -> None:
    assert RECEIVER.handshake(handshake_request(**query)).status == 403


def test_verify_accepts_the_signed_body() -> None:
    RECEIVER.verify(request(fixture("text")))


@pytest.mark.parametrize(
    "signature",
    [
        None,
        "",
        "sha256=" + "0" * 64,
        sign("another-secret", fixture("text")),
        "sha1=" + hashlib.sha1(b"x").hexdigest(),  # noqa: S324 - the legacy header's shape
    ],
    ids=["missing", "empty", "zeros", "other-secret", "sha1-only"],
)
def test_verify_refuses_a_missing_or_wrong_signature(signature: str | None) -> None:
    with pytest.raises(SignatureInvalid):
        RECEIVER.verify(request(fixture("text"), signature=signature))


def test_verify_refuses_a_body_changed_after_signing() -> None:
    req = request(fixture("text"))
    tampered = RawRequest(
        method="POST", path=req.path, headers=req.headers, body=req.body.replace(b"1042", b"1043")
    )
    with pytest.raises(SignatureInvalid):
        RECEIVER.verify(tampered)


@pytest.mark.parametrize(
    "body",
    [
        fixture("text")[:-40],
        b"[1, 2]",
        b'"text"',
        b"",
        b"\xff\xfe\x00",
        b"NaN",
        b"[" * 100_000,
    ],
    ids=["truncated", "array", "string", "empty", "not-utf8", "nan", "deep"],
)
def test_bodies_that_are_not_json_objects_are_invalid(body: bytes) -> None:
    with pytest.raises(PayloadInvalid):
        RECEIVER.parse(request(body))


def _text_body(**message: Any) -> dict[str, Any]:
    doc = raw("text")
    first_message(doc).update(message)
    return doc


def _no_sender() -> dict[str, Any]:
    doc = _text_body(**{"from": None})
    doc["entry"][0]["changes"][0]["value"]["contacts"] = []
    return doc


@pytest.mark.parametrize(
    "doc",
    [
        {"object": "page", "entry": []},
        {"object": "whatsapp_business_account", "entry": {"id": "1"}},
        {"object": "whatsapp_business_account"},
        {"entry": []},
        {"object": "whatsapp_business_account", "entry": [{"changes": [{"field": 1}]}]},
        {"object": "whatsapp_business_account", "entry": [{"changes": [{"field": "messages"}]}]},
        _text_body(id=12345),
        _text_body(timestamp=True),
        _text_body(timestamp="99999999999999"),
        _text_body(text={"body": "SECRET-BODY-TEXT \ud800"}),
        _no_sender(),
        _text_body(type=None),
    ],
    ids=[
        "messenger-object",
        "entry-object",
        "no-entry",
        "no-object",
        "field-number",
        "no-metadata",
        "id-number",
        "timestamp-bool",
        "timestamp-overflow",
        "lone-surrogate",
        "no-sender",
        "type-null",
    ],
)
def test_objects_that_are_not_readable_webhooks_fail_to_parse(doc: dict[str, Any]) -> None:
    """Not a WhatsApp envelope: ParseFailed. An envelope with a change, message or status
    we cannot read: that item alone is a failure (no event), never quoting the body."""
    if doc.get("object") != "whatsapp_business_account" or not isinstance(doc.get("entry"), list):
        with pytest.raises(ParseFailed) as caught:
            parse(json.dumps(doc).encode())
        assert caught.value.__cause__ is None
        return
    parsed = parse(json.dumps(doc).encode())
    assert parsed.events == []
    (failure,) = parsed.failures
    assert "SECRET-BODY-TEXT" not in failure.error
    assert failure.app == RECEIVER.app_name
    again = parse(failure.body)
    assert [(f.key, f.account) for f in again.failures] == [(failure.key, failure.account)]


def test_an_unrouted_change_is_not_read_further() -> None:
    doc = raw("batch_two_accounts")
    unknown = doc["entry"][1]["changes"][1]["value"]
    unknown["messages"] = "not even a list"
    assert parse(json.dumps(doc).encode()).unrouted == 1


_LEAF = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12)
)
_KEYS = st.sampled_from(
    ["object", "entry", "id", "changes", "field", "value", "metadata", "phone_number_id",
     "contacts", "profile", "name", "wa_id", "user_id", "messages", "statuses", "from",
     "from_user_id", "timestamp", "type", "text", "body", "image", "audio", "voice", "sha256",
     "location", "latitude", "longitude", "reaction", "emoji", "message_id", "interactive",
     "context", "errors", "code", "title", "status", "recipient_id", "unsupported"]
) | st.text(max_size=8)  # fmt: skip
_JSON = st.recursive(
    _LEAF,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEYS, inner, max_size=6),
    max_leaves=25,
)
_TEXT = st.text(max_size=12)
_IDS = st.one_of(_TEXT, st.sampled_from([ANN, BSUID, "4915123456789"]))
_CONTENT = st.one_of(
    st.tuples(st.just("text"), st.fixed_dictionaries({"body": _TEXT})),
    st.tuples(
        st.sampled_from(["image", "audio", "video", "document", "sticker"]),
        st.fixed_dictionaries(
            {"id": _TEXT},
            optional={"caption": _TEXT, "voice": st.booleans(), "sha256": _TEXT, "filename": _TEXT},
        ),
    ),
    st.tuples(
        st.just("location"),
        st.fixed_dictionaries(
            {"latitude": st.floats(-100, 100), "longitude": st.floats(-200, 200)}
        ),
    ),
    st.tuples(
        st.just("contacts"),
        st.lists(
            st.fixed_dictionaries(
                {"phones": st.lists(st.fixed_dictionaries({}, optional={"phone": _TEXT}))},
                optional={"origin": st.sampled_from(["contact_request", "other"])},
            ),
            max_size=3,
        ),
    ),
    st.tuples(
        st.just("reaction"),
        st.fixed_dictionaries({"message_id": _TEXT}, optional={"emoji": _TEXT}),
    ),
    st.tuples(st.sampled_from(["interactive", "button", "order", "unsupported"]), _JSON),
)
_MESSAGE = st.tuples(
    st.fixed_dictionaries(
        {"id": _TEXT, "timestamp": st.integers(0, 2**40).map(str)},
        optional={"from": _IDS, "from_user_id": _IDS, "context": _JSON, "errors": _JSON},
    ),
    _CONTENT,
).map(lambda parts: parts[0] | {"type": parts[1][0], parts[1][0]: parts[1][1]})
_STATUS = st.fixed_dictionaries(
    {
        "id": _TEXT,
        "status": st.sampled_from(["sent", "delivered", "read", "failed", "played"]),
        "timestamp": st.integers(0, 2**40).map(str),
    },
    optional={"recipient_id": _IDS, "recipient_user_id": _IDS, "errors": _JSON},
)
_VALUE = st.fixed_dictionaries(
    {"metadata": st.fixed_dictionaries({"phone_number_id": st.sampled_from([*ROUTES, "9"])})},
    optional={
        "contacts": st.lists(
            st.fixed_dictionaries({}, optional={"wa_id": _IDS, "user_id": _IDS}), max_size=2
        ),
        "messages": st.lists(_MESSAGE, max_size=3),
        "statuses": st.lists(_STATUS, max_size=2),
    },
)
# Junk is _JSON's job; this one reaches event building, with random fields mixed in.
_ENVELOPE = st.builds(
    lambda changes: {"object": "whatsapp_business_account", "entry": [{"changes": changes}]},
    st.lists(
        st.fixed_dictionaries(
            {"field": st.sampled_from(["messages", "messages", "calls"]), "value": _VALUE}
        ),
        max_size=3,
    ),
)


def _parses_or_refuses(body: bytes) -> None:
    try:
        parsed = RECEIVER.parse(request(body))
    except (PayloadInvalid, ParseFailed):
        return
    assert parsed.unrouted >= 0
    for event in parsed.events:
        event.model_dump_json()


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_parse_never_crashes_on_bytes(body: bytes) -> None:
    _parses_or_refuses(body)


@settings(max_examples=200, deadline=None)
@given(_JSON | _ENVELOPE)
def test_parse_never_crashes_on_json(value: Any) -> None:
    _parses_or_refuses(json.dumps(value).encode())


# --- outbound: the Cloud API under respx ------------------------------------------------

API = "https://graph.test"
GRAPH = f"{API}/v23.0"
MESSAGES = f"{GRAPH}/{ACME_NUMBER}/messages"
UPLOADS = f"{GRAPH}/{ACME_NUMBER}/media"
TOKEN = "EAAtest-token-0123456789"
NOW = 1_750_100_000.0


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def config(**overrides: Any) -> WhatsAppConfig:
    return WhatsAppConfig.model_validate(
        {"app": "main", "phone_number_id": ACME_NUMBER, "access_token": TOKEN, **overrides}
    )


def adapter_for(
    client: httpx.AsyncClient, *, clock: Clock | None = None, **overrides: Any
) -> WhatsAppAdapter:
    return WhatsAppAdapter(
        "acme", config(**overrides), client, api_base=API, clock=clock or Clock()
    )


def agent_reply(text: str) -> AgentReply:
    return AgentReply(
        account="acme",
        desk=Desk.SANDBOX,
        dedup_key="r-1",
        ticket_id="t-1",
        external_id="c-1",
        text=text,
        occurred_at=datetime(2025, 6, 15, tzinfo=UTC),
    )


def address(
    thread: str = ANN, *, ago: float | None = 600, reply_to: str | None = None
) -> ChannelAddress:
    last = None if ago is None else datetime.fromtimestamp(NOW - ago, UTC)
    return ChannelAddress(
        channel=Channel.WHATSAPP,
        account="acme",
        thread=thread,
        reply_to=reply_to,
        last_inbound_at=last,
    )


def sent(wamid: str) -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "messaging_product": "whatsapp",
            "contacts": [{"input": "+16505551234", "wa_id": ANN}],
            "messages": [{"id": wamid}],
        },
    )


def graph_failure(code: int, status: int = 400, title: str = "Invalid parameter") -> httpx.Response:
    return httpx.Response(
        status,
        json={
            "error": {
                "message": f"({code}) {title}",
                "type": "OAuthException",
                "code": code,
                "error_data": {"messaging_product": "whatsapp", "details": "to +16505551234"},
                "fbtrace_id": "AfakeTrace",
            }
        },
    )


async def test_send_text(client: httpx.AsyncClient, api: respx.MockRouter) -> None:
    route = api.post(MESSAGES).mock(return_value=sent("wamid.OUT1"))
    receipt = await adapter_for(client).send(agent_reply("  Hello Ann!\n"), address(), [])
    assert receipt.external_ids == ("wamid.OUT1",)
    assert bodies(route) == [
        {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": "+16505551234",
            "type": "text",
            "text": {"body": "Hello Ann!", "preview_url": False},
        }
    ]
    assert route.calls.last.request.headers["authorization"] == f"Bearer {TOKEN}"


async def test_send_long_text_in_three_messages_replying_with_the_first(
    client: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    route = api.post(MESSAGES).mock(side_effect=[sent("w1"), sent("w2"), sent("w3")])
    text = "\n\n".join("x" * 2999 for _ in range(3))
    assert len(text) > 9000
    to = address(reply_to="wamid.IN1")
    receipt = await adapter_for(client).send(agent_reply(text), to, [])
    assert receipt.external_ids == ("w1", "w2", "w3")
    sent_bodies = bodies(route)
    assert [len(b["text"]["body"]) for b in sent_bodies] == [2999, 2999, 2999]
    assert sent_bodies[0]["context"] == {"message_id": "wamid.IN1"}
    assert "context" not in sent_bodies[1] and "context" not in sent_bodies[2]


async def test_send_to_a_bsuid_uses_recipient(
    client: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    route = api.post(MESSAGES).mock(return_value=sent("w1"))
    await adapter_for(client).send(agent_reply("Hi"), address(BSUID), [])
    (body,) = bodies(route)
    assert body["recipient"] == BSUID
    assert "to" not in body
    assert body["recipient_type"] == "individual"


async def test_send_image_with_the_text_as_caption(
    client: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    upload = api.post(UPLOADS).mock(
        side_effect=[httpx.Response(200, json={"id": "m1"}), httpx.Response(200, json={"id": "m2"})]
    )
    route = api.post(MESSAGES).mock(side_effect=[sent("w1"), sent("w2")])
    files = [
        Upload("label.jpg", "image/jpeg", b"\xff\xd8\xff-jpeg-bytes"),
        Upload("manual.pdf", "application/pdf", b"%PDF-1.4 bytes"),
    ]
    to = address(reply_to="wamid.IN1")
    receipt = await adapter_for(client).send(agent_reply("Here is your label"), to, files)
    assert receipt.external_ids == ("w1", "w2")
    first = upload.calls[0].request
    assert first.headers["authorization"] == f"Bearer {TOKEN}"
    assert first.headers["content-type"].startswith("multipart/form-data")
    assert b'name="messaging_product"\r\n\r\nwhatsapp' in first.content
    assert b'name="type"\r\n\r\nimage/jpeg' in first.content
    assert b'name="file"; filename="label.jpg"\r\nContent-Type: image/jpeg' in first.content
    assert b"\xff\xd8\xff-jpeg-bytes" in first.content
    image, document = bodies(route)
    assert image == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "+16505551234",
        "type": "image",
        "image": {"id": "m1", "caption": "Here is your label"},
        "context": {"message_id": "wamid.IN1"},
    }
    assert document["document"] == {"id": "m2", "filename": "manual.pdf"}
    assert "context" not in document


async def test_audio_takes_no_caption_so_the_text_goes_first(
    client: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    api.post(UPLOADS).mock(return_value=httpx.Response(200, json={"id": "m1"}))
    route = api.post(MESSAGES).mock(side_effect=[sent("w1"), sent("w2")])
    voice = Upload("answer.ogg", "audio/ogg; codecs=opus", b"OggS")
    await adapter_for(client).send(agent_reply("Listen to this"), address(), [voice])
    text, audio = bodies(route)
    assert text["text"]["body"] == "Listen to this"
    assert audio["type"] == "audio" and audio["audio"] == {"id": "m1"}


async def test_files_whatsapp_would_refuse_as_media_go_as_documents(
    client: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    api.post(UPLOADS).mock(return_value=httpx.Response(200, json={"id": "m1"}))
    route = api.post(MESSAGES).mock(return_value=sent("w"))
    files = [
        Upload("big.png", "image/png", b"p" * (5 * 1024 * 1024 + 1)),
        Upload("clip.wav", "audio/wav", b"RIFF"),
        Upload("anim.gif", "image/gif", b"GIF89a"),
    ]
    await adapter_for(client).send(agent_reply(""), address(), files)
    assert [b["type"] for b in bodies(route)] == ["document", "document", "document"]


async def test_a_file_over_100_mb_is_refused_before_uploading(
    client: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    huge = Upload("backup.zip", "application/zip", b"\0" * (100 * 1024 * 1024 + 1))
    with pytest.raises(PermanentError, match="over WhatsApp"):
        await adapter_for(client).send(agent_reply("see attached"), address(), [huge])
    assert not api.calls


async def test_send_nothing(client: httpx.AsyncClient, api: respx.MockRouter) -> None:
    assert (await adapter_for(client).send(agent_reply(" "), address(), [])).external_ids == ()
    assert not api.calls


async def test_window_just_open_sends(client: httpx.AsyncClient, api: respx.MockRouter) -> None:
    route = api.post(MESSAGES).mock(return_value=sent("w1"))
    await adapter_for(client).send(agent_reply("hi"), address(ago=23 * 3600 + 59 * 60), [])
    assert route.called


@pytest.mark.parametrize("ago", [24 * 3600 + 60, None], ids=["24h01m", "never"])
async def test_window_closed_raises_without_calling(
    client: httpx.AsyncClient, api: respx.MockRouter, ago: float | None
) -> None:
    files = [Upload("a.png", "image/png", b"png")]
    with pytest.raises(WindowClosed):
        await adapter_for(client).send(agent_reply("hi"), address(ago=ago), files)
    assert not api.calls


async def test_window_follows_the_clock(client: httpx.AsyncClient, api: respx.MockRouter) -> None:
    api.post(MESSAGES).mock(return_value=sent("w1"))
    clock = Clock()
    adapter = adapter_for(client, clock=clock)
    await adapter.send(agent_reply("hi"), address(ago=3600), [])
    clock.now += 23 * 3600 + 1
    with pytest.raises(WindowClosed):
        await adapter.send(agent_reply("hi"), address(ago=3600), [])


_ERROR_IDS = [
    "131047", "130429", "131056", "80007", "4", "131016", "2", "131026", "100", "190",
    "500-graph", "500-html", "429-header", "200-no-id",
]  # fmt: skip


@pytest.mark.parametrize(
    ("response", "error", "retry_after"),
    [
        (graph_failure(131047, title="Re-engagement message"), WindowClosed, None),
        (graph_failure(130429, 429, "Rate limit hit"), RetryableError, 1.0),
        (
            graph_failure(131056, title="(Business, Consumer) pair rate limit hit"),
            RetryableError,
            6.0,
        ),
        (graph_failure(80007, title="Rate limit issues"), RetryableError, 60.0),
        (graph_failure(4, title="Application request limit reached"), RetryableError, 60.0),
        (graph_failure(131016, 503, "Service unavailable"), RetryableError, None),
        (graph_failure(2, 503, "Service temporarily unavailable"), RetryableError, None),
        (graph_failure(131026, title="Message undeliverable"), PermanentError, None),
        (graph_failure(100, title="Invalid parameter"), PermanentError, None),
        (graph_failure(190, 401, "Error validating access token"), PermanentError, None),
        (graph_failure(131000, 500, "Something went wrong"), RetryableError, None),
        (httpx.Response(500, text="<html>oops</html>"), RetryableError, None),
        (httpx.Response(429, headers={"Retry-After": "9"}), RetryableError, 9.0),
        (httpx.Response(200, json={"messaging_product": "whatsapp"}), PermanentError, None),
    ],
    ids=_ERROR_IDS,
)
async def test_send_errors_are_classified(
    client: httpx.AsyncClient,
    api: respx.MockRouter,
    response: httpx.Response,
    error: type[Exception],
    retry_after: float | None,
) -> None:
    api.post(MESSAGES).mock(return_value=response)
    with pytest.raises(error) as caught:
        await adapter_for(client).send(agent_reply("hi"), address(), [])
    assert "whatsapp messages" in str(caught.value)
    assert TOKEN not in str(caught.value)
    assert "16505551234" not in str(caught.value)
    if isinstance(caught.value, RetryableError):
        assert caught.value.retry_after == retry_after


async def test_bsuid_not_supported_is_permanent_and_says_so(
    client: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    api.post(MESSAGES).mock(
        return_value=graph_failure(131062, title="Business-scoped User ID recipients unsupported")
    )
    with pytest.raises(PermanentError) as caught:
        await adapter_for(client).send(agent_reply("hi"), address(BSUID), [])
    assert "business-scoped user ID" in str(caught.value)
    assert "131062" in str(caught.value)


async def test_send_timeout_is_retryable(client: httpx.AsyncClient, api: respx.MockRouter) -> None:
    api.post(MESSAGES).mock(side_effect=httpx.ReadTimeout("timed out"))
    with pytest.raises(RetryableError) as caught:
        await adapter_for(client).send(agent_reply("hi"), address(), [])
    assert str(caught.value) == "whatsapp messages: ReadTimeout"
    assert caught.value.__cause__ is None


async def test_upload_errors_are_classified(
    client: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    api.post(UPLOADS).mock(return_value=graph_failure(131053, title="Media upload error"))
    messages = api.post(MESSAGES)
    with pytest.raises(PermanentError, match="whatsapp media upload"):
        await adapter_for(client).send(
            agent_reply("x"), address(), [Upload("a.png", "image/png", b"png")]
        )
    assert not messages.called


# --- outbound: re-engagement ------------------------------------------------------------


async def test_reengage_sends_the_template_alone(
    client: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    route = api.post(MESSAGES).mock(return_value=sent("wamid.T1"))
    adapter = adapter_for(client, template={"name": "reopen_conversation", "language": "de"})
    receipt = await adapter.reengage(address(ago=None))
    assert receipt.external_ids == ("wamid.T1",)
    (body,) = bodies(route)
    assert body == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "+16505551234",
        "type": "template",
        "template": {"name": "reopen_conversation", "language": {"code": "de"}},
    }
    assert "components" not in body["template"]


async def test_reengage_a_bsuid(client: httpx.AsyncClient, api: respx.MockRouter) -> None:
    route = api.post(MESSAGES).mock(return_value=sent("wamid.T2"))
    await adapter_for(client, template={"name": "reopen"}).reengage(address(BSUID, ago=None))
    (body,) = bodies(route)
    assert (body["recipient"], body["template"]["language"]) == (BSUID, {"code": "en_US"})


async def test_reengage_without_a_template(
    client: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    with pytest.raises(PermanentError, match="no re-engagement template configured"):
        await adapter_for(client).reengage(address())
    assert not api.calls


async def test_reengage_errors_are_classified(
    client: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    api.post(MESSAGES).mock(return_value=graph_failure(132001, title="Template does not exist"))
    with pytest.raises(PermanentError, match="132001"):
        await adapter_for(client, template={"name": "reopen"}).reengage(address())


# --- outbound: media downloads ----------------------------------------------------------

PHOTO = b"\xff\xd8\xff\xe0 a small jpeg"
PHOTO_SHA_B64 = base64.b64encode(hashlib.sha256(PHOTO).digest()).decode()
MEDIA_URL = "https://lookaside.graph.test/whatsapp_business/attachments/?mid=1003383421387256"
IMAGE = Attachment(
    kind="image", ref="1003383421387256", mime_type="image/jpeg", sha256=PHOTO_SHA_B64
)


def media_info(**overrides: Any) -> httpx.Response:
    body = {
        "messaging_product": "whatsapp",
        "url": MEDIA_URL,
        "mime_type": "image/jpeg",
        "sha256": hashlib.sha256(PHOTO).hexdigest(),
        "file_size": len(PHOTO),
        "id": IMAGE.ref,
    }
    return httpx.Response(200, json=body | overrides)


async def test_fetch_resolves_then_downloads_with_the_token(
    client: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    resolve = api.get(f"{GRAPH}/{IMAGE.ref}").mock(return_value=media_info())
    download = api.get(MEDIA_URL).mock(return_value=httpx.Response(200, content=PHOTO))
    upload = await adapter_for(client).fetch(IMAGE)
    assert upload == Upload("whatsapp-1003383421387256.jpg", "image/jpeg", PHOTO)
    assert resolve.calls.last.request.headers["authorization"] == f"Bearer {TOKEN}"
    assert download.calls.last.request.headers["authorization"] == f"Bearer {TOKEN}"


async def test_fetch_keeps_a_documents_name_and_checks_a_hex_hash(
    client: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    api.get(f"{GRAPH}/622684793477189").mock(
        return_value=media_info(mime_type="application/pdf", file_size=str(len(PHOTO)))
    )
    api.get(MEDIA_URL).mock(return_value=httpx.Response(200, content=PHOTO))
    doc = Attachment(kind="document", ref="622684793477189", filename="..\\docs/receipt.pdf")
    upload = await adapter_for(client).fetch(doc)
    assert (upload.filename, upload.mime_type) == ("receipt.pdf", "application/pdf")


@pytest.mark.parametrize(
    ("webhook_sha", "resolved_sha"),
    [
        (base64.b64encode(hashlib.sha256(b"other").digest()).decode(), None),
        (None, hashlib.sha256(b"other").hexdigest()),
    ],
    ids=["webhook-base64", "resolved-hex"],
)
async def test_fetch_with_a_hash_mismatch_is_retryable(
    client: httpx.AsyncClient,
    api: respx.MockRouter,
    webhook_sha: str | None,
    resolved_sha: str | None,
) -> None:
    api.get(f"{GRAPH}/{IMAGE.ref}").mock(return_value=media_info(sha256=resolved_sha))
    api.get(MEDIA_URL).mock(return_value=httpx.Response(200, content=PHOTO))
    with pytest.raises(RetryableError, match="SHA-256 mismatch"):
        await adapter_for(client).fetch(IMAGE.model_copy(update={"sha256": webhook_sha}))


async def test_fetch_refuses_oversize_before_downloading(
    client: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    api.get(f"{GRAPH}/{IMAGE.ref}").mock(return_value=media_info(file_size=51))
    download = api.get(MEDIA_URL)
    with pytest.raises(PermanentError, match="over the 50-byte limit"):
        await adapter_for(client, max_media_bytes=50).fetch(IMAGE)
    assert not download.called


async def _chunks() -> AsyncIterator[bytes]:
    for _ in range(10):
        yield b"x" * 16


async def test_fetch_caps_the_bytes_read_when_the_size_lies(
    client: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    api.get(f"{GRAPH}/{IMAGE.ref}").mock(return_value=media_info(file_size=10))
    api.get(MEDIA_URL).mock(side_effect=lambda request: httpx.Response(200, content=_chunks()))
    with pytest.raises(PermanentError, match="over the 50-byte limit"):
        await adapter_for(client, max_media_bytes=50).fetch(IMAGE)


async def test_fetch_expired_url_is_retryable(
    client: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    api.get(f"{GRAPH}/{IMAGE.ref}").mock(return_value=media_info())
    api.get(MEDIA_URL).mock(return_value=httpx.Response(404))
    with pytest.raises(RetryableError) as caught:
        await adapter_for(client).fetch(IMAGE)
    assert caught.value.status == 404


async def test_fetch_follows_https_redirects_keeping_the_token_on_its_host(
    client: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    api.get(f"{GRAPH}/{IMAGE.ref}").mock(return_value=media_info())
    api.get(MEDIA_URL).mock(
        return_value=httpx.Response(302, headers={"Location": "https://cdn.test/f/1"})
    )
    cdn = api.get("https://cdn.test/f/1").mock(return_value=httpx.Response(200, content=PHOTO))
    assert (await adapter_for(client).fetch(IMAGE)).data == PHOTO
    assert "authorization" not in cdn.calls.last.request.headers


@pytest.mark.parametrize(
    "location", ["http://cdn.test/f/1", "https://graph.test/loop"], ids=["to-http", "loop"]
)
async def test_fetch_refuses_bad_redirects(
    client: httpx.AsyncClient, api: respx.MockRouter, location: str
) -> None:
    api.get(f"{GRAPH}/{IMAGE.ref}").mock(return_value=media_info())
    api.get(MEDIA_URL).mock(return_value=httpx.Response(302, headers={"Location": location}))
    api.get("https://graph.test/loop").mock(
        return_value=httpx.Response(302, headers={"Location": "https://graph.test/loop"})
    )
    with pytest.raises(PermanentError):
        await adapter_for(client).fetch(IMAGE)


@pytest.mark.parametrize(
    ("resolved", "error"),
    [
        (graph_failure(100, title="Unsupported get request"), PermanentError),
        (graph_failure(131016, 503, "Service unavailable"), RetryableError),
        (httpx.Response(200, json={"id": "no url"}), PermanentError),
        (media_info(url="http://lookaside.graph.test/x"), PermanentError),
    ],
    ids=["gone", "unavailable", "no-url", "plain-http"],
)
async def test_fetch_resolve_errors(
    client: httpx.AsyncClient,
    api: respx.MockRouter,
    resolved: httpx.Response,
    error: type[Exception],
) -> None:
    api.get(f"{GRAPH}/{IMAGE.ref}").mock(return_value=resolved)
    with pytest.raises(error) as caught:
        await adapter_for(client).fetch(IMAGE)
    assert TOKEN not in str(caught.value)


async def test_fetch_refuses_a_ref_that_is_not_a_media_id(
    client: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    with pytest.raises(PermanentError):
        await adapter_for(client).fetch(IMAGE.model_copy(update={"ref": "../me/accounts"}))
    assert not api.calls


async def test_fetch_download_timeout_is_retryable(
    client: httpx.AsyncClient, api: respx.MockRouter
) -> None:
    api.get(f"{GRAPH}/{IMAGE.ref}").mock(return_value=media_info())
    api.get(MEDIA_URL).mock(side_effect=httpx.ConnectTimeout("slow"))
    with pytest.raises(RetryableError, match="whatsapp media download"):
        await adapter_for(client).fetch(IMAGE)


async def test_adapter_shape(client: httpx.AsyncClient) -> None:
    adapter = WhatsAppAdapter("acme", config(), client)
    assert (adapter.channel, adapter.takes_files, adapter.account) == (
        Channel.WHATSAPP,
        True,
        "acme",
    )


# --- issue 17: lenient reading, edits, Flow replies, Argentine numbers -----------------


def test_a_timestamp_sent_as_a_json_number_is_read() -> None:
    msg = only(_text_body(timestamp=1750000000))
    assert msg.occurred_at == datetime.fromtimestamp(1750000000, UTC)


def test_an_unreadable_field_degrades_its_message_and_spares_its_siblings() -> None:
    doc = raw("text")
    value = doc["entry"][0]["changes"][0]["value"]
    good = dict(first_message(doc))
    bad = {**good, "id": "wamid.BAD", "type": "location"}
    bad["location"] = {"latitude": "north", "longitude": 0}
    value["messages"] = [bad, good]
    parsed = parse(json.dumps(doc).encode())
    assert parsed.failures == ()
    first, second = parsed.events
    assert isinstance(first, Message) and isinstance(second, Message)
    assert first.external_id == "wamid.BAD" and first.location is None
    assert first.note == "Could not read and left out: location"
    assert "north" not in (first.note or "")
    assert second.text == good["text"]["body"]


def test_string_coordinates_are_read_as_numbers() -> None:
    msg = only(_text_body(type="location", location={"latitude": "-34.6", "longitude": "-58.4"}))
    assert msg.location is not None
    assert (msg.location.latitude, msg.location.longitude) == (-34.6, -58.4)


def test_a_sender_known_only_through_the_contacts_user_id_is_filed() -> None:
    doc = _text_body(**{"from": None})
    value = doc["entry"][0]["changes"][0]["value"]
    value["contacts"] = [{"profile": {"name": "Ann"}, "user_id": BSUID}]
    msg = only(doc)
    assert (msg.sender.external_id, msg.thread, msg.sender.display_name) == (BSUID, BSUID, "Ann")
    assert [i.kind for i in msg.sender.identities] == ["channel_user"]


def test_an_edit_is_the_new_content_marked_as_an_edit_of_the_original() -> None:
    doc = raw("text")
    message = first_message(doc)
    del message["text"]
    message["type"] = "edit"
    message["edit"] = {
        "original_message_id": "wamid.ORIGINAL",
        "message": {
            "context": {"id": "wamid.CTX"},
            "type": "image",
            "image": {"caption": "New caption", "mime_type": "image/jpeg", "id": "777"},
        },
    }
    msg = only(doc)
    assert (msg.edit_of, msg.text, msg.reply_to) == ("wamid.ORIGINAL", "New caption", "wamid.CTX")
    assert [a.ref for a in msg.attachments] == ["777"]
    text_edit = {
        "original_message_id": "wamid.O2",
        "message": {"type": "text", "text": {"body": "fixed"}},
    }
    message["edit"] = text_edit
    msg = only(doc)
    assert (msg.edit_of, msg.text, msg.attachments) == ("wamid.O2", "fixed", ())


def test_an_edit_whose_content_cannot_be_read_still_arrives() -> None:
    doc = raw("text")
    message = first_message(doc)
    del message["text"]
    message |= {"type": "edit", "edit": {"original_message_id": "wamid.O", "message": {}}}
    msg = only(doc)
    assert msg.edit_of == "wamid.O"
    assert msg.note == "Edited a message; the new content could not be read"


def test_a_flow_reply_is_its_answers_as_text() -> None:
    answers = {"flow_token": "OURS", "name": "Ann", "topics": ["billing", "login"], "n": 2}
    doc = _text_body(
        type="interactive",
        interactive={
            "type": "nfm_reply",
            "nfm_reply": {"name": "flow", "body": "Sent", "response_json": json.dumps(answers)},
        },
    )
    del first_message(doc)["text"]
    msg = only(doc)
    assert msg.text == "name: Ann\ntopics: billing, login\nn: 2"
    assert msg.note == "Flow reply (flow)"
    not_json = {"type": "nfm_reply", "nfm_reply": {"response_json": "{oops"}}
    first_message(doc)["interactive"] = not_json
    msg = only(doc)
    assert (msg.text, msg.note) == ("{oops", "Flow reply (flow); its answers are not JSON")


def test_argentine_wa_id_and_the_cards_number_without_9_are_one_phone() -> None:
    from deskbridge.identity.normalize import phone_key

    doc = _text_body(**{"from": "5491123456789"})
    doc["entry"][0]["changes"][0]["value"]["contacts"][0]["wa_id"] = "5491123456789"
    message = first_message(doc)
    del message["text"]
    message |= {
        "type": "contacts",
        "contacts": [
            {
                "name": {"formatted_name": "Me"},
                "phones": [{"phone": "+54 11 2345-6789", "wa_id": "5491123456789"}],
            }
        ],
    }
    msg = only(doc)
    phones = [i.value for i in msg.sender.identities if i.kind == "phone"]
    assert phones == ["+5491123456789"]  # the card's own spelling adds no second phone
    assert msg.contact is not None and msg.contact.phone is not None
    assert phone_key(msg.contact.phone) == phone_key(phones[0]) == "+541123456789"
