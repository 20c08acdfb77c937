"""Server-rendered SVG: bar charts for the overview and the identity graph of a contact.
Colours come from the stylesheet's classes (no inline styles: the CSP allows none)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from deskbridge.gateway.console.render import e

__all__ = ["Bar", "GraphNode", "bars", "graph"]


@dataclass(frozen=True, slots=True)
class Bar:
    """One group of bars: its label and (css class, legend label, value) per series;
    ``texts``, when given, are written beside the bars instead of the formatted values
    (a percentile known only to its histogram bucket says the bucket)."""

    label: str
    values: Sequence[tuple[str, str, float]]
    texts: Sequence[str] | None = None


def bars(
    title: str,
    groups: Sequence[Bar],
    *,
    width: int = 560,
    fmt: Callable[[float], str] = "{:g}".format,
) -> str:
    """A horizontal grouped bar chart with its values written out (readable without
    colour), titled for screen readers."""
    if not groups:
        return f"<p class=muted>{e(title)}: nothing yet.</p>"
    slug = "t-" + "".join(c if c.isalnum() else "-" for c in title.lower())
    series = max(len(g.values) for g in groups)
    top = max((v for g in groups for _, _, v in g.values), default=0) or 1
    row, gap, left, right = 16, 10, 150, 60
    height = len(groups) * (series * row + gap) + 10
    span = width - left - right
    parts = [
        f'<svg role="img" aria-labelledby="{slug}" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}"><title id="{slug}">{e(title)}</title>',
        f'<line class=axis x1="{left}" y1="0" x2="{left}" y2="{height}"/>',
    ]
    y = 5
    for g in groups:
        parts.append(
            f'<text x="{left - 8}" y="{y + series * row / 2 + 4:.0f}" text-anchor="end">'
            f"{e(g.label[:22])}</text>"
        )
        for i, (css, name, value) in enumerate(g.values):
            w = max(1.0, span * value / top) if value else 0
            said = g.texts[i] if g.texts is not None else fmt(value)
            parts.append(
                f'<rect class="{e(css)}" x="{left}" y="{y}" width="{w:.1f}" height="{row - 3}">'
                f"<title>{e(name)}: {e(said)}</title></rect>"
                f'<text x="{left + w + 4:.1f}" y="{y + row - 5}">{e(said)}</text>'
            )
            y += row
        y += gap
    parts.append("</svg>")
    legend = {(css, name) for g in groups for css, name, _ in g.values}
    keys = "".join(
        f'<span><svg width="12" height="12" aria-hidden="true"><rect class="{e(css)}" '
        f'width="12" height="12"/></svg> {e(name)}</span>'
        for css, name in sorted(legend, key=lambda x: x[1])
    )
    return "".join(parts) + f"<div class=legend>{keys}</div>"


@dataclass(frozen=True, slots=True)
class GraphNode:
    """An identifier of a contact: its label, whether it is strong and personal."""

    key: str
    label: str
    strong: bool
    personal: bool


def graph(nodes: Sequence[GraphNode], edges: Sequence[dict[str, Any]], *, size: int = 520) -> str:
    """Identities on a circle, evidence as lines between them: solid for a merging edge
    (strong, personal evidence), dashed for weak or shared, green for an operator's link;
    a dashed outline marks a weak identifier, a tinted one a shared identifier."""
    if not nodes:
        return "<p class=muted>No identities.</p>"
    cx = cy = size / 2
    radius = size / 2 - 90 if len(nodes) > 1 else 0
    where: dict[str, tuple[float, float]] = {}
    for i, node in enumerate(nodes):
        angle = 2 * math.pi * i / len(nodes) - math.pi / 2
        where[node.key] = (cx + radius * math.cos(angle), cy + radius * math.sin(angle))
    out = [
        f'<svg role="img" aria-labelledby="graph-title" viewBox="0 0 {size} {size}" '
        f'width="{size}" height="{size}" id="identity-graph">'
        f'<title id="graph-title">Identity graph: {len(nodes)} identities, '
        f"{len(edges)} links</title>"
    ]
    for edge in edges:
        a, b = where.get(edge["a_key"]), where.get(edge["b_key"])
        if a is None or b is None:
            continue
        css = "edge-operator" if edge["operator"] else "edge" if edge["merging"] else "edge-weak"
        out.append(
            f'<line class="{css}" x1="{a[0]:.1f}" y1="{a[1]:.1f}" x2="{b[0]:.1f}" '
            f'y2="{b[1]:.1f}"><title>{e(edge["summary"])}</title></line>'
        )
    for node in nodes:
        x, y = where[node.key]
        css = (
            "node"
            + ("" if node.strong else " node-weak")
            + ("" if node.personal else " node-shared")
        )
        out.append(
            f'<g class="identity" data-key="{e(node.key)}"><circle class="{css}" cx="{x:.1f}" '
            f'cy="{y:.1f}" r="16"/><text x="{x:.1f}" y="{y + 32:.1f}" text-anchor="middle">'
            f"{e(node.label[:40])}</text></g>"
        )
    out.append("</svg>")
    return "".join(out)
