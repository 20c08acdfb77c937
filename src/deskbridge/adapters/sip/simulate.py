"""What a carrier's trunk sends: a SIP MESSAGE (or a call) to our listener, for
``deskbridge simulate sip`` and the tests."""

from __future__ import annotations

import asyncio
import secrets

from deskbridge.adapters.sip.client import send_request
from deskbridge.adapters.sip.message import Headers, Request
from deskbridge.adapters.sip.transaction import Timers, new_branch, new_tag
from deskbridge.adapters.sip.uri import TelUri, parse_uri

__all__ = ["sample_request", "send_sample"]


def sample_request(
    method: str,
    *,
    text: str,
    sender: str,
    target: str,
    host: str,
    port: int,
    transport: str = "UDP",
    name: str | None = None,
    branch: str | None = None,
    call_id: str | None = None,
    cseq: int = 1,
) -> Request:
    """A MESSAGE or INVITE from ``sender`` (a sip: or tel: URI) to ``target``. A tel:
    sender is also asserted (P-Asserted-Identity), as a carrier's trunk does."""
    h = Headers()
    via_host = f"[{host}]" if ":" in host else host
    h.add("Via", f"SIP/2.0/{transport} {via_host}:{port};branch={branch or new_branch()};rport")
    h.add("Max-Forwards", "70")
    display = f'"{name}" ' if name else ""
    h.add("From", f"{display}<{sender}>;tag={new_tag()}")
    h.add("To", f"<{target}>")
    h.add("Call-ID", call_id or f"{secrets.token_hex(12)}@{via_host}")
    h.add("CSeq", f"{cseq} {method}")
    if isinstance(parse_uri(sender), TelUri):
        h.add("P-Asserted-Identity", f"<{sender}>")
    body = b""
    if method == "INVITE":
        h.add("Contact", f"<sip:caller@{via_host}:{port}>")
    else:
        h.add("Content-Type", "text/plain;charset=UTF-8")
        body = text.encode()
    return Request(method, target, h, body)


async def send_sample(
    dest: tuple[str, int],
    *,
    text: str,
    sender: str,
    target: str,
    name: str | None = None,
    call: bool = False,
    timers: Timers | None = None,
) -> int:
    """Send one MESSAGE (or INVITE, then ACK its final answer) over UDP; the status."""
    timers = timers or Timers(t1=0.25)
    method = "INVITE" if call else "MESSAGE"
    sent: list[Request] = []

    def build(host: str, port: int, transport: str) -> Request:
        req = sample_request(
            method, text=text, sender=sender, target=target, host=host, port=port, name=name
        )
        sent.append(req)
        return req

    resp = await send_request(build, dest, transport="udp", timers=timers)
    if call and resp.status >= 300:
        # §17.1.1.3: the ACK of a non-2xx answer reuses the INVITE's Via and branch
        invite = sent[-1]
        h = Headers()
        h.add("Via", invite.headers.get_all("Via")[0])
        h.add("Max-Forwards", "70")
        h.add("From", invite.headers.get("From") or "")
        h.add("To", resp.headers.get("To") or "")
        h.add("Call-ID", invite.call_id)
        h.add("CSeq", f"{invite.cseq[0]} ACK")
        ack = Request("ACK", invite.uri, h)
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, remote_addr=dest
        )
        try:
            transport.sendto(ack.encode())
        finally:
            transport.close()
    return resp.status
