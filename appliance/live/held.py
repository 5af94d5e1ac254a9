"""The question in flight, kept until the server shows it heard it.

A drop can come between `activityStart` and the reply; the session then replays what
it holds here on the next connection, so a question asked on flaky Wi-Fi is not lost.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: how much of one activity's audio is kept to replay after a reconnect (bytes of
#: 16 kHz s16le: 60 s); past it the live stream goes on but replay is partial
ACTIVITY_REPLAY_BYTES = 60 * 16000 * 2


@dataclass
class HeldActivity:
    """One question (spoken or typed), kept until the server shows it heard it."""

    turn: int
    started: float
    chunks: list[bytes] = field(default_factory=list)
    audio_bytes: int = 0
    stored_bytes: int = 0
    #: a typed question: sent as text inside activityStart/activityEnd
    text: str | None = None
    ended_at: float | None = None
    #: connection generation on which start and every chunk so far were sent
    live_on: int | None = None
    start_sent_on: int | None = None
    end_sent_on: int | None = None
    catching_up: bool = False

    @property
    def has_content(self) -> bool:
        return self.audio_bytes > 0 or bool(self.text)

    def add(self, pcm: bytes) -> None:
        self.audio_bytes += len(pcm)
        if self.stored_bytes + len(pcm) <= ACTIVITY_REPLAY_BYTES:
            self.chunks.append(pcm)
            self.stored_bytes += len(pcm)
