"""The ``deskbridge`` command: parses arguments and hands off.

Every command lives in its own module, imported only when that command runs: the group
knows each command's module and one-line help, so ``deskbridge --help`` answers without
importing pydantic, the channel registry or phonenumbers' geodata
(``tests/test_cli_startup.py`` pins what it imports)."""

from __future__ import annotations

import importlib

import click

from deskbridge import __version__

__all__ = ["main"]

# name -> (module, attribute, the help's first sentence, as `deskbridge --help` shows
# it); tests/test_cli_startup.py checks each against the command's own help
COMMANDS: dict[str, tuple[str, str, str]] = {
    "run": ("deskbridge.cli.commands", "run", "Gateway and worker in one process."),
    "serve": (
        "deskbridge.cli.commands",
        "serve",
        "The gateway alone (webhooks, desk callbacks, sandbox pages).",
    ),
    "worker": (
        "deskbridge.cli.commands",
        "worker",
        "The worker alone (deliveries to desks and channels).",
    ),
    "check-config": (
        "deskbridge.cli.commands",
        "check_config",
        "Validate an accounts file; print every problem with its place (exit code 2).",
    ),
    "simulate": (
        "deskbridge.cli.commands",
        "simulate",
        "Send a correctly signed webhook to a running gateway, as the channel would (for "
        "sip: a real SIP MESSAGE, or with --call an INVITE, to the account's listener).",
    ),
    "channels": (
        "deskbridge.cli.commands",
        "channels",
        "Channel and desk registration at the platforms.",
    ),
    "token": ("deskbridge.cli.token", "token", "Admin API tokens (JWT, scoped, short-lived)."),
    "deliveries": (
        "deskbridge.cli.deliveries",
        "deliveries",
        "Deliveries and dead letters, through the admin API (token in $DESKBRIDGE_TOKEN).",
    ),
    "events": (
        "deskbridge.cli.events",
        "events",
        "Kept raw webhook requests: list them, re-ingest them after a parser fix.",
    ),
    "contacts": (
        "deskbridge.cli.contacts",
        "contacts",
        "The identity graph: who deskbridge takes to be the same person, and why.",
    ),
    "stats": (
        "deskbridge.cli.stats",
        "stats",
        "Print the service figures of a running gateway: messages per channel, customers "
        "waiting, SLA breaches, first-response and reply times (median and 90th percentile), "
        "the average satisfaction score (and how many answered), and the bot sessions that "
        "ended without a person.",
    ),
    "route": (
        "deskbridge.cli.route",
        "route",
        "Show what the account's routing decides for a sample message.",
    ),
    "keys": (
        "deskbridge.cli.encryption",
        "keys",
        "Encryption keys: generate, status, rotate (docs/security-keys.md).",
    ),
    "send": (
        "deskbridge.cli.send",
        "send",
        "Message a customer first, on their channel, within its rules (a template outside "
        "WhatsApp's window, a tag outside Messenger's, LINE's push quota, their opt-out).",
    ),
    "console": (
        "deskbridge.cli.console",
        "console",
        "The operator console at /console/ (DESKBRIDGE_CONSOLE=true; on in the demo).",
    ),
}


class LazyGroup(click.Group):
    """A group whose commands are imported on first use, not to list them."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return super().get_command(ctx, cmd_name)
        module, attr, _ = COMMANDS[cmd_name]
        command = getattr(importlib.import_module(module), attr)
        assert isinstance(command, click.Command)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        names = self.list_commands(ctx)
        # as click words it: the first sentence, cut to what fits beside the names
        limit = formatter.width - 6 - max(len(n) for n in names)
        rows = [(n, click.Command(n, help=COMMANDS[n][2]).get_short_help_str(limit)) for n in names]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="deskbridge")
def cli() -> None:
    """deskbridge: customer channels in, helpdesk tickets out, agent replies back."""


def main() -> None:
    cli()
