"""What the finger did: raw button levels in, debounced gestures out, on the event loop.

A mechanical switch bounces for a few milliseconds on every press and release.
gpiozero's own `bounce_time` handles that by ignoring edges for a while after
one, which can swallow the real release of a short tap and leave the device
"held" forever.  So the pins run with `bounce_time=None` and the debounce is
done here, on levels rather than edges: a new level counts once it has stayed
put for `debounce_ms`.  Every real change is reported, just `debounce_ms` late.

`GestureTracker` is the pure logic (explicit timestamps, no threads, no GPIO),
so it can be tested edge by edge.  `GestureSource` runs a tracker on the loop
with its one timer; anything that has a contact (a GPIO pin, `ctl press`, a
key) feeds it levels.  The conductor decides what a gesture means (talk,
barge in, stop an alarm, new conversation, mute); this module only says what
the finger did.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Callable

from appliance.settings.schema import ButtonConfig

__all__ = ["Clock", "Gesture", "GestureSource", "GestureTracker"]

log = logging.getLogger(__name__)

Clock = Callable[[], float]


class Gesture(str, enum.Enum):
    """What the finger did, as the conductor needs to hear it."""

    PRESS = "press"  # went down (debounced): start listening now
    RELEASE_TAP = "release_tap"  # came up quickly: a tap, the turn ends on silence
    RELEASE_HOLD = "release_hold"  # came up after a hold: hold-to-talk is over
    LONG_HOLD = "long_hold"  # still down after long_hold_s (once per press)
    MUTE_HOLD = "mute_hold"  # still down after mute_hold_s (once per press, after LONG_HOLD)


class GestureTracker:
    """Debounces raw button levels and turns them into gestures.

    Feed it every raw edge with `edge()` and call `poll()` at `next_deadline()`
    (the debounce settling and the long hold are timers).  Times are seconds on
    one monotonic clock; a time earlier than one already seen is treated as
    "now", since an edge may be stamped on another thread just before a timer
    on the loop has run.

    Guarantees: PRESS and a RELEASE_* alternate, starting with PRESS; LONG_HOLD
    and then MUTE_HOLD come at most once each, in that order, between a PRESS and
    its release; a level change shorter than the debounce time produces nothing.
    """

    def __init__(
        self,
        cfg: ButtonConfig,
        emit: Callable[[Gesture], None],
        *,
        clock: Clock = time.monotonic,
    ) -> None:
        self._debounce_s = cfg.debounce_ms / 1000.0
        self._tap_max_s = cfg.tap_max_ms / 1000.0
        self._long_hold_s = float(cfg.long_hold_s)
        # never before the long hold, even in a config built in code that skipped the cross check
        self._mute_hold_s = max(float(cfg.mute_hold_s), self._long_hold_s)
        self._emit = emit
        self.clock = clock
        self._raw = False  # the level as last reported, bounces and all
        self._raw_since = 0.0  # when the raw level last changed
        self._pressed = False  # the debounced level
        self._pressed_at = 0.0  # when the debounced press began (its last raw edge)
        self._long_hold_sent = False
        self._mute_hold_sent = False
        self._now = float("-inf")  # the latest time seen

    @property
    def pressed(self) -> bool:
        """The debounced level: True between a PRESS and its release."""
        return self._pressed

    def edge(self, pressed: bool, at: float | None = None) -> None:
        """A raw level change (possibly a bounce) at time `at` (default: now)."""
        at = self._advance(self.clock() if at is None else at)
        self._run_timers(at)  # anything due before this edge happened first
        if pressed != self._raw:
            self._raw = pressed
            self._raw_since = at
        self._run_timers(at)  # with no debounce, the edge counts at once

    def poll(self, now: float | None = None) -> None:
        """Fire whatever is due by `now` (default: the clock)."""
        self._run_timers(self._advance(self.clock() if now is None else now))

    def next_deadline(self) -> float | None:
        """When `poll` must next be called, or None if nothing is pending."""
        if self._raw != self._pressed:
            return self._settle_at()
        if self._pressed and not self._long_hold_sent:
            return self._long_hold_at()
        if self._pressed and not self._mute_hold_sent:
            return self._pressed_at + self._mute_hold_s
        return None

    # ------------------------------------------------------------------ internals

    def _advance(self, t: float) -> float:
        self._now = max(self._now, t)
        return self._now

    def _settle_at(self) -> float:
        return self._raw_since + self._debounce_s

    def _long_hold_at(self) -> float:
        return self._pressed_at + self._long_hold_s

    def _run_timers(self, now: float) -> None:
        if self._raw != self._pressed and now >= self._settle_at():
            self._pressed = self._raw
            if self._pressed:
                self._pressed_at = self._raw_since
                self._long_hold_sent = self._mute_hold_sent = False
                self._emit(Gesture.PRESS)
            else:
                held_for = self._raw_since - self._pressed_at
                self._emit(Gesture.RELEASE_TAP if held_for < self._tap_max_s else Gesture.RELEASE_HOLD)
        # only while the finger is still down: a release waiting out its bounce
        # already ended the press, and the press lasted until that release
        if not (self._pressed and self._raw):
            return
        if not self._long_hold_sent and now >= self._long_hold_at():
            self._long_hold_sent = True
            self._emit(Gesture.LONG_HOLD)
        if self._long_hold_sent and not self._mute_hold_sent and now >= self._pressed_at + self._mute_hold_s:
            self._mute_hold_sent = True
            self._emit(Gesture.MUTE_HOLD)


class GestureSource:
    """A `GestureTracker` driven on the asyncio loop: levels in, `on_gesture` calls out.

    Call everything on the loop's thread.  There is at most one pending timer (the
    debounce settling, the long hold or the mute hold).  A bug in `on_gesture` is logged and does
    not stop the source.
    """

    def __init__(
        self,
        cfg: ButtonConfig,
        loop: asyncio.AbstractEventLoop,
        on_gesture: Callable[[Gesture], None],
        *,
        clock: Clock = time.monotonic,
    ) -> None:
        self.loop = loop
        self.clock = clock
        self._on_gesture = on_gesture
        self._tracker = GestureTracker(cfg, self._emit, clock=clock)
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self.closed = False

    @property
    def pressed(self) -> bool:
        """The debounced level, as the gestures so far describe it."""
        return self._tracker.pressed

    def level(self, pressed: bool, at: float | None = None) -> None:
        """The contact is now closed (True) or open, as of `at` (default: now)."""
        if self.closed:
            return
        self._tracker.edge(pressed, self.clock() if at is None else at)
        self._reschedule()

    def close(self) -> None:
        """No more gestures; the pending timer is cancelled.  Safe to call twice."""
        self.closed = True
        self._cancel_timer()

    def _on_timer(self) -> None:
        deadline, self._timer, self._timer_at = self._timer_at, None, None
        if self.closed:
            return
        # asyncio may run a timer a clock tick early; it still stands for its deadline
        now = self.clock()
        self._tracker.poll(now if deadline is None else max(now, deadline))
        self._reschedule()

    def _reschedule(self) -> None:
        if self.closed:  # on_gesture may have closed us
            return
        deadline = self._tracker.next_deadline()
        if deadline == self._timer_at and self._timer is not None:
            return
        self._cancel_timer()
        if deadline is None:
            return
        self._timer_at = deadline
        self._timer = self.loop.call_later(max(0.0, deadline - self.clock()), self._on_timer)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self._timer_at = None

    def _emit(self, gesture: Gesture) -> None:
        log.debug("button gesture: %s", gesture.value)
        try:
            self._on_gesture(gesture)
        except Exception:  # a bug downstream must not stop the button
            log.exception("handling the button gesture %s failed", gesture.value)
