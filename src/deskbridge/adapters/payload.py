"""Reading webhook bodies: JSON as the platforms send it, fast, within shape limits."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pydantic_core

from deskbridge.errors import PayloadInvalid

__all__ = ["MAX_DEPTH", "MAX_ITEMS", "dump", "item_key", "load_object", "loads"]

# No platform nests deeper than about 12 levels or sends more than a few thousand values
# in one webhook; the limits only bound what a forged or broken body can cost.
MAX_DEPTH = 64
MAX_ITEMS = 100_000


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _check_shape(doc: Any) -> None:
    """``ValueError`` when ``doc`` nests deeper than ``MAX_DEPTH`` or holds more than
    ``MAX_ITEMS`` values. Iterative, so it cannot itself run out of stack."""
    stack: list[tuple[Any, int]] = [(doc, 1)]
    items = 0
    while stack:
        node, depth = stack.pop()
        items += 1
        if items > MAX_ITEMS:
            raise ValueError(f"JSON has more than {MAX_ITEMS} values")
        if depth > MAX_DEPTH:
            raise ValueError(f"JSON nests deeper than {MAX_DEPTH} levels")
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)


def loads(body: bytes | str) -> Any:
    """``body`` parsed as JSON; ``ValueError`` (or ``RecursionError``) when it is not, or
    when it nests deeper than ``MAX_DEPTH`` levels or holds more than ``MAX_ITEMS`` values.

    pydantic-core's parser is about five times faster than ``json.loads`` on a webhook;
    what it refuses (UTF-16/32 bodies, lone surrogate escapes) gets a second chance with
    ``json.loads``, so both accept the same documents. NaN and Infinity are refused.
    """
    raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    # Cheap bounds first (C-speed counts): the depth is at most the number of opening
    # brackets, the number of values at most commas + brackets + 1. A webhook under both
    # bounds skips the walk.
    opens = raw.count(b"{") + raw.count(b"[")
    try:
        # pydantic-core stops at 200 levels by itself
        doc = pydantic_core.from_json(raw, allow_inf_nan=False)
    except ValueError:
        if opens > MAX_DEPTH:
            # json.loads recurses: bound the depth before it runs
            _check_depth_bytes(raw)
        doc = json.loads(raw, parse_constant=_no_constant)
    # a body shorter than MAX_ITEMS bytes cannot hold more values than that
    if opens > MAX_DEPTH or (len(raw) >= MAX_ITEMS and raw.count(b",") + opens + 1 > MAX_ITEMS):
        _check_shape(doc)
    return doc


def load_object(body: bytes | str, *, what: str) -> dict[str, Any]:
    """``body`` as a JSON object, parsed by :func:`loads` within its shape limits: the one
    guard every webhook body (channel or desk) goes through. Raises ``PayloadInvalid``
    ("``what``: body is not JSON" / "... not a JSON object")."""
    try:
        doc = loads(body)
    except (ValueError, RecursionError) as exc:
        raise PayloadInvalid(f"{what}: body is not JSON") from exc
    if not isinstance(doc, dict):
        raise PayloadInvalid(f"{what}: body is not a JSON object")
    return doc


def _check_depth_bytes(raw: bytes) -> None:
    """``ValueError`` when brackets outside strings nest deeper than ``MAX_DEPTH``; a scan
    of the raw bytes so a hostile body never reaches a recursive parser."""
    depth = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x7B, 0x5B):
            depth += 1
            if depth > MAX_DEPTH:
                raise ValueError(f"JSON nests deeper than {MAX_DEPTH} levels")
        elif byte in (0x7D, 0x5D):
            depth -= 1


def dump(doc: Any) -> bytes:
    """``doc`` as compact JSON bytes (ASCII escapes, so a lone surrogate survives): how a
    cut of a webhook body is written for its raw record."""
    return json.dumps(doc, ensure_ascii=True, separators=(",", ":")).encode()


def item_key(item: Any) -> str:
    """A key for one item of a batch that stays the same when the platform sends the item
    again, alone or in another batch: a digest of its canonical JSON."""
    canonical = json.dumps(item, ensure_ascii=True, sort_keys=True, separators=(",", ":"))
    return "item-" + hashlib.sha256(canonical.encode()).hexdigest()[:32]
