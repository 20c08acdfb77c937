"""``deskbridge console link``: a one-time sign-in link to the operator console."""

from __future__ import annotations

import getpass
from datetime import timedelta
from pathlib import Path

import click

from deskbridge.cli.admin_api import DURATION, EXIT_USAGE, api_options, default_url, die
from deskbridge.cli.token import SCOPES, signing_key
from deskbridge.config import Settings

__all__ = ["console"]


@click.group()
def console() -> None:
    """The operator console at /console/ (DESKBRIDGE_CONSOLE=true; on in the demo)."""


@console.command("link")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    type=click.Choice(SCOPES),
    help="What the session may do (repeat it).",
)
@click.option("--ttl", type=DURATION, default="8h", show_default=True, help="Session length.")
@click.option("--subject", default=None, help="Who signs in (the audit log's who; default $USER).")
@click.option("--account", "accounts", multiple=True, help="Limit the session to this account.")
@click.option(
    "--private-key",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Sign with this PEM private key (RS256 or ES256) instead of the HS256 secret.",
)
@api_options
def link(
    scopes: tuple[str, ...],
    ttl: timedelta,
    subject: str | None,
    accounts: tuple[str, ...],
    private_key: Path | None,
    url: str | None,
) -> None:
    """Print a sign-in link to the console (only the link, on stdout).

    The link carries an admin token with these scopes in its fragment (never sent to a
    server log). It signs in once, within 10 minutes; the session then lasts --ttl.

    \b
    Example:
      deskbridge console link --scope deliveries:read --scope deliveries:write
    """
    from deskbridge.gateway.admin.auth import mint
    from deskbridge.gateway.console.session import LINK_SCOPE

    if not timedelta(minutes=1) <= ttl <= timedelta(days=30):
        die("--ttl must be between 1m and 30d", EXIT_USAGE)
    key, algorithm = signing_key(private_key)
    token = mint(
        key,
        algorithm=algorithm,  # type: ignore[arg-type]
        subject=subject or getpass.getuser(),
        scopes=[*dict.fromkeys(scopes), *(f"account:{a}" for a in accounts), LINK_SCOPE],
        ttl_seconds=int(ttl.total_seconds()),
        audience=Settings().admin_jwt_audience,
    )
    click.echo(f"{(url or default_url()).rstrip('/')}/console/signin#{token}")
