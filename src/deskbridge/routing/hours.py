"""Business hours: a time zone, weekly opening hours and holidays.

``is_open(at)`` and ``next_open(at)`` answer in the configured zone (DST included, via
zoneinfo); a day may have several ranges (``09:00-12:00, 13:00-18:00``) and a range
may cross midnight (``22:00-02:00``: the part after midnight belongs to the next day).
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["BusinessHours"]

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_RANGE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


def _ranges(text: str) -> list[tuple[time, time]]:
    out = []
    for part in text.split(","):
        m = _RANGE.match(part)
        if not m:
            raise ValueError(f"{part.strip()!r} is not HH:MM-HH:MM")
        h1, m1, h2, m2 = (int(x) for x in m.groups())
        if h1 > 23 or h2 > 24 or m1 > 59 or m2 > 59 or (h2 == 24 and m2):
            raise ValueError(f"{part.strip()!r} is not a time of day")
        end = time(23, 59, 59, 999999) if h2 == 24 else time(h2, m2)
        out.append((time(h1, m1), end))
    return out


class BusinessHours(BaseModel):
    """``time_zone`` (IANA), ``weekly`` (``mon: "09:00-18:00"``, a day left out is closed)
    and ``holidays`` (ISO dates, closed all day)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    time_zone: str
    weekly: dict[str, str] = Field(default_factory=dict)
    holidays: list[date] = Field(default_factory=list)

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except Exception:
            raise ValueError(f"{v!r} is not an IANA time zone") from None
        return v

    @field_validator("weekly")
    @classmethod
    def _weekly(cls, v: dict[str, str]) -> dict[str, str]:
        for day, ranges in v.items():
            if day.lower() not in _DAYS:
                raise ValueError(f"{day!r} is not one of {', '.join(_DAYS)}")
            _ranges(ranges)
        return {d.lower(): r for d, r in v.items()}

    def _open_on(self, day: date) -> list[tuple[datetime, datetime]]:
        """Open intervals (aware) that start on ``day``."""
        if day in self.holidays:
            return []
        zone = ZoneInfo(self.time_zone)
        text = self.weekly.get(_DAYS[day.weekday()])
        if not text:
            return []
        out = []
        for start, end in _ranges(text):
            a = datetime.combine(day, start, zone)
            b = datetime.combine(day, end, zone)
            if b <= a:
                b += timedelta(days=1)  # crosses midnight
            out.append((a, b))
        return out

    def is_open(self, at: datetime) -> bool:
        local = at.astimezone(ZoneInfo(self.time_zone))
        for day in (local.date() - timedelta(days=1), local.date()):
            if any(a <= local < b for a, b in self._open_on(day)):
                return True
        return False

    def next_open(self, at: datetime, *, horizon_days: int = 370) -> datetime | None:
        """When it next opens (``at`` itself when open now); None when it never does."""
        if self.is_open(at):
            return at
        local = at.astimezone(ZoneInfo(self.time_zone))
        for offset in range(horizon_days):
            for a, _ in sorted(self._open_on(local.date() + timedelta(days=offset))):
                if a > local:
                    return a
        return None
