"""What the service heard and what it answered, one whole line per speaker per turn.

The Live API sends both transcriptions as fragments ("Sure,", " sixty", " seconds.") that
arrive in no fixed order with the audio, sometimes split mid-word. A
person reading `run --keyboard` or the journal wants a sentence, not a word per line, so the
fragments of one turn are joined here and handed out as lines: the question as soon as the
answer starts (or the turn ends), the answer when the turn ends. Sans-I/O: fragments and turn
ends in, `TranscriptLine`s out; the conductor decides where lines go.

The text comes from the network: it is bounded here (MAX_LINE_CHARS) and kept as the service
sent it otherwise; whoever prints it escapes it for the terminal or the log.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["MAX_LINE_CHARS", "TranscriptLine", "Transcripts", "WHO"]

#: the speakers, in the order their lines of one turn come out
WHO: tuple[str, ...] = ("user", "reply")
#: a line longer than this is cut (a runaway transcription must not grow without bound)
MAX_LINE_CHARS = 2000
_ELLIPSIS = "…"


@dataclass(frozen=True)
class TranscriptLine:
    """One speaker's words in one turn."""

    turn: int | None
    who: str  # "user" (what the service heard) or "reply" (what it answered)
    text: str
    interrupted: bool = False  # the reply was cut (a press, a barge-in) before it ended


@dataclass
class _Pending:
    parts: list[str] = field(default_factory=list)
    size: int = 0
    cut: bool = False

    def add(self, text: str) -> None:
        room = MAX_LINE_CHARS - self.size
        if room <= 0:
            self.cut = True
            return
        piece = text[:room]
        self.cut = self.cut or len(piece) < len(text)
        self.parts.append(piece)
        self.size += len(piece)

    def text(self) -> str:
        joined = " ".join("".join(self.parts).split())
        return joined + _ELLIPSIS if self.cut and joined else joined


class Transcripts:
    """Fragments per turn and speaker; whole lines out.

    `add` returns the lines it completed (the question, once the first fragment of the answer
    arrives); `end_turn` returns what is left of that turn. A fragment for a new turn first
    completes everything still open from older turns, so nothing is lost when a turn end
    never comes (the link dropped).
    """

    def __init__(self) -> None:
        self._turn: int | None = None
        self._open: dict[str, _Pending] = {}

    def add(self, turn: int | None, who: str, text: str) -> list[TranscriptLine]:
        if who not in WHO:
            raise ValueError(f"who must be one of {WHO}, got {who!r}")
        lines: list[TranscriptLine] = []
        if turn != self._turn and self._open:
            lines.extend(self._flush(interrupted=False))
        self._turn = turn
        if not text:
            return lines
        if who == "reply" and "user" in self._open:
            lines.extend(self._take("user", interrupted=False))
        self._open.setdefault(who, _Pending()).add(text)
        return lines

    def end_turn(self, turn: int | None, *, interrupted: bool = False) -> list[TranscriptLine]:
        """The turn is over (`interrupted`: its reply was cut); its remaining lines, question first."""
        if turn != self._turn:
            return []
        return self._flush(interrupted=interrupted)

    def _flush(self, *, interrupted: bool) -> list[TranscriptLine]:
        lines: list[TranscriptLine] = []
        for who in WHO:
            lines.extend(self._take(who, interrupted=interrupted and who == "reply"))
        self._open.clear()
        return lines

    def _take(self, who: str, *, interrupted: bool) -> list[TranscriptLine]:
        pending = self._open.pop(who, None)
        if pending is None:
            return []
        text = pending.text()
        return [TranscriptLine(self._turn, who, text, interrupted)] if text else []
