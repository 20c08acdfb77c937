"""The commands that start or check a deployment: ``run``, ``serve``, ``worker``,
``check-config``, ``simulate`` and ``channels register``. Loaded only when one of them is
called (``cli/main.py`` lists them without importing this module)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import NoReturn

import click

from deskbridge.config import Settings, load_accounts
from deskbridge.config.residency import check_region
from deskbridge.errors import ConfigError, DeskbridgeError
from deskbridge.schemas import Channel

__all__ = ["channels", "check_config", "run", "serve", "simulate", "worker"]

CONFIG_OPTION = click.option(
    "--config",
    "config",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Accounts file (YAML). Default: $DESKBRIDGE_CONFIG, else the demo account.",
)


def _fail(exc: DeskbridgeError, code: int = 2) -> NoReturn:
    # plain text: a message may hold brackets (a pattern, a list) that markup would eat
    click.echo(click.style("error:", fg="red", bold=True) + f" {exc}", err=True)
    if isinstance(exc, ConfigError):
        for where, what in exc.problems:
            click.echo(f"  {where}: {what}", err=True)
    sys.exit(code)


def _settings(**overrides: object) -> Settings:
    values = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**values)  # type: ignore[arg-type]
    except Exception as exc:  # pydantic's ValidationError: bad environment values
        _say("error:", "red", f"invalid settings: {exc}")
        sys.exit(2)


def _logging(settings: Settings) -> None:
    from deskbridge.logs import configure

    configure(settings.log_level, settings.log_format)


def _start(
    role: str,
    config: Path | None,
    host: str | None,
    port: int | None,
    processes: str = "1",
    child: tuple[int, int] | None = None,
) -> None:
    from deskbridge.cli.loop import runner
    from deskbridge.cli.process import load, serve_forever

    settings = _settings(host=host, port=port)
    _logging(settings)
    try:
        count = 1 if child is not None else _processes(processes)
        loaded = load(settings, config)
        if count > 1:
            _supervise(role, count, loaded.settings)
            return
        if child is not None:
            from deskbridge.cli.supervise import bind_as_child

            bind_as_child(child[0])
        # a child of `--processes` shares the port; only the first runs SMTP/SIP listeners
        with runner(loaded.settings.event_loop) as loop:
            loop.run(
                serve_forever(
                    loaded,
                    role,
                    reuse_port=child is not None,
                    listeners=child is None or child[1] == 0,
                )
            )
    except DeskbridgeError as exc:
        _fail(exc)
    except KeyboardInterrupt:
        pass


def _processes(value: str) -> int:
    from deskbridge.cli.supervise import parse_processes

    return parse_processes(value)


def _supervise(role: str, count: int, settings: Settings) -> None:
    from deskbridge.cli.supervise import Supervisor

    supervisor = Supervisor(
        role=role,
        count=count,
        host=settings.host,
        port=settings.port,
        config=settings.config,
        redis_url=settings.redis_url,
        data_dir=settings.data_dir,
        appendfsync=settings.appendfsync,
        metrics_address=settings.metrics_address,
    )
    asyncio.run(supervisor.run())


def _process_command(role: str, help_text: str, *, processes: bool) -> click.Command:
    @click.command(role, help=help_text)
    @CONFIG_OPTION
    @click.option(
        "--host", default=None, help="Listen address (default $DESKBRIDGE_HOST or 127.0.0.1)."
    )
    @click.option(
        "--port", type=int, default=None, help="Listen port (default $DESKBRIDGE_PORT or 8080)."
    )
    @click.option(
        "--processes",
        default="1",
        show_default=True,
        hidden=not processes,
        help="Gateway processes sharing the port (SO_REUSEPORT), supervised; 'auto': one "
        "per usable CPU.",
    )
    # set by the supervisor of `--processes` on each child: its pid, the child's index
    @click.option("--child-of", type=int, default=None, hidden=True)
    @click.option("--child-index", type=int, default=0, hidden=True)
    def command(
        config: Path | None,
        host: str | None,
        port: int | None,
        processes: str,
        child_of: int | None,
        child_index: int,
    ) -> None:
        if role == "worker" and processes != "1":
            _say("error:", "red", "--processes is for run and serve; start more workers")
            sys.exit(2)
        child = None if child_of is None else (child_of, child_index)
        _start(role, config, host, port, processes, child)

    return command


run = _process_command(
    "run",
    "Gateway and worker in one process. Without REDIS_URL it runs a private redis-server; "
    "without an accounts file it serves the demo account.",
    processes=True,
)
serve = _process_command(
    "serve",
    "The gateway alone (webhooks, desk callbacks, sandbox pages). Needs REDIS_URL.",
    processes=True,
)
worker = _process_command(
    "worker",
    "The worker alone (deliveries to desks and channels). Needs REDIS_URL.",
    processes=False,
)


def _say(kind: str, colour: str, text: str) -> None:
    """One line on stderr, plain (no markup to eat brackets, no wrapping when piped)."""
    click.echo(f"{click.style(kind, fg=colour, bold=True)} {text}", err=True)


@click.command("check-config")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def check_config(file: Path) -> None:
    """Validate an accounts file; print every problem with its place (exit code 2)."""
    notes: list[tuple[str, str]] = []
    try:
        accounts = load_accounts(file, notes)
        check_region(accounts, _settings().region)
    except ConfigError as exc:
        _say("error:", "red", str(exc))
        for where, what in exc.problems:
            click.echo(f"{file}: {where}: {what}", err=True)
        sys.exit(2)
    for where, what in notes:
        _say("note:", "yellow", f"{file}: {where}: {what}")
    for name, acc in accounts.accounts.items():
        translation = acc.routing.translation if acc.routing else None
        if translation is not None and translation.region != acc.region:
            # message text leaves the account's region: allowed, but say so
            _say(
                "warning:",
                "yellow",
                f"{file}: accounts.{name}.routing.translation: the translator's region "
                f"({translation.region or 'unknown'}) is not the account's "
                f"({acc.region or 'unset'}); message text will be sent there",
            )
    names = ", ".join(
        f"{n} ({a.desk.type}; {', '.join(c.type for c in a.channels) or 'no channels'})"
        for n, a in accounts.accounts.items()
    )
    click.echo(f"{file}: ok, {len(accounts.accounts)} account(s): {names}")


@click.command()
@click.argument("channel", type=click.Choice([c.value for c in Channel]))
@click.option("--text", required=True, help="The customer's message.")
@click.option("--account", default="demo", show_default=True)
@click.option(
    "--url",
    default=None,
    help="The running gateway (default http://$DESKBRIDGE_HOST:$DESKBRIDGE_PORT). The demo "
    "there names its data directory and SMTP and SIP listeners, which simulate then uses.",
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
@click.option(
    "--subject",
    default=None,
    help="email only: the mail's Subject, which becomes the ticket's (default: the "
    "text's first line).",
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
    subject: str | None,
    config: Path | None,
) -> None:
    """Send a correctly signed webhook to a running gateway, as the channel would (for
    sip: a real SIP MESSAGE, or with --call an INVITE, to the account's listener).

    Example: deskbridge simulate sip --from tel:+16505551234 --text "hello"
    """
    from deskbridge.cli.simulate import simulate as run_simulate

    settings = _settings()
    try:
        answer = run_simulate(
            settings,
            channel,
            account,
            text,
            url=url,
            sender=sender,
            name=name,
            config=config,
            call=call,
            subject=subject,
        )
    except DeskbridgeError as exc:
        _fail(exc, code=1)
    # a call may be answered with anything but a 2xx (redirected, rejected): still taken
    taken = 200 <= answer.status < 300 or (call and channel == Channel.SIP)
    said = f"HTTP {answer.status}" if answer.http else str(answer.status)
    if not taken:
        _say("refused:", "red", f"{answer.by} answered {said}")
        sys.exit(1)
    if call and not 200 <= answer.status < 300:
        # a call is not answered by deskbridge: the account's `calls:` rejects or redirects it
        said += " (the call is declined or redirected as the channel's calls: setting says)"
    click.echo(f"{answer.by} answered {said}")


@click.group()
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
    """Point each channel's webhook (Telegram setWebhook with its secret token, a Meta
    app's webhooks and each account's subscription to the app) and each desk's reply
    webhook (Zendesk) at this deployment. Without an accounts file: the demo running at
    --public-url (its Meta channels register with its Graph stand-in)."""
    from deskbridge.cli.register import register as run_register
    from deskbridge.cli.simulate import accounts_for
    from deskbridge.config.demo import DEMO_ACCOUNT

    settings = _settings()
    path = config or settings.config
    try:
        target = path or accounts_for(settings, DEMO_ACCOUNT, None, public_url)
        ok = asyncio.run(
            run_register(settings, target, public_url, only, secrets_dir or settings.data_dir)
        )
    except DeskbridgeError as exc:
        _fail(exc, code=1)
    sys.exit(0 if ok else 1)
