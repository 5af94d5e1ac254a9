"""The ringing policy for kitchen timers that finished: what sounds, how often, until when.

The timer service (`appliance.timers`) says which timers are ringing; the bell turns that
into sound on the speaker, on the event loop, until none rings.  The conductor owns the
`alarm` state and tells the bell when to start and stop; a press or `ctl stop` stops it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable, Protocol

log = logging.getLogger(__name__)


class Ringing(Protocol):
    """What the bell needs of the timers (appliance.timers.service.TimerService)."""

    @property
    def any_ringing(self) -> bool: ...

    @property
    def alarm_level(self) -> int: ...

    def stop_ringing(self) -> list[Any]: ...


class Chime(Protocol):
    def play_alarm(self, level: int, since_s: float) -> bool: ...


class AlarmBell:
    """Plays a ring of the alarm every `interval_s` while any timer rings, at the timers' alarm level.

    Each ring says how long ringing has gone on, so the speaker can start soft and rise.

    One ringing task at most; it is owned here (kept, cancelled at close, a fault in it
    logged) and calls `on_quiet` when the last timer stops by itself.
    """

    def __init__(self, timers: Ringing, speaker: Chime, interval_s: float, on_quiet: Callable[[], None]) -> None:
        self.timers = timers
        self._speaker = speaker
        self._interval_s = interval_s
        self._on_quiet = on_quiet
        self._task: asyncio.Task[None] | None = None

    @property
    def ringing(self) -> bool:
        return self.timers.any_ringing

    @property
    def sounding(self) -> bool:
        """The ringing task is still running (it ends one interval after the last timer stops)."""
        return self._task is not None and not self._task.done()

    def ring(self) -> None:
        """A timer finished: start ringing unless the bell already rings."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._ring(), name="alarm")
            self._task.add_done_callback(self._ended)

    def stop(self) -> bool:
        """Silence every ringing timer; False if none was ringing."""
        if not self.timers.any_ringing:
            return False
        stopped = self.timers.stop_ringing()
        log.info("alarm stopped (%d timer(s))", len(stopped))
        return True

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        try:
            await task
        except (asyncio.CancelledError, Exception):
            pass

    async def _ring(self) -> None:
        loop = asyncio.get_running_loop()
        began = loop.time()
        while self.timers.any_ringing:
            self._speaker.play_alarm(self.timers.alarm_level, loop.time() - began)
            await asyncio.sleep(self._interval_s)  # the alarm's rhythm
        self._on_quiet()

    @staticmethod
    def _ended(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("the alarm stopped ringing by a fault", exc_info=task.exception())
