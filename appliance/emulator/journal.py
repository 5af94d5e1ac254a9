"""Where the emulator keeps what happened: connections, frames received, turns, its own bugs.

Every list is capped (the newest entries are kept) so that a long soak cannot grow without bound; every
change wakes whoever waits in ``Emulator.wait_for``. With ``log_path`` set, what was received also goes to
a JSON-lines file, written on a thread from a bounded queue (10 000 lines) so the event loop never waits on
the disk; lines beyond that are dropped and counted.
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from appliance.emulator.config import EmulatorConfig
from appliance.emulator.records import ConnectionRecord, Received, TurnRecord

__all__ = ["Journal", "LogWriter"]

LOG_QUEUE_LINES = 10_000
MAX_INTERNAL_ERRORS = 100

log = logging.getLogger(__name__)


def _append_capped(items: list[Any], item: Any, cap: int) -> None:
    items.append(item)
    if len(items) > cap:
        del items[: len(items) - cap]


class LogWriter:
    """Writes JSON lines from a bounded queue on a thread, so the event loop never waits on the disk."""

    _STOP = object()

    def __init__(self, path: str) -> None:
        self.path = path
        self.dropped = 0
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=LOG_QUEUE_LINES)
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed by the writer thread
        self._thread = threading.Thread(target=self._run, name="emulator-log", daemon=True)
        self._thread.start()

    def write(self, event: dict[str, Any]) -> None:
        try:
            self._queue.put_nowait(json.dumps(event, ensure_ascii=False, default=str))
        except queue.Full:
            self.dropped += 1

    def _run(self) -> None:
        with self._file:
            while True:
                line = self._queue.get()
                if line is self._STOP:
                    return
                self._file.write(line + "\n")
                if self._queue.empty():
                    self._file.flush()

    async def close(self) -> None:
        await asyncio.to_thread(self._queue.put, self._STOP)
        await asyncio.to_thread(self._thread.join)


class Journal:
    """The records a test asserts on, capped as ``config`` says; the sink every connection writes to."""

    def __init__(self, config: EmulatorConfig) -> None:
        self._config = config
        self.connections: list[ConnectionRecord] = []
        self.received: list[Received] = []
        self.turns: list[TurnRecord] = []
        self.ignored_audio_chunks = 0
        self.internal_errors: list[str] = []  # emulator bugs (tracebacks); tests may assert it stays empty
        self._cond: asyncio.Condition | None = None
        self._log: LogWriter | None = None

    # ------------------------------------------------------------------------------------------------------
    # Lifecycle (the server's start and stop)
    # ------------------------------------------------------------------------------------------------------

    @property
    def started(self) -> bool:
        return self._cond is not None

    def start(self) -> None:
        """Begin waking waiters, and open the JSON-lines log when the config names one."""
        self._cond = asyncio.Condition()
        if self._config.log_path:
            self._log = LogWriter(self._config.log_path)

    async def close_log(self) -> None:
        if self._log is not None:
            log_writer, self._log = self._log, None
            await log_writer.close()

    async def wait_until(self, check: Callable[[], bool]) -> None:
        """Return once ``check()`` holds, re-checked on every change."""
        if self._cond is None:
            raise RuntimeError("the emulator is not running; call start() first")
        async with self._cond:
            await self._cond.wait_for(check)

    # ------------------------------------------------------------------------------------------------------
    # Recording
    # ------------------------------------------------------------------------------------------------------

    async def changed(self) -> None:
        """Something recorded changed: wake whoever waits for a condition."""
        if self._cond is None:
            return
        async with self._cond:
            self._cond.notify_all()

    def log(self, event: str, **fields: Any) -> None:
        """One line in the JSON-lines log, if there is one (never with a key in it)."""
        if self._log is not None:
            self._log.write({"time": time.time(), "event": event, **fields})

    def add_connection(self, record: ConnectionRecord) -> None:
        _append_capped(self.connections, record, self._config.max_connections)

    async def add_received(self, received: Received) -> None:
        _append_capped(self.received, received, self._config.max_received)
        self.log("received", conn=received.conn_id, kind=received.kind, message=received.message)
        await self.changed()

    async def add_turn(self, turn: TurnRecord) -> None:
        _append_capped(self.turns, turn, self._config.max_turns)
        await self.changed()

    def audio_ignored(self) -> None:
        """Audio arrived with no activity open (automatic activity detection off)."""
        self.ignored_audio_chunks += 1

    def mark_disconnected(self, conn_id: int) -> None:
        """The connection ended: every turn of it still going ends "disconnected"."""
        for turn in self.turns:
            if turn.conn_id == conn_id and turn.ending is None:
                turn.ending = "disconnected"

    def internal_error(self, conn_id: int, text: str) -> None:
        """An emulator bug (a traceback): logged loudly and kept for tests to assert on."""
        log.error("emulator bug on connection %s:\n%s", conn_id, text)
        _append_capped(self.internal_errors, f"connection {conn_id}: {text}", MAX_INTERNAL_ERRORS)

    def describe(self) -> str:
        """A one-paragraph summary of what happened so far, for failure messages."""
        conns = []
        for rec in self.connections[-5:]:
            state = "open" if not rec.closed else f"closed by {rec.closed_by} {rec.close_code} {rec.close_reason!r}"
            conns.append(f"#{rec.id} {rec.model or '-'} {state}")
        kinds = [r.kind for r in self.received[-6:]]
        turns = [f"#{t.conn_id}:{t.ending or 'open'}" for t in self.turns[-5:]]
        errors = f", internal errors: {len(self.internal_errors)}" if self.internal_errors else ""
        return (f"{len(self.connections)} connection(s) [{'; '.join(conns)}], {len(self.turns)} turn(s) "
                f"[{', '.join(turns)}], last received {kinds}, ignored audio chunks {self.ignored_audio_chunks}"
                f"{errors}")
