"""Agent replies out as SIP MESSAGE (RFC 3428), from the number the customer wrote to.

- The next hop is the configured outbound proxy, else the trunk that delivered the
  customer's last message (its address and Via port), over the same transport.
- Over UDP the whole request stays within 1300 bytes (RFC 3428 §8, RFC 3261 §18.1.1):
  longer texts are split on UTF-8 boundaries into several MESSAGEs. Room is kept for a
  digest ``Authorization`` header when credentials are configured.
- Each part has a Call-ID derived from the reply and its index, so a retried delivery
  resends the same Call-ID and CSeq and a receiver that dedupes (§8) shows it once.
- A 401/407 is answered once with the configured digest credentials (MD5 or SHA-256).
  2xx means the next hop took it. Timer F, 408, 480, 5xx are worth retrying (503's
  Retry-After honoured); every other 4xx/6xx is permanent.
"""

from __future__ import annotations

import functools
import hashlib
import re
import ssl
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ClassVar, Literal

from deskbridge.adapters.base import MediaLinks, Progress, send_parts
from deskbridge.adapters.sip.client import Endpoint, open_endpoint, send_request
from deskbridge.adapters.sip.digest import authorization, parse_challenge
from deskbridge.adapters.sip.message import Headers, Request, Response
from deskbridge.adapters.sip.transaction import Timers, new_branch, new_tag
from deskbridge.adapters.sip.uri import SipSyntaxError, SipUri, parse_uri
from deskbridge.adapters.text import split_text
from deskbridge.config.accounts import SipConfig
from deskbridge.errors import PermanentError, RetryableError
from deskbridge.schemas import AgentReply, Attachment, Channel, ChannelAddress, SendReceipt, Upload

__all__ = ["UDP_LIMIT", "SipAdapter"]

UDP_LIMIT = 1300
"""RFC 3428 §8: a MESSAGE outside a media session stays within 1300 bytes on UDP."""
STREAM_LIMIT = 16 * 1024
"""Per request over TCP/TLS: carriers relay SMS, so anything longer is split anyway."""
_AUTH_ROOM = 420
"""Bytes kept free for a digest answer (header name, quoted realm/nonce/uri/cnonce)."""
_WORST_VIA_HOST = "[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255]"

Outbox = Callable[[dict[str, Any]], Awaitable[None]]


def _retry_after(resp: Response) -> float | None:
    value = (resp.headers.get("Retry-After") or "").partition(";")[0].partition("(")[0].strip()
    return float(value) if value.isdigit() else None


class SipAdapter:
    channel: ClassVar[Channel] = Channel.SIP
    takes_files: ClassVar[bool] = False

    def __init__(
        self,
        account: str,
        config: SipConfig,
        links: MediaLinks,
        *,
        outbox: Outbox | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.account = account
        self.config = config
        self._links = links
        self._outbox = outbox if config.sandbox else None
        self._timers = Timers(config.timers.t1, config.timers.t2, config.timers.t4)
        self._tls = tls

    async def fetch(self, attachment: Attachment) -> Upload:
        raise PermanentError("SIP MESSAGE texts carry no files")

    async def reengage(self, to: ChannelAddress) -> SendReceipt:
        raise PermanentError("SIP has no reply window to reopen")

    # -- addressing --------------------------------------------------------------------

    def _target(self, to: ChannelAddress) -> str:
        """The Request-URI: the customer's number at the trunk domain, else their URI."""
        ctx = to.context
        phone = to.thread if to.thread.startswith("+") else None
        if phone and self.config.trunk_domain:
            return f"sip:{phone}@{self.config.trunk_domain};user=phone"
        reply_uri = ctx.get("reply_uri")
        if reply_uri:
            return reply_uri
        if phone:
            return f"tel:{phone}"
        return to.thread

    def _next_hop(self, to: ChannelAddress, target: str) -> tuple[tuple[str, int], str]:
        c = self.config
        if c.outbound_proxy:
            m = re.fullmatch(r"\[?([^\]]+?)\]?(?::(\d{1,5}))?", c.outbound_proxy)
            assert m is not None  # the config pattern guarantees it
            default = 5061 if c.outbound_transport == "tls" else 5060
            return (m.group(1), int(m.group(2)) if m.group(2) else default), c.outbound_transport
        hop = to.context.get("next_hop")
        transport = to.context.get("transport", "udp")
        if hop:
            hop_host, _, hop_port = hop.partition("|")
            return (hop_host, int(hop_port)), transport
        try:
            uri = parse_uri(target)
        except SipSyntaxError:
            raise PermanentError("the customer's address is not a SIP URI") from None
        if not isinstance(uri, SipUri):
            raise PermanentError("a tel: address needs outbound_proxy to route it")
        return (uri.host.strip("[]"), uri.port or 5060), transport

    def _from(self, to: ChannelAddress) -> str:
        served = to.context.get("served") or (self.config.numbers[:1] or ["support"])[0]
        user_phone = ";user=phone" if served.startswith("+") else ""
        return f"<sip:{served}@{self.config.domains[0]}{user_phone}>"

    # -- sending -----------------------------------------------------------------------

    def _request(
        self,
        *,
        target: str,
        sender: str,
        from_tag: str,
        call_id: str,
        cseq: int,
        text: str,
        host: str,
        port: int,
        transport: str,
        auth: tuple[str, str] | None = None,
    ) -> Request:
        h = Headers()
        h.add("Via", f"SIP/2.0/{transport} {host}:{port};branch={new_branch()};rport")
        h.add("Max-Forwards", "70")
        h.add("From", f"{sender};tag={from_tag}")
        h.add("To", f"<{target}>")
        h.add("Call-ID", call_id)
        h.add("CSeq", f"{cseq} MESSAGE")
        if auth is not None:
            h.add(*auth)
        h.add("Content-Type", "text/plain;charset=UTF-8")
        h.add("User-Agent", "deskbridge")
        return Request("MESSAGE", target, h, text.encode())

    def _parts(self, text: str, target: str, sender: str, transport: str) -> list[str]:
        limit = UDP_LIMIT if transport == "udp" else STREAM_LIMIT
        probe = self._request(
            target=target,
            sender=sender,
            from_tag=new_tag(),
            call_id="x" * 64 + "@deskbridge",
            cseq=2,
            text="",
            host=_WORST_VIA_HOST,
            port=65535,
            transport="TCP" if transport != "udp" else "UDP",
        )
        room = limit - len(probe.encode()) - 4  # Content-Length grows by up to 4 digits
        if self.config.username:
            room -= _AUTH_ROOM + len(self.config.username) + len(target)
        if room < 64:
            raise PermanentError("the SIP headers leave no room for text within 1300 bytes")
        return split_text(text, room, utf8=True)

    def _text(self, reply: AgentReply) -> str:
        text = reply.text
        if reply.attachments:
            # a MESSAGE carries text; files go as links the customer can open
            links = [self._links.url_for(self.account, a) for a in reply.attachments]
            text = "\n".join([text, *links]) if text else "\n".join(links)
        return text

    async def send(
        self,
        reply: AgentReply,
        to: ChannelAddress,
        files: Sequence[Upload],
        progress: Progress | None = None,
    ) -> SendReceipt:
        """The text as MESSAGE requests (RFC 3428), one per segment of at most 1300 bytes
        on UDP. Parts are the segments; ``progress`` keeps the accepted ones (2xx) and a
        retry resumes at the first segment not accepted. SIP has no idempotency key across
        transactions: a segment whose transaction timed out (Timer F) is sent again."""
        text = self._text(reply).strip()
        if not text:
            raise PermanentError("nothing to send: the reply has no text")
        target = self._target(to)
        sender = self._from(to)
        dest, transport = self._next_hop(to, target)
        if transport not in ("udp", "tcp", "tls"):
            transport = "udp"
        parts = self._parts(text, target, sender, transport)
        # every request of this reply goes over one socket or connection: a challenge's
        # retry must come from where the challenge went (see client.UdpEndpoint)
        endpoint: Endpoint | None = None
        if self._outbox is None:
            try:
                endpoint = await open_endpoint(
                    dest,
                    transport,  # type: ignore[arg-type]
                    timers=self._timers,
                    tls=self._tls,
                )
            except TimeoutError:
                raise RetryableError("no connection to the SIP next hop (Timer F)") from None
            except OSError as exc:
                raise RetryableError(
                    f"cannot reach the SIP next hop: {exc.strerror or type(exc).__name__}"
                ) from None

        async def segment(i: int, part: str) -> str:
            seed = f"{self.account}\x1f{reply.dedup_key}\x1f{i}".encode()
            call_id = hashlib.sha256(seed).hexdigest()[:32] + "@deskbridge"
            from_tag = hashlib.sha256(seed + b"tag").hexdigest()[:16]
            await self._send_one(
                target,
                sender,
                from_tag,
                call_id,
                part,
                dest,
                transport,  # type: ignore[arg-type]
                endpoint,
            )
            return call_id

        try:
            calls = [functools.partial(segment, i, part) for i, part in enumerate(parts)]
            ids = await send_parts(progress, calls)
        finally:
            if endpoint is not None:
                await endpoint.aclose()
        return SendReceipt(external_ids=ids)

    async def _send_one(
        self,
        target: str,
        sender: str,
        from_tag: str,
        call_id: str,
        text: str,
        dest: tuple[str, int],
        transport: Literal["udp", "tcp", "tls"],
        endpoint: Endpoint | None = None,
    ) -> None:
        auth: tuple[str, str] | None = None
        for cseq in (1, 2):

            def build(
                host: str,
                port: int,
                name: str,
                cseq: int = cseq,
                auth: tuple[str, str] | None = auth,
            ) -> Request:
                via_host = f"[{host}]" if ":" in host else host
                return self._request(
                    target=target,
                    sender=sender,
                    from_tag=from_tag,
                    call_id=call_id,
                    cseq=cseq,
                    text=text,
                    host=via_host,
                    port=port,
                    transport=name,
                    auth=auth,
                )

            if self._outbox is not None:
                req = build("192.0.2.1", 5060, transport.upper())
                await self._outbox(
                    {
                        "channel": "sip",
                        "method": "MESSAGE",
                        "to": target,
                        "text": text,
                        "id": call_id,
                        "detail": req.encode().decode("utf-8", "replace"),
                    }
                )
                return
            try:
                resp = await send_request(
                    build,
                    dest,
                    transport=transport,
                    timers=self._timers,
                    tls=self._tls,
                    endpoint=endpoint,
                )
            except TimeoutError:
                # the request went out: the next hop may have taken it and lost the answer
                raise RetryableError(
                    "no answer from the SIP next hop (Timer F)", outcome="unknown"
                ) from None
            except OSError as exc:
                raise RetryableError(
                    f"cannot reach the SIP next hop: {exc.strerror or type(exc).__name__}"
                ) from None
            if 200 <= resp.status < 300:
                return
            if resp.status in (401, 407) and cseq == 1:
                auth = self._answer(resp, target)
                continue
            raise self._error(resp)

    def _answer(self, resp: Response, target: str) -> tuple[str, str]:
        c = self.config
        if c.username is None or c.password is None:
            raise PermanentError(
                f"the SIP next hop asks for credentials ({resp.status}) and none are configured",
                status=resp.status,
            )
        name = "WWW-Authenticate" if resp.status == 401 else "Proxy-Authenticate"
        answer = "Authorization" if resp.status == 401 else "Proxy-Authorization"
        problems: list[str] = []
        # RFC 8760 §2.4: several challenges, one per algorithm, strongest first is ours
        values = resp.headers.get_all(name)
        values.sort(key=lambda v: 0 if "sha-256" in v.lower() else 1)
        for value in values:
            try:
                challenge = parse_challenge(value)
                return answer, authorization(
                    challenge,
                    method="MESSAGE",
                    uri=target,
                    username=c.username,
                    password=c.password.get_secret_value(),
                )
            except SipSyntaxError as exc:
                problems.append(str(exc))
        raise PermanentError(
            f"cannot answer the SIP challenge: {'; '.join(problems) or 'no challenge'}",
            status=resp.status,
        )

    def _error(self, resp: Response) -> PermanentError | RetryableError:
        what = f"SIP {resp.status} {resp.reason[:80]}"
        if resp.status in (401, 407):
            return PermanentError(f"{what}: the credentials were refused", status=resp.status)
        if resp.status in (408, 504):
            # a proxy gave up waiting for the next hop, which may have taken the request
            return RetryableError(
                what, status=resp.status, retry_after=_retry_after(resp), outcome="unknown"
            )
        if resp.status == 480 or 500 <= resp.status < 600:
            return RetryableError(what, status=resp.status, retry_after=_retry_after(resp))
        return PermanentError(what, status=resp.status)
