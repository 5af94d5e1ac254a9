"""From captured frames to the Live session: pre-roll, endpointing, and when to speak up.

Every captured frame passes through here.  Between turns the frames only fill the
pre-roll ring, so that a press can start the turn 300 ms in the past and the first
syllable is never lost.  During a turn, the endpointer decides when it ends (the
post-roll keeps the last word), and the turn's audio goes to the session.

`activityStart` goes out when the local VAD first hears speech, not at the press:
an accidental press with nothing said then costs no model turn and no protocol
error.  That holds for a barge-in too: the press silences the speaker locally at
once, and the reply's rest is dropped as residue; the service is interrupted only
when the user really speaks, so a barge-in with nothing said leaves no activity
open on the wire.

`on_frame`, `press`, `release` and `stop` run on the event loop and never block:
they put work on an ordered outbox that `run()` drains into the session.  Turn
signals in it are never dropped; audio is bounded (see OUTBOX_FRAMES).
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Protocol

from appliance.audio.endpointing import Endpointer, EndReason, SpeechDetector
from appliance.audio.frames import FRAME_MS, ms_to_frames
from appliance.audio.preroll import PrerollRing
from appliance.live.channel import OrderedChannel
from appliance.settings.schema import AudioConfig, VadConfig
from appliance.live.connection import LiveSession

log = logging.getLogger(__name__)

#: most audio frames ever waiting for the session (30 s); past it the newest audio is
#: dropped.  Turn signals (start, end) are never dropped.
OUTBOX_FRAMES = 1500
#: a backlog of frames goes out in messages of up to this many frames (100 ms)
BATCH_FRAMES = 5
#: the smoothed VAD reports speech up to ~140 ms after it began; keep this much more
#: than the pre-roll before that moment, so the onset is whole but a long silent
#: wait after the press is not sent to the model
DETECTION_LAG_FRAMES = 10


class MicGate(Protocol):
    """A microphone that hands over frames only while asked to (`appliance.audio.capture.Capture`)."""

    def listen(self) -> None: ...  # pre-roll frames (to on_preroll), then live frames (to on_frame)

    def idle(self) -> None: ...


class Mode(str, enum.Enum):
    HOLD = "hold"  # talk while the button is held
    TAP = "tap"  # a short press; the turn ends on silence


@dataclass
class TurnReport:
    """How one press went; the daemon turns this into metrics and earcons."""

    mode: Mode
    pressed_at: float
    #: the session's id for this turn (None when nothing was ever sent)
    turn_id: int | None = None
    reason: EndReason | None = None
    submitted: bool = False
    barge_in: bool = False
    released_at: float | None = None
    start_sent_at: float | None = None
    end_sent_at: float | None = None
    frames_sent: int = 0
    speech_ms: int = 0
    dropped_frames: int = 0

    @property
    def press_to_start_ms(self) -> float | None:
        if self.start_sent_at is None:
            return None
        return (self.start_sent_at - self.pressed_at) * 1000

    @property
    def release_to_end_ms(self) -> float | None:
        """Hold-to-talk only: after a tap the release says nothing about the end of speech."""
        if self.end_sent_at is None or self.released_at is None or self.mode is Mode.TAP:
            return None
        return (self.end_sent_at - self.released_at) * 1000


@dataclass
class _Turn:
    endpointer: Endpointer
    report: TurnReport
    #: frames held back until speech is heard: the pre-roll plus the detection lag
    held: deque[bytes] = field(default_factory=deque)
    start_queued: bool = False
    #: speech was heard: the turn's audio is going to the session
    flowing: bool = False
    ended: bool = False


class Uplink:
    """See the module docstring."""

    def __init__(
        self,
        session: LiveSession,
        audio: AudioConfig,
        vad: VadConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._session = session
        self._audio = audio
        self._vad = vad
        self._clock = clock
        self._ring = PrerollRing(ms_to_frames(audio.preroll_ms))
        self._held_frames = self._ring.capacity + DETECTION_LAG_FRAMES
        #: a gated microphone keeps the pre-roll itself (see attach_gate); None: every frame comes here
        self._gate: MicGate | None = None
        self._turn: _Turn | None = None
        self._outbox: OrderedChannel[tuple[str, object]] = OrderedChannel(OUTBOX_FRAMES)
        self._overflow_logged = False
        #: called on the loop when a turn ends (submitted or not)
        self.on_turn_end: Callable[[TurnReport], None] | None = None
        #: called with True when the turn's audio starts leaving the device, False when it stops
        self.on_sending: Callable[[bool], None] | None = None
        self.sending = False

    def use_settings(self, audio: AudioConfig, vad: VadConfig) -> None:
        """New VAD and post-roll settings (a reload): the next turn uses them, one in progress keeps its own.

        The pre-roll's length is fixed when the microphone opens, so `audio.preroll_ms` is not taken here.
        """
        self._audio = dataclasses.replace(audio, preroll_ms=self._audio.preroll_ms)
        self._vad = vad

    def attach_gate(self, gate: MicGate) -> None:
        """Let the microphone rest between turns: it is told to listen at a press and to idle when the turn ends.

        The pre-roll then comes from the microphone (to `on_preroll`) instead of this object's own ring.
        """
        self._gate = gate
        self._ring = PrerollRing(0)

    # ------------------------------------------------------------------ inputs (loop)

    @property
    def listening(self) -> bool:
        return self._turn is not None and not self._turn.ended

    def press(self, mode: Mode | str = Mode.HOLD, *, barge_in: bool = False) -> None:
        """Start a turn; `barge_in` only marks it in the report (see the module docstring)."""
        if self.listening:
            self.stop()
        mode = Mode(mode)
        detector = SpeechDetector(self._vad.aggressiveness)
        turn = _Turn(
            Endpointer(mode.value, self._audio, self._vad, detector),
            TurnReport(mode, self._clock()),
            held=deque(maxlen=self._held_frames),
        )
        turn.report.barge_in = barge_in
        self._turn = turn
        for frame in self._ring.snapshot():
            self._feed(turn, frame, preroll=True)
        if self._gate is not None:
            self._gate.listen()

    def release(self, *, tap: bool = False) -> None:
        """The button was let go.

        After a hold, the post-roll decides the end; after a short tap the turn goes on
        until the user stops talking.
        """
        turn = self._turn
        if turn is None or turn.ended:
            return
        turn.report.released_at = self._clock()
        if tap:
            turn.endpointer.become_tap()
            turn.report.mode = Mode.TAP
            return
        reason = turn.endpointer.release()
        if reason is not None:  # already quiet long enough: end now
            self._finish(turn, reason)

    def cancel(self) -> bool:
        """Drop the turn if nothing has been sent yet (a long hold that was a gesture, not speech)."""
        turn = self._turn
        if turn is None or turn.ended or turn.flowing:
            return False
        turn.ended = True
        turn.held.clear()
        self._turn = None
        self._rest_microphone()
        return True

    @property
    def heard_speech(self) -> bool:
        return self._turn is not None and self._turn.endpointer.heard_speech

    def stop(self) -> None:
        """End the turn now (another press in tap-to-talk)."""
        turn = self._turn
        if turn is None or turn.ended:
            return
        turn.endpointer.stop()
        self._finish(turn, EndReason.PRESS)

    def on_frame(self, frame: bytes) -> None:
        """Every captured 20 ms frame, in order (with a gate: every frame while it listens)."""
        turn = self._turn
        if turn is not None and not turn.ended:
            self._feed(turn, frame, preroll=False)
        if self._ring.capacity:
            self._ring.push(frame)

    def on_preroll(self, frame: bytes) -> None:
        """A frame from before the press, from a gated microphone; they come first, oldest first."""
        turn = self._turn
        if turn is not None and not turn.ended:
            self._feed(turn, frame, preroll=True)

    def _rest_microphone(self) -> None:
        if self._gate is not None:
            self._gate.idle()

    # ------------------------------------------------------------------ turn logic

    def _feed(self, turn: _Turn, frame: bytes, *, preroll: bool) -> None:
        reason = turn.endpointer.push(frame, preroll=preroll)
        if turn.flowing:
            self._enqueue("audio", frame, turn)
        else:
            turn.held.append(frame)  # the deque forgets silence from long before the speech
        if not turn.flowing and turn.endpointer.heard_speech:
            self._queue_start(turn)
            turn.flowing = True
            held, turn.held = list(turn.held), deque()
            for held_frame in held:
                self._enqueue("audio", held_frame, turn)
        if reason is not None:
            self._finish(turn, reason)

    def _queue_start(self, turn: _Turn) -> None:
        if not turn.start_queued:
            turn.start_queued = True
            self._enqueue("start", turn, turn)

    def _finish(self, turn: _Turn, reason: EndReason) -> None:
        turn.ended = True
        self._rest_microphone()
        turn.report.reason = reason
        turn.report.speech_ms = turn.endpointer.speech_frames * FRAME_MS
        turn.held.clear()
        if turn.flowing:
            self._enqueue("end", turn, turn)
        else:
            log.info("turn ended (%s) without speech: nothing sent", reason.value)
            self._report(turn)

    def _enqueue(self, kind: str, item: object, turn: _Turn) -> None:
        if kind != "audio":
            self._outbox.put_control((kind, item))
        elif not self._outbox.put_data_nowait((kind, item)):
            turn.report.dropped_frames += 1
            if not self._overflow_logged:
                self._overflow_logged = True
                log.warning("the link is not keeping up; dropping microphone audio")

    def _report(self, turn: _Turn) -> None:
        if self.on_turn_end is not None:
            try:
                self.on_turn_end(turn.report)
            except Exception:  # the owner's bug must not end the microphone's path
                log.exception("turn report handler failed")

    def _set_sending(self, value: bool) -> None:
        if value != self.sending:
            self.sending = value
            if self.on_sending is not None:
                self.on_sending(value)

    # ------------------------------------------------------------------ sender task

    async def run(self) -> None:
        """Drain the outbox into the session; runs for the life of the uplink."""
        current: _Turn | None = None
        while True:
            kind, item = await self._outbox.get()
            if kind == "start":
                current = item  # type: ignore[assignment]
                current.report.turn_id = await self._session.activity_start()
                current.report.start_sent_at = self._clock()
            elif kind == "audio":
                batch = [item]
                while len(batch) < BATCH_FRAMES and self._outbox.peek_is_data():
                    batch.append(self._outbox.get_nowait()[1])
                await self._session.send_audio(b"".join(batch))  # type: ignore[arg-type]
                self._set_sending(True)
                if current is not None:
                    current.report.frames_sent += len(batch)
            elif kind == "end":
                turn = item  # type: ignore[assignment]
                turn.report.submitted = await self._session.activity_end()
                turn.report.end_sent_at = self._clock()
                self._set_sending(False)
                self._overflow_logged = False
                self._report(turn)
