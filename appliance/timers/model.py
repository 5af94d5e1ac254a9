"""A kitchen timer as the rest of the appliance sees it, and the one place its text is made safe.

Labels and tool-call ids come from the model or `ctl` and end up in a UTF-8 file and on the
control socket, so they are cleaned here, once, where they enter.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

DEFAULT_CHECK_INTERVAL_S = 5.0
DEFAULT_LABEL = "timer"
MAX_LABEL_CHARS = 40
#: a tool call id longer than this is cut (ids are short; this only bounds what is stored)
MAX_CALL_ID_CHARS = 200
#: a timers file holds at most a few hundred small entries; anything bigger is not one
MAX_FILE_BYTES = 1024 * 1024
# Bounds on stored numbers, generous but finite: ids up to t999999999, durations up to 10^7 s (115 days).
MAX_ID_NUMBER = 999_999_999
MAX_STORED_DURATION_S = 10_000_000

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
