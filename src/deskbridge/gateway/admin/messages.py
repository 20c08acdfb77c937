"""``POST /admin/v1/messages``: a message the business sends the customer first (issue 23).

The contact is named like the contacts routes name it; ``flows.proactive`` decides the
conversation and the channel's rules. 202 with the delivery when queued, 200 with the
same delivery when the key was seen before, 409 when a rule refuses it (nothing written).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from deskbridge.flows import proactive
from deskbridge.gateway.admin.auth import Principal
from deskbridge.gateway.admin.contacts import _account, _contact_id, _parse
from deskbridge.gateway.admin.models import MessageBody, MessageQueued
from deskbridge.gateway.state import RUNTIME
from deskbridge.schemas import Channel, Template

__all__ = ["message_routes"]


async def send_route(request: web.Request, who: Principal) -> web.Response:
    rt = request.app[RUNTIME]
    body: MessageBody = await _parse(request, MessageBody)
    account = _account(rt, body.account, who)
    contact_id = await _contact_id(rt, account, body.to)
    template = (
        Template(
            name=body.template.name,
            language=body.template.language,
            params=tuple(body.template.params),
        )
        if body.template
        else None
    )
    out = proactive.Outgoing(
        account=account,
        contact_id=contact_id,
        key=body.key,
        text=body.text,
        template=template,
        channel=Channel(body.channel) if body.channel else None,
        tag=body.tag,
        human=body.human,
        author=body.author or who.sub,
    )
    try:
        queued = await proactive.queue_message(rt, out)
    except proactive.ProactiveRefused as exc:
        return web.json_response({"error": exc.code, "message": str(exc)}, status=409)
    if not queued.duplicate:
        await rt.audit.record(
            who.sub,
            "messages.send",
            1,
            {"account": account, "contact": contact_id, "delivery": queued.delivery_id},
        )
    answer = MessageQueued(
        delivery_id=queued.delivery_id,
        conversation_id=queued.conversation_id,
        channel=queued.channel.value,
        contact=contact_id,
        duplicate=queued.duplicate,
    )
    return web.json_response(
        answer.model_dump(mode="json"), status=200 if queued.duplicate else 202
    )


def message_routes() -> list[tuple[str, str, str, Any]]:
    return [("POST", "/messages", "messages:write", send_route)]
