"""Night mode: the LEDs dim on a schedule, and `appliance ctl night on|off|auto` overrides it.

Pure logic over wall-clock times (a Pi without an RTC may jump its clock at boot, so
the owner re-evaluates at every boundary rather than counting down once).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger(__name__)

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


class Dimmable(Protocol):
    def set_brightness_cap(self, cap: float) -> None: ...


Now = Callable[[], dt.datetime]


def local_now() -> dt.datetime:
    return dt.datetime.now().astimezone()


class NightLights:
    """Holds the LEDs at `night_cap` while night mode is on, `day_cap` otherwise.

    Runs on the event loop with one timer: it wakes at the window's next boundary, and at
    least every `recheck_s`, because the wall clock of a Pi without an RTC may jump.
    """

    def __init__(
        self,
        mode: NightMode,
        leds: Dimmable,
        loop: asyncio.AbstractEventLoop,
        *,
        day_cap: float,
        night_cap: float,
        now: Now = local_now,
        recheck_s: float = 600.0,
    ) -> None:
        self.mode = mode
        self._leds = leds
        self._loop = loop
        self._day_cap = day_cap
        self._night_cap = night_cap
        self._now = now
        self._recheck_s = recheck_s
        self._timer: asyncio.TimerHandle | None = None
        self._active: bool | None = None

    @property
    def active(self) -> bool:
        return self.mode.active(self._now())

    def start(self) -> None:
        self._apply()

    def set(self, word: str) -> str:
        """`ctl night on|off|auto`; returns how night mode stands now."""
        self.mode.set(word)
        self._apply()
        return self.describe()

    def describe(self) -> str:
        return self.mode.describe(self._now())

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _apply(self) -> None:
        self.close()
        moment = self._now()
        active = self.mode.active(moment)
        if active != self._active:
            self._active = active
            self._leds.set_brightness_cap(self._night_cap if active else self._day_cap)
            log.info("night mode %s", self.mode.describe(moment))
        wait = self._recheck_s
        change = None if self.mode.override is not None else self.mode.window.next_change(moment)
        if change is not None:
            wait = min(wait, max(0.0, (change - moment).total_seconds()) + 0.5)
        self._timer = self._loop.call_later(wait, self._apply)
