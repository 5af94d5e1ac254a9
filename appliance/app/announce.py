"""Announcements (`appliance ctl say "The washing machine is done"`): waiting for a quiet moment.

A script, cron or Home Assistant asks the box to say a sentence. Someone may be talking to it
right then: an announcement never cuts into a conversation, it waits for the appliance to be
idle, up to `WAIT_S`, and then it is dropped with the reason (a washing machine that finished
ten minutes ago is no news). While offline there is nobody to speak it: it is refused at once,
and the caller plays the alert earcon. Sans-I/O: requests, the appliance's state and the clock
in; the announcement to speak now out. The conductor speaks it (a text turn) and `ctl status`
shows how the last ones went.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

__all__ = ["MAX_TEXT_CHARS", "MAX_WAITING", "WAIT_S", "Announcement", "Announcements", "prompt_for"]

#: the longest sentence accepted: an announcement, not a document
MAX_TEXT_CHARS = 300
#: announcements waiting at once; one more is refused (a runaway script must not queue without bound)
MAX_WAITING = 5
#: how long an announcement waits for a conversation to end before it is dropped
WAIT_S = 120.0
#: how many finished announcements `ctl status` remembers
RECENT = 5


def prompt_for(text: str) -> str:
    """The text turn that asks the model to say exactly `text` in its own voice."""
    return (
        "Announce the following to the people in the kitchen. Say exactly this sentence, word for "
        f"word, and nothing else; do not answer or comment on it: {text}"
    )


def clean_text(text: str) -> str:
    """One tidy line, or ValueError saying what is wrong with it."""
    line = " ".join(str(text).split())
    if not line:
        raise ValueError("say needs the sentence to speak, e.g. appliance ctl say \"The washing is done\"")
    if len(line) > MAX_TEXT_CHARS:
        raise ValueError(f"the sentence is {len(line)} characters long; an announcement takes at most {MAX_TEXT_CHARS}")
    if not line.isprintable():
        raise ValueError("the sentence holds control characters; give plain text")
    return line


@dataclass
class Announcement:
    text: str
    asked_at: float
    state: str = "waiting"  # waiting | speaking | spoken | dropped
    why: str = ""

    def describe(self) -> dict[str, object]:
        shown: dict[str, object] = {"text": self.text, "state": self.state}
        if self.why:
            shown["why"] = self.why
        return shown


class Announcements:
    """The waiting line of announcements; see the module docstring."""

    def __init__(self, *, wait_s: float = WAIT_S, max_waiting: int = MAX_WAITING) -> None:
        self.wait_s = wait_s
        self.max_waiting = max_waiting
        self._waiting: deque[Announcement] = deque()
        self._recent: deque[Announcement] = deque(maxlen=RECENT)

    def request(self, text: str, now: float, *, online: bool) -> Announcement:
        """Take a sentence (ValueError for a bad one, or when too many are waiting)."""
        line = clean_text(text)
        item = Announcement(line, now)
        if not online:
            return self._drop(item, "offline: nobody to speak it")
        if len(self._waiting) >= self.max_waiting:
            raise ValueError(f"{self.max_waiting} announcements are already waiting; try again later")
        self._waiting.append(item)
        self._recent.append(item)
        return item

    def due(self, now: float, *, idle: bool, online: bool) -> Announcement | None:
        """The announcement to speak now, if the appliance is idle and online; expired ones are dropped."""
        while self._waiting and now - self._waiting[0].asked_at > self.wait_s:
            self._drop(self._waiting.popleft(), f"the appliance was busy for more than {self.wait_s:.0f} s")
        if not (idle and online) or not self._waiting:
            return None
        item = self._waiting.popleft()
        item.state = "speaking"
        return item

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def next_deadline(self) -> float | None:
        """When the oldest waiting announcement expires (so the caller can look again then)."""
        return self._waiting[0].asked_at + self.wait_s if self._waiting else None

    def finished(self, item: Announcement, *, spoken: bool, why: str = "") -> None:
        item.state = "spoken" if spoken else "dropped"
        item.why = why

    def describe(self) -> list[dict[str, object]]:
        """The recent announcements, oldest first, for `ctl status`."""
        return [item.describe() for item in self._recent]

    def _drop(self, item: Announcement, why: str) -> Announcement:
        item.state, item.why = "dropped", why
        if item not in self._recent:
            self._recent.append(item)
        return item
