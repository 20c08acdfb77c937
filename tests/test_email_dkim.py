"""deskbridge's own DKIM check: aligned passes authenticate, nothing else does."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from deskbridge.adapters.email.adapter import EmailAdapter
from deskbridge.adapters.email.dkim_check import dkim_aligned
from deskbridge.config.accounts import EmailConfig
from deskbridge.schemas import Channel, Identity, Message, RawRequest, Sender

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PRIVATE = KEY.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
)
PUBLIC = base64.b64encode(
    KEY.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
)


def dns(name: bytes, timeout: int = 5) -> bytes | None:
    return b"v=DKIM1; k=rsa; p=" + PUBLIC if name == b"s1._domainkey.example.com." else None


def signed(domain: str = "example.com", sender: str = "ana@example.com") -> bytes:
    raw = (
        f"From: Ana <{sender}>\r\nTo: support@acme.example\r\nSubject: Hi\r\n"
        "Date: Sun, 22 Nov 2026 09:00:00 +0000\r\nMessage-ID: <d1@example.com>\r\n"
        "\r\nHello there.\r\n"
    ).encode()
    signature = dkim.sign(
        raw, b"s1", domain.encode(), PRIVATE, include_headers=[b"from", b"subject"]
    )
    return signature + raw


def test_an_aligned_signature_authenticates() -> None:
    assert dkim_aligned(signed(), "example.com", dnsfunc=dns)
    assert dkim_aligned(signed(), "mail.example.com", dnsfunc=dns)  # same organizational domain


def test_a_signature_of_another_domain_or_a_tampered_mail_does_not() -> None:
    assert not dkim_aligned(signed(), "other.example", dnsfunc=dns)
    tampered = signed().replace(b"Hello there.", b"Send money.")
    assert not dkim_aligned(tampered, "example.com", dnsfunc=dns)
    assert not dkim_aligned(b"not a mail", "example.com", dnsfunc=dns)


async def test_the_adapter_upgrades_only_an_aligned_sender() -> None:
    config = EmailConfig(
        address="support@acme.example", inbound="smtp", sandbox=True, verify_dkim=True
    )

    async def nowhere(msg: object) -> None:
        raise AssertionError("nothing is sent here")

    adapter = EmailAdapter("acme", config, deliver=nowhere, dnsfunc=dns)
    msg = Message(
        account="acme",
        channel=Channel.EMAIL,
        dedup_key="d1@example.com",
        thread="t",
        occurred_at=datetime.now(UTC),
        external_id="d1@example.com",
        sender=Sender(
            external_id="ana@example.com",
            identities=(Identity(kind="email", value="ana@example.com", source="email_from"),),
        ),
    )
    upgraded = await adapter.authenticate_sender(
        RawRequest(method="SMTP", path="smtp:acme", body=signed()), msg
    )
    [ident] = upgraded.sender.identities
    assert (ident.strength, ident.source) == ("strong", "email_dkim")
    forged = await adapter.authenticate_sender(
        RawRequest(method="SMTP", path="smtp:acme", body=signed(domain="attacker.example")), msg
    )
    assert forged.sender.identities[0].strength == "weak"
