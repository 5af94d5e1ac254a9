"""Night mode: the LEDs dim on a schedule, and `appliance ctl night on|off|auto` overrides it.

Pure logic over wall-clock times (a Pi without an RTC may jump its clock at boot, so
the owner re-evaluates at every boundary rather than counting down once).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

_WINDOW = re.compile(r"^\s*([01]?\d|2[0-3]):([0-5]\d)\s*-\s*([01]?\d|2[0-3]):([0-5]\d)\s*$")


class NightError(ValueError):
    """A window that cannot be read; the text says what to write instead."""


@dataclass(frozen=True)
class NightWindow:
    """A daily window like 22:00-07:00 (it may cross midnight); empty means never."""

    start: dt.time | None = None
    end: dt.time | None = None

    @classmethod
    def parse(cls, text: str) -> NightWindow:
        if not text.strip():
            return cls()
        m = _WINDOW.match(text)
        if m is None:
            raise NightError(f'night window {text!r} must look like "22:00-07:00" (24-hour HH:MM-HH:MM), or ""')
        start = dt.time(int(m[1]), int(m[2]))
        end = dt.time(int(m[3]), int(m[4]))
        if start == end:
            raise NightError(f"night window {text!r} starts and ends at the same time; use \"\" to turn it off")
        return cls(start, end)

    @property
    def enabled(self) -> bool:
        return self.start is not None and self.end is not None

    def contains(self, moment: dt.datetime) -> bool:
        if self.start is None or self.end is None:
            return False
        t = moment.time()
        if self.start < self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end  # crosses midnight

    def next_change(self, moment: dt.datetime) -> dt.datetime | None:
        """The next moment the window starts or ends after `moment` (None when never)."""
        if self.start is None or self.end is None:
            return None
        candidates = []
        for day in (0, 1):
            date = moment.date() + dt.timedelta(days=day)
            for t in (self.start, self.end):
                at = dt.datetime.combine(date, t, tzinfo=moment.tzinfo)
                if at > moment:
                    candidates.append(at)
        return min(candidates)


OVERRIDES = ("on", "off", "auto")


@dataclass
class NightMode:
    """The schedule plus the owner's override; `override` is None when the schedule rules."""

    window: NightWindow
    override: bool | None = None

    def active(self, moment: dt.datetime) -> bool:
        if self.override is not None:
            return self.override
        return self.window.contains(moment)

    def set(self, word: str) -> None:
        if word not in OVERRIDES:
            raise NightError(f"night mode is one of {', '.join(OVERRIDES)}, not {word!r}")
        self.override = None if word == "auto" else word == "on"

    def describe(self, moment: dt.datetime) -> str:
        state = "on" if self.active(moment) else "off"
        how = "by the schedule" if self.override is None else "set by hand"
        return f"{state} ({how})"
