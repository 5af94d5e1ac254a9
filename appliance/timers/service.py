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
`ringing()` / `any_ringing`.

The file is written off the event loop (fsync on an SD card can take long), coalescing bursts of
changes; `flush()` waits for the file to catch up.  What is written must always load again: the state
is encoded as strict UTF-8 JSON before the old file is touched, and a state that cannot be encoded is
logged and not written.  A file with some bad entries loads the good ones.
"""

from __future__ import annotations

import asyncio
import builtins
import dataclasses
import json
import logging
import math
import os
import re
import threading
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.atomicfile import FileRefused, read_regular_file, write_atomic
from appliance.settings.loader import TimersConfig

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

TIMERS_FILE = "timers.json"
FILE_VERSION = 1
DEFAULT_CHECK_INTERVAL_S = 5.0
DEFAULT_LABEL = "timer"
MAX_LABEL_CHARS = 40
#: a tool call id longer than this is cut (ids are short; this only bounds what is stored)
MAX_CALL_ID_CHARS = 200
#: a timers file holds at most a few hundred small entries; anything bigger is not one
MAX_FILE_BYTES = 1024 * 1024
# Bounds on stored numbers, generous but finite: ids up to t999999999, durations up to 10^7 s (115 days).
_MAX_ID_NUMBER = 999_999_999
_MAX_STORED_DURATION_S = 10_000_000

RUNNING = "running"
RINGING = "ringing"


@dataclass
class Timer:
    """One timer; `deadline`, `created_at` and `ringing_since` are wall-clock epoch seconds."""

    id: str
    label: str
    duration_s: int
    deadline: float
    created_at: float
    call_id: str | None = None
    ringing_since: float | None = None

    @property
    def state(self) -> str:
        return RUNNING if self.ringing_since is None else RINGING


class TimerError(Exception):
    """A timer request that cannot be done, with a code the model (or `ctl`) can act on."""

    def __init__(self, code: str, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable


# --------------------------------------------------------------------------- the file


@dataclass
class StoredTimers:
    timers: list[Timer]
    next_id: int


class TimerStore:
    """`timers.json` in the state directory: written atomically, mode 0600, never fatal to read."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()  # saves run on worker threads: one writer at a time

    @classmethod
    def in_dir(cls, state_dir: Path) -> TimerStore:
        return cls(Path(state_dir) / TIMERS_FILE)

    @property
    def corrupt_path(self) -> Path:
        return self.path.with_name(self.path.name + ".corrupt")

    def load(self) -> StoredTimers:
        """The stored timers; a missing file is empty, a bad one is logged, set aside and empty.

        Bad entries in an otherwise good file are skipped (one log line; the original is kept as
        `corrupt_path`), so one broken timer does not cost the others.
        """
        try:
            raw = read_regular_file(self.path, MAX_FILE_BYTES)
        except FileNotFoundError:
            return StoredTimers([], 1)
        except FileRefused as exc:
            self._set_aside(exc.problem)
            return StoredTimers([], 1)
        except OSError as exc:
            self._set_aside(f"cannot be read ({_reason(exc)})")
            return StoredTimers([], 1)
        try:
            stored, problems = _decode(json.loads(raw.decode("utf-8")))
        except UnicodeDecodeError:
            self._set_aside("is not UTF-8 text")
            return StoredTimers([], 1)
        except (ValueError, TypeError, KeyError, RecursionError) as exc:
            self._set_aside(f"is not a valid timers file ({_reason(exc)})")
            return StoredTimers([], 1)
        if problems:
            kept = self._keep_copy(raw)
            log.error(
                "timers file %s: skipped %d bad entr%s (%s), loaded %d timer(s) (%s)",
                self.path, len(problems), "y" if len(problems) == 1 else "ies", problems[0],
                len(stored.timers), kept,
            )
        return stored

    def save(self, stored: StoredTimers) -> bool:
        """Replace the file in one step: a crash leaves the old file or the new one, never half.

        The whole state is encoded (JSON, then strict UTF-8) before the file is touched; a state
        that cannot be stored is logged and the previous file stays.  Returns whether it was written;
        a failing write raises OSError.
        """
        try:
            payload = (
                json.dumps(_encode(stored), indent=1, ensure_ascii=False, allow_nan=False) + "\n"
            ).encode("utf-8")
        except (TypeError, ValueError) as exc:  # UnicodeEncodeError is a ValueError
            log.error(
                "timers not saved to %s: the state cannot be stored as UTF-8 JSON (%s); the file keeps "
                "the previous state",
                self.path, _reason(exc),
            )
            return False
        with self._lock:
            write_atomic(self.path, payload, mode=0o600)
        return True

    def _keep_copy(self, raw: bytes) -> str:
        try:
            write_atomic(self.corrupt_path, raw, mode=0o600)
        except OSError as exc:
            return f"could not keep the original as {self.corrupt_path}: {_reason(exc)}"
        return f"the original is kept as {self.corrupt_path}"

    def _set_aside(self, problem: str) -> None:
        try:
            os.replace(self.path, self.corrupt_path)
            kept = f"kept as {self.corrupt_path}"
        except OSError as exc:
            kept = f"could not keep it as {self.corrupt_path}: {_reason(exc)}"
        log.error("timers file %s %s; starting with no timers (%s)", self.path, problem, kept)


def _encode(stored: StoredTimers) -> dict[str, Any]:
    return {
        "version": FILE_VERSION,
        "next_id": stored.next_id,
        "timers": [dataclasses.asdict(t) for t in stored.timers],
    }


_ID_PATTERN = re.compile(r"t[1-9][0-9]{0,8}")


def _decode(data: Any) -> tuple[StoredTimers, builtins.list[str]]:
    """The timers in a parsed file, and what was wrong with the entries that were skipped.

    Raises ValueError/TypeError/KeyError when the file as a whole is not a timers file.
    """
    if not isinstance(data, dict) or data.get("version") != FILE_VERSION:
        raise ValueError(f"expected an object with version {FILE_VERSION}")
    raw_timers = data["timers"]
    if not isinstance(raw_timers, list):
        raise ValueError("timers must be a list")
    problems: builtins.list[str] = []
    next_id = data.get("next_id")
    if isinstance(next_id, bool) or not isinstance(next_id, int) or not 1 <= next_id <= _MAX_ID_NUMBER + 1:
        problems.append("next_id is not a whole number from 1 to 1000000000")
        next_id = 1
    timers: builtins.list[Timer] = []
    seen: set[str] = set()
    for index, raw in enumerate(raw_timers):
        try:
            timer = _decode_timer(raw)
        except (ValueError, TypeError, KeyError) as exc:
            problems.append(f"entry {index + 1}: {_reason(exc)}")
            continue
        if timer.id in seen:
            problems.append(f"entry {index + 1}: a second timer {timer.id}")
            continue
        seen.add(timer.id)
        timers.append(timer)
    # Never hand out an id that is already taken, whatever next_id says.
    highest = max((int(t.id[1:]) for t in timers), default=0)
    return StoredTimers(timers, max(next_id, highest + 1)), problems


def _decode_timer(raw: Any) -> Timer:
    if not isinstance(raw, dict):
        raise ValueError("a timer must be an object")
    missing = [name for name in ("id", "label", "duration_s", "deadline", "created_at") if name not in raw]
    if missing:
        raise ValueError(f"no {', '.join(missing)}")
    timer = Timer(
        id=raw["id"],
        label=raw["label"],
        duration_s=raw["duration_s"],
        deadline=raw["deadline"],
        created_at=raw["created_at"],
        call_id=raw.get("call_id"),
        ringing_since=raw.get("ringing_since"),
    )
    if not isinstance(timer.id, str) or not _ID_PATTERN.fullmatch(timer.id):
        raise ValueError("bad timer id")
    if not isinstance(timer.label, str) or not timer.label:
        raise ValueError(f"timer {timer.id} has no label")
    timer.label = normalise_label(timer.label)  # a file written by an older version may hold any text
    if (
        isinstance(timer.duration_s, bool)
        or not isinstance(timer.duration_s, int)
        or not 1 <= timer.duration_s <= _MAX_STORED_DURATION_S
    ):
        raise ValueError(f"timer {timer.id} has a bad duration")
    for name in ("deadline", "created_at", "ringing_since"):
        value = getattr(timer, name)
        if value is None and name == "ringing_since":
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"timer {timer.id} has a bad {name}")
        setattr(timer, name, float(value))
    if timer.call_id is not None and not isinstance(timer.call_id, str):
        raise ValueError(f"timer {timer.id} has a bad call_id")
    timer.call_id = clean_call_id(timer.call_id)
    return timer


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc).splitlines()[0] if str(exc) else ""
    return text or type(exc).__name__


# --------------------------------------------------------------------------- the service


# Characters that reorder how text is shown (bidirectional overrides and isolates): a label must read as it is.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
#: how much of a label is looked at; the rest cannot survive the MAX_LABEL_CHARS cut anyway
_LABEL_INPUT_CHARS = 1000


def _clean_char(ch: str) -> str:
    category = unicodedata.category(ch)
    if category == "Cs":
        return "\ufffd"  # a lone surrogate: no UTF-8 file or socket can carry it
    if category == "Cc":
        return " "
    if ch in _BIDI_CONTROLS:
        return ""
    return ch


def normalise_label(label: object) -> str:
    """One line of text that can be stored and shown: at most MAX_LABEL_CHARS, single spaces.

    Lone surrogates become U+FFFD, control characters spaces; empty (or not text) becomes DEFAULT_LABEL.
    The label comes from the model or `ctl`, and whatever is stored is written to a UTF-8 file and sent
    over the control socket, so this is the one place it is made safe for both.
    """
    if not isinstance(label, str):
        return DEFAULT_LABEL
    cleaned = "".join(_clean_char(ch) for ch in label[:_LABEL_INPUT_CHARS])
    text = " ".join(cleaned.split())[:MAX_LABEL_CHARS].strip()
    return text or DEFAULT_LABEL


def clean_call_id(call_id: object) -> str | None:
    """A tool call id as it can be stored: lone surrogates replaced, at most MAX_CALL_ID_CHARS; else None."""
    if not isinstance(call_id, str) or not call_id:
        return None
    return "".join("\ufffd" if unicodedata.category(ch) == "Cs" else ch for ch in call_id[:MAX_CALL_ID_CHARS])


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
            log.error("cannot save the timers to %s: %s", self.store.path, _reason(exc))

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
