"""What the conductor records about each turn: its reply in flight and the turn's metrics.

The conductor keeps one `Reply` for the turn whose answer is playing (keyed by the
conversation model's turn id) and a `TurnMetrics` line for every turn, which goes to the
log and the recent ones to `appliance ctl status`.
"""

from __future__ import annotations

from dataclasses import dataclass

from appliance.live.conversation import Outcome

#: how a turn's ending reads in the turn log and `ctl status`
OUTCOME_TEXT = {
    Outcome.TIMED_OUT: "no reply in time",
    Outcome.LOST: "reply lost",
    Outcome.INTERRUPTED: "interrupted",
    Outcome.COMPLETE: "answered",
}


@dataclass
class TurnMetrics:
    """One line per turn in the log, and the recent ones in `ctl status` (milliseconds)."""

    at: float  # wall clock, for people
    mode: str
    end_reason: str | None
    submitted: bool
    barge_in: bool
    press_to_start_ms: float | None = None
    release_to_end_ms: float | None = None
    end_to_first_audio_ms: float | None = None
    first_audio_to_device_ms: float | None = None
    barge_in_to_silent_ms: float | None = None
    reply_ms: float | None = None
    underruns: int = 0
    outcome: str = ""

    def line(self) -> str:
        parts = [f"turn {self.mode}", self.outcome or "?"]
        for name in ("press_to_start_ms", "release_to_end_ms", "end_to_first_audio_ms",
                     "first_audio_to_device_ms", "barge_in_to_silent_ms"):
            value = getattr(self, name)
            if value is not None:
                parts.append(f"{name.removesuffix('_ms')}={value:.0f}ms")
        parts.append(f"underruns={self.underruns}")
        return " ".join(parts)


@dataclass
class Reply:
    """Bookkeeping for the reply to one turn (the session's turn id)."""

    turn: int | None
    metrics: TurnMetrics
    end_sent_at: float | None
    first_audio_at: float | None = None
    #: the session said the reply is over and all of it was fed to the speaker
    complete: bool = False
    #: why the reply ended badly (lost mid-way): the error earcon follows what played
    failed: str = ""
    underruns_at_start: int = 0
    odd_rate_logged: bool = False
