"""The Grafana dashboard asks only for metrics deskbridge exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from deskbridge.metrics import Metrics

DASHBOARD = Path(__file__).parent.parent / "deploy" / "grafana" / "deskbridge.json"
_SUFFIXES = ("_bucket", "_count", "_sum", "_total", "_created")


def exported() -> set[str]:
    names = set()
    for family in Metrics().registry.collect():
        names.add(family.name)
        names.update(family.name + s for s in _SUFFIXES)
    return names


def test_every_query_names_an_exported_metric() -> None:
    doc = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in doc["panels"] for t in p["targets"]]
    exprs += [v["query"] for v in doc["templating"]["list"] if v["type"] == "query"]
    assert exprs
    known = exported()
    for expr in exprs:
        used = set(re.findall(r"\bdeskbridge_[a-z_]+", expr))
        assert used, expr
        assert used <= known, f"{expr}: {used - known} not exported"


def _label_names() -> dict[str, set[str]]:
    """Every exported metric's name (with its suffixes) and its label names."""
    out: dict[str, set[str]] = {}
    for collector in vars(Metrics()).values():
        name = getattr(collector, "_name", None)
        if isinstance(name, str) and name.startswith("deskbridge_"):
            names = set(getattr(collector, "_labelnames", ()))
            out[name] = names
            out.update({name + s: names for s in _SUFFIXES})
    return out


def test_every_grouping_label_is_one_the_metric_has() -> None:
    """A panel grouping ``by (team)`` over a metric without that label draws one
    unlabelled line: it would look fine and say nothing."""
    labels = _label_names()
    doc = json.loads(DASHBOARD.read_text())
    checked = 0
    for expr in (t["expr"] for p in doc["panels"] for t in p["targets"]):
        for by, body in re.findall(r"by \(([a-z_, ]+)\) \(([^()]*\([^()]*\))", expr):
            for metric in re.findall(r"\bdeskbridge_[a-z_]+", body):
                wanted = {x.strip() for x in by.split(",")} - {"le"}
                assert wanted <= labels[metric], f"{expr}: {metric} has no {wanted}"
                checked += 1
    assert checked
