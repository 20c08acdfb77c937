"""``deskbridge contacts``: the identity graph, through the admin API."""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from deskbridge.cli.admin_api import (
    EXIT_FAILED_AGAIN,
    EXIT_USAGE,
    api_for,
    api_options,
    die,
    err,
    json_out,
    out,
    print_table,
)
from deskbridge.schemas import brand

__all__ = ["contacts"]


@click.group()
def contacts() -> None:
    """The identity graph: who deskbridge takes to be the same person, and why.

    A contact is named by its id, a phone number (+E.164), an email address or
    channel:id (telegram:700000001, whatsapp:16505551234): any address they wrote
    from, verified or not (an unverified one is marked so). Needs a token with
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
    data = api_for(url).call("GET", f"/contacts/{ref}", params={"account": account})
    if as_json:
        json_out(data)
        return
    for name in ("id", "account", "scope", "display_name", "created_at"):
        if data.get(name):
            out.print(f"[bold]{name}[/]: {escape(str(data[name]))}", markup=True)
    if data.get("unverified_match"):
        out.print(
            f"found by: {data['unverified_match']}, an unverified identity (this contact "
            "wrote as it, but nothing vouched for it: an unauthenticated email sender, a "
            "SIP From with no trusted assertion)"
        )
    idents = Table(box=None, header_style="bold", title="identities", title_justify="left")
    for col in ("kind", "channel", "value", "verified", "source"):
        idents.add_column(col, overflow="fold")
    for i in data.get("identities", []):
        verified = "yes" if i["strength"] == "strong" else "no (unverified)"
        channel = brand(i["channel"]) if i.get("channel") else ""
        idents.add_row(i["kind"], channel, i["value"], verified, i["source"])
    print_table(idents)
    edges = Table(box=None, header_style="bold", title="evidence", title_justify="left")
    for col in ("between", "and", "merges", "evidence"):
        edges.add_column(col, overflow="fold")
    for e in data.get("edges", []):
        evidence = "; ".join(
            f"{x.get('source')} by {x.get('actor')}" for x in e.get("evidence", [])[-3:]
        )
        edges.add_row(e["a"]["value"], e["b"]["value"], "yes" if e["merging"] else "no", evidence)
    print_table(edges)
    convs = Table(box=None, header_style="bold", title="conversations", title_justify="left")
    for col in ("conversation", "channel", "ticket"):
        convs.add_column(col)
    for c in data.get("conversations", []):
        convs.add_row(c["id"], brand(c["channel"]), c.get("ticket_id") or "")
    print_table(convs)
    for desk, user in data.get("desk_users", {}).items():
        out.print(f"[bold]{desk} user[/]: {escape(str(user))}", markup=True)


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
    tickets too: a desk step counts only once the desk reads it back as gone; when one
    could not be confirmed, nothing is erased in deskbridge and the command exits 1.
    Idempotent. Needs contacts:write. See docs/privacy.md.

    \b
    Example:
      deskbridge contacts forget +16505551234 --account acme --desk
    """
    data = api_for(url).call(
        "POST", f"/contacts/{ref}/forget", body={"account": account, "desk": at_desk}
    )
    unsure = [d for d in data.get("desk", []) if d.get("confirmed") is False]
    if as_json:
        json_out(data)
    else:
        _print_forget(data, unsure)
    if unsure:
        sys.exit(EXIT_FAILED_AGAIN)


def _print_forget(data: dict[str, Any], unsure: list[dict[str, Any]]) -> None:
    # here, not at the top: the desks' package costs every contacts command a second
    from deskbridge.outbound.base import UNCONFIRMED

    if data.get("nothing_left"):
        out.print("nothing left: deskbridge holds nothing about this contact")
        return
    if unsure:
        for d in unsure:
            for step in d["done"]:
                if step.startswith(UNCONFIRMED):
                    err.print(f"desk {d['desk']} ({d['account']}): {step}")
        err.print(
            "could not confirm the deletion at the desk: nothing erased in deskbridge yet; "
            "run forget again later (or without --desk to erase deskbridge's copy only)"
        )
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
    data = api_for(url).call("GET", f"/contacts/{ref}/export", params={"account": account})
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
    data = api_for(url).call("POST", f"/contacts/{action}", body=body)
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


@contacts.command("opt-out")
@click.argument("ref")
@click.option("--undo", is_flag=True, help="The customer opted back in.")
@click.option("--reason", default="", help="Why (kept in the audit log).")
@click.option("--account", default=None, help="The account (required when there are several).")
@api_options
def contacts_opt_out(
    ref: str, undo: bool, reason: str, account: str | None, url: str | None
) -> None:
    """Record that a customer wants no proactive messages and no surveys (or, with
    --undo, that they want them again).

    \b
    Example:
      deskbridge contacts opt-out +16505551234 --reason "asked on the phone"
    """
    body = {"account": account, "opt_out": not undo, "reason": reason}
    data = api_for(url).call("POST", f"/contacts/{ref}/opt-out", body=body)
    state = "opted out" if data["opt_out"] else "opted in again"
    out.print(f"contact {data['contact']}: {state}")


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
    api = api_for(url)
    if accept and reject:
        die("give --accept or --reject, not both", EXIT_USAGE)
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
        json_out(data)
        return
    table = Table(box=None, header_style="bold")
    for col in ("contact", "and contact", "reason", "since"):
        table.add_column(col)
    for s in data.get("suggestions", []):
        when = datetime.fromtimestamp(float(s["at"]), UTC).strftime("%Y-%m-%d %H:%M")
        table.add_row(s["contacts"][0], s["contacts"][1], s["reason"], when)
    print_table(table)
