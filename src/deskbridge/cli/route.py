"""``deskbridge route --explain``: which routing rules fire for a sample message, offline
(the accounts file only; no Redis, no VIP lookup URL)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click

from deskbridge.config import Settings, load_accounts
from deskbridge.errors import ConfigError
from deskbridge.routing.enrich import detect_language, email_domain, phone_facts, tags_for
from deskbridge.routing.rules import Facts, evaluate
from deskbridge.schemas import Channel

__all__ = ["route"]


@click.command()
@click.option(
    "--config",
    "config",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Accounts file (YAML). Default: $DESKBRIDGE_CONFIG, else the demo account (whose "
    "rules docs/routing.md describes).",
)
@click.option(
    "--account", default="demo", show_default=True, help="The account whose rules to run."
)
@click.option(
    "--channel", type=click.Choice([c.value for c in Channel]), required=True, help="Channel."
)
@click.option("--text", required=True, help="The customer's message.")
@click.option("--from", "sender", default=None, help="Their number (+E.164) or email.")
@click.option("--vip", is_flag=True, help="Treat the sender as a VIP.")
@click.option("--at", "at", default=None, help="When (ISO 8601 with offset; default: now).")
@click.option("--explain", is_flag=True, help="Show every rule's conditions and verdicts.")
def route(
    config: Path | None,
    account: str,
    channel: str,
    text: str,
    sender: str | None,
    vip: bool,
    at: str | None,
    explain: bool,
) -> None:
    """Show what the account's routing decides for a sample message.

    \b
    Example:
      deskbridge route --config accounts.yaml --account acme --channel whatsapp \\
        --text "Quiero un reembolso" --from +5491123456789 --explain
    """
    from deskbridge.adapters.demo import demo_accounts

    settings = Settings()
    path = config or settings.config
    try:
        # the demo's routing needs none of its secrets: nothing is written for it
        accounts = load_accounts(path) if path else demo_accounts(settings.data_dir, write=False)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    acc = accounts.accounts.get(account)
    if acc is None:
        raise click.UsageError(f"no account {account!r} in {path or 'the demo'}")
    routing = acc.routing
    if routing is None:
        raise click.ClickException(f"account {account} has no routing: block")
    when = datetime.fromisoformat(at) if at else datetime.now(UTC)
    if when.tzinfo is None:
        raise click.UsageError("--at needs an offset (e.g. 2026-11-23T09:30:00+01:00)")
    facts = phone_facts(sender) if sender and sender.startswith("+") else None
    language = detect_language(text, routing.languages).language if routing.languages else None
    tags = tags_for(text, [k.rule() for k in routing.keywords])
    decision = evaluate(
        routing.rules,
        Facts(
            channel=Channel(channel),
            text=text,
            language=language,
            country=facts.country if facts else None,
            time_zone=facts.time_zone if facts else None,
            vip=vip,
            tags=tuple(tags) + (("vip",) if vip else ()),
            open=routing.business_hours.is_open(when) if routing.business_hours else None,
        ),
        base_tags=tuple(tags),
    )
    click.echo(f"language: {language or '-'}")
    if facts:
        click.echo(f"country: {facts.country or '-'}  time zone: {facts.time_zone or '-'}")
    if sender and "@" in sender:
        click.echo(f"email domain: {email_domain(sender)}")
    if routing.business_hours:
        click.echo(
            f"business hours: {'open' if routing.business_hours.is_open(when) else 'closed'}"
        )
    click.echo(f"fired: {', '.join(decision.fired) or 'no rule'}")
    click.echo(f"tags: {', '.join(decision.tags) or '-'}")
    click.echo(f"priority: {decision.priority or '-'}  group: {decision.group or '-'}")
    for k, v in decision.custom_fields.items():
        click.echo(f"custom field {k}: {v}")
    if explain:
        click.echo(decision.explain())
