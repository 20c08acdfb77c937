"""The ``deskbridge`` command: parses arguments and hands off."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import NoReturn

import click
from rich.console import Console

from deskbridge import __version__
from deskbridge.adapters.registry import CHANNELS
from deskbridge.cli.contacts import contacts as contacts_command
from deskbridge.cli.deliveries import deliveries as deliveries_command
from deskbridge.cli.encryption import keys as keys_command
from deskbridge.cli.events import events as events_command
from deskbridge.cli.route import route as route_command
from deskbridge.cli.send import send as send_command
from deskbridge.cli.stats import stats as stats_command
from deskbridge.cli.token import token as token_command
from deskbridge.config import Settings, load_accounts
from deskbridge.config.residency import check_region
from deskbridge.errors import ConfigError, DeskbridgeError
from deskbridge.schemas import Channel

__all__ = ["main"]

err = Console(stderr=True, highlight=False)

CONFIG_OPTION = click.option(
    "--config",
    "config",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Accounts file (YAML). Default: $DESKBRIDGE_CONFIG, else the demo account.",
)


def _fail(exc: DeskbridgeError, code: int = 2) -> NoReturn:
    err.print(f"[bold red]error:[/] {exc}")
    if isinstance(exc, ConfigError):
        for where, what in exc.problems:
            err.print(f"  {where}: {what}")
    sys.exit(code)


def _settings(**overrides: object) -> Settings:
    values = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**values)  # type: ignore[arg-type]
    except Exception as exc:  # pydantic's ValidationError: bad environment values
        err.print(f"[bold red]error:[/] invalid settings: {exc}")
        sys.exit(2)


def _logging(settings: Settings) -> None:
    from deskbridge.logs import configure

    configure(settings.log_level, settings.log_format)


def _start(role: str, config: Path | None, host: str | None, port: int | None) -> None:
    from deskbridge.cli.process import load, serve_forever

    settings = _settings(host=host, port=port)
    _logging(settings)
    try:
        loaded = load(settings, config)
        asyncio.run(serve_forever(loaded, role))
    except DeskbridgeError as exc:
        _fail(exc)
    except KeyboardInterrupt:
        pass


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="deskbridge")
def cli() -> None:
    """deskbridge: customer channels in, helpdesk tickets out, agent replies back."""


def _process_command(role: str, help_text: str) -> None:
    @cli.command(role, help=help_text)
    @CONFIG_OPTION
    @click.option(
        "--host", default=None, help="Listen address (default $DESKBRIDGE_HOST or 127.0.0.1)."
    )
    @click.option(
        "--port", type=int, default=None, help="Listen port (default $DESKBRIDGE_PORT or 8080)."
    )
    def command(config: Path | None, host: str | None, port: int | None) -> None:
        _start(role, config, host, port)


_process_command(
    "run",
    "Gateway and worker in one process. Without REDIS_URL it runs a private redis-server; "
    "without an accounts file it serves the demo account.",
)
_process_command(
    "serve", "The gateway alone (webhooks, desk callbacks, sandbox pages). Needs REDIS_URL."
)
_process_command("worker", "The worker alone (deliveries to desks and channels). Needs REDIS_URL.")


@cli.command("check-config")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def check_config(file: Path) -> None:
    """Validate an accounts file; print every problem with its place (exit code 2)."""
    try:
        accounts = load_accounts(file)
        check_region(accounts, _settings().region)
    except ConfigError as exc:
        err.print(f"[bold red]{exc}[/]")
        for where, what in exc.problems:
            err.print(f"  {file}: {where}: {what}")
        sys.exit(2)
    for name, acc in accounts.accounts.items():
        translation = acc.routing.translation if acc.routing else None
        if translation is not None and translation.region != acc.region:
            # message text leaves the account's region: allowed, but say so
            err.print(
                f"[yellow]warning:[/] {file}: accounts.{name}.routing.translation: the "
                f"translator's region ({translation.region or 'unknown'}) is not the "
                f"account's ({acc.region or 'unset'}); message text will be sent there"
            )
    names = ", ".join(
        f"{n} ({a.desk.type}; {', '.join(c.type for c in a.channels) or 'no channels'})"
        for n, a in accounts.accounts.items()
    )
    click.echo(f"{file}: ok, {len(accounts.accounts)} account(s): {names}")


@cli.command()
@click.argument("channel", type=click.Choice([c.value for c in CHANNELS]))
@click.option("--text", required=True, help="The customer's message.")
@click.option("--account", default="demo", show_default=True)
@click.option(
    "--url",
    default=None,
    help="The running gateway (default http://$DESKBRIDGE_HOST:$DESKBRIDGE_PORT).",
)
@click.option(
    "--from",
    "sender",
    default=None,
    help="The customer: Telegram user id, WhatsApp number, Messenger PSID, LINE user id, "
    "email, or a SIP/tel URI (tel:+16505551234).",
)
@click.option(
    "--call", is_flag=True, help="sip only: place a call (INVITE) instead of sending a text."
)
@click.option(
    "--name", default="Demo Customer", show_default=True, help="The customer's display name."
)
@CONFIG_OPTION
def simulate(
    channel: str,
    text: str,
    account: str,
    url: str | None,
    sender: str | None,
    name: str,
    call: bool,
    config: Path | None,
) -> None:
    """Send a correctly signed webhook to a running gateway, as the channel would (for
    sip: a real SIP MESSAGE, or with --call an INVITE, to the account's listener).

    Example: deskbridge simulate sip --from tel:+16505551234 --text "hello"
    """
    from deskbridge.cli.simulate import simulate as run_simulate

    settings = _settings()
    try:
        status = run_simulate(
            settings,
            channel,
            account,
            text,
            url=url,
            sender=sender,
            name=name,
            config=config,
            call=call,
        )
    except DeskbridgeError as exc:
        _fail(exc, code=1)
    if channel == Channel.SIP:
        expected = call or 200 <= status < 300
        click.echo(f"the SIP listener answered {status}")
        if not expected:
            sys.exit(1)
        return
    if not 200 <= status < 300:
        err.print(f"[bold red]refused:[/] HTTP {status}")
        sys.exit(1)
    click.echo(f"delivered to the gateway: HTTP {status}")


@cli.group()
def channels() -> None:
    """Channel and desk registration at the platforms."""


@channels.command("register")
@click.option(
    "--public-url", required=True, help="How the platforms reach this deployment (https://...)."
)
@click.option("--account", "only", default=None, help="Only this account.")
@click.option(
    "--secrets-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where to write secrets the platforms return (default: the data directory).",
)
@CONFIG_OPTION
def register(
    public_url: str, only: str | None, secrets_dir: Path | None, config: Path | None
) -> None:
    """Point each channel's webhook (Telegram setWebhook with its secret token) and each
    desk's reply webhook (Zendesk) at this deployment."""
    from deskbridge.cli.register import register as run_register

    settings = _settings()
    path = config or settings.config
    if path is None:
        err.print(
            "[bold red]error:[/] give --config or DESKBRIDGE_CONFIG (the demo registers nothing)"
        )
        sys.exit(2)
    try:
        ok = asyncio.run(
            run_register(settings, path, public_url, only, secrets_dir or settings.data_dir)
        )
    except DeskbridgeError as exc:
        _fail(exc, code=1)
    sys.exit(0 if ok else 1)


# the admin API's commands, one module each; what they share is in cli/admin_api.py
cli.add_command(token_command)
cli.add_command(deliveries_command)
cli.add_command(events_command)
cli.add_command(contacts_command)
cli.add_command(stats_command)
cli.add_command(route_command)
cli.add_command(keys_command)
cli.add_command(send_command)


def main() -> None:
    cli()
