"""``deskbridge token``, ``deskbridge deliveries`` and ``deskbridge events``: the admin API
from an operator's shell, over HTTP (no Redis access needed).

Exit codes: 0 done; 1 a replayed delivery failed again (or did not finish within
``--wait``), or a re-ingested request had an error; 2 bad usage; 3 the gateway refused
the request or could not be reached.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from deskbridge.config import Settings
from deskbridge.errors import ConfigError

__all__ = ["contacts", "deliveries", "events", "token"]

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

F = TypeVar("F", bound=Callable[..., Any])

EXIT_FAILED_AGAIN = 1
EXIT_USAGE = 2
EXIT_API = 3

_STATES = ["pending", "held", "delivered", "skipped", "dead", "failed", "discarded"]
_CHANNELS = ["telegram", "whatsapp", "messenger", "line", "email", "sip"]
_DESKS = ["sandbox", "zendesk", "intercom", "udesk"]
_SCOPES = ["deliveries:read", "deliveries:write", "contacts:read", "contacts:write", "audit:read"]
_BATCH = 100
_MAX_TTL = timedelta(days=30)


def _die(message: str, code: int = EXIT_API) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", markup=True, highlight=False)
    sys.exit(code)


# --- durations and times -----------------------------------------------------------------

_PART = re.compile(r"(\d+)([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> timedelta:
    """``90s``, ``15m``, ``2h``, ``7d``, ``1h30m``. Raises ValueError."""
    text = text.strip().lower()
    if not text or _PART.sub("", text) != "":
        raise ValueError(f"{text!r} is not a duration such as 30m, 2h or 7d")
    return timedelta(seconds=sum(int(n) * _UNITS[u] for n, u in _PART.findall(text)))


def parse_when(text: str, now: datetime | None = None) -> str:
    """A time for the API (RFC 3339, UTC): a duration ago (``2h``) or an ISO time
    (``2024-05-01`` or ``2024-05-01T10:00:00+02:00``; no offset means UTC)."""
    now = now or datetime.now(UTC)
    try:
        return (now - parse_duration(text)).isoformat()
    except ValueError:
        pass
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is neither a duration (2h) nor a time (2024-05-01T10:00Z)"
        ) from None
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).isoformat()


class _When(click.ParamType[str]):
    name = "WHEN"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        try:
            return parse_when(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class _Duration(click.ParamType[timedelta]):
    name = "DURATION"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> timedelta:
        if isinstance(value, timedelta):
            return value
        try:
            return parse_duration(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


WHEN = _When()
DURATION = _Duration()


# --- the API client ----------------------------------------------------------------------


class Api:
    """The admin API over HTTP. Every failure ends the command with one clear line."""

    def __init__(self, url: str, token: str, *, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self._client = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            timeout=timeout,
        )

    def call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            resp = self._client.request(method, "/admin/v1" + path, params=clean, json=body)
        except httpx.TimeoutException:
            _die(f"the gateway at {self.url} did not answer in time")
        except httpx.TransportError as exc:
            _die(f"cannot reach the gateway at {self.url} ({type(exc).__name__}); is it running?")
        try:
            data = resp.json()
        except ValueError:
            data = {}
        if not isinstance(data, dict):
            data = {}
        if resp.status_code < 300:
            return data
        message = str(data.get("message") or resp.reason_phrase)
        if resp.status_code == 401:
            _die(
                f"the gateway refused the token (401: {message}); set DESKBRIDGE_TOKEN to "
                "a fresh one from `deskbridge token create`"
            )
        if resp.status_code == 403:
            _die(f"not allowed (403: {message})")
        if resp.status_code == 404 and data.get("error") == "not_found":
            _die(message)
        if resp.status_code == 404:
            _die(f"{self.url} has no admin API (404); is --url a deskbridge gateway?")
        _die(f"{message} (HTTP {resp.status_code})")

    def close(self) -> None:
        self._client.close()


def _default_url() -> str:
    try:
        s = Settings()
    except Exception:  # pydantic's ValidationError: bad environment values
        return "http://127.0.0.1:8080"
    host = "127.0.0.1" if s.host in ("0.0.0.0", "::", "") else s.host  # noqa: S104
    return f"http://{host}:{s.port}"


def _api(url: str | None) -> Api:
    token = os.environ.get("DESKBRIDGE_TOKEN", "").strip()
    if not token:
        _die(
            "set DESKBRIDGE_TOKEN to an admin token: "
            'export DESKBRIDGE_TOKEN="$(deskbridge token create --scope deliveries:read)"',
            EXIT_USAGE,
        )
    api = Api(url or _default_url(), token)
    click.get_current_context().call_on_close(api.close)
    return api


def api_options(f: F) -> F:
    f = click.option(
        "--url",
        envvar="DESKBRIDGE_URL",
        default=None,
        help="The gateway (default $DESKBRIDGE_URL, else http://$DESKBRIDGE_HOST:$DESKBRIDGE_PORT).",
    )(f)
    return f


def filter_options(f: F) -> F:
    for opt in reversed(
        [
            click.option("--account", default=None, help="One account (default: all)."),
            click.option(
                "--state", type=click.Choice(_STATES), default=None, help="failed = dead."
            ),
            click.option("--direction", type=click.Choice(["inbound", "outbound"]), default=None),
            click.option("--channel", type=click.Choice(_CHANNELS), default=None),
            click.option("--desk", type=click.Choice(_DESKS), default=None),
            click.option("--conversation", default=None, help="A conversation id."),
            click.option("--error", "error_text", default=None, help="Text in the last error."),
            click.option(
                "--since", type=WHEN, default=None, help="Created after: 2h, 7d, or a time."
            ),
            click.option("--until", type=WHEN, default=None, help="Created before: 2h, or a time."),
        ]
    ):
        f = opt(f)
    return f


def _filter(kw: dict[str, Any]) -> dict[str, Any]:
    names = ("account", "state", "direction", "channel", "desk", "conversation", "since", "until")
    found = {k: kw[k] for k in names if kw.get(k) is not None}
    if kw.get("error_text"):
        found["error"] = kw["error_text"]
    return found


def _print_table(table: Table) -> None:
    # piped (grep, less): whole lines rather than the 80 columns of no terminal
    (out if out.is_terminal else Console(highlight=False, width=220)).print(table)


def _json_out(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))


def _short_time(value: str | None) -> str:
    if not value:
        return ""
    at = datetime.fromisoformat(value).astimezone(UTC)
    return at.strftime("%Y-%m-%d %H:%M:%SZ")


def _chunks(items: list[str], size: int = _BATCH) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=err,
        transient=True,
    )


# --- token -------------------------------------------------------------------------------


@click.group()
def token() -> None:
    """Admin API tokens (JWT, scoped, short-lived).

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
            _die(f"{private_key}: cannot read ({exc.strerror})", EXIT_USAGE)
        except (ValueError, TypeError):
            _die(f"{private_key}: not an unencrypted PEM private key", EXIT_USAGE)
        if isinstance(key, rsa.RSAPrivateKey):
            return pem, "RS256"
        if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
            return pem, "ES256"
        _die(f"{private_key}: an RSA (RS256) or EC P-256 (ES256) key is needed", EXIT_USAGE)
    settings = Settings()
    if settings.admin_jwt_secret is not None:
        return settings.admin_jwt_secret.get_secret_value(), "HS256"
    try:
        secret = demo_admin_secret(settings.data_dir)
    except ConfigError as exc:
        _die(str(exc), EXIT_USAGE)
    if secret is None:
        _die(
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

    With --account or --app the token sees only the accounts and platform apps it
    names (scope entries ``account:<name>``, ``app:<name>``); without either, all.

    \b
    Example:
      export DESKBRIDGE_TOKEN="$(deskbridge token create \\
          --scope deliveries:read --scope deliveries:write --ttl 2h)"
    """
    from deskbridge.gateway.admin.auth import mint

    if not timedelta(seconds=1) <= ttl <= _MAX_TTL:
        _die("--ttl must be between 1s and 30d", EXIT_USAGE)
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


# --- deliveries --------------------------------------------------------------------------


@click.group()
def deliveries() -> None:
    """Deliveries and dead letters, through the admin API (token in $DESKBRIDGE_TOKEN).

    \b
    Example:
      deskbridge deliveries list --state failed --since 2h
    """


def _list_all(api: Api, params: dict[str, Any], limit: int, every: bool) -> dict[str, Any]:
    page = api.call("GET", "/deliveries", params={**params, "limit": limit})
    found = list(page["deliveries"])
    while every and page.get("next_cursor"):
        page = api.call(
            "GET",
            "/deliveries",
            params={**params, "limit": limit, "cursor": page["next_cursor"]},
        )
        found += page["deliveries"]
    return {"deliveries": found, "next_cursor": None if every else page.get("next_cursor")}


@deliveries.command("list")
@filter_options
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True)
@click.option("--cursor", default=None, help="Continue after a previous page.")
@click.option("--all", "every", is_flag=True, help="Follow every page.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
@api_options
def deliveries_list(
    limit: int, cursor: str | None, every: bool, as_json: bool, url: str | None, **kw: Any
) -> None:
    """List deliveries, newest first, as a table.

    \b
    Examples:
      deskbridge deliveries list --state failed --since 2h
      deskbridge deliveries list --channel whatsapp --error timeout --json
    """
    api = _api(url)
    params = {**_filter(kw), "cursor": cursor}
    data = _list_all(api, params, limit, every)
    if as_json:
        _json_out(data)
        return
    table = Table(box=None, header_style="bold")
    # ids are what the other commands take: never shortened
    table.add_column("id", no_wrap=True, min_width=32)
    for col in ("created", "account", "dir", "channel", "desk", "state", "tries"):
        table.add_column(col, no_wrap=True, overflow="ellipsis")
    table.add_column("error", overflow="fold")
    for d in data["deliveries"]:
        table.add_row(
            d["id"],
            _short_time(d["created_at"]),
            d["account"],
            "in" if d["direction"] == "inbound" else "out",
            d["channel"],
            d["desk"],
            d["state"] + (f" ({d['reason']})" if d.get("reason") else ""),
            str(d["attempts"]),
            (d.get("last_error") or "")[:80],
        )
    _print_table(table)
    n = len(data["deliveries"])
    more = f"; next page: --cursor {data['next_cursor']}" if data.get("next_cursor") else ""
    err.print(f"{n} deliver{'y' if n == 1 else 'ies'}{more}")


@deliveries.command("show")
@click.argument("delivery_id")
@click.option("--account", default=None, help="Where to look (default: every account).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
@api_options
def deliveries_show(delivery_id: str, account: str | None, as_json: bool, url: str | None) -> None:
    """Show one delivery and every attempt (time, outcome, error, HTTP status).

    \b
    Example:
      deskbridge deliveries show 018f2a9c3b1e4d5f6a7b8c9d0e1f2a3b
    """
    data = _api(url).call("GET", f"/deliveries/{delivery_id}", params={"account": account})
    if as_json:
        _json_out(data)
        return
    for name in (
        "id",
        "account",
        "direction",
        "channel",
        "desk",
        "conversation_id",
        "event_id",
        "state",
        "reason",
        "attempts",
        "created_at",
        "updated_at",
        "last_error",
        "last_status",
        "channel_status",
        "channel_error",
        "replays",
        "replayed_at",
        "replayed_by",
        "discarded_at",
        "discarded_by",
        "discard_reason",
        "raw_id",
    ):
        if data.get(name) not in (None, ""):
            out.print(f"[bold]{name}[/]: {data[name]}", markup=True)
    table = Table(box=None, header_style="bold", title="attempts", title_justify="left")
    for col in ("at", "outcome", "http", "wait", "error"):
        table.add_column(col, overflow="fold")
    for a in data.get("attempt_log", []):
        table.add_row(
            _short_time(a["at"]),
            a["outcome"],
            str(a.get("http_status") or ""),
            f"{a['wait']:.1f}s" if a.get("wait") is not None else "",
            a.get("error") or "",
        )
    _print_table(table)


def _settle(api: Api, ids: list[str], wait: float) -> dict[str, dict[str, Any]]:
    """Poll the replayed deliveries until each has finished or ``wait`` seconds passed."""
    latest: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + wait
    with _progress() as progress:
        task = progress.add_task("finishing", total=len(ids))
        while True:
            for chunk in _chunks(ids):
                for d in api.call("POST", "/deliveries/lookup", body={"ids": chunk})["deliveries"]:
                    latest[d["id"]] = d
            done = sum(1 for d in latest.values() if d["state"] not in ("pending", "held"))
            progress.update(task, completed=done)
            if done == len(ids) or time.monotonic() >= deadline:
                return latest
            time.sleep(0.25)


def _verdict(d: dict[str, Any] | None) -> str:
    """delivered, failed again, failing (retrying), held or pending."""
    if d is None:
        return "gone"
    if d["state"] in ("delivered", "skipped"):
        return "delivered"
    if d["state"] == "dead":
        return "failed again"
    last = d.get("last_attempt")
    replayed = d.get("replayed_at")
    if (
        last is not None
        and replayed is not None
        and last["outcome"] in ("retry", "rate_limited")
        and datetime.fromisoformat(last["at"]) >= datetime.fromisoformat(replayed)
    ):
        return "failing (retrying)"
    return str(d["state"])


@deliveries.command("replay")
@click.argument("ids", nargs=-1)
@filter_options
@click.option("--dry-run", is_flag=True, help="Say what would be replayed; change nothing.")
@click.option(
    "--wait",
    type=click.FloatRange(0),
    default=120,
    show_default=True,
    help="Seconds to wait for the replayed deliveries to finish (0: do not wait).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@api_options
def deliveries_replay(
    ids: tuple[str, ...], dry_run: bool, wait: float, as_json: bool, url: str | None, **kw: Any
) -> None:
    """Replay dead letters by id, or every one a filter matches (state defaults to failed).

    Idempotent: a delivery that is no longer dead (it succeeded meanwhile, or was replayed
    already) is skipped. Replayed deliveries go back into their conversation's lane in
    arrival order. Exits 1 when any failed again or did not finish within --wait.

    \b
    Examples:
      deskbridge deliveries replay 018f2a9c3b1e4d5f6a7b8c9d0e1f2a3b
      deskbridge deliveries replay --state failed --since 2h --channel whatsapp --dry-run
      deskbridge deliveries replay --since 1d --desk zendesk --wait 300
    """
    filt = _filter(kw)
    if ids and filt.keys() - {"account"}:
        _die("give delivery ids or filter options, not both", EXIT_USAGE)
    if not ids and not filt:
        _die("give delivery ids, or a filter such as --state failed --since 2h", EXIT_USAGE)
    api = _api(url)
    if ids:
        chosen = list(dict.fromkeys(ids))
    else:
        filt.setdefault("state", "failed")
        listed = _list_all(api, filt, 500, every=True)["deliveries"]
        chosen = [d["id"] for d in listed]
    replayed: list[str] = []
    skipped: list[dict[str, str]] = []
    missing: list[str] = []
    with _progress() as progress:
        task = progress.add_task("checking" if dry_run else "replaying", total=len(chosen))
        for chunk in _chunks(chosen):
            body: dict[str, Any] = {"ids": chunk, "dry_run": dry_run}
            if "account" in filt:
                body["account"] = filt["account"]
            res = api.call("POST", "/deliveries/replay", body=body)
            replayed += res["replayed"]
            skipped += res["skipped"]
            missing += res["missing"]
            progress.advance(task, len(chunk))
    settled = _settle(api, replayed, wait) if replayed and not dry_run and wait > 0 else {}
    verdicts = {i: _verdict(settled.get(i)) for i in replayed} if settled else {}
    failed = [i for i, v in verdicts.items() if v in ("failed again", "failing (retrying)")]
    unfinished = [i for i, v in verdicts.items() if v in ("pending", "held", "gone")]
    if as_json:
        _json_out(
            {
                "dry_run": dry_run,
                "replayed": replayed,
                "skipped": skipped,
                "missing": missing,
                "outcomes": verdicts,
            }
        )
    else:
        verb = "would replay" if dry_run else "replayed"
        parts = [f"{verb} {len(replayed)}", f"skipped {len(skipped)}"]
        if missing:
            parts.append(f"not found {len(missing)}")
        if verdicts:
            delivered = sum(1 for v in verdicts.values() if v == "delivered")
            parts += [f"delivered {delivered}", f"failed again {len(failed)}"]
            if unfinished:
                parts.append(f"unfinished after {wait:g}s {len(unfinished)}")
        out.print(", ".join(parts))
        for s in skipped:
            out.print(f"  skipped {s['id']}: {s['reason']}")
        for i in missing:
            out.print(f"  not found: {i}")
        for i in failed:
            error = (settled[i].get("last_error") or "")[:120]
            out.print(f"  failed again {i}: {error}")
    if failed or unfinished:
        sys.exit(EXIT_FAILED_AGAIN)


@deliveries.command("discard")
@click.argument("ids", nargs=-1, required=True)
@click.option("--reason", required=True, help="Why (kept on each delivery and in the audit log).")
@click.option("--account", default=None, help="Where to look (default: every account).")
@api_options
def deliveries_discard(
    ids: tuple[str, ...], reason: str, account: str | None, url: str | None
) -> None:
    """Discard dead letters (or held and pending deliveries): they stop blocking their
    conversation and are kept as discarded, with who and why.

    \b
    Example:
      deskbridge deliveries discard 018f2a9c3b1e4d5f6a7b8c9d0e1f2a3b \\
          --reason "answered by phone"
    """
    api = _api(url)
    discarded, skipped, missing = 0, [], []
    for chunk in _chunks(list(dict.fromkeys(ids))):
        body: dict[str, Any] = {"ids": chunk, "reason": reason}
        if account:
            body["account"] = account
        res = api.call("POST", "/deliveries/discard", body=body)
        discarded += len(res["discarded"])
        skipped += res["skipped"]
        missing += res["missing"]
    out.print(
        f"discarded {discarded}, skipped {len(skipped)}"
        + (f", not found {len(missing)}" if missing else "")
    )
    for s in skipped:
        out.print(f"  skipped {s['id']}: {s['reason']}")
    for i in missing:
        out.print(f"  not found: {i}")


# --- raw events --------------------------------------------------------------------------


@click.group()
def events() -> None:
    """Kept raw webhook requests: list them, re-ingest them after a parser fix.

    \b
    Example:
      deskbridge events reingest --channel whatsapp --since 1d --dry-run
    """


_SOURCES = _CHANNELS + _DESKS


@events.command("list")
@click.option("--account", default=None, help="One account (default: all).")
@click.option("--channel", type=click.Choice(_SOURCES), default=None, help="A channel (or desk).")
@click.option("--since", type=WHEN, default=None, help="Received after: 2h, 7d, or a time.")
@click.option("--until", type=WHEN, default=None, help="Received before.")
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True)
@click.option("--cursor", default=None, help="Continue after a previous page.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
@api_options
def events_list(
    account: str | None,
    channel: str | None,
    since: str | None,
    until: str | None,
    limit: int,
    cursor: str | None,
    as_json: bool,
    url: str | None,
) -> None:
    """List kept raw requests (never their bodies), newest first.

    \b
    Example:
      deskbridge events list --channel whatsapp --since 1d
    """
    params = {
        "account": account,
        "channel": channel,
        "since": since,
        "until": until,
        "limit": limit,
        "cursor": cursor,
    }
    data = _api(url).call("GET", "/events", params=params)
    if as_json:
        _json_out(data)
        return
    table = Table(box=None, header_style="bold")
    table.add_column("id", no_wrap=True, min_width=32)
    for col in ("received", "account", "source", "size", "parse failed"):
        table.add_column(col, no_wrap=True, overflow="ellipsis")
    for e in data["events"]:
        table.add_row(
            e["id"],
            _short_time(e["received_at"]),
            e["account"],
            e["source"],
            str(e["size"]),
            "yes" if e["parse_failed"] else "",
        )
    _print_table(table)
    more = f"; next page: --cursor {data['next_cursor']}" if data.get("next_cursor") else ""
    err.print(f"{len(data['events'])} raw request(s){more}")


@events.command("reingest")
@click.argument("ids", nargs=-1)
@click.option("--account", default=None, help="One account (default: all).")
@click.option("--channel", type=click.Choice(_SOURCES), default=None, help="A channel (or desk).")
@click.option("--since", type=WHEN, default=None, help="Received after: 2h, 7d, or a time.")
@click.option("--until", type=WHEN, default=None, help="Received before.")
@click.option("--dry-run", is_flag=True, help="Say what would be delivered; change nothing.")
@click.option(
    "--allow-duplicates",
    is_flag=True,
    help="Also take requests older than the dedup window (their events may reach the desk twice).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@api_options
def events_reingest(
    ids: tuple[str, ...],
    account: str | None,
    channel: str | None,
    since: str | None,
    until: str | None,
    dry_run: bool,
    allow_duplicates: bool,
    as_json: bool,
    url: str | None,
) -> None:
    """Parse kept raw requests again with today's code and take their new events in.

    Events already taken (their dedup mark is still there) are reported, not stored twice.
    A parse_failed dead letter that now parses is discarded as re-ingested. Exits 1 when a
    request could not be re-ingested.

    \b
    Examples:
      deskbridge events reingest --channel whatsapp --since 1d --dry-run
      deskbridge events reingest 018f2a9c3b1e4d5f6a7b8c9d0e1f2a3b
    """
    if not ids and since is None:
        _die("give raw request ids, or --since (and --until) to choose them", EXIT_USAGE)
    api = _api(url)
    base: dict[str, Any] = {
        "account": account,
        "channel": channel,
        "since": since,
        "until": until,
        "dry_run": dry_run,
        "allow_duplicates": allow_duplicates,
    }
    base = {k: v for k, v in base.items() if v is not None}
    results: list[dict[str, Any]] = []
    totals = {"raw": 0, "new": 0, "duplicate": 0, "ignored": 0, "errors": 0}
    with _progress() as progress:
        task = progress.add_task("re-ingesting" if not dry_run else "checking", total=None)
        batches: Iterator[dict[str, Any]]
        if ids:
            batches = iter([{**base, "ids": c} for c in _chunks(list(dict.fromkeys(ids)))])
        else:
            batches = iter([{**base, "limit": 100}])
        for body in batches:
            while True:
                res = api.call("POST", "/events/reingest", body=body)
                results += res["raw"]
                for k in totals:
                    totals[k] += res["totals"][k]
                progress.advance(task, res["totals"]["raw"])
                if not res.get("next_cursor"):
                    break
                body = {**body, "cursor": res["next_cursor"]}
    if as_json:
        _json_out({"dry_run": dry_run, "totals": totals, "raw": results})
    else:
        states: dict[str, int] = {}
        for r in results:
            for e in r["events"]:
                if e["status"] == "duplicate":
                    states[e.get("state", "?")] = states.get(e.get("state", "?"), 0) + 1
        taken = ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
        verb = "would deliver" if dry_run else "new events queued"
        out.print(
            f"raw requests {totals['raw']}: {verb} {totals['new']}, already taken "
            f"{totals['duplicate']}{f' ({taken})' if taken else ''}, errors {totals['errors']}"
        )
        for r in results:
            if r.get("error"):
                out.print(f"  {r['id']} ({r['source']}): {r['error']}")
    if totals["errors"]:
        sys.exit(EXIT_FAILED_AGAIN)


# --- contacts ------------------------------------------------------------------------------


@click.group()
def contacts() -> None:
    """The identity graph: who deskbridge takes to be the same person, and why.

    A contact is named by its id, a phone number (+E.164), an email address or
    channel:id (telegram:700000001, whatsapp:16505551234). Needs a token with
    contacts:read (and contacts:write to link, unlink or decide).

    \b
    Example:
      deskbridge contacts show +16505551234 --account acme
    """


@contacts.command("show")
@click.argument("ref")
@click.option("--account", default=None, help="The account (required when there are several).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
@api_options
def contacts_show(ref: str, account: str | None, as_json: bool, url: str | None) -> None:
    """Show a contact: identities, the evidence joining them, conversations, desk users.

    \b
    Example:
      deskbridge contacts show +16505551234 --account acme
    """
    data = _api(url).call("GET", f"/contacts/{ref}", params={"account": account})
    if as_json:
        _json_out(data)
        return
    for name in ("id", "account", "scope", "display_name", "created_at"):
        if data.get(name):
            out.print(f"[bold]{name}[/]: {data[name]}", markup=True)
    idents = Table(box=None, header_style="bold", title="identities", title_justify="left")
    for col in ("kind", "channel", "value", "strength", "source"):
        idents.add_column(col, overflow="fold")
    for i in data.get("identities", []):
        idents.add_row(i["kind"], i.get("channel") or "", i["value"], i["strength"], i["source"])
    _print_table(idents)
    edges = Table(box=None, header_style="bold", title="evidence", title_justify="left")
    for col in ("between", "and", "merges", "evidence"):
        edges.add_column(col, overflow="fold")
    for e in data.get("edges", []):
        evidence = "; ".join(
            f"{x.get('source')} by {x.get('actor')}" for x in e.get("evidence", [])[-3:]
        )
        edges.add_row(e["a"]["value"], e["b"]["value"], "yes" if e["merging"] else "no", evidence)
    _print_table(edges)
    convs = Table(box=None, header_style="bold", title="conversations", title_justify="left")
    for col in ("conversation", "channel", "ticket"):
        convs.add_column(col)
    for c in data.get("conversations", []):
        convs.add_row(c["id"], c["channel"], c.get("ticket_id") or "")
    _print_table(convs)
    for desk, user in data.get("desk_users", {}).items():
        out.print(f"[bold]{desk} user[/]: {user}", markup=True)


@contacts.command("forget")
@click.argument("ref")
@click.option("--account", default=None, help="The account (required when there are several).")
@click.option("--desk", "at_desk", is_flag=True, help="Also delete the desk user and tickets.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
@api_options
def contacts_forget(
    ref: str, account: str | None, at_desk: bool, as_json: bool, url: str | None
) -> None:
    """Erase a contact and everything deskbridge holds about them (right to erasure).

    Removes the contact, its identities and evidence, its conversations with their
    messages, raw requests, deliveries and dead letters; with --desk, the desk user and
    tickets too. Idempotent. Needs contacts:write. See docs/privacy.md.

    \b
    Example:
      deskbridge contacts forget +16505551234 --account acme --desk
    """
    data = _api(url).call(
        "POST", f"/contacts/{ref}/forget", body={"account": account, "desk": at_desk}
    )
    if as_json:
        _json_out(data)
        return
    if data.get("nothing_left"):
        out.print("nothing left: deskbridge holds nothing about this contact")
        return
    out.print(f"forgot contact {data['contact']} ({', '.join(data.get('accounts', []))})")
    for step, n in data.get("removed", {}).items():
        if n:
            out.print(f"  {step}: {n} removed")
    for d in data.get("desk", []):
        done = "; ".join(d["done"]) or "nothing left"
        out.print(f"  desk {d['desk']} ({d['account']}): {done}")
    out.print(f"  append-only file rewrite: {data.get('aof_rewrite')}")


@contacts.command("export")
@click.argument("ref")
@click.option("--account", default=None, help="The account (required when there are several).")
@click.option(
    "--out",
    "out_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write the JSON here (mode 0600) instead of standard output.",
)
@api_options
def contacts_export(ref: str, account: str | None, out_file: str | None, url: str | None) -> None:
    """Everything deskbridge holds about a contact, as JSON (right of access).

    Needs contacts:read. See docs/privacy.md for the format.

    \b
    Example:
      deskbridge contacts export +16505551234 --account acme --out ana.json
    """
    data = _api(url).call("GET", f"/contacts/{ref}/export", params={"account": account})
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    if out_file is None:
        click.echo(text, nl=False)
        return
    fd = os.open(out_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    out.print(f"written to {out_file}")


def _link(
    action: str,
    a: str,
    b: str,
    reason: str,
    account: str | None,
    url: str | None,
    merge_desk_users: bool = False,
) -> None:
    body: dict[str, Any] = {"account": account, "a": a, "b": b, "reason": reason}
    if merge_desk_users:
        body["merge_desk_users"] = True
    data = _api(url).call("POST", f"/contacts/{action}", body=body)
    for line in data.get("desk", []):
        out.print(f"desk: {line}")
    if action == "link":
        merged = ", ".join(data.get("merged", [])) or "nothing (already one contact)"
        out.print(f"linked: contact {data['contact']} (merged {merged})")
    elif data.get("split_off"):
        out.print(f"unlinked: contact {data['kept']} split; {data['split_off']} is the other part")
    else:
        out.print(f"unlinked: contact {data['kept']} stays whole (another link joins them)")


@contacts.command("link")
@click.argument("a")
@click.argument("b")
@click.option("--reason", required=True, help="Why (kept as the link's evidence).")
@click.option("--account", default=None, help="The account (required when there are several).")
@click.option(
    "--merge-desk-users",
    is_flag=True,
    help="Also merge the two desk users (Zendesk: permanent; other desks: not possible).",
)
@api_options
def contacts_link(
    a: str, b: str, reason: str, account: str | None, merge_desk_users: bool, url: str | None
) -> None:
    """Link two identifiers as one person (their contacts merge; reversible with unlink).

    \b
    Example:
      deskbridge contacts link +16505551234 ana@example.com --reason "confirmed by phone"
    """
    _link("link", a, b, reason, account, url, merge_desk_users)


@contacts.command("unlink")
@click.argument("a")
@click.argument("b")
@click.option("--reason", required=True, help="Why (kept in the audit trail).")
@click.option("--account", default=None, help="The account (required when there are several).")
@api_options
def contacts_unlink(a: str, b: str, reason: str, account: str | None, url: str | None) -> None:
    """Remove the link between two identifiers; the contact splits if nothing else joins.

    \b
    Example:
      deskbridge contacts unlink telegram:700000001 +16505551234 --reason "shared phone"
    """
    _link("unlink", a, b, reason, account, url)


@contacts.command("suggestions")
@click.option("--account", default=None, help="The account (required when there are several).")
@click.option("--accept", nargs=2, default=None, help="Merge these two contacts.")
@click.option("--reject", nargs=2, default=None, help="Dismiss this suggestion.")
@click.option("--merge-desk-users", is_flag=True, help="With --accept: also merge the desk users.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
@api_options
def contacts_suggestions(
    account: str | None,
    accept: tuple[str, str] | None,
    reject: tuple[str, str] | None,
    merge_desk_users: bool,
    as_json: bool,
    url: str | None,
) -> None:
    """List merge suggestions (weak, shared or recycled identifiers), or decide one.

    \b
    Examples:
      deskbridge contacts suggestions --account acme
      deskbridge contacts suggestions --accept ID1 ID2
    """
    api = _api(url)
    if accept and reject:
        _die("give --accept or --reject, not both", EXIT_USAGE)
    if accept or reject:
        pair = accept or reject
        assert pair is not None
        api.call(
            "POST",
            "/contacts/suggestions/decide",
            body={
                "account": account,
                "contacts": list(pair),
                "accept": bool(accept),
                "merge_desk_users": bool(accept) and merge_desk_users,
            },
        )
        out.print("merged" if accept else "dismissed")
        return
    data = api.call("GET", "/contacts/suggestions", params={"account": account})
    if as_json:
        _json_out(data)
        return
    table = Table(box=None, header_style="bold")
    for col in ("contact", "and contact", "reason", "since"):
        table.add_column(col)
    for s in data.get("suggestions", []):
        when = datetime.fromtimestamp(float(s["at"]), UTC).strftime("%Y-%m-%d %H:%M")
        table.add_row(s["contacts"][0], s["contacts"][1], s["reason"], when)
    _print_table(table)
