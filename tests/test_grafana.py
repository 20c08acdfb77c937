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
