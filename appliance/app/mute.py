"""The mute: the microphone switched off on purpose, and remembered across restarts and power cuts.

A mute is a promise to the people in the kitchen: the box stays deaf until someone unmutes it,
whatever happens in between.  So `MuteSwitch` closes the microphone stream itself (not just the
turn: nothing is captured, so nothing said meanwhile can be sent later, and the reopened stream
starts with an empty pre-roll), writes the mute to the state directory at once (atomically: a
power cut leaves the old file or the new one), and at the next start reads it before the
microphone is first opened.  The conductor holds the flag and decides what a press means.

A file that cannot be read or makes no sense counts as "not muted", with one warning line: with
atomic writes it can only come from outside (a hand-edited file, a broken card), and a box that
refuses to hear for a reason nobody can see would be worse.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from pathlib import Path
from typing import Any, Protocol

from appliance.atomicfile import FileRefused, read_regular_file, write_atomic
from appliance.textsafe import escape_controls

__all__ = ["MUTE_FILE", "MuteStore", "MuteSwitch"]

log = logging.getLogger(__name__)

MUTE_FILE = "mute.json"
#: far more than `{"muted": false}`; a bigger file is not ours
_MAX_BYTES = 4096


class MuteStore:
    """The remembered mute in ``<state dir>/mute.json``; `save` blocks (run it on a worker thread)."""

    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / MUTE_FILE
        self._lock = threading.Lock()  # saves from two worker threads write one file at a time

    def load(self) -> bool:
        """True when the box was muted; no file, or one that is unreadable or corrupt, is False."""
        try:
            raw = read_regular_file(self.path, _MAX_BYTES)
        except FileNotFoundError:
            return False
        except FileRefused as exc:
            return self._ignored(f"it {exc.problem}")
        except OSError as exc:
            return self._ignored(f"it cannot be read ({exc.strerror or exc})")
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return self._ignored("it is not JSON")
        muted = data.get("muted") if isinstance(data, dict) else None
        if not isinstance(muted, bool):
            return self._ignored('it has no "muted": true or false')
        return muted

    def save(self, muted: bool) -> None:
        """Write the mute atomically (OSError if the state directory cannot be written)."""
        payload = json.dumps({"muted": bool(muted)}) + "\n"
        with self._lock:
            write_atomic(self.path, payload)

    def _ignored(self, why: str) -> bool:
        log.warning("ignoring the saved mute %s: %s; starting unmuted", escape_controls(str(self.path)), why)
        return False


class Microphone(Protocol):
    """What the switch needs of the microphone (appliance.audio.capture.Capture)."""

    def stop(self) -> None: ...
    async def start_async(self, *, allow_missing: bool = True) -> Any: ...


class Muting(Protocol):
    """What the switch needs of the conductor: the flag, and being told of a change."""

    muted: bool

    def set_muted(self, muted: bool, reason: str, *, announce: bool = True) -> None: ...


class MuteSwitch:
    """Owns the mute: the conductor (and so the LEDs) hears of a change at once, then the
    microphone stream and the file follow on worker threads, one change at a time, in order."""

    def __init__(self, store: MuteStore, microphone: Microphone, conductor: Muting) -> None:
        self.store = store
        self._microphone = microphone
        self._conductor = conductor
        self._lock = asyncio.Lock()
        self._work: set[asyncio.Task[None]] = set()
        #: the microphone stream is closed for the mute (so unmuting opens it again)
        self.mic_closed = False

    async def restore(self) -> bool:
        """At the start, before the microphone opens: True (and the conductor told, quietly) when
        the box was muted; the caller then leaves the microphone closed."""
        if not await asyncio.to_thread(self.store.load):
            return False
        self._conductor.set_muted(True, "muted before this start", announce=False)
        self.mic_closed = True
        return True

    def switch(self, muted: bool, reason: str) -> asyncio.Task[None]:
        """Mute or unmute now; the task ends once the microphone stream is closed (or open again)
        and the mute is saved, so an answer that waits for it means the microphone is off."""
        self._conductor.set_muted(muted, reason)  # a turn in progress ends first, the light changes
        task = asyncio.get_running_loop().create_task(self._follow(), name="mute")
        self._work.add(task)
        task.add_done_callback(self._done)
        return task

    async def finish(self) -> None:
        """Wait for the changes still on their way (at shutdown, before the microphone closes)."""
        if self._work:
            await asyncio.gather(*self._work, return_exceptions=True)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._work.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("switching the microphone for the mute failed", exc_info=task.exception())

    async def _follow(self) -> None:
        """Bring the microphone and the file to what the conductor says now (the latest change,
        whichever switch() started this: quick toggles end where the last one left things)."""
        async with self._lock:
            muted = self._conductor.muted
            if muted and not self.mic_closed:
                self.mic_closed = True
                await asyncio.to_thread(self._microphone.stop)  # released: no callbacks, no backlog
                log.info("microphone stream closed (muted)")
            elif not muted and self.mic_closed:
                self.mic_closed = False
                await self._microphone.start_async(allow_missing=True)  # a missing one is reported as such
            try:
                await asyncio.to_thread(self.store.save, muted)
            except OSError as exc:
                log.warning("cannot save the mute to %s (%s); it holds until the appliance restarts",
                            escape_controls(str(self.store.path)), exc.strerror or exc)
