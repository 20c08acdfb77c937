"""``deskbridge token``: admin API tokens, minted locally (no gateway needed)."""

from __future__ import annotations

import getpass
from datetime import timedelta
from pathlib import Path

import click

from deskbridge.cli.admin_api import (
    DURATION,
    EXIT_USAGE,
    api_for,
    api_options,
    die,
    json_out,
)
from deskbridge.config import Settings
from deskbridge.errors import ConfigError

__all__ = ["token"]

_SCOPES = [
    "deliveries:read",
    "deliveries:write",
    "contacts:read",
    "contacts:write",
    "audit:read",
    "tokens:write",
    "ops:read",  # GET /admin/v1/health: readiness with per-account details
    "messages:write",  # POST /admin/v1/messages: proactive messages
]
_MAX_TTL = timedelta(days=30)


@click.group()
def token() -> None:
    """Admin API tokens (JWT, scoped, short-lived).

    With --account or --app the token sees only the accounts and platform apps it
    names (scope entries ``account:<name>``, ``app:<name>``); without either, all.

    A token is refused once revoked (``token revoke``), once expired, when it was issued
    more than 30 s in the future, or when it lives longer than the gateway's
    DESKBRIDGE_ADMIN_JWT_MAX_TTL (default 30 days), whatever its signature.

    \b
    Example:
      deskbridge token create --scope deliveries:read --ttl 8h
    """


def _signing_key(private_key: Path | None) -> tuple[str, str]:
    """The key and algorithm to sign with: ``--private-key`` (RS256/ES256), else the
    HS256 secret from the environment or the demo's secrets file."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    from deskbridge.gateway.admin.auth import demo_admin_secret

    if private_key is not None:
        try:
            pem = private_key.read_text()
            key = serialization.load_pem_private_key(pem.encode(), password=None)
        except OSError as exc:
            die(f"{private_key}: cannot read ({exc.strerror})", EXIT_USAGE)
        except (ValueError, TypeError):
            die(f"{private_key}: not an unencrypted PEM private key", EXIT_USAGE)
        if isinstance(key, rsa.RSAPrivateKey):
            return pem, "RS256"
        if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
            return pem, "ES256"
        die(f"{private_key}: an RSA (RS256) or EC P-256 (ES256) key is needed", EXIT_USAGE)
    settings = Settings()
    if settings.admin_jwt_secret is not None:
        return settings.admin_jwt_secret.get_secret_value(), "HS256"
    try:
        secret = demo_admin_secret(settings.data_dir)
    except ConfigError as exc:
        die(str(exc), EXIT_USAGE)
    if secret is None:
        die(
            "no key to sign with: set DESKBRIDGE_ADMIN_JWT_SECRET, give --private-key, or "
            f"start `deskbridge run` with the demo first (it writes one to {settings.data_dir})",
            EXIT_USAGE,
        )
    return secret, "HS256"


@token.command("create")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    type=click.Choice(_SCOPES),
    help="What the token may do (repeat it).",
)
@click.option("--ttl", type=DURATION, default="1h", show_default=True, help="Lifetime (≤ 30d).")
@click.option(
    "--subject", default=None, help="Who the token is for (the audit log's who; default: $USER)."
)
@click.option(
    "--audience", default=None, help="Default $DESKBRIDGE_ADMIN_JWT_AUDIENCE or deskbridge-admin."
)
@click.option(
    "--private-key",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Sign with this PEM private key (RS256 or ES256) instead of the HS256 secret.",
)
@click.option(
    "--account",
    "accounts",
    multiple=True,
    help="Limit the token to this account (repeat it; default: every account and app).",
)
@click.option(
    "--app",
    "apps",
    multiple=True,
    help="Let the token see this platform app's own records (what named no account).",
)
def token_create(
    scopes: tuple[str, ...],
    ttl: timedelta,
    subject: str | None,
    audience: str | None,
    private_key: Path | None,
    accounts: tuple[str, ...],
    apps: tuple[str, ...],
) -> None:
    """Mint an admin API token and print it (only the token, on stdout).

    The HS256 secret comes from DESKBRIDGE_ADMIN_JWT_SECRET or, for the demo, from the
    demo secrets file in the data directory; with --private-key the token is signed with
    that key and the gateway needs only the public one.

    \b
    Example:
      export DESKBRIDGE_TOKEN="$(deskbridge token create \\
          --scope deliveries:read --scope deliveries:write --ttl 2h)"
    """
    from deskbridge.gateway.admin.auth import mint

    if not timedelta(seconds=1) <= ttl <= _MAX_TTL:
        die("--ttl must be between 1s and 30d", EXIT_USAGE)
    key, algorithm = _signing_key(private_key)
    settings = Settings()
    click.echo(
        mint(
            key,
            algorithm=algorithm,  # type: ignore[arg-type]
            subject=subject or getpass.getuser(),
            scopes=list(
                dict.fromkeys(
                    [*scopes, *(f"account:{a}" for a in accounts), *(f"app:{a}" for a in apps)]
                )
            ),
            ttl_seconds=int(ttl.total_seconds()),
            audience=audience or settings.admin_jwt_audience,
        )
    )


@token.command("revoke")
@click.argument("jti", required=False)
@click.option(
    "--subject",
    default=None,
    help="Revoke every token of this subject issued up to now (instead of one JTI).",
)
@click.option(
    "--exp",
    type=int,
    default=None,
    help="The token's exp (epoch seconds), so the denylist drops it then (default: the "
    "longest a token may live).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
@api_options
def token_revoke(
    jti: str | None, subject: str | None, exp: int | None, as_json: bool, url: str | None
) -> None:
    """Revoke an admin token by its JTI (the token's ``jti`` claim), or with --subject every
    token of a subject issued up to now (a token minted in the same second too: mint the
    replacement a second later). Every gateway refuses it from its next request; the
    revocation is audited. Needs DESKBRIDGE_TOKEN with the tokens:write scope.

    \b
    Example:
      deskbridge token revoke --subject alice
    """
    if (jti is None) == (subject is None):
        die("give a JTI or --subject, not both", EXIT_USAGE)
    body = {"jti": jti, "exp": exp} if jti is not None else {"subject": subject}
    data = api_for(url).call("POST", "/tokens/revoke", body=body)
    if as_json:
        json_out(data)
        return
    what = f"token {jti}" if jti is not None else f"every token of {subject} issued up to now"
    click.echo(f"revoked {what}; refused until {data.get('kept_until')}")
