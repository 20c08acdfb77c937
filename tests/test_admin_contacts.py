"""``/admin/v1/contacts`` and ``deskbridge contacts``: show, link, unlink, suggestions."""

from __future__ import annotations

import json

from deskbridge.gateway import create_app
from deskbridge.gateway.admin import PREFIX
from deskbridge.schemas import Channel, Identity

from .test_admin_api import SECRET, auth, token
from .test_admin_cli import run

READ, WRITE = "contacts:read", "contacts:write"


def wa(wa_id: str) -> tuple[Identity, ...]:
    return (
        Identity(kind="channel_user", value=wa_id, channel=Channel.WHATSAPP, strength="strong"),
        Identity(kind="phone", value="+" + wa_id, strength="strong"),
    )


def tg(user: str, email: str | None = None) -> tuple[Identity, ...]:
    out = [Identity(kind="channel_user", value=user, channel=Channel.TELEGRAM, strength="strong")]
    if email:
        out.append(Identity(kind="email", value=email, strength="weak"))
    return tuple(out)


async def test_show_link_unlink_and_decide_over_the_api(make_runtime, aiohttp_client) -> None:
    rt = make_runtime(admin_jwt_secret=SECRET)
    client = await aiohttp_client(create_app(rt, role="serve"))
    ana, _ = await rt.conversations.observe_contact("acme", wa("16505551234"), "Ana")
    bob, _ = await rt.conversations.observe_contact("acme", tg("42"), "Bob")

    resp = await client.get(f"{PREFIX}/contacts/+16505551234", headers=auth(token(READ)))
    assert resp.status == 200
    shown = await resp.json()
    assert shown["id"] == ana.id and shown["display_name"] == "Ana"
    assert {i["kind"] for i in shown["identities"]} == {"channel_user", "phone"}
    assert shown["edges"][0]["merging"] is True

    # scopes: reading is not writing
    body = {"a": "telegram:42", "b": "+16505551234", "reason": "same person, confirmed"}
    resp = await client.post(f"{PREFIX}/contacts/link", json=body, headers=auth(token(READ)))
    assert resp.status == 403
    resp = await client.post(f"{PREFIX}/contacts/link", json=body, headers=auth(token(WRITE)))
    assert resp.status == 200
    linked = await resp.json()
    assert linked["contact"] == min(ana.id, bob.id)
    assert await rt.conversations.graph.find("acme", tg("42")[0]) == linked["contact"]

    resp = await client.post(f"{PREFIX}/contacts/unlink", json=body, headers=auth(token(WRITE)))
    assert resp.status == 200
    split = await resp.json()
    assert split["split_off"] is not None
    resp = await client.post(f"{PREFIX}/contacts/unlink", json=body, headers=auth(token(WRITE)))
    assert resp.status == 404

    # bad input changes nothing
    bad = {"a": "not a ref", "b": "+16505551234", "reason": "x"}
    resp = await client.post(f"{PREFIX}/contacts/link", json=bad, headers=auth(token(WRITE)))
    assert resp.status == 400 and "channel:id" in (await resp.json())["message"]
    resp = await client.get(f"{PREFIX}/contacts/+442079460000", headers=auth(token(READ)))
    assert resp.status == 404

    # a weak claim raises a suggestion; accepting it merges
    carol, _ = await rt.conversations.observe_contact(
        "acme",
        (Identity(kind="email", value="carol@example.com", strength="strong", source="dmarc"),),
        "Carol",
    )
    claim, _ = await rt.conversations.observe_contact("acme", tg("77", "carol@example.com"), "C")
    resp = await client.get(f"{PREFIX}/contacts/suggestions", headers=auth(token(READ)))
    [suggestion] = (await resp.json())["suggestions"]
    assert set(suggestion["contacts"]) == {carol.id, claim.id}
    decide = {"contacts": suggestion["contacts"], "accept": True}
    resp = await client.post(
        f"{PREFIX}/contacts/suggestions/decide", json=decide, headers=auth(token(WRITE))
    )
    assert resp.status == 200
    assert await rt.conversations.graph.resolve("acme", claim.id) == min(carol.id, claim.id)
    resp = await client.get(f"{PREFIX}/audit", headers=auth(token("audit:read")))
    actions = [e["action"] for e in (await resp.json())["entries"]]
    assert actions[:3] == ["contacts.accept", "contacts.unlink", "contacts.link"]
    assert "16505551234" not in json.dumps(await resp.json())  # ids, never values


async def test_the_contacts_commands(make_runtime, aiohttp_server) -> None:
    rt = make_runtime(admin_jwt_secret=SECRET)
    server = await aiohttp_server(create_app(rt, role="serve"))
    url = str(server.make_url("")).rstrip("/")
    ana, _ = await rt.conversations.observe_contact("acme", wa("16505551234"), "Ana")
    await rt.conversations.observe_contact("acme", tg("42"), "Bob")
    tok = token(READ, WRITE)

    shown = await run("contacts", "show", "whatsapp:16505551234", "--json", "--url", url, tok=tok)
    assert shown.exit_code == 0 and json.loads(shown.stdout)["id"] == ana.id
    table = await run("contacts", "show", "+16505551234", "--url", url, tok=tok)
    assert "identities" in table.stdout and "+16505551234" in table.stdout
    linked = await run(
        "contacts", "link", "telegram:42", "+16505551234", "--reason", "ok", "--url", url, tok=tok
    )
    assert linked.exit_code == 0 and "linked: contact" in linked.stdout
    missing = await run("contacts", "show", "+442079460000", "--url", url, tok=tok)
    assert missing.exit_code == 3 and "no contact" in missing.stderr
    listed = await run("contacts", "suggestions", "--json", "--url", url, tok=tok)
    assert json.loads(listed.stdout) == {"suggestions": []}


async def test_export_then_forget_from_the_command_line(
    make_runtime, aiohttp_server, tmp_path
) -> None:
    rt = make_runtime(admin_jwt_secret=SECRET)
    server = await aiohttp_server(create_app(rt, role="serve"))
    url = str(server.make_url("")).rstrip("/")
    ana, _ = await rt.conversations.observe_contact("acme", wa("16505551234"), "Ana")
    tok = token(READ, WRITE)

    out = tmp_path / "ana.json"
    exported = await run(
        "contacts", "export", "+16505551234", "--out", str(out), "--url", url, tok=tok
    )
    assert exported.exit_code == 0, exported.output
    assert out.stat().st_mode & 0o777 == 0o600
    assert "+16505551234" in out.read_text()

    forgot = await run("contacts", "forget", "+16505551234", "--url", url, tok=tok)
    assert forgot.exit_code == 0, forgot.output
    assert f"forgot contact {ana.id}" in forgot.stdout
    again = await run("contacts", "forget", ana.id, "--url", url, tok=tok)
    assert again.exit_code == 0 and "nothing left" in again.stdout
    gone = await run("contacts", "show", "+16505551234", "--url", url, tok=tok)
    assert gone.exit_code == 3


async def test_an_operator_link_can_merge_the_zendesk_users(make_runtime, aiohttp_client) -> None:
    from .desks.fake_zendesk import FakeZendesk
    from .test_desk_conformance import yaml_for

    fake = FakeZendesk()
    await fake.start()
    try:
        rt = make_runtime(yaml_for(fake), admin_jwt_secret=SECRET)
        client = await aiohttp_client(create_app(rt, role="serve"))
        ana, _ = await rt.conversations.observe_contact("acme", wa("16505551234"), "Ana")
        bob, _ = await rt.conversations.observe_contact("acme", tg("42"), "Ana too")
        desk = rt.desk("acme")
        for contact in (ana, bob):
            full = await rt.conversations.contact("acme", contact.id)
            user = await desk.ensure_user(full)
            await rt.conversations.set_desk_user("acme", "zendesk", contact.id, f"{user}|fp")
        assert len(fake.users()) == 2
        body = {
            "a": "telegram:42",
            "b": "+16505551234",
            "reason": "confirmed on the phone",
            "merge_desk_users": True,
        }
        resp = await client.post(f"{PREFIX}/contacts/link", json=body, headers=auth(token(WRITE)))
        assert resp.status == 200, await resp.text()
        done = (await resp.json())["desk"]
        assert len(done) == 1 and "merged into" in done[0]
        [user] = fake.users()
        assert "+16505551234" in user.phones
    finally:
        await fake.stop()


def sip_from(uri: str, phone: str) -> tuple[Identity, ...]:
    """A SIP sender with only a From header: nothing vouches for it."""
    return (
        Identity(kind="phone", value=phone, strength="weak", source="sip-from"),
        Identity(
            kind="channel_user", value=uri, channel=Channel.SIP, strength="weak", source="sip-from"
        ),
    )


async def test_a_contact_is_found_by_an_address_it_wrote_from_unverified(
    make_runtime, aiohttp_server
) -> None:
    rt = make_runtime(admin_jwt_secret=SECRET)
    server = await aiohttp_server(create_app(rt, role="serve"))
    url = str(server.make_url("")).rstrip("/")
    tok = token(READ)
    # the demo's ticket #5: an email sender nobody authenticated
    unauth = (
        Identity(kind="email", value="customer@example.com", strength="weak", source="email_from"),
    )
    mail, _ = await rt.conversations.observe_contact("acme", unauth, None)

    shown = await run("contacts", "show", "customer@example.com", "--json", "--url", url, tok=tok)
    assert shown.exit_code == 0, shown.stderr  # was "no contact"
    data = json.loads(shown.stdout)
    assert data["id"] == mail.id and data["unverified_match"] == "customer@example.com"
    table = await run("contacts", "show", "customer@example.com", "--url", url, tok=tok)
    assert "an unverified identity" in table.stdout and "no (unverified)" in table.stdout

    # a SIP From alone: found by its number or its URI, each marked unverified
    sip, _ = await rt.conversations.observe_contact(
        "acme", sip_from("sip:+14155550199@trunk.example", "+14155550199"), None
    )
    for ref in ("+14155550199", "sip:sip:+14155550199@trunk.example"):
        shown = await run("contacts", "show", ref, "--json", "--url", url, tok=tok)
        assert shown.exit_code == 0, shown.stderr
        assert json.loads(shown.stdout)["id"] == sip.id
        assert json.loads(shown.stdout)["unverified_match"] == ref

    # the same number claimed from two URIs: two contacts, and the command says so
    other, _ = await rt.conversations.observe_contact(
        "acme", sip_from("sip:+14155550199@other.example", "+14155550199"), None
    )
    assert other.id != sip.id
    both = await run("contacts", "show", "+14155550199", "--url", url, tok=tok)
    assert both.exit_code != 0 and "several contacts" in both.stderr
    assert sip.id in both.stderr and other.id in both.stderr
    # a verified owner always wins over claims
    owner, _ = await rt.conversations.observe_contact("acme", wa("14155550199"), "Owner")
    shown = await run("contacts", "show", "+14155550199", "--json", "--url", url, tok=tok)
    data = json.loads(shown.stdout)
    assert data["id"] == owner.id and "unverified_match" not in data
