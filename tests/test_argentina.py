"""One Argentine identity on every channel: ``+54 9 11 ...`` (how mobiles are dialled
from abroad, and WhatsApp's wa_id) and ``+54 11 ...`` (how many SIP trunks present them)
are one contact and one conversation per channel, and the desk user's phone keeps the
mobile form whichever spelling wrote last."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from deskbridge.adapters.sip.simulate import send_sample
from deskbridge.adapters.whatsapp import sample_message
from deskbridge.gateway import create_app
from deskbridge.listeners.sip import start_sip_listeners
from deskbridge.outbound.common import phones
from deskbridge.schemas import Channel, Contact, Identity

from .conftest import META_SECRET, META_VERIFY, WA_NUMBER, drain
from .desks.fake_zendesk import FakeZendesk
from .test_e2e_meta import meta_headers

MOBILE = "+5491123456789"
SHORT = "+541123456789"
TRUNK = "sip:+541150000000@sip.acme.example"


def yaml_for(fake: FakeZendesk) -> str:
    return f"""
apps:
  meta:
    type: meta
    app_secret: "{META_SECRET}"
    verify_token: "{META_VERIFY}"
accounts:
  acme:
    desk: {fake.desk_yaml()}
    channels:
      - type: whatsapp
        app: meta
        phone_number_id: "{WA_NUMBER}"
        access_token: wa-access-token
        base_url: https://graph.test
      - type: sip
        listen: "127.0.0.1:0"
        transports: [udp]
        domains: [sip.acme.example]
        numbers: ["+541150000000"]
        default_region: AR
        trusted_peers: [127.0.0.1/32]
        timers: {{t1: 0.02, t2: 0.16, t4: 0.1}}
"""


def test_the_mobile_form_is_the_phone_a_desk_shows() -> None:
    def contact(*values: str) -> Contact:
        return Contact(
            id="c1",
            account="acme",
            created_at=datetime.now(UTC),
            identities=tuple(Identity(kind="phone", value=v, strength="strong") for v in values),
        )

    assert phones(contact(SHORT, MOBILE)) == [MOBILE, SHORT]
    assert phones(contact(MOBILE, SHORT)) == [MOBILE, SHORT]
    assert phones(contact("+14155550123", SHORT, MOBILE)) == ["+14155550123", MOBILE, SHORT]
    assert phones(contact(SHORT)) == [SHORT]


async def test_sip_and_whatsapp_spellings_are_one_contact_and_keep_the_mobile_phone(
    make_runtime: Any, aiohttp_client: Any, respx_mock: Any
) -> None:
    respx_mock.route(host="127.0.0.1").pass_through()
    fake = FakeZendesk()
    await fake.start()
    try:
        rt = make_runtime(yaml_for(fake))
        client = await aiohttp_client(create_app(rt, role="serve"))
        [listener] = await start_sip_listeners(rt)
        try:
            dest = listener.addresses()["udp"]
            # a missed call in the mobile form, then a text in the short form
            assert await send_sample(
                dest, text="", sender=f"tel:{MOBILE}", target=TRUNK, call=True
            ) in (480, 486, 603)
            await drain(rt)
            assert (
                await send_sample(
                    dest, text="Hola, me llamaron?", sender=f"tel:{SHORT}", target=TRUNK
                )
                == 200
            )
            await drain(rt)
        finally:
            await listener.close()
        # WhatsApp names the same person by the wa_id (the mobile form, without +)
        body = sample_message(
            "Soy yo, por WhatsApp",
            phone_number_id=WA_NUMBER,
            wa_id=MOBILE.lstrip("+"),
            name="Ana",
            message_id="wamid.AR1",
            timestamp=int(time.time()),
        )
        resp = await client.post("/webhooks/whatsapp", data=body, headers=meta_headers(body))
        assert resp.status == 200
        await drain(rt)
        # and a later SIP text in the short form again
        [listener] = await start_sip_listeners(rt)
        try:
            dest = listener.addresses()["udp"]
            assert (
                await send_sample(dest, text="Sigo aca", sender=f"tel:{SHORT}", target=TRUNK) == 200
            )
            await drain(rt)
        finally:
            await listener.close()

        sip_conv = rt.conversations.conversation_id("acme", Channel.SIP, SHORT)
        assert sip_conv == rt.conversations.conversation_id("acme", Channel.SIP, "+541123456789")
        [user] = fake.users()  # one contact: one desk user
        assert user.phones[0] == MOBILE
        tickets = fake.tickets()
        # one ticket per conversation: SIP (call and texts together) and WhatsApp
        sip = [t for t in tickets if any("Hola" in p.text for p in t.parts)]
        assert len(sip) == 1 and len(tickets) == 2
        assert [p.text for p in sip[0].parts][1:] == ["Hola, me llamaron?", "Sigo aca"]
        assert {t.user_id for t in tickets} == {user.id}
    finally:
        await fake.stop()
