from __future__ import annotations

import itertools
import os
import time

__all__ = ["new_id"]


class _Ids:
    """48-bit millisecond clock + 48-bit random per-process prefix + 32-bit counter.

    Sortable by creation time, unique without a syscall per id (``os.urandom`` on the
    ack path cost more than the rest of the id), and reseeded in a forked child so a
    parent and child never share a prefix.
    """

    def __init__(self) -> None:
        self.reseed()
        os.register_at_fork(after_in_child=self.reseed)

    def reseed(self) -> None:
        self.prefix = os.urandom(6).hex()
        self.counter = itertools.count(int.from_bytes(os.urandom(4), "big"))

    def new(self) -> str:
        return f"{int(time.time() * 1000):012x}{self.prefix}{next(self.counter) & 0xFFFFFFFF:08x}"


_ids = _Ids()


def new_id() -> str:
    """A 32-hex-digit id that sorts by creation time (to the millisecond)."""
    return _ids.new()
