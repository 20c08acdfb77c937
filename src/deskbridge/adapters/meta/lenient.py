"""Reading one webhook item with what can be read of it: a field that fails validation is
left out (and named), unless it is part of the item's core, which fails the item."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

__all__ = ["Loc", "leniently", "numeric"]

Loc = tuple[str | int, ...]
M = TypeVar("M", bound=BaseModel)

# Each round drops at least one path; an item has only so many fields worth a retry.
_MAX_ROUNDS = 8


def numeric(value: Any) -> Any:
    """A decimal string as the number it spells (Meta's SDK samples and some deliveries
    send coordinates and timestamps as strings); anything else unchanged."""
    if isinstance(value, str) and 0 < len(value) <= 32:
        try:
            number = float(value.strip())
        except ValueError:
            return value
        if number == number and abs(number) != float("inf"):  # not NaN, not infinite
            return number
    return value


def leniently(model: type[M], data: Any, cut: Callable[[Loc], Loc | None]) -> tuple[M, list[str]]:
    """``data`` validated as ``model``, leaving out what does not validate, and the names
    of what was left out (field paths such as ``location`` or ``message.attachments[0]``,
    never values). ``cut(loc)`` maps an error's location to the path to leave out, or
    None when the error is in the item's core: then the ``ValidationError`` is raised."""
    dropped: list[str] = []
    for _ in range(_MAX_ROUNDS):
        try:
            return model.model_validate(data), dropped
        except ValidationError as exc:
            if not isinstance(data, dict):
                raise
            paths: set[Loc] = set()
            for error in exc.errors():
                path = cut(tuple(error["loc"]))
                if not path:
                    raise
                paths.add(path)
            data = copy.deepcopy(data)
            # deepest and last first, so list indices stay right while deleting
            for path in sorted(paths, key=_order, reverse=True):
                if _delete(data, path):
                    dropped.append(_name(path))
    return model.model_validate(data), dropped


def _order(path: Loc) -> tuple[tuple[int, int | str], ...]:
    return tuple((0, p) if isinstance(p, int) else (1, p) for p in path)


def _delete(data: Any, path: Loc) -> bool:
    node = data
    for step in path[:-1]:
        if not _has(node, step):
            return False
        node = node[step]
    if not _has(node, path[-1]):
        return False
    del node[path[-1]]
    return True


def _has(node: Any, step: str | int) -> bool:
    if isinstance(node, dict):
        return isinstance(step, str) and step in node
    return isinstance(node, list) and isinstance(step, int) and 0 <= step < len(node)


def _name(path: Loc) -> str:
    out = ""
    for step in path:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else step)
    return out
