"""``deskbridge send``: a message the business sends the customer first, through the admin
API (``POST /admin/v1/messages``, scope ``messages:write``)."""

from __future__ import annotations

import uuid
from typing import Any

import click

from deskbridge.cli.admin_api import CHANNEL_NAMES, EXIT_USAGE, api_for, api_options, die, out

__all__ = ["send"]


@click.command("send")
@click.option("--to", "to", required=True, help="Contact id, +E.164 number, email or channel:id.")
@click.option(
    "--channel",
    type=click.Choice(CHANNEL_NAMES),
    default=None,
    help="Default: the contact's preferred channel, else the one they used last.",
)
@click.option("--text", default=None, help="The message.")
@click.option("--template", default=None, help="An approved WhatsApp template's name.")
@click.option("--language", default="en_US", show_default=True, help="The template's language.")
@click.option("--param", "params", multiple=True, help="A template body parameter (repeat).")
@click.option("--tag", default=None, help="Messenger message tag, outside the 24-hour window.")
@click.option("--human", is_flag=True, help="A person wrote it (Messenger HUMAN_AGENT).")
@click.option("--key", default=None, help="Idempotency key: the same key sends once.")
@click.option("--account", default=None, help="The account (required when there are several).")
@api_options
def send(
    to: str,
    channel: str | None,
    text: str | None,
    template: str | None,
    language: str,
    params: tuple[str, ...],
    tag: str | None,
    human: bool,
    key: str | None,
    account: str | None,
    url: str | None,
) -> None:
    """Message a customer first, on their channel, within its rules (a template outside
    WhatsApp's window, a tag outside Messenger's, LINE's push quota, their opt-out).

    Run it again with the same --key and nothing is sent twice.

    \b
    Examples:
      deskbridge send --to +16505551234 --template order_delayed --param 4711 --key ord-4711
      deskbridge send --to telegram:700000001 --text "Your parcel left the depot."
    """
    if (text is None) == (template is None):
        die("give --text or --template (one of them)", EXIT_USAGE)
    if params and template is None:
        die("--param goes with --template", EXIT_USAGE)
    key = key or uuid.uuid4().hex
    body: dict[str, Any] = {"account": account, "to": to, "key": key, "human": human}
    if channel:
        body["channel"] = channel
    if text is not None:
        body["text"] = text
    if template is not None:
        body["template"] = {"name": template, "language": language, "params": list(params)}
    if tag:
        body["tag"] = tag
    data = api_for(url).call("POST", "/messages", body=body)
    state = "already queued under this key" if data.get("duplicate") else "queued"
    out.print(
        f"{state}: delivery {data['delivery_id']} on {data['channel']} "
        f"(contact {data['contact']}, key {key})"
    )
    out.print(f"follow it: deskbridge deliveries show {data['delivery_id']}")
