"""Kitchen timers that live on the device: persisted, ringing, and robust to clock jumps.

Deadlines are stored as wall-clock epoch seconds, because only the wall clock means the same thing
after a restart or a reboot.  A Raspberry Pi has no real-time clock, though: it boots with a stale
time and NTP may move the clock by hours later.  So the service never sleeps until a deadline; it
re-checks at least every `check_interval_s` and keeps a second, monotonic deadline for every timer
it knows in this process.  A timer goes off at whichever of the two comes first:

* the wall clock jumps forward past the deadline (NTP fixed a stale boot clock): it goes off at
  the next check, or is dropped if by the corrected clock it ended more than `ring_max_s` ago
  (the same rule as a timer that ended while the daemon was down);
* the wall clock jumps backward: the monotonic deadline still fires on time.

A timer that goes off rings until it is stopped (`stop_ringing`, `cancel`) or until `ring_max_s`
after it went off (measured on the monotonic clock).  The alarm sound and LEDs are not here: the
owner gets `on_ring(timer)` once per timer and `on_change()` after every change, and asks
`ringing()` / `any_ringing`, and `alarm_level` for how loud to ring.

The file (`timers.store`) is written off the event loop (fsync on an SD card can take long),
coalescing bursts of changes; `flush()` waits for the file to catch up.
"""

from __future__ import annotations

import asyncio
import builtins
import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any

from appliance.settings.schema import TimersConfig
from appliance.timers.model import (
    DEFAULT_CHECK_INTERVAL_S,
    DEFAULT_LABEL,
    MAX_LABEL_CHARS,
    RINGING,
    Timer,
    TimerError,
    clean_call_id,
    normalise_label,
)
from appliance.timers.store import TIMERS_FILE, StoredTimers, TimerStore, problem_text

__all__ = [
    "DEFAULT_CHECK_INTERVAL_S",
    "DEFAULT_LABEL",
    "MAX_LABEL_CHARS",
    "TIMERS_FILE",
    "Timer",
    "TimerError",
    "TimerService",
    "TimerStore",
]

log = logging.getLogger(__name__)


class TimerService:
    """The timers of this device: add, cancel, list, ring, stop.  Loop-thread only."""

    def __init__(
        self,
        store: TimerStore,
        cfg: TimersConfig,
        loop: asyncio.AbstractEventLoop,
        *,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        on_ring: Callable[[Timer], None],
        on_change: Callable[[], None] | None = None,
        check_interval_s: float = DEFAULT_CHECK_INTERVAL_S,
    ) -> None:
        self.store = store
        self.cfg = cfg
        self._loop = loop
        self._wall = wall
        self._mono = monotonic
        self._on_ring = on_ring
        self._on_change = on_change
        self._check_interval = float(check_interval_s)
        self._timers: dict[str, Timer] = {}
        self._next_id = 1
        self._mono_deadline: dict[str, float] = {}  # timer id -> when it goes off on the monotonic clock
        self._ring_end: dict[str, float] = {}  # ringing timer id -> monotonic time its alarm stops
        self._announce: set[str] = set()  # loaded ringing timers whose on_ring is still due
        self._handle: asyncio.TimerHandle | None = None
        self._started = False
        self._save_running = False
        self._save_again = False
        self._saved = asyncio.Event()
        self._saved.set()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Load the stored timers and start watching them.

        Timers that ended while the daemon was down ring (their `on_ring` comes from the loop,
        after this returns) if they ended less than `ring_max_s` ago; older ones are dropped.
        """
        if self._started:
            return
        self._started = True
        if self.cfg.alarm_volume < self.cfg.alarm_level:
            log.info("timers.alarm_volume %d is below the floor: alarms ring at %d",
                     self.cfg.alarm_volume, self.cfg.alarm_level)
        stored = self.store.load()
        self._next_id = stored.next_id
        wall, mono = self._wall(), self._mono()
        changed = False
        timers = sorted(stored.timers, key=lambda t: t.deadline)
        if len(timers) > self.cfg.max_timers:
            for dropped in timers[self.cfg.max_timers :]:
                log.warning("dropped timer %s: more than timers.max_timers (%d) were stored",
                            dropped.id, self.cfg.max_timers)
            timers = timers[: self.cfg.max_timers]
            changed = True
        for timer in timers:
            if timer.ringing_since is not None:
                rang_for = max(0.0, wall - timer.ringing_since)
                if rang_for >= self.cfg.ring_max_s:
                    log.info("dropped timer %s: it went off %s ago, while the appliance was not running",
                             timer.id, _ago(rang_for))
                    changed = True
                    continue
                self._ring_end[timer.id] = mono + self.cfg.ring_max_s - rang_for
                self._announce.add(timer.id)
            elif wall - timer.deadline >= self.cfg.ring_max_s:
                log.info("dropped timer %s: it ended %s ago, while the appliance was not running",
                         timer.id, _ago(wall - timer.deadline))
                changed = True
                continue
            self._timers[timer.id] = timer
            # A deadline already passed gives a monotonic deadline in the past: the first check rings it.
            self._mono_deadline[timer.id] = mono + (timer.deadline - wall)
        if self._timers:
            log.info("loaded %d timer(s) from %s", len(self._timers), self.store.path)
        if changed:
            self._persist()
        self._handle = self._loop.call_soon(self._check)

    def stop(self) -> None:
        """Stop watching (the file keeps everything; call `flush()` to wait for the last write)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._started = False

    async def flush(self) -> None:
        """Wait until the file holds the latest state."""
        await self._saved.wait()

    def use_settings(self, cfg: TimersConfig) -> None:
        """New limits and alarm settings (a config reload): the alarm level at the next ring, the rest for
        timers set or going off from now on; timers already set or ringing are left as they are."""
        self.cfg = cfg

    # ------------------------------------------------------------------ changes

    def add(self, duration_s: int, label: str | None = None, *, call_id: str | None = None) -> Timer:
        """Start a timer; a label already in use (any case) gets a number: "eggs 2"."""
        limit = self.max_duration_s
        if isinstance(duration_s, bool) or not isinstance(duration_s, int) or not 1 <= duration_s <= limit:
            raise TimerError("bad_duration", f"a timer must last 1 to {limit} seconds, not {duration_s!r}")
        if len(self._timers) >= self.cfg.max_timers:
            raise TimerError(
                "too_many_timers",
                f"there are already {len(self._timers)} timers, the most allowed; cancel one first",
            )
        wall, mono = self._wall(), self._mono()
        timer = Timer(
            id=f"t{self._next_id}",
            label=self._free_label(normalise_label(label)),
            duration_s=duration_s,
            deadline=wall + duration_s,
            created_at=wall,
            call_id=clean_call_id(call_id),
        )
        self._next_id += 1
        self._timers[timer.id] = timer
        self._mono_deadline[timer.id] = mono + duration_s
        log.info("timer %s started: %d s", timer.id, duration_s)
        self._changed()
        return dataclasses.replace(timer)

    def cancel(self, timer_id: str) -> Timer | None:
        """Remove one timer by id (a ringing one stops); None if there is no such timer."""
        timer = self._remove(timer_id)
        if timer is None:
            return None
        log.info("timer %s cancelled", timer.id)
        self._changed()
        return timer

    def cancel_all(self) -> builtins.list[Timer]:
        removed = [self._remove(timer_id) for timer_id in list(self._timers)]
        if removed:
            log.info("all %d timer(s) cancelled", len(removed))
            self._changed()
        return [t for t in removed if t is not None]

    def cancel_by_call(self, call_id: str) -> builtins.list[Timer]:
        """Remove the timers a (cancelled) tool call set."""
        call_id = clean_call_id(call_id)  # cleaned as `add` stored it
        if call_id is None:
            return []
        removed = [self._remove(t.id) for t in list(self._timers.values()) if t.call_id == call_id]
        if removed:
            log.info("timer(s) %s removed: their tool call was cancelled", ", ".join(t.id for t in removed if t))
            self._changed()
        return [t for t in removed if t is not None]

    def stop_ringing(self) -> builtins.list[Timer]:
        """Stop every ringing timer (a button press, `ctl stop`): they are removed."""
        stopped = [self._remove(timer_id) for timer_id in list(self._ring_end)]
        if stopped:
            log.info("alarm stopped: %s", ", ".join(t.id for t in stopped if t))
            self._changed()
        return [t for t in stopped if t is not None]

    # ------------------------------------------------------------------ queries

    @property
    def max_duration_s(self) -> int:
        return int(self.cfg.max_duration_h * 3600)

    @property
    def any_ringing(self) -> bool:
        return bool(self._ring_end)

    @property
    def alarm_level(self) -> int:
        """How loud the alarm rings (0-100), apart from the speaker's volume: see TimersConfig.alarm_level."""
        return self.cfg.alarm_level

    def ringing(self) -> builtins.list[Timer]:
        return [dataclasses.replace(self._timers[i]) for i in self._ring_end if i in self._timers]

    def get(self, timer_id: str) -> Timer | None:
        timer = self._timers.get(timer_id)
        return dataclasses.replace(timer) if timer is not None else None

    def match(self, query: str) -> builtins.list[Timer]:
        """Timers named by `query`: exactly by id, else by label ignoring case and spacing."""
        query = query.strip()
        if query in self._timers:
            return [dataclasses.replace(self._timers[query])]
        wanted = " ".join(query.split()).casefold()
        return [dataclasses.replace(t) for t in self._sorted() if t.label.casefold() == wanted]

    def remaining_s(self, timer: Timer) -> float:
        """Seconds until it goes off (0 once ringing), by the earlier of the two clocks."""
        if timer.id in self._ring_end or timer.id not in self._timers:
            return 0.0
        by_wall = timer.deadline - self._wall()
        by_mono = self._mono_deadline[timer.id] - self._mono()
        return max(0.0, min(by_wall, by_mono))

    def ends_at(self, timer: Timer) -> float:
        """Wall-clock epoch seconds at which it goes off (now + remaining, for display)."""
        return self._wall() + self.remaining_s(timer)

    def describe(self) -> builtins.list[dict[str, Any]]:
        """JSON-ready rows for `ctl timers` and `status`."""
        rows = []
        for timer in self.list():
            row: dict[str, Any] = {
                "id": timer.id,
                "label": timer.label,
                "state": timer.state,
                "duration_s": timer.duration_s,
                "remaining_s": round(self.remaining_s(timer)),
            }
            if timer.ringing_since is not None:
                row["ringing_for_s"] = round(max(0.0, self._wall() - timer.ringing_since))
            rows.append(row)
        return rows

    # ------------------------------------------------------------------ internals

    def _sorted(self) -> builtins.list[Timer]:
        return sorted(self._timers.values(), key=lambda t: (t.state != RINGING, t.deadline, int(t.id[1:])))

    def _free_label(self, label: str) -> str:
        taken = {t.label.casefold() for t in self._timers.values()}
        if label.casefold() not in taken:
            return label
        n = 2
        while f"{label} {n}".casefold() in taken:
            n += 1
        return f"{label} {n}"

    def _remove(self, timer_id: str) -> Timer | None:
        timer = self._timers.pop(timer_id, None)
        self._mono_deadline.pop(timer_id, None)
        self._ring_end.pop(timer_id, None)
        self._announce.discard(timer_id)
        return timer

    def _changed(self) -> None:
        self._persist()
        self._reschedule()
        self._notify_change()

    def _notify_change(self) -> None:
        if self._on_change is None:
            return
        try:
            self._on_change()
        except Exception:
            log.exception("timer on_change callback failed")

    def _reschedule(self) -> None:
        if not self._started:
            return
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if not self._timers:
            return
        wall, mono = self._wall(), self._mono()
        waits = [self._check_interval]
        for timer_id, timer in self._timers.items():
            if timer_id in self._ring_end:
                waits.append(self._ring_end[timer_id] - mono)
            else:
                waits.append(min(timer.deadline - wall, self._mono_deadline[timer_id] - mono))
        self._handle = self._loop.call_later(max(0.0, min(waits)), self._check)

    def _check(self) -> None:
        """Ring what is due, stop alarms that rang long enough, then schedule the next check."""
        self._handle = None
        try:
            changed = self._check_due()
        except Exception:
            log.exception("timer check failed")
            changed = False
        if changed:
            self._changed()
        else:
            self._reschedule()

    def _check_due(self) -> bool:
        wall, mono = self._wall(), self._mono()
        changed = False
        for timer_id in list(self._announce):
            self._announce.discard(timer_id)
            if timer_id in self._timers:
                self._ring(self._timers[timer_id])
        for timer_id, timer in list(self._timers.items()):
            if timer_id in self._ring_end:
                if mono >= self._ring_end[timer_id]:
                    self._remove(timer_id)
                    log.info("timer %s stopped ringing by itself after %s", timer_id, _ago(self.cfg.ring_max_s))
                    changed = True
                continue
            late = [
                over
                for over in (wall - timer.deadline, mono - self._mono_deadline[timer_id])
                if over >= 0
            ]
            if not late:
                continue
            went_off_ago = min(late)
            changed = True
            if went_off_ago >= self.cfg.ring_max_s:
                # Only the wall clock can say this: it was corrected forward past the deadline.
                self._remove(timer_id)
                log.info("dropped timer %s: by the corrected clock it ended %s ago", timer_id, _ago(went_off_ago))
                continue
            timer.ringing_since = wall - went_off_ago
            self._ring_end[timer_id] = mono + self.cfg.ring_max_s - went_off_ago
            log.info("timer %s went off", timer_id)
            self._ring(timer)
        return changed

    def _ring(self, timer: Timer) -> None:
        try:
            self._on_ring(dataclasses.replace(timer))
        except Exception:
            log.exception("timer on_ring callback failed")

    def _persist(self) -> None:
        """Write the current state on a worker thread; bursts of changes coalesce into one write."""
        self._saved.clear()
        if self._save_running:
            self._save_again = True
            return
        self._save_running = True
        snapshot = StoredTimers([dataclasses.replace(t) for t in self._timers.values()], self._next_id)
        future = self._loop.run_in_executor(None, self._save, snapshot)
        future.add_done_callback(self._save_done)

    def _save(self, snapshot: StoredTimers) -> None:
        try:
            self.store.save(snapshot)
        except OSError as exc:
            log.error("cannot save the timers to %s: %s", self.store.path, problem_text(exc))

    def _save_done(self, _future: asyncio.Future[None]) -> None:
        self._save_running = False
        if self._save_again:
            self._save_again = False
            self._persist()
        else:
            self._saved.set()

    def list(self) -> builtins.list[Timer]:  # shadows the builtin inside the class: annotations here say builtins.list
        """Every timer, ringing ones first, then by when they go off."""
        return [dataclasses.replace(t) for t in self._sorted()]


def _ago(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds / 3600:.1f} h"
