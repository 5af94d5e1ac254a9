"""The timers file: strict UTF-8 JSON written atomically, read back whatever happened to it.

What is written must always load again: the state is encoded before the old file is touched,
and a state that cannot be encoded is logged and not written.  A file with some bad entries
loads the good ones; a file that cannot be read at all is set aside (kept as a copy) so the
owner can look at it, and the appliance starts with no timers.
"""

from __future__ import annotations

import builtins
import dataclasses
import json
import logging
import math
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.atomicfile import FileRefused, read_regular_file, write_atomic
from appliance.timers.model import (
    MAX_FILE_BYTES,
    Timer,
    MAX_ID_NUMBER,
    MAX_STORED_DURATION_S,
    clean_call_id,
    normalise_label,
)

log = logging.getLogger(__name__)

TIMERS_FILE = "timers.json"
FILE_VERSION = 1


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
            self._set_aside(f"cannot be read ({problem_text(exc)})")
            return StoredTimers([], 1)
        try:
            stored, problems = _decode(json.loads(raw.decode("utf-8")))
        except UnicodeDecodeError:
            self._set_aside("is not UTF-8 text")
            return StoredTimers([], 1)
        except (ValueError, TypeError, KeyError, RecursionError) as exc:
            self._set_aside(f"is not a valid timers file ({problem_text(exc)})")
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
                self.path, problem_text(exc),
            )
            return False
        with self._lock:
            write_atomic(self.path, payload, mode=0o600)
        return True

    def _keep_copy(self, raw: bytes) -> str:
        try:
            write_atomic(self.corrupt_path, raw, mode=0o600)
        except OSError as exc:
            return f"could not keep the original as {self.corrupt_path}: {problem_text(exc)}"
        return f"the original is kept as {self.corrupt_path}"

    def _set_aside(self, problem: str) -> None:
        try:
            os.replace(self.path, self.corrupt_path)
            kept = f"kept as {self.corrupt_path}"
        except OSError as exc:
            kept = f"could not keep it as {self.corrupt_path}: {problem_text(exc)}"
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
    if isinstance(next_id, bool) or not isinstance(next_id, int) or not 1 <= next_id <= MAX_ID_NUMBER + 1:
        problems.append("next_id is not a whole number from 1 to 1000000000")
        next_id = 1
    timers: builtins.list[Timer] = []
    seen: set[str] = set()
    for index, raw in enumerate(raw_timers):
        try:
            timer = _decode_timer(raw)
        except (ValueError, TypeError, KeyError) as exc:
            problems.append(f"entry {index + 1}: {problem_text(exc)}")
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
        or not 1 <= timer.duration_s <= MAX_STORED_DURATION_S
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


def problem_text(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc).splitlines()[0] if str(exc) else ""
    return text or type(exc).__name__
