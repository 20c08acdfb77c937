"""``deskbridge keys``: generate a key entry, see which keys the stored records use, rotate.

Key material is printed by ``generate`` only, to standard output, and never logged.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import NoReturn

import click
from pydantic import ValidationError
from rich.console import Console

from deskbridge.config import Settings
from deskbridge.errors import ConfigError, DeskbridgeError
from deskbridge.store import PrivateRedis, Vault, connect
from deskbridge.store.connection import Connection, disconnect
from deskbridge.store.crypto import decode_key, generate_key, key_id
from deskbridge.store.keyring import load_vault
from deskbridge.store.rotation import Rotation, RotationBusy, Tally

__all__ = ["keys"]

err = Console(stderr=True, highlight=False)


def _fail(message: str, problems: list[tuple[str, str]] | None = None) -> NoReturn:
    click.echo(f"{click.style('error:', fg='red', bold=True)} {message}", err=True)
    for where, what in problems or []:
        click.echo(f"  {where}: {what}", err=True)
    sys.exit(2)


def _demo_vault(settings: Settings) -> Vault | None:
    """The demo's vault, from the secrets file in the data directory (as ``deskbridge
    run`` without an accounts file builds it); None outside the demo."""
    from deskbridge.adapters.demo import demo_secrets
    from deskbridge.config.demo import secrets_path

    if settings.config is not None or not secrets_path(settings.data_dir).exists():
        return None
    key = demo_secrets(settings.data_dir, create=False)["encryption_key"]
    lookup = settings.lookup_key.get_secret_value() if settings.lookup_key else None
    return load_vault(keys_file=None, encryption_key=key, lookup_key=lookup)


def _open() -> tuple[Vault, Connection]:
    """The vault and Redis of the deployment the environment describes."""
    try:
        settings = Settings()
        vault = load_vault(
            keys_file=settings.keys_file,
            encryption_key=settings.encryption_key.get_secret_value()
            if settings.encryption_key
            else None,
            lookup_key=settings.lookup_key.get_secret_value() if settings.lookup_key else None,
        ) or _demo_vault(settings)
    except ConfigError as exc:
        _fail(str(exc), exc.problems)
    except ValidationError as exc:  # bad environment values; never echo them
        _fail(
            "invalid settings",
            [(".".join(map(str, e["loc"])), e["msg"]) for e in exc.errors(include_input=False)],
        )
    if vault is None:
        _fail(
            "set DESKBRIDGE_KEYS_FILE or DESKBRIDGE_ENCRYPTION_KEY (the deployment's keys), "
            f"or run in the demo's folder (no demo secrets in {settings.data_dir})"
        )
    url = settings.redis_url
    if url is None:
        private = PrivateRedis(settings.data_dir)
        if not private.socket.exists():
            _fail("REDIS_URL is not set and no `deskbridge run` Redis is in the data directory")
        url = private.url
    try:
        return vault, connect(url)
    except ConfigError as exc:  # a malformed REDIS_URL; the message holds no password
        _fail(str(exc))


@click.group()
def keys() -> None:
    """Encryption keys: generate, status, rotate (docs/security-keys.md)."""


@keys.command()
@click.option("--id", "kid", default=None, help="The key's id (default: k + 8 hex digits).")
@click.option("--json", "as_json", is_flag=True, help="A JSON object instead of YAML.")
def generate(kid: str | None, as_json: bool) -> None:
    """Print a new random key as an entry for the keys file (standard output only)."""
    text = generate_key()
    kid = kid or key_id(decode_key(text))
    if as_json:
        click.echo(json.dumps({"id": kid, "key": text}))
    else:
        click.echo(f'  - id: {kid}\n    key: "{text}"')


def _counts_table(vault: Vault, tally: Tally) -> None:
    click.echo(f"keys scanned: {tally.scanned}")
    ids = tally.key_ids()
    for kid in dict.fromkeys([*vault.key_ids, *sorted(ids)]):
        role = (
            "active"
            if kid == vault.active_id
            else ("configured" if kid in vault.key_ids else "NOT CONFIGURED")
        )
        click.echo(f"  {kid:<20} {role:<15} {ids.get(kid, 0)} record(s)")
    kinds = sorted({k for k, _ in tally.by_key})
    for kind in kinds:
        per = ", ".join(f"{kid}: {n}" for (k, kid), n in sorted(tally.by_key.items()) if k == kind)
        click.echo(f"    {kind}: {per}")


@keys.command()
def status() -> None:
    """Key ids in use: how many stored records each one sealed, and the last rotation."""
    vault, conn = _open()

    async def go() -> tuple[Tally, dict[str, str]]:
        try:
            rot = Rotation(conn, vault)
            return await rot.census(), await rot.state()
        finally:
            await disconnect(conn)

    try:
        tally, state = asyncio.run(go())
    except (DeskbridgeError, OSError) as exc:
        _fail(str(exc))
    except Exception as exc:  # the Redis client's connection errors
        _fail(f"Redis: {type(exc).__name__}")
    _counts_table(vault, tally)
    if state:
        done = "finished" if "finished_at" in state else f"stopped at cursor {state.get('cursor')}"
        click.echo(
            f"last rotation (to {state.get('active')}): {done}; re-sealed "
            f"{state.get('resealed', 0)}, unreadable {state.get('unreadable', 0)}"
        )
    if tally.unreadable:
        click.echo(f"{tally.unreadable} record(s) name a key id that is not configured")


@keys.command()
@click.option("--dry-run", is_flag=True, help="Count records per key id; change nothing.")
@click.option("--batch", default=500, show_default=True, type=click.IntRange(1, 10000))
@click.option(
    "--pause",
    default=0.01,
    show_default=True,
    type=click.FloatRange(0, 10),
    help="Seconds between batches (spares a busy Redis).",
)
@click.option("--restart", is_flag=True, help="Start over instead of resuming a stopped run.")
def rotate(dry_run: bool, batch: int, pause: float, restart: bool) -> None:
    """Re-seal every stored record under the active key, while the deployment runs.

    Deploy the keys file with the new active key to every process first. Exits 1 when a
    record could not be opened (listed; nothing is deleted)."""
    vault, conn = _open()
    rot = Rotation(conn, vault, batch=batch, pause=pause)

    def progress(t: Tally) -> None:
        err.print(
            f"  scanned {t.scanned} keys: re-sealed {t.resealed}, current {t.current}",
            end="\r",
        )

    async def go() -> Tally:
        try:
            return await (rot.census() if dry_run else rot.run(restart=restart, on_batch=progress))
        finally:
            await disconnect(conn)

    try:
        tally = asyncio.run(go())
    except RotationBusy as exc:
        _fail(str(exc))
    except (DeskbridgeError, OSError) as exc:
        _fail(str(exc))
    except Exception as exc:  # the Redis client's connection errors
        _fail(f"Redis: {type(exc).__name__}")
    if dry_run:
        _counts_table(vault, tally)
        todo = sum(n for kid, n in tally.key_ids().items() if kid != vault.active_id)
        click.echo(f"dry run: {todo} record(s) would be re-sealed under {vault.active_id}")
    else:
        err.print()
        click.echo(
            f"rotated to {vault.active_id}: re-sealed {tally.resealed}, already current "
            f"{tally.current}, unreadable {tally.unreadable}, gone meanwhile {tally.vanished}"
        )
    for name in tally.unreadable_keys:
        click.echo(f"  unreadable: {name}")
    if tally.unreadable:
        sys.exit(1)


@keys.command("digest-ids")
@click.option("--dry-run", is_flag=True, help="Count the keys to rename; change nothing.")
def digest_ids(dry_run: bool) -> None:
    """Rename keys written before deskbridge 0.18 whose names carried a provider's or a
    desk's id (a WhatsApp message id encodes the customer's number) to the keyed digest
    used now: dedup and sent-message marks, desk ticket lookups, per-ticket update
    windows, the loop guard's desk message ids and Udesk's relayed reply sets.
    Idempotent; TTLs are kept. Without it, dedup marks expire after
    DESKBRIDGE_DEDUP_TTL_SECONDS (7 days), sent marks and loop-guard marks after 30 days,
    and ticket lookups are renamed when next used; until then `contacts forget` cannot
    remove the ids in their names, and a redelivery of an event acknowledged before the
    upgrade is not recognised as a duplicate.

    \b
    Example:
      deskbridge keys digest-ids --dry-run
    """
    from deskbridge.store.digests import IdKeys

    vault, conn = _open()

    async def go() -> dict[str, int]:
        try:
            return await IdKeys(conn, vault).digest_names(dry_run=dry_run)
        finally:
            await disconnect(conn)

    try:
        counts = asyncio.run(go())
    except (DeskbridgeError, OSError) as exc:
        _fail(str(exc))
    except Exception as exc:  # the Redis client's connection errors
        _fail(f"Redis: {type(exc).__name__}")
    verb = "to rename" if dry_run else "renamed"
    click.echo(
        f"{verb}: dedup marks {counts['dedup']}, sent marks {counts['sent']}, ticket lookups "
        f"{counts['ticket']}, ticket update windows {counts['tupd']}, loop-guard marks "
        f"{counts['ours']}, Udesk relayed sets {counts['relayed']}"
    )
