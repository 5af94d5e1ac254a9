"""When does a turn end?  webrtcvad on 20 ms frames, smoothed, with time counted in frames.

The numbers, and why:

* Hold-to-talk, `postroll_silence_ms` = 300: the release already says "I am done"; we
  only wait for the word in flight to finish.  Gaps inside a word (the closure before
  "t", "k", "p") stay well under 200 ms, so 300 ms of non-speech means the word is over,
  at little cost in latency.  Non-speech that began before the release counts too.
* `postroll_max_ms` = 800: the release is explicit, so a fan or a TV that keeps the VAD
  saying "speech" must not keep the turn open; 800 ms covers a long final word.
* Tap-to-talk, `end_silence_ms` = 700: there is no release to lean on, and people pause
  200-500 ms between phrases or to breathe; 700 ms rarely cuts a pause and still feels
  prompt.
* Smoothing.  webrtcvad has its own hangover: it keeps saying "speech" for 5-7 frames
  after the voice stops (measured: 7 frames in modes 0-1 and 5 in modes 2-3 after a word,
  3-4 after a short burst), so a lone 20 ms click comes out as 4-6 frames of "speech".
  Speech therefore starts only when more frames than that are speech within a short window,
  and stops only after `stop_frames` (60 ms) of non-speech in a row, so one frame never
  flips the state either way.  In tap-to-talk the hangover is credited back to the
  silence, so `end_silence_ms` runs from when the voice stopped; in hold-to-talk it is
  not, which keeps ~100 ms more of a faint last consonant (the release bounds the wait).
  Speech is thus recognised 100-140 ms after it begins; that loses no audio, since every
  frame of the turn is kept and the pre-roll covers the start.
* A fresh `webrtcvad.Vad` calls its first 80-140 ms "speech" whatever they hold, while
  its noise model settles.  The detector shows it the stream's first frame a few times
  first, so the model settles on the stream's own background and real frames are judged
  from the first one.

Everything here is pure logic over frames: no clock, no I/O, so the unpaced test device
and a real microphone behave the same.
"""

from __future__ import annotations

import enum
from collections import deque
from typing import Literal, Protocol

from appliance.settings.schema import AudioConfig, VadConfig
from appliance.audio.frames import FRAME_BYTES, RATE, ms_to_frames

#: per aggressiveness 0..3: the longest "speech" run webrtcvad reports for a lone 20 ms click (measured)
_CLICK_RUN = (6, 6, 5, 5)
#: per aggressiveness: frames of hangover webrtcvad appends after a word / after a short burst
_HANGOVER_AFTER_WORD = (7, 7, 5, 5)
_HANGOVER_AFTER_BURST = (4, 4, 3, 3)
#: a raw speech run at least this long got the longer ("after a word") hangover
_WORD_RUN = 12
#: times a fresh webrtcvad.Vad is shown the first frame before judging it (its start-up run is <= 7)
_PRIME_FRAMES = 10


class FrameClassifier(Protocol):
    """What the detector needs from a VAD: webrtcvad.Vad, or a stand-in in tests."""

    def is_speech(self, buf: bytes, sample_rate: int) -> bool: ...


def _check_frame(frame: bytes) -> None:
    if len(frame) != FRAME_BYTES:
        raise ValueError(
            f"VAD frames must be {FRAME_BYTES} bytes (20 ms of 16 kHz mono s16le), got {len(frame)}"
        )


class SpeechDetector:
    """Smoothed speech/non-speech for one stream of frames (one VAD per stream: it has state).

    Speech starts when at least `start_frames` of the last `start_window` raw decisions are
    speech and the current one is too; it stops after `stop_frames` raw non-speech frames
    in a row.  Defaults depend on the aggressiveness (see the module docstring).  With a
    `vad` stand-in, the webrtcvad corrections (priming, hangover credit) are off and the
    defaults are 3 of 5 to start, 3 to stop.
    """

    def __init__(
        self,
        aggressiveness: int,
        *,
        start_frames: int | None = None,
        start_window: int | None = None,
        stop_frames: int = 3,
        vad: FrameClassifier | None = None,
    ) -> None:
        if isinstance(aggressiveness, bool) or aggressiveness not in (0, 1, 2, 3):
            raise ValueError(
                f"VAD aggressiveness must be 0, 1, 2 or 3 (set [vad] aggressiveness), got {aggressiveness!r}"
            )
        is_webrtcvad = vad is None
        if start_frames is None:
            start_frames = _CLICK_RUN[aggressiveness] + 1 if is_webrtcvad else 3
        if start_window is None:
            start_window = start_frames + 2
        if start_frames < 2 or stop_frames < 2:
            raise ValueError(
                f"start_frames and stop_frames must be at least 2 so one frame never flips the state, "
                f"got {start_frames} and {stop_frames}"
            )
        if start_window < start_frames:
            raise ValueError(f"start_window ({start_window}) must be at least start_frames ({start_frames})")
        if vad is None:
            import webrtcvad  # a compiled extension; imported here so that importing this module is cheap

            vad = webrtcvad.Vad(aggressiveness)
        self.aggressiveness = aggressiveness
        self.start_frames = start_frames
        self.start_window = start_window
        self.stop_frames = stop_frames
        self._vad = vad
        self._prime_frames = _PRIME_FRAMES if is_webrtcvad else 0
        self._hangover_after_word = _HANGOVER_AFTER_WORD[aggressiveness] if is_webrtcvad else 0
        self._hangover_after_burst = _HANGOVER_AFTER_BURST[aggressiveness] if is_webrtcvad else 0

        self._window: deque[bool] = deque(maxlen=start_window)
        self._window_speech = 0
        self._raw = False
        self._speaking = False
        self._raw_run = 0  # raw speech frames in a row, up to now
        self._ended_run = 0  # length of the raw speech run that ended most recently
        self._nonspeech_run = 0  # raw non-speech frames in a row, up to now
        self._last_voiced = -1  # index of the last raw-speech frame while speaking
        self._credit = 0  # hangover frames credited to the silence after the last speech
        self._frames = 0
        self._raw_speech_frames = 0
        self._speech_frames = 0
        self._onsets = 0

    # ------------------------------------------------------------------ state

    @property
    def speaking(self) -> bool:
        """The smoothed state after the last frame."""
        return self._speaking

    @property
    def raw(self) -> bool:
        """The VAD's own decision for the last frame."""
        return self._raw

    @property
    def frames(self) -> int:
        return self._frames

    @property
    def raw_speech_frames(self) -> int:
        """Frames the VAD itself called speech."""
        return self._raw_speech_frames

    @property
    def speech_frames(self) -> int:
        """Frames in the smoothed speech state."""
        return self._speech_frames

    @property
    def onsets(self) -> int:
        """How many times the smoothed state has turned to speech."""
        return self._onsets

    @property
    def silence_frames(self) -> int:
        """Frames since the VAD last said "speech" during speech (0 while speaking; every frame before any).

        Isolated "speech" frames that did not start speech do not interrupt the count.
        """
        if self._speaking:
            return 0
        if self._onsets == 0:
            return self._frames
        return self._frames - 1 - self._last_voiced

    @property
    def hangover_frames(self) -> int:
        """How many of the last speech's final frames were webrtcvad's hangover, not voice (0 while speaking).

        `silence_frames + hangover_frames` is the silence since the voice itself stopped.
        """
        return 0 if self._speaking else self._credit

    # ------------------------------------------------------------------ input

    def push(self, frame: bytes) -> bool:
        """Classify one 640-byte frame; returns the smoothed speech state."""
        _check_frame(frame)
        vad = self._vad
        if self._prime_frames:
            for _ in range(self._prime_frames):
                vad.is_speech(frame, RATE)
            self._prime_frames = 0
        raw = bool(vad.is_speech(frame, RATE))
        index = self._frames
        self._frames += 1
        self._raw = raw

        window = self._window
        if len(window) == window.maxlen and window[0]:
            self._window_speech -= 1
        window.append(raw)
        if raw:
            self._window_speech += 1
            self._raw_speech_frames += 1
            self._raw_run += 1
            self._nonspeech_run = 0
        else:
            if self._raw_run:
                self._ended_run = self._raw_run
                self._raw_run = 0
            self._nonspeech_run += 1

        if self._speaking:
            if raw:
                self._last_voiced = index
            elif self._nonspeech_run >= self.stop_frames:
                self._speaking = False
                self._credit = self._hangover_credit(self._ended_run)
        elif raw and self._window_speech >= self.start_frames:
            self._speaking = True
            self._onsets += 1
            self._last_voiced = index

        if self._speaking:
            self._speech_frames += 1
        return self._speaking

    def _hangover_credit(self, run: int) -> int:
        """How many of the last `run` 'speech' frames were webrtcvad's hangover, not voice."""
        hangover = self._hangover_after_word if run >= _WORD_RUN else self._hangover_after_burst
        return max(0, min(hangover, run - 1))

    def __repr__(self) -> str:
        return (
            f"SpeechDetector(aggressiveness={self.aggressiveness}, speaking={self._speaking}, "
            f"frames={self._frames}, onsets={self._onsets})"
        )


class EndReason(str, enum.Enum):
    """Why a turn ended.  Whatever the reason, `Endpointer.heard_speech` False means nothing was said."""

    POSTROLL_SILENCE = "postroll_silence"  # hold: enough non-speech after the release
    POSTROLL_CAP = "postroll_cap"  # hold: postroll_max_ms after the release, speech or not
    END_SILENCE = "end_silence"  # tap: end_silence_ms of non-speech after speech
    MAX_TURN = "max_turn"  # the turn reached vad.max_turn_s
    PRESS = "press"  # stop(): another press
    NO_SPEECH = "no_speech"  # tap: nobody spoke within vad.no_speech_timeout_s


Mode = Literal["hold", "tap"]


class Endpointer:
    """Decides when one turn ends, frame by frame.

    Feed the pre-roll first (`push(frame, preroll=True)`): it counts for speech detection,
    so speech that began before the press is heard at once, but not for any timer or
    silence.  Then feed every live frame; the frame for which `push` returns a reason is
    the turn's last.  Timers count live frames only.
    """

    def __init__(
        self,
        mode: Mode | str,
        audio_cfg: AudioConfig,
        vad_cfg: VadConfig,
        detector: SpeechDetector | None = None,
    ) -> None:
        if mode not in ("hold", "tap"):
            raise ValueError(f'turn mode must be "hold" or "tap", got {mode!r}')
        self.mode: Mode = "hold" if mode == "hold" else "tap"
        self.detector = detector if detector is not None else SpeechDetector(vad_cfg.aggressiveness)
        self._postroll_silence = ms_to_frames(audio_cfg.postroll_silence_ms)
        self._postroll_max = ms_to_frames(audio_cfg.postroll_max_ms)
        self._end_silence = ms_to_frames(vad_cfg.end_silence_ms)
        self._max_turn = ms_to_frames(vad_cfg.max_turn_s * 1000)
        self._no_speech = min(ms_to_frames(vad_cfg.no_speech_timeout_s * 1000), self._max_turn)

        self._frames = 0
        self._preroll_frames = 0
        self._speech_frames = 0
        self._speech_started_frame: int | None = None
        self._released_at: int | None = None  # live frames pushed when released
        self._end_reason: EndReason | None = None
        self._end_frame: int | None = None

    # ------------------------------------------------------------------ state

    @property
    def frames(self) -> int:
        """Frames pushed so far, pre-roll included (frames after the end are not counted)."""
        return self._frames

    @property
    def preroll_frames(self) -> int:
        return self._preroll_frames

    @property
    def live_frames(self) -> int:
        """Frames pushed after the press; the timers count these."""
        return self._frames - self._preroll_frames

    @property
    def heard_speech(self) -> bool:
        return self._speech_started_frame is not None

    @property
    def speech_started_frame(self) -> int | None:
        """Index (pre-roll included) of the first frame in the smoothed speech state."""
        return self._speech_started_frame

    @property
    def speech_frames(self) -> int:
        """Frames of this turn in the smoothed speech state."""
        return self._speech_frames

    @property
    def speaking(self) -> bool:
        return self.detector.speaking

    @property
    def silence_frames(self) -> int:
        """Live frames of trailing non-speech, as the timer of this mode counts them (pre-roll excluded).

        Tap-to-talk counts from when the voice stopped (webrtcvad's hangover credited back):
        the timer is the only end signal there, and 700 ms should mean 700 ms.  Hold-to-talk
        counts the non-speech webrtcvad reports, hangover not credited: the release already
        bounds the latency, and the extra ~100 ms keeps a faint last consonant.
        """
        detector = self.detector
        silence = detector.silence_frames
        if self.mode == "tap":
            silence += detector.hangover_frames
        return min(silence, self.live_frames)

    @property
    def released(self) -> bool:
        return self._released_at is not None

    @property
    def frames_since_release(self) -> int | None:
        return None if self._released_at is None else self.live_frames - self._released_at

    @property
    def end_reason(self) -> EndReason | None:
        return self._end_reason

    @property
    def ended(self) -> bool:
        return self._end_reason is not None

    @property
    def end_frame(self) -> int | None:
        """`frames` when the turn ended: the frames that belong to the turn."""
        return self._end_frame

    # ------------------------------------------------------------------ input

    def push(self, frame: bytes, preroll: bool = False) -> EndReason | None:
        """One frame of the turn; returns why the turn ended, or None while it goes on."""
        if self._end_reason is not None:
            return self._end_reason
        if preroll and self.live_frames:
            raise ValueError("pre-roll frames must be pushed before the first live frame of the turn")
        speaking = self.detector.push(frame)
        self._frames += 1
        if preroll:
            self._preroll_frames += 1
        if speaking:
            self._speech_frames += 1
            if self._speech_started_frame is None:
                self._speech_started_frame = self._frames - 1
        if preroll:
            return None
        return self._check()

    def release(self) -> EndReason | None:
        """The button was let go (hold-to-talk; ignored in tap-to-talk).

        Returns the reason when the turn ends right here, because the user had already
        been silent for `postroll_silence_ms`.
        """
        if self._end_reason is None and self.mode == "hold" and self._released_at is None:
            self._released_at = self.live_frames
            reason = self._check_postroll()
            if reason is not None:
                self._end(reason)
        return self._end_reason

    def become_tap(self) -> None:
        """A press that turned out to be a short tap: from now on the turn ends on silence.

        The button cannot tell a tap from a hold until it is released, so a turn starts
        as hold-to-talk (never ending while held) and converts here.
        """
        if self._end_reason is None and self.mode == "hold" and self._released_at is None:
            self.mode = "tap"

    def stop(self) -> EndReason:
        """End the turn now (another press); a turn that already ended keeps its reason."""
        if self._end_reason is None:
            self._end(EndReason.PRESS)
        assert self._end_reason is not None
        return self._end_reason

    # ------------------------------------------------------------------ decisions

    def _check(self) -> EndReason | None:
        if self.mode == "hold":
            reason = self._check_postroll() if self._released_at is not None else None
            if reason is None and self.live_frames >= self._max_turn:
                reason = EndReason.MAX_TURN
        else:
            reason = self._check_tap()
        if reason is not None:
            self._end(reason)
        return reason

    def _check_postroll(self) -> EndReason | None:
        if not self.detector.speaking and self.silence_frames >= self._postroll_silence:
            return EndReason.POSTROLL_SILENCE
        since_release = self.frames_since_release
        if since_release is not None and since_release >= self._postroll_max:
            return EndReason.POSTROLL_CAP
        return None

    def _check_tap(self) -> EndReason | None:
        live = self.live_frames
        if not self.heard_speech:
            return EndReason.NO_SPEECH if live >= self._no_speech else None
        if not self.detector.speaking and self.silence_frames >= self._end_silence:
            return EndReason.END_SILENCE
        if live >= self._max_turn:
            return EndReason.MAX_TURN
        return None

    def _end(self, reason: EndReason) -> None:
        self._end_reason = reason
        self._end_frame = self._frames

    def __repr__(self) -> str:
        return (
            f"Endpointer(mode={self.mode!r}, frames={self._frames}, heard_speech={self.heard_speech}, "
            f"released={self.released}, end_reason={self._end_reason})"
        )
