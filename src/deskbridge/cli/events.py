"""``deskbridge events``: kept raw webhook requests, listed and re-ingested through the
admin API."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from deskbridge.cli.admin_api import (
    CHANNEL_NAMES,
    DESK_NAMES,
    EXIT_FAILED_AGAIN,
    EXIT_USAGE,
    WHEN,
    api_for,
    api_options,
    chunks,
    die,
    err,
    json_out,
    out,
    print_table,
    progress_bar,
    short_time,
)

__all__ = ["events"]


@click.group()
def events() -> None:
    """Kept raw webhook requests: list them, re-ingest them after a parser fix.

    \b
    Example:
      deskbridge events reingest --channel whatsapp --since 1d --dry-run
    """


_SOURCES = CHANNEL_NAMES + DESK_NAMES


@events.command("list")
@click.option("--account", default=None, help="One account (default: all).")
@click.option("--channel", type=click.Choice(_SOURCES), default=None, help="A channel (or desk).")
@click.option("--since", type=WHEN, default=None, help="Received after: 2h, 7d, or a time.")
@click.option("--until", type=WHEN, default=None, help="Received before.")
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True)
@click.option("--cursor", default=None, help="Continue after a previous page.")
@click.option(
    "--ignored",
    is_flag=True,
    help="List the items acknowledged and not filed (echoes, duplicates...) with their reasons.",
)
@click.option("--reason", default=None, help="With --ignored: one reason (echo, duplicate, ...).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
@api_options
def events_list(
    account: str | None,
    channel: str | None,
    since: str | None,
    until: str | None,
    limit: int,
    cursor: str | None,
    ignored: bool,
    reason: str | None,
    as_json: bool,
    url: str | None,
) -> None:
    """List kept raw requests (never their bodies), newest first; with --ignored, the
    inbound items that were acknowledged and deliberately not filed, each with its reason.

    \b
    Examples:
      deskbridge events list --channel whatsapp --since 1d
      deskbridge events list --ignored --reason echo --since 1d
    """
    params = {
        "account": account,
        "channel": channel,
        "since": since,
        "until": until,
        "limit": limit,
        "cursor": cursor,
    }
    if ignored:
        _list_ignored(url, {**params, "reason": reason}, as_json=as_json)
        return
    if reason is not None:
        die("--reason goes with --ignored", EXIT_USAGE)
    data = api_for(url).call("GET", "/events", params=params)
    if as_json:
        json_out(data)
        return
    table = Table(box=None, header_style="bold")
    table.add_column("id", no_wrap=True, min_width=32)
    for col in ("received", "account", "source", "size", "parse failed"):
        table.add_column(col, no_wrap=True, overflow="ellipsis")
    for e in data["events"]:
        table.add_row(
            e["id"],
            short_time(e["received_at"]),
            e["account"],
            e["source"],
            str(e["size"]),
            "yes" if e["parse_failed"] else "",
        )
    print_table(table)
    more = f"; next page: --cursor {data['next_cursor']}" if data.get("next_cursor") else ""
    err.print(f"{len(data['events'])} raw request(s){more}")


def _list_ignored(url: str | None, params: dict[str, Any], *, as_json: bool) -> None:
    data = api_for(url).call("GET", "/events/ignored", params=params)
    if as_json:
        json_out(data)
        return
    table = Table(box=None, header_style="bold")
    table.add_column("id", no_wrap=True, min_width=32)
    for col in ("received", "account", "source", "reason", "provider id", "raw request"):
        table.add_column(col, no_wrap=True, overflow="ellipsis")
    for e in data["items"]:
        table.add_row(
            e["id"],
            short_time(e["received_at"]),
            e["account"],
            e["source"],
            e["reason"],
            e.get("provider_id") or "",
            e.get("raw_id") or "",
        )
    print_table(table)
    more = f"; next page: --cursor {data['next_cursor']}" if data.get("next_cursor") else ""
    err.print(f"{len(data['items'])} ignored item(s){more}")


@events.command("show")
@click.argument("raw_id")
@click.option("--account", default=None, help="Where to look (default: every account).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
@api_options
def events_show(raw_id: str, account: str | None, as_json: bool, url: str | None) -> None:
    """Show one kept raw request: when, where from, its headers, query and body.

    The body and the header and query values name the sender: the gateway gives them
    only to a token that also has contacts:read (and audits it); otherwise they are
    redacted and the command says so.

    \b
    Example:
      deskbridge events show 018f2a9c3b1e4d5f6a7b8c9d0e1f2a3b
    """
    data = api_for(url).call("GET", f"/events/{raw_id}", params={"account": account})
    if as_json:
        json_out(data)
        return
    for name in ("id", "account", "source", "received_at", "method", "path", "size"):
        out.print(f"[bold]{name}[/]: {escape(str(data[name]))}", markup=True)
    if data.get("parse_failed"):
        out.print(f"[bold]parse failed[/]: dead letter {data.get('delivery_id')}", markup=True)
    for part in ("headers", "query"):
        for key, value in data.get(part, {}).items():
            shown = "(redacted)" if value is None else value
            out.print(
                f"[bold]{part[:-1] if part == 'headers' else part}[/] {escape(key)}: "
                f"{escape(shown)}",
                markup=True,
            )
    if data.get("redacted"):
        err.print(f"body redacted: {data['redacted']}")
    elif data.get("body_encoding") == "base64":
        out.print("[bold]body[/] (base64):", markup=True)
        out.print(data.get("body") or "", markup=False)
    else:
        out.print("[bold]body[/]:", markup=True)
        out.print(data.get("body") or "", markup=False)


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
        die("give raw request ids, or --since (and --until) to choose them", EXIT_USAGE)
    api = api_for(url)
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
    with progress_bar() as progress:
        task = progress.add_task("re-ingesting" if not dry_run else "checking", total=None)
        batches: Iterator[dict[str, Any]]
        if ids:
            batches = iter([{**base, "ids": c} for c in chunks(list(dict.fromkeys(ids)))])
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
        json_out({"dry_run": dry_run, "totals": totals, "raw": results})
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
