"""``GET /sandbox/demo.json``: what a ``deskbridge simulate`` in another shell, another
folder or with another environment needs to reach this demo instance and no other: the
data directory holding the demo secrets (readable only by the user running the demo),
the addresses of its SMTP and SIP listeners, the origins its widget accepts and the
provider its SMS channel stands for. Served only in demo mode, with the sandbox pages;
it carries no secret."""

from __future__ import annotations

from aiohttp import web

from deskbridge.config import EmailConfig, SipConfig, SmsBaseConfig, WebchatConfig, sms_provider
from deskbridge.config.demo import DEMO_ACCOUNT
from deskbridge.gateway.state import RUNTIME

__all__ = ["add_routes"]


async def demo_info(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    acc = rt.accounts.accounts[DEMO_ACCOUNT]
    listeners: dict[str, str] = {}
    for ch in acc.channels:
        if isinstance(ch, EmailConfig) and ch.inbound == "smtp":
            listeners["smtp_listen"] = ch.smtp_listen
        elif isinstance(ch, SipConfig):
            listeners["sip_listen"] = ch.listen
        elif isinstance(ch, WebchatConfig):
            listeners["webchat_origins"] = " ".join(ch.allowed_origins)
        elif isinstance(ch, SmsBaseConfig):
            listeners["sms_provider"] = sms_provider(ch)
    return web.json_response(
        {
            "account": DEMO_ACCOUNT,
            "data_dir": str(rt.settings.data_dir.resolve()),
            **listeners,
        },
        headers={"Cache-Control": "no-store"},
    )


def add_routes(app: web.Application, *, pages: bool) -> None:
    """The route, in demo mode (no accounts file) when the sandbox pages are on."""
    rt = app[RUNTIME]
    if pages and not rt.settings.production() and DEMO_ACCOUNT in rt.accounts.accounts:
        app.router.add_get("/sandbox/demo.json", demo_info)
