"""``deskbridge deliveries``: deliveries and dead letters, through the admin API."""

from __future__ import annotations

import sys
import time
from datetime import datetime
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
    Api,
    F,
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
from deskbridge.schemas import brand

__all__ = ["deliveries"]

_STATES = ["pending", "held", "delivered", "skipped", "dead", "failed", "discarded"]


def filter_options(f: F) -> F:
    for opt in reversed(
        [
            click.option("--account", default=None, help="One account (default: all)."),
            click.option(
                "--state", type=click.Choice(_STATES), default=None, help="failed = dead."
            ),
            click.option("--direction", type=click.Choice(["inbound", "outbound"]), default=None),
            click.option("--channel", type=click.Choice(CHANNEL_NAMES), default=None),
            click.option("--desk", type=click.Choice(DESK_NAMES), default=None),
            click.option("--conversation", default=None, help="A conversation id."),
            click.option("--error", "error_text", default=None, help="Text in the last error."),
            click.option(
                "--since", type=WHEN, default=None, help="Created after: 2h, 7d, or a time."
            ),
            click.option("--until", type=WHEN, default=None, help="Created before: 2h, or a time."),
            click.option(
                "--kind",
                type=click.Choice(["note", "event"]),
                default=None,
                help="note: deskbridge's internal notes for agents.",
            ),
        ]
    ):
        f = opt(f)
    return f


def _filter(kw: dict[str, Any]) -> dict[str, Any]:
    names = (
        "account",
        "state",
        "direction",
        "channel",
        "desk",
        "conversation",
        "since",
        "until",
        "kind",
    )
    found = {k: kw[k] for k in names if kw.get(k) is not None}
    if kw.get("error_text"):
        found["error"] = kw["error_text"]
    return found


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
    api = api_for(url)
    params = {**_filter(kw), "cursor": cursor}
    data = _list_all(api, params, limit, every)
    if as_json:
        json_out(data)
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
            short_time(d["created_at"]),
            d["account"],
            "note" if d.get("kind") == "note" else "in" if d["direction"] == "inbound" else "out",
            brand(d["channel"]),
            brand(d["desk"]),
            d["state"] + (f" ({d['reason']})" if d.get("reason") else ""),
            str(d["attempts"]),
            (d.get("last_error") or "")[:80],
        )
    print_table(table)
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
    data = api_for(url).call("GET", f"/deliveries/{delivery_id}", params={"account": account})
    if as_json:
        json_out(data)
        return
    for name in (
        "id",
        "account",
        "kind",
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
            out.print(f"[bold]{name}[/]: {escape(str(data[name]))}", markup=True)
    if data.get("rate_limited_s"):
        out.print(f"[bold]rate_limited[/]: {data['rate_limited_s']:g}s", markup=True)
    if parts := data.get("parts_sent"):
        listed = ", ".join(f"{n}: {ext}" for n, ext in parts.items())
        out.print(f"[bold]parts_sent[/]: {len(parts)} ({escape(listed)})", markup=True)
    table = Table(box=None, header_style="bold", title="attempts", title_justify="left")
    for col in ("at", "outcome", "http", "wait", "error"):
        table.add_column(col, overflow="fold")
    for a in data.get("attempt_log", []):
        table.add_row(
            short_time(a["at"]),
            a["outcome"],
            str(a.get("http_status") or ""),
            f"{a['wait']:.1f}s" if a.get("wait") is not None else "",
            a.get("error") or "",
        )
    print_table(table)


def _settle(api: Api, ids: list[str], wait: float) -> dict[str, dict[str, Any]]:
    """Poll the replayed deliveries until each has finished or ``wait`` seconds passed."""
    latest: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + wait
    with progress_bar() as progress:
        task = progress.add_task("finishing", total=len(ids))
        while True:
            for chunk in chunks(ids):
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
    """Replay dead letters by id, or every one a filter matches (state defaults to failed;
    with --dry-run no filter is needed).

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
        die("give delivery ids or filter options, not both", EXIT_USAGE)
    if not ids and not filt and not dry_run:
        # replaying every failed delivery at once is seldom meant: say it, or look first
        die(
            "give delivery ids or a filter (--state failed: every failed one; --dry-run "
            "lists them first)",
            EXIT_USAGE,
        )
    api = api_for(url)
    if ids:
        chosen = list(dict.fromkeys(ids))
    else:
        filt.setdefault("state", "failed")
        listed = _list_all(api, filt, 500, every=True)["deliveries"]
        chosen = [d["id"] for d in listed]
    replayed: list[str] = []
    skipped: list[dict[str, str]] = []
    missing: list[str] = []
    with progress_bar() as progress:
        task = progress.add_task("checking" if dry_run else "replaying", total=len(chosen))
        for chunk in chunks(chosen):
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
        json_out(
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
    api = api_for(url)
    discarded, skipped, missing = 0, [], []
    for chunk in chunks(list(dict.fromkeys(ids))):
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
