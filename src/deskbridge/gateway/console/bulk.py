"""Bulk replay and discard without JavaScript: the filtered set runs in batches of 100
as a task of the gateway, its ids and progress kept in Redis (``rt.console.bulk``), and
a progress page that reloads itself (a ``<meta http-equiv="refresh">``, which the CSP
allows) until the job is done. Each batch is the admin API's own replay or discard with
the session's principal, so it is audited as the API's; the job stops when the token
expires or is revoked. A job whose gateway stopped is resumed from the ids left."""

from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import web

from deskbridge.errors import StoreUnavailable
from deskbridge.flows import Runtime
from deskbridge.gateway.admin.auth import Principal
from deskbridge.gateway.admin.models import MAX_IDS, DiscardBody, ReplayBody
from deskbridge.gateway.admin.routes import BadInput, discard, replay
from deskbridge.gateway.console.render import DASH, csrf_field, e
from deskbridge.gateway.console.session import Ctx, redirect
from deskbridge.store.sessions import BulkJob

__all__ = ["BULK_TASKS", "STALE_S", "Running", "progress", "resume_post", "run", "start"]

log = logging.getLogger(__name__)


class Running:
    """The bulk tasks this gateway runs (held so they are not collected mid-way)."""

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[None]] = set()


BULK_TASKS = web.AppKey("console_bulk_tasks", Running)
STALE_S = 60
"""A running job with no batch done for this long lost its gateway: it can be resumed."""
_REFRESH_S = 1


async def _allowed(rt: Runtime, who: Principal, until: int) -> str:
    """Why the job's token may act no more ('' while it may)."""
    if time.time() >= until:
        return "the session's token expired"
    if await rt.revocations.revoked(who.jti, who.sub, who.issued_at):
        return "the session's token was revoked"
    return ""


async def run(rt: Runtime, who: Principal, until: int, job: str) -> None:
    """Do the job's ids a batch at a time until none is left (or the token ends)."""
    jobs = rt.console.bulk
    try:
        found = await jobs.get(job)
        while found is not None:
            stop = await _allowed(rt, who, until)
            if stop:
                await jobs.finish(job, "stopped", stop)
                return
            ids = await jobs.batch(job, MAX_IDS)
            if not ids:
                await jobs.finish(job, "done")
                return
            if found.action == "replay":
                r = await replay(rt, who, ReplayBody(ids=ids))
                counts = (len(r.replayed), len(r.skipped), len(r.missing))
            else:
                d = await discard(rt, who, DiscardBody(ids=ids, reason=found.reason))
                counts = (len(d.discarded), len(d.skipped), len(d.missing))
            await jobs.advance(job, len(ids), *counts)
    except BadInput as exc:
        await jobs.finish(job, "stopped", str(exc))
    except (StoreUnavailable, OSError) as exc:
        # the ids left stay in Redis: the job is resumed from the progress page
        log.error("console bulk job stopped: store unavailable (%s)", type(exc).__name__)


def start(app: web.Application, ctx: Ctx, job: str) -> None:
    """Run ``job`` as a task of this gateway (kept until it ends)."""
    task = asyncio.create_task(run(ctx.rt, ctx.who, ctx.until, job), name=f"console-bulk-{job}")
    app[BULK_TASKS].tasks.add(task)
    task.add_done_callback(app[BULK_TASKS].tasks.discard)


async def open_job(
    request: web.Request, ctx: Ctx, action: str, ids: list[str], reason: str = ""
) -> web.StreamResponse:
    """Keep ``ids`` as a new job, start it, and send the browser to its progress page
    (the script, posting ``format=json``, gets the job's address to poll instead)."""
    job = await ctx.rt.console.bulk.open(ctx.who.sub, action, reason, ids)
    start(request.app, ctx, job)
    if ctx.form.get("format") == "json":
        return web.json_response(
            {"job": job, "total": len(ids), "progress": f"/console/bulk/{job}?format=json"},
            headers={"Cache-Control": "no-store"},
        )
    return redirect(f"/console/bulk/{job}")


def _stalled(job: BulkJob) -> bool:
    return job.state == "running" and time.time() - job.updated_at > STALE_S


async def _mine(request: web.Request, ctx: Ctx) -> BulkJob | None:
    job = await ctx.rt.console.bulk.get(request.match_info["job"])
    # another operator's job is not found, as with the API's other records
    return job if job is not None and job.who == ctx.who.sub else None


def _not_found(ctx: Ctx) -> web.StreamResponse:
    return ctx.page(
        "Not found",
        "<p>No such bulk job (they are kept a day).</p>",
        status=404,
        active="deliveries",
    )


async def progress(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    """How far a bulk job got; reloads itself every second while it runs."""
    job = await _mine(request, ctx)
    if job is None:
        return _not_found(ctx)
    verb = "replayed" if job.action == "replay" else "discarded"
    running = job.state == "running" and not _stalled(job)
    if request.query.get("format") == "json":
        return web.json_response(
            {
                "state": "stalled" if _stalled(job) else job.state,
                "error": job.error,
                "verb": verb,
                "total": job.total,
                "done": job.done,
                "changed": job.changed,
                "skipped": job.skipped,
                "missing": job.missing,
            },
            headers={"Cache-Control": "no-store"},
        )
    if running:
        said = f"Working: {job.done} of {job.total} done."
    elif job.state == "done":
        said = f"Done: {job.changed} {verb}, {job.skipped} skipped, {job.missing} not found."
    elif job.state == "stopped":
        said = f"Stopped after {job.done} of {job.total}: {job.error}."
    else:
        said = f"Stalled after {job.done} of {job.total}: the gateway running it stopped."
    resume = (
        f'<form method=post action="/console/bulk/{e(job.id)}/resume">{csrf_field(ctx.csrf)}'
        f"<button type=submit>Resume the {job.left} left</button></form>"
        if not running and job.state != "done" and job.left
        else ""
    )
    facts = [
        ("Action", e(job.action) + (f" (reason: {e(job.reason)})" if job.reason else "")),
        (verb.capitalize(), str(job.changed)),
        ("Skipped", str(job.skipped)),
        ("Not found", str(job.missing)),
        ("Left", str(job.left) if job.left else DASH),
    ]
    kv = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts)
    body = (
        f'<section><p role="status"><b>{e(said)}</b></p>'
        f'<progress value="{job.done}" max="{max(job.total, 1)}" aria-label="Progress">'
        f"{job.done} of {job.total}</progress>"
        f'<dl class=kv aria-label="Bulk job">{kv}</dl>{resume}'
        + (
            "<p class=muted>This page reloads every second until the job is done.</p>"
            if running
            else '<p><a href="/console/deliveries">Back to deliveries</a></p>'
        )
        + "</section>"
    )
    title = f"Bulk {job.action}"
    return ctx.page(title, body, active="deliveries", refresh=_REFRESH_S if running else None)


async def resume_post(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    """Run a stopped or stalled job again from the ids it has left."""
    job = await _mine(request, ctx)
    if job is None:
        return _not_found(ctx)
    if job.state == "done" or (job.state == "running" and not _stalled(job)):
        return redirect(f"/console/bulk/{job.id}")
    await ctx.rt.console.bulk.finish(job.id, "running")
    start(request.app, ctx, job.id)
    return redirect(f"/console/bulk/{job.id}")
