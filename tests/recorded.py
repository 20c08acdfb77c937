"""Recorded webhook fixtures: ``tests/fixtures/<channel>/<scenario>.json`` with the
expected normalized output beside each in ``<scenario>.expected.json``.

``DESKBRIDGE_REGEN_FIXTURES=1`` rewrites the expected files from the current output
(review the diff before committing it).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

ROOT = Path(__file__).parent / "fixtures"
REGEN = os.environ.get("DESKBRIDGE_REGEN_FIXTURES") == "1"


def scenarios(channel: str) -> list[str]:
    return sorted(
        p.name.removesuffix(".json")
        for p in (ROOT / channel).glob("*.json")
        if p.name.count(".") == 1
    )


def fixture(channel: str, scenario: str) -> bytes:
    return (ROOT / channel / f"{scenario}.json").read_bytes()


def assert_expected(channel: str, scenario: str, got: Any) -> None:
    """``got`` equals the recorded expected output (or becomes it, with REGEN)."""
    path = ROOT / channel / f"{scenario}.expected.json"
    if REGEN:
        path.write_text(json.dumps(got, indent=2, ensure_ascii=False) + "\n")
    assert got == json.loads(path.read_text())
