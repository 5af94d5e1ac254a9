"""The user's side of a turn while it is being spoken: the audio and text of the open activity.

Kept per input rate, so resampling to 16 kHz happens once, when the turn ends; capped (audio by
seconds, text by characters) so that a client that never ends its activity cannot fill the memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from appliance.audio.resample import resample_pcm16

__all__ = ["INPUT_RATE", "ActivityAudio"]

INPUT_RATE = 16000  # what the user's audio is kept at, whatever rate the client sent
MAX_ACTIVITY_TEXT_CHARS = 65_536  # text an open activity collects; the rest is dropped and flagged


@dataclass
class ActivityAudio:
    """Audio of the open activity, kept per input rate so resampling happens once, at the end."""

    segments: list[tuple[int, bytearray]] = field(default_factory=list)
    seconds: float = 0.0
    truncated: bool = False
    #: realtimeInput.text sent inside the activity (manual activity detection)
    texts: list[str] = field(default_factory=list)
    text_chars: int = 0

    @property
    def empty(self) -> bool:
        return not any(seg for _, seg in self.segments)

    def add_text(self, text: str) -> None:
        room = MAX_ACTIVITY_TEXT_CHARS - self.text_chars
        if len(text) > room:
            text = text[:max(0, room)]
            self.truncated = True
        if text:
            self.texts.append(text)
            self.text_chars += len(text)

    def add(self, pcm: bytes, rate: int, cap_seconds: float) -> None:
        room = cap_seconds - self.seconds
        if room <= 0:
            self.truncated = True
            return
        max_bytes = round(room * rate) * 2
        if len(pcm) > max_bytes:
            pcm = pcm[:max_bytes]
            self.truncated = True
        if self.segments and self.segments[-1][0] == rate:
            self.segments[-1][1].extend(pcm)
        else:
            self.segments.append((rate, bytearray(pcm)))
        self.seconds += len(pcm) / 2 / rate

    def to_16k(self) -> bytes:
        parts = [bytes(seg) if rate == INPUT_RATE else resample_pcm16(bytes(seg), rate, INPUT_RATE)
                 for rate, seg in self.segments if seg]
        return b"".join(parts)
