"""An owner for the daemon's long-lived tasks.

Every task that must run for the life of the appliance (the session's connection
loop, the conductor, the uplink, the device watches, the watchdog) is adopted
here.  One that ends while the appliance runs, by an exception or by returning,
is a bug: it is logged once with its traceback and `failed` is set, so the daemon
exits non-zero and systemd restarts it, instead of a half-dead box that still
feeds the watchdog.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Coroutine, Iterable

log = logging.getLogger(__name__)


class Supervisor:
    """See the module docstring."""

    def __init__(self) -> None:
        self._tasks: dict[asyncio.Task[object], str] = {}
        #: tasks spawned here; adopted ones are cancelled by their own owners
        self._owned: set[asyncio.Task[object]] = set()
        self._stopping = False
        self.failed = asyncio.Event()
        #: one line about the first task that died
        self.failure: str | None = None

    def spawn(self, coro: Coroutine[object, object, object], name: str) -> asyncio.Task[object]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._owned.add(task)
        self.adopt(task)
        return task

    def adopt(self, task: asyncio.Task[object], name: str | None = None) -> None:
        """Watch a task someone else created; it must not end before `stop()`."""
        if task in self._tasks:
            return
        self._tasks[task] = name or task.get_name()
        task.add_done_callback(self._done)

    def adopt_all(self, tasks: Iterable[asyncio.Task[object]]) -> None:
        for task in tasks:
            self.adopt(task)

    def alive(self) -> bool:
        """Every adopted task is still running (the watchdog's check)."""
        return not self.failed.is_set() and all(not t.done() for t in self._tasks)

    def _done(self, task: asyncio.Task[object]) -> None:
        name = self._tasks.get(task, task.get_name())
        if self._stopping:
            return
        if task.cancelled():
            what = f"task {name} was cancelled"
            log.error("%s while the appliance was running", what)
        elif (exc := task.exception()) is not None:
            what = f"task {name} died: {type(exc).__name__}: {exc}"
            log.error("task %s died", name, exc_info=exc)
        else:
            what = f"task {name} ended while the appliance was running"
            log.error("%s", what)
        if self.failure is None:
            self.failure = what
        self.failed.set()

    def stand_down(self) -> None:
        """The appliance is stopping: tasks that end now are not failures."""
        self._stopping = True

    async def stop(self, timeout: float) -> None:
        """Cancel the tasks spawned here and wait at most `timeout` for them to end."""
        self._stopping = True
        pending = [t for t in self._owned if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            done, still = await asyncio.wait(pending, timeout=timeout)
            for task in still:
                log.warning("task %s did not stop within %.1f s", self._tasks[task], timeout)
